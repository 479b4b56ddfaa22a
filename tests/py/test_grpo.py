"""whale grpo end to end on a tiny model: replies sampled by the engine, judged by a verifier,
the clipped-ratio objective's gradient through the trainer. The reward is trivially learnable
(the reply contains the letter "a", which about half of a random model's short replies do), so
the mean reward must rise clearly within a few dozen updates; with LoRA the same, and the
checkpoint is an adapter. The objective's math and gradients are checked against PyTorch in
tests/unit/test_rl_grpo.c; this checks the loop."""
import json

import pytest

from conftest import run_whale


@pytest.fixture(scope="module")
def base(shards, tmp_path_factory):
    d = tmp_path_factory.mktemp("grpo")
    run_whale("train", "--init", "qwen2:test", "--data", str(shards), "-o", str(d / "base"), "--steps", "30",
              "--batch", "4", "--ctx", "64", "--lr", "1e-2")
    tasks = d / "tasks.jsonl"
    words = ["river", "stone", "cloud", "night", "green", "light", "water", "bread", "house", "music"]
    tasks.write_text("".join(json.dumps({"prompt": f"Say one thing about {w}.", "answer": "(?s).*a.*",
                                         "verifier": "regex"}) + "\n" for w in words))
    return d / "base" / "step-000030", tasks


def grpo(model, tasks, out, *extra):
    return run_whale("grpo", "-m", str(model), "--task", str(tasks), "-o", str(out), "--prompt", "chat",
                     "--prompts", "4", "--group", "8", "--max-tokens", "6", "--format-reward", "0", "--lr", "2e-2",
                     "--eval-every", "0", "--threads", "2", *extra)


def rewards(run):
    return [json.loads(line)["reward"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_reward_rises(base, tmp_path):
    model, tasks = base
    p = grpo(model, tasks, tmp_path / "run", "--steps", "24", "--beta", "0.02")
    r = rewards(tmp_path / "run")
    assert len(r) == 24
    first, last = sum(r[:6]) / 6, sum(r[-6:]) / 6
    assert last > first + 0.2 and last > 0.75, (first, last, r)
    m = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["kl"] >= 0 for x in m) and m[0]["kl"] < 1e-4  # k3 is never negative; 0 before any update
    assert m[-1]["kl"] > 0
    assert (tmp_path / "run" / "step-000024" / "model.safetensors").exists()
    assert "step 24/24" in p.stderr.decode()


def test_lora_reward_rises(base, tmp_path):
    model, tasks = base
    grpo(model, tasks, tmp_path / "run", "--steps", "24", "--beta", "0", "--lora-rank", "8", "--lr", "5e-2")
    r = rewards(tmp_path / "run")
    first, last = sum(r[:6]) / 6, sum(r[-6:]) / 6
    assert last > first + 0.2, (first, last, r)
    out = tmp_path / "run" / "step-000024"
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()


def test_refusals(base, tmp_path):
    model, tasks = base
    p = run_whale("grpo", "-m", str(model), "--task", "nosuchtask", "-o", str(tmp_path / "r"), check=False)
    assert p.returncode == 1 and "nosuchtask" in p.stderr.decode()
    p = run_whale("grpo", "-m", str(model), "--task", str(tasks), "-o", str(tmp_path / "r"), "--group", "1",
                  check=False)
    assert p.returncode == 1 and "group of at least 2" in p.stderr.decode()
    p = run_whale("grpo", "-m", str(model), "--task", str(tasks), check=False)
    assert p.returncode == 2 and "-o RUN_DIR" in p.stderr.decode()

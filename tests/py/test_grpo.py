"""whale grpo end to end on a tiny model: replies sampled by the engine, judged by a verifier,
the clipped-ratio objective's gradient through the trainer. The reward is trivially learnable
(the reply contains the letter "a", which about half of a random model's short replies do), so
the mean reward must rise clearly within a few dozen updates. With LoRA: the rollouts come from
the adapted model, the reference from the base, and the checkpoint is an adapter. The objective's math and gradients are checked against PyTorch in
tests/unit/test_rl_grpo.c; this checks the loop."""
import json
import pathlib
import shutil

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


def grpo(model, tasks, out, *extra, check=True):
    return run_whale("grpo", "-m", str(model), "--task", str(tasks), "-o", str(out), "--prompt", "chat",
                     "--prompts", "4", "--group", "8", "--max-tokens", "4", "--format-reward", "0", "--lr", "2e-2",
                     "--eval-every", "0", "--threads", "2", *extra, check=check)


def rewards(run):
    return [json.loads(line)["reward"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_reward_rises(base, tmp_path):
    model, tasks = base
    p = grpo(model, tasks, tmp_path / "run", "--steps", "16", "--beta", "0.02")
    r = rewards(tmp_path / "run")
    assert len(r) == 16
    first, last = sum(r[:4]) / 4, sum(r[-4:]) / 4
    assert last > first + 0.15 and last > 0.8, (first, last, r)
    m = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["kl"] >= 0 for x in m) and m[0]["kl"] < 1e-4  # k3 is never negative; 0 before any update
    assert m[-1]["kl"] > 0
    assert (tmp_path / "run" / "step-000016" / "model.safetensors").exists()
    assert "step 16/16" in p.stderr.decode()
    if shutil.which("gnuplot"):  # the curves, as `whale train plot` draws a grpo run
        drawn = run_whale("train", "plot", str(tmp_path / "run")).stdout.decode().split()
        assert {"reward.png", "kl.png", "response_len.png"} <= {pathlib.Path(x).name for x in drawn}, drawn


def test_deepseek_reward_rises(base, shards, tmp_path):
    """The same on a DeepSeek-V3 model (MLA, MoE, an MTP module whose loss GRPO weighs 0: no
    gradient may come back from it; before that was so, a stale buffer blew the gradient norm
    up to 1e23 and the reward did not move)."""
    _, tasks = base
    run_whale("train", "--init", "deepseek2:test", "--data", str(shards), "-o", str(tmp_path / "ds"), "--steps", "10",
              "--batch", "4", "--ctx", "64", "--lr", "1e-2")
    grpo(tmp_path / "ds" / "step-000010", tasks, tmp_path / "run", "--steps", "14", "--beta", "0.02")
    m = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    r = [x["reward"] for x in m]
    first, last = sum(r[:4]) / 4, sum(r[-4:]) / 4
    assert last > first + 0.15, (first, last, r)
    assert max(x["grad_norm"] for x in m) < 1e3, [x["grad_norm"] for x in m]


def test_lora_policy_and_reference(base, tmp_path):
    """With LoRA the engine samples from the base with the trained adapters applied, and the
    reference is the base alone (the adapters switched off): the KL is exactly 0 before the first
    update (B starts at zero) and positive after; the checkpoint is the adapters alone. (A tiny
    model learns this reward slowly through adapters that cannot touch its embedding and head:
    the reward's rise is the full fine-tuning test's.)"""
    from safetensors.numpy import load_file
    model, tasks = base
    grpo(model, tasks, tmp_path / "run", "--steps", "4", "--beta", "0.04", "--lora-rank", "8", "--lr", "5e-2")
    m = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert m[0]["kl"] == 0 and m[-1]["kl"] > 0, [x["kl"] for x in m]
    out = tmp_path / "run" / "step-000004"
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    w = load_file(str(out / "adapter_model.safetensors"))
    assert any(abs(w[k]).max() > 0 for k in w if "lora_B" in k)
    # whale eval measures the adapted model (and says so when the adapter is not there)
    r = json.loads(run_whale("eval", "-m", str(model), "--lora", str(out), "--task", str(tasks), "--prompt", "chat",
                             "--n", "4", "--max-tokens", "4", "--json").stdout)
    assert r["n"] == 4 and 0 <= r["pass_at_1"] <= 1 and r["lora"] == str(out)
    p = run_whale("eval", "-m", str(model), "--lora", str(tmp_path / "none"), "--task", str(tasks), check=False)
    assert p.returncode != 0 and "none" in p.stderr.decode()


def test_resume_gives_the_same_run(base, tmp_path):
    """Stopped after a checkpoint and resumed, the run ends with the same weights and the same
    metrics as one never stopped: rollouts are seeded by step, the reference stays the start."""
    model, tasks = base
    args = ("--steps", "4", "--save-every", "2", "--beta", "0.02", "--mu", "2")
    grpo(model, tasks, tmp_path / "whole", *args)
    grpo(model, tasks, tmp_path / "cut", *args)
    shutil.rmtree(tmp_path / "cut" / "step-000004")
    p = grpo(model, tasks, tmp_path / "cut", *args, "--resume")
    assert "resuming from" in p.stderr.decode() and "step 3/4" in p.stderr.decode()
    a = (tmp_path / "whole" / "step-000004" / "model.safetensors").read_bytes()
    b = (tmp_path / "cut" / "step-000004" / "model.safetensors").read_bytes()
    assert a == b
    ma = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in mb] == [1, 2, 3, 4]
    assert [(x["reward"], x["kl"], x["grad_norm"]) for x in ma] == [(x["reward"], x["kl"], x["grad_norm"]) for x in mb]


def test_refusals(base, tmp_path):
    model, tasks = base
    p = run_whale("grpo", "-m", str(model), "--task", "nosuchtask", "-o", str(tmp_path / "r"), check=False)
    assert p.returncode == 1 and "nosuchtask" in p.stderr.decode()
    for bad, why in ((["--group", "1"], "--group must be at least 2"), (["--temp", "0"], "--temp must be above 0"),
                     (["--lr", "-1"], "--lr must be above 0"), (["--max-tokens", "0"], "--max-tokens must be at least 1"),
                     (["--lora-rank", "0"], "--lora-rank must be 1 to 1024"), (["--steps", "0"], "--steps"),
                     (["--lora-alpha", "4"], "need --lora-rank")):
        p = run_whale("grpo", "-m", str(model), "--task", str(tasks), "-o", str(tmp_path / "r"), *bad, check=False)
        assert p.returncode == 2 and why in p.stderr.decode(), (bad, p.stderr.decode())
    p = run_whale("grpo", "-m", str(tmp_path / "nonexist"), "--task", str(tasks), "-o", str(tmp_path / "r"), check=False)
    assert p.returncode == 1 and "no such file" in p.stderr.decode()
    grpo(model, tasks, tmp_path / "once", "--steps", "1")
    p = grpo(model, tasks, tmp_path / "once", "--steps", "1", check=False)  # over an old run's checkpoints
    assert p.returncode == 1 and "--resume to continue" in p.stderr.decode()
    p = run_whale("grpo", "-m", str(model), "--task", str(tasks), check=False)
    assert p.returncode == 2 and "-o RUN_DIR" in p.stderr.decode()
    gguf = tmp_path / "m.gguf"  # a GGUF: LoRA only (the whole model's policy would have no vocabulary)
    run_whale("synth", "--shape", "test-qwen2", "--vocab", str(model / "tokenizer.json"), "-o", str(gguf))
    p = run_whale("grpo", "-m", str(gguf), "--task", str(tasks), "-o", str(tmp_path / "r"), check=False)
    assert p.returncode == 1 and "--lora-rank" in p.stderr.decode(), p.stderr.decode()

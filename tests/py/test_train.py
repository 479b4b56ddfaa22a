"""whale train: a small model learns (loss falls on real text), a run killed with SIGKILL and
resumed ends with the same parameters and loss curve as one never stopped, checkpoints load in
transformers with the logits Whale computes, and the command refuses what it cannot do. The
models are qwen2:test and deepseek2:test (~0.1M parameters without the embedding and head) on
a 512-id vocabulary from `whale data tokenizer` and shards from `whale data prepare`, so each
run takes seconds."""
import json
import os
import pathlib
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import WHALE, run_whale, shared_file

def train(shards, out, *extra, check=True, shape="qwen2:test"):
    return run_whale("train", "--init", shape, "--data", str(shards), "-o", str(out), "--batch", "4",
                     "--ctx", "48", *extra, check=check)


def metrics(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("shape", ["qwen2:test", "deepseek2:test"])
def test_loss_falls(shards, tmp_path, shape):
    train(shards, tmp_path / "run", "--steps", "40", "--lr", "1e-2", "--eval-every", "20", shape=shape)
    m = metrics(tmp_path / "run")
    assert [r["step"] for r in m] == list(range(1, 41))
    first, last = np.mean([r["loss"] for r in m[:5]]), np.mean([r["loss"] for r in m[-5:]])
    assert first > 5.5 and last < first - 0.5, (first, last)  # ln(512) = 6.24 at the start
    vals = [r["val_loss"] for r in m if "val_loss" in r]
    assert len(vals) == 2 and vals[-1] < first - 0.3
    assert m[0]["lr"] < m[3]["lr"] and m[-1]["lr"] < m[20]["lr"]  # warmup, then decay
    ck = tmp_path / "run" / "step-000040"
    assert {p.name for p in ck.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    if shape.startswith("deepseek"):  # the expert load (max over mean) is reported every step
        assert all(1.0 <= r["expert_load"] <= 4.0 for r in m)  # at most n_expert / n_used = 8 / 2


def test_selection_bias_moves_only_when_asked(shards, tmp_path):
    """Auxiliary-loss-free balancing end to end: the routers' selection biases (frozen for AdamW)
    move by --bias-update per step, each at most steps x gamma, and stay zero with 0 (the
    direction of each move is test_train_moe's)."""
    from safetensors.numpy import load_file
    for gamma in ("0", "0.01"):
        out = tmp_path / gamma
        train(shards, out, "--steps", "6", "--bias-update", gamma, shape="deepseek2:test")
        w = load_file(str(out / "step-000006" / "model.safetensors"))
        b = w["model.layers.1.mlp.gate.e_score_correction_bias"]
        if gamma == "0":
            assert not b.any()
        else:
            assert b.any() and np.abs(b).max() <= 6 * 0.01 + 1e-6 and (b > 0).any() and (b < 0).any()


@pytest.mark.parametrize("shape", ["qwen2:test", "deepseek2:test"])
def test_resume_after_kill_is_exact(shards, tmp_path, shape):
    """The DeepSeek shape also carries the routers' selection biases (moved every step by the
    expert loads) through the checkpoint."""
    args = ("--steps", "8", "--save-every", "2", "--eval-every", "4")
    train(shards, tmp_path / "a", *args, shape=shape)
    p = subprocess.Popen([str(WHALE), "train", "--init", shape, "--data", str(shards), "-o", str(tmp_path / "b"),
                          "--batch", "4", "--ctx", "48", *args], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (tmp_path / "b" / "step-000004").exists() and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "b" / "step-000008").exists()
    r = train(shards, tmp_path / "b", *args, "--resume", shape=shape)
    assert b"resuming from" in r.stderr
    a8, b8 = tmp_path / "a" / "step-000008", tmp_path / "b" / "step-000008"
    assert (a8 / "model.safetensors").read_bytes() == (b8 / "model.safetensors").read_bytes()
    assert (a8 / "optimizer.safetensors").read_bytes() == (b8 / "optimizer.safetensors").read_bytes()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")} for r in rows]
    assert strip(metrics(tmp_path / "a")) == strip(metrics(tmp_path / "b"))


@pytest.mark.parametrize("shape", ["qwen2:test", "deepseek2:test"])
def test_checkpoint_loads_in_transformers(shards, tmp_path, shape):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    train(shards, tmp_path / "run", "--steps", "3", shape=shape)
    ck = tmp_path / "run" / "step-000003"
    ids = [5, 77, 300, 12, 499, 1]
    model = transformers.AutoModelForCausalLM.from_pretrained(str(ck), torch_dtype=torch.float32)
    ref = model(torch.tensor([ids])).logits[0].detach().numpy()
    raw = tmp_path / "logits.f32"
    run_whale("logits", "-m", str(ck), "--ids", " ".join(map(str, ids)), "--raw", str(raw))
    got = np.fromfile(raw, dtype=np.float32).reshape(ref.shape)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_mtp_trains_and_drafts(shards, tmp_path):
    """deepseek2:test carries one multi-token prediction module: its loss is logged beside the
    main loss (and falls), the checkpoint names it as DeepSeek-V3 does, and `whale run` loads it
    and, drafting with it (--speculative mtp), writes the same greedy text as without."""
    from safetensors.numpy import load_file
    r = train(shards, tmp_path / "run", "--steps", "20", "--lr", "1e-2", shape="deepseek2:test")
    assert b"multi-token prediction: 1 module" in r.stderr
    m = metrics(tmp_path / "run")
    assert all("mtp_loss" in row for row in m)
    first, last = np.mean([row["mtp_loss"] for row in m[:3]]), np.mean([row["mtp_loss"] for row in m[-3:]])
    assert first > 5.5 and last < first - 0.3, (first, last)
    ck = tmp_path / "run" / "step-000020"
    conf = json.loads((ck / "config.json").read_text())
    assert conf["num_nextn_predict_layers"] == 1 and conf["mtp_loss_weight"] == pytest.approx(0.3)
    w = load_file(str(ck / "model.safetensors"))
    n = conf["num_hidden_layers"]
    for suffix in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight",
                   "self_attn.kv_b_proj.weight", "mlp.gate.weight", "mlp.experts.0.down_proj.weight"):
        assert f"model.layers.{n}.{suffix}" in w, suffix
    assert w[f"model.layers.{n}.eh_proj.weight"].shape == (conf["hidden_size"], 2 * conf["hidden_size"])
    args = ("run", "-m", str(ck), "--raw", "-p", "The first", "-n", "32", "--temp", "0", "--no-cache", "--json")
    plain = json.loads(run_whale(*args).stdout)
    drafted = json.loads(run_whale(*args, "--speculative", "mtp").stdout)
    assert plain["completion_tokens"] == 32 and drafted["answer"] == plain["answer"]
    assert drafted["speculative"]["drafted"] > 0  # the module was loaded and drafted


def test_yarn_checkpoint_loads_in_transformers(shards, tmp_path):
    """A DeepSeek checkpoint given YaRN (rope_scaling as DeepSeek-V3's config.json writes it, over
    an original context shorter than the positions used) trains with --from, writes the scaling
    back, and transformers computes the logits Whale does past the original context."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    train(shards, tmp_path / "a", "--steps", "2", shape="deepseek2:test")
    src = tmp_path / "a" / "step-000002"
    conf = json.loads((src / "config.json").read_text())
    conf["rope_scaling"] = dict(type="yarn", factor=4.0, original_max_position_embeddings=16, beta_fast=32, beta_slow=1,
                                mscale=1.0, mscale_all_dim=1.0)
    (src / "config.json").write_text(json.dumps(conf))
    run_whale("train", "--from", str(src), "--data", str(shards), "-o", str(tmp_path / "b"), "--batch", "4", "--ctx", "48",
              "--steps", "2")
    ck = tmp_path / "b" / "step-000002"
    rs = json.loads((ck / "config.json").read_text())["rope_scaling"]
    assert rs["type"] == "yarn" and rs["factor"] == 4 and rs["original_max_position_embeddings"] == 16
    ids = list(range(3, 43))  # 40 positions, past the original 16
    model = transformers.AutoModelForCausalLM.from_pretrained(str(ck), torch_dtype=torch.float32)
    ref = model(torch.tensor([ids])).logits[0].detach().numpy()
    raw = tmp_path / "logits.f32"
    run_whale("logits", "-m", str(ck), "--ids", " ".join(map(str, ids)), "--raw", str(raw))
    got = np.fromfile(raw, dtype=np.float32).reshape(ref.shape)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_refusals(shards, tmp_path):
    r = train(shards, tmp_path / "x", "--steps", "2", "--batch", "256", "--ctx", "200000", check=False)
    assert r.returncode == 1 and b"will not fit" in r.stderr
    r = run_whale("train", "--init", "qwen2:huge", "--data", str(shards), "-o", str(tmp_path / "y"), "--steps", "1",
                  check=False)
    assert r.returncode == 2 and b"unknown shape" in r.stderr
    r = run_whale("train", "--data", str(shards), "-o", str(tmp_path / "y"), "--steps", "1", check=False)
    assert r.returncode == 2 and b"--init" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_whale("train", "--init", "qwen2:test", "--tokenizer", str(shards.parent / "tokenizer.json"), "--data", str(empty),
                  "-o", str(tmp_path / "z"), "--steps", "1", check=False)
    assert r.returncode == 1 and b"no train-" in r.stderr

"""Named intermediates, layer by layer, against transformers (tests/golden/tiny_hidden.json, made
by tests/golden/make_golden.py --only hidden): `whale logits --dump DIR` writes every named
tensor of the forward pass, and each one transformers also exposes (the embeddings, each
layer's attention and FFN/MoE outputs, the router's logits, the residual stream after each
layer, the final norm) must agree within F32_TOL. A mismatch is reported as the first tensor, in
forward order, that differs — so a broken layer names itself (the last test breaks one on
purpose and checks that it does)."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import REPO, run_whale
from test_model_golden import tiny_models

GOLDEN = REPO / "tests" / "golden" / "tiny_hidden.json"
F32_TOL = 1e-4  # max-abs difference per tensor (observed ~1e-6: F32 weights, float32 math both sides)
ORDER = ["attn_out", "moe_logits", "ffn_out", "l_out"]  # forward order within a layer


def dump(model, ids, out):
    run_whale("logits", "-m", str(model), "--ids", " ".join(map(str, ids)), "--dump", str(out), "--top", "1")
    tensors = {}
    for line in (out / "manifest.tsv").read_text().splitlines()[1:]:
        name, layer, rows, length, f = line.split("\t")
        key = name if int(layer) < 0 else f"{name}.{layer}"
        tensors[key] = np.fromfile(out / f, dtype=np.float32).reshape(int(rows), int(length))
    return tensors


def first_divergence(ref, got):
    """(key, max-abs error) of the first reference tensor in forward order that Whale's dump
    misses or differs from by more than F32_TOL; None when all agree."""
    keys = ["inp_embd"] + [f"{n}.{l}" for l in range(ref["n_layer"]) for n in ORDER] + ["result_norm"]
    for k in keys:
        if k not in ref:
            continue
        want = np.array(ref[k], dtype=np.float64)
        if k not in got or got[k].shape != want.shape:
            return k, float("inf")
        e = float(np.abs(got[k] - want).max())
        if e > F32_TOL:
            return k, e
    return None


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


ARCHS = ["qwen2", "llama", "deepseek_v2", "deepseek_v3", "deepseek_v3_nolora"]


@pytest.mark.parametrize("arch", ARCHS)
def test_intermediates_match_transformers(golden, arch, tmp_path):
    ref = golden["models"][arch]
    model = tiny_models.write(arch, tmp_path / arch)
    got = dump(model, golden["prompt"], tmp_path / "dump")
    compared = [k for k in ref if k in got]
    assert len(compared) >= 3 * ref["n_layer"], f"too few tensors compared: {sorted(compared)}"
    bad = first_divergence(ref, got)
    assert bad is None, f"{arch}: first divergence at {bad[0]} (max-abs error {bad[1]:.3g})"


def test_dump_lists_every_layer(golden, tmp_path):
    """Every layer appears under every name a dense layer has, with one row per prompt token."""
    model = tiny_models.write("qwen2", tmp_path / "m")
    got = dump(model, golden["prompt"], tmp_path / "dump")
    n = len(golden["prompt"])
    for l in range(golden["models"]["qwen2"]["n_layer"]):
        for name in ("attn_norm", "attn_out", "ffn_inp", "ffn_norm", "ffn_out", "l_out"):
            assert got[f"{name}.{l}"].shape[0] == n, (name, l)
    assert got["inp_embd"].shape[0] == n and got["result_norm"].shape[0] == n


@pytest.mark.parametrize("arch,tensor,where", [
    ("qwen2", "model.layers.1.mlp.down_proj.weight", "ffn_out.1"),
    ("deepseek_v3", "model.layers.1.self_attn.o_proj.weight", "attn_out.1"),
])
def test_broken_layer_names_itself(golden, arch, tensor, where, tmp_path):
    """A checkpoint with one weight of one layer changed: the report names that layer's tensor,
    not an earlier one and not only the logits."""
    model = tiny_models.write(arch, tmp_path / arch)
    st = model / "model.safetensors"
    w = load_file(str(st))
    w[tensor] = (w[tensor] * 1.5).astype(w[tensor].dtype)
    save_file(w, str(st))
    got = dump(model, golden["prompt"], tmp_path / "dump")
    bad = first_divergence(golden["models"][arch], got)
    assert bad is not None and bad[0] == where, bad


@pytest.mark.parametrize("kind", ["release", "tsan"])
@pytest.mark.parametrize("arch", ["qwen2", "deepseek_v3"])
def test_one_model_many_threads(kind, arch, tmp_path):
    """A loaded model is read-only: four more contexts run the same prompt on four threads at
    the same time as the main one and give the same logits bits; under ThreadSanitizer
    (build-tsan/whale, made by `make tsan`) with no race reported."""
    import os
    import subprocess
    binary = REPO / ("build" if kind == "release" else "build-tsan") / "whale"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run make {'whale' if kind == 'release' else 'tsan'}")
    model = tiny_models.write(arch, tmp_path / arch)
    env = dict(os.environ, TSAN_OPTIONS=f"exitcode=66:log_path={tmp_path / 'tsan'}")
    ids = " ".join(str(i) for i in range(1, 80))
    r = subprocess.run([str(binary), "logits", "-m", str(model), "--ids", ids, "--step", "9", "--contexts", "4",
                        "-t", "2", "--top", "1"], env=env, capture_output=True, text=True, timeout=300)
    reports = "".join(p.read_text() for p in tmp_path.glob("tsan*"))
    assert r.returncode == 0 and not reports, r.stderr + reports
    assert "same logits bits" in r.stderr


def test_mtp_dump_under_its_own_layer(golden, tmp_path):
    """--mtp --dump: the MTP module's block and final norm go under layer n_layer, never into the
    main model's files (which keep one row per prompt token)."""
    model = tiny_models.write("deepseek_v3_mtp", tmp_path / "m")
    ids = golden["prompt"]
    out = tmp_path / "dump"
    run_whale("logits", "-m", str(model), "--ids", " ".join(map(str, ids)), "--mtp", "--dump", str(out), "--top", "1")
    rows = {}
    for line in (out / "manifest.tsv").read_text().splitlines()[1:]:
        name, layer, n, _, _ = line.split("\t")
        rows[(name, int(layer))] = int(n)
    L = tiny_models.CONFIGS["deepseek_v3_mtp"]["num_hidden_layers"]
    assert rows[("result_norm", -1)] == len(ids) and rows[("l_out", L - 1)] == len(ids)
    assert rows[("result_norm", L)] == len(ids) - 1 and rows[("l_out", L)] == len(ids) - 1


def test_dump_refuses_batch_neighbours(tmp_path):
    model = tiny_models.write("qwen2", tmp_path / "m")
    r = run_whale("logits", "-m", str(model), "--ids", "1 2 3", "--dump", str(tmp_path / "d"), "--batch-with", "2",
                  check=False)
    assert r.returncode != 0 and b"--batch-with" in r.stderr

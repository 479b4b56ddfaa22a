"""KV cache rows in half precision (--kv-type f16, bf16) and as int8 (--kv-type q8, MLA latent
caches): half (a quarter) of the cache memory, logits within a small distance of the F32 cache's
(F16 rounds the rows to 11 significant bits; BF16 to 8, and rounds the queries and softmax
weights too, as its vdpbf16ps products take them; Q8 keeps 8 bits per row against its largest
value and quantizes queries and weights too), batching still bit-invariant, and the absorbed and
decompressed MLA forms still agreeing (F16: both read the same rounded latents; BF16 and Q8:
within their rounding of the queries and weights)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import DEFAULT_MODEL, REPO, WHALE, run_whale

sys.path.insert(0, str(REPO / "tests" / "golden"))
import tiny_models  # noqa: E402

IDS = " ".join(map(str, tiny_models.PROMPT))


def logits(model, tmp_path, tag, *flags, ids=IDS):
    raw = tmp_path / f"{tag}.f32"
    run_whale("logits", "-m", str(model), "--ids", ids, "--raw", str(raw), "--top", "1", *flags)
    return np.fromfile(raw, dtype=np.float32)


# per type: the bound on max |logit - F32 cache's logit| relative to the largest logit, and on
# the decompressed MLA form's distance from the absorbed one (seen: F16 3e-4; BF16 4e-3, 2e-3;
# Q8 1e-2, 1e-2)
BOUNDS = {"f16": (5e-3, 1e-4), "bf16": (1e-2, 5e-3), "q8": (2e-2, 2e-2)}


# BF16 on V3's attention with dense MLPs: with 8 bits a routed expert of the MoE model flips
# (logits off by ~1 at two positions), which would measure the router, not the cache
@pytest.mark.parametrize("arch,kv", [("qwen2", "f16"), ("deepseek_v3", "f16"), ("qwen2", "bf16"),
                                     ("deepseek_v3_dense", "bf16"), ("deepseek_v3_dense", "q8"),
                                     ("deepseek_v2", "q8")])
def test_half_cache_close_to_f32_and_batch_invariant(arch, kv, tmp_path):
    model = tiny_models.write(arch, tmp_path / arch)
    f32 = logits(model, tmp_path, "f32", "--step", "1")
    half = logits(model, tmp_path, kv, "--step", "1", "--kv-type", kv)
    diff, scale = float(np.abs(half - f32).max()), float(np.abs(f32).max())
    print(f"{arch} {kv}: max-abs {diff:.2e} (logits up to {scale:.2f})")
    # the cache is really stored rounded (not a no-op), and the rounding stays small: half
    # precision keeps 11 bits, so about 5e-4 relative per cached value; bfloat16 8 bits, 4e-3
    assert 0 < diff < BOUNDS[kv][0] * max(scale, 1.0)
    with7 = logits(model, tmp_path, "with7", "--batch-with", "7", "--kv-type", kv)
    assert float(np.abs(with7 - half).max()) == 0.0
    if arch.startswith("deepseek"):
        naive = logits(model, tmp_path, "naive", "--step", "1", "--kv-type", kv, "--mla-naive")
        assert float(np.abs(naive - half).max()) < BOUNDS[kv][1] * max(scale, 1.0)


def test_f16_cache_default_model_and_bench(tmp_path):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    ids = "151644 872 198 3838 374 220 17 10 17 30 151645 198 151644 77091 198"
    f32 = logits(DEFAULT_MODEL, tmp_path, "d32", ids=ids)
    for kv in ("f16", "bf16"):
        half = logits(DEFAULT_MODEL, tmp_path, "d" + kv, "--kv-type", kv, ids=ids)
        assert int(np.argmax(f32[-151936:])) == int(np.argmax(half[-151936:])), kv
    out = {}
    for t in ("f32", "f16", "bf16"):
        r = subprocess.run([str(WHALE), "bench", "-p", "16", "-n", "4", "-r", "1", "-w", "0", "--bw-mib", "64",
                            "--kv-type", t, "--json"], capture_output=True, text=True, check=True)
        out[t] = json.loads(r.stdout)
    assert out["f16"]["kv_bytes_per_token"] * 2 == out["f32"]["kv_bytes_per_token"]
    assert out["bf16"]["kv_bytes_per_token"] == out["f16"]["kv_bytes_per_token"]
    r = subprocess.run([str(WHALE), "bench", "--kv-type", "f8"], capture_output=True, text=True)
    assert r.returncode == 2 and "f32, f16, bf16 or q8" in r.stderr
    # int8 rows are for MLA latents: a dense model says so instead of running
    r = subprocess.run([str(WHALE), "logits", "-m", str(DEFAULT_MODEL), "--ids", "1 2", "--kv-type", "q8"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "a q8 KV cache is for MLA models" in r.stderr, r.stderr

"""KV cache rows in half precision (--kv-type f16): half the cache memory, logits within a small
distance of the F32 cache's (the rows are rounded to 11 significant bits), batching still
bit-invariant, and the absorbed and decompressed MLA forms still agreeing, since both read the
same rounded latents."""
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


@pytest.mark.parametrize("arch", ["qwen2", "deepseek_v3"])
def test_f16_cache_close_to_f32_and_batch_invariant(arch, tmp_path):
    model = tiny_models.write(arch, tmp_path / arch)
    f32 = logits(model, tmp_path, "f32", "--step", "1")
    f16 = logits(model, tmp_path, "f16", "--step", "1", "--kv-type", "f16")
    diff, scale = float(np.abs(f16 - f32).max()), float(np.abs(f32).max())
    print(f"{arch}: max-abs {diff:.2e} (logits up to {scale:.2f})")
    # the cache is really stored rounded (not a no-op), and the rounding stays small: half
    # precision keeps 11 bits, so about 5e-4 relative per cached value
    assert 0 < diff < 5e-3 * max(scale, 1.0)
    with7 = logits(model, tmp_path, "with7", "--batch-with", "7", "--kv-type", "f16")
    assert float(np.abs(with7 - f16).max()) == 0.0
    if arch == "deepseek_v3":
        naive = logits(model, tmp_path, "naive", "--step", "1", "--kv-type", "f16", "--mla-naive")
        assert float(np.abs(naive - f16).max()) < 1e-4


def test_f16_cache_default_model_and_bench(tmp_path):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    ids = "151644 872 198 3838 374 220 17 10 17 30 151645 198 151644 77091 198"
    f32 = logits(DEFAULT_MODEL, tmp_path, "d32", ids=ids)
    f16 = logits(DEFAULT_MODEL, tmp_path, "d16", "--kv-type", "f16", ids=ids)
    assert int(np.argmax(f32[-151936:])) == int(np.argmax(f16[-151936:]))
    out = {}
    for t in ("f32", "f16"):
        r = subprocess.run([str(WHALE), "bench", "-p", "16", "-n", "4", "-r", "1", "-w", "0", "--bw-mib", "64",
                            "--kv-type", t, "--json"], capture_output=True, text=True, check=True)
        out[t] = json.loads(r.stdout)
    assert out["f16"]["kv_bytes_per_token"] * 2 == out["f32"]["kv_bytes_per_token"]
    r = subprocess.run([str(WHALE), "bench", "--kv-type", "f8"], capture_output=True, text=True)
    assert r.returncode == 2 and "f32 or f16" in r.stderr

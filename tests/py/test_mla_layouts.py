"""MLA attention beyond the short golden prompt:

1. Long context: 700 positions, so that a decoded row's positions are split into chunks across
   tasks and merged (online softmax), against the whole prompt in one pass and against the
   decompressed (naive) form.
2. DeepSeek GGUF files as llama.cpp's newer converter writes them: kv_b_proj split per head into
attn_k_b (W_UK transposed, ne {dn, dc, H}) and attn_v_b (W_UV, ne {dc, dv, H}), with the
attention described as absorbed MQA (key_length = kv_lora_rank + rope, value_length =
kv_lora_rank, one KV head) and the per-head sizes moved to key_length_mla / value_length_mla.

The file is rewritten here with the `gguf` package from one Whale converted, following the
converter's recipe (view kv_b as (H, dn+dv, dc), split, transpose k_b); Whale must give the
transformers reference logits from it, in both attention forms."""
import json
import sys

import numpy as np
import pytest

from conftest import REPO, run_whale

gguf = pytest.importorskip("gguf")
GOLDEN = REPO / "tests" / "golden"
sys.path.insert(0, str(GOLDEN))
import tiny_models  # noqa: E402

F32_TOL = 1e-4


def split_layout(src, dst):
    r = gguf.GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    kv = {f.name: f for f in r.fields.values()}
    H = kv[f"{arch}.attention.head_count"].contents()
    dk = kv[f"{arch}.attention.key_length"].contents()
    dv = kv[f"{arch}.attention.value_length"].contents()
    dr = kv[f"{arch}.rope.dimension_count"].contents()
    dc = kv[f"{arch}.attention.kv_lora_rank"].contents()
    dn = dk - dr
    w = gguf.GGUFWriter(str(dst), arch)
    override = {f"{arch}.attention.key_length": dc + dr, f"{arch}.attention.value_length": dc,
                f"{arch}.attention.head_count_kv": 1}
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        val = override.get(f.name, f.contents())
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, val, f.types[0], sub_type=sub)
    w.add_uint32(f"{arch}.attention.key_length_mla", dk)
    w.add_uint32(f"{arch}.attention.value_length_mla", dv)
    n_split = 0
    for t in r.tensors:
        data = np.array(t.data)
        if t.name.endswith("attn_kv_b.weight"):
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            kvb = data.reshape(H, dn + dv, dc)
            w.add_tensor(t.name.replace("kv_b", "k_b"), np.ascontiguousarray(kvb[:, :dn, :].transpose(0, 2, 1)))
            w.add_tensor(t.name.replace("kv_b", "v_b"), np.ascontiguousarray(kvb[:, dn:, :]))
            n_split += 1
        else:
            w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_split


@pytest.mark.parametrize("arch", ["deepseek_v3", "deepseek_v2"])
def test_split_kb_vb_layout(arch, tmp_path):
    golden = json.loads((GOLDEN / "tiny_logits.json").read_text())
    ref = np.array(golden["models"][arch])
    d = tiny_models.write(arch, tmp_path / arch)
    fused = tmp_path / "fused.gguf"
    run_whale("convert", str(d), str(fused), "--type", "f32")
    split = tmp_path / "split.gguf"
    assert split_layout(fused, split) == tiny_models.CONFIGS[arch]["num_hidden_layers"]
    names = {t.name for t in gguf.GGUFReader(str(split)).tensors}
    assert "blk.0.attn_k_b.weight" in names and "blk.0.attn_kv_b.weight" not in names
    ids = " ".join(map(str, golden["prompt"]))
    for flags in ((), ("--mla-naive",), ("--step", "1")):
        raw = tmp_path / "l.f32"
        run_whale("logits", "-m", str(split), "--ids", ids, "--raw", str(raw), "--top", "1", *flags)
        got = np.fromfile(raw, dtype=np.float32).reshape(ref.shape)
        err = float(np.abs(got - ref).max())
        print(f"{arch} split layout {' '.join(flags)}: max-abs {err:.2e}")
        assert err < F32_TOL
    info = run_whale("info", str(split)).stdout.decode()
    assert "kv_lora_rank" in info


def test_long_context_chunked_attention(tmp_path):
    d = tiny_models.write("deepseek_v3", tmp_path / "v3")
    ids = " ".join(str(x) for x in np.random.default_rng(7).integers(0, tiny_models.VOCAB, 700))
    out = {}
    for tag, flags in (("batch", ()), ("step", ("--step", "1")), ("naive", ("--mla-naive",))):
        raw = tmp_path / f"{tag}.f32"
        run_whale("logits", "-m", str(d), "--ids", ids, "--raw", str(raw), "--top", "1", *flags)
        out[tag] = np.fromfile(raw, dtype=np.float32).reshape(700, -1)
    for tag in ("step", "naive"):
        err = float(np.abs(out[tag] - out["batch"]).max())
        print(f"700 positions, {tag} vs one pass: max-abs {err:.2e}")
        assert err < 1e-4

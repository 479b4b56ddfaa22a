"""`whale quantize`: GGUF (or a Hugging Face checkpoint) in, GGUF out.

Sources: tiny random Qwen2 and DeepSeek-V3 checkpoints (tests/golden/tiny_models.py) converted
to F32 GGUF by `whale convert` (rows of 32..160 values, so K-quants fall back to Q8_0 or F16),
and `whale synth` test shapes turned into F32 (rows of 256 and 512, stacked 3-D experts, so the
K-quants are really used). For each target type the output must
- load in Whale, with logits close to the F32 file's (LOGIT_TOL, error relative to the logits'
  spread);
- read in the `gguf` package with every tensor of the type the rule gives, and dequantize there
  (gguf.quants) to the source's values within the type's quantization error (WEIGHT_TOL);
- carry every metadata key of the source unchanged, general.file_type aside.
Also: HF input gives the very file `whale convert` writes, Q8_0 requantizes to itself, Whale's
F32 output of a quantized file is the gguf package's dequantization bit for bit, and bad input
is a one-line error, never a crash."""
import json
import os
import sys

import gguf
import numpy as np
import pytest

from conftest import REPO, run_whale, shared_file

sys.path.insert(0, str(REPO / "tests" / "golden"))
import tiny_models  # noqa: E402

TYPES = ["q8_0", "q4_k", "q6_k", "q4_k_m", "f16", "bf16"]
BASE = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_k": "Q4_K", "q6_k": "Q6_K", "q4_k_m": "Q4_K"}
BLOCK = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "Q4_K": 256, "Q6_K": 256}
FTYPE = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
         "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
         "q4_k": gguf.LlamaFileType.MOSTLY_Q4_K_S, "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M,
         "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K}
# Per tensor: max |dequantized output - source| / max |source|. Half a quantization step of each
# format, with room for its rounded scales: F16 2^-11, BF16 2^-8, Q8_0 1/254, Q6_K ~1/62,
# Q4_K ~1/15 of a block's range (observed: 4e-4, 3.5e-3, 4.1e-3, 1.6e-2, 6.7e-2).
WEIGHT_TOL = {"F32": 0.0, "F16": 5e-4, "BF16": 4e-3, "Q8_0": 5e-3, "Q6_K": 2.5e-2, "Q4_K": 0.1}
# Logits: RMS error over the vocabulary at a position, divided by the F32 file's logit standard
# deviation; the worst position for dense models, the median for MoE (rounding can flip an expert
# choice at a near tie of the router, which moves that position more). Observed worst cases:
# f16 5e-4, bf16 7e-3, q8_0 2.2e-2, q6_k 5.2e-2, q4_k_m 0.18, q4_k 0.19. Garbage weights: ~1.4.
LOGIT_TOL = {"f16": 0.005, "bf16": 0.02, "q8_0": 0.05, "q6_k": 0.12, "q4_k_m": 0.3, "q4_k": 0.35}
PROMPT = " ".join(map(str, tiny_models.PROMPT))
SOURCES = ["qwen2", "deepseek_v3", "synth-qwen2", "synth-deepseek2"]


def quantize(src, out, typ, check=True):
    return run_whale("quantize", str(src), str(out), "--type", typ, check=check)


def logits(model, tmp_path):
    raw = tmp_path / (model.name + ".logits")
    run_whale("logits", "-m", str(model), "--ids", PROMPT, "--raw", str(raw), "--top", "1")
    return np.fromfile(raw, dtype=np.float32).reshape(len(tiny_models.PROMPT), -1)


def expected_type(name, ne, typ):
    """The rule: 1-D tensors and the router F32; Q4_K_M's Q6_K names; fallback by row length."""
    if len(ne) < 2 or "ffn_gate_inp" in name:
        return "F32"
    want = BASE[typ]
    if typ == "q4_k_m" and ("output.weight" in name or "attn_v." in name or "ffn_down" in name):
        want = "Q6_K"
    if ne[0] % BLOCK[want] == 0:
        return want
    return "Q8_0" if ne[0] % 32 == 0 else "F16"


def tensors(reader):
    return {t.name: t for t in reader.tensors}


def dequant(t):
    return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()


def fields(reader, skip=("general.file_type",)):
    """key -> (value types, value) for every metadata key, in file order."""
    return {k: (f.types, f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.") and k not in skip}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    out = {}
    for arch in ("qwen2", "deepseek_v3"):
        d = tiny_models.write(arch, root / arch)
        out[arch] = root / f"{arch}-f32.gguf"
        run_whale("convert", str(d), str(out[arch]), "--type", "f32")
    for shape in ("test-qwen2", "test-deepseek2"):
        f16 = root / f"{shape}-f16.gguf"
        run_whale("synth", "--shape", shape, "--type", "f16", "--vocab", "none", "-o", str(f16))
        out["synth-" + shape[5:]] = root / f"{shape}-f32.gguf"
        out["synth-" + shape[5:] + "-f16"] = f16
        quantize(f16, out["synth-" + shape[5:]], "f32")
    return {k: (v, gguf.GGUFReader(str(v))) for k, v in out.items()}


def test_sources_are_right(sources, tmp_path):
    """The F32 sources are made by the code under test, so first anchor them: the converted tiny
    models give transformers' logits (tests/golden/tiny_logits.json), and the synth files in F32
    hold exactly the gguf package's dequantization of their F16 originals."""
    golden = json.loads((REPO / "tests" / "golden" / "tiny_logits.json").read_text())
    assert golden["prompt"] == tiny_models.PROMPT
    for arch in ("qwen2", "deepseek_v3"):
        ref = np.array(golden["models"][arch], dtype=np.float32)
        assert float(np.abs(logits(sources[arch][0], tmp_path) - ref).max()) < 1e-4, arch
    for name in ("synth-qwen2", "synth-deepseek2"):
        f16, f32 = tensors(sources[name + "-f16"][1]), tensors(sources[name][1])
        assert list(f16) == list(f32)
        for n, t in f16.items():
            assert f32[n].tensor_type.name == "F32" and np.array_equal(dequant(t), f32[n].data.ravel()), n


@pytest.mark.parametrize("typ", TYPES)
@pytest.mark.parametrize("source", SOURCES)
def test_quantize_f32_gguf(sources, source, typ, tmp_path):
    src, sr = sources[source]
    out = tmp_path / f"{source}-{typ}.gguf"
    p = quantize(src, out, typ)
    assert p.stderr.decode().startswith(f"wrote {out}: {len(sr.tensors)} tensors (")
    r = gguf.GGUFReader(str(out))
    # metadata: every key as it was, the file type updated
    assert fields(r) == fields(sr)
    assert r.fields["general.file_type"].contents() == FTYPE[typ]
    # tensors: same names, order and shapes; the rule's types; the source's values within error
    assert [t.name for t in r.tensors] == [t.name for t in sr.tensors]
    st = tensors(sr)
    types = set()
    for t in r.tensors:
        s = st[t.name]
        ne = [int(x) for x in t.shape]
        assert ne == [int(x) for x in s.shape], t.name
        assert t.tensor_type.name == expected_type(t.name, ne, typ), (t.name, ne)
        types.add(t.tensor_type.name)
        x, y = dequant(s), dequant(t)
        err = float(np.abs(y - x).max() / max(np.abs(x).max(), 1e-30))
        assert err <= WEIGHT_TOL[t.tensor_type.name], (t.name, t.tensor_type.name, err)
    if source.startswith("synth"):  # rows of 256+: the asked type is really used
        assert BASE[typ] in types and (typ != "q4_k_m" or "Q6_K" in types)
    # Whale runs it, close to the F32 file
    ref, got = logits(src, tmp_path), logits(out, tmp_path)
    rel = np.sqrt(((got - ref) ** 2).mean(axis=1)) / ref.std()
    err = float(np.median(rel) if "deepseek" in source else rel.max())
    print(f"{source} {typ}: logits rms error / std {err:.4f} (worst position {float(rel.max()):.4f})")
    assert err < LOGIT_TOL[typ]


def test_metadata_and_odd_tensors_carried_over(tmp_path):
    """A file written by the gguf package (no general.file_type; a chat template, unicode tokens,
    every scalar type, an integer tensor, rows of 40, 96 and 256 values) keeps its metadata byte for
    byte and each tensor gets the rule's type."""
    src = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(src), "llama")
    w.add_name("odd test file")
    w.add_uint32("llama.block_count", 1)
    w.add_float32("llama.rope.freq_base", 500000.0)
    tokens = ["<｜begin▁of▁sentence｜>", "<｜User｜>", "▁Привет", "你好", "\n", "a"]
    w.add_token_list(tokens)
    w.add_token_scores([0.0, -1.5, -2.25, -3.0, -4.0, -5.5])
    w.add_chat_template("{% for m in messages %}<｜{{ m['role'] }}｜>{{ m['content'] }}{% endfor %}")
    w.add_int8("test.i8", -7)
    w.add_uint64("test.u64", 2**40 + 3)
    w.add_float64("test.f64", 1e-300)
    w.add_bool("test.bool", True)
    w.add_array("test.ints", [1, -2, 3])
    rng = np.random.default_rng(7)
    odd = {
        "token_embd.weight": rng.standard_normal((6, 256)).astype(np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(256).astype(np.float32),
        "blk.0.attn_v.weight": rng.standard_normal((8, 96)).astype(np.float32),
        "blk.0.ffn_gate_inp.weight": rng.standard_normal((4, 256)).astype(np.float32),
        "blk.0.ffn_down_exps.weight": rng.standard_normal((4, 8, 40)).astype(np.float16),
        "blk.0.positions": np.arange(10, dtype=np.int32),
    }
    for name, a in odd.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    sr = gguf.GGUFReader(str(src))
    assert "general.file_type" not in sr.fields
    for typ in ("q4_k_m", "q8_0"):
        out = tmp_path / f"odd-{typ}.gguf"
        quantize(src, out, typ)
        r = gguf.GGUFReader(str(out))
        assert list(fields(r)) == list(fields(sr)) and fields(r) == fields(sr)
        assert list(r.fields)[-1] == "general.file_type" and r.fields["general.file_type"].contents() == FTYPE[typ]
        assert r.fields["tokenizer.ggml.tokens"].contents() == tokens
        got = {t.name: t for t in r.tensors}
        assert got["blk.0.positions"].tensor_type.name == "I32"
        assert np.array_equal(got["blk.0.positions"].data, odd["blk.0.positions"])
        for t in sr.tensors:
            if t.name != "blk.0.positions":
                assert got[t.name].tensor_type.name == expected_type(t.name, [int(x) for x in t.shape], typ), t.name
    assert got["blk.0.attn_v.weight"].tensor_type.name == "Q8_0"  # 96: not a multiple of 256, of 32 yes
    assert got["blk.0.ffn_down_exps.weight"].tensor_type.name == "F16"  # 40: neither


def test_real_vocabulary_file_metadata(tmp_path):
    """llama.cpp's DeepSeek LLM vocabulary GGUF (102400 tokens, 99757 merges, general.file_type 1,
    no tensors): the output is the input byte for byte but for the file type's value (and the
    padding the writer adds after the header). Compared as bytes: the gguf package takes seconds
    to parse this many tokens."""
    vocab = shared_file("vocab/ggml-vocab-deepseek-llm.gguf")
    src = vocab.read_bytes()
    out = tmp_path / "vocab-q6_k.gguf"
    quantize(vocab, out, "q6_k")
    key = b"general.file_type"
    at = src.index(len(key).to_bytes(8, "little") + key) + 8 + len(key)
    assert src[at:at + 8] == (4).to_bytes(4, "little") + (1).to_bytes(4, "little")  # UINT32 1: F16
    want = src[:at + 4] + int(FTYPE["q6_k"]).to_bytes(4, "little") + src[at + 8:]
    got = out.read_bytes()
    assert got[:len(want)] == want and set(got[len(want):]) <= {0} and len(got) - len(want) < 32


def test_hf_input_is_whale_convert(tmp_path):
    """FP8 (block-scaled) safetensors in: the same bytes as `whale convert`, from the directory or
    the .safetensors file."""
    d8, _ = tiny_models.write_fp8(tmp_path)
    for typ in ("q8_0", "q4_k_m", "bf16"):
        conv, quant, quant_file = (tmp_path / f"{k}-{typ}.gguf" for k in ("convert", "quantize", "file"))
        run_whale("convert", str(d8), str(conv), "--type", typ)
        quantize(d8, quant, typ)
        quantize(d8 / "model.safetensors", quant_file, typ)
        assert conv.read_bytes() == quant.read_bytes() == quant_file.read_bytes()
    r = gguf.GGUFReader(str(quant))
    assert r.fields["general.file_type"].contents() == FTYPE["bf16"]
    assert {t.tensor_type.name for t in r.tensors} == {"BF16", "F32"}
    # a broken checkpoint: an expert's block scales renamed away, or the file cut short
    data = (d8 / "model.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    scale = next(k for k in header if k.endswith("experts.3.up_proj.weight_scale_inv"))
    header[scale + "_x"] = header.pop(scale)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    for name, blob, needle in (("noscale", len(h).to_bytes(8, "little") + h + data[8 + n:], "has no usable"),
                               ("cut", data[: len(data) // 2], "model.safetensors")):
        bad = tmp_path / name
        bad.mkdir()
        (bad / "config.json").write_bytes((d8 / "config.json").read_bytes())
        (bad / "model.safetensors").write_bytes(blob)
        for cmd in ("convert", "quantize"):
            p = run_whale(cmd, str(bad), str(tmp_path / "bad.gguf"), "--type", "q8_0", check=False)
            err = p.stderr.decode()
            assert p.returncode == 1 and len(err.strip().splitlines()) == 1 and needle in err, (cmd, name, err)
            assert not (tmp_path / "bad.gguf").exists()


def test_requantize_is_idempotent_and_dequantizes_like_gguf(tmp_path):
    """Q8_0 -> Q8_0 keeps the bytes; Q8_0 -> F32 -> Q8_0 gives them back (dequantize + quantize is
    stable); Whale's F32 output of a Q4_K_M file (Q4_K, Q6_K, Q8_0, F32 tensors) equals the gguf
    package's dequantization exactly."""
    for shape in ("test-qwen2", "test-deepseek2"):
        q8 = tmp_path / f"{shape}-q8_0.gguf"
        run_whale("synth", "--shape", shape, "--type", "q8_0", "--vocab", "none", "-o", str(q8))
        again, f32, back = (tmp_path / f"{shape}-{k}.gguf" for k in ("again", "f32", "back"))
        quantize(q8, again, "q8_0")
        quantize(q8, f32, "f32")
        quantize(f32, back, "q8_0")
        a = tensors(gguf.GGUFReader(str(q8)))
        for path in (again, back):
            b = tensors(gguf.GGUFReader(str(path)))
            assert list(a) == list(b)
            for name, t in a.items():
                assert b[name].tensor_type == t.tensor_type and b[name].data.tobytes() == t.data.tobytes(), (path, name)
    mix = tmp_path / "mix.gguf"
    run_whale("synth", "--shape", "test-deepseek2", "--type", "q4_k_m", "--vocab", "none", "-o", str(mix))
    quantize(mix, tmp_path / "mix-f32.gguf", "f32")
    src, out = tensors(gguf.GGUFReader(str(mix))), tensors(gguf.GGUFReader(str(tmp_path / "mix-f32.gguf")))
    assert {t.tensor_type.name for t in src.values()} == {"Q4_K", "Q6_K", "Q8_0", "F32"}
    for name, t in src.items():
        assert out[name].tensor_type.name == "F32"
        assert np.array_equal(dequant(t), out[name].data.ravel()), name


def test_help_and_command_list():
    out = run_whale("quantize", "--help").stdout.decode()
    assert out.startswith("usage: whale quantize IN OUT.gguf --type")
    for t in TYPES + ["f32"]:
        assert t in out
    assert "  quantize" in run_whale("--help").stdout.decode()


def test_bad_input_is_a_one_line_error(tmp_path, sources):
    model, _ = sources["qwen2"]
    data = model.read_bytes()
    cut_head, cut_data = tmp_path / "head.gguf", tmp_path / "cut.gguf"
    cut_head.write_bytes(data[:100])
    cut_data.write_bytes(data[: len(data) // 2])
    garbage, empty = tmp_path / "garbage.bin", tmp_path / "empty.gguf"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty.write_bytes(b"")
    huge = bytearray(data)
    huge[8:16] = (1 << 60).to_bytes(8, "little")  # tensor count
    huge_p = tmp_path / "huge.gguf"
    huge_p.write_bytes(bytes(huge))
    no_config = tmp_path / "noconfig"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(data)
    link = tmp_path / "link.gguf"
    os.link(copy, link)
    out = tmp_path / "out.gguf"
    cases = [
        ((str(tmp_path / "nope.gguf"), str(out), "--type", "q8_0"), 1, "No such file"),
        ((str(model), str(out), "--type", "q5_k"), 2, "unknown type 'q5_k'"),
        ((str(model), str(out)), 2, "--type is required"),
        ((str(model),), 2, "need IN and OUT"),
        ((str(model), str(out), "extra", "--type", "q8_0"), 2, "unexpected argument"),
        ((str(model), str(out), "--tipe", "q8_0"), 2, "unknown option"),
        ((str(copy), str(copy), "--type", "q8_0"), 1, "is the input"),
        ((str(copy), str(link), "--type", "q8_0"), 1, "is the input"),
        ((str(cut_head), str(out), "--type", "q8_0"), 1, str(cut_head)),
        ((str(cut_data), str(out), "--type", "q8_0"), 1, "truncated"),
        ((str(garbage), str(out), "--type", "q8_0"), 1, "not a GGUF file"),
        ((str(empty), str(out), "--type", "q8_0"), 1, "not a GGUF file"),
        ((str(huge_p), str(out), "--type", "q8_0"), 1, str(huge_p)),
        ((str(no_config), str(out), "--type", "q8_0"), 1, "config.json"),
        ((str(model), str(tmp_path / "no" / "dir.gguf"), "--type", "q8_0"), 1, "cannot create"),
    ]
    for args, rc, needle in cases:
        p = run_whale("quantize", *args, check=False)
        err = p.stderr.decode()
        assert p.returncode == rc, (args, p.returncode, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("whale"), (args, err)
        assert needle in err, (args, err)
        assert not out.exists() and not (tmp_path / "out.gguf.part").exists(), args
    assert copy.read_bytes() == data

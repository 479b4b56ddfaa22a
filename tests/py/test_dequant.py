"""test_dequant.py — src/formats/dtype.c against gguf-py's independent numpy dequantizers.

Builds src/formats/dtype.c alone into a shared library (so this test needs only a C compiler,
not the CMake build) and calls it through ctypes. Three kinds of checks:
  * the type table against gguf.constants.GGML_QUANT_SIZES;
  * random blocks of every type gguf.quants can dequantize (random quant bytes, finite random
    f16 scales in [-2, 2]; 1, 3, 7, 64 and 129 blocks) compared bit for bit;
  * the first ~64 KiB of real tensors of each type in a model file: $WHALE_HOME/models/
    default.gguf (WHALE_HOME defaults to ~/.cache/whale), else /tmp/dl/sns.gguf.

Exactness: every product in a dequantize is exact in f32 (an f16 scale times small integers,
at most 23 significant bits; see dtype.c), so each element is rounded at most once, by the final
addition of the min, and the result does not depend on the order of operations or on FMA. We
therefore require bitwise equality with gguf-py; NaN counts as equal to any NaN (hardware
half->float conversion may quiet a signalling NaN).

Run: python -m pytest tests/py/test_dequant.py   (needs numpy, gguf, a C compiler)
"""

import ctypes
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SEED = 20240601
GUARD = 16  # floats after the output that must stay untouched
GUARD_VAL = np.float32(-12345.25)
REAL_TENSOR_BYTES = 64 * 1024  # per tensor: enough rows to cover every code path, and fast
REAL_TENSORS_PER_TYPE = 3

# Whale's extra ids (dtype.h): not GGUF types.
WHALE_F8_E4M3, WHALE_F8_E5M2, WHALE_U8 = 1000, 1001, 1002

# Byte offsets of the f16 scale fields in each block (see the byte maps in dtype.c). Random
# bytes there would give inf/NaN scales, which is legal but makes the comparison say little.
F16_SCALES = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}
BLOCK_TYPES = list(F16_SCALES)
PLAIN_TYPES = [T.F32, T.F16, T.BF16]


class DtypeInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("block_elems", ctypes.c_int64),
        ("block_bytes", ctypes.c_size_t),
        ("can_dequantize", ctypes.c_int),
    ]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler (set CC)")
    so = tmp_path_factory.mktemp("whaledtype") / "libwhaledtype.so"
    cmd = [cc, "-std=c11", "-O1", "-shared", "-fPIC",
           "-I", str(REPO / "src"), "-I", str(REPO / "include"),
           str(REPO / "src/formats/dtype.c"), "-o", str(so), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"building {so} failed:\n{' '.join(cmd)}\n{r.stderr}"
    L = ctypes.CDLL(str(so))
    L.dtype_get.restype = ctypes.POINTER(DtypeInfo)
    L.dtype_get.argtypes = [ctypes.c_int]
    L.dequantize_row.restype = None
    L.dequantize_row.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    L.f32_to_fp16.restype = ctypes.c_uint16
    L.f32_to_fp16.argtypes = [ctypes.c_float]
    L.f32_to_bf16.restype = ctypes.c_uint16
    L.f32_to_bf16.argtypes = [ctypes.c_float]
    L.fp8_e4m3_to_f32.restype = ctypes.c_float
    L.fp8_e4m3_to_f32.argtypes = [ctypes.c_uint8]
    L.fp8_e5m2_to_f32.restype = ctypes.c_float
    L.fp8_e5m2_to_f32.argtypes = [ctypes.c_uint8]
    return L


def info(lib, t):
    p = lib.dtype_get(int(t))
    return p.contents if p else None


def whale_dequant(lib, t, raw):
    """Dequantize the bytes `raw` (a whole number of blocks) of type t with dtype.c."""
    inf = info(lib, t)
    assert inf is not None and inf.can_dequantize, f"{t} not dequantizable by dtype.c"
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    assert raw.size % inf.block_bytes == 0
    n = raw.size // inf.block_bytes * inf.block_elems
    out = np.full(n + GUARD, GUARD_VAL, dtype=np.float32)
    lib.dequantize_row(int(t), raw.ctypes.data, out.ctypes.data, n)
    assert (out[n:] == GUARD_VAL).all(), f"{t.name}: wrote past the end of the output"
    return out[:n]


def assert_same(ours, ref, what):
    ref = np.asarray(ref, dtype=np.float32).reshape(-1)
    assert ours.shape == ref.shape, f"{what}: {ours.shape} vs {ref.shape}"
    nan_both = np.isnan(ours) & np.isnan(ref)
    diff = (ours.view(np.uint32) != ref.view(np.uint32)) & ~nan_both
    if diff.any():
        i = np.flatnonzero(diff)
        j = i[0]
        scale = float(np.nanmax(np.abs(ref[np.isfinite(ref)]), initial=0.0))
        err = float(np.nanmax(np.abs(ours[i].astype(np.float64) - ref[i])))
        pytest.fail(f"{what}: {i.size} of {ref.size} elements differ; first at {j}: "
                    f"ours {ours[j]!r} ref {ref[j]!r}; max abs err {err:g} (max|x| {scale:g})")


def random_blocks(rng, t, n_blocks):
    _, bb = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    for off in F16_SCALES.get(t, []):
        scales = rng.uniform(-2.0, 2.0, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw


# ---- the table ------------------------------------------------------------------------------

def test_table_matches_gguf(lib):
    for t, (be, bb) in GGML_QUANT_SIZES.items():
        inf = info(lib, t)
        if inf is None:  # a type Whale does not know (IQ*, TQ*, MXFP4, ...)
            continue
        assert inf.type == int(t)
        assert inf.name.decode() == t.name
        assert inf.block_elems == be, t.name
        if t == T.Q8_1:
            # gguf-py's table says 40 (a stale float d, float s layout); ggml's block_q8_1 is
            # {half d; half s; int8 qs[32]}, static_assert'ed to 36 in ggml-common.h.
            assert inf.block_bytes == 36
        else:
            assert inf.block_bytes == bb, t.name
    required = PLAIN_TYPES + BLOCK_TYPES
    for t in required:
        assert info(lib, t) is not None and info(lib, t).can_dequantize, t.name
    assert info(lib, WHALE_F8_E4M3).can_dequantize
    assert info(lib, 4) is None and info(lib, 1003) is None


# ---- random blocks --------------------------------------------------------------------------

@pytest.mark.parametrize("t", BLOCK_TYPES + [T.BF16], ids=lambda t: t.name)
def test_random_blocks(lib, t):
    rng = np.random.default_rng([SEED, int(t)])
    for n_blocks in (1, 3, 7, 64, 129):
        raw = random_blocks(rng, t, n_blocks).reshape(-1)
        ref = quants.dequantize(raw, t)
        assert_same(whale_dequant(lib, t, raw), ref, f"{t.name} x{n_blocks} blocks")


@pytest.mark.parametrize("t", BLOCK_TYPES, ids=lambda t: t.name)
def test_random_blocks_extreme_scales(lib, t):
    """All 2^16 f16 bit patterns as scales, incl. subnormals, inf and NaN (where the ref
    produces inf - inf = NaN, ours must too)."""
    rng = np.random.default_rng([SEED, int(t), 1])
    _, bb = GGML_QUANT_SIZES[t]
    n_blocks = 4096 if bb < 100 else 512
    raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    for off in F16_SCALES[t]:
        h = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint16)
        h[: min(n_blocks, 64)] = np.array([0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                                            0xfbff, 0x7c00, 0xfc00, 0x7e00] * 7)[:min(n_blocks, 64)]
        raw[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    raw = raw.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = quants.dequantize(raw, t)
    assert_same(whale_dequant(lib, t, raw), ref, f"{t.name} extreme scales")


def test_plain_types(lib):
    rng = np.random.default_rng([SEED, 99])
    for n in (1, 5, 1000):
        f = rng.standard_normal(n).astype(np.float32) * np.float32(1e3)
        assert_same(whale_dequant(lib, T.F32, f.view(np.uint8)), f, "F32")
        h = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)  # every kind of half, NaN too
        assert_same(whale_dequant(lib, T.F16, h.view(np.uint8)),
                    quants.dequantize(h.view(np.uint8), T.F16), "F16")
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    assert_same(whale_dequant(lib, T.F16, every.view(np.uint8)),
                every.view(np.float16).astype(np.float32), "F16 all 65536")
    assert_same(whale_dequant(lib, T.BF16, every.view(np.uint8)),
                (every.astype(np.uint32) << 16).view(np.float32), "BF16 all 65536")


# ---- conversions ----------------------------------------------------------------------------

def _f32_samples(rng, n):
    """Random floats across the whole range plus the half subnormal/overflow edges."""
    bits = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32)
    near = rng.uniform(-70000, 70000, size=n).astype(np.float32)
    tiny = (rng.uniform(-1, 1, size=n) * 2.0 ** -14).astype(np.float32)
    pos = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)  # finite halves
    mids = ((pos[:-1] + pos[1:]) / 2).astype(np.float32)  # exact ties: round to even
    return np.concatenate([bits.view(np.float32), near, tiny, mids, -mids])


def test_f32_to_fp16_matches_numpy(lib):
    x = _f32_samples(np.random.default_rng([SEED, 7]), 20000)
    x = x[np.isfinite(x) | np.isinf(x)]
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    ours = np.array([lib.f32_to_fp16(float(v)) for v in x], dtype=np.uint16)
    nan = np.isnan(x)
    assert (ours[~nan] == ref[~nan]).all(), f"first diff at {x[~nan][ours[~nan] != ref[~nan]][:5]}"
    # NaN stays NaN with its sign (numpy may or may not quiet it; we always do)
    assert np.isnan(ours[nan].view(np.float16)).all()
    assert ((ours[nan] & 0x8000) == (ref[nan] & 0x8000)).all()


def test_f32_to_bf16_matches_gguf(lib):
    x = _f32_samples(np.random.default_rng([SEED, 8]), 20000)
    ref = quants.quantize(x, T.BF16).view(np.uint16)  # ggml's rounding, NaN forced quiet
    ours = np.array([lib.f32_to_bf16(float(v)) for v in x], dtype=np.uint16)
    # ctypes hands a float over as a double, which quiets signalling NaNs on the way, so NaN
    # payload cases (0x7f800001 must not become inf) are left to tests/unit/test_dtype.c
    nan = np.isnan(x)
    assert (ours[~nan] == ref[~nan]).all()
    assert np.isnan((ours[nan].astype(np.uint32) << 16).view(np.float32)).all()


def _e4m3fn_ref(v):
    """FP8 E4M3 "fn" from the OCP spec, computed independently: bias 7, no inf, S.1111.111 NaN."""
    s = -1.0 if v & 0x80 else 1.0
    e, m = (v >> 3) & 0xF, v & 7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return s * m / 8 * 2.0 ** -6
    return s * (1 + m / 8) * 2.0 ** (e - 7)


def _e5m2_ref(v):
    s = -1.0 if v & 0x80 else 1.0
    e, m = (v >> 2) & 0x1F, v & 3
    if e == 31:
        return s * float("inf") if m == 0 else float("nan")
    if e == 0:
        return s * m / 4 * 2.0 ** -14
    return s * (1 + m / 4) * 2.0 ** (e - 15)


@pytest.mark.parametrize("t,conv,ref", [(WHALE_F8_E4M3, "fp8_e4m3_to_f32", _e4m3fn_ref),
                                        (WHALE_F8_E5M2, "fp8_e5m2_to_f32", _e5m2_ref)],
                         ids=["E4M3", "E5M2"])
def test_fp8_all_codes(lib, t, conv, ref):
    codes = np.arange(256, dtype=np.uint8)
    want = np.array([ref(int(v)) for v in codes], dtype=np.float32)
    one = np.array([getattr(lib, conv)(int(v)) for v in codes], dtype=np.float32)
    assert_same(one, want, conv)
    out = np.full(256 + GUARD, GUARD_VAL, dtype=np.float32)
    lib.dequantize_row(t, codes.ctypes.data, out.ctypes.data, 256)
    assert (out[256:] == GUARD_VAL).all()
    assert_same(out[:256], want, f"dequantize_row {conv}")
    if t == WHALE_F8_E4M3:
        assert want[0x7E] == 448 and np.isnan(want[0x7F]) and not np.isinf(want).any()


# ---- real tensors ---------------------------------------------------------------------------

def _model_path():
    home = Path(os.environ.get("WHALE_HOME", Path.home() / ".cache" / "whale"))
    for p in (home / "models" / "default.gguf", Path("/tmp/dl/sns.gguf")):
        if p.is_file():
            return p
    return None


@pytest.fixture(scope="module")
def real_tensors():
    path = _model_path()
    if path is None:
        pytest.skip("no model: neither $WHALE_HOME/models/default.gguf nor /tmp/dl/sns.gguf exists")
    reader = gguf.GGUFReader(str(path))  # several seconds: it parses the whole vocabulary
    picked = {}
    for t in reader.tensors:
        if len(picked.setdefault(t.tensor_type, [])) < REAL_TENSORS_PER_TYPE:
            picked[t.tensor_type].append(t)
    return path, picked


def test_real_tensors(lib, real_tensors):
    path, picked = real_tensors
    checked = []
    for qtype, tensors in picked.items():
        inf = info(lib, qtype)
        if inf is None or not inf.can_dequantize:
            continue  # a type Whale cannot dequantize (e.g. IQ*): nothing to compare
        try:
            quants.dequantize(np.zeros(GGML_QUANT_SIZES[qtype][1], dtype=np.uint8), qtype)
        except NotImplementedError:
            continue
        for t in tensors:
            raw = np.asarray(t.data).reshape(-1).view(np.uint8)
            n_blocks = min(raw.size // inf.block_bytes, REAL_TENSOR_BYTES // inf.block_bytes)
            raw = np.ascontiguousarray(raw[: n_blocks * inf.block_bytes])
            ours = whale_dequant(lib, qtype, raw)
            assert_same(ours, quants.dequantize(raw, qtype), f"{path.name}:{t.name} ({qtype.name})")
            assert np.isfinite(ours).all(), f"{t.name}: non-finite weights"
            checked.append(qtype.name)
    assert checked, f"{path}: no tensor of a type both sides can dequantize"
    print(f"{path}: compared {len(checked)} tensors: {sorted(set(checked))}")

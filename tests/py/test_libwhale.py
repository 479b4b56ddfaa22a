"""libwhale, the public C API (include/whale.h), as someone outside the project uses it.

1. `cmake --install` lays out include/whale.h, lib/libwhale.a, lib/libwhale.so (soname
   libwhale.so.<WHALE_SOVERSION>, only whale_* exported) and lib/pkgconfig/whale.pc;
   examples/simple.c builds against it with pkg-config, shared and static, and answers.
2. whale_score (teacher forcing) against transformers: log-softmax of the reference logits of
   the tiny models (tests/golden/tiny_logits.json, made by make_golden.py), called through
   ctypes on the shared library."""
import ctypes
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import DEFAULT_MODEL, REPO

BUILD = REPO / "build"
GOLDEN = REPO / "tests" / "golden"
sys.path.insert(0, str(GOLDEN))
import tiny_models  # noqa: E402

SCORE_TOL = 1e-4  # max-abs log-probability error in F32 (observed ~1e-6)


def soversion():
    return re.search(r"#define WHALE_SOVERSION (\d+)", (REPO / "include" / "whale.h").read_text()).group(1)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    d = tmp_path_factory.mktemp("prefix")
    subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(d)], check=True, capture_output=True)
    return d


def test_install_layout(prefix):
    so = prefix / "lib" / "libwhale.so"
    for f in ("include/whale.h", "lib/libwhale.a", "lib/pkgconfig/whale.pc"):
        assert (prefix / f).is_file(), f
    assert so.exists()
    dyn = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
    assert f"Library soname: [libwhale.so.{soversion()}]" in dyn
    syms = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True, check=True).stdout
    names = [ln.split()[-1].split("@")[0] for ln in syms.splitlines() if ln.strip() and ln.split()[-2] in "TDBRW"]
    names = [n for n in names if n != "WHALE_0"]
    assert names and all(n.startswith("whale_") for n in names), [n for n in names if not n.startswith("whale_")][:10]
    for needed in ("whale_model_open", "whale_engine_new", "whale_submit", "whale_generate", "whale_score"):
        assert needed in names


def pkg(prefix, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    return subprocess.run(["pkg-config", *args, "whale"], env=env, capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.parametrize("link", ["shared", "static"])
def test_example_builds_against_the_install_and_answers(prefix, tmp_path, link):
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"{DEFAULT_MODEL} missing (scripts/setup fetches the default model)")
    exe = tmp_path / "simple"
    src = str(REPO / "examples" / "simple.c")
    if link == "shared":
        cmd = ["cc", "-Wall", "-Werror", src, *pkg(prefix, "--cflags", "--libs"), "-o", str(exe)]
    else:
        libs = [a for a in pkg(prefix, "--static", "--libs") if a != "-lwhale"]
        cmd = ["cc", "-Wall", "-Werror", src, *pkg(prefix, "--cflags"), str(prefix / "lib" / "libwhale.a"), *libs, "-o", str(exe)]
    subprocess.run(cmd, check=True)
    needed = subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True).stdout
    assert ("libwhale.so" in needed) == (link == "shared")
    env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    p = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Paris" in p.stdout and "finish: stop" in p.stdout, p.stdout


def lib():
    so = BUILD / "libwhale.so"
    if not so.exists():
        pytest.fail(f"{so} missing: make builds it")
    L = ctypes.CDLL(str(so))
    L.whale_model_open.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    L.whale_model_close.argtypes = [ctypes.c_void_p]
    L.whale_score.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_float), ctypes.c_void_p]
    return L


class Err(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


@pytest.mark.parametrize("arch", ["qwen2", "deepseek_v3"])
@pytest.mark.parametrize("start", [1, 5])
def test_score_matches_reference(tmp_path, arch, start):
    golden = json.loads((GOLDEN / "tiny_logits.json").read_text())
    ref_logits = np.array(golden["models"][arch], dtype=np.float64)
    ids = golden["prompt"]
    m = ref_logits - ref_logits.max(1, keepdims=True)
    logp = m - np.log(np.exp(m).sum(1, keepdims=True))
    want = np.array([logp[i - 1, ids[i]] for i in range(start, len(ids))])
    L = lib()
    model = ctypes.c_void_p()
    err = Err()
    path = tiny_models.write(arch, tmp_path / arch)
    assert L.whale_model_open(ctypes.byref(model), str(path).encode(), None, ctypes.byref(err)) == 0, err.msg
    try:
        arr = (ctypes.c_int32 * len(ids))(*ids)
        out = (ctypes.c_float * (len(ids) - start))()
        assert L.whale_score(model, arr, len(ids), start, out, ctypes.byref(err)) == 0, err.msg
        got = np.array(out[:], dtype=np.float64)
        diff = float(np.abs(got - want).max())
        print(f"{arch} from {start}: max-abs {diff:.2e}")
        assert diff < SCORE_TOL
        # bad input is a clear error, not a crash
        assert L.whale_score(model, arr, len(ids), 0, out, ctypes.byref(err)) == -4 and b"scoring starts" in err.msg
        bad = (ctypes.c_int32 * 3)(1, 10**6, 2)
        assert L.whale_score(model, bad, 3, 1, out, ctypes.byref(err)) == -4 and b"outside the vocabulary" in err.msg
    finally:
        L.whale_model_close(model)


class ModelParams(ctypes.Structure):
    _fields_ = [("n_threads", ctypes.c_int), ("kv_type", ctypes.c_int), ("progress", ctypes.c_int),
                ("vocab_only", ctypes.c_int)]


class Ids(ctypes.Structure):
    _fields_ = [("v", ctypes.POINTER(ctypes.c_int32)), ("n", ctypes.c_size_t), ("cap", ctypes.c_size_t)]


def test_vocab_only_model_tokenizes_like_the_cli():
    """A model opened for its vocabulary only (no weights read) tokenizes as `whale tokenize`
    does, decodes back, and refuses to make an engine or score, with a message."""
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"{DEFAULT_MODEL} missing (scripts/setup fetches the default model)")
    from conftest import run_whale
    L = lib()
    L.whale_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(Ids),
                                 ctypes.c_void_p]
    L.whale_detokenize.restype = ctypes.c_void_p
    L.whale_detokenize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_void_p]
    L.whale_engine_new.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    L.whale_ids_free.argtypes = [ctypes.POINTER(Ids)]
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    text = "Hello, world: 你好 12345 <|im_end|>".encode()
    want = [int(t) for t in run_whale("tokenize", "--ids", input=text).stdout.split()]
    model, err, ids = ctypes.c_void_p(), Err(), Ids()
    params = ModelParams(vocab_only=1)
    assert L.whale_model_open(ctypes.byref(model), b"default", ctypes.byref(params), ctypes.byref(err)) == 0, err.msg
    try:
        assert L.whale_tokenize(model, text, len(text), 0, ctypes.byref(ids), ctypes.byref(err)) == 0, err.msg
        assert ids.v[:ids.n] == want
        s = L.whale_detokenize(model, ids.v, ids.n, None)
        assert ctypes.string_at(s) == text
        libc.free(s)
        eng = ctypes.c_void_p()
        assert L.whale_engine_new(ctypes.byref(eng), model, None, ctypes.byref(err)) == -4
        assert b"vocabulary only" in err.msg
    finally:
        L.whale_ids_free(ctypes.byref(ids))
        L.whale_model_close(model)

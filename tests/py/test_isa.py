"""WHALE_ISA reaches every kernel (kernels/isa.h): tiny random models (whale synth) give
byte-identical logits under WHALE_ISA=scalar, avx2 and avx512 — a dense Qwen2 shape on the
integer path (q4_k_m: Q4_K and Q6_K rows) and on the float path (f16), and a DeepSeek shape
(q8_0, MLA attention and MoE) with its KV cache in F32 and in F16 — for a prompt run at once
(prefill tiles) and token by token (the decode kernels). `whale bench` reports the level it ran
(a line and the JSON field "isa"), which shows the variable is read: WHALE_ISA=scalar runs
scalar, WHALE_NO_SIMD=1 too, an unknown value is ignored (the CPU's level kept). Levels this
CPU lacks are skipped, with a message; the CPU's level is read from /proc/cpuinfo here, apart
from isa.c's cpuid, and the two must agree."""
import json
import os
import pathlib
import subprocess

import pytest

from conftest import WHALE, run_whale

LEVELS = ["scalar", "avx2", "avx512"]
PROMPT = "1 2 3 4 5 6 7 8 9"  # nine tokens: 4-token tiles and a remainder


def cpu_level():
    """The level isa.c should detect, from the kernel's CPU flags (Linux)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if not {"avx2", "fma", "f16c"} <= flags:
        return "scalar"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"} <= flags:
        return "avx512"
    return "avx2"


def have(level):
    top = cpu_level()
    return top is not None and LEVELS.index(level) <= LEVELS.index(top)


def run_env(env, *args):
    p = subprocess.run([str(WHALE), *args], capture_output=True, env={**os.environ, **env})
    if p.returncode != 0:
        raise AssertionError(f"whale {' '.join(args)} ({env}) failed: {p.stderr.decode(errors='replace')}")
    return p


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("isa")
    out = {}
    for shape, typ in [("test-qwen2", "q4_k_m"), ("test-qwen2", "f16"), ("test-deepseek2", "q8_0")]:
        p = d / f"{shape}-{typ}.gguf"
        run_whale("synth", "--shape", shape, "--type", typ, "-o", str(p))
        out[f"{shape}-{typ}"] = p
    return out


@pytest.mark.parametrize("level", ["avx2", "avx512"])
@pytest.mark.parametrize("name, extra", [
    ("test-qwen2-q4_k_m", []),
    ("test-qwen2-q4_k_m", ["--step", "1"]),
    ("test-qwen2-f16", []),
    ("test-qwen2-f16", ["--step", "1"]),
    ("test-deepseek2-q8_0", []),
    ("test-deepseek2-q8_0", ["--step", "1"]),
    ("test-deepseek2-q8_0", ["--kv-type", "f16"]),
])
def test_logits_same_bits_as_scalar(models, name, extra, level, tmp_path):
    if not have(level):
        pytest.skip(f"WHALE_ISA={level}: this CPU has only {cpu_level()}")
    raws = {}
    for lv in ("scalar", level):
        raw = tmp_path / f"{lv}.f32"
        run_env({"WHALE_ISA": lv}, "logits", "-m", str(models[name]), "--ids", PROMPT, "--raw", str(raw), "--top", "1",
                *extra)
        raws[lv] = raw.read_bytes()
    assert len(raws["scalar"]) > 0 and len(raws["scalar"]) % (9 * 4) == 0  # 9 positions of float32 rows
    assert raws[level] == raws["scalar"], f"{name} {extra}: WHALE_ISA={level} differs from scalar"


def bench_isa(model, env):
    p = run_env(env, "bench", "-m", str(model), "-p", "2", "-n", "1", "-r", "1", "-w", "0", "-t", "1", "--bw-mib", "16",
                "--json")
    return json.loads(p.stdout.decode())["isa"]


def test_bench_reports_the_level(models):
    model = models["test-qwen2-q4_k_m"]
    top = cpu_level()
    if top is None:
        pytest.skip("no /proc/cpuinfo: the CPU's level is unknown here")
    clean = {k: v for k, v in os.environ.items() if k not in ("WHALE_ISA", "WHALE_NO_SIMD")}
    p = subprocess.run([str(WHALE), "bench", "-m", str(model), "-p", "2", "-n", "1", "-r", "1", "-w", "0", "-t", "1",
                        "--bw-mib", "16", "--json"], capture_output=True, env=clean, check=True)
    assert json.loads(p.stdout.decode())["isa"] == top  # isa.c's cpuid agrees with the kernel's flags
    assert bench_isa(model, {"WHALE_ISA": "scalar"}) == "scalar"
    assert bench_isa(model, {"WHALE_NO_SIMD": "1"}) == "scalar"
    assert bench_isa(model, {"WHALE_ISA": "avx512"}) == top  # never above what the CPU has
    assert bench_isa(model, {"WHALE_ISA": "avx2"}) == ("scalar" if top == "scalar" else "avx2")
    assert bench_isa(model, {"WHALE_ISA": "sse9"}) == top  # unknown: ignored
    table = run_env({"WHALE_ISA": "sse9"}, "bench", "-m", str(model), "-p", "2", "-n", "1", "-r", "1", "-w", "0",
                    "--bw-mib", "16").stdout.decode()
    assert f"kernels: {top} (this CPU has {top};" in table and "was ignored" in table
    table = run_env({"WHALE_ISA": "scalar"}, "bench", "-m", str(model), "-p", "2", "-n", "1", "-r", "1", "-w", "0",
                    "--bw-mib", "16").stdout.decode()
    assert f"kernels: scalar (this CPU has {top};" in table and "ignored" not in table

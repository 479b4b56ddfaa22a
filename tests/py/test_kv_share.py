"""Shared KV pages: concurrent requests of one owner with a common system prompt hold its cache
pages once (model/kv_cache.c, engine/scheduler.c), and their replies are those of the same
requests run one at a time on a server that shares nothing.

Tiny checkpoints (tests/golden/tiny_models.py) with a byte-level tokenizer: Qwen2 (dense
attention) and DeepSeek-V2 (MLA, whose decode chunks read through the page table too). Eight
requests at an 8-slot server; the first computes the system prompt and the others map its whole
64-token pages (prompt_cache_hit_tokens says so), then write their own pages. /metrics'
whale_kv_pages_used counts the pages in memory: the shared ones once. With the tiny models a
prompt is computed before the next request arrives; with the default model and a ~700-token
system prompt the eight arrive while the first is still computing it (chunks of 256 rows per
step), so the others wait for its pages rather than compute them as well.
Two owners (accounts mode) never share: tests/py/test_cache_owner.py and the C unit test
tests/unit/test_kv_cache.c (mapping, copy on write, release) cover the rest."""
import concurrent.futures
import json
import math
import signal
import sys

import pytest

from conftest import DEFAULT_MODEL, REPO
from test_serve import raw as serve_raw, start as serve_start

sys.path.insert(0, str(REPO / "tests" / "golden"))
import tiny_models  # noqa: E402
from test_speculative import byte_level_tokenizer, metrics  # noqa: E402

SYSTEM = " ".join(f"fact {i}: the sea is wide." for i in range(8))  # ~140 tokens
QUESTIONS = [f"question {i}: what is {chr(97 + i)}?" for i in range(8)]
PAGE = 64


def ask(port, q, n=40):
    body = {"model": "deepseek-chat", "max_tokens": n, "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]}
    st, data = serve_raw(port, "POST", "/v1/chat/completions", json.dumps(body))
    assert st == 200, data
    r = json.loads(data)
    return r["choices"][0]["message"]["content"], r["usage"]


@pytest.mark.parametrize("arch", ["qwen2", "deepseek_v2"])
def test_concurrent_requests_share_the_system_prompt(tmp_path, arch):
    d = byte_level_tokenizer(tiny_models.write(arch, tmp_path / arch), tiny_models.VOCAB)
    common = ("-m", str(d), "--chat-format", "chatml", "--ctx", "256", "-t", "1", "--cache-ram", "0",
              "--cache-disk", "0")
    solo, sp = serve_start(*common, "--parallel", "1")
    try:
        want = [ask(sp, q) for q in QUESTIONS]
    finally:
        solo.send_signal(signal.SIGTERM)
        solo.wait(timeout=60)
    shared, port = serve_start(*common, "--parallel", "8")
    try:
        with concurrent.futures.ThreadPoolExecutor(len(QUESTIONS)) as ex:
            got = list(ex.map(lambda q: ask(port, q), QUESTIONS))
        m = metrics(port)
    finally:
        shared.send_signal(signal.SIGTERM)
        assert shared.wait(timeout=60) == 0
    assert [g[0] for g in got] == [w[0] for w in want]  # the replies of requests run alone
    prompts = [u["prompt_tokens"] for _, u in got]
    hits = sorted(u["prompt_cache_hit_tokens"] for _, u in got)
    common_pages = min(prompts) // PAGE  # the system prompt's whole pages (the questions differ after it)
    print(f"{arch}: prompts {prompts}, cache hits {hits}, pages used {m['whale_kv_pages_used']:.0f}")
    assert common_pages >= 2
    assert hits[0] == 0 and all(h >= common_pages * PAGE for h in hits[1:])  # one computed it, seven mapped it
    # every slot keeps its rows: the common pages once, then each request's own
    own = [math.ceil((u["prompt_tokens"] + u["completion_tokens"]) / PAGE) - common_pages for _, u in got]
    unshared = sum(o + common_pages for o in own)
    assert m["whale_kv_pages_used"] <= common_pages + sum(own) < unshared


def test_a_burst_computes_the_system_prompt_once():
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    system = " ".join(f"Fact {i}: whales are mammals that breathe air and live in the sea." for i in range(50))
    common = ("--ctx", "1024", "--cache-ram", "64", "--cache-disk", "0", "-t", "2")

    def ask_default(port, q):
        body = {"model": "default", "max_tokens": 16, "temperature": 0,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}]}
        st, data = serve_raw(port, "POST", "/v1/chat/completions", json.dumps(body))
        assert st == 200, data
        r = json.loads(data)
        return r["choices"][0]["message"]["content"], r["usage"]

    solo, sp = serve_start(*common, "--parallel", "1")
    try:
        want = [ask_default(sp, q) for q in QUESTIONS]
    finally:
        solo.send_signal(signal.SIGTERM)
        solo.wait(timeout=60)
    shared, port = serve_start(*common, "--parallel", "8")
    try:
        with concurrent.futures.ThreadPoolExecutor(len(QUESTIONS)) as ex:
            got = list(ex.map(lambda q: ask_default(port, q), QUESTIONS))
        m = metrics(port)
    finally:
        shared.send_signal(signal.SIGTERM)
        assert shared.wait(timeout=60) == 0
    assert [g[0] for g in got] == [w[0] for w in want]
    prompts = [u["prompt_tokens"] for _, u in got]
    hits = sorted(u["prompt_cache_hit_tokens"] for _, u in got)
    common_pages = (min(prompts) - 20) // PAGE  # the system prompt's whole pages, before the questions
    print(f"default: prompts {prompts}, cache hits {hits}, pages used {m['whale_kv_pages_used']:.0f}")
    assert hits[0] == 0 and all(h >= common_pages * PAGE for h in hits[1:])
    own = [math.ceil((u["prompt_tokens"] + u["completion_tokens"]) / PAGE) - common_pages for _, u in got]
    assert m["whale_kv_pages_used"] <= common_pages + sum(own)
    # the prompt was computed once: the steps' prompt rows, read off the prompt counters
    assert m["whale_prompt_tokens_total"] - m["whale_prompt_cache_hit_tokens_total"] < 2 * max(prompts)

"""`whale serve` against the official `openai` Python SDK and raw HTTP, on the default model:
models, chat completions (plain and streamed, with usage and DeepSeek's cache fields), cache
hits on a repeated long prefix, stop strings, concurrency (each of 8 concurrent greedy streams
equals its solo output: batching does not change results), client disconnect freeing its
sequence, and the error bodies (400, 404, 405, 413, 422, 503)."""
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import DEFAULT_MODEL, WHALE

openai = pytest.importorskip("openai")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*flags, stderr=subprocess.PIPE):
    """`whale serve` with flags on a free port, answering /health: (process, port). stderr: where
    its log goes (a pipe by default, read when it fails to start)."""
    port = free_port()
    if "--cache-dir" not in flags:  # never the user's context cache: a fresh one per server
        flags = (*flags, "--cache-dir", tempfile.mkdtemp(prefix="whale-test-kv-"))
    p = subprocess.Popen([str(WHALE), "serve", "--port", str(port), *flags], stderr=stderr)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p, port
        except OSError:
            time.sleep(0.1)
        if p.poll() is not None:
            raise AssertionError(p.stderr.read().decode() if p.stderr else "whale serve exited")
    p.kill()
    raise AssertionError("whale serve did not come up")


@pytest.fixture(scope="module")
def server():
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    p, port = start("--parallel", "4", "--ctx", "2048", "--queue", "16")
    yield port
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key="none", max_retries=0)


def raw(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def ask(client, text, n=24, **kw):
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": text}],
                                          temperature=0, max_tokens=n, **kw)


def test_models(client):
    """The model first, then its aliases: the catalog's names for it and DeepSeek's."""
    ids = [m.id for m in client.models.list().data]
    assert ids == ["default", "qwen2.5-coder-0.5b", "qwen2.5-coder:0.5b", "deepseek-chat"]


def test_chat_completion_and_usage(client):
    r = ask(client, "What is 2+2? Reply with the number only.")
    assert "4" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    u = r.usage
    assert u.prompt_tokens > 10 and 0 < u.completion_tokens <= 24
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    extra = u.model_extra
    assert extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"] == u.prompt_tokens
    assert u.completion_tokens_details.reasoning_tokens == 0  # not a reasoning model


def test_stream_equals_plain_and_reports_usage(client):
    plain = ask(client, "Name three colors.", n=20).choices[0].message.content
    chunks = list(ask(client, "Name three colors.", n=20, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_cache_hit_on_a_repeated_prefix(client):
    system = "You are a careful assistant. " + " ".join(f"Rule {i}: answer briefly and precisely." for i in range(40))
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": "Say OK."}]
    first = client.chat.completions.create(model="default", messages=msgs, temperature=0, max_tokens=4)
    msgs[1]["content"] = "Say yes."
    second = client.chat.completions.create(model="default", messages=msgs, temperature=0, max_tokens=4)
    hit = second.usage.model_extra["prompt_cache_hit_tokens"]
    assert first.usage.prompt_tokens > 300
    assert hit >= 256 and hit % 64 == 0 and hit < second.usage.prompt_tokens


def metrics_values(text):
    """/metrics as {name{labels}: value}, the model label dropped (these servers serve one model)."""
    return {re.sub(r',?model="[^"]*"', "", l.split()[0]).replace("{}", ""): float(l.split()[1])
            for l in text.splitlines() if l and not l.startswith("#")}


def metric(port, name):
    values = metrics_values(raw(port, "GET", "/metrics")[1].decode())
    if name not in values:
        raise AssertionError(f"{name} not in /metrics")
    return values[name]


def test_context_cache_survives_eviction_and_restart(tmp_path):
    """The context cache: a long prefix computed once is served from memory after its slot was
    taken by another prompt, from disk after a restart, and never from a damaged file; the
    reply's log probabilities are the same bits as with no cache at all (the cached rows are
    exactly the computed ones)."""
    system = "You are a careful assistant. " + " ".join(f"Rule {i}: answer briefly and precisely." for i in range(40))
    other = "You are a poet. " + " ".join(f"Verse {i}: the sea is wide and grey." for i in range(40))
    cache = str(tmp_path / "kv")

    def chat(port, sys_text, user):
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        r = c.chat.completions.create(model="default", temperature=0, max_tokens=6, logprobs=True,
                                      messages=[{"role": "system", "content": sys_text},
                                                {"role": "user", "content": user}])
        return (r.usage.model_extra["prompt_cache_hit_tokens"],
                [(t.token, t.logprob) for t in r.choices[0].logprobs.content])

    def serve(*flags):
        return start("--parallel", "1", "--ctx", "1024", *flags)

    p, port = serve("--cache-dir", cache)
    try:
        assert chat(port, system, "Say OK.")[0] == 0
        assert chat(port, other, "Say OK.")[0] == 0  # the only slot now holds another prefix
        hit, yes = chat(port, system, "Say yes.")
        assert hit >= 256 and hit % 64 == 0
        assert metric(port, 'whale_context_cache_block_hits_total{tier="ram"}') >= hit // 64
        assert metric(port, 'whale_context_cache_blocks{tier="disk"}') >= 2 * (hit // 64)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0

    p, port = serve("--cache-dir", cache)  # a restart: the blocks come back from disk
    try:
        assert chat(port, system, "Say yes.") == (hit, yes)
        assert metric(port, 'whale_context_cache_block_hits_total{tier="disk"}') >= hit // 64
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0

    p, port = serve("--cache-ram", "0", "--cache-disk", "0")  # no cache: computed, same bits
    try:
        assert chat(port, system, "Say yes.") == (0, yes)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0

    files = list((tmp_path / "kv").rglob("*.kvb"))  # <dir>/<model>/<owner>/<block>.kvb
    assert files
    for f in files:  # damage every block: each is then a miss, not an error
        data = bytearray(f.read_bytes())
        data[-3] ^= 0x5A
        f.write_bytes(bytes(data))
    p, port = serve("--cache-dir", cache)
    try:
        assert chat(port, system, "Say yes.") == (0, yes)
        assert raw(port, "GET", "/health")[0] == 200
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_stop_string(client):
    r = ask(client, "Count from 1 to 10, separated by commas.", n=40, stop=[", 5"])
    text = r.choices[0].message.content
    assert ", 5" not in text and "4" in text and r.choices[0].finish_reason == "stop"


def test_concurrent_streams_equal_their_solo_output(client):
    prompts = [f"Write one sentence about the number {i}." for i in range(16)]
    solo = [ask(client, p, n=24).choices[0].message.content for p in prompts]

    def streamed(p):
        return "".join(c.choices[0].delta.content or "" for c in ask(client, p, n=24, stream=True) if c.choices)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        together = list(ex.map(streamed, prompts))
    assert together == solo, [(i, a, b) for i, (a, b) in enumerate(zip(together, solo)) if a != b]


def test_disconnect_frees_the_sequence(server):
    s = socket.create_connection(("127.0.0.1", server))
    body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 1000,
                       "stream": True, "temperature": 0})
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    got = b""
    s.settimeout(60)
    while b"data:" not in got:  # the headers may come in a packet of their own
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    s.close()
    for _ in range(300):
        st, b = raw(server, "GET", "/health")
        if json.loads(b)["active"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"the disconnected stream kept its sequence: {b}")


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    (b"[]", 400, None),
    (json.dumps({"messages": []}).encode(), 422, "messages"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": 3}).encode(), 422, "temperature"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}).encode(), 422, "max_tokens"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), 422, "messages[0]"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y",
                                                                  "tool_calls": {"a": 1}}]}).encode(), 422, "messages[1]"),
    (json.dumps({"messages": [{"role": "assistant", "content": "y", "reasoning_content": {"a": 1}},
                              {"role": "user", "content": "x"}]}).encode(), 422, "messages[0]"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}], "model": "gpt-9"}).encode(), 400, "model"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}], "stop": 5}).encode(), 422, "stop"),
    (json.dumps({"messages": [{"role": "user", "content": "x" * 40000}]}).encode(), 400, None),
])
def test_error_bodies(server, body, status, param):
    st, b = raw(server, "POST", "/v1/chat/completions", body)
    assert st == status, b
    err = json.loads(b)["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and err["param"] == param


def test_routes_and_limits(server):
    assert raw(server, "GET", "/nope")[0] == 404
    assert raw(server, "GET", "/v1/chat/completions")[0] == 405
    # an oversized body is refused from its Content-Length, before it is read (the server may
    # close while the client still sends)
    s = socket.create_connection(("127.0.0.1", server), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (9 << 20))
    try:
        s.sendall(b"x" * (9 << 20))
    except OSError:
        pass
    assert s.recv(4096).startswith(b"HTTP/1.1 413")
    s.close()
    assert raw(server, "GET", "/health")[0] == 200  # still serving


def test_full_queue_gets_503_at_once():
    p, port = start("--parallel", "1", "--queue", "1", "--ctx", "512")
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story about the sea."}],
                           "max_tokens": 400, "temperature": 0, "stream": True}).encode()
        socks = []

        def until(active, waiting):
            for _ in range(400):
                h = json.loads(raw(port, "GET", "/health")[1])
                if h["active"] == active and h["waiting"] == waiting:
                    return
                time.sleep(0.05)
            raise AssertionError(h)
        for want in ((1, 0), (1, 1)):  # one running, then one waiting
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            socks.append(s)
            until(*want)
        t0 = time.time()
        st, b = raw(port, "POST", "/v1/chat/completions", body)
        assert st == 503 and time.time() - t0 < 2
        assert json.loads(b)["error"]["code"] == "server_busy"
        for s in socks:
            s.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_fill_in_the_middle(server):
    body = json.dumps({"prompt": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 12,
                       "temperature": 0}).encode()
    st, b = raw(server, "POST", "/beta/completions", body)
    r = json.loads(b)
    assert st == 200 and r["object"] == "text_completion"
    assert "return a + b" in r["choices"][0]["text"]


def test_plain_completion_with_the_sdk(client):
    r = client.completions.create(model="default", prompt="1, 2, 3, 4,", max_tokens=6, temperature=0)
    assert r.choices[0].text.strip().startswith("5") and r.usage.completion_tokens == 6
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="default", prompt="1, 2, 3, 4,", max_tokens=6, temperature=0, stream=True))
    assert text == r.choices[0].text


def test_metrics(server, client):
    ask(client, "Say hello.", n=4)
    st, b = raw(server, "GET", "/metrics")
    text = b.decode()
    values = metrics_values(text)
    assert st == 200 and values['whale_requests_total{code="200"}'] >= 1
    assert values["whale_generated_tokens_total"] >= 4 and values["whale_sequence_slots"] == 4
    assert 0 <= values["whale_prompt_cache_hit_ratio"] <= 1 and values["whale_kv_pages_used"] >= 1
    for k in ("whale_queue_depth", "whale_active_sequences", "whale_generation_tokens_per_second", "whale_kv_pages_total"):
        assert k in values


def test_reasoning_model_and_budget(tmp_path):
    """A random-weight model with the real R1-Distill vocabulary: the server answers in the R1
    format, with reasoning_content apart from content, and reasoning_budget closes the thinking
    after that many tokens with the whole closing sequence "\n</think>\n\n" (no more: a NUL
    byte forced after it once came out as the answer's first character), and the streamed and
    whole answers agree."""
    from conftest import reference_json, synth
    vocab = reference_json("deepseek-r1-distill-qwen-7b", tmp_path)
    model = synth(vocab, tmp_path / "r1tiny.gguf")
    p, port = start("-m", str(model), "--ctx", "256")
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        assert [m.id for m in c.models.list().data] == ["r1tiny", "deepseek-reasoner"]
        r = c.chat.completions.create(model="deepseek-reasoner", messages=[{"role": "user", "content": "hi"}],
                                      temperature=0, max_tokens=30, extra_body={"reasoning_budget": 5})
        msg = r.choices[0].message
        assert msg.model_extra["reasoning_content"] and "</think>" not in msg.content
        assert not msg.content.startswith("\ufffd")
        assert 5 <= r.usage.completion_tokens_details.reasoning_tokens <= 8  # budget + the closing tokens
        chunks = list(c.chat.completions.create(model="r1tiny", messages=[{"role": "user", "content": "hi"}],
                                                temperature=0, max_tokens=30, stream=True,
                                                extra_body={"reasoning_budget": 5}))
        thought = "".join(ch.choices[0].delta.model_extra.get("reasoning_content") or "" for ch in chunks if ch.choices)
        said = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert thought == msg.model_extra["reasoning_content"] and said == msg.content
        # function calling is refused for the R1 format (as DeepSeek's reasoner did), naming the field
        st, b = raw(port, "POST", "/v1/chat/completions", json.dumps(
            {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}))
        assert st == 422 and json.loads(b)["error"]["param"] == "tools"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_chat_prefix_completion(client):
    """DeepSeek's chat prefix completion: the last assistant message, marked prefix, starts the
    reply; the response continues it (here: code inside a fence, stopped at the closing fence)."""
    r = client.chat.completions.create(model="default", temperature=0, max_tokens=24, stop=["```"], messages=[
        {"role": "user", "content": "Write a Python hello world."},
        {"role": "assistant", "content": "```python\n", "prefix": True}])
    assert "print(" in r.choices[0].message.content and "```" not in r.choices[0].message.content
    st = client.chat.completions.with_raw_response.create
    with pytest.raises(openai.UnprocessableEntityError):
        st(model="default", max_tokens=4, messages=[{"role": "assistant", "content": "x", "prefix": True},
                                                    {"role": "user", "content": "y"}])


@pytest.mark.parametrize("temperature", [0, 0.9])
def test_json_mode(client, temperature):
    """response_format json_object constrains decoding to a JSON object, even when the prompt
    does not ask for JSON and when sampling."""
    for prompt in ("Give Alice (age 30, from Paris) as JSON with keys name, age, city.", "Tell me a joke."):
        r = client.chat.completions.create(model="default", messages=[{"role": "user", "content": prompt}],
                                           temperature=temperature, seed=7, max_tokens=80,
                                           response_format={"type": "json_object"})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        obj = json.loads(r.choices[0].message.content)
        assert isinstance(obj, dict) and obj


def test_logprobs(client):
    """logprobs / top_logprobs in OpenAI's shape: one entry per answer token, greedy picks the
    most likely, the alternatives come best first, and the streamed entries equal the plain ones."""
    import math
    r = ask(client, "Name a fruit.", n=8, logprobs=True, top_logprobs=3)
    entries = r.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == r.choices[0].message.content
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].token == e.token and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True) and sum(math.exp(x) for x in lps) <= 1 + 1e-5
        assert bytes(e.bytes).decode(errors="replace") == e.token
    streamed = [e for c in ask(client, "Name a fruit.", n=8, logprobs=True, top_logprobs=3, stream=True)
                if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in entries]
    with pytest.raises(openai.UnprocessableEntityError):
        ask(client, "x", n=2, top_logprobs=2)


# The 0.5B default model decides to call a tool only when the schema reads clearly (with the
# city's description it does, greedily, every time).
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string", "description": "The city"}},
                                               "required": ["city"]}}}]


def test_tool_call_round_trip(client):
    """Function calling: the model's <tool_call> block (kept valid JSON by constrained decoding)
    comes back as tool_calls with finish_reason tool_calls, plain and streamed; the call and its
    result go back in the history and the model continues."""
    msgs = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    r = client.chat.completions.create(model="default", messages=msgs, tools=TOOLS, temperature=0, max_tokens=60)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.tool_calls
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments)["city"] == "Paris"
    chunks = list(client.chat.completions.create(model="default", messages=msgs, tools=TOOLS, temperature=0,
                                                 max_tokens=60, stream=True))
    deltas = [d for ch in chunks if ch.choices for d in (ch.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and deltas[0].function.arguments == call.function.arguments
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    msgs += [c.message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18, "sky": "cloudy"})}]
    r2 = client.chat.completions.create(model="default", messages=msgs, tools=TOOLS, temperature=0, max_tokens=40)
    # the history with the call and its result is accepted and read (the 0.5B model may well call again)
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens + 20
    assert r2.choices[0].message.content or r2.choices[0].message.tool_calls
    # tool_choice none: no tools shown, so no calls
    r3 = client.chat.completions.create(model="default", messages=msgs[:1], tools=TOOLS, tool_choice="none",
                                        temperature=0, max_tokens=20)
    assert r3.choices[0].finish_reason != "tool_calls"


def test_forced_tool_choice(client, server):
    """tool_choice "required" and a named function force a call even where the model would answer
    in prose (a greeting), and the named one is the function called; a name not offered is 422."""
    tools = TOOLS + [{"type": "function", "function": {"name": "get_time", "description": "Current time in a city",
                                                       "parameters": {"type": "object", "properties": {
                                                           "city": {"type": "string"}}}}}]
    msgs = [{"role": "user", "content": "Hello! How are you today?"}]
    free = client.chat.completions.create(model="default", messages=msgs, tools=tools, temperature=0, max_tokens=30)
    assert free.choices[0].finish_reason != "tool_calls"  # left alone, it greets back
    for choice, name in (("required", None), ({"type": "function", "function": {"name": "get_time"}}, "get_time")):
        r = client.chat.completions.create(model="default", messages=msgs, tools=tools, tool_choice=choice,
                                           temperature=0, max_tokens=60)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls" and c.message.tool_calls, c.message
        f = c.message.tool_calls[0].function
        assert f.name in ("get_weather", "get_time") and (name is None or f.name == name)
        assert isinstance(json.loads(f.arguments), dict)
    body = json.dumps({"messages": msgs, "tools": tools,
                       "tool_choice": {"type": "function", "function": {"name": "launch_rockets"}}})
    st, b = raw(server, "POST", "/v1/chat/completions", body)
    assert st == 422 and json.loads(b)["error"]["param"] == "tool_choice"
    for bad in ({"tools": tools, "tool_choice": "required", "response_format": {"type": "json_object"}},
                {"tool_choice": "required"}, {"tools": [], "tool_choice": "required"}):
        st, b = raw(server, "POST", "/v1/chat/completions", json.dumps({"messages": msgs, **bad}))
        assert st == 422 and json.loads(b)["error"]["param"] == "tool_choice", bad

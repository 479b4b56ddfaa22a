"""Ollama's HTTP API on `whale serve` (issue #23), driven by Ollama's own Python client (PyPI
`ollama`, the documented request shapes): the served models listed by /api/tags (with their
Ollama-style aliases) and /api/ps; /api/chat and /api/generate, streamed (its NDJSON) and not,
answering exactly what the OpenAI endpoints answer for the same greedy request; fill in the
middle through generate's suffix; an empty prompt loads the model; format "json"; a reasoning
model's thinking apart, and think=False; the errors Ollama's clients expect (404 for a model not
served) in Ollama's shape."""
import json

import pytest

from conftest import DEFAULT_MODEL
from test_serve import raw, start

ollama = pytest.importorskip("ollama", reason="Python package ollama is missing: run scripts/setup")

OPTS = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def served(v3tiny):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    p, port = start("-m", "default", "-m", str(v3tiny), "--ctx", "1024", "--parallel", "2")
    yield port, ollama.Client(host=f"http://127.0.0.1:{port}")
    p.terminate()
    p.wait(timeout=60)


def openai_chat(port, model, messages, **kw):
    st, body = raw(port, "POST", "/v1/chat/completions", json.dumps(
        {"model": model, "messages": messages, "temperature": 0, "max_tokens": 24, **kw}))
    assert st == 200, body
    return json.loads(body)


def test_tags_ps_show_version(served):
    port, c = served
    names = [m.model for m in c.list().models]
    assert names[:4] == ["default", "qwen2.5-coder-0.5b", "qwen2.5-coder:0.5b", "deepseek-chat"]
    assert "v3tiny" in names and "deepseek-reasoner" in names
    assert all(m.size > 0 and m.details.format == "gguf" for m in c.list().models)
    assert [m.model for m in c.ps().models] == ["default"]  # the first is loaded at the start
    show = c.show("qwen2.5-coder:0.5b")
    assert "completion" in show.capabilities and "insert" in show.capabilities  # FIM tokens
    assert "thinking" in c.show("v3tiny").capabilities
    st, body = raw(port, "GET", "/api/version")
    assert st == 200 and json.loads(body)["version"]


def test_chat_plain_and_streamed_match_openai(served):
    port, c = served
    msgs = [{"role": "user", "content": "What is 2+2? Reply with the number only."}]
    want = openai_chat(port, "default", msgs)
    r = c.chat(model="default", messages=msgs, options=OPTS, stream=False)
    assert r.message.role == "assistant" and r.message.content == want["choices"][0]["message"]["content"]
    assert r.done and r.done_reason == "stop" and r.model == "default"
    assert r.prompt_eval_count == want["usage"]["prompt_tokens"] and r.eval_count == want["usage"]["completion_tokens"]
    assert r.total_duration > 0 and r.eval_duration >= 0
    parts = list(c.chat(model="qwen2.5-coder:0.5b", messages=msgs, options=OPTS, stream=True))
    assert "".join(p.message.content for p in parts) == r.message.content
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].eval_count == r.eval_count
    # without "stream", Ollama streams: one JSON object per line
    st, body = raw(port, "POST", "/api/chat", json.dumps({"model": "default", "messages": msgs, "options": OPTS}))
    lines = [json.loads(x) for x in body.decode().splitlines()]
    assert st == 200 and len(lines) >= 2 and lines[-1]["done"] and not lines[0]["done"]
    assert "".join(x["message"]["content"] for x in lines) == r.message.content
    # a length limit ends it as Ollama says so
    r = c.chat(model="default", messages=[{"role": "user", "content": "Count to one hundred."}],
               options={"temperature": 0, "num_predict": 5}, stream=False)
    assert r.done_reason == "length" and r.eval_count == 5
    # any count is taken, as Ollama takes it: a fraction, or more than the context holds
    r = c.chat(model="default", messages=[{"role": "user", "content": "Say hi."}],
               options={"temperature": 0, "num_predict": 2.7}, stream=False)
    assert r.eval_count <= 2
    r = c.chat(model="default", messages=[{"role": "user", "content": "Say hi."}],
               options={"temperature": 0, "num_predict": 10**9}, stream=False)
    assert r.done


def test_generate_fim_json_and_load(served):
    port, c = served
    r = c.generate(model="default", prompt="def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))\n", options=OPTS)
    st, body = raw(port, "POST", "/v1/completions", json.dumps(
        {"model": "default", "prompt": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n",
         "temperature": 0, "max_tokens": 24}))
    assert st == 200 and r.response == json.loads(body)["choices"][0]["text"] and r.response.strip()
    # a prompt without suffix is asked as a question (the chat format), as Ollama does
    r = c.generate(model="default", prompt="Name a colour. One word.", options=OPTS)
    want = openai_chat(port, "default", [{"role": "user", "content": "Name a colour. One word."}])
    assert r.response == want["choices"][0]["message"]["content"] and r.done
    r = c.generate(model="default", prompt="Give a JSON object with a key named colour.", format="json", options=
                   {"temperature": 0, "num_predict": 60}, stream=False)
    assert isinstance(json.loads(r.response), dict)
    r = c.generate(model="v3tiny", prompt="")  # loads it, answers at once
    assert r.done and r.done_reason == "load" and r.response == ""
    assert sorted(m.model for m in c.ps().models) == ["default", "v3tiny"]


def test_thinking_apart_and_off(served):
    port, c = served
    msgs = [{"role": "user", "content": "hi"}]
    r = c.chat(model="deepseek-reasoner", messages=msgs, options={"temperature": 0, "num_predict": 12}, stream=False)
    want = openai_chat(port, "v3tiny", msgs, max_tokens=12)["choices"][0]["message"]
    assert r.model == "v3tiny" and r.message.thinking == want["reasoning_content"] and r.message.content == want["content"]
    r = c.chat(model="v3tiny", messages=msgs, think=False, options={"temperature": 0, "num_predict": 12}, stream=False)
    assert not r.message.thinking  # think=False: no reasoning (reasoning_budget 0)


def test_errors_in_ollamas_shape(served):
    port, c = served
    with pytest.raises(ollama.ResponseError) as e:
        c.chat(model="llama3:8b", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404 and "not found" in e.value.error
    for body, why in (({"model": "default", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, "images"),
                      ({"model": "default", "messages": "hi"}, "messages"),
                      ({"messages": []}, "model is required"),
                      ({"model": "default", "messages": [], "tools": [{"type": "function"}]}, "/v1/chat/completions"),
                      ({"model": "default", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": 9}},
                       "temperature")):
        st, b = raw(port, "POST", "/api/chat", json.dumps(body))
        err = json.loads(b)["error"]
        assert st in (400, 422) and isinstance(err, str) and why in err, (body, st, err)
    st, b = raw(port, "POST", "/api/generate", "{not json")
    assert st == 400 and isinstance(json.loads(b)["error"], str)

"""Answers that survive a dropped connection (issue #24): every event of a streamed answer has an
`id: <answer id>:<n>` line; with stream_options.resumable the answer goes on when its client goes
away, and the client reads on from the last event it got, by GET
/v1/chat/completions/<id>/events or by sending the same POST again with Last-Event-ID, never
starting a new answer. The pieces put together are exactly the uninterrupted answer (greedy);
with accounts the answer is charged once, and no one else can read or stop it; its owner can
stop it (DELETE)."""
import http.client
import json
import time

from conftest import DEFAULT_MODEL  # noqa: F401  (the server fixture needs it)
from test_accounts import admin, env, sql  # noqa: F401  (env: one --accounts server per store backend)
from test_serve import server  # noqa: F401  (the local-mode server, on the default model)

ASK = {"model": "default", "messages": [{"role": "user", "content": "Count from 1 to 30, separated by commas."}],
       "temperature": 0, "max_tokens": 80, "stream": True}
RESUMABLE = {**ASK, "stream_options": {"resumable": True}}


def post(port, body, headers=None, keep=None):
    """POST a streamed chat; the whole body, or with keep, the first `keep` events, the connection
    then closed (the client gone)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    if keep is None:
        data = r.read().decode()
        c.close()
        return r.status, data
    data = b""
    while data.count(b"\n\n") < keep:
        data += r.read(64)
    c.close()
    return r.status, "".join(b + "\n\n" for b in data.decode().split("\n\n")[:keep])


def get(port, path, headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read().decode()


def events(sse):
    """[(id, data)] of an event stream (comments skipped)."""
    out = []
    for block in sse.split("\n\n"):
        lines = [l for l in block.split("\n") if l and not l.startswith(":")]
        if lines:
            ev = dict(l.split(": ", 1) for l in lines)
            out.append((ev.get("id"), ev.get("data")))
    return out


def content(evs):
    text = ""
    for _, d in evs:
        if d and d.startswith("{"):
            ch = json.loads(d)["choices"]
            if ch:
                text += ch[0].get("delta", {}).get("content") or ""
    return text


def test_resumed_answer_is_the_uninterrupted_one(server):  # noqa: F811
    st, whole = post(server, ASK)
    want = events(whole)
    assert st == 200 and want[-1][1] == "[DONE]" and all(i for i, _ in want)  # every event numbered
    aid = want[0][0].rsplit(":", 1)[0]
    assert [i for i, _ in want] == [f"{aid}:{n}" for n in range(1, len(want) + 1)]

    # cut after 4 events, read on by GET from the 4th: the same text as one uninterrupted answer
    st, part = post(server, RESUMABLE, keep=4)
    first = events(part)
    assert st == 200 and len(first) == 4
    last = first[-1][0]
    aid = last.rsplit(":", 1)[0]
    time.sleep(0.5)  # (it goes on meanwhile)
    st, rest = get(server, f"/v1/chat/completions/{aid}/events", {"Last-Event-ID": last})
    more = events(rest)
    assert st == 200 and more[0][0] == f"{aid}:5" and more[-1][1] == "[DONE]"
    assert content(first + more) == content(want)
    # the same request sent again with Last-Event-ID reads on: no new answer
    st, again = post(server, RESUMABLE, {"Last-Event-ID": f"{aid}:2"})
    assert st == 200 and events(again) == (first + more)[2:]
    # from the start, by GET without Last-Event-ID: the whole answer
    assert events(get(server, f"/v1/chat/completions/{aid}/events")[1]) == first + more
    # another request with that Last-Event-ID, a malformed one, an unknown answer, a future event
    assert post(server, {**RESUMABLE, "max_tokens": 5}, {"Last-Event-ID": last})[0] == 404
    assert post(server, RESUMABLE, {"Last-Event-ID": "nonsense"})[0] == 400
    assert get(server, "/v1/chat/completions/chatcmpl-000/events")[0] == 404
    assert get(server, f"/v1/chat/completions/{aid}/events", {"Last-Event-ID": f"{aid}:99999"})[0] == 400


def test_owner_stops_a_resumable_answer(server):  # noqa: F811
    body = {**RESUMABLE, "max_tokens": 400, "messages": [{"role": "user", "content": "Write a long story about a ship."}]}
    st, part = post(server, body, keep=3)
    aid = events(part)[0][0].rsplit(":", 1)[0]
    assert get(server, f"/v1/chat/completions/{aid}", method="DELETE")[0] == 200
    st, whole = get(server, f"/v1/chat/completions/{aid}/events")
    evs = events(whole)
    assert st == 200 and evs[-1][1] == "[DONE]"
    final = json.loads(evs[-2][1])["choices"][0]
    assert final["finish_reason"] is not None and len(content(evs)) < 1200  # stopped well before 400 tokens
    assert get(server, "/v1/chat/completions/chatcmpl-nope", method="DELETE")[0] == 404


def test_resumed_answer_is_charged_once_and_only_its_owner_reads_it(env):  # noqa: F811
    port, db, keys = env["port"], env["db"], env["keys"]
    alice, bob = {"Authorization": f"Bearer {keys['alice']}"}, {"Authorization": f"Bearer {keys['bob']}"}
    st, part = post(port, RESUMABLE, alice, keep=4)
    assert st == 200
    last = events(part)[-1][0]
    aid = last.rsplit(":", 1)[0]
    # bob can neither read nor stop alice's answer, by GET or by sending her request again
    assert get(port, f"/v1/chat/completions/{aid}/events", bob)[0] == 404
    assert post(port, RESUMABLE, {**bob, "Last-Event-ID": last})[0] == 404
    assert get(port, f"/v1/chat/completions/{aid}", bob, method="DELETE")[0] == 404
    st, rest = get(port, f"/v1/chat/completions/{aid}/events", {**alice, "Last-Event-ID": last})
    evs = events(part) + events(rest)
    assert st == 200 and evs[-1][1] == "[DONE]"
    for _ in range(50):  # the charge lands when the producer ends (it has: [DONE] was read)
        rows = sql(db, "SELECT count(*), COALESCE(sum(output), 0) FROM ledger WHERE request_id = ?", aid)
        if int(rows[0][0]):
            break
        time.sleep(0.1)
    assert int(rows[0][0]) == 1 and int(rows[0][1]) > 0, rows  # once, though read twice

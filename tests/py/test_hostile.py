"""`whale serve` against hostile and careless clients: malformed and oversized requests get the
right 4xx and the server keeps serving; 500 slow connections from one address (slowloris) do not
slow a client on another address by more than 2x; 10,000 wrong passwords against one account
from many addresses leave the server responsive and the owner able to sign in within seconds of
the flood ending; X-Forwarded-For counts only from a trusted proxy; one user's burst cannot
starve another's request; SIGTERM drains: running requests finish, new ones are refused.

Client addresses: all of 127.0.0.0/8 is this machine, so clients bind to 127.0.0.N to be
different addresses."""
import concurrent.futures
import http.client
import json
import signal
import socket
import statistics
import threading
import time

import pytest

from conftest import DEFAULT_MODEL
from test_accounts import accounts_server, admin
from test_serve import start

CHAT = {"model": "default", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0}


class Conn(http.client.HTTPConnection):
    """An HTTP connection from a chosen loopback address."""

    def __init__(self, port, src="127.0.0.1", timeout=60):
        super().__init__("127.0.0.1", port, timeout=timeout, source_address=(src, 0))


def call(port, method, path, body=None, headers=None, src="127.0.0.1"):
    c = Conn(port, src)
    h = {"Content-Type": "application/json", **(headers or {})}
    c.request(method, path, body=json.dumps(body) if isinstance(body, (dict, list)) else body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def raw(port, data, src="127.0.0.1"):
    """Send bytes, return what comes back until the server closes or answers in full."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(src, 0))
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep and b"Content-Length:" in head:
                n = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
    except OSError:
        pass
    s.close()
    return out


@pytest.fixture(scope="module")
def server():
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    p, port = start("--parallel", "2", "--ctx", "512")
    yield port
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


def error_of(data):
    return json.loads(data.partition(b"\r\n\r\n")[2])["error"]


def post(body, ctype="application/json", extra=b""):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype.encode() +
            b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def test_malformed_and_oversized_requests(server):
    cases = [
        (post(b"[" * 100000 + b"]" * 100000), 400, "nested too deeply"),
        (post(b"{" * 70 + b"}" * 70), 400, "nested too deeply"),
        (post(b'{"messages": [{"role": "user", "content": "a\xff\xfeb"}]}'), 400, "UTF-8"),
        (post(b'{"messages": [{"role": "user", "content": "unterminated'), 400, "not valid JSON"),
        (post(b'"just a string"'), 400, "JSON object"),
        (post(b'{"messages": []}'), 422, None),
        (post(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}'), 422, None),
        (post(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e300}'), 422, None),
        (post(b'{"messages": ' + json.dumps([{"role": "user", "content": "x"}] * 5000).encode() + b"}"), 422, None),
        (post(b'{"messages": [{"role": "user", "content": "' + b"word " * 200000 + b'"}]}'), 413,
         "context"),  # far more tokens than the context holds: over the body cap the context sets
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n\r\n", 413, None),
        (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-F%d: %s\r\n" % (i, b"a" * 100) for i in range(1000))
         + b"\r\n", 431, None),
        (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 100000 + b"\r\n\r\n", 431, None),
        (b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", (414, 431), None),
    ]
    for data, want, text in cases:
        out = raw(server, data)
        status = int(out.split(b" ")[1]) if out.startswith(b"HTTP/1.1 ") else None
        assert status in (want if isinstance(want, tuple) else (want,)), (data[:80], out[:200])
        if text:
            assert text in error_of(out)["message"], out[:300]
        body = out.partition(b"\r\n\r\n")[2]
        for leak in (b"/work", b"/home", b"/root", b".c:", b"SQL", b"sqlite", b"Traceback"):  # no internals
            assert leak not in body
    for junk in (b"GARBAGE\r\n\r\n", b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\r\n" * 1000):
        raw(server, junk)  # whatever it answers (400, 505 or a close), it stays up:
    assert call(server, "GET", "/health")[0] == 200
    assert call(server, "POST", "/v1/chat/completions", CHAT)[0] == 200


def timed_requests(port, src, n):
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, _, _ = call(port, "POST", "/v1/chat/completions", CHAT, src=src)
        assert st == 200
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def test_slowloris_does_not_hold_up_other_clients(server):
    base = timed_requests(server, "127.0.0.2", 8)
    stop = threading.Event()
    socks, refused = [], [0]

    def trickle():  # 500 connections from 127.0.0.1, each sending a header byte now and then
        for i in range(500):
            try:
                s = socket.create_connection(("127.0.0.1", server), timeout=5, source_address=("127.0.0.1", 0))
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                socks.append(s)
            except OSError:
                refused[0] += 1
        while not stop.is_set():
            for s in list(socks):
                try:
                    s.sendall(b"X-a: b\r\n")
                except OSError:
                    socks.remove(s)
            stop.wait(1.0)
    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(3)
        under = timed_requests(server, "127.0.0.2", 8)
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()
    print(f"slowloris: median request {base * 1000:.0f} ms alone, {under * 1000:.0f} ms beside 500 slow "
          f"connections ({len(socks)} of them still open, {refused[0]} refused)")
    assert under <= 2 * base + 0.05, (base, under)
    assert call(server, "GET", "/health")[0] == 200


@pytest.fixture
def accounts(tmp_path):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    db = tmp_path / "whale.db"
    p, port = accounts_server(db, tmp_path, "--ctx", "512", "--parallel", "1", "--trusted-proxy", "127.0.0.9",
                              "--signups-per-hour", "5")
    yield port, db
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


def login(port, email, password, src="127.0.0.1"):
    return call(port, "POST", "/auth/login", {"email": email, "password": password}, src=src)


def test_login_flood(accounts):
    port, db = accounts
    assert call(port, "POST", "/auth/register", {"email": "owner@example.com", "password": "the right password"})[0] == 201
    counts = {}
    lock = threading.Lock()
    health = []
    done = threading.Event()

    def attempt(i):
        st = login(port, "owner@example.com", f"guess {i}", src=f"127.0.{1 + i % 40}.{1 + i // 40 % 250}")[0]
        with lock:
            counts[st] = counts.get(st, 0) + 1

    def probe():  # the server stays responsive during the flood
        while not done.is_set():
            t0 = time.perf_counter()
            assert call(port, "GET", "/health", src="127.0.0.3")[0] == 200
            health.append(time.perf_counter() - t0)
            time.sleep(0.2)
    prober = threading.Thread(target=probe)
    prober.start()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        list(ex.map(attempt, range(10000)))
    flood_s = time.perf_counter() - t0
    done.set()
    prober.join()
    # the owner, right after: in within seconds
    t1 = time.perf_counter()
    while True:
        st, h, _ = login(port, "owner@example.com", "the right password", src="127.0.0.4")
        if st == 200:
            break
        assert st == 429 and int(h["Retry-After"]) <= 8
        assert time.perf_counter() - t1 < 15
        time.sleep(0.5)
    owner_s = time.perf_counter() - t1
    print(f"login flood: 10,000 wrong passwords in {flood_s:.1f} s ({counts}); /health max "
          f"{max(health) * 1000:.0f} ms during it; the owner signed in {owner_s:.1f} s after it ended")
    assert set(counts) <= {401, 429} and counts.get(429, 0) > 9000  # refused before any hashing
    assert max(health) < 2.0
    assert owner_s < 10


def test_forwarded_for_only_from_a_trusted_proxy(accounts):
    port, _ = accounts
    # through the trusted proxy (127.0.0.9), sign-ups count per forwarded address
    for i in range(5):
        st = call(port, "POST", "/auth/register", {"email": f"p{i}@example.com", "password": "a good password"},
                  {"X-Forwarded-For": "203.0.113.7"}, src="127.0.0.9")[0]
        assert st == 201
    st, h, _ = call(port, "POST", "/auth/register", {"email": "p5@example.com", "password": "a good password"},
                    {"X-Forwarded-For": "203.0.113.7"}, src="127.0.0.9")
    assert st == 429 and int(h["Retry-After"]) > 0
    # a client's own claim left of the proxy's entry is not believed
    st = call(port, "POST", "/auth/register", {"email": "p6@example.com", "password": "a good password"},
              {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}, src="127.0.0.9")[0]
    assert st == 429
    st = call(port, "POST", "/auth/register", {"email": "p7@example.com", "password": "a good password"},
              {"X-Forwarded-For": "203.0.113.8"}, src="127.0.0.9")[0]
    assert st == 201
    # from anyone else the header is ignored: the peer's address counts
    for i in range(5):
        st = call(port, "POST", "/auth/register", {"email": f"d{i}@example.com", "password": "a good password"},
                  {"X-Forwarded-For": f"192.0.2.{i}"}, src="127.0.0.10")[0]
        assert st == 201
    st = call(port, "POST", "/auth/register", {"email": "d5@example.com", "password": "a good password"},
              {"X-Forwarded-For": "192.0.2.99"}, src="127.0.0.10")[0]
    assert st == 429


def test_origin_behind_a_proxy_that_rewrites_host(accounts):
    """The page behind a proxy that sends Host: whale: its requests are same-origin by the
    X-Forwarded-Host the trusted proxy sets, and by nothing anyone else sets."""
    port, _ = accounts
    site = f"127.0.0.1:{port}"
    h = {"Host": "whale", "X-Forwarded-Host": site, "Origin": f"http://{site}"}
    body = {"email": "nobody@example.com", "password": "not the password"}
    assert call(port, "POST", "/auth/login", body, h, src="127.0.0.9")[0] == 401  # through: a wrong password
    # not a trusted proxy: its X-Forwarded-Host is ignored and Host: whale is no name we serve
    assert call(port, "POST", "/auth/login", body, h, src="127.0.0.11")[0] == 421
    h["Origin"] = "http://evil.example"
    assert call(port, "POST", "/auth/login", body, h, src="127.0.0.9")[0] == 403


def test_one_users_burst_does_not_starve_another(accounts):
    port, db = accounts
    keys = {}
    for u in ("burst", "other"):
        admin(db, "user", "add", f"{u}@example.com")
        admin(db, "topup", f"{u}@example.com", "5")
        keys[u] = admin(db, "key", "create", f"{u}@example.com")
    order, lock = [], threading.Lock()
    long = {**CHAT, "messages": [{"role": "user", "content": "Count from 1 to 100."}], "max_tokens": 48}

    def ask(who, i):
        st = call(port, "POST", "/v1/chat/completions", long, {"Authorization": f"Bearer {keys[who]}"})[0]
        with lock:
            order.append((who, i, st))
    ts = [threading.Thread(target=ask, args=("burst", i)) for i in range(5)]
    for t in ts:
        t.start()
    for _ in range(400):  # the burst is in: one of it runs (one slot), four wait
        h = json.loads(call(port, "GET", "/health")[2])
        if (h["active"], h["waiting"]) == (1, 4):
            break
        time.sleep(0.01)
    assert (h["active"], h["waiting"]) == (1, 4), h
    t = threading.Thread(target=ask, args=("other", 0))
    t.start()
    for t in ts + [t]:
        t.join()
    print("completion order:", order)
    statuses = {st for _, _, st in order}
    assert statuses == {200}
    # the other user's request goes next, before the 4 waiting ahead of it (first come, first
    # served would finish it last)
    assert [w for w, _, _ in order].index("other") == 1, order
    # and one user may hold only a quarter of the queue (64 / 4): the 17th waiting gets 503
    burst = [threading.Thread(target=ask, args=("burst", 10 + i)) for i in range(18)]
    for b in burst:
        b.start()
    for b in burst:
        b.join()
    assert sum(1 for w, i, st in order if i >= 10 and st == 503) >= 1


def test_sigterm_drains(tmp_path):
    p, port = start("--parallel", "1", "--ctx", "512", "--drain", "60")
    body = {**CHAT, "messages": [{"role": "user", "content": "Count from 1 to 50."}], "max_tokens": 40}
    result = {}

    def run():
        result["r"] = call(port, "POST", "/v1/chat/completions", body)
    t = threading.Thread(target=run)
    t.start()
    for _ in range(200):
        if json.loads(call(port, "GET", "/health")[2])["active"] == 1:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    try:  # no new connections (the listening socket is closed), or 503 on an open one
        st = call(port, "POST", "/v1/chat/completions", CHAT)[0]
        assert st == 503
    except OSError:
        pass
    t.join()
    st, _, data = result["r"]
    j = json.loads(data)
    assert st == 200 and j["choices"][0]["finish_reason"] == "length" and j["usage"]["completion_tokens"] == 40
    assert p.wait(timeout=60) == 0


def test_queued_stream_gets_keepalive_comments():
    """A stream waiting in the queue is kept alive with ': keep-alive' comment lines (every 10 s)."""
    p, port = start("--parallel", "1", "--ctx", "2048")
    try:
        busy = {**CHAT, "messages": [{"role": "user", "content": "Tell a very long story about the sea."}],
                "max_tokens": 1500, "stream": True}
        hold = socket.create_connection(("127.0.0.1", port), timeout=60)
        hold.sendall(post(json.dumps(busy).encode()))
        hold.recv(4096)  # it runs
        waiting = socket.create_connection(("127.0.0.1", port), timeout=30)
        waiting.sendall(post(json.dumps({**busy, "max_tokens": 4}).encode()))
        got, t0 = b"", time.time()
        while b": keep-alive" not in got and time.time() - t0 < 25:
            got += waiting.recv(4096)
        assert b"HTTP/1.1 200" in got and b": keep-alive" in got, got[:500]
        assert json.loads(call(port, "GET", "/health")[2])["waiting"] == 1
        hold.close()  # the running stream's client goes: its slot frees, the waiting one runs
        while b"[DONE]" not in got and time.time() - t0 < 60:
            got += waiting.recv(4096)
        assert b"[DONE]" in got
        # a comment line alone: the events carry ids, and a client that keeps the last one (OpenAI's
        # Python client) takes "comment, blank line" for an event without data and fails on it
        assert b": keep-alive\n\n" not in got and b": keep-alive\r\n\r\n" not in got
        waiting.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0

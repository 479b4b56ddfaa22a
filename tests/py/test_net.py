"""`whale serve` on the network (issue #18): only the host names it serves (DNS rebinding gets
421), an HTTP answer (429) instead of a reset past the per-address connection cap, and /metrics
behind an operator token in accounts mode with a throughput figure scrapes cannot reset.

Client addresses: all of 127.0.0.0/8 is this machine, so clients bind to 127.0.0.N to be
different addresses."""
import http.client
import json
import re
import signal
import socket
import threading
import time

import pytest

from conftest import DEFAULT_MODEL
from test_accounts import accounts_server, admin
from test_serve import start

CHAT = {"model": "default", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0}


def call(port, method, path, body=None, headers=None, src="127.0.0.1"):
    """(status, headers, body) of one request; the Host header is http.client's unless given."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(src, 0))
    h = {"Content-Type": "application/json", **(headers or {})}
    skip = "Host" in h
    c.putrequest(method, path, skip_host=skip)
    data = json.dumps(body).encode() if body is not None else b""
    for k, v in h.items():
        c.putheader(k, v)
    c.putheader("Content-Length", str(len(data)))
    c.endheaders(data)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, dict(r.getheaders()), out


@pytest.fixture(scope="module")
def server():
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    p, port = start("--parallel", "2", "--ctx", "256", "--host-name", "whale.example",
                    "--trusted-proxy", "127.0.0.9", "--max-conns-per-ip", "4")
    yield port
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


# ---- DNS rebinding ---------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,body", [("GET", "/", None), ("GET", "/health", None),
                                              ("POST", "/v1/chat/completions", CHAT)])
def test_rebinding_host_gets_421(server, method, path, body):
    for host in ("evil.example", f"evil.example:{server}", "127.0.0.1.evil.example", f"localhost:{server + 1}"):
        st, _, data = call(server, method, path, body, {"Host": host})
        assert st == 421, (host, st, data)
        assert "--host-name" in json.loads(data)["error"]["message"]


def test_served_host_names_pass(server):
    for host in ("127.0.0.1", f"127.0.0.1:{server}", f"localhost:{server}", "LOCALHOST", f"[::1]:{server}",
                 "whale.example", f"whale.example:{server}"):
        st, _, data = call(server, "GET", "/health", None, {"Host": host})
        assert st == 200, (host, st, data)
    assert call(server, "POST", "/v1/chat/completions", CHAT, {"Host": f"whale.example:{server}"})[0] == 200


def test_forwarded_host_from_a_trusted_proxy_is_checked(server):
    # the proxy's own Host is whatever it was configured with; the browser's host is in X-Forwarded-Host
    ok = {"Host": "backend", "X-Forwarded-Host": "whale.example"}
    assert call(server, "GET", "/health", None, ok, src="127.0.0.9")[0] == 200
    assert call(server, "GET", "/health", None, {**ok, "X-Forwarded-Host": "whale.example:443"}, src="127.0.0.9")[0] == 200
    bad = {"Host": "127.0.0.1", "X-Forwarded-Host": "evil.example"}
    assert call(server, "GET", "/", None, bad, src="127.0.0.9")[0] == 421
    # from anyone else X-Forwarded-Host is ignored: the Host counts
    assert call(server, "GET", "/health", None, bad, src="127.0.0.10")[0] == 200
    assert call(server, "GET", "/health", None, ok, src="127.0.0.10")[0] == 421


# ---- connections past the per-address cap ----------------------------------------------------

def read_head(s):
    """The status code and headers of a reply on socket s; None when the server closed or reset
    the connection without an HTTP answer."""
    out = b""
    try:
        while b"\r\n\r\n" not in out:
            d = s.recv(4096)
            if not d:
                return None
            out += d
    except OSError:
        return None
    head = out.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(head[0].split()[1]), {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in head[1:])}, out


def test_past_the_per_address_cap_clients_get_429_not_a_reset(server):
    """7 streaming chats at once from one address against --max-conns-per-ip 4 (an office behind
    NAT): the first 4 stream, the other 3 get 429 with Retry-After and a message naming the
    limit; none is reset."""
    cap, n = 4, 7
    body = json.dumps({**CHAT, "stream": True, "max_tokens": 4}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body) + body)
    socks = []
    for _ in range(n):  # all open before any request: the first cap of them are under the cap
        socks.append(socket.create_connection(("127.0.0.1", server), timeout=30, source_address=("127.0.0.5", 0)))
        time.sleep(0.02)
    for s in socks:
        try:
            s.sendall(req)
        except OSError:
            pass
    heads = [read_head(s) for s in socks]
    for s, h in zip(socks, heads):
        data = h[2] if h else b""
        while h and h[0] == 200 and not data.endswith(b"0\r\n\r\n"):  # the stream to its end
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
    codes = [h and h[0] for h in heads]
    assert None not in codes, codes  # every client got an HTTP answer
    assert codes[:cap] == [200] * cap, codes
    assert codes[cap:] == [429] * (n - cap), codes
    for st, h, raw in heads[cap:]:
        assert h["retry-after"] == "1" and h["connection"] == "close", h
        assert b"the limit is 4" in raw, raw
    # the closed connections are no longer counted: the address is served again
    time.sleep(0.2)
    assert call(server, "POST", "/v1/chat/completions", CHAT, src="127.0.0.5")[0] == 200


# ---- /metrics --------------------------------------------------------------------------------

def metrics_values(text):
    """/metrics as {name{labels}: value}, the model label dropped (this server serves one model)."""
    return {re.sub(r',?model="[^"]*"', "", l.split()[0]).replace("{}", ""): float(l.split()[1])
            for l in text.splitlines() if l and not l.startswith("#")}


def test_scrapes_do_not_reset_the_generation_rate(server):
    """The rate is over a fixed window: a second scrape right after the first (a user hammering
    /metrics) reads the same figure, not 0."""
    assert call(server, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 8})[0] == 200
    rates = []
    for _ in range(3):
        st, _, data = call(server, "GET", "/metrics")
        assert st == 200
        rates.append(metrics_values(data.decode())["whale_generation_tokens_per_second"])
    assert rates[0] > 0 and rates[2] > 0 and abs(rates[2] - rates[0]) <= 0.2 * rates[0], rates


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_metrics_needs_the_operator_token_in_accounts_mode(backend, tmp_path, request, monkeypatch):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    db = tmp_path / "whale.db" if backend == "sqlite" else request.getfixturevalue("pg").new_database()
    admin(db, "user", "add", "m@example.com")
    p, port = accounts_server(db, tmp_path, "--ctx", "256", "--parallel", "1")  # no token: refused
    try:
        st, _, data = call(port, "GET", "/metrics")
        assert st == 403 and "--metrics-token" in json.loads(data)["error"]["message"]
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    monkeypatch.setenv("WHALE_METRICS_TOKEN", "env-token-1")  # from the environment
    p, port = accounts_server(db, tmp_path, "--ctx", "256", "--parallel", "1")
    try:
        key = admin(db, "key", "create", "m@example.com")
        for auth in (None, f"Bearer {key}", "Bearer env-token-", "Bearer env-token-12", "env-token-1"):
            st = call(port, "GET", "/metrics", None, {"Authorization": auth} if auth else {})[0]
            assert st == 401, (auth, st)
        st, _, data = call(port, "GET", "/metrics", None, {"Authorization": "Bearer env-token-1"})
        assert st == 200
        size = metrics_values(data.decode())["whale_db_bytes"]
        if backend == "sqlite":  # the file and its write-ahead log
            on_disk = sum(f.stat().st_size for f in tmp_path.glob("whale.db*") if not f.name.endswith("-shm"))
            assert 0 < size <= on_disk * 1.5 and size >= (tmp_path / "whale.db").stat().st_size, (size, on_disk)
        else:
            assert size > 1 << 20, size  # an empty PostgreSQL database is several MB
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    # --metrics-token on the command line
    p, port = accounts_server(db, tmp_path, "--ctx", "256", "--parallel", "1", "--metrics-token", "cli-token")
    try:
        assert call(port, "GET", "/metrics", None, {"Authorization": "Bearer cli-token"})[0] == 200
        assert call(port, "GET", "/metrics", None, {"Authorization": "Bearer env-token-1"})[0] == 401
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)

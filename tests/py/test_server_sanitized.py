"""`whale serve` built with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/whale, `make
debug`) and with ThreadSanitizer (build-tsan/whale, `make tsan`), driven through a workload that
crosses every thread boundary of the server: concurrent streams (some cut off by their clients,
some resumable, their producers left running),
plain and JSON-mode requests, API keys and session cookies, conversations, failed sign-ins,
/metrics and /health scrapes, malformed requests, requests for two models with room for one
loaded (loading and unloading under the workload), then SIGTERM while streams run (the drain).
On a tiny random-weight model, so that the sanitizers' slowdown stays small. Each server must
exit 0 having printed no sanitizer report (leaks included, under ASan)."""
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import REPO
from test_accounts import admin

REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer", "runtime error:")


def request(port, method, path, body=None, headers=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json", **(headers or {})}
    c.request(method, path, body=body if isinstance(body, str) or body is None else json.dumps(body), headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Set-Cookie") or "", data


def cut_stream(port, body, headers):
    """Start a stream, read a little, go away."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    b = json.dumps(body).encode()
    h = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{h}Content-Type: application/json\r\n"
              f"Content-Length: {len(b)}\r\n\r\n".encode() + b)
    s.recv(2048)
    s.close()
    return 0


@pytest.mark.parametrize("kind", ["asan", "tsan"])
def test_server_workload_under_sanitizers(kind, v3tiny, tmp_path):
    binary = REPO / f"build-{kind}" / "whale"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run make {'debug' if kind == 'asan' else 'tsan'}")
    logs = tmp_path / "san"
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = f"detect_leaks=1:log_path={logs}"
    env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={logs}"
    env["TSAN_OPTIONS"] = f"exitcode=66:second_deadlock_stack=1:log_path={logs}"
    db = tmp_path / "whale.db"
    port_sock = socket.socket()
    port_sock.bind(("127.0.0.1", 0))
    port = port_sock.getsockname()[1]
    port_sock.close()
    # the model twice, under two names, with room for one loaded: requests for both load and
    # unload it under the workload (the registry's locks and leases, under the sanitizers)
    p = subprocess.Popen([str(binary), "serve", "-m", str(v3tiny), "--name", "one", "-m", str(v3tiny), "--name", "two",
                          "--max-loaded", "1", "--port", str(port), "--accounts", "--db", str(db),
                          "--ctx", "256", "--parallel", "4", "--queue", "32", "--max-conns-per-ip", "0", "--rpm", "100000", "--drain", "30", "--metrics-token", "san-metrics",
                          "--cache-dir", str(tmp_path / "kv"), "-t", "2"],
                         env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"))
    try:
        for _ in range(600):
            try:
                if request(port, "GET", "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        assert request(port, "POST", "/auth/register", {"email": "san@example.com", "password": "sanitizer pw"})[0] == 201
        st, cookie, _ = request(port, "POST", "/auth/login", {"email": "san@example.com", "password": "sanitizer pw"})
        assert st == 200
        cookie = cookie.split(";")[0]
        admin(db, "topup", "san@example.com", "10")
        key = admin(db, "key", "create", "san@example.com")
        auth = {"Authorization": f"Bearer {key}"}
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(24) as ex:
            for i in range(8):
                jobs.append(ex.submit(request, port, "POST", "/v1/chat/completions", {**chat, "stream": True}, auth))
                jobs.append(ex.submit(cut_stream, port, {**chat, "stream": True}, auth))
                # resumable: its producer runs on with no one reading, until the drain's end stops it
                jobs.append(ex.submit(cut_stream, port, {**chat, "stream": True, "stream_options": {"resumable": True}},
                                      auth))
                jobs.append(ex.submit(request, port, "POST", "/v1/chat/completions",
                                      {**chat, "model": "two", "response_format": {"type": "json_object"}},
                                      {"Cookie": cookie}))
                jobs.append(ex.submit(request, port, "PUT", f"/user/conversations/c{i}",
                                      {"title": f"t{i}", "messages": [{"role": "user", "content": "x" * i}]},
                                      {"Cookie": cookie}))
                jobs.append(ex.submit(request, port, "POST", "/auth/login",
                                      {"email": "san@example.com", "password": f"wrong {i}"}))
                jobs.append(ex.submit(request, port, "GET", "/metrics", None, {"Authorization": "Bearer san-metrics"}))
                jobs.append(ex.submit(request, port, "POST", "/v1/chat/completions", "[" * 100 + "]" * 100, auth))
            statuses = [j.result()[0] if isinstance(j.result(), tuple) else 0 for j in jobs]
        assert not {s for s in statuses if s >= 500 and s != 503}, statuses  # 503: the queue was full, said so
        assert request(port, "GET", "/user/conversations/export", headers={"Cookie": cookie})[0] == 200
        # SIGTERM with streams running: they finish (the drain), then the server exits
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            late = [ex.submit(request, port, "POST", "/v1/chat/completions", {**chat, "stream": True}, auth)
                    for _ in range(4)]
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM)
            assert all(f.result()[0] == 200 for f in late)
        rc = p.wait(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    reports = "".join(f.read_text(errors="replace") for f in tmp_path.glob("san*"))
    log = (tmp_path / "serve.log").read_text(errors="replace")
    found = [r for r in REPORTS if r in reports or r in log]
    assert rc == 0 and not found, (rc, found, (reports or log)[-6000:])
    admin(db, "check")

"""Crash safety of the ledger: `kill -9` of `whale serve --accounts` while 100 billed requests
run concurrently, then a restart on the same SQLite file. Every request whose client got a
complete answer has exactly one ledger row under its response id (charges commit before the
answer is sent, in WAL with synchronous=FULL), no row is doubled, every balance equals its
ledger, and the restarted server serves and charges again."""
import concurrent.futures
import http.client
import json
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import DEFAULT_MODEL, WHALE
from test_accounts import admin, call
from test_serve import free_port


def serve(db, d, port):
    p = subprocess.Popen([str(WHALE), "serve", "--port", str(port), "--accounts", "--db", str(db), "--ctx", "512",
                          "--parallel", "4", "--queue", "128", "--cache-dir", str(d / "kv")],
                         stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if call(port, "/health")[0] == 200:
                return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise AssertionError("whale serve did not come up")


def test_kill_9_during_billed_requests(tmp_path):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    db = tmp_path / "whale.db"
    admin(db, "user", "add", "alice@example.com")
    key = admin(db, "key", "create", "alice@example.com")
    admin(db, "topup", "alice@example.com", "100")
    port = free_port()
    p = serve(db, tmp_path, port)
    done, lock = [], threading.Lock()

    def one(i):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            c.request("POST", "/v1/chat/completions", json.dumps(
                {"messages": [{"role": "user", "content": f"Count to {i % 9 + 3}."}], "max_tokens": 12,
                 "temperature": 0}), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            r = c.getresponse()
            body = json.loads(r.read())
            if r.status == 200:
                with lock:
                    done.append(body["id"])
        except (OSError, ValueError, http.client.HTTPException):
            pass  # cut by the kill

    with concurrent.futures.ThreadPoolExecutor(100) as ex:
        futs = [ex.submit(one, i) for i in range(100)]
        for _ in range(600):  # kill once a good part has been answered, with the rest in flight
            with lock:
                if len(done) >= 20:
                    break
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
        concurrent.futures.wait(futs)
    assert 20 <= len(done) < 100, len(done)

    with sqlite3.connect(db) as c:
        rows = [r[0] for r in c.execute("SELECT request_id FROM ledger WHERE kind = 'charge'")]
    assert len(rows) == len(set(rows))  # nothing doubled
    missing = set(done) - set(rows)
    assert not missing, f"{len(missing)} answered requests have no ledger row"
    assert "ok" in admin(db, "check")

    p = serve(db, tmp_path, port)  # the same file after the crash: serves and charges again
    try:
        before = admin(db, "balance", "alice@example.com")
        st, b = call(port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
                     key)
        assert st == 200
        assert admin(db, "balance", "alice@example.com") != before
        with sqlite3.connect(db) as c:
            assert c.execute("SELECT count(*) FROM ledger WHERE request_id = ?", (b["id"],)).fetchone()[0] == 1
        assert "ok" in admin(db, "check")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    print(f"answered before the kill: {len(done)}; charge rows: {len(rows)} (in flight and charged: "
          f"{len(rows) - len(done)})")

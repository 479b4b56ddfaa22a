"""Billing under stress. Crash safety of the ledger, on SQLite and on PostgreSQL: `kill -9` of `whale serve
--accounts` while 100 billed requests run concurrently, then a restart on the same database. Every request whose client got a
complete answer has exactly one ledger row under its response id (charges commit before the
answer is sent: SQLite in WAL with synchronous=FULL, PostgreSQL's commit), no row is doubled, every balance equals its
ledger, and the restarted server serves and charges again. Two replicas charging one user at
once through one PostgreSQL, with a randomized mix of requests. The store's C suite run against
PostgreSQL."""
import concurrent.futures
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import DEFAULT_MODEL, WHALE
from test_accounts import admin, call, sql
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


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_during_billed_requests(backend, tmp_path, request):
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    db = tmp_path / "whale.db" if backend == "sqlite" else request.getfixturevalue("pg").new_database()
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

    rows = [r[0] for r in sql(db, "SELECT request_id FROM ledger WHERE kind = 'charge'")]
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
        assert int(sql(db, "SELECT count(*) FROM ledger WHERE request_id = ?", b["id"])[0][0]) == 1
        assert "ok" in admin(db, "check")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    print(f"answered before the kill: {len(done)}; charge rows: {len(rows)} (in flight and charged: "
          f"{len(rows) - len(done)})")


def test_two_replicas_share_one_postgres(pg, tmp_path):
    """Two `whale serve` replicas on one PostgreSQL charge two users at once with a randomized
    mix (lengths, plain or streamed, some streams cut by their clients): every answered request
    is charged once, and each balance equals its ledger and its starting amount minus its
    charges, with nothing lost to a race between the replicas."""
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} is missing: run scripts/setup")
    db = pg.new_database()
    keys = {}
    for u in ("alice", "bob"):
        admin(db, "user", "add", f"{u}@example.com")
        keys[u] = admin(db, "key", "create", f"{u}@example.com")
        admin(db, "topup", f"{u}@example.com", "5")
    ports = [free_port(), free_port()]
    procs = [serve(db, tmp_path / f"r{i}", port) for i, port in enumerate(ports)]
    rng = random.Random(7)
    plan = [(rng.choice(ports), rng.choice(["alice", "bob"]), rng.randint(1, 16), rng.random()) for _ in range(60)]
    try:
        def one(job):
            port, user, n, r = job
            body = {"messages": [{"role": "user", "content": f"Say {n} words."}], "max_tokens": n, "temperature": 0}
            if r < 0.6:
                st, b = call(port, "/v1/chat/completions", body, keys[user])
                return b["id"] if st == 200 else None
            s = socket.create_connection(("127.0.0.1", port))  # streamed; a third of them cut early
            data = json.dumps({**body, "max_tokens": 40, "stream": True})
            s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {keys[user]}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n{data}".encode())
            got = b""
            while (r > 0.87 and got.count(b"data:") < 2) or (r <= 0.87 and b"[DONE]" not in got):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            s.close()
            return "stream"
        with concurrent.futures.ThreadPoolExecutor(24) as ex:
            results = list(ex.map(one, plan))
        assert all(results)
        time.sleep(2)  # cut streams are charged once the engine lets them go
        for _ in range(100):
            if int(sql(db, "SELECT count(*) FROM ledger WHERE kind = 'charge'")[0][0]) == len(plan):
                break
            time.sleep(0.1)
        rows = sql(db, "SELECT request_id, amount, user_id FROM ledger WHERE kind = 'charge'")
        assert len(rows) == len(plan) == len({r[0] for r in rows})  # every request charged, once
        assert {i for i in results if i != "stream"} <= {r[0] for r in rows}
        for u in ("alice", "bob"):
            uid = sql(db, "SELECT id FROM users WHERE email = ?", f"{u}@example.com")[0][0]
            spent = -sum(int(r[1]) for r in rows if r[2] == uid)
            want = 5000000 - spent
            assert admin(db, "balance", f"{u}@example.com") == f"{want // 1000000}.{want % 1000000:06d}"
        assert "ok" in admin(db, "check")
        print(f"randomized billing: {len(plan)} requests over 2 replicas, {len(rows)} charges, balances = ledgers")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=30) == 0


def test_store_suite_on_postgres(pg):
    """The store's C test suite (tests/unit/test_store.c), run against PostgreSQL."""
    r = subprocess.run([str(WHALE.parent / "test_store")], env={**os.environ, "WHALE_PG_URL": pg.new_database()},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(PostgreSQL): 4 passed, 0 failed" in r.stdout

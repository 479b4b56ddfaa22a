#!/usr/bin/env python3
"""Overload benchmark for `whale serve` (issue #9): offered load at a multiple of capacity.

    python3 bench/load.py                 # one server, SQLite accounts
    python3 bench/load.py --replicas 2    # two servers behind nginx, sharing one PostgreSQL

It starts everything itself on loopback (whale serve --accounts on the default model, users
with keys and balances made by `whale admin`, PostgreSQL from tests/pg_server.py and nginx from
Debian's package for --replicas), then:
  1. capacity: closed loop, 8 clients asking short questions for --warmup seconds: completed
     requests per second;
  2. overload: open loop, Poisson arrivals at --factor x capacity for --duration seconds, from
     many client addresses (127.0.x.y) and 8 users' keys, each request a fresh connection;
     every response is recorded (status, latency), and the server's memory is sampled;
  3. the ledger is checked (`whale admin check`: every balance equals its ledger).
It prints a markdown summary: requests offered, answered 200, refused 429 / 503, anything else,
latency percentiles of answers and of refusals, peak memory (RSS) of each server. The raw
results go to --out as JSON. The client is asyncio on the same 2 cores as the server: its own
cost is part of the figures."""
import argparse
import asyncio
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
WHALE = REPO / "build" / "whale"
sys.path.insert(0, str(REPO / "tests"))

QUESTION = {"model": "default", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "Name one colour."}]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin(db, *args):
    r = subprocess.run([str(WHALE), "admin", "--db", str(db), *args], capture_output=True, text=True, check=True)
    return r.stdout.strip()


async def ask(port, key, src, timeout=300.0):
    """One request on a fresh connection: (status, seconds). Status 0: the connection failed."""
    body = json.dumps(QUESTION).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    t0 = time.perf_counter()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), timeout)
        w.write(head + body)
        await w.drain()
        data = await asyncio.wait_for(r.read(), timeout)
        w.close()
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        status = 0
    return status, time.perf_counter() - t0


def sources(n=2000):
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]


async def capacity(port, keys, seconds):
    done, stop = [0], time.perf_counter() + seconds
    srcs = sources(64)

    async def client(i):
        while time.perf_counter() < stop:
            st, _ = await ask(port, keys[i % len(keys)], srcs[i])
            done[0] += st == 200
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(8)))
    return done[0] / (time.perf_counter() - t0)


async def overload(port, keys, rate, seconds, pids):
    rng = random.Random(7)
    srcs = sources()
    results, tasks, mem = [], [], {p: 0 for p in pids}
    t_end = time.perf_counter() + seconds

    async def one(i):
        results.append(await ask(port, keys[i % len(keys)], srcs[i % len(srcs)]))

    async def sample():
        while time.perf_counter() < t_end + 5:
            for p in pids:
                try:
                    for line in open(f"/proc/{p}/status"):
                        if line.startswith("VmRSS:"):
                            mem[p] = max(mem[p], int(line.split()[1]) * 1024)
                except OSError:
                    pass
            await asyncio.sleep(0.5)
    sampler = asyncio.create_task(sample())
    i, t = 0, time.perf_counter()
    while t < t_end:
        tasks.append(asyncio.create_task(one(i)))
        i += 1
        t += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, t - time.perf_counter()))
    await asyncio.gather(*tasks)
    await sampler
    return results, mem


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def start_whale(db, port, extra, log):
    p = subprocess.Popen([str(WHALE), "serve", "--port", str(port), "--accounts", "--db", str(db), "--ctx", "512",
                          "--parallel", "4", "--queue", "32", "--cache-dir", tempfile.mkdtemp(prefix="whale-load-kv-"),
                          *extra], stdout=log, stderr=log)
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("whale serve did not come up (see the log)")


NGINX = """worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream whale {{ least_conn; {servers} }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://whale;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=1, help="1: one server on SQLite; 2+: behind nginx, PostgreSQL")
    ap.add_argument("--factor", type=float, default=4.0, help="offered load as a multiple of capacity")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of overload")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds measuring capacity")
    ap.add_argument("--rpm", type=int, default=60, help="requests per minute per key and per user (429 beyond); 0: none")
    ap.add_argument("--out", default=None, help="raw results (JSON)")
    a = ap.parse_args()
    if not WHALE.exists():
        raise SystemExit("build/whale is missing: run make")
    work = pathlib.Path(tempfile.mkdtemp(prefix="whale-load-"))
    procs, pg = [], None
    log = open(work / "servers.log", "w")
    try:
        if a.replicas > 1:
            import pg_server
            pg = pg_server.Server()
            db = pg.new_database()
        else:
            db = work / "whale.db"
        keys = []
        for u in range(8):
            admin(db, "user", "add", f"load{u}@example.com")
            admin(db, "topup", f"load{u}@example.com", "100")
            keys.append(admin(db, "key", "create", f"load{u}@example.com"))
        extra = ["--rpm", str(a.rpm)] if a.rpm else []
        ports = [free_port() for _ in range(a.replicas)]
        if a.replicas > 1:
            extra += ["--trusted-proxy", "127.0.0.1", "--max-conns-per-ip", "0", "-t", "1"]
        for port in ports:
            procs.append(start_whale(db, port, extra, log))
        front = ports[0]
        if a.replicas > 1:
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            if not os.path.exists(nginx):
                raise SystemExit("nginx is missing: apt-get install nginx")
            front = free_port()
            (work / "nginx.conf").write_text(NGINX.format(dir=work, port=front, servers=" ".join(
                f"server 127.0.0.1:{p};" for p in ports)))
            subprocess.run([nginx, "-c", str(work / "nginx.conf"), "-p", str(work)], check=True)
        cap = asyncio.run(capacity(front, keys, a.warmup))
        rate = a.factor * cap
        print(f"capacity {cap:.2f} requests/s; offering {rate:.2f}/s for {a.duration:.0f} s", file=sys.stderr)
        results, mem = asyncio.run(overload(front, keys, rate, a.duration, [p.pid for p in procs]))
        alive = all(p.poll() is None for p in procs)
        check = subprocess.run([str(WHALE), "admin", "--db", str(db), "check"], capture_output=True, text=True)
    finally:
        if a.replicas > 1 and (work / "nginx.pid").exists():
            subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(work / "nginx.conf"), "-p", str(work),
                            "-s", "stop"])
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
        if pg:
            pg.stop()
    by = {}
    for st, t in results:
        by.setdefault(st, []).append(t)
    n = len(results)
    refused = by.get(429, []) + by.get(503, [])
    other = {k: len(v) for k, v in by.items() if k not in (200, 429, 503)}
    summary = {
        "replicas": a.replicas, "capacity_rps": round(cap, 2), "offered_rps": round(rate, 2), "seconds": a.duration,
        "requests": n, "ok": len(by.get(200, [])), "429": len(by.get(429, [])), "503": len(by.get(503, [])),
        "other": other, "ok_p50_s": round(pct(by.get(200, []), 50), 3), "ok_p99_s": round(pct(by.get(200, []), 99), 3),
        "refused_p50_ms": round(1000 * pct(refused, 50), 1), "refused_p99_ms": round(1000 * pct(refused, 99), 1),
        "peak_rss_mib": [round(v / 2**20) for v in mem.values()], "servers_alive": alive,
        "ledger_check": check.returncode == 0,
    }
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps({"summary": summary, "results": results}))
    print(json.dumps(summary, indent=1))
    print(f"| {a.replicas} | {cap:.2f} | {rate:.2f} | {n} | {summary['ok']} | {summary['429']} | {summary['503']} | "
          f"{sum(other.values())} | {summary['ok_p50_s']} / {summary['ok_p99_s']} | "
          f"{summary['refused_p50_ms']} / {summary['refused_p99_ms']} | {', '.join(map(str, summary['peak_rss_mib']))} | "
          f"{'yes' if alive else 'NO'} | {'yes' if summary['ledger_check'] else 'NO'} |")


if __name__ == "__main__":
    main()

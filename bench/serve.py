#!/usr/bin/env python3
"""Serving benchmark, run by hand (not part of `make test`): Whale's `whale serve` and, when
given, llama.cpp's `llama-server` on the same GGUF and machine, through the official `openai`
client.

  throughput: N concurrent streaming clients (1, 4, 16), each asking for MAX_TOKENS tokens
              (greedy, no stop); generated tokens per second summed over the clients
  TTFT:       time to the first streamed token for a prompt with a ~2,000-token shared prefix,
              the first time (cache miss) and again with the same prefix and another question
              (cache hit), median of REPS; for Whale also after a restart of the server with the
              same cache directory (the hit then comes from the disk tier)

  pairs:      (--pairs N) 16 streams only, the servers taking turns N times, two measurements
              per turn, so that both see the same minutes of a noisy shared machine

Usage: python3 bench/serve.py [--model GGUF] [--llama-server PATH] [--whale BIN ...] [--pairs N] [--out bench/serve.md]
(--whale more than once: one row per binary, e.g. before and after a change, same run)"""
import argparse
import concurrent.futures
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

import openai

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_TOKENS = 64
REPS = 3
WHALE_BIN = str(ROOT / "build" / "whale")
PREFIX = " ".join(f"Fact {i}: the river number {i} flows north and is {i % 7 + 2} kilometres long." for i in range(120))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port, proc, path):
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.args}")
    raise SystemExit("server did not come up")


def start(kind, model, slots, ctx, llama_server, cache_dir=None):
    port = free_port()
    if kind == "whale":
        cmd = [WHALE_BIN, "serve", "-m", model, "--port", str(port), "--parallel", str(slots),
               "--ctx", str(ctx), "-t", "2", "--cache-dir", cache_dir or tempfile.mkdtemp(prefix="whale-bench-kv-")]
    else:
        cmd = [llama_server, "-m", model, "--port", str(port), "-np", str(slots), "-c", str(ctx * slots), "-t", "2",
               "--cont-batching"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(port, p, "/health")
    return p, openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)


def stream(client, messages, n):
    t0 = time.time()
    first, count = None, 0
    for c in client.chat.completions.create(model="default", messages=messages, temperature=0, max_tokens=n,
                                            stream=True):
        if c.choices and (c.choices[0].delta.content or getattr(c.choices[0].delta, "reasoning_content", None)):
            count += 1
            if first is None:
                first = time.time() - t0
    return first, count, time.time() - t0


def throughput(client, n_clients):
    msgs = [[{"role": "user", "content": f"Write a long story about a whale named {i}."}] for i in range(n_clients)]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(n_clients) as ex:
        res = list(ex.map(lambda m: stream(client, m, MAX_TOKENS), msgs))
    wall = time.time() - t0
    return sum(r[1] for r in res) / wall


def ask(client, rep, question):
    system = f"[{rep}] " + PREFIX  # a new prefix per repetition: the first request misses
    return stream(client, [{"role": "system", "content": system}, {"role": "user", "content": question}], 1)[0]


def ttft(client):
    miss, hit = [], []
    for rep in range(REPS):
        miss.append(ask(client, rep, "Which river is longest?"))
        hit.append(ask(client, rep, "Which river is shortest?"))
    return statistics.median(miss), statistics.median(hit)


def run(kind, model, llama_server):
    row = {}
    for n in (1, 4, 16):
        cache = tempfile.mkdtemp(prefix="whale-bench-kv-")
        p, client = start(kind, model, n, 2560, llama_server, cache)
        try:
            stream(client, [{"role": "user", "content": "warm up"}], 4)
            row[n] = throughput(client, n)
            if n == 1:
                row["ttft"] = ttft(client)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        if n == 1 and kind == "whale":  # the same prefixes after a restart: from the disk tier
            p, client = start(kind, model, n, 2560, llama_server, cache)
            try:
                row["disk"] = statistics.median(ask(client, rep, "Which river is widest?") for rep in range(REPS))
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
    return row


def pairs(model, llama_server, rounds, n=16):
    """16-stream throughput, whale and llama-server in turns; prints each turn, returns the lines."""
    lines = []
    for r in range(rounds):
        for kind in ("whale",) + (("llama",) if llama_server else ()):
            p, client = start(kind, model, n, 2560, llama_server)
            try:
                stream(client, [{"role": "user", "content": "warm up"}], 4)
                got = [throughput(client, n) for _ in range(2)]
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
            name = "whale" if kind == "whale" else "llama-server"
            lines.append(f"| {r + 1} | {name} | " + " | ".join(f"{g:.1f}" for g in got) + " |")
            print(lines[-1], flush=True)
    return ["| turn | server | 16 streams t/s | again |", "|---|---|---|---|"] + lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(pathlib.Path(os.environ.get("WHALE_HOME", pathlib.Path.home() / ".cache" / "whale")) / "models" / "default.gguf"))
    ap.add_argument("--llama-server", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "serve.md"))
    ap.add_argument("--whale", action="append", default=None, help="whale binary (repeat to compare several)")
    ap.add_argument("--pairs", type=int, default=0, help="only 16 streams, the servers taking turns N times")
    a = ap.parse_args()
    global WHALE_BIN
    if a.pairs:
        WHALE_BIN = (a.whale or [WHALE_BIN])[0]
        table = "\n".join(pairs(a.model, a.llama_server, a.pairs))
        print(table)
        pathlib.Path(a.out + ".last").write_text(table + "\n")
        return
    rows = {}
    for b in a.whale or [WHALE_BIN]:
        WHALE_BIN = b
        rows["whale" if not a.whale or len(a.whale) == 1 else f"whale {b}"] = run("whale", a.model, None)
    if a.llama_server:
        rows["llama-server"] = run("llama", a.model, a.llama_server)
    lines = ["| server | 1 stream t/s | 4 streams t/s | 16 streams t/s | TTFT miss (s) | TTFT hit (s) | TTFT hit after restart (s) |",
             "|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        disk = f"{r['disk']:.2f}" if "disk" in r else "n/a"
        lines.append(f"| {k} | {r[1]:.1f} | {r[4]:.1f} | {r[16]:.1f} | {r['ttft'][0]:.2f} | {r['ttft'][1]:.2f} | {disk} |")
    table = "\n".join(lines)
    print(table)
    pathlib.Path(a.out + ".last").write_text(table + "\n")  # paste into bench/serve.md with the setup


if __name__ == "__main__":
    main()

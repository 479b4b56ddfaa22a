#!/usr/bin/env python3
"""Neighbours benchmark (issue #18, "no request slows the others"), run by hand: how long one
plain greedy answer takes beside three other requests, when those are plain too and when they
use the costly settings (sampling at temperature 1, top log probabilities, JSON mode).

`whale serve` with --parallel 4 on the default model. Each repetition starts three neighbours,
which ask again and again until the measured request is done (so they run beside all of it),
then times one non-streaming greedy request of MAX_TOKENS tokens (temperature 0, no stop):
  a: the neighbours are plain greedy requests
  b: one at temperature 1 (the API's default top_p 1), one with logprobs and top_logprobs 20,
     one greedy with response_format {"type": "json_object"} on a prompt that wants prose
Reported: the median over REPS of the measured request's latency in each case, and b / a.
The neighbours' own token rates are printed for reference.

Usage: python3 bench/neighbours.py [--model GGUF] [--whale BIN ...] [--reps N] [--threads T]
(--whale more than once: one row per binary, e.g. before and after a change, same run)"""
import argparse
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_TOKENS = 300
TARGET = [{"role": "user", "content": "Write a long story about a whale who learns to sing. Use many chapters."}]
PROSE = [{"role": "user", "content": "Tell me about the history of whaling in a few paragraphs."}]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(whale, model, threads):
    port = free_port()
    cmd = [whale, "serve", "-m", model, "--port", str(port), "--parallel", "4", "--ctx", "2048", "-t", str(threads),
           "--cache-ram", "0", "--cache-disk", "0"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return p, port
        except OSError:
            time.sleep(0.2)
        if p.poll() is not None:
            raise SystemExit(f"server exited: {cmd}")
    raise SystemExit("server did not come up")


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    with urllib.request.urlopen(req, timeout=600) as r:
        out = json.loads(r.read())
    return time.time() - t0, out


def neighbour_bodies(kind):
    plain = {"messages": PROSE, "temperature": 0, "max_tokens": 400}
    if kind == "a":
        return [plain, plain, plain]
    return [{"messages": PROSE, "temperature": 1, "max_tokens": 400},
            {"messages": PROSE, "temperature": 0, "max_tokens": 400, "logprobs": True, "top_logprobs": 20},
            {"messages": PROSE, "temperature": 0, "max_tokens": 400, "response_format": {"type": "json_object"}}]


def neighbour(port, body, stop, tokens):
    while not stop.is_set():
        try:
            _, out = post(port, body)
            tokens.append(out["usage"]["completion_tokens"])
        except OSError:
            return


def once(port, kind):
    stop, tokens, threads = threading.Event(), [], []
    for body in neighbour_bodies(kind):
        t = threading.Thread(target=neighbour, args=(port, body, stop, tokens))
        t.start()
        threads.append(t)
    time.sleep(1.0)  # the neighbours are admitted and decoding
    t0 = time.time()
    dt, out = post(port, {"messages": TARGET, "temperature": 0, "max_tokens": MAX_TOKENS})
    wall = time.time() - t0
    stop.set()
    for t in threads:
        t.join()
    return dt, out["usage"]["completion_tokens"], sum(tokens) / max(wall, 1e-9)


def run(whale, model, reps, threads):
    p, port = start(whale, model, threads)
    try:
        post(port, {"messages": TARGET, "temperature": 0, "max_tokens": 8})  # warm up
        alone, _ = post(port, {"messages": TARGET, "temperature": 0, "max_tokens": MAX_TOKENS})
        row = {"alone": alone}
        for kind in ("a", "b"):
            res = [once(port, kind) for _ in range(reps)]
            row[kind] = statistics.median(r[0] for r in res)
            row[kind + "_tok"] = res[0][1]
            row[kind + "_all"] = [round(r[0], 2) for r in res]
            print(f"{whale} {kind}: {row[kind + '_all']} s, {row[kind + '_tok']} tokens, neighbours' finished "
                  f"tokens/s {[round(r[2], 1) for r in res]}", flush=True)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(pathlib.Path(os.environ.get("WHALE_HOME", pathlib.Path.home() / ".cache" / "whale")) / "models" / "default.gguf"))
    ap.add_argument("--whale", action="append", default=None, help="whale binary (repeat to compare several)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "neighbours.md.last"))
    a = ap.parse_args()
    lines = ["| whale | alone (s) | a: plain neighbours (s) | b: costly neighbours (s) | b / a | tokens |",
             "|---|---|---|---|---|---|"]
    for b in a.whale or [str(ROOT / "build" / "whale")]:
        r = run(b, a.model, a.reps, a.threads)
        lines.append(f"| {b} | {r['alone']:.2f} | {r['a']:.2f} {r['a_all']} | {r['b']:.2f} {r['b_all']} | "
                     f"{r['b'] / r['a']:.2f} | {r['a_tok']} / {r['b_tok']} |")
    table = "\n".join(lines)
    print(table)
    pathlib.Path(a.out).write_text(table + "\n")  # paste into bench/neighbours.md with the setup


if __name__ == "__main__":
    main()

"""Shared KV pages under a burst (issue #22), run by hand.

16 concurrent requests with one ~2,000-token system prompt, each adding its own ~30-token
question and asking for 100 greedy tokens, against `whale serve --parallel 16`; then one of them
alone. For each binary given (e.g. before and after paging, same run): the KV pages in use after
the burst (/metrics whale_kv_pages_used; before paging the gauge was tokens / 64 rounded up, so
it is read as such), the server's resident memory, aggregate decode tokens/s over the burst, and
single-stream decode tokens/s; and whether every reply equals the one the same request gets
alone.

    python3 bench/kv_share.py --whale build/whale [--whale /tmp/old/whale] [--out bench/kv_share.json]"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = pathlib.Path(os.environ.get("WHALE_HOME", pathlib.Path.home() / ".cache" / "whale")) / "models" / "default.gguf"
SYSTEM = " ".join(f"Fact {i}: the river number {i} flows north and is {i % 7 + 2} kilometres long." for i in range(100))
QUESTIONS = [f"Using the facts above, question {i}: which river numbers between {i} and {i + 20} are "
             f"exactly {i % 7 + 2} kilometres long, and in which direction do they flow?" for i in range(16)]
N_GEN = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, parallel):
    port = free_port()
    p = subprocess.Popen([binary, "serve", "-m", str(MODEL), "--port", str(port), "--parallel", str(parallel),
                          "--ctx", "2560", "-t", "2", "--cache-ram", "0", "--cache-disk", "0"],
                         stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return p, port
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("whale serve did not come up")


def ask(port, q):
    body = json.dumps({"model": "default", "max_tokens": N_GEN, "temperature": 0,
                       "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]}).encode()
    t0 = time.time()
    r = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                                      {"Content-Type": "application/json"}), timeout=3600)
    j = json.loads(r.read())
    return j["choices"][0]["message"]["content"], j["usage"], time.time() - t0


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    # the model label dropped: one model is served
    return {re.sub(r',?model="[^"]*"', "", l.split()[0]).replace("{}", ""): float(l.split()[1])
            for l in text.splitlines() if l and not l.startswith("#")}


def rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(binary):
    out = {"binary": binary}
    p, port = start(binary, 16)
    try:
        rss0 = rss_mib(p.pid)
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            burst = list(ex.map(lambda q: ask(port, q), QUESTIONS))
        wall = time.time() - t0
        m = metrics(port)
        out.update(burst_s=wall, burst_gen_tokens=sum(u["completion_tokens"] for _, u, _ in burst),
                   pages_used=m["whale_kv_pages_used"], rss_mib_after_load=rss0, rss_mib_after_burst=rss_mib(p.pid),
                   cache_hits=[u["prompt_cache_hit_tokens"] for _, u, _ in burst])
        out["burst_tokens_per_s"] = out["burst_gen_tokens"] / wall
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    p, port = start(binary, 1)
    try:
        rss0 = rss_mib(p.pid)
        solo = [ask(port, q) for q in QUESTIONS[:4]]
        m = metrics(port)
        out.update(solo_pages_used=m["whale_kv_pages_used"], solo_rss_mib=rss_mib(p.pid) - rss0)
        # one stream's decode rate: the 2nd..4th replies (their system prompt is the slot's, reused)
        out["solo_tokens_per_s"] = sum(u["completion_tokens"] for _, u, _ in solo[1:]) / sum(t for _, _, t in solo[1:])
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    out["same_as_alone"] = [b[0] == s[0] for b, s in zip(burst, solo)]
    out["prompt_tokens"] = burst[0][1]["prompt_tokens"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--whale", action="append", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "kv_share.json"))
    a = ap.parse_args()
    rows = [run(b) for b in (a.whale or [str(ROOT / "build" / "whale")])]
    for r in rows:
        print(json.dumps(r))
    pathlib.Path(a.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows},
                                              indent=1))


if __name__ == "__main__":
    main()

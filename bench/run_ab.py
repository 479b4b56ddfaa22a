#!/usr/bin/env python3
"""`whale run` end to end, two binaries interleaved (A B, then B A, ...): a 488-token plain-text
prompt on the default model, 128 greedy tokens, 2 threads; prefill and decode tokens per second
as `whale run --json` reports them (median of REPS). A binary that has the context cache gets
--no-cache, so both compute the whole prompt.

Usage: python3 bench/run_ab.py BEFORE_BIN AFTER_BIN [--out FILE.json]"""
import argparse
import json
import statistics
import subprocess

REPS = 3
PROMPT = " ".join(f"Fact {i}: the river number {i} flows north and is {i % 7 + 2} kilometres long." for i in range(25)) + \
    " Now a story about these rivers:"


def one(binary):
    help_text = subprocess.run([binary, "run", "--help"], capture_output=True, text=True).stdout
    extra = ["--no-cache"] if "--no-cache" in help_text else []
    p = subprocess.run([binary, "run", "--raw", "-p", PROMPT, "--temp", "0", "-n", "128", "--json", "-t", "2", *extra],
                       capture_output=True, text=True, check=True)
    o = json.loads(p.stdout)
    t = o["timings"]
    return [o["prompt_tokens"], o["completion_tokens"], t["prefill_tokens_per_s"], t["decode_tokens_per_s"], t["prefill_s"],
            t["decode_s"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    res = {"before": [], "after": []}
    for rep in range(REPS):
        for k in (["before", "after"] if rep % 2 == 0 else ["after", "before"]):
            res[k].append(one(getattr(a, k)))
    for k, v in res.items():
        print(f"{k}: prefill {statistics.median(x[2] for x in v):.1f} t/s, decode {statistics.median(x[3] for x in v):.1f} t/s")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Issue #21's second result, measured the way a user asks: for each held-out problem,
`whale run -m MODEL -p QUESTION --temp 0 -n 1024 --json` (no system prompt), the LAST number
of its `answer` compared with the reference; and whether `reasoning` is non-empty.

The problems are the `word` task's held-out split (word_en and word_zh, half each), listed by
`whale eval --show` (one token per reply: only the problems and references are used). The
answer is read here, in Python, not by Whale's verifier: an independent check.

  bench/reasoner/measure.py -m default -m default-r1 --n 100 -o bench/reasoner/measure.json
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text):
    """The last number of text as a float (commas between digits dropped), or None."""
    found = NUM.findall(text or "")
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def problems(whale, task, n, task_seed):
    out = subprocess.run([whale, "eval", "-m", "default", "--task", task, "--n", str(n), "--max-tokens", "1",
                          "--task-seed", str(task_seed), "--json", "--show", str(n)],
                         check=True, capture_output=True, text=True).stdout
    return [(e["prompt"], e["reference"]) for e in json.loads(out)["examples"]]


def ask(whale, model, question, max_tokens):
    t = time.time()
    r = subprocess.run([whale, "run", "-m", model, "-p", question, "--temp", "0", "-n", str(max_tokens), "--json"],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"whale run -m {model} failed: {r.stderr.strip()[-400:]}")
    j = json.loads(r.stdout)
    return j.get("reasoning") or "", j.get("answer") or "", time.time() - t, j


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", required=True, help="a model (repeat to compare)")
    ap.add_argument("--task", default="word")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--task-seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("-o", "--out", help="write every reply and the summary here (JSON)")
    ap.add_argument("--whale", default=os.environ.get("WHALE", "build/whale"))
    a = ap.parse_args()
    probs = problems(a.whale, a.task, a.n, a.task_seed)
    result = {"task": a.task, "split": "test", "n": len(probs), "max_tokens": a.max_tokens,
              "command": "whale run -m MODEL -p QUESTION --temp 0 -n %d --json" % a.max_tokens, "models": {}}
    for model in a.model:
        rows, right, thought, secs = [], 0, 0, 0.0
        for i, (q, ref) in enumerate(probs):
            reasoning, answer, s, j = ask(a.whale, model, q, a.max_tokens)
            got = last_number(answer)
            ok = got is not None and abs(got - float(ref)) < 1e-6
            right += ok
            thought += bool(reasoning.strip())
            secs += s
            rows.append({"prompt": q, "reference": ref, "reasoning": reasoning, "answer": answer,
                         "last_number": got, "correct": ok, "zh": not q.isascii(),
                         "completion_tokens": j.get("completion_tokens"), "finish_reason": j.get("finish_reason")})
            print(f"\r{model}: {i + 1}/{len(probs)}  accuracy {right / (i + 1):.1%}  "
                  f"reasoning {thought / (i + 1):.0%}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        n = len(probs)
        en = [r for r in rows if not r["zh"]]
        zh = [r for r in rows if r["zh"]]
        result["models"][model] = {
            "accuracy": right / n, "reasoning_rate": thought / n,
            "accuracy_en": sum(r["correct"] for r in en) / max(1, len(en)),
            "accuracy_zh": sum(r["correct"] for r in zh) / max(1, len(zh)),
            "seconds": secs, "replies": rows}
    print("%-28s %9s %9s %9s %10s %8s" % ("model", "accuracy", "English", "Chinese", "reasoning", "time"))
    for model, m in result["models"].items():
        print("%-28s %8.1f%% %8.1f%% %8.1f%% %9.0f%% %7.0fs" % (
            model, 100 * m["accuracy"], 100 * m["accuracy_en"], 100 * m["accuracy_zh"],
            100 * m["reasoning_rate"], m["seconds"]))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()

"""Speculative decoding, Whale vs llama.cpp on the same two files (issue #22).

Target Qwen2.5-Coder-1.5B-Instruct Q4_K_M, draft the default model (Qwen2.5-Coder-0.5B-Instruct
Q4_K_M, the same vocabulary). Greedy, one stream, 2 threads, each prompt in ChatML as raw text
(both engines read the same tokens). For each prompt and mode: decode tokens/s (after the first
token), drafted and accepted guesses; Whale's greedy tokens are checked equal to plain decoding's.

Whale modes: plain, --draft default (--draft-max 2 and 4), --draft lookup.
llama.cpp: llama-completion (plain), llama-speculative-simple -md DRAFT --spec-type draft-simple
(its default of 3 guesses, p-min 0; and --spec-draft-n-max 4), llama-lookup (prompt lookup).

    python3 bench/speculative.py --llama /path/to/llama.cpp/build/bin [--n 256] [--out bench/speculative.json]

Without --llama only Whale runs."""
import argparse
import json
import pathlib
import re
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

EDIT_SOURCE = '''def summarize(records):
    totals = {}
    counts = {}
    for record in records:
        key = record["category"]
        value = record["amount"]
        if key not in totals:
            totals[key] = 0
            counts[key] = 0
        totals[key] += value
        counts[key] += 1
    result = []
    for key in sorted(totals):
        average = totals[key] / counts[key]
        result.append({"category": key, "total": totals[key], "count": counts[key], "average": average})
    return result


def top_categories(records, n):
    summary = summarize(records)
    summary.sort(key=lambda item: item["total"], reverse=True)
    return [item["category"] for item in summary[:n]]
'''

PROMPTS = {
    "code": [
        "Write a Python function that merges two sorted lists into one sorted list, with a docstring and type hints.",
        "Write a C function that reverses a singly linked list in place, and a small main that tests it.",
    ],
    "chat": [
        "Explain the difference between a process and a thread to a new programmer.",
        "What are three good habits for writing maintainable software? Explain each briefly.",
    ],
    "edit": [
        "Rename the variable `records` to `rows` everywhere in this code and return the whole code, "
        "nothing else:\n\n```python\n" + EDIT_SOURCE + "```",
        "Add type hints to every function in this code and return the whole code, nothing else:\n\n```python\n"
        + EDIT_SOURCE + "```",
    ],
}


def chatml(q):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n"
            "<|im_start|>assistant\n")


def whale(binary, target, text, n, flags):
    cmd = [binary, "run", "-m", target, "--raw", "-p", text, "--temp", "0", "-n", str(n), "--json", "--no-cache",
           "-t", "2", *flags]
    j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    s = j.get("speculative") or {}
    return {"tokens": j["tokens"], "n_gen": len(j["tokens"]), "decode_tps": j["timings"]["decode_tokens_per_s"],
            "drafted": s.get("drafted", 0), "accepted": s.get("accepted", 0)}


def num(pattern, text, cast=float):
    m = re.search(pattern, text)
    return cast(m.group(1)) if m else None


def llama(bindir, tool, target, draft, text, n, flags=()):
    b = pathlib.Path(bindir)
    if tool == "plain":
        cmd = [b / "llama-completion", "-m", target, "-p", text, "-n", str(n), "--temp", "0", "-t", "2", "-no-cnv",
               "-c", "4096", "--no-warmup"]
    elif tool == "speculative":
        cmd = [b / "llama-speculative-simple", "-m", target, "-md", draft, "--spec-type", "draft-simple", "-p", text,
               "-n", str(n), "--temp", "0", "-t", "2", "-td", "2", "-c", "4096", *flags]
    else:
        cmd = [b / "llama-lookup", "-m", target, "-p", text, "-n", str(n), "--temp", "0", "-t", "2", "-c", "4096",
               *flags]
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    log = r.stdout + r.stderr
    if r.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {log[-2000:]}")
    if tool == "plain":  # llama_perf_context_print: eval time = X ms / N runs (... tokens per second)
        return {"decode_tps": num(r"eval time =.*?/\s*\d+ runs.*?,\s*([\d.]+) tokens per second", log),
                "n_gen": num(r"eval time =.*?/\s*(\d+) runs", log, int)}
    return {"decode_tps": num(r"decoded\s+\d+ tokens in\s+[\d.]+ seconds, speed:\s+([\d.]+) t/s", log),
            "n_gen": num(r"n_predict\s*=\s*(\d+)", log, int), "drafted": num(r"n_drafted\s*=\s*(\d+)", log, int),
            "accepted": num(r"n_accept\s*=\s*(\d+)", log, int)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--whale", default=str(REPO / "build" / "whale"))
    ap.add_argument("--llama", help="llama.cpp's build/bin (llama-completion, llama-speculative-simple, llama-lookup)")
    ap.add_argument("--target", default=str(pathlib.Path.home() / ".cache/whale/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))
    ap.add_argument("--draft", default=str(pathlib.Path.home() / ".cache/whale/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--out", default=str(REPO / "bench" / "speculative.json"))
    a = ap.parse_args()
    whale_modes = {"plain": [], "draft-2": ["--draft", a.draft, "--draft-max", "2"],
                   "draft-4": ["--draft", a.draft, "--draft-max", "4"], "lookup": ["--draft", "lookup"]}
    llama_modes = {"plain": ("plain", ()), "speculative": ("speculative", ()),
                   "speculative-4": ("speculative", ("--spec-draft-n-max", "4")), "lookup": ("lookup", ())}
    rows = []
    for kind, qs in PROMPTS.items():
        for i, q in enumerate(qs):
            text = chatml(q)
            plain = None
            for mode, flags in whale_modes.items():
                r = whale(a.whale, a.target, text, a.n, flags)
                if plain is None:
                    plain = r["tokens"]
                r["same_as_plain"] = r.pop("tokens") == plain
                rows.append({"engine": "whale", "kind": kind, "prompt": i, "mode": mode, **r})
                print(json.dumps(rows[-1]), flush=True)
            for mode, (tool, flags) in llama_modes.items():
                if not a.llama:
                    break
                r = llama(a.llama, tool, a.target, a.draft, text, a.n, flags)
                rows.append({"engine": "llama.cpp", "kind": kind, "prompt": i, "mode": mode, **r})
                print(json.dumps(rows[-1]), flush=True)
    pathlib.Path(a.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                               "n": a.n, "target": a.target, "draft": a.draft, "rows": rows}, indent=1))
    # the table: per engine and mode, decode t/s per kind (mean over prompts) and vs that engine's plain
    print("\n| engine | mode | " + " | ".join(f"{k} t/s (× plain, accepted)" for k in PROMPTS) + " |")
    print("|---|---|" + "---|" * len(PROMPTS))
    for eng, modes in (("whale", whale_modes), ("llama.cpp", llama_modes if a.llama else {})):
        for mode in modes:
            cells = []
            for kind in PROMPTS:
                rs = [r for r in rows if r["engine"] == eng and r["kind"] == kind and r["mode"] == mode]
                ps = [r for r in rows if r["engine"] == eng and r["kind"] == kind and r["mode"] == "plain"]
                tps = sum(r["decode_tps"] for r in rs) / len(rs)
                base = sum(r["decode_tps"] for r in ps) / len(ps)
                d = sum(r.get("drafted") or 0 for r in rs)
                acc = sum(r.get("accepted") or 0 for r in rs)
                cells.append(f"{tps:.1f} ({tps / base:.2f}×" + (f", {acc}/{d})" if d else ")"))
            print(f"| {eng} | {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())

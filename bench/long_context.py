"""Long contexts, Whale vs llama.cpp on the same files (issue #22): decode (tg32) and prefill
(pp512) at depths 0 / 4k / 16k for a dense R1-Distill-Qwen-1.5B-shape file (Qwen2.5-Coder-1.5B
Q4_K_M, the same shape) and a DeepSeek-V2-Lite-shape Q4_K_M file (whale synth), 2 threads.

Whale runs each KV type (f32, f16, bf16, and q8 on V2-Lite) with the depth filled by random cache rows
(--depth-fill random: the same attention work without a prefill). llama.cpp runs llama-bench -d
(its KV cache in F16, its default; the depth is a real prefill, so its deepest runs are skipped
where a prefill would take many minutes: --llama-depths per file).

    python3 bench/long_context.py --dense QWEN1.5B.gguf --v2lite V2LITE.gguf \\
        [--llama /path/to/llama.cpp/build/bin] [--reps 2] [--out bench/long_context.json]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
WHALE = REPO / "build" / "whale"
DEPTHS = [0, 4096, 16384]


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def whale_bench(model, kv, reps):
    """tg32 at every depth, pp512 at depths 0 and 4096 (at 16k a prefill test takes minutes)."""
    res = []
    for p, n, depths in (("0", "32", DEPTHS), ("512", "0", DEPTHS[:2])):
        out = run([str(WHALE), "bench", "-m", str(model), "-p", p, "-n", n, "-d", ",".join(map(str, depths)),
                   "--depth-fill", "random", "-r", str(reps), "-w", "1", "-t", "2", "--kv-type", kv, "--json"])
        res += [{"test": x["test"].split(" @")[0], "depth": x["n_depth"], "ts": x["avg_ts"], "sd": x["stddev_ts"]}
                for x in out["results"]]  # whale names a test "tg32 @ d4096"; the depth is its own field
    return res


def llama_bench(bin_dir, model, depths, reps):
    """tg32 at the given depths, pp512 at depths 0 and 4096; each depth is a real prefill."""
    res = []
    for p, n, ds in (("0", "32", depths), ("512", "0", [d for d in depths if d <= 4096])):
        out = run([str(pathlib.Path(bin_dir) / "llama-bench"), "-m", str(model), "-p", p, "-n", n, "-d",
                   ",".join(map(str, ds)), "-r", str(reps), "-t", "2", "-o", "json"])
        for x in out:
            test = f"pp{x['n_prompt']}" if x["n_prompt"] else f"tg{x['n_gen']}"
            res.append({"test": test, "depth": x.get("n_depth", 0), "ts": x["avg_ts"], "sd": x["stddev_ts"]})
    return res


def table(results):
    """Plain-text summary: t/s per engine, test and depth, and decode at depth over depth 0."""
    lines = []
    for name, runs in results["files"].items():
        lines.append(f"\n{name}")
        for engine, rows in runs.items():
            cells = {(r["test"].split(" @")[0], r["depth"]): r["ts"] for r in rows}
            tg0 = cells.get(("tg32", 0))
            row = [f"{engine:14s}"]
            for test, ds in (("tg32", DEPTHS), ("pp512", DEPTHS[:2])):
                for d in ds:
                    v = cells.get((test, d))
                    row.append(f"{test}@{d}: {v:6.2f}" if v else f"{test}@{d}:    -  ")
            for d in DEPTHS[1:]:
                if tg0 and ("tg32", d) in cells:
                    row.append(f"tg {d}/0: {cells[('tg32', d)] / tg0:.2f}")
            lines.append("  ".join(row))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dense", required=True)
    ap.add_argument("--v2lite", required=True)
    ap.add_argument("--llama")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--llama-depths", default="dense=0,4096,16384;v2lite=0,4096")
    ap.add_argument("--only", choices=("dense", "v2lite"), help="run one file (the other's figures are not written)")
    ap.add_argument("--kv", default="f32,f16,bf16,q8", help="Whale's cache types to run (q8: V2-Lite only)")
    ap.add_argument("--out", default=str(REPO / "bench" / "long_context.json"))
    a = ap.parse_args()
    ld = dict(kv.split("=") for kv in a.llama_depths.split(";"))
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "files": {}}
    for name, path in (("dense", a.dense), ("v2lite", a.v2lite)):
        if a.only and name != a.only:
            continue
        runs = {}
        for kv in [k for k in a.kv.split(",") if k != "q8" or name == "v2lite"]:  # q8: MLA latents only
            runs[f"whale {kv}"] = whale_bench(path, kv, a.reps)
        if a.llama:
            runs["llama.cpp f16"] = llama_bench(a.llama, path, [int(x) for x in ld[name].split(",")], 1)
        results["files"][f"{name}: {pathlib.Path(path).name}"] = runs
        pathlib.Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    pathlib.Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()

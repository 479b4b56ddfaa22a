#!/usr/bin/env python3
"""Training speed, Whale beside PyTorch on the same shapes, batch, context and threads.

For each shape: `whale train --init SHAPE` for --steps steps (tokens/s per step from its
metrics.jsonl, the first step dropped as warm-up), then the same model in PyTorch eager
(transformers' Qwen2ForCausalLM / DeepseekV3ForCausalLM built from the checkpoint Whale wrote,
F32, AdamW, the same batch of real shards) for the same steps. Prints one table row per shape
and writes bench/train.json.

  python3 bench/train.py --data DIR [--shapes qwen2:tiny,deepseek2:tiny,bench/demo/dense.json]
                         [--batch 4] [--ctx 128] [--steps 6] [--threads 2] [--repeat 3] [--f32-only] [--compile]
A shape is a `--init` name or a config.json (`--config`). Each repeat runs Whale F32, Whale BF16,
PyTorch F32 and PyTorch BF16 autocast one after the other (so a neighbour's load hits all
alike; --f32-only: the F32 pair alone); each figure is the median over the repeats.
DIR: shards from `whale data prepare` (its manifest names the tokenizer)."""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
WHALE = REPO / "build" / "whale"


def whale_run(shape, data, out, a, precision):
    """tokens/s (mean of steps 2..) and MFU (the same steps) of one `whale train` run."""
    model = ["--config", shape] if shape.endswith(".json") else ["--init", shape]
    subprocess.run([str(WHALE), "train", *model, "--data", str(data), "-o", str(out), "--steps", str(a.steps),
                    "--batch", str(a.batch), "--ctx", str(a.ctx), "--precision", precision, "--threads", str(a.threads)],
                   check=True, capture_output=True)
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return float(np.mean([r["tokens_per_s"] for r in rows[1:]])), float(np.mean([r.get("mfu", 0) for r in rows[1:]]))


def torch_run(ckpt, data, a, bf16=False, compiled=False):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), torch_dtype=torch.float32)
    model.train()
    if compiled:  # the first step (dropped below like every run's) pays for the compilation
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    ids = np.fromfile(sorted(pathlib.Path(data).glob("train-*.bin"))[0], dtype=np.uint32).astype(np.int64)
    rng = np.random.default_rng(1)
    times = []
    for _ in range(a.steps):
        starts = rng.integers(0, len(ids) - a.ctx - 1, size=a.batch)
        x = torch.from_numpy(np.stack([ids[s:s + a.ctx] for s in starts]))
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return a.batch * a.ctx / float(np.mean(times[1:]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--shapes", default="qwen2:tiny,deepseek2:tiny")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--f32-only", action="store_true")
    p.add_argument("--compile", action="store_true", help="also PyTorch F32 under torch.compile")
    a = p.parse_args()
    results = []
    med = lambda v: round(float(np.median(v)), 1) if v else None
    with tempfile.TemporaryDirectory() as tmp:
        for shape in a.shapes.split(","):
            out = pathlib.Path(tmp) / shape.replace(":", "_").replace("/", "_")
            r = {k: [] for k in ("w32", "m32", "w16", "m16", "t32", "t16", "tc")}
            for _ in range(a.repeat):
                w, m = whale_run(shape, a.data, out, a, "f32")
                r["w32"].append(w), r["m32"].append(m)
                r["t32"].append(torch_run(out / f"step-{a.steps:06d}", a.data, a))
                if a.compile:
                    r["tc"].append(torch_run(out / f"step-{a.steps:06d}", a.data, a, compiled=True))
                if not a.f32_only:
                    w, m = whale_run(shape, a.data, out, a, "bf16")
                    r["w16"].append(w), r["m16"].append(m)
                    r["t16"].append(torch_run(out / f"step-{a.steps:06d}", a.data, a, bf16=True))
            row = {"shape": shape, "whale_f32_tokens_per_s": med(r["w32"]), "whale_f32_mfu": round(float(np.median(r["m32"])), 3),
                   "whale_bf16_tokens_per_s": med(r["w16"]), "whale_bf16_mfu": round(float(np.median(r["m16"])), 3) if r["m16"] else None,
                   "torch_tokens_per_s": med(r["t32"]), "torch_bf16_autocast_tokens_per_s": med(r["t16"]),
                   "torch_compile_tokens_per_s": med(r["tc"]),
                   "runs": {k: [round(x, 3) for x in v] for k, v in r.items()}}
            row["ratio_f32"] = round(row["whale_f32_tokens_per_s"] / row["torch_tokens_per_s"], 2)
            results.append(row)
            print(f"{shape:16s} whale f32 {row['whale_f32_tokens_per_s']:8.1f} tok/s (MFU {row['whale_f32_mfu']:.2f})  "
                  f"bf16 {row['whale_bf16_tokens_per_s']} (MFU {row['whale_bf16_mfu']})   torch eager "
                  f"{row['torch_tokens_per_s']:8.1f}, bf16 autocast {row['torch_bf16_autocast_tokens_per_s']}, "
                  f"compile {row['torch_compile_tokens_per_s']}   "
                  f"whale/torch f32 {row['ratio_f32']:5.2f}", flush=True)
    (REPO / "bench" / "train.json").write_text(json.dumps({"batch": a.batch, "ctx": a.ctx, "threads": a.threads, "repeat": a.repeat,
                                                            "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

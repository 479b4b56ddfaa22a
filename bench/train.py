#!/usr/bin/env python3
"""Training speed, Whale beside PyTorch on the same shapes, batch, context and threads.

For each shape: `whale train --init SHAPE` for --steps steps (tokens/s per step from its
metrics.jsonl, the first step dropped as warm-up), then the same model in PyTorch eager
(transformers' Qwen2ForCausalLM / DeepseekV3ForCausalLM built from the checkpoint Whale wrote,
F32, AdamW, the same batch of real shards) for the same steps. Prints one table row per shape
and writes bench/train.json.

  python3 bench/train.py --data DIR [--shapes qwen2:tiny,deepseek2:tiny] [--batch 4] [--ctx 128]
                         [--steps 6] [--threads 2]
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


def whale_run(shape, data, out, a):
    subprocess.run([str(WHALE), "train", "--init", shape, "--data", str(data), "-o", str(out), "--steps", str(a.steps),
                    "--batch", str(a.batch), "--ctx", str(a.ctx)], check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return float(np.mean([r["tokens_per_s"] for r in rows[1:]]))


def torch_run(ckpt, data, a):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), torch_dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    ids = np.fromfile(sorted(pathlib.Path(data).glob("train-*.bin"))[0], dtype=np.uint32).astype(np.int64)
    rng = np.random.default_rng(1)
    times = []
    for _ in range(a.steps):
        starts = rng.integers(0, len(ids) - a.ctx - 1, size=a.batch)
        x = torch.from_numpy(np.stack([ids[s:s + a.ctx] for s in starts]))
        t0 = time.perf_counter()
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
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in a.shapes.split(","):
            out = pathlib.Path(tmp) / shape.replace(":", "_")
            w = whale_run(shape, a.data, out, a)
            t = torch_run(out / f"step-{a.steps:06d}", a.data, a)
            results.append({"shape": shape, "whale_tokens_per_s": round(w, 1), "torch_tokens_per_s": round(t, 1),
                            "ratio": round(w / t, 2)})
            print(f"{shape:16s} whale {w:8.1f} tok/s   torch eager {t:8.1f} tok/s   whale/torch {w / t:5.2f}", flush=True)
    (REPO / "bench" / "train.json").write_text(json.dumps({"batch": a.batch, "ctx": a.ctx, "threads": a.threads,
                                                            "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

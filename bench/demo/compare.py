#!/usr/bin/env python3
"""The demo's two runs side by side: bench/demo/compare.py OUT_DIR RUN_ROOT.

Reads OUT_DIR/{moe,dense}-metrics.jsonl and the MFLOP-per-token line of each run's summary,
prints a markdown table (final and best validation loss, tokens, compute, speed, MFU, expert
load, MTP loss; the dense run's validation loss at the MoE run's token count too) and draws
OUT_DIR/val_loss.png: validation loss against training compute for both (gnuplot)."""
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path


def load(out, name):
    rows = [json.loads(l) for l in (out / f"{name}-metrics.jsonl").read_text().splitlines() if l.strip()]
    summary = (out / f"{name}-summary.txt").read_text()
    mflop = float(re.search(r"([0-9.]+) MFLOP per token", summary).group(1))
    params = re.search(r"([0-9.]+M) parameters \(([0-9.]+M)", summary)
    return rows, mflop, params.group(1), params.group(2)


def main():
    out, root = Path(sys.argv[1]), Path(sys.argv[2])
    batch_tokens = 8 * 256
    runs = {n: load(out, n) for n in ("moe", "dense")}
    lines = ["| | MoE: deepseek2:tiny (MLA + MoE + MTP) | dense: Qwen2, same active parameters |", "|---|---|---|"]
    table = {}
    for name, (rows, mflop, total, body) in runs.items():
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        steps = rows[-1]["step"]
        t = {
            "parameters (all / without embedding and head)": f"{total} / {body}",
            "MFLOP per token": f"{mflop:.1f}",
            "steps x tokens per step": f"{steps} x {batch_tokens}",
            "tokens seen": f"{steps * batch_tokens / 1e6:.2f}M",
            "training compute": f"{steps * batch_tokens * mflop * 1e6 / 1e12:.1f} TFLOP",
            "final train loss": f"{rows[-1]['loss']:.3f}",
            "final val loss": f"{val[-1][1]:.3f}",
            "best val loss": f"{min(v for _, v in val):.3f}",
            "tokens/s (median, 1 thread)": f"{statistics.median(r['tokens_per_s'] for r in rows):.0f}",
            "MFU (median)": f"{100 * statistics.median(r.get('mfu', 0) for r in rows):.0f}%",
            "expert load max/mean (last)": f"{rows[-1]['expert_load']:.2f}" if "expert_load" in rows[-1] else "-",
            "MTP loss (last)": f"{rows[-1]['mtp_loss']:.3f}" if "mtp_loss" in rows[-1] else "-",
        }
        table[name] = t
    moe_steps = runs["moe"][0][-1]["step"]
    dense_val = [(r["step"], r["val_loss"]) for r in runs["dense"][0] if "val_loss" in r]
    at = min(dense_val, key=lambda sv: abs(sv[0] - moe_steps))
    table["moe"]["val loss at the MoE run's last step (equal tokens)"] = table["moe"]["final val loss"]
    table["dense"]["val loss at the MoE run's last step (equal tokens)"] = f"{at[1]:.3f} (step {at[0]})"
    for k in table["moe"]:
        lines.append(f"| {k} | {table['moe'][k]} | {table['dense'][k]} |")
    print("\n".join(lines))

    data = {}
    for name, (rows, mflop, _, _) in runs.items():
        f = out / f".{name}-val.dat"
        f.write_text("".join(f"{r['step'] * batch_tokens * mflop * 1e6 / 1e12} {r['val_loss']}\n"
                             for r in rows if "val_loss" in r))
        data[name] = f
    script = f"""set terminal pngcairo size 900,500
set output '{out / "val_loss.png"}'
set title 'Validation loss at equal training compute'
set xlabel 'training compute (TFLOP)'
set ylabel 'validation loss (nats per token)'
set grid
plot '{data["moe"]}' with linespoints title 'DeepSeek-V3 architecture (MoE + MLA + MTP), 3.3M active', \\
     '{data["dense"]}' with linespoints title 'dense Qwen2, 3.35M'
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    for f in data.values():
        f.unlink()


if __name__ == "__main__":
    main()

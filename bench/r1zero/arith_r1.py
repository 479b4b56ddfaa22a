#!/usr/bin/env python3
"""Seeded generator of pretraining text for the R1-Zero result (bench/r1zero.md), as JSONL.

Each document opens with R1-Zero's template (the text `whale grpo --prompt r1zero` puts before
a problem) and holds 10-30 arith_small problems (2-3 digit + and -) in that format:

  User: What is 37 + 48? Assistant: <think> 7 + 8 = 15, write 5 carry 1; 3 + 4 + 1 = 8, write 8 </think> <answer> 85 </answer>
  User: What is 512 - 96? Assistant: <think> 512 - 96 </think> <answer> 416 </answer>

The reasoning is either the column steps of bench/demo/arith.py (--steps share) or only the
question restated: the pretrained model can do both, and GRPO finds out which pays.

No held-out problem is ever written: a problem's split is the hash whale's task generator uses
(src/rl/task.c: mix(), the arith_small task id and its key (op, a, b)), recomputed here, and
test-split problems are skipped. Answers are always right: this is what a base model read, not
what it was rewarded for.

  arith_r1.py --n-docs 2500 --seed 7 -o r1.jsonl
"""
import argparse, json, os, random, sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'demo'))
from arith import steps_add, steps_sub  # noqa: E402

M64 = (1 << 64) - 1
HEAD = ("A conversation between User and Assistant. The user asks a question, and the Assistant "
        "solves it. The assistant first thinks about the reasoning process in the mind and then "
        "provides the user with the answer. The reasoning process and answer are enclosed within "
        "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
        "process here </think> <answer> answer here </answer>. ")
TASK_ID = 6         # arith_small in src/rl/task.c's table
TEST_ONE_IN = 10    # RL_TEST_ONE_IN


def splitmix64(s):
    s = (s + 0x9e3779b97f4a7c15) & M64
    z = s
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return s, z ^ (z >> 31)


def mix(a, b):
    s = a ^ ((b * 0x9e3779b97f4a7c15) & M64)
    s, _ = splitmix64(s)
    s, z = splitmix64(s)
    return z


def is_test(op, a, b):
    k = mix(0x5eed, TASK_ID)
    for v in (op, a, b):
        k = mix(k, v)
    return (k or 1) % TEST_ONE_IN == 0


def draw(rng):
    while True:
        op = rng.randint(0, 1)
        da, db = rng.randint(2, 3), rng.randint(2, 3)
        a, b = rng.randint(10 ** (da - 1), 10 ** da - 1), rng.randint(10 ** (db - 1), 10 ** db - 1)
        if op == 1 and a < b:
            a, b = b, a
        if not is_test(op, a, b):
            return op, a, b


def problem(rng, steps_share):
    op, a, b = draw(rng)
    sym, r = "+-"[op], (a + b if op == 0 else a - b)
    if rng.random() < steps_share:
        full = (steps_add if op == 0 else steps_sub)(a, b)
        think = full.split(": ", 1)[1].rsplit("; answer", 1)[0]
    else:
        think = f"{a} {sym} {b}"
    return f"User: What is {a} {sym} {b}? Assistant: <think> {think} </think> <answer> {r} </answer>"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n-docs', type=int, required=True)
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--steps', type=float, default=0.5, help='share of problems whose reasoning is the column steps')
    ap.add_argument('-o', '--output', required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.output, 'w') as f:
        for _ in range(args.n_docs):
            text = HEAD + "\n".join(problem(rng, args.steps) for _ in range(rng.randint(10, 30)))
            f.write(json.dumps({"text": text}) + "\n")


if __name__ == '__main__':
    main()

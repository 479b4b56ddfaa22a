#!/usr/bin/env python3
"""Seeded generator of synthetic arithmetic text as JSONL ({"text": ...}).

Each document holds 10-30 problems, one per line, in a few surface forms:
  Q: 37 + 48 = ? A: 85
  37 + 48: 7 + 8 = 15, write 5 carry 1; 3 + 4 + 1 = 8, write 8; answer 85
  52 - 37: 2 - 7 needs a borrow, 12 - 7 = 5, write 5; 4 - 3 = 1, write 1; answer 15
  123 * 45: 123 * 5 = 615; 123 * 40 = 4920; 615 + 4920 = 5535; answer 5535
  What is 37 plus 48? 85

Usage:
  arith.py --corpus corpus/                  # print suggested --n-docs for ~10% share
  arith.py --corpus corpus/ -o arith.jsonl   # write that many docs
  arith.py --n-docs 2000 --seed 1 -o arith.jsonl
The share is estimated in bytes and in a digit-split token proxy (each digit,
word and punctuation mark one token); the suggestion uses the proxy, since
BPE tokenizers usually split numbers into single digits or short groups.
"""
import argparse, glob, json, math, os, random, re, sys

WORD = {'+': 'plus', '-': 'minus', '*': 'times'}


def rand_num(rng, lo_digits=1, hi_digits=4):
    d = rng.choices(range(lo_digits, hi_digits + 1),
                    weights=[1, 3, 3, 2][lo_digits - 1:hi_digits])[0]
    return rng.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1)


def steps_add(a, b):
    da, db = str(a)[::-1], str(b)[::-1]
    parts, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        expr = f"{x} + {y}" + (f" + {carry}" if carry else "")
        if s >= 10:
            parts.append(f"{expr} = {s}, write {s % 10} carry 1")
        else:
            parts.append(f"{expr} = {s}, write {s}")
        carry = s // 10
    if carry:
        parts.append("write the carry 1")
    return f"{a} + {b}: " + "; ".join(parts) + f"; answer {a + b}"


def steps_sub(a, b):  # requires a >= b; a pending borrow shows as "- 1"
    da, db = str(a)[::-1], str(b)[::-1]
    parts, borrow = [], 0
    for i in range(len(da)):
        x = int(da[i])
        y = int(db[i]) if i < len(db) else 0
        if i >= len(db) and borrow == 0:
            parts.append(f"bring down {x}")
            continue
        expr = f"{x} - {y}" + (" - 1" if borrow else "")
        r = x - y - borrow
        if r < 0:
            parts.append(f"{expr} needs a borrow, {x + 10} - {y}" + (" - 1" if borrow else "")
                         + f" = {r + 10}, write {r + 10}")
            borrow = 1
        else:
            parts.append(f"{expr} = {r}, write {r}")
            borrow = 0
    return f"{a} - {b}: " + "; ".join(parts) + f"; answer {a - b}"


def steps_mul(a, b):
    db = str(b)[::-1]
    partials = [a * int(c) * 10 ** i for i, c in enumerate(db) if c != '0']
    parts = [f"{a} * {int(c) * 10 ** i} = {a * int(c) * 10 ** i}"
             for i, c in enumerate(db) if c != '0']
    if len(partials) > 1:
        parts.append(" + ".join(map(str, partials)) + f" = {a * b}")
    if not parts:
        parts.append(f"{a} * 0 = 0")
    return f"{a} * {b}: " + "; ".join(parts) + f"; answer {a * b}"


def problem(rng):
    op = rng.choices('+-*', weights=[4, 3, 3])[0]
    if op == '*':
        a, b = rand_num(rng, 1, 3), rand_num(rng, 1, 2)
    else:
        a, b = rand_num(rng), rand_num(rng)
        if op == '-' and b > a and rng.random() < 0.9:
            a, b = b, a
    r = {'+': a + b, '-': a - b, '*': a * b}[op]
    style = rng.random()
    if style < 0.30 and (op != '-' or a >= b):
        return {'+': steps_add, '-': steps_sub, '*': steps_mul}[op](a, b)
    if style < 0.85:
        return f"Q: {a} {op} {b} = ? A: {r}"
    if style < 0.95:
        return f"What is {a} {WORD[op]} {b}? {r}"
    return f"{a} {op} {b} = {r}"


def doc(rng):
    return "\n".join(problem(rng) for _ in range(rng.randint(10, 30)))


def proxy_tokens(s):
    return len(re.findall(r"\d|[A-Za-z]+|[^\sA-Za-z\d]", s))


def corpus_size(path):
    files = glob.glob(os.path.join(path, '*.jsonl')) + glob.glob(os.path.join(path, '*.txt'))
    nbytes = ntok = 0
    for fn in files:
        for line in open(fn, encoding='utf-8'):
            t = json.loads(line)['text'] if fn.endswith('.jsonl') else line
            nbytes += len(t.encode()); ntok += proxy_tokens(t)
    return nbytes, ntok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n-docs', type=int, help='documents to write (default: suggested from --corpus)')
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('-o', '--output', help='JSONL output path')
    ap.add_argument('--corpus', help='corpus dir (*.jsonl / *.txt) to size the ~10%% share against')
    ap.add_argument('--frac', type=float, default=0.10, help='target share of arithmetic tokens')
    args = ap.parse_args()

    if args.corpus:
        cb, ct = corpus_size(args.corpus)
        srng = random.Random(args.seed + 1)
        sample = [doc(srng) for _ in range(500)]
        mb = sum(len(s.encode()) + 1 for s in sample) / len(sample)
        mt = sum(proxy_tokens(s) for s in sample) / len(sample)
        k = args.frac / (1 - args.frac)
        sugg = math.ceil(k * ct / mt)
        print(f"corpus: {cb / 1e6:.2f} MB, ~{ct / 1e6:.2f}M proxy tokens; arith doc: "
              f"{mb:.0f} B, ~{mt:.0f} proxy tokens", file=sys.stderr)
        print(f"suggested --n-docs {sugg} for {args.frac:.0%} of tokens "
              f"(by bytes it would be {math.ceil(k * cb / mb)})", file=sys.stderr)
        if args.n_docs is None:
            args.n_docs = sugg
    if not args.output:
        return
    if args.n_docs is None:
        ap.error('--n-docs or --corpus is required with -o')
    rng = random.Random(args.seed)
    tmp = args.output + '.tmp'
    with open(tmp, 'w') as f:
        for _ in range(args.n_docs):
            f.write(json.dumps({"text": doc(rng)}) + "\n")
    os.replace(tmp, args.output)
    print(f"wrote {args.n_docs} docs to {args.output} "
          f"({os.path.getsize(args.output) / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == '__main__':
    main()

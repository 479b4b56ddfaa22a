#!/usr/bin/env bash
# A/B speed run of two whale binaries on the same files in one session, interleaved A B B A so
# that drift of a shared machine falls on both: `whale bench -p 512 -n 128 -r 3 -t 2 --json`
# per binary and file. Prints one JSON line per run (binary label, file, bench JSON).
#   bench/ab.sh A_BINARY B_BINARY FILE...      (labels: "A" and "B")
set -euo pipefail
a=$1 b=$2; shift 2
for f in "$@"; do
  for label in A B B A; do
    bin=$a; [ "$label" = B ] && bin=$b
    out=$("$bin" bench -m "$f" -p 512 -n 128 -r 3 -t 2 --json 2>/dev/null)
    printf '{"binary": "%s", "file": "%s", "bench": %s}\n' "$label" "$(basename "$f")" "$out"
  done
done

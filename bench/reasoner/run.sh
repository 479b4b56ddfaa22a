#!/usr/bin/env bash
# Issue #21's second result: `make reasoner` (scripts/reasoner), then the default model and
# default-r1 measured the way a user asks (measure.py), with the curves and every reply copied
# into bench/reasoner/ (bench/reasoner.md explains them).
#
#   bench/reasoner/run.sh [DIR]     # DIR: scripts/reasoner's work files (default $WHALE_HOME/reasoner)
#   N=50 bench/reasoner/run.sh      # held-out problems measured (default 50)
set -euo pipefail
cd "$(dirname "$0")/../.."
HOME_DIR=${WHALE_HOME:-$HOME/.cache/whale}
D=${1:-$HOME_DIR/reasoner}
OUT=bench/reasoner
scripts/reasoner "$D"
cp "$D/timings.json" "$OUT/timings.json"
cp "$D/sft/metrics.jsonl" "$OUT/sft-metrics.jsonl"
cp "$D/grpo/metrics.jsonl" "$OUT/grpo-metrics.jsonl"
python3 "$OUT/measure.py" -m default -m default-r1 --n "${N:-50}" -o "$OUT/measure.json"

#!/usr/bin/env bash
# The GRPO loop end to end on a tiny model, with a reward it can learn in a minute: a reply
# "contains the letter a" (a regex verifier). Not issue #21's results (those need arithmetic); a
# picture of the loop working: reward, KL and the time split per step.
#
#   bench/grpo/smoke.sh [DIR]     # DIR: the demo's data (bench/train_demo.sh), default ~/.cache/whale/demo
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${WHALE:-build/whale}
D=${1:-$HOME/.cache/whale/demo}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 - "$T/tasks.jsonl" <<'PY'
import json, sys
words = ["river", "stone", "cloud", "night", "green", "light", "water", "bread", "house", "music"]
open(sys.argv[1], "w").write("".join(json.dumps({"prompt": f"Say one thing about {w}.", "answer": "(?s).*a.*",
                                                  "verifier": "regex"}) + "\n" for w in words))
PY
$W train --init qwen2:test --data "$D/data" -o "$T/base" --steps 30 --batch 4 --ctx 64 --lr 1e-2 --threads 2 > /dev/null
$W grpo -m "$T/base/step-000030" --task "$T/tasks.jsonl" -o "$T/run" --prompt chat --prompts 4 --group 8 \
  --max-tokens 6 --format-reward 0 --lr 2e-2 --beta 0.02 --eval-every 0 --threads 2 --steps 24
cp "$T/run/metrics.jsonl" bench/grpo/smoke-metrics.jsonl
$W train plot "$T/run" -o "$T/png" > /dev/null
cp "$T/png/reward.png" bench/grpo/smoke-reward.png
cp "$T/png/kl.png" bench/grpo/smoke-kl.png

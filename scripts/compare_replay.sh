#!/usr/bin/env bash
# Seed 001's comparison: the same Double + dueling agent on LunarLander-v3 with uniform and with
# prioritized replay, 3 seeds each, then one figure (returns with 100-episode rolling means, loss,
# epsilon and a kernel-density plot of episode returns).
# Usage: scripts/compare_replay.sh [OUT_DIR] [extra `jaxdqn train` options, e.g. --total-steps 100000]
set -euo pipefail
out=${1:-runs/compare-replay}
shift || true
jaxdqn train --preset lunarlander-per --num-seeds 3 --prioritized False --out "$out/uniform" "$@"
jaxdqn train --preset lunarlander-per --num-seeds 3 --out "$out/prioritized" "$@"
jaxdqn plot "$out/uniform" "$out/prioritized" --out "$out/compare.png"

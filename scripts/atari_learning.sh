#!/usr/bin/env bash
# The Atari learning runs, for a machine with a GPU (pip install -e ".[cuda]"): `pong` until its
# 100-game mean reaches 19, then `breakout` for its full budget; a figure for each, and the greedy
# evaluation of each final policy with a video of one game.
# Usage: scripts/atari_learning.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/atari}
for preset in pong breakout; do
  jaxdqn train --preset "$preset" --out "$out/$preset"
  jaxdqn plot "$out/$preset" --out "$out/$preset.png"
  jaxdqn evaluate "$out/$preset" --episodes 10 --video "$out/$preset.mp4"
done

#!/usr/bin/env bash
# The runs only a GPU can show, each command under 10 minutes and all of them under 40 minutes of device
# time. Each writes a result file naming the device into benchmarks/results (or OUT_DIR). Needs jaxdqn with
# its GPU and gymnax extras (pip install -e ".[cuda,gymnax]"; on a machine with JAX but no package index,
# scripts/gpu_packages.sh here and scripts/gpu_run.sh there); PureJaxRL's rows need PUREJAXRL_PYTHON, an
# interpreter with PureJaxRL's dependencies (see benchmarks/peers.py), and PUREJAXRL_ANCHORS, its checkout.
#
# Usage: scripts/gpu_check.sh [SECTION ...]   (default: every section, in this order)
#   peers     CartPole, 10 envs, 1 seed: PureJaxRL, jaxdqn on EnvPool, jaxdqn on gymnax (cold and warm cache)
#   agents    64 CartPole agents at once on the JAX backend (and PureJaxRL's 64 seeds)
#   bench     `jaxdqn bench`: environment steps, train steps, end to end, host loop, memory
#   breakout  Breakout learning-phase SPS (the `breakout` preset filled to learning_starts, then 4096 steps)
#   capacity  agents per GPU: how many CartPole agents (gymnax, 10 envs each) and Breakout agents (the
#             `breakout` preset, its 1M-frame replay each) train at once on one GPU, and their agent-steps/s
#   curves    short Pong and Breakout learning runs (500k agent steps each): their summary, metrics and a
#             figure (the run folders, replay checkpoints included, stay in TMPDIR). Each command is stopped
#             by SIGTERM after CURVE_SEGMENT_S (default 540) seconds, which saves a checkpoint, and resumed
#             until the run ends. On an H200 breakout's 500k took about 3.5 minutes and pong ran about 750
#             agent steps/s (500k: about 11 minutes, so two commands).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT_DIR:-benchmarks/results}
mkdir -p "$out"
python=${PYTHON:-python3}
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(peers agents bench breakout capacity curves)
"$python" -c "import jax; print('jax', jax.__version__, jax.devices())"

purejaxrl_case=()
if [ -n "${PUREJAXRL_PYTHON:-}" ]; then
  purejaxrl_case=(purejaxrl)
  export PUREJAXRL_ANCHORS=${PUREJAXRL_ANCHORS:-../shared/anchors}
fi

for section in "${sections[@]}"; do
  echo "== $section"
  case "$section" in
    peers)
      "$python" benchmarks/peers.py --pairs 1 --out "$out" --purejaxrl-python "${PUREJAXRL_PYTHON:-$python}" \
        --cases "${purejaxrl_case[@]}" jaxdqn-envpool jaxdqn-jax-cold jaxdqn-jax-warm ;;
    agents)
      "$python" benchmarks/peers.py --pairs 1 --num-seeds 64 --out "$out" \
        --purejaxrl-python "${PUREJAXRL_PYTHON:-$python}" --cases "${purejaxrl_case[@]}" jaxdqn-jax-cold ;;
    bench)
      jaxdqn bench --out "$out" ;;
    breakout)
      "$python" benchmarks/presets.py --suite atari --out "$out" ;;
    capacity)
      jaxdqn bench --agents-per-device --out "$out"
      jaxdqn bench --agents-per-device --preset breakout --env-id Breakout-v5 --out "$out" ;;
    curves)
      tag=$("$python" -c "from jaxdqn.bench.machine import machine_facts, machine_tag; print(machine_tag(machine_facts()))")
      for preset in pong breakout; do
        run="${TMPDIR:-/tmp}/jaxdqn-curves/$preset"
        segment=(timeout -s TERM -k 60 "${CURVE_SEGMENT_S:-540}" jaxdqn train)
        "${segment[@]}" --preset "$preset" --total-steps 500000 --eval-episodes 2 --log-interval 5000 \
          --checkpoint-interval 0 --out "$run" --overwrite || true
        for _ in 1 2 3; do [ -f "$run/summary.json" ] || "${segment[@]}" --resume "$run" || true; done
        jaxdqn plot "$run" --out "$out/curve-$preset-$tag.png"
        cp "$run/summary.json" "$out/curve-$preset-$tag.summary.json"
        cp "$run/metrics.jsonl" "$out/curve-$preset-$tag.metrics.jsonl"
      done ;;
    *)
      echo "unknown section $section (allowed: peers agents bench breakout capacity curves)" >&2; exit 2 ;;
  esac
done

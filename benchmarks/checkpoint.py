"""What a checkpoint of a large replay costs: the `atlantis` preset's state (1M-transition frame replay, about
7.1 GB), saved synchronously (how every save worked before the background writer) and through
`CheckpointWriter` (host copy, then a background write while training would go on).

Figures: the training pause of each kind of save, the background write's duration, and the bytes on disk of
one checkpoint and of the three kept by default, with the replay in every checkpoint (before) and in the
newest only (now). Two checkpoints are written through the writer, so the older one really loses its
replay.npz; the three-checkpoint totals are computed from the measured file sizes. Usage:

    python benchmarks/checkpoint.py [--preset atlantis] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.config.build import make_config
from jaxdqn.run.checkpoint import ARRAYS_FILE, REPLAY_FILE, CheckpointWriter, save_checkpoint
from jaxdqn.run.driver import build_rollout


def counters(env_steps: int) -> dict:
    """Host counters of a checkpoint at `env_steps` (their values do not change the cost)."""
    return {"env_steps": env_steps, "periods_done": 0, "updates": 0, "learn_after": 0, "pool_start_step": 0}


def main() -> None:
    """Build the preset's state, time the saves, measure the files, print and store the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="atlantis")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    cfg = make_config(args.preset, num_seeds=1)
    rollout = build_rollout(cfg)
    state = jax.block_until_ready(jax.jit(rollout.init)(jax.random.PRNGKey(0)))
    rollout.env.close()
    optional = rollout.fns.optional_fields
    action_log = np.zeros((0, rollout.env.num_envs), np.uint8)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = save_checkpoint(Path(tmp) / "sync", cfg, state, action_log, counters(0), optional)
        result["sync_save_pause_seconds"] = time.perf_counter() - start
        writer = CheckpointWriter(Path(tmp) / "async", cfg, optional)
        for step in (0, 4):
            start = time.perf_counter()
            writer.save(state, action_log, counters(step))
            pause = time.perf_counter() - start
            writer.wait()
            result.setdefault("async_save_pause_seconds", []).append(pause)
            result.setdefault("async_background_write_seconds", []).append(time.perf_counter() - start - pause)
        older, newest = sorted((Path(tmp) / "async" / "checkpoints").glob("step_*"))
        arrays, replay = (newest / ARRAYS_FILE).stat().st_size, (newest / REPLAY_FILE).stat().st_size
        assert not (older / REPLAY_FILE).exists() and (path / REPLAY_FILE).exists()
    keep = cfg.checkpoint.keep_checkpoints
    result.update({"checkpoint_bytes": arrays + replay, "replay_bytes": replay,
                   f"kept_{keep}_bytes_replay_in_every": keep * (arrays + replay),
                   f"kept_{keep}_bytes_replay_in_newest": keep * arrays + replay})
    record = {"benchmark": "checkpoint", "script": "python benchmarks/checkpoint.py " + " ".join(sys.argv[1:]),
              "preset": args.preset, "machine": machine_facts(), "results": result}
    print(f"{args.preset}: one checkpoint {(arrays + replay) / 1e9:.2f} GB (replay {replay / 1e9:.2f} GB); "
          f"synchronous save: training paused {result['sync_save_pause_seconds']:.1f} s; background save: paused "
          f"{max(result['async_save_pause_seconds']):.1f} s, written in "
          f"{max(result['async_background_write_seconds']):.1f} s beside training; {keep} kept checkpoints: "
          f"{keep * (arrays + replay) / 1e9:.1f} GB before, {(keep * arrays + replay) / 1e9:.1f} GB now")
    write_result(record, args.out, f"checkpoint-{args.preset}")


if __name__ == "__main__":
    main()

"""The driver: builds a run (agent, environment backend, compiled loop) and orchestrates it chunk by chunk:
recorder, checkpoints, signals, the final evaluation and summary.json."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.agents import resolve_agent
from jaxdqn.config.schema import to_dict
from jaxdqn.config.validate import validate
from jaxdqn.envs import GYMNASIUM_NOTE, backend_name, env_seeds, env_spec, make_env
from jaxdqn.evaluate import evaluate_policy
from jaxdqn.loop.episodes import recent_means
from jaxdqn.loop.rollout import LoopState, Rollout, make_rollout
from jaxdqn.run.checkpoint import Checkpoint, save_checkpoint
from jaxdqn.run.recorder import Recorder
from jaxdqn.run.resume import resume_state
from jaxdqn.run.signals import StopSignals

NON_FINITE_EXIT_CODE = 3


class TrainingStopped(Exception):
    """Training ended before its budget: a signal (after saving a checkpoint) or non-finite values.

    `exit_code` is what the `jaxdqn` command exits with (128 + signal number, or 3 for non-finite values).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def build_rollout(cfg) -> Rollout:
    """The agent's functions, the environment pool (agent-major, hashed per-environment seeds) and the loop."""
    fns = resolve_agent(cfg.agent).build(cfg, env_spec(cfg.env.env_id))
    seeds = env_seeds(cfg.loop.seed, range(cfg.loop.num_seeds), cfg.env.num_envs)
    env = make_env(cfg.env.env_id, seeds, cfg.env.env_threads, cfg.env.episodic_life, cfg.env.reward_clip)
    return make_rollout(cfg, fns, env)


def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]))


class Progress:
    """Host-side counters of a run (saved in checkpoints) and the log of actions sent to the pool."""

    def __init__(self, resume_from: Checkpoint | None, learning_starts: int):
        fresh = resume_from is None
        self.periods_done = 0 if fresh else resume_from.periods_done
        self.updates = 0 if fresh else resume_from.updates
        self.learn_after = learning_starts if fresh else resume_from.learn_after
        self.action_log = [] if fresh else [resume_from.action_log]
        if not fresh and not resume_from.has_replay:  # refill the replay before learning again
            self.learn_after = resume_from.env_steps + learning_starts

    def counters(self, env_steps: int) -> dict:
        """What a checkpoint's meta.json keeps."""
        self.action_log = [np.concatenate(self.action_log)]
        return {"env_steps": env_steps, "periods_done": self.periods_done, "updates": self.updates,
                "learn_after": self.learn_after}


def chunk_record(rollout: Rollout, state: LoopState, output, env_steps: int, updates: int, sps: float,
                 wall: float) -> dict:
    """The metrics.jsonl record of one chunk: learn metrics averaged per agent, episode means, agent report."""
    calls = int(output.learn_calls)
    record = {"env_steps": env_steps, "updates": updates, "wall_seconds": wall, "sps": sps}
    record.update({f"{k}": float(np.mean(v)) for k, v in rollout.report(state.agents, env_steps).items()})
    for name, sums in output.metric_sums.items():
        record[name] = [float(v) / calls if calls else None for v in np.asarray(sums)]
    record.setdefault("loss", [None] * rollout.num_agents)
    record.setdefault("q_mean", [None] * rollout.num_agents)
    record["episodes"] = np.asarray(state.stats.episodes).tolist()
    record["return_mean_100"] = recent_means(state.stats.recent_returns, state.stats.episodes)
    record["length_mean_100"] = recent_means(state.stats.recent_lengths, state.stats.episodes)
    return record


def run_training(cfg, out_dir=None, log: Callable[[str], None] = print, resume_from: Checkpoint | None = None,
                 progress_bar: bool = False) -> dict:
    """Train `cfg` (validated here) to its step budget; write config, metrics, episodes, TensorBoard events,
    checkpoints and summary to `out_dir` (None: write nothing).

    `resume_from` (see `checkpoint.load_latest`) continues the run in `out_dir` exactly. SIGINT/SIGTERM stop
    after the current chunk with a checkpoint; they and non-finite values raise `TrainingStopped`. Nothing is
    written before validation (and the checkpoint's checks) pass, the pool is built and the chunk compiled.
    Returns the summary dict.
    """
    validate(cfg)
    if backend_name(cfg.env.env_id) != "envpool":
        log(GYMNASIUM_NOTE.format(env_id=cfg.env.env_id))
    out = Path(out_dir) if out_dir is not None else None
    start = time.perf_counter()
    rollout, key = build_rollout(cfg), jax.random.PRNGKey(cfg.loop.seed)
    plan, progress, recorder = rollout.plan, Progress(resume_from, cfg.loop.learning_starts), None
    try:
        compile_start = time.perf_counter()
        state = jax.jit(rollout.init)(key) if resume_from is None else resume_state(rollout, resume_from, key)
        chunk = jax.jit(rollout.run_chunk, donate_argnums=0).lower(
            state, jnp.int32(plan.log_periods), jnp.int32(progress.learn_after)).compile()
        compile_seconds = time.perf_counter() - compile_start
        params_finite = jax.jit(lambda agents: _all_finite(rollout.fns.policy(agents)))
        env_steps = start_steps = progress.periods_done * plan.steps_per_period
        if out is not None and resume_from is None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        elif out is not None:
            log(f"resumed from {resume_from.path} at step {env_steps}")
        recorder = Recorder(out, rollout.num_agents, plan.total_env_steps, env_steps, resume_from is not None, log,
                            progress_bar)
        solved_reported = {i for i, s in enumerate(np.asarray(state.stats.solved_step)) if s >= 0}
        last_checkpoint, last_time = (resume_from.path if resume_from else None), time.perf_counter()
        with StopSignals() as stop:
            while progress.periods_done < plan.total_periods:
                n = min(plan.log_periods, plan.total_periods - progress.periods_done)
                previous_steps = env_steps
                state, output = chunk(state, jnp.int32(n), jnp.int32(progress.learn_after))
                progress.periods_done += n
                env_steps = progress.periods_done * plan.steps_per_period
                progress.action_log.append(np.asarray(output.actions[:n * plan.iters_per_period]))
                sums = [np.asarray(v) for v in output.metric_sums.values()]
                if not (all(np.isfinite(v).all() for v in sums) and bool(params_finite(state.agents))):
                    kept = f"the last good checkpoint {last_checkpoint} is kept" if last_checkpoint else \
                        "no checkpoint was saved"
                    raise TrainingStopped(f"non-finite loss or parameters at env step {env_steps} (in the chunk of "
                                          f"steps {previous_steps + 1}-{env_steps}); stopped without saving this "
                                          f"state; {kept}", NON_FINITE_EXIT_CODE)
                progress.updates += int(output.learn_calls) * plan.updates_per_period
                now = time.perf_counter()
                sps = (env_steps - previous_steps) * rollout.num_agents / max(now - last_time, 1e-9)
                last_time = now
                recorder.write(chunk_record(rollout, state, output, env_steps, progress.updates, sps, now - start),
                               output.finished)
                solved = np.asarray(state.stats.solved_step)
                for agent in np.flatnonzero(solved >= 0):
                    if agent not in solved_reported:
                        solved_reported.add(agent)
                        recorder.say(f"seed {agent}: solved at step {int(solved[agent])} "
                                     f"(100-episode mean >= {cfg.loop.solved_return})")
                all_solved = cfg.loop.stop_when_solved and (solved >= 0).all()
                interval = cfg.checkpoint.checkpoint_interval
                due = interval > 0 and env_steps // interval > previous_steps // interval
                if out is not None and (due or stop.received or all_solved or progress.periods_done == plan.total_periods):
                    counters = progress.counters(env_steps)
                    last_checkpoint = save_checkpoint(out, cfg, state, progress.action_log[0], counters,
                                                      rollout.fns.optional_fields)
                if stop.received:
                    where = (f"saved a checkpoint at step {env_steps}; resume with: jaxdqn train --resume {out}"
                             if out is not None else f"stopped at step {env_steps} (no run directory, nothing saved)")
                    raise TrainingStopped(f"interrupted by {stop.name}: {where}", 128 + stop.received[0])
                if all_solved:
                    recorder.say(f"all seeds solved; stopping at step {env_steps}")
                    break
    finally:
        if recorder is not None:
            recorder.close()
        rollout.env.close()
    return finish(cfg, out, rollout, state, progress, resume_from, start_steps, env_steps,
                  time.perf_counter() - start, compile_seconds, log)


def finish(cfg, out, rollout: Rollout, state: LoopState, progress: Progress, resume_from, start_steps: int,
           env_steps: int, wall_seconds: float, compile_seconds: float, log) -> dict:
    """Evaluate the final policy, write summary.json and print the closing line; return the summary."""
    eval_returns = evaluate_policy(cfg, rollout.fns.policy(state.agents), cfg.loop.eval_episodes).returns
    session_updates = progress.updates - (resume_from.updates if resume_from is not None else 0)
    summary = {
        "env_id": cfg.env.env_id, "num_seeds": cfg.loop.num_seeds, "num_envs": cfg.env.num_envs,
        "env_steps": env_steps, "updates": progress.updates, "wall_seconds": wall_seconds,
        "compile_seconds": compile_seconds,
        "sps": (env_steps - start_steps) * rollout.num_agents / wall_seconds,
        "updates_per_second": session_updates * rollout.num_agents / wall_seconds,
        "return_mean_100": recent_means(state.stats.recent_returns, state.stats.episodes),
        "solved_step": [int(s) if s >= 0 else None for s in np.asarray(state.stats.solved_step)],
        "eval_episodes": cfg.loop.eval_episodes, "eval_epsilon": cfg.loop.eval_epsilon,
        "eval_return_mean": eval_returns.mean(axis=1).tolist(),
        "eval_return_std": eval_returns.std(axis=1).tolist(),
    }
    if resume_from is not None:
        summary["resumed_from_step"] = resume_from.env_steps
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    policy = "greedy" if cfg.loop.eval_epsilon == 0 else f"epsilon {cfg.loop.eval_epsilon}"
    log(f"done: {env_steps} steps x {cfg.loop.num_seeds} seed(s), {progress.updates} updates, {wall_seconds:.1f} s "
        f"({compile_seconds:.1f} s compiling), {summary['sps']:.0f} SPS; {policy} eval return per seed: "
        + ", ".join(f"{r:.4g}" for r in summary["eval_return_mean"]))
    return summary

"""Compiled training chunks over EnvPool plus the host loop that runs, logs and evaluates them.

One iteration acts on every environment of every seed, steps EnvPool through its XLA interface and
stores the real transitions. One *period* is `iters_per_period` iterations followed (once learning has
started) by `updates_per_period` calls of `train_step`. A chunk is a `fori_loop` over a number of
periods given at run time, so one compiled chunk serves every log interval and the final remainder.

Agent state carries a leading seed axis; S seeds share one pool of S x num_envs environments.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn import config as config_lib
from jaxdqn.envs import GYMNASIUM_NOTE, EnvInfo, env_info, is_envpool_env, make_pool, make_xla_step
from jaxdqn.exploration import epsilon_greedy, make_epsilon_schedule
from jaxdqn.learner import AgentState, LearnerParts, init_agent, make_optimizer, make_train_step
from jaxdqn.networks import make_network
from jaxdqn.replay import Transition, make_replay, ring_write

EPISODE_WINDOW = 100
"""Episodes in the rolling mean return (and the 'solved' criterion)."""


class EpisodeStats(NamedTuple):
    """Per seed: running returns and lengths of each environment, and the last 100 episode returns."""

    running_return: chex.Array  # (S, N)
    running_length: chex.Array  # (S, N)
    recent_returns: chex.Array  # (S, EPISODE_WINDOW)
    recent_position: chex.Array  # (S,)
    episodes: chex.Array  # (S,)
    solved_step: chex.Array  # (S,), -1 until solved


class LoopState(NamedTuple):
    """The whole training state carried from chunk to chunk."""

    agents: AgentState  # leading seed axis
    env_handle: Any
    obs: chex.Array  # (S, N, *obs_shape)
    done: chex.Array  # (S, N): the last step ended an episode, so the next one is EnvPool's auto-reset
    stats: EpisodeStats
    iteration: chex.Array  # iterations run so far (each is num_envs env steps per seed)


class ChunkMetrics(NamedTuple):
    """Sums over one chunk, per seed, for the host to average."""

    loss_sum: chex.Array
    q_sum: chex.Array
    updates: chex.Array


def init_episode_stats(num_seeds: int, num_envs: int) -> EpisodeStats:
    """Episode statistics before the first step."""
    zeros_sn = jnp.zeros((num_seeds, num_envs), jnp.float32)
    return EpisodeStats(zeros_sn, zeros_sn.astype(jnp.int32), jnp.zeros((num_seeds, EPISODE_WINDOW), jnp.float32),
                        jnp.zeros((num_seeds,), jnp.int32), jnp.zeros((num_seeds,), jnp.int32),
                        jnp.full((num_seeds,), -1, jnp.int32))


def update_episode_stats(stats: EpisodeStats, reward, valid, done, env_steps, solved_return=None) -> EpisodeStats:
    """Add one step's rewards (where `valid`), close the episodes that are `done`, and note when each seed
    first reaches `solved_return` over the last 100 episodes. Arrays are (seeds, envs)."""
    running_return = stats.running_return + reward * valid
    running_length = stats.running_length + valid.astype(jnp.int32)

    write = functools.partial(ring_write, capacity=EPISODE_WINDOW)
    recent, position, count = jax.vmap(write)(stats.recent_returns, stats.recent_position, running_return, done)
    episodes = stats.episodes + count
    solved_step = stats.solved_step
    if solved_return is not None:
        window_full = episodes >= EPISODE_WINDOW
        solved_now = window_full & (recent.mean(axis=1) >= solved_return) & (solved_step < 0)
        solved_step = jnp.where(solved_now, env_steps, solved_step)
    return EpisodeStats(jnp.where(done, 0.0, running_return), jnp.where(done, 0, running_length),
                        recent, position, episodes, solved_step)


class Trainer(NamedTuple):
    """A compiled-loop trainer: `init(key) -> LoopState`, `run_chunk(state, n_periods) -> (state, metrics)`."""

    cfg: Any
    info: EnvInfo
    env: Any
    init: Callable
    run_chunk: Callable
    train_step: Callable
    parts: LearnerParts
    iters_per_period: int
    updates_per_period: int


def make_train(cfg) -> Trainer:
    """Build the EnvPool and the pure functions of a compiled training run for `cfg` (validated)."""
    info = env_info(cfg.env_id)
    num_seeds, num_envs = cfg.num_seeds, cfg.num_envs
    env, first_obs = make_pool(cfg.env_id, num_seeds * num_envs, cfg.seed, cfg.env_threads)
    handle, env_step = make_xla_step(env)
    parts = LearnerParts(make_network(cfg, info.num_actions), make_optimizer(cfg), make_replay(cfg))
    train_step = make_train_step(cfg, parts)
    epsilon_at = make_epsilon_schedule(cfg)
    iters_per_period, updates_per_period = config_lib.periods(cfg)
    total_periods = math.ceil(cfg.total_steps / (num_envs * iters_per_period))
    total_env_steps = total_periods * iters_per_period * num_envs
    example_obs = jnp.zeros(info.obs_shape, info.obs_dtype)
    example_transition = Transition(example_obs, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32),
                                    example_obs, jnp.zeros((), jnp.bool_))
    first_obs = jnp.asarray(first_obs).reshape(num_seeds, num_envs, *info.obs_shape)

    def init(key) -> LoopState:
        seed_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_seeds))
        agents = jax.vmap(lambda k: init_agent(parts, k, example_obs, example_transition))(seed_keys)
        return LoopState(agents, handle, first_obs, jnp.zeros((num_seeds, num_envs), jnp.bool_),
                         init_episode_stats(num_seeds, num_envs), jnp.zeros((), jnp.int32))

    record_episodes = functools.partial(update_episode_stats, solved_return=cfg.solved_return)

    def act_and_store(state: LoopState, _):
        env_steps = state.iteration * num_envs
        epsilon = epsilon_at(env_steps)
        act_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(state.agents.key, state.iteration)
        q_values = jax.vmap(parts.network.apply)(state.agents.params, state.obs)
        actions = jax.vmap(epsilon_greedy, in_axes=(0, 0, None))(act_keys, q_values, epsilon)
        handle, (next_obs, reward, terminated, truncated) = env_step(
            state.env_handle, actions.reshape(num_seeds * num_envs))
        shape_sn = (num_seeds, num_envs)
        next_obs = next_obs.reshape(*shape_sn, *info.obs_shape)
        reward, terminated, truncated = (x.reshape(shape_sn) for x in (reward, terminated, truncated))
        valid = ~state.done
        transitions = Transition(state.obs, actions, reward, next_obs, terminated)
        replay = jax.vmap(parts.replay.add)(state.agents.replay, transitions, valid)
        done = (terminated | truncated) & valid
        stats = record_episodes(state.stats, reward, valid, done, env_steps + num_envs)
        agents = state.agents._replace(replay=replay)
        return LoopState(agents, handle, next_obs, done, stats, state.iteration + 1), None

    def learn(agents: AgentState, progress):
        def one_update(agents, _):
            split = jax.vmap(jax.random.split)(agents.key)
            agents = agents._replace(key=split[:, 0])
            agents, metrics = jax.vmap(train_step, in_axes=(0, 0, None))(agents, split[:, 1], progress)
            return agents, (metrics["loss"], metrics["q_mean"])

        agents, (loss, q_mean) = jax.lax.scan(one_update, agents, None, length=updates_per_period)
        return agents, loss.sum(axis=0), q_mean.sum(axis=0)

    def period(_, carry):
        state, metrics = carry
        state, _ = jax.lax.scan(act_and_store, state, None, length=iters_per_period)
        env_steps = state.iteration * num_envs
        progress = jnp.minimum(env_steps / total_env_steps, 1.0).astype(jnp.float32)

        def no_update(agents, progress):
            zeros = jnp.zeros((num_seeds,), jnp.float32)
            return agents, zeros, zeros

        agents, loss_sum, q_sum = jax.lax.cond(env_steps > cfg.learning_starts, learn, no_update,
                                               state.agents, progress)
        learned = (env_steps > cfg.learning_starts).astype(jnp.int32) * updates_per_period
        metrics = ChunkMetrics(metrics.loss_sum + loss_sum, metrics.q_sum + q_sum, metrics.updates + learned)
        return state._replace(agents=agents), metrics

    def run_chunk(state: LoopState, n_periods):
        zeros = jnp.zeros((num_seeds,), jnp.float32)
        metrics = ChunkMetrics(zeros, zeros, jnp.zeros((), jnp.int32))
        return jax.lax.fori_loop(0, n_periods, period, (state, metrics))

    return Trainer(cfg, info, env, init, run_chunk, train_step, parts, iters_per_period, updates_per_period)


def make_greedy_policy(cfg, network) -> Callable:
    """Jitted `policy(params, obs, key) -> actions` for params and obs with a leading seed axis."""

    def policy(params, obs, key):
        q_values = jax.vmap(network.apply)(params, obs)
        keys = jax.random.split(key, obs.shape[0])
        return jax.vmap(epsilon_greedy, in_axes=(0, 0, None))(keys, q_values, cfg.eval_epsilon)

    return jax.jit(policy)


def evaluate_params(cfg, params, episodes: int, seed: int) -> np.ndarray:
    """Greedy returns of `episodes` episodes per seed, shape (S, episodes); params have a seed axis.

    Each of S x episodes environments plays one full episode; runs on the host, outside the budget.
    """
    info = env_info(cfg.env_id)
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    env, obs = make_pool(cfg.env_id, num_seeds * episodes, seed, cfg.env_threads)
    policy = make_greedy_policy(cfg, make_network(cfg, info.num_actions))
    key = jax.random.PRNGKey(seed)
    returns = np.zeros(num_seeds * episodes, np.float64)
    finished = np.zeros(num_seeds * episodes, bool)
    while not finished.all():
        key, act_key = jax.random.split(key)
        actions = policy(params, jnp.asarray(obs).reshape(num_seeds, episodes, *info.obs_shape), act_key)
        obs, reward, terminated, truncated, _ = env.step(np.asarray(actions).reshape(-1))
        returns += np.where(finished, 0.0, reward)
        finished |= terminated | truncated
    env.close()
    return returns.reshape(num_seeds, episodes)


def _seed_means(values: np.ndarray, counts: np.ndarray) -> list:
    return [float(v) / int(c) if c else None for v, c in zip(values, counts)]


def recent_return_means(stats: EpisodeStats) -> list:
    """Per seed: the mean return over the last (up to) 100 episodes, None before the first episode."""
    recent, episodes = np.asarray(stats.recent_returns), np.asarray(stats.episodes)
    filled = np.minimum(episodes, EPISODE_WINDOW)
    return [float(recent[s, :filled[s]].mean()) if filled[s] else None for s in range(len(filled))]


def _mean_of(values: list):
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _format(value, spec=".2f"):
    return "n/a" if value is None else format(value, spec)


def run_training(cfg, out_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> dict:
    """Train `cfg` (validated here) to its step budget; write config, metrics and summary to `out_dir`.

    Returns the summary dict. Nothing is written before validation passes.
    """
    config_lib.validate(cfg)
    if not is_envpool_env(cfg.env_id):
        log(GYMNASIUM_NOTE.format(env_id=cfg.env_id))
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config_lib.to_dict(cfg), indent=2) + "\n")
    start = time.perf_counter()
    if cfg.agent == "tabular":
        from jaxdqn.tabular import make_tabular_train

        trainer = make_tabular_train(cfg)
    else:
        trainer = make_train(cfg)
    num_envs = cfg.num_envs
    steps_per_period = trainer.iters_per_period * num_envs
    total_periods = math.ceil(cfg.total_steps / steps_per_period)
    log_periods = max(1, round(cfg.log_interval / steps_per_period))

    compile_start = time.perf_counter()
    state = jax.jit(trainer.init)(jax.random.PRNGKey(cfg.seed))
    chunk = jax.jit(trainer.run_chunk, donate_argnums=0).lower(state, jnp.int32(log_periods)).compile()
    compile_seconds = time.perf_counter() - compile_start
    epsilon_at = make_epsilon_schedule(cfg)

    metrics_file = open(out / "metrics.jsonl", "w") if out is not None else None
    periods_done, updates, solved_reported = 0, 0, set()
    last_time, last_steps = time.perf_counter(), 0
    try:
        while periods_done < total_periods:
            n = min(log_periods, total_periods - periods_done)
            state, chunk_metrics = chunk(state, jnp.int32(n))
            jax.block_until_ready(state)
            periods_done += n
            env_steps = periods_done * steps_per_period
            now = time.perf_counter()
            sps = (env_steps - last_steps) * cfg.num_seeds / max(now - last_time, 1e-9)
            last_time, last_steps = now, env_steps
            chunk_updates = int(chunk_metrics.updates)
            updates += chunk_updates
            counts = np.full(cfg.num_seeds, chunk_updates)
            record = {
                "env_steps": env_steps,
                "updates": updates,
                "wall_seconds": now - start,
                "sps": sps,
                "epsilon": float(epsilon_at(env_steps)),
                "loss": _seed_means(np.asarray(chunk_metrics.loss_sum), counts),
                "q_mean": _seed_means(np.asarray(chunk_metrics.q_sum), counts),
                "episodes": np.asarray(state.stats.episodes).tolist(),
                "return_mean_100": recent_return_means(state.stats),
            }
            if metrics_file is not None:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            log(f"step {env_steps:>9}/{total_periods * steps_per_period} | sps {sps:9.0f} | "
                f"return(100) {_format(_mean_of(record['return_mean_100']))} | "
                f"eps {record['epsilon']:.3f} | loss {_format(_mean_of(record['loss']), '.4g')}")
            solved_steps = np.asarray(state.stats.solved_step)
            for seed_index, solved_at in enumerate(solved_steps):
                if solved_at >= 0 and seed_index not in solved_reported:
                    solved_reported.add(seed_index)
                    log(f"seed {seed_index}: solved at step {int(solved_at)} "
                        f"(100-episode mean >= {cfg.solved_return})")
            if cfg.stop_when_solved and (solved_steps >= 0).all():
                log(f"all seeds solved; stopping at step {env_steps}")
                break
    finally:
        if metrics_file is not None:
            metrics_file.close()
    wall_seconds = time.perf_counter() - start
    env_steps = periods_done * steps_per_period
    eval_returns = evaluate_params(cfg, state.agents.params, cfg.eval_episodes, cfg.seed + 1_000_003)
    trainer.env.close()
    summary = {
        "env_id": cfg.env_id,
        "num_seeds": cfg.num_seeds,
        "num_envs": cfg.num_envs,
        "env_steps": env_steps,
        "updates": updates,
        "wall_seconds": wall_seconds,
        "compile_seconds": compile_seconds,
        "sps": env_steps * cfg.num_seeds / wall_seconds,
        "updates_per_second": updates * cfg.num_seeds / wall_seconds,
        "return_mean_100": recent_return_means(state.stats),
        "solved_step": [int(s) if s >= 0 else None for s in np.asarray(state.stats.solved_step)],
        "eval_episodes": cfg.eval_episodes,
        "eval_return_mean": eval_returns.mean(axis=1).tolist(),
        "eval_return_std": eval_returns.std(axis=1).tolist(),
    }
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done: {env_steps} steps x {cfg.num_seeds} seed(s), {updates} updates, {wall_seconds:.1f} s "
        f"({compile_seconds:.1f} s compiling), {summary['sps']:.0f} SPS; greedy eval return per seed: "
        + ", ".join(f"{r:.4g}" for r in summary["eval_return_mean"]))
    return summary

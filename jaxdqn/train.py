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
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn import config as config_lib
from jaxdqn.config.schema import EVAL_SEED_OFFSET
from jaxdqn.envs import GYMNASIUM_NOTE, EnvInfo, env_info, is_envpool_env, make_pool, make_xla_step, replay_actions
from jaxdqn.evaluate import evaluate_policy
from jaxdqn.exploration import epsilon_greedy, make_epsilon_schedule
from jaxdqn.learner import AgentState, LearnerParts, init_agent, make_optimizer, make_train_step
from jaxdqn.networks import make_network
from jaxdqn.replay import Transition, make_replay, ring_write

EPISODE_WINDOW = 100
"""Episodes in the rolling mean return (and the 'solved' criterion)."""


class EpisodeStats(NamedTuple):
    """Per seed: running returns and lengths of each environment, and the last 100 episode returns and lengths."""

    running_return: chex.Array  # (S, N)
    running_length: chex.Array  # (S, N)
    recent_returns: chex.Array  # (S, EPISODE_WINDOW)
    recent_lengths: chex.Array  # (S, EPISODE_WINDOW), same slots as recent_returns
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


class EpisodeLog(NamedTuple):
    """Per seed, the episodes that finished during one chunk, in order, in a ring of `capacity` slots.

    The capacity (`episode_log_capacity`) holds every episode of a chunk of `log_chunk_periods` periods;
    `count` above the capacity means the oldest `count - capacity` were overwritten.
    """

    returns: chex.Array  # (S, capacity)
    lengths: chex.Array  # (S, capacity)
    end_steps: chex.Array  # (S, capacity): env steps per seed when the episode ended
    position: chex.Array  # (S,) next slot to write
    count: chex.Array  # (S,) episodes finished in the chunk


class ChunkMetrics(NamedTuple):
    """Sums over one chunk, per seed, for the host to average, the actions sent to the pool, and the
    episodes that finished."""

    loss_sum: chex.Array
    q_sum: chex.Array
    updates: chex.Array
    actions: chex.Array  # (action_log_length, S * N): row i is the chunk's i-th iteration (see Trainer)
    finished: EpisodeLog


def init_episode_stats(num_seeds: int, num_envs: int) -> EpisodeStats:
    """Episode statistics before the first step."""
    zeros_sn = jnp.zeros((num_seeds, num_envs), jnp.float32)
    window = jnp.zeros((num_seeds, EPISODE_WINDOW), jnp.float32)
    return EpisodeStats(zeros_sn, zeros_sn.astype(jnp.int32), window, window.astype(jnp.int32),
                        jnp.zeros((num_seeds,), jnp.int32), jnp.zeros((num_seeds,), jnp.int32),
                        jnp.full((num_seeds,), -1, jnp.int32))


def update_episode_stats(stats: EpisodeStats, reward, valid, done, env_steps, solved_return=None) -> EpisodeStats:
    """Add one step's rewards (where `valid`), close the episodes that are `done`, and note when each seed
    first reaches `solved_return` over the last 100 episodes. Arrays are (seeds, envs)."""
    running_return = stats.running_return + reward * valid
    running_length = stats.running_length + valid.astype(jnp.int32)

    write = functools.partial(ring_write, capacity=EPISODE_WINDOW)
    recent, position, count = jax.vmap(write)(stats.recent_returns, stats.recent_position, running_return, done)
    lengths, _, _ = jax.vmap(write)(stats.recent_lengths, stats.recent_position, running_length, done)
    episodes = stats.episodes + count
    solved_step = stats.solved_step
    if solved_return is not None:
        window_full = episodes >= EPISODE_WINDOW
        solved_now = window_full & (recent.mean(axis=1) >= solved_return) & (solved_step < 0)
        solved_step = jnp.where(solved_now, env_steps, solved_step)
    return EpisodeStats(jnp.where(done, 0.0, running_return), jnp.where(done, 0, running_length),
                        recent, lengths, position, episodes, solved_step)


def episode_ends(stats: EpisodeStats, reward, valid, done, env_steps):
    """(done, return, length, env_steps) of each environment's episode as of this step, before
    `update_episode_stats` resets the finished ones; arrays are (seeds, envs)."""
    return (done, stats.running_return + reward * valid, stats.running_length + valid.astype(jnp.int32),
            jnp.full(done.shape, env_steps, jnp.int32))


def empty_episode_log(num_seeds: int, capacity: int) -> EpisodeLog:
    """An episode log with `capacity` slots per seed and nothing in it."""
    slots = jnp.zeros((num_seeds, capacity), jnp.float32)
    counters = jnp.zeros((num_seeds,), jnp.int32)
    return EpisodeLog(slots, slots.astype(jnp.int32), slots.astype(jnp.int32), counters, counters)


def log_episode_ends(log: EpisodeLog, ends) -> EpisodeLog:
    """Append the finished episodes of `ends` (from `episode_ends`, stacked over iterations: (K, S, N))."""
    num_seeds, capacity = log.returns.shape
    # (iterations, S, N) -> (S, iterations * N): per seed, in the order the episodes ended
    done, returns, lengths, end_steps = (x.swapaxes(0, 1).reshape(num_seeds, -1) for x in ends)
    write = functools.partial(ring_write, capacity=capacity)
    storage, position, count = jax.vmap(write)((log.returns, log.lengths, log.end_steps), log.position,
                                               (returns, lengths, end_steps), done)
    return EpisodeLog(*storage, position, log.count + count)


class Trainer(NamedTuple):
    """A compiled-loop trainer: `init(key) -> LoopState`; `run_chunk(state, n_periods, learn_after)` returns
    `(state, metrics)`.

    `metrics.actions` logs the first `action_log_length` iterations of a chunk (one log interval; longer
    chunks drop the rest); `learn_after` (env steps per seed, default cfg.learning_starts) gates learning.
    """

    cfg: Any
    info: EnvInfo
    env: Any
    init: Callable
    run_chunk: Callable
    train_step: Callable
    parts: LearnerParts
    iters_per_period: int
    updates_per_period: int
    action_log_length: int
    env_step: Callable
    env_handle: Any  # the pool's handle right after its reset
    reset_obs: Any  # the pool's observations right after its reset, (S * N, *obs_shape)


def action_log_dtype(num_actions: int):
    """The narrowest dtype that holds every action index (uint8 for every EnvPool discrete task we run)."""
    return np.uint8 if num_actions <= 256 else np.int32


def make_run_chunk(period: Callable, cfg, action_log_length: int, log_dtype, log_capacity: int) -> Callable:
    """`run_chunk(state, n_periods, learn_after=None) -> (state, ChunkMetrics)`: `n_periods` calls of
    `period(i, (state, metrics, first_iteration, learn_after))` in one fori_loop, from empty metrics."""

    def run_chunk(state: LoopState, n_periods, learn_after=None):
        zeros = jnp.zeros((cfg.num_seeds,), jnp.float32)
        action_log = jnp.zeros((action_log_length, cfg.num_seeds * cfg.num_envs), log_dtype)
        metrics = ChunkMetrics(zeros, zeros, jnp.zeros((), jnp.int32), action_log,
                               empty_episode_log(cfg.num_seeds, log_capacity))
        learn_after = cfg.learning_starts if learn_after is None else learn_after
        state, metrics, _, _ = jax.lax.fori_loop(0, n_periods, period,
                                                 (state, metrics, state.iteration, jnp.asarray(learn_after)))
        return state, metrics

    return run_chunk


def make_train(cfg) -> Trainer:
    """Build the EnvPool and the pure functions of a compiled training run for `cfg` (validated)."""
    info = env_info(cfg.env_id)
    num_seeds, num_envs = cfg.num_seeds, cfg.num_envs
    env, reset_obs = make_pool(cfg.env_id, num_seeds * num_envs, cfg.seed, cfg.env_threads,
                               episodic_life=cfg.episodic_life, reward_clip=cfg.reward_clip)
    handle, env_step = make_xla_step(env, game_signal=True)
    parts = LearnerParts(make_network(cfg, info.num_actions), make_optimizer(cfg),
                         make_replay(cfg, info.obs_shape, info.obs_dtype))
    train_step = make_train_step(cfg, parts)
    epsilon_at = make_epsilon_schedule(cfg)
    iters_per_period, updates_per_period = config_lib.periods(cfg)
    total_periods = math.ceil(cfg.total_steps / (num_envs * iters_per_period))
    total_env_steps = total_periods * iters_per_period * num_envs
    action_log_length = log_chunk_periods(cfg) * iters_per_period
    log_capacity = episode_log_capacity(cfg, iters_per_period)
    log_dtype = action_log_dtype(info.num_actions)
    example_obs = jnp.zeros(info.obs_shape, info.obs_dtype)
    example_transition = Transition(example_obs, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32),
                                    example_obs, jnp.zeros((), jnp.bool_))
    first_obs = jnp.asarray(reset_obs).reshape(num_seeds, num_envs, *info.obs_shape)

    def init(key) -> LoopState:
        seed_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_seeds))
        agents = jax.vmap(lambda k: init_agent(parts, k, example_obs, example_transition))(seed_keys)
        return LoopState(agents, handle, first_obs, jnp.zeros((num_seeds, num_envs), jnp.bool_),
                         init_episode_stats(num_seeds, num_envs), jnp.zeros((), jnp.int32))

    # Reported episodes are whole games with raw rewards (`GameSignal`), not the clipped training signal.
    record_episodes = functools.partial(update_episode_stats, solved_return=cfg.solved_return)

    def act_and_store(carry, _):
        state, action_log, first_iteration = carry
        env_steps = state.iteration * num_envs
        epsilon = epsilon_at(env_steps)
        act_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(state.agents.key, state.iteration)
        q_values = jax.vmap(parts.network.apply)(state.agents.params, state.obs)
        actions = jax.vmap(epsilon_greedy, in_axes=(0, 0, None))(act_keys, q_values, epsilon)
        pool_actions = actions.reshape(num_seeds * num_envs)
        action_log = action_log.at[state.iteration - first_iteration].set(pool_actions.astype(log_dtype),
                                                                          mode="drop")
        handle, (next_obs, reward, terminated, truncated, game) = env_step(state.env_handle, pool_actions)
        shape_sn = (num_seeds, num_envs)
        next_obs = next_obs.reshape(*shape_sn, *info.obs_shape)
        reward, terminated, truncated, game_reward, game_over = (
            x.reshape(shape_sn) for x in (reward, terminated, truncated, game.reward, game.over))
        valid = ~state.done
        transitions = Transition(state.obs, actions, reward, next_obs, terminated)
        replay = jax.vmap(parts.replay.add)(state.agents.replay, transitions, valid)
        done = (terminated | truncated) & valid
        ends = episode_ends(state.stats, game_reward, valid, game_over & valid, env_steps + num_envs)
        stats = record_episodes(state.stats, game_reward, valid, game_over & valid, env_steps + num_envs)
        agents = state.agents._replace(replay=replay)
        return (LoopState(agents, handle, next_obs, done, stats, state.iteration + 1), action_log,
                first_iteration), ends

    def learn(agents: AgentState, progress):
        def one_update(agents, _):
            split = jax.vmap(jax.random.split)(agents.key)
            agents = agents._replace(key=split[:, 0])
            agents, metrics = jax.vmap(train_step, in_axes=(0, 0, None))(agents, split[:, 1], progress)
            return agents, (metrics["loss"], metrics["q_mean"])

        agents, (loss, q_mean) = jax.lax.scan(one_update, agents, None, length=updates_per_period)
        return agents, loss.sum(axis=0), q_mean.sum(axis=0)

    def period(_, carry):
        state, metrics, first_iteration, learn_after = carry
        (state, action_log, _), ends = jax.lax.scan(act_and_store, (state, metrics.actions, first_iteration),
                                                    None, length=iters_per_period)
        finished = log_episode_ends(metrics.finished, ends)
        env_steps = state.iteration * num_envs
        progress = jnp.minimum(env_steps / total_env_steps, 1.0).astype(jnp.float32)

        def no_update(agents, progress):
            zeros = jnp.zeros((num_seeds,), jnp.float32)
            return agents, zeros, zeros

        agents, loss_sum, q_sum = jax.lax.cond(env_steps > learn_after, learn, no_update, state.agents, progress)
        learned = (env_steps > learn_after).astype(jnp.int32) * updates_per_period
        metrics = ChunkMetrics(metrics.loss_sum + loss_sum, metrics.q_sum + q_sum, metrics.updates + learned,
                               action_log, finished)
        return state._replace(agents=agents), metrics, first_iteration, learn_after

    run_chunk = make_run_chunk(period, cfg, action_log_length, log_dtype, log_capacity)
    return Trainer(cfg, info, env, init, run_chunk, train_step, parts, iters_per_period, updates_per_period,
                   action_log_length, env_step, handle, reset_obs)


def log_chunk_periods(cfg) -> int:
    """Training periods in one compiled chunk: one log interval, rounded to whole periods (at least 1)."""
    iters_per_period, _ = config_lib.periods(cfg)
    return max(1, round(cfg.log_interval / (iters_per_period * cfg.num_envs)))


def episode_log_capacity(cfg, iters_per_period: int) -> int:
    """Episodes a chunk's environments can finish per seed: each one takes a step plus the reset step."""
    return cfg.num_envs * math.ceil(log_chunk_periods(cfg) * iters_per_period / 2)


EPISODES_HEADER = "seed,env_step,return,length"
"""Columns of a run's episodes.csv: one row per finished training episode."""


def write_episode_rows(file, log: EpisodeLog) -> int:
    """Append one CSV row per episode in `log` to `file`; return how many were lost to ring overflow."""
    returns, lengths, end_steps = (np.asarray(x) for x in (log.returns, log.lengths, log.end_steps))
    counts, positions = np.asarray(log.count), np.asarray(log.position)
    capacity, lost, rows = returns.shape[1], 0, []
    for seed_index in range(returns.shape[0]):
        kept = min(int(counts[seed_index]), capacity)
        lost += int(counts[seed_index]) - kept
        slots = (int(positions[seed_index]) - kept + np.arange(kept)) % capacity
        rows.extend(f"{seed_index},{end_steps[seed_index, i]},{returns[seed_index, i]:.7g},"
                    f"{lengths[seed_index, i]}\n" for i in slots)
    file.write("".join(rows))
    return lost


def _seed_means(values: np.ndarray, counts: np.ndarray) -> list:
    return [float(v) / int(c) if c else None for v, c in zip(values, counts)]


def recent_return_means(stats: EpisodeStats) -> list:
    """Per seed: the mean return over the last (up to) 100 episodes, None before the first episode."""
    recent, episodes = np.asarray(stats.recent_returns), np.asarray(stats.episodes)
    filled = np.minimum(episodes, EPISODE_WINDOW)
    return [float(recent[s, :filled[s]].mean()) if filled[s] else None for s in range(len(filled))]


def recent_length_means(stats: EpisodeStats) -> list:
    """Per seed: the mean length over the last (up to) 100 episodes, None before the first episode."""
    lengths, episodes = np.asarray(stats.recent_lengths), np.asarray(stats.episodes)
    filled = np.minimum(episodes, EPISODE_WINDOW)
    return [float(lengths[s, :filled[s]].mean()) if filled[s] else None for s in range(len(filled))]


def _mean_of(values: list):
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _format(value, spec=".2f"):
    return "n/a" if value is None else format(value, spec)


class TrainingStopped(Exception):
    """Training ended before its budget: a signal (after saving a checkpoint) or non-finite values.

    `exit_code` is what the `jaxdqn` command exits with (128 + signal number, or 3 for non-finite values).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


NON_FINITE_EXIT_CODE = 3


def resume_state(trainer: Trainer, checkpoint, key) -> LoopState:
    """The `LoopState` of `checkpoint`, with the environment pool brought back to the saved state.

    Checks every array against this config's state (CheckpointError before anything compiles), replays
    the logged actions on the freshly reset pool, and checks that the observations come out identical.
    """
    from jaxdqn.checkpoint import CheckpointError, restore_state

    cfg = trainer.cfg
    template = jax.eval_shape(trainer.init, key)
    saved = restore_state(checkpoint, template, checkpoint.has_replay)
    pool_size = cfg.num_seeds * cfg.num_envs
    iterations = int(saved.iteration)
    if checkpoint.action_log.shape != (iterations, pool_size):
        raise CheckpointError(f"checkpoint {checkpoint.path}: action log has shape {checkpoint.action_log.shape}, "
                              f"expected ({iterations}, {pool_size})")
    handle, obs = replay_actions(trainer.env_step, trainer.env_handle, jnp.asarray(trainer.reset_obs),
                                 jnp.asarray(checkpoint.action_log))
    if not np.array_equal(np.asarray(obs).reshape(np.shape(saved.obs)), saved.obs):
        raise CheckpointError(f"replaying the {iterations} logged steps of {cfg.env_id} did not reproduce the "
                              "saved observations; this environment is not deterministic given seed and actions")
    agents = saved.agents
    if not checkpoint.has_replay and hasattr(agents, "replay"):
        agents = agents._replace(replay=jax.jit(trainer.init)(key).agents.replay)
    state = jax.tree.map(jnp.asarray, saved._replace(agents=agents, env_handle=None))
    return state._replace(env_handle=handle)


def _keep_metrics_until(path: Path, last_step: int) -> None:
    """Drop metrics records past `last_step` (and a torn last line), so a resumed run appends cleanly."""
    kept = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("env_steps", 0) <= last_step:
                kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _keep_episodes_until(path: Path, last_step: int) -> None:
    """Drop episodes.csv rows that ended past `last_step` (and a torn last line) before a resumed run appends."""
    kept = [EPISODES_HEADER + "\n"]
    if path.exists():
        for line in path.read_text().splitlines()[1:]:
            fields = line.split(",")
            if len(fields) == 4 and fields[1].isdigit() and int(fields[1]) <= last_step:
                kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]))


class _StopSignals:
    """Records SIGINT/SIGTERM while installed so the host loop can stop after the current chunk."""

    def __init__(self):
        self.received: list[int] = []
        self.previous = {}

    def _handle(self, signum, _frame):
        if self.received:  # a second signal: stop now (the last complete checkpoint stays valid)
            raise KeyboardInterrupt
        self.received.append(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _scalars(record: dict, num_seeds: int) -> dict:
    """TensorBoard scalars of one metrics record: seed means, plus per-seed values for several seeds."""
    scalars = {}
    for name in ("return_mean_100", "length_mean_100", "loss", "q_mean"):
        values = record[name]
        if _mean_of(values) is not None:
            scalars[name] = _mean_of(values)
        if num_seeds > 1:
            scalars.update({f"{name}/seed_{k}": v for k, v in enumerate(values) if v is not None})
    for name in ("epsilon", "beta", "sps"):
        if name in record:
            scalars[name] = record[name]
    return scalars


def run_training(cfg, out_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print,
                 resume_from=None, progress_bar: bool = False) -> dict:
    """Train `cfg` (validated here) to its step budget; write config, metrics, TensorBoard events,
    checkpoints and summary to `out_dir`.

    `resume_from` is a `checkpoint.Checkpoint` of the run in `out_dir` (see `checkpoint.load_latest`):
    training continues from it exactly, and metrics past its step are dropped. `progress_bar` shows a
    tqdm bar instead of one log line per chunk. SIGINT/SIGTERM stop after the current chunk with a
    checkpoint; they and non-finite values raise `TrainingStopped`. Returns the summary dict. Nothing
    is written before validation (and, when resuming, the checkpoint's checks) pass, the environments are
    built and the chunk is compiled.
    """
    from jaxdqn.checkpoint import save_checkpoint

    config_lib.validate(cfg)
    if not is_envpool_env(cfg.env_id):
        log(GYMNASIUM_NOTE.format(env_id=cfg.env_id))
    out = Path(out_dir) if out_dir is not None else None
    if resume_from is not None and out is None:
        raise ValueError("resume_from needs the run's out_dir")
    start = time.perf_counter()
    if cfg.agent == "tabular":
        from jaxdqn.tabular import make_tabular_train

        trainer = make_tabular_train(cfg)
    else:
        trainer = make_train(cfg)
    steps_per_period = trainer.iters_per_period * cfg.num_envs
    total_periods = math.ceil(cfg.total_steps / steps_per_period)
    total_env_steps = total_periods * steps_per_period
    log_periods = log_chunk_periods(cfg)
    key = jax.random.PRNGKey(cfg.seed)

    compile_start = time.perf_counter()
    if resume_from is None:
        state = jax.jit(trainer.init)(key)
        periods_done, updates, learn_after, action_log = 0, 0, cfg.learning_starts, []
    else:
        try:
            state = resume_state(trainer, resume_from, key)
        except BaseException:
            trainer.env.close()
            raise
        periods_done, updates = resume_from.periods_done, resume_from.updates
        learn_after, action_log = resume_from.learn_after, [resume_from.action_log]
        if not resume_from.has_replay:
            learn_after = resume_from.env_steps + cfg.learning_starts
            log(f"checkpoint holds no replay (checkpoint_replay False): refilling it, learning resumes "
                f"after step {learn_after}")
    chunk = jax.jit(trainer.run_chunk, donate_argnums=0).lower(
        state, jnp.int32(log_periods), jnp.int32(learn_after)).compile()
    compile_seconds = time.perf_counter() - compile_start
    epsilon_at = make_epsilon_schedule(cfg)
    # a tabular agent has only `params`; a DQN agent also has target parameters
    params_finite = jax.jit(lambda agents: _all_finite((agents.params, getattr(agents, "target_params", ()))))

    env_steps = periods_done * steps_per_period
    metrics_file = episodes_file = writer = bar = None
    if out is not None:  # nothing is written before the pool is built and the chunk compiled
        if resume_from is None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(config_lib.to_dict(cfg), indent=2) + "\n")
        else:
            _keep_metrics_until(out / "metrics.jsonl", env_steps)
            _keep_episodes_until(out / "episodes.csv", env_steps)
            (out / "config.json").write_text(json.dumps(config_lib.to_dict(cfg), indent=2) + "\n")
            log(f"resumed from {resume_from.path} at step {env_steps}")
        from tensorboardX import SummaryWriter

        metrics_file = open(out / "metrics.jsonl", "a" if resume_from is not None else "w")
        episodes_file = open(out / "episodes.csv", "a" if resume_from is not None else "w")
        if resume_from is None:
            episodes_file.write(EPISODES_HEADER + "\n")
        writer = SummaryWriter(str(out), purge_step=env_steps if resume_from is not None else None)
    if progress_bar:
        from tqdm import tqdm

        # a terminal may report a 0 x 0 size (e.g. `script`); tqdm then draws nothing, so fall back to 100 x 24
        size = shutil.get_terminal_size((100, 24))
        bar = tqdm(total=total_env_steps, initial=env_steps, unit="step", ncols=size.columns, nrows=size.lines,
                   file=sys.stdout)
    say = bar.write if bar is not None else log
    solved_reported = {i for i, s in enumerate(np.asarray(state.stats.solved_step)) if s >= 0}
    last_time, last_steps = time.perf_counter(), env_steps
    last_checkpoint = resume_from.path if resume_from is not None else None

    def save():
        nonlocal action_log, last_checkpoint
        action_log = [np.concatenate(action_log)]
        counters = {"env_steps": env_steps, "periods_done": periods_done, "updates": updates,
                    "learn_after": learn_after}
        last_checkpoint = save_checkpoint(out, cfg, state, action_log[0], counters, cfg.keep_checkpoints)

    try:
        with _StopSignals() as stop:
            while periods_done < total_periods:
                n = min(log_periods, total_periods - periods_done)
                previous_steps = env_steps
                state, chunk_metrics = chunk(state, jnp.int32(n), jnp.int32(learn_after))
                jax.block_until_ready(state)
                periods_done += n
                env_steps = periods_done * steps_per_period
                action_log.append(np.asarray(chunk_metrics.actions[:n * trainer.iters_per_period]))
                loss_sum, q_sum = np.asarray(chunk_metrics.loss_sum), np.asarray(chunk_metrics.q_sum)
                if not (np.isfinite(loss_sum).all() and np.isfinite(q_sum).all()
                        and bool(params_finite(state.agents))):
                    kept = f"the last good checkpoint {last_checkpoint} is kept" if last_checkpoint else \
                        "no checkpoint was saved"
                    raise TrainingStopped(
                        f"non-finite loss or parameters at env step {env_steps} (in the chunk of steps "
                        f"{previous_steps + 1}-{env_steps}); stopped without saving this state; {kept}",
                        NON_FINITE_EXIT_CODE)
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
                    "loss": _seed_means(loss_sum, counts),
                    "q_mean": _seed_means(q_sum, counts),
                    "episodes": np.asarray(state.stats.episodes).tolist(),
                    "return_mean_100": recent_return_means(state.stats),
                    "length_mean_100": recent_length_means(state.stats),
                }
                if cfg.prioritized:
                    progress = min(env_steps / total_env_steps, 1.0)
                    record["beta"] = cfg.priority_beta0 + (1.0 - cfg.priority_beta0) * progress
                if metrics_file is not None:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    if write_episode_rows(episodes_file, chunk_metrics.finished):
                        say("warning: some episodes of this chunk were not logged to episodes.csv")
                    episodes_file.flush()
                    for tag, value in _scalars(record, cfg.num_seeds).items():
                        writer.add_scalar(tag, value, env_steps)
                    writer.flush()
                return_text = _format(_mean_of(record["return_mean_100"]))
                loss_text = _format(_mean_of(record["loss"]), ".4g")
                if bar is not None:
                    bar.set_postfix_str(f"return(100) {return_text} eps {record['epsilon']:.3f} loss {loss_text}",
                                        refresh=False)
                    bar.update(env_steps - previous_steps)
                else:
                    log(f"step {env_steps:>9}/{total_env_steps} | sps {sps:9.0f} | return(100) {return_text} | "
                        f"eps {record['epsilon']:.3f} | loss {loss_text}")
                solved_steps = np.asarray(state.stats.solved_step)
                for seed_index, solved_at in enumerate(solved_steps):
                    if solved_at >= 0 and seed_index not in solved_reported:
                        solved_reported.add(seed_index)
                        say(f"seed {seed_index}: solved at step {int(solved_at)} "
                            f"(100-episode mean >= {cfg.solved_return})")
                all_solved = cfg.stop_when_solved and (solved_steps >= 0).all()
                interval = cfg.checkpoint_interval
                due = interval > 0 and env_steps // interval > previous_steps // interval
                if out is not None and (due or stop.received or all_solved or periods_done == total_periods):
                    save()
                if stop.received:
                    signum = stop.received[0]
                    where = (f"saved a checkpoint at step {env_steps}; resume with: jaxdqn train --resume {out}"
                             if out is not None else f"stopped at step {env_steps} (no run directory, nothing saved)")
                    raise TrainingStopped(f"interrupted by {signal.Signals(signum).name}: {where}", 128 + signum)
                if all_solved:
                    say(f"all seeds solved; stopping at step {env_steps}")
                    break
    finally:
        for resource in (metrics_file, episodes_file, writer, bar):
            if resource is not None:
                resource.close()
        trainer.env.close()
    wall_seconds = time.perf_counter() - start
    eval_returns = evaluate_policy(cfg, state.agents.params, cfg.eval_episodes,
                                   cfg.seed + EVAL_SEED_OFFSET).returns
    session_steps = env_steps - (resume_from.env_steps if resume_from is not None else 0)
    session_updates = updates - (resume_from.updates if resume_from is not None else 0)
    summary = {
        "env_id": cfg.env_id,
        "num_seeds": cfg.num_seeds,
        "num_envs": cfg.num_envs,
        "env_steps": env_steps,
        "updates": updates,
        "wall_seconds": wall_seconds,
        "compile_seconds": compile_seconds,
        "sps": session_steps * cfg.num_seeds / wall_seconds,
        "updates_per_second": session_updates * cfg.num_seeds / wall_seconds,
        "return_mean_100": recent_return_means(state.stats),
        "solved_step": [int(s) if s >= 0 else None for s in np.asarray(state.stats.solved_step)],
        "eval_episodes": cfg.eval_episodes,
        "eval_return_mean": eval_returns.mean(axis=1).tolist(),
        "eval_return_std": eval_returns.std(axis=1).tolist(),
    }
    if resume_from is not None:
        summary["resumed_from_step"] = resume_from.env_steps
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done: {env_steps} steps x {cfg.num_seeds} seed(s), {updates} updates, {wall_seconds:.1f} s "
        f"({compile_seconds:.1f} s compiling), {summary['sps']:.0f} SPS; greedy eval return per seed: "
        + ", ".join(f"{r:.4g}" for r in summary["eval_return_mean"]))
    return summary

"""Episode statistics kept inside the compiled loop: running returns, the last 100 episodes, the solved step,
and the log of episodes that finished during a chunk (for episodes.csv)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

EPISODE_WINDOW = 100
"""Episodes in the rolling mean return (and the 'solved' criterion)."""


class EpisodeStats(NamedTuple):
    """Per agent: running returns and lengths of each environment, and the last 100 episode returns and lengths."""

    running_return: chex.Array  # (A, N)
    running_length: chex.Array  # (A, N)
    recent_returns: chex.Array  # (A, EPISODE_WINDOW)
    recent_lengths: chex.Array  # (A, EPISODE_WINDOW), same slots as recent_returns
    recent_position: chex.Array  # (A,)
    episodes: chex.Array  # (A,)
    solved_step: chex.Array  # (A,), -1 until solved


class EpisodeLog(NamedTuple):
    """Per agent, the episodes that finished during one chunk, in order, in a ring of `capacity` slots.

    `count` above the capacity means the oldest `count - capacity` were overwritten.
    """

    returns: chex.Array  # (A, capacity)
    lengths: chex.Array  # (A, capacity)
    end_steps: chex.Array  # (A, capacity): env steps per agent when the episode ended
    position: chex.Array  # (A,) next slot to write
    count: chex.Array  # (A,) episodes finished in the chunk


def ring_write(storage, position, items, valid, capacity: int):
    """Write the valid rows of `items` (pytree, leading batch axis) into the ring `storage` at `position`, in
    order; returns (new storage, new position, rows written)."""
    valid = valid.astype(jnp.int32)
    slots = jnp.where(valid > 0, (position + jnp.cumsum(valid) - 1) % capacity, capacity)
    storage = jax.tree.map(lambda buf, x: buf.at[slots].set(x.astype(buf.dtype), mode="drop"), storage, items)
    count = valid.sum()
    return storage, (position + count) % capacity, count


def init_episode_stats(num_agents: int, num_envs: int) -> EpisodeStats:
    """Episode statistics before the first step."""
    zeros = jnp.zeros((num_agents, num_envs), jnp.float32)
    window = jnp.zeros((num_agents, EPISODE_WINDOW), jnp.float32)
    counters = jnp.zeros((num_agents,), jnp.int32)
    return EpisodeStats(zeros, zeros.astype(jnp.int32), window, window.astype(jnp.int32), counters, counters,
                        jnp.full((num_agents,), -1, jnp.int32))


def update_episode_stats(stats: EpisodeStats, reward, real, over, env_steps, solved_return=None):
    """Add one step's rewards (where `real`), close the episodes that are `over`, note when each agent first
    reaches `solved_return` over the last 100 episodes. Arrays are (agents, envs).

    Returns (new stats, ends) where `ends` = (over, return, length, env_steps) of each environment's episode
    as of this step, for `log_episode_ends`.
    """
    running_return = stats.running_return + reward * real
    running_length = stats.running_length + real.astype(jnp.int32)
    ends = (over, running_return, running_length, jnp.full(over.shape, env_steps, jnp.int32))
    write = functools.partial(ring_write, capacity=EPISODE_WINDOW)
    recent, position, count = jax.vmap(write)(stats.recent_returns, stats.recent_position, running_return, over)
    lengths, _, _ = jax.vmap(write)(stats.recent_lengths, stats.recent_position, running_length, over)
    episodes = stats.episodes + count
    solved_step = stats.solved_step
    if solved_return is not None:
        solved_now = (episodes >= EPISODE_WINDOW) & (recent.mean(axis=1) >= solved_return) & (solved_step < 0)
        solved_step = jnp.where(solved_now, env_steps, solved_step)
    stats = EpisodeStats(jnp.where(over, 0.0, running_return), jnp.where(over, 0, running_length), recent, lengths,
                         position, episodes, solved_step)
    return stats, ends


def empty_episode_log(num_agents: int, capacity: int) -> EpisodeLog:
    """An episode log with `capacity` slots per agent and nothing in it."""
    slots = jnp.zeros((num_agents, capacity), jnp.float32)
    counters = jnp.zeros((num_agents,), jnp.int32)
    return EpisodeLog(slots, slots.astype(jnp.int32), slots.astype(jnp.int32), counters, counters)


def log_episode_ends(log: EpisodeLog, ends) -> EpisodeLog:
    """Append the finished episodes of `ends` (from `update_episode_stats`, stacked over iterations: (K, A, N))."""
    num_agents, capacity = log.returns.shape
    # (iterations, A, N) -> (A, iterations * N): per agent, in the order the episodes ended
    over, returns, lengths, end_steps = (x.swapaxes(0, 1).reshape(num_agents, -1) for x in ends)
    write = functools.partial(ring_write, capacity=capacity)
    storage, position, count = jax.vmap(write)((log.returns, log.lengths, log.end_steps), log.position,
                                               (returns, lengths, end_steps), over)
    return EpisodeLog(*storage, position, log.count + count)


def recent_means(values, episodes) -> list:
    """Per agent: the mean of the last (up to) 100 entries of `values` (A, 100), None before the first episode."""
    values, episodes = np.asarray(values), np.asarray(episodes)
    filled = np.minimum(episodes, EPISODE_WINDOW)
    return [float(values[a, :filled[a]].mean()) if filled[a] else None for a in range(len(filled))]

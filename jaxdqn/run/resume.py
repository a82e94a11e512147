"""Resuming a checkpoint's `LoopState`, in one of two modes.

- Fresh (the default, bounded): the pool is built anew from its own seeds (`training_stream` of the
  checkpoint's step) and reset; the agents' state, replay, keys and counters are the checkpoint's, and the
  episodes that were running are cut (`Rollout.cut_episodes`). Costs loading plus one reset, whatever the
  run's length.
- Exact: EnvPool's state cannot be saved, so the pool is rebuilt with the seeds it had, reset, and the
  actions logged since it was built are replayed through the backend's step in one jitted `lax.scan`; the
  observations that come out are checked bit for bit against the saved ones. On CPU the run then continues
  bit for bit as if never stopped; it costs a replay of every logged step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdqn.loop.rollout import Rollout
from jaxdqn.run.checkpoint import Checkpoint, CheckpointError, restore_state, saved_state


def replay_actions(env, env_state, obs, actions):
    """Step the pool `env` from (env_state, obs) through `actions` (iterations x pool size) in one jitted scan;
    return (env_state, obs) after the last row."""

    def scan(env_state, obs, actions):
        def one(carry, row):
            env_state, out = env.step(carry[0], row.astype(jnp.int32))
            return (env_state, out.obs), None

        return jax.lax.scan(one, (env_state, obs), actions)[0]

    return jax.jit(scan)(env_state, obs, actions)


def pool_start_step(checkpoint: Checkpoint, exact: bool) -> int:
    """The env step whose `training_stream` seeds the pool that resumes `checkpoint`: the checkpointed pool's
    own (exact), or the checkpoint's step (fresh)."""
    return checkpoint.pool_start_step if exact else checkpoint.env_steps


def resume_state(rollout: Rollout, checkpoint: Checkpoint, key, exact: bool = False):
    """The `LoopState` that continues `checkpoint` on `rollout`, whose pool was built with the seeds of
    `pool_start_step(checkpoint, exact)`; arrays are checked against this config's state (CheckpointError
    before anything compiles)."""
    template = jax.eval_shape(rollout.init, key)
    # Optional fields the checkpoint lacks (no replay saved, or a field that a later jaxdqn added to the agent's
    # state, such as DQN's pending priorities) are refilled from a fresh init.
    absent = tuple(name for name in rollout.fns.optional_fields
                   if not checkpoint.has_replay or not any(path.startswith(f".agents.{name}")
                                                           for path in checkpoint.leaves))
    saved = restore_state(checkpoint, saved_state(template, False, absent))
    agents = saved.agents
    if absent:
        fresh = rollout.start(key).agents
        agents = agents._replace(**{name: getattr(fresh, name) for name in absent})
    state = jax.tree.map(jnp.asarray, saved._replace(agents=agents, env_state=rollout.reset[0]))
    if not exact:
        state = rollout.cut_episodes(state)
        return state._replace(obs=jnp.asarray(rollout.reset[1]).reshape(state.obs.shape))
    pool_size = rollout.env.num_envs
    num_envs = rollout.plan.steps_per_period // rollout.plan.iters_per_period  # per agent
    iterations = int(saved.iteration) - checkpoint.pool_start_step // num_envs
    if checkpoint.action_log.shape != (iterations, pool_size):
        raise CheckpointError(f"checkpoint {checkpoint.path}: action log has shape {checkpoint.action_log.shape}, "
                              f"expected ({iterations}, {pool_size})")
    env_state, obs = replay_actions(rollout.env, *rollout.reset, jnp.asarray(checkpoint.action_log))
    here = getattr(rollout.env, "stepped_here", np.ones(pool_size, bool))  # several processes: this one's pools
    replayed, expected = (np.asarray(o).reshape(pool_size, -1)[here] for o in (obs, saved.obs))
    if not np.array_equal(replayed, expected):
        raise CheckpointError(f"replaying the {iterations} logged steps of {rollout.env.spec.env_id} did not "
                              "reproduce the saved observations; this environment is not deterministic given "
                              "seed and actions")
    return state._replace(env_state=env_state)

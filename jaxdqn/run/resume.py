"""Exact resume: a checkpoint's `LoopState` with the environment pool brought back to the saved state.

Environment state (EnvPool's) cannot be saved, so the pool is rebuilt with the same seeds, reset, and the
logged actions are replayed through the backend's step in one jitted `lax.scan`; the observations that come
out are checked bit for bit against the saved ones.
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


def resume_state(rollout: Rollout, checkpoint: Checkpoint, key):
    """The `LoopState` of `checkpoint`: arrays checked against this config's state (CheckpointError before
    anything compiles), the logged actions replayed on the freshly reset pool, the observations compared."""
    template = jax.eval_shape(rollout.init, key)
    optional = rollout.fns.optional_fields
    saved = restore_state(checkpoint, saved_state(template, checkpoint.has_replay, optional))
    pool_size = rollout.env.num_envs
    iterations = int(saved.iteration)
    if checkpoint.action_log.shape != (iterations, pool_size):
        raise CheckpointError(f"checkpoint {checkpoint.path}: action log has shape {checkpoint.action_log.shape}, "
                              f"expected ({iterations}, {pool_size})")
    env_state, obs = replay_actions(rollout.env, *rollout.reset, jnp.asarray(checkpoint.action_log))
    if not np.array_equal(np.asarray(obs).reshape(np.shape(saved.obs)), saved.obs):
        raise CheckpointError(f"replaying the {iterations} logged steps of {rollout.env.spec.env_id} did not "
                              "reproduce the saved observations; this environment is not deterministic given "
                              "seed and actions")
    agents = saved.agents
    if not checkpoint.has_replay and optional:
        fresh = jax.jit(rollout.init)(key).agents
        agents = agents._replace(**{name: getattr(fresh, name) for name in optional})
    state = jax.tree.map(jnp.asarray, saved._replace(agents=agents))
    return state._replace(env_state=env_state)

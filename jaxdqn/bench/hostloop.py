"""Reference point: a plain host-loop DQN in the shape of the seeds' PyTorch code.

A Python loop over environment steps, a numpy ring-buffer replay, epsilon-greedy on the host, and one
jitted update (jaxdqn's own `train_step` math, fed a numpy batch). The harness measures its SPS next to
the compiled loop on the same machine, so the report shows what compiling the whole loop buys.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdqn import losses
from jaxdqn.envs import env_info, make_pool
from jaxdqn.exploration import make_epsilon_schedule
from jaxdqn.learner import make_optimizer
from jaxdqn.networks import make_network


def run_host_loop(cfg, total_steps: int) -> dict:
    """Train `cfg` (1 seed, cfg.num_envs environments) for `total_steps` env steps in a Python loop.

    Returns env steps, updates, wall seconds (including the update's compile) and SPS.
    """
    info = env_info(cfg.env_id)
    env, obs = make_pool(cfg.env_id, cfg.num_envs, cfg.seed, cfg.env_threads)
    network, optimizer = make_network(cfg, info.num_actions), make_optimizer(cfg)
    params = network.init(jax.random.PRNGKey(cfg.seed), jnp.zeros((1, *info.obs_shape), info.obs_dtype))
    target_params = params
    opt_state = optimizer.init(params)
    epsilon_at = make_epsilon_schedule(cfg)
    capacity = cfg.buffer_size
    buffer = {"obs": np.zeros((capacity, *info.obs_shape), info.obs_dtype), "action": np.zeros(capacity, np.int32),
              "reward": np.zeros(capacity, np.float32), "next_obs": np.zeros((capacity, *info.obs_shape), info.obs_dtype),
              "terminated": np.zeros(capacity, np.float32)}
    position, size = 0, 0
    rng = np.random.default_rng(cfg.seed)

    @jax.jit
    def act(params, obs):
        return jnp.argmax(network.apply(params, obs), axis=-1)

    @jax.jit
    def update(params, target_params, opt_state, batch):
        def loss_fn(params):
            q_tm1 = network.apply(params, batch["obs"])
            q_t = network.apply(target_params, batch["next_obs"])
            discount = cfg.gamma * (1.0 - batch["terminated"])
            td = jax.vmap(losses.q_learning)(q_tm1, batch["action"], batch["reward"], discount, q_t)
            return losses.weighted_loss(td, jnp.ones_like(td), cfg.loss, cfg.huber_delta)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    iterations = total_steps // cfg.num_envs
    updates_done = 0
    done_prev = np.zeros(cfg.num_envs, bool)
    start = time.perf_counter()
    for iteration in range(iterations):
        env_steps = iteration * cfg.num_envs
        greedy = np.asarray(act(params, obs))
        explore = rng.random(cfg.num_envs) < float(epsilon_at(env_steps))
        actions = np.where(explore, rng.integers(0, info.num_actions, cfg.num_envs), greedy).astype(np.int32)
        next_obs, reward, terminated, truncated, _ = env.step(actions)
        for i in np.flatnonzero(~done_prev):  # EnvPool's auto-reset step is not a transition
            buffer["obs"][position], buffer["action"][position] = obs[i], actions[i]
            buffer["reward"][position], buffer["next_obs"][position] = reward[i], next_obs[i]
            buffer["terminated"][position] = terminated[i]
            position, size = (position + 1) % capacity, min(size + 1, capacity)
        done_prev = (terminated | truncated) & ~done_prev
        obs = next_obs
        env_steps += cfg.num_envs
        if env_steps > cfg.learning_starts and env_steps % cfg.train_frequency < cfg.num_envs:
            for _ in range(cfg.gradient_steps):
                idx = rng.integers(0, size, cfg.batch_size)
                batch = {k: v[idx] for k, v in buffer.items()}
                params, opt_state, _ = update(params, target_params, opt_state, batch)
                updates_done += 1
                if updates_done % cfg.target_update_period == 0:
                    target_params = params
    jax.block_until_ready(params)
    wall = time.perf_counter() - start
    env.close()
    steps = iterations * cfg.num_envs
    return {"env_steps": steps, "updates": updates_done, "wall_seconds": wall, "sps": steps / wall}

"""Reference point: a plain host-loop DQN in the shape of the seeds' PyTorch code.

A Python loop over environment steps, a numpy ring-buffer replay, epsilon-greedy on the host, and one
jitted update (jaxdqn's own `train_step` math, fed a numpy batch). The harness measures its SPS next to
the compiled loop on the same machine, so the report shows what compiling the whole loop buys.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdqn.config.schema import plan
from jaxdqn.core import losses
from jaxdqn.core.exploration import make_epsilon_schedule
from jaxdqn.core.networks import make_network
from jaxdqn.envs import ATARI_PREPROCESSING, EnvPoolBackend, env_seeds, env_spec, is_atari


def _optimizer(optim) -> optax.GradientTransformation:
    """Adam after the clips the config enables (an `OptimConfig`), with constant hyperparameters."""
    clips = []
    if optim.clip_grad_value > 0:
        clips.append(optax.clip(optim.clip_grad_value))
    if optim.max_grad_norm > 0:
        clips.append(optax.clip_by_global_norm(optim.max_grad_norm))
    return optax.chain(*clips, optax.adam(optim.learning_rate, eps=optim.adam_eps))


def _envpool(cfg):
    """A reset EnvPool (Gymnasium API) of cfg's environments with the training loop's seeds, and its first obs."""
    import envpool

    env_id, num_envs = cfg.env.env_id, cfg.env.num_envs
    if not EnvPoolBackend.has(env_id):
        raise ValueError(f"env_id: the host-loop reference runs EnvPool tasks only (got {env_id!r})")
    options = {}
    if is_atari(env_id):
        options = dict(ATARI_PREPROCESSING, episodic_life=cfg.env.episodic_life, reward_clip=cfg.env.reward_clip)
    seeds = [int(seed) for seed in env_seeds(cfg.loop.seed, range(1), num_envs)]
    threads = cfg.env.env_threads or min(num_envs, os.cpu_count() or 1)
    env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs, seed=seeds,
                       num_threads=threads, **options)
    obs, _info = env.reset()
    return env, obs


def run_host_loop(cfg, total_steps: int) -> dict:
    """Train the dqn `cfg` (1 seed, cfg.env.num_envs environments) for `total_steps` env steps in a Python loop.

    Returns env steps, updates, wall seconds (including the update's compile) and SPS.
    """
    s, loop, num_envs = cfg.settings, cfg.loop, cfg.env.num_envs
    spec = env_spec(cfg.env.env_id)
    env, obs = _envpool(cfg)
    network, optimizer = make_network(s.network, spec.num_actions), _optimizer(s.optim)
    params = network.init(jax.random.PRNGKey(loop.seed), jnp.zeros((1, *spec.obs_shape), spec.obs_dtype))
    target_params = params
    opt_state = optimizer.init(params)
    epsilon_at = make_epsilon_schedule(cfg.exploration, plan(cfg).epsilon_decay_steps)
    capacity = s.replay.buffer_size
    buffer = {"obs": np.zeros((capacity, *spec.obs_shape), spec.obs_dtype), "action": np.zeros(capacity, np.int32),
              "reward": np.zeros(capacity, np.float32),
              "next_obs": np.zeros((capacity, *spec.obs_shape), spec.obs_dtype),
              "terminated": np.zeros(capacity, np.float32)}
    position, size = 0, 0
    rng = np.random.default_rng(loop.seed)

    @jax.jit
    def act(params, obs):
        return jnp.argmax(network.apply(params, obs), axis=-1)

    @jax.jit
    def update(params, target_params, opt_state, batch):
        def loss_fn(params):
            q_tm1 = network.apply(params, batch["obs"])
            q_t = network.apply(target_params, batch["next_obs"])
            discount = s.gamma * (1.0 - batch["terminated"])
            td = jax.vmap(losses.q_learning)(q_tm1, batch["action"], batch["reward"], discount, q_t)
            return losses.weighted_loss(td, jnp.ones_like(td), s.loss, s.huber_delta)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    iterations = total_steps // num_envs
    updates_done = 0
    done_prev = np.zeros(num_envs, bool)
    start = time.perf_counter()
    for iteration in range(iterations):
        env_steps = iteration * num_envs
        greedy = np.asarray(act(params, obs))
        explore = rng.random(num_envs) < float(epsilon_at(env_steps))
        actions = np.where(explore, rng.integers(0, spec.num_actions, num_envs), greedy).astype(np.int32)
        next_obs, reward, terminated, truncated, _ = env.step(actions)
        for i in np.flatnonzero(~done_prev):  # EnvPool's auto-reset step is not a transition
            buffer["obs"][position], buffer["action"][position] = obs[i], actions[i]
            buffer["reward"][position], buffer["next_obs"][position] = reward[i], next_obs[i]
            buffer["terminated"][position] = terminated[i]
            position, size = (position + 1) % capacity, min(size + 1, capacity)
        done_prev = (terminated | truncated) & ~done_prev
        obs = next_obs
        env_steps += num_envs
        if env_steps > loop.learning_starts and env_steps % loop.train_frequency < num_envs:
            for _ in range(loop.gradient_steps):
                idx = rng.integers(0, size, s.replay.batch_size)
                batch = {k: v[idx] for k, v in buffer.items()}
                params, opt_state, _ = update(params, target_params, opt_state, batch)
                updates_done += 1
                if updates_done % s.target_update_period == 0:
                    target_params = params
    jax.block_until_ready(params)
    wall = time.perf_counter() - start
    env.close()
    steps = iterations * num_envs
    return {"env_steps": steps, "updates": updates_done, "wall_seconds": wall, "sps": steps / wall}

"""Where one iteration of the loop spends its time: the parts of acting and of one update, each compiled alone.

For a preset (default `cartpole` at 10 environments, PureJaxRL's benchmark work) on a backend, in µs per call,
each the median of 5 timed runs of a jitted `fori_loop` of many calls after a warm-up run:

- `env_step`: the backend's step of the whole pool (zeros for actions);
- `acting_period`: one period of the real compiled loop with learning off (act, step, observe, episode
  statistics, action log), per iteration;
- `period`: one period of the real loop with learning on (acting plus one update), per iteration;
- `update`: the agent's `learn` alone (one DQN train step: sample, loss and gradient, Adam, target);
- `sample`: the replay's sample alone; `loss_and_grad`: the loss and its gradient on a fixed batch;
  `forward`: one forward pass of the Q-network on a batch; `adam`: the optimiser's update alone;
- `forward_gflops`: the rate of that forward pass, against which the update's cost is bounded (the update
  is two forward passes and one backward pass of about twice a forward's work);
- `peak_gflops`: the rate of a large float32 matrix product (1024 x 1024 x 1024), about the most this machine's
  XLA does on the cores it runs on; `update_floor_us`: the update's multiply-adds (two forward passes and a
  backward pass, no input gradient for the first layer) at that rate, the least an update could cost here.

    python benchmarks/breakdown.py [--env-id gymnax/CartPole-v1] [--num-envs 10] [--preset cartpole]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from jaxdqn.core.optim import make_optimizer
from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.config.build import make_config
from jaxdqn.core import threefry
from jaxdqn.core.networks import make_network
from jaxdqn.core.replay import make_replay
from jaxdqn.envs import env_spec
from jaxdqn.run.driver import build_rollout, chunk_compiler_options

REPEATS = 5


def per_call_us(body, carry, calls: int) -> float:
    """µs per call of `body(i, carry) -> carry` inside one jitted fori_loop of `calls` calls (median of REPEATS)."""
    with threefry.unrolled():  # lowered as the training loop's chunk is
        looped = jax.jit(lambda c: jax.lax.fori_loop(0, calls, body, c)).lower(carry).compile()
    jax.block_until_ready(looped(carry))
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(looped(carry))
        times.append(time.perf_counter() - start)
    return statistics.median(times) / calls * 1e6


def peak_gflops(size: int = 1024, calls: int = 20) -> float:
    """GFLOP/s of a chain of `size`-square float32 matrix products, each kept from being hoisted by the last."""
    matrix = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32) / size
    us = per_call_us(lambda i, x: jnp.tanh(x @ matrix), matrix, calls)
    return 2 * size ** 3 / (us * 1e-6) / 1e9


def chunk_us(rollout, state, periods: int, learn_after: int) -> float:
    """µs per iteration of the real compiled chunk over `periods` periods (median of REPEATS)."""
    with threefry.unrolled():  # as `jaxdqn train` lowers it
        chunk = jax.jit(rollout.run_chunk).lower(state, jnp.int32(periods), jnp.int32(learn_after)).compile(
            chunk_compiler_options())
    jax.block_until_ready(chunk(state, jnp.int32(periods), jnp.int32(learn_after)))
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(chunk(state, jnp.int32(periods), jnp.int32(learn_after)))
        times.append(time.perf_counter() - start)
    return statistics.median(times) / (periods * rollout.plan.iters_per_period) * 1e6


def main() -> None:
    """Measure every part, print them, and write the JSON result file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cartpole")
    parser.add_argument("--env-id", default=None)
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    overrides = {"num_envs": args.num_envs, **({"env_id": args.env_id} if args.env_id else {})}
    cfg = make_config(args.preset, **overrides)
    spec = env_spec(cfg.env.env_id)
    settings = cfg.settings
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(0))
    filled_iterations = (settings.replay.batch_size * 10) // cfg.env.num_envs + 1
    # lowered as `chunk_us` lowers it: JAX reuses a function's lowering for the same shapes, whatever the context
    with threefry.unrolled():
        state, _ = jax.jit(rollout.run_chunk)(state, jnp.int32(filled_iterations // rollout.plan.iters_per_period + 1),
                                              jnp.int32(10**9))
    agent = jax.tree.map(lambda x: x[0], state.agents)
    env_steps = int(state.iteration) * cfg.env.num_envs
    results = {}

    env_state, _ = rollout.env.reset()
    zeros = jnp.zeros(rollout.env.num_envs, jnp.int32)
    results["env_step"] = per_call_us(lambda i, s: rollout.env.step(s, zeros)[0], env_state, args.calls)
    periods = max(args.calls // rollout.plan.iters_per_period, 1)
    results["acting_period"] = chunk_us(rollout, state, periods, 10**9)
    results["period"] = chunk_us(rollout, state, periods, 0)
    key = jax.random.PRNGKey(1)
    results["update"] = per_call_us(lambda i, a: rollout.fns.learn(a, jax.random.fold_in(key, i), env_steps)[0],
                                    agent, args.calls)

    replay = make_replay(settings.replay.buffer_size, settings.replay.batch_size, cfg.env.num_envs, spec.obs_shape,
                         spec.obs_dtype, settings.replay.prioritized)
    def sample_once(i, total):
        batch = replay.sample(agent.replay, jax.random.fold_in(key, i), 0.4).batch
        return total + batch.obs.sum() + batch.next_obs.sum()

    results["sample"] = per_call_us(sample_once, jnp.float32(0), args.calls)
    batch = replay.sample(agent.replay, key, 0.4).batch
    network = make_network(settings.network, spec.num_actions)

    def loss(params, target_params, shift):
        # `shift` (the call's index) keeps XLA from hoisting the target network's pass out of the loop
        q = network.apply(params, batch.obs + shift)
        next_q = network.apply(target_params, batch.next_obs + shift).max(-1)
        target = batch.reward + settings.gamma * (1.0 - batch.terminated.astype(jnp.float32)) * next_q
        chosen = jnp.take_along_axis(q, batch.action[:, None], axis=1)[:, 0]
        return jnp.mean(0.5 * jnp.square(jax.lax.stop_gradient(target) - chosen))

    def loss_and_grad_once(i, params):
        grads = jax.grad(loss)(params, agent.target_params, i.astype(batch.obs.dtype) * 1e-9)
        return jax.tree.map(lambda p, g: p - 1e-9 * g, params, grads)

    results["loss_and_grad"] = per_call_us(loss_and_grad_once, agent.params, args.calls)
    results["forward"] = per_call_us(lambda i, c: c + network.apply(agent.params, batch.obs + c).sum() * 1e-9,
                                     jnp.zeros((), batch.obs.dtype), args.calls)
    layer_widths = [*spec.obs_shape[-1:], *settings.network.hidden_sizes, spec.num_actions]
    if settings.network.torso == "mlp" and len(spec.obs_shape) == 1:
        macs = settings.replay.batch_size * sum(a * b for a, b in zip(layer_widths, layer_widths[1:]))
        results["forward_gflops"] = 2 * macs / (results["forward"] * 1e-6) / 1e9
        results["peak_gflops"] = peak_gflops()
        input_gradient_macs = settings.replay.batch_size * layer_widths[0] * layer_widths[1]
        update_macs = 4 * macs - input_gradient_macs + (macs if settings.double_q else 0)
        results["update_floor_us"] = 2 * update_macs / (results["peak_gflops"] * 1e9) * 1e6
    optimizer = make_optimizer(settings.optim)

    def adam_once(i, carry):
        params, opt_state = carry
        updates, opt_state = optimizer.update(params, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    results["adam"] = per_call_us(adam_once, (agent.params, agent.opt_state), args.calls)
    rollout.env.close()
    for name, value in results.items():
        print(f"{name:>15}: {value:8.1f} {'GFLOP/s' if name.endswith('gflops') else 'µs'}")
    record = {"benchmark": "breakdown", "script": "python benchmarks/breakdown.py " + " ".join(sys.argv[1:]),
              "machine": machine_facts(), "env_id": cfg.env.env_id, "num_envs": cfg.env.num_envs,
              "batch_size": settings.replay.batch_size, "hidden_sizes": list(settings.network.hidden_sizes),
              "iters_per_period": rollout.plan.iters_per_period, "us": results}
    write_result(record, args.out, f"breakdown-{cfg.env.env_id.replace('/', '_')}-{cfg.env.num_envs}envs")


if __name__ == "__main__":
    main()

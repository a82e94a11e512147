"""The compiled loop and the DQN update on real EnvPool CartPole: auto-reset handling, jit equivalence,
compile-once, and independent seeds."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn.compile_cache import once_compiler_options
from jaxdqn.config.build import make_config
from jaxdqn.core import threefry
from jaxdqn.envs import env_seeds, make_env
from jaxdqn.loop.rollout import make_rollout
from jaxdqn.run.driver import build_rollout, chunk_compiler_options

SMALL = dict(num_envs=4, total_steps=100_000, learning_starts=400, buffer_size=4096, batch_size=32,
             train_frequency=4, log_interval=400)


def test_auto_reset_step_is_never_stored_as_a_transition():
    cfg = make_config(**dict(SMALL, learning_starts=99_000))  # acting only
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(0))
    iterations = 500
    state, _ = jax.jit(rollout.run_chunk)(state, jnp.int32(iterations), jnp.int32(cfg.loop.learning_starts))
    storage = jax.tree.map(lambda x: np.asarray(x[0]), state.agents.replay.storage)  # agent 0: (N, L, ...)
    episodes = int(state.stats.episodes[0])
    assert episodes > 50  # random play: many episodes, many auto-resets
    # one ring per environment, written in step order: slot t+1 holds the observation after slot t's step
    obs, next_obs, real = storage.obs[:, :iterations - 1], storage.obs[:, 1:iterations], storage.real[:, :iterations - 1]
    ended_on_last_step = int(np.asarray(state.done[0]).sum())
    assert int(storage.real[:, :iterations].sum()) == 4 * iterations - (episodes - ended_on_last_step)
    # CartPole integrates x' = x + 0.02 * x_dot: true for every real transition, false for a
    # terminal-observation -> reset-observation pair (the auto-reset step).
    np.testing.assert_allclose(next_obs[real][:, 0], obs[real][:, 0] + 0.02 * obs[real][:, 1], atol=1e-4)
    assert not np.allclose(next_obs[~real][:, 0], obs[~real][:, 0] + 0.02 * obs[~real][:, 1], atol=1e-4)
    assert storage.terminated[:, :iterations - 1][real].sum() > 0
    rollout.env.close()


def _filled_agent(cfg, seed=0):
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(seed))
    state, _ = jax.jit(rollout.run_chunk)(state, jnp.int32(200), jnp.int32(10**6))  # 800 steps stored, no learning
    rollout.env.close()
    return rollout.fns, jax.tree.map(lambda x: x[0], state.agents)


def test_jitted_equals_unjitted():
    cfg = make_config(**SMALL, double_q=True, dueling=True, loss="huber", prioritized=True, max_grad_norm=1.0,
                      target_update_period=2, target_tau=0.5)
    fns, agent = _filled_agent(cfg)
    jitted, eager = agent, agent
    for i in range(2):  # the second update writes the first one's priorities before it samples
        key = jax.random.PRNGKey(i)
        jitted, jitted_metrics = jax.jit(fns.learn)(jitted, key, 800)
        with jax.disable_jit():
            eager, eager_metrics = fns.learn(eager, key, 800)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 (jitted.params, jitted.target_params), (eager.params, eager.target_params))
    np.testing.assert_allclose(jitted_metrics["loss"], eager_metrics["loss"], rtol=1e-5)
    # target updates every 2 updates as a Polyak average: after 2 updates it moved, but is not the online net
    first_target = jax.tree.leaves(agent.target_params)[0]
    assert not np.allclose(jax.tree.leaves(jitted.target_params)[0], first_target)
    assert not np.allclose(jax.tree.leaves(jitted.target_params)[0], jax.tree.leaves(jitted.params)[0])


def test_learn_compiles_once():
    fns, agent = _filled_agent(make_config(**SMALL))
    traces = []

    def counted(state, key):
        traces.append(1)
        return fns.learn(state, key, 800)

    learn = jax.jit(counted, donate_argnums=0)
    for i in range(5):
        agent, _ = learn(agent, jax.random.PRNGKey(i))
    assert len(traces) == 1
    assert int(agent.updates) == 5


def test_chunk_compiles_once_and_seeds_differ():
    cfg = make_config(**SMALL, num_seeds=2)
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(0))
    first_kernel = np.asarray(state.agents.params["params"]["MLPTorso_0"]["Dense_0"]["kernel"])
    assert not np.allclose(first_kernel[0], first_kernel[1]), "seeds start from the same parameters"
    assert not np.array_equal(np.asarray(state.keys[0]), np.asarray(state.keys[1]))
    traces = []

    def counted(state, n):
        traces.append(1)
        return rollout.run_chunk(state, n, cfg.loop.learning_starts)

    chunk = jax.jit(counted, donate_argnums=0)
    for n in (50, 100, 150):  # 300 periods of 4 env steps: past learning_starts, updates run
        state, output = chunk(state, jnp.int32(n))
    assert len(traces) == 1
    assert int(output.learn_calls) > 0
    assert int(state.agents.updates[0]) == int(state.agents.updates[1]) > 0
    kernels = np.asarray(state.agents.params["params"]["MLPTorso_0"]["Dense_1"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])
    returns = np.asarray(state.stats.recent_returns)
    assert not np.array_equal(returns[0], returns[1]), "seeds produced identical episodes"
    rollout.env.close()


@pytest.mark.parametrize("num_seeds", [1, 2])
def test_the_chunk_traces_the_agents_learn_once(num_seeds):
    """The chunk's trace asks for the shapes of `learn`'s metrics (its running sums start at zero) and calls `learn`
    in its loop: both find one trace of it (jit's cache), where each had traced it, a quarter of a second of the
    chunk's cold compile for `cartpole`."""
    cfg = make_config(**SMALL, num_seeds=num_seeds)
    rollout = build_rollout(cfg)
    traces = []

    def counted(*args):
        traces.append(1)
        return rollout.fns.learn(*args)

    counting = make_rollout(cfg, rollout.fns._replace(learn=counted), rollout.env)
    state = jax.eval_shape(counting.init, jax.random.PRNGKey(0))
    jax.jit(counting.run_chunk).lower(state, jnp.int32(5), jnp.int32(0))
    assert len(traces) == 1
    rollout.env.close()


@pytest.mark.parametrize("num_seeds", [1, 2])
def test_one_loop_with_a_branch_computes_what_two_loops_compute(num_seeds):
    """On CPU a chunk's periods that only act (before learning_starts) and those that learn are one loop with `learn`
    behind a branch, so that the acting iteration is compiled once; elsewhere they are two loops. A chunk that acts
    and then learns from its 101st period on ends in the same state with the same output either way, bit for bit."""
    cfg = make_config(**SMALL, num_seeds=num_seeds)  # 4 environments, 4 steps a period: 100 periods only act
    results, whiles = [], []
    for one_loop in (True, False):
        rollout = build_rollout(cfg, one_loop=one_loop)
        state = jax.jit(rollout.init)(jax.random.PRNGKey(0))
        args = (state, jnp.int32(150), jnp.int32(cfg.loop.learning_starts))
        whiles.append(jax.jit(rollout.run_chunk).lower(*args).as_text().count("stablehlo.while"))
        state, output = jax.jit(rollout.run_chunk)(*args)
        results.append(jax.device_get((state.agents, state.stats, state.obs, output)))
        rollout.env.close()
    assert whiles[0] < whiles[1]
    assert int(results[0][3].learn_calls) == int(results[1][3].learn_calls) == 50
    assert int(np.asarray(results[0][0].updates).max()) == 50
    jax.tree.map(np.testing.assert_array_equal, results[0], results[1])


@pytest.mark.parametrize("preset", ["cartpole", "rainbow-cartpole"])
def test_a_runs_start_compiled_for_compile_speed_computes_the_same_bits(preset):
    """A run's start (`init`: the parameters' initialisers, the target, Adam's state, the replay) and a gymnax pool's
    reset compile on CPU with `once_compiler_options` (LLVM's level 1 and XLA's elementwise emitters, for a faster
    compile) and compute exactly what XLA's defaults (level 3, the MLIR fusion emitters) compute: the same initial
    parameters and environments, bit for bit, so that no run changes with it. (The suite's own default is level 0,
    `tests.conftest.UNOPTIMIZED_XLA`, whose starts differ in the last bits of some parameters.)"""
    assert once_compiler_options() is not None
    rollout = build_rollout(make_config(preset, env_id="gymnax/CartPole-v1", num_seeds=2))
    defaults = {"xla_backend_optimization_level": 3, "xla_cpu_use_fusion_emitters": True}
    pool = make_env("gymnax/CartPole-v1", env_seeds(3, 2, 10))
    for program, args in ((rollout.init, (jax.random.PRNGKey(7),)), (pool._reset_pool, (pool._seeds, np.uint32(1)))):
        lowered = jax.jit(program).lower(*args)
        fast, default = (jax.tree.leaves(lowered.compile(options)(*args)) for options in (once_compiler_options(),
                                                                                          defaults))
        assert len(fast) == len(default)
        for a, b in zip(fast, default):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("num_envs, num_seeds", [(1, 1), (10, 2)])
def test_the_chunk_updates_the_agents_state_in_place(num_envs, num_seeds):
    """The training loop's chunk, compiled as `jaxdqn train` compiles it (its state donated, XLA's options of
    `chunk_compiler_options`), copies none of the agents' large arrays (replay, parameters, target, Adam's moments):
    each step writes the replay and each update the network's state where they are. With one agent the chunk carries
    its state without the agent axis (`chunk_agents`), with two the axis stays."""
    cfg = make_config("cartpole", env_id="gymnax/CartPole-v1", num_envs=num_envs, num_seeds=num_seeds)
    rollout = build_rollout(cfg)
    state = jax.eval_shape(rollout.init, jax.random.PRNGKey(0))
    large = {tuple(leaf.shape) for leaf in jax.tree.leaves(state.agents) if leaf.size >= 1000}
    assert {(1, 120, 84), (1, 1, 10000, 4)} <= large if num_seeds == 1 else {(2, 120, 84), (2, 10, 1000, 4)} <= large
    if num_seeds == 1:
        large |= {shape[1:] for shape in large}
    with threefry.unrolled():
        program = jax.jit(rollout.run_chunk, donate_argnums=0).lower(state, jnp.int32(5), jnp.int32(0)).compile(
            chunk_compiler_options()).as_text()
    copied = {tuple(int(d) for d in dims.split(",")) for dims in re.findall(r"= \w+\[([\d,]+)\]\S* copy\(", program)}
    assert copied, "no copy at all: the pattern no longer matches XLA's text"
    assert not copied & large


def test_a_chunk_reports_its_agents_and_whether_their_parameters_are_finite():
    """A chunk hands back, as of its last step, each agent's report (`AgentFns.report`: epsilon at that env step)
    and whether its parameters are finite, so the host compiles no program of its own for them; an agent whose
    parameters hold a NaN is named by its place, and the others still count as finite."""
    cfg = make_config(**dict(SMALL, env_id="gymnax/CartPole-v1", learning_starts=99_000, num_seeds=3))
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(0))
    chunk = jax.jit(rollout.run_chunk)
    state, output = chunk(state, jnp.int32(100), jnp.int32(cfg.loop.learning_starts))
    env_steps = 100 * rollout.plan.steps_per_period
    expected = jax.vmap(rollout.fns.report, in_axes=(0, None))(state.agents, env_steps)
    assert sorted(output.report) == ["epsilon"] and output.report["epsilon"].shape == (3,)
    np.testing.assert_array_equal(output.report["epsilon"], expected["epsilon"])
    assert 0.05 < float(output.report["epsilon"][0]) < 1.0
    assert np.asarray(output.params_finite).tolist() == [True, True, True] and bool(output.replicas_agree)
    broken = jax.tree.map(lambda x: x.at[1].set(jnp.nan) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                          state.agents.params)
    state = state._replace(agents=state.agents._replace(params=broken))
    _, output = chunk(state, jnp.int32(1), jnp.int32(cfg.loop.learning_starts))
    assert np.asarray(output.params_finite).tolist() == [True, False, True]


def test_a_chunk_handed_the_state_before_the_last_is_read_logs_what_a_run_without_look_ahead_logs(tmp_path):
    """The driver hands each chunk the state before it reads the chunk before (its records overlap the device's
    work), except where a checkpoint is due after a chunk: a run saving after every chunk never looks ahead, one
    saving only at the end always does, and both log the same records and end with the same parameters."""
    import json

    from jaxdqn.run.checkpoint import load_latest
    from jaxdqn.run.driver import run_training

    runs = {}
    for name, interval in (("every-chunk", 2_000), ("at-the-end", 0)):
        cfg = make_config(**dict(SMALL, total_steps=20_000, log_interval=2_000, checkpoint_interval=interval))
        summary = run_training(cfg, tmp_path / name, log=lambda line: None)
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        records = [{k: v for k, v in r.items() if k not in ("wall_seconds", "sps")} for r in records]
        runs[name] = summary, records, load_latest(tmp_path / name, cfg)

    def kept(name):  # the newest three are kept
        return sorted(int(p.name.removeprefix("step_")) for p in (tmp_path / name / "checkpoints").iterdir())

    assert kept("every-chunk") == [16_000, 18_000, 20_000] and kept("at-the-end") == [20_000]
    (summary, records, last), (ahead_summary, ahead_records, ahead_last) = runs["every-chunk"], runs["at-the-end"]
    assert len(records) == 10 and records[-1]["episodes"][0] > 50 and records[-1]["loss"][0] is not None
    assert ahead_records == records
    assert ahead_summary["eval_return_mean"] == summary["eval_return_mean"]
    assert sorted(ahead_last.leaves) == sorted(last.leaves) and ahead_last.env_steps == last.env_steps == 20_000
    for name, leaf in last.leaves.items():
        np.testing.assert_array_equal(ahead_last.leaves[name], leaf, err_msg=name)

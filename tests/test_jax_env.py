"""The JAX environment backend: gymnax by id and a user's own JAX environment (defined here), stepped on the
device inside the compiled loop, trained through the real `jaxdqn` command and `run_training`."""

import concurrent.futures
import json
import os
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdqn import compile_cache, evaluate
from jaxdqn.compile_cache import CACHE_ENV_VAR, cache_dir, compile_program, program_key, program_path
from jaxdqn.config.build import make_config
from jaxdqn.config.schema import ConfigError
from jaxdqn.envs import JaxBackend, JaxEnv, backend_name, env_seeds, env_spec, make_env
from jaxdqn.run.driver import build_rollout, run_training
from tests.conftest import jaxdqn

LENGTH, TIME_LIMIT = 5, 12


class Corridor:
    """A user's JAX environment: walk right (action 1) from cell 0 or 1 to cell LENGTH for reward 1
    (terminated); TIME_LIMIT steps without reaching it end the episode by truncation. The observation is
    the cell one-hot, then the time step / TIME_LIMIT."""

    num_actions = 2
    max_episode_steps = TIME_LIMIT

    def reset(self, key):
        cell = jax.random.randint(key, (), 0, 2)
        return self._obs(cell, 0), (cell, jnp.int32(0))

    def step(self, key, state, action):
        cell, time = state
        cell = jnp.clip(cell + 2 * action - 1, 0, LENGTH)
        time = time + 1
        terminated = cell == LENGTH
        truncated = (time >= TIME_LIMIT) & ~terminated
        return self._obs(cell, time), (cell, time), terminated.astype(jnp.float32), terminated, truncated

    @staticmethod
    def _obs(cell, time):
        return jnp.concatenate([jax.nn.one_hot(cell, LENGTH + 1), jnp.reshape(time / TIME_LIMIT, (1,))])


class NoStep:
    """Not an environment: it has no step."""

    num_actions = 2

    def reset(self, key):
        return jnp.zeros(2), ()


CORRIDOR = f"{__name__}:Corridor"
SMALL = dict(env_id=CORRIDOR, num_envs=4, total_steps=6_000, learning_starts=500, buffer_size=2_000, batch_size=32,
             train_frequency=4, target_update_period=100, log_interval=1_000, epsilon_decay_steps=2_000,
             hidden_sizes=(32,), learning_rate=2e-3, gamma=0.9, solved_return=None, stop_when_solved=False,
             eval_episodes=4)


def test_a_user_jax_environment_is_a_backend_with_its_spec():
    assert isinstance(Corridor(), JaxEnv) and backend_name(CORRIDOR) == "jax"
    spec = env_spec(CORRIDOR)
    assert spec.obs_shape == (LENGTH + 2,) and spec.obs_dtype == np.float32 and spec.num_actions == 2
    assert spec.max_episode_steps == TIME_LIMIT and spec.reward_threshold is None
    pool = make_env(CORRIDOR, env_seeds(0, 1, 3))
    assert isinstance(pool, JaxBackend) and not pool.host_step and pool.num_envs == 3


def test_a_user_jax_environment_trains_through_run_training_and_the_same_seed_gives_the_same_run(tmp_path):
    summaries = [run_training(make_config(**SMALL), tmp_path / name, log=lambda _: None) for name in ("a", "b")]
    assert summaries[0]["eval_return_mean"] == [1.0]  # the greedy policy walks to the goal in every episode
    assert summaries[0]["updates"] > 1_000
    assert (tmp_path / "a" / "episodes.csv").read_text() == (tmp_path / "b" / "episodes.csv").read_text()
    untimed = [[{k: v for k, v in json.loads(line).items() if k not in ("wall_seconds", "sps")}
                for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()] for name in ("a", "b")]
    assert untimed[0] == untimed[1] and len(untimed[0]) == 6
    assert json.loads((tmp_path / "a" / "config.json").read_text())["env"]["env_id"] == CORRIDOR


def test_truncation_and_termination_reach_the_replay_as_for_envpool():
    """Stored steps: termination is stored (no bootstrap), truncation is not (bootstrap), the next slot holds the
    episode's last observation (not the reset one), and the auto-reset step is not real."""
    cfg = make_config(**dict(SMALL, learning_starts=5_999))  # acting only: 300 iterations are 1,200 steps
    rollout = build_rollout(cfg)
    state = jax.jit(rollout.init)(jax.random.PRNGKey(0))
    iterations = 300
    state, _ = jax.jit(rollout.run_chunk)(state, jnp.int32(iterations), jnp.int32(cfg.loop.learning_starts))
    storage = jax.tree.map(lambda x: np.asarray(x[0]), state.agents.replay.storage)  # (N, slots, ...)
    obs, next_obs = storage.obs[:, :iterations - 1], storage.obs[:, 1:iterations]
    real, terminated = storage.real[:, :iterations - 1], storage.terminated[:, :iterations - 1]
    cell, next_cell = obs[..., :LENGTH + 1].argmax(-1), next_obs[..., :LENGTH + 1].argmax(-1)
    time, next_time = np.rint(obs[..., -1] * TIME_LIMIT), np.rint(next_obs[..., -1] * TIME_LIMIT)
    np.testing.assert_array_equal(next_time[real], time[real] + 1)  # a real step's next slot is its next state
    np.testing.assert_array_equal(np.abs(next_cell - cell)[real] <= 1, True)
    np.testing.assert_array_equal(terminated[real], next_cell[real] == LENGTH)
    truncations = real & (next_time == TIME_LIMIT) & (next_cell != LENGTH)
    assert truncations.sum() > 10 and terminated[real].sum() > 10  # both kinds of ending were stored
    assert not terminated[truncations].any()
    after_end = (time == TIME_LIMIT) | (cell == LENGTH)  # the auto-reset step: not a transition
    np.testing.assert_array_equal(real, ~after_end)
    assert (next_time[~real] == 0).all()


def test_a_jax_environments_evaluation_plays_many_steps_per_call_as_it_would_one_at_a_time(monkeypatch):
    """A JAX environment's evaluation runs `EVAL_STEPS_PER_CALL` steps as one compiled loop: the same episodes
    as one step per call, and `stop` is asked between calls."""
    cfg = make_config(**dict(SMALL, eval_epsilon=0.5))  # episodes of 5 to 12 steps
    rollout = build_rollout(cfg)
    policy = rollout.fns.policy(rollout.start(jax.random.PRNGKey(0)).agents)
    results = {}
    for steps_per_call in (5, 1):
        monkeypatch.setattr(evaluate, "EVAL_STEPS_PER_CALL", steps_per_call)
        results[steps_per_call] = evaluate.evaluate_policy(cfg, policy, 6, seed=1)
    assert results[5].complete and results[1].complete
    np.testing.assert_array_equal(results[5].returns, results[1].returns)
    np.testing.assert_array_equal(results[5].lengths, results[1].lengths)
    assert len(set(results[5].lengths.ravel().tolist())) > 1 and results[5].lengths.max() > 5
    monkeypatch.setattr(evaluate, "EVAL_STEPS_PER_CALL", 5)
    asked = []
    stopped = evaluate.evaluate_policy(cfg, policy, 6, seed=1, stop=lambda: asked.append(1) or len(asked) > 1)
    assert not stopped.complete and len(asked) == 2 and stopped.lengths.max() == 5


@pytest.mark.long
def test_gymnax_cartpole_preset_trains_to_475_from_the_command_line(tmp_path):
    """PureJaxRL's work (10 environments) on gymnax's CartPole; 9 of 10 seeds reach 475 in
    benchmarks/results/learning-gymnax-*.json, seed 0 among them."""
    result = jaxdqn("train", "--preset", "cartpole", "--env-id", "gymnax/CartPole-v1", "--num-envs", 10,
                    "--out", tmp_path / "run", optimized=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["settings"]["network"]["hidden_sizes"] == [120, 84] and config["loop"]["solved_return"] == 475.0
    assert min(summary["eval_return_mean"]) >= 475, summary


@pytest.mark.long
def test_dqn_learns_minatar_breakout_with_the_minatar_cnn_and_evaluate_plays_it(tmp_path):
    """gymnax's Breakout-MinAtar brings Young & Tian's network; 30k steps take the greedy return from a random
    policy's 0.4 to several bricks, in training's own evaluation and in `jaxdqn evaluate` (whose CNN used to fail on
    checkpointed NumPy parameters)."""
    run = tmp_path / "breakout"
    result = jaxdqn("train", "--env-id", "gymnax/Breakout-MinAtar", "--total-steps", 30_000, "--learning-starts",
                    5_000, "--log-interval", 10_000, "--eval-episodes", 20, "--out", run, optimized=True)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["network"]["torso"] == "minatar_cnn"
    assert json.loads((run / "summary.json").read_text())["eval_return_mean"][0] >= 2.0
    greedy, random = (jaxdqn("evaluate", run, "--episodes", 50, "--epsilon", epsilon) for epsilon in (0, 1))
    assert greedy.returncode == 0 and random.returncode == 0, greedy.stderr[-2000:] + random.stderr[-2000:]
    mean = lambda output: float(output.stdout.split("all seeds: return ")[1].split()[0])  # noqa: E731
    assert mean(random) < 1.0 and mean(greedy) >= 2.0, (greedy.stdout, random.stdout)


@pytest.mark.parametrize("env_id, expected", [
    ("gymnax/CartPol-v1", "env_id: 'gymnax/CartPol-v1' is not a gymnax environment; closest: gymnax/CartPole-v1"),
    ("gymnax/Pendulum-v1", "env_id: 'gymnax/Pendulum-v1' has a continuous (Box) action space; jaxdqn needs a "
                           "discrete one"),
    (f"{__name__}:NoStep", f"env_id: '{__name__}:NoStep' is not a JAX environment: it has no 'step'"),
    (f"{__name__}:Nothing", f"env_id: '{__name__}:Nothing' cannot be imported"),
])
def test_bad_jax_environments_get_one_line_before_compiling(env_id, expected, tmp_path):
    """From Python; and the first case from the command line too, which prints the same line (every case takes
    the same path from there)."""
    with pytest.raises(ConfigError) as raised:
        run_training(make_config(env_id=env_id), tmp_path / "python")
    assert str(raised.value).startswith(expected), raised.value
    assert not (tmp_path / "python").exists()
    if env_id == "gymnax/CartPol-v1":
        result = jaxdqn("train", "--env-id", env_id, "--out", tmp_path / "cli")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [f"jaxdqn: error: {raised.value}"], result.stderr
        assert not (tmp_path / "cli").exists()


def test_a_second_run_loads_its_compiled_programs_from_the_cache(tmp_path):
    """Checked by the cache's files: the first run writes its compiled loop there; the second finds it under the
    same key and loads it (JAX logs the hit), so no other entry for the loop is written. Which small programs
    get an entry depends on how long each took to compile, so only the loop is checked."""
    cache = tmp_path / "cache"
    args = ("train", "--env-id", CORRIDOR, "--total-steps", 2_000, "--learning-starts", 500, "--num-envs", 4,
            "--buffer-size", 1_000, "--batch-size", 32, "--train-frequency", 4, "--log-interval", 1_000,
            "--eval-episodes", 2)

    def loop_entries():
        return {path.name: path.stat().st_mtime_ns for path in cache.glob("jit_run_chunk-*")}

    first = jaxdqn(*args, "--out", tmp_path / "a", env={"JAXDQN_COMPILE_CACHE": str(cache)})
    assert first.returncode == 0, first.stderr[-2000:]
    written = loop_entries()
    assert len(written) == 1, sorted(path.name for path in cache.iterdir())
    second = jaxdqn(*args, "--out", tmp_path / "b", env={"JAXDQN_COMPILE_CACHE": str(cache), "JAX_LOG_COMPILES": "1"})
    assert second.returncode == 0, second.stderr[-2000:]
    assert loop_entries() == written
    assert "Persistent compilation cache hit for 'jit_run_chunk'" in second.stderr  # JAX's own log line


@pytest.mark.parametrize("layout", [(), ("--num-seeds", 4, "--cpu-devices", 2)], ids=["one-device", "two-devices"])
def test_a_gymnax_runs_programs_are_exported_once_and_another_seed_does_not_trace_them(tmp_path, layout):
    """A gymnax run stores its programs in the program cache (`compile_program`): its pool's reset, its loop's
    start and chunk, and its evaluation's reset and play, each with the one asked for next; a run of the same
    config with another seed loads them without tracing them (JAX logs each trace) and writes nothing new, and
    learns and evaluates exactly what that seed does with the cache off. So does a run of 4 seeds sharded over
    2 CPU devices (its loop's programs span both)."""
    cache = tmp_path / "cache"
    args = ("train", "--preset", "cartpole", "--env-id", "gymnax/CartPole-v1", "--num-envs", 5, "--total-steps",
            2_000, "--learning-starts", 500, "--log-interval", 1_000, "--eval-episodes", 2, *layout)

    def run(name, seed, cache_setting):
        result = jaxdqn(*args, "--seed", seed, "--out", tmp_path / name,
                        env={"JAXDQN_COMPILE_CACHE": cache_setting, "JAX_LOG_COMPILES": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stderr

    def programs():
        return {path.name: path.stat().st_mtime_ns for path in (cache / "programs").iterdir()}

    def chain():  # each program's successor, from the first program asked for
        successors = {path.stem: path.read_text().removesuffix(".jaxexport") for path in
                      (cache / "programs").glob("*.next")}
        (first,) = set(successors) - set(successors.values())
        order = [first]
        while order[-1] in successors:
            order.append(successors[order[-1]])
        return order

    def untimed(name):
        return [{k: v for k, v in json.loads(line).items() if k not in ("wall_seconds", "sps")}
                for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    def evaluation(name):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        return summary["eval_return_mean"], summary["eval_return_std"]

    assert "Finished tracing flat_fn" in run("seed0", 0, str(cache))  # each program, traced to export
    stored = programs()
    assert sorted(chain()) == sorted(name.removesuffix(".jaxexport") for name in stored if name.endswith(".jaxexport"))
    assert len(stored) == 5 + 4 and all(name.endswith((".jaxexport", ".next")) for name in stored)
    assert "Finished tracing flat_fn" not in run("seed1", 1, str(cache))
    assert programs() == stored
    run("seed1-off", 1, "off")
    assert untimed("seed1") == untimed("seed1-off") and len(untimed("seed1")) == 2
    assert evaluation("seed1") == evaluation("seed1-off")
    assert untimed("seed0") != untimed("seed1")  # the seed reached the loaded programs


class Pair(NamedTuple):
    """A pytree node type of the test's own: the stored program hands back its outputs in the caller's types."""

    first: jax.Array
    second: jax.Array


def test_compile_program_uses_its_stored_copy_and_treats_a_broken_one_as_missing(monkeypatch, tmp_path):
    """The stored copy is what runs: a second call under the same key never traces the function it is given; a
    copy that cannot be read is traced again and replaced. Keys tell settings and argument shapes apart. A
    program that jax.export refuses compiles as it would without the cache."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))

    def step(state, scale):
        return Pair(state.first * scale + 1, state.second + 1), {"total": state.first.sum()}

    def not_traced(state, scale):
        raise AssertionError("traced although its program is stored")

    def args():
        return Pair(jnp.arange(3.0), jnp.int32(2)), jnp.float32(2.0)

    expected = jax.jit(step)(*args())
    key = program_key("step", {"setting": 1}, args())
    for fn in (step, not_traced):
        new_state, out = compile_program(fn, args(), key, donate_argnums=(0,))(*args())
        assert isinstance(new_state, Pair)
        jax.tree.map(np.testing.assert_array_equal, (new_state, out), expected)
    stored = program_path(key)
    assert [path.name for path in stored.parent.iterdir()] == [stored.name]
    stored.write_bytes(b"not a program")
    jax.tree.map(np.testing.assert_array_equal, compile_program(step, args(), key)(*args()), expected)
    compile_program(not_traced, args(), key)  # the broken copy was replaced by a good one
    assert program_key("step", {"setting": 2}, args()) != key
    assert program_key("step", {"setting": 1}, (Pair(jnp.arange(4.0), jnp.int32(2)), jnp.float32(2.0))) != key

    def host_side(state, scale):  # a host callback: jax.export refuses it, so it compiles without a stored copy
        return jax.pure_callback(lambda x: np.asarray(x) * 2, jax.ShapeDtypeStruct((3,), jnp.float32), state.first)

    refused = program_key("host_side", {}, args())
    np.testing.assert_array_equal(compile_program(host_side, args(), refused)(*args()), [0.0, 2.0, 4.0])
    assert not program_path(refused).exists()


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_prepared_start_says_its_outputs_as_they_come_and_keys_the_chunk_as_they_do(monkeypatch, tmp_path, cache):
    """A fresh run on one device traces its chunk for the outputs its start will have (`PreparedProgram.out_info`)
    while the start compiles on a thread: those are the outputs' shapes, dtypes, weak types and placements, so the
    chunk's program key is the one a resumed run (whose chunk is traced for arrays) computes, with the program
    cache on and off."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path) if cache == "on" else "off")
    for preset in ("cartpole", "pqn-cartpole"):
        rollout = build_rollout(make_config(preset, env_id="gymnax/CartPole-v1", num_envs=4, num_seeds=2))
        key_of = lambda name, args: program_key(name, {"preset": preset}, args)  # noqa: E731
        prepared, args = rollout.prepare_start(jax.random.PRNGKey(3), key_of)
        said = prepared.out_info
        state = prepared.compile()(*args)
        assert jax.tree.structure(said) == jax.tree.structure(state)
        for info, array in zip(jax.tree.leaves(said), jax.tree.leaves(state)):
            assert (info.shape, info.dtype, info.weak_type) == (array.shape, array.dtype, jax.typeof(array).weak_type)
        assert key_of("chunk", (said, jnp.int32(1))) == key_of("chunk", (state, jnp.int32(1)))


def test_a_stored_program_keeps_its_compiler_options_for_the_load_ahead(monkeypatch, tmp_path):
    """`compile_program` stores a program's XLA options with it (as the training loop's chunk has them); loaded
    ahead by a later process, it is compiled with them, and taken only by a caller asking for the same options."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    options = {"xla_cpu_copy_insertion_use_region_analysis": True}
    args = (jnp.arange(3.0),)
    key = program_key("double", {}, args)
    np.testing.assert_array_equal(compile_program(lambda x: x * 2, args, key, compiler_options=options)(*args),
                                  [0.0, 2.0, 4.0])
    path = program_path(key)
    ahead = compile_cache._load_one_ahead(path)
    assert ahead.compiler_options == options
    np.testing.assert_array_equal(ahead.compiled(*args)[0], [0.0, 2.0, 4.0])
    other = {"xla_cpu_copy_insertion_use_region_analysis": False}
    for asked, taken in [(options, True), (None, False), (other, False)]:
        loaded = concurrent.futures.Future()
        loaded.set_result(ahead)
        compile_cache._ahead[path] = loaded
        assert (compile_cache._taken_ahead(path, jax.tree.leaves(args), (), asked) is ahead) == taken


LOAD_AHEAD = """
import json, sys
import jax.numpy as jnp
from jaxdqn import compile_cache
from jaxdqn.compile_cache import compile_program, program_key

traced = []

def double(x):
    traced.append("double")
    return x * 2

def total(x, y):
    traced.append("total")
    return {"sum": x + y}

first_args, second_args = (jnp.arange(3.0),), (jnp.arange(3.0), jnp.float32(1.0))
first = compile_program(double, first_args, program_key("double", {}, first_args))(*first_args)
ahead = sorted(path.name for path in compile_cache._ahead)
second = compile_program(total, second_args, program_key("total", {}, second_args), donate_argnums=(0,))(*second_args)
print(json.dumps({"traced": traced, "ahead": ahead, "left": len(compile_cache._ahead), "first": first.tolist(),
                  "second": second["sum"].tolist()}))
"""


def test_the_program_that_came_next_is_loaded_ahead_and_a_broken_one_is_traced_again(tmp_path):
    """A process that asks for a stored program starts loading the one that followed it last time (recorded beside
    it) on another thread, and runs that one when asked for it, untraced; a copy that cannot be read is traced
    again when asked for. Each run in a fresh process, as a user's runs are."""
    def process():
        result = subprocess.run([sys.executable, "-c", LOAD_AHEAD], capture_output=True, text=True, timeout=300,
                                env={**os.environ, CACHE_ENV_VAR: str(tmp_path)})
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    expected = {"first": [0.0, 2.0, 4.0], "second": [1.0, 2.0, 3.0], "left": 0}
    assert process() == {**expected, "traced": ["double", "total"], "ahead": []}
    programs = tmp_path / "programs"
    stored = sorted(path.name for path in programs.glob("*.jaxexport"))
    (successor,) = programs.glob("*.next")
    second_name = successor.read_text()
    assert len(stored) == 2 and second_name in stored and successor.with_suffix(".jaxexport").name in stored
    assert process() == {**expected, "traced": [], "ahead": [second_name]}
    (programs / second_name).write_bytes(b"not a program")
    assert process() == {**expected, "traced": ["total"], "ahead": [second_name]}
    assert process() == {**expected, "traced": [], "ahead": [second_name]}  # the broken copy was replaced


ASKED_AGAIN = """
import json
import jax.numpy as jnp
from jaxdqn import compile_cache
from jaxdqn.compile_cache import compile_program, program_key

traced = []

def make(name, factor):
    def fn(x):
        traced.append(name)
        return x * factor
    return fn

args = (jnp.arange(3.0),)
keys = {name: program_key(name, {}, args) for name in ("double", "triple", "halve")}
double = compile_program(make("double", 2), args, keys["double"])
ahead = sorted(path.name for path in compile_cache._ahead)
triple = compile_program(make("triple", 3), args, keys["triple"])
again = compile_program(make("double", 2), args, keys["double"])
halve = compile_program(make("halve", 0.5), args, keys["halve"])
names = {compile_cache.program_path(key).name: name for name, key in keys.items()}
successors = {name: names.get(compile_cache.program_path(key).with_suffix(".next").read_text())
              for name, key in keys.items() if compile_cache.program_path(key).with_suffix(".next").exists()}
print(json.dumps({"traced": traced, "ahead": sorted(names[name] for name in ahead), "successors": successors,
                  "values": [f(*args).tolist() for f in (double, triple, again, halve)]}))
"""


def test_a_program_asked_for_again_is_not_loaded_again_nor_breaks_the_chain_loaded_ahead(tmp_path):
    """A program a process asks for a second time (a gymnax evaluation pool's reset is the training pool's when
    both have as many environments) is the one it loaded first, untraced and not the next link of the chain: the
    chain is each program's first successor, so a later process loads every program after the first ahead."""
    def process():
        result = subprocess.run([sys.executable, "-c", ASKED_AGAIN], capture_output=True, text=True, timeout=300,
                                env={**os.environ, CACHE_ENV_VAR: str(tmp_path)})
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    values = [[0.0, 2.0, 4.0], [0.0, 3.0, 6.0], [0.0, 2.0, 4.0], [0.0, 0.5, 1.0]]
    chain = {"double": "triple", "triple": "halve"}
    assert process() == {"traced": ["double", "triple", "halve"], "ahead": [], "successors": chain, "values": values}
    assert process() == {"traced": [], "ahead": ["halve", "triple"], "successors": chain, "values": values}


def test_the_cache_lives_in_the_users_cache_folder_unless_moved_or_off(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAXDQN_COMPILE_CACHE")
    assert cache_dir() == tmp_path / "jaxdqn" / "xla"
    monkeypatch.setenv("JAXDQN_COMPILE_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.setenv("JAXDQN_COMPILE_CACHE", "off")
    assert cache_dir() is None


IMPORTS_OF_A_GYMNAX_RUN = """
import json, sys
from jaxdqn.config.validate import checked_env_spec
cartpole = checked_env_spec("gymnax/CartPole-v1")
alone = {"gymnax": type(sys.modules["gymnax"]).__name__, "bsuite": "gymnax.environments.bsuite" in sys.modules,
         "plotting": [name in sys.modules for name in ("seaborn", "matplotlib")]}
minatar = checked_env_spec("gymnax/Breakout-MinAtar")
before = {name: type(sys.modules.get(name)).__name__ for name in ("seaborn", "matplotlib.pyplot")}
loaded = {name: name in sys.modules for name in ("scipy.stats", "envpool")}
import seaborn
palette = seaborn.color_palette("cubehelix", 3)
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
figure = plt.figure()
import gymnax
same_class = type(gymnax.make("CartPole-v1")[0]) is gymnax.environments.classic_control.cartpole.CartPole
print(json.dumps({"alone": alone, "before": before, "loaded": loaded, "palette": len(palette),
                  "num_actions": [cartpole.num_actions, minatar.num_actions], "same_class": same_class,
                  "after": type(sys.modules["seaborn"]).__name__}))
"""


def test_a_gymnax_run_defers_gymnaxs_plotting_imports_and_skips_envpool():
    """Validating gymnax's CartPole imports its module alone, not gymnax's package (all of its environments); a
    MinAtar id imports the package with seaborn and pyplot as stand-ins (its render functions' imports, about 2 s)
    and without EnvPool; reading from them later imports the real modules, and gymnax's own CartPole is the class
    jaxdqn made."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", IMPORTS_OF_A_GYMNAX_RUN], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"alone": {"gymnax": "DeferredModule", "bsuite": False, "plotting": [False, False]},
                      "before": {"seaborn": "DeferredModule", "matplotlib.pyplot": "DeferredModule"},
                      "loaded": {"scipy.stats": False, "envpool": False}, "palette": 3, "num_actions": [2, 3],
                      "same_class": True, "after": "module"}

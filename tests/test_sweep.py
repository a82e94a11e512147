"""`jaxdqn sweep`: configurations x seeds as one compiled program per shape, as a user runs it."""

import csv
import json
import re
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from jaxdqn.agents import resolve_agent
from jaxdqn.agents.base import Step
from jaxdqn.cli import main
from jaxdqn.config import schema
from jaxdqn.config.build import make_config
from jaxdqn.config.validate import available_memory, state_bytes
from jaxdqn.core.optim import SWITCHED_OFF_BY_ZERO
from jaxdqn.envs import env_spec
from jaxdqn.sweep import plan_sweep, structure_key
from tests.conftest import JAXDQN, jaxdqn

@pytest.fixture(scope="module", autouse=True)
def jax_started():
    """JAX's backend started before `main(["sweep", ...])` runs in this test process, so that the sweep leaves the
    process's one CPU device as it is (a `jaxdqn sweep` process of its own splits the CPU, run.distributed.split_cpu)
    and the tests that run after these in the same worker see the devices they expect."""
    jax.devices()


SMALL = ["--preset", "cartpole", "--total-steps", "2000", "--learning-starts", "500", "--buffer-size", "1000",
         "--log-interval", "500", "--checkpoint-interval", "500", "--eval-episodes", "1"]


def final_arrays(run):
    checkpoint = sorted((run / "checkpoints").glob("step_*"))[-1]
    names = [leaf["path"] for leaf in json.loads((checkpoint / "meta.json").read_text())["leaves"]]
    with np.load(checkpoint / "arrays.npz") as data:
        return {name: data[f"leaf_{i:05d}"] for i, name in enumerate(names)}


@pytest.mark.long
def test_a_killed_sweep_resumes_and_each_configuration_is_the_agent_train_gives(tmp_path):
    out = tmp_path / "sweep"
    # 2 learning rates x 2 batch sizes x 2 seeds: the batch size changes the program, so 2 groups of 2 configurations
    process = subprocess.Popen([JAXDQN, "sweep", *SMALL, "--learning-rate", "1e-3,3e-4", "--batch-size", "32,64",
                                "--num-seeds", "2", "--cpu-devices", "2", "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    while not (out / "group-1" / "checkpoints" / "step_000000001000").exists() and process.poll() is None:
        time.sleep(0.01)
    process.kill()
    stdout = process.communicate(timeout=60)[0]
    assert process.returncode == -signal.SIGKILL, stdout[-2000:]
    assert "4 configurations x 2 seed(s) = 8 agents in 2 compiled group(s)" in stdout
    assert "batch_size change(s) the program: 2 groups" in stdout
    assert "4 agents sharded over 2 devices (2 on each)" in stdout  # --cpu-devices 2: the CPU split in two
    assert not (out / "sweep.csv").exists()
    group0_summary = (out / "group-0" / "summary.json").read_text()

    resumed = jaxdqn("sweep", "--resume", out, "--exact")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "group 1 of 2 (batch_size=32): 2 configuration(s) x 2 seed(s) = 4 agents: already trained" in resumed.stdout
    assert "group 2 of 2 (batch_size=64): 2 configuration(s) x 2 seed(s) = 4 agents" in resumed.stdout
    assert re.search(r"-> \S+group-1 \(resuming from step \d+\)", resumed.stdout), resumed.stdout
    assert (out / "group-0" / "summary.json").read_text() == group0_summary

    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["config"], r["learning_rate"], r["batch_size"], r["group"], r["seeds"]) for r in rows] == [
        ("0", "0.001", "32", "0", "2"), ("1", "0.001", "64", "1", "2"), ("2", "0.0003", "32", "0", "2"),
        ("3", "0.0003", "64", "1", "2")]
    for row in rows:
        low, mean, high = (float(row[f"eval_return_{s}"]) for s in ("ci_low", "mean", "ci_high"))
        assert 0 < low <= mean <= high and np.isfinite(float(row["train_return_iqm"]))
    table = (out / "sweep.md").read_text()
    assert table.count("\n| ") == 5 and "| rank | config | learning_rate | batch_size |" in table
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = sorted(p.name for p in out.glob("group-*/tensorboard/*") if list(p.glob("events.out.tfevents.*")))
    assert runs == ["c00_learning_rate=0.001,batch_size=32", "c01_learning_rate=0.001,batch_size=64",
                    "c02_learning_rate=0.0003,batch_size=32", "c03_learning_rate=0.0003,batch_size=64"]

    # configuration 3 (the second of group 1) trained alone by `jaxdqn train` with its flags: the same two agents
    train_args = json.loads((out / "sweep.json").read_text())["configurations"][3]["train_args"]
    assert train_args[-4:] == ["--learning-rate", "3e-4", "--batch-size", "64"]
    alone = jaxdqn("train", *train_args, "--out", tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr[-2000:]
    ours, reference = final_arrays(out / "group-1"), final_arrays(tmp_path / "alone")
    for name in (".agents.params", ".agents.target_params", ".agents.opt_state"):
        leaves = [n for n in reference if n.startswith(name)]
        assert leaves and all(np.array_equal(ours[n][2:4], reference[n]) for n in leaves), name
    sweep_summary = json.loads((out / "group-1" / "summary.json").read_text())
    assert sweep_summary["eval_return_mean"][2:4] == json.loads((tmp_path / "alone" / "summary.json").read_text())[
        "eval_return_mean"]
    # `jaxdqn evaluate` of a group plays each agent on its own seed's evaluation episodes, as the sweep's end did
    evaluated = jaxdqn("evaluate", out / "group-1")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert [float(line.split()[3]) for line in evaluated.stdout.splitlines() if line.startswith("seed ")] == [
        pytest.approx(r, abs=0.005) for r in sweep_summary["eval_return_mean"]]
    assert not np.array_equal(ours[".agents.params['params']['Dense_0']['kernel']"][0],
                              ours[".agents.params['params']['Dense_0']['kernel']"][2]), "the two rates trained alike"


def _memory_case():
    """A buffer size at which one agent takes about a third of the memory available now, so 4 agents do not fit."""
    free = available_memory()[0]
    per_transition = state_bytes(make_config("cartpole", buffer_size=10**6), env_spec("CartPole-v1")) / 10**6
    return str(int(free / 3 / per_transition))


@pytest.mark.parametrize("args, message", [
    (["--learning-rate", "1e-3,-1e-3,2e-3"],
     "--learning-rate: value 2 of 3 (-1e-3) is refused: learning_rate: must be a finite number > 0 (got -0.001)"),
    (["--gamma", "0.9,1.5"], "--gamma: value 2 of 2 (1.5) is refused: gamma: must be in (0, 1] (got 1.5)"),
    (["--learning-rate", "1e-4:1e-3"], "--learning-rate: a range (1e-4:1e-3) needs --random N; for a grid list the "
                                       "values: V1,V2,..."),
    (["--random", "4", "--learning-rate", "0:1e-3:log"], "--learning-rate: a log range needs LOW > 0 (got '0:1e-3:log')"),
    (["--random", "4", "--learning-rate", "1e-3:1e-4"], "--learning-rate: a range needs finite LOW < HIGH"),
    (["--random", "4", "--gamma", "0.5:2"], "--gamma: the range's HIGH (2.0) is refused: gamma: must be in (0, 1]"),
    (["--seed", "0,1"], "--seed: cannot be swept: --num-seeds S trains seeds 0..S-1 of every configuration"),
    (["--learnin-rate", "1e-3,1e-4"], "learnin_rate: not a field of a config with DQNSettings; closest: learning_rate"),
    (["--hidden-sizes", "64,64/0"], "--hidden-sizes: value 2 of 2 (0) is refused: hidden_sizes: must be one or more "
                                    "widths > 0 (got (0,))"),
    (["--buffer-size", "256,1024", "--batch-size", "128,512"],
     "configuration 1 (--buffer-size 256 --batch-size 512): batch_size: must be <= buffer_size (256) (got 512)"),
    (["--num-envs", "4", "--learning-rate", "1e-3,3e-4"],
     "train_frequency: must divide num_envs (4) or be a multiple of it (got 10)"),
    (["--gamma", "0.9"], "sweep: no field to sweep; give one a list (--learning-rate 1e-4,3e-4,1e-3)"),
    (["--random", "0", "--gamma", "0.9,0.99"], "--random: must be an integer > 0 (got 0)"),
    (["--cpu-devices", "0", "--gamma", "0.9,0.99"], "--cpu-devices: must be an integer >= 1 (got 0)"),
    (["--learning-rate", "1e-3,1e-4,3e-4,3e-3", "--buffer-size", None],
     "memory: group 1 of 1: 4 configuration(s) x 1 seed(s) = 4 agents need about"),
])
def test_bad_lists_and_ranges_get_one_line_before_anything_compiles(tmp_path, capsys, args, message):
    args = [_memory_case() if a is None else a for a in args]
    out = tmp_path / "sweep"
    assert main(["sweep", "--preset", "cartpole", *args, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"jaxdqn: error: {message}") and error.count("\n") == 1, error
    if message.startswith("memory"):
        assert re.search(r"available, enough for [23] agents; sweep fewer values or seeds, or lower buffer_size", error)
    assert not out.exists()


def test_random_configurations_are_drawn_reproducibly_from_the_sweep_seed():
    args = ["--learning-rate", "1e-4:1e-3:log", "--target-update-period", "10:100", "--double-q", "True,False",
            "--total-steps", "20000"]
    first, again, other = (plan_sweep(args, "cartpole", None, 6, seed, "") for seed in (3, 3, 4))
    assert [c.train_args for c in first.configurations] == [c.train_args for c in again.configurations]
    assert [c.values for c in first.configurations] != [c.values for c in other.configurations]
    values = [c.values for c in first.configurations]
    assert all(1e-4 <= v["learning_rate"] <= 1e-3 and 10 <= v["target_update_period"] <= 100 for v in values)
    assert all(isinstance(v["target_update_period"], int) and isinstance(v["double_q"], bool) for v in values)
    assert all(c.config.loop.total_steps == 20000 for c in first.configurations)
    # double_q changes the program: one group per value drawn
    assert sorted(len(g) for g in first.groups) == sorted(
        [sum(v["double_q"] for v in values), sum(not v["double_q"] for v in values)])


# A run-time field's new value for the check below; an agent that declares a new run-time field needs one here.
CHANGED = {
    "learning_rate": 1.2e-3, "adam_eps": 1e-5, "max_grad_norm": 3.0, "clip_grad_value": 2.0, "gamma": 0.9,
    "target_update_period": 7, "target_tau": 0.5, "huber_delta": 2.0, "priority_alpha": 0.4, "priority_beta0": 0.6,
    "priority_eps": 1e-4, "epsilon_start": 0.9, "epsilon_end": 0.1, "epsilon_decay_steps": 1234,
    "exploration_fraction": 0.3, "q_lambda": 0.3, "tabular_alpha": 0.3, "tabular_alpha_end": 0.01,
}


@pytest.mark.parametrize("preset, extra", [("cartpole", {"prioritized": True, "max_grad_norm": 10.0}),
                                           ("pqn-cartpole", {}), ("frozenlake", {})])
def test_run_time_fields_change_the_hyperparameters_and_not_the_program(preset, extra):
    base = make_config(preset, **extra)
    agent = resolve_agent(base.agent)
    flat = schema.flat_dict(base)
    changes = {name: CHANGED[name] for name in agent.run_time_fields
               if name not in SWITCHED_OFF_BY_ZERO or flat[name] > 0}
    changed = schema.replace(base, **changes)
    assert structure_key(changed) == structure_key(base)
    spec = env_spec(base.env.env_id)
    programs, hypers = [], []
    for cfg in (base, changed):
        fns = agent.build(cfg, spec)
        state = jax.eval_shape(fns.init, jax.ShapeDtypeStruct((2,), np.uint32), fns.hyperparameters)
        n = cfg.env.num_envs
        obs = jax.ShapeDtypeStruct((n, *spec.obs_shape), spec.obs_dtype)
        key, steps = jax.ShapeDtypeStruct((2,), np.uint32), jax.ShapeDtypeStruct((), np.int32)
        step = (obs, jax.ShapeDtypeStruct((n,), np.int32), jax.ShapeDtypeStruct((n,), np.float32),
                *(jax.ShapeDtypeStruct((n,), bool),) * 2, obs, jax.ShapeDtypeStruct((n,), bool))
        programs.append([jax.jit(fns.act).lower(state, obs, key, steps).as_text(),
                         jax.jit(fns.observe).lower(state, Step(*step), steps,
                                                    jax.ShapeDtypeStruct((), bool)).as_text(),
                         jax.jit(fns.learn).lower(state, key, steps).as_text()])
        hypers.append(jax.tree.leaves(fns.hyperparameters))
    assert programs[0] == programs[1]
    changed_leaves = sum(not np.array_equal(a, b) for a, b in zip(*hypers))
    assert changed_leaves >= len(changes) - 1  # exploration_fraction and epsilon_decay_steps share one number

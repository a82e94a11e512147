"""The `jaxdqn` command as a user types it (subprocesses), including a real CartPole learning run."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import JAXDQN, jaxdqn, jaxdqn_refused, subprocess_env


def test_presets_lists_one_short_line_each_and_shows_one_in_full():
    from jaxdqn.config.presets import PRESETS

    result = jaxdqn("presets")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines[:-1]) == sorted(PRESETS)
    assert all(len(line) <= 110 for line in lines)
    assert any(line.startswith("cartpole ") and "CartPole-v1" in line and "500k steps" in line for line in lines)
    result = jaxdqn("presets", "pong")
    assert result.returncode == 0
    assert "Nature CNN (512), 84x84 grey" in result.stdout and "env_id = Pong-v5" in result.stdout
    assert "learning_rate = 0.0001" in result.stdout and "torso = nature_cnn" in result.stdout
    for name, protocol in (("breakout", ["learning_rate = 0.0001", "repeat_action_probability = 0.0",
                                         "eval_epsilon = 0.05"]),
                           ("atlantis", ["repeat_action_probability = 0.25", "eval_epsilon = 0.05"])):
        shown = jaxdqn("presets", name).stdout
        assert all(line in shown for line in protocol), name
    result = jaxdqn("presets", "pongg")
    assert result.returncode == 2 and result.stderr.strip() == (
        "jaxdqn: error: preset: unknown preset 'pongg'; allowed: atlantis, breakout, c51-cartpole, cartpole, "
        "frozenlake, highway, lunarlander, lunarlander-per, pong, pqn-breakout, pqn-cartpole, "
        "qrdqn-cartpole, rainbow-cartpole, rainbow-pong")


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback():
    """`jaxdqn presets | head -1`: the reader is gone before jaxdqn writes (here it never reads); jaxdqn ends
    quietly."""
    process = subprocess.Popen([JAXDQN, "presets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == ""


def test_version():
    from importlib.metadata import version

    result = jaxdqn("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"jaxdqn {version('jaxdqn')}"


def test_train_help_lists_fields_with_docstrings():
    result = jaxdqn("train", "--help")
    assert result.returncode == 0
    assert "--learning-rate" in result.stdout and "Step size, > 0" in result.stdout
    assert "--preset" in result.stdout and "--out" in result.stdout and "--agent" in result.stdout
    assert "--tabular-alpha" not in result.stdout  # the dqn agent's section only
    for field in ("--env-id", "--seed", "--checkpoint-interval", "--epsilon-schedule", "--gamma", "--dueling",
                  "--buffer-size", "--max-grad-norm", "--track", "--wandb-project", "--wandb-entity", "--wandb-group"):
        assert field in result.stdout, field


def test_agent_brings_its_own_flags():
    result = jaxdqn("train", "--agent", "tabular", "--help")
    assert result.returncode == 0 and "--tabular-alpha" in result.stdout and "--buffer-size" not in result.stdout
    result = jaxdqn("train", "--agent", "tests.toy_agents:ReplayToy", "--help")
    assert result.returncode == 0 and "--toy-rate" in result.stdout and "Step size of the toy agent" in result.stdout


BAD_INPUT = [
    (["--learning-rate", "-1"], "learning_rate: must be a finite number > 0 (got -1.0)"),
    (["--env-id", "CartPol-v1"], "closest: CartPole-v1"),
    (["--preset", "nope"], "preset: unknown preset 'nope'; allowed: atlantis, breakout, c51-cartpole, cartpole"),
    # values that used to pass validation and crash later, leaving a run directory behind
    (["--total-steps", "5000000000", "--learning-starts", "3000000000"],
     "total_steps: must be at most 2147483647 (int32) (got 5000000000)"),
    (["--seed", "99999999999"], "seed: must be at most 2147483647 (int32)"),
    (["--seed", "-1"], "seed: must be an integer >= 0 (got -1)"),
    (["--cpu-devices", "0"], "--cpu-devices: must be an integer >= 1 (got 0)"),
    (["--cpu-threads", "0"], "--cpu-threads: must be an integer >= 1 and >= --cpu-devices (1)"),
    (["--cpu-threads", "1", "--cpu-devices", "2"], "--cpu-threads: must be an integer >= 1 and >= --cpu-devices (2): "
                                                   "each CPU device needs a thread of its own (got 1)"),
    (["--torso", "nature_cnn"], "torso: nature_cnn needs image observations shaped (frames, height, width) of at "
                                "least 36x36, but CartPole-v1 has shape (4,); allowed here: mlp"),
    # the same words as from Python (make_config(loss="Huber"))
    (["--loss", "Huber"], "loss: must be one of l2, huber (got 'Huber')"),
    (["--torso", "resnet"], "torso: must be one of mlp, nature_cnn, minatar_cnn (got 'resnet')"),
    (["--repeat-action-probability", "0.25"], "repeat_action_probability: sticky actions exist for Atari tasks "
                                              "only, and CartPole-v1 is not one; allowed here: 0 (got 0.25)"),
    (["--learning-rate", "abc"], "--learning-rate: could not convert string to float: 'abc'"),
    (["--total-steps", "1.5"], "--total-steps: not an integer: '1.5' (write 100000, 100_000 or 1e5)"),
    (["--lerning-rate", "0.1"], "Unrecognized options: --lerning-rate"),
    # the replay is sized from its shapes before anything is allocated: 8 x 52 GB fits no test machine
    (["--buffer-size", "2e9", "--num-seeds", "8"], "memory: the training state needs about 416.0 GB (8 seed(s) x "
                                                    "52.0 GB: parameters, optimiser state and replay) but "),
    (["--agent", "nope"], "agent: must be one of dqn, pqn, tabular or an import path module:attribute (got 'nope')"),
    (["--agent", "tabular"], "agent: tabular needs a Discrete observation space, but 'CartPole-v1' has Box(4,)"),
    (["--agent", "tests.toy_agents:ReplayToy", "--toy-rate", "-1"], "toy_rate: must be > 0 (got -1.0)"),
]


def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path):
    """Each refused in one line before anything is written: the first through the installed command, all of them
    through the command's `main` in one process."""
    outs = [tmp_path / f"run{i}" for i in range(len(BAD_INPUT))]
    outcomes = jaxdqn_refused([["train", *args, "--out", out] for (args, _), out in zip(BAD_INPUT, outs)])
    first = jaxdqn("train", *BAD_INPUT[0][0], "--out", outs[0])
    assert (first.returncode, first.stderr) == outcomes[0]
    for (args, message), (code, stderr) in zip(BAD_INPUT, outcomes):
        assert code == 2 and stderr.startswith("jaxdqn: error: ") and message in stderr, (args, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
    assert not [out for out in outs if out.exists()]


def test_the_largest_seed_trains_and_evaluates(tmp_path):
    """Environment seeds are hashed from the run seed, so every int32 seed works, evaluation included; integers
    may be written as 2e3 or 1_000, and a boolean flag alone means True (--no-FLAG False); --cpu-threads 1 runs
    the same way (its effect on XLA's thread pool: test_cpu_threads_size_xlas_pool)."""
    out = tmp_path / "run"
    result = jaxdqn("train", "--seed", "2147483647", "--total-steps", "2e3", "--learning-starts", "500",
                    "--log-interval", "1_000", "--eval-episodes", "2", "--dueling", "--no-checkpoint-replay",
                    "--cpu-threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json.loads((out / "summary.json").read_text())["eval_return_mean"]) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["loop"]["total_steps"] == 2000 and config["loop"]["log_interval"] == 1000
    assert config["settings"]["network"]["dueling"] is True and config["checkpoint"]["checkpoint_replay"] is False


def test_another_environment_brings_its_registered_solved_return(tmp_path):
    out = tmp_path / "acrobot"
    result = jaxdqn("train", "--env-id", "Acrobot-v1", "--total-steps", "1000", "--learning-starts", "500",
                    "--log-interval", "500", "--eval-episodes", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["loop"]["solved_return"] == -100.0  # Acrobot-v1's, not the cartpole preset's 475
    assert config["exploration"]["epsilon_decay_steps"] == 500  # the preset's half of the run


def test_out_under_a_file_or_an_unwritable_folder_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    result = jaxdqn("train", "--out", str(afile / "run"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"--out: {afile} is a file, so {afile / 'run'} cannot be created under it" in result.stderr
    assert afile.read_text() == "keep"
    result = jaxdqn("train", "--out", "/sys/jaxdqn-run/run")  # not writable, even by root
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--out: /sys is not writable" in result.stderr


def test_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{\"keep\": true}")
    result = jaxdqn("train", "--total-steps", "20000", "--out", str(out))
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert json.loads((out / "summary.json").read_text()) == {"keep": True}


@pytest.mark.long
def test_cartpole_preset_solves(tmp_path):
    """The README's training command: the 1-environment CleanRL-default preset reaches 475 greedy."""
    out = tmp_path / "cartpole"
    result = jaxdqn("train", "--preset", "cartpole", "--out", str(out), optimized=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sps" in result.stdout and "return(100)" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == 2 and config["env"]["env_id"] == "CartPole-v1" and config["env"]["num_envs"] == 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 50
    summary = json.loads((out / "summary.json").read_text())
    for key in ("env_steps", "updates", "wall_seconds", "compile_seconds", "sps", "eval_return_mean"):
        assert key in summary
    assert summary["env_steps"] == 500_000 and summary["updates"] == 49_000
    assert summary["eval_episodes"] >= 10
    assert summary["eval_return_mean"][0] >= 475


def test_ten_environments_keep_one_update_per_ten_steps(tmp_path):
    out = tmp_path / "ten"
    result = jaxdqn("train", "--num-envs", "10", "--total-steps", "30000", "--num-seeds", "2",
                    "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    # (30000 - 10000) / 10 updates once learning has started
    assert summary["env_steps"] == 30_000 and summary["updates"] == 2_000
    assert len(summary["eval_return_mean"]) == 2


def test_solved_message_and_stop_when_solved(tmp_path):
    # a random CartPole policy averages about 22, so a threshold of 15 is reached by the first log point
    out = tmp_path / "solved"
    result = jaxdqn("train", "--total-steps", "100000", "--solved-return", "15", "--stop-when-solved", "True",
                    "--log-interval", "5000", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "seed 0: solved at step" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 5000
    assert 100 * 8 <= summary["solved_step"][0] <= 5000  # needs 100 episodes of at least 8 steps


CPU_POOL_PROBE = """
import os, sys
from jaxdqn.run.distributed import limit_cpu_threads
allowed = os.sched_getaffinity(0)
applied = limit_cpu_threads(int(sys.argv[1]))
import jax, jax.numpy as jnp
jax.jit(lambda x: x @ x)(jnp.ones((256, 256))).block_until_ready()
pool = [int(task) for task in os.listdir("/proc/self/task")
        if open(f"/proc/self/task/{task}/comm").read().strip() == "tf_XLAEigen"]
print(applied, len(pool), all(os.sched_getaffinity(task) == allowed for task in pool),
      os.sched_getaffinity(0) == allowed, "PJRT_NPROC" in os.environ, limit_cpu_threads(1))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not os.path.isdir("/proc/self/task"),
                    reason="needs Linux and at least 2 cores")
def test_cpu_threads_size_xlas_pool():
    """--cpu-threads N: XLA's CPU pool gets N threads (its threads are named tf_XLAEigen), which may run on every
    core, as may the calling thread; the size is not left in the environment for processes started later; once
    the backend has started the limit is refused (False)."""
    cores = len(os.sched_getaffinity(0))
    for count, expected in [(1, "True 1 True True False False"), (cores, f"False {cores} True True False False")]:
        result = subprocess.run([sys.executable, "-c", CPU_POOL_PROBE, str(count)], capture_output=True, text=True,
                                env=subprocess_env())
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.split("\n")[-2] == expected, result.stdout

"""The agents sharded over several devices (simulated CPU devices, in subprocesses) and several processes
(`jaxdqn launch`, JAX's distributed runtime with gloo): the same agents as on one device, sharded checkpoints that
resume sharded, one set of outputs, and one-line refusals."""

import json
import os

import pytest

from jaxdqn.config.build import make_config
from jaxdqn.run.distributed import CpuLayout, automatic_cpu_layout
from tests.conftest import assert_same_arrays, jaxdqn, jaxdqn_refused, stopped_at_half

FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
TWO_DEVICES = "--xla_force_host_platform_device_count=2"
RUN = ["--preset", "cartpole", "--env-id", "gymnax/CartPole-v1", "--num-envs", "4", "--train-frequency", "4",
       "--num-seeds", "8", "--learning-starts", "500", "--buffer-size", "1000", "--batch-size", "32",
       "--log-interval", "500", "--checkpoint-interval", "500", "--schedule-steps", "4000", "--eval-episodes", "2"]
TOTAL = 2000  # steps of a run: 4 log points and checkpoints, the last 1,500 steps learning


def assert_same_run(run, reference):
    assert_same_arrays(run, reference)
    summaries = [json.loads((path / "summary.json").read_text()) for path in (run, reference)]
    assert summaries[0]["eval_return_mean"] == summaries[1]["eval_return_mean"]


@pytest.mark.long
def test_eight_seeds_over_devices_and_processes_are_the_eight_seeds_of_one_device(tmp_path):
    """2 processes of 2 simulated devices each (jaxdqn launch: the agents sharded over 4 devices, 2 on each) train
    the same 8 agents as one process on one device, bit for bit, and write one set of outputs whose checkpoints
    hold every process's agents; the launched run, taken back to its checkpoint at half the steps, resumes
    (launched, --exact) to the same arrays, and resuming it with one process is refused.
    (A sharded run within one process: test_envpool_pools_per_device_... and test_bench_devices_... below.)"""
    single, launched, half = (tmp_path / name for name in ("single", "launched", "half"))
    result = jaxdqn("train", *RUN, "--total-steps", TOTAL, "--cpu-devices", 1, "--out", single)
    assert result.returncode == 0, result.stderr[-2000:]
    two_processes = ["launch", "--processes", 2, "--", "train"]
    result = jaxdqn(*two_processes, *RUN, "--total-steps", TOTAL, "--replay-in-every-checkpoint", "True", "--out",
                    launched, env={"XLA_FLAGS": TWO_DEVICES})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("8 agents sharded over 4 devices (2 on each)") == 1 and result.stderr == ""
    assert result.stdout.count(f"done: {TOTAL} steps x 8 seed(s)") == 1
    assert json.loads((launched / "summary.json").read_text())["devices"] == 4
    assert len((launched / "metrics.jsonl").read_text().splitlines()) == 4
    assert_same_run(launched, single)

    stopped_at_half(launched, half, TOTAL, 500)
    refused = jaxdqn("train", "--resume", half, "--total-steps", TOTAL, "--exact")
    assert refused.returncode == 2 and refused.stderr == (
        f"jaxdqn: error: --resume: checkpoint {half}/checkpoints/step_000000001000 was saved by 2 process(es) and "
        "this run has 1; resume it with as many (jaxdqn launch --processes 2 -- train --resume ...)\n")
    result = jaxdqn(*two_processes, "--resume", half, "--total-steps", TOTAL, "--exact", env={"XLA_FLAGS": TWO_DEVICES})
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((half / "metrics.jsonl").read_text().splitlines()) == 4
    assert_same_run(half, launched)


DEVICE_REFUSALS = [
    (["--devices", "3"], "devices: must divide the 8 agents evenly; allowed here: 1, 2, 4 (got 3)"),
    (["--devices", "8"], "devices: this process has 4 local cpu device(s) (got 8)"),
    (["--preset", "frozenlake", "--env-id", "Taxi-v4", "--num-seeds", "8", "--devices", "2"],
     "devices: sharding the agents needs a JAX or EnvPool environment; Taxi-v4 steps one gymnasium pool for the "
     "whole process; allowed here: 1 (got 2)"),
]


def test_a_device_count_that_cannot_shard_the_agents_is_one_line(tmp_path):
    """Each refused in one line before anything is written (one process runs the command for each)."""
    outs = [tmp_path / f"run{i}" for i in range(len(DEVICE_REFUSALS))]
    runs = [["train", *(args if "frozenlake" in args else [*RUN, *args]), "--out", out]
            for (args, _), out in zip(DEVICE_REFUSALS, outs)]
    for (_, message), outcome in zip(DEVICE_REFUSALS, jaxdqn_refused(runs, env=FOUR_DEVICES)):
        assert outcome == (2, f"jaxdqn: error: {message}\n")
    assert not [out for out in outs if out.exists()]


@pytest.mark.long
def test_envpool_pools_per_device_train_the_agents_of_one_pool(tmp_path):
    """EnvPool with 4 agents sharded over 2 devices: one pool per device (its agents' environments, with the seeds
    they have in one pool) trains the agents of one pool bit for bit, with the environments stepped in the loop
    and overlapped with learning (--env-overlap), on 2 simulated devices of one process (--cpu-devices 2, or
    XLA_FLAGS) and on the devices of 2
    processes (jaxdqn launch), each building its own device's pool; stopped halfway, both resume --exact (the
    logged actions replayed through the pools of every device, or of the process's own) to the same arrays."""
    args = [*RUN, "--env-id", "CartPole-v1", "--num-seeds", "4", "--total-steps", TOTAL,
            "--replay-in-every-checkpoint", "True"]
    for overlap in ("False", "True"):
        single, sharded = tmp_path / f"single-{overlap}", tmp_path / f"sharded-{overlap}"
        result = jaxdqn("train", *args, "--env-overlap", overlap, "--cpu-devices", 1, "--out", single)
        assert result.returncode == 0, result.stderr[-2000:]
        two_devices = ["--cpu-devices", 2] if overlap == "False" else []  # the flag, or XLA's own
        result = jaxdqn("train", *args, "--env-overlap", overlap, *two_devices, "--out", sharded,
                        env=None if two_devices else {"XLA_FLAGS": TWO_DEVICES})
        assert result.returncode == 0, result.stderr[-2000:]
        assert "4 agents sharded over 2 devices (2 on each)" in result.stdout
        assert json.loads((sharded / "summary.json").read_text())["devices"] == 2
        assert_same_run(sharded, single)
    two_processes = ["launch", "--processes", 2, "--", "train"]
    launched = tmp_path / "launched"
    result = jaxdqn(*two_processes, *args, "--env-overlap", "True", "--out", launched)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("4 agents sharded over 2 devices (2 on each)") == 1 and result.stderr == ""
    assert_same_run(launched, single)
    for run, command, env in ((sharded, ["train"], {"XLA_FLAGS": TWO_DEVICES}), (launched, two_processes, None)):
        half = tmp_path / f"half-{run.name}"
        stopped_at_half(run, half, TOTAL, 500)
        result = jaxdqn(*command, "--resume", half, "--total-steps", TOTAL, "--exact", env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert_same_run(half, run)


LAYOUTS = [  # (preset, fields, cores, --cpu-threads given) -> the layout chosen
    ("cartpole", {"num_seeds": 4}, 2, None, CpuLayout(devices=2)),
    ("cartpole", {"num_seeds": 4}, 16, None, CpuLayout(devices=2)),  # at least 2 agents on each
    ("cartpole", {"num_seeds": 16}, 16, None, CpuLayout(devices=8)),
    ("cartpole", {"num_seeds": 2}, 2, None, CpuLayout()),
    ("cartpole", {"num_seeds": 6, "env_id": "gymnax/CartPole-v1"}, 4, None, CpuLayout(devices=3)),
    ("cartpole", {"num_seeds": 4}, 16, 2, CpuLayout(devices=2)),  # each device needs a thread
    ("cartpole", {"num_seeds": 3}, 2, None, CpuLayout()),  # 2 does not divide 3
    ("cartpole", {"num_seeds": 4, "devices": 1}, 2, None, CpuLayout()),
    ("cartpole", {"num_seeds": 4, "data_parallel": 2}, 2, None, CpuLayout()),
    ("frozenlake", {"num_seeds": 4, "env_id": "Taxi-v4"}, 2, None, CpuLayout()),  # one Gymnasium pool
    ("cartpole", {"env_overlap": True}, 2, None, CpuLayout(threads=1)),
    ("cartpole", {"env_overlap": True, "num_seeds": 3}, 2, None, CpuLayout(threads=1)),
    ("cartpole", {"env_overlap": True, "num_seeds": 2}, 2, None, CpuLayout(threads=1)),
    ("cartpole", {"env_overlap": True, "num_seeds": 4}, 2, None, CpuLayout(devices=2)),
    ("cartpole", {"env_overlap": True}, 2, 2, CpuLayout()),
    ("cartpole", {"env_overlap": True}, 1, None, CpuLayout()),
    ("breakout", {"env_overlap": True}, 2, None, CpuLayout()),  # the Nature CNN gains from every core
    ("cartpole", {"env_id": "gymnax/CartPole-v1"}, 2, None, CpuLayout(threads=1)),  # one agent of a JAX env
    ("cartpole", {"env_id": "gymnax/CartPole-v1", "num_seeds": 3}, 2, None, CpuLayout()),
    ("cartpole", {"env_id": "gymnax/CartPole-v1"}, 2, 2, CpuLayout()),
    ("cartpole", {"env_id": "gymnax/Breakout-MinAtar", "torso": "minatar_cnn"}, 2, None, CpuLayout()),  # a CNN
    ("cartpole", {}, 2, None, CpuLayout(threads=1)),  # one agent of one EnvPool environment
    ("cartpole", {"num_envs": 10}, 2, None, CpuLayout()),  # EnvPool without the overlap
    ("cartpole", {"num_seeds": 3, "num_envs": 1}, 2, None, CpuLayout()),
    ("highway", {}, 2, None, CpuLayout(threads=1)),  # an MLP 128 wide
    ("qrdqn-cartpole", {}, 2, None, CpuLayout()),  # 256-256: faster on every thread
    ("cartpole", {"env_id": "gymnax/CartPole-v1", "hidden_sizes": (256, 256)}, 2, None, CpuLayout()),
]


@pytest.mark.parametrize("preset, fields, cores, threads, layout", LAYOUTS)
def test_the_cpu_layout_a_run_gets_without_cpu_flags(preset, fields, cores, threads, layout, monkeypatch):
    """Several agents split the CPU into as many devices as divide them, at most one per core (and per thread
    given) and at least 2 agents on each; a small MLP's loop on one device stepping EnvPool overlapped with learning, or
    training one agent of a JAX environment or of one EnvPool environment, gets one XLA thread (unless PJRT_NPROC
    sizes XLA's pools)."""
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("PJRT_NPROC", raising=False)
    monkeypatch.delenv("NPROC", raising=False)
    if preset == "frozenlake":  # Taxi is tabular
        fields = {**fields, "agent": "tabular"}
    cfg = make_config(preset, **fields)
    assert automatic_cpu_layout(cfg, cores, threads) == layout
    monkeypatch.setenv("XLA_FLAGS", TWO_DEVICES)
    assert automatic_cpu_layout(cfg, cores, threads) == CpuLayout()  # XLA's flag chose the devices
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")  # JAX's backend may start on an accelerator: no thread limit
    assert automatic_cpu_layout(cfg, cores, threads) == layout._replace(threads=None)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PJRT_NPROC", "2")  # the user sized XLA's pools
    assert automatic_cpu_layout(cfg, cores, threads) == layout._replace(threads=None)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_four_seeds_split_the_cpu_into_two_devices_and_train_the_agents_of_one(tmp_path):
    """`jaxdqn train --num-seeds 4` on a JAX environment runs on two CPU devices, two seeds each, and says so in its
    first line; it trains the agents of `--cpu-devices 1` bit for bit, and resumes a run of `--cpu-devices 1` to
    its arrays (--exact). One seed overlapping EnvPool with an MLP's learning says XLA's pool has one thread."""
    args = [*RUN, "--num-seeds", 4, "--total-steps", TOTAL, "--replay-in-every-checkpoint", "True"]
    split, one, half = tmp_path / "split", tmp_path / "one", tmp_path / "half"
    result = jaxdqn("train", *args, "--out", split)
    assert result.returncode == 0, result.stderr[-2000:]
    header = result.stdout.splitlines()[0]
    assert header.endswith(f"-> {split}; the CPU split into 2 devices, a core each (--cpu-devices 1 for one)")
    assert "4 agents sharded over 2 devices (2 on each)" in result.stdout
    result = jaxdqn("train", *args, "--cpu-devices", 1, "--out", one)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].endswith(f"-> {one}") and "sharded over" not in result.stdout
    assert_same_run(split, one)
    stopped_at_half(one, half, TOTAL, 500)  # a one-device run resumes on the split CPU, exactly
    result = jaxdqn("train", "--resume", half, "--total-steps", TOTAL, "--exact")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].endswith("; the CPU split into 2 devices, a core each (--cpu-devices 1 for one)")
    assert_same_run(half, one)
    overlapped = tmp_path / "overlapped"
    result = jaxdqn("train", *RUN, "--env-id", "CartPole-v1", "--num-seeds", 1, "--total-steps", 1000,
                    "--env-overlap", "--out", overlapped, env={"JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].endswith(f"-> {overlapped}; XLA's CPU pool on 1 thread, for a small "
                                                  "network's loop (--cpu-threads to choose)")


def test_bench_devices_measures_each_device_count_and_labels_simulated_devices(tmp_path):
    """`jaxdqn bench --devices --tiny` with 2 simulated devices: a run on 1 device and a run sharded over 2 within
    one process (each trained to the end, evaluation included)."""
    result = jaxdqn("bench", "--devices", "--tiny", "--out", tmp_path, env={"XLA_FLAGS": TWO_DEVICES})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 simulated CPU device(s)" in result.stdout
    (path,) = tmp_path.glob("devices-tiny-*.json")
    record = json.loads(path.read_text())
    assert record["simulated"] is True and record["machine"]["device_count"] == 2
    assert [(row["devices"], row["agents"]) for row in record["rows"]] == [(1, 2), (2, 4)]
    assert record["rows"][0]["efficiency"] == 1.0
    for row in record["rows"]:
        assert row["agent_steps_per_second"] > 0 and f"--devices {row['devices']}" in row["command"]
        assert row["efficiency"] == row["agent_steps_per_second"] / (row["devices"] * record["rows"][0]["agent_steps_per_second"])
    assert record["rows"][1]["one_device_agent_steps_per_second"] > 0 and "one_device_agent_steps_per_second" not in record["rows"][0]


def test_bench_agents_per_device_doubles_the_agents_of_one_device(tmp_path):
    """`jaxdqn bench --agents-per-device --tiny`: 1 then 2 gymnax CartPole agents trained on one device, each a
    `jaxdqn train` process with a learning phase, up to the tiny size's largest count."""
    result = jaxdqn("bench", "--agents-per-device", "--tiny", "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = tmp_path.glob("agents-per-device-tiny-cartpole-gymnax-cartpole-v1-*.json")
    record = json.loads(path.read_text())
    assert [(row["agents"], row["trained"]) for row in record["rows"]] == [(1, True), (2, True)]
    assert record["largest_trained"] == 2 and record["stopped_because"] == "max_agents (2) reached"
    for row in record["rows"]:
        assert row["agent_steps_per_second"] > 0 and f"--num-seeds {row['agents']}" in row["command"]
        assert "--devices 1" in row["command"]
    assert record["agent_steps_per_second_at_largest"] == record["rows"][1]["agent_steps_per_second"]
    assert "largest count that trained on one device: 2 agents" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["launch", "--processes", "2", "--", "train", *RUN, "--num-seeds", "3"],
     "num_seeds: the 3 agents must divide evenly over the 2 devices that 2 processes have (every process trains "
     "its share) (got 3)"),
    (["train", *RUN, "--num-processes", "2", "--process-id", "1", "--coordinator-address", "127.0.0.1:9",
      "--coordinator-timeout", "2"],
     "coordinator-address: 127.0.0.1:9 did not answer within 2 s (Connection refused); is process 0 running there?"),
    (["launch", "--processes", "2", "--", "evaluate", "runs/x"], "launch: the command must be train (got evaluate)"),
])
def test_processes_that_cannot_train_are_one_line_not_a_hang(tmp_path, args, message):
    result = jaxdqn(*args, "--out", tmp_path / "run", timeout=120)
    assert result.returncode == 2 and result.stderr == f"jaxdqn: error: {message}\n"
    assert not (tmp_path / "run").exists()

"""`jaxdqn bench --devices`: end-to-end throughput of agents sharded over 1, 2, 4, ... local devices, and the
scaling efficiency U(n) / (n * U(1)); `jaxdqn bench --agents-per-device`: how many agents train at once on one
device, and their throughput.

Weak scaling: every device trains the same number of agents (seeds of the `cartpole` preset, by default on
gymnax's CartPole, which steps on the device; on an EnvPool id each device steps a pool of its own), so U(n),
the agent-steps per second of n devices, is n * U(1) where devices do not slow each other. Each count is one `jaxdqn train` process (`runs.run_case`); U is its
learning-phase rate. XLA:CPU's devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`) are simulated:
they share the host's cores, so their rows show that the sharded program runs and what sharding costs, not
how it scales; the result says so (`simulated`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxdqn.bench.machine import machine_facts, write_result
from jaxdqn.bench.runs import run_case


class BenchRefused(Exception):
    """A measurement `jaxdqn train` refused to run here (its one-line reason)."""


SIZES = {
    "full": {"agents_per_device": 8, "num_envs": 10, "total_steps": 40_000},
    "tiny": {"agents_per_device": 2, "num_envs": 2, "total_steps": 1_500},
}
DEVICES_ENV_ID = "gymnax/CartPole-v1"
PRESET_ARGS = ["--preset", "cartpole", "--eval-episodes", "1"]


def device_counts(available: int) -> list[int]:
    """1, 2, 4, ... up to `available`, and `available` itself."""
    counts = [1]
    while counts[-1] * 2 <= available:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == available else [*counts, available]


def bench_devices(size: str, out_dir: str | Path, command: str | None = None, log=print,
                  env_id: str = DEVICES_ENV_ID) -> Path:
    """Train the same number of agents of `env_id` per device on each `device_counts` count of this process's
    local devices, and the same agents on one device; write one JSON result (rows: devices, agents,
    agent-steps/s, efficiency, one device's agent-steps/s) and return its path."""
    import jax

    spec = SIZES[size]
    per_device, available = spec["agents_per_device"], jax.local_device_count()
    platform = jax.default_backend()
    record = {"schema_version": 1, "size": size, "sizes": spec,
              "command": command or " ".join(["jaxdqn", "bench", *sys.argv[2:]]), "machine": machine_facts(),
              "env_id": env_id, "simulated": platform == "cpu", "rows": []}
    if platform == "cpu":
        log(f"{available} simulated CPU device(s) sharing {record['machine']['cpu_cores']} cores: these rows show "
            "that the sharded program runs and what sharding costs, not how it scales")

    def rate(agents: int, devices: int) -> tuple[float, dict]:
        args = [*PRESET_ARGS, "--env-id", env_id, "--num-envs", str(spec["num_envs"]),
                "--total-steps", str(spec["total_steps"]), "--learning-starts", str(spec["total_steps"] // 4), "--num-seeds", str(agents), "--devices", str(devices)]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                result = run_case(args, Path(tmp))
            except subprocess.CalledProcessError as error:
                if error.returncode != 2:  # 2: refused before compiling, with one line; else a failure
                    raise
                reason = (error.stderr or "").strip().splitlines()[-1].removeprefix("jaxdqn: error: ")
                raise BenchRefused(f"bench --devices: {devices} device(s) x {agents} agents: {reason}") from None
        return result["learning_sps"] or result["sps"], result  # agent-steps/s over every agent

    base = None
    for devices in device_counts(available):
        agents = per_device * devices
        sharded, result = rate(agents, devices)
        base = sharded if devices == 1 else base
        row = {"devices": devices, "agents": agents, "agent_steps_per_second": sharded,
               "efficiency": sharded / (devices * base), "wall_seconds": result["wall_seconds"],
               "compile_seconds": result["compile_seconds"], "command": result["command"]}
        if devices > 1:  # the same agents vmapped on one device, for what sharding gains or costs
            row["one_device_agent_steps_per_second"] = rate(agents, 1)[0]
        record["rows"].append(row)
        log(f"{devices} device(s), {agents} agents: {sharded:.0f} agent-steps/s, efficiency "
            f"{row['efficiency']:.2f} (compile {row['compile_seconds']:.1f} s)"
            + (f"; on one device: {row['one_device_agent_steps_per_second']:.0f}" if devices > 1 else ""))
    other_env = "" if env_id == DEVICES_ENV_ID else "-" + env_id.replace("/", "-").lower()
    return write_result(record, out_dir, ("devices" if size == "full" else "devices-tiny") + other_env)


CAPACITY_SIZES = {
    "full": {"first_agents": 8, "max_agents": 65_536, "num_envs": 10, "total_steps": 4_000, "row_seconds": 120,
             "budget_seconds": 480, "narrowing_runs": 3},
    "tiny": {"first_agents": 1, "max_agents": 2, "num_envs": 2, "total_steps": 1_500, "row_seconds": 300,
             "budget_seconds": 600, "narrowing_runs": 3},
}
"""`num_envs` applies to the default preset (cartpole); another preset keeps its own. No count starts once
`budget_seconds` have passed, so that one bench fits a lent GPU's session."""


def _did_not_train(error: subprocess.CalledProcessError) -> str:
    """Why a `jaxdqn train` process ended without training: its refusal (exit 2) or its last error line."""
    lines = (error.stderr or "").strip().splitlines()
    last = lines[-1].removeprefix("jaxdqn: error: ") if lines else f"exit code {error.returncode}"
    return ("refused: " if error.returncode == 2 else f"failed (exit code {error.returncode}): ") + last


def bench_agents_per_device(size: str, out_dir: str | Path, command: str | None = None, log=print,
                            env_id: str = DEVICES_ENV_ID, preset: str = "cartpole") -> Path:
    """How many agents of `preset` on `env_id` train at once on one device, and at what rate: 8, 16, 32, ...
    agents (one `jaxdqn train` process each, `--devices 1`, a short run with a learning phase) until a count is
    refused (the memory estimate) or fails (out of memory), a run takes longer than the size's `row_seconds`,
    `max_agents` is reached or `budget_seconds` have passed; then runs halve the gap between the largest count
    that trained and the smallest that did not. Writes one JSON result (a row per count: agent-steps/s and per
    agent, or why it did not train; the largest count that trained) and returns its path."""
    spec = CAPACITY_SIZES[size]
    steps = spec["total_steps"]
    base = ["--preset", preset, "--env-id", env_id, "--total-steps", str(steps), "--learning-starts", str(steps // 4),
            "--eval-episodes", "1", "--checkpoint-interval", "0", "--devices", "1"]
    base += ["--num-envs", str(spec["num_envs"])] if preset == "cartpole" else []
    record = {"schema_version": 1, "size": size, "sizes": spec, "preset": preset, "env_id": env_id,
              "command": command or " ".join(["jaxdqn", "bench", *sys.argv[2:]]), "machine": machine_facts(),
              "rows": []}
    rows = record["rows"]

    def attempt(agents: int) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                result = run_case([*base, "--num-seeds", str(agents)], Path(tmp))
            except subprocess.CalledProcessError as error:
                row = {"agents": agents, "trained": False, "why": _did_not_train(error)}
                log(f"{agents} agents: {row['why']}")
                rows.append(row)
                return row
        rate = result["learning_sps"] or result["sps"]
        row = {"agents": agents, "trained": True, "agent_steps_per_second": rate,
               "agent_steps_per_second_per_agent": rate / agents, "wall_seconds": result["wall_seconds"],
               "compile_seconds": result["compile_seconds"], "command": result["command"]}
        log(f"{agents} agents: {rate:.0f} agent-steps/s ({rate / agents:.0f} per agent), {row['wall_seconds']:.1f} s "
            f"(compile {row['compile_seconds']:.1f} s)")
        rows.append(row)
        return row

    start = time.monotonic()

    def out_of_time() -> bool:
        return time.monotonic() - start > spec["budget_seconds"]

    agents, stopped = spec["first_agents"], None
    while stopped is None:
        row = attempt(agents)
        if not row["trained"]:
            stopped = f"{agents} agents did not train"
        elif row["wall_seconds"] > spec["row_seconds"]:
            stopped = f"{agents} agents took {row['wall_seconds']:.0f} s, over a row's {spec['row_seconds']} s"
        elif agents * 2 > spec["max_agents"]:
            stopped = f"max_agents ({spec['max_agents']}) reached"
        elif out_of_time():
            stopped = f"the bench's {spec['budget_seconds']} s were spent"
        agents *= 2
    trained = [row["agents"] for row in rows if row["trained"]]
    untrained = [row["agents"] for row in rows if not row["trained"]]
    for _ in range(spec["narrowing_runs"] if trained and untrained else 0):
        low, high = max(trained), min(untrained)
        if high - low <= 1 or out_of_time():
            break
        middle = (low + high) // 2
        (trained if attempt(middle)["trained"] else untrained).append(middle)
    largest = max(trained, default=0)
    record.update(stopped_because=stopped, largest_trained=largest,
                  smallest_not_trained=min(untrained, default=None),
                  agent_steps_per_second_at_largest=next((row["agent_steps_per_second"] for row in rows
                                                          if row["trained"] and row["agents"] == largest), None))
    log(f"largest count that trained on one device: {largest} agents ({stopped})")
    tag = f"{preset}-{env_id.replace('/', '-').lower()}"
    return write_result(record, out_dir, ("agents-per-device-" if size == "full" else "agents-per-device-tiny-") + tag)

"""`jaxdqn bench --devices`: end-to-end throughput of agents sharded over 1, 2, 4, ... local devices, and the
scaling efficiency U(n) / (n * U(1)).

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

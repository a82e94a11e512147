"""Several processes (hosts, or `jaxdqn launch` on one machine) training one run on JAX's distributed runtime.

Every process runs the same program over a mesh of all processes' devices (`rollout.make_rollout`: the agents
sharded, no traffic between devices inside a chunk) and the same host logic on the same gathered numbers
(`to_host`), so they agree on every decision; process 0 alone writes the run directory and prints. Between
chunks they gather the chunk's output, agree on stopping (`any_process`) and, at a checkpoint, gather the state.
"""

from __future__ import annotations

import os
import socket
import time
from typing import NamedTuple


class DistributedError(Exception):
    """A problem with the processes' setup, reported as one line."""


class Processes(NamedTuple):
    """Where this process stands among the run's processes: from flags, else JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID."""

    coordinator: str | None
    count: int
    index: int
    timeout: int  # seconds to wait for the coordinator and the other processes

    @property
    def many(self) -> bool:
        return self.count > 1


def processes_from(coordinator: str | None, count: int | None, index: int | None, timeout: int) -> Processes:
    """`Processes` from the flags given (None: the environment variable; a single process without either);
    DistributedError for an inconsistent set."""
    environ = os.environ
    coordinator = coordinator or environ.get("JAX_COORDINATOR_ADDRESS") or None
    try:
        count = int(environ.get("JAX_NUM_PROCESSES", 1)) if count is None else count
        index = int(environ.get("JAX_PROCESS_ID", 0)) if index is None else index
    except ValueError as error:
        raise DistributedError(f"JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers ({error})") from None
    if count < 1:
        raise DistributedError(f"num-processes: must be an integer >= 1 (got {count})")
    if not 0 <= index < count:
        raise DistributedError(f"process-id: must be in 0..{count - 1} for {count} process(es) (got {index})")
    if count > 1 and not coordinator:
        raise DistributedError("coordinator-address: needed with several processes (HOST:PORT of process 0; or "
                               "set JAX_COORDINATOR_ADDRESS)")
    if timeout < 1:
        raise DistributedError(f"coordinator-timeout: must be an integer >= 1 second (got {timeout})")
    return Processes(coordinator, count, index, timeout)


def _host_port(coordinator: str) -> tuple[str, int]:
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"coordinator-address: must be HOST:PORT (got {coordinator!r})")
    return host, int(port)


def _wait_for_coordinator(host: str, port: int, timeout: int) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedError(f"coordinator-address: {host}:{port} did not answer within {timeout} s "
                                       f"({error.strerror or error}); is process 0 running there?") from None
            time.sleep(0.2)


def initialize(processes: Processes) -> None:
    """Join the run's processes (`jax.distributed.initialize`; CPU collectives through gloo) before anything uses
    JAX's backend; nothing for a single process. An unreachable coordinator, or a port that process 0 cannot bind,
    is a DistributedError within `processes.timeout` (JAX itself would abort the process with a stack trace)."""
    if not processes.many:
        return
    import jax

    host, port = _host_port(processes.coordinator)
    if processes.index == 0:
        try:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as error:
            raise DistributedError(f"coordinator-address: process 0 cannot listen on {host}:{port} "
                                   f"({error.strerror or error})") from None
    else:
        _wait_for_coordinator(host, port, processes.timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(processes.coordinator, processes.count, processes.index,
                               initialization_timeout=processes.timeout)


FORCED_CPU_DEVICES = "xla_force_host_platform_device_count"


def split_cpu(count: int | None = None) -> int | None:
    """Make JAX's CPU backend `count` devices (None: one per core this process may run on), each running its share
    of a program's agents on a thread of its own. Left as it is, and None returned, when XLA_FLAGS already sets a
    count (--xla_force_host_platform_device_count) or JAX's backend has started in this process (jaxdqn called
    from Python after other JAX work); else the count."""
    import jax

    if FORCED_CPU_DEVICES in os.environ.get("XLA_FLAGS", ""):
        return None
    count = count or len(os.sched_getaffinity(0))
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX refuses the change once its backends exist
        return None
    return count


SMALL_MLP_WIDTH = 128
"""The widest hidden layer of an MLP that `automatic_cpu_layout` runs on one XLA thread: on the 2-core CPU the
`cartpole` family's 120-84 and `highway`'s 128 ran faster there, `qrdqn-cartpole`'s 256-256 slower (its run 17.1
s against 14.7 s on every thread)."""


class CpuLayout(NamedTuple):
    """How `jaxdqn train` starts JAX's CPU backend: `devices` CPU devices and an XLA pool of `threads` threads
    (None: JAX's default, one device and a thread per core)."""

    devices: int | None = None
    threads: int | None = None


def automatic_cpu_layout(cfg, cores: int, threads_given: int | None = None) -> CpuLayout:
    """The layout a single-process run of `cfg` gets when --cpu-devices is not given (and --cpu-threads not, for
    the thread count), on a machine with `cores` cores:

    - several agents of a JAX or EnvPool environment, sharded as --devices would shard them (not given, no
      data_parallel): the CPU split into as many devices as divide the agents, at most one per core (and at most
      `threads_given`) and at least 2 agents on each. One device keeps about one core busy with the agents' small
      updates; each device runs its share on a thread of its own. XLA compiles an agent axis of 1 differently
      (its float sums round differently), so with 2 to 15 agents on each device the agents are bit for bit
      those of one device (from 16 XLA:CPU vectorises over the agent axis, see the README).
    - a small MLP's loop (`SMALL_MLP_WIDTH`) on one device, stepping EnvPool overlapped with learning
      (env_overlap), or one agent of a JAX environment, or one agent of one EnvPool environment: XLA's pool of one
      thread. EnvPool's threads then step on the other cores while the update runs, instead of the two taking
      turns on every core; and a small network's loop of many small ops runs faster on one thread than handing
      them between threads (at 10 EnvPool environments without the overlap the two were even). Not where JAX may
      find a GPU or TPU (its backend would start with one thread).

    Nothing automatic when XLA_FLAGS sets the CPU's device count; no thread count when PJRT_NPROC or NPROC sets
    XLA's pool size.
    """
    from jaxdqn.envs import backend_name

    if FORCED_CPU_DEVICES in os.environ.get("XLA_FLAGS", ""):
        return CpuLayout()  # XLA_FLAGS chose the devices
    backend = backend_name(cfg.env.env_id)
    agents, loop = cfg.loop.num_seeds, cfg.loop
    devices = 1
    if loop.devices is None and loop.data_parallel == 1 and backend in ("jax", "envpool"):
        most = min(cores, agents // 2, threads_given or cores)
        devices = max((d for d in range(1, most + 1) if agents % d == 0), default=1)
    network = getattr(cfg.settings, "network", None)  # None: a tabular agent
    small_network = network is None or (
        network.torso == "mlp" and max(network.hidden_sizes, default=0) <= SMALL_MLP_WIDTH)
    envpool_one_thread = cfg.env.env_overlap or (agents == 1 and cfg.env.num_envs == 1)
    one_thread = (backend == "envpool" and envpool_one_thread) or (backend == "jax" and agents == 1)
    pool_size_set = any(os.environ.get(name) for name in POOL_SIZE_VARIABLES)
    threads = 1 if (threads_given is None and not pool_size_set and devices == 1 and cores > 1 and small_network
                    and one_thread and not _may_have_accelerator()) else None
    return CpuLayout(devices if devices > 1 else None, threads)


def _may_have_accelerator() -> bool:
    """Whether JAX may start a GPU or TPU backend here: JAX_PLATFORMS names one, or (JAX_PLATFORMS unset) a plugin
    or libtpu is installed."""
    import importlib.metadata
    import importlib.util

    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return set(platforms.split(",")) != {"cpu"}
    return bool(importlib.metadata.entry_points(group="jax_plugins")) or any(
        importlib.util.find_spec(name) is not None for name in ("jax_plugins", "libtpu"))


POOL_SIZE_VARIABLES = ("PJRT_NPROC", "NPROC")
"""Environment variables XLA's CPU client reads, once when it starts, for the size of its thread pools (the first
one set wins)."""


def limit_cpu_threads(count: int) -> bool:
    """Start JAX's backends with XLA's CPU thread pools sized for `count` threads: `PJRT_NPROC` is set while the
    client starts, and put back afterwards (so processes started later do not inherit it). The pools' threads may
    run on every core: XLA compiles on them too, and with one thread pinned to one core (how this worked until
    2026-11-29) the `cartpole` loop on gymnax compiled cold in 5.8-6.0 s instead of 3.6-3.7 s. False, and nothing
    changed, when JAX's backend had already started in this process or `count` is not below the cores allowed."""
    import jax
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", lambda: False)  # private: absent, assume not started
    if count >= len(os.sched_getaffinity(0)) or started():
        return False
    name = POOL_SIZE_VARIABLES[0]  # the one XLA reads first
    previous = os.environ.get(name)
    os.environ[name] = str(count)
    try:
        jax.devices()
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous
    return True


def is_main() -> bool:
    """True in process 0 (the one that writes and prints), and in a single-process run."""
    import jax

    return jax.process_index() == 0


def to_host(tree):
    """`tree` as numpy arrays holding every process's part (a collective: every process must call it); a
    single process gets `tree` back as it is."""
    import jax

    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def any_process(flag: bool) -> bool:
    """True when `flag` is True in any process (a collective)."""
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))

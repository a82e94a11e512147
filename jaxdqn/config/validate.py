"""The checks that need the environment, the agent or an optional package; the sections check their own values
when built."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

from jaxdqn.agents import resolve_agent
from jaxdqn.config.schema import Config, ConfigError, require
from jaxdqn.envs import EnvSpec, UnsupportedEnv, backend_name, env_spec, is_atari, known_env_ids


def validate(cfg: Config) -> Config:
    """Check `cfg` against its agent and its environment; raise one ConfigError naming the first problem.

    Runs before anything is compiled or any file is written, from Python (`run_training`) and from the CLI
    alike. Returns `cfg`.
    """
    agent = resolve_agent(cfg.agent)
    require(isinstance(cfg.settings, agent.settings_type), "settings", f"agent {cfg.agent} takes "
            f"{agent.settings_type.__name__}", type(cfg.settings).__name__)
    spec = checked_env_spec(cfg.env.env_id)
    agent.check(cfg, spec)
    require(cfg.env.repeat_action_probability == 0 or is_atari(cfg.env.env_id), "repeat_action_probability",
            f"sticky actions exist for Atari tasks only, and {cfg.env.env_id} is not one; allowed here: 0",
            cfg.env.repeat_action_probability)
    require(not cfg.env.env_overlap or (backend_name(cfg.env.env_id) == "envpool" and _has_envpool_op()),
            "env_overlap", f"needs EnvPool's XLA step (EnvPool environments on CPU or CUDA), which "
            f"{cfg.env.env_id} on {_platform()} does not have; allowed here: False", cfg.env.env_overlap)
    if cfg.tracking.track and importlib.util.find_spec("wandb") is None:
        raise ConfigError("track: needs the wandb package; pip install 'jaxdqn[wandb]'")
    check_memory(cfg, spec)
    agent_devices(cfg, cfg.loop.num_seeds)
    return cfg


def agent_devices(cfg: Config, num_agents: int) -> int:
    """How many devices `num_agents` agents of `cfg` are sharded over (`LoopConfig.devices`): this process's
    local devices, or with several processes (jaxdqn launch, jax.distributed) every process's. ConfigError (one
    line) for a count that cannot be used: more devices than there are, a count that does not divide the agents,
    fewer than all with several processes, or an environment backend that cannot be split over devices (Gymnasium,
    EnvPool without its XLA op). JAX environments are split over the devices; EnvPool gets one pool per device
    (`envs.DevicePools`, built by the process that owns the device). With `LoopConfig.data_parallel` D > 1,
    every agent is split over D devices instead (with several processes, all of theirs)."""
    import jax

    available, requested, processes = jax.device_count(), cfg.loop.devices, jax.process_count()
    backend = backend_name(cfg.env.env_id)
    shardable = backend == "jax" or (backend == "envpool" and _has_envpool_op())
    not_shardable = (f"{cfg.env.env_id} steps one {backend} pool for the whole process" if backend == "gymnasium" else
                     f"EnvPool has no XLA op on {_platform()}, so {cfg.env.env_id} steps through a host callback")
    shards = cfg.loop.data_parallel
    if shards > 1:  # every device holds a share of every agent
        require(processes == 1 or shards == available, "data_parallel", f"with {processes} processes every "
                f"device is used: allowed here: {available}", shards)
        require(shardable, "data_parallel", f"splitting an agent over devices needs a JAX or EnvPool environment; "
                f"{not_shardable}; allowed here: 1", shards)
        require(shards <= available, "data_parallel", f"this process has {available} local {_platform()} "
                "device(s)", shards)
        require(requested in (None, shards), "devices", f"with data_parallel {shards} the agents are split over "
                f"{shards} devices; allowed here: {shards}", requested)
        return shards
    divisors = [d for d in range(1, available + 1) if num_agents % d == 0]
    where = f"{processes} processes have" if processes > 1 else "this process has"
    if processes > 1:
        require(shardable, "env_id", f"several processes need a JAX or EnvPool environment; {not_shardable}",
                cfg.env.env_id)
        require(num_agents % available == 0, "num_seeds", f"the {num_agents} agents must divide evenly over the "
                f"{available} devices that {where} (every process trains its share)", num_agents)
        require(requested in (None, available), "devices", f"with {processes} processes every device is used: "
                f"allowed here: {available}", requested)
        return available
    if requested is None:
        return divisors[-1] if shardable else 1
    require(requested <= available, "devices", f"{where} {available} local {_platform()} device(s)", requested)
    require(requested == 1 or shardable, "devices", f"sharding the agents needs a JAX or EnvPool environment; "
            f"{not_shardable}; allowed here: 1", requested)
    require(num_agents % requested == 0, "devices", f"must divide the {num_agents} agents evenly; allowed here: "
            + ", ".join(map(str, divisors)), requested)
    return requested


def _platform() -> str:
    import jax

    return jax.default_backend()


def _has_envpool_op() -> bool:
    # EnvPool registers its XLA op for CPU and CUDA only; elsewhere (TPU) its pools step through a host callback
    return _platform() in ("cpu", "gpu")


def state_bytes(cfg: Config, spec: EnvSpec) -> int:
    """Bytes of one agent's training state (parameters, target, optimiser state, replay), from its shapes alone:
    the agent's `init` is traced abstractly, so nothing is allocated however large the replay."""
    import jax

    fns = resolve_agent(cfg.agent).build(cfg, spec)
    shapes = jax.eval_shape(fns.init, jax.ShapeDtypeStruct((2,), "uint32"), fns.hyperparameters)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))


def available_memory() -> tuple[int, str] | None:
    """(bytes, where) that a new training state can take: the free memory of the GPU when JAX runs on one,
    else the host's available memory within its cgroup's limit; None when this system does not say."""
    import jax

    if jax.default_backend() == "gpu":
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"GPU {jax.devices()[0].device_kind}"
    found = []
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        found.append(int(meminfo["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        pass
    try:  # a container's limit (cgroup v2) can be far below the machine's memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return (min(found), "this machine") if found else None


def _gigabytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_memory(cfg: Config, spec: EnvSpec) -> None:
    """Refuse a run whose training state (per seed, times the seeds) cannot fit in the memory available now."""
    available = available_memory()
    if available is None:
        return
    per_agent = state_bytes(cfg, spec)
    need = per_agent * cfg.loop.num_seeds
    free, where = available
    if need > free:
        raise ConfigError(f"memory: the training state needs about {_gigabytes(need)} ({cfg.loop.num_seeds} seed(s) "
                          f"x {_gigabytes(per_agent)}: parameters, optimiser state and replay) but {where} has "
                          f"{_gigabytes(free)} available; lower buffer_size or num_seeds")


def checked_env_spec(env_id: str) -> EnvSpec:
    """`env_id`'s spec; ConfigError unless a backend has it, it can be created and its actions are discrete."""
    # a JAX environment's env_spec names its own problem, and listing the other backends' ids would cost a gymnax
    # run EnvPool's import (1.5 s)
    if backend_name(env_id) != "jax" and env_id not in (known := known_env_ids()):
        close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.5)
        hint = (f"closest: {', '.join(close)}" if close
                else "run `python -c 'import envpool; print(envpool.list_all_envs())'` for the list")
        raise ConfigError(f"env_id: {env_id!r} is not an EnvPool, Gymnasium or gymnax (gymnax/NAME) environment, "
                          f"nor a JAX environment's import path (module:attribute); {hint}")
    try:
        spec = env_spec(env_id)
    except UnsupportedEnv as error:
        raise ConfigError(f"env_id: {env_id!r} {error}") from None
    except Exception as error:  # a Gymnasium id whose dependencies are missing, or a continuous action space
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"env_id: {env_id!r} cannot be created: {message}") from None
    return spec

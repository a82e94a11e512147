"""The environment backend protocol, and what every backend shares.

A backend is one pool of environments. The loop sees only `EnvSpec`, `reset` (on the host, before
jit), a pure `step(env_state, actions)` it calls inside its compiled scan, `render` and `close`.
`env_state` is any pytree: EnvPool's opaque XLA handle, a step counter for backends stepped by a host
callback, or, for a pure-JAX (gymnax style) backend, the environments' own arrays and keys, whose
`step` vmaps the environment over the pool inside it. So a new backend needs no change to the loop.

Every backend auto-resets like EnvPool: the step AFTER an episode ends (terminated or truncated)
ignores its action and returns the reset observation with reward 0, not done. It is not a real
transition; callers skip it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np


class EnvSpec(NamedTuple):
    """What the agent needs to know about an environment before building anything."""

    env_id: str
    obs_shape: tuple
    obs_dtype: np.dtype
    """The dtype of the observations the backend returns (JAX's: int64 spaces come as int32 without x64)."""
    num_actions: int
    num_states: int | None
    """Discrete observation spaces (FrozenLake, Taxi): the number of states; else None."""
    max_episode_steps: int
    """The registered episode step limit; 0 when unknown."""
    reward_threshold: float | None
    """The registered "solved" return; None if none."""


class StepResult(NamedTuple):
    """One step of the pool; every field has a leading (pool size,) axis."""

    obs: Any
    reward: Any
    terminated: Any
    truncated: Any
    game_reward: Any
    """The raw reward (Atari with reward clipping: the unclipped one); else `reward`."""
    game_over: Any
    """The whole game ended (Atari with episodic life: all lives lost, or truncated); else terminated | truncated."""


@runtime_checkable
class EnvBackend(Protocol):
    """One pool of environments. Backends are built as `Backend(env_id, seeds, num_threads=0,
    episodic_life=False, reward_clip=False, render=False, repeat_action_probability=0.0)` with one seed per
    environment (the Atari options mean nothing to other environments)."""

    spec: EnvSpec
    num_envs: int
    host_step: bool
    """True when `step` runs on the host (an io_callback): every step is a device-host round trip."""
    render_fps: float | None
    """Environment steps per second of real time, for videos (Atari: 60 / frame skip); None if unknown."""
    can_overlap: bool
    """True when the backend is also an `OverlapBackend` (EnvPool's XLA op)."""

    def reset(self) -> tuple[Any, Any]:
        """(env_state, obs) right after a full reset of the pool; call on the host, before jit. The first
        reset starts each environment's seeded stream; later ones continue it."""

    def step(self, env_state, actions) -> tuple[Any, StepResult]:
        """Step the pool with int32 `actions` (pool,); pure, usable inside jit and lax.scan."""

    def render(self) -> np.ndarray:
        """The RGB frame (H, W, 3) uint8 of environment 0; only for a pool made with render=True."""

    def close(self) -> None:
        """Release the pool."""


class OverlapBackend(EnvBackend, Protocol):
    """A backend whose step splits in two, with the pool stepping on its own threads in between, so that the
    loop can learn while the environments step (`can_overlap` True)."""

    def send(self, env_state, actions):
        """Start a step of the pool with int32 `actions` and return at once; the next `recv` returns its result
        (`step` is `recv(send(...))`). Usable inside jit."""

    def recv(self, env_state) -> tuple[Any, StepResult]:
        """Wait for the step the last `send` started. Usable inside jit."""


TRAIN_STREAM, EVAL_STREAM = 0, 1
"""`env_seeds` streams: training environments, and the evaluation environments (never seen in training)."""


def training_stream(pool_start_step: int) -> int:
    """The `env_seeds` stream of a training pool started at env step `pool_start_step`: TRAIN_STREAM for the
    run's first pool, a stream of its own (2 + the step) for a pool started afresh when a run resumes."""
    return TRAIN_STREAM if pool_start_step == 0 else 2 + pool_start_step


def env_seeds(run_seed: int, agents: int | Sequence[int], num_envs: int, stream: int = TRAIN_STREAM) -> np.ndarray:
    """int32 seeds (len(agents) * num_envs,) for a pool of `num_envs` environments per agent, agent-major.

    `agents` is the agents' indices in the run (an int n means range(n)). Each seed hashes (run_seed,
    stream, agent, environment), so runs s and s+1 share no environment stream (EnvPool's own
    `seed + i` would share all but one), and an agent's environments do not depend on how the pool is
    split. `stream` 0 is training, 1 evaluation.
    """
    agents = range(agents) if isinstance(agents, (int, np.integer)) else agents
    seeds = [np.random.SeedSequence([run_seed, stream, agent, env]).generate_state(1)[0] & 0x7FFFFFFF
             for agent in agents for env in range(num_envs)]
    return np.asarray(seeds, np.int32).reshape(-1)


def jax_dtype(dtype) -> np.dtype:
    """The dtype JAX holds an array of `dtype` as (int64 -> int32 unless x64 is enabled)."""
    import jax

    return np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def make_host_step(host_step: Callable[[np.ndarray], StepResult], spec: EnvSpec, num_envs: int):
    """A jit-usable `step(env_state, actions) -> (env_state, StepResult)` that runs
    `host_step(actions) -> StepResult` (NumPy arrays) on the host through an ordered io_callback.

    The env_state is an int32 step counter (`HOST_STEP_STATE` after a reset): the pool's real state
    lives on the host, and `ordered=True` keeps the calls in program order.
    """
    import jax
    import jax.numpy as jnp
    from jax.experimental import io_callback

    flags = jax.ShapeDtypeStruct((num_envs,), jnp.bool_)
    rewards = jax.ShapeDtypeStruct((num_envs,), jnp.float32)
    result_shapes = (jax.ShapeDtypeStruct((), jnp.int32),
                     StepResult(jax.ShapeDtypeStruct((num_envs, *spec.obs_shape), spec.obs_dtype),
                                rewards, flags, flags, rewards, flags))

    def on_host(count, actions):
        out = host_step(np.asarray(actions))
        return (np.asarray(count + 1, np.int32),
                StepResult(np.asarray(out.obs, spec.obs_dtype), np.asarray(out.reward, np.float32),
                           np.asarray(out.terminated, bool), np.asarray(out.truncated, bool),
                           np.asarray(out.game_reward, np.float32), np.asarray(out.game_over, bool)))

    def step(env_state, actions):
        return io_callback(on_host, result_shapes, env_state, actions, ordered=True)

    return step


HOST_STEP_STATE = np.zeros((), np.int32)
"""The env_state of a host-stepped pool right after a reset (see `make_host_step`)."""


class UnsupportedEnv(ValueError):
    """An environment jaxdqn cannot train on; the message completes "env_id: 'ID' ..."."""


def spec_from_spaces(env_id: str, obs_space, action_space, max_episode_steps, reward_threshold) -> EnvSpec:
    """An `EnvSpec` from Gymnasium spaces (EnvPool's are Gymnasium's too) and the registered limits;
    UnsupportedEnv for an action space that is not Discrete."""
    if not hasattr(action_space, "n"):
        raise UnsupportedEnv(f"has a {type(action_space).__name__} action space; jaxdqn needs a discrete "
                             "(Discrete) action space")
    discrete_obs = hasattr(obs_space, "n")  # gymnasium.spaces.Discrete
    return EnvSpec(env_id=env_id, obs_shape=tuple(obs_space.shape), obs_dtype=jax_dtype(obs_space.dtype),
                   num_actions=int(action_space.n), num_states=int(obs_space.n) if discrete_obs else None,
                   max_episode_steps=int(max_episode_steps or 0),
                   reward_threshold=None if reward_threshold is None else float(reward_threshold))


def registered_render_fps(env_id: str) -> float | None:
    """The `render_fps` in the metadata of Gymnasium's class for `env_id`, or None (unregistered, or a class
    that cannot be imported here)."""
    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    try:
        creator = load_env_creator(gymnasium.spec(env_id).entry_point)
    except Exception:  # an unknown id, a deprecated version, a missing dependency such as Box2D
        return None
    fps = getattr(creator, "metadata", {}).get("render_fps")
    return float(fps) if fps else None


def as_seed_list(seeds) -> list[int]:
    """`seeds` (one per environment: an array or a sequence) as a list of Python ints."""
    return [int(seed) for seed in np.asarray(seeds).reshape(-1)]


class DevicePools:
    """One pool per device of a sharded run, seen by the loop as one pool of all their environments (pool d holds
    the d-th contiguous block of the environments, the share of device d); for a backend that cannot be split
    over devices itself (EnvPool's op steps the pool whose address it was compiled with, on the host).

    `env_state` holds one state per pool along a leading axis, so that sharding it over the devices gives each
    device its own pool's. `step` (and with overlap `send`/`recv`) steps every pool when it is given all their
    states (on the host: resume's replay), and this device's pool alone when given one (inside the loop's
    device-sharded chunk, where each device picks its branch by its index on `axis_name`).

    With several processes each builds the pools of its own devices only: `pools` holds None for another
    process's. Their places in `reset`'s state and observations are zeros (a process places only its own devices'
    shares), and stepping all pools leaves them as they are (`stepped_here` marks the environments stepped here).
    """

    def __init__(self, pools: Sequence, axis_name: str):
        self.pools, self.axis_name = list(pools), axis_name
        self.local = [pool for pool in self.pools if pool is not None]
        first = self.local[0]
        self.spec, self.render_fps = first.spec, first.render_fps
        self.pool_envs = first.num_envs  # every pool holds an equal block
        self.num_envs = self.pool_envs * len(self.pools)
        self.host_step = any(pool.host_step for pool in self.local)
        self.can_overlap = all(pool.can_overlap for pool in self.local)
        self.stepped_here = np.repeat([pool is not None for pool in self.pools], self.pool_envs)
        """(num_envs,) bool: the environments of this process's pools."""

    def reset(self):
        """Every pool's (env_state, obs), stacked and joined in pool order; call on the host, before jit."""
        import jax

        resets = {index: pool.reset() for index, pool in enumerate(self.pools) if pool is not None}
        state, obs = next(iter(resets.values()))
        elsewhere = (jax.tree.map(np.zeros_like, state), np.zeros_like(obs))  # another process's pool
        states, observations = zip(*(resets.get(index, elsewhere) for index in range(len(self.pools))))
        return jax.tree.map(lambda *s: np.stack(s), *states), np.concatenate(observations)

    def _each(self, method: str, env_state, *actions):
        import jax
        import jax.numpy as jnp

        stand_in = getattr(self.local[0], method)  # traced for another process's device, never run here
        calls = [getattr(pool, method) if pool is not None else stand_in for pool in self.pools]
        one = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
        if jax.tree.leaves(env_state)[0].shape[0] == 1 < len(self.pools):  # this device's pool
            def branch(call):
                def stepped(state, *acts):
                    return jax.tree.map(lambda x: x[None], call(one(state, 0), *acts))
                return stepped

            index = jax.lax.axis_index(self.axis_name)
            return jax.lax.switch(index, [branch(call) for call in calls], env_state, *actions)
        shares = [jnp.split(a, len(self.pools)) for a in actions]
        results = [call(one(env_state, i), *(share[i] for share in shares)) if pool is not None
                   else self._unstepped(method, one(env_state, i))
                   for i, (call, pool) in enumerate(zip(calls, self.pools))]
        if method == "send":
            return jax.tree.map(lambda *s: jnp.stack(s), *results)
        return (jax.tree.map(lambda *s: jnp.stack(s), *[r[0] for r in results]),
                jax.tree.map(lambda *s: jnp.concatenate(s), *[r[1] for r in results]))

    def _unstepped(self, method: str, state):
        """Another process's pool, left as it is: its state, and for a step zeros shaped as its result."""
        import jax.numpy as jnp

        if method == "send":
            return state
        obs = jnp.zeros((self.pool_envs, *self.spec.obs_shape), self.spec.obs_dtype)
        flags, rewards = jnp.zeros(self.pool_envs, bool), jnp.zeros(self.pool_envs, jnp.float32)
        return state, StepResult(obs, rewards, flags, flags, rewards, flags)

    def step(self, env_state, actions):
        """Step the pools with int32 `actions` (their environments, in pool order); usable inside jit."""
        return self._each("step", env_state, actions)

    def send(self, env_state, actions):
        """Start a step of the pools (only when `can_overlap`)."""
        return self._each("send", env_state, actions)

    def recv(self, env_state):
        """Wait for the step the last `send` started (only when `can_overlap`)."""
        return self._each("recv", env_state)

    def render(self) -> np.ndarray:
        """The RGB frame of environment 0 (of this process's first pool)."""
        return self.local[0].render()

    def close(self) -> None:
        """Release this process's pools."""
        for pool in self.local:
            pool.close()

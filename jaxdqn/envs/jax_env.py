"""Environments written in JAX, stepped on the device as part of the compiled loop: no host round trip.

Two sources, one backend:
- gymnax's environments by id, `gymnax/CartPole-v1` (the optional `jaxdqn[gymnax]` extra);
- any user environment given by import path `module:attribute` (an object, or a class built with no
  arguments) with two pure functions and an action count (see `JaxEnv`).

The pool is `vmap`ped over every environment of every agent inside `step`; its state (the environments'
states, their keys and which of them just ended) is an ordinary pytree carried by the loop, so a checkpoint's
exact resume replays it like any other backend's. The backend auto-resets like EnvPool (see `base`).
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from jaxdqn.compile_cache import compile_program, once_compiler_options, program_key
from jaxdqn.core import threefry
from jaxdqn.envs.base import EnvSpec, StepResult, UnsupportedEnv, as_seed_list, jax_dtype
from jaxdqn.importing import DeferredModule, defer_imports, load_object

GYMNAX_PREFIX = "gymnax/"


@runtime_checkable
class JaxEnv(Protocol):
    """A single environment as pure JAX functions, without auto-reset (the backend resets it).

    `reset(key) -> (obs, state)`; `step(key, state, action) -> (obs, state, reward, terminated, truncated)`
    with `action` an int32 scalar; `num_actions` discrete actions. Optional attributes: `max_episode_steps`
    (int) and `reward_threshold` (the "solved" return).
    """

    num_actions: int

    def reset(self, key) -> tuple[Any, Any]:
        """(first observation, state) of a new episode."""

    def step(self, key, state, action) -> tuple[Any, Any, Any, Any, Any]:
        """(obs, state, reward, terminated, truncated) after `action`."""


class GymnaxEnv:
    """A gymnax environment as a `JaxEnv`: its `step_env` (no auto-reset), its time limit as truncation."""

    def __init__(self, name: str):
        self._env = gymnax_classic_control(name)
        if self._env is None:
            self._env, self._params = _gymnax().make(name)
        else:
            self._params = self._env.default_params
        action_space = self._env.action_space(self._params)
        if not hasattr(action_space, "n"):
            raise UnsupportedEnv(f"has a continuous ({type(action_space).__name__}) action space; jaxdqn needs a "
                                 "discrete one (gymnax's discrete ones: " + ", ".join(gymnax_discrete_ids()) + ")")
        self.num_actions = int(action_space.n)
        self.max_episode_steps = int(getattr(self._params, "max_steps_in_episode", 0) or 0)
        self.reward_threshold = gymnasium_reward_threshold(name)

    def reset(self, key):
        """gymnax's `reset_env` with the default parameters."""
        return self._env.reset_env(key, self._params)

    def step(self, key, state, action):
        """gymnax's `step_env`; truncated when the episode reaches the time limit without terminating."""
        obs, state, reward, terminated, _info = self._env.step_env(key, state, action, self._params)
        truncated = self._env.is_truncated(state, self._params) & ~terminated
        return obs, state, reward, terminated, truncated


GYMNAX_PLOTTING_MODULES = ("seaborn", "matplotlib.pyplot")
"""Modules gymnax imports when it is imported and uses only to render its environments."""


GYMNAX_CLASSIC_CONTROL = {"CartPole-v1": "cartpole.CartPole", "Acrobot-v1": "acrobot.Acrobot",
                          "MountainCar-v0": "mountain_car.MountainCar"}
"""gymnax's discrete classic-control environments: `module.Class` in `gymnax.environments.classic_control`."""

GYMNAX_PACKAGES = ("gymnax", "gymnax.environments", "gymnax.environments.classic_control")


def gymnax_classic_control(name: str):
    """A new gymnax environment `name` if it is one of `GYMNAX_CLASSIC_CONTROL`, imported from its own module
    alone; else None (None too if that module is not where this gymnax keeps it, or gymnax is missing).

    Why: gymnax's package imports every one of its environments (bsuite, MinAtar and the rest, with matplotlib),
    0.16-0.19 s of a process here, where the module of CartPole with the two it imports takes 0.005 s. Until
    something reads from them, gymnax's packages are stand-ins (`DeferredModule`) that let their modules import
    alone; reading from one imports the whole package as usual."""
    path = GYMNAX_CLASSIC_CONTROL.get(name)
    if path is None:
        return None
    module, _, cls = path.rpartition(".")
    defer_imports(GYMNAX_PACKAGES, open_packages=True)
    try:
        for sibling in ("environment", "spaces"):  # what the module imports from its package, so imported first
            importlib.import_module(f"gymnax.environments.{sibling}")
        return getattr(importlib.import_module(f"gymnax.environments.classic_control.{module}"), cls)()
    except (ImportError, AttributeError):
        return None


def _gymnax():
    # gymnax imports seaborn and pyplot for its render functions: about 2 s of every process that trains on it,
    # so until something reads from them they are stand-ins (jaxdqn's own plots import pyplot as usual)
    if sys.modules.get("gymnax") is None or isinstance(sys.modules["gymnax"], DeferredModule):  # not imported yet
        defer_imports(GYMNAX_PLOTTING_MODULES)
    try:
        import gymnax
    except ImportError:
        raise UnsupportedEnv("needs gymnax, which is not installed: pip install 'jaxdqn[gymnax]'") from None
    return gymnax


def gymnax_discrete_ids() -> list[str]:
    """gymnax's environments with a discrete action space (the ones jaxdqn trains), without the prefix."""
    gymnax = _gymnax()
    found = []
    for name in gymnax.registered_envs:
        try:
            env, params = gymnax.make(name)
        except Exception:  # MNISTBandit downloads MNIST when made
            continue
        if hasattr(env.action_space(params), "n"):
            found.append(name)
    return found


def gymnasium_reward_threshold(name: str) -> float | None:
    """Gymnasium's registered "solved" return for the environment gymnax reimplements under the same id."""
    import gymnasium

    spec = gymnasium.envs.registry.get(name)
    return None if spec is None or spec.reward_threshold is None else float(spec.reward_threshold)


def load_jax_env(env_id: str) -> JaxEnv:
    """The `JaxEnv` named by `env_id` (`gymnax/NAME` or `module:attribute`); UnsupportedEnv with the reason."""
    if env_id.startswith(GYMNAX_PREFIX):
        name = env_id[len(GYMNAX_PREFIX):]
        if name not in GYMNAX_CLASSIC_CONTROL and name not in _gymnax().registered_envs:
            close = difflib.get_close_matches(name, gymnax_discrete_ids(), n=3, cutoff=0.5)
            hint = f"closest: {', '.join(GYMNAX_PREFIX + c for c in close)}" if close else (
                "gymnax has: " + ", ".join(gymnax_discrete_ids()))
            raise UnsupportedEnv(f"is not a gymnax environment; {hint}")
        return GymnaxEnv(name)
    try:
        env = load_object(env_id)
    except ImportError as error:
        raise UnsupportedEnv(f"cannot be imported ({error})") from None
    missing = [name for name in ("reset", "step", "num_actions") if not hasattr(env, name)]
    if missing:
        raise UnsupportedEnv(f"is not a JAX environment: it has no {', '.join(map(repr, missing))} (it needs "
                             "reset(key) -> (obs, state), step(key, state, action) -> (obs, state, reward, "
                             "terminated, truncated) and num_actions; see jaxdqn/envs/jax_env.py)")
    return env


class PoolState(NamedTuple):
    """The state of a pool of JAX environments (leading axis: the pool)."""

    env: Any
    keys: Any
    done: Any  # the last step ended the episode: the next step is the auto-reset step


class JaxBackend:
    """A pool of one `JaxEnv` per seed, vmapped inside the compiled loop; see `jaxdqn.envs.base.EnvBackend`.
    `num_threads`, the Atari options and `render` are not used (there is no frame to render)."""

    host_step = False
    can_overlap = False
    render_fps = None

    def __init__(self, env_id: str, seeds, num_threads: int = 0, episodic_life: bool = False,
                 reward_clip: bool = False, render: bool = False, repeat_action_probability: float = 0.0):
        self._seeds = np.asarray(as_seed_list(seeds), np.uint32)
        self.num_envs = len(self._seeds)
        self._env = load_jax_env(env_id)
        self.spec = self.env_spec(env_id, self._env)
        self._resets = 0
        self._reset = None

    @staticmethod
    def has(env_id: str) -> bool:
        """True for `gymnax/NAME` and import paths `module:attribute` (their errors come from `env_spec`)."""
        return env_id.startswith(GYMNAX_PREFIX) or ":" in env_id

    @staticmethod
    def known_ids() -> list[str]:
        """None listed: importing gymnax takes seconds; an unknown gymnax id gets its own closest matches."""
        return []

    @staticmethod
    def env_spec(env_id: str, env: JaxEnv | None = None) -> EnvSpec:
        """`env_id`'s spec, from the shapes of its `reset` (traced, not run)."""
        import jax

        env = load_jax_env(env_id) if env is None else env
        obs, _state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        if not isinstance(obs, jax.ShapeDtypeStruct):
            raise UnsupportedEnv(f"returns observations of type {type(obs).__name__} from reset; jaxdqn needs one "
                                 "array")
        num_actions = int(env.num_actions)
        if num_actions < 1:
            raise UnsupportedEnv(f"has num_actions {num_actions}; it needs at least 1")
        threshold = getattr(env, "reward_threshold", None)
        return EnvSpec(env_id=env_id, obs_shape=tuple(obs.shape), obs_dtype=jax_dtype(obs.dtype),
                       num_actions=num_actions, num_states=None,
                       max_episode_steps=int(getattr(env, "max_episode_steps", 0) or 0),
                       reward_threshold=None if threshold is None else float(threshold))

    def _reset_pool(self, seeds, resets):
        import jax
        import jax.numpy as jnp

        keys = jax.vmap(lambda seed: jax.random.fold_in(jax.random.PRNGKey(seed), resets))(seeds)
        keys, reset_keys = _split(keys)
        obs, env_state = jax.vmap(self._env.reset)(reset_keys)
        # strongly typed (gymnax's `time = 0` is weakly typed): a state read back through an exported program
        # (`compile_program`) is, so the loop sees one type either way
        env_state = jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), env_state)
        return PoolState(env_state, keys, jnp.zeros(self.num_envs, bool)), obs.astype(self.spec.obs_dtype)

    def reset(self):
        """(env_state, obs) right after a full reset: the first starts each environment's seeded stream, later
        ones start fresh streams of the same seeds."""
        resets = np.uint32(self._resets)  # an argument: one program for every reset (keys made inside it)
        self._resets += 1
        if self._reset is None:  # a gymnax pool's reset is stored in the program cache (its id names its code)
            args = (self._seeds, resets)
            gymnax = self.spec.env_id.startswith(GYMNAX_PREFIX)
            key = program_key("reset", {"env_id": self.spec.env_id}, args) if gymnax else None
            # its hash lowered unrolled, as in the training loop's step: on CPU the program then compiles in half
            # the time (gymnax CartPole, Acrobot, MountainCar at 10 environments: 0.36-0.44 s -> 0.17-0.24 s)
            with threefry.unrolled():
                self._reset = compile_program(self._reset_pool, args, key, compiler_options=once_compiler_options())
        return self._reset(self._seeds, resets)

    def step(self, env_state: PoolState, actions):
        """Step every environment (vmapped), resetting those whose episode ended on the previous step."""
        import jax
        import jax.numpy as jnp

        keys, step_keys = _split(env_state.keys)
        keys, reset_keys = _split(keys)
        obs, stepped, reward, terminated, truncated = jax.vmap(self._env.step)(
            step_keys, env_state.env, jnp.asarray(actions, jnp.int32))
        reset_obs, reset_state = jax.vmap(self._env.reset)(reset_keys)
        was_done = env_state.done

        def pick(reset_value, step_value):
            mask = was_done.reshape(was_done.shape + (1,) * (jnp.ndim(step_value) - 1))
            return jnp.where(mask, reset_value, step_value)

        obs = pick(reset_obs, obs).astype(self.spec.obs_dtype)
        env = jax.tree.map(pick, reset_state, stepped)
        terminated = jnp.asarray(terminated, bool) & ~was_done
        truncated = jnp.asarray(truncated, bool) & ~was_done
        reward = jnp.where(was_done, 0.0, jnp.asarray(reward, jnp.float32))
        over = terminated | truncated
        return PoolState(env, keys, over), StepResult(obs, reward, terminated, truncated, reward, over)

    def render(self) -> np.ndarray:
        """Not available: a JAX environment has no renderer here."""
        raise NotImplementedError("a JAX environment has no renderer here; videos need an EnvPool or Gymnasium one")

    def close(self) -> None:
        """Nothing to release."""


def _split(keys):
    import jax

    pairs = jax.vmap(jax.random.split)(keys)
    return pairs[:, 0], pairs[:, 1]

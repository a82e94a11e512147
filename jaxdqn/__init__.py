"""jaxdqn: DQN-family reinforcement learning compiled end to end with JAX.

Layers, each importing only the ones above it in this list:

- `jaxdqn.core`: pure functions (losses, networks, replay, sum tree, exploration);
- `jaxdqn.config.schema`: the typed config sections and derived values;
- `jaxdqn.envs`: environment backends (EnvPool, Gymnasium); `jaxdqn.agents`: the agent protocol and registry;
- `jaxdqn.config.build/validate/presets`: configs from flat names, checks against the environment, presets;
- `jaxdqn.loop`: the compiled rollout shared by every agent and backend;
- `jaxdqn.evaluate`, `jaxdqn.run`: evaluation, the driver with its recorder, checkpoints, resume, signals;
- `jaxdqn.plot`, `jaxdqn.bench`, `jaxdqn.cli`: figures, throughput, the command.
"""

import gc

# Importing JAX, Flax and jaxdqn makes some 130,000 objects that live as long as the process, and little garbage:
# the collections their growth would set off, and every later full one, would walk them again (0.1-0.2 s each,
# about 0.5 s of a short run). So they are made with the collector off, then frozen (kept out of collections).
_collecting = gc.isenabled()
gc.disable()
try:
    from jaxdqn.core import threefry

    threefry.install()  # before any program is lowered (JAXDQN_CPU_THREEFRY=loop keeps JAX's own; see the module)

    from jaxdqn.agents import AGENTS, resolve_agent
    from jaxdqn.config.build import make_config
    from jaxdqn.config.presets import PRESETS, get_preset
    from jaxdqn.config.schema import Config, ConfigError, plan, replace
    from jaxdqn.config.validate import validate
    from jaxdqn.core.replay import make_replay
    from jaxdqn.evaluate import evaluate_policy
    from jaxdqn.run.checkpoint import CheckpointError, load_latest, restore_params
    from jaxdqn.run.driver import TrainingStopped, build_rollout, run_training
finally:
    if _collecting:
        gc.freeze()
        gc.enable()

__all__ = [
    "AGENTS", "PRESETS", "CheckpointError", "Config", "ConfigError", "TrainingStopped", "build_rollout",
    "evaluate_policy", "get_preset", "load_latest", "make_config", "make_replay", "plan", "replace",
    "resolve_agent", "restore_params", "run_training", "validate",
]

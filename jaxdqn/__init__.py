"""jaxdqn: DQN-family reinforcement learning compiled end to end with JAX, on EnvPool."""

from jaxdqn.checkpoint import CheckpointError, load_latest, restore_params
from jaxdqn.config import PRESETS, Config, ConfigError, get_preset, validate
from jaxdqn.learner import AgentState, make_train_step
from jaxdqn.replay import Replay, ReplayState, make_frame_replay, make_replay, make_uniform_replay

__all__ = [
    "PRESETS", "AgentState", "CheckpointError", "Config", "ConfigError", "TrainingStopped", "load_latest",
    "restore_params", "Replay", "ReplayState", "get_preset", "make_frame_replay", "make_replay",
    "make_train", "make_train_step", "make_uniform_replay", "run_training", "validate",
]


def __getattr__(name):
    # train.py still imports the old jaxdqn/envs.py; imported lazily so `jaxdqn.envs` imports until it is ported.
    if name in ("TrainingStopped", "make_train", "run_training"):
        from jaxdqn import train

        return getattr(train, name)
    raise AttributeError(f"module 'jaxdqn' has no attribute {name!r}")

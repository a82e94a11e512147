"""jaxdqn: DQN-family reinforcement learning compiled end to end with JAX, on EnvPool."""

from jaxdqn.checkpoint import CheckpointError, load_latest, restore_params
from jaxdqn.config.presets import PRESETS, get_preset
from jaxdqn.config.schema import Config, ConfigError
from jaxdqn.config.validate import validate
from jaxdqn.learner import AgentState, make_train_step
from jaxdqn.replay import Replay, ReplayState, make_frame_replay, make_replay, make_uniform_replay
from jaxdqn.train import TrainingStopped, make_train, run_training

__all__ = [
    "PRESETS", "AgentState", "CheckpointError", "Config", "ConfigError", "TrainingStopped", "load_latest",
    "restore_params", "Replay", "ReplayState", "get_preset", "make_frame_replay", "make_replay",
    "make_train", "make_train_step", "make_uniform_replay", "run_training", "validate",
]

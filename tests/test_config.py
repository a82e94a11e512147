"""Every bad-input case gives one clear error naming the field and what is allowed, before compiling."""

import dataclasses

import pytest

from jaxdqn.config import PRESETS, Config, ConfigError, from_dict, get_preset, to_dict, validate

BAD_VALUES = [
    ({"learning_rate": 0.0}, "learning_rate: must be a finite number > 0"),
    ({"learning_rate": -1e-3}, "learning_rate: must be a finite number > 0"),
    ({"batch_size": 20_000}, "batch_size: must be <= buffer_size (10000)"),
    ({"gamma": 0.0}, "gamma: must be in (0, 1]"),
    ({"gamma": 1.5}, "gamma: must be in (0, 1]"),
    ({"epsilon_start": 1.2}, "epsilon_start: must be in [0, 1]"),
    ({"epsilon_end": -0.1}, "epsilon_end: must be in [0, 1]"),
    ({"learning_starts": 600_000}, "learning_starts: must be below total_steps (500000)"),
    ({"num_envs": 0}, "num_envs: must be an integer > 0"),
    ({"num_seeds": -2}, "num_seeds: must be an integer > 0"),
    ({"train_frequency": 3, "num_envs": 10}, "train_frequency: must divide num_envs (10) or be a multiple of it"),
    ({"target_tau": 0.0}, "target_tau: must be in (0, 1]"),
    ({"epsilon_schedule": "piecewise"}, "epsilon_boundaries: needs at least one step"),
    ({"epsilon_schedule": "piecewise", "epsilon_boundaries": (0, 10), "epsilon_values": (1.0,)},
     "epsilon_values: needs one value per boundary (2)"),
    ({"hidden_sizes": ()}, "hidden_sizes: must be one or more widths > 0"),
    ({"stop_when_solved": True, "solved_return": None}, "stop_when_solved: needs solved_return"),
    ({"env_id": "CartPol-v1"},
     "env_id: 'CartPol-v1' is not an EnvPool or Gymnasium environment; closest: CartPole-v1"),
    ({"env_id": "Pendulum-v1"}, "env_id: 'Pendulum-v1' has a Box action space; jaxdqn needs a discrete"),
    ({"env_id": "FrozenLake-v1"}, "env_id: 'FrozenLake-v1' has a Discrete observation space (16 states); "
                                  "the dqn agent needs array observations: use --agent tabular"),
    ({"env_id": "Taxi-v4"}, "env_id: 'Taxi-v4' has a Discrete observation space (500 states)"),  # Gymnasium-only
    ({"agent": "tabular"}, "agent: tabular needs a Discrete observation space, but 'CartPole-v1' has Box(4,)"),
    ({"agent": "tabular", "env_id": "FrozenLake-v1", "tabular_alpha": 0.0}, "tabular_alpha: must be in (0, 1]"),
    ({"agent": "tabular", "env_id": "FrozenLake-v1", "tabular_alpha_end": 1.5},
     "tabular_alpha_end: must be in [0, 1] or None"),
    ({"env_id": "LunarLanderContinuous-v3"}, "has a Box action space"),
    ({"env_id": "Ant-v2"}, "env_id: 'Ant-v2' cannot be created: The mujoco v2 and v3 based environments"),
    ({"checkpoint_interval": -1}, "checkpoint_interval: must be an integer >= 0 (0 saves only at the end)"),
    ({"keep_checkpoints": 0}, "keep_checkpoints: must be an integer >= 1"),
]


@pytest.mark.parametrize("changes,message", BAD_VALUES, ids=[next(iter(c)) for c, _ in BAD_VALUES])
def test_bad_value_names_field_and_allowed_range(changes, message):
    cfg = dataclasses.replace(PRESETS["cartpole"], **changes)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_presets_are_valid_and_round_trip():
    for name, cfg in PRESETS.items():
        validate(cfg)
        assert from_dict(to_dict(cfg)) == cfg, name


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; allowed: .*cartpole"):
        get_preset("nope")


def test_every_field_has_a_docstring():
    import ast
    import inspect

    source = inspect.getsource(Config)
    body = ast.parse(source).body[0].body
    documented = {node.target.id for node, doc in zip(body, body[1:])
                  if isinstance(node, ast.AnnAssign) and isinstance(doc, ast.Expr)}
    assert documented == {f.name for f in dataclasses.fields(Config)}


def test_tabular_agent_skips_replay_constraints():
    # no replay: batch_size / learning_starts / train_frequency do not constrain the tabular agent
    validate(dataclasses.replace(PRESETS["frozenlake"], batch_size=512, buffer_size=10, learning_starts=0,
                                 train_frequency=3))

"""Config sections, flat names, presets, plan() and validation: every bad input is one line naming the field."""

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from jaxdqn.cli import parse_train_args
from jaxdqn.config import schema
from jaxdqn.config.build import config_from_dict, make_config, settings_type
from jaxdqn.config.presets import PRESET_DOCS, PRESETS, get_preset
from jaxdqn.config.schema import (Config, ConfigError, DQNSettings, Plan, TabularSettings, flat_dict, from_dict,
                                  plan, replace, to_dict)
from jaxdqn.config.validate import validate

DATA = Path(__file__).parent / "data"
TOY = "tests.toy_agents:ReplayToy"

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
    ({"num_envs": 2.5}, "num_envs: must be an integer (got 2.5)"),
    ({"total_steps": 2**31}, "total_steps: must be at most 2147483647 (int32) (got 2147483648)"),
    ({"seed": -1}, "seed: must be an integer >= 0 (got -1)"),
    ({"total_steps": 2_147_480_000, "learning_starts": 10_000},
     "total_steps: must leave the step counter within int32 (2147483647) after rounding up to whole periods of 10"),
    ({"train_frequency": 3, "num_envs": 10}, "train_frequency: must divide num_envs (10) or be a multiple of it"),
    ({"target_tau": 0.0}, "target_tau: must be in (0, 1]"),
    ({"loss": "Huber"}, "loss: must be one of l2, huber (got 'Huber')"),
    ({"torso": "resnet"}, "torso: must be one of mlp, nature_cnn, minatar_cnn (got 'resnet')"),
    ({"double_q": "yes"}, "double_q: must be True or False (got 'yes')"),
    ({"epsilon_schedule": "piecewise"}, "epsilon_boundaries: needs at least one step"),
    ({"epsilon_schedule": "piecewise", "epsilon_boundaries": (0, 10), "epsilon_values": (1.0,)},
     "epsilon_values: needs one value per boundary (2)"),
    ({"hidden_sizes": ()}, "hidden_sizes: must be one or more widths > 0"),
    ({"solved_return": None, "stop_when_solved": True}, "stop_when_solved: needs solved_return"),
    ({"learning_starts": 100}, "learning_starts: must be >= batch_size (128) so the first batch has data"),
    ({"torso": "nature_cnn"}, "torso: nature_cnn needs image observations shaped (frames, height, width) of at "
                              "least 36x36, but CartPole-v1 has shape (4,); allowed here: mlp"),
    ({"torso": "minatar_cnn"}, "torso: minatar_cnn needs image observations shaped (height, width, channels) of at "
                               "least 3x3, but CartPole-v1 has shape (4,); allowed here: mlp"),
    ({"env_id": "CartPol-v1"},
     "env_id: 'CartPol-v1' is not an EnvPool, Gymnasium or gymnax (gymnax/NAME) environment, nor a JAX "
     "environment's import path (module:attribute); closest: CartPole-v1"),
    ({"env_id": "Pendulum-v1"}, "env_id: 'Pendulum-v1' has a Box action space; jaxdqn needs a discrete"),
    ({"env_id": "FrozenLake-v1"}, "env_id: 'FrozenLake-v1' has a Discrete observation space (16 states); "
                                  "the dqn agent needs array observations: use --agent tabular"),
    ({"env_id": "Taxi-v4"}, "env_id: 'Taxi-v4' has a Discrete observation space (500 states)"),  # Gymnasium-only
    ({"agent": "tabular"}, "agent: tabular needs a Discrete observation space, but 'CartPole-v1' has Box(4,)"),
    ({"agent": "nope"}, "agent: must be one of dqn, pqn, tabular or an import path module:attribute (got 'nope')"),
    ({"agent": "tabular", "env_id": "FrozenLake-v1", "tabular_alpha": 0.0}, "tabular_alpha: must be in (0, 1]"),
    ({"agent": "tabular", "env_id": "FrozenLake-v1", "tabular_alpha_end": 1.5},
     "tabular_alpha_end: must be in [0, 1] or None"),
    ({"agent": "tabular", "learning_rate": 1e-3}, "learning_rate: not a field of a config with TabularSettings"),
    ({"lerning_rate": 1e-3}, "lerning_rate: not a field of a config with DQNSettings; closest: learning_rate"),
    ({"env_id": "LunarLanderContinuous-v3"}, "has a Box action space"),
    ({"env_id": "Ant-v2"}, "env_id: 'Ant-v2' cannot be created: The mujoco v2 and v3 based environments"),
    ({"checkpoint_interval": -1}, "checkpoint_interval: must be an integer >= 0 (0 saves only at the end)"),
    ({"keep_checkpoints": 0}, "keep_checkpoints: must be an integer >= 1"),
]


@pytest.mark.parametrize("changes,message", BAD_VALUES, ids=[next(iter(c)) for c, _ in BAD_VALUES])
def test_bad_value_names_field_and_allowed_range(changes, message):
    with pytest.raises(ConfigError) as error:
        validate(make_config("cartpole", **changes))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("flat,argv", [
    ({"loss": "Huber"}, ["--loss", "Huber"]),
    ({"torso": "resnet"}, ["--torso", "resnet"]),
    ({"learning_rate": -1.0}, ["--learning-rate", "-1"]),
    ({"seed": 2**31}, ["--seed", str(2**31)]),
])
def test_python_and_cli_give_the_same_error(flat, argv):
    with pytest.raises(ConfigError) as from_python:
        make_config(**flat)
    with pytest.raises(ConfigError) as from_cli:
        parse_train_args(argv)
    assert str(from_python.value) == str(from_cli.value)


def test_sections_check_themselves_when_built_directly():
    with pytest.raises(ConfigError, match=r"^loss: must be one of l2, huber \(got 'Huber'\)$"):
        DQNSettings(loss="Huber")
    with pytest.raises(ConfigError, match=r"^torso: must be one of mlp, nature_cnn, minatar_cnn \(got 'resnet'\)$"):
        schema.NetworkConfig(torso="resnet")
    with pytest.raises(ConfigError, match=r"^seed: must be at most 2147483647 \(int32\)"):
        schema.LoopConfig(seed=2**31)
    with pytest.raises(ConfigError, match=r"^env: must be a EnvConfig"):
        Config(env={"env_id": "CartPole-v1"})
    assert schema.NetworkConfig(hidden_sizes=[64, 64]).hidden_sizes == (64, 64)  # lists become tuples
    # a Config whose settings do not belong to its agent is refused by validate
    with pytest.raises(ConfigError, match="settings: agent tabular takes TabularSettings"):
        validate(Config(agent="tabular"))


def test_unchecked_defers_the_checks_to_checked():
    with schema.unchecked():
        cfg = Config(settings=DQNSettings(loss="Huber"))
    with pytest.raises(ConfigError, match="loss: must be one of l2, huber"):
        schema.checked(cfg)
    assert schema.checked(PRESETS["breakout"]) == PRESETS["breakout"]


def test_replace_routes_flat_names_to_their_sections():
    cfg = PRESETS["cartpole"]
    new = replace(cfg, learning_rate=1e-3, num_envs=4, epsilon_end=0.1, keep_checkpoints=5, dueling=True)
    assert new.settings.optim.learning_rate == 1e-3 and new.env.num_envs == 4
    assert new.exploration.epsilon_end == 0.1 and new.checkpoint.keep_checkpoints == 5
    assert new.settings.network.dueling
    changed = {k for k, v in flat_dict(new).items() if flat_dict(cfg)[k] != v}
    assert changed == {"learning_rate", "num_envs", "epsilon_end", "keep_checkpoints", "dueling"}
    assert cfg.env.num_envs == 1  # the original is untouched
    with pytest.raises(ConfigError, match=r"^num_env: not a field of a config with DQNSettings; closest: num_envs"):
        replace(cfg, num_env=4)
    with pytest.raises(ConfigError, match="batch_size: must be <= buffer_size"):
        replace(cfg, batch_size=50_000)


def test_flat_names_are_unique_and_flat_dict_has_every_leaf():
    for kind in (DQNSettings, TabularSettings):
        paths = schema.leaf_paths(kind)
        assert list(paths)[0] == "agent"
        assert len(paths) == len(set(paths))
    flat = flat_dict(PRESETS["lunarlander"])
    assert flat["agent"] == "dqn" and flat["learning_rate"] == 2.5e-4 and flat["hidden_sizes"] == (128, 128)
    assert flat["env_id"] == "LunarLander-v3" and flat["epsilon_schedule"] == "exponential"
    assert schema.from_flat(flat, DQNSettings) == PRESETS["lunarlander"]


def test_every_field_has_a_docstring():
    sections = [Config, schema.EnvConfig, schema.LoopConfig, schema.CheckpointConfig, schema.TrackingConfig,
                schema.ExplorationConfig, schema.NetworkConfig, schema.ReplayConfig, schema.OptimConfig, DQNSettings,
                TabularSettings]
    for cls in sections:
        body = ast.parse(inspect.getsource(cls)).body[0].body
        documented = {node.target.id for node, doc in zip(body, body[1:])
                      if isinstance(node, ast.AnnAssign) and isinstance(doc, ast.Expr)
                      and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}
        assert documented == {f.name for f in dataclasses.fields(cls)}, cls.__name__


def test_presets_are_valid_and_round_trip_through_json():
    for name, cfg in PRESETS.items():
        validate(cfg)
        data = json.loads(json.dumps(to_dict(cfg)))
        assert data["format"] == 2 and data["agent"] == cfg.agent
        assert config_from_dict(data) == cfg, name  # the agent's settings type from the registry
        assert from_dict(data, type(cfg.settings)) == cfg, name
        assert PRESET_DOCS[name] and "\n" not in PRESET_DOCS[name]
    assert set(PRESET_DOCS) == set(PRESETS)
    assert to_dict(PRESETS["cartpole"])["settings"]["optim"]["learning_rate"] == 2.5e-4
    assert isinstance(PRESETS["frozenlake"].settings, TabularSettings)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; allowed: .*cartpole"):
        get_preset("nope")


def test_old_flat_config_json_loads():
    for name in ("lunarlander-per", "frozenlake"):
        data = json.loads((DATA / f"config-format1-{name}.json").read_text())
        assert "format" not in data and "learning_rate" in data and "tabular_alpha" in data  # both agents' fields
        # the same run: its decay in steps is the one the preset's exploration_fraction derives
        assert from_dict(data) == schema.replace(schema.with_derived(PRESETS[name]), exploration_fraction=None), name
    with pytest.raises(ConfigError, match=r"config: unknown fields \['bogus'\]"):
        from_dict({**data, "bogus": 1})
    with pytest.raises(ConfigError, match=r"format: this jaxdqn reads config formats 1 and 2 \(got 3\)"):
        from_dict({**to_dict(PRESETS["cartpole"]), "format": 3})
    with pytest.raises(ConfigError, match="lerning_rate: not a field"):
        from_dict({"format": 2, "settings": {"optim": {"lerning_rate": 1.0}}})


def test_make_config_switches_agent_and_keeps_the_shared_fields():
    cfg = make_config("frozenlake", agent="dqn", buffer_size=5_000)
    assert isinstance(cfg.settings, DQNSettings) and cfg.agent == "dqn"
    assert cfg.env.num_envs == 8 and cfg.loop.total_steps == 100_000 and cfg.settings.gamma == 0.99
    assert cfg.settings.replay.buffer_size == 5_000
    assert make_config() == Config() and make_config("cartpole") == PRESETS["cartpole"]
    assert settings_type("tabular") is TabularSettings
    # the tabular agent has no replay: its constraints do not apply
    validate(make_config("frozenlake", train_frequency=3, learning_starts=0))


def test_agent_by_import_path_brings_its_settings():
    from tests.toy_agents import ToySettings

    cfg = make_config(agent=TOY, toy_rate=0.5, num_envs=2)
    assert isinstance(cfg.settings, ToySettings) and cfg.settings.toy_rate == 0.5 and cfg.agent == TOY
    assert from_dict(json.loads(json.dumps(to_dict(cfg))), ToySettings) == cfg
    with pytest.raises(ConfigError, match="needs its settings type"):
        from_dict(to_dict(cfg))
    with pytest.raises(ConfigError, match=r"^toy_rate: must be > 0 \(got -1\)$"):
        make_config(agent=TOY, toy_rate=-1)
    cli_cfg, preset, out = parse_train_args(["--agent", TOY, "--toy-rate", "0.5", "--num-envs", "2", "--out", "x"])
    assert cli_cfg == make_config("cartpole", agent=TOY, toy_rate=0.5, num_envs=2)
    assert preset == "cartpole" and out == "x"
    with pytest.raises(ConfigError, match="agent: cannot import 'tests.nothing:Agent'"):
        make_config(agent="tests.nothing:Agent")


@pytest.mark.parametrize("preset,changes,expected", [
    ("cartpole", {}, Plan(iters_per_period=10, updates_per_period=1, steps_per_period=10, total_periods=50_000,
                          total_env_steps=500_000, log_periods=1_000, episode_log_capacity=5_000,
                          schedule_env_steps=500_000, epsilon_decay_steps=250_000)),
    ("cartpole", {"num_envs": 10}, Plan(1, 1, 10, 50_000, 500_000, 1_000, 5_000, 500_000, 250_000)),
    # 10 environments with an update every 5 steps: 2 updates per iteration; the decay is half the run
    ("cartpole", {"num_envs": 10, "train_frequency": 5, "total_steps": 30_005}, Plan(1, 2, 10, 3_001, 30_010, 1_000,
                                                                                   5_000, 30_010, 15_005)),
    ("lunarlander", {}, Plan(iters_per_period=1, updates_per_period=2, steps_per_period=4, total_periods=100_000,
                             total_env_steps=400_000, log_periods=5_000, episode_log_capacity=10_000,
                             schedule_env_steps=400_000, epsilon_decay_steps=100_000)),
    # schedules that span the run keep their length when the run is extended (resume)
    ("lunarlander", {"total_steps": 800_000, "schedule_steps": 400_000},
     Plan(1, 2, 4, 200_000, 800_000, 5_000, 10_000, 400_000, 100_000)),
    ("cartpole", {"total_steps": 20_000, "epsilon_decay_steps": 4_000},  # steps given: the fraction is cleared
     Plan(10, 1, 10, 2_000, 20_000, 1_000, 5_000, 20_000, 4_000)),
])
def test_plan_values(preset, changes, expected):
    assert plan(make_config(preset, **changes)) == expected


def test_presets_decay_epsilon_over_the_same_steps_as_before_at_their_own_length():
    """The presets' decays are fractions of the run now; at each preset's own length they are the steps they were."""
    before = {"cartpole": 250_000, "lunarlander": 100_000, "lunarlander-per": 100_000, "highway": 4_064,
              "pong": 150_000, "atlantis": 1_000_000}
    assert {name: plan(PRESETS[name]).epsilon_decay_steps for name in before} == before
    # and a shorter run decays within its length (the cartpole preset for 20k steps used to end at eps 0.924)
    assert plan(make_config("cartpole", total_steps=20_000)).epsilon_decay_steps == 10_000


def test_another_environment_brings_its_torso_and_solved_return_unless_given():
    pong = make_config("cartpole", env_id="Pong-v5")
    assert (pong.settings.network.torso, pong.settings.network.hidden_sizes) == ("nature_cnn", (512,))
    assert pong.loop.solved_return is None and validate(pong) is pong
    breakout = make_config("pqn-cartpole", env_id="gymnax/Breakout-MinAtar")  # (10, 10, 4) float images
    assert (breakout.settings.network.torso, breakout.settings.network.hidden_sizes) == ("minatar_cnn", (128,))
    assert breakout.settings.network.layer_norm and validate(breakout) is breakout  # PQN's LayerNorm kept
    acrobot = make_config("cartpole", env_id="Acrobot-v1")
    assert acrobot.settings.network.torso == "mlp" and acrobot.loop.solved_return == -100.0  # registered threshold
    cartpole = make_config("pong", env_id="CartPole-v1")
    assert (cartpole.settings.network.torso, cartpole.settings.network.hidden_sizes) == ("mlp", (120, 84))
    assert cartpole.loop.solved_return == 475.0 and cartpole.loop.stop_when_solved  # pong's stop, CartPole's 475
    given = make_config("cartpole", env_id="Acrobot-v1", solved_return=-80.0, hidden_sizes=(64,))
    assert given.loop.solved_return == -80.0 and given.settings.network.hidden_sizes == (64,)
    # the command line reads the same intent from the flags given
    cli_cfg, _, _ = parse_train_args(["--env-id", "Pong-v5", "--total-steps", "1e5"])
    assert cli_cfg == make_config("cartpole", env_id="Pong-v5", total_steps=100_000)

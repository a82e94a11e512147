"""`jaxdqn sweep`: a grid (or a random sample) of configurations x seeds, trained as few compiled programs as
their shapes allow.

Configurations that differ only in their agent's run-time values (`Agent.run_time_fields`: learning rate,
gamma, the epsilon schedule's numbers, target period and rate, Huber delta, clips, PER's alpha, beta and eps,
tabular alpha, PQN's lambda, ...) form one *group*: their agents (configurations x seeds) are one agent axis of
one program (`driver.Group`), as the seeds of `jaxdqn train --num-seeds` are. A field that changes shapes or the
program (network sizes, batch size, buffer size, number of environments, the agent, ...) splits the sweep into
groups, run one after another in the same process. Agent (configuration c, seed k) is the agent `jaxdqn train`
with c's flags trains as seed k: the same keys and the same environment seeds.

A sweep directory::

    DIR/sweep.json        the sweep: its command, the swept fields, every configuration's flags and full config,
                          the groups
    DIR/group-N/          one run directory per group (config.json of its first configuration, metrics.jsonl
                          and episodes.csv with one entry per agent, checkpoints/, summary.json, and
                          tensorboard/cNN_LABEL/: one TensorBoard run per configuration)
    DIR/sweep.csv, sweep.md, sweep.png   the results (jaxdqn/sweep_results.py)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import typing
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from jaxdqn.agents import resolve_agent
from jaxdqn.config import schema
from jaxdqn.config.build import config_from_dict
from jaxdqn.config.schema import ConfigError
from jaxdqn.core.optim import SWITCHED_OFF_BY_ZERO

SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = 1
UNSWEPT = {"seed": "--num-seeds S trains seeds 0..S-1 of every configuration",
           "num_seeds": "every configuration trains --num-seeds seeds"}
"""Fields that cannot take several values, and why."""


class Choice(NamedTuple):
    """A swept field's values as written (a grid's axis; `--random` draws one of them)."""

    name: str
    texts: tuple

    def draw(self, rng: np.random.Generator) -> str:
        """One of the values, uniformly."""
        return self.texts[int(rng.integers(len(self.texts)))]


class Range(NamedTuple):
    """A swept field's range `LOW:HIGH[:log]`, drawn by `--random` (uniformly, or log-uniformly with `log`)."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool

    def draw(self, rng: np.random.Generator) -> str:
        """One value from the range, as text (integers rounded)."""
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return str(round(value)) if self.integer else repr(float(value))


class Configuration(NamedTuple):
    """One point of a sweep: its swept values, the `jaxdqn train` flags that train it alone, and its config."""

    values: dict
    train_args: tuple
    config: Any

    @property
    def label(self) -> str:
        """The swept values as `name=value,...`."""
        return ",".join(f"{name}={format_value(value)}" for name, value in self.values.items())


class Sweep(NamedTuple):
    """A planned sweep: the swept fields, every configuration, and the groups of configuration indices that
    train as one program each, in running order."""

    fields: tuple
    configurations: tuple
    groups: tuple
    num_seeds: int
    command: str

    def group_dir(self, out: Path, index: int) -> Path:
        """Run directory of group `index`."""
        return out / f"group-{index}"

    def tensorboard_label(self, index: int) -> str:
        """The TensorBoard run folder of configuration `index`."""
        return f"c{index:02d}_" + "".join(c if c.isalnum() or c in "=.,-_" else "-"
                                          for c in self.configurations[index].label)


def format_value(value) -> str:
    """A swept value as labels and tables show it."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "x".join(map(str, value)) or "()"
    return str(value)


def _is_numeric(hint) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint in (int, float) or (bool(args) and all(a in (int, float) for a in args))


def _is_integer(hint) -> bool:
    return hint is int or int in typing.get_args(hint)


def split_field_args(args: list[str]) -> list[tuple[str, str]]:
    """(flag, value text) of each `--flag VALUE`, `--flag=VALUE` or `--flag V1 V2` (a list field's one value, kept
    as `V1,V2`) in `args`, whose boolean flags already have a value."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"sweep: expected --FIELD VALUES, got {arg!r}")
        if "=" in arg:
            pairs.append(tuple(arg.split("=", 1)))
            i += 1
            continue
        j = i + 1
        while j < len(args) and not args[j].startswith("--"):
            j += 1
        if j == i + 1:
            raise ConfigError(f"{arg}: needs a value (a list V1,V2,... to sweep, or one value)")
        pairs.append((arg, ",".join(args[i + 1:j])))
        i = j
    return pairs


def field_tokens(settings_type: type, name: str, text: str) -> list[str]:
    """The `jaxdqn train` arguments of value `text` of field `name`: a list field's elements are separate."""
    return text.split(",") if typing.get_origin(schema.field_hint(settings_type, name)) is tuple else [text]


def parse_axis(settings_type: type, flag: str, text: str, random: bool):
    """The `Choice` or `Range` of a swept `--flag TEXT`, or None when TEXT is one value.

    Lists are comma-separated (`1e-4,3e-4`), or slash-separated for a field that is itself a list
    (`--hidden-sizes 64,64/128`); a range `LOW:HIGH[:log]` is for numbers and for `--random`.
    """
    name = flag[2:].replace("-", "_")
    hint = schema.field_hint(settings_type, name)
    separator = "/" if typing.get_origin(hint) is tuple else ","
    if _is_numeric(hint) and ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "lin")):
            raise ConfigError(f"{flag}: a range is LOW:HIGH or LOW:HIGH:log (got {text!r})")
        if not random:
            raise ConfigError(f"{flag}: a range ({text}) needs --random N; for a grid list the values: V1,V2,...")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise ConfigError(f"{flag}: a range's ends must be numbers (got {text!r})") from None
        log = len(parts) == 3 and parts[2] == "log"
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"{flag}: a range needs finite LOW < HIGH (got {text!r})")
        if log and low <= 0:
            raise ConfigError(f"{flag}: a log range needs LOW > 0 (got {text!r})")
        return Range(name, low, high, log, _is_integer(hint))
    if separator not in text:
        return None
    texts = tuple(part.strip() for part in text.split(separator))
    if any(not part for part in texts):
        raise ConfigError(f"{flag}: an empty value in the list {text!r}")
    return Choice(name, texts)


def plan_sweep(argv: list[str], preset: str, agent: str | None, random: int | None, sweep_seed: int,
               command: str) -> Sweep:
    """The configurations and groups of `jaxdqn sweep` field arguments `argv` on `preset`, every configuration
    built and validated as `jaxdqn train` would; raise ConfigError (one line) naming the bad value and its
    position, or the configuration that cannot train. Compiles nothing."""
    from jaxdqn.cli import CliError, expand_boolean_flags, parse_train_args
    from jaxdqn.config.build import make_config
    from jaxdqn.config.validate import validate

    base = make_config(preset, agent)
    settings_type = type(base.settings)
    booleans = {name for name, value in schema.flat_dict(base).items() if isinstance(value, bool)}
    fixed, axes = [], []
    for flag, text in split_field_args(expand_boolean_flags(argv, booleans)):
        name = flag[2:].replace("-", "_")
        if name not in schema.leaf_paths(settings_type):
            raise schema.unknown_field({name}, schema.leaf_paths(settings_type), settings_type)
        axis = parse_axis(settings_type, flag, text, random is not None)
        if axis is not None and name in UNSWEPT:
            raise ConfigError(f"{flag}: cannot be swept: {UNSWEPT[name]}")
        if axis is not None and name in [a.name for a in axes]:
            raise ConfigError(f"{flag}: given twice")
        if axis is None:
            fixed += [flag, *field_tokens(settings_type, name, text)]
        else:
            axes.append(axis)
    if not axes:
        raise ConfigError("sweep: no field to sweep; give one a list (--learning-rate 1e-4,3e-4,1e-3)"
                          + (" or a range (--learning-rate 1e-4:1e-3:log)" if random is not None else ""))
    base_args = ["--preset", preset, *(["--agent", agent] if agent else []), *fixed]

    def parse(args: list[str]):
        return parse_train_args(base_args + args)[0]

    try:
        parse([])
    except CliError as error:
        raise ConfigError(str(error)) from None
    for axis in axes:  # each listed value (a range's two ends) on its own first, so an error names its position
        flag = "--" + axis.name.replace("_", "-")
        texts = axis.texts if isinstance(axis, Choice) else (repr(axis.low), repr(axis.high))
        for position, text in enumerate(texts, 1):
            where = (f"value {position} of {len(texts)}" if isinstance(axis, Choice)
                     else ("the range's LOW" if position == 1 else "the range's HIGH"))
            if isinstance(axis, Range) and axis.integer:
                text = str(round(float(text)))
            try:
                parse([flag, *field_tokens(settings_type, axis.name, text)])
            except (ConfigError, CliError) as error:
                raise ConfigError(f"{flag}: {where} ({text}) is refused: {error}") from None
    if random is None:
        points = [dict(zip([a.name for a in axes], texts)) for texts in itertools.product(*(a.texts for a in axes))]
    else:
        rng = np.random.default_rng(sweep_seed)
        points = [{axis.name: axis.draw(rng) for axis in axes} for _ in range(random)]
    configurations = []
    for index, point in enumerate(points):
        train_args = tuple(arg for name, text in point.items()
                           for arg in ("--" + name.replace("_", "-"), *field_tokens(settings_type, name, text)))
        try:
            cfg = validate(parse(list(train_args)))
        except (ConfigError, CliError) as error:
            if str(error) == _refusal(lambda: validate(parse([]))):  # the fixed values alone are refused
                raise ConfigError(str(error)) from None
            raise ConfigError(f"configuration {index} ({' '.join(train_args)}): {error}") from None
        flat = schema.flat_dict(cfg)
        configurations.append(Configuration({name: flat[name] for name in point}, tuple(base_args) + train_args,
                                            cfg))
    groups: dict = {}
    for index, configuration in enumerate(configurations):
        groups.setdefault(structure_key(configuration.config), []).append(index)
    num_seeds = configurations[0].config.loop.num_seeds
    return Sweep(tuple(a.name for a in axes), tuple(configurations), tuple(tuple(g) for g in groups.values()),
                 num_seeds, command)


def _refusal(check: Callable) -> str | None:
    """The message of the ConfigError or CliError `check()` raises, or None."""
    from jaxdqn.cli import CliError

    try:
        check()
    except (ConfigError, CliError) as error:
        return str(error)
    return None


def structure_key(cfg) -> tuple:
    """What a configuration's program depends on: every field but its agent's run-time values (of a clip that 0
    turns off, only whether it is on)."""
    run_time = getattr(resolve_agent(cfg.agent), "run_time_fields", frozenset())
    return tuple((name, value > 0 if name in SWITCHED_OFF_BY_ZERO else value)
                 for name, value in schema.flat_dict(cfg).items()
                 if name not in run_time or name in SWITCHED_OFF_BY_ZERO)


def splitting_fields(sweep: Sweep) -> list[str]:
    """The swept fields whose values put configurations in different groups."""
    first = [dict(structure_key(sweep.configurations[group[0]].config)) for group in sweep.groups]
    return [name for name in sweep.fields if name in first[0] and len({repr(f[name]) for f in first}) > 1]


def group_line(sweep: Sweep, index: int) -> str:
    """How group `index` is announced: its shape-changing values and its agents."""
    group = sweep.groups[index]
    values = sweep.configurations[group[0]].values
    shape = ", ".join(f"{name}={format_value(values[name])}" for name in splitting_fields(sweep))
    return (f"group {index + 1} of {len(sweep.groups)}{f' ({shape})' if shape else ''}: {len(group)} "
            f"configuration(s) x {sweep.num_seeds} seed(s) = {len(group) * sweep.num_seeds} agents")


def check_groups(sweep: Sweep) -> None:
    """Refuse a sweep whose groups' agents cannot be sharded over the devices asked for (`devices`), or whose
    largest group's training state cannot fit in the memory available now, saying how many agents would."""
    from jaxdqn.config.validate import _gigabytes, agent_devices, available_memory, state_bytes
    from jaxdqn.envs import env_spec

    for index, group in enumerate(sweep.groups):
        try:
            agent_devices(sweep.configurations[group[0]].config, len(group) * sweep.num_seeds)
        except ConfigError as error:
            raise ConfigError(f"{error} ({group_line(sweep, index)})") from None
    available = available_memory()
    if available is None:
        return
    free, where = available
    for index, group in enumerate(sweep.groups):
        cfg = sweep.configurations[group[0]].config
        per_agent = state_bytes(cfg, env_spec(cfg.env.env_id))
        agents = len(group) * sweep.num_seeds
        if per_agent * agents > free:
            raise ConfigError(f"memory: {group_line(sweep, index)} need about {_gigabytes(per_agent * agents)} "
                              f"({_gigabytes(per_agent)} each: parameters, optimiser state and replay) but {where} "
                              f"has {_gigabytes(free)} available, enough for {free // per_agent} agents; sweep "
                              "fewer values or seeds, or lower buffer_size")


def to_json(sweep: Sweep) -> dict:
    """What sweep.json holds."""
    return {"format": SWEEP_FORMAT, "command": sweep.command, "fields": list(sweep.fields),
            "num_seeds": sweep.num_seeds, "groups": [list(g) for g in sweep.groups],
            "configurations": [{"label": c.label, "values": {k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in c.values.items()},
                                "train_args": list(c.train_args), "config": schema.to_dict(c.config)}
                               for c in sweep.configurations]}


def load_sweep(out: Path) -> Sweep:
    """The sweep in directory `out` (its sweep.json); ConfigError (one line) if it is missing or unreadable."""
    path = out / SWEEP_FILE
    try:
        data = json.loads(path.read_text())
        configurations = tuple(
            Configuration({k: tuple(v) if isinstance(v, list) else v for k, v in c["values"].items()},
                          tuple(c["train_args"]), config_from_dict(c["config"]))
            for c in data["configurations"])
        return Sweep(tuple(data["fields"]), configurations, tuple(tuple(g) for g in data["groups"]),
                     int(data["num_seeds"]), data["command"])
    except OSError:
        raise ConfigError(f"--resume: {path} is missing: {out} holds no sweep") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--resume: {path} is not a valid sweep file ({error})") from None


def write_sweep(sweep: Sweep, out: Path) -> None:
    """Write sweep.json atomically."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (SWEEP_FILE + ".tmp")
    tmp.write_text(json.dumps(to_json(sweep), indent=1) + "\n")
    os.replace(tmp, out / SWEEP_FILE)


def remove_sweep(out: Path) -> None:
    """Remove the files of the sweep in `out` (for --overwrite), leaving anything else there alone."""
    from jaxdqn.sweep_results import RESULT_FILES

    for path in [out / SWEEP_FILE, *(out / name for name in RESULT_FILES), *out.glob("group-*")]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_sweep(sweep: Sweep, out: Path, log: Callable[[str], None] = print, resume: bool = False,
              exact_resume: bool = False, progress_bar: bool = False) -> list:
    """Train every group of `sweep` in turn into `out` (with `resume`, skip the groups that finished and resume
    the others from their checkpoints), then write the results; returns the per-configuration results
    (`sweep_results.ConfigResult`). A stopped group raises `TrainingStopped` telling how to resume the sweep."""
    from jaxdqn.config.schema import with_derived
    from jaxdqn.run.checkpoint import NoCheckpoint, load_latest
    from jaxdqn.run.driver import Group, run_training
    from jaxdqn.sweep_results import load_results, write_results

    for index, group in enumerate(sweep.groups):
        group_dir = sweep.group_dir(out, index)
        configs = tuple(sweep.configurations[i].config for i in group)
        if resume and (group_dir / "summary.json").exists():
            log(f"{group_line(sweep, index)}: already trained ({group_dir})")
            continue
        checkpoint = None
        if resume and group_dir.is_dir():
            try:
                checkpoint = load_latest(group_dir, with_derived(configs[0]))
            except NoCheckpoint:
                pass  # stopped before its first save: it starts again
        log(f"{group_line(sweep, index)} -> {group_dir}" + (f" (resuming from step {checkpoint.env_steps})"
                                                            if checkpoint else ""))
        labels = tuple(sweep.tensorboard_label(i) for i in group)
        run_training(configs[0], group_dir, log=log, resume_from=checkpoint, progress_bar=progress_bar,
                     exact_resume=exact_resume, overwrite=True,
                     group=Group(configs, labels, f"jaxdqn sweep --resume {out}"))
    results = load_results(sweep, out)
    write_results(sweep, results, out)
    return results

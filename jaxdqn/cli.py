"""The `jaxdqn` command: `train`, `sweep`, `evaluate`, `plot`, `presets` and `bench`."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import re
import sys
import textwrap
import typing
from pathlib import Path

from jaxdqn.config import schema
from jaxdqn.config.build import config_from_dict, make_config, with_intent
from jaxdqn.config.presets import PRESET_DOCS, PRESET_TITLES, PRESETS, get_preset
from jaxdqn.config.schema import ConfigError
from jaxdqn.config.validate import validate
from jaxdqn.envs import backend_name
from jaxdqn.files import unwritable_reason
from jaxdqn.run.recorder import holds_run

USAGE = """usage: jaxdqn COMMAND [options]   (jaxdqn --version prints the version)

commands:
  train      train a DQN agent: jaxdqn train --preset NAME [--seed S] [--num-seeds K]
             [--total-steps N] [--out DIR] [--FIELD VALUE ...]; `jaxdqn train --help` lists every field;
             continue a stopped run: jaxdqn train --resume DIR [--total-steps N] [--exact]
  sweep      train a grid of configurations x seeds as one program per shape: jaxdqn sweep --preset NAME
             --FIELD V1,V2,... [--FIELD ...] [--num-seeds S] [--random N] [--out DIR]; jaxdqn sweep --resume DIR;
             writes DIR/sweep.csv, sweep.md and sweep.png (`jaxdqn sweep --help`)
  evaluate   play a saved run's policy (at its eval_epsilon; 0 is greedy): jaxdqn evaluate DIR [--episodes N]
             [--video FILE.mp4|.gif] [--seed S] [--epsilon E]; prints mean ± std return per seed and overall
  plot       training curves of runs: jaxdqn plot DIR [DIR ...] --out FILE.png [--window N]
  presets    list the presets, one line each
  launch     train with N local processes on JAX's distributed runtime: jaxdqn launch --processes N -- train
             [train options] (each process trains its share of the agents; process 0 writes the run)
  bench      measure throughput: jaxdqn bench [--tiny] [--devices | --agents-per-device [--preset NAME]]
             [--env-id ID] [--out DIR];
             jaxdqn bench report [--results DIR] [--out FILE.md] [--charts DIR];
             default folder: $XDG_DATA_HOME/jaxdqn/bench, else ~/.local/share/jaxdqn/bench
"""

TRAIN_DESCRIPTION = """Train a DQN agent.

Run options (besides the config fields below):
  --preset NAME   start from a named preset (see `jaxdqn presets`; default cartpole)
  --agent NAME    the agent (default: the preset's): dqn, pqn, tabular, or an import path module:attribute; its
                  settings section, listed below, comes with it
  --out DIR       where config.json, metrics.jsonl, TensorBoard events, checkpoints/ and summary.json go
                  (default runs/PRESET-sSEED-TIME); a directory that already holds a run is refused
  --overwrite     replace the run in --out (its files are removed once the new run has compiled, so a
                  bad value or a failed build leaves it as it was)
  --resume DIR    continue the run in DIR from its latest complete checkpoint, with its config.json: a fresh
                  pool of environments from there (seconds, whatever the run's length); add --exact to
                  replay the pool's logged actions instead (bit for bit on CPU, as long as the run so far);
                  only --total-steps (to raise it) and --exact may be given; Ctrl-C/SIGTERM save a
                  checkpoint and stop
  --coordinator-address HOST:PORT, --num-processes N, --process-id I
                  one of N processes of a run on JAX's distributed runtime (default: JAX_COORDINATOR_ADDRESS,
                  JAX_NUM_PROCESSES, JAX_PROCESS_ID; one process without them); `jaxdqn launch` sets them
  --coordinator-timeout S
                  seconds to wait for the coordinator and the other processes (default 60)
  --cpu-devices N split the CPU into N devices, over which --devices shards the seeds: each device trains its
                  share on a thread of its own, so up to one per core helps (default, in one process: as many
                  devices as divide the seeds, at most one per core and at least 2 seeds on each; else one)
  --cpu-threads N XLA's CPU thread pools sized for N threads (default: one per core; in one process, 1 for the
                  loop of an MLP at most 128 wide on one device that steps EnvPool overlapped with learning,
                  --env-overlap, so EnvPool steps on the other cores, or that trains one agent of a JAX
                  environment or of one EnvPool environment; PJRT_NPROC or NPROC, if set, instead). 1 runs a
                  small network's loop faster (its many small ops lose more to handing work between threads
                  than they gain), a large one's slower; at least --cpu-devices

Every config field below can be overridden; values are environment steps per seed unless stated. Integers
may be written 100000, 100_000 or 1e5. A boolean field is set by its flag alone or with a value:
--dueling or --dueling True; --no-dueling or --dueling False."""


class CliError(Exception):
    """A command-line problem reported as one line."""


def _fail(message: str) -> int:
    print(f"jaxdqn: error: {message}", file=sys.stderr)
    return 2


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a CliError (one line) instead of usage plus exit."""

    def error(self, message):
        raise CliError(f"{self.prog}: {message}")


def _split_run_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="cartpole")
    parser.add_argument("--agent", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--coordinator-address", default=None)
    parser.add_argument("--num-processes", default=None)
    parser.add_argument("--process-id", default=None)
    parser.add_argument("--coordinator-timeout", default="60")
    parser.add_argument("--cpu-devices", default=None)
    parser.add_argument("--cpu-threads", default=None)
    return parser.parse_known_args(argv)


def join_processes(run_options: argparse.Namespace, cfg=None):
    """Split the CPU into `--cpu-devices` devices, and join the run's other processes when there are several
    (`run.distributed`), before anything uses JAX's backend; CliError (one line) for bad options or a coordinator
    that does not answer in time. With `cfg` (the run's config, when it parsed) a single process takes the
    CPU layout that `run.distributed.automatic_cpu_layout` picks for what the flags leave open; returns that
    automatic part (`CpuLayout`, empty when there is none)."""
    from jaxdqn.run.distributed import (CpuLayout, DistributedError, automatic_cpu_layout, initialize,
                                        limit_cpu_threads, processes_from, split_cpu)

    def optional_int(text, name):
        try:
            return None if text is None else parse_int(text)
        except NotAnInteger as error:
            raise CliError(f"--{name}: {error}") from None

    cpu_devices = optional_int(run_options.cpu_devices, "cpu-devices")
    if cpu_devices is not None and cpu_devices < 1:
        raise CliError(f"--cpu-devices: must be an integer >= 1 (got {cpu_devices})")
    cpu_threads = optional_int(run_options.cpu_threads, "cpu-threads")
    if cpu_threads is not None and cpu_threads < (cpu_devices or 1):
        raise CliError(f"--cpu-threads: must be an integer >= 1 and >= --cpu-devices ({cpu_devices or 1}): each CPU "
                       f"device needs a thread of its own (got {cpu_threads})")
    try:
        processes = processes_from(run_options.coordinator_address,
                                   optional_int(run_options.num_processes, "num-processes"),
                                   optional_int(run_options.process_id, "process-id"),
                                   optional_int(run_options.coordinator_timeout, "coordinator-timeout"))
    except DistributedError as error:
        raise CliError(str(error)) from None
    automatic = CpuLayout()
    if cfg is not None and cpu_devices is None and not processes.many:
        automatic = automatic_cpu_layout(cfg, len(os.sched_getaffinity(0)), cpu_threads)
        cpu_devices, cpu_threads = automatic.devices, cpu_threads or automatic.threads
    if cpu_devices is not None and split_cpu(cpu_devices) is None:
        automatic = automatic._replace(devices=None)  # XLA_FLAGS chose, or the backend had started
    try:
        initialize(processes)
    except DistributedError as error:
        raise CliError(str(error)) from None
    if cpu_threads is not None and not limit_cpu_threads(cpu_threads):
        automatic = automatic._replace(threads=None)  # after joining: JAX's distributed runtime must come first
    return automatic


def _parsed_quietly(parse):
    """`parse()`'s config, or None when it fails: the CPU layout is chosen from the config before JAX's backend
    starts, and a config that does not parse is reported later, where it always is."""
    try:
        return parse()
    except (ConfigError, CliError, ValueError, TypeError, OSError, SystemExit):
        return None


def _fail_once(message: str) -> int:
    """`_fail` in process 0 only: every process of a multi-process run meets the same error after joining."""
    from jaxdqn.run.distributed import is_main

    return _fail(message) if is_main() else 2


def parse_train_args(argv: list[str], backend_may_start: bool = True):
    """Return (config, preset name, output directory or None) from `jaxdqn train` arguments.

    The flags are the Config's leaf fields with the chosen agent's settings section; raises ConfigError or
    CliError with a one-line message. With `backend_may_start` False, a JAX environment (gymnax, an import path)
    is not loaded to complete the config from its spec (`with_intent`): loading one may start JAX's backend.
    """
    import tyro

    run_options, field_args = _split_run_options(argv)
    preset = make_config(run_options.preset, run_options.agent)
    _refuse_other_agents_fields(field_args, preset)
    booleans = {name for name, value in schema.flat_dict(preset).items() if isinstance(value, bool)}
    field_args = expand_boolean_flags(field_args, booleans)
    config_type = schema.Config[type(preset.settings)]
    # The sections are checked after parsing, so a bad value reads the same as from Python (tyro would
    # otherwise wrap the ConfigError in its own box, and refuse a literal choice in its own words).
    with schema.unchecked(), _one_line_errors(field_args):
        cfg = tyro.cli(config_type, default=preset, args=field_args, prog="jaxdqn train",
                       description=TRAIN_DESCRIPTION, registry=_literal_registry(),
                       config=(tyro.conf.OmitArgPrefixes, tyro.conf.FlagConversionOff))
    given = {arg[2:].split("=")[0].replace("-", "_") for arg in field_args if arg.startswith("--")}
    cfg = schema.checked(cfg)
    if backend_may_start or backend_name(cfg.env.env_id) != "jax":
        cfg = with_intent(preset, cfg, given)
    return cfg, run_options.preset, run_options.out


def _refuse_other_agents_fields(field_args: list[str], cfg) -> None:
    """CliError naming the agent for a flag that only another built-in agent's settings have (`--buffer-size` with
    pqn), rather than the parser's 'unrecognized option'."""
    from jaxdqn.agents import AGENTS

    own = schema.leaf_paths(type(cfg.settings))
    for arg in field_args:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=")[0].replace("-", "_")
        names = {name, name[3:]} if name.startswith("no_") else {name}  # --no-dueling is the dueling field
        if names & set(own):
            continue
        owners = [agent for agent, entry in AGENTS.items() if names & set(schema.leaf_paths(entry.settings_type))]
        if owners:
            holders = f"the {owners[0]} agent has it" if len(owners) == 1 else \
                f"the {' and '.join(owners)} agents have it"
            raise CliError(f"{arg.split('=')[0]}: not a setting of the {cfg.agent} agent ({holders}); "
                           f"`jaxdqn train --agent {cfg.agent} --help` lists its fields")


def expand_boolean_flags(args: list[str], boolean_fields: set[str]) -> list[str]:
    """`args` with each boolean flag given without a value made explicit: `--dueling` -> `--dueling True`,
    `--no-dueling` -> `--dueling False`; `--dueling False` and every other argument stay as they are."""
    expanded = []
    for i, arg in enumerate(args):
        has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        name = arg[2:].replace("-", "_") if arg.startswith("--") and not has_value else None
        if name in boolean_fields:
            expanded += [arg, "True"]
        elif name is not None and name.startswith("no_") and name[3:] in boolean_fields:
            expanded += ["--" + arg[5:], "False"]
        else:
            expanded.append(arg)
    return expanded


class NotAnInteger(ValueError, argparse.ArgumentTypeError):
    """A command-line integer that cannot be read; argparse and tyro both show its message."""


def parse_int(text: str) -> int:
    """An integer as a user writes one: 100000, 100_000, 1e5 or 2.5e6 (a float literal with a whole value)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise NotAnInteger(f"not an integer: {text!r} (write 100000, 100_000 or 1e5)")
    return int(value)


def _literal_registry():
    """A tyro registry that reads a Literal field as text, so that the config's check judges the choice, and
    an int field with `parse_int`."""
    import tyro

    registry = tyro.constructors.ConstructorRegistry()

    @registry.primitive_rule
    def int_as_written(info):
        if info.type is not int:
            return None
        return tyro.constructors.PrimitiveConstructorSpec(
            nargs=1, metavar="INT", instance_from_str=lambda args: parse_int(args[0]),
            is_instance=lambda value: isinstance(value, int) and not isinstance(value, bool),
            str_from_instance=lambda value: [str(value)])

    @registry.primitive_rule
    def literal_as_text(info):
        if info.type_origin is not typing.Literal:
            return None
        choices = [str(choice) for choice in typing.get_args(info.type)]
        return tyro.constructors.PrimitiveConstructorSpec(
            nargs=1, metavar="{" + ",".join(choices) + "}", instance_from_str=lambda args: args[0],
            is_instance=lambda value: isinstance(value, str), str_from_instance=lambda value: [str(value)])

    return registry


@contextlib.contextmanager
def _one_line_errors(args: list[str]):
    """Turn tyro's boxed parse error (a bad number, an unknown flag) into a CliError of one line."""
    if "-h" in args or "--help" in args:
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
        lines = []
        for line in captured.getvalue().splitlines():
            text = line.strip().strip("│").strip()
            if line.strip().startswith("│") and set(text) <= {"─"}:
                break  # the rule under the message; tyro's hints follow
            if line.strip().startswith("│") and text:
                lines.append(text)
        message = " ".join(lines) or "invalid arguments; see `jaxdqn train --help`"
        # a section that checks itself even inside `unchecked` (an agent's own settings): its ConfigError alone
        raise CliError(re.sub(r"^Error parsing (?=--)|^Error parsing [\w.]+: (?=\w+: )", "", message)) from None


def check_out_dir(out: Path, overwrite: bool = False) -> None:
    """Refuse an output directory that already holds a run (unless `overwrite`), so nothing saved is
    overwritten by accident."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out: {out} exists and is not a directory")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CliError(f"--out: {existing} is a file, so {out} cannot be created under it")
    reason = unwritable_reason(existing)
    if reason is not None:
        raise CliError(f"--out: {existing} is not writable ({reason}), so {out} cannot be created there")
    if holds_run(out) and not overwrite:
        raise CliError(f"--out: {out} already holds a run; choose a new directory, resume it (--resume {out}) or "
                       "replace it (--overwrite)")


def parse_resume_args(run_dir: str, field_args: list[str]):
    """The config of the run in `run_dir` with an optional raised --total-steps, its latest checkpoint, and whether
    --exact was given.

    Reads only; raises CliError, ConfigError or CheckpointError with a one-line message.
    """
    from jaxdqn.run.checkpoint import CheckpointError, NoCheckpoint, load_latest

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--total-steps", "--total_steps", type=parse_int, default=None)
    parser.add_argument("--exact", action="store_true")
    known, unknown = parser.parse_known_args(field_args)
    if unknown:
        raise CliError(f"--resume: only --total-steps and --exact may be given with --resume (got "
                       f"{' '.join(unknown)}); the run's config.json is used as saved")
    path = Path(run_dir)
    if not path.is_dir():
        raise CliError(f"--resume: {path} is not a directory")
    try:
        cfg = config_from_dict(json.loads((path / "config.json").read_text()))
    except OSError:
        raise CliError(f"--resume: {path / 'config.json'} is missing") from None
    except (ValueError, TypeError) as error:
        raise CliError(f"--resume: {path / 'config.json'} is not a valid jaxdqn config ({error})") from None
    if known.total_steps is not None:
        if known.total_steps < cfg.loop.total_steps:
            raise CliError(f"--total-steps: can only be raised on resume (the run has {cfg.loop.total_steps}, "
                           f"got {known.total_steps})")
        # the schedules that span the run keep the length they started with
        cfg = schema.replace(cfg, total_steps=known.total_steps,
                             schedule_steps=cfg.loop.schedule_steps or schema.plan(cfg).total_env_steps)
    validate(cfg)
    try:
        checkpoint = load_latest(path, cfg)
    except NoCheckpoint as error:
        raise CliError(f"--resume: {error}: the run stopped before its first save; start it again with "
                       f"jaxdqn train --out {path} --overwrite [...]") from None
    except CheckpointError as error:
        raise CliError(f"--resume: {error}") from None
    import jax

    if checkpoint.processes != jax.process_count():
        raise CliError(f"--resume: checkpoint {checkpoint.path} was saved by {checkpoint.processes} process(es) and "
                       f"this run has {jax.process_count()}; resume it with as many ("
                       + (f"jaxdqn launch --processes {checkpoint.processes} -- train --resume ...)"
                          if checkpoint.processes > 1 else "jaxdqn train --resume ...)"))
    if checkpoint.env_steps >= schema.plan(cfg).total_env_steps and (path / "summary.json").exists():
        raise CliError(f"--resume: {path} already reached its {cfg.loop.total_steps} steps (checkpoint at step "
                       f"{checkpoint.env_steps}); pass a larger --total-steps to continue it")
    return cfg, checkpoint, known.exact


def _layout_note(automatic) -> str:
    """What the header line says of the CPU layout chosen for the run (`join_processes`), '' for none."""
    notes = []
    if automatic.devices:
        notes.append(f"the CPU split into {automatic.devices} devices, a core each (--cpu-devices 1 for one)")
    if automatic.threads:
        notes.append(f"XLA's CPU pool on {automatic.threads} thread, for a small network's loop (--cpu-threads to "
                     "choose)")
    return "".join(f"; {note}" for note in notes)


def resume_command(run_dir: str, field_args: list[str], automatic) -> int:
    """`jaxdqn train --resume DIR`: check the run and its checkpoint, then continue it exactly; `automatic` is
    the CPU layout chosen for it (`join_processes`)."""
    from jaxdqn.run.checkpoint import CheckpointError

    from jaxdqn.run.distributed import is_main

    try:
        cfg, checkpoint, exact = parse_resume_args(run_dir, field_args)
    except (ConfigError, CliError) as error:
        return _fail_once(str(error))
    from jaxdqn.run.driver import TrainingStopped, run_training

    if is_main():
        print(f"jaxdqn train: resuming {run_dir} ({cfg.env.env_id}, {cfg.loop.num_seeds} seed(s) x "
              f"{cfg.env.num_envs} env(s)) from step {checkpoint.env_steps} to {cfg.loop.total_steps}"
              f"{_layout_note(automatic)}", flush=True)
    try:
        run_training(cfg, run_dir, log=lambda line: print(line, flush=True), resume_from=checkpoint,
                     progress_bar=sys.stdout.isatty(), exact_resume=exact)
    except CheckpointError as error:
        return _fail(f"--resume: {error}")
    except TrainingStopped as stopped:
        if is_main():
            print(f"jaxdqn: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    return 0


def train_command(argv: list[str]) -> int:
    """`jaxdqn train`: validate everything, then train and write the run directory."""
    run_options, field_args = _split_run_options(argv)
    if run_options.resume is not None:
        early = _parsed_quietly(lambda: config_from_dict(json.loads(
            (Path(run_options.resume) / "config.json").read_text())))
    else:
        early = None if {"-h", "--help"} & set(argv) else _parsed_quietly(
            lambda: parse_train_args(argv, backend_may_start=False)[0])
    try:
        automatic = join_processes(run_options, early)
    except CliError as error:
        return _fail(str(error))
    from jaxdqn.run.distributed import is_main

    if run_options.resume is not None:
        if "--preset" in argv or run_options.out is not None or run_options.overwrite:
            return _fail("--resume: --preset, --out and --overwrite cannot be combined with --resume (the run's "
                         "own config.json and directory are used)")
        return resume_command(run_options.resume, field_args, automatic)
    try:
        cfg, preset, out = parse_train_args(argv)
        validate(cfg)
        if out is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = f"runs/{preset}-s{cfg.loop.seed}-{stamp}"
        out_path = Path(out)
        if is_main():  # the one that writes
            check_out_dir(out_path, run_options.overwrite)
    except (ConfigError, CliError) as error:
        return _fail_once(str(error))
    from jaxdqn.run.driver import TrainingStopped, run_training

    if is_main():
        print(f"jaxdqn train: preset {preset}, {cfg.env.env_id}, {cfg.loop.num_seeds} seed(s) x {cfg.env.num_envs} "
              f"env(s), {cfg.loop.total_steps} steps per seed -> {out_path}{_layout_note(automatic)}", flush=True)
    try:
        run_training(cfg, out_path, log=lambda line: print(line, flush=True), progress_bar=sys.stdout.isatty(),
                     overwrite=run_options.overwrite)
    except TrainingStopped as stopped:
        if is_main():
            print(f"jaxdqn: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    return 0


def _restore_params(run_dir: Path):
    """(Config, params with an agent axis) of the run's latest checkpoint; CliError (one line) if unreadable."""
    from jaxdqn.run.checkpoint import CheckpointError, restore_params

    try:
        return restore_params(run_dir)
    except (OSError, ValueError, CheckpointError) as error:
        raise CliError(f"{run_dir}: cannot load a checkpoint: {error}") from None


def evaluate_command(argv: list[str]) -> int:
    """`jaxdqn evaluate`: load a run's latest checkpoint and print its policy's returns."""
    parser = _OneLineParser(prog="jaxdqn evaluate", description=(
        "Play the policy of a saved run at its eval_epsilon (0 is greedy; --epsilon changes it) and print mean ± "
        "std return."))
    parser.add_argument("run_dir", metavar="DIR", help="run directory written by `jaxdqn train`")
    parser.add_argument("--episodes", type=parse_int, default=None,
                        help="episodes per seed (default: the run's eval_episodes)")
    parser.add_argument("--video", default=None, metavar="PATH",
                        help="record seed 0's first episode to PATH (.mp4 or .gif) from the environment's render")
    parser.add_argument("--seed", type=parse_int, default=None,
                        help="run seed the evaluation environments are drawn from (default: the run's seed, whose "
                             "evaluation stream the end of training used)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="epsilon of the evaluation policy, in [0, 1] (default: the run's eval_epsilon)")
    try:
        args = parser.parse_args(argv)
        if args.episodes is not None and args.episodes < 1:
            raise CliError(f"--episodes: must be an integer > 0 (got {args.episodes})")
        if args.seed is not None and not 0 <= args.seed <= schema.INT32_MAX:
            raise CliError(f"--seed: must be in [0, {schema.INT32_MAX}] (got {args.seed})")
        if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
            raise CliError(f"--epsilon: must be in [0, 1] (got {args.epsilon})")
        run_dir = Path(args.run_dir)
        if not run_dir.is_dir():
            raise CliError(f"{run_dir}: no such run directory")
        from jaxdqn.evaluate import EvaluationError, check_video_path

        try:
            video = check_video_path(args.video) if args.video is not None else None
        except EvaluationError as error:
            raise CliError(str(error)) from None
        cfg, params = _restore_params(run_dir)
    except CliError as error:
        return _fail(str(error))
    from jaxdqn.evaluate import EvaluationError, evaluate_policy, format_returns

    if args.epsilon is not None:
        cfg = schema.replace(cfg, eval_epsilon=args.epsilon)
    episodes = args.episodes if args.episodes is not None else cfg.loop.eval_episodes
    seed = args.seed if args.seed is not None else cfg.loop.seed
    print(f"jaxdqn evaluate: {run_dir}, {cfg.env.env_id}, {episodes} episode(s) per seed, "
          f"epsilon {cfg.loop.eval_epsilon}, seed {seed}", flush=True)
    try:
        # a sweep group's checkpoint holds num_seeds agents of each of its configurations, configuration-major
        import jax

        seed_indices = [agent % cfg.loop.num_seeds for agent in range(jax.tree.leaves(params)[0].shape[0])]
        result = evaluate_policy(cfg, params, episodes, seed, video, seed_indices=seed_indices)
    except EvaluationError as error:
        return _fail(str(error))
    for line in format_returns(result):
        print(line)
    if video is not None:
        print(f"video: {video} ({result.video_frames} frames at {result.video_fps:g} fps: reset + "
              f"{int(result.lengths[0, 0])} steps of seed 0's first episode, return {result.returns[0, 0]:.2f})")
    return 0


def plot_command(argv: list[str]) -> int:
    """`jaxdqn plot`: draw the training curves of one or more run directories into one image."""
    from jaxdqn.plot import PLOT_EXTENSIONS, ROLLING_WINDOW, PlotError, plot_runs

    parser = _OneLineParser(prog="jaxdqn plot", description=(
        "Episode return with its rolling mean (mean ± std across seeds), TD loss, epsilon and a kernel "
        "density of episode returns, one colour per run (labelled by directory name)."))
    parser.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories written by `jaxdqn train`")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help=f"image to write ({', '.join(PLOT_EXTENSIONS)})")
    parser.add_argument("--window", type=parse_int, default=ROLLING_WINDOW,
                        help=f"episodes in the rolling mean (default {ROLLING_WINDOW})")
    try:
        args = parser.parse_args(argv)
        out = plot_runs(args.run_dirs, args.out, args.window)
    except (CliError, PlotError) as error:
        return _fail(str(error))
    print(f"wrote {out}")
    return 0


def presets_command(argv: list[str]) -> int:
    """`jaxdqn presets`: one line per preset; `jaxdqn presets NAME`: its description and its whole config."""
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        return _fail(f"presets takes at most one preset name (got {' '.join(argv)}); allowed: "
                     f"{', '.join(sorted(PRESETS))}")
    if argv:
        try:
            cfg = get_preset(argv[0])
        except ConfigError as error:
            return _fail(str(error))
        print(f"{argv[0]}: {PRESET_TITLES[argv[0]]}\n")
        print(textwrap.fill(PRESET_DOCS[argv[0]], width=100) + "\n")
        print(f"config (override a field with --FIELD VALUE; `jaxdqn train --preset {argv[0]} --help` explains each):")
        for line in _config_lines(schema.to_dict(cfg)):
            print(line)
        return 0
    width = max(len(name) for name in PRESETS)
    for name in sorted(PRESETS):
        cfg = PRESETS[name]
        print(f"{name:<{width}}  {cfg.env.env_id:<15}  {_short_count(cfg.loop.total_steps):>4} steps  "
              f"{PRESET_TITLES[name]}")
    print("`jaxdqn presets NAME` shows one preset's description and whole config")
    return 0


def _short_count(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{unit}"
    return str(n)


def _config_lines(section: dict, indent: str = "  ") -> list[str]:
    lines = []
    for key, value in section.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key}:", *_config_lines(value, indent + "  ")]
        elif key != "format":
            lines.append(f"{indent}{key} = {value}")
    return lines


def bench_command(argv: list[str]) -> int:
    """`jaxdqn bench`: run the throughput harness; `jaxdqn bench report`: table and charts from results."""
    from jaxdqn.bench import DEFAULT_RESULTS_HELP, default_results_dir

    default_dir = f"{DEFAULT_RESULTS_HELP}; here {default_results_dir()}"
    if argv and argv[0] == "report":
        parser = argparse.ArgumentParser(prog="jaxdqn bench report",
                                         description="Markdown table and PNG charts from stored bench results.")
        parser.add_argument("--results", type=Path, default=None,
                            help=f"folder of bench-*.json files (default: {default_dir})")
        parser.add_argument("--out", type=Path, default=None,
                            help="Markdown file to write (default: RESULTS/REPORT.md)")
        parser.add_argument("--charts", default=None, help="folder for the PNG charts (default: beside --out)")
        parser.add_argument("--include-tiny", action="store_true", help="also report results of --tiny runs")
        args = parser.parse_args(argv[1:])
        results = default_results_dir() if args.results is None else args.results
        from jaxdqn.bench.report import ReportError, write_report

        try:
            table, pngs = write_report(results, args.out or results / "REPORT.md", args.charts, args.include_tiny)
        except ReportError as error:
            return _fail(str(error))
        print(f"wrote {table} and {', '.join(str(p) for p in pngs)}")
        return 0
    from jaxdqn.bench.devices import DEVICES_ENV_ID

    parser = argparse.ArgumentParser(prog="jaxdqn bench", description="Measure jaxdqn throughput on this machine.")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; for tests and smoke checks)")
    parser.add_argument("--out", type=Path, default=None, help=f"folder for the JSON result (default: {default_dir})")
    parser.add_argument("--devices", action="store_true",
                        help="instead: agents sharded over 1, 2, 4, ... of the local devices, with the scaling "
                             "efficiency U(n) / (n U(1)) (devices-*.json)")
    parser.add_argument("--agents-per-device", action="store_true",
                        help="instead: how many agents of --preset train at once on one device (8, 16, 32, ... "
                             "until one count does not fit), and their agent-steps/s (agents-per-device-*.json)")
    parser.add_argument("--env-id", default=DEVICES_ENV_ID,
                        help=f"with --devices or --agents-per-device: the environment the agents step (default "
                             f"{DEVICES_ENV_ID}; an EnvPool id such as CartPole-v1 gives each device a pool of its own)")
    parser.add_argument("--preset", default="cartpole",
                        help="with --agents-per-device: the agents' preset (default cartpole, with 10 environments)")
    args = parser.parse_args(argv)
    if args.devices and args.agents_per_device:
        return _fail("--agents-per-device: measures one device; give it or --devices, not both")
    if args.env_id != DEVICES_ENV_ID and not (args.devices or args.agents_per_device):
        return _fail(f"--env-id: only with --devices or --agents-per-device (got {args.env_id})")
    if args.preset != "cartpole" and not args.agents_per_device:
        return _fail(f"--preset: only with --agents-per-device (got {args.preset})")
    if args.agents_per_device:
        from jaxdqn.bench.devices import bench_agents_per_device

        bench_agents_per_device("tiny" if args.tiny else "full",
                                default_results_dir() if args.out is None else args.out,
                                command=" ".join(["jaxdqn", "bench", *argv]), log=lambda line: print(line, flush=True),
                                env_id=args.env_id, preset=args.preset)
        return 0
    if args.devices:
        from jaxdqn.bench.devices import BenchRefused, bench_devices

        try:
            bench_devices("tiny" if args.tiny else "full", default_results_dir() if args.out is None else args.out,
                          command=" ".join(["jaxdqn", "bench", *argv]), log=lambda line: print(line, flush=True),
                          env_id=args.env_id)
        except BenchRefused as error:
            return _fail(str(error))
        return 0
    from jaxdqn.bench.harness import run_bench

    run_bench("tiny" if args.tiny else "full", args.out, command=" ".join(["jaxdqn", "bench", *argv]),
              log=lambda line: print(line, flush=True))
    return 0


SWEEP_DESCRIPTION = """Train a grid (or a random sample) of configurations x seeds, as one compiled program
per group of configurations that share their shapes.

  jaxdqn sweep --preset cartpole --learning-rate 1e-4,3e-4,1e-3 --gamma 0.98,0.99 --num-seeds 4 --out DIR
  jaxdqn sweep --preset cartpole --random 16 --learning-rate 1e-4:1e-3:log --target-tau 0.5:1 --out DIR
  jaxdqn sweep --resume DIR

Every `jaxdqn train` field is an option: a list V1,V2,... sweeps it (a field that is itself a list takes
alternatives separated by /: --hidden-sizes 64,64/128), one value sets it for every configuration. With
--random N, a range LOW:HIGH (LOW:HIGH:log for log-uniform) or a list is drawn from, N times, reproducibly from
--sweep-seed. Run-time values (learning rate, gamma, the epsilon schedule's numbers, target period and tau, Huber
delta, clips, PER alpha/beta/eps, tabular alpha, PQN's lambda) share one program; a field that changes shapes
or the program (network sizes, batch or buffer size, environments, ...) splits the sweep into groups that
run one after another. Writes DIR/sweep.csv, DIR/sweep.md (ranked), DIR/sweep.png and one run directory per
group (DIR/group-N, with one TensorBoard run per configuration); Ctrl-C saves a checkpoint, and --resume DIR
continues the sweep."""


def _sweep_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = _OneLineParser(prog="jaxdqn sweep", add_help=False)
    parser.add_argument("--preset", default="cartpole")
    parser.add_argument("--agent", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--exact", action="store_true")
    parser.add_argument("--random", type=parse_int, default=None)
    parser.add_argument("--sweep-seed", type=parse_int, default=0)
    parser.add_argument("--cpu-devices", type=parse_int, default=None)
    parser.add_argument("-h", "--help", action="store_true")
    return parser.parse_known_args(argv)


def _sweep_help() -> str:
    return (f"usage: jaxdqn sweep [--preset NAME] [--agent NAME] [--FIELD V1,V2,... ...] [--num-seeds S] [--out DIR]\n"
            f"                    [--random N [--sweep-seed K]] [--overwrite] | --resume DIR [--exact]\n\n"
            f"{SWEEP_DESCRIPTION}\n\noptions:\n"
            "  --preset NAME     the preset every configuration starts from (default cartpole)\n"
            "  --agent NAME      the agent (default: the preset's)\n"
            "  --out DIR         the sweep's directory (default sweeps/PRESET-TIME); one that holds a sweep is refused\n"
            "  --overwrite       replace the sweep in --out (removed once every configuration has been checked)\n"
            "  --random N        draw N configurations from the ranges and lists instead of the grid\n"
            "  --sweep-seed K    the seed of those draws (default 0)\n"
            "  --cpu-devices N   on a CPU, split it into N devices, each training its share of a group's agents on\n"
            "                    a thread of its own (default: one per core; 1: one device; see --devices)\n"
            "  --resume DIR      continue a stopped sweep: finished groups are kept, the others resume from their\n"
            "                    checkpoints (--exact: replay their pools' actions, see `jaxdqn train --help`)\n"
            "  `jaxdqn train --preset NAME --help` describes every field\n")


def sweep_command(argv: list[str]) -> int:
    """`jaxdqn sweep`: plan and check every configuration, then train the groups and write the results."""
    try:
        options, field_args = _sweep_options(argv)
    except CliError as error:
        return _fail(str(error))
    if options.help:
        print(_sweep_help(), end="")
        return 0
    from jaxdqn import sweep as sweeps
    from jaxdqn.run.distributed import split_cpu

    try:
        if options.cpu_devices is not None and options.cpu_devices < 1:
            raise CliError(f"--cpu-devices: must be an integer >= 1 (got {options.cpu_devices})")
        split_cpu(options.cpu_devices)  # before anything below asks JAX for its devices
        if options.resume is not None:
            if field_args or options.out or options.overwrite or options.random is not None or "--preset" in argv:
                raise CliError("--resume: only --exact and --cpu-devices may be given with --resume (the sweep's own "
                               "sweep.json is used)")
            out = Path(options.resume)
            plan = sweeps.load_sweep(out)
        else:
            if options.exact:
                raise CliError("--exact: only with --resume")
            if options.random is not None and options.random < 1:
                raise CliError(f"--random: must be an integer > 0 (got {options.random})")
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path(options.out or f"sweeps/{options.preset}-{stamp}")
            check_out_dir(out, overwrite=True)
            if (out / sweeps.SWEEP_FILE).exists() and not options.overwrite:
                raise CliError(f"--out: {out} already holds a sweep; choose a new directory, resume it "
                               f"(jaxdqn sweep --resume {out}) or replace it (--overwrite)")
            if holds_run(out):
                raise CliError(f"--out: {out} holds a training run; choose a new directory for the sweep")
            plan = sweeps.plan_sweep(field_args, options.preset, options.agent, options.random, options.sweep_seed,
                                     " ".join(["jaxdqn", "sweep", *argv]))
        sweeps.check_groups(plan)
    except (ConfigError, CliError) as error:
        return _fail(str(error))
    from jaxdqn.run.checkpoint import CheckpointError
    from jaxdqn.run.driver import TrainingStopped
    from jaxdqn.sweep_results import ranked_table

    agents = len(plan.configurations) * plan.num_seeds
    print(f"jaxdqn sweep: {len(plan.configurations)} configurations x {plan.num_seeds} seed(s) = {agents} agents in "
          f"{len(plan.groups)} compiled group(s) -> {out}", flush=True)
    splitting = sweeps.splitting_fields(plan)
    if len(plan.groups) > 1:
        print(f"{', '.join(splitting) or 'the configurations'} change(s) the program: {len(plan.groups)} groups, "
              "trained one after another", flush=True)
    if options.resume is None:
        if options.overwrite:
            sweeps.remove_sweep(out)
        sweeps.write_sweep(plan, out)
    try:
        results = sweeps.run_sweep(plan, out, log=lambda line: print(line, flush=True), resume=options.resume is not None,
                                   exact_resume=options.exact, progress_bar=sys.stdout.isatty())
    except TrainingStopped as stopped:
        print(f"jaxdqn: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    except (ConfigError, CheckpointError) as error:
        return _fail(str(error))
    print(ranked_table(plan, results), end="")
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'} and {out / 'sweep.png'}")
    return 0


LAUNCH_DESCRIPTION = """Train one run with N processes on this machine, on JAX's distributed runtime (jax.distributed;
CPU collectives through gloo), as N hosts would: each process owns its local devices and trains its share of the
agents, and process 0 writes the run directory and prints.

  jaxdqn launch --processes 2 -- train --preset cartpole --env-id gymnax/CartPole-v1 --num-seeds 4 --out DIR
  jaxdqn launch --processes 2 -- train --resume DIR

On several hosts, run `jaxdqn train` on each with --coordinator-address HOST:PORT (process 0's), --num-processes
and --process-id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID). When a process fails, the
launcher stops the others and exits with its code."""


def launch_command(argv: list[str]) -> int:
    """`jaxdqn launch --processes N -- train ...`: N local processes of one run (see LAUNCH_DESCRIPTION)."""
    import signal
    import socket
    import subprocess
    import time

    if "--" not in argv:
        if argv and argv[0] in ("-h", "--help"):
            print(LAUNCH_DESCRIPTION)
            return 0
        return _fail("launch: give the command after --: jaxdqn launch --processes N -- train [options]")
    split = argv.index("--")
    parser = _OneLineParser(prog="jaxdqn launch", add_help=False)
    parser.add_argument("--processes", required=True)
    parser.add_argument("--port", default=None)
    try:
        options = parser.parse_args(argv[:split])
        count = parse_int(options.processes)
        port = None if options.port is None else parse_int(options.port)
    except (CliError, NotAnInteger) as error:
        return _fail(f"launch: {error}")
    command = argv[split + 1:]
    if count < 1:
        return _fail(f"launch: --processes must be an integer >= 1 (got {count})")
    if command[:1] != ["train"]:
        return _fail(f"launch: the command must be train (got {' '.join(command[:1]) or 'nothing'})")
    taken = {"--coordinator-address", "--num-processes", "--process-id"} & {arg.split("=")[0] for arg in command}
    if taken:
        return _fail(f"launch: {', '.join(sorted(taken))} are set by the launcher for each process")
    if port is None:
        with socket.socket() as probe:  # a free port for the coordinator
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    children = []
    for index in range(count):
        env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": str(count),
               "JAX_PROCESS_ID": str(index)}
        children.append(subprocess.Popen([sys.executable, "-m", "jaxdqn.cli", *command], env=env,
                                          stdout=None if index == 0 else subprocess.DEVNULL))

    def forward(signum, _frame):  # Ctrl-C reaches the children from the terminal; a SIGTERM is passed on
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward), signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            codes = [child.poll() for child in children]
            failed = [code for code in codes if code not in (None, 0)]
            if failed or all(code == 0 for code in codes):
                break
            time.sleep(0.1)
        stopped_by_signal = [code for code in failed if code in (128 + signal.SIGINT, 128 + signal.SIGTERM)]
        if stopped_by_signal:  # every process stops after the same chunk, and process 0 saves: let them finish
            for child in children:
                child.wait()
            return stopped_by_signal[0]
        if failed:  # the others would wait for it in a collective: stop them
            for child in children:
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + 10
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
            return failed[0]
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


COMMANDS = {"train": train_command, "launch": launch_command, "sweep": sweep_command, "evaluate": evaluate_command, "plot": plot_command,
            "presets": presets_command, "bench": bench_command}


def version() -> str:
    """The installed jaxdqn's version (the package metadata's; the source's own when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("jaxdqn")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jaxdqn` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):
        print(f"jaxdqn {version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return _fail(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    try:
        return COMMANDS[command](rest)
    except BrokenPipeError:
        # the reader of a pipe stopped early (`jaxdqn presets | head`): nothing is wrong, and nothing more to print
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

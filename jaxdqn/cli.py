"""The `jaxdqn` command: `train` and `presets`."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import sys
from pathlib import Path

from jaxdqn import config as config_lib

USAGE = """usage: jaxdqn COMMAND [options]

commands:
  train      train a DQN agent: jaxdqn train --preset NAME [--seed S] [--num-seeds K]
             [--total-steps N] [--out DIR] [--FIELD VALUE ...]; `jaxdqn train --help` lists every field;
             continue a stopped run: jaxdqn train --resume DIR [--total-steps N]
  presets    list the presets, one line each
  bench      measure throughput: jaxdqn bench [--tiny] [--out DIR];
             jaxdqn bench report [--results DIR] [--out FILE.md] [--charts DIR]
"""

TRAIN_DESCRIPTION = """Train a DQN agent.

Run options (besides the config fields below):
  --preset NAME   start from a named preset (see `jaxdqn presets`; default cartpole)
  --out DIR       where config.json, metrics.jsonl, TensorBoard events, checkpoints/ and summary.json go
                  (default runs/PRESET-sSEED-TIME); a directory that already holds a run is refused
  --resume DIR    continue the run in DIR exactly from its latest complete checkpoint, with its config.json;
                  only --total-steps may be given (to raise it); Ctrl-C/SIGTERM save a checkpoint and stop

Every config field below can be overridden; values are environment steps per seed unless stated."""


class CliError(Exception):
    """A command-line problem reported as one line."""


def _fail(message: str) -> int:
    print(f"jaxdqn: error: {message}", file=sys.stderr)
    return 2


def _split_run_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="cartpole")
    parser.add_argument("--out", default=None)
    parser.add_argument("--resume", default=None)
    return parser.parse_known_args(argv)


def parse_train_args(argv: list[str]):
    """Return (config, preset name, output directory or None) from `jaxdqn train` arguments."""
    import tyro

    run_options, field_args = _split_run_options(argv)
    preset = config_lib.get_preset(run_options.preset)
    cfg = tyro.cli(config_lib.Config, default=preset, args=field_args, prog="jaxdqn train",
                   description=TRAIN_DESCRIPTION, config=(tyro.conf.FlagConversionOff,))
    return cfg, run_options.preset, run_options.out


def check_out_dir(out: Path) -> None:
    """Refuse an output directory that already holds a run, so nothing saved is overwritten."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out: {out} exists and is not a directory")
    run_files = ("config.json", "metrics.jsonl", "summary.json", "checkpoints")
    if out.is_dir() and any((out / name).exists() for name in run_files):
        raise CliError(f"--out: {out} already holds a run; choose a new directory")


def parse_resume_args(run_dir: str, field_args: list[str]):
    """The config of the run in `run_dir` with an optional raised --total-steps, and its latest checkpoint.

    Reads only; raises CliError, ConfigError or CheckpointError with a one-line message.
    """
    from jaxdqn.checkpoint import CheckpointError, load_latest

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--total-steps", "--total_steps", type=int, default=None)
    known, unknown = parser.parse_known_args(field_args)
    if unknown:
        raise CliError(f"--resume: only --total-steps may be given with --resume (got {' '.join(unknown)}); "
                       "the run's config.json is used as saved")
    path = Path(run_dir)
    if not path.is_dir():
        raise CliError(f"--resume: {path} is not a directory")
    try:
        saved = json.loads((path / "config.json").read_text())
        cfg = config_lib.from_dict(saved)
    except OSError:
        raise CliError(f"--resume: {path / 'config.json'} is missing") from None
    except (ValueError, TypeError) as error:
        raise CliError(f"--resume: {path / 'config.json'} is not a valid jaxdqn config ({error})") from None
    if known.total_steps is not None:
        if known.total_steps < cfg.total_steps:
            raise CliError(f"--total-steps: can only be raised on resume (the run has {cfg.total_steps}, "
                           f"got {known.total_steps})")
        cfg = dataclasses.replace(cfg, total_steps=known.total_steps)
    config_lib.validate(cfg)
    try:
        checkpoint = load_latest(path, cfg)
    except CheckpointError as error:
        raise CliError(f"--resume: {error}") from None
    iters_per_period, _ = config_lib.periods(cfg)
    steps_per_period = iters_per_period * cfg.num_envs
    if checkpoint.env_steps >= math.ceil(cfg.total_steps / steps_per_period) * steps_per_period:
        raise CliError(f"--resume: {path} already reached its {cfg.total_steps} steps (checkpoint at step "
                       f"{checkpoint.env_steps}); pass a larger --total-steps to continue it")
    return cfg, checkpoint


def resume_command(run_dir: str, field_args: list[str]) -> int:
    """`jaxdqn train --resume DIR`: check the run and its checkpoint, then continue it exactly."""
    from jaxdqn.checkpoint import CheckpointError

    try:
        cfg, checkpoint = parse_resume_args(run_dir, field_args)
    except (config_lib.ConfigError, CliError) as error:
        return _fail(str(error))
    from jaxdqn.train import TrainingStopped, run_training

    print(f"jaxdqn train: resuming {run_dir} ({cfg.env_id}, {cfg.num_seeds} seed(s) x {cfg.num_envs} env(s)) "
          f"from step {checkpoint.env_steps} to {cfg.total_steps}", flush=True)
    try:
        run_training(cfg, run_dir, log=lambda line: print(line, flush=True), resume_from=checkpoint,
                     progress_bar=sys.stdout.isatty())
    except CheckpointError as error:
        return _fail(f"--resume: {error}")
    except TrainingStopped as stopped:
        print(f"jaxdqn: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    return 0


def train_command(argv: list[str]) -> int:
    """`jaxdqn train`: validate everything, then train and write the run directory."""
    run_options, field_args = _split_run_options(argv)
    if run_options.resume is not None:
        if "--preset" in argv or run_options.out is not None:
            return _fail("--resume: --preset and --out cannot be combined with --resume (the run's own "
                         "config.json and directory are used)")
        return resume_command(run_options.resume, field_args)
    try:
        cfg, preset, out = parse_train_args(argv)
        config_lib.validate(cfg)
        if out is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = f"runs/{preset}-s{cfg.seed}-{stamp}"
        out_path = Path(out)
        check_out_dir(out_path)
    except (config_lib.ConfigError, CliError) as error:
        return _fail(str(error))
    from jaxdqn.train import TrainingStopped, run_training

    print(f"jaxdqn train: preset {preset}, {cfg.env_id}, {cfg.num_seeds} seed(s) x {cfg.num_envs} env(s), "
          f"{cfg.total_steps} steps per seed -> {out_path}", flush=True)
    try:
        run_training(cfg, out_path, log=lambda line: print(line, flush=True), progress_bar=sys.stdout.isatty())
    except TrainingStopped as stopped:
        print(f"jaxdqn: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    return 0


def presets_command(argv: list[str]) -> int:
    """`jaxdqn presets`: one line per preset."""
    if argv:
        return _fail(f"presets takes no arguments (got {' '.join(argv)})")
    width = max(len(name) for name in config_lib.PRESETS)
    for name in sorted(config_lib.PRESETS):
        print(f"{name:<{width}}  {config_lib.PRESET_DOCS[name]}")
    return 0


def bench_command(argv: list[str]) -> int:
    """`jaxdqn bench`: run the throughput harness; `jaxdqn bench report`: table and charts from results."""
    if argv and argv[0] == "report":
        parser = argparse.ArgumentParser(prog="jaxdqn bench report",
                                         description="Markdown table and PNG charts from stored bench results.")
        parser.add_argument("--results", default="benchmarks/results", help="folder of bench-*.json files")
        parser.add_argument("--out", default="benchmarks/results/REPORT.md", help="Markdown file to write")
        parser.add_argument("--charts", default=None, help="folder for the PNG charts (default: beside --out)")
        parser.add_argument("--include-tiny", action="store_true", help="also report results of --tiny runs")
        args = parser.parse_args(argv[1:])
        from benchmarks.report import ReportError, write_report

        try:
            table, pngs = write_report(args.results, args.out, args.charts, args.include_tiny)
        except ReportError as error:
            return _fail(str(error))
        print(f"wrote {table} and {', '.join(str(p) for p in pngs)}")
        return 0
    parser = argparse.ArgumentParser(prog="jaxdqn bench", description="Measure jaxdqn throughput on this machine.")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; for tests and smoke checks)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON result")
    args = parser.parse_args(argv)
    from benchmarks.harness import run_bench

    run_bench("tiny" if args.tiny else "full", args.out, command=" ".join(["jaxdqn", "bench", *argv]),
              log=lambda line: print(line, flush=True))
    return 0


COMMANDS = {"train": train_command, "presets": presets_command, "bench": bench_command}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jaxdqn` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return _fail(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())

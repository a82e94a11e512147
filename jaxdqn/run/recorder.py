"""Everything a run writes while it trains: metrics.jsonl, episodes.csv, TensorBoard events, the Weights &
Biases run (`track`), and the progress bar or one line per log point. On resume, records past the checkpoint
are dropped before appending."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from jaxdqn.config.schema import to_dict
from jaxdqn.loop.episodes import EpisodeLog

EPISODES_HEADER = "seed,env_step,return,length"
"""Columns of a run's episodes.csv: one row per finished training episode."""

PER_AGENT = ("return_mean_100", "length_mean_100", "loss", "q_mean")
"""Record fields that hold one value per agent (None where there is none yet)."""

TENSORBOARD_RUNS = "tensorboard"
"""The folder of a sweep group's TensorBoard runs, one per configuration."""

RUN_FILES = ("config.json", "metrics.jsonl", "episodes.csv", "summary.json", "checkpoints", "wandb",
             "wandb-run-id", "wandb-run-ids", TENSORBOARD_RUNS)
"""What a run writes into its directory, besides TensorBoard's events.out.tfevents.* files."""

WANDB_ID_FILE = "wandb-run-id"
"""The file of a run directory that keeps its W&B run id, so that a resumed run continues the same W&B run."""
WANDB_IDS_DIR = "wandb-run-ids"
"""A sweep group's W&B run ids, one file per configuration (named by its label)."""


def mean_of(values: list):
    """The mean of the values that are not None, or None."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _format(value, spec=".2f"):
    return "n/a" if value is None else format(value, spec)


def episode_rows(log: EpisodeLog) -> tuple[list[str], int]:
    """CSV rows of the episodes in `log`, per agent in order, and how many were lost to ring overflow."""
    returns, lengths, end_steps = (np.asarray(x) for x in (log.returns, log.lengths, log.end_steps))
    counts, positions = np.asarray(log.count), np.asarray(log.position)
    capacity, lost, rows = returns.shape[1], 0, []
    for agent in range(returns.shape[0]):
        kept = min(int(counts[agent]), capacity)
        lost += int(counts[agent]) - kept
        slots = (int(positions[agent]) - kept + np.arange(kept)) % capacity
        rows.extend(f"{agent},{end_steps[agent, i]},{returns[agent, i]:.7g},{lengths[agent, i]}\n" for i in slots)
    return rows, lost


def _keep_lines(path: Path, header: str | None, keep: Callable[[str], bool]) -> None:
    """Rewrite `path` with only the lines `keep` accepts (and `header` first), atomically."""
    lines = path.read_text().splitlines() if path.exists() else []
    if header is not None:
        lines = lines[1:]
    kept = ([header + "\n"] if header is not None else []) + [line + "\n" for line in lines if keep(line)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _metrics_line_until(last_step: int):
    def keep(line: str) -> bool:
        try:
            return json.loads(line).get("env_steps", 0) <= last_step
        except ValueError:  # a torn last line
            return False
    return keep


def _episode_line_until(last_step: int):
    def keep(line: str) -> bool:
        fields = line.split(",")
        return len(fields) == 4 and fields[1].isdigit() and int(fields[1]) <= last_step
    return keep


def holds_run(out: Path) -> bool:
    """True when `out` holds (part of) a run: a file `jaxdqn train` writes."""
    return out.is_dir() and any((out / name).exists() for name in RUN_FILES[:5])


def remove_run(out: Path) -> None:
    """Remove the files of the run in `out` (for --overwrite), leaving anything else there alone."""
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for events in out.glob("events.out.tfevents.*"):
        events.unlink()


def record_scalars(record: dict, num_agents: int) -> dict:
    """The scalars of a record for TensorBoard and W&B: agent means, plus per-seed values for several agents."""
    scalars = {}
    for name in PER_AGENT:
        if mean_of(record[name]) is not None:
            scalars[name] = mean_of(record[name])
        if num_agents > 1:
            scalars.update({f"{name}/seed_{k}": v for k, v in enumerate(record[name]) if v is not None})
    scalars.update({name: value for name, value in record.items()
                    if name not in PER_AGENT and name not in ("env_steps", "updates", "wall_seconds", "episodes")
                    and isinstance(value, float)})
    return scalars


def agents_record(record: dict, agents: list[int]) -> dict:
    """`record` restricted to the agents `agents` (their per-agent values; the shared values as they are)."""
    return {name: [value[a] for a in agents] if name in PER_AGENT else value for name, value in record.items()}


def wandb_run_id(path: Path, resumed: bool) -> str:
    """The W&B run id kept in the file `path`: when resuming, the one there; else a new one, written there."""
    if resumed and path.exists():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def start_wandb(out: Path, cfg, resumed: bool, label: str | None = None):
    """Start the W&B run of the run in `out` (its files under out/wandb), or continue it when resuming; returns
    the wandb Run. A sweep group has one W&B run per configuration (`label`, with `cfg` that configuration's
    Config), named GROUP_DIR/LABEL and grouped by the sweep's folder unless `wandb_group` is set."""
    import wandb

    tracking, name = cfg.tracking, out.resolve().name
    id_file, group = out / WANDB_ID_FILE, tracking.wandb_group
    if label is not None:
        id_file, name = out / WANDB_IDS_DIR / label, f"{name}/{label}"
        group = group or out.resolve().parent.name
    return wandb.init(project=tracking.wandb_project, entity=tracking.wandb_entity, group=group,
                      config=to_dict(cfg), dir=str(out), name=name, id=wandb_run_id(id_file, resumed),
                      resume="allow", reinit="create_new")


class Recorder:
    """Writes a run's records; without a run directory, only prints.

    `start_steps` is where this session starts (the checkpoint's step when resuming, whose later records are
    dropped); `progress_bar` shows tqdm instead of one line per log point; with a run directory, `cfg` (the
    run's Config) whose `tracking.track` is set also logs the scalars and the config to W&B. A sweep group's
    `configurations` ((label, agent indices, Config) of each) get one TensorBoard and one W&B run each.
    """

    def __init__(self, out: Path | None, num_agents: int, total_env_steps: int, start_steps: int, resumed: bool,
                 log: Callable[[str], None] = print, progress_bar: bool = False, cfg=None,
                 configurations: list | None = None):
        self.num_agents, self.log = num_agents, log
        self.metrics = self.episodes = self.bar = None
        self.runs = []  # (agent indices, SummaryWriter) of each TensorBoard run
        self.wandb_runs = []  # (agent indices, wandb Run) of each W&B run
        if out is not None:
            from tensorboardX import SummaryWriter

            if cfg is not None and cfg.tracking.track:
                self.wandb_runs = ([(agents, start_wandb(out, config, resumed, label))
                                    for label, agents, config in configurations] if configurations
                                   else [(list(range(num_agents)), start_wandb(out, cfg, resumed))])
            if resumed:
                _keep_lines(out / "metrics.jsonl", None, _metrics_line_until(start_steps))
                _keep_lines(out / "episodes.csv", EPISODES_HEADER, _episode_line_until(start_steps))
            self.metrics = open(out / "metrics.jsonl", "a" if resumed else "w")
            self.episodes = open(out / "episodes.csv", "a" if resumed else "w")
            if not resumed:
                self.episodes.write(EPISODES_HEADER + "\n")
            # the run's own events in `out`, or (a sweep group) one TensorBoard run per configuration
            runs = ([(agents, out / TENSORBOARD_RUNS / label) for label, agents, _ in configurations]
                    if configurations else [(list(range(num_agents)), out)])
            self.runs = [(agents, SummaryWriter(str(folder), purge_step=start_steps if resumed else None))
                         for agents, folder in runs]
        if progress_bar:
            from tqdm import tqdm

            # a terminal may report a 0 x 0 size (e.g. `script`); tqdm then draws nothing, so fall back to 100 x 24
            size = shutil.get_terminal_size((100, 24))
            self.bar = tqdm(total=total_env_steps, initial=start_steps, unit="step", ncols=size.columns,
                            nrows=size.lines, file=sys.stdout)
        self.total_env_steps, self.shown_steps = total_env_steps, start_steps

    def say(self, line: str) -> None:
        """Print a line without breaking the progress bar."""
        (self.bar.write if self.bar is not None else self.log)(line)

    def write(self, record: dict, finished: EpisodeLog) -> None:
        """Write one log point: its metrics record, the episodes that finished, TensorBoard (and W&B) scalars, the
        progress."""
        if self.metrics is not None:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()
            rows, lost = episode_rows(finished)
            self.episodes.write("".join(rows))
            self.episodes.flush()
            if lost:
                self.say("warning: some episodes of this chunk were not logged to episodes.csv")
            for agents, writer in self.runs:
                for tag, value in record_scalars(agents_record(record, agents), len(agents)).items():
                    writer.add_scalar(tag, value, record["env_steps"])
                writer.flush()
            for agents, run in self.wandb_runs:
                run.log(record_scalars(agents_record(record, agents), len(agents)), step=record["env_steps"])
        return_text = _format(mean_of(record["return_mean_100"]))
        loss_text = _format(mean_of(record["loss"]), ".4g")
        epsilon = f" | eps {record['epsilon']:.3f}" if "epsilon" in record else ""
        if self.bar is not None:
            self.bar.set_postfix_str(f"return(100) {return_text}{epsilon.replace(' |', '')} loss {loss_text}",
                                     refresh=False)
            self.bar.update(record["env_steps"] - self.shown_steps)
        else:
            self.log(f"step {record['env_steps']:>9}/{self.total_env_steps} | sps {record['sps']:9.0f} | "
                     f"return(100) {return_text}{epsilon} | loss {loss_text}")
        self.shown_steps = record["env_steps"]

    def close(self, failed: bool = False) -> None:
        """Close every file and finish the W&B run, marked failed when training stopped early (`failed`)."""
        for resource in (self.metrics, self.episodes, self.bar, *(writer for _, writer in self.runs)):
            if resource is not None:
                resource.close()
        for _, run in self.wandb_runs:
            run.finish(exit_code=1 if failed else 0)
        self.runs, self.wandb_runs = [], []
        self.metrics = self.episodes = self.bar = None  # closing again does nothing

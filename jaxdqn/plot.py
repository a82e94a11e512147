"""Training curves of one or more run directories in one figure.

Reads each run's `episodes.csv` (one row per training episode) and `metrics.jsonl` (one record per
chunk) and draws: episodic return against environment steps with its rolling mean (mean ± std band
across seeds), the TD loss, epsilon, and a kernel-density estimate of the episode returns of each run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxdqn.files import check_output_path

PLOT_EXTENSIONS = (".png", ".pdf", ".svg")
"""Output formats `jaxdqn plot` writes, chosen by the file's extension."""

ROLLING_WINDOW = 100
"""Episodes in the rolling mean drawn over the episode returns."""

_GRID_POINTS = 300


class PlotError(ValueError):
    """A run directory or output path that cannot be plotted; the message is one line."""


class SeedEpisodes(NamedTuple):
    """The training episodes of one seed, in the order they ended."""

    end_steps: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray


class RunData(NamedTuple):
    """What the plots need from one run directory."""

    label: str
    seeds: list  # of SeedEpisodes, one per seed
    metric_steps: np.ndarray  # (chunks,)
    losses: np.ndarray  # (chunks, S), nan before learning starts
    epsilons: np.ndarray  # (chunks,)
    solved_return: float | None
    env_id: str | None


def load_run(run_dir: str | os.PathLike, label: str | None = None) -> RunData:
    """Read a run directory written by `jaxdqn train`; raise PlotError (one line) if it cannot be read."""
    run = Path(run_dir)
    if not run.is_dir():
        raise PlotError(f"{run}: no such run directory")
    metrics_path, episodes_path = run / "metrics.jsonl", run / "episodes.csv"
    for path in (metrics_path, episodes_path):
        if not path.is_file():
            raise PlotError(f"{run}: missing {path.name}; expected a directory written by `jaxdqn train`")
    try:
        records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        rows = np.loadtxt(episodes_path, delimiter=",", skiprows=1, ndmin=2)
    except (ValueError, json.JSONDecodeError) as error:
        raise PlotError(f"{run}: cannot parse its metrics.jsonl or episodes.csv ({error})") from None
    if not records:
        raise PlotError(f"{run}: metrics.jsonl is empty; the run logged nothing yet")
    num_seeds = len(records[0]["loss"])
    if rows.size and rows.shape[1] != 4:
        raise PlotError(f"{run}: episodes.csv must have 4 columns (seed,env_step,return,length)")
    seeds = []
    for seed_index in range(num_seeds):
        seed_rows = rows[rows[:, 0] == seed_index] if rows.size else np.zeros((0, 4))
        seed_rows = seed_rows[np.argsort(seed_rows[:, 1], kind="stable")]
        seeds.append(SeedEpisodes(seed_rows[:, 1], seed_rows[:, 2], seed_rows[:, 3]))
    losses = np.array([[np.nan if v is None else v for v in r["loss"]] for r in records], np.float64)
    config = _read_config(run)
    return RunData(label or run.resolve().name, seeds, np.array([r["env_steps"] for r in records], np.float64),
                   losses, np.array([r.get("epsilon", np.nan) for r in records], np.float64),
                   _config_value(config, "solved_return"), _config_value(config, "env_id"))


def _read_config(run: Path) -> dict:
    # Only the title and the solved line come from config.json; a run without one still plots.
    path = run / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PlotError(f"{path}: not a readable JSON config ({error})") from None
    if not isinstance(config, dict):
        raise PlotError(f"{path}: not a jaxdqn config (a JSON {type(config).__name__}, expected an object)")
    return config


def _config_value(config: dict, name: str):
    """The value of field `name` in a config.json dict, flat (format 1) or nested by section (format 2)."""
    if name in config:
        return config[name]
    sections = [value for value in config.values() if isinstance(value, dict)]
    return next((found for found in (_config_value(s, name) for s in sections) if found is not None), None)


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each position (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def seed_band(xs: list, ys: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curves (x_i, y_i) of several seeds on the x range they share: (grid, mean, std) across seeds."""
    if all(np.array_equal(x, xs[0]) for x in xs):  # e.g. metrics logged at the same steps by every seed
        grid = np.asarray(xs[0])
    else:
        low, high = max(x[0] for x in xs), min(x[-1] for x in xs)
        grid = np.linspace(low, high, _GRID_POINTS) if high > low else np.array([low])
    curves = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys)])
    return grid, curves.mean(axis=0), curves.std(axis=0)


def check_plot_path(path: str | os.PathLike) -> Path:
    """Return `path` as a Path if a figure can be written there, else raise PlotError (one line)."""
    return check_output_path(path, "--out", PLOT_EXTENSIONS, PlotError)


def _draw_band(ax, xs: list, ys: list, color, label: str) -> None:
    marker = "o" if len(xs[0]) == 1 else None  # a line through one point draws nothing
    if len(xs) == 1:
        ax.plot(xs[0], ys[0], color=color, lw=1.8, marker=marker, label=label)
        return
    grid, mean, std = seed_band(xs, ys)
    ax.plot(grid, mean, color=color, lw=1.8, marker=marker, label=label)
    ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def _return_panel(ax, runs: list, colors: list, window: int) -> None:
    for run, color in zip(runs, colors):
        seeds = [s for s in run.seeds if len(s.returns)]
        if not seeds:
            continue
        for seed in seeds:
            ax.scatter(seed.end_steps, seed.returns, s=6, color=color, alpha=0.25, lw=0, rasterized=True)
        band = " (mean ± std of seeds)" if len(seeds) > 1 else ""
        _draw_band(ax, [s.end_steps for s in seeds], [rolling_mean(s.returns, window) for s in seeds], color,
                   f"{run.label}: {len(seeds)} seed{'s' if len(seeds) > 1 else ''}{band}")
    solved = {run.solved_return for run in runs}
    all_returns = np.concatenate([s.returns for run in runs for s in run.seeds] + [np.zeros(0)])
    if len(solved) == 1 and None not in solved and all_returns.size:
        threshold, low, high = solved.pop(), all_returns.min(), all_returns.max()
        if low <= threshold <= high + 0.25 * (high - low):  # far above the data it would only squash the curves
            ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"solved ({threshold:g})")
    ax.set_title(f"Episode return (dots) and {window}-episode rolling mean")
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel("return")
    ax.legend(loc="best", fontsize=9, frameon=False)


def _loss_panel(ax, runs: list, colors: list) -> None:
    drew = False
    for run, color in zip(runs, colors):
        learned = ~np.isnan(run.losses).any(axis=1)
        if learned.sum() == 0:
            continue
        steps, losses = run.metric_steps[learned], run.losses[learned]
        _draw_band(ax, [steps] * losses.shape[1], list(losses.T), color, run.label)
        drew = True
    if drew and all((run.losses[~np.isnan(run.losses)] > 0).all() for run in runs):
        ax.set_yscale("log")
    ax.set_title("TD loss (mean per log interval)")
    ax.set_xlabel("environment steps per seed")


def _epsilon_panel(ax, runs: list, colors: list) -> None:
    for run, color in zip(runs, colors):
        ax.plot(run.metric_steps, run.epsilons, color=color, lw=1.8, label=run.label)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Exploration epsilon")
    ax.set_xlabel("environment steps per seed")


def _kde_panel(ax, runs: list, colors: list) -> None:
    from scipy.stats import gaussian_kde

    pooled = [np.concatenate([s.returns for s in run.seeds]) for run in runs]
    present = [p for p in pooled if p.size]
    if present:
        low, high = min(p.min() for p in present), max(p.max() for p in present)
        pad = 0.1 * (high - low) or 1.0
        grid = np.linspace(low - pad, high + pad, 400)
    for run, returns, color in zip(runs, pooled, colors):
        label = f"{run.label} (n={returns.size}, mean {returns.mean():.1f})" if returns.size else run.label
        if returns.size >= 2 and np.ptp(returns) > 0:
            density = gaussian_kde(returns)(grid)
            ax.plot(grid, density, color=color, lw=1.8, label=label)
            ax.fill_between(grid, density, color=color, alpha=0.15, lw=0)
        elif returns.size:  # a single value has no spread to estimate
            ax.axvline(returns[0], color=color, lw=1.8, label=label)
    ax.set_title("Kernel density of episode returns")
    ax.set_xlabel("return")
    ax.set_ylabel("density")
    ax.legend(loc="best", fontsize=8, frameon=False)


def _unique_labels(run_dirs: list) -> list[str]:
    names = [Path(d).resolve().name for d in run_dirs]
    return [str(d) if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


def draw_runs(runs: list, window: int = ROLLING_WINDOW):
    """A matplotlib Figure of the runs' return, loss, epsilon and return-density panels."""
    from matplotlib.figure import Figure

    colors = [f"C{i % 10}" for i in range(len(runs))]
    fig = Figure(figsize=(15, 9), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=(1.25, 1))
    _return_panel(fig.add_subplot(grid[0, :]), runs, colors, window)
    _loss_panel(fig.add_subplot(grid[1, 0]), runs, colors)
    _epsilon_panel(fig.add_subplot(grid[1, 1]), runs, colors)
    _kde_panel(fig.add_subplot(grid[1, 2]), runs, colors)
    env_ids = sorted({run.env_id for run in runs if run.env_id})
    if env_ids:
        fig.suptitle(", ".join(env_ids), fontsize=14)
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    return fig


def plot_runs(run_dirs: list, out: str | os.PathLike, window: int = ROLLING_WINDOW) -> Path:
    """Draw the training curves of `run_dirs` (labelled by directory name) into `out`; return its path.

    Every input is checked before anything is drawn, and nothing is written if one is bad.
    """
    if not run_dirs:
        raise PlotError("give at least one run directory")
    if window < 1:
        raise PlotError(f"--window: must be an integer > 0 (got {window})")
    out = check_plot_path(out)
    runs = [load_run(d, label) for d, label in zip(run_dirs, _unique_labels(run_dirs))]
    try:
        draw_runs(runs, window).savefig(out, dpi=100)
    except OSError as error:  # e.g. the disk filled up while writing
        out.unlink(missing_ok=True)
        raise PlotError(f"--out: could not write {out} ({error.strerror or error})") from None
    return out

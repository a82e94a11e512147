"""A sweep's results as a person reads them: `sweep.csv` (one row per configuration), a ranked table
(`sweep.md`, also printed) and a figure (`sweep.png`).

Per configuration, over its seeds: the mean, the interquartile mean (the mean of the middle half, as rliable
reports it) and a 95% percentile-bootstrap confidence interval of the mean, of the final greedy evaluation
return and of the final 100-episode training return; and how many seeds solved the task, with the median step
at which they did.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

RESULT_FILES = ("sweep.csv", "sweep.md", "sweep.png")
BOOTSTRAP_RESAMPLES = 10_000


class Stats(NamedTuple):
    """Statistics of one quantity over a configuration's seeds."""

    mean: float
    iqm: float
    ci_low: float
    ci_high: float


class ConfigResult(NamedTuple):
    """What one configuration of a sweep gave, per seed."""

    index: int
    label: str
    values: dict
    group: int
    eval_returns: np.ndarray  # (S,) final greedy evaluation return per seed
    train_returns: np.ndarray  # (S,) final 100-episode mean training return (nan without an episode)
    solved_steps: list  # per seed: the step it solved the task, or None
    curve_steps: np.ndarray  # (T,) env steps of the log points
    curves: np.ndarray  # (T, S) 100-episode mean training return at each log point (nan before an episode)


def interquartile_mean(values: np.ndarray) -> float:
    """The mean of the middle half of `values` (a quarter trimmed from each end, rounded down, as scipy's
    trim_mean at 0.25)."""
    ordered = np.sort(np.asarray(values, np.float64))
    cut = len(ordered) // 4
    return float(ordered[cut:len(ordered) - cut].mean())


def bootstrap_interval(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile-bootstrap confidence interval of the mean of `values` (seeds resampled with replacement,
    BOOTSTRAP_RESAMPLES times from a fixed seed)."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def stats(values: np.ndarray) -> Stats:
    """Mean, interquartile mean and 95% bootstrap interval of `values` (nan when any value is nan)."""
    values = np.asarray(values, np.float64)
    if np.isnan(values).any():
        return Stats(math.nan, math.nan, math.nan, math.nan)
    return Stats(float(values.mean()), interquartile_mean(values), *bootstrap_interval(values))


def load_results(sweep, out: Path) -> list[ConfigResult]:
    """Each configuration's results, read from its group's summary.json and metrics.jsonl."""
    results = []
    seeds = sweep.num_seeds
    for group_index, group in enumerate(sweep.groups):
        group_dir = sweep.group_dir(out, group_index)
        summary = json.loads((group_dir / "summary.json").read_text())
        records = [json.loads(line) for line in (group_dir / "metrics.jsonl").read_text().splitlines() if line]
        steps = np.array([r["env_steps"] for r in records], np.int64)
        curves = np.array([[math.nan if v is None else v for v in r["return_mean_100"]] for r in records],
                          np.float64).reshape(len(records), -1)
        for position, index in enumerate(group):
            agents = slice(position * seeds, (position + 1) * seeds)
            configuration = sweep.configurations[index]
            results.append(ConfigResult(
                index, configuration.label, configuration.values, group_index,
                np.asarray(summary["eval_return_mean"][agents], np.float64),
                np.array([math.nan if v is None else v for v in summary["return_mean_100"][agents]], np.float64),
                summary["solved_step"][agents], steps, curves[:, agents]))
    return sorted(results, key=lambda r: r.index)


def ranked(results: list[ConfigResult]) -> list[ConfigResult]:
    """Best first: by mean evaluation return, then mean training return."""
    def key(result):
        finite = result.train_returns[np.isfinite(result.train_returns)]
        return (-float(np.mean(result.eval_returns)), -float(finite.mean()) if finite.size else math.inf, result.index)

    return sorted(results, key=key)


def solved_summary(result: ConfigResult) -> tuple[str, int | None]:
    """("k/S", median solved step of the k seeds that solved, or None)."""
    steps = [s for s in result.solved_steps if s is not None]
    return f"{len(steps)}/{len(result.solved_steps)}", (int(np.median(steps)) if steps else None)


CSV_STATS = ("mean", "iqm", "ci_low", "ci_high")


def write_csv(sweep, results: list[ConfigResult], path: Path) -> None:
    """sweep.csv: one row per configuration, in the sweep's order."""
    header = ["config", *sweep.fields, "group", "seeds",
              *(f"eval_return_{s}" for s in CSV_STATS), *(f"train_return_{s}" for s in CSV_STATS),
              "solved_seeds", "solved_step_median"]
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for r in results:
            solved, step = solved_summary(r)
            writer.writerow([r.index, *(_csv_value(r.values[f]) for f in sweep.fields), r.group, len(r.eval_returns),
                             *(f"{v:.6g}" for v in stats(r.eval_returns)), *(f"{v:.6g}" for v in stats(r.train_returns)),
                             solved, "" if step is None else step])


def _csv_value(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def ranked_table(sweep, results: list[ConfigResult]) -> str:
    """The Markdown table of configurations, best first."""
    from jaxdqn.sweep import format_value

    lines = [f"| rank | config | {' | '.join(sweep.fields)} | eval return mean [95% CI] | eval IQM | "
             "train return (100 ep.) mean [95% CI] | solved (median step) |",
             "|" + "---|" * (len(sweep.fields) + 6)]
    for rank, r in enumerate(ranked(results), 1):
        e, t = stats(r.eval_returns), stats(r.train_returns)
        solved, step = solved_summary(r)
        lines.append(f"| {rank} | {r.index} | " + " | ".join(format_value(r.values[f]) for f in sweep.fields)
                     + f" | {e.mean:.1f} [{e.ci_low:.1f}, {e.ci_high:.1f}] | {e.iqm:.1f} | "
                     f"{t.mean:.1f} [{t.ci_low:.1f}, {t.ci_high:.1f}] | {solved}"
                     + (f" ({step})" if step is not None else "") + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(sweep, results: list[ConfigResult], path: Path) -> None:
    """sweep.png: the final evaluation return against each swept value (one panel per field, each seed a point,
    the configuration means joined), and the learning curves of the best and the worst configurations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxdqn.sweep import format_value

    panels = len(sweep.fields) + 1
    columns = min(panels, 3)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), squeeze=False)
    axes = axes.ravel()
    for ax, name in zip(axes, sweep.fields):
        values = [r.values[name] for r in results]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            positions = np.array(values, np.float64)
            if positions.min() > 0 and positions.max() >= 3 * positions.min():
                ax.set_xscale("log")
        else:
            distinct = sorted(set(map(format_value, values)))
            positions = np.array([distinct.index(format_value(v)) for v in values], np.float64)
            ax.set_xticks(range(len(distinct)), distinct)
        for x, r in zip(positions, results):
            ax.scatter(np.full(len(r.eval_returns), x), r.eval_returns, s=12, alpha=0.5, color="tab:blue")
        means = {}
        for x, r in zip(positions, results):
            means.setdefault(x, []).append(np.mean(r.eval_returns))
        xs = sorted(means)
        ax.plot(xs, [np.mean(means[x]) for x in xs], "o-", color="tab:red", label="mean over configurations")
        ax.set_xlabel(name)
        ax.set_ylabel("final greedy return")
        ax.grid(alpha=0.3)
    ax = axes[len(sweep.fields)]
    order = ranked(results)
    for r, color, which in ((order[0], "tab:green", "best"), (order[-1], "tab:red", "worst")):
        for seed in range(r.curves.shape[1]):
            ax.plot(r.curve_steps, r.curves[:, seed], color=color, alpha=0.3, linewidth=0.8)
        with np.errstate(all="ignore"):
            mean = np.nanmean(r.curves, axis=1) if r.curves.size else r.curves
        ax.plot(r.curve_steps, mean, color=color, linewidth=2, label=f"{which}: {r.label}")
        if len(order) == 1:
            break
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training return (100 episodes)")
    ax.set_title("learning curves (thin: seeds)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    for extra in axes[panels:]:
        extra.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(sweep, results: list[ConfigResult], out: Path) -> None:
    """Write sweep.csv, sweep.md and sweep.png into `out`."""
    write_csv(sweep, results, out / "sweep.csv")
    (out / "sweep.md").write_text(f"# Sweep: {sweep.command}\n\n{len(results)} configurations x {sweep.num_seeds} "
                                  f"seed(s); best first.\n\n" + ranked_table(sweep, results))
    plot_sweep(sweep, results, out / "sweep.png")

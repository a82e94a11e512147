"""`jaxdqn bench report`: stored `jaxdqn bench` results -> a Markdown table and PNG charts.

Machines and backends sit side by side: one column per result file.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxdqn.bench.harness import REQUIRED_FIELDS, REQUIRED_MACHINE_FIELDS


class ReportError(ValueError):
    """A result file cannot be used; the message names the file and what is missing."""


def load_result(path: Path) -> dict:
    """Read one result file and check it has every field the report needs."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: not a readable JSON result ({error})") from None
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise ReportError(f"{path}: missing field(s) {', '.join(missing)}; a result needs {', '.join(REQUIRED_FIELDS)}")
    missing = [f for f in REQUIRED_MACHINE_FIELDS if f not in record["machine"]]
    if missing:
        raise ReportError(f"{path}: machine is missing {', '.join(missing)}; it needs {', '.join(REQUIRED_MACHINE_FIELDS)}")
    return record


def machine_label(record: dict) -> str:
    """'gpu: NVIDIA H100 80GB HBM3' or 'cpu: AMD EPYC (2 cores)'."""
    m = record["machine"]
    if m["backend"] == "cpu":
        return f"cpu: {m['cpu_model']} ({m['cpu_cores']} cores)"
    return f"{m['backend']}: {m['devices'][0]}"


def _rows(record: dict) -> dict:
    """Measure name -> (median, unit) for one result."""
    rows = {}
    for r in record["env_steps"]:
        base = f"env {r['env_id']} x{r['num_envs']}"
        rows[f"{base}, Python loop"] = (r["python_steps_per_second"]["median"], "steps/s")
        scan = r["xla_scan_steps_per_second"]["median"]
        rows[f"{base}, XLA in scan"] = (f"{_format(scan)} ({r['xla_scan_note']})" if "xla_scan_note" in r else scan,
                                        "steps/s")
    for r in record["train_step"]:
        variant = f" {r['variant']}" if "variant" in r else ""
        rows[f"train_step {r['torso']} b{r['batch']} cap {r['capacity']:.0e} {r['replay']}{variant}"] = (
            r["updates_per_second"]["median"], "updates/s")
    for r in record["end_to_end"]:
        name = f"end-to-end {r['preset']} {' '.join(r['args'])} x{r['num_seeds']} seeds".replace("  ", " ")
        if "unsupported" in r:  # the command refused this case on this machine: the cell says why
            rows[f"{name} SPS"] = (f"not supported: {r['unsupported']}", "env steps/s")
            continue
        rows[f"{name} SPS"] = (r["sps"], "env steps/s")
        rows[f"{name} compile"] = (r["compile_seconds"], "s")
    for r in record.get("host_loop", []):
        rows[f"host-loop DQN {r['preset']} {' '.join(r['args'])} SPS"] = (r["sps"], "env steps/s")
    rows["peak host RSS (harness)"] = (record["memory"]["host_peak_rss_mb"], "MB")
    if record["memory"].get("device_peak_bytes") is not None:
        rows["peak device memory"] = (record["memory"]["device_peak_bytes"] / 2**20, "MB")
    return rows


def headline_ratios(record: dict) -> dict:
    """Compiled vs host loop (CartPole), prioritized vs uniform train step, seed scaling."""
    ratios = {}
    # the plain EnvPool rows (not the gymnax or overlap variants)
    cartpole = [r for r in record["end_to_end"] if r["preset"] == "cartpole" and "unsupported" not in r
                and not {"--env-id", "--env-overlap"} & set(r["args"])]
    compiled = [r for r in cartpole if r["num_seeds"] == 1]
    if compiled and record.get("host_loop"):
        ratios["compiled / host loop SPS (cartpole, 10 envs)"] = compiled[0]["sps"] / record["host_loop"][0]["sps"]
    by_key = {(r["torso"], r["batch"], r["capacity"], r["replay"]): r["updates_per_second"]["median"]
              for r in record["train_step"] if "variant" not in r}
    for (torso, batch, capacity, replay), rate in sorted(by_key.items()):
        if replay == "prioritized" and (torso, batch, capacity, "uniform") in by_key:
            ratios[f"prioritized / uniform step time, {torso} b{batch} cap {capacity:.0e}"] = (
                by_key[(torso, batch, capacity, "uniform")] / rate)
    seeds = {r["num_seeds"]: r["wall_seconds"] for r in cartpole}
    if 1 in seeds and len(seeds) > 1:
        most = max(seeds)
        ratios[f"wall time {most} seeds / 1 seed (cartpole)"] = seeds[most] / seeds[1]
    return ratios


def _format(value: float | str) -> str:
    if isinstance(value, str):  # a note in place of a figure, or a figure with its note
        return value
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def markdown_table(records: list[dict]) -> str:
    """One row per measure, one column per result file; headline ratios below."""
    labels = [machine_label(r) for r in records]
    all_rows = [_rows(r) for r in records]
    names = []
    for rows in all_rows:
        names += [n for n in rows if n not in names]
    lines = ["| measure | unit | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for name in names:
        unit = next(rows[name][1] for rows in all_rows if name in rows)
        cells = [_format(rows[name][0]) if name in rows else "" for rows in all_rows]
        lines.append(f"| {name} | {unit} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| headline ratio | " + " | ".join(labels) + " |")
    lines.append("|---|" + "---|" * len(labels))
    all_ratios = [headline_ratios(r) for r in records]
    ratio_names = []
    for ratios in all_ratios:
        ratio_names += [n for n in ratios if n not in ratio_names]
    for name in ratio_names:
        lines.append(f"| {name} | " + " | ".join(f"{r[name]:.2f}x" if name in r else "" for r in all_ratios) + " |")
    sources = [f"- {label}: `{r['command']}` at commit `{r['machine']['git_commit'][:12]}`, jax "
               f"{r['machine']['versions'].get('jax')}" for label, r in zip(labels, records)]
    return "\n".join(lines + ["", "Sources:"] + sources) + "\n"


def charts(records: list[dict], out_dir: Path) -> list[Path]:
    """Bar charts (log scale) per group of measures, machines side by side; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    labels = [machine_label(r) for r in records]
    all_rows = [_rows(r) for r in records]
    groups = {"env_steps": "env ", "train_step": "train_step ", "end_to_end": "end-to-end "}
    paths = []
    for group, prefix in groups.items():
        names = []
        for rows in all_rows:
            names += [n for n in rows if n.startswith(prefix) and n not in names and rows[n][1] != "s"]
        if group == "end_to_end":
            for rows in all_rows:
                names += [n for n in rows if n.startswith("host-loop") and n not in names]
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) * len(labels) + 1.5))
        height = 0.8 / len(labels)
        y = np.arange(len(names))
        for i, (label, rows) in enumerate(zip(labels, all_rows)):
            values = [rows[n][0] if n in rows and not isinstance(rows[n][0], str) else 0 for n in names]
            ax.barh(y + i * height, values, height, label=label)
        ax.set_yticks(y + 0.4 - height / 2)
        ax.set_yticklabels(names, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(all_rows[0][names[0]][1] if names[0] in all_rows[0] else "rate")
        ax.invert_yaxis()
        ax.legend(fontsize=8)
        ax.set_title(f"jaxdqn bench: {group}")
        fig.tight_layout()
        path = out_dir / f"bench-{group}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(results_dir: Path, out_file: Path, charts_dir: Path | None = None, include_tiny: bool = False) -> tuple:
    """Load every bench-*.json under `results_dir`, write the Markdown table and charts."""
    files = sorted(Path(results_dir).glob("bench-*.json"))
    if not include_tiny:
        files = [f for f in files if not f.stem.startswith("bench-tiny-")] or files
    if not files:
        raise ReportError(f"{results_dir}: no bench-*.json result files; run `jaxdqn bench` first")
    records = [load_result(f) for f in files]
    table = markdown_table(records)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("# jaxdqn throughput\n\n" + table)
    pngs = charts(records, Path(charts_dir) if charts_dir else out_file.parent)
    return out_file, pngs

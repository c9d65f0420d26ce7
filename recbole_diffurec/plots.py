"""The figures ``--tables`` writes next to the Markdown tables (``OUT/tables/*.png``), from the run
records of a study folder (and, for the evaluation-time figure, ``OUT/sampling_steps.csv``, which
``benchmarks/sampling_steps.py --csv`` writes):

- ``valid_ndcg.png``: validation score per epoch for each model, the mean over seeds as a line and
  the range over seeds as a band (records whose validation curve is known);
- ``test_ndcg_per_seed.png``: each seed's test NDCG@10 for each model, and the mean;
- ``eval_time.png``: seconds to rank every test user against test NDCG@10, for each number of reverse
  steps K (and ensemble size) of the diffusion checkpoints and for the baselines' checkpoints.
"""
from __future__ import annotations

import csv
import os
import statistics
from typing import Any, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, path, xlabel, ylabel, title, legend=True):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def valid_curves(runs_by_label: dict[str, dict[int, dict[str, Any]]], path: str, metric: str = "NDCG@10") -> bool:
    """``valid_ndcg.png``: mean and range over seeds of the validation score per epoch. False if no
    record holds a validation curve."""
    curves = {}
    for label, runs in runs_by_label.items():
        by_epoch = {}
        for record in runs.values():
            for epoch, score in record.get("valid_history") or []:
                by_epoch.setdefault(int(epoch), []).append(float(score))
        if by_epoch:
            curves[label] = sorted(by_epoch.items())
    if not curves:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in curves.items():
        epochs = [e for e, _ in points]
        seeds = max(len(v) for _, v in points)
        line, = ax.plot(epochs, [statistics.mean(v) for _, v in points], label=f"{label} ({seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(epochs, [min(v) for _, v in points], [max(v) for _, v in points], color=line.get_color(), alpha=0.2)
    _finish(plt, fig, ax, path, "epoch", f"validation {metric}",
            "Validation score per epoch (mean over seeds, band: min to max)")
    return True


def test_per_seed(runs_by_label: dict[str, dict[int, dict[str, Any]]], path: str, metric: str = "ndcg@10") -> bool:
    """``test_ndcg_per_seed.png``: every seed's test score per model, and the mean as a line."""
    labels = [label for label, runs in runs_by_label.items() if runs]
    if not labels:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.5))
    for i, label in enumerate(labels):
        runs = runs_by_label[label]
        values = [runs[s]["test_result"][metric] for s in sorted(runs)]
        ax.hlines(statistics.mean(values), i - 0.3, i + 0.3, color="tab:blue", linewidth=2)
        ax.scatter([i] * len(values), values, color="black", zorder=3, s=18)
        for seed, value in zip(sorted(runs), values):
            ax.annotate(str(seed), (i, value), xytext=(5, 0), textcoords="offset points", fontsize=7, va="center")
    low = min(r["test_result"][metric] for label in labels for r in runs_by_label[label].values())
    high = max(r["test_result"][metric] for label in labels for r in runs_by_label[label].values())
    pad = (high - low) * 0.3 or high * 0.05
    ax.set_ylim(max(0.0, low - pad), high + pad)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    _finish(plt, fig, ax, path, "", f"test {metric.replace('hit', 'HR').replace('ndcg', 'NDCG')}",
            "Test score per seed (dots, numbered by seed) and mean (line)", legend=False)
    return True


def read_steps_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def eval_time(rows: Sequence[dict[str, str]], path: str) -> bool:
    """``eval_time.png``: evaluation seconds against test NDCG@10, one point per checkpoint and
    setting (K, ensemble), diffusion models by K, baselines as their own markers."""
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = {}
    for row in rows:
        diffusion = row["K"] not in ("", "-")
        ensemble = int(row["ensemble"]) if diffusion and row["ensemble"] not in ("", "-") else 1
        order = (not diffusion, row["model"], int(row["K"]) if diffusion else 0, ensemble)
        key = row["model"] if not diffusion else f"{row['model']}, K = {row['K']}" + (f", ensemble {ensemble}" if ensemble > 1 else "")
        groups.setdefault((order, diffusion, key), []).append((float(row["eval_s"]), float(row["NDCG@10"])))
    markers = {False: "s", True: "o"}
    for (_, diffusion, key), points in sorted(groups.items()):
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=markers[diffusion], label=key, s=30)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    _finish(plt, fig, ax, path, "seconds to rank every test user (log scale)", "test NDCG@10",
            "Evaluation time against accuracy (one point per checkpoint)")
    return True


def write_all(out: str, runs_by_label: dict[str, dict[int, dict[str, Any]]], suffix: str = "") -> list[str]:
    """Every figure the records of ``out`` allow, under ``out/tables/`` (names end in ``suffix``,
    e.g. the dataset of a folder holding several); returns their paths."""
    folder = os.path.join(out, "tables")
    os.makedirs(folder, exist_ok=True)
    written = []
    path = os.path.join(folder, f"valid_ndcg{suffix}.png")
    if valid_curves(runs_by_label, path):
        written.append(path)
    path = os.path.join(folder, f"test_ndcg_per_seed{suffix}.png")
    if test_per_seed(runs_by_label, path):
        written.append(path)
    steps = os.path.join(out, "sampling_steps.csv")
    path = os.path.join(folder, "eval_time.png")
    if os.path.isfile(steps) and eval_time(read_steps_csv(steps), path):
        written.append(path)
    return written

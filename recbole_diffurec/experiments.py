"""Experiments of the DiffuRecSys paper (sections 6.3-6.4) with RecBole's baselines in one harness.

``run_grid`` trains every (dataset, model, seed) once and writes one JSON record per run, atomically,
as soon as it ends: ``OUT/runs/<dataset>__<label>__seed<seed>.json``, with status ``ok`` (metrics,
training seconds, checkpoint) or ``failed`` (the error). The label is the model's name, or
``<model>-<variant>`` when a grid runs under a ``variant`` name (other settings of the same model,
e.g. the papers' settings, in the same tables). A rerun skips finished runs (``force`` reruns
them). A run interrupted mid-training continues from its last finished epoch: the training
state is saved after every epoch as ``OUT/checkpoints/<key>.state.pth`` and a rerun resumes it
(``force`` starts afresh). Each run logs to ``OUT/logs/<key>.log``. ``build_tables`` rebuilds every table from those records, without retraining:

- ``table3_metrics``: every metric as mean ± std over seeds, per dataset and model (paper Table 3);
- ``table4_ttest``: paired t-test over the seeds both have, each model against a baseline, with the
  t statistic, p-value and the average relative difference in percent (Table 4);
- ``table5_overall``: the mean of each metric per model, the best in bold, and "Improv.", the best
  model's relative gain over the best other model (Table 5);
- ``table2_time``: training wall seconds, mean over seeds (Table 2);
- ``table6_beyond_accuracy``: RecBole's ItemCoverage, AveragePopularity, GiniIndex and
  TailPercentage at 10, mean ± std over the seeds whose records hold them.

Each table is written as Markdown and CSV under ``OUT/tables/``.
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import os
import statistics
import time
import traceback
from typing import Any, Callable, Sequence

from recbole_diffurec.metrics import ACCURACY as METRICS
from recbole_diffurec.metrics import BEYOND, LABELS, markdown_table


def run_key(dataset: str, model: str, seed: int) -> str:
    return f"{dataset}__{model}__seed{seed}"


def write_json_atomic(path: str, data: object) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=float)
    os.replace(tmp, path)


def load_records(out: str) -> list[dict[str, Any]]:
    """Every run record under ``out/runs`` (ok and failed)."""
    folder = os.path.join(out, "runs")
    if not os.path.isdir(folder):
        return []
    records = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                records.append(json.load(f))
    return records


def _fmt_seconds(s):
    return str(datetime.timedelta(seconds=int(s)))


def run_label(model: str, variant: str | None = None) -> str:
    """The name a run goes by in records and tables: the model, or ``<model>-<variant>``."""
    return f"{model}-{variant}" if variant else model


def record_label(record: dict[str, Any]) -> str:
    return record.get("label", record["model"])


def run_grid(
    models, datasets, seeds, out, config_files=None, config_dict=None, cmd_args=(), force=False, log=print,
    variant=None, distributed=None,
):
    """Train and test every (dataset, model, seed); returns the records of this grid.
    ``distributed``: ``quick_start.run``'s nproc/world_size/ip/port/group_offset for every run."""
    from recbole_diffurec.quick_start import run

    from recbole_diffurec.config import route_cmd_args

    grid = [(d, m, s) for d in datasets for m in models for s in seeds]
    model_args = {m: route_cmd_args(cmd_args, m, models)[0] for m in models}
    durations, records = [], []
    for i, (dataset, model, seed) in enumerate(grid, 1):
        label = run_label(model, variant)
        key = run_key(dataset, label, seed)
        path = os.path.join(out, "runs", key + ".json")
        if not force and os.path.isfile(path):
            with open(path) as f:
                record = json.load(f)
            if record.get("status") == "ok":
                log(f"[{i}/{len(grid)}] {key}: done before, skipped")
                records.append(record)
                continue
        left = len(grid) - i + 1
        eta = f", about {_fmt_seconds(statistics.mean(durations) * left)} left" if durations else ""
        state_file = os.path.join(out, "checkpoints", key + ".state.pth")
        log_file = os.path.join(out, "logs", key + ".log")
        resume = not force and os.path.isfile(state_file)
        log(f"[{i}/{len(grid)}] {key}: {'resuming its training state' if resume else 'running'}{eta}")
        start = time.time()
        record = {"dataset": dataset, "model": model, "label": label, "seed": seed}
        try:
            result = run(
                model,
                dataset,
                config_files,
                dict(config_dict or {}, seed=seed, checkpoint_dir=os.path.join(out, "checkpoints")),
                cmd_args=model_args[model],
                state_file=state_file,
                resume=resume,
                log_file=log_file,
                **(distributed or {}),
            )
            record.update(
                status="ok",
                best_valid_result={k: float(v) for k, v in result["best_valid_result"].items()},
                test_result={k: float(v) for k, v in result["test_result"].items()},
                train_seconds=result["train_seconds"],
                test_seconds=result["test_seconds"],
                checkpoint=result["checkpoint"],
                log_file=log_file,
                epochs_trained=result["epochs_trained"],
            )
        except Exception as e:  # a failed run is recorded and the grid goes on
            record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
            log(f"[{i}/{len(grid)}] {key}: FAILED: {record['error']}")
        record["wall_seconds"] = time.time() - start
        record["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
        write_json_atomic(path, record)
        durations.append(record["wall_seconds"])
        records.append(record)
    return records


def compare(models, datasets, seeds, out, config_files=None, config_dict=None, cmd_args=(), force=False,
            variant=None, baseline=None, log=print, distributed=None):
    """The compare command: check every (model, dataset) configuration before the first run, run
    the grid (``run_grid``), rebuild the tables; returns (records, {table name: markdown})."""
    from recbole_diffurec.config import Config, route_cmd_args
    from recbole_diffurec.errors import UsageError

    if any(str(a).startswith("--seed=") for a in cmd_args):
        raise UsageError("use --seeds=... (comma-separated) in compare mode, not --seed.")
    for model in models:  # a --key=value of the grid goes to the models that define the key
        own_args, left_out = route_cmd_args(cmd_args, model, models)
        if left_out:
            log(f"{model} does not define {', '.join('--' + k for k in left_out)}: not passed to it")
        for dataset in datasets:
            Config(model, dataset, config_files, config_dict, own_args)
    records = run_grid(models, datasets, seeds, out, config_files, config_dict, cmd_args, force, log, variant, distributed)
    return records, build_tables(out, baseline, log)


# ----- tables -----
def _mean_std(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _write(out, name, header, rows, md_rows=None, csv_header=None):
    """``name``.csv (``csv_header`` or ``header``, ``rows``) and ``name``.md (``header``, ``md_rows`` or ``rows``)."""
    folder = os.path.join(out, "tables")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(csv_header or header)
        writer.writerows(rows)
    md = markdown_table(header, md_rows or rows)
    with open(os.path.join(folder, name + ".md"), "w") as f:
        f.write(md + "\n")
    return md


def _by_dataset_model(records):
    grouped = {}
    for r in records:
        if r.get("status") == "ok":
            grouped.setdefault(r["dataset"], {}).setdefault(record_label(r), {})[r["seed"]] = r
    return grouped


def paired_ttest(model_values: Sequence[float], baseline_values: Sequence[float]) -> tuple[float, float, float]:
    """(t, p, mean relative difference in %) of paired samples; scipy's ttest_rel."""
    from scipy import stats

    t, p = stats.ttest_rel(model_values, baseline_values)
    rel = statistics.mean((m - b) / b * 100 if b else math.nan for m, b in zip(model_values, baseline_values))
    return float(t), float(p), rel


def build_tables(out: str, baseline: str | None = None, log: Callable[[str], None] = print) -> dict[str, str]:
    """Write tables 2-5 from the records in ``out``; returns {name: markdown}."""
    records = load_records(out)
    grouped = _by_dataset_model(records)
    if not grouped:
        raise ValueError(f"no finished run under {os.path.join(out, 'runs')}: nothing to tabulate")
    tables = {}
    labels = [LABELS[m] for m in METRICS]

    # Table 3: mean ± std over seeds
    rows, md_rows = [], []
    for dataset, models in grouped.items():
        for model, runs in models.items():
            stats_ = [_mean_std([r["test_result"][m] for r in runs.values()]) for m in METRICS]
            rows.append([dataset, model, len(runs)] + [f"{mu:.6f}" for mu, _ in stats_] + [f"{sd:.6f}" for _, sd in stats_])
            md_rows.append([dataset, model, len(runs)] + [f"{mu:.4f} ± {sd:.4f}" for mu, sd in stats_])
    header = ["dataset", "model", "seeds"]
    tables["table3_metrics"] = _write(  # the CSV keeps mean and std in separate columns
        out, "table3_metrics", header + labels, rows, md_rows,
        csv_header=header + [f"{lab} mean" for lab in labels] + [f"{lab} std" for lab in labels],
    )

    # Table 4: paired t-test against the baseline
    rows = []
    for dataset, models in grouped.items():
        base = baseline if baseline in models else ("DiffuRec" if "DiffuRec" in models else next(iter(models)))
        for model, runs in models.items():
            if model == base:
                continue
            seeds = sorted(set(runs) & set(models[base]))
            if len(seeds) < 2:
                continue
            for m in METRICS:
                t, p, rel = paired_ttest(
                    [runs[s]["test_result"][m] for s in seeds], [models[base][s]["test_result"][m] for s in seeds]
                )
                rows.append([dataset, model, base, LABELS[m], len(seeds), f"{t:.4f}", f"{p:.4g}", f"{rel:+.2f}%"])
    tables["table4_ttest"] = _write(
        out, "table4_ttest", ["dataset", "model", "baseline", "metric", "seeds", "t", "p", "avg rel. diff"], rows
    )

    # Table 5: overall comparison with Improv.
    rows, md_rows = [], []
    for dataset, models in grouped.items():
        names = list(models)
        for m in METRICS:
            means = {n: statistics.mean(r["test_result"][m] for r in models[n].values()) for n in names}
            ranked = sorted(names, key=means.get, reverse=True)
            best = ranked[0]
            improv = (
                f"{(means[best] - means[ranked[1]]) / means[ranked[1]] * 100:+.2f}%"
                if len(ranked) > 1 and means[ranked[1]]
                else ""
            )
            rows.append([dataset, LABELS[m]] + [f"{means[n]:.6f}" for n in names] + [best, improv])
            md_rows.append(
                [dataset, LABELS[m]] + [f"**{means[n]:.4f}**" if n == best else f"{means[n]:.4f}" for n in names]
                + [best, improv]
            )
        header = ["dataset", "metric"] + names + ["best", "Improv."]
        tables.setdefault("table5_overall", "")
        part = _write(out, f"table5_overall_{dataset}", header, rows, md_rows)
        tables["table5_overall"] += f"\n{dataset}\n{part}\n"
        rows, md_rows = [], []

    # Table 6: beyond accuracy (coverage, popularity, concentration, long tail), where recorded
    rows, md_rows = [], []
    for dataset, models in grouped.items():
        for model, runs in models.items():
            measured = [r for r in runs.values() if all(m in r["test_result"] for m in BEYOND)]
            if not measured:
                continue
            stats_ = [_mean_std([r["test_result"][m] for r in measured]) for m in BEYOND]
            rows.append([dataset, model, len(measured)] + [f"{mu:.6f}" for mu, _ in stats_] + [f"{sd:.6f}" for _, sd in stats_])
            md_rows.append([dataset, model, len(measured)] + [
                f"{mu:.4g} ± {sd:.2g}" if m == "averagepopularity@10" else f"{mu:.4f} ± {sd:.4f}"
                for m, (mu, sd) in zip(BEYOND, stats_)
            ])
    if rows:
        header = ["dataset", "model", "seeds"]
        names = [LABELS[m] for m in BEYOND]
        tables["table6_beyond_accuracy"] = _write(
            out, "table6_beyond_accuracy", header + names, rows, md_rows,
            csv_header=header + [f"{n} mean" for n in names] + [f"{n} std" for n in names],
        )

    # Table 2: training time
    rows = []
    for dataset, models in grouped.items():
        for model, runs in models.items():
            mean, std = _mean_std([r["train_seconds"] for r in runs.values()])
            rows.append([dataset, model, len(runs), f"{mean:.1f}", f"{std:.1f}"])
    tables["table2_time"] = _write(out, "table2_time", ["dataset", "model", "seeds", "train s (mean)", "train s (std)"], rows)

    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        log(f"{len(failed)} failed run(s) left out: " + ", ".join(run_key(r["dataset"], record_label(r), r["seed"]) for r in failed))
    return tables


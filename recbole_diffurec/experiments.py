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
  TailPercentage at 10, mean ± std over the seeds whose records hold them;
- ``protocols``: test HR@10 and NDCG@10 under both evaluation protocols, for the runs that recorded both;
- with an ``OUT/study.yaml`` (``read_study``): ``headline``, its rows (HR and NDCG at 10 and 20,
  item coverage and tail share at 10) with paired t-tests against its baseline under RecBole's
  protocol, ``headline_exclude_history`` the same with the history removed (for the runs that
  recorded it), and ``side_by_side``, those rows under both protocols next to its ``published`` rows;
  with its ``comparisons`` (pairs of labels), ``comparisons``: each pair's paired t-tests of test
  NDCG@10 and HR@10 under both protocols, and of the best validation NDCG@10.

A paired t-test whose differences are all equal (metrics are rounded to 4 decimals, so two seeds can
differ by exactly the same amount) has no variance to test against: its p is written ``n/a``, not
the 0 that the division by a zero variance gives.

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

from recbole_diffurec.claims import claim
from recbole_diffurec.metrics import ACCURACY as METRICS
from recbole_diffurec.metrics import BEYOND, LABELS, PROTOCOLS, markdown_table
from recbole_diffurec.provenance import portable


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
    ``distributed``: ``quick_start.run``'s nproc/world_size/ip/port/group_offset for every run.
    Each run is claimed first (``claims.py``): one another live process holds is skipped."""
    from recbole_diffurec.keys import route_cmd_args

    grid = [(d, m, s) for d in datasets for m in models for s in seeds]
    model_args = {m: route_cmd_args(cmd_args, m, models)[0] for m in models}
    durations, records = [], []
    for i, (dataset, model, seed) in enumerate(grid, 1):
        label = run_label(model, variant)
        key = run_key(dataset, label, seed)
        path = os.path.join(out, "runs", key + ".json")
        record = None if force else _finished(path)
        if record is not None:
            log(f"[{i}/{len(grid)}] {key}: done before, skipped")
            records.append(record)
            continue
        held = claim(out, key, lambda note: log(f"[{i}/{len(grid)}] {note}"))
        if held is None:  # another live process runs it
            continue
        try:
            record = None if force else _finished(path)  # finished by another process before the claim
            if record is not None:
                log(f"[{i}/{len(grid)}] {key}: done by another process, skipped")
                records.append(record)
                continue
            left = len(grid) - i + 1
            eta = f", about {_fmt_seconds(statistics.mean(durations) * left)} left" if durations else ""
            record = _run_cell(out, key, dataset, model, label, seed, config_files, config_dict, model_args[model],
                               force, log, f"[{i}/{len(grid)}]", eta, distributed)
        finally:
            held.release()
        durations.append(record["wall_seconds"])
        records.append(record)
    return records


def _finished(path: str) -> dict[str, Any] | None:
    """The record at ``path`` if its run finished (status ok), else None."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    return record if record.get("status") == "ok" else None


def _run_cell(out, key, dataset, model, label, seed, config_files, config_dict, args, force, log, step, eta,
              distributed):
    """Train and test one run of a grid, held by this process; write and return its record."""
    from recbole_diffurec.quick_start import run

    path = os.path.join(out, "runs", key + ".json")
    state_file = os.path.join(out, "checkpoints", key + ".state.pth")
    log_file = os.path.join(out, "logs", key + ".log")
    resume = not force and os.path.isfile(state_file)
    log(f"{step} {key}: {'resuming its training state' if resume else 'running'}{eta}")
    start = time.time()
    record = {"dataset": dataset, "model": model, "label": label, "seed": seed}
    try:
        result = run(
            model,
            dataset,
            config_files,
            dict(config_dict or {}, seed=seed, checkpoint_dir=os.path.join(out, "checkpoints")),
            cmd_args=args,
            state_file=state_file,
            resume=resume,
            log_file=log_file,
            **(distributed or {}),
        )
        record.update(
            status="ok",
            best_valid_result={k: float(v) for k, v in result["best_valid_result"].items()},
            test_result={k: float(v) for k, v in result["test_result"].items()},
            eval_protocol=result["eval_protocol"],
            test_result_by_protocol={
                p: {k: float(v) for k, v in r.items()} for p, r in result["test_result_by_protocol"].items()
            },
            train_seconds=result["train_seconds"],
            test_seconds=result["test_seconds"],
            epochs_trained=result["epochs_trained"],
            valid_history=result["valid_history"],
            checkpoint=portable(os.path.abspath(result["checkpoint"])),
            log_file=portable(os.path.abspath(log_file)),
            **result["provenance"],
        )
    except Exception as e:  # a failed run is recorded and the grid goes on
        record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
        log(f"{step} {key}: FAILED: {record['error']}")
    record["wall_seconds"] = time.time() - start
    record["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_json_atomic(path, record)
    return record


def compare(models, datasets, seeds, out, config_files=None, config_dict=None, cmd_args=(), force=False,
            variant=None, baseline=None, log=print, distributed=None, jobs=1, ray_address=None, ray_cpus_per_run=1):
    """The compare command: check every (model, dataset) configuration before the first run, run
    the grid (``run_grid``; with ``jobs`` > 1 in that many processes, with ``ray_address`` as Ray
    tasks, ``jobs.py``), rebuild the tables; returns (records, {table name: markdown})."""
    from recbole_diffurec.config import Config
    from recbole_diffurec.keys import route_cmd_args
    from recbole_diffurec.errors import UsageError

    if any(str(a).startswith("--seed=") for a in cmd_args):
        raise UsageError("use --seeds=... (comma-separated) in compare mode, not --seed.")
    configs = {}
    for model in models:  # a --key=value of the grid goes to the models that define the key
        own_args, left_out = route_cmd_args(cmd_args, model, models)
        if left_out:
            log(f"{model} does not define {', '.join('--' + k for k in left_out)}: not passed to it")
        for dataset in datasets:
            configs[dataset, model] = Config(model, dataset, config_files, config_dict, own_args)
    for dataset in datasets:
        report = budget_differences({m: configs[dataset, m] for m in models})
        if report:
            log(f"\n{dataset}: {report}\n")
    grid = dict(models=models, datasets=datasets, seeds=seeds, out=out, config_files=config_files,
                config_dict=config_dict, cmd_args=list(cmd_args), force=force, variant=variant)
    if (jobs > 1 or ray_address) and distributed and (distributed.get("nproc", 1) > 1 or distributed.get("world_size", -1) > 0):
        raise UsageError("--jobs and --ray_address run several runs at once, each in one process: drop --nproc/--world_size.")
    paths = [os.path.abspath(os.path.join(out, "runs", run_key(d, run_label(m, variant), s) + ".json"))
             for d in datasets for m in models for s in seeds]
    if ray_address:
        from recbole_diffurec.jobs import run_on_ray

        records = run_on_ray(ray_address, run_grid, grid, paths, ray_cpus_per_run, log)
    elif jobs > 1:
        from recbole_diffurec.jobs import run_jobs

        records = run_jobs(jobs, run_grid, grid, paths, log)
    else:
        records = run_grid(**grid, log=log, distributed=distributed)
    return records, build_tables(out, baseline, log)


# ----- fair comparisons -----
# (what the row shows, the keys that set it, first one a model defines wins)
BUDGET_KEYS = (
    ("width", ("hidden_size", "embedding_size")),
    ("layers", ("n_layers", "num_layers")),
    ("heads", ("n_heads",)),
    ("max length", ("MAX_ITEM_LIST_LENGTH",)),
    ("batch", ("train_batch_size",)),
    ("epochs", ("epochs",)),
    ("patience", ("stopping_step",)),
    ("learning rate", ("learning_rate",)),
    ("StepLR every", ("lr_step_size",)),
    ("plateau decay", ("lr_plateau_patience",)),
)
EQUALISE = (
    "To equalise: --config_files=properties/accuracy.yaml sets the width, blocks, heads, max length, batch, "
    "epochs and early stopping of every model (the accuracy protocol); set any other row with --key=value, "
    "which goes to every model of the grid that defines the key (e.g. --lr_step_size=0)."
)


def _budget_value(config, keys):
    for key in keys:
        if key in config and config[key] is not None:
            return f"{config[key]} ({key})" if key != keys[0] else config[key]
    return None


def budget_differences(configs: dict[str, Any]) -> str | None:
    """A Markdown table of the size and budget settings on which the models of a grid differ
    (``configs``: model -> resolved config), with how to equalise them; None if they agree."""
    if len(configs) < 2:
        return None
    rows = []
    for name, keys in BUDGET_KEYS:
        values = {m: _budget_value(c, keys) for m, c in configs.items()}
        if len({str(v) for v in values.values() if v is not None}) > 1:
            rows.append([name] + ["-" if v is None else v for v in values.values()])
    if not rows:
        return None
    table = markdown_table(["setting"] + list(configs), rows)
    return f"the models differ in size or training budget:\n{table}\n{EQUALISE}"


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
    """(t, p, mean relative difference in %) of paired samples; scipy's ttest_rel.

    t and p are NaN when every paired difference is the same (no variance: the test is undefined).
    """
    from scipy import stats

    diffs = [m - b for m, b in zip(model_values, baseline_values)]
    if all(math.isclose(d, diffs[0], rel_tol=0.0, abs_tol=1e-9) for d in diffs):
        t, p = math.nan, math.nan
    else:
        t, p = stats.ttest_rel(model_values, baseline_values)
    rel = statistics.mean((m - b) / b * 100 if b else math.nan for m, b in zip(model_values, baseline_values))
    return float(t), float(p), rel


def p_text(p: float, digits: int = 2) -> str:
    """A p-value as the tables write it: ``n/a`` where the test is undefined."""
    return "n/a" if math.isnan(p) else f"{p:.{digits}g}"


def run_protocol(runs) -> str:
    """The evaluation protocol of a model's runs' ``test_result`` (records before the key: RecBole's)."""
    protocols = sorted({r.get("eval_protocol", PROTOCOLS[0]) for r in runs})
    return "+".join(protocols)


# where a published row's numbers were measured: our two protocols, or the DiffuRec authors' own
# evaluation (MODEL_SPEC section 8), which is neither
PUBLISHED_PROTOCOLS = PROTOCOLS + ("reference_code",)
PROTOCOL_NAMES = {"recbole": "RecBole's protocol", "exclude_history": "history removed",
                  "reference_code": "the authors' evaluation"}
PUBLISHED_KEYS = {"name": str, "source": str, "protocol": str, "hit@10": float, "ndcg@10": float}


def _check_published(path: str, rows: Any) -> list[dict[str, Any]]:
    """``published``: a list of {name, source, protocol, hit@10, ndcg@10}; an error names the bad entry."""
    if not isinstance(rows, list):
        raise ValueError(f"{path}: published is a list of rows ({{name, source, protocol, hit@10, ndcg@10}}), got {type(rows).__name__}")
    for i, row in enumerate(rows):
        where = f"{path}: published[{i}]"
        if not isinstance(row, dict) or set(row) != set(PUBLISHED_KEYS):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"{where} needs exactly the keys {sorted(PUBLISHED_KEYS)}, got {got}")
        for key, kind in PUBLISHED_KEYS.items():
            value = row[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = row[key] = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{where}.{key} must be a {kind.__name__}, got {value!r}")
        if row["protocol"] not in PUBLISHED_PROTOCOLS:
            raise ValueError(f"{where}.protocol must be one of {', '.join(PUBLISHED_PROTOCOLS)}, got {row['protocol']!r}")
        for key in ("hit@10", "ndcg@10"):
            if not 0.0 <= row[key] <= 1.0:
                raise ValueError(f"{where}.{key} is a fraction in [0, 1] (not a percentage), got {row[key]}")
    return rows


def read_study(out: str) -> dict[str, Any]:
    """``OUT/study.yaml``, the folder's own settings for ``--tables`` (empty if absent):
    ``baseline`` (the label t-tests compare against), ``headline`` (label: name shown, in order),
    ``published`` (rows from the literature for the side-by-side table) and ``comparisons`` (pairs
    [label, reference label] for the table of paired t-tests between two rows)."""
    import yaml

    path = os.path.join(out, "study.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        study = yaml.safe_load(f) or {}
    unknown = set(study) - {"baseline", "headline", "published", "comparisons"}
    if unknown or not isinstance(study.get("headline", {}), dict):
        raise ValueError(
            f"{path}: keys are baseline (a label), headline (label: name shown), published (a list of rows) "
            f"and comparisons (a list of [label, label]); got {sorted(study)}"
        )
    if "published" in study:
        study["published"] = _check_published(path, study["published"])
    pairs = study.get("comparisons", [])
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in pairs
    ):
        raise ValueError(f"{path}: comparisons is a list of [label, reference label] pairs; got {pairs!r}")
    return study


def _best_valid(runs) -> dict[int, float]:
    """{seed: best validation NDCG@10} of a model's runs."""
    return {seed: r["best_valid_result"]["ndcg@10"] for seed, r in runs.items()
            if (r.get("best_valid_result") or {}).get("ndcg@10") is not None}


def _comparisons(out, grouped, pairs, names):
    """``comparisons``: for each [label, reference] of the study, over the seeds both have, the
    mean of each and the paired t-test (relative difference, p) of the best validation NDCG@10 and
    of test NDCG@10 and HR@10 under each protocol. None if no pair has two common seeds."""
    rows, csv_rows = [], []
    for dataset, models in grouped.items():
        for label, reference in pairs:
            mine, theirs = models.get(label), models.get(reference)
            if not mine or not theirs:
                continue
            scores = [("validation", "NDCG@10", _best_valid(mine), _best_valid(theirs))]
            for protocol in PROTOCOLS:
                for m in ("ndcg@10", "hit@10"):
                    scores.append((protocol, LABELS[m], _seed_values(mine, protocol, m), _seed_values(theirs, protocol, m)))
            for protocol, metric, a, b in scores:
                seeds = sorted(set(a) & set(b))
                if len(seeds) < 2:
                    continue
                _, p, rel = paired_ttest([a[s] for s in seeds], [b[s] for s in seeds])
                means = statistics.mean(a[s] for s in seeds), statistics.mean(b[s] for s in seeds)
                cells = [dataset, names.get(label, label), names.get(reference, reference), protocol, metric,
                         ",".join(map(str, seeds))]
                rows.append(cells + [f"{means[0]:.4f}", f"{means[1]:.4f}", f"{rel:+.1f}%", p_text(p)])
                csv_rows.append(cells + [f"{means[0]:.6f}", f"{means[1]:.6f}", f"{rel:.3f}", p_text(p, 4)])
    if not rows:
        return None
    header = ["dataset", "model", "reference", "protocol", "metric", "seeds", "model mean", "reference mean",
              "rel. diff", "p (paired t-test)"]
    return _write(out, "comparisons", header, csv_rows, rows,
                  csv_header=header[:8] + ["rel. diff %", "p (paired t-test)"])


def _seed_values(runs, protocol: str, metric: str) -> dict[int, float]:
    """{seed: test ``metric`` under ``protocol``} of a model's runs: from ``test_result_by_protocol``
    where the run recorded both, else from ``test_result`` if the run was evaluated under that
    protocol; runs without the metric (records older than it) are left out."""
    values = {}
    for seed, r in runs.items():
        both = r.get("test_result_by_protocol")
        if both:
            result = both.get(protocol, {})
        elif r.get("eval_protocol", PROTOCOLS[0]) == protocol:
            result = r["test_result"]
        else:
            continue
        if metric in result:
            values[seed] = result[metric]
    return values


def _protocol_values(runs, protocol: str, metric: str) -> list[float]:
    """A model's test ``metric`` under ``protocol``, over the runs that have it (``_seed_values``)."""
    return list(_seed_values(runs, protocol, metric).values())


def _side_by_side(out, grouped, names, published):
    """``side_by_side``: the study's headline rows under both protocols (mean ± std over the seeds
    that have the protocol) next to the published rows, each in the column of the protocol its
    numbers were measured under."""
    header = ["dataset", "row", "source"] + [
        f"{m}, {PROTOCOL_NAMES[p]}" for p in PUBLISHED_PROTOCOLS for m in ("HR@10", "NDCG@10")
    ]
    rows, csv_rows = [], []
    for dataset, models in grouped.items():
        for label, name in names.items():
            runs = models.get(label)
            if not runs:
                continue
            seeds = sorted(runs)
            cells = [dataset, name, f"this package ({label}, seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))})"]
            csv_cells = list(cells)
            for protocol in PUBLISHED_PROTOCOLS:
                for m in ("hit@10", "ndcg@10"):
                    values = _protocol_values(runs, protocol, m) if protocol in PROTOCOLS else []
                    if values:
                        mu, sd = _mean_std(values)
                        cells.append(f"{mu:.4f} ± {sd:.4f}" if len(values) > 1 else f"{mu:.4f}")
                        csv_cells.append(f"{mu:.6f}")
                    else:
                        cells.append("")
                        csv_cells.append("")
            rows.append(cells)
            csv_rows.append(csv_cells)
        for row in published:
            cells = [dataset, f"*{row['name']}*", row["source"]]
            csv_cells = [dataset, row["name"], row["source"]]
            for protocol in PUBLISHED_PROTOCOLS:
                for m in ("hit@10", "ndcg@10"):
                    mine = protocol == row["protocol"]
                    cells.append(f"*{row[m]:.4f}*" if mine else "")
                    csv_cells.append(f"{row[m]:.6f}" if mine else "")
            rows.append(cells)
            csv_rows.append(csv_cells)
    return _write(out, "side_by_side", header, csv_rows, rows)


# the headline tables' columns: accuracy at 10 and 20, then how much of the catalogue the top 10
# lists cover and how much of them is long-tail items (RecBole's ItemCoverage, TailPercentage)
HEADLINE_METRICS = ("hit@10", "ndcg@10", "hit@20", "ndcg@20", "itemcoverage@10", "tailpercentage@10")


def headline_table(protocol: str) -> str:
    """The name of the headline table under ``protocol``: ``headline`` for RecBole's protocol."""
    return "headline" if protocol == PROTOCOLS[0] else f"headline_{protocol}"


def _headline(out, grouped, baseline, names, protocol):
    """``headline_table(protocol)``: the study's rows under
    ``protocol``, each of ``HEADLINE_METRICS`` as mean ± std over the seeds that have it, and the
    paired t-test of NDCG@10 and HR@10 against the baseline over the seeds both have (relative
    difference, p). None if no headline run has the protocol."""
    rows, csv_rows = [], []
    for dataset, models in grouped.items():
        base = models.get(baseline, {})
        for label, name in names.items():
            runs = models.get(label)
            seeds_with = sorted(_seed_values(runs, protocol, "ndcg@10")) if runs else []
            if not seeds_with:
                continue
            cells = [dataset, name, label, ",".join(map(str, seeds_with))]
            csv_cells = list(cells)
            for m in HEADLINE_METRICS:
                values = list(_seed_values(runs, protocol, m).values())
                if not values:
                    cells.append("")
                    csv_cells += ["", ""]
                    continue
                mu, sd = _mean_std(values)
                cell = f"{mu:.4f} ± {sd:.4f}" if len(values) > 1 else f"{mu:.4f}"
                if len(values) < len(seeds_with):  # records older than the metric
                    cell += f" ({len(values)} seed{'s' if len(values) > 1 else ''})"
                cells.append(cell)
                csv_cells += [f"{mu:.6f}", f"{sd:.6f}"]
            for m in ("ndcg@10", "hit@10"):
                mine, theirs = _seed_values(runs, protocol, m), _seed_values(base, protocol, m)
                seeds = sorted(set(mine) & set(theirs))
                if label == baseline or len(seeds) < 2:
                    cells.append("baseline" if label == baseline else "")
                    csv_cells += ["", ""]
                    continue
                _, p, rel = paired_ttest([mine[s] for s in seeds], [theirs[s] for s in seeds])
                cells.append(f"{rel:+.1f}% (p = {p_text(p)})")
                csv_cells += [f"{rel:.3f}", p_text(p, 4)]
            rows.append(cells)
            csv_rows.append(csv_cells)
    if not rows:
        return None
    shown = [LABELS[m] for m in HEADLINE_METRICS]
    header = ["dataset", "model", "label", "seeds"] + [f"test {lab}" for lab in shown] + [
        f"NDCG@10 vs {baseline}", f"HR@10 vs {baseline}"]
    csv_header = header[:4] + [f"{lab} {part}" for lab in shown for part in ("mean", "std")] + [
        "NDCG@10 rel. diff %", "NDCG@10 p", "HR@10 rel. diff %", "HR@10 p"]
    return _write(out, headline_table(protocol), header, csv_rows, rows, csv_header=csv_header)


def build_tables(out: str, baseline: str | None = None, log: Callable[[str], None] = print) -> dict[str, str]:
    """Write the tables and figures of the records in ``out``; returns {name: markdown}. The
    baseline of the t-tests is ``baseline``, else the folder's ``study.yaml``'s, else DiffuRec."""
    records = load_records(out)
    grouped = _by_dataset_model(records)
    if not grouped:
        raise ValueError(f"no finished run under {os.path.join(out, 'runs')}: nothing to tabulate")
    study = read_study(out)
    baseline = baseline or study.get("baseline")
    tables = {}
    labels = [LABELS[m] for m in METRICS]
    if study.get("headline"):
        for protocol in PROTOCOLS:
            table = _headline(out, grouped, baseline, study["headline"], protocol)
            if table is not None:
                tables[headline_table(protocol)] = table
        tables["side_by_side"] = _side_by_side(out, grouped, study["headline"], study.get("published", []))
    if study.get("comparisons"):
        table = _comparisons(out, grouped, study["comparisons"], study.get("headline", {}))
        if table is not None:
            tables["comparisons"] = table

    # Table 3: mean ± std over seeds
    rows, md_rows = [], []
    for dataset, models in grouped.items():
        for model, runs in models.items():
            stats_ = [_mean_std([r["test_result"][m] for r in runs.values()]) for m in METRICS]
            cells = [dataset, model, len(runs), run_protocol(runs.values())]
            rows.append(cells + [f"{mu:.6f}" for mu, _ in stats_] + [f"{sd:.6f}" for _, sd in stats_])
            md_rows.append(cells + [f"{mu:.4f} ± {sd:.4f}" for mu, sd in stats_])
    header = ["dataset", "model", "seeds", "protocol"]
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
                rows.append([dataset, model, base, LABELS[m], len(seeds), "n/a" if math.isnan(t) else f"{t:.4f}", p_text(p, 4), f"{rel:+.2f}%"])
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

    # Both protocols side by side, for the runs that recorded both
    rows, md_rows = [], []
    for dataset, models in grouped.items():
        for model, runs in models.items():
            both = [r for r in runs.values() if r.get("test_result_by_protocol")]
            if not both:
                continue
            cells = [dataset, model, ",".join(str(r["seed"]) for r in both)]
            stats_ = [
                _mean_std([r["test_result_by_protocol"][p][m] for r in both])
                for p in PROTOCOLS for m in ("hit@10", "ndcg@10")
            ]
            rows.append(cells + [f"{mu:.6f}" for mu, _ in stats_] + [f"{sd:.6f}" for _, sd in stats_])
            md_rows.append(cells + [f"{mu:.4f} ± {sd:.4f}" for mu, sd in stats_])
    if rows:
        names = [f"{m} ({p})" for p in PROTOCOLS for m in ("HR@10", "NDCG@10")]
        tables["protocols"] = _write(
            out, "protocols", ["dataset", "model", "seeds"] + names, rows, md_rows,
            csv_header=["dataset", "model", "seeds"] + [f"{n} mean" for n in names] + [f"{n} std" for n in names],
        )

    # Table 2: training time
    rows = []
    for dataset, models in grouped.items():
        for model, runs in models.items():
            mean, std = _mean_std([r["train_seconds"] for r in runs.values()])
            rows.append([dataset, model, len(runs), f"{mean:.1f}", f"{std:.1f}"])
    tables["table2_time"] = _write(out, "table2_time", ["dataset", "model", "seeds", "train s (mean)", "train s (std)"], rows)

    # Figures: the headline rows if the study names them, else every model of the dataset
    from recbole_diffurec import plots

    for dataset, models in grouped.items():
        shown = {label: models[label] for label in study.get("headline", {}) if label in models} or models
        suffix = f"_{dataset}" if len(grouped) > 1 else ""
        for path in plots.write_all(out, shown, suffix):
            log(f"figure: {path}")

    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        log(f"{len(failed)} failed run(s) left out: " + ", ".join(run_key(r["dataset"], record_label(r), r["seed"]) for r in failed))
    return tables


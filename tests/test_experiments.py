"""The comparison command (records, tables, t-test, resume, failures) and the case study."""
import csv
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT, TINY, tiny_args

sys.path.insert(0, ROOT)
import run_recbole_diffurec as runner  # noqa: E402
from recbole_diffurec import experiments  # noqa: E402
from recbole_diffurec.case_study import case_study, length_groups, metrics_from_ranks  # noqa: E402

COMPARE = ["--models=SASRec,GRU4Rec", "--datasets=ml-100k", "--seeds=1,2"]


def compare_args(tiny_data, out, *extra):
    return COMPARE + [f"--out={out}", f"--data_path={tiny_data}"] + TINY + list(extra)


def records(out):
    return {os.path.basename(p)[:-5]: json.load(open(os.path.join(out, "runs", p))) for p in os.listdir(os.path.join(out, "runs"))}


def test_unequal_budgets_are_shown_before_training(tiny_data, workdir):
    """The models' own defaults differ (DiffuRecSys: the papers' hidden 128, 4 blocks, StepLR;
    SASRec: RecBole's hidden 64, 2 layers, constant rate): the grid says so, with the fix; the
    accuracy preset equalises the size, and a --key=value the rest."""
    from recbole_diffurec.config import Config

    data = [f"--data_path={tiny_data}"]
    configs = {m: Config(m, "ml-100k", cmd_args=data) for m in ("DiffuRecSys", "SASRec")}
    report = experiments.budget_differences(configs)
    rows = {line.split(" | ")[0].strip("| "): line for line in report.splitlines() if line.startswith("| ")}
    assert rows["width"] == "| width | 128 | 64 |" and rows["layers"] == "| layers | 4 | 2 |"
    assert "StepLR every" in rows and "properties/accuracy.yaml" in report
    preset = {m: Config(m, "ml-100k", ["properties/accuracy.yaml"], cmd_args=data) for m in configs}
    rows = experiments.budget_differences(preset)
    assert "| width |" not in rows and "| layers |" not in rows and "| StepLR every | 30 | 0 |" in rows
    equal = {m: Config(m, "ml-100k", ["properties/accuracy.yaml"], cmd_args=data + ["--lr_step_size=0"]) for m in configs}
    assert experiments.budget_differences(equal) is None


def test_compare_prints_the_differences_first(tiny_data, workdir, capsys):
    out = str(workdir / "res")
    args = ["--models=DiffuRecSys,SASRec", "--datasets=ml-100k", "--seeds=1", f"--out={out}",
            f"--data_path={tiny_data}", "--diffusion_steps=4"] + TINY
    assert runner.main(args) == 0
    printed = capsys.readouterr().out
    assert "differ in size or training budget" in printed and "| StepLR every | 30 | 0 |" in printed
    assert printed.index("StepLR every") < printed.index("[1/2] ml-100k__DiffuRecSys__seed1: running")


def test_compare_writes_records_and_tables(tiny_data, workdir, capsys):
    out = str(workdir / "res")
    assert runner.main(compare_args(tiny_data, out, "--baseline=SASRec")) == 0
    recs = records(out)
    assert set(recs) == {f"ml-100k__{m}__seed{s}" for m in ("SASRec", "GRU4Rec") for s in (1, 2)}
    assert all(r["status"] == "ok" and r["train_seconds"] > 0 and os.path.isfile(r["checkpoint"]) for r in recs.values())
    # each run's best checkpoint is its own, named after it (seeds run side by side once shared
    # RecBole's per-second name, and both tested one file); paths relative to the working directory
    assert {k: r["checkpoint"] for k, r in recs.items()} == {k: os.path.join("res", "checkpoints", k + ".pth") for k in recs}
    # a record stands alone: commit, versions, hardware, command, resolved config, validation curve,
    # and no absolute path of this machine
    for key, record in recs.items():
        assert set(record["commit"]) == {"sha", "dirty"} and len(record["commit"]["sha"]) == 40
        assert {"python", "torch", "recbole", "numpy", "recbole_diffurec"} <= set(record["versions"])
        assert record["hardware"]["device"] == "cpu" and record["hardware"]["cpu_cores"] >= 1
        assert record["config"]["hidden_size"] == 8 and record["config"]["seed"] == record["seed"]
        assert record["config"]["data_path"] == os.path.join("<data_path>", "ml-100k")
        assert "--seeds=1,2" in record["command"]
        assert [e for e, _ in record["valid_history"]] == list(range(record["epochs_trained"]))
        assert max(v for _, v in record["valid_history"]) == pytest.approx(record["best_valid_result"]["ndcg@10"], abs=1e-4)
        text = json.dumps(record)
        assert str(workdir) not in text and str(tiny_data) not in text and ROOT not in text, text
    for figure in ("valid_ndcg.png", "test_ndcg_per_seed.png"):
        assert os.path.getsize(os.path.join(out, "tables", figure)) > 1000
    for name in ("table2_time", "table3_metrics", "table4_ttest", "table5_overall_ml-100k"):
        for ext in ("md", "csv"):
            assert os.path.isfile(os.path.join(out, "tables", f"{name}.{ext}")), name
    printed = capsys.readouterr().out
    assert "[1/4] ml-100k__SASRec__seed1: running" in printed and "4 of 4 runs finished" in printed
    # every run of the process has its own log file, named after its record (TINY logs warnings only)
    for key, record in recs.items():
        assert record["log_file"] == os.path.join("res", "logs", key + ".log") and os.path.isfile(record["log_file"])

    # Table 4 against scipy on the stored numbers
    with open(os.path.join(out, "tables", "table4_ttest.csv")) as f:
        rows = {row["metric"]: row for row in csv.DictReader(f)}
    for metric, label in (("ndcg@10", "NDCG@10"), ("hit@20", "HR@20")):
        g = [recs[f"ml-100k__GRU4Rec__seed{s}"]["test_result"][metric] for s in (1, 2)]
        b = [recs[f"ml-100k__SASRec__seed{s}"]["test_result"][metric] for s in (1, 2)]
        t, p = stats.ttest_rel(g, b)
        row = rows[label]
        assert row["model"] == "GRU4Rec" and row["baseline"] == "SASRec"
        if np.isnan(t):
            assert row["t"] == "nan"
        else:
            assert float(row["t"]) == pytest.approx(t, rel=1e-3, abs=1e-4)
            assert float(row["p"]) == pytest.approx(p, rel=1e-3, abs=1e-4)
        rel = np.mean([(x - y) / y * 100 for x, y in zip(g, b)]) if all(b) else np.nan
        if not np.isnan(rel):
            assert float(row["avg rel. diff"].rstrip("%")) == pytest.approx(rel, abs=0.01)

    # Table 3: mean and std over seeds
    with open(os.path.join(out, "tables", "table3_metrics.csv")) as f:
        t3 = {row["model"]: row for row in csv.DictReader(f)}
    vals = [recs[f"ml-100k__SASRec__seed{s}"]["test_result"]["hit@10"] for s in (1, 2)]
    assert float(t3["SASRec"]["HR@10 mean"]) == pytest.approx(np.mean(vals), abs=1e-6)
    assert float(t3["SASRec"]["HR@10 std"]) == pytest.approx(np.std(vals, ddof=1), abs=1e-6)

    # Table 6: RecBole's beyond-accuracy metrics, recorded for every run
    with open(os.path.join(out, "tables", "table6_beyond_accuracy.csv")) as f:
        t6 = {row["model"]: row for row in csv.DictReader(f)}
    for metric, label in (("tailpercentage@10", "TailPercentage@10"), ("itemcoverage@10", "ItemCoverage@10")):
        vals = [recs[f"ml-100k__GRU4Rec__seed{s}"]["test_result"][metric] for s in (1, 2)]
        assert all(0 <= v <= 1 for v in vals)
        assert float(t6["GRU4Rec"][f"{label} mean"]) == pytest.approx(np.mean(vals), abs=1e-6)

    # tables rebuild from the records alone
    before = open(os.path.join(out, "tables", "table3_metrics.md")).read()
    os.remove(os.path.join(out, "tables", "table3_metrics.md"))
    assert runner.main([f"--tables={out}", "--baseline=SASRec"]) == 0
    assert open(os.path.join(out, "tables", "table3_metrics.md")).read() == before


def test_table_values_on_known_records(tmp_path):
    """Tables 4 and 5 on hand-made records with known answers."""
    def rec(model, seed, ndcg):
        result = {m: ndcg for m in experiments.METRICS}
        return {"dataset": "d", "model": model, "seed": seed, "status": "ok", "test_result": result, "train_seconds": 10.0 * seed}

    base = [0.10, 0.12, 0.11]
    better = [0.12, 0.13, 0.125]
    for s, (b, m) in enumerate(zip(base, better), 1):
        experiments.write_json_atomic(str(tmp_path / "runs" / f"b{s}.json"), rec("DiffuRec", s, b))
        experiments.write_json_atomic(str(tmp_path / "runs" / f"m{s}.json"), rec("DiffuRecSys", s, m))
    experiments.write_json_atomic(str(tmp_path / "runs" / "f.json"), {"dataset": "d", "model": "X", "seed": 1, "status": "failed"})
    experiments.build_tables(str(tmp_path), log=lambda *a: None)
    with open(tmp_path / "tables" / "table4_ttest.csv") as f:
        row = next(csv.DictReader(f))
    t, p = stats.ttest_rel(better, base)
    assert float(row["t"]) == pytest.approx(t, rel=1e-4) and float(row["p"]) == pytest.approx(p, rel=1e-3)
    assert float(row["avg rel. diff"].rstrip("%")) == pytest.approx(np.mean([(m - b) / b * 100 for m, b in zip(better, base)]), abs=0.01)
    with open(tmp_path / "tables" / "table5_overall_d.csv") as f:
        row = next(csv.DictReader(f))
    assert row["best"] == "DiffuRecSys"
    assert float(row["Improv."].rstrip("%")) == pytest.approx((np.mean(better) - np.mean(base)) / np.mean(base) * 100, abs=0.01)
    with open(tmp_path / "tables" / "table2_time.csv") as f:
        assert {r["model"]: float(r["train s (mean)"]) for r in csv.DictReader(f)} == {"DiffuRec": 20.0, "DiffuRecSys": 20.0}


def _study(tmp_path, text):
    (tmp_path / "study.yaml").write_text(text)


def test_side_by_side_places_each_row_under_its_protocol(tmp_path):
    """Our rows under both protocols (mean over seeds, or the one protocol a run was evaluated
    under), the published rows only in the column of their protocol."""
    def rec(label, seed, recbole, excluded=None, protocol="recbole"):
        r = {"dataset": "d", "model": label, "seed": seed, "status": "ok", "train_seconds": 1.0,
             "eval_protocol": protocol, "test_result": {m: (recbole if protocol == "recbole" else excluded) for m in experiments.METRICS}}
        if excluded is not None and protocol == "recbole":
            r["test_result_by_protocol"] = {"recbole": {"hit@10": recbole, "ndcg@10": recbole / 2},
                                            "exclude_history": {"hit@10": excluded, "ndcg@10": excluded / 2}}
        return r

    runs = [rec("A", 1, 0.10, 0.14), rec("A", 2, 0.12, 0.16), rec("B", 1, 0.2), rec("C", 1, None, 0.3, "exclude_history")]
    for r in runs:
        experiments.write_json_atomic(str(tmp_path / "runs" / f"{r['model']}{r['seed']}.json"), r)
    _study(tmp_path, """headline: {A: model A, B: model B, C: model C}
published:
  - {name: P, source: a paper, protocol: exclude_history, hit@10: 0.25, ndcg@10: 0.125}
  - {name: Q, source: another, protocol: reference_code, hit@10: 0.3, ndcg@10: 0.2}
""")
    experiments.build_tables(str(tmp_path), log=lambda *a: None)
    with open(tmp_path / "tables" / "side_by_side.csv") as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    cols = ["HR@10, RecBole's protocol", "NDCG@10, RecBole's protocol", "HR@10, history removed",
            "NDCG@10, history removed", "HR@10, the authors' evaluation", "NDCG@10, the authors' evaluation"]
    cell = lambda row: [float(rows[row][c]) if rows[row][c] else None for c in cols]  # noqa: E731
    assert cell("model A") == pytest.approx([0.11, 0.055, 0.15, 0.075, None, None])
    assert cell("model B") == [0.2, 0.2, None, None, None, None]  # evaluated under RecBole's protocol only
    assert cell("model C") == [None, None, 0.3, 0.3, None, None]
    assert cell("P") == [None, None, 0.25, 0.125, None, None]
    assert cell("Q") == [None, None, None, None, 0.3, 0.2]
    assert rows["model A"]["source"] == "this package (A, seeds 1,2)" and rows["model B"]["source"] == "this package (B, seed 1)"


def test_headline_tables_per_protocol(tmp_path):
    """headline (RecBole's protocol) and headline_exclude_history: each row's metrics and its t-test
    against the baseline under its own protocol; a run that recorded one protocol only, or lacks
    a metric, leaves its cells empty rather than borrowing the other protocol's numbers."""
    keys = experiments.HEADLINE_METRICS

    def rec(label, seed, recbole, excluded=None):
        by = {"recbole": {m: recbole + i / 100 for i, m in enumerate(keys)}}
        r = {"dataset": "d", "model": label, "seed": seed, "status": "ok", "train_seconds": 1.0,
             "eval_protocol": "recbole", "test_result": {**{m: recbole for m in experiments.METRICS}, **by["recbole"]}}
        if excluded is not None:
            by["exclude_history"] = {m: excluded + i / 100 for i, m in enumerate(keys) if m != "tailpercentage@10"}
            r["test_result_by_protocol"] = by
        return r

    base_r, base_x = [0.10, 0.12, 0.11], [0.20, 0.21, 0.23]
    mine_r, mine_x = [0.11, 0.125, 0.13], [0.19, 0.22, 0.20]
    runs = [rec("S", s, r, x) for s, r, x in zip((1, 2, 3), base_r, base_x)]
    runs += [rec("M", s, r, x) for s, r, x in zip((1, 2, 3), mine_r, mine_x)]
    runs += [rec("Old", 1, 0.05), rec("Old", 2, 0.08)]
    del runs[-1]["test_result"]["itemcoverage@10"]  # a record older than the metric
    for r in runs:
        experiments.write_json_atomic(str(tmp_path / "runs" / f"{r['model']}{r['seed']}.json"), r)
    _study(tmp_path, "baseline: S\nheadline: {M: mine, S: sasrec, Old: old}\n")
    tables = experiments.build_tables(str(tmp_path), log=lambda *a: None)
    assert {"headline", "headline_exclude_history"} <= set(tables)

    def read(name):
        with open(tmp_path / "tables" / f"{name}.csv") as f:
            return {r["label"]: r for r in csv.DictReader(f)}

    recbole, excluded = read("headline"), read("headline_exclude_history")
    assert list(recbole) == ["M", "S", "Old"] and list(excluded) == ["M", "S"]
    assert float(recbole["M"]["NDCG@10 mean"]) == pytest.approx(np.mean(mine_r) + 0.01, abs=1e-6)
    assert float(recbole["M"]["NDCG@20 std"]) == pytest.approx(np.std(mine_r, ddof=1), abs=1e-6)
    assert float(excluded["M"]["HR@20 mean"]) == pytest.approx(np.mean(mine_x) + 0.02, abs=1e-6)
    assert float(excluded["M"]["ItemCoverage@10 mean"]) == pytest.approx(np.mean(mine_x) + 0.04, abs=1e-6)
    assert excluded["M"]["TailPercentage@10 mean"] == ""
    assert float(recbole["Old"]["HR@10 mean"]) == pytest.approx(0.065, abs=1e-6) and recbole["Old"]["seeds"] == "1,2"
    assert float(recbole["Old"]["ItemCoverage@10 mean"]) == pytest.approx(0.09, abs=1e-6)
    assert "| 0.0900 (1 seed) |" in tables["headline"]
    for table, mine, base in ((recbole, mine_r, base_r), (excluded, mine_x, base_x)):
        _, p = stats.ttest_rel(np.add(mine, 0.01), np.add(base, 0.01))
        assert float(table["M"]["NDCG@10 p"]) == pytest.approx(p, rel=1e-3)
        assert table["S"]["NDCG@10 p"] == ""
    _, p = stats.ttest_rel([0.05, 0.08], base_r[:2])
    assert float(recbole["Old"]["HR@10 p"]) == pytest.approx(p, rel=1e-3)


def _comparison_record(label, seed, valid, recbole, excluded):
    """A finished run's record: best validation NDCG@10 ``valid``, test NDCG@10 ``recbole`` under
    RecBole's protocol and ``excluded`` with the history removed (HR@10 twice each)."""
    by = {"recbole": {"ndcg@10": recbole, "hit@10": 2 * recbole},
          "exclude_history": {"ndcg@10": excluded, "hit@10": 2 * excluded}}
    return {"dataset": "d", "model": label, "seed": seed, "status": "ok", "train_seconds": 1.0,
            "eval_protocol": "recbole", "best_valid_result": {"ndcg@10": valid},
            "test_result": {**{m: recbole for m in experiments.METRICS}, **by["recbole"]},
            "test_result_by_protocol": by}


def test_comparisons_pair_two_rows_under_both_protocols(tmp_path):
    """study.yaml's comparisons: each [model, reference] pair's paired t-tests over the seeds both
    have, of the best validation NDCG@10 and of test NDCG@10 and HR@10 under each protocol."""
    rec = _comparison_record
    a = [(0.050, 0.040, 0.050), (0.052, 0.041, 0.052), (0.051, 0.043, 0.053)]
    b = [(0.049, 0.041, 0.049), (0.050, 0.040, 0.050), (0.050, 0.040, 0.051), (0.060, 0.060, 0.060)]
    runs = [rec("A", s, *v) for s, v in zip((1, 2, 3), a)] + [rec("B", s, *v) for s, v in zip((1, 2, 3, 4), b)]
    for r in runs:
        experiments.write_json_atomic(str(tmp_path / "runs" / f"{r['model']}{r['seed']}.json"), r)
    _study(tmp_path, "headline: {A: model A, B: model B}\ncomparisons: [[A, B], [A, Missing]]\n")
    tables = experiments.build_tables(str(tmp_path), log=lambda *a: None)
    with open(tmp_path / "tables" / "comparisons.csv") as f:
        rows = {(r["protocol"], r["metric"]): r for r in csv.DictReader(f)}
    assert set(rows) == {("validation", "NDCG@10"), ("recbole", "NDCG@10"), ("recbole", "HR@10"),
                         ("exclude_history", "NDCG@10"), ("exclude_history", "HR@10")}
    for (protocol, metric), column in [(("validation", "NDCG@10"), 0), (("recbole", "NDCG@10"), 1),
                                       (("exclude_history", "HR@10"), 2)]:
        row, scale = rows[(protocol, metric)], 2 if metric == "HR@10" else 1
        mine, theirs = [scale * v[column] for v in a], [scale * v[column] for v in b[:3]]  # seed 4: B only
        assert row["seeds"] == "1,2,3" and row["model"] == "model A" and row["reference"] == "model B"
        assert float(row["model mean"]) == pytest.approx(np.mean(mine), abs=1e-6)
        assert float(row["reference mean"]) == pytest.approx(np.mean(theirs), abs=1e-6)
        assert float(row["p (paired t-test)"]) == pytest.approx(stats.ttest_rel(mine, theirs)[1], rel=1e-3)
        assert float(row["rel. diff %"]) == pytest.approx(np.mean((np.array(mine) - theirs) / theirs) * 100, abs=1e-3)
    assert "| model A | model B |" in tables["comparisons"]


def test_paired_ttest_with_equal_differences_is_undefined(tmp_path):
    """Seeds that differ by exactly the same amount (metrics rounded to 4 decimals) leave the
    t-test no variance: p is n/a in every table, not the 0 that scipy's division gives."""
    t, p, rel = experiments.paired_ttest([0.0437, 0.0432], [0.0426, 0.0421])
    assert np.isnan(t) and np.isnan(p) and rel == pytest.approx(np.mean([0.0011 / 0.0426, 0.0011 / 0.0421]) * 100)
    t, p, _ = experiments.paired_ttest([0.0437, 0.0433, 0.0441], [0.0431, 0.0437, 0.0433])
    assert p == pytest.approx(stats.ttest_rel([0.0437, 0.0433, 0.0441], [0.0431, 0.0437, 0.0433])[1])

    runs = [_comparison_record(label, seed, v, v, v)
            for label, seed, v in [("A", 1, 0.0437), ("A", 2, 0.0432), ("B", 1, 0.0426), ("B", 2, 0.0421)]]
    for r in runs:
        experiments.write_json_atomic(str(tmp_path / "runs" / f"{r['model']}{r['seed']}.json"), r)
    _study(tmp_path, "baseline: B\nheadline: {A: model A, B: model B}\ncomparisons: [[A, B]]\n")
    tables = experiments.build_tables(str(tmp_path), baseline="B", log=lambda *a: None)
    assert "(p = n/a)" in tables["headline"] and "p = 0)" not in tables["headline"]
    assert "| n/a |" in tables["comparisons"] and "| 0 |" not in tables["comparisons"]
    with open(tmp_path / "tables" / "table4_ttest.csv") as f:
        assert {r["p"] for r in csv.DictReader(f)} == {"n/a"}


@pytest.mark.parametrize("text", ["comparisons: [A, B]\n", "comparisons: [[A]]\n", "comparisons: {A: B}\n"])
def test_study_comparisons_are_checked(tmp_path, text):
    _study(tmp_path, "headline: {A: a}\n" + text)
    with pytest.raises(ValueError, match="comparisons is a list of"):
        experiments.read_study(str(tmp_path))


@pytest.mark.parametrize("published, message", [
    ("{name: P}", "published is a list of rows"),
    ("[{name: P, source: s, protocol: recbole, hit@10: 0.1}]", "published[0] needs exactly the keys"),
    ("[{name: P, source: s, protocol: mine, hit@10: 0.1, ndcg@10: 0.1}]", "published[0].protocol must be one of"),
    ("[{name: P, source: s, protocol: recbole, hit@10: 9.8, ndcg@10: 0.1}]", "published[0].hit@10 is a fraction in [0, 1]"),
    ("[{name: P, source: s, protocol: recbole, hit@10: high, ndcg@10: 0.1}]", "published[0].hit@10 must be a float"),
])
def test_study_published_rows_are_checked(tmp_path, published, message):
    _study(tmp_path, f"headline: {{A: a}}\npublished: {published}\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        experiments.read_study(str(tmp_path))


def test_failed_run_recorded_and_others_go_on(tiny_data, workdir, monkeypatch, capsys):
    import recbole_diffurec.quick_start as qs

    real_run = qs.run

    def flaky(model, *args, **kwargs):
        if model == "GRU4Rec":
            raise RuntimeError("boom")
        return real_run(model, *args, **kwargs)

    monkeypatch.setattr(qs, "run", flaky)
    out = str(workdir / "res")
    assert runner.main(compare_args(tiny_data, out)) == 1  # non-zero: some runs failed
    recs = records(out)
    assert [recs[f"ml-100k__GRU4Rec__seed{s}"]["status"] for s in (1, 2)] == ["failed", "failed"]
    assert "RuntimeError: boom" in recs["ml-100k__GRU4Rec__seed1"]["error"]
    assert [recs[f"ml-100k__SASRec__seed{s}"]["status"] for s in (1, 2)] == ["ok", "ok"]
    # a rerun retries the failed runs only
    monkeypatch.setattr(qs, "run", real_run)
    assert runner.main(compare_args(tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert printed.count("done before, skipped") == 2
    assert all(r["status"] == "ok" for r in records(out).values())


def test_resume_after_kill_skips_finished_runs(tiny_data, workdir, capsys):
    out = str(workdir / "res")
    args = compare_args(tiny_data, out)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run_recbole_diffurec.py")] + args, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = os.path.join(out, "runs")
    deadline = time.time() + 180
    while time.time() < deadline and not (os.path.isdir(runs) and any(f.endswith(".json") for f in os.listdir(runs))):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished = {f for f in os.listdir(runs) if f.endswith(".json")}
    assert 1 <= len(finished) < 4, "the kill should land mid-grid"
    mtimes = {f: os.path.getmtime(os.path.join(runs, f)) for f in finished}
    assert runner.main(args) == 0
    assert capsys.readouterr().out.count("done before, skipped") == len(finished)
    assert {f: os.path.getmtime(os.path.join(runs, f)) for f in finished} == mtimes  # not rerun
    assert len(records(out)) == 4


def test_run_killed_mid_training_resumes_to_the_same_metrics(tiny_data, workdir, capsys):
    """kill -9 a real compare process after its first epoch's training state is written; the rerun
    continues from that state and ends with the metrics of an uninterrupted run."""
    grid = ["--models=DiffuRecSys", "--datasets=ml-100k", "--seeds=1", f"--data_path={tiny_data}"]
    budget = ["--epochs=6", "--stopping_step=50"]
    extra = [a for a in TINY if a.split("=")[0] != "--epochs"] + budget
    assert runner.main(grid + [f"--out={workdir / 'whole'}"] + extra) == 0
    out = str(workdir / "killed")
    args = grid + [f"--out={out}"] + extra
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run_recbole_diffurec.py")] + args, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = os.path.join(out, "checkpoints", "ml-100k__DiffuRecSys__seed1.state.pth")
    deadline = time.time() + 180
    while time.time() < deadline and not os.path.isfile(state):
        time.sleep(0.01)
    proc.kill()  # SIGKILL: nothing gets to clean up
    proc.wait()
    record = os.path.join(out, "runs", "ml-100k__DiffuRecSys__seed1.json")
    assert os.path.isfile(state) and not os.path.isfile(record), "the kill should land mid-training"
    assert os.path.isfile(record[:-5] + ".lock")  # the killed holder's claim stays behind
    capsys.readouterr()
    assert runner.main(args) == 0
    printed = capsys.readouterr().out
    assert f"pid {proc.pid}" in printed and "is gone: taking the run over" in printed
    assert "resuming its training state" in printed and not os.path.isfile(record[:-5] + ".lock")
    whole, resumed = records(str(workdir / "whole")), records(out)
    key = "ml-100k__DiffuRecSys__seed1"
    assert resumed[key]["epochs_trained"] == whole[key]["epochs_trained"] == 6
    assert resumed[key]["best_valid_result"] == whole[key]["best_valid_result"]
    assert resumed[key]["test_result"] == whole[key]["test_result"]


def test_each_run_of_a_process_logs_to_its_own_file(tiny_data, workdir):
    out = str(workdir / "logs")
    args = ["--models=SASRec", "--datasets=ml-100k", "--seeds=1,2", f"--out={out}", f"--data_path={tiny_data}"]
    args += [a for a in TINY if not a.startswith("--state=")]  # INFO: the full log
    subprocess.run([sys.executable, os.path.join(ROOT, "run_recbole_diffurec.py")] + args, cwd=workdir,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=True)
    for seed in (1, 2):
        text = open(os.path.join(out, "logs", f"ml-100k__SASRec__seed{seed}.log")).read()
        assert f"seed = {seed}" in text and "test result" in text
        assert f"seed = {3 - seed}" not in text


def test_force_reruns(tiny_data, workdir, capsys):
    out = str(workdir / "res")
    args = ["--models=SASRec", "--datasets=ml-100k", "--seeds=3", f"--out={out}", f"--data_path={tiny_data}"] + TINY
    assert runner.main(args) == 0
    assert runner.main(args + ["--force"]) == 0
    assert "skipped" not in capsys.readouterr().out


def test_case_study_missing_checkpoint(capsys, workdir):
    assert runner.main(["--case_study=nope.pth"]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_compare_usage_errors(capsys, workdir):
    assert runner.main(["--models=SASRec", "--seed=3"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert runner.main(["--models=SASRec", "--seeds=a,b"]) == 2
    assert "integers" in capsys.readouterr().err
    assert runner.main(["--models=SASRec,SASRc", "--datasets=ml-100k"]) == 2  # checked before any run
    assert "SASRc" in capsys.readouterr().err
    assert not os.path.isdir(workdir / "results")


def test_rank_metrics_and_groups():
    m = metrics_from_ranks([0, 4, 9, 30])
    assert m["hit@5"] == 0.5 and m["hit@10"] == 0.75 and m["hit@20"] == 0.75
    assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(6)) / 4)
    groups, labels = length_groups(np.arange(1, 101))
    assert np.bincount(groups).tolist() == [20] * 5 and labels[0] == "G1 (1-20)"


@pytest.mark.parametrize("model", ["SASRec", "DiffuRecSys"])
def test_case_study_writes_table_and_png(model, tiny_data, workdir):
    from recbole_diffurec.quick_start import run

    extra = ("--diffusion_steps=4", "--n_heads=2") if model == "DiffuRecSys" else ()
    result = run(model, "ml-100k", cmd_args=tiny_args(tiny_data, *extra))
    out = str(workdir / "case")
    if model == "DiffuRecSys":  # through the command
        assert runner.main([f"--case_study={result['checkpoint']}", f"--out={out}", "--ensemble=2"]) == 0
        saved = json.load(open(os.path.join(out, "case_study.json")))
        rows, beyond = saved["rows"], saved["beyond_accuracy"]
    else:
        rows, beyond = case_study(result["checkpoint"], out, n_ensemble=2, log=lambda *a: None)
    for name in ("case_study.md", "case_study.csv", "case_study.json"):
        assert os.path.isfile(os.path.join(out, name))
    variants = {r["inference"] for r in rows}
    segments = [r["segment"] for r in rows if r["inference"] == "single run"]
    assert segments[:3] == ["all", "head items", "long-tail items"] and len(segments) == 8
    assert [b["inference"] for b in beyond] == sorted(variants, key=lambda v: v != "single run")
    assert all(0 <= b["tailpercentage@10"] <= 1 and 0 < b["itemcoverage@20"] <= 1 for b in beyond)
    single = {r["segment"]: r for r in rows if r["inference"] == "single run"}
    assert single["head items"]["users"] + single["long-tail items"]["users"] == single["all"]["users"]
    assert sum(single[s]["users"] for s in segments[3:]) == single["all"]["users"]
    if model == "SASRec":
        # deterministic model: our per-user ranks reproduce RecBole's own test metrics
        for k in ("hit@10", "ndcg@10", "hit@20"):
            assert single["all"][k] == pytest.approx(float(result["test_result"][k]), abs=1e-4)
        # and the beyond-accuracy figures are RecBole's own, from the same top-K lists
        for k in ("itemcoverage@10", "averagepopularity@10", "giniindex@20", "tailpercentage@10"):
            assert beyond[0][k] == pytest.approx(float(result["test_result"][k]), abs=1e-4), k
        assert variants == {"single run"} and not os.path.exists(os.path.join(out, "tsne.png"))
    else:
        assert variants == {"single run", "ensemble of 2"}
        png = os.path.join(out, "tsne.png")
        assert os.path.getsize(png) > 1000 and open(png, "rb").read(4) == b"\x89PNG"


def test_variant_runs_share_tables_under_their_own_name(tiny_data, workdir, capsys):
    """--variant=NAME records a model's runs with other settings as MODEL-NAME, beside the plain
    runs, in the same tables; the settings really apply."""
    out = str(workdir / "res")
    base = ["--models=SASRec", "--datasets=ml-100k", "--seeds=1", f"--out={out}"]
    assert runner.main(base + tiny_args(tiny_data)) == 0
    assert runner.main(base + ["--variant=wide"] + tiny_args(tiny_data, "--hidden_size=16", "--inner_size=32")) == 0
    recs = records(out)
    assert set(recs) == {"ml-100k__SASRec__seed1", "ml-100k__SASRec-wide__seed1"}
    wide = recs["ml-100k__SASRec-wide__seed1"]
    assert wide["model"] == "SASRec" and wide["label"] == "SASRec-wide" and wide["epochs_trained"] == 1
    assert wide["test_result"] != recs["ml-100k__SASRec__seed1"]["test_result"]
    table = open(os.path.join(out, "tables", "table3_metrics.md")).read()
    assert "| ml-100k | SASRec | 1 |" in table and "| ml-100k | SASRec-wide | 1 |" in table


def test_record_is_dirty_only_when_code_differs(tmp_path, monkeypatch):
    """A record's commit says dirty when a file the run computes with differs from the commit, not
    when only results or documents do (a grid rebuilding a folder's tables meanwhile)."""
    from recbole_diffurec import provenance

    repo = tmp_path / "clone"
    for name in ("recbole_diffurec/model.py", "results/x/tables/t.md", "docs/d.md", "README.md"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("a\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git[:-2] + ["init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    monkeypatch.setattr(provenance, "CLONE_ROOT", str(repo))
    assert provenance._git_commit()["dirty"] is False
    for name in ("results/x/tables/t.md", "docs/d.md", "README.md"):
        (repo / name).write_text("b\n")
    assert provenance._git_commit()["dirty"] is False
    (repo / "recbole_diffurec/model.py").write_text("b\n")
    assert provenance._git_commit()["dirty"] is True

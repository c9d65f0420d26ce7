"""Grids run in parallel: runs claim themselves, --jobs, Ray tasks and Ray Tune; each run is trained
exactly once whatever runs beside it."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_args

sys.path.insert(0, ROOT)
import run_recbole_diffurec as runner  # noqa: E402

KEYS = [f"ml-100k__SASRec__seed{s}" for s in (1, 2, 3, 4)]


def grid_args(tiny_data, out):
    return ["--models=SASRec", "--datasets=ml-100k", "--seeds=1,2,3,4", f"--out={out}"] + tiny_args(tiny_data, model="SASRec")


def started(text):
    """How many times each run was started ("KEY: running") in a grid's output."""
    return {key: len(re.findall(rf"{key}: (running|resuming)", text)) for key in KEYS}


def assert_each_run_once(out, texts):
    counts = started("\n".join(texts))
    assert counts == {key: 1 for key in KEYS}, counts
    for key in KEYS:
        with open(os.path.join(out, "runs", key + ".json")) as f:
            assert json.load(f)["status"] == "ok"
        assert not os.path.exists(os.path.join(out, "runs", key + ".lock"))


def test_claims_skip_a_run_a_live_process_holds(tiny_data, workdir, capsys):
    from recbole_diffurec.claims import claim

    out = str(workdir / "res")
    held = claim(out, KEYS[0])  # this process holds seed 1, as another command would
    assert held is not None and claim(out, KEYS[0]) is None  # a second claim of a live holder's run fails
    assert runner.main(grid_args(tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert f"{KEYS[0]}: held by" in printed and f"pid {os.getpid()}" in printed
    assert not os.path.exists(os.path.join(out, "runs", KEYS[0] + ".json"))  # never written by the other
    held.release()
    assert runner.main(grid_args(tiny_data, out)) == 0  # the run is free again: trained now
    assert started(capsys.readouterr().out) == {KEYS[0]: 1, KEYS[1]: 0, KEYS[2]: 0, KEYS[3]: 0}


def test_two_commands_on_one_folder_train_each_run_once(tiny_data, workdir):
    out = str(workdir / "res")
    command = [sys.executable, os.path.join(ROOT, "run_recbole_diffurec.py")] + grid_args(tiny_data, out)
    procs = [subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1")) for _ in range(2)]
    texts = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert_each_run_once(out, texts)


def test_jobs_train_each_run_once(tiny_data, workdir, capfd):
    out = str(workdir / "res")
    assert runner.main(grid_args(tiny_data, out) + ["--jobs=2"]) == 0
    printed = capfd.readouterr().out  # the workers print to the file descriptor
    assert "[job 1]" in printed and "[job 2]" in printed and "table3_metrics" in printed
    assert_each_run_once(out, [printed])
    assert os.path.isfile(os.path.join(out, "logs", "job-1.out"))


@pytest.fixture(scope="module")
def local_ray():
    pytest.importorskip("ray")
    from recbole_diffurec.jobs import start_ray

    ray = start_ray("local", num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_grid_trains_each_run_once(local_ray, tiny_data, workdir, capsys):
    out = str(workdir / "res")
    assert runner.main(grid_args(tiny_data, out) + ["--ray_address=local"]) == 0
    printed = capsys.readouterr().out
    assert "4 runs sent to Ray" in printed and "table3_metrics" in printed
    assert_each_run_once(out, [printed])


def test_search_with_ray_tune(local_ray, tiny_data, workdir, capsys):
    (workdir / "space.hyper").write_text("learning_rate loguniform -7,-5\nhidden_dropout_prob choice [0.1,0.3]\n")
    out = workdir / "search"
    args = ["--model=SASRec", "--hyper=space.hyper", "--tool=ray", "--max_evals=2", f"--out={out}"]
    assert runner.main(args + tiny_args(tiny_data, model="SASRec")) == 0
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert all(set(r["params"]) == {"learning_rate", "hidden_dropout_prob"} for r in records)
    assert (out / "best.yaml").exists()

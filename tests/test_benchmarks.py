"""Smoke tests of the benchmark scripts (not benchmarks themselves): each runs end to end on tiny
data in seconds and prints what its docstring promises."""
import importlib.util
import json
import os

import pytest

from conftest import ROOT, tiny_args


def script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    from recbole_diffurec.quick_start import run

    folder = tmp_path_factory.mktemp("ckpt")
    result = run("DiffuRecSys", "ml-100k", cmd_args=tiny_args(
        tiny_data, "--diffusion_steps=4", "--n_heads=2", f"--checkpoint_dir={folder}"))
    return result["checkpoint"]


def table_rows(text):
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| checkpoint")]


def test_sampling_steps_script(checkpoint, capsys):
    script("sampling_steps").main([checkpoint, "--steps=4,1", "--ensembles=1,2"])
    rows = table_rows(capsys.readouterr().out)
    assert [r.split(" | ")[3:5] for r in rows] == [["4", "1"], ["4", "2"], ["1", "1"], ["1", "2"]]
    assert all(0 <= float(r.split(" | ")[7]) <= 1 for r in rows)  # NDCG@10


def test_sampling_steps_script_on_a_baseline(tiny_data, workdir, capsys):
    """A model without diffusion is evaluated once, and its figures are RecBole's own."""
    from recbole_diffurec.quick_start import run

    result = run("SASRec", "ml-100k", cmd_args=tiny_args(
        tiny_data, f"--checkpoint_dir={workdir}", "--metrics=['Hit','NDCG','ItemCoverage','TailPercentage']"))
    capsys.readouterr()
    script("sampling_steps").main([result["checkpoint"], "--steps=4,1", "--ensembles=1,2"])
    rows = table_rows(capsys.readouterr().out)
    assert len(rows) == 1
    cells = rows[0].strip(" |").split(" | ")
    assert cells[1] == "SASRec" and cells[3:5] == ["-", "-"]
    test = result["test_result"]
    assert [float(c) for c in cells[6:10]] == pytest.approx(
        [test["hit@10"], test["ndcg@10"], test["itemcoverage@10"], test["tailpercentage@10"]], abs=1e-4)


def test_pathway_script(checkpoint, capsys):
    script("pathway").main([checkpoint, "--users=20", "--runs=2"])
    rows = table_rows(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0].split(" | ")[1] == "DiffuRecSys" and rows[0].split(" | ")[3] == "20"


def test_benchmark_script(tiny_data, workdir, capsys):
    out = str(workdir / "bench.json")
    script("benchmark").main([
        "--models=DiffuRec,SASRec", f"--data_path={tiny_data}", "--epochs=1", "--hidden_size=8", "--n_heads=1",
        "--n_layers=1", "--max_len=10", "--batch_size=256", f"--out={out}", "--diffusion_steps=4",
        "--train_modes=prefix,sequence",
    ])
    results = json.load(open(out))["results"]
    assert [(r["name"], r["train_mode"]) for r in results] == [
        ("DiffuRec", "prefix"), ("DiffuRec", "sequence"), ("SASRec", "prefix"), ("SASRec", "sequence")]
    assert all(r["train_s_per_epoch"] > 0 for r in results)
    # both modes train on the same targets: every training sample's target once per epoch
    for name in ("DiffuRec", "SASRec"):
        prefix, sequence = [r for r in results if r["name"] == name]
        assert prefix["train_samples_per_s"] * prefix["train_s_per_epoch"] == pytest.approx(
            sequence["train_samples_per_s"] * sequence["train_s_per_epoch"])
        assert sequence["full_batches_per_epoch"] < prefix["full_batches_per_epoch"]
    assert "| DiffuRec" in capsys.readouterr().out


def test_benchmark_variants_are_rows_of_one_process(tiny_data, workdir):
    out = str(workdir / "variants.json")
    script("benchmark").main([
        "--models=DiffuRec", f"--data_path={tiny_data}", "--epochs=1", "--hidden_size=8", "--n_heads=1",
        "--n_layers=1", "--max_len=10", "--batch_size=256", f"--out={out}", "--diffusion_steps=4", "--no_eval",
        "--train_modes=sequence", "--variants=--train_batch_parts=1;--train_batch_parts=3 --train_length_grouping=2",
    ])
    results = json.load(open(out))["results"]
    assert [r["variant"] for r in results] == ["--train_batch_parts=1", "--train_batch_parts=3 --train_length_grouping=2"]
    assert results[1]["model"].endswith("[--train_batch_parts=3 --train_length_grouping=2]")


# ----- which kind of file each reader got -----
def test_tools_given_a_glob_skip_training_states(checkpoint, tmp_path, capsys):
    """OUT/checkpoints/*.pth holds X.pth and X.state.pth: the state is skipped with a note, a
    foreign file gets one line, the checkpoint is measured."""
    import torch

    state = checkpoint[:-4] + ".state.pth"
    assert os.path.isfile(state)
    foreign = str(tmp_path / "weights.pth")
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert script("pathway").main([checkpoint, state, foreign, "--users=10", "--runs=2"]) == 2
    captured = capsys.readouterr()
    assert len(table_rows(captured.out)) == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in captured.err
    assert err[0].startswith(f"skipping {state}: a training state") and checkpoint in err[0]
    assert err[1].startswith(f"error: '{foreign}' is not a model checkpoint")
    assert script("sampling_steps").main([state]) == 0  # nothing left to measure, nothing wrong
    assert "skipping" in capsys.readouterr().err


def test_case_study_and_recboles_loader_name_the_file_they_need(checkpoint, workdir, capsys):
    import sys

    sys.path.insert(0, ROOT)
    import run_recbole_diffurec as runner
    from recbole.quick_start import load_data_and_model

    from recbole_diffurec.errors import UsageError

    state = checkpoint[:-4] + ".state.pth"
    assert runner.main([f"--case_study={state}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: '{state}' is a training state (for --resume); this needs a model checkpoint: '{checkpoint}' beside it."
    with pytest.raises(UsageError, match="is a training state"):
        load_data_and_model(state)


def test_resume_given_a_model_checkpoint_names_the_state(checkpoint, tiny_data, workdir, capsys):
    import sys

    sys.path.insert(0, ROOT)
    import run_recbole_diffurec as runner

    args = ["--model=DiffuRecSys", f"--resume={checkpoint}"] + tiny_args(tiny_data, "--diffusion_steps=4", "--n_heads=2")
    assert runner.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert f"'{checkpoint}' is a model checkpoint; --resume needs a training state" in err and len(err.splitlines()) == 1

"""The runner end to end on a tiny ml-100k slice, and every error a newcomer meets."""
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_args
from recbole_diffurec.metrics import ACCURACY as METRICS

sys.path.insert(0, ROOT)
import run_recbole_diffurec as runner  # noqa: E402



def run_tiny(model, tiny_data, *extra):
    from recbole_diffurec.quick_start import run

    return run(model, "ml-100k", cmd_args=tiny_args(tiny_data, *extra, model=model))


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "BERT4Rec"])
def test_recbole_models_end_to_end(model, tiny_data, workdir):
    result = run_tiny(model, tiny_data)
    for split in ("best_valid_result", "test_result"):
        assert set(METRICS) <= set(result[split])
        for m in METRICS:
            value = float(result[split][m])
            assert 0.0 <= value <= 1.0 and not math.isnan(value)
        # HR@k and NDCG@k grow with k
        assert result[split]["hit@5"] <= result[split]["hit@10"] <= result[split]["hit@20"]
    assert os.path.isfile(result["checkpoint"])
    # the slice, not RecBole's bundled copy, was used
    assert result["config"]["data_path"] == os.path.join(tiny_data, "ml-100k")
    assert result["config"]["MAX_ITEM_LIST_LENGTH"] == 10


def test_same_seed_same_metrics(tiny_data, workdir):
    a = run_tiny("SASRec", tiny_data, "--seed=7")
    b = run_tiny("SASRec", tiny_data, "--seed=7")
    assert a["test_result"] == b["test_result"]


def test_shared_config_file_sections(tiny_data, workdir):
    """A section named after a model applies to it and to models built on it, after the file's
    other keys; other models skip it; a later file still wins; a key reaches only the models that
    define it."""
    from recbole_diffurec.config import Config
    from recbole_diffurec.keys import route_cmd_args

    (workdir / "shared.yaml").write_text(
        "hidden_size: 16\nepochs: 2\n"
        "DiffuRec:\n  n_layers: 3\n  lambda_uncertainty: 0.01\n"
        "DiffuRecSys:\n  chain_blocks: False\n"
        "SASRec:\n  n_layers: 1\n  inner_size: 24\n  hidden_size: 32\n"
    )
    (workdir / "later.yaml").write_text("n_layers: 2\n")
    data = [f"--data_path={tiny_data}"]
    sas = Config("SASRec", "ml-100k", ["shared.yaml"], None, data)
    assert (sas["hidden_size"], sas["n_layers"], sas["inner_size"], sas["epochs"]) == (32, 1, 24, 2)
    assert "lambda_uncertainty" not in sas.final_config_dict and "DiffuRec" not in sas.final_config_dict
    diffurec = Config("DiffuRec", "ml-100k", ["shared.yaml"], None, data)
    assert (diffurec["hidden_size"], diffurec["n_layers"], diffurec["lambda_uncertainty"]) == (16, 3, 0.01)
    assert "inner_size" not in diffurec.final_config_dict and "chain_blocks" not in diffurec.final_config_dict
    sys_ = Config("DiffuRecSys", "ml-100k", ["shared.yaml", "later.yaml"], None, data)
    assert (sys_["n_layers"], sys_["lambda_uncertainty"], sys_["chain_blocks"]) == (2, 0.01, False)
    gru = Config("GRU4Rec", "ml-100k", ["shared.yaml"], None, data)
    assert gru["hidden_size"] == 16 and "n_layers" not in gru.final_config_dict
    # the project's shared files hold for every model of the accuracy table
    for model in ("DiffuRec", "DiffuRecSysV1", "DiffuRecSys", "SASRec", "GRU4Rec", "BERT4Rec"):
        for files in (["properties/accuracy.yaml"], ["properties/paper.yaml", "properties/accuracy.yaml"], ["properties/demo.yaml"]):
            Config(model, "ml-100k", [os.path.join(ROOT, f) for f in files], None, data)
    args = ["--inner_size=24", "--lambda_uncertainty=0.01", "--epochs=2"]
    assert route_cmd_args(args, "SASRec", ["SASRec", "DiffuRec"]) == (["--inner_size=24", "--epochs=2"], ["lambda_uncertainty"])
    assert route_cmd_args(args, "DiffuRec", ["SASRec", "DiffuRec"]) == (["--lambda_uncertainty=0.01", "--epochs=2"], ["inner_size"])


def test_config_files_and_overrides(tiny_data, workdir):
    (workdir / "a.yaml").write_text("hidden_size: 12\ninner_size: 24\n")
    (workdir / "b.yaml").write_text("hidden_size: 16\n")
    from recbole_diffurec.config import Config

    config = Config("SASRec", "ml-100k", ["a.yaml", "b.yaml"], None, [f"--data_path={tiny_data}", "--n_layers=3"])
    assert config["hidden_size"] == 16  # later file wins
    assert config["inner_size"] == 24
    assert config["n_layers"] == 3  # command line wins over files
    # the paper's protocol from properties/overall.yaml
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO" and config["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert config["topk"] == [5, 10, 20] and config["valid_metric"] == "NDCG@10"
    assert config["train_neg_sample_args"]["distribution"] == "none" and config["loss_type"] == "CE"


def test_default_data_paths(workdir):
    from recbole_diffurec.config import Config
    from recbole_diffurec.paths import default_data_path

    config = Config("SASRec", "ml-100k")
    assert config["data_path"].endswith(os.path.join("recbole", "dataset_example", "ml-100k"))
    with pytest.raises(Exception) as e:
        Config("SASRec", "amazon-beauty", cmd_args=["--data_path=" + str(workdir)])
    assert os.path.join(str(workdir), "amazon-beauty", "amazon-beauty.inter") in str(e.value)
    assert default_data_path() == os.path.join(ROOT, "dataset")  # in a clone: its dataset/ folder


def test_dataset_yamls_load(workdir, tiny_data):
    """Every dataset YAML is valid and picked up (the shared files' header has no rating)."""
    from recbole_diffurec.config import Config
    from recbole_diffurec.keys import dataset_names

    assert {"ml-100k", "ml-1m", "amazon-beauty", "amazon-toys-games"} <= set(dataset_names())
    for name in dataset_names():
        folder = workdir / "d" / name
        folder.mkdir(parents=True)
        (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t1\t0\n")
        config = Config("SASRec", name, cmd_args=[f"--data_path={workdir / 'd'}"])
        assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
        assert config["data_path"] == str(folder)


def main_error(capsys, *argv):
    code = runner.main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_unknown_model_lists_close_names(capsys, workdir):
    err = main_error(capsys, "--model=SASRc")
    assert "SASRec" in err
    err = main_error(capsys, "--model=sasrec")
    assert "did you mean 'SASRec'" in err


def test_unknown_dataset(capsys, workdir):
    err = main_error(capsys, "--model=SASRec", "--dataset=ml-1mm")
    assert "unknown dataset 'ml-1mm'" in err and "ml-1m" in err


def test_missing_dataset_names_the_file(capsys, workdir):
    err = main_error(capsys, "--model=SASRec", "--dataset=ml-1m", f"--data_path={workdir}")
    assert os.path.join(str(workdir), "ml-1m", "ml-1m.inter") in err and "--data_path" in err


def test_config_file_errors(capsys, workdir):
    err = main_error(capsys, "--config_files=nope.yaml")
    assert "nope.yaml" in err and "does not exist" in err
    (workdir / "bad.yaml").write_text("epochs: [1\n")
    err = main_error(capsys, "--config_files=bad.yaml")
    assert "bad.yaml" in err and "not valid YAML" in err
    (workdir / "list.yaml").write_text("- 1\n- 2\n")
    err = main_error(capsys, "--config_files=list.yaml")
    assert "list.yaml" in err


def test_misspelled_key(capsys, workdir):
    err = main_error(capsys, "--model=SASRec", "--hiden_size=8")
    assert "hiden_size" in err and "hidden_size" in err
    (workdir / "typo.yaml").write_text("lr_stepsize: 30\n")
    err = main_error(capsys, "--config_files=typo.yaml")
    assert "lr_step_size" in err


def test_malformed_argument(capsys, workdir):
    err = main_error(capsys, "--model=SASRec", "--epochs", "3")
    assert "--key=value" in err


def test_cli_exit_code_and_one_line(workdir):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_recbole_diffurec.py"), "--model=NoSuchModel"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'NoSuchModel'")
    assert "Traceback" not in proc.stderr


def test_resume_from_the_command_line(capsys, tiny_data, workdir):
    assert runner.main(["--model=SASRec"] + tiny_args(tiny_data, "--epochs=1")) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("training state: ")][0]
    state = line.split()[2]
    assert os.path.isfile(state)
    assert runner.main(["--model=SASRec", f"--resume={state}"] + tiny_args(tiny_data, "--epochs=2")) == 0
    assert runner.main(["--model=SASRec", f"--resume={state}"] + tiny_args(tiny_data, "--epochs=2", "--learning_rate=0.5")) == 2
    # a state saved before a key existed resumes: the key's default is how that run behaved
    import torch

    saved = torch.load(state, weights_only=False)
    del saved["config"]["train_loader"]
    torch.save(saved, state)
    assert runner.main(["--model=SASRec", f"--resume={state}"] + tiny_args(tiny_data, "--epochs=3")) == 0
    err = capsys.readouterr().err
    assert err.startswith("error: the training state") and "learning_rate" in err and "delete the state" in err


def test_resume_usage_errors(capsys, workdir):
    err = main_error(capsys, "--model=SASRec", "--resume=nope.state.pth")
    assert "nope.state.pth" in err and "does not exist" in err
    err = main_error(capsys, "--models=SASRec", "--resume=x.state.pth")
    assert "drop --resume" in err
    (workdir / "junk.state.pth").write_text("not a state")
    err = main_error(capsys, "--model=SASRec", "--resume=junk.state.pth", "--epochs=1", "--show_progress=False")
    assert "cannot read the training state junk.state.pth" in err


# ----- the table of bad inputs: input -> exit code 2 and the words the one-line message holds -----
BAD_INPUTS = [
    (["--epochs=abc"], ["'epochs'", "integer", "'abc'"]),
    (["--model=DiffuRecSys", "--diffusion_steps=0"], ["'diffusion_steps'", ">= 1", "0"]),
    (["--model=DiffuRecSys", "--lambda_uncertainty=-1"], ["'lambda_uncertainty'", ">= 0", "-1"]),
    (["--model=DiffuRec", "--hidden_size=10", "--n_heads=4"], ["hidden_size (10)", "divisible by n_heads (4)"]),
    (["--model=SASRec", "--learning_rate=fast"], ["'learning_rate'", "a number", "'fast'"]),
    (["--model=DiffuRec", "--noise_schedule=cosin"], ["'noise_schedule'", "one of trunc_lin", "cosine"]),
    (["--model=SASRec", "--train_batch_size=2.5"], ["'train_batch_size'", "integer", "2.5"]),
    (["--model=DiffuRecSys", "--dropout_prob=1.0"], ["'dropout_prob'", "in [0, 1)"]),
    (["--model=DiffuRecSys", "--emb_dropout=-0.1"], ["'emb_dropout'", "in [0, 1)"]),
    (["--model=DiffuRecSys", "--sampling_steps=-2"], ["'sampling_steps'", ">= 0"]),
    (["--model=DiffuRecSys", "--n_ensemble=0"], ["'n_ensemble'", ">= 1"]),
    (["--model=DiffuRecSys", "--target_scale=0"], ["'target_scale'", "> 0"]),
    (["--model=DiffuRec", "--condition_norm=batchnorm"], ["'condition_norm'", "layernorm"]),
    (["--model=DiffuRecSys", "--condition_token=True"], ["condition_token", "cross-attention"]),
    (["--model=DiffuRecSys", "--trim_padding=maybe"], ["'trim_padding'", "True or False"]),
    (["--model=SASRec", "--MAX_ITEM_LIST_LENGTH=0"], ["'MAX_ITEM_LIST_LENGTH'", ">= 1"]),
    (["--model=SASRec", "--lr_gamma=0"], ["'lr_gamma'", "> 0"]),
    (["--model=SASRec", "--weight_decay=-1e-4"], ["'weight_decay'", ">= 0"]),
    (["--model=SASRec", "--stopping_step=x"], ["'stopping_step'", "integer"]),
    (["--model=SASRec", "--tail_ratio=-1"], ["'tail_ratio'", "> 0"]),
    (["--model=SASRec", "--eval_batch_size=0"], ["'eval_batch_size'", ">= 1"]),
    (["--model=SASRec", "--topk=10"], ["'topk'", "a list"]),
    (["--model=SASRec", "--show_progress=yes"], ["'show_progress'", "True or False"]),
    (["--model=SASRec", "--seed=abc"], ["'seed'", "integer"]),
    (["--model=NoSuchModel"], ["unknown model 'NoSuchModel'"]),
    (["--model=SASRec", "--dataset=ml-1mm"], ["unknown dataset 'ml-1mm'"]),
    (["--model=SASRec", "--hiden_size=8"], ["hiden_size", "hidden_size"]),
    (["--model=SASRec", "--epochs", "3"], ["--key=value"]),
    # strict per model: another model's key is not this one's, and the error says whose it is
    (["--model=DiffuRec", "--inner_size=32"], ["'inner_size'", "a key of BERT4Rec", "for DiffuRec"]),
    (["--model=GRU4Rec", "--n_heads=2"], ["'n_heads'", "for GRU4Rec"]),
    (["--model=SASRec", "--lambda_uncertainty=0.1"], ["'lambda_uncertainty'", "DiffuRec", "for SASRec"]),
    (["--model=DiffuRec", "--chain_blocks=False"], ["'chain_blocks'", "DiffuRecSys", "for DiffuRec"]),
    (["--models=DiffuRec,GRU4Rec", "--inner_size=32"], ["'inner_size'", "the models DiffuRec, GRU4Rec"]),
    (["--model=SASRec", "--config_files=section.yaml"], ["section 'DiffuRec'", "mapping"]),
    (["--config_files=nope.yaml"], ["nope.yaml", "does not exist"]),
    (["--model=SASRec", "--resume=nope.state.pth"], ["nope.state.pth", "does not exist"]),
    (["--models=SASRec", "--seeds=1,x"], ["--seeds", "integers"]),
    (["--models=SASRec", "--seed=3"], ["--seeds"]),
    (["--case_study=nope.pth"], ["nope.pth", "does not exist"]),
    (["--hyper=nope.hyper"], ["nope.hyper", "does not exist"]),
    (["--hyper=bad.hyper"], ["bad.hyper", "Illegal param type", "name type values"]),
    (["--hyper=typo.hyper"], ["'learnin_rate'", "learning_rate"]),
    (["--hyper=typo.hyper", "--algo=grid"], ["--algo", "exhaustive, random, bayes"]),
    (["--model=SASRec", "--nproc=2", "--world_size=1"], ["--world_size >= 2"]),
    (["--model=SASRec", "--nproc=0"], ["--nproc must be at least 1, not 0"]),
    (["--hyper=typo.hyper", "--max_evals=0"], ["--max_evals must be at least 1, not 0"]),
    (["--tables=nowhere"], ["no finished run", "nowhere"]),
    (["--case_study=junk.pth"], ["'junk.pth' is not a model checkpoint saved by a run"]),
    (["--case_study=dict.pth"], ["'dict.pth' is not a model checkpoint", "lacks 'config'"]),
]


@pytest.mark.parametrize("argv, words", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_table(argv, words, capsys, workdir):
    import torch

    (workdir / "junk.pth").write_text("not a checkpoint")
    (workdir / "section.yaml").write_text("DiffuRec: 3\n")
    (workdir / "bad.hyper").write_text("learning_rate normal 0,1\n")
    (workdir / "typo.hyper").write_text("learnin_rate choice [0.1]\n")
    torch.save({"a": 1}, workdir / "dict.pth")
    err = main_error(capsys, *argv)
    for word in words:
        assert word in err, (word, err)


# ----- bad data files: one line each, exit 2, nothing half-written -----
HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
BAD_FILES = [
    ("header_only", HEADER, ["holds a header but no interactions"]),
    ("no_timestamp", "user_id:token\titem_id:token\n1\t2\n", ["no column 'timestamp'", "load_col"]),
    ("random_text", "the quick brown fox\njumps over\n", ["header of name:type columns", "'the quick brown fox'"]),
    ("untyped_header", "user_id\titem_id\ttimestamp\n1\t2\t3\n", ["header of name:type columns", "'user_id'"]),
    ("short_row", HEADER + "1\t2\t3\n1\t3\n", ["line 3", "2 field(s)", "header has 3"]),
    ("text_in_float", HEADER + "1\t2\t3\n1\t3\tyesterday\n", ["line 3", "'timestamp' is float", "'yesterday'"]),
    ("too_small", HEADER + "".join(f"{u}\t{i}\t{i}\n" for u in (1, 2) for i in (1, 2)),
     ["filtering leaves no interactions", "keeps 0 of 2 users", "user_inter_num_interval"]),
]


@pytest.mark.parametrize("name, text, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_data_file(name, text, words, capsys, workdir):
    os.makedirs(workdir / "data" / name)
    (workdir / "data" / name / f"{name}.inter").write_text(text)
    err = main_error(capsys, "--model=SASRec", f"--dataset={name}", f"--data_path={workdir / 'data'}", "--epochs=1")
    for word in words:
        assert word in err, (word, err)
    assert not os.path.isdir(workdir / "saved")  # nothing written


def test_filters_that_empty_the_data_after_rounds_are_named(capsys, workdir):
    """Each filter alone keeps someone, but RecBole's alternating filtering empties the data."""
    rows = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 4), (2, 5), (3, 2), (3, 4), (3, 6)]
    os.makedirs(workdir / "data" / "rounds")
    (workdir / "data" / "rounds" / "rounds.inter").write_text(HEADER + "".join(f"{u}\t{i}\t{n}\n" for n, (u, i) in enumerate(rows)))
    err = main_error(capsys, "--model=SASRec", "--dataset=rounds", f"--data_path={workdir / 'data'}",
                     "--user_inter_num_interval=[3,inf)", "--item_inter_num_interval=[2,inf)")
    assert "no interactions survive RecBole's filtering" in err and "9 rows" in err

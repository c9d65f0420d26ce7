"""Scale: the device-resident training loader, sharding over processes, distributed runs."""
import socket
from collections import Counter

import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.dataloader import TrainDataLoader

from conftest import tiny_args
from recbole_diffurec.config import Config
from recbole_diffurec.data import SequentialTrainDataLoader, n_shard_batches, shard


@pytest.mark.parametrize("n, batch, world", [(100, 10, 2), (101, 10, 2), (103, 10, 4), (9, 10, 3), (41, 8, 3), (64, 64, 2)])
def test_shards_are_disjoint_equal_in_count_and_cover_every_sample(n, batch, world):
    batches = list(torch.randperm(n, generator=torch.Generator().manual_seed(n)).split(batch))
    shares = [shard(batches, r, world) for r in range(world)]
    counts = {len(s) for s in shares}
    assert counts == {n_shard_batches(n, batch, world)}  # the same number of batches everywhere
    assert all(len(b) > 0 for s in shares for b in s)
    seen = Counter(int(i) for s in shares for b in s for i in b)
    assert sorted(seen) == list(range(n)) and set(seen.values()) == {1}  # each sample once
    for j in range(len(shares[0])):  # the shares of batch j are parts of one batch of the order
        assert max(len(s[j]) for s in shares) - min(len(s[j]) for s in shares) <= 1


def test_shard_refuses_fewer_samples_than_processes():
    with pytest.raises(ValueError, match="fewer training samples than the 4 processes"):
        shard([torch.arange(3)], 0, 4)


def train_loader(tiny_data, model, *extra):
    config = Config(model, "ml-100k", cmd_args=tiny_args(tiny_data, "--train_batch_size=64", *extra, model=model))
    return data_preparation(config, create_dataset(config))[0]


def batches(loader, epochs=2):
    return [{k: v.clone() for k, v in b.interaction.items()} for _ in range(epochs) for b in loader]


def assert_same_batches(a, b):
    """The device loader's batches equal RecBole's in every column it carries (user, target,
    sequence, length: what the models read)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(y) == {"user_id", "item_id", "item_id_list", "item_length"} and set(y) <= set(x)
        for k in y:
            assert torch.equal(x[k], y[k]), k


@pytest.mark.parametrize("model, grouping", [("SASRec", 0), ("DiffuRec", 0), ("DiffuRec", 4)])
def test_device_loader_gives_the_same_batches_as_recbole(tiny_data, workdir, model, grouping):
    """The same seed gives the same batches, field by field, over two epochs: RecBole's own
    loader (grouping 0) or the grouped one, gathered by RecBole's collate_fn."""
    extra = (f"--train_length_grouping={grouping}",) if model == "DiffuRec" else ()
    reference = train_loader(tiny_data, model, *extra)
    device = train_loader(tiny_data, model, *extra, "--train_loader=device")
    assert isinstance(device, SequentialTrainDataLoader) and device.fields is not None
    assert (type(reference) is TrainDataLoader) == (grouping == 0)
    assert_same_batches(batches(reference), batches(device))
    assert len(device) == len(reference)


def test_device_loader_refuses_negative_sampling(tiny_data, workdir):
    from recbole_diffurec.errors import UsageError

    with pytest.raises(UsageError, match="does not support transform or negative sampling"):
        train_loader(tiny_data, "SASRec", "--train_loader=device", "--loss_type=BPR",
                     "--train_neg_sample_args={'distribution': 'uniform', 'sample_num': 1}")


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("model, extra", [
    ("DiffuRecSys", ("--diffusion_steps=4", "--n_heads=2", "--train_loader=device")),  # grouped, on the device
    ("SASRec", ()),  # RecBole's model and its own distributed loader
])
def test_two_gloo_processes_train_and_the_checkpoint_loads_in_one(tiny_data, workdir, model, extra):
    from recbole.quick_start import load_data_and_model

    from recbole_diffurec.quick_start import run

    result = run(model, "ml-100k", cmd_args=tiny_args(tiny_data, "--epochs=2", *extra, model=model),
                 nproc=2, port=free_port())
    assert result is not None and result["epochs_trained"] == 2
    assert 0.0 < float(result["test_result"]["hit@10"]) <= 1.0
    # written by rank 0, loaded by RecBole's own tool in this single process, and it ranks
    config, model_obj, _, train, _, test = load_data_and_model(result["checkpoint"])
    assert config["single_spec"] and config["local_rank"] == 0
    interaction = next(iter(test))[0]
    scores = model_obj.full_sort_predict(interaction.to(config["device"]))
    assert scores.shape == (len(interaction), train.dataset.item_num) and torch.isfinite(scores).all()


# ----- hyperparameter search -----
SPACE = "# a comment line\nlearning_rate loguniform -7,-5\ndropout_prob choice [0.1,0.3]\n"


def search_args(tiny_data, out, evals):
    return ["--model=DiffuRecSys", "--hyper=space.hyper", "--algo=random", f"--max_evals={evals}", f"--out={out}"] + \
        tiny_args(tiny_data, "--diffusion_steps=4", "--n_heads=2", "--seed=5")


def test_search_runs_writes_every_trial_and_a_best_yaml_and_resumes_after_kill(tiny_data, workdir, capsys):
    import json
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT
    from recbole_diffurec.config import Config

    sys.path.insert(0, ROOT)
    import run_recbole_diffurec as runner

    (workdir / "space.hyper").write_text(SPACE)
    out = workdir / "res"
    trials = out / "trials.jsonl"
    # a search killed (-9) after its first trial: that trial is kept
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run_recbole_diffurec.py")] + search_args(tiny_data, out, 3),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (trials.exists() and trials.read_text().count("\n") >= 1):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    first = [json.loads(line) for line in trials.read_text().splitlines()]
    assert len(first) in (1, 2)
    # the same command again: the finished trials are read back, the others trained
    assert runner.main(search_args(tiny_data, out, 3)) == 0
    printed = capsys.readouterr().out
    assert f"{len(first)} finished trial(s)" in printed and "finished before" in printed
    records = [json.loads(line) for line in trials.read_text().splitlines()]
    assert len(records) == 3 and len({r["key"] for r in records}) == 3
    assert records[: len(first)] == first and all(r["status"] == "ok" for r in records)
    for r in records:
        assert set(r["params"]) == {"learning_rate", "dropout_prob"} and r["test_result"]["ndcg@10"] >= 0
    best = max(records, key=lambda r: r["best_valid_score"])
    config = Config("DiffuRecSys", "ml-100k", [str(out / "best.yaml")], None, [f"--data_path={tiny_data}"])
    assert config["learning_rate"] == best["params"]["learning_rate"]
    assert config["dropout_prob"] == best["params"]["dropout_prob"]


@pytest.mark.parametrize("grouping", [0, 4])
def test_each_process_gets_its_share_of_the_single_process_batches(tiny_data, workdir, grouping):
    """Under --nproc the processes split the very batches of a one-process run (RecBole's order or
    the grouped one), epoch after epoch: the same training data order, only spread out."""
    extra = ("--train_loader=device", f"--train_length_grouping={grouping}")
    single = train_loader(tiny_data, "DiffuRec", *extra)
    ranks = [train_loader(tiny_data, "DiffuRec", *extra) for _ in range(2)]
    for r, loader in enumerate(ranks):  # what a process of a 2-process run is told by its config
        loader.world_size, loader.rank = 2, r
    for _ in range(2):
        expected = single.epoch_batches()
        for r, loader in enumerate(ranks):
            got = loader.epoch_batches()
            assert len(got) == len(loader) == len(shard(expected, r, 2))
            assert all(torch.equal(a, b) for a, b in zip(got, shard(expected, r, 2)))


@pytest.mark.parametrize("algo", ["exhaustive", "random", "bayes"])
def test_every_search_algorithm_runs_two_trials(algo, tiny_data, workdir, capsys):
    """Each --algo runs end to end (exhaustive: every combination of the choice parameters)."""
    import json
    import sys

    from conftest import ROOT

    sys.path.insert(0, ROOT)
    import run_recbole_diffurec as runner

    space = "learning_rate choice [0.001,0.002]\n" if algo == "exhaustive" else SPACE.replace("dropout_prob", "hidden_dropout_prob")
    (workdir / "space.hyper").write_text(space)
    out = workdir / "res"
    args = ["--model=SASRec", "--hyper=space.hyper", f"--algo={algo}", f"--out={out}"]
    args += [] if algo == "exhaustive" else ["--max_evals=2"]
    assert runner.main(args + tiny_args(tiny_data, "--seed=5", model="SASRec")) == 0
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    if algo == "exhaustive":
        assert sorted(r["params"]["learning_rate"] for r in records) == [0.001, 0.002]
    assert (out / "best.yaml").exists()

"""Sequence training (train_mode: sequence): the windows cover every training target once, the
networks are causal, and the loss at each position is the loss of the prefix sample ending there,
for DiffuRec, DiffuRecSys and RecBole's SASRec and GRU4Rec."""
import os
import sys

import pytest
import torch

from conftest import ROOT, build_model, tiny_args

sys.path.insert(0, ROOT)
import run_recbole_diffurec as runner  # noqa: E402
from recbole_diffurec.sequence import recbole_sequence_outputs, sequence_windows, target_field  # noqa: E402

SEQ = ("--train_mode=sequence",)
DIFFUSION = ("--diffusion_steps=4",)


def window_batch(tiny_data, model, *extra):
    """(config, model, windows that start at a user's first item: item_seq, lengths, targets)."""
    extra = (DIFFUSION if model.startswith("DiffuRec") else ()) + extra
    config, net, train, _, _ = build_model(tiny_data, model, *SEQ, *extra)
    rows, targets = sequence_windows(train.dataset, config)
    feat = train.dataset.inter_feat
    lengths = feat[config["ITEM_LIST_LENGTH_FIELD"]][rows]
    full = (targets > 0).sum(1) == lengths  # every position in the loss: the window starts at x_0
    item_seq = feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]][rows][full][:8]
    return config, net.eval(), item_seq, lengths[full][:8], targets[full][:8]


n_windows = {}


@pytest.mark.parametrize("stride", [0, 4])
def test_windows_cover_every_training_target_once(tiny_data, stride):
    config, _, train, _, _ = build_model(tiny_data, "SASRec", *SEQ, f"--train_window_stride={stride}")
    rows, targets = sequence_windows(train.dataset, config)
    feat = train.dataset.inter_feat
    n_samples = len(feat)  # RecBole's prefix samples: one per training target
    assert int((targets > 0).sum()) == n_samples
    # each position's target is the next item of the window (the last one the sample's target)
    seq = feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]][rows]
    lengths = feat[config["ITEM_LIST_LENGTH_FIELD"]][rows]
    for w in range(len(rows)):
        n = int(lengths[w])
        expected = torch.cat([seq[w, 1:n], feat[config["ITEM_ID_FIELD"]][rows[w]].view(1)])
        kept = targets[w, :n] > 0
        assert torch.equal(targets[w, :n][kept], expected[kept]) and not targets[w, n:].any()
    # per user, the multiset of targets equals the targets of its prefix samples
    uid = feat[config["USER_ID_FIELD"]]
    for user in uid.unique()[:10]:
        windows = (uid[rows] == user).nonzero().flatten()
        got = torch.sort(targets[windows][targets[windows] > 0]).values
        want = torch.sort(feat[config["ITEM_ID_FIELD"]][uid == user]).values
        assert torch.equal(got, want)
    n_windows[stride] = len(rows)
    if len(n_windows) == 2:  # overlapping windows: more of them, each target still once
        assert n_windows[4] > n_windows[0]


@pytest.mark.parametrize("model,steps", [("DiffuRec", "window"), ("DiffuRecSys", "window"), ("DiffuRecSys", "position")])
def test_diffusion_models_are_causal_and_exact_per_prefix(tiny_data, model, steps):
    """One step per window (t [B]) or per position (t [B, L]): position j's loss is the loss of
    its prefix sample at the same step, noise and lambda."""
    config, net, item_seq, lengths, targets = window_batch(tiny_data, model, "--lambda_uncertainty=0.3")
    B, L = item_seq.shape
    H = config["hidden_size"]
    torch.manual_seed(0)
    t = net.diffusion.sample_timesteps(B) if steps == "window" else net.diffusion.sample_timesteps(B * L).view(B, L)
    noise = torch.randn(B, L, H)
    lam = net.approximator.sample_lambda((B, L, H), "cpu")
    with torch.no_grad():
        full = net.sequence_losses(item_seq, lengths, targets, t, noise, lam)  # [B, L']
        assert full.shape[1] == int(lengths.max()) and (full[targets[:, : full.shape[1]] > 0] > 0).all()
        for j in range(1, int(lengths.min())):
            # the same causal network on the prefix sample that ends at position j
            prefix = net.sequence_losses(item_seq[:, : j + 1], torch.full((B,), j + 1), targets[:, : j + 1],
                                         t if steps == "window" else t[:, : j + 1], noise[:, : j + 1], lam[:, : j + 1])
            assert torch.allclose(prefix[:, j], full[:, j], atol=1e-5), j
            # items after j change nothing at positions <= j
            changed_seq, changed_targets = item_seq.clone(), targets.clone()
            changed_seq[:, j + 1:] = torch.where(changed_seq[:, j + 1:] > 0, 1 + changed_seq[:, j + 1:] % 5, 0)
            changed_targets[:, j:] = torch.where(changed_targets[:, j:] > 0, 1 + changed_targets[:, j:] % 5, 0)
            changed_targets[:, j] = targets[:, j]
            other = net.sequence_losses(changed_seq, lengths, changed_targets, t, noise, lam)
            assert torch.allclose(other[:, : j + 1], full[:, : j + 1], atol=1e-5), j


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_recbole_models_per_position_equal_their_prefix_samples(tiny_data, model):
    config, net, item_seq, lengths, targets = window_batch(tiny_data, model)
    with torch.no_grad():
        out = recbole_sequence_outputs(net, item_seq)  # [B, L, H]
        logits = out @ net.item_embedding.weight.T
        for j in range(int(lengths.min())):
            per_position = torch.nn.functional.cross_entropy(logits[:, j], targets[:, j])
            prefix_seq = torch.zeros_like(item_seq)
            prefix_seq[:, : j + 1] = item_seq[:, : j + 1]
            interaction = {net.ITEM_SEQ: prefix_seq, net.ITEM_SEQ_LEN: torch.full((len(item_seq),), j + 1),
                           net.POS_ITEM_ID: targets[:, j]}
            assert torch.allclose(net.calculate_loss(interaction), per_position, atol=1e-5), j


@pytest.mark.parametrize("model", ["DiffuRecSys", "SASRec", "GRU4Rec"])
def test_sequence_training_runs_end_to_end(tiny_data, workdir, capsys, model):
    extra = SEQ + (DIFFUSION if model == "DiffuRecSys" else ())
    args = ["--model=" + model, "--dataset=ml-100k"] + tiny_args(tiny_data, *extra, "--epochs=2", model=model)
    assert runner.main(args) == 0
    out = capsys.readouterr().out
    test_line = [line for line in out.splitlines() if line.startswith("test")][0]
    values = [float(v) for v in test_line.split()[1:]]
    assert all(0 <= v <= 1 for v in values) and any(v > 0 for v in values)


def test_models_without_sequence_training_refuse_it(tiny_data, workdir, capsys):
    args = ["--model=BERT4Rec", "--dataset=ml-100k", f"--data_path={tiny_data}", "--train_mode=sequence"]
    assert runner.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "BERT4Rec" in err and "train_mode: prefix" in err
    args = ["--model=SASRec", "--dataset=ml-100k", f"--data_path={tiny_data}", "--train_mode=sequence",
            "--MAX_ITEM_LIST_LENGTH=10", "--train_window_stride=11"]
    assert runner.main(args) == 2
    assert "train_window_stride" in capsys.readouterr().err
    args = ["--model=SASRec", "--dataset=ml-100k", f"--data_path={tiny_data}", "--train_mode=sequence", "--loss_type=BPR"]
    assert runner.main(args) == 2
    assert "loss_type: CE" in capsys.readouterr().err


def test_sequence_batches_carry_targets(tiny_data):
    config, _, train, _, _ = build_model(tiny_data, "DiffuRecSys", *SEQ, *DIFFUSION, "--train_length_grouping=4")
    batch = next(iter(train))
    field = target_field(config)
    assert batch[field].shape == batch[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].shape
    assert train.targets_per_epoch() == len(train.dataset.inter_feat)
    assert len(train) == -(-len(train.lengths) // config["train_batch_size"])


@pytest.mark.parametrize("model", ["DiffuRecSys", "SASRec"])
def test_sequence_run_resumes_to_the_same_metrics(model, tiny_data, workdir):
    """The window order is drawn from the run's generators and saved with the training state:
    2 epochs, then 2 more after a resume, end as 4 epochs in one go."""
    from test_trainer import _run

    extra = SEQ + (DIFFUSION if model == "DiffuRecSys" else ("--train_length_grouping=4",))
    whole = _run(tiny_data, model, "--epochs=4", *extra, state_file=str(workdir / "whole.state.pth"))
    _run(tiny_data, model, "--epochs=2", *extra, state_file=str(workdir / "part.state.pth"))
    resumed = _run(tiny_data, model, "--epochs=4", *extra, state_file=str(workdir / "part.state.pth"), resume=True)
    assert resumed["test_result"] == whole["test_result"]
    assert resumed["valid_history"] == whole["valid_history"]


def test_sequence_training_on_two_processes(tiny_data, workdir):
    """Each of two gloo processes takes its share of every batch of windows."""
    from test_scale import free_port

    from recbole_diffurec.quick_start import run

    result = run("DiffuRecSys", "ml-100k", cmd_args=tiny_args(tiny_data, *SEQ, *DIFFUSION, "--n_heads=2", "--epochs=2"),
                 nproc=2, port=free_port())
    assert result is not None and result["epochs_trained"] == 2
    assert 0.0 < float(result["test_result"]["hit@10"]) <= 1.0


@pytest.mark.parametrize("model", ["DiffuRecSys", "SASRec"])
def test_sequence_loss_mean_epoch_weighs_every_target_the_same(model, tiny_data):
    """sequence_loss_mean: epoch divides a batch's summed loss by the epoch's mean targets per
    batch (set by the trainer each epoch), batch divides it by the batch's own targets: the two
    losses of one batch differ by exactly that ratio. Batches grouped by length hold different
    numbers of targets, so only epoch weighs every target the same over an epoch."""
    from recbole_diffurec.trainer import Trainer

    extra = SEQ + (DIFFUSION if model == "DiffuRecSys" else ()) + ("--train_length_grouping=2", "--train_batch_size=8")
    config, net, train, _, _ = build_model(tiny_data, model, *extra, "--sequence_loss_mean=epoch")
    assert train.targets_per_batch() * len(train) == pytest.approx(train.targets_per_epoch())
    trainer = Trainer(config, net)
    trainer._train_epoch(train, 0)
    assert net.sequence_targets_per_batch == pytest.approx(train.targets_per_batch())
    net.eval()
    loss = trainer.recbole_loss or net.calculate_loss
    counts = []
    for batch in train:
        n = int((batch[target_field(config)] > 0).sum())
        counts.append(n)
        torch.manual_seed(0)
        epoch_mean = loss(batch)
        net.sequence_targets_per_batch = None  # sequence_loss_mean: batch
        torch.manual_seed(0)
        batch_mean = loss(batch)
        net.sequence_targets_per_batch = train.targets_per_batch()
        assert epoch_mean.item() * train.targets_per_batch() == pytest.approx(batch_mean.item() * n, rel=1e-5)
    assert len(set(counts)) > 1  # grouped batches of unequal target counts: the case that matters


def test_length_parts_split_a_batch_by_window_length():
    from recbole_diffurec.sequence import length_parts

    lengths = torch.tensor([5, 1, 9, 3, 3, 7, 2])
    parts = length_parts(lengths, 3)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(7))  # every window once
    for shorter, longer in zip(parts, parts[1:]):
        assert lengths[shorter].max() <= lengths[longer].min()
    assert length_parts(lengths, 1) == [slice(None)]
    assert len(length_parts(lengths, 20)) == 7


@pytest.mark.parametrize("model,mode", [
    ("DiffuRecSys", "sequence"), ("DiffuRecSys", "prefix"), ("SASRec", "sequence"), ("GRU4Rec", "sequence"),
    ("SASRec", "prefix"), ("GRU4Rec", "prefix"),
])
def test_train_batch_parts_leave_loss_and_gradient_unchanged(tiny_data, model, mode):
    """A shuffled batch run in parts of similar history length (train_batch_parts) has the loss and
    the gradient of the whole batch, with dropout off and the diffusion's draws fixed: windows in
    sequence training, prefix samples in prefix training (for SASRec and GRU4Rec against RecBole's
    own calculate_loss on the whole batch)."""
    from recbole_diffurec.sequence import recbole_prefix_loss, recbole_sequence_loss

    extra = (f"--train_mode={mode}",) + (DIFFUSION if model == "DiffuRecSys" else ()) + (
        "--train_batch_size=16", "--train_length_grouping=0")
    config, net, train, _, _ = build_model(tiny_data, model, *extra, "--lambda_uncertainty=0.3" if model == "DiffuRecSys" else "--seed=1")
    batch = next(iter(train))
    lengths = batch[config["ITEM_LIST_LENGTH_FIELD"]]
    assert int(lengths.min()) < int(lengths.max())  # histories of several lengths: the case that matters
    net.eval()
    if model == "DiffuRecSys":  # the same step, noise and lambda for every position, however it is batched
        net.diffusion.sample_timesteps = lambda n, device=None: torch.full((n,), 2, dtype=torch.long)
        net.position_offset_noise = lambda x: 0.1 * torch.ones_like(x)
        net.approximator.sample_lambda = lambda shape, device, generator=None: torch.full(shape, 0.3)
    results = []
    for parts in (1, 3):
        config["train_batch_parts"] = net.train_batch_parts = parts
        if model == "DiffuRecSys":
            loss = net.calculate_loss
        elif mode == "sequence":
            loss = recbole_sequence_loss(net, config)
        else:  # one part: RecBole's own calculate_loss
            loss = recbole_prefix_loss(net, config) or net.calculate_loss
            assert (loss == net.calculate_loss) == (parts == 1)
        net.zero_grad()
        torch.manual_seed(0)  # prefix training draws the batch's offset noise once, before its parts
        value = loss(batch)
        value.backward()
        results.append((value.detach(), net.item_embedding.weight.grad.clone()))
    (whole, whole_grad), (split, split_grad) = results
    assert torch.allclose(whole, split, atol=1e-5)
    assert torch.allclose(whole_grad, split_grad, atol=1e-6)

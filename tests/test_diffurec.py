"""DiffuRec end to end on a tiny ml-100k slice, through the runner and RecBole's tools."""
import math
import os

import pytest
import torch
import yaml
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer  # RecBole's lookup, as install() set it

from conftest import ROOT, build_model, tiny_args
from recbole_diffurec.config import Config
from recbole_diffurec.errors import UsageError
from recbole_diffurec.model import DiffuRec
from recbole_diffurec.quick_start import run
from recbole_diffurec.metrics import ACCURACY as METRICS

DIFFUREC = ("--diffusion_steps=4", "--n_heads=2")


def build(tiny_data, *extra):
    return build_model(tiny_data, "DiffuRec", *DIFFUREC, *extra)


PAPER = os.path.join(ROOT, "properties", "paper.yaml")


def test_paper_yaml_restores_the_papers(workdir):
    """properties/paper.yaml is the papers' settings; the defaults differ from it only in the keys
    it lists (chosen by measurement, docs/MODEL.md §8)."""
    expected = {
        "hidden_size": 128, "n_layers": 4, "n_heads": 4, "dropout_prob": 0.1, "emb_dropout": 0.3,
        "lambda_uncertainty": 0.001, "diffusion_steps": 32, "noise_schedule": "trunc_lin",
        "learning_rate": 0.001, "weight_decay": 0.0001, "train_batch_size": 1024, "epochs": 41,
        "stopping_step": 41, "lr_step_size": 30, "lr_gamma": 0.1, "MAX_ITEM_LIST_LENGTH": 100,
        "offset_noise_strength": 0.1, "item_init_std": 1.0, "pathway_weight_decay": True,
        "use_position_embedding": False, "chain_blocks": False, "sampling_steps": 0, "train_length_grouping": 0,
        "condition_norm": "none", "condition_token": False, "target_scale": 1.0,
    }
    paper = Config("DiffuRecSys", "ml-100k", [PAPER])
    assert {k: paper[k] for k in expected} == expected
    default = Config("DiffuRecSys", "ml-100k")
    with open(PAPER) as f:
        loaded = yaml.safe_load(f)
    listed = {k for k, v in loaded.items() if not isinstance(v, dict)}
    listed |= {k for section in ("DiffuRec", "DiffuRecSys") for k in loaded[section]}
    assert {k for k in expected if default[k] != expected[k]} <= listed


def test_missing_key_is_an_error(tiny_data, workdir):
    config = Config("DiffuRec", "ml-100k", cmd_args=tiny_args(tiny_data, *DIFFUREC))
    del config.final_config_dict["lambda_uncertainty"]
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    with pytest.raises(KeyError, match="lambda_uncertainty.*properties/model/DiffuRec.yaml"):
        DiffuRec(config, train._dataset)


@pytest.mark.parametrize("std", [0.02, 1.0])
def test_item_table_init_std(tiny_data, workdir, std):
    _, model, _, _, _ = build(tiny_data, "--hidden_size=64", f"--item_init_std={std}", "--use_position_embedding=True")
    for table in (model.item_embedding, model.position_embedding):
        assert table.weight.std().item() == pytest.approx(std, rel=0.1)


def test_pathway_gets_no_weight_decay(tiny_data, workdir):
    """With pathway_weight_decay False (the default) the timestep MLP's parameters sit in a group
    without decay; with True every parameter is decayed, as the papers."""
    config, model, *_ = build(tiny_data, "--weight_decay=0.001")
    trainer = get_trainer(config["MODEL_TYPE"], "DiffuRec")(config, model)
    decay = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert len(decay) == len(list(model.parameters()))
    pathway = {id(p) for p in model.approximator.t_embedder.parameters()}
    assert all(decay[i] == 0.0 for i in pathway)
    assert all(d == 0.001 for i, d in decay.items() if i not in pathway)
    config, model, *_ = build(tiny_data, "--weight_decay=0.001", "--pathway_weight_decay=True")
    trainer = get_trainer(config["MODEL_TYPE"], "DiffuRec")(config, model)
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [0.001]


def test_loss_finite_and_decreasing(tiny_data, workdir):
    config, model, train, _, _ = build(tiny_data, "--learning_rate=0.01")
    trainer = get_trainer(config["MODEL_TYPE"], "DiffuRec")(config, model)
    losses = [trainer.train_epoch(train, epoch) for epoch in range(4)]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


def test_trimming_padding_changes_no_score(tiny_data, workdir):
    _, model, _, _, test = build(tiny_data, "--MAX_ITEM_LIST_LENGTH=50")  # histories <= 28 items
    model.eval()
    # lambda is drawn per position, so fix it to its mean to compare the two layouts exactly
    model.approximator.sample_lambda = lambda shape, device, generator=None: torch.full(shape, 0.001)
    interaction = next(iter(test))[0]
    assert interaction[model.ITEM_SEQ_LEN].max() < interaction[model.ITEM_SEQ].shape[1]  # padding to cut
    scores = {}
    for trim in (True, False):
        model.trim_padding = trim
        with torch.no_grad():
            x0 = model.sample_xstart(
                interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN], torch.Generator().manual_seed(0)
            )
        scores[trim] = x0 @ model.item_embedding.weight.T
    assert torch.allclose(scores[True], scores[False], atol=1e-4)


def test_predict_matches_full_sort(tiny_data, workdir):
    _, model, _, _, test = build(tiny_data)
    model.eval()
    interaction = next(iter(test))[0]
    interaction.update(type(interaction)({model.ITEM_ID: torch.ones(len(interaction), dtype=torch.long) * 3}))
    torch.manual_seed(5)
    full = model.full_sort_predict(interaction)
    torch.manual_seed(5)
    one = model.predict(interaction)
    assert full.shape == (len(interaction), model.n_items)
    assert torch.allclose(full[:, 3], one, atol=1e-5)


def test_runner_end_to_end_and_reproducible(tiny_data, workdir):
    a = run("DiffuRec", "ml-100k", cmd_args=tiny_args(tiny_data, *DIFFUREC, "--epochs=2", "--seed=11"))
    b = run("DiffuRec", "ml-100k", cmd_args=tiny_args(tiny_data, *DIFFUREC, "--epochs=2", "--seed=11"))
    for split in ("best_valid_result", "test_result"):
        for m in METRICS:
            assert 0.0 <= float(a[split][m]) <= 1.0
    assert a["test_result"] == b["test_result"]
    assert a["best_valid_result"] == b["best_valid_result"]


def test_recbole_tools_on_diffurec_checkpoint(tiny_data, workdir):
    from recbole.quick_start import load_data_and_model
    from recbole.utils.case_study import full_sort_topk

    result = run("DiffuRec", "ml-100k", cmd_args=tiny_args(tiny_data, *DIFFUREC))
    config, model, dataset, _, _, test_data = load_data_and_model(result["checkpoint"])
    assert isinstance(model, DiffuRec) and config["diffusion_steps"] == 4
    uid_series = dataset.token2id(dataset.uid_field, ["1", "2", "3"])
    scores, items = full_sort_topk(uid_series, model, test_data, k=10, device=config["device"])
    assert items.shape == (3, 10) and torch.isfinite(scores).all()


def test_sampling_steps_respaces_inference_only(tiny_data, workdir):
    _, full, _, _, test = build(tiny_data)  # T = 4
    _, fast, _, _, _ = build(tiny_data, "--sampling_steps=2")
    assert full.sampling_diffusion is full.diffusion
    assert fast.diffusion.num_timesteps == 4 and fast.sampling_diffusion.num_timesteps == 2
    assert fast.sampling_diffusion.timestep_map.tolist() == [0, 3]
    fast.eval()
    calls = []
    original = fast.approximator.forward
    fast.approximator.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    interaction = next(iter(test))[0]
    with torch.no_grad():
        scores = fast.full_sort_predict(interaction)
    assert len(calls) == 2 and scores.shape == (len(interaction), fast.n_items)


def test_sampling_steps_zero_means_all_and_never_exceeds_t(tiny_data, workdir):
    _, zero, _, _, _ = build(tiny_data, "--sampling_steps=0")
    config = Config("DiffuRec", "ml-100k", cmd_args=tiny_args(tiny_data, "--diffusion_steps=2", "--n_heads=2"))
    short = DiffuRec(config, data_preparation(config, create_dataset(config))[0]._dataset)  # default K = 4 > T
    assert zero.sampling_diffusion is zero.diffusion
    assert short.sampling_diffusion is short.diffusion and short.diffusion.num_timesteps == 2


def test_inference_settings_apply_inside_the_block_only(tiny_data, workdir):
    _, model, _, _, test = build(tiny_data, "--sampling_steps=2")  # T = 4
    interaction = next(iter(test))[0]
    seq, length = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
    before = model.sampling_diffusion
    with model.inference_settings(sampling_steps=1, n_ensemble=3):
        assert model.sampling_diffusion.num_timesteps == 1 and model.n_ensemble == 3
        members = model.sample_members(seq, length, model.n_ensemble, torch.Generator().manual_seed(0))
        assert members.shape[0] == 3
    assert model.sampling_diffusion is before and model.n_ensemble == 1
    for k, steps in ((0, 4), (4, 4), (9, 4), (3, 3)):  # one rule: 0 and K >= T run all T steps
        with model.inference_settings(sampling_steps=k):
            assert model.sampling_diffusion.num_timesteps == steps
    with pytest.raises(UsageError, match="sampling_steps must be an integer >= 0"):
        with model.inference_settings(sampling_steps=-1):
            pass
    with pytest.raises(UsageError, match="n_ensemble must be an integer >= 1"):
        with model.inference_settings(n_ensemble=0):
            pass
    assert model.sampling_diffusion is before and model.n_ensemble == 1  # restored after errors too

"""Our Trainer: StepLR schedule, resume, NaN error; RecBole's tools on a checkpoint we saved."""
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from conftest import TINY, tiny_args
from recbole_diffurec.config import Config
from recbole_diffurec.trainer import NaNLossError, Trainer
from recbole_diffurec.utils import get_model, get_trainer


def build(tiny_data, model="SASRec", *extra):
    config = Config(model, "ml-100k", cmd_args=tiny_args(tiny_data, *extra))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    net = get_model(model)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    return config, trainer, train, valid, test


def test_step_lr_decays_each_step(tiny_data, workdir):
    config, trainer, train, valid, _ = build(
        tiny_data, "SASRec", "--epochs=3", "--lr_step_size=2", "--lr_gamma=0.5", "--learning_rate=0.01"
    )
    assert isinstance(trainer, Trainer)
    trainer.fit(train, valid, saved=True)
    # decayed once after epoch 2 (index 1); epoch 3 ran at 0.005 and the third step is not due
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    assert trainer.scheduler.last_epoch == 3


def test_no_schedule_keeps_lr(tiny_data, workdir):
    _, trainer, train, valid, _ = build(tiny_data, "SASRec", "--epochs=2", "--learning_rate=0.01")
    assert trainer.scheduler is None
    trainer.fit(train, valid, saved=False)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_resume_restores_schedule(tiny_data, workdir):
    args = ("--epochs=2", "--lr_step_size=1", "--lr_gamma=0.5", "--learning_rate=0.01", "--valid_metric=Hit@20")
    _, trainer, train, valid, _ = build(tiny_data, "SASRec", *args)
    trainer.fit(train, valid, saved=True)
    state = torch.load(trainer.saved_model_file, weights_only=False)
    _, resumed, _, _, _ = build(tiny_data, "SASRec", *args)
    resumed.resume_checkpoint(trainer.saved_model_file)
    assert resumed.start_epoch == state["epoch"] + 1
    assert resumed.scheduler.last_epoch == resumed.start_epoch
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** (state["epoch"] + 1))
    resumed.optimizer.step()  # (no gradients: a no-op that keeps torch's call-order check quiet)
    resumed.scheduler.step()  # the next epoch's decay continues from the loaded lr
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** (state["epoch"] + 2))


def test_nan_loss_error_names_the_fix(tiny_data, workdir):
    _, trainer, train, valid, _ = build(tiny_data, "SASRec")
    trainer.model.calculate_loss = lambda interaction: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(NaNLossError, match="NaN in epoch 0 of SASRec.*learning_rate"):
        trainer.fit(train, valid, saved=False)


def test_recbole_tools_load_our_checkpoint(tiny_data, workdir):
    """RecBole's own load_data_and_model and full_sort_topk work on a checkpoint our runner saved."""
    from recbole.quick_start import load_data_and_model
    from recbole.utils.case_study import full_sort_topk

    from recbole_diffurec.quick_start import run

    result = run("SASRec", "ml-100k", cmd_args=[f"--data_path={tiny_data}"] + TINY)
    config, model, dataset, _, _, test_data = load_data_and_model(result["checkpoint"])
    assert config["model"] == "SASRec"
    uid_series = dataset.token2id(dataset.uid_field, ["1", "2"])
    scores, items = full_sort_topk(uid_series, model, test_data, k=5, device=config["device"])
    assert items.shape == (2, 5)
    assert torch.isfinite(scores).all()

"""Our Trainer: StepLR schedule, resume, NaN error; RecBole's tools on a checkpoint we saved."""
import os

import pytest
import torch
from recbole.utils import get_trainer  # RecBole's lookup, as install() set it

from conftest import TINY, build_model, tiny_args
from recbole_diffurec.trainer import NaNLossError, Trainer


def build(tiny_data, model="SASRec", *extra):
    config, net, train, valid, test = build_model(tiny_data, model, *extra)
    return config, get_trainer(config["MODEL_TYPE"], model)(config, net), train, valid, test


def test_step_lr_decays_each_step(tiny_data, workdir):
    config, trainer, train, valid, _ = build(
        tiny_data, "SASRec", "--epochs=3", "--lr_step_size=2", "--lr_gamma=0.5", "--learning_rate=0.01"
    )
    assert isinstance(trainer, Trainer)
    trainer.fit(train, valid, saved=True)
    # decayed once after epoch 2 (index 1); epoch 3 ran at 0.005 and the third step is not due
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    assert trainer.scheduler.last_epoch == 3


def test_checkpoint_name_is_unique_per_process(tiny_data, workdir):
    """RecBole names the checkpoint after the second; two processes started in the same second
    must not share it."""
    _, trainer, _, _, _ = build(tiny_data, "SASRec")
    assert trainer.saved_model_file.endswith(f"-{os.getpid()}.pth")


def test_trainer_flushes_subnormals(tiny_data, workdir):
    """Weights that weight decay drives below 1.2e-38 slowed CPU matmuls about 100x; a trainer
    (any model) makes the CPU treat them as zeros."""
    torch.set_flush_denormal(False)
    tiny = torch.tensor([1e-40])
    assert (tiny * 1.0).item() != 0.0  # subnormals are kept without the flush mode
    try:
        build(tiny_data, "SASRec")
        assert (tiny * 1.0).item() == 0.0
        assert (torch.full((4, 4), 1e-40) @ torch.ones(4, 4)).abs().max().item() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_no_schedule_keeps_lr(tiny_data, workdir):
    _, trainer, train, valid, _ = build(tiny_data, "SASRec", "--epochs=2", "--learning_rate=0.01")
    assert trainer.scheduler is None
    trainer.fit(train, valid, saved=False)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_plateau_decays_once_per_plateau(tiny_data, workdir):
    args = ("--epochs=7", "--learning_rate=0.01", "--lr_gamma=0.5", "--lr_plateau_patience=2", "--stopping_step=5")
    _, trainer, train, valid, _ = build(tiny_data, "SASRec", *args)
    scores, lrs = iter([0.5, 0.4, 0.4, 0.4, 0.6, 0.5, 0.5]), []

    def valid_epoch(valid_data, show_progress=False):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])  # the lr the epoch just trained with
        score = next(scores)
        return score, {"ndcg@10": score}

    trainer._valid_epoch = valid_epoch
    trainer.fit(train, valid, saved=False)
    # two evaluations without improvement (epochs 1, 2) decay it; the third does not; the
    # improvement at epoch 4 starts a new count, which reaches 2 again at epoch 6
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)


def test_plateau_decays_stop_at_the_cap(tiny_data, workdir):
    args = ("--epochs=8", "--learning_rate=0.01", "--lr_gamma=0.5", "--lr_plateau_patience=1",
            "--lr_plateau_max_decays=2", "--stopping_step=7")
    _, trainer, train, valid, _ = build(tiny_data, "SASRec", *args)
    scores, lrs = iter([0.5, 0.4, 0.6, 0.4, 0.7, 0.4, 0.4, 0.4]), []

    def valid_epoch(valid_data, show_progress=False):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        score = next(scores)
        return score, {"ndcg@10": score}

    trainer._valid_epoch = valid_epoch
    trainer.fit(train, valid, saved=False)
    # three plateaus start at epochs 1, 3 and 5; the first two decay, the third does not
    assert lrs == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.0025, 0.0025])
    assert trainer.plateau_decays == 2


def test_plateau_patience_must_be_below_stopping_step(tiny_data, workdir):
    from recbole_diffurec.errors import UsageError

    with pytest.raises(UsageError, match="lr_plateau_patience \\(5\\) must be less than stopping_step \\(5\\)"):
        build(tiny_data, "SASRec", "--lr_plateau_patience=5", "--stopping_step=5")


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
    nan = lambda interaction: torch.tensor(float("nan"), requires_grad=True)  # noqa: E731
    trainer.model.calculate_loss = trainer.recbole_loss = nan  # RecBole's loss, or its batch in parts
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


# ----- resuming a run from its training state -----
def _run(tiny_data, model, *extra, **kwargs):
    from recbole_diffurec.quick_start import run

    return run(model, "ml-100k", cmd_args=tiny_args(tiny_data, "--stopping_step=50", *extra), **kwargs)


@pytest.mark.parametrize("model", ["DiffuRecSys", "SASRec"])
def test_resumed_run_ends_like_an_uninterrupted_one(model, tiny_data, workdir):
    """Stop after epoch 2 of 4 (a run whose budget was 2), resume with the budget of 4: the same
    metrics, to the last bit, as 4 epochs in one go. DiffuRecSys draws from every generator
    (dropout, timesteps, noise, the grouped batch order, the reverse process)."""
    lr = ("--lr_step_size=1", "--lr_gamma=0.5")
    whole = _run(tiny_data, model, "--epochs=4", *lr, state_file=str(workdir / "whole.state.pth"))
    part = _run(tiny_data, model, "--epochs=2", *lr, state_file=str(workdir / "part.state.pth"))
    assert part["epochs_trained"] == 2
    resumed = _run(tiny_data, model, "--epochs=4", *lr, state_file=str(workdir / "part.state.pth"), resume=True)
    assert resumed["epochs_trained"] == 4
    assert resumed["checkpoint"] == part["checkpoint"]  # the run keeps its best checkpoint
    assert resumed["best_valid_result"] == whole["best_valid_result"]
    assert resumed["test_result"] == whole["test_result"]
    assert resumed["train_seconds"] > part["train_seconds"]  # the seconds of both processes


def test_resuming_a_stopped_run_only_tests(tiny_data, workdir):
    state = str(workdir / "run.state.pth")
    first = _run(tiny_data, "SASRec", "--epochs=2", state_file=state)
    again = _run(tiny_data, "SASRec", "--epochs=2", state_file=state, resume=True)
    assert again["epochs_trained"] == 2
    assert again["test_result"] == first["test_result"]
    assert again["train_seconds"] == pytest.approx(first["train_seconds"], abs=0.5)  # saved just before fit ends


def test_resume_with_other_settings_is_refused(tiny_data, workdir):
    from recbole_diffurec.trainer import ResumeError

    state = str(workdir / "run.state.pth")
    _run(tiny_data, "SASRec", "--epochs=1", state_file=state)
    with pytest.raises(ResumeError, match=r"other settings: learning_rate \(saved 0.001, now 0.01\)"):
        _run(tiny_data, "SASRec", "--epochs=2", "--learning_rate=0.01", state_file=state, resume=True)


def test_resume_without_its_checkpoint_is_refused(tiny_data, workdir):
    import os

    from recbole_diffurec.trainer import ResumeError

    state = str(workdir / "run.state.pth")
    first = _run(tiny_data, "SASRec", "--epochs=1", state_file=state)
    os.remove(first["checkpoint"])
    with pytest.raises(ResumeError, match="best checkpoint .* is gone; delete the state"):
        _run(tiny_data, "SASRec", "--epochs=2", state_file=state, resume=True)


def test_old_checkpoint_without_new_keys_loads_with_a_warning(tiny_data, workdir):
    """A checkpoint whose config predates some keys loads through RecBole's own
    load_data_and_model and ours; the missing keys are filled (the behaviour such checkpoints
    had, else the current default) and named in one warning."""
    from recbole.quick_start import load_data_and_model

    from recbole_diffurec.checkpoints import load_for_inference
    from recbole_diffurec.quick_start import run

    result = run("DiffuRecSys", "ml-100k", cmd_args=tiny_args(tiny_data, "--diffusion_steps=4", "--n_heads=2"))
    checkpoint = torch.load(result["checkpoint"], weights_only=False)
    for key in ("target_scale", "chain_blocks", "sampling_steps"):
        del checkpoint["config"].final_config_dict[key]
    old = str(workdir / "old.pth")
    torch.save(checkpoint, old)
    with pytest.warns(UserWarning, match=r"predates the config key\(s\) .*sampling_steps \(filled with 0\)"):
        config, model, *_ = load_data_and_model(old)
    assert config["target_scale"] == 1.0 and config["chain_blocks"] is True and config["sampling_steps"] == 0
    assert model.sampling_diffusion is model.diffusion  # all T steps, as before the key existed
    with pytest.warns(UserWarning, match="target_scale"):
        config, model, *_ = load_for_inference(old)
    assert type(model).__name__ == "DiffuRecSys"

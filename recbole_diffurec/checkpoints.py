"""Load a checkpoint saved by a run for inference-only tools (``benchmarks/sampling_steps.py``,
``benchmarks/pathway.py``): the config it was trained with, the model with its weights, and the
data split it was evaluated on. Keys an older checkpoint lacks are filled when its config is
unpickled (``Config.__setstate__``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def read_checkpoint(path: str) -> dict[str, Any]:
    """The dict a run saved at ``path`` (config, state_dict, ...), or a UsageError saying what the
    file is instead. Every inference tool reads its checkpoint here, so this is also where subnormal
    weights are flushed, as in training (``trainer.flush_denormals``)."""
    import os

    import torch

    from recbole_diffurec.errors import UsageError
    from recbole_diffurec.trainer import flush_denormals

    flush_denormals()

    if not os.path.isfile(path):
        raise UsageError(f"checkpoint '{path}' does not exist.")
    try:
        checkpoint = torch.load(path, weights_only=False, map_location="cpu")  # a pickled Config inside
    except Exception as e:  # noqa: BLE001 - whatever the file is, the answer is the same
        raise UsageError(
            f"'{path}' is not a checkpoint saved by a run ({type(e).__name__}: {e}); use a .pth from saved/ "
            "or OUT/checkpoints/ (not a .state.pth)."
        ) from None
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint):
        raise UsageError(
            f"'{path}' is not a checkpoint saved by a run (it lacks 'config' and 'state_dict'); use a .pth from "
            "saved/ or OUT/checkpoints/ (a training state .state.pth is for --resume)."
        )
    return checkpoint


def load_for_inference(path: str, device: str | torch.device | None = None) -> tuple:
    """(config, model in eval mode, train_data, valid_data, test_data) of the checkpoint ``path``."""
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_diffurec.utils import get_model

    checkpoint = read_checkpoint(path)  # its Config fills the keys an older checkpoint lacks
    config = checkpoint["config"]
    if device is not None:
        config.final_config_dict["device"] = torch.device(device)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, test._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return config, model, train, valid, test

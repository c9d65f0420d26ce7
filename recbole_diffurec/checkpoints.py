"""A model checkpoint loaded for inference-only tools (``--case_study``,
``benchmarks/sampling_steps.py``, ``benchmarks/pathway.py``, RecBole's ``load_data_and_model``):
the config it was trained with, the model with its weights, and the data split it was evaluated on.
A training state or a foreign file gets one line naming the file needed (``run_files.py``). Keys an
older checkpoint lacks are filled when its config is unpickled (``Config.__setstate__``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from recbole_diffurec.run_files import CHECKPOINT, FOREIGN, checkpoint_kind, model_checkpoints, wrong_kind

__all__ = ["read_checkpoint", "load_for_inference", "each_for_inference", "model_checkpoints"]

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
        raise UsageError(wrong_kind(path, FOREIGN, CHECKPOINT, f"unreadable: {type(e).__name__}: {e}")) from None
    kind = checkpoint_kind(checkpoint)
    if kind != CHECKPOINT:
        lacks = "it lacks 'config' and 'state_dict'" if kind == FOREIGN and isinstance(checkpoint, dict) else ""
        raise UsageError(wrong_kind(path, kind, CHECKPOINT, lacks))
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


def each_for_inference(paths: list[str], failed: list[str], log: Callable[[str], None] = print) -> Iterator[tuple]:
    """``(path, load_for_inference(path))`` for each model checkpoint among ``paths``, as the
    benchmark tools read a glob: a training state is skipped with a note (``model_checkpoints``),
    a file that is not a model checkpoint gets its one line and is added to ``failed``."""
    from recbole_diffurec.errors import UsageError

    for path in model_checkpoints(paths, log=log):
        try:
            loaded = load_for_inference(path)
        except UsageError as e:
            log(f"error: {e}")
            failed.append(path)
            continue
        yield path, loaded

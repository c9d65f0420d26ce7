"""The two kinds of file a run writes, told apart.

A run writes a **model checkpoint** ``X.pth`` (RecBole's format: the config it was trained with and
the best model's weights; the inference tools read it, ``checkpoints.py``) and a **training state**
``X.state.pth`` (everything ``--resume`` needs to continue, ``trainer.py``). ``checkpoint_kind``
says which a loaded file is; every reader answers a file of the other kind, or a foreign one, in one
line naming the file it needs (``wrong_kind``). Tools given many files (a glob over
``OUT/checkpoints/``) skip training states with a note (``model_checkpoints``).
"""
from __future__ import annotations

from typing import Any, Callable

STATE_SUFFIX = ".state.pth"
CHECKPOINT, STATE, FOREIGN = "model checkpoint", "training state", "foreign file"


def checkpoint_kind(obj: Any) -> str:
    """CHECKPOINT, STATE or FOREIGN: what a loaded ``.pth`` holds."""
    if not isinstance(obj, dict):
        return FOREIGN
    if {"format", "epoch", "optimizer", "state_dict"} <= set(obj):
        return STATE
    if {"config", "state_dict"} <= set(obj) and hasattr(obj["config"], "final_config_dict"):
        return CHECKPOINT
    return FOREIGN


def checkpoint_beside(state_file: str) -> str:
    """The model checkpoint ``X.pth`` written beside the training state ``X.state.pth``."""
    return state_file[: -len(STATE_SUFFIX)] + ".pth" if state_file.endswith(STATE_SUFFIX) else state_file


def state_beside(checkpoint: str) -> str:
    """The training state ``X.state.pth`` written beside the model checkpoint ``X.pth``."""
    return (checkpoint[:-4] if checkpoint.endswith(".pth") else checkpoint) + STATE_SUFFIX


def wrong_kind(path: str, kind: str, needed: str, detail: str = "") -> str:
    """The one line for a file of ``kind`` where ``needed`` was asked for (``detail``, if any,
    in parentheses at its end)."""
    if kind == STATE and needed == CHECKPOINT:
        line = f"'{path}' is a training state (for --resume); this needs a model checkpoint: '{checkpoint_beside(path)}' beside it"
    elif kind == CHECKPOINT and needed == STATE:
        line = f"'{path}' is a model checkpoint; --resume needs a training state: '{state_beside(path)}' beside it"
    else:
        line = (f"'{path}' is not a {needed} saved by a run; use a .pth from saved/ or OUT/checkpoints/ "
                f"({'a training state X.state.pth' if needed == STATE else 'not a .state.pth'})")
    return f"{line} ({detail})." if detail else f"{line}."


def model_checkpoints(paths: list[str], log: Callable[[str], None] = print) -> list[str]:
    """``paths`` without the training states among them (each skipped with a note): what a tool
    given ``OUT/checkpoints/*.pth`` reads."""
    kept = []
    for path in paths:
        if path.endswith(STATE_SUFFIX):
            log(f"skipping {path}: a training state (for --resume); the model checkpoint is {checkpoint_beside(path)}")
        else:
            kept.append(path)
    return kept

"""When a validation score counts as an improvement: the early-stopping rule.

RecBole's ``early_stopping`` counts a score equal to the best as an improvement (``>=``), and the
scores are rounded to 4 decimals: a tie resets the patience and replaces the best checkpoint, so a
model whose validation curve plateaus in ties trains longer than one whose curve does not.
``stopping_rule: strict`` (the default) counts only a score above the best by more than
``stopping_min_delta``; ``recbole`` is RecBole's rule (with ``stopping_min_delta``: at least that
much above). docs/results/early-stopping.md measures both on the amazon-beauty records.

RecBole's trainers call the ``early_stopping`` of their own module; ``compat`` replaces it with
``early_stopping_in_effect``, which applies the rule of the running ``fit`` (``stopping_rule``, set
by our Trainer) and RecBole's rule otherwise, so RecBole's loop, logging and checkpointing stay
its own.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

RULES = ("strict", "recbole")


def improves(value: float, best: float, bigger: bool = True, rule: str = "strict", min_delta: float = 0.0) -> bool:
    """Whether ``value`` improves on ``best`` under ``rule``."""
    gain = value - best if bigger else best - value
    return gain > min_delta if rule == "strict" else gain >= min_delta


def early_stopping(
    value: float, best: float, cur_step: int, max_step: int, bigger: bool = True, rule: str = "strict",
    min_delta: float = 0.0,
) -> tuple[float, int, bool, bool]:
    """RecBole's ``early_stopping`` under ``rule``: (best after this evaluation, evaluations
    without improvement, stop, save this model)."""
    if improves(value, best, bigger, rule, min_delta):
        return value, 0, False, True
    cur_step += 1
    return best, cur_step, cur_step > max_step, False


_IN_EFFECT = [("recbole", 0.0)]  # the rule of the fit running in this process (RecBole's outside ours)


def early_stopping_in_effect(value, best, cur_step, max_step, bigger=True):
    """RecBole's ``early_stopping`` signature under the rule of the running fit (``compat``
    installs it as the one RecBole's trainers call)."""
    rule, min_delta = _IN_EFFECT[-1]
    return early_stopping(value, best, cur_step, max_step, bigger, rule, min_delta)


@contextlib.contextmanager
def stopping_rule(rule: str, min_delta: float = 0.0) -> Iterator[None]:
    """RecBole's ``Trainer.fit`` stops early under ``rule`` inside this context."""
    if rule not in RULES:
        raise ValueError(f"stopping_rule must be one of {', '.join(RULES)}, got {rule!r}")
    _IN_EFFECT.append((rule, min_delta))
    try:
        yield
    finally:
        _IN_EFFECT.pop()


def replay(
    valid_history: list[list[float]], patience: int, rule: str = "strict", min_delta: float = 0.0, bigger: bool = True
) -> tuple[int, float, int]:
    """A recorded validation curve ([epoch, score] per evaluation) under another rule: (epochs
    the run would have trained, its best score, the epoch of that best)."""
    best, cur, best_epoch = float("-inf") if bigger else float("inf"), 0, -1
    for epoch, value in valid_history:
        best, cur, stop, update = early_stopping(value, best, cur, patience, bigger, rule, min_delta)
        if update:
            best_epoch = epoch
        if stop:
            return int(epoch) + 1, best, int(best_epoch)
    return int(valid_history[-1][0]) + 1, best, int(best_epoch)

"""When a validation score counts as an improvement: the early-stopping rule.

RecBole's ``early_stopping`` counts a score equal to the best as an improvement (``>=``), and the
scores are rounded to 4 decimals: a tie resets the patience and replaces the best checkpoint, so a
model whose validation curve plateaus in ties trains longer than one whose curve does not.
``stopping_rule: strict`` (the default) counts only a score above the best by more than
``stopping_min_delta``; ``recbole`` is RecBole's rule (with ``stopping_min_delta``: at least that
much above). docs/results/early-stopping.md measures both on the amazon-beauty records.

With a step schedule (``lr_step_size`` S > 0) and ``stopping_after_decay`` (the default), early
stopping waits for the schedule: no run stops on an evaluation before its first decay (epochs 0 to
S - 1 train at the first rate), and the patience restarts at each decay (epochs S, 2S, ...), so a
plateau at one rate cannot end a run the schedule is about to move on. Without it, 4 of the 15
early-stopped scheduled runs of the first amazon-beauty comparison stopped before their first decay,
0.0023-0.0026 of validation NDCG@10 below their model's seed that reached it
(docs/results/early-stopping.md).

RecBole's trainers call the ``early_stopping`` of their own module; ``compat`` replaces it with
``early_stopping_in_effect``, which applies the rule of the running ``fit`` (``stopping_rule``, set
by our Trainer) and RecBole's rule otherwise, so RecBole's loop, logging and checkpointing stay
its own.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

RULES = ("strict", "recbole")


def improves(value: float, best: float, bigger: bool = True, rule: str = "strict", min_delta: float = 0.0) -> bool:
    """Whether ``value`` improves on ``best`` under ``rule``."""
    gain = value - best if bigger else best - value
    return gain > min_delta if rule == "strict" else gain >= min_delta


def early_stopping(
    value: float, best: float, cur_step: int, max_step: int, bigger: bool = True, rule: str = "strict",
    min_delta: float = 0.0, hold: bool = False,
) -> tuple[float, int, bool, bool]:
    """RecBole's ``early_stopping`` under ``rule``: (best after this evaluation, evaluations
    without improvement, stop, save this model). ``hold``: the run may not stop at this evaluation
    (its counter still counts)."""
    if improves(value, best, bigger, rule, min_delta):
        return value, 0, False, True
    cur_step += 1
    return best, cur_step, cur_step > max_step and not hold, False


def decay_pending(epoch_idx: int, lr_step_size: int) -> bool:
    """Whether the evaluation after training epoch ``epoch_idx`` (from 0) comes before a step
    schedule's first decay has trained an epoch (StepLR every ``lr_step_size`` epochs; 0: none)."""
    return lr_step_size > 0 and epoch_idx < lr_step_size


def decays_since(epoch_idx: int, previous_idx: int, lr_step_size: int) -> bool:
    """Whether an epoch after ``previous_idx`` up to ``epoch_idx`` trained at a newly decayed rate
    (epochs S, 2S, ... of StepLR every S epochs)."""
    return lr_step_size > 0 and epoch_idx // lr_step_size > max(previous_idx, 0) // lr_step_size


_IN_EFFECT = [("recbole", 0.0, None)]  # the rule of the fit running in this process (RecBole's outside ours)


def early_stopping_in_effect(value, best, cur_step, max_step, bigger=True):
    """RecBole's ``early_stopping`` signature under the rule of the running fit (``compat``
    installs it as the one RecBole's trainers call)."""
    rule, min_delta, hold = _IN_EFFECT[-1]
    return early_stopping(value, best, cur_step, max_step, bigger, rule, min_delta, bool(hold and hold()))


@contextlib.contextmanager
def stopping_rule(rule: str, min_delta: float = 0.0, hold: Callable[[], bool] | None = None) -> Iterator[None]:
    """RecBole's ``Trainer.fit`` stops early under ``rule`` inside this context; while ``hold()``
    is true it does not stop (the trainer's schedule has a decay to come)."""
    if rule not in RULES:
        raise ValueError(f"stopping_rule must be one of {', '.join(RULES)}, got {rule!r}")
    _IN_EFFECT.append((rule, min_delta, hold))
    try:
        yield
    finally:
        _IN_EFFECT.pop()


def replay(
    valid_history: list[list[float]], patience: int, rule: str = "strict", min_delta: float = 0.0, bigger: bool = True,
    lr_step_size: int = 0,
) -> tuple[int, float, int]:
    """A recorded validation curve ([epoch, score] per evaluation) under another rule: (epochs
    the run would have trained, its best score, the epoch of that best). ``lr_step_size`` > 0:
    waiting for the step schedule (``stopping_after_decay``). A curve that ends before the
    replayed rule would stop gives its own length (``replay_stops`` says which)."""
    return replay_stops(valid_history, patience, rule, min_delta, bigger, lr_step_size)[:3]


def replay_stops(
    valid_history: list[list[float]], patience: int, rule: str = "strict", min_delta: float = 0.0, bigger: bool = True,
    lr_step_size: int = 0,
) -> tuple[int, float, int, bool]:
    """``replay``, and whether the rule stops the run within the recorded curve (False: the curve
    ends first, and what the run would have done after it was not recorded)."""
    best, cur, best_epoch, previous = float("-inf") if bigger else float("inf"), 0, -1, -1
    for epoch, value in valid_history:
        if decays_since(int(epoch), previous, lr_step_size):
            cur = 0
        previous = int(epoch)
        hold = decay_pending(int(epoch), lr_step_size)
        best, cur, stop, update = early_stopping(value, best, cur, patience, bigger, rule, min_delta, hold)
        if update:
            best_epoch = epoch
        if stop:
            return int(epoch) + 1, best, int(best_epoch), True
    return int(valid_history[-1][0]) + 1, best, int(best_epoch), False

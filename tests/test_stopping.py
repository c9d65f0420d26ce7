"""The early-stopping rule: ties are no improvement under ``strict``, as they are under RecBole's."""
import pytest
from recbole.utils import early_stopping as recbole_early_stopping

from recbole_diffurec.stopping import early_stopping, improves

SCORES = [0.10, 0.20, 0.20, 0.20, 0.20, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15]


def _stop_epoch(rule, scores, patience, min_delta=0.0, bigger=True):
    best, cur = float("-inf") if bigger else float("inf"), 0
    for epoch, value in enumerate(scores):
        best, cur, stop, _ = early_stopping(value, best, cur, patience, bigger, rule, min_delta)
        if stop:
            return epoch
    return None


def test_recbole_rule_is_recboles_function():
    for value, best, cur in [(0.2, 0.2, 1), (0.3, 0.2, 2), (0.1, 0.2, 2), (0.1, 0.2, 0)]:
        for bigger in (True, False):
            assert early_stopping(value, best, cur, 2, bigger, "recbole") == recbole_early_stopping(value, best, cur, 2, bigger)


def test_ties_reset_the_patience_only_under_recboles_rule():
    # patience 2: the third evaluation without improvement stops the run
    assert _stop_epoch("strict", SCORES, 2) == 4  # epochs 2, 3, 4 tie with epoch 1
    assert _stop_epoch("recbole", SCORES, 2) == 7  # the ties of epochs 2-4 count as improvements
    assert _stop_epoch("strict", [1 - s for s in SCORES], 2, bigger=False) == 4


def test_min_delta():
    assert not improves(0.2005, 0.2, rule="strict", min_delta=0.001)
    assert improves(0.2011, 0.2, rule="strict", min_delta=0.001)
    assert improves(0.201, 0.2, rule="recbole", min_delta=0.001) and not improves(0.2009, 0.2, rule="recbole", min_delta=0.001)
    assert _stop_epoch("strict", [0.1, 0.2, 0.2004, 0.2008, 0.2009], 2, min_delta=0.001) == 4


@pytest.mark.parametrize("rule,epochs", [("strict", 5), ("recbole", 8)])
def test_training_stops_by_the_rule(rule, epochs, tiny_data, workdir, monkeypatch):
    """A run whose validation scores plateau in ties trains 5 epochs under strict, 8 under RecBole's."""
    from recbole_diffurec.trainer import Trainer
    from conftest import tiny_args
    from recbole_diffurec.quick_start import run

    scores = iter(SCORES)
    monkeypatch.setattr(Trainer, "_valid_epoch", lambda self, *a, **k: (next(scores), {"ndcg@10": 0.0}))
    args = tiny_args(tiny_data, "--epochs=12", "--stopping_step=2", f"--stopping_rule={rule}")
    result = run("SASRec", "ml-100k", cmd_args=args, saved=False)
    assert result["epochs_trained"] == epochs
    assert result["valid_history"] == [[e, s] for e, s in enumerate(SCORES[:epochs])]


def test_replay_of_a_recorded_curve():
    from recbole_diffurec.stopping import replay

    history = [[e, s] for e, s in enumerate(SCORES)]
    assert replay(history, 2, "strict") == (5, 0.2, 1)  # the first of the tied bests is kept
    assert replay(history, 2, "recbole") == (8, 0.2, 4)  # each tie replaced the best checkpoint
    assert replay(history[:3], 5, "strict") == (3, 0.2, 1)  # the budget ended first


def test_recboles_trainers_keep_recboles_rule_outside_our_fit():
    import recbole.trainer.trainer as recbole_trainer

    from recbole_diffurec.stopping import stopping_rule

    assert recbole_trainer.early_stopping(0.2, 0.2, 1, 2) == recbole_early_stopping(0.2, 0.2, 1, 2)
    with stopping_rule("strict"):
        assert recbole_trainer.early_stopping(0.2, 0.2, 1, 2) == (0.2, 2, False, False)
    assert recbole_trainer.early_stopping(0.2, 0.2, 1, 2) == (0.2, 0, False, True)


def test_decay_helpers():
    from recbole_diffurec.stopping import decay_pending, decays_since

    assert [decay_pending(e, 4) for e in range(6)] == [True] * 4 + [False] * 2
    assert not any(decay_pending(e, 0) for e in range(6))
    # StepLR every 4 epochs: epochs 4 and 8 are the first at a new rate
    assert [e for e in range(10) if decays_since(e, e - 1, 4)] == [4, 8]
    assert decays_since(5, 2, 4) and not decays_since(7, 4, 4)  # evaluations every few epochs
    assert not any(decays_since(e, e - 1, 0) for e in range(10))


def test_replay_waits_for_the_schedule():
    from recbole_diffurec.stopping import replay

    history = [[e, s] for e, s in enumerate(SCORES)]
    # patience 2, StepLR every 4: no stop before epoch 4, where the patience restarts
    assert replay(history, 2, "strict", lr_step_size=4) == (7, 0.2, 1)
    assert replay(history, 2, "strict", lr_step_size=6) == (9, 0.2, 1)
    assert replay(history, 2, "strict", lr_step_size=0) == replay(history, 2, "strict") == (5, 0.2, 1)
    # a run that improves after the decay counts from its new best: every 5 epochs, it stops at epoch
    # 8 (three ties after epoch 5); every 4, epoch 8's decay restarts the patience and the curve ends first
    rising = [[e, s] for e, s in enumerate([0.1, 0.2, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3])]
    assert replay(rising, 2, "strict", lr_step_size=5) == (9, 0.3, 5)
    assert replay(rising, 2, "strict", lr_step_size=4) == (10, 0.3, 5)


@pytest.mark.parametrize("step,waits,epochs", [(4, True, 7), (6, True, 9), (4, False, 5), (0, True, 5)])
def test_training_waits_for_the_decay(step, waits, epochs, tiny_data, workdir, monkeypatch):
    """A run that plateaus before its schedule's first decay keeps training until the decay and
    its patience after it (stopping_after_decay); without a schedule, or the key off, it stops."""
    from recbole_diffurec.trainer import Trainer
    from conftest import tiny_args
    from recbole_diffurec.quick_start import run

    scores = iter(SCORES)
    monkeypatch.setattr(Trainer, "_valid_epoch", lambda self, *a, **k: (next(scores), {"ndcg@10": 0.0}))
    args = tiny_args(tiny_data, "--epochs=12", "--stopping_step=2", f"--lr_step_size={step}",
                     f"--stopping_after_decay={waits}")
    result = run("SASRec", "ml-100k", cmd_args=args, saved=False)
    assert result["epochs_trained"] == epochs
    assert result["epochs_trained"] == replay_epochs(step if waits else 0)


def replay_epochs(step):
    from recbole_diffurec.stopping import replay

    return replay([[e, s] for e, s in enumerate(SCORES)], 2, "strict", lr_step_size=step)[0]


def test_a_run_held_for_its_decay_resumes(tiny_data, workdir, monkeypatch):
    """A training state saved while the run was held for its schedule (more evaluations without a
    better score than the patience, the decay still to come) is not a stopped run: resumed with a
    larger budget, it trains on and stops where one uninterrupted run does."""
    from recbole_diffurec.trainer import Trainer
    from conftest import tiny_args
    from recbole_diffurec.quick_start import run

    def scores_from(first):
        scores = iter(SCORES[first:])
        monkeypatch.setattr(Trainer, "_valid_epoch", lambda self, *a, **k: (next(scores), {"ndcg@10": 0.0}))

    state = str(workdir / "run.state.pth")
    common = ("--stopping_step=2", "--lr_step_size=6")
    scores_from(0)
    part = run("SASRec", "ml-100k", cmd_args=tiny_args(tiny_data, "--epochs=5", *common), saved=True, state_file=state)
    assert part["epochs_trained"] == 5
    scores_from(5)
    resumed = run("SASRec", "ml-100k", cmd_args=tiny_args(tiny_data, "--epochs=12", *common), saved=True,
                  state_file=state, resume=True)
    assert resumed["epochs_trained"] == replay_epochs(6) == 9

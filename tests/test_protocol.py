"""The two evaluation protocols: RecBole's ranking, and the user's history removed from it."""
import numpy as np
import pytest
import torch

from conftest import build_model, tiny_args


def _truth(train, valid, test):
    """Each user's items before its validation and test items, from the whole interaction table."""
    ds = train._dataset
    uid, iid = ds.uid_field, ds.iid_field
    every = {}
    for part in (train, valid, test):  # the three splits' samples: targets and input lists
        feat = part._dataset.inter_feat
        for u, t, lst in zip(feat[uid].tolist(), feat[iid].tolist(), feat[iid + "_list"].tolist()):
            every.setdefault(u, set()).update([t] + [i for i in lst if i])
    valid_t = dict(zip(valid._dataset.inter_feat[uid].tolist(), valid._dataset.inter_feat[iid].tolist()))
    test_t = dict(zip(test._dataset.inter_feat[uid].tolist(), test._dataset.inter_feat[iid].tolist()))
    return {u: every[u] - {valid_t[u], test_t[u]} for u in valid_t}, {u: every[u] - {test_t[u]} for u in test_t}, test_t


def test_histories_hold_every_earlier_item_beyond_the_input_length(tiny_data, workdir):
    """With a 3-item input the histories still hold the whole of each user's past (up to 28 items)."""
    from recbole_diffurec.protocol import count_repeated_targets, user_histories

    _, _, train, valid, test = build_model(tiny_data, "SASRec", "--MAX_ITEM_LIST_LENGTH=3")
    valid_truth, test_truth, _ = _truth(train, valid, test)
    got_valid, got_test = user_histories(train._dataset, valid._dataset, test._dataset)
    assert len(valid_truth) == 60
    for u in valid_truth:
        assert set(got_valid.items_of(u).tolist()) == valid_truth[u]
        assert set(got_test.items_of(u).tolist()) == test_truth[u]
    assert max(len(h) for h in test_truth.values()) > 20
    assert count_repeated_targets(test._dataset, got_test) == 0  # ml-100k: one rating per user and item


def test_history_index_selects_each_users_items():
    from recbole_diffurec.protocol import UserHistory

    history = UserHistory(np.array([0, 2, 2, 2, 3]), np.array([5, 1, 4, 1, 7]), n_users=5)
    rows, items = history.index(torch.tensor([2, 1, 3, 2]))
    assert sorted(zip(rows.tolist(), items.tolist())) == [(0, 1), (0, 4), (2, 7), (3, 1), (3, 4)]


def test_excluding_the_history_ranks_the_target_first(tiny_data, workdir):
    """Scores that put the whole history above the target: under RecBole's protocol the target
    ranks just below the user's history (closed form), without the history it ranks first."""
    from recbole_diffurec.protocol import attach_histories
    from recbole_diffurec.trainer import Trainer

    config, model, train, valid, test = build_model(tiny_data, "SASRec")
    _, test_truth, test_t = _truth(train, valid, test)
    n_items = train._dataset.item_num

    def scores(interaction):
        out = torch.zeros(len(interaction), n_items)
        for row, u in enumerate(interaction[config["USER_ID_FIELD"]].tolist()):
            out[row, list(test_truth[u])] = 10.0
            out[row, test_t[u]] = 5.0
        return out

    model.full_sort_predict = scores
    attach_histories(train, valid, test)
    trainer = Trainer(config, model)
    trainer.eval_collector.data_collect(train)
    ranks = np.array([len(test_truth[u]) + 1 for u in test._dataset.inter_feat[config["USER_ID_FIELD"]].tolist()])
    result = trainer.evaluate(test, load_best_model=False)
    assert ranks.min() <= 10 < ranks.max()
    assert result["hit@10"] == pytest.approx(np.mean(ranks <= 10), abs=1e-4)
    assert result["ndcg@10"] == pytest.approx(np.mean(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0)), abs=1e-4)
    trainer.exclude_history = True
    result = trainer.evaluate(test, load_best_model=False)
    assert result["hit@5"] == 1.0 and result["ndcg@5"] == 1.0


@pytest.mark.parametrize("model", ["DiffuRecSys", "SASRec"])
def test_runs_record_both_protocols_from_the_same_noise(model, tiny_data, workdir):
    """A run reports its test under both protocols; the reverse process ranks with the same noise
    under both, so a run under either protocol reports the same pair (DiffuRecSys: the noise
    differs between two evaluations unless reset)."""
    from recbole_diffurec.quick_start import run

    extra = ("--diffusion_steps=4",) if model == "DiffuRecSys" else ()
    plain = run(model, "ml-100k", cmd_args=tiny_args(tiny_data, *extra, model=model), saved=False)
    excluded = run(model, "ml-100k", cmd_args=tiny_args(tiny_data, "--eval_exclude_history=True", *extra, model=model),
                   saved=False)
    assert plain["eval_protocol"] == "recbole" and excluded["eval_protocol"] == "exclude_history"
    assert plain["test_result"] == plain["test_result_by_protocol"]["recbole"]
    assert excluded["test_result"] == excluded["test_result_by_protocol"]["exclude_history"]
    assert plain["test_result_by_protocol"] == excluded["test_result_by_protocol"]
    assert plain["test_result_by_protocol"]["recbole"] != plain["test_result_by_protocol"]["exclude_history"]

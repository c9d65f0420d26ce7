"""Case study of a trained checkpoint (DiffuRecSys paper section 6.5).

For every test user: the rank of the test item among all items (full ranking, padding id
excluded, as RecBole ranks) and the top-20 list. From those ranks, HR/NDCG@5/10/20 for
- head items against long-tail items: the tail is RecBole's ``TailPercentage`` tail
  (``tail_ratio``, 0.8: the 80% least frequent items of the training split), the head the rest,
- five groups of users by the percentile of their history length (interactions before the test item),
each for a single reverse run and for ``n_ensemble`` averaged runs (Algorithm 3) where the model is a
diffusion model; and a t-SNE picture of the reversed target representations x_0 coloured by
history-length group (Figure 6). For each inference, RecBole's beyond-accuracy metrics of the
top-K lists over all test users: ItemCoverage, AveragePopularity, GiniIndex and TailPercentage
at 10 and 20, computed by RecBole's own metric classes. Written to OUT: ``case_study.md``, ``case_study.csv``,
``case_study.json`` and ``tsne.png``.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from recbole_diffurec.metrics import ACCURACY, KS, LABELS, markdown_table, tail_items

if TYPE_CHECKING:
    from recbole.data.dataset import Dataset


def user_ranks(model, test_data, device, n_ensemble=None, topk=None):
    """(user ids [U], test item ids [U], 0-based ranks [U], x_0 [U, H] or None) over the test users;
    with ``topk``, a fifth element: each user's ``topk`` best items [U, topk]. ``n_ensemble``
    applies to diffusion models (their ``inference_settings``)."""
    diffusion = hasattr(model, "inference_settings")
    settings = model.inference_settings(n_ensemble=n_ensemble) if diffusion else contextlib.nullcontext()
    model.eval()
    uids, items, ranks, reps, tops = [], [], [], [], []
    with settings, torch.no_grad():
        for interaction, _, positive_u, positive_i in test_data:
            interaction = interaction.to(device)
            if diffusion:  # the model's own scoring, keeping x_0 for the picture
                x0 = model.sample_xstart(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
                scores = model.score(x0)
                reps.append(x0.cpu())
            else:
                scores = model.full_sort_predict(interaction).view(len(interaction), -1)
            scores[:, 0] = -math.inf
            if topk:
                tops.append(torch.topk(scores, topk, dim=1).indices.cpu())
            target_scores = scores[positive_u, positive_i]
            ranks.append((scores[positive_u] > target_scores[:, None]).sum(1).cpu())
            uids.append(interaction[model.USER_ID][positive_u].cpu())
            items.append(positive_i.cpu())
    out = (
        torch.cat(uids).numpy(),
        torch.cat(items).numpy(),
        torch.cat(ranks).numpy(),
        torch.cat(reps).numpy() if reps else None,
    )
    return out + (torch.cat(tops),) if topk else out


def metrics_from_ranks(ranks):
    """{'hit@k', 'ndcg@k'} means over users of 0-based ranks (one relevant item per user)."""
    ranks = np.asarray(ranks)
    out = {}
    for k in KS:
        hit = ranks < k
        out[f"hit@{k}"] = float(hit.mean()) if len(ranks) else math.nan
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2), 0.0).mean()) if len(ranks) else math.nan
    return out


def head_items(train_dataset: Dataset, tail_ratio: float = 0.8) -> np.ndarray:
    """Boolean mask over item ids: True for head items, i.e. every item outside RecBole's
    ``TailPercentage`` tail (with ``tail_ratio`` <= 1, that share of the training items, least
    frequent first). The padding id is neither."""
    head = np.ones(train_dataset.item_num, dtype=bool)
    head[np.asarray(tail_items(tail_ratio, train_dataset.item_counter), dtype=np.int64)] = False
    head[0] = False
    return head


BEYOND_CLASSES = ("ItemCoverage", "AveragePopularity", "GiniIndex", "TailPercentage")


def beyond_accuracy(config, train_dataset, top):
    """RecBole's beyond-accuracy metrics of the top-K lists ``top`` [U, K], by its own classes:
    {'itemcoverage@10': ..., ...} at each of ``config['topk']`` up to K."""
    from recbole.evaluator import metrics
    from recbole.evaluator.collector import DataStruct

    struct = DataStruct()
    struct.set("rec.items", top)
    struct.set("data.num_items", train_dataset.item_num)
    struct.set("data.count_items", train_dataset.item_counter)
    result = {}
    for name in BEYOND_CLASSES:
        result.update(getattr(metrics, name)(config).calculate_metric(struct))
    return {k: float(v) for k, v in result.items()}


def length_groups(history_lengths: np.ndarray, n_groups: int = 5) -> tuple[np.ndarray, list[str]]:
    """Group index 0..n-1 per user by percentile of history length, and the groups' labels."""
    edges = np.quantile(history_lengths, np.linspace(0, 1, n_groups + 1)[1:-1])
    groups = np.searchsorted(edges, history_lengths, side="right")
    labels = []
    for g in range(n_groups):
        members = history_lengths[groups == g]
        labels.append(f"G{g + 1} ({members.min()}-{members.max()})" if len(members) else f"G{g + 1} (empty)")
    return groups, labels


def tsne_png(reps, groups, labels, path, max_points=2000, seed=0):
    """t-SNE of x_0 coloured by group, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(reps), size=min(max_points, len(reps)), replace=False)
    points = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30, len(idx) - 1)).fit_transform(reps[idx])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    for g, label in enumerate(labels):
        sel = groups[idx] == g
        ax.scatter(points[sel, 0], points[sel, 1], s=4, alpha=0.7, label=label)
    ax.set_title("t-SNE of reversed target representations x_0")
    ax.legend(title="history length", markerscale=3, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def case_study(checkpoint: str, out: str, n_ensemble: int = 4, log: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Run the case study of ``checkpoint`` and write its files to ``out``; returns the rows."""
    from recbole.quick_start import load_data_and_model

    from recbole_diffurec.checkpoints import read_checkpoint

    read_checkpoint(checkpoint)  # a clear error for a file that is not one
    config, model, dataset, train_data, _, test_data = load_data_and_model(checkpoint)
    os.makedirs(out, exist_ok=True)
    user_field = config["USER_ID_FIELD"]
    if config["tail_ratio"] is None:  # a config of RecBole's own (ours fills missing keys when unpickled)
        config.final_config_dict["tail_ratio"] = 0.8
    head = head_items(train_data.dataset, config["tail_ratio"])
    topk = max(config["topk"])
    # interactions per user in the filtered dataset; the history before the test item is one fewer
    per_user = np.bincount(dataset.inter_feat[user_field].numpy(), minlength=dataset.user_num)

    variants = [("single run", None)]
    if hasattr(model, "inference_settings") and n_ensemble and n_ensemble > 1:
        variants.append((f"ensemble of {n_ensemble}", n_ensemble))
    rows, beyond, tsne_done = [], [], False
    for name, n in variants:
        log(f"case study: {name} over the test users of {config['dataset']}")
        uids, items, ranks, reps, top = user_ranks(model, test_data, config["device"], n or 1, topk=topk)
        beyond.append({"inference": name, "users": len(uids), **beyond_accuracy(config, train_data.dataset, top)})
        history = per_user[uids] - 1
        groups, labels = length_groups(history)
        segments = [("all", np.ones(len(ranks), dtype=bool)), ("head items", head[items]), ("long-tail items", ~head[items])]
        segments += [(label, groups == g) for g, label in enumerate(labels)]
        for segment, mask in segments:
            rows.append({"inference": name, "segment": segment, "users": int(mask.sum()), **metrics_from_ranks(ranks[mask])})
        if reps is not None and not tsne_done:
            tsne_png(reps, groups, labels, os.path.join(out, "tsne.png"))
            tsne_done = True
    _write(rows, beyond, out, config["model"], config["dataset"], checkpoint)
    return rows, beyond


def _write(rows, beyond, out, model, dataset, checkpoint):
    import json

    keys = ["inference", "segment", "users"] + ACCURACY
    with open(os.path.join(out, "case_study.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    main = markdown_table(
        ["inference", "segment", "users"] + [LABELS[k] for k in ACCURACY],
        [[r["inference"], r["segment"], r["users"]] + [f"{r[k]:.4f}" for k in ACCURACY] for r in rows],
    )
    measures = [k for k in beyond[0] if k not in ("inference", "users")]
    extra = markdown_table(
        ["inference", "users"] + measures, [[b["inference"], b["users"]] + [f"{b[k]:.4g}" for k in measures] for b in beyond]
    )
    with open(os.path.join(out, "case_study.md"), "w") as f:
        f.write(f"Case study of {model} on {dataset} ({checkpoint})\n\n{main}\n\n"
                f"Beyond accuracy (RecBole's metrics over every test user's top-K list)\n\n{extra}\n")
    with open(os.path.join(out, "case_study.json"), "w") as f:
        json.dump({"model": model, "dataset": dataset, "checkpoint": checkpoint, "rows": rows, "beyond_accuracy": beyond},
                  f, indent=1)

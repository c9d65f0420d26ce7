"""The two evaluation protocols (``eval_exclude_history``) and the user histories the second needs.

``recbole`` (``eval_exclude_history: False``, the default): RecBole's full ranking for sequential
models, every item a candidate, the items the user has already interacted with included.
``exclude_history``: the items of the user's history before the evaluated item are removed from
the ranking, as the published SASRec pipelines on the DiffuRec splits do (SASRec+SS, eSASRec). A
target that is itself in the history (a repeated item) then cannot be hit; ``count_repeated_targets``
says how often that happens.

The history of a validation sample is every training item of its user; a test sample's adds the
validation item. It is read from RecBole's own split samples, so it is the whole history even
where ``MAX_ITEM_LIST_LENGTH`` truncates the model's input: the train samples' targets and first
input items, and each evaluation sample's own input items.
"""
from __future__ import annotations

import numpy as np
import torch

from recbole_diffurec.metrics import PROTOCOLS


def protocol_of(exclude_history: bool) -> str:
    return PROTOCOLS[1] if exclude_history else PROTOCOLS[0]


class UserHistory:
    """The items each user has interacted with before an evaluated item, as a CSR table by user id."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int):
        width = int(items.max(initial=0)) + 1
        pairs = np.unique(users.astype(np.int64) * width + items.astype(np.int64))
        self.users, self.items = pairs // width, pairs % width
        self.indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.add.at(self.indptr, self.users + 1, 1)
        self.indptr = np.cumsum(self.indptr)

    def items_of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user]: self.indptr[user + 1]]

    def index(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, items) of every history item of the batch's users, on the CPU: ``scores[rows,
        items]`` are the history's scores of a batch whose row i is user ``users[i]``."""
        u = users.detach().cpu().numpy().astype(np.int64)
        starts, ends = self.indptr[u], self.indptr[u + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(u)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        items = self.items[np.repeat(starts, lengths) + offsets]
        return torch.from_numpy(rows), torch.from_numpy(items)


def _fields(dataset):
    feat = dataset.inter_feat
    return (
        feat[dataset.uid_field].numpy(),
        feat[dataset.iid_field].numpy(),
        feat[dataset.config["ITEM_ID_FIELD"] + dataset.config["LIST_SUFFIX"]].numpy(),
    )


def user_histories(train_dataset, valid_dataset, test_dataset) -> tuple[UserHistory, UserHistory]:
    """The histories of the validation and the test samples, from RecBole's split datasets."""
    n_users = train_dataset.user_num
    users, items = [], []
    tr_users, tr_targets, tr_lists = _fields(train_dataset)
    users += [tr_users, tr_users]
    items += [tr_targets, tr_lists[:, 0]]
    va_users, va_targets, va_lists = _fields(valid_dataset)
    users.append(np.repeat(va_users, va_lists.shape[1]))
    items.append(va_lists.reshape(-1))
    valid = _history(users, items, n_users)
    te_users, _, te_lists = _fields(test_dataset)
    users += [va_users, np.repeat(te_users, te_lists.shape[1])]
    items += [va_targets, te_lists.reshape(-1)]
    return valid, _history(users, items, n_users)


def attach_histories(train_data, valid_data, test_data) -> None:
    """Give RecBole's validation and test loaders their ``user_history`` (the trainer reads it)."""
    valid, test = user_histories(train_data._dataset, valid_data._dataset, test_data._dataset)
    valid_data.user_history, test_data.user_history = valid, test


def _history(users, items, n_users):
    users, items = np.concatenate(users), np.concatenate(items)
    real = items > 0  # 0 pads the item lists
    return UserHistory(users[real], items[real], n_users)


def count_repeated_targets(dataset, history: UserHistory) -> int:
    """How many of ``dataset``'s evaluated items are already in their user's history."""
    users, targets, _ = _fields(dataset)
    return int(sum(t in set(history.items_of(u).tolist()) for u, t in zip(users.tolist(), targets.tolist())))

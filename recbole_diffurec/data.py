"""Length-grouped training batches for sequential models that cut padding per batch.

RecBole shuffles training samples uniformly, so nearly every batch holds one long history and is
padded to it. With ``train_length_grouping: G`` (G > 0), each epoch shuffles the samples, sorts
every pool of G consecutive batches' worth of them by history length, cuts the pools into batches
and shuffles the order of the batches: each batch then holds histories of similar length, and a
model that trims each batch to its longest history (``trim_padding``) does less work on padding.
Every sample is still seen exactly once per epoch. G = 0 keeps RecBole's own loader.

``get_dataloader`` wraps RecBole's: ``install.py`` puts it into RecBole's ``data_preparation``,
which then builds this loader whenever the config asks for grouping.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader

if TYPE_CHECKING:
    from recbole.config import Config


def length_grouped_order(
    lengths: Sequence[int] | torch.Tensor, batch_size: int, pool_batches: int,
    generator: torch.Generator | None = None, shuffle: bool = True,
) -> torch.Tensor:
    """A permutation of ``range(len(lengths))`` whose consecutive runs of ``batch_size`` are the
    batches: samples shuffled, sorted by length within pools of ``pool_batches`` batches (ties keep
    the shuffled order), batches in shuffled order; the one short batch, if any, comes last."""
    lengths = torch.as_tensor(lengths)
    n = lengths.shape[0]
    perm = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, n, pool):
        chunk = perm[start : start + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches.extend(torch.split(chunk, batch_size))
    short = batches.pop() if batches and batches[-1].shape[0] < batch_size else None
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    if short is not None:
        batches.append(short)
    return torch.cat(batches) if batches else perm


class LengthGroupedTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` with batches of similar history length (see the module).

    The underlying DataLoader walks positions 0..n-1 in order, in runs of ``step``; ``collate_fn``
    maps each run through this epoch's grouped order, made anew at every ``iter()``.
    """

    def __init__(self, config, dataset, sampler, shuffle=False):
        self.group_shuffle = shuffle
        self.pool_batches = config["train_length_grouping"]
        self.lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
        self.order_generator = torch.Generator()
        self.order_generator.manual_seed(config["seed"])
        self.order = torch.arange(len(dataset))
        super().__init__(config, dataset, sampler, shuffle=False)  # positions in order; we permute
        self.shuffle = shuffle

    def __iter__(self):
        self.order = length_grouped_order(
            self.lengths, self.step, self.pool_batches, self.order_generator, self.group_shuffle
        )
        return super().__iter__()

    def collate_fn(self, index):
        return super().collate_fn(self.order[np.asarray(index)].numpy())


def get_dataloader(config: Config, phase: str, recbole_get_dataloader: Callable[[Config, str], type]) -> type:
    """RecBole's dataloader class for ``phase`` (``recbole_get_dataloader``: RecBole's own lookup),
    or the length-grouped one for training when the config sets ``train_length_grouping`` > 0."""
    cls = recbole_get_dataloader(config, phase)
    if phase == "train" and config["train_length_grouping"] and cls is TrainDataLoader:
        if not config["single_spec"]:
            raise ValueError("train_length_grouping does not support distributed training; set it to 0")
        return LengthGroupedTrainDataLoader
    return cls


# ----- checks of the atomic file before RecBole reads it -----
FIELD_TYPES = ("token", "float", "token_seq", "float_seq")


def interval_keeps(interval: str | None, count: float) -> bool:
    """Whether RecBole's interval string (e.g. '[5,inf)', or several joined by ';') keeps a count,
    by RecBole's own parsing and test (the filter this check predicts)."""
    from logging import getLogger
    from types import SimpleNamespace

    from recbole.data.dataset import Dataset

    intervals = Dataset._parse_intervals_str(SimpleNamespace(logger=getLogger()), interval)
    return intervals is None or Dataset._within_intervals(None, count, intervals)


def check_inter_file(config: Config) -> tuple[int, int, int] | None:
    """Before RecBole reads ``<data_path>/<dataset>.inter``: a header of ``name:type`` columns, the
    columns ``load_col`` loads, at least one row, rows with as many fields as the header and
    numbers in float columns; and that the user/item filters leave someone. Each problem is one
    ``UsageError`` naming the file, the line and the fix. Returns (users, items, rows) of the file."""
    import os
    from collections import Counter

    from recbole_diffurec.errors import UsageError

    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    if not os.path.isfile(path):
        return None  # Config has said where the file should be
    sep = config["field_separator"] or "\t"
    try:
        with open(path, encoding=config["encoding"] or "utf-8") as f:
            header = f.readline().rstrip("\r\n").split(sep)
            names, types = [], []
            for column in header:
                name, _, kind = column.partition(":")
                if kind not in FIELD_TYPES:
                    raise UsageError(
                        f"{path}: the first line must be a header of name:type columns ({', '.join(FIELD_TYPES)}), "
                        f"separated by {sep!r}, e.g. user_id:token{sep}item_id:token{sep}timestamp:float; got {column!r}."
                    )
                names.append(name)
                types.append(kind)
            load = config["load_col"]
            wanted = (load or {}).get("inter", []) if isinstance(load, dict) else []
            missing = [c for c in wanted if c not in names]
            if missing:
                raise UsageError(
                    f"{path} has no column {', '.join(repr(c) for c in missing)}, which load_col loads (columns: "
                    f"{', '.join(names)}). Add the column, or set load_col: {{inter: [...]}} to the columns you have."
                )
            uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
            floats = [i for i, k in enumerate(types) if k == "float" and names[i] in wanted]
            users, items, rows = Counter(), Counter(), 0
            ui = names.index(uid) if uid in names else None
            ii = names.index(iid) if iid in names else None
            for number, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split(sep)
                if len(fields) != len(names):
                    raise UsageError(
                        f"{path}, line {number}: {len(fields)} field(s) where the header has {len(names)} "
                        f"(separator {sep!r}). Fix or remove the line."
                    )
                for i in floats:
                    try:
                        float(fields[i])
                    except ValueError:
                        raise UsageError(
                            f"{path}, line {number}: column '{names[i]}' is float but holds {fields[i]!r}."
                        ) from None
                rows += 1
                if ui is not None and ii is not None:
                    users[fields[ui]] += 1
                    items[fields[ii]] += 1
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not text in {config['encoding'] or 'utf-8'} ({e.reason} at byte {e.start}).") from None
    if not rows:
        raise UsageError(f"{path} holds a header but no interactions.")
    user_interval, item_interval = config["user_inter_num_interval"], config["item_inter_num_interval"]
    kept_users = sum(1 for c in users.values() if interval_keeps(user_interval, c))
    kept_items = sum(1 for c in items.values() if interval_keeps(item_interval, c))
    if users and (not kept_users or not kept_items):
        raise UsageError(
            f"{path}: filtering leaves no interactions: user_inter_num_interval {user_interval} keeps {kept_users} of "
            f"{len(users)} users and item_inter_num_interval {item_interval} keeps {kept_items} of {len(items)} items. "
            "Loosen those settings (e.g. --user_inter_num_interval=\"[1,inf)\") or use more data."
        )
    return len(users), len(items), rows

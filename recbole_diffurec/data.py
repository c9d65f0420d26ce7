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
import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader


def length_grouped_order(lengths, batch_size, pool_batches, generator=None, shuffle=True):
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


def get_dataloader(config, phase, recbole_get_dataloader):
    """RecBole's dataloader class for ``phase`` (``recbole_get_dataloader``: RecBole's own lookup),
    or the length-grouped one for training when the config sets ``train_length_grouping`` > 0."""
    cls = recbole_get_dataloader(config, phase)
    if phase == "train" and config["train_length_grouping"] and cls is TrainDataLoader:
        if not config["single_spec"]:
            raise ValueError("train_length_grouping does not support distributed training; set it to 0")
        return LengthGroupedTrainDataLoader
    return cls

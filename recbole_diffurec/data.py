"""Training batches for sequential models: length-grouped, gathered on the device, sharded.

RecBole shuffles training samples uniformly, so nearly every batch holds one long history and is
padded to it. With ``train_length_grouping: G`` (G > 0), each epoch shuffles the samples, sorts
every pool of G consecutive batches' worth of them by history length, cuts the pools into batches
and shuffles the order of the batches: each batch then holds histories of similar length, and a
model that trims each batch to its longest history (``trim_padding``) does less work on padding.
Every sample is still seen exactly once per epoch. G = 0 keeps RecBole's order.

RecBole builds every batch on the CPU (slicing its Interaction, collating, then a copy to the
device), which sets the pace of a GPU. With ``train_loader: device`` the training samples' tensors
are moved to the model's device once and each batch is gathered there by an index tensor.

In a distributed run (``--nproc``) every process makes the same order and takes its share of
each batch (``shard``): disjoint shares, the same number of batches in every process, each sample
once per epoch.

With ``train_mode: sequence`` the batches are over windows, each a training sample read at every
position with its per-position targets (``sequence.py``): grouped, shuffled and sharded alike.

``get_dataloader`` wraps RecBole's: ``compat.py`` puts it into RecBole's ``data_preparation``,
which then builds this loader whenever the config asks for grouping or the device loader.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction

from recbole_diffurec.sequence import sequence_windows, target_field

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


class SequentialTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` that makes each epoch's batches itself (see the module).

    The batches of an epoch are index tensors over the training samples, in one of two orders:
    length-grouped (``train_length_grouping`` > 0, its own generator), or RecBole's (its loader's
    sampler, drawn from RecBole's generator, so the batches are RecBole's own). In a distributed
    run every process makes the same order and takes its share of each batch (``shard``). A batch
    is then gathered by RecBole's ``collate_fn`` (``train_loader: recbole``), or, with
    ``train_loader: device``, by indexing the training samples' tensors, moved once to the model's
    device: no per-batch collation in Python and no per-batch copy to the device. The device loader
    carries what a sequential model reads of a sample (user, target item, item sequence and its
    length), not the other columns RecBole's batches hold (timestamps).
    """

    def __init__(self, config, dataset, sampler, shuffle=False):
        self.pool_batches = config["train_length_grouping"]
        self.lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]]
        # sequence training: the batches are over windows (sequence.py), each a prefix sample
        # (row) read at every position, with its per-position targets
        self.rows = self.window_targets = None
        if config["train_mode"] == "sequence":
            self.rows, self.window_targets = sequence_windows(dataset, config)
            self.lengths = self.lengths[self.rows]
            self.target_field = target_field(config)
        self.order_generator = torch.Generator()
        self.order_generator.manual_seed(config["seed"])
        self.world_size = 1 if config["single_spec"] else config["world_size"]
        self.rank = 0 if config["single_spec"] else config["local_rank"] + config["offset"]
        self.batch_step = None
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        self.fields = None
        if config["train_loader"] == "device":  # what a sequential model reads of a training sample
            names = (config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"],
                     config["ITEM_LIST_LENGTH_FIELD"])
            self.fields = {k: dataset.inter_feat[k] for k in names}
            if self.rows is not None:
                self.fields = {k: v[self.rows] for k, v in self.fields.items()}
                self.fields[self.target_field] = self.window_targets
            self.fields = {k: v.to(config["device"]) for k, v in self.fields.items()}

    def _init_batch_size_and_step(self):
        super()._init_batch_size_and_step()
        self.batch_step = self.step  # samples per batch over all processes (RecBole divides step)

    def epoch_batches(self) -> list[torch.Tensor]:
        """This epoch's batches of this process: index tensors over the training samples."""
        if self.pool_batches:
            order = length_grouped_order(
                self.lengths, self.batch_step, self.pool_batches, self.order_generator, self.shuffle
            )
            batches = list(order.split(self.batch_step))
        elif self.rows is not None:  # windows, shuffled by RecBole's generator
            order = torch.randperm(len(self.rows), generator=self.generator) if self.shuffle else torch.arange(len(self.rows))
            batches = list(order.split(self.batch_step))
        else:
            batches = self._recbole_batches()
        return shard(batches, self.rank, self.world_size)

    def targets_per_epoch(self) -> int:
        """Training targets of an epoch: the samples in prefix mode, the positions with a loss in
        sequence mode."""
        return len(self.lengths) if self.window_targets is None else int((self.window_targets > 0).sum())

    def targets_per_batch(self) -> float:
        """The epoch's mean training targets in one process's share of a batch (``sequence_loss_mean:
        epoch`` divides each batch's summed loss by it): over the processes, a batch's gradient is
        then its targets' summed gradient over the epoch's mean targets per batch."""
        return self.targets_per_epoch() / len(self) / self.world_size

    def _recbole_batches(self):
        """The batches RecBole's loader gives in one process this epoch, drawn as it draws them;
        in a distributed run every process draws the same, so the processes share the batches of
        a single-process run (RecBole's own distributed sampler has an order of its own)."""
        # what torch's DataLoader draws per epoch from RecBole's generator (the iterator's base
        # seed), then its RandomSampler (the permutation, and one more when it runs out); without
        # shuffling, RecBole's SequentialSampler. tests/test_scale.py holds this to RecBole's loader.
        n = len(self.lengths)
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        if not self.shuffle:
            return list(torch.arange(n).split(self.batch_step))
        order = torch.randperm(n, generator=self.generator)
        torch.randperm(n, generator=self.generator)
        return list(order.split(self.batch_step))

    def __iter__(self):
        batches = self.epoch_batches()
        if self.fields is None:
            for index in batches:
                if self.rows is None:
                    yield super().collate_fn(index.numpy())
                    continue
                interaction = super().collate_fn(self.rows[index].numpy())
                interaction.update(Interaction({self.target_field: self.window_targets[index]}))
                yield interaction
            return
        device = next(iter(self.fields.values())).device
        order = torch.cat(batches).to(device)  # one copy per epoch
        for index in order.split([len(b) for b in batches]):
            yield Interaction({k: torch.index_select(v, 0, index) for k, v in self.fields.items()})

    def __len__(self):
        return n_shard_batches(len(self.lengths), self.batch_step, self.world_size)


def shard(batches: list[torch.Tensor], rank: int, world_size: int) -> list[torch.Tensor]:
    """Process ``rank``'s share of every batch: elements rank, rank + world_size, ... A last batch
    smaller than ``world_size`` joins the one before, so that every process gets the same number
    of non-empty batches and every sample is used once per epoch over all processes."""
    if world_size == 1:
        return batches
    if len(batches) > 1 and len(batches[-1]) < world_size:
        batches = batches[:-2] + [torch.cat(batches[-2:])]
    if not batches or len(batches[-1]) < world_size:
        raise ValueError(f"fewer training samples than the {world_size} processes of the run")
    return [b[rank::world_size] for b in batches]


def n_shard_batches(n: int, batch_size: int, world_size: int) -> int:
    """How many batches ``shard`` gives each process for ``n`` samples in batches of ``batch_size``."""
    batches = -(-n // batch_size)
    if world_size > 1 and batches > 1 and 0 < n % batch_size < world_size:
        batches -= 1
    return batches


def get_dataloader(config: Config, phase: str, recbole_get_dataloader: Callable[[Config, str], type]) -> type:
    """RecBole's dataloader class for ``phase`` (``recbole_get_dataloader``: RecBole's own lookup),
    or ours for training when the config asks for length-grouped batches or batches gathered on
    the device (in one process or several)."""
    cls = recbole_get_dataloader(config, phase)
    if phase != "train" or cls is not TrainDataLoader:
        return cls
    if config["train_loader"] == "device":
        from recbole_diffurec.errors import UsageError

        if config["transform"] or config["train_neg_sample_args"]["distribution"] != "none":
            raise UsageError(
                "train_loader: device gathers the stored training samples as they are; it does not "
                "support transform or negative sampling (train_neg_sample_args). Use train_loader: recbole."
            )
    if config["train_length_grouping"] or config["train_loader"] == "device" or config["train_mode"] == "sequence":
        return SequentialTrainDataLoader
    return cls

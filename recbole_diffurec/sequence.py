"""Sequence training (``train_mode: sequence``): each user's training history is read once per
epoch and every position predicts its next item, instead of RecBole's one sample per prefix.

Windows. The training part of a user's history (the items before the validation item) is
x_0 .. x_m; RecBole's prefix samples have targets x_1 .. x_m, the one of target x_e holding the
last ``MAX_ITEM_LIST_LENGTH`` (L) items before it. A window is one such sample read at every
position: position p of the sample of target x_e predicts the item after it. Windows are taken
from the end of the history: the sample of x_m, then that of x_{m-S}, x_{m-2S}, ... with stride S
(``train_window_stride``, 0 = L), until one starts at x_0. Each target enters the loss once: a
window's loss covers its last S positions (all of them for the window that starts at x_0), so with
S < L each target has at least L - S items of context, at (L / S) times the windows. A window's
targets are ``target_field`` [L] (0 where a position has no loss, or is padding).

For a causal model the loss at position p of a window that starts at x_0 is exactly the loss of
the prefix sample that ends there (tests/test_sequence.py): the cost of an epoch falls by the number
of prefixes a history holds.

Models: DiffuRec and the models built on it (their own ``sequence_loss``), RecBole's SASRec and
GRU4Rec (``recbole_sequence_loss``: RecBole's classes and layers, read at every position). Any
other model refuses ``train_mode: sequence`` (``check_train_mode``).

Parts of a batch (``train_batch_parts``, ``length_parts``, ``batch_loss``) serve both modes: a
batch of windows, or of prefix samples (``recbole_prefix_loss`` for SASRec and GRU4Rec), runs in
parts of similar history length, each cut to its longest, with the loss and gradient of the whole.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor


if TYPE_CHECKING:
    from recbole.config import Config
    from recbole.data.dataset import Dataset
    from recbole.data.interaction import Interaction

RECBOLE_SEQUENCE_MODELS = ("SASRec", "GRU4Rec")


def target_field(config: Config) -> str:
    """The name of a window's per-position targets in a training batch."""
    return "target_" + config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]


def supports_sequence(model_class: type) -> bool:
    names = {cls.__name__ for cls in model_class.__mro__}
    return "DiffuRec" in names or model_class.__name__ in RECBOLE_SEQUENCE_MODELS


def check_train_mode(model_class: type, config: dict) -> str | None:
    """The problem with ``train_mode``/``train_window_stride`` for this model, or None."""
    if config.get("train_mode") != "sequence":
        return None
    if not supports_sequence(model_class):
        return (
            f"train_mode: sequence trains causal models on every position of a history; {model_class.__name__} "
            "is not one of DiffuRec, DiffuRecSysV1, DiffuRecSys, SASRec, GRU4Rec: set train_mode: prefix."
        )
    if model_class.__name__ in RECBOLE_SEQUENCE_MODELS and config.get("loss_type") != "CE":
        return f"train_mode: sequence trains {model_class.__name__} with the cross-entropy over all items: set loss_type: CE."
    if config.get("condition_token"):
        return "condition_token adds one position per history, which sequence training has no place for: set condition_token: False or train_mode: prefix."
    stride, max_len = config.get("train_window_stride"), config.get("MAX_ITEM_LIST_LENGTH")
    if isinstance(stride, int) and isinstance(max_len, int) and stride > max_len:
        return f"train_window_stride ({stride}) must be at most MAX_ITEM_LIST_LENGTH ({max_len}); 0 = no overlap."
    return None


def sequence_windows(dataset: Dataset, config: Config) -> tuple[Tensor, Tensor]:
    """(rows, targets): the prefix samples of ``dataset`` (RecBole's training samples) that are
    windows, and each window's targets [n, L] (0: no loss at that position)."""
    feat = dataset.inter_feat
    uid = feat[config["USER_ID_FIELD"]].numpy()
    lengths = feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    item_seq = feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]]
    max_len = item_seq.shape[1]
    stride = config["train_window_stride"] or max_len
    order = np.argsort(uid, kind="stable")  # a user's samples stay in time order
    starts = np.flatnonzero(np.r_[True, uid[order][1:] != uid[order][:-1]])
    rows, loss_from = [], []
    for group in np.split(order, starts[1:]):
        e = len(group)  # the sample of target x_e is group[e - 1]
        while e >= 1:
            row = group[e - 1]
            if lengths[row] == e:  # starts at x_0: every position is in the loss
                rows.append(row)
                loss_from.append(0)
                break
            rows.append(row)
            loss_from.append(int(lengths[row]) - stride)
            e -= stride
    rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    seq = item_seq[rows]  # [n, L]
    n_len = torch.as_tensor(lengths)[rows]
    targets = torch.zeros_like(seq)
    targets[:, :-1] = seq[:, 1:]
    targets[torch.arange(len(rows)), n_len - 1] = feat[config["ITEM_ID_FIELD"]][rows]
    targets[torch.arange(max_len)[None, :] < torch.as_tensor(loss_from)[:, None]] = 0
    return rows, targets


def position_cross_entropy(output: Tensor, targets: Tensor, item_table: Tensor) -> Tensor:
    """Cross-entropy at every position [B, L]: ``output`` [B, L, H] scored against every item id
    (``item_table`` [N+1, H]) where ``targets`` [B, L] has a target, 0 elsewhere. Only the
    positions with a target are scored: scoring every item is most of the cost."""
    mask = targets > 0
    losses = torch.zeros(targets.shape, dtype=output.dtype, device=output.device)  # [B, L]
    logits = output[mask] @ item_table.T  # [targets, N+1]
    losses[mask] = torch.nn.functional.cross_entropy(logits, targets[mask], reduction="none")
    return losses


def length_parts(lengths: Tensor, parts: int) -> list[Tensor | slice]:
    """The rows of a batch (of windows, or of prefix samples) in at most ``parts`` parts
    (``train_batch_parts``): sorted by length and cut into parts of near-equal size, so that each
    part can be run cut to its own longest history. A shuffled batch mixes every length and would
    be padded to its longest; run in parts it stays the same batch (the same targets in one loss
    and one update) with less padding. One part: the whole batch, as it is."""
    if parts <= 1 or len(lengths) <= 1:
        return [slice(None)]
    order = torch.argsort(lengths, stable=True)
    return list(order.tensor_split(min(parts, len(lengths))))  # no part is empty


def batch_loss(
    lengths: Tensor, targets: Tensor, parts: int, per_batch: float | None,
    part_losses: Callable[[Tensor | slice], Tensor],
) -> Tensor:
    """The loss of a batch of windows (``lengths`` [B], ``targets`` [B, L]; or of prefix samples,
    ``targets`` [B]), run in ``parts`` parts
    (``length_parts``; ``part_losses(rows)``: the per-position losses of those rows): the losses
    summed over the batch and divided by its targets, or with ``per_batch`` (``sequence_loss_mean:
    epoch``) by the epoch's mean targets per batch, so that every target weighs the same in an
    epoch however the windows are batched (batches grouped by length hold a few targets each, or
    many)."""
    total = sum(part_losses(rows).sum() for rows in length_parts(lengths, parts))
    if per_batch is not None:
        return total / per_batch
    return total / (targets > 0).sum().clamp(min=1)


def _sasrec_outputs(model, item_seq: Tensor) -> Tensor:
    """RecBole's SASRec.forward at every position (its own layers, its causal mask): [B, L, H]."""
    position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
    input_emb = model.item_embedding(item_seq) + model.position_embedding(position_ids).unsqueeze(0)
    input_emb = model.dropout(model.LayerNorm(input_emb))
    mask = model.get_attention_mask(item_seq)
    return model.trm_encoder(input_emb, mask, output_all_encoded_layers=True)[-1]


def _gru4rec_outputs(model, item_seq: Tensor) -> Tensor:
    """RecBole's GRU4Rec.forward at every position: [B, L, H]."""
    gru_output, _ = model.gru_layers(model.emb_dropout(model.item_embedding(item_seq)))
    return model.dense(gru_output)


_OUTPUTS = {"SASRec": _sasrec_outputs, "GRU4Rec": _gru4rec_outputs}


def recbole_sequence_outputs(model, item_seq: Tensor) -> Tensor:
    """RecBole's SASRec or GRU4Rec output at every position of ``item_seq`` [B, L]: [B, L, H]."""
    return _OUTPUTS[type(model).__name__](model, item_seq)


def recbole_sequence_loss(model, config: Config) -> Callable[[Interaction], Tensor]:
    """The loss of RecBole's SASRec or GRU4Rec trained on every position of a window (their
    cross-entropy over all items, the only loss sequence training offers them)."""
    field, parts = target_field(config), config["train_batch_parts"]

    def loss(interaction: Interaction) -> Tensor:
        item_seq, lengths, targets = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN], interaction[field]

        def part_losses(rows):
            # causal, positions counted from the first item: cutting trailing padding changes nothing
            width = int(lengths[rows].max())
            outputs = recbole_sequence_outputs(model, item_seq[rows, :width])
            return position_cross_entropy(outputs, targets[rows, :width], model.item_embedding.weight)

        return batch_loss(lengths, targets, parts, getattr(model, "sequence_targets_per_batch", None), part_losses)

    return loss


def recbole_prefix_loss(model, config: Config) -> Callable[[Interaction], Tensor] | None:
    """RecBole's own prefix-sample loss of SASRec or GRU4Rec with ``loss_type: CE`` (each sample's
    output at its last item scored against every item id, the mean cross-entropy over the batch),
    run in ``train_batch_parts`` parts, each cut to its longest history: the same loss and gradient
    with less padding. None where RecBole's ``calculate_loss`` runs as it is: one part, or
    ``loss_type: BPR`` (its sampled negatives)."""
    parts = config["train_batch_parts"]
    if parts <= 1 or config["loss_type"] != "CE":
        return None

    def loss(interaction: Interaction) -> Tensor:
        item_seq, lengths, targets = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN], interaction[model.POS_ITEM_ID]

        def part_losses(rows):
            # causal, positions counted from the first item: cutting trailing padding changes nothing
            part_lengths = lengths[rows]
            outputs = recbole_sequence_outputs(model, item_seq[rows, :int(part_lengths.max())])
            last = outputs[torch.arange(len(part_lengths), device=outputs.device), part_lengths - 1]
            logits = last @ model.item_embedding.weight.T
            return torch.nn.functional.cross_entropy(logits, targets[rows], reduction="none")

        return batch_loss(lengths, targets, parts, None, part_losses)

    return loss

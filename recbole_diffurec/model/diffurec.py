"""DiffuRec (Li, Sun, Li, ACM TOIS 2023) as a RecBole sequential recommender.

Shapes: B batch, L history length (trimmed to the batch's longest), H hidden, N items (+1 for
the padding id 0), T diffusion steps.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import Tensor, nn
from torch.nn import functional as F

from recbole_diffurec.diffusion import GaussianDiffusion, get_named_beta_schedule, offset_noise
from recbole_diffurec.layers import DiffuRecApproximator
from recbole_diffurec.model.config_reader import read_config
from recbole_diffurec.errors import UsageError
from recbole_diffurec.sequence import batch_loss, position_cross_entropy, target_field

if TYPE_CHECKING:
    from recbole.data.interaction import Interaction


class DiffuRec(SequentialRecommender):
    r"""DiffuRec diffuses the target item's embedding with Gaussian noise and trains a transformer
    approximator, conditioned on the user's history, to reconstruct it (x_0 prediction). At inference
    a reverse process from N(0, I) yields x_0, which is ranked against all item embeddings by inner
    product.

    Reference:
        Z. Li, A. Sun, C. Li. "DiffuRec: A Diffusion Model for Sequential Recommendation." ACM TOIS 42, 2023.

    NOTE:
        Deviations from the reference code (github WHUIR/DiffuRec), each explained in docs/MODEL.md:

        1. Attention masks padded keys, not padded query rows (§9.1).
        2. RecBole's right padding: the output is read at ``item_seq_len - 1``, batches are cut to
           their longest history and the last block computes only that output, all exact (§4, §9.2).
        3. Uniform timestep sampling without the reference's never-fed "lossaware" sampler (§9.3).
        4. RecBole's evaluation instead of per-batch means and a per-metric maximum over epochs (§9.4).
        5. Schedule coefficients in float64 torch, kept as buffers outside the state dict (§9.5).
        6. Defaults that differ from the papers (``item_init_std``, ``pathway_weight_decay``,
           ``emb_dropout``, early stopping, ``sampling_steps``, ``train_length_grouping``);
           ``properties/paper.yaml`` restores the papers' settings (§8).
        7. Options beyond the papers, off by default: ``offset_noise_strength``,
           ``use_position_embedding``, ``n_ensemble``, ``condition_norm``, ``condition_token``,
           ``target_scale``, ``autocast_bf16`` (§2, §3, §4, §6, §11).
    """

    input_type = InputType.POINTWISE
    CONFIG_KEYS = (
        "hidden_size",
        "n_layers",
        "n_heads",
        "dropout_prob",
        "emb_dropout",
        "lambda_uncertainty",
        "diffusion_steps",
        "noise_schedule",
        "rescale_timesteps",
        "offset_noise_strength",
        "use_position_embedding",
        "trim_padding",
        "n_ensemble",
        "sampling_steps",
        "inference_batch_size",
        "autocast_bf16",
        "item_init_std",
        "pathway_weight_decay",
        "condition_norm",
        "condition_token",
        "target_scale",
        "train_mode",
        "sequence_timesteps",
        "train_batch_parts",
    )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        # parameters
        p = read_config(config, self.CONFIG_KEYS, type(self).__name__)
        self.settings = p  # every key of CONFIG_KEYS, for subclasses' layers
        self.hidden_size = p["hidden_size"]
        self.n_layers = p["n_layers"]
        self.n_heads = p["n_heads"]
        self.dropout_prob = p["dropout_prob"]
        self.lambda_uncertainty = p["lambda_uncertainty"]
        self.offset_noise_strength = p["offset_noise_strength"]
        self.trim_padding = p["trim_padding"]
        self.n_ensemble = p["n_ensemble"]
        self.inference_batch_size = p["inference_batch_size"]
        self.autocast_bf16 = p["autocast_bf16"]
        self.target_scale = p["target_scale"]  # (its range, like every key's, is checked by Config)
        self.sequence_training = p["train_mode"] == "sequence"
        # sequence_loss_mean: epoch: the epoch's mean targets per batch, set by the trainer
        self.sequence_targets_per_batch = None
        self.timestep_per_position = p["sequence_timesteps"] == "position"
        # parts save padding only where each part is cut to its own longest history
        self.train_batch_parts = p["train_batch_parts"] if self.trim_padding else 1
        self.TARGET_SEQ = target_field(config)

        # layers
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size)
        self.position_embedding = (
            nn.Embedding(self.max_seq_length, self.hidden_size) if p["use_position_embedding"] else None
        )
        for table in (self.item_embedding, self.position_embedding):
            if table is not None:  # std 1 is PyTorch's default, the reference's
                nn.init.normal_(table.weight, mean=0.0, std=p["item_init_std"])
        self.emb_dropout = nn.Dropout(p["emb_dropout"])
        self.emb_norm = nn.LayerNorm(self.hidden_size, eps=1e-12)
        self.diffusion = GaussianDiffusion(
            get_named_beta_schedule(p["noise_schedule"], p["diffusion_steps"]), p["rescale_timesteps"]
        )
        # inference may run on K < T evenly spaced steps of the same process (0 = all T steps)
        self.sampling_diffusion = self.sampling_process(p["sampling_steps"])
        self.approximator = self.build_approximator()

    def build_approximator(self):
        return DiffuRecApproximator(
            self.hidden_size, self.n_layers, self.n_heads, self.dropout_prob, self.lambda_uncertainty,
            condition_norm=self.settings["condition_norm"], condition_token=self.settings["condition_token"],
        )

    def parameter_groups(self, weight_decay):
        """Optimizer parameter groups: with ``pathway_weight_decay`` False, the approximator's
        x_t/t pathway (timestep MLP, cross-attention queries) gets no weight decay. Its gradient
        is scaled by lambda (~1e-3), so an L2 term in Adam's gradient would dominate it and drive
        those weights to zero (the trainer's optimizer uses these groups)."""
        if self.settings["pathway_weight_decay"] or not weight_decay:
            return [{"params": list(self.parameters())}]
        exempt = {id(p) for p in self.approximator.pathway_parameters()}
        return [
            {"params": [p for p in self.parameters() if id(p) not in exempt]},
            {"params": [p for p in self.parameters() if id(p) in exempt], "weight_decay": 0.0},
        ]

    # ----- inference settings -----
    def sampling_process(self, steps: int) -> GaussianDiffusion:
        """The reverse process of ``steps`` evenly spaced steps of the trained T: the one rule for
        K everywhere (config, case study, benchmarks): 0 or any K >= T runs all T steps."""
        T = self.diffusion.num_timesteps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise UsageError(f"sampling_steps must be an integer >= 0 (0 = all {T} steps); got {steps!r}.")
        return self.diffusion if steps == 0 or steps >= T else self.diffusion.respace(steps)

    @contextlib.contextmanager
    def inference_settings(self, sampling_steps: int | None = None, n_ensemble: int | None = None) -> Iterator[DiffuRec]:
        """Run inference with other ``sampling_steps`` (K; 0 = T) and/or ``n_ensemble`` inside the
        ``with`` block; the model's own settings come back after it, also on error."""
        saved = self.sampling_diffusion, self.n_ensemble
        if n_ensemble is not None and not (isinstance(n_ensemble, int) and n_ensemble >= 1):
            raise UsageError(f"n_ensemble must be an integer >= 1; got {n_ensemble!r}.")
        try:
            if sampling_steps is not None:
                self.sampling_diffusion = self.sampling_process(sampling_steps)
            if n_ensemble is not None:
                self.n_ensemble = n_ensemble
            yield self
        finally:
            self.sampling_diffusion, self.n_ensemble = saved

    # ----- history -----
    def encode_history(self, item_seq: Tensor, item_seq_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Embedded history, key mask and last index: ([B, L, H], bool [B, L], [B])."""
        if self.trim_padding:
            item_seq = item_seq[:, : int(item_seq_len.max())]
        seq_emb = self.item_embedding(item_seq)  # [B, L, H]
        if self.position_embedding is not None:
            positions = torch.arange(item_seq.shape[1], device=item_seq.device)
            seq_emb = seq_emb + self.position_embedding(positions)
        seq_emb = self.emb_norm(self.emb_dropout(seq_emb))
        return seq_emb, item_seq > 0, item_seq_len - 1

    def forward(self, item_seq: Tensor, item_seq_len: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """pred_xstart [B, H] from x_t [B, H] at steps t [B] (unscaled), given the history."""
        seq_emb, key_mask, last = self.encode_history(item_seq, item_seq_len)
        with self.autocast(seq_emb.device):
            pred_xstart = self.approximator(seq_emb, key_mask, x_t, self.diffusion.scale_timesteps(t), last)
        return pred_xstart.float()

    def autocast(self, device):
        """bfloat16 autocast of the approximator when ``autocast_bf16`` is set (a no-op otherwise)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16)

    # ----- training -----
    def calculate_loss(self, interaction: Interaction) -> Tensor:
        if self.sequence_training:
            return self.sequence_loss(interaction)
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        # the diffusion runs on target_scale * x_0 (it sets q_sample's signal-to-noise ratio);
        # the approximator predicts x_0 itself, which is what is scored
        x_start = self.item_embedding(pos_items) * self.target_scale  # [B, H]
        t = self.diffusion.sample_timesteps(x_start.shape[0], x_start.device)
        noise = offset_noise(x_start.shape, self.offset_noise_strength, device=x_start.device)
        x_t = self.diffusion.q_sample(x_start, t, noise)  # [B, H]
        # the batch in train_batch_parts parts of similar history length, each cut to its longest
        # (forward trims): the mean cross-entropy of the whole batch, with less padding
        return batch_loss(
            item_seq_len, pos_items, self.train_batch_parts, None,
            lambda rows: F.cross_entropy(
                self.forward(item_seq[rows], item_seq_len[rows], x_t[rows], t[rows]) @ self.item_embedding.weight.T,
                pos_items[rows], reduction="none",
            ),
        )

    def sequence_losses(
        self, item_seq: Tensor, item_seq_len: Tensor, targets: Tensor, t: Tensor | None = None,
        noise: Tensor | None = None, lam: Tensor | None = None,
    ) -> Tensor:
        """Cross-entropy of every position of windows [B, L] (sequence training, docs/MODEL.md
        §12): position j's target x_0 = e(targets[:, j]) is noised at the window's step t [B]
        (``sequence_timesteps: position``: its own step, t [B, L]), each position with its own
        noise, and the causal approximator predicts it from positions <= j. Returns [B, L], 0 where
        ``targets`` is 0. ``t``, ``noise`` [B, L, H] and ``lam`` (lambda's draw) may be given, as
        the exactness tests do."""
        seq_emb, key_mask, _ = self.encode_history(item_seq, item_seq_len)
        L = seq_emb.shape[1]
        targets = targets[:, :L]
        x_start = self.item_embedding(targets) * self.target_scale  # [B, L, H]
        if t is None and self.timestep_per_position:
            t = self.diffusion.sample_timesteps(x_start.shape[0] * L, x_start.device).view(-1, L)
        elif t is None:
            t = self.diffusion.sample_timesteps(x_start.shape[0], x_start.device)
        t = t[:, :L] if t.dim() == 2 else t
        if noise is None:  # offset noise: one shift per position (each is its own target)
            noise = self.position_offset_noise(x_start)
        x_t = self.diffusion.q_sample(x_start, t, noise[:, :L])  # [B, L, H]
        with self.autocast(seq_emb.device):
            pred_xstart = self.approximator(
                seq_emb, key_mask, x_t, self.diffusion.scale_timesteps(t), None, causal=True,
                lam=None if lam is None else lam[:, :L],
            ).float()  # [B, L, H]
        return position_cross_entropy(pred_xstart, targets, self.item_embedding.weight)

    def position_offset_noise(self, x_start: Tensor) -> Tensor:
        """Offset noise (Eq. 17) with one shift per position: [B, L, H]."""
        B, L, H = x_start.shape
        return offset_noise((B * L, H), self.offset_noise_strength, device=x_start.device).view(B, L, H)

    def sequence_loss(self, interaction: Interaction) -> Tensor:
        """The cross-entropy of every position with a target, summed over the batch and divided by
        its targets, or by the epoch's mean targets per batch (``sequence_loss_mean: epoch``). The
        batch runs in ``train_batch_parts`` parts of windows of similar length, each cut to its own
        longest window (``length_parts``)."""
        item_seq, lengths, targets = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.TARGET_SEQ]
        return batch_loss(
            lengths, targets, self.train_batch_parts, self.sequence_targets_per_batch,
            lambda rows: self.sequence_losses(item_seq[rows], lengths[rows], targets[rows]),
        )

    # ----- inference -----
    def sample_members(
        self, item_seq: Tensor, item_seq_len: Tensor, n_ensemble: int = 1,
        generator: torch.Generator | None = None, zero_xt: bool = False,
    ) -> Tensor:
        """x_0 [n, B, H] of ``n_ensemble`` independent reverse processes from x_T ~ N(0, I),
        batched as one pass over n * B rows; the history is embedded once. ``zero_xt`` (a
        diagnostic, ``benchmarks/pathway.py``) feeds the approximator zeros instead of x_t."""
        seq_emb, key_mask, last = self.encode_history(item_seq, item_seq_len)
        B = seq_emb.shape[0]
        if n_ensemble > 1:
            seq_emb, key_mask, last = seq_emb.repeat(n_ensemble, 1, 1), key_mask.repeat(n_ensemble, 1), last.repeat(n_ensemble)

        known = None
        if self.sequence_training:  # each earlier position's target is its next item, known here
            item_seq = item_seq[:, : seq_emb.shape[1]]
            known = torch.zeros_like(item_seq)
            known[:, :-1] = item_seq[:, 1:]
            known = self.item_embedding(known) * self.target_scale  # [B, L, H]
            if n_ensemble > 1:
                known = known.repeat(n_ensemble, 1, 1)
            rows = torch.arange(seq_emb.shape[0], device=seq_emb.device)

        def denoise(x_t, t_scaled):
            x_in = torch.zeros_like(x_t) if zero_xt else x_t
            if known is not None:
                # as in training: every position holds its own target noised at the same step,
                # the last one the reverse process's x_t (docs/MODEL.md §12)
                t = self.diffusion.unscale_timesteps(t_scaled)
                noise = torch.randn(known.shape, device=known.device, generator=generator)
                x_seq = self.diffusion.q_sample(known, t, noise)
                x_seq[rows, last] = x_in
                x_in = x_seq
            pred = self.approximator(
                seq_emb, key_mask, x_in, t_scaled, last, generator=generator, causal=known is not None
            ).float()
            return pred * self.target_scale if self.target_scale != 1 else pred

        x_T = torch.randn(n_ensemble * B, self.hidden_size, device=seq_emb.device, generator=generator)
        with self.autocast(seq_emb.device):
            x_start = self.sampling_diffusion.p_sample_loop(denoise, x_T, generator=generator)
        if self.target_scale != 1:
            x_start = x_start / self.target_scale
        return x_start.view(n_ensemble, B, self.hidden_size)

    def sample_xstart(self, item_seq: Tensor, item_seq_len: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_0 [B, H]: the mean over ``n_ensemble`` reverse runs. Scores are linear in x_0, so
        ranking by the mean x_0 is ranking by the mean score (DiffuRecSys Algorithm 3).

        Runs under ``torch.inference_mode``. Users are sorted by history length and processed in
        chunks of ``inference_batch_size``, each cut to its own longest history: short histories
        are not padded to the longest one of a large evaluation batch."""
        with torch.inference_mode():
            size = self.inference_batch_size or item_seq.shape[0]
            if item_seq.shape[0] <= size:
                x_start = self.sample_members(item_seq, item_seq_len, self.n_ensemble, generator).mean(0)
            else:
                x_start = torch.empty(item_seq.shape[0], self.hidden_size, device=item_seq.device)
                for idx in torch.argsort(item_seq_len).split(size):
                    x_start[idx] = self.sample_members(item_seq[idx], item_seq_len[idx], self.n_ensemble, generator).mean(0)
        return x_start.clone()  # a normal tensor again: callers may write into what they derive from it

    def score(self, x_start: Tensor) -> Tensor:
        """Scores of every item id for representations x_0 [B, H]: inner products [B, N+1]."""
        return x_start @ self.item_embedding.weight.T

    def full_sort_predict(self, interaction: Interaction) -> Tensor:
        return self.score(self.sample_xstart(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]))

    def predict(self, interaction: Interaction) -> Tensor:
        x_start = self.sample_xstart(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (x_start * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)  # [B]

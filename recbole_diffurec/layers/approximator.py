"""The approximator f(x_t, t, history) -> pred_xstart of DiffuRec (Eq. 15).

Shapes: B batch, L history length, H hidden. Inputs: ``seq_emb`` [B, L, H] (already embedded,
dropped out and normalised), ``key_mask`` bool [B, L] (True at real items), ``x_t`` [B, H],
``t`` [B] (the scaled step the diffusion passes), ``last`` LongTensor [B] (index of the last real
item: RecBole pads on the right, so it is item_seq_len - 1).

Sequence training (docs/MODEL.md §12): ``x_t`` is [B, L, H], one noised target per position (the
next item of each), ``causal`` hides later positions from each position, and with ``last`` None
the output is every position's prediction [B, L, H].
"""
import torch
from torch import nn

from recbole_diffurec.layers.transformer import (
    MultiHeadAttention,
    PreNormResidual,
    TimestepEmbedder,
    TransformerBlock,
)


CONDITION_NORMS = ("none", "layernorm", "linear")


class DiffuRecApproximator(nn.Module):
    """h_0 = seq_emb + lambda * (x_t + d_t) at every position -> blocks -> Dropout -> LayerNorm,
    read at the last real item.

    lambda is drawn elementwise from N(mu, mu) ([B, L, H]) at every call, including every reverse
    step at inference (the reference's "uncertainty").

    Variants of how x_t + d_t reaches the history (issue "what the diffusion contributes"):
    ``condition_norm`` "layernorm" or "linear" maps x_t + d_t through a LayerNorm or a linear layer
    before lambda scales it, so its scale is learned rather than that of x_t and d_t ("none", the
    papers'); ``condition_token`` appends lambda * (x_t + d_t) to the history as one more attended
    position instead of adding it to every position (lambda one draw [B, 1, H]).
    """

    def __init__(self, hidden_size, n_layers, n_heads, dropout, lambda_uncertainty, condition_norm="none",
                 condition_token=False):
        super().__init__()
        if condition_norm not in CONDITION_NORMS:
            raise ValueError(f"condition_norm must be one of {', '.join(CONDITION_NORMS)}, not '{condition_norm}'")
        self.lambda_uncertainty = lambda_uncertainty
        self.condition_token = condition_token
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.condition_map = {
            "none": nn.Identity,
            "layernorm": lambda: nn.LayerNorm(hidden_size, eps=1e-12),
            "linear": lambda: nn.Linear(hidden_size, hidden_size),
        }[condition_norm]()
        self.blocks = nn.ModuleList([self.build_block(hidden_size, n_heads, dropout) for _ in range(n_layers)])
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=1e-12)

    def build_block(self, hidden_size, n_heads, dropout):
        return TransformerBlock(hidden_size, n_heads, dropout)

    def sample_lambda(self, shape, device, generator=None):
        mu = self.lambda_uncertainty
        return mu + mu * torch.randn(shape, device=device, generator=generator)

    def encode(self, seq_emb, key_mask, cond, last, generator=None, causal=False, lam=None):
        """The blocks over the history conditioned on ``cond`` = x_t + d_t, [B, 1, H] or one per
        position [B, L, H] (Eq. 15); with ``last``, the last block computes only the output there:
        [B, 1, H], else every position's [B, L, H]. ``lam``: lambda's draw, else drawn here."""
        if self.condition_token:  # one more position: the history's real items and the target
            B, L, H = seq_emb.shape
            lam = self.sample_lambda((B, 1, H), seq_emb.device, generator) if lam is None else lam
            h = torch.cat([seq_emb, lam * cond], dim=1)  # [B, L + 1, H]
            key_mask = torch.cat([key_mask, key_mask.new_ones(B, 1)], dim=1)
        else:
            lam = self.sample_lambda(seq_emb.shape, seq_emb.device, generator) if lam is None else lam  # [B, L, H]
            h = seq_emb + lam * cond  # [B, L, H]
        for i, block in enumerate(self.blocks):
            h = block(h, key_mask, last if i == len(self.blocks) - 1 else None, causal)
        return h

    def pathway_parameters(self):
        """The parameters that see the noised target only through lambda * (x_t + d_t): the
        timestep MLP here (subclasses add their query projections). Weight decay can be kept off
        them (``pathway_weight_decay``): their real gradient is ~lambda times the others'."""
        return list(self.t_embedder.parameters()) + list(self.condition_map.parameters())

    def forward(self, seq_emb, key_mask, x_t, t, last, generator=None, causal=False, lam=None):
        """pred_xstart [B, H] at ``last``, or [B, L, H] at every position when ``last`` is None."""
        d_t = self.t_embedder(t)  # [B, H], or [B, L, H] with one step per position (t [B, L])
        if x_t.dim() == 2:
            x_t = x_t.unsqueeze(1)  # one target for the whole history: [B, 1, H]
        cond = self.condition_map(x_t + (d_t.unsqueeze(1) if d_t.dim() == 2 else d_t))  # [B, 1, H] or [B, L, H]
        h = self.encode(seq_emb, key_mask, cond, last, generator, causal, lam)
        h = self.norm(self.dropout(h))
        return h.squeeze(1) if last is not None else h


class CrossAttentionBlock(nn.Module):
    """DiffuRecSys block (Eq. 16), each sublayer pre-LN with a residual:
    h += CrossAttn(query, LN(h)) (one query per sample, its result broadcast to every position),
    then the self-attention and feed-forward sublayers of a TransformerBlock."""

    def __init__(self, hidden_size, n_heads, dropout):
        super().__init__()
        self.cross_attention = MultiHeadAttention(hidden_size, n_heads, dropout)
        self.cross_attention_sublayer = PreNormResidual(hidden_size, dropout)
        self.block = TransformerBlock(hidden_size, n_heads, dropout)

    def forward(self, h, key_mask, query, last=None, causal=False):
        # query [B, 1, H] attends to the (normalised) real items of h; [B, 1, H] + [B, L, H].
        # Sequence training: one query per position [B, L, H], position j's over keys <= j, its
        # result added to position j only
        h = self.cross_attention_sublayer(h, lambda x: self.cross_attention(query, x, key_mask, causal))
        return self.block(h, key_mask, last, causal)


class DiffuRecSysApproximator(DiffuRecApproximator):
    """The noised target conditions the history through cross-attention in every block instead of
    being added to it (DiffuRecSys Eq. 16). lambda ~ N(mu, mu) scales the single query, one draw
    [B, 1, H] per call.

    ``chain_blocks`` True: block i takes block i-1's output (a transformer stack). False: every
    block reads the embedded history and only the last block's output is used, as the DiffuRecSys
    repository runs (its earlier blocks are computed and discarded, so they are skipped here)."""

    def __init__(self, hidden_size, n_layers, n_heads, dropout, lambda_uncertainty, chain_blocks=True,
                 condition_norm="none"):
        super().__init__(hidden_size, n_layers, n_heads, dropout, lambda_uncertainty, condition_norm)
        self.chain_blocks = chain_blocks

    def build_block(self, hidden_size, n_heads, dropout):
        return CrossAttentionBlock(hidden_size, n_heads, dropout)

    def pathway_parameters(self):
        return super().pathway_parameters() + [
            p for block in self.blocks for p in block.cross_attention.query.parameters()
        ]

    def encode(self, seq_emb, key_mask, cond, last, generator=None, causal=False, lam=None):
        B, _, H = seq_emb.shape
        if lam is None:
            lam = self.sample_lambda((B, cond.shape[1], H), seq_emb.device, generator)
        query = lam * cond  # [B, 1, H], or [B, L, H] in sequence training
        if not self.chain_blocks:  # only the last block reaches the output
            return self.blocks[-1](seq_emb, key_mask, query, last, causal)
        h = seq_emb
        for i, block in enumerate(self.blocks):  # each block takes the previous block's output
            h = block(h, key_mask, query, last if i == len(self.blocks) - 1 else None, causal)
        return h

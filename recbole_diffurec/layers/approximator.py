"""The approximator f(x_t, t, history) -> pred_xstart of DiffuRec (Eq. 15).

Shapes: B batch, L history length, H hidden. Inputs: ``seq_emb`` [B, L, H] (already embedded,
dropped out and normalised), ``key_mask`` bool [B, L] (True at real items), ``x_t`` [B, H],
``t`` [B] (the scaled step the diffusion passes), ``last`` LongTensor [B] (index of the last real
item: RecBole pads on the right, so it is item_seq_len - 1).
"""
import torch
from torch import nn

from recbole_diffurec.layers.transformer import TimestepEmbedder, TransformerBlock


class DiffuRecApproximator(nn.Module):
    """h_0 = seq_emb + lambda * (x_t + d_t) at every position -> blocks -> Dropout -> LayerNorm,
    read at the last real item.

    lambda is drawn elementwise from N(mu, mu) ([B, L, H]) at every call, including every reverse
    step at inference (the reference's "uncertainty").
    """

    def __init__(self, hidden_size, n_layers, n_heads, dropout, lambda_uncertainty):
        super().__init__()
        self.lambda_uncertainty = lambda_uncertainty
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.blocks = nn.ModuleList([TransformerBlock(hidden_size, n_heads, dropout) for _ in range(n_layers)])
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=1e-12)

    def sample_lambda(self, shape, device, generator=None):
        mu = self.lambda_uncertainty
        return mu + mu * torch.randn(shape, device=device, generator=generator)

    def encode(self, seq_emb, key_mask, cond, generator=None):
        """The blocks over the history conditioned on ``cond`` = x_t + d_t [B, H] (Eq. 15)."""
        lam = self.sample_lambda(seq_emb.shape, seq_emb.device, generator)  # [B, L, H]
        h = seq_emb + lam * cond.unsqueeze(1)  # [B, L, H]
        for block in self.blocks:
            h = block(h, key_mask)
        return h

    def forward(self, seq_emb, key_mask, x_t, t, last, generator=None):
        cond = x_t + self.t_embedder(t)  # [B, H]
        h = self.norm(self.dropout(self.encode(seq_emb, key_mask, cond, generator)))  # [B, L, H]
        return h[torch.arange(h.shape[0], device=h.device), last]  # [B, H]

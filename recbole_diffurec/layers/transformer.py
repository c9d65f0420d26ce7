"""Pre-LayerNorm transformer pieces of DiffuRec's approximator (docs/MODEL.md §4).

Shapes: B batch, L history length, Q query length, H hidden, nh heads, hs = H / nh.
Masks: ``key_mask`` is a bool [B, L], True at real items. Only keys are masked (the reference
masks query rows instead, so real items attend to padding; we fix that): outputs at real
positions do not depend on padded positions. ``causal`` (sequence training) also hides the
positions after each query's own.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with a key padding mask; dropout on the attention weights."""

    def __init__(self, hidden_size, n_heads, dropout):
        super().__init__()
        assert hidden_size % n_heads == 0, "hidden_size must be divisible by n_heads"
        self.n_heads = n_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        # the reference Xavier-initialises the output projection only
        nn.init.xavier_normal_(self.out.weight)

    def forward(self, query, memory, key_mask, causal=False):
        """``causal`` (query i is position i of memory, Q = L): query i attends to keys <= i only."""
        B, Q, H = query.shape
        L = memory.shape[1]
        hs = H // self.n_heads
        q = self.query(query).view(B, Q, self.n_heads, hs).transpose(1, 2)  # [B, nh, Q, hs]
        k = self.key(memory).view(B, L, self.n_heads, hs).transpose(1, 2)  # [B, nh, L, hs]
        v = self.value(memory).view(B, L, self.n_heads, hs).transpose(1, 2)  # [B, nh, L, hs]
        attn_mask = key_mask[:, None, None, :]  # [B, 1, 1, L], broadcast over heads and queries
        if causal:
            assert Q == L, "a causal mask needs one query per position"
            attn_mask = attn_mask & causal_mask(L, key_mask.device)  # [B, 1, L, L]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # [B, nh, Q, hs]
        return self.out(y.transpose(1, 2).reshape(B, Q, H))


def causal_mask(length: int, device=None) -> Tensor:
    """bool [L, L], True where query i may attend to key j (j <= i)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class FeedForward(nn.Module):
    """H -> 4H -> H with tanh-approximate GELU and dropout on the activation (the reference's FFN)."""

    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.fc2 = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_normal_(self.fc1.weight)
        nn.init.xavier_normal_(self.fc2.weight)

    def forward(self, x):
        return self.fc2(self.dropout(F.gelu(self.fc1(x), approximate="tanh")))


class PreNormResidual(nn.Module):
    """x + Dropout(sublayer(LayerNorm(x))): the reference's SublayerConnection."""

    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, sublayer):
        return x + self.dropout(sublayer(self.norm(x)))


class TransformerBlock(nn.Module):
    """Pre-LN self-attention and feed-forward sublayers, then one extra dropout (as the reference)."""

    def __init__(self, hidden_size, n_heads, dropout):
        super().__init__()
        self.attention = MultiHeadAttention(hidden_size, n_heads, dropout)
        self.feed_forward = FeedForward(hidden_size, dropout)
        self.attention_sublayer = PreNormResidual(hidden_size, dropout)
        self.feed_forward_sublayer = PreNormResidual(hidden_size, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h, key_mask, last=None, causal=False):
        """h [B, L, H] -> [B, L, H]; with ``last`` [B], only the outputs at those positions, [B, 1, H]
        (every position is still a key: the same numbers, for 1/L of the query-side work).
        ``causal``: position i attends to positions <= i only (with ``last``, the last real item
        already sees only real items, so the key mask suffices)."""
        memory = self.attention_sublayer.norm(h)  # keys and values: every position, normalised
        if last is not None:
            h = h[torch.arange(h.shape[0], device=h.device), last].unsqueeze(1)  # [B, 1, H]
            causal = False
        h = self.attention_sublayer(h, lambda x: self.attention(x, memory, key_mask, causal))
        h = self.feed_forward_sublayer(h, self.feed_forward)
        return self.dropout(h)


def timestep_embedding(t: Tensor, dim: int, max_period: int = 10000) -> Tensor:
    """Sinusoidal embedding [..., dim] of (possibly fractional) steps t [...], in [cos, sin] order."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """d_t = Linear(4H, H)(SiLU(Linear(H, 4H)(sinusoid(t))))."""

    def __init__(self, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size), nn.SiLU(), nn.Linear(4 * hidden_size, hidden_size)
        )

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.hidden_size))  # [B, H], or [B, L, H] for t [B, L]

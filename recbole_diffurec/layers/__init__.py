"""Network pieces: no config, no schedule."""
from recbole_diffurec.layers.approximator import CrossAttentionBlock, DiffuRecApproximator, DiffuRecSysApproximator
from recbole_diffurec.layers.transformer import (
    FeedForward,
    MultiHeadAttention,
    PreNormResidual,
    TimestepEmbedder,
    TransformerBlock,
    timestep_embedding,
)

__all__ = [
    "CrossAttentionBlock",
    "DiffuRecApproximator",
    "DiffuRecSysApproximator",
    "FeedForward",
    "MultiHeadAttention",
    "PreNormResidual",
    "TimestepEmbedder",
    "TransformerBlock",
    "timestep_embedding",
]

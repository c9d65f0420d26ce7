"""Network pieces: no config, no schedule."""
from recbole_diffurec.layers.approximator import DiffuRecApproximator
from recbole_diffurec.layers.transformer import (
    FeedForward,
    MultiHeadAttention,
    PreNormResidual,
    TimestepEmbedder,
    TransformerBlock,
    timestep_embedding,
)

__all__ = [
    "DiffuRecApproximator",
    "FeedForward",
    "MultiHeadAttention",
    "PreNormResidual",
    "TimestepEmbedder",
    "TransformerBlock",
    "timestep_embedding",
]

"""Shared neural-network blocks: attention (PostNorm, DropPath), MLP, positions, 1D deformable,
and ``Linear`` (CPU float32 matmuls on oneDNN)."""

from sidetune.nn.attention import AttentionBlock, FeedForwardBlock, MultiHeadAttention
from sidetune.nn.deformable_1d import (
    deformable_aggregate_1d,
    interpolation_weights,
    sample_1d,
    to_index,
    valid_lengths,
)
from sidetune.nn.drop_path import DropPath, drop_path
from sidetune.nn.linear import Linear, use_fast_linears
from sidetune.nn.mlp import MLP
from sidetune.nn.position import sine_embed, sinusoidal_position_embedding

__all__ = [
    "MLP",
    "AttentionBlock",
    "DropPath",
    "FeedForwardBlock",
    "Linear",
    "MultiHeadAttention",
    "deformable_aggregate_1d",
    "drop_path",
    "interpolation_weights",
    "sample_1d",
    "sine_embed",
    "sinusoidal_position_embedding",
    "to_index",
    "use_fast_linears",
    "valid_lengths",
]

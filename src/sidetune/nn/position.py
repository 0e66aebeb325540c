"""Sinusoidal position encodings: for clip indices and for normalized span coordinates."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_position_embedding(
    length: int,
    dim: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Transformer sinusoidal encoding of positions ``0..length-1``: ``(length, dim)``.

    Channels ``[0, dim/2)`` are sines and ``[dim/2, dim)`` cosines of geometric frequencies.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding needs an even dim, got {dim}")
    pos = torch.arange(length, device=device, dtype=torch.float32)
    return _sine(pos[:, None], dim, temperature, 1.0).to(dtype or torch.float32)


def sine_embed(coords: Tensor, dim_per_coord: int, temperature: float = 10000.0) -> Tensor:
    """DAB-DETR style embedding of normalized coordinates ``(..., C)`` -> ``(..., C * dim)``.

    Coordinates in [0, 1] are scaled by 2*pi so one period spans the timeline.
    """
    if dim_per_coord % 2:
        raise ValueError(f"sine embedding needs an even dim, got {dim_per_coord}")
    return _sine(coords, dim_per_coord, temperature, 2 * math.pi)


def _sine(coords: Tensor, dim: int, temperature: float, scale: float) -> Tensor:
    half = dim // 2
    freq = torch.arange(half, device=coords.device, dtype=torch.float32)
    inv = temperature ** (-freq / half)
    angles = coords.float()[..., None] * scale * inv  # (..., C, half)
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (..., C, dim)
    return emb.flatten(-2).to(coords.dtype if coords.is_floating_point() else torch.float32)

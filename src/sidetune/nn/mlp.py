"""Plain multi-layer perceptrons (ReLU), used for projections and prediction heads."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from sidetune.nn.dropout import Dropout
from sidetune.nn.linear import Linear


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between (none after the last).

    ``input_dropout`` is applied to the input before the first layer, ``dropout`` after every
    hidden activation. Hidden layers use Kaiming init.

    Shapes: ``(..., in_dim) -> (..., out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        input_dropout: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"an MLP needs at least one layer, got num_layers={num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.input_dropout = Dropout(input_dropout) if input_dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(Linear(a, b) for a, b in itertools.pairwise(dims))
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        for layer in list(self.layers)[:-1]:
            assert isinstance(layer, nn.Linear)
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    @property
    def last(self) -> nn.Linear:
        layer = self.layers[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    @property
    def first_layer_shareable(self) -> bool:
        """Whether the first layer is deterministic in its input (no input dropout) and
        followed by more layers, so :meth:`after_first` can complete a shared first layer."""
        return len(self.layers) > 1 and not (
            self.training and isinstance(self.input_dropout, Dropout)
        )

    def after_first(self, x: Tensor) -> Tensor:
        """The rest of the MLP given the first layer's output (activation, dropout, layers)."""
        for layer in list(self.layers)[1:]:
            # not in place: ``x`` may be an expanded view shared by several rows
            x = layer(self.dropout(torch.relu(x)))
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_dropout(x)
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < n - 1:
                x = self.dropout(self.act(x))
        return x

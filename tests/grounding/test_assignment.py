"""Batched torch Hungarian solver: optimal, equal to scipy, padding-aware."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from sidetune.grounding.assignment import batched_assignment


@pytest.mark.parametrize("seed", range(4))
def test_matches_scipy(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for n, m in [(1, 5), (3, 3), (4, 10), (6, 30)]:
        cost = torch.randn(9, n, m, generator=g) * 5
        sizes = torch.randint(0, n + 1, (9,), generator=g)
        sizes[0] = n
        out = batched_assignment(cost, sizes)
        assert out.shape == (9, n) and out.dtype == torch.long
        for p in range(9):
            k = int(sizes[p])
            rows, cols = linear_sum_assignment(cost[p, :k].numpy())
            assert np.array_equal(out[p, :k].numpy(), cols[np.argsort(rows)])
            assert (out[p, k:] == -1).all()


def test_ties_still_optimal() -> None:
    g = torch.Generator().manual_seed(0)
    cost = torch.randint(0, 3, (20, 4, 7), generator=g).float()
    sizes = torch.full((20,), 4)
    out = batched_assignment(cost, sizes)
    for p in range(20):
        assert len(set(out[p].tolist())) == 4
        rows, cols = linear_sum_assignment(cost[p].numpy())
        best = cost[p].numpy()[rows, cols].sum()
        assert cost[p, torch.arange(4), out[p]].sum().item() == pytest.approx(best)


def test_more_rows_than_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="rows <= columns"):
        batched_assignment(torch.zeros(1, 4, 3), torch.tensor([4]))

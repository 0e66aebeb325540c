"""Exact batched linear assignment in torch: Hungarian matching without leaving the device.

``scipy.optimize.linear_sum_assignment`` needs the cost on the host, so a GPU step that uses
it waits for the device every iteration. :func:`batched_assignment` solves all problems of a
batch (every sample of every decoder level) at once with the shortest-augmenting-path
Hungarian algorithm (Kuhn-Munkres with potentials, as in Jonker-Volgenant), vectorized over
the problems. The loop counts depend only on the padded number of GT spans ``N`` (a shape),
never on values, so nothing is read back to the host: on CUDA the whole matcher queues
asynchronously.

Row ``i`` (a GT span) is added with at most ``i`` Dijkstra steps (each step either reaches a
free query or adds one of the ``i - 1`` already assigned ones), so the work is
``O(N^2)`` steps of ``O(M)`` vector operations for ``N`` spans and ``M`` queries. The result
is an optimal assignment, the same as scipy's up to ties between equal-cost assignments.
"""

from __future__ import annotations

import torch
from torch import Tensor


def batched_assignment(cost: Tensor, sizes: Tensor) -> Tensor:
    """Minimum-cost assignment of the first ``sizes[p]`` rows of each problem to distinct columns.

    Args:
        cost: ``(P, N, M)`` cost of assigning row (GT span) ``i`` to column (query) ``j``;
            ``N <= M``. Rows at or beyond ``sizes[p]`` are padding and never read.
        sizes: ``(P,)`` int64 number of real rows per problem (on ``cost``'s device).

    Returns:
        ``(P, N)`` int64: the column assigned to each row; ``-1`` for padding rows.
    """
    num, n, m = cost.shape
    if n > m:
        raise ValueError(f"batched_assignment needs rows <= columns, got N={n} > M={m}")
    device = cost.device
    a = cost.to(torch.float64)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    zero = torch.zeros((), dtype=torch.float64, device=device)
    ar = torch.arange(num, device=device)
    u = torch.zeros(num, n + 1, dtype=torch.float64, device=device)  # row potentials (1-based)
    v = torch.zeros(num, m + 1, dtype=torch.float64, device=device)  # column potentials
    owner = torch.zeros(num, m + 1, dtype=torch.long, device=device)  # row of column j, 0 = free
    way = torch.zeros(num, m + 1, dtype=torch.long, device=device)
    for i in range(1, n + 1):
        active = sizes >= i
        owner[:, 0] = i
        j0 = torch.zeros(num, dtype=torch.long, device=device)
        minv = torch.full((num, m + 1), float("inf"), dtype=torch.float64, device=device)
        used = torch.zeros(num, m + 1, dtype=torch.bool, device=device)
        done = ~active
        for _ in range(i):  # Dijkstra steps: at most i (see the module docstring)
            run = ~done
            used[ar, j0] = used[ar, j0] | run
            i0 = owner[ar, j0]  # (P,) 1-based row at the tree's frontier
            row = a[ar, (i0 - 1).clamp(min=0)]  # (P, M)
            cur = row - u[ar, i0].unsqueeze(1) - v[:, 1:]
            free = ~used[:, 1:]
            better = free & (cur < minv[:, 1:]) & run.unsqueeze(1)
            minv[:, 1:] = torch.where(better, cur, minv[:, 1:])
            way[:, 1:] = torch.where(better, j0.unsqueeze(1), way[:, 1:])
            delta, j1 = torch.where(free, minv[:, 1:], inf).min(dim=1)
            delta = torch.where(run, delta, zero)
            step = torch.where(used, delta.unsqueeze(1), zero)  # (P, M+1)
            u.scatter_add_(1, owner, step)  # used columns have distinct owners
            v = v - step
            minv = torch.where(used, minv, minv - delta.unsqueeze(1))
            j0 = torch.where(run, j1 + 1, j0)
            done = done | (owner[ar, j0] == 0)
        for _ in range(i):  # augment along the alternating path back to column 0
            move = (j0 != 0) & active
            j1 = way[ar, j0]
            owner[ar, j0] = torch.where(move, owner[ar, j1], owner[ar, j0])
            j0 = torch.where(move, j1, j0)
    assign = torch.full((num, n + 1), -1, dtype=torch.long, device=device)
    cols = torch.arange(m, device=device).expand(num, m)
    assign.scatter_(1, owner[:, 1:], cols)  # slot 0 collects the free columns: dropped
    out = assign[:, 1:]
    valid = torch.arange(n, device=device).unsqueeze(0) < sizes.unsqueeze(1)
    return torch.where(valid, out, torch.full_like(out, -1))

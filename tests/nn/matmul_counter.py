"""Count the matrix products a block of code runs, whichever CPU backend computes them."""

from __future__ import annotations

from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

_MATMULS = {"mm", "addmm", "bmm", "baddbmm", "_linear_pointwise"}


class MatmulCounter(TorchDispatchMode):
    """``with MatmulCounter() as c: ...`` then ``c.count`` matmuls and ``c.ops`` their names
    (BLAS ``mm``/``addmm`` or oneDNN ``_linear_pointwise``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    @property
    def count(self) -> int:
        return len(self.ops)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        name = func._overloadpacket.__name__
        if name in _MATMULS:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))

"""``Linear`` whose CPU float32 matmuls run on oneDNN instead of the BLAS library.

PyTorch's CPU ``F.linear`` / ``mm`` call MKL's sgemm. On AMD CPUs MKL does not take its
AVX-512 code path, and on this project's 2-core AMD EPYC machine sgemm sustains about 200
GFLOP/s at the SDST shapes while oneDNN (PyTorch's ``mkldnn`` library, already used for every
CPU convolution) sustains about 380-440 GFLOP/s on the same products (``bench/bench_cpu_linear.py``).
:class:`Linear` is a drop-in ``nn.Linear`` (same parameters, init and state-dict keys) whose
forward, input gradient and weight gradient go through oneDNN's linear primitive. Same maths:
the float32 results equal ``F.linear``'s up to summation order (tests pin the tolerance).

The oneDNN path is taken only where it computes exactly what ``F.linear`` would, and pays:
CPU, float32 input and weight, no CPU autocast (autocast's casts are ``F.linear``'s business),
a product of at least :data:`MIN_MACS` multiply-adds (smaller ones are faster on BLAS), not
inside ``torch.compile`` (inductor lowers ``F.linear`` itself), and a PyTorch built with the
oneDNN linear op. Everywhere else (also under ``torch.fx`` symbolic tracing and
``torch.func`` transforms), inside :func:`sidetune.nn.fast.plain_paths`, and with
``SIDETUNE_CPU_LINEAR=blas`` in the environment, :func:`linear` is ``F.linear``. Tools that
look for ``nn.Linear`` by exact type (e.g. ``torch.ao.quantization.quantize_dynamic``) do not
see a :class:`Linear`: swap the class back (``m.__class__ = nn.Linear``) before using them.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidetune.nn.fast import fast_paths

_ONEDNN_OP = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _backend_from_env() -> str:
    value = os.environ.get("SIDETUNE_CPU_LINEAR", "onednn").strip().lower()
    if value not in ("onednn", "blas"):
        raise ValueError(f"SIDETUNE_CPU_LINEAR must be 'onednn' or 'blas', got {value!r}")
    return value


_BACKEND = _backend_from_env()

# Below about 6M multiply-adds per product oneDNN's fixed cost per call (~15-20 us) outweighs
# its faster kernel at 2 threads (bench/bench_cpu_linear.py --small); the floor keeps a margin
# over that break-even, and smaller layers stay on BLAS.
MIN_MACS = 8_000_000


def onednn_available() -> bool:
    """Whether this PyTorch has the oneDNN linear op and oneDNN is enabled."""
    return _ONEDNN_OP is not None and torch.backends.mkldnn.is_available()


def _onednn_mm(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight.T + bias`` for 2-D ``x (N, I)``, ``weight (O, I)`` (strided views allowed)."""
    assert _ONEDNN_OP is not None
    return _ONEDNN_OP(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` with oneDNN products in forward and backward (2-D input ``(N, I)``).

    The backward is written with :func:`linear` itself, so it is differentiable again (double
    backward); it keeps the input only when the weight needs a gradient, and the weight only
    when the input does, as ``F.linear`` does."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(
            x if ctx.needs_input_grad[1] else None, weight if ctx.needs_input_grad[0] else None
        )
        ctx.has_bias = bias is not None
        return _onednn_mm(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = linear(grad, weight.t())  # (N, O) @ (O, I)
        if ctx.needs_input_grad[1]:
            grad_w = linear(grad.t(), x.t())  # (O, N) @ (N, I)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    if isinstance(x, torch.fx.Proxy) or torch._C._are_functorch_transforms_active():
        return False  # symbolic tracing, torch.func transforms: F.linear's own rules apply
    return (
        _BACKEND == "onednn"
        and fast_paths()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() > 0
        and x.numel() * weight.shape[0] >= MIN_MACS
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()  # inductor lowers F.linear itself
        and onednn_available()
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` for any ``(..., I)`` input; oneDNN on the CPU (see module
    docstring), ``F.linear`` elsewhere."""
    if not _use_onednn(x, weight):
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.view(*lead, weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear` (identical parameters and state dict)."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def use_fast_linears(module: nn.Module) -> nn.Module:
    """Turn every plain ``nn.Linear`` inside ``module`` into a :class:`Linear`, in place.

    For modules built by other libraries (the ``transformers`` CLIP tower): parameters, hooks
    and state-dict keys stay as they are; only the forward goes through :func:`linear`.
    Returns ``module``.
    """
    for m in module.modules():
        if type(m) is nn.Linear:
            m.__class__ = Linear
    return module

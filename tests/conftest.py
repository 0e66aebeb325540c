"""Shared test fixtures. Tests that read ``../shared`` go through :func:`shared_path`."""

from __future__ import annotations

import pytest
import torch

import sidetune.nn.linear as fast_linear
from tests.shared_data import shared_path  # noqa: F401  (re-exported for tests)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    # Test tensors are tiny: one thread avoids intra-op scheduling overhead and leaves the
    # second CI core to the process under test in multi-process (DDP) tests.
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(params=[False, True], ids=["default_floor", "onednn_everywhere"])
def onednn_everywhere(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test twice: as shipped, and with every linear product on oneDNN (a tiny test
    model's products are all below ``sidetune.nn.linear.MIN_MACS`` otherwise)."""
    if request.param:
        monkeypatch.setattr(fast_linear, "MIN_MACS", 0)
    return bool(request.param)

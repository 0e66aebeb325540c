"""Shared test fixtures. Tests that read ``../shared`` go through :func:`shared_path`."""

from __future__ import annotations

import pytest
import torch

from tests.shared_data import shared_path  # noqa: F401  (re-exported for tests)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    # Test tensors are tiny: one thread avoids intra-op scheduling overhead and leaves the
    # second CI core to the process under test in multi-process (DDP) tests.
    torch.set_num_threads(1)
    torch.manual_seed(0)

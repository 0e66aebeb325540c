"""Shared test fixtures. Tests that read ``../shared`` go through :func:`shared_path`."""

from __future__ import annotations

import os

import pytest
import torch

from tests.shared_data import shared_path  # noqa: F401  (re-exported for tests)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    # Two CPU cores on CI: more threads than cores only adds contention.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(0)

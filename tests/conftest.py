"""Shared test setup."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests run many small tensor operations: on a 2-core machine one torch thread is several
    times faster and steadier than two (intra-op threading costs more than it saves here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

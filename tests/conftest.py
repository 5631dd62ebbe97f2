"""Shared test set-up: the `gpu` marker skips with the concrete reason when no GPU is usable, and a few
tiny real workloads (NumPy/CuPy ops) that exercise the runner's paths (valid, wrong, raising, slow)."""

from __future__ import annotations

import pytest

from accelbench import backends
from tests import workloads_for_tests  # noqa: F401  (registers the t_* workloads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [it for it in items if "gpu" in it.keywords]
    if not gpu_items:
        return
    be = backends.gpu()
    if be.available:
        return
    skip = pytest.mark.skip(reason=f"no usable GPU: {be.reason}")
    for it in gpu_items:
        it.add_marker(skip)

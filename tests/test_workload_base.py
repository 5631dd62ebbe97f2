"""The workload base class: seeded inputs, validation arithmetic, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accelbench import backends
from accelbench.workloads.base import get_workload, load_all, rel_error


def _wl(seed: int = 3):
    cls = get_workload("t_scale")
    return cls(cls.Params(n=64), backends.cpu(), seed=seed)


def test_successive_random_inputs_differ_but_repeat_per_seed():
    a, b = _wl(), _wl()
    x1, x2 = a.random((64,), "float32"), a.random((64,), "float32")
    assert not np.array_equal(x1, x2)  # A != B inside one case
    assert np.array_equal(x1, b.random((64,), "float32"))  # same seed, same inputs (CPU and GPU alike)
    assert not np.array_equal(x1, _wl(seed=4).random((64,), "float32"))
    assert np.all(x1 != 0)


def test_rel_error_catches_nan_and_scale():
    ref = np.arange(1.0, 5.0)
    assert rel_error(ref, ref) == 0.0
    assert rel_error(ref * (1 + 1e-3), ref) == pytest.approx(1e-3)
    assert math.isinf(rel_error(np.array([1.0, np.nan, 3.0, 4.0]), ref))
    with pytest.raises(ValueError):
        rel_error(ref[:3], ref)


def test_registry_holds_builtin_workloads():
    reg = load_all()
    for name in ("gemm", "batched_gemm", "conv2d", "triad", "reduction", "softmax", "memcpy_d2d",
                 "memcpy_h2d", "memcpy_d2h"):
        assert name in reg, name
    with pytest.raises(KeyError):
        get_workload("no-such-workload")

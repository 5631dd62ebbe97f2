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


def test_empty_aligned_starts_on_the_boundary_whatever_malloc_gives():
    w = _wl()
    keep = []
    for k in range(40):  # many allocations of odd sizes: malloc's 16-byte alignment drawn each time
        keep.append(np.empty(k * 7 + 1, np.uint8))
        for dtype, shape, align in (("float32", (3, 5), 64), ("float64", (1001,), 64), ("float16", (8,), 256)):
            a = w.empty_aligned(shape, dtype, align)
            assert a.ctypes.data % align == 0 and a.shape == shape and a.dtype == np.dtype(dtype)
            assert a.flags.c_contiguous and a.flags.writeable
            a[...] = 1.5  # the whole array is usable memory of its own
            assert float(a.sum()) == 1.5 * a.size


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

"""accelbench.ops.activation: relu_ in place equals numpy.maximum(x, 0) on every layout and dtype."""

from __future__ import annotations

import numpy as np
import pytest

from accelbench.ops.activation import relu_


@pytest.mark.parametrize("shape", [(1, 64, 111, 111), (3, 1000, 1, 1), (7,), (2, 5, 3), (16, 1000), (1, 1 << 15)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_relu_in_place_equals_maximum(shape: tuple[int, ...], dtype: type) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[:: max(1, flat.size // 7)] = np.nan  # NaN propagates as np.maximum does
    flat[1] = -0.0
    want = np.maximum(x, 0)
    y = x.copy()
    assert relu_(y) is y
    np.testing.assert_array_equal(y, want)


def test_relu_of_views_and_integers_falls_back_to_the_scalar_form() -> None:
    x = np.random.default_rng(1).standard_normal((8, 6, 40)).astype(np.float32)
    view = x[:, ::2]  # not contiguous: written through the view only
    want = x.copy()
    want[:, ::2] = np.maximum(want[:, ::2], 0)
    relu_(view)
    np.testing.assert_array_equal(x, want)
    ints = np.arange(-50, 50, dtype=np.int32).reshape(10, 10)
    np.testing.assert_array_equal(relu_(ints.copy()), np.maximum(ints, 0))

"""im2col / col2im / conv2d forward and backward: against a direct loop convolution, the adjoint identity,
and central finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest

from accelbench import backends
from accelbench.ops import (
    ConvWorkspace,
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv_geometry,
    im2col,
)

# (x shape, w shape, stride, pad): odd sizes, strides that do not divide, asymmetric stride/pad, 1x1.
CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1),
    ((2, 3, 7, 6), (4, 3, 3, 2), 2, 0),
    ((1, 2, 8, 9), (3, 2, 3, 3), (2, 1), (0, 2)),
    ((3, 4, 5, 5), (2, 4, 1, 1), 1, 0),
    ((1, 1, 6, 6), (2, 1, 5, 5), 3, 2),
]


def direct_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, pad) -> np.ndarray:
    """Textbook loop convolution (cross-correlation), independent of im2col."""
    g = conv_geometry(x.shape, w.shape, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)))
    y = np.zeros(g.y_shape)
    for i in range(g.oh):
        for j in range(g.ow):
            patch = xp[:, :, i * g.sh:i * g.sh + g.kh, j * g.sw:j * g.sw + g.kw]  # (N, C, KH, KW)
            y[:, :, i, j] = np.einsum("nckl,fckl->nf", patch, w)
    if b is not None:
        y += b[None, :, None, None]
    return y


@pytest.mark.parametrize("xs,ws,stride,pad", CASES)
def test_forward_matches_direct_loop(xs, ws, stride, pad) -> None:
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    y, cols = conv2d_forward(x, w, b, stride, pad)
    g = conv_geometry(xs, ws, stride, pad)
    assert y.shape == g.y_shape and cols.shape == g.cols_shape
    np.testing.assert_allclose(y, direct_conv(x, w, b, stride, pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs,ws,stride,pad", CASES)
def test_col2im_is_the_adjoint_of_im2col(xs, ws, stride, pad) -> None:
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is exactly im2col's transpose."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(xs)
    g = conv_geometry(xs, ws, stride, pad)
    c = rng.standard_normal(g.cols_shape)
    lhs = float(np.sum(im2col(x, g.kh, g.kw, stride, pad) * c))
    rhs = float(np.sum(x * col2im(c, xs, g.kh, g.kw, stride, pad)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def _numeric_grad(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = a[idx]
        a[idx] = old + eps
        fp = f()
        a[idx] = old - eps
        fm = f()
        a[idx] = old
        grad[idx] = (fp - fm) / (2 * eps)
    return grad


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("xs,ws,stride,pad", CASES[:3] + CASES[4:])
def test_backward_matches_central_differences(xs, ws, stride, pad) -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    g = conv_geometry(xs, ws, stride, pad)
    r = rng.standard_normal(g.y_shape)  # loss L = sum(r * y): dL/dy = r

    def loss() -> float:
        return float(np.sum(r * conv2d_forward(x, w, b, stride, pad)[0]))

    _, cols = conv2d_forward(x, w, b, stride, pad)
    dx, dw, db = conv2d_backward(r, cols, w, xs, stride, pad)
    assert dx is not None and db is not None
    assert dx.shape == xs and dw.shape == ws and db.shape == (ws[0],)
    assert _rel(dx, _numeric_grad(loss, x)) < 1e-6
    assert _rel(dw, _numeric_grad(loss, w)) < 1e-6
    assert _rel(db, _numeric_grad(loss, b)) < 1e-6


def test_backward_flags_skip_dx_and_db() -> None:
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    y, cols = conv2d_forward(x, w, None, 1, 1)
    dx, dw, db = conv2d_backward(np.ones_like(y), cols, w, x.shape, 1, 1, need_dx=False, has_bias=False)
    assert dx is None and db is None and dw.shape == w.shape


def test_workspace_reuse_allocates_nothing_new_and_matches() -> None:
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5)
    g = conv_geometry(x.shape, w.shape, 2, 1)
    ws = ConvWorkspace(np, g, x.dtype)
    out = np.empty(g.y_shape)
    y1, cols1 = conv2d_forward(x, w, b, 2, 1, out=out, workspace=ws)
    assert y1 is out and cols1 is ws.cols
    x2 = rng.standard_normal(x.shape)  # a second call with new data must not see stale padding or columns
    y2, _ = conv2d_forward(x2, w, b, 2, 1, out=out, workspace=ws)
    np.testing.assert_allclose(y2, direct_conv(x2, w, b, 2, 1), rtol=1e-12, atol=1e-12)
    assert ws.nbytes == 8 * g.workspace_elements()


def test_float32_forward_close_to_float64() -> None:
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 8, 10, 10)), rng.standard_normal((6, 8, 3, 3))
    y32, _ = conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1)
    assert y32.dtype == np.float32
    assert _rel(y32.astype(np.float64), direct_conv(x.astype(np.float32).astype(np.float64),
                                                   w.astype(np.float32).astype(np.float64), None, 1, 1)) < 1e-6


@pytest.mark.parametrize("xs,ws,stride,pad,msg", [
    ((2, 3, 5, 5), (4, 2, 3, 3), 1, 0, "channels"),
    ((2, 3, 2, 2), (4, 3, 3, 3), 1, 0, "does not fit"),
    ((2, 3, 5, 5), (4, 3, 3, 3), 0, 0, "stride"),
    ((3, 5, 5), (4, 3, 3, 3), 1, 0, "4-D"),
])
def test_bad_geometry_raises(xs, ws, stride, pad, msg) -> None:
    with pytest.raises(ValueError, match=msg):
        conv_geometry(xs, ws, stride, pad)


@pytest.mark.gpu
def test_gpu_forward_and_backward_match_cpu() -> None:
    be = backends.gpu()
    cp = be.xp
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y, cols = conv2d_forward(x, w, b, 2, 1)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cols, w, x.shape, 2, 1)
    yg, colsg = conv2d_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b), 2, 1)
    dxg, dwg, dbg = conv2d_backward(cp.asarray(dy), colsg, cp.asarray(w), x.shape, 2, 1)
    for cpu_a, gpu_a in ((y, yg), (dx, dxg), (dw, dwg), (db, dbg)):
        np.testing.assert_allclose(cp.asnumpy(gpu_a), cpu_a, rtol=1e-10, atol=1e-10)

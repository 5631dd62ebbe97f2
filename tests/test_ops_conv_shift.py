"""The CPU shifted-GEMM convolution (accelbench.ops.conv_shift), its in-place GEMM (accelbench.ops.cpu_blas)
and the chunked CPU paths of the conv layer: against the direct loop convolution, the im2col convolution
and central finite differences, in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from accelbench.models import layers as L
from accelbench.models import spec as S
from accelbench.ops import conv2d_backward, conv2d_forward, conv_geometry, cpu_blas
from accelbench.ops.conv_shift import ShiftConv, supported
from tests.test_models_gradcheck import _make, _x, check_layer
from tests.test_ops_conv import direct_conv

# (x shape, w shape, pad, images per chunk): "same" 3x3, no padding, even kernel, 5x5, 1x1, non-square
# inputs, chunks that leave a remainder, one image per chunk, the automatic chunk size, a single image,
# padding wider than the kernel needs, a 1 x 3 kernel, odd sizes with more output than input channels.
CASES = [
    ((5, 3, 7, 6), (4, 3, 3, 3), 1, 2),
    ((3, 2, 5, 5), (3, 2, 2, 2), 0, None),
    ((4, 2, 6, 6), (2, 2, 5, 5), 2, 3),
    ((7, 4, 6, 5), (3, 4, 1, 1), 0, 2),
    ((2, 16, 9, 9), (8, 16, 3, 3), 1, 1),
    ((3, 3, 5, 6), (4, 3, 3, 3), (0, 1), 2),
    ((1, 5, 7, 9), (6, 5, 3, 3), 1, None),
    ((3, 2, 4, 5), (3, 2, 3, 3), 3, 2),
    ((5, 3, 5, 7), (2, 3, 1, 3), (0, 1), 4),
    ((7, 3, 11, 13), (10, 3, 3, 3), 1, 3),
]


@pytest.mark.parametrize("dy_t", [True, False], ids=["dy-transposed", "dy-grid"])
@pytest.mark.parametrize("stack_dw", [True, False], ids=["stacked-dw", "per-tap-dw"])
@pytest.mark.parametrize("xs,ws,pad,chunk", CASES)
def test_shift_conv_matches_direct_and_im2col(xs, ws, pad, chunk, stack_dw, dy_t) -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    g = conv_geometry(xs, ws, 1, pad)
    sc = ShiftConv(g, np.float64, chunk, stack_dw=stack_dw, dy_t=dy_t)
    assert sc.stack_dw == (stack_dw and ws[3] > 1)
    # stacked: the grid is the first C rows of the stacked copy, whose last row (ones) gives dB
    assert (sc.x3 is not None and np.shares_memory(sc.xg, sc.x3)) == sc.stack_dw
    if chunk is not None:
        assert sc.nb == min(chunk, xs[0])
    y = np.full(g.y_shape, np.nan)
    sc.forward(x, w, b, y)
    np.testing.assert_allclose(y, direct_conv(x, w, b, 1, pad), rtol=1e-12, atol=1e-12)

    dy = rng.standard_normal(g.y_shape)
    _, cols = conv2d_forward(x, w, b, 1, pad)
    dx_ref, dw_ref, db_ref = conv2d_backward(dy, cols, w, xs, 1, pad)
    dx, dw, db = np.full(xs, np.nan), np.full(ws, np.nan), np.full(ws[0], np.nan)
    for _ in range(2):  # a second backward must not accumulate onto the first one's gradients
        sc.backward(dy, x, w, dw, db, dx)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)
    dw[...] = np.nan  # without dx and db (a first layer, no bias) dW is still complete
    sc.backward(dy, x, w, dw, None, None)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)


def test_shift_conv_float32_and_new_data_reuse_buffers() -> None:
    rng = np.random.default_rng(1)
    g = conv_geometry((6, 8, 10, 10), (5, 8, 3, 3), 1, 1)
    sc = ShiftConv(g, np.float32, 4)
    w = rng.standard_normal(g.w_shape).astype(np.float32)
    y = np.empty(g.y_shape, np.float32)
    for seed in (2, 3):  # the second batch must see no stale padding or grid rows from the first
        x = np.random.default_rng(seed).standard_normal(g.x_shape).astype(np.float32)
        sc.forward(x, w, None, y)
        ref = direct_conv(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
        assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("stack_dw", [True, False], ids=["stacked-dw", "per-tap-dw"])
@pytest.mark.parametrize("dy_t", [True, False], ids=["dy-transposed", "dy-grid"])
def test_shift_conv_float32_fused_relu_matches_im2col(stack_dw, dy_t) -> None:
    """float32 within float32 tolerance of the float64 im2col reference, with the fused ReLU (forward
    rectifies, backward masks dy with the rectified output) and a ragged last chunk (3 + 3 + 1)."""
    rng = np.random.default_rng(6)
    xs, ws = (7, 12, 9, 11), (16, 12, 3, 3)
    g = conv_geometry(xs, ws, 1, 1)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.2, rng.standard_normal(16) * 0.1
    y_ref, cols = conv2d_forward(x, w, b, 1, 1)
    relu_ref = np.maximum(y_ref, 0)
    dy = rng.standard_normal(g.y_shape)
    f32 = np.float32
    sc = ShiftConv(g, f32, 3, stack_dw=stack_dw, dy_t=dy_t)
    y = np.empty(g.y_shape, f32)
    sc.forward(x.astype(f32), w.astype(f32), b.astype(f32), y, relu=True)
    tol = 1e-5 * np.abs(y_ref).max()
    assert np.abs(y - relu_ref).max() <= tol
    # where float32 rounding flips a near-zero output's sign, the masks differ: compare elsewhere
    same = (y > 0) == (y_ref > 0)
    assert same.mean() > 0.99
    dyf = (dy * same).astype(f32)
    dx_ref, dw_ref, db_ref = conv2d_backward(dyf.astype(np.float64) * (y_ref > 0), cols, w, xs, 1, 1)
    dx, dw, db = np.empty(xs, f32), np.empty(ws, f32), np.empty(16, f32)
    sc.backward(dyf, x.astype(f32), w.astype(f32), dw, db, dx, relu_y=y)
    for got, ref in ((dx, dx_ref), (dw, dw_ref), (db, db_ref)):
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_supported_geometries() -> None:
    assert supported(conv_geometry((2, 32, 8, 8), (4, 32, 3, 3), 1, 1), np.float32)
    assert not supported(conv_geometry((2, 32, 8, 8), (4, 32, 3, 3), 2, 1), np.float32)  # strided
    assert not supported(conv_geometry((2, 1, 8, 8), (4, 1, 3, 3), 1, 1), np.float32)  # 1 channel
    assert not supported(conv_geometry((2, 32, 8, 8), (4, 32, 3, 3), 1, 1), np.float16)
    with pytest.raises(ValueError):
        ShiftConv(conv_geometry((2, 3, 8, 8), (4, 3, 3, 3), 2, 1), np.float64)


def _layouts(rng: np.random.Generator, rows: int, cols: int, dt) -> list[np.ndarray]:
    """One logical (rows x cols) matrix as C-contiguous, transposed view, row block and column block."""
    out = [rng.standard_normal((rows, cols)).astype(dt)]
    out.append(np.ascontiguousarray(rng.standard_normal((cols, rows)).astype(dt)).T)
    out.append(rng.standard_normal((rows + 4, cols)).astype(dt)[2:2 + rows])
    out.append(rng.standard_normal((rows, cols + 3)).astype(dt)[:, 1:1 + cols])
    out.append(rng.standard_normal((rows, 2 * cols)).astype(dt)[:, ::2])  # no unit stride: copied
    return out


@pytest.mark.parametrize("use", ["numpy-openblas", "scipy-blas"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_gemm_in_place_every_layout_and_beta(use: str, dt) -> None:
    if use == "numpy-openblas" and cpu_blas.backend() != "numpy-openblas":
        pytest.skip("this NumPy build bundles no OpenBLAS with a 64-bit cblas interface")
    rng = np.random.default_rng(2)
    m, k, n = 7, 5, 6
    tol = 1e-5 if dt == np.float32 else 1e-12
    for a in _layouts(rng, m, k, dt):
        for b in _layouts(rng, k, n, dt):
            c0 = rng.standard_normal((m, n)).astype(dt)
            for beta in (0.0, 1.0, 0.5):
                out = c0.copy()
                res = cpu_blas.gemm(a, b, out, beta=beta, use=use)
                assert res is out
                ref = a.astype(np.float64) @ b.astype(np.float64) + beta * c0.astype(np.float64)
                np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    # a block of rows of a larger output (numpy-openblas writes it in place, nothing else)
    if use == "numpy-openblas":
        big = np.zeros((m + 3, n), dt)
        a, b = rng.standard_normal((m, k)).astype(dt), rng.standard_normal((k, n)).astype(dt)
        cpu_blas.gemm(a, b, big[1:1 + m], beta=1.0, use=use)
        np.testing.assert_allclose(big[1:1 + m], a @ b, rtol=tol, atol=tol)
        assert (big[0] == 0).all() and (big[1 + m:] == 0).all()


@pytest.mark.parametrize("use", [None, "numpy"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_transpose_into_every_layout(use, dt) -> None:
    """OpenBLAS's omatcopy (default) and NumPy's copy write exactly a.T, only into ``out``'s block."""
    rng = np.random.default_rng(7)
    for a in _layouts(rng, 9, 13, dt):
        big = np.zeros((13 + 2, 9 + 3), dt)
        out = big[1:14, 2:11]  # a block of a larger array: rows of unit stride, row pitch > 9
        assert cpu_blas.transpose(a, out, use=use) is out
        np.testing.assert_array_equal(out, a.T)
        rest = big.copy()
        rest[1:14, 2:11] = 0
        assert (rest == 0).all()
    with pytest.raises(ValueError):
        cpu_blas.transpose(np.ones((3, 4), dt), np.empty((3, 4), dt), use=use)


def test_gemm_rejects_mismatches() -> None:
    a, b = np.ones((3, 4)), np.ones((4, 2))
    with pytest.raises(ValueError):
        cpu_blas.gemm(a, b, np.empty((3, 3)))
    with pytest.raises(TypeError):
        cpu_blas.gemm(a.astype(np.float32), b, np.empty((3, 2)))
    out = np.empty((3, 2), np.float32)
    assert cpu_blas.matmul(np, a.astype(np.float32), b.astype(np.float32), out) is out
    np.testing.assert_allclose(out, 4.0)


@pytest.mark.parametrize("ls,in_shape", [
    ({"kind": "conv", "out": 4, "kernel": 3, "pad": "same"}, (8, 6, 5)),  # shifted GEMMs
    ({"kind": "conv", "out": 3, "kernel": 3, "stride": 2, "pad": 1}, (2, 7, 7)),  # im2col, chunked
    ({"kind": "conv", "out": 3, "kernel": 3, "pad": "same"}, (1, 6, 6)),  # im2col (1 channel), chunked
])
def test_conv_layer_chunks_match_one_chunk_and_central_differences(ls, in_shape) -> None:
    x = _x((5, *in_shape))
    whole = _make(ls, in_shape)
    chunked = _make(ls, in_shape)
    assert isinstance(whole, L.Conv2D) and isinstance(chunked, L.Conv2D)
    whole.chunk, chunked.chunk = 5, 2  # 2 + 2 + 1 images
    y1 = np.array(whole.forward(x))
    y2 = np.array(chunked.forward(x))
    np.testing.assert_allclose(y2, y1, rtol=1e-12, atol=1e-12)
    dy = _x(y1.shape, seed=3)
    dx1 = np.array(whole.backward(dy))
    g1 = [np.array(g) for g in whole.grads]
    dx2 = np.array(chunked.backward(dy))
    np.testing.assert_allclose(dx2, dx1, rtol=1e-12, atol=1e-12)
    for a, b in zip(chunked.grads, g1, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    check_layer(chunked, x)


def test_conv_layer_picks_shift_on_cpu_stride_1_only() -> None:
    spec = S.ModelSpec.model_validate({"input": [8, 6, 6], "classes": 2, "layers": [
        {"kind": "conv", "out": 4, "kernel": 3, "pad": "same"}, "flatten", {"kind": "dense", "out": 2}]})
    from accelbench.models.network import Network

    net = Network(spec, np, "float32", seed=0)
    conv = net.layers[0]
    assert isinstance(conv, L.Conv2D)
    net.forward(np.zeros((3, 8, 6, 6), np.float32))
    assert conv._use_shift
    strided = _make({"kind": "conv", "out": 3, "kernel": 3, "stride": 2, "pad": 1}, (8, 7, 7))
    strided.forward(_x((2, 8, 7, 7)))
    assert not strided._use_shift  # type: ignore[attr-defined]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hw", [(6, 8), (5, 7)])  # even, and a leftover row and column
def test_maxpool_2x2_pairwise_path_matches_first_maximum_reference(hw, dtype) -> None:
    rng = np.random.default_rng(4)
    h, w = hw
    x = np.maximum(rng.integers(-2, 3, size=(3, 2, h, w)), 0).astype(dtype)  # many ties, many zeros
    spec: Any = TypeAdapter(S.LayerSpec).validate_python(S._coerce_layer({"kind": "maxpool", "size": 2}))
    layer = L.build(spec, np, dtype, (2, h, w), S.layer_output(0, spec, (2, h, w)), L.Scratch(np),
                    np.random.default_rng(0), "he", 0)
    y = np.array(layer.forward(x))
    assert y.dtype == np.dtype(dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.array(layer.backward(dy))
    ref_y, ref_dx = np.zeros_like(y), np.zeros_like(x)
    for n, c, i, j in np.ndindex(*y.shape):
        win = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        a, b = divmod(int(np.argmax(win)), 2)  # argmax: first maximum in row-major order
        ref_y[n, c, i, j] = win.max()
        ref_dx[n, c, 2 * i + a, 2 * j + b] = dy[n, c, i, j]
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(dx, ref_dx)
    dx2 = np.array(layer.backward(dy * 2))  # a second backward reuses the buffers without leftovers
    np.testing.assert_array_equal(dx2, 2 * ref_dx)


def _conv_relu_net(fused: bool):
    from accelbench.models.network import Network

    spec = S.ModelSpec.model_validate({"input": [8, 6, 6], "classes": 3, "layers": [
        {"kind": "conv", "out": 8, "kernel": 3, "pad": "same"}, "relu",
        {"kind": "conv", "out": 6, "kernel": 3, "pad": "same"}, "relu", {"kind": "maxpool", "size": 2},
        "flatten", {"kind": "dense", "out": 3}]})
    net = Network(spec, np, "float64", seed=2)
    if not fused:
        for ly in net.layers:
            if isinstance(ly, L.Conv2D):
                ly.fuse_relu = False
    return net


def test_conv_relu_fusion_matches_separate_layers_and_central_differences() -> None:
    from accelbench.models.network import one_hot
    from tests.test_models_gradcheck import _numeric, _rel, _sample

    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 8, 6, 6))
    oh = one_hot(rng.integers(0, 3, 5), 3, "float64")
    fused, plain = _conv_relu_net(True), _conv_relu_net(False)
    for net in (fused, plain):
        for ly in net.layers:
            if isinstance(ly, L.Conv2D):
                ly.chunk = 2  # several chunks, one of them a remainder
    lf, lp = float(fused.forward_backward(x, oh)), float(plain.forward_backward(x, oh))
    relus = [ly for ly in fused.layers if isinstance(ly, L.ReLU)]
    assert all(r._passthrough for r in relus) and not any(
        r._passthrough for r in plain.layers if isinstance(r, L.ReLU))
    assert abs(lf - lp) < 1e-12
    np.testing.assert_allclose(fused.grads_host(), plain.grads_host(), rtol=1e-10, atol=1e-12)

    def f() -> float:
        loss, _ = fused.loss(fused.forward(x, True), oh)
        return float(loss)

    fused.forward_backward(x, oh)
    grads = [np.array(g, copy=True) for g in fused.grads]
    num, ana = [], []
    for p, g in zip(fused.params, grads, strict=True):
        idx = _sample(p.shape, rng, 8)
        num.append(_numeric(f, p, idx))
        ana.append(np.array([g[i] for i in idx]))
    assert _rel(np.concatenate(num), np.concatenate(ana)) < 1e-6

"""2-D convolution (NCHW) through im2col + one GEMM, forward and backward, for NumPy and CuPy alike.

Every function takes its array module from its arguments' type (``xp = numpy`` or ``cupy``), so the CPU
baseline and the GPU run the same algorithm and both spend their time in their BLAS (OpenBLAS/MKL,
cuBLAS).

Layouts (fixed; other modules rely on them):

* input ``x``: ``(N, C, H, W)``; weight ``w``: ``(F, C, KH, KW)``; bias ``b``: ``(F,)``;
  output ``y``: ``(N, F, OH, OW)`` with ``OH = (H + 2*ph - KH) // sh + 1`` (likewise ``OW``).
* columns ``cols``: ``(C*KH*KW, N*OH*OW)``, row index ``(c, i, j)`` in C order so that
  ``w.reshape(F, -1) @ cols`` is the convolution; column index ``(n, oh, ow)`` in C order.

Forward is ``y = (w2 @ cols)`` (one GEMM of ``F x CKK`` by ``CKK x N*OH*OW``) then one copy that moves the
``F`` axis behind ``N``. Backward is two GEMMs: ``dw = dy2 @ cols.T`` and ``dcols = w2.T @ dy2``, then
``col2im`` scatter-adds ``dcols`` into ``dx`` with ``KH*KW`` strided slice additions (no atomics needed,
so it works unchanged on both array modules).

Hot loops (benchmarks, training) avoid allocation by passing a :class:`ConvWorkspace` (padded input,
columns, GEMM output) and ``out=`` buffers; without them each call allocates what it needs.

Stable API (imported by ``accelbench.models``): :func:`conv_geometry`, :class:`ConvGeometry`,
:class:`ConvWorkspace`, :func:`im2col`, :func:`col2im`, :func:`conv2d_forward`, :func:`conv2d_backward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or cupy.ndarray
IntPair = int | tuple[int, int]

__all__ = [
    "ConvGeometry",
    "ConvWorkspace",
    "array_module",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv_geometry",
    "depthwise_conv2d_forward",
    "im2col",
    "pointwise_conv_forward",
]


def array_module(a: Array) -> Any:
    """numpy for NumPy arrays, cupy for CuPy arrays, without importing CuPy when it is not in use."""
    if isinstance(a, np.ndarray):
        return np
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return np


def _pair(v: IntPair, what: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")
        a, b = int(v[0]), int(v[1])
    else:
        a = b = int(v)
    return a, b


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one convolution. Pure data: used for work models and buffer sizing before allocation."""

    n: int
    c: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    ph: int = 0
    pw: int = 0
    dh: int = 1  # dilation (ONNX ``dilations``): kernel taps dh rows apart
    dw: int = 1

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.f, self.c, self.kh, self.kw)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.f, self.oh, self.ow)

    @property
    def padded_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h + 2 * self.ph, self.w + 2 * self.pw)

    @property
    def ckk(self) -> int:
        """GEMM inner dimension: C*KH*KW."""
        return self.c * self.kh * self.kw

    @property
    def cols_shape(self) -> tuple[int, int]:
        return (self.ckk, self.n * self.oh * self.ow)

    @property
    def gemm_shape(self) -> tuple[int, int]:
        """Shape of the forward GEMM's output, (F, N*OH*OW)."""
        return (self.f, self.n * self.oh * self.ow)

    @property
    def forward_flops(self) -> int:
        """Multiply-adds of the forward convolution counted as 2 flops (the DeepBench convention; bias
        not counted)."""
        return 2 * self.n * self.f * self.oh * self.ow * self.ckk

    def elements(self, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape, dtype=np.int64))

    def workspace_elements(self) -> int:
        """Elements of a :class:`ConvWorkspace` for this geometry (padded input + columns + GEMM out)."""
        pad = self.elements(self.padded_shape) if (self.ph or self.pw) else 0
        return pad + self.elements(self.cols_shape) + self.elements(self.gemm_shape)


def conv_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: IntPair = 1,
                  pad: IntPair = 0, dilation: IntPair = 1) -> ConvGeometry:
    """Validate the shapes of a convolution and return its geometry. Raises ValueError on a mismatch or
    an empty output. ``w_shape[1]`` is the channels one filter sees (C / groups for a grouped one: pass
    ``(F, C, KH, KW)`` for the geometry of the whole input)."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"conv2d wants 4-D NCHW input and FCHW weight, got {x_shape} and {w_shape}")
    n, c, h, w = (int(v) for v in x_shape)
    f, cw, kh, kw = (int(v) for v in w_shape)
    if c != cw:
        raise ValueError(f"input has {c} channels but the weight expects {cw}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(pad, "pad")
    dh, dw = _pair(dilation, "dilation")
    if sh < 1 or sw < 1 or ph < 0 or pw < 0 or dh < 1 or dw < 1:
        raise ValueError(f"stride and dilation must be >= 1 and pad >= 0, got stride={stride!r} pad={pad!r} "
                         f"dilation={dilation!r}")
    g = ConvGeometry(n, c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw)
    if g.oh < 1 or g.ow < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {h}x{w} input with padding {pad!r}")
    return g


class ConvWorkspace:
    """Preallocated buffers for one geometry and dtype, so repeated forward calls allocate nothing.

    ``xpad`` is allocated zeroed and only its interior is ever written, so its border stays zero.
    """

    def __init__(self, xp: Any, geom: ConvGeometry, dtype: Any) -> None:
        self.geom = geom
        self.dtype = np.dtype(dtype)
        self.xpad = xp.zeros(geom.padded_shape, dtype=dtype) if (geom.ph or geom.pw) else None
        self.cols = xp.empty(geom.cols_shape, dtype=dtype)
        self.gemm = xp.empty(geom.gemm_shape, dtype=dtype)

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in (self.xpad, self.cols, self.gemm) if a is not None)


def _as_strided(xp: Any, a: Array, shape: tuple[int, ...], strides: tuple[int, ...]) -> Array:
    # numpy.lib.stride_tricks and cupy.lib.stride_tricks both provide as_strided with byte strides.
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def _padded(xp: Any, x: Array, g: ConvGeometry, buf: Array | None) -> Array:
    if not (g.ph or g.pw):
        return x
    if buf is None:
        buf = xp.zeros(g.padded_shape, dtype=x.dtype)
    buf[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w] = x
    return buf


def im2col(x: Array, kh: int, kw: int, stride: IntPair = 1, pad: IntPair = 0, *,
           out: Array | None = None, xpad: Array | None = None, dilation: IntPair = 1) -> Array:
    """Unfold ``x`` (N, C, H, W) into columns (C*KH*KW, N*OH*OW) for a KHxKW kernel (taps ``dilation``
    apart).

    A strided view (no copy) exposes every patch as ``(N, C, KH, KW, OH, OW)``; one copy transposes it
    into the column layout. ``out`` (C-contiguous, right shape and dtype) receives the columns;
    ``xpad`` is a zero-bordered buffer of the padded shape to reuse (its interior is overwritten).
    """
    xp = array_module(x)
    g = conv_geometry(x.shape, (1, x.shape[1], kh, kw), stride, pad, dilation)
    xpd = _padded(xp, x, g, xpad)
    if not xpd.flags.c_contiguous:
        xpd = xp.ascontiguousarray(xpd)
    sN, sC, sH, sW = xpd.strides
    patches = _as_strided(xp, xpd, (g.n, g.c, g.kh, g.kw, g.oh, g.ow),
                          (sN, sC, sH * g.dh, sW * g.dw, sH * g.sh, sW * g.sw))
    if out is None:
        out = xp.empty(g.cols_shape, dtype=x.dtype)
    elif tuple(out.shape) != g.cols_shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ValueError(f"im2col out must be C-contiguous {g.cols_shape} {x.dtype}, got "
                         f"{tuple(out.shape)} {out.dtype}")
    # (N, C, KH, KW, OH, OW) -> (C, KH, KW, N, OH, OW): the row index (c, i, j) matches w.reshape(F, -1).
    out.reshape(g.c, g.kh, g.kw, g.n, g.oh, g.ow)[...] = patches.transpose(1, 2, 3, 0, 4, 5)
    return out


def col2im(cols: Array, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: IntPair = 1,
           pad: IntPair = 0, *, out: Array | None = None, dilation: IntPair = 1) -> Array:
    """Adjoint of :func:`im2col`: sum every column entry back into the input position it was read from.

    ``cols`` is (C*KH*KW, N*OH*OW); returns (N, C, H, W). Overlapping patches (stride < kernel) add up,
    which is exactly the gradient of im2col. Implemented as KH*KW strided slice additions into a padded
    buffer, so it needs no scatter atomics on either backend.
    """
    xp = array_module(cols)
    g = conv_geometry(x_shape, (1, x_shape[1], kh, kw), stride, pad, dilation)
    if tuple(cols.shape) != g.cols_shape:
        raise ValueError(f"col2im: columns of shape {tuple(cols.shape)} do not match {g.cols_shape}")
    c6 = cols.reshape(g.c, g.kh, g.kw, g.n, g.oh, g.ow)
    padded = bool(g.ph or g.pw)
    if padded:
        acc = xp.zeros(g.padded_shape, dtype=cols.dtype)
    else:
        if out is None:
            out = xp.empty(g.x_shape, dtype=cols.dtype)
        acc = out
        acc.fill(0)
    h_span = g.sh * (g.oh - 1) + 1
    w_span = g.sw * (g.ow - 1) + 1
    for i in range(g.kh):
        for j in range(g.kw):
            # c6[:, i, j] is (C, N, OH, OW); the destination slice is (N, C, OH, OW).
            i0, j0 = i * g.dh, j * g.dw
            acc[:, :, i0:i0 + h_span:g.sh, j0:j0 + w_span:g.sw] += c6[:, i, j].transpose(1, 0, 2, 3)
    if not padded:
        return acc
    interior = acc[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w]
    if out is None:
        return xp.ascontiguousarray(interior)
    out[...] = interior
    return out


def conv2d_forward(x: Array, w: Array, b: Array | None = None, stride: IntPair = 1, pad: IntPair = 0, *,
                   out: Array | None = None, workspace: ConvWorkspace | None = None, dilation: IntPair = 1,
                   groups: int = 1) -> tuple[Array, Array]:
    """y = conv2d(x, w) + b, NCHW, cross-correlation (as in every DL framework).

    Returns ``(y, cols)``; keep ``cols`` for :func:`conv2d_backward` (it is the workspace's buffer when a
    workspace is given, so the next forward overwrites it). ``out`` (N, F, OH, OW) receives ``y``.

    ``groups`` > 1 (w: (F, C/groups, KH, KW)): the columns' rows are ordered (c, i, j), so the rows of
    group ``k`` are one contiguous block and the grouped convolution is one batched GEMM of
    (groups, F/groups, C/groups*KH*KW) by (groups, C/groups*KH*KW, N*OH*OW) on the same columns.
    """
    xp = array_module(x)
    if groups < 1 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"conv2d: {groups} group(s) do not divide input {tuple(x.shape)} / weight {tuple(w.shape)}")
    g = conv_geometry(x.shape, (w.shape[0], x.shape[1], *w.shape[2:]), stride, pad, dilation)
    if workspace is not None and (workspace.geom != g or workspace.dtype != x.dtype):
        raise ValueError("conv2d_forward: the workspace was built for another geometry or dtype")
    cols = im2col(x, g.kh, g.kw, (g.sh, g.sw), (g.ph, g.pw), dilation=(g.dh, g.dw),
                  out=workspace.cols if workspace else None, xpad=workspace.xpad if workspace else None)
    m = cols.shape[1]
    # One image: the (F, OH*OW) GEMM output is already its NCHW layout, so the GEMM writes ``out`` and
    # the bias is added in place (no GEMM buffer, no second pass writing another array).
    direct = g.n == 1 and workspace is None and (out is None or (out.flags.c_contiguous and out.dtype == x.dtype))
    if direct and out is None:
        out = xp.empty(g.y_shape, dtype=x.dtype)
    gbuf = out if direct else (workspace.gemm if workspace else None)
    if groups == 1:
        gemm = xp.matmul(w.reshape(g.f, g.ckk), cols, out=gbuf.reshape(g.f, m) if gbuf is not None else None)
    else:
        gout = gbuf.reshape(groups, g.f // groups, m) if gbuf is not None else None
        gemm = xp.matmul(w.reshape(groups, g.f // groups, g.ckk // groups), cols.reshape(groups, g.ckk // groups, m),
                         out=gout).reshape(g.f, m)
    if direct:
        if b is not None:
            out += b.reshape(1, g.f, 1, 1)
        return out, cols
    if out is None:
        out = xp.empty(g.y_shape, dtype=gemm.dtype)
    y_view = gemm.reshape(g.f, g.n, g.oh, g.ow).transpose(1, 0, 2, 3)
    if b is not None:
        xp.add(y_view, b.reshape(1, g.f, 1, 1), out=out)
    else:
        out[...] = y_view
    return out, cols


def pointwise_conv_forward(x: Array, w: Array, b: Array | None = None, *, out: Array | None = None) -> Array:
    """A 1x1, stride-1, unpadded convolution: ``y[n] = w (F, C) @ x[n] (C, H*W)``, one batched GEMM that
    reads the NCHW input and writes the NCHW output in place (im2col's columns would be a transposed copy
    of the input and its GEMM output another copy). ``x`` must be C-contiguous."""
    xp = array_module(x)
    n, c, h, wd = x.shape
    f = w.shape[0]
    if out is None:
        out = xp.empty((n, f, h, wd), dtype=x.dtype)
    y3 = out.reshape(n, f, h * wd)
    xp.matmul(w.reshape(f, c), x.reshape(n, c, h * wd), out=y3)
    if b is not None:
        y3 += b.reshape(1, f, 1)
    return out


def depthwise_conv2d_forward(x: Array, w: Array, b: Array | None = None, stride: IntPair = 1, pad: IntPair = 0,
                             dilation: IntPair = 1) -> Array:
    """A depthwise convolution (groups = C = F, w: (C, 1, KH, KW)) as KH*KW multiply-adds of strided views
    of the padded input, all channels at once: the grouped GEMM would be C matrix-vector products over
    im2col columns 9x the activation, memory-bound either way, with the copy on top."""
    xp = array_module(x)
    g = conv_geometry(x.shape, (w.shape[0], x.shape[1], *w.shape[2:]), stride, pad, dilation)
    if w.shape[0] != g.c or w.shape[1] != 1:
        raise ValueError(f"depthwise convolution wants a ({g.c}, 1, KH, KW) weight, got {tuple(w.shape)}")
    xpd = _padded(xp, x, g, None)
    acc = np.float32 if x.dtype == np.float16 else x.dtype  # half sums in single, as a GEMM would
    y = xp.empty(g.y_shape, dtype=acc)
    tmp = xp.empty(g.y_shape, dtype=acc)
    wt = w.reshape(g.c, g.kh, g.kw).astype(acc, copy=False)
    for i in range(g.kh):
        for j in range(g.kw):
            i0, j0 = i * g.dh, j * g.dw
            view = xpd[:, :, i0:i0 + g.sh * (g.oh - 1) + 1:g.sh, j0:j0 + g.sw * (g.ow - 1) + 1:g.sw]
            tap = wt[:, i, j].reshape(1, g.c, 1, 1)
            if i == 0 and j == 0:
                xp.multiply(view, tap, out=y)
            else:
                xp.multiply(view, tap, out=tmp)
                y += tmp
    if b is not None:
        y += b.reshape(1, g.c, 1, 1)
    return y.astype(x.dtype, copy=False)


def conv2d_backward(dy: Array, cols: Array, w: Array, x_shape: tuple[int, int, int, int],
                    stride: IntPair = 1, pad: IntPair = 0, *, need_dx: bool = True, has_bias: bool = True
                    ) -> tuple[Array | None, Array, Array | None]:
    """Gradients of :func:`conv2d_forward` given ``dy`` = dL/dy (N, F, OH, OW) and the forward's ``cols``.

    Returns ``(dx, dw, db)``: dx (N, C, H, W) or None when ``need_dx`` is False (a first layer has no use
    for it), dw shaped like ``w``, db (F,) or None when ``has_bias`` is False.
    """
    xp = array_module(dy)
    g = conv_geometry(x_shape, w.shape, stride, pad)
    if tuple(dy.shape) != g.y_shape:
        raise ValueError(f"conv2d_backward: dy has shape {tuple(dy.shape)}, expected {g.y_shape}")
    # (N, F, OH, OW) -> (F, N*OH*OW), the forward GEMM's output layout.
    dy2 = xp.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(g.gemm_shape)
    dw = xp.matmul(dy2, cols.T).reshape(w.shape)
    db = dy2.sum(axis=1) if has_bias else None
    dx = None
    if need_dx:
        dcols = xp.matmul(w.reshape(g.f, g.ckk).T, dy2)
        dx = col2im(dcols, g.x_shape, g.kh, g.kw, (g.sh, g.sw), (g.ph, g.pw))
    return dx, dw, db

"""Convolution, pooling, normalisation and matrix products.

Convolutions go through :mod:`accelbench.ops.conv` (im2col + one GEMM, grouped as one batched GEMM) like
the model layers, and on the CPU stride-1 ones through :mod:`accelbench.ops.conv_shift` (shifted GEMMs,
no im2col copy) as :class:`accelbench.models.layers.Conv2D` does. 1-D convolutions and pools run as 2-D
ones with a unit height; pools are one strided maximum/sum per kernel tap over the whole tensor (no
window view to reduce), which costs ``KH*KW`` passes of the output size on either backend.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ops import conv_shift
from ...ops.activation import relu_
from ...ops.conv import (
    ConvGeometry,
    col2im,
    conv2d_forward,
    conv_geometry,
    depthwise_conv2d_forward,
    pointwise_conv_forward,
)
from . import Call, host, op

# Bytes of im2col columns per CPU chunk of images (see accelbench.models.layers.CPU_COLS_CHUNK_BYTES):
# whole-batch columns of ResNet-50's first layer at batch 64 are 470 MB, chunks keep them in cache.
CPU_COLS_CHUNK_BYTES = 6 << 20
# Whether stride-1 convolutions on the CPU use the shifted-GEMM algorithm. Off: on this shared 2-core
# machine under load (load average ~7) a 64-channel 3x3 layer at 56x56 ran at 0.9 GFLOP/s (batch 1) and
# 4.0 (batch 16) shifted, 4.6 and 11.3 through chunked im2col + one GEMM: its ~20 GEMM calls per chunk
# each wait for OpenBLAS's threads when another process holds a core (see accelbench.ops.conv_shift).
CPU_SHIFT_CONV = False


def _spatial_check(max_rank: int) -> Any:
    def check(a: dict[str, Any], opset: int) -> str | None:
        k = a.get("kernel_shape")
        if k is not None and len(k) > max_rank:
            return f"{len(k)}-D kernels are not supported (1-D and 2-D are)"
        pad = a.get("auto_pad", "NOTSET")
        if isinstance(pad, bytes):
            pad = pad.decode()
        if pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            return f"auto_pad={pad!r} is not an ONNX value"
        return None

    return check


def _auto_pad(a: dict[str, Any]) -> str:
    p = a.get("auto_pad", "NOTSET")
    return p.decode() if isinstance(p, bytes) else str(p)


def pads_for(a: dict[str, Any], spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
             dilations: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """(begin, end) pads per spatial axis from ``pads`` / ``auto_pad`` as the ONNX spec defines them."""
    r = len(spatial)
    mode = _auto_pad(a)
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(r):
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i])
            small, big = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else big)
            end.append(big if mode == "SAME_UPPER" else small)
        return begin, end
    if mode == "VALID":
        return [0] * r, [0] * r
    p = list(a.get("pads", [0] * (2 * r)))
    return p[:r], p[r:]


def _geometry_attrs(a: dict[str, Any], r: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(a.get("strides", [1] * r)), tuple(a.get("dilations", [1] * r))


def _as_2d(x: Any) -> Any:
    """(N, C, L) -> (N, C, 1, L); 2-D input unchanged."""
    return x.reshape(x.shape[0], x.shape[1], 1, x.shape[2]) if x.ndim == 3 else x


def _shape_2d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape :func:`_as_2d` gives."""
    s = tuple(int(v) for v in shape)
    return (s[0], s[1], 1, s[2]) if len(s) == 3 else s


def _pad2(lst: list[int] | tuple[int, ...], fill: int) -> tuple[int, int]:
    return (fill, int(lst[0])) if len(lst) == 1 else (int(lst[0]), int(lst[1]))


@dataclass(frozen=True)
class _ConvSetup:
    """What one convolution node decides from its shapes and attributes, once per input shape (the
    Python work of a small convolution is otherwise a visible part of its time at batch 1)."""

    r: int  # spatial rank of the node (1 or 2)
    g: ConvGeometry  # of the 2-D convolution run (after any explicit padding)
    pad: tuple[tuple[int, int], ...] | None  # explicit (asymmetric) padding of the 2-D input, or None
    algo: str  # "depthwise" | "shift" | "pointwise" | "im2col"
    chunk: int  # images per im2col chunk


def _conv_setup(c: Call, x: Any, w: Any) -> _ConvSetup:
    r = x.ndim - 2
    if r not in (1, 2):
        raise ValueError(f"{r}-D convolution is not supported (1-D and 2-D are)")
    kernel = tuple(int(k) for k in w.shape[2:])
    strides, dil = _geometry_attrs(c.attrs, r)
    groups = int(c.get("group", 1))
    pb, pe = pads_for(c.attrs, tuple(x.shape[2:]), kernel, strides, dil)
    shape, w2 = _shape_2d(x.shape), _shape_2d(w.shape)
    s2, d2 = _pad2(strides, 1), _pad2(dil, 1)
    b2, e2 = _pad2(pb, 0), _pad2(pe, 0)
    pad = None
    if b2 != e2:  # asymmetric (SAME_* with an odd total, or explicit): pad explicitly, convolve unpadded
        pad = ((0, 0), (0, 0), (b2[0], e2[0]), (b2[1], e2[1]))
        shape = (shape[0], shape[1], shape[2] + b2[0] + e2[0], shape[3] + b2[1] + e2[1])
        b2 = (0, 0)
    g = conv_geometry(shape, (w2[0], shape[1], *w2[2:]), s2, b2, d2)
    if groups > 1 and groups == g.c == g.f:
        algo = "depthwise"
    elif CPU_SHIFT_CONV and c.xp is np and groups == 1 and d2 == (1, 1) and conv_shift.supported(g, x.dtype):
        algo = "shift"
    elif groups == 1 and (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (1, 1, 1, 1, 0, 0):
        algo = "pointwise"
    else:
        algo = "im2col"
    per_image = g.ckk * g.oh * g.ow * x.dtype.itemsize
    chunk = g.n if c.xp is not np else max(1, min(g.n, CPU_COLS_CHUNK_BYTES // max(per_image, 1)))
    return _ConvSetup(r, g, pad, algo, chunk)


def conv(c: Call, x: Any, w: Any, b: Any, relu: bool = False) -> Any:
    """ONNX Conv on 1-D or 2-D NC... input (the work of the ``Conv`` handler, also used by the planner's
    constant folding)."""
    xp = c.xp
    key = ("conv", tuple(x.shape), tuple(w.shape), x.dtype.str, xp.__name__)
    st = c.cache.get(key)
    if st is None:
        st = c.cache[key] = _conv_setup(c, x, w)
    g = st.g
    x2, w2 = _as_2d(x), _as_2d(w)
    if st.pad is not None:
        x2 = xp.pad(x2, st.pad)
    s2, p2, d2 = (g.sh, g.sw), (g.ph, g.pw), (g.dh, g.dw)
    if st.algo == "depthwise":
        y = depthwise_conv2d_forward(x2, w2, b, s2, p2, d2)
    else:
        y = xp.empty(g.y_shape, dtype=x.dtype)
    if st.algo == "shift":
        sc = c.cache.get(("shift", g))
        if sc is None:  # its buffers are per geometry: keep only the latest
            for k in [k for k in c.cache if k[0] == "shift"]:
                del c.cache[k]
            sc = c.cache[("shift", g)] = conv_shift.ShiftConv(g, x.dtype)
        sc.forward(xp.ascontiguousarray(x2), xp.ascontiguousarray(w2), b, y, relu=relu)
        relu = False
    elif st.algo == "pointwise":
        pointwise_conv_forward(xp.ascontiguousarray(x2), w2, b, out=y)
    elif st.algo == "im2col":
        nb = st.chunk
        for n0 in range(0, g.n, nb):
            conv2d_forward(x2[n0:n0 + nb], w2, b, s2, p2, out=y[n0:n0 + nb], dilation=d2, groups=int(c.get("group", 1)))
    if relu:
        relu_(y)
    return y.reshape(y.shape[0], y.shape[1], y.shape[3]) if st.r == 1 else y


def _check_conv(a: dict[str, Any], opset: int) -> str | None:
    return _spatial_check(2)(a, opset)


@op("Conv", since=1, check=_check_conv, max_rank=4)
def _conv(c: Call, ins: list[Any]) -> list[Any]:
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    return [conv(c, x, w, b, relu=bool(c.get("_relu", False)))]


@op("ConvTranspose", since=1, check=_spatial_check(2), max_rank=4)
def _conv_transpose(c: Call, ins: list[Any]) -> list[Any]:
    """The adjoint of a convolution: columns ``w^T x`` scattered back by :func:`col2im`."""
    xp = c.xp
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    r = x.ndim - 2
    if r not in (1, 2):
        raise ValueError(f"{r}-D ConvTranspose is not supported")
    groups = int(c.get("group", 1))
    kernel = tuple(int(k) for k in w.shape[2:])
    strides, dil = _geometry_attrs(c.attrs, r)
    opad = list(c.get("output_padding", [0] * r))
    spatial = tuple(int(v) for v in x.shape[2:])
    full = [(spatial[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 + opad[i] for i in range(r)]
    out_shape = c.get("output_shape")
    mode = _auto_pad(c.attrs)
    if out_shape is not None:
        out = [int(v) for v in out_shape][-r:]
        pb = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in (full[i] - out[i] for i in range(r))]
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        out = [spatial[i] * strides[i] for i in range(r)]
        pb = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in (full[i] - out[i] for i in range(r))]
    else:
        pads = list(c.get("pads", [0] * (2 * r))) if mode != "VALID" else [0] * (2 * r)
        pb = pads[:r]
        out = [full[i] - pads[i] - pads[r + i] for i in range(r)]
    x2, w2 = _as_2d(x), _as_2d(w)
    n, cin, h, wd = x2.shape
    fg = w2.shape[1]
    kh, kw = w2.shape[2], w2.shape[3]
    s2, d2 = _pad2(strides, 1), _pad2(dil, 1)
    full2 = _pad2(full, 1)
    # col2im wants the geometry of the forward convolution: input (N, F, Hfull, Wfull) -> (N, C, h, w).
    # output_padding rows beyond the last stride stay zero.
    hf, wf = full2[0] - (opad[0] if r == 2 else 0), full2[1] - opad[-1]
    ys = []
    cg = cin // groups
    xg = x2.transpose(1, 0, 2, 3).reshape(cin, n * h * wd)
    for gi in range(groups):
        wg = w2[gi * cg:(gi + 1) * cg].reshape(cg, fg * kh * kw)
        cols = xp.matmul(wg.T, xg[gi * cg:(gi + 1) * cg])
        ys.append(col2im(cols, (n, fg, hf, wf), kh, kw, s2, 0, dilation=d2))
    y = ys[0] if groups == 1 else xp.concatenate(ys, axis=1)
    if hf != full2[0] or wf != full2[1]:
        y = xp.pad(y, ((0, 0), (0, 0), (0, full2[0] - hf), (0, full2[1] - wf)))
    pb2, out2 = _pad2(pb, 0), _pad2(out, 1)
    # a negative pad (output_shape larger than the full result) extends with zeros
    grow = [(max(0, -pb2[i]), max(0, pb2[i] + out2[i] - y.shape[2 + i])) for i in range(2)]
    if any(g for gg in grow for g in gg):
        y = xp.pad(y, ((0, 0), (0, 0), *grow))
    y = y[:, :, max(0, pb2[0]):max(0, pb2[0]) + out2[0], max(0, pb2[1]):max(0, pb2[1]) + out2[1]]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    y = xp.ascontiguousarray(y)
    return [y.reshape(n, y.shape[1], y.shape[3]) if r == 1 else y]


# ---------------------------------------------------------------- matrix products


def _check_gemm(a: dict[str, Any], opset: int) -> str | None:
    return None


@op("Gemm", check=_check_gemm)
def _gemm(c: Call, ins: list[Any]) -> list[Any]:
    a, b = ins[0], ins[1]
    cc = ins[2] if len(ins) > 2 else None
    if c.get("transA", 0):
        a = a.T
    if c.get("transB", 0):
        b = b.T
    y = c.xp.matmul(a, b)
    alpha, beta = float(c.get("alpha", 1.0)), float(c.get("beta", 1.0))
    if alpha != 1.0:
        y *= y.dtype.type(alpha)
    if cc is not None and beta != 0.0:
        y += cc * cc.dtype.type(beta) if beta != 1.0 else cc
    return [y]


@op("MatMul", since=1)
def _matmul(c: Call, ins: list[Any]) -> list[Any]:
    return [c.xp.matmul(ins[0], ins[1])]


# ---------------------------------------------------------------- normalisation


def _check_bn(a: dict[str, Any], opset: int) -> str | None:
    if a.get("training_mode", 0):
        return "training_mode=1 is not supported (inference only)"
    if opset < 9 and a.get("spatial", 1) == 0:
        return "spatial=0 is not supported"
    return None


def bn_affine(scale: Any, bias: Any, mean: Any, var: Any, eps: float) -> tuple[Any, Any]:
    """BatchNormalization as y = x * a + b per channel."""
    a = scale / (var + var.dtype.type(eps)) ** 0.5
    return a, bias - mean * a


@op("BatchNormalization", check=_check_bn)
def _bn(c: Call, ins: list[Any]) -> list[Any]:
    x, scale, bias, mean, var = ins[:5]
    a, b = bn_affine(scale, bias, mean, var, float(c.get("epsilon", 1e-5)))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inplace = c.get("_inplace") == 0 and np.issubdtype(x.dtype, np.floating) and x.flags.c_contiguous
    y = c.xp.multiply(x, a.reshape(shape).astype(x.dtype, copy=False), out=x if inplace else None)
    y += b.reshape(shape).astype(x.dtype, copy=False)
    return [y]


def _check_lrn(a: dict[str, Any], opset: int) -> str | None:
    return None if int(a.get("size", 1)) >= 1 else "size must be >= 1"


@op("LRN", check=_check_lrn)
def _lrn(c: Call, ins: list[Any]) -> list[Any]:
    xp = c.xp
    x = ins[0]
    size = int(c.get("size"))
    alpha, beta, bias = float(c.get("alpha", 1e-4)), float(c.get("beta", 0.75)), float(c.get("bias", 1.0))
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = x * x
    pad = [(0, 0)] * x.ndim
    pad[1] = (lo, hi)
    sqp = xp.pad(sq, pad)
    ch = x.shape[1]
    acc = sqp[:, 0:ch].copy()
    for i in range(1, size):
        acc += sqp[:, i:i + ch]
    dt = x.dtype.type
    acc *= dt(alpha / size)
    acc += dt(bias)
    return [(x / acc ** dt(beta)).astype(x.dtype, copy=False)]


@op("Dropout", inference_only=2)
def _dropout(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    training = ins[2] if len(ins) > 2 else None
    if training is not None and bool(host(training).reshape(-1)[0]):
        raise ValueError("Dropout with training_mode=true is not supported (inference only)")
    outs = [x]
    if c.n_out > 1:
        outs.append(c.xp.ones(x.shape, dtype=bool))
    return outs


# ---------------------------------------------------------------- pooling


def _check_pool(a: dict[str, Any], opset: int) -> str | None:
    if a.get("storage_order", 0):
        return "storage_order=1 is not supported"
    return _spatial_check(3)(a, opset)


def _pool_tap(acc: Any, nxt: Any, a: int, stride: int, tap: tuple[int, int, int]) -> tuple[Any, Any]:
    """(the outputs ``lo:hi`` of ``nxt`` along axis ``a``, the strided input slice of ``acc`` they read)."""
    lo, hi, off = tap
    dst = [slice(None)] * acc.ndim
    src = [slice(None)] * acc.ndim
    dst[a] = slice(lo, hi)
    src[a] = slice(lo * stride + off, (hi - 1) * stride + off + 1, stride)
    return nxt[tuple(dst)], acc[tuple(src)]


def _pool(c: Call, x: Any, kind: str) -> Any:
    xp = c.xp
    r = x.ndim - 2
    kernel = tuple(int(k) for k in c.get("kernel_shape"))
    strides, dil = _geometry_attrs(c.attrs, r)
    spatial = tuple(int(v) for v in x.shape[2:])
    pb, pe = pads_for(c.attrs, spatial, kernel, strides, dil)
    ceil = bool(c.get("ceil_mode", 0))
    outs, extra = [], []
    for i in range(r):
        span = (kernel[i] - 1) * dil[i] + 1
        room = spatial[i] + pb[i] + pe[i] - span
        if _auto_pad(c.attrs) in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-spatial[i] // strides[i])
        else:
            o = (-(-room // strides[i]) if ceil else room // strides[i]) + 1
            if ceil and (o - 1) * strides[i] >= spatial[i] + pb[i]:
                o -= 1  # a window may not start in the end padding
        outs.append(o)
        extra.append(max(0, (o - 1) * strides[i] + span - (spatial[i] + pb[i] + pe[i])))
    fill: Any = -np.inf if kind == "max" else 0
    if np.issubdtype(x.dtype, np.integer):
        fill = np.iinfo(x.dtype).min if kind == "max" else 0
    # Separable: one pass per spatial axis (max and sum both factor over axes), each tap of a pass a
    # strided slice of the unpadded input onto the output positions it reaches (padding is never
    # materialised): sum(k) passes of about the output size instead of prod(k) plus a padded copy.
    acc = x
    for i in range(r):
        a = 2 + i
        length = acc.shape[a]
        shape = list(acc.shape)
        shape[a] = outs[i]
        reach = []  # (first output, end output, input offset) of each tap that reaches an output
        for t in range(kernel[i]):
            off = t * dil[i] - pb[i]
            lo = max(0, -(off // strides[i]))  # ceil(-off / stride)
            hi = min(outs[i], (length - 1 - off) // strides[i] + 1)
            if lo < hi:
                reach.append((lo, hi, off))
        # Taps that reach every output position initialise the result: two of them in one binary op
        # (one pass instead of a fill and two reductions), else one by a copy; with none (padding on
        # both ends), a fill.
        full = [k for k, (lo, hi, _) in enumerate(reach) if lo == 0 and hi == outs[i]][:2]
        nxt = xp.empty(shape, dtype=x.dtype)
        st = strides[i]

        if len(full) == 2:
            (view, p0), (_, p1) = (_pool_tap(acc, nxt, a, st, reach[k]) for k in full)
            (xp.maximum if kind == "max" else xp.add)(p0, p1, out=view)
        elif full:
            view, p0 = _pool_tap(acc, nxt, a, st, reach[full[0]])
            view[...] = p0
        else:
            nxt.fill(fill)
        for k in range(len(reach)):
            if k in full:
                continue
            view, pk = _pool_tap(acc, nxt, a, st, reach[k])
            if kind == "max":
                xp.maximum(view, pk, out=view)
            else:
                view += pk
        acc = nxt
    if kind == "max":
        return acc
    include = bool(c.get("count_include_pad", 0))
    if include and not any(extra):
        return (acc / acc.dtype.type(math.prod(kernel))).astype(x.dtype, copy=False)
    # divisor per output position: elements of the window inside the input (or inside input + explicit
    # pads with count_include_pad), never the ceil-mode overhang. Kept on the device per geometry: the
    # eager run before a CUDA-graph capture makes it, so the capture itself copies nothing from the host.
    key = ("avgpool-count", tuple(spatial), x.dtype.str, xp.__name__)
    if key in c.cache:
        return (acc / c.cache[key]).astype(x.dtype, copy=False)
    mask = np.zeros([1, 1] + [spatial[i] + pb[i] + pe[i] + extra[i] for i in range(r)], dtype=np.float64)
    inner = (slice(None), slice(None)) + tuple(
        slice(0, spatial[i] + pb[i] + pe[i]) if include else slice(pb[i], pb[i] + spatial[i]) for i in range(r))
    mask[inner] = 1
    cnt = np.zeros([1, 1] + outs)
    for taps in itertools.product(*[range(k) for k in kernel]):
        sl = (slice(None), slice(None)) + tuple(
            slice(t * dil[i], t * dil[i] + strides[i] * (outs[i] - 1) + 1, strides[i]) for i, t in enumerate(taps))
        cnt += mask[sl]
    div = c.cache[key] = xp.asarray(np.maximum(cnt, 1).astype(x.dtype))
    return (acc / div).astype(x.dtype, copy=False)


@op("MaxPool", check=_check_pool, max_outputs=1)
def _maxpool(c: Call, ins: list[Any]) -> list[Any]:
    if c.n_out > 1:
        raise ValueError("MaxPool's Indices output is not supported")
    return [_pool(c, ins[0], "max")]


@op("AveragePool", check=_check_pool)
def _avgpool(c: Call, ins: list[Any]) -> list[Any]:
    return [_pool(c, ins[0], "avg")]


@op("GlobalAveragePool", since=1)
def _gap(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype, copy=False)]


@op("GlobalMaxPool", since=1)
def _gmp(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    return [x.max(axis=tuple(range(2, x.ndim)), keepdims=True)]

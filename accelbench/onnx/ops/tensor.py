"""Shape and data-movement ONNX ops: Reshape, Flatten, Transpose, Concat, Split, Slice, Squeeze,
Unsqueeze, Pad, Gather, Expand, Shape, Constant, ConstantOfShape, Resize."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Call, axis_of, host, ints, op


@op("Reshape", since=5, host=(1,))
def _reshape(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    shape = ints(ins[1])
    if not c.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return [x.reshape(shape)]


@op("Flatten", since=1)
def _flatten(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    axis = int(c.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [x.reshape(lead, -1) if x.size else x.reshape(lead, int(np.prod(x.shape[axis:], dtype=np.int64)))]


@op("Transpose", since=1)
def _transpose(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    perm = c.get("perm")
    return [c.xp.ascontiguousarray(x.transpose(perm if perm is not None else None))]


@op("Concat", since=4)
def _concat(c: Call, ins: list[Any]) -> list[Any]:
    xs = [x for x in ins if x is not None]
    axis = axis_of(int(c.get("axis")), xs[0].ndim)
    return [c.xp.concatenate(xs, axis=axis)]


@op("Split", since=2, host=(1,))
def _split(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    axis = axis_of(int(c.get("axis", 0)), x.ndim)
    dim = x.shape[axis]
    if c.opset < 13:
        sizes = list(c.get("split", []))
    else:
        sizes = ints(ins[1]) if len(ins) > 1 and ins[1] is not None else []
    if not sizes:
        n = int(c.get("num_outputs", c.n_out))
        step = -(-dim // n) if c.get("num_outputs") is not None else dim // n
        sizes = [step] * (n - 1) + [dim - step * (n - 1)]
    bounds = np.cumsum([0] + sizes)
    sl = [slice(None)] * x.ndim
    outs = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        sl[axis] = slice(int(a), int(b))
        outs.append(x[tuple(sl)].copy())
    return outs


def _slice(x: Any, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> Any:
    sl = [slice(None)] * x.ndim
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = axis_of(a, x.ndim)
        dim = x.shape[a]
        if st == 0:
            raise ValueError("Slice step 0")
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            sl[a] = slice(s, e, st)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            sl[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(sl)]


@op("Slice", since=1, until=9)
def _slice1(c: Call, ins: list[Any]) -> list[Any]:
    axes = c.get("axes")
    return [_slice(ins[0], list(c.get("starts")), list(c.get("ends")), list(axes) if axes is not None else None,
                   None).copy()]


@op("Slice", since=10, host=(1, 2, 3, 4))
def _slice10(c: Call, ins: list[Any]) -> list[Any]:
    def opt(i: int) -> list[int] | None:
        return ints(ins[i]) if len(ins) > i and ins[i] is not None else None

    starts, ends = ints(ins[1]), ints(ins[2])
    big = np.iinfo(np.int64)
    starts = [min(max(v, -(2**62)), 2**62) for v in starts]
    ends = [min(max(v, -(2**62)), 2**62) if big.min < v < big.max else (2**62 if v > 0 else -(2**62)) for v in ends]
    return [_slice(ins[0], starts, ends, opt(3), opt(4)).copy()]


def _axes(c: Call, ins: list[Any], since_input: int = 13) -> list[int] | None:
    if c.opset >= since_input:
        return ints(ins[1]) if len(ins) > 1 and ins[1] is not None else None
    a = c.get("axes")
    return list(a) if a is not None else None


@op("Squeeze", since=1, host=(1,))
def _squeeze(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    axes = _axes(c, ins)
    if axes is None:
        return [x.reshape([d for d in x.shape if d != 1])]
    ax = {axis_of(a, x.ndim) for a in axes}
    return [x.reshape([d for i, d in enumerate(x.shape) if i not in ax])]


@op("Unsqueeze", since=1, host=(1,))
def _unsqueeze(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    axes = _axes(c, ins) or []
    rank = x.ndim + len(axes)
    ax = sorted(axis_of(a, rank) for a in axes)
    shape = list(x.shape)
    for a in ax:
        shape.insert(a, 1)
    return [x.reshape(shape)]


def _check_pad(a: dict[str, Any], opset: int) -> str | None:
    mode = a.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect", "edge", "wrap"):
        return f"mode={mode!r} is not supported (constant, reflect, edge, wrap are)"
    return None


@op("Pad", since=2, host=(1, 2, 3), check=_check_pad)
def _pad(c: Call, ins: list[Any]) -> list[Any]:
    xp = c.xp
    x = ins[0]
    mode = c.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if c.opset < 11:
        pads, value, axes = list(c.get("pads")), float(c.get("value", 0.0)), None
    else:
        pads = ints(ins[1])
        value = host(ins[2]).reshape(-1)[0] if len(ins) > 2 and ins[2] is not None and host(ins[2]).size else 0
        axes = ints(ins[3]) if len(ins) > 3 and ins[3] is not None else None
    r = x.ndim
    axes = [axis_of(a, r) for a in axes] if axes is not None else list(range(r))
    n = len(axes)
    width = [[0, 0] for _ in range(r)]
    for i, a in enumerate(axes):
        width[a] = [pads[i], pads[n + i]]
    # negative pads crop
    x = x[tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(width))]
    pos = [(max(0, b), max(0, e)) for b, e in width]
    if mode == "constant":
        return [xp.pad(x, pos, mode="constant", constant_values=x.dtype.type(value))]
    return [xp.pad(x, pos, mode=mode)]


@op("Gather", since=1)
def _gather(c: Call, ins: list[Any]) -> list[Any]:
    x, idx = ins
    axis = axis_of(int(c.get("axis", 0)), x.ndim)
    idx = idx.astype(np.int64, copy=False)
    idx = c.xp.where(idx < 0, idx + x.shape[axis], idx)
    return [c.xp.take(x, idx, axis=axis)]


@op("Expand", since=8, host=(1,))
def _expand(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    shape = np.broadcast_shapes(tuple(x.shape), tuple(ints(ins[1])))
    return [c.xp.ascontiguousarray(c.xp.broadcast_to(x, shape))]


@op("Shape", since=1)
def _shape(c: Call, ins: list[Any]) -> list[Any]:
    shape = list(ins[0].shape)
    r = len(shape)
    start, end = int(c.get("start", 0)), c.get("end")
    start = min(max(start + r if start < 0 else start, 0), r)
    e = r if end is None else int(end)
    e = min(max(e + r if e < 0 else e, 0), r)
    return [np.array(shape[start:e], dtype=np.int64)]


def _check_constant(a: dict[str, Any], opset: int) -> str | None:
    if "sparse_value" in a or "value_string" in a or "value_strings" in a:
        return "sparse or string constants are not supported"
    return None


@op("Constant", since=1, check=_check_constant)
def _constant(c: Call, ins: list[Any]) -> list[Any]:
    a = c.attrs
    if "value" in a:
        return [np.asarray(a["value"])]
    if "value_float" in a:
        return [np.array(a["value_float"], dtype=np.float32)]
    if "value_floats" in a:
        return [np.array(a["value_floats"], dtype=np.float32)]
    if "value_int" in a:
        return [np.array(a["value_int"], dtype=np.int64)]
    if "value_ints" in a:
        return [np.array(a["value_ints"], dtype=np.int64)]
    raise ValueError("Constant without a value")


@op("ConstantOfShape", since=9, host=(0,))
def _constant_of_shape(c: Call, ins: list[Any]) -> list[Any]:
    v = c.get("value")
    value = np.asarray(v).reshape(-1) if v is not None else np.zeros(1, dtype=np.float32)
    return [np.full(ints(ins[0]), value[0], dtype=value.dtype)]


# ---------------------------------------------------------------- Resize

_COORD = ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "tf_half_pixel_for_nearest",
          "half_pixel_symmetric")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _s(v: Any, default: str) -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


def _check_resize(a: dict[str, Any], opset: int) -> str | None:
    mode = _s(a.get("mode"), "nearest")
    if mode not in ("nearest", "linear"):
        return f"mode={mode!r} is not supported (nearest, linear are)"
    coord = _s(a.get("coordinate_transformation_mode"), "half_pixel" if opset >= 11 else "asymmetric")
    if coord not in _COORD:
        return f"coordinate_transformation_mode={coord!r} is not supported ({', '.join(_COORD)} are)"
    if _s(a.get("nearest_mode"), "round_prefer_floor") not in _NEAREST:
        return f"nearest_mode={a.get('nearest_mode')!r} is not supported"
    if a.get("antialias", 0):
        return "antialias=1 is not supported"
    if _s(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
        return "keep_aspect_ratio_policy other than 'stretch' is not supported"
    return None


def _source_coords(coord: str, out: int, size: int, scale: float, length_resized: float) -> np.ndarray:
    o = np.arange(out, dtype=np.float64)
    if coord == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if coord == "half_pixel_symmetric":
        adj = out / length_resized
        center = size / 2
        offset = center * (1 - adj)
        return offset + (o + 0.5) / scale - 0.5
    if coord == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if length_resized > 1 else np.zeros(out)
    if coord == "align_corners":
        return o * (size - 1) / (length_resized - 1) if length_resized > 1 else np.zeros(out)
    if coord == "tf_half_pixel_for_nearest":
        return (o + 0.5) / scale
    return o / scale  # asymmetric


@op("Resize", since=10, host=(1, 2, 3), check=_check_resize)
def _resize(c: Call, ins: list[Any]) -> list[Any]:
    xp = c.xp
    x = ins[0]
    r = x.ndim
    mode = _s(c.get("mode"), "nearest")
    coord = _s(c.get("coordinate_transformation_mode"), "half_pixel" if c.opset >= 11 else "asymmetric")
    nearest = _s(c.get("nearest_mode"), "round_prefer_floor")
    axes = [axis_of(a, r) for a in c.get("axes", list(range(r)))]
    sizes_in: np.ndarray | None
    if c.opset < 11:
        scales_in, sizes_in = host(ins[1]), None
    else:
        scales_in = host(ins[2]) if len(ins) > 2 and ins[2] is not None and host(ins[2]).size else None
        sizes_in = host(ins[3]) if len(ins) > 3 and ins[3] is not None and host(ins[3]).size else None
    scales = [1.0] * r
    sizes = list(x.shape)
    resized = [float(d) for d in x.shape]  # the spec's length_resized: the output size, or in * scale
    for i, a in enumerate(axes):
        if sizes_in is not None:
            sizes[a] = int(sizes_in.reshape(-1)[i])
            scales[a] = sizes[a] / x.shape[a]
            resized[a] = float(sizes[a])
        else:
            assert scales_in is not None
            scales[a] = float(scales_in.reshape(-1)[i])
            sizes[a] = int(np.floor(x.shape[a] * scales[a]))
            resized[a] = x.shape[a] * scales[a]
    y = x
    for a in range(r):
        if sizes[a] == x.shape[a] and scales[a] == 1.0:
            continue
        size = x.shape[a]
        src = _source_coords(coord, sizes[a], size, scales[a], resized[a])
        if mode == "nearest":
            if nearest == "round_prefer_floor":
                idx = np.where(src == np.floor(src) + 0.5, np.floor(src), np.round(src))
            elif nearest == "round_prefer_ceil":
                idx = np.where(src == np.floor(src) + 0.5, np.ceil(src), np.round(src))
            elif nearest == "floor":
                idx = np.floor(src)
            else:
                idx = np.ceil(src)
            y = xp.take(y, xp.asarray(np.clip(idx, 0, size - 1).astype(np.int64)), axis=a)
        else:
            if coord != "tf_half_pixel_for_nearest":
                src = np.clip(src, 0, size - 1)
            lo = np.floor(src)
            w1 = (src - lo).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
            i0 = np.clip(lo, 0, size - 1).astype(np.int64)
            i1 = np.clip(lo + 1, 0, size - 1).astype(np.int64)
            shape = [1] * r
            shape[a] = -1
            w1d = xp.asarray(w1.reshape(shape))
            y0, y1 = xp.take(y, xp.asarray(i0), axis=a), xp.take(y, xp.asarray(i1), axis=a)
            y = (y0 + (y1 - y0) * w1d).astype(x.dtype, copy=False)
    return [y if y is not x else x.copy()]

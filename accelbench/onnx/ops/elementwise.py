"""Elementwise ONNX ops (NumPy broadcasting is ONNX's multidirectional broadcasting), activations,
softmax, reductions and casts."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.activation import relu_
from . import Call, axis_of, ints, op


def _erf(xp: Any, x: Any) -> Any:
    if xp is np:
        from scipy.special import erf

        return erf(x).astype(x.dtype, copy=False)
    from cupyx.scipy.special import erf as cerf

    return cerf(x)


def _div(xp: Any, a: Any, b: Any) -> Any:
    if np.issubdtype(a.dtype, np.integer):  # ONNX integer division truncates toward zero
        return xp.trunc(xp.true_divide(a, b)).astype(a.dtype)
    return xp.divide(a, b)


_BINARY = {
    "Add": lambda xp, a, b: xp.add(a, b),
    "Sub": lambda xp, a, b: xp.subtract(a, b),
    "Mul": lambda xp, a, b: xp.multiply(a, b),
    "Div": _div,
    "Pow": lambda xp, a, b: xp.power(a, b.astype(a.dtype) if b.dtype != a.dtype else b).astype(a.dtype, copy=False),
}


_UFUNC = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "divide"}


def _into(c: Call, ins: list[Any]) -> Any:
    """The dying input the planner lets this step overwrite (``_inplace``), when the result fits it."""
    i = c.get("_inplace")
    if i is None:
        return None
    t = ins[i]
    shape = np.broadcast_shapes(*[tuple(x.shape) for x in ins if x is not None])
    if tuple(t.shape) != shape or any(x is not None and x.dtype != t.dtype for x in ins) or \
            not np.issubdtype(t.dtype, np.floating) or not t.flags.c_contiguous:
        return None
    return t


def _binary(name: str) -> None:
    f = _BINARY[name]
    ufunc = _UFUNC.get(name)

    def fn(c: Call, ins: list[Any]) -> list[Any]:
        a, b = ins
        out = _into(c, ins) if ufunc else None
        if out is not None:
            return [getattr(c.xp, ufunc)(a, b, out=out)]  # type: ignore[arg-type]
        return [f(c.xp, a, b)]

    op(name)(fn)


for _n in _BINARY:
    _binary(_n)


def _variadic(name: str, reduce: Any, mean: bool = False) -> None:
    def fn(c: Call, ins: list[Any]) -> list[Any]:
        xs = [x for x in ins if x is not None]
        acc = xs[0]
        into = _into(c, ins) if name == "Sum" and len(xs) > 1 else None
        if into is not None:
            c.xp.add(xs[0], xs[1], out=into)
            for x in xs[2:]:
                into += x
            return [into]
        for x in xs[1:]:
            acc = reduce(c.xp, acc, x)
        if len(xs) == 1:
            acc = acc.copy()
        if mean:
            acc = (acc / len(xs)).astype(xs[0].dtype, copy=False)
        return [acc]

    op(name, since=8)(fn)


_variadic("Sum", lambda xp, a, b: xp.add(a, b))
_variadic("Max", lambda xp, a, b: xp.maximum(a, b))
_variadic("Min", lambda xp, a, b: xp.minimum(a, b))
_variadic("Mean", lambda xp, a, b: xp.add(a, b), mean=True)


def _unary(name: str, f: Any, since: int = 6) -> None:
    def fn(c: Call, ins: list[Any]) -> list[Any]:
        return [f(c.xp, ins[0], c)]

    op(name, since=since)(fn)


def _sigmoid(xp: Any, x: Any) -> Any:
    # 1 / (1 + exp(-x)) overflows exp for large negative x; tanh form is exact and stable
    return (0.5 * (xp.tanh(0.5 * x) + 1)).astype(x.dtype, copy=False)


_unary("Relu", lambda xp, x, c: relu_(x if _into(c, [x]) is not None else x.copy()))
_unary("LeakyRelu", lambda xp, x, c: xp.where(x >= 0, x, x * x.dtype.type(c.get("alpha", 0.01))))
_unary("Sigmoid", lambda xp, x, c: _sigmoid(xp, x))
_unary("Tanh", lambda xp, x, c: xp.tanh(x))
_unary("Erf", lambda xp, x, c: _erf(xp, x), since=9)
_unary("Exp", lambda xp, x, c: xp.exp(x))
_unary("Log", lambda xp, x, c: xp.log(x))
_unary("Sqrt", lambda xp, x, c: xp.sqrt(x))
_unary("Neg", lambda xp, x, c: xp.negative(x))
_unary("Abs", lambda xp, x, c: xp.abs(x))
_unary("Floor", lambda xp, x, c: xp.floor(x))
_unary("Ceil", lambda xp, x, c: xp.ceil(x))
_unary("Reciprocal", lambda xp, x, c: xp.reciprocal(x))
_unary("Identity", lambda xp, x, c: x, since=1)
_unary("HardSigmoid", lambda xp, x, c: xp.clip(x * x.dtype.type(c.get("alpha", 0.2)) + x.dtype.type(c.get("beta", 0.5)),
                                                0, 1).astype(x.dtype, copy=False))
_unary("HardSwish", lambda xp, x, c: (x * xp.clip(x / x.dtype.type(6) + x.dtype.type(0.5), 0, 1)).astype(x.dtype, copy=False),
       since=14)
_unary("Elu", lambda xp, x, c: xp.where(x >= 0, x, (xp.exp(x) - 1) * x.dtype.type(c.get("alpha", 1.0))).astype(x.dtype))
_unary("Selu", lambda xp, x, c: (x.dtype.type(c.get("gamma", 1.05070102214813232421875))
                                 * xp.where(x > 0, x, x.dtype.type(c.get("alpha", 1.67326319217681884765625))
                                            * (xp.exp(x) - 1))).astype(x.dtype))
_unary("Softplus", lambda xp, x, c: xp.logaddexp(x, x.dtype.type(0)).astype(x.dtype))


@op("PRelu")
def _prelu(c: Call, ins: list[Any]) -> list[Any]:
    x, slope = ins
    return [c.xp.where(x >= 0, x, x * slope).astype(x.dtype, copy=False)]


@op("Clip", since=6, until=10)
def _clip6(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    lo, hi = c.get("min", -3.4028234663852886e38), c.get("max", 3.4028234663852886e38)
    return [c.xp.minimum(c.xp.maximum(x, x.dtype.type(lo)), x.dtype.type(hi))]


@op("Clip", since=11)
def _clip(c: Call, ins: list[Any]) -> list[Any]:
    x = ins[0]
    lo = ins[1] if len(ins) > 1 else None
    hi = ins[2] if len(ins) > 2 else None
    y = x
    if lo is not None:
        y = c.xp.maximum(y, lo.astype(x.dtype))
    if hi is not None:
        y = c.xp.minimum(y, hi.astype(x.dtype))
    return [y.astype(x.dtype, copy=False) if y is not x else x.copy()]


def _softmax(c: Call, x: Any, log: bool) -> Any:
    xp = c.xp
    if c.opset < 13:  # coerced to 2-D at ``axis`` (default 1)
        axis = axis_of(c.get("axis", 1), x.ndim)
        shape = x.shape
        x = x.reshape(int(np.prod(shape[:axis], dtype=np.int64)), -1)
        return _softmax_axis(xp, x, 1, log).reshape(shape)
    return _softmax_axis(xp, x, axis_of(c.get("axis", -1), x.ndim), log)


def _softmax_axis(xp: Any, x: Any, axis: int, log: bool) -> Any:
    z = x - x.max(axis=axis, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=axis, keepdims=True)
    if log:
        return (z - xp.log(s)).astype(x.dtype, copy=False)
    return (e / s).astype(x.dtype, copy=False)


@op("Softmax")
def _softmax_op(c: Call, ins: list[Any]) -> list[Any]:
    return [_softmax(c, ins[0], log=False)]


@op("LogSoftmax")
def _logsoftmax_op(c: Call, ins: list[Any]) -> list[Any]:
    return [_softmax(c, ins[0], log=True)]


# ---------------------------------------------------------------- reductions

# opset from which ``axes`` is an input rather than an attribute
_AXES_INPUT = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18}
_REDUCE = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod"}


def _reduce(name: str) -> None:
    method = _REDUCE[name]
    since_input = _AXES_INPUT[name]

    def fn(c: Call, ins: list[Any]) -> list[Any]:
        x = ins[0]
        keep = bool(c.get("keepdims", 1))
        if c.opset >= since_input:
            axes = ints(ins[1]) if len(ins) > 1 and ins[1] is not None else []
        else:
            axes = list(c.get("axes", []))
        if not axes:
            if c.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.ndim))
        ax = tuple(sorted(axis_of(a, x.ndim) for a in axes))
        if x.size == 0 and method in ("max", "min"):
            shape = [1 if i in ax else d for i, d in enumerate(x.shape)] if keep else \
                [d for i, d in enumerate(x.shape) if i not in ax]
            fill: Any = -np.inf if method == "max" else np.inf
            if x.dtype == np.bool_:
                fill = method == "min"
            elif np.issubdtype(x.dtype, np.integer):
                info = np.iinfo(x.dtype)
                fill = info.min if method == "max" else info.max
            return [c.xp.full(shape, fill, dtype=x.dtype)]
        y = getattr(x, method)(axis=ax, keepdims=keep)
        return [c.xp.asarray(y).astype(x.dtype, copy=False)]

    op(name, host=(1,))(fn)


for _n in _REDUCE:
    _reduce(_n)


# ---------------------------------------------------------------- casts

_UNSUPPORTED_TYPES = {"STRING", "BFLOAT16", "COMPLEX64", "COMPLEX128"}


def np_dtype(onnx_type: int) -> np.dtype:
    """The NumPy dtype of an ONNX TensorProto element type; ValueError for types this engine lacks."""
    import onnx

    name = onnx.TensorProto.DataType.Name(onnx_type)
    if name in _UNSUPPORTED_TYPES or name.startswith(("FLOAT8", "FLOAT4", "INT4", "UINT4", "INT2", "UINT2")):
        raise ValueError(f"element type {name} is not supported")
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_type))


def _check_cast(a: dict[str, Any], opset: int) -> str | None:
    try:
        np_dtype(int(a.get("to", 1)))
    except ValueError as e:
        return f"to={a.get('to')}: {e}"
    return None


@op("Cast", check=_check_cast)
def _cast(c: Call, ins: list[Any]) -> list[Any]:
    return [ins[0].astype(np_dtype(int(c.get("to"))))]


@op("CastLike")
def _castlike(c: Call, ins: list[Any]) -> list[Any]:
    return [ins[0].astype(ins[1].dtype)]

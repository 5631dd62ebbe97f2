"""The ONNX operator registry: one handler per op type and opset range, ``xp``-generic.

A handler is ``fn(call, inputs) -> outputs``: ``call.xp`` is numpy or cupy (the module of the arrays it is
given), ``call.attrs`` the node's attributes as Python values (tensors as NumPy arrays), ``inputs`` the
node's inputs in order (``None`` for an omitted optional input). Inputs listed in ``host`` (shapes, axes,
pads, sizes...) arrive as NumPy arrays whatever the backend: they steer the computation and are read on
the host. ``check(attrs, opset)`` refuses, at validate time, attribute values the handler does not
implement (a reason string), so an unsupported model fails before anything runs.

Handlers are registered for the ai.onnx opsets :data:`MIN_OPSET` to :data:`MAX_OPSET`; where a newer
version of an op changed its semantics (an attribute became an input, a default changed), the handler
covers each version range explicitly (``since`` / ``until``) or branches on ``call.opset``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_OPSET = 7  # multidirectional broadcasting (opset 7) is the oldest semantics implemented
MAX_OPSET = 28  # the newest ai.onnx opset of onnx 1.23, whose node tests check the handlers

Check = Callable[[dict[str, Any], int], "str | None"]


@dataclass
class Call:
    """What a handler sees of its node: array module, attributes, opset, outputs wanted, a private cache
    kept across runs (e.g. a convolution's buffers for one geometry)."""

    xp: Any
    attrs: dict[str, Any]
    opset: int
    n_out: int = 1
    name: str = ""
    cache: dict[Any, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


Fn = Callable[[Call, list[Any]], Sequence[Any]]


@dataclass(frozen=True)
class Handler:
    op: str
    since: int
    until: int
    fn: Fn
    check: Check | None = None
    host: tuple[int, ...] = ()  # input positions read as host (NumPy) values
    max_rank: int | None = None  # highest rank of input 0 implemented (e.g. 4: NCHW)
    max_outputs: int | None = None  # outputs implemented (e.g. MaxPool without Indices)
    inference_only: int | None = None  # position of a training_mode input that must be absent or false


REGISTRY: dict[str, list[Handler]] = {}


def op(*names: str, since: int = MIN_OPSET, until: int = MAX_OPSET, host: tuple[int, ...] = (),
       check: Check | None = None, max_rank: int | None = None, max_outputs: int | None = None,
       inference_only: int | None = None) -> Callable[[Fn], Fn]:
    """Register ``fn`` for each op type in ``names`` at opsets ``since`` to ``until`` (inclusive)."""

    def deco(fn: Fn) -> Fn:
        for n in names:
            for h in REGISTRY.get(n, []):
                if not (until < h.since or since > h.until):
                    raise ValueError(f"{n}: opsets {since}-{until} overlap a registered handler")
            REGISTRY.setdefault(n, []).append(Handler(n, since, until, fn, check, host, max_rank, max_outputs,
                                                      inference_only))
        return fn

    return deco


def lookup(op_type: str, opset: int) -> Handler | None:
    _load()
    for h in REGISTRY.get(op_type, []):
        if h.since <= opset <= h.until:
            return h
    return None


def supported_ops() -> list[str]:
    _load()
    return sorted(REGISTRY)


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        from . import elementwise, nn, tensor  # noqa: F401  (they register their handlers)

        _loaded = True


def host(a: Any) -> Any:
    """A (small) array as NumPy, from either backend."""
    if a is None or isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return np.asarray(get() if callable(get) else a)


def ints(a: Any) -> list[int]:
    return [int(v) for v in np.asarray(host(a)).reshape(-1)]


def axis_of(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis

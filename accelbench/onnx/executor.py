"""Walk a :class:`accelbench.onnx.planner.Plan` on NumPy or CuPy.

Constants are uploaded once. Each step receives arrays of one module: when every array input of a step
is a host value (the remains of a shape computation on the GPU), the step runs on NumPy and its result
stays on the host; otherwise host values are moved to the device first. Inputs a handler declares as
``host`` (shapes, axes, pads) are always given as NumPy. After a step, the values whose last reader it
was are dropped, so the memory held is the live set of the plan.

``dtype="float16"`` runs the float graph in half precision (``"float64"``: in double, the reference
engine's check): float32 constants and inputs are cast once; ``run_host`` returns float32 for half.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ModelError
from . import ops
from .importer import q
from .planner import Plan, Step


def release_host_memory() -> None:
    """Give the heap that parsing and planning left free back to the OS (glibc ``malloc_trim``): loading
    a protobuf of 100 MB of weights, inferring its shapes and copying the weights out leaves ~250 MB of
    freed but mapped heap behind, which would count against every later measurement of this process."""
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(Exception):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class Executor:
    def __init__(self, plan: Plan, xp: Any = np, dtype: str | None = None) -> None:
        self.plan = plan
        self.xp = xp
        self.half = dtype == "float16"
        self.cast = np.dtype(dtype) if dtype in ("float16", "float64") else None
        self.host_consts: dict[str, np.ndarray] = {}
        self.consts: dict[str, Any] = {}
        for n, v in plan.constants.items():
            hv = v.astype(self.cast) if self.cast is not None and v.dtype == np.float32 else v
            self.host_consts[n] = hv
            self.consts[n] = hv if xp is np else xp.asarray(hv)
        self.calls = [ops.Call(xp, s.attrs, plan.opset, len(s.outputs), s.name) for s in plan.steps]
        release_host_memory()

    def prepare_inputs(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Feeds on this executor's device and dtype (an untimed step)."""
        out = {}
        for k, v in feeds.items():
            a = np.asarray(v) if isinstance(v, (list, tuple, float, int)) else v
            if self.cast is not None and a.dtype == np.float32:
                a = a.astype(self.cast)
            out[k] = self.xp.asarray(a) if self.xp is not np else np.asarray(a)
        return out

    def _arg(self, env: dict[str, Any], n: str, to_host: bool) -> Any:
        if not n:
            return None
        if n in env:
            v = env[n]
            return ops.host(v) if to_host else v
        if n in self.consts:
            return self.host_consts[n] if to_host else self.consts[n]
        raise KeyError(n)

    def run(self, feeds: dict[str, Any], on_step: Callable[[Step, float], None] | None = None,
            sync: Callable[[], None] | None = None) -> list[Any]:
        """Outputs (arrays of this executor's module) for ``feeds`` (already prepared). ``on_step(step,
        seconds)`` times each step (after ``sync``): for profiling only, it serialises the device."""
        env = dict(feeds)
        xp = self.xp
        for st, call in zip(self.plan.steps, self.calls, strict=True):
            h = st.handler
            try:
                args = [self._arg(env, n, i in h.host) for i, n in enumerate(st.inputs)]
            except KeyError as e:
                raise ModelError(f"node {q(st.name)} ({q(st.op_type)}): input {q(str(e.args[0]))} is not "
                                 "computed by any node, initializer or graph input", self.plan.file) from None
            mod = np
            if xp is not np:
                dev = [i for i, a in enumerate(args) if a is not None and i not in h.host
                       and not isinstance(a, np.ndarray)]
                if dev:
                    mod = xp
                    args = [xp.asarray(a) if (i not in h.host and isinstance(a, np.ndarray)) else a
                            for i, a in enumerate(args)]
            call.xp = mod
            t0 = time.perf_counter() if on_step else 0.0
            try:
                outs = h.fn(call, args)
            except (ValueError, TypeError, IndexError, np.exceptions.AxisError) as e:
                raise ModelError(f"node {q(st.name)} ({q(st.op_type)}): {e}", self.plan.file) from None
            if on_step is not None:
                if sync is not None:
                    sync()
                on_step(st, time.perf_counter() - t0)
            for n, v in zip(st.outputs, outs, strict=False):
                if n:
                    env[n] = v
            for n in st.free:
                env.pop(n, None)
        return [env[n] if n in env else self.consts[n] for n in self.plan.outputs]

    def run_host(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Outputs as NumPy arrays in the model's declared dtypes."""
        outs = self.run(self.prepare_inputs(feeds))
        res = []
        for o in outs:
            a = ops.host(o)
            if self.half and a.dtype == np.float16:
                a = a.astype(np.float32)
            res.append(a)
        return res

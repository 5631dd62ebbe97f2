"""Memory-bound kernels: STREAM triad, sum over an axis, softmax over the last axis.

Work models count the minimum traffic (each input read once, each output written once), so GB/s is
comparable with STREAM and with the device's peak bandwidth even where an implementation makes more
passes (NumPy's triad is two ufunc passes; the GPU's is one fused kernel: ``variant`` records which).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ._common import MAX_ELEMENTS, Dim, FloatDType, host64, itemsize, poisoned, uniform
from .base import BaseParams, Check, Params, Work, Workload, register

TRIAD_SCALAR = 3.0  # STREAM's scalar


class VectorParams(Params):
    n: int = Dim(1 << 24, le=MAX_ELEMENTS, description="elements per array")
    dtype: FloatDType = "float32"


class MatrixParams(Params):
    rows: int = Dim(4096, description="rows")
    cols: int = Dim(4096, description="columns (the contiguous axis)")
    dtype: FloatDType = "float32"

    @model_validator(mode="after")
    def _check(self) -> MatrixParams:
        if self.rows * self.cols > MAX_ELEMENTS:
            raise ValueError(f"rows*cols = {self.rows * self.cols} elements, more than {MAX_ELEMENTS}")
        return self


class ReduceParams(MatrixParams):
    axis: Literal[0, 1] = Field(1, description="1: sum each row (contiguous); 0: sum each column (strided)")


def _acc_dtype(dtype: str) -> str:
    # fp16 sums accumulate and are returned in fp32 on both backends: an fp16 running sum of thousands of
    # terms loses digits (NumPy's strided axis-0 sum would accumulate in fp16), which is not what a DL
    # framework does.
    return "float32" if dtype == "float16" else dtype


@lru_cache(maxsize=1)
def _triad_kernel() -> Any:
    import cupy

    return cupy.ElementwiseKernel("T b, T c, T s", "T a", "a = b + s * c", "accelbench_stream_triad")


@register
class Triad(Workload):
    """STREAM triad a = b + s*c."""

    name = "triad"
    family = "elementwise"
    Params = VectorParams
    description = "STREAM triad a = b + s*c"

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        p: Any = params
        return Work(flops=2.0 * p.n, bytes=3.0 * p.n * itemsize(p.dtype), items=float(p.n), item_unit="elements")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        p: Any = params
        dev = 3 * p.n * itemsize(p.dtype)
        return dev if backend == "gpu" else dev + 8 * 4 * p.n

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        if backend == "gpu":
            return {"impl": "one fused cupy.ElementwiseKernel"}
        return {"impl": "numpy: multiply(c, s, out=a); add(a, b, out=a) (two passes)"}

    def setup(self) -> None:
        p: Any = self.p
        rng = self.rng()
        self.b = uniform(self.xp, rng, (p.n,), p.dtype)
        self.c = uniform(self.xp, rng, (p.n,), p.dtype)
        self.a = poisoned(self.xp, (p.n,), p.dtype)
        self.s = np.dtype(p.dtype).type(TRIAD_SCALAR)
        if self.backend.is_gpu:
            self._kernel = _triad_kernel()
            self.run = self._run_gpu  # type: ignore[method-assign]

    def _run_gpu(self) -> None:
        self._kernel(self.b, self.c, self.s, self.a)

    def run(self) -> None:
        np.multiply(self.c, self.s, out=self.a)
        np.add(self.a, self.b, out=self.a)

    def output(self) -> Any:
        return self.a

    def reference(self) -> np.ndarray:
        return host64(self.backend, self.b) + TRIAD_SCALAR * host64(self.backend, self.c)


@register
class Reduction(Workload):
    """out = x.sum(axis), x of shape (rows, cols)."""

    name = "reduction"
    family = "reduction"
    Params = ReduceParams
    description = "sum over one axis of a 2-D array (fp16 accumulates in fp32)"

    @classmethod
    def _out_len(cls, p: Any) -> int:
        return int(p.rows if p.axis == 1 else p.cols)

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        p: Any = params
        n = p.rows * p.cols
        out = cls._out_len(p)
        return Work(flops=float(n - out), bytes=float(n * itemsize(p.dtype) + out * itemsize(_acc_dtype(p.dtype))),
                    items=float(n), item_unit="elements")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        p: Any = params
        dev = p.rows * p.cols * itemsize(p.dtype) + cls._out_len(p) * 4 * 2
        return dev if backend == "gpu" else dev + 8 * p.rows * p.cols + 24 * cls._out_len(p)

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        p: Any = params
        return {"impl": f"{'cupy' if backend == 'gpu' else 'numpy'}.sum(axis={p.axis}, dtype={_acc_dtype(p.dtype)})",
                "accumulate": _acc_dtype(p.dtype)}

    def tolerance(self) -> float:
        from .base import TOLERANCE

        return TOLERANCE[self.p.dtype]  # type: ignore[attr-defined]

    def setup(self) -> None:
        p: Any = self.p
        self.x = uniform(self.xp, self.rng(), (p.rows, p.cols), p.dtype)
        self.acc = np.dtype(_acc_dtype(p.dtype))
        self.out = poisoned(self.xp, (self._out_len(p),), _acc_dtype(p.dtype))
        self.axis = int(p.axis)
        self._sum = self.xp.sum

    def run(self) -> None:
        self._sum(self.x, axis=self.axis, dtype=self.acc, out=self.out)

    def output(self) -> Any:
        return self.out

    def reference(self) -> np.ndarray:
        return host64(self.backend, self.x).sum(axis=self.axis)


@register
class Softmax(Workload):
    """y = exp(x - max) / sum(exp(x - max)) over the last axis of (rows, cols)."""

    name = "softmax"
    family = "elementwise"
    Params = MatrixParams
    description = "numerically stable softmax over the last axis"

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        p: Any = params
        n = p.rows * p.cols
        # per element: max-compare, subtract, exp, add, divide (exp counted as one operation)
        return Work(flops=5.0 * n, bytes=2.0 * n * itemsize(p.dtype), items=float(p.rows), item_unit="rows")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        p: Any = params
        n = p.rows * p.cols
        dev = 2 * n * itemsize(p.dtype) + 2 * p.rows * 4
        return dev if backend == "gpu" else dev + 8 * 4 * n

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        p: Any = params
        return {"impl": "5 array passes: max, subtract, exp, sum, divide",
                "accumulate": _acc_dtype(p.dtype)}

    def setup(self) -> None:
        p: Any = self.p
        # inputs spread over [-8, 8] so exp() spans many magnitudes and the max-subtraction matters
        self.x = uniform(self.xp, self.rng(), (p.rows, p.cols), p.dtype, -8.0, 8.0)
        self.y = poisoned(self.xp, (p.rows, p.cols), p.dtype)
        self.mx = self.xp.empty((p.rows, 1), dtype=p.dtype)
        self.acc = np.dtype(_acc_dtype(p.dtype))
        self.sm = self.xp.empty((p.rows, 1), dtype=self.acc)
        xp = self.xp
        self._max, self._sub, self._exp, self._sum, self._div = xp.max, xp.subtract, xp.exp, xp.sum, xp.divide

    def run(self) -> None:
        x, y = self.x, self.y
        self._max(x, axis=1, keepdims=True, out=self.mx)
        self._sub(x, self.mx, out=y)
        self._exp(y, out=y)
        self._sum(y, axis=1, keepdims=True, dtype=self.acc, out=self.sm)
        self._div(y, self.sm, out=y)

    def output(self) -> Any:
        return self.y

    def reference(self) -> np.ndarray:
        x = host64(self.backend, self.x)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def check(self) -> Check:
        # rel_error over the whole matrix; also every row must sum to 1 within the dtype's tolerance
        chk = super().check()
        if chk.passed:
            rs = self.backend.asnumpy(self.y).astype(np.float64).sum(axis=1)
            worst = float(np.max(np.abs(rs - 1.0))) if rs.size else 0.0
            if not worst <= max(chk.tolerance, 1e-6) * 10:
                chk.passed = False
                chk.message = f"a row sums to {1.0 + worst:.6g}, not 1"
        return chk

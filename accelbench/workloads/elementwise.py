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


# STREAM triad with 16-byte loads and stores, one vector per thread, no grid-stride loop (as BabelStream's
# CUDA triad). CuPy's ElementwiseKernel moves one 4-byte element per thread per iteration: on an H100
# (first GPU session, 1 GiB fp32 arrays) that reached 2527 GB/s, 85% of the 2979 GB/s device-to-device
# copy, where STREAM-style triads reach 90% or more. fp16 goes through f32 (cvt PTX, no header needed),
# one rounding per element as with an FMA. The scalar tail covers n not a multiple of the vector width.
_TRIAD_VEC_SRC = r"""
__device__ __forceinline__ float h2f(unsigned short h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ unsigned short f2h(float f) { unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ unsigned int triad_h2(unsigned int b, unsigned int c, float s) {
    return (unsigned int)f2h(h2f((unsigned short)(b & 0xffff)) + s * h2f((unsigned short)(c & 0xffff)))
         | ((unsigned int)f2h(h2f((unsigned short)(b >> 16)) + s * h2f((unsigned short)(c >> 16))) << 16);
}
extern "C" __global__ void accelbench_triad_f32x4(const float* __restrict__ b, const float* __restrict__ c,
                                                  float s, float* __restrict__ a, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long nv = n / 4;
    if (i < nv) {
        float4 x = reinterpret_cast<const float4*>(b)[i], y = reinterpret_cast<const float4*>(c)[i];
        reinterpret_cast<float4*>(a)[i] = make_float4(x.x + s * y.x, x.y + s * y.y, x.z + s * y.z, x.w + s * y.w);
    }
    long long t = nv * 4 + i;
    if (i < 4 && t < n) a[t] = b[t] + s * c[t];
}
extern "C" __global__ void accelbench_triad_f16x8(const unsigned short* __restrict__ b,
                                                  const unsigned short* __restrict__ c, float s,
                                                  unsigned short* __restrict__ a, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long nv = n / 8;
    if (i < nv) {
        uint4 x = reinterpret_cast<const uint4*>(b)[i], y = reinterpret_cast<const uint4*>(c)[i];
        reinterpret_cast<uint4*>(a)[i] = make_uint4(triad_h2(x.x, y.x, s), triad_h2(x.y, y.y, s),
                                                    triad_h2(x.z, y.z, s), triad_h2(x.w, y.w, s));
    }
    long long t = nv * 8 + i;
    if (i < 8 && t < n) a[t] = f2h(h2f(b[t]) + s * h2f(c[t]));
}
"""
_TRIAD_BLOCK = 256


class _VecTriad:
    """Launches the vectorised triad for float32 (4 per thread) or float16 (8 per thread)."""

    def __init__(self, dtype: str) -> None:
        import cupy

        self.width = 4 if dtype == "float32" else 8
        name = "accelbench_triad_f32x4" if dtype == "float32" else "accelbench_triad_f16x8"
        self.kernel = cupy.RawModule(code=_TRIAD_VEC_SRC, options=("--std=c++14",)).get_function(name)

    def __call__(self, b: Any, c: Any, s: Any, a: Any) -> None:
        n = a.size
        threads = max(n // self.width, self.width)
        blocks = (threads + _TRIAD_BLOCK - 1) // _TRIAD_BLOCK
        self.kernel((blocks,), (_TRIAD_BLOCK,), (b, c, np.float32(s), a, np.int64(n)))


def _aligned(*arrays: Any) -> bool:
    return all(x.data.ptr % 16 == 0 and x.flags.c_contiguous for x in arrays)


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
            if getattr(params, "dtype", None) in ("float32", "float16"):
                return {"impl": "vectorised RawKernel (16-byte loads/stores, one vector per thread)"}
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
            vec = p.dtype in ("float32", "float16") and _aligned(self.a, self.b, self.c)
            self._kernel = _VecTriad(p.dtype) if vec else _triad_kernel()
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

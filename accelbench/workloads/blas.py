"""GEMM workloads: C = op(A) @ op(B), single and batched, fp32 / fp16 / fp64, and TF32 math on the GPU.

Both backends call ``xp.matmul(a, b, out=c)``: OpenBLAS/MKL sgemm/dgemm through NumPy on the CPU,
cublasGemmEx through CuPy on the GPU. NumPy has no BLAS path for float16 (it runs a scalar loop, about
0.4 GFLOP/s on one core here), so fp16 on the CPU is a faithful but slow baseline: keep its shapes small.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import model_validator

from ._common import (
    MAX_ELEMENTS,
    Dim,
    FloatDType,
    GpuMathMode,
    gpu_math_variant,
    host64,
    itemsize,
    poisoned,
    sample_rows,
    uniform,
)
from .base import TOLERANCE, BaseParams, Check, Params, Work, Workload, register, rel_error

# Validate every output row while the float64 reference costs at most this many multiply-adds; above it,
# check a seeded sample of rows (the first and last always) so a 8192^3 check does not cost a minute.
FULL_CHECK_MACS = 1 << 31
SAMPLED_ROWS = 256


class GemmParams(Params):
    m: int = Dim(1024, description="rows of C and op(A)")
    n: int = Dim(1024, description="columns of C and op(B)")
    k: int = Dim(1024, description="inner dimension")
    dtype: FloatDType = "float32"
    math: Literal["default", "tf32"] = "default"  # tf32: float32 storage, TF32 tensor-core math (GPU)
    transa: bool = False  # A stored as (k, m) and used transposed (DeepBench's a_t)
    transb: bool = False  # B stored as (n, k) and used transposed (DeepBench's b_t)

    @model_validator(mode="after")
    def _check(self) -> GemmParams:
        if self.math == "tf32" and self.dtype != "float32":
            raise ValueError(f"math=tf32 applies to float32 storage only, not {self.dtype}")
        for what, size in (("A", self.m * self.k), ("B", self.k * self.n), ("C", self.m * self.n)):
            if size > MAX_ELEMENTS:
                raise ValueError(f"{what} would have {size} elements, more than the {MAX_ELEMENTS} allowed")
        return self


class BatchedGemmParams(GemmParams):
    batch: int = Dim(16, le=1 << 16, description="independent GEMMs in one call")

    @model_validator(mode="after")
    def _check_batch(self) -> BatchedGemmParams:
        total = self.batch * max(self.m * self.k, self.k * self.n, self.m * self.n)
        if total > MAX_ELEMENTS:
            raise ValueError(f"a batched operand would have {total} elements, more than {MAX_ELEMENTS}")
        return self


def _variant(p: Any, backend: str) -> dict[str, Any]:
    if backend == "gpu":
        v = gpu_math_variant(p.dtype, p.math)
        v["impl"] = "cupy.matmul (cublasGemmEx" + (", strided batched)" if hasattr(p, "batch") else ")")
        return v
    impl = "numpy.matmul (BLAS gemm" + (" per batch item)" if hasattr(p, "batch") else ")")
    if p.dtype == "float16":
        impl = "numpy.matmul (no BLAS for float16: NumPy's scalar loop)"
    return {"math": {"float16": "fp16", "float32": "fp32", "float64": "fp64"}[p.dtype], "impl": impl}


def _unsupported_tf32(cls: type[Workload], p: Any, backend: str) -> str | None:
    if p.math == "tf32" and backend == "cpu":
        return "TF32 is a GPU tensor-core math mode; the CPU backend has no TF32"
    return None


@register
class Gemm(Workload):
    """C = op(A) @ op(B)."""

    name = "gemm"
    family = "blas"
    Params = GemmParams
    description = "dense matrix multiply C = op(A) @ op(B) (fp32, fp16, fp64; TF32 math on the GPU)"

    # ---- models (pure functions of the parameters)
    @classmethod
    def work(cls, params: BaseParams) -> Work:
        p: Any = params
        b = getattr(p, "batch", 1)
        return Work(flops=2.0 * b * p.m * p.n * p.k,
                    bytes=float(b * itemsize(p.dtype) * (p.m * p.k + p.k * p.n + p.m * p.n)),
                    items=float(b * p.m * p.n), item_unit="outputs")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        p: Any = params
        b = getattr(p, "batch", 1)
        a_, b_, c_ = b * p.m * p.k, b * p.k * p.n, b * p.m * p.n
        dev = itemsize(p.dtype) * (a_ + b_ + c_)
        if backend == "gpu":
            return dev + (32 << 20)  # cuBLAS workspace
        # the CPU also holds the float64 reference: A, B, C and the output converted for comparison
        return dev + 8 * (a_ + b_ + 2 * c_)

    @classmethod
    def unsupported(cls, params: BaseParams, backend: str) -> str | None:
        return _unsupported_tf32(cls, params, backend) or super().unsupported(params, backend)

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        return _variant(params, backend)

    def tolerance(self) -> float:
        p: Any = self.p
        if p.math == "tf32" and self.backend.is_gpu:
            return TOLERANCE["tf32"]
        return TOLERANCE[p.dtype]

    # ---- life cycle
    def _shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        p: Any = self.p
        lead: tuple[int, ...] = (p.batch,) if hasattr(p, "batch") else ()
        a = lead + ((p.k, p.m) if p.transa else (p.m, p.k))
        b = lead + ((p.n, p.k) if p.transb else (p.k, p.n))
        return a, b, lead + (p.m, p.n)

    @staticmethod
    def _t(x: Any, trans: bool) -> Any:
        return x.swapaxes(-1, -2) if trans else x  # a view: BLAS gets a transpose flag, not a copy

    def setup(self) -> None:
        p: Any = self.p
        self._math = GpuMathMode(self.xp, p.dtype, p.math) if self.backend.is_gpu else None
        rng = self.rng()
        sa, sb, sc = self._shapes()
        self.a = self._t(uniform(self.xp, rng, sa, p.dtype), p.transa)
        self.b = self._t(uniform(self.xp, rng, sb, p.dtype), p.transb)
        self.c = poisoned(self.xp, sc, p.dtype)

    def run(self) -> None:
        # looked up at each call (not bound once) so that a CUDA-graph capture's capturable matmul
        # (accelbench.ops.capture.capturable) takes over while the graph mode records this call
        self.xp.matmul(self.a, self.b, out=self.c)

    def output(self) -> Any:
        return self.c

    def reference(self) -> np.ndarray:
        return host64(self.backend, self.a) @ host64(self.backend, self.b)

    def check(self) -> Check:
        p: Any = self.p
        b = getattr(p, "batch", 1)
        out = self.backend.asnumpy(self.c)
        a64, b64 = host64(self.backend, self.a), host64(self.backend, self.b)
        tol = self.tolerance()
        if b * p.m * p.n * p.k <= FULL_CHECK_MACS:
            err, ref_name = rel_error(out, a64 @ b64), "float64 NumPy"
        else:
            rows = sample_rows(p.m, SAMPLED_ROWS, np.random.default_rng(self.seed + 1))
            err = rel_error(out[..., rows, :], a64[..., rows, :] @ b64)
            ref_name = f"float64 NumPy ({len(rows)} of {p.m} rows per matrix)"
        ok = bool(err <= tol)
        return Check(passed=ok, rel_error=err, tolerance=tol, reference=ref_name,
                     message="" if ok else f"relative error {err:.3g} exceeds tolerance {tol:.3g}")

    def teardown(self) -> None:
        if getattr(self, "_math", None) is not None:
            self._math.restore()  # type: ignore[union-attr]
        super().teardown()


@register
class BatchedGemm(Gemm):
    """C[i] = op(A[i]) @ op(B[i]) for i < batch, in one call."""

    name = "batched_gemm"
    Params = BatchedGemmParams
    description = "batch of independent matrix multiplies in one call (strided batched GEMM)"

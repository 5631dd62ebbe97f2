"""Matrix products that a CUDA-graph capture can record, on CuPy's own cuBLAS handle.

CuPy (up to 14 at least) refuses every cuBLAS call while a stream is capturing: its ``cublas.setStream``
raises ``NotImplementedError: calling cuBLAS API during stream capture is currently unsupported``
(cupy/cupy#6290), although cuBLAS itself supports capture (its "CUDA Graphs support" section: everything
but results written to host memory; since CUDA 12.2 its workspace comes from cudaMallocAsync, which PyTorch
relies on for ``torch.cuda.graph``). So a CuPy train step, whose convolutions and dense layers are GEMMs,
could never be captured, and the expected fix for launch-bound small batches was out of reach.

:func:`capturable` routes ``cupy.matmul`` for the duration of a capture to :func:`matmul_cublas`, which
calls ``cublasGemmEx`` / ``cublasGemmStridedBatchedEx`` through ctypes in the libcublas CuPy has loaded,
with CuPy's handle on the current stream and the compute type CuPy would have chosen (so TF32 settings
carry over). Outside the context nothing changes: eager steps keep using CuPy's matmul.

The layout logic (:func:`gemm_plan`: which operand is transposed, leading dimensions, batch strides) is a
pure function of shapes and strides, tested on the CPU against an emulated column-major GEMM.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

OP_N, OP_T = 0, 1
# cudaDataType_t and cublasComputeType_t values (cuda_runtime / cublas_api.h)
_R_32F, _R_64F, _R_16F = 0, 1, 2
_COMPUTE_32F, _COMPUTE_32F_PEDANTIC, _COMPUTE_64F, _COMPUTE_32F_FAST_TF32 = 68, 69, 70, 77
_GEMM_DEFAULT = -1
_POINTER_MODE_HOST = 0


@dataclass(frozen=True)
class Operand:
    """How cuBLAS (column-major) reads one row-major operand: ``trans`` applied to the column-major matrix
    at the pointer with leading dimension ``ld``; ``batch_stride`` elements between batch items."""

    trans: int
    ld: int
    batch_stride: int


@dataclass(frozen=True)
class GemmPlan:
    """C (batch, m, n), row-major and contiguous, = A (batch, m, k) @ B (batch, k, n).

    cuBLAS computes the column-major (n x m) matrix C^T = B^T A^T, so its first operand is B and its
    second A: ``cublasGemm*(opB, opA, n, m, k, B, ldb, A, lda, C, ldc=n)``."""

    m: int
    n: int
    k: int
    batch: int
    a: Operand
    b: Operand
    ldc: int
    out_shape: tuple[int, ...]


def _operand(rows: int, cols: int, sr: int, sc: int, sb: int) -> Operand | None:
    """The column-major reading of a row-major (rows x cols) matrix with element strides (sr, sc) whose
    transpose cuBLAS needs (a (cols x rows) column-major matrix): op N on the natural column-major
    (cols x rows) matrix when rows are contiguous, op T on a (rows x cols) one when columns are."""
    if sb < 0:
        return None
    if (sc == 1 or cols == 1) and (sr >= max(1, cols) or rows == 1):
        return Operand(OP_N, max(sr, cols, 1) if rows == 1 else sr, sb)
    if (sr == 1 or rows == 1) and (sc >= max(1, rows) or cols == 1):
        return Operand(OP_T, max(sc, rows, 1) if cols == 1 else sc, sb)
    return None


def gemm_plan(a_shape: tuple[int, ...], a_strides: tuple[int, ...], b_shape: tuple[int, ...],
              b_strides: tuple[int, ...], itemsize: int) -> GemmPlan | None:
    """The cuBLAS call for ``a @ b`` (2-D, or 3-D batched with a 2-D operand broadcast), strides in bytes.
    None when the operands need a copy first (no unit stride, negative or uneven strides) or the shapes are
    not a matrix product this handles (the caller then uses a contiguous copy or CuPy)."""
    if len(a_shape) not in (2, 3) or len(b_shape) not in (2, 3):
        return None
    if any(s % itemsize for s in (*a_strides, *b_strides)):
        return None
    sa = [s // itemsize for s in a_strides]
    sb_ = [s // itemsize for s in b_strides]
    ba, bb = (a_shape[0] if len(a_shape) == 3 else 1), (b_shape[0] if len(b_shape) == 3 else 1)
    if ba != bb and 1 not in (ba, bb):
        return None
    batch = max(ba, bb)
    m, k = a_shape[-2:]
    k2, n = b_shape[-2:]
    if k != k2 or min(m, n, k, batch) < 1:
        return None
    a_bs = sa[0] if len(a_shape) == 3 and ba > 1 else 0
    b_bs = sb_[0] if len(b_shape) == 3 and bb > 1 else 0
    oa = _operand(m, k, sa[-2], sa[-1], a_bs)
    ob = _operand(k, n, sb_[-2], sb_[-1], b_bs)
    if oa is None or ob is None:
        return None
    out_shape = (m, n) if len(a_shape) == 2 and len(b_shape) == 2 else (batch, m, n)
    return GemmPlan(m, n, k, batch, oa, ob, max(n, 1), out_shape)


# ---------------------------------------------------------------- the ctypes call (GPU only)

_LIB: Any = None


def _libcublas(cp: Any) -> Any:
    """The libcublas CuPy itself loaded (its handle belongs to that copy), found in this process's maps."""
    global _LIB
    if _LIB is not None:
        return _LIB
    cp.cuda.device.get_cublas_handle()  # makes CuPy load the library and create its handle
    path = None
    with contextlib.suppress(OSError), open("/proc/self/maps") as f:
        for line in f:
            if "/libcublas.so" in line:
                path = line.split()[-1]
                break
    lib = ctypes.CDLL(path or ctypes.util.find_library("cublas") or "libcublas.so")
    vp, i, ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
    lib.cublasSetStream_v2.argtypes = [vp, vp]
    lib.cublasGetPointerMode_v2.argtypes = [vp, ctypes.POINTER(i)]
    lib.cublasSetPointerMode_v2.argtypes = [vp, i]
    lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i]
    lib.cublasGemmStridedBatchedEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, ll, vp, i, i, ll, vp, vp, i, i,
                                               ll, i, i, i]
    _LIB = lib
    return lib


def _types(cp: Any, dtype: np.dtype) -> tuple[int, int, Any]:
    """(cudaDataType, cublasComputeType, scalar ctype) as CuPy's matmul would choose them."""
    if dtype == np.float16:
        return _R_16F, _COMPUTE_32F, ctypes.c_float
    if dtype == np.float64:
        return _R_64F, _COMPUTE_64F, ctypes.c_double
    compute = _COMPUTE_32F
    with contextlib.suppress(Exception):
        from cupy._core import _routines_linalg as rl

        ct = int(rl.get_compute_type(np.float32))
        if ct == getattr(rl, "COMPUTE_TYPE_TF32", 7):
            compute = _COMPUTE_32F_FAST_TF32
        elif ct == getattr(rl, "COMPUTE_TYPE_PEDANTIC", 2):
            compute = _COMPUTE_32F_PEDANTIC
    return _R_32F, compute, ctypes.c_float


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


def matmul_cublas(cp: Any, a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` for CuPy arrays through cublasGemmEx / cublasGemmStridedBatchedEx, capturable."""
    if a.dtype != b.dtype or a.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"capturable matmul handles matching float16/32/64 operands, got {a.dtype} and {b.dtype}")
    plan = gemm_plan(a.shape, a.strides, b.shape, b.strides, a.itemsize)
    if plan is None:
        a2, b2 = cp.ascontiguousarray(a), cp.ascontiguousarray(b)
        plan = gemm_plan(a2.shape, a2.strides, b2.shape, b2.strides, a.itemsize)
        if plan is None:
            raise ValueError(f"capturable matmul cannot multiply shapes {a.shape} and {b.shape}")
        a, b = a2, b2
    target = out
    if out is None or out.shape != plan.out_shape or out.dtype != a.dtype or not out.flags.c_contiguous:
        target = cp.empty(plan.out_shape, dtype=a.dtype)
    lib = _libcublas(cp)
    handle = ctypes.c_void_p(cp.cuda.device.get_cublas_handle())
    _check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(cp.cuda.get_current_stream().ptr)), "cublasSetStream")
    mode = ctypes.c_int(0)
    _check(lib.cublasGetPointerMode_v2(handle, ctypes.byref(mode)), "cublasGetPointerMode")
    if mode.value != _POINTER_MODE_HOST:
        _check(lib.cublasSetPointerMode_v2(handle, _POINTER_MODE_HOST), "cublasSetPointerMode")
    dt, compute, scalar = _types(cp, a.dtype)
    alpha, beta = scalar(1.0), scalar(0.0)
    pa, pb, pc = (ctypes.c_void_p(x.data.ptr) for x in (a, b, target))
    try:
        if plan.batch == 1 and len(plan.out_shape) == 2:
            st = lib.cublasGemmEx(handle, plan.b.trans, plan.a.trans, plan.n, plan.m, plan.k, ctypes.byref(alpha),
                                  pb, dt, plan.b.ld, pa, dt, plan.a.ld, ctypes.byref(beta), pc, dt, plan.ldc,
                                  compute, _GEMM_DEFAULT)
            _check(st, "cublasGemmEx")
        else:
            st = lib.cublasGemmStridedBatchedEx(
                handle, plan.b.trans, plan.a.trans, plan.n, plan.m, plan.k, ctypes.byref(alpha),
                pb, dt, plan.b.ld, plan.b.batch_stride, pa, dt, plan.a.ld, plan.a.batch_stride,
                ctypes.byref(beta), pc, dt, plan.ldc, plan.m * plan.n, plan.batch, compute, _GEMM_DEFAULT)
            _check(st, "cublasGemmStridedBatchedEx")
    finally:
        if mode.value != _POINTER_MODE_HOST:
            lib.cublasSetPointerMode_v2(handle, mode.value)
    if target is not out and out is not None:
        out[...] = target
        return out
    return target


@contextlib.contextmanager
def capturable(cp: Any) -> Iterator[None]:
    """Within the block, ``cupy.matmul`` (what ``xp.matmul`` resolves to for CuPy arrays) goes through
    :func:`matmul_cublas`, so GEMMs on a capturing stream are recorded instead of refused. Only arguments
    ``(a, b, out=None)`` are taken over; anything else still reaches CuPy's matmul."""
    original = cp.matmul

    def matmul(a: Any, b: Any, /, out: Any = None, **kw: Any) -> Any:
        if kw or not (isinstance(a, cp.ndarray) and isinstance(b, cp.ndarray)) or a.ndim not in (2, 3) \
                or b.ndim not in (2, 3):
            return original(a, b, out=out, **kw)
        return matmul_cublas(cp, a, b, out)

    cp.matmul = matmul
    try:
        yield
    finally:
        cp.matmul = original

"""GEMM into a preallocated output, with accumulation, on the BLAS NumPy itself uses; ``matmul`` for both
array modules.

``numpy.matmul`` cannot accumulate (``C = A @ B + beta * C``), which the CPU shifted-GEMM convolution
needs (:mod:`accelbench.ops.conv_shift`). :func:`gemm` calls the ``cblas_?gemm`` of the OpenBLAS that
NumPy's wheels bundle (``numpy.libs/libscipy_openblas64_*``, found with ctypes), so it shares NumPy's
thread pool. When that library is not found (another NumPy build) it falls back to SciPy's
``scipy.linalg.blas`` wrappers, which bring a second OpenBLAS with its own threads. That fallback is
correct but slower: OpenBLAS worker threads spin for about 0.1 s after each call, so alternating GEMMs
between two BLAS libraries in one training step left one library's idle threads spinning on the cores
the other needed (measured on the 2-core machine: the first NumPy GEMM after a run of SciPy GEMMs took
40-50 ms instead of 1 ms). For the same reason every CPU GEMM of a model step goes through
:func:`matmul` (one BLAS, one pool); on CuPy :func:`matmul` is ``cupy.matmul``, looked up at each call.

Operands are 2-D arrays with unit stride along one axis (C-contiguous, a transposed view, or a block of
rows or columns of a larger matrix); anything else is copied first.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.linalg import blas as _scipy_blas

__all__ = ["backend", "gemm", "matmul", "transpose"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _find_numpy_openblas(name: str, args: Callable[[Any], list[Any]]) -> dict[np.dtype, Callable[..., None]]:
    """``cblas_s<name>``/``cblas_d<name>`` of NumPy's bundled OpenBLAS (64-bit integer interface), typed
    with ``args(scalar ctype)``, or {} when the library or either symbol is not there."""
    here = os.path.dirname(np.__file__)
    patterns = [os.path.join(here, "..", "numpy.libs", "*openblas64*"),  # Linux and Windows wheels
                os.path.join(here, ".dylibs", "*openblas64*")]  # macOS wheels
    for pat in patterns:
        for path in sorted(glob.glob(pat)):
            try:
                lib = ctypes.CDLL(path)  # already loaded by NumPy: this only returns its handle
            except OSError:
                continue
            found: dict[np.dtype, Callable[..., None]] = {}
            for dt, prefix, ct in ((_FLOATS[0], "s", ctypes.c_float), (_FLOATS[1], "d", ctypes.c_double)):
                sym = f"{prefix}{name}64_"
                fn = getattr(lib, f"scipy_cblas_{sym}", None) or getattr(lib, f"cblas_{sym}", None)
                if fn is None:
                    break
                fn.argtypes = args(ct)
                fn.restype = None
                found[dt] = fn
            if len(found) == 2:
                return found
    return {}


_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
# cblas_?gemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
_CBLAS = _find_numpy_openblas("gemm", lambda ct: [ctypes.c_int] * 3 + [_I64] * 3 + [ct, _PTR, _I64, _PTR, _I64,
                                                                                     ct, _PTR, _I64])
# cblas_?omatcopy(order, trans, rows, cols, alpha, a, lda, b, ldb): out-of-place scaled transpose
_OMATCOPY = _find_numpy_openblas("omatcopy", lambda ct: [ctypes.c_int] * 2 + [_I64] * 2 + [ct, _PTR, _I64, _PTR, _I64])
_SCIPY = {_FLOATS[0]: _scipy_blas.sgemm, _FLOATS[1]: _scipy_blas.dgemm}


def backend() -> str:
    """Which BLAS :func:`gemm` calls on NumPy arrays: ``numpy-openblas`` or ``scipy-blas`` (fallback)."""
    return "numpy-openblas" if _CBLAS else "scipy-blas"


def _rowmajor(a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(array, cblas trans flag, leading dimension) describing ``a`` to a row-major cblas call."""
    it = a.itemsize
    s0, s1 = a.strides
    if (s1 == it or a.shape[1] == 1) and s0 % it == 0 and s0 // it >= max(1, a.shape[1]):
        return a, _NO_TRANS, s0 // it
    if (s0 == it or a.shape[0] == 1) and s1 % it == 0 and s1 // it >= max(1, a.shape[0]):
        return a, _TRANS, s1 // it
    a = np.ascontiguousarray(a)
    return a, _NO_TRANS, max(1, a.shape[1])


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, beta: float = 0.0, alpha: float = 1.0,
         use: str | None = None) -> np.ndarray:
    """``out = alpha * a @ b + beta * out`` in place, for 2-D NumPy float32/float64 arrays of one dtype.
    ``out`` must have unit stride along its rows (C-contiguous, or a block of rows of one).
    ``use`` forces ``"numpy-openblas"`` or ``"scipy-blas"`` (tests); default: :func:`backend`."""
    dt = out.dtype
    if dt not in _FLOATS or a.dtype != dt or b.dtype != dt:
        raise TypeError(f"gemm: float32/float64 operands of one dtype needed, got {a.dtype}, {b.dtype} -> {dt}")
    m, k = a.shape
    k2, n = b.shape
    if k != k2 or tuple(out.shape) != (m, n):
        raise ValueError(f"gemm: {a.shape} @ {b.shape} does not fit an output of {out.shape}")
    use = use or backend()
    if m == 0 or n == 0:
        return out
    if k == 0:
        out *= beta
        return out
    if use == "numpy-openblas":
        if not _CBLAS:
            raise RuntimeError("gemm: NumPy's bundled OpenBLAS was not found")
        it = out.itemsize
        if not (out.strides[1] == it or n == 1) or out.strides[0] % it or out.strides[0] // it < n:
            raise ValueError("gemm: out needs unit stride along its rows")
        a, ta, lda = _rowmajor(a)
        b, tb, ldb = _rowmajor(b)
        _CBLAS[dt](_ROW_MAJOR, ta, tb, m, n, k, alpha, a.ctypes.data, lda, b.ctypes.data, ldb, beta,
                   out.ctypes.data, out.strides[0] // it)
        return out
    # SciPy's Fortran-order wrappers: out.T (n, m) = b.T @ a.T, with every operand Fortran-contiguous
    if not out.flags.c_contiguous:
        raise ValueError("gemm (scipy-blas): out must be C-contiguous")
    ops = []
    for x in (b, a):
        if x.flags.c_contiguous:
            ops.append((x.T, 0))
        elif x.flags.f_contiguous:
            ops.append((x, 1))
        else:
            ops.append((np.ascontiguousarray(x).T, 0))
    (bt, tb_), (at, ta_) = ops
    _SCIPY[dt](alpha, bt, at, beta=beta, c=out.T, overwrite_c=1, trans_a=tb_, trans_b=ta_)
    return out


def transpose(a: np.ndarray, out: np.ndarray, use: str | None = None) -> np.ndarray:
    """``out[...] = a.T`` for 2-D float32/float64 NumPy arrays with unit stride along their rows (C-contiguous
    or a block of columns of one). OpenBLAS's ``?omatcopy`` when found (a blocked transpose, ~2x NumPy's
    strided copy for a (64, 16000) float32 block in cache); ``use="numpy"`` forces NumPy's copy (tests)."""
    if a.ndim != 2 or tuple(out.shape) != (a.shape[1], a.shape[0]):
        raise ValueError(f"transpose: {a.shape} does not fit an output of {out.shape}")
    it = a.itemsize
    fn = _OMATCOPY.get(a.dtype) if use != "numpy" and a.dtype == out.dtype else None
    rows_ok = all(x.strides[1] == it and x.strides[0] % it == 0 and x.strides[0] // it >= x.shape[1] for x in (a, out))
    if fn is None or not rows_ok or a.size == 0:
        out[...] = a.T
        return out
    fn(_ROW_MAJOR, _TRANS, a.shape[0], a.shape[1], 1.0, a.ctypes.data, max(1, a.strides[0] // it), out.ctypes.data,
       max(1, out.strides[0] // it))
    return out


def matmul(xp: Any, a: Any, b: Any, out: Any) -> Any:
    """``out[...] = a @ b`` for 2-D arrays: :func:`gemm` on NumPy float arrays, ``xp.matmul`` otherwise."""
    if xp is np and out.dtype in _FLOATS and out.flags.c_contiguous and a.dtype == b.dtype == out.dtype:
        return gemm(a, b, out)
    return xp.matmul(a, b, out=out)

"""Helpers shared by the built-in kernel workloads: parameter types, seeded inputs, poisoned outputs,
exact checks and the GPU math-mode switch."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .base import Check

FloatDType = Literal["float64", "float32", "float16"]

# Bounds: positive sizes, and maxima that reject typos (an extra zero) long before the memory check.
MAX_DIM = 1 << 20  # one matrix/tensor dimension
MAX_ELEMENTS = 1 << 34  # elements in one buffer (64 GiB of fp32)
MAX_BYTES = 1 << 36  # one copy buffer (64 GiB)


def Dim(default: int, le: int = MAX_DIM, description: str = "") -> Any:  # noqa: N802 (a Field factory)
    return Field(default, ge=1, le=le, description=description)


def itemsize(dtype: str) -> int:
    return int(np.dtype(dtype).itemsize)


def uniform(xp: Any, rng: np.random.Generator, shape: tuple[int, ...], dtype: str,
            low: float = -1.0, high: float = 1.0) -> Any:
    """Seeded uniform values drawn on the host (so CPU and GPU see the same inputs for a seed) and moved
    to the backend. Draw every input from ONE generator so inputs differ from each other (A != B)."""
    # float32/float64 are drawn natively (a 16M-element fp32 input costs half the time and no float64
    # temporary); float16 is drawn as float32 and rounded.
    draw = np.float64 if dtype == "float64" else np.float32
    host = rng.random(size=shape, dtype=draw)
    host *= high - low
    host += low
    host = host.astype(dtype, copy=False)
    # uniform(-1, 1) rounded to fp16 can round a tiny draw to 0; inputs must never contain zeros.
    host[host == 0] = np.asarray(high / 2, dtype=dtype)
    return xp.asarray(host)


def poisoned(xp: Any, shape: tuple[int, ...], dtype: str) -> Any:
    """An output buffer filled with NaN, so a run that forgets to write (part of) it fails validation."""
    return xp.full(shape, np.nan, dtype=dtype)


def host64(backend: Any, a: Any) -> np.ndarray:
    return np.asarray(backend.asnumpy(a), dtype=np.float64)


def exact_check(out: np.ndarray, ref: np.ndarray, what: str = "copy") -> Check:
    """Bit-exact comparison (copies): passes only when every element is identical."""
    if out.shape != ref.shape:
        return Check(passed=False, rel_error=math.inf, tolerance=0.0,
                     message=f"{what}: output shape {out.shape} != {ref.shape}", reference="exact")
    # compare 8-byte words first (8x fewer elements, no 1-byte bool per byte); count bytes only on failure
    if out.dtype == ref.dtype and out.nbytes % 8 == 0 and out.flags.c_contiguous and ref.flags.c_contiguous:
        same = bool(np.array_equal(out.reshape(-1).view(np.uint64), ref.reshape(-1).view(np.uint64)))
        bad = 0 if same else int(np.count_nonzero(out != ref))
    else:
        bad = int(np.count_nonzero(out != ref))
    msg = "" if bad == 0 else f"{what}: {bad} of {out.size} elements differ from the source"
    return Check(passed=bad == 0, rel_error=0.0 if bad == 0 else math.inf, tolerance=0.0, message=msg,
                 reference="exact (bit-identical)")


def sample_rows(n: int, want: int, rng: np.random.Generator) -> np.ndarray:
    """Rows to validate when a full float64 reference would cost too much: always the first and last
    row (edges of tiles), plus a seeded random sample."""
    if n <= want:
        return np.arange(n)
    picked = rng.choice(n - 2, size=want - 2, replace=False) + 1
    return np.unique(np.concatenate([[0, n - 1], picked]))


# ---------------------------------------------------------------- GPU matmul math mode (CuPy)
# CuPy chooses the cuBLAS compute type per dtype in cupy._core._routines_linalg: get_compute_type(dtype)
# reads CUPY_TF32 once, set_compute_type(dtype, COMPUTE_TYPE_*) overrides it. For float32, TF32 makes
# cublasGemmEx use CUBLAS_COMPUTE_32F_FAST_TF32; CuPy refuses it (falls back to DEFAULT with a warning)
# below compute capability 8.0. float16 matmul always accumulates in fp32 (CUBLAS_COMPUTE_32F).
_CT_DEFAULT = 1
_CT_TF32 = 7


def gpu_compute_capability(backend: Any = None) -> int | None:
    """Compute capability as an int (e.g. 80) of the current GPU, or None when unknown/unavailable."""
    from .. import backends

    be = backend or backends.gpu()
    if not be.available:
        return None
    props = be.extra.get("properties") or {}
    if "major" in props:
        return int(props["major"]) * 10 + int(props.get("minor", 0))
    try:
        return int(be.xp.cuda.Device().compute_capability)
    except Exception:
        return None


def tf32_available(backend: Any = None) -> bool:
    cc = gpu_compute_capability(backend)
    return cc is not None and cc >= 80


def gpu_math_variant(dtype: str, math_mode: str, backend: Any = None) -> dict[str, Any]:
    """What cuBLAS will actually run for a CuPy matmul of ``dtype`` in ``math_mode`` on this GPU."""
    if dtype == "float16":
        return {"math": "fp16", "cublas_compute": "CUBLAS_COMPUTE_32F", "accumulate": "float32"}
    if dtype == "float64":
        return {"math": "fp64", "cublas_compute": "CUBLAS_COMPUTE_64F"}
    if math_mode == "tf32":
        if tf32_available(backend):
            return {"math": "tf32", "cublas_compute": "CUBLAS_COMPUTE_32F_FAST_TF32"}
        cc = gpu_compute_capability(backend)
        return {"math": "fp32", "cublas_compute": "CUBLAS_COMPUTE_32F",
                "note": f"TF32 needs compute capability >= 8.0 (this GPU: {cc}); ran full fp32"}
    return {"math": "fp32", "cublas_compute": "CUBLAS_COMPUTE_32F"}


class GpuMathMode:
    """Sets CuPy's float32 matmul compute type for the life of a workload and restores it afterwards.

    float32 cases pin DEFAULT explicitly, so a user's CUPY_TF32=1 cannot silently turn an "fp32" case
    into TF32."""

    def __init__(self, xp: Any, dtype: str, math_mode: str) -> None:
        self._prev: int | None = None
        self._rl: Any = None
        if dtype != "float32":
            return
        from cupy._core import _routines_linalg as rl  # private but stable since CuPy 9

        self._rl = rl
        self._prev = int(rl.get_compute_type(np.float32))
        want = getattr(rl, "COMPUTE_TYPE_TF32", _CT_TF32) if math_mode == "tf32" else \
            getattr(rl, "COMPUTE_TYPE_DEFAULT", _CT_DEFAULT)
        if want == _CT_TF32 and not tf32_available():
            want = getattr(rl, "COMPUTE_TYPE_DEFAULT", _CT_DEFAULT)  # CuPy would warn and do the same
        rl.set_compute_type(np.float32, want)

    def active(self) -> str | None:
        """The compute type CuPy will use now for float32 matmul (for checks and tests)."""
        if self._rl is None:
            return None
        return str(self._rl.compute_type_to_str(self._rl.get_compute_type(np.float32)))

    def restore(self) -> None:
        if self._rl is not None and self._prev is not None:
            with contextlib.suppress(Exception):
                self._rl.set_compute_type(np.float32, self._prev)
        self._rl = None

"""Memory copies: device-to-device, host-to-device and device-to-host (pinned and pageable host memory).

GPU copies are ``cudaMemcpyAsync`` on the current stream (CuPy's MemoryPointer.copy_*_async), so CUDA
events bracket them exactly. From pinned host memory the copy is a true asynchronous DMA; from pageable
memory CUDA stages it through a driver-owned pinned buffer and the call blocks the host (h2d returns once
staged, d2h once complete), so those cases declare ``synchronizes``. On the CPU backend ``memcpy_d2d`` is
the host ``memcpy`` baseline (``numpy.copyto``); host<->device copies need a device and are skipped.

Bytes follow CUDA's bandwidthTest: a device-to-device copy moves 2 x size (read + write of the same
memory), a host<->device copy moves size (once across the link).
Validation is bit-exact: sources hold values 1..255, destinations are poisoned with 0 first.
"""

from __future__ import annotations

import ctypes
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ._common import MAX_BYTES, exact_check
from .base import BaseParams, Check, Params, Work, Workload, register


class CopyParams(Params):
    kib: int = Field(65536, ge=1, le=MAX_BYTES // 1024, description="bytes to copy, in KiB (1024 bytes)")


class HostCopyParams(CopyParams):
    host: Literal["pinned", "pageable"] = Field("pinned", description="host buffer: page-locked or ordinary")


def _nbytes(p: Any) -> int:
    return int(p.kib) * 1024


def _source(n: int, seed: int) -> np.ndarray:
    # random bytes clamped to 1..255: a destination left at its poison value 0 can never match
    # (Generator.bytes is ~10x faster than integers() at hundreds of MiB)
    a = np.frombuffer(np.random.default_rng(seed).bytes(n), dtype=np.uint8).copy()
    np.maximum(a, 1, out=a)
    return a


def _host_buffer(n: int, host: str) -> np.ndarray:
    if host == "pinned":
        import cupyx

        return cupyx.empty_pinned((n,), dtype=np.uint8)
    return np.empty((n,), dtype=np.uint8)


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)  # old and new CuPy accept a c_void_p


@register
class CopyD2D(Workload):
    name = "memcpy_d2d"
    family = "memory"
    Params = CopyParams
    description = "device-to-device copy (CPU: host memcpy baseline)"

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        n = _nbytes(params)
        return Work(flops=0.0, bytes=2.0 * n, items=float(n), item_unit="bytes copied")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        return 2 * _nbytes(params)

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        return {"impl": "cudaMemcpyAsync device-to-device" if backend == "gpu" else "numpy.copyto (memcpy)"}

    def setup(self) -> None:
        n = _nbytes(self.p)
        self.src_host = _source(n, self.seed)
        self.src = self.xp.asarray(self.src_host)
        self.dst = self.xp.zeros((n,), dtype=np.uint8)  # poison: never a source value
        self.n = n
        if self.backend.is_gpu:
            self.run = self._run_gpu  # type: ignore[method-assign]

    def _run_gpu(self) -> None:
        self.dst.data.copy_from_device_async(self.src.data, self.n)

    def run(self) -> None:
        np.copyto(self.dst, self.src)

    def output(self) -> Any:
        return self.dst

    def reference(self) -> np.ndarray:
        return self.src_host

    def check(self) -> Check:
        return exact_check(self.backend.asnumpy(self.dst), self.src_host, "device-to-device copy")


class _HostCopy(Workload):
    family = "memory"
    Params = HostCopyParams
    backends = ("gpu",)

    def __init__(self, params: BaseParams, backend: Any, seed: int = 0) -> None:
        super().__init__(params, backend, seed)
        # per case, not per class: only pageable copies block the host (see the module docstring)
        self.synchronizes = params.host == "pageable"  # type: ignore[misc,attr-defined]

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        n = _nbytes(params)
        return Work(flops=0.0, bytes=float(n), items=float(n), item_unit="bytes copied")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        return _nbytes(params)  # device side; the host buffer lives in host memory

    @classmethod
    def unsupported(cls, params: BaseParams, backend: str) -> str | None:
        if backend != "gpu":
            return f"{cls.name} copies between host and device memory; the {backend} backend has no device"
        return None


@register
class CopyH2D(_HostCopy):
    name = "memcpy_h2d"
    description = "host-to-device copy from pinned or pageable host memory"

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        return {"impl": "cudaMemcpyAsync host-to-device", "host": params.host}  # type: ignore[attr-defined]

    def setup(self) -> None:
        n = _nbytes(self.p)
        self.src = _host_buffer(n, self.p.host)  # type: ignore[attr-defined]
        self.src[...] = _source(n, self.seed)
        self.dst = self.xp.zeros((n,), dtype=np.uint8)
        self._src_ptr, self.n = _ptr(self.src), n

    def run(self) -> None:
        self.dst.data.copy_from_host_async(self._src_ptr, self.n)

    def output(self) -> Any:
        return self.dst

    def reference(self) -> np.ndarray:
        return np.asarray(self.src)

    def check(self) -> Check:
        return exact_check(self.backend.asnumpy(self.dst), np.asarray(self.src), "host-to-device copy")


@register
class CopyD2H(_HostCopy):
    name = "memcpy_d2h"
    description = "device-to-host copy into pinned or pageable host memory"

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        return {"impl": "cudaMemcpyAsync device-to-host", "host": params.host}  # type: ignore[attr-defined]

    def setup(self) -> None:
        n = _nbytes(self.p)
        self.src_host = _source(n, self.seed)
        self.src = self.xp.asarray(self.src_host)
        self.dst = _host_buffer(n, self.p.host)  # type: ignore[attr-defined]
        self.dst[...] = 0
        self._dst_ptr, self.n = _ptr(self.dst), n

    def run(self) -> None:
        self.src.data.copy_to_host_async(self._dst_ptr, self.n)

    def output(self) -> Any:
        return self.dst

    def reference(self) -> np.ndarray:
        return self.src_host

    def check(self) -> Check:
        # the copy is asynchronous on the stream: the runner synchronises before check(); do it again so
        # check() is safe on its own
        self.backend.synchronize()
        return exact_check(np.asarray(self.dst), self.src_host, "device-to-host copy")

"""CPU (NumPy) and GPU (CuPy) backends: the array module, synchronisation, memory and availability.

CuPy is imported only when the GPU backend is asked for, so a machine without CuPy or without a driver
runs the CPU cases and gets a precise reason for skipping the GPU ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import psutil

BACKENDS = ("gpu", "cpu")


@dataclass
class Backend:
    """One place work can run. ``xp`` is ``numpy`` or ``cupy``; the same workload code serves both."""

    name: str  # "cpu" | "gpu"
    available: bool
    reason: str = ""  # why not available
    xp: Any = None
    device_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def synchronize(self) -> None:
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def asnumpy(self, a: Any) -> np.ndarray:
        if self.is_gpu:
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def memory_available(self) -> int:
        """Bytes a case may allocate on this backend now."""
        if self.is_gpu:
            free, _total = self.xp.cuda.runtime.memGetInfo()
            return int(free)
        return int(psutil.virtual_memory().available)

    def memory_total(self) -> int:
        if self.is_gpu:
            _free, total = self.xp.cuda.runtime.memGetInfo()
            return int(total)
        return int(psutil.virtual_memory().total)

    def free_memory_pools(self) -> None:
        """Give cached device memory back between cases so one case's pool does not starve the next."""
        if self.is_gpu:
            self.xp.get_default_memory_pool().free_all_blocks()
            self.xp.get_default_pinned_memory_pool().free_all_blocks()


def cpu() -> Backend:
    import platform

    return Backend(name="cpu", available=True, xp=np, device_name=platform.processor() or platform.machine())


def _probe_cupy() -> tuple[ModuleType | None, str]:
    try:
        import cupy  # noqa: F401
    except ImportError as e:
        return None, f"CuPy is not installed ({e.msg}); install it with: pip install -e '.[cuda13]' (or '.[cuda12]')"
    except Exception as e:  # a broken CuPy install raises all sorts
        return None, f"CuPy failed to import: {type(e).__name__}: {e}"
    import cupy

    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError without a driver
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, f"no usable CUDA driver: {msg}"
    if n < 1:
        return None, "no CUDA device found"
    return cupy, ""


@functools.lru_cache(maxsize=1)
def gpu() -> Backend:
    """The GPU backend, or an unavailable one whose ``reason`` says why (no CuPy / no driver / no device)."""
    cupy, reason = _probe_cupy()
    if cupy is None:
        return Backend(name="gpu", available=False, reason=reason)
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return Backend(name="gpu", available=True, xp=cupy, device_name=name, extra={"properties": props})


def get(name: str) -> Backend:
    if name == "cpu":
        return cpu()
    if name == "gpu":
        return gpu()
    raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")

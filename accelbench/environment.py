"""Machine and software fingerprint, recorded in every run and shown by ``accelbench info``.

Fields that change from moment to moment (free memory, clocks, load) live under ``volatile`` so that
compare's machine check can ignore them; everything else identifies the machine and its software.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

from . import __version__


def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict[str, Any]]:
    """Which BLAS NumPy uses and with how many threads (threadpoolctl reads the loaded libraries)."""
    try:
        import numpy  # noqa: F401  (loads NumPy's BLAS so threadpoolctl can see it)
        from threadpoolctl import threadpool_info

        return [
            {k: d.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "architecture",
                                   "filepath")}
            for d in threadpool_info()
            if d.get("user_api") == "blas"
        ]
    except Exception as e:  # threadpoolctl is optional information, never fatal
        return [{"error": f"{type(e).__name__}: {e}"}]


def git_info(cwd: str | Path = ".") -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def gpu_info() -> dict[str, Any]:
    """GPU facts from CuPy (and NVML where present), or why no GPU is usable."""
    from . import backends

    be = backends.gpu()
    if not be.available:
        return {"available": False, "reason": be.reason}
    cp = be.xp
    props = be.extra.get("properties", {})
    dev = cp.cuda.Device()
    info: dict[str, Any] = {
        "available": True,
        "name": be.device_name,
        "index": dev.id,
        "compute_capability": f"{props.get('major')}.{props.get('minor')}",
        "multiprocessors": props.get("multiProcessorCount"),
        "memory_total_bytes": props.get("totalGlobalMem"),
        "l2_cache_bytes": props.get("l2CacheSize"),
        "memory_bus_width_bits": props.get("memoryBusWidth"),
        "memory_clock_khz": props.get("memoryClockRate"),
        "clock_khz": props.get("clockRate"),
        "cuda_runtime_version": cp.cuda.runtime.runtimeGetVersion(),
        "cuda_driver_version": cp.cuda.runtime.driverGetVersion(),
        "cupy_version": cp.__version__,
    }
    uuid = props.get("uuid")
    if isinstance(uuid, (bytes, bytearray)) and len(uuid) == 16:
        h = uuid.hex()
        info["uuid"] = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if info["memory_bus_width_bits"] and info["memory_clock_khz"]:
        # theoretical DRAM bandwidth: 2 transfers/clock (DDR) x clock x bus width
        info["theoretical_bandwidth_gbps"] = (2 * info["memory_clock_khz"] * 1e3
                                              * info["memory_bus_width_bits"] / 8 / 1e9)
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            info["driver_version"] = pynvml.nvmlSystemGetDriverVersion()
            if "uuid" in info:
                h = pynvml.nvmlDeviceGetHandleByUUID(info["uuid"])
            else:
                h = pynvml.nvmlDeviceGetHandleByIndex(dev.id)
            info["nvml_name"] = pynvml.nvmlDeviceGetName(h)
            info["volatile"] = {
                "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                "temperature_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            }
            info["max_sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
            info["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:  # NVML is information here; its absence never fails a run
        info["nvml"] = f"unavailable: {type(e).__name__}: {e}"
    return info


def fingerprint(with_gpu: bool = True) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    freq = psutil.cpu_freq()
    env: dict[str, Any] = {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "cpu": {
            "model": cpu_model(),
            "arch": platform.machine(),
            "logical_cores": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False),
            "max_freq_mhz": freq.max if freq else None,
            "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        },
        "blas": blas_info(),
        "memory_total_bytes": vm.total,
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": {n: _pkg(n) for n in ("accelbench", "numpy", "scipy", "pandas", "pydantic",
                                          "cupy-cuda13x", "cupy-cuda12x", "nvidia-ml-py", "psutil")},
        "accelbench_version": __version__,
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "MKL_NUM_THREADS", "CUPY_TF32") if k in os.environ},
        "volatile": {
            "memory_available_bytes": vm.available,
            "cpu_freq_mhz": freq.current if freq else None,
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
    }
    env["packages"] = {k: v for k, v in env["packages"].items() if v is not None}
    if with_gpu:
        env["gpu"] = gpu_info()
    return env

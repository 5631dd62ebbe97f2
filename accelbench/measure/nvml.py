"""NVML access for the counter sampler and the GPU timer: one device handle, a capability probe, cheap reads.

Uses the ``pynvml`` module shipped by nvidia-ml-py (>= 12.535.77), not the archived ``pynvml`` package.
Every read returns ``None`` (never 0) when the query is unsupported or fails, so an absent counter cannot
masquerade as a reading. The probe tries each query once and records why it is unusable: "not supported",
"no permission", "function not found" (driver too old for the binding), or "error: ...".

Devices are matched by UUID (CUDA's UUID of the device CuPy uses), not by index: CUDA_VISIBLE_DEVICES and
CUDA_DEVICE_ORDER make CUDA and NVML indices disagree.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

# Clock-event (formerly "throttle") reason bits, as nvml.h defines them. Names are ours, stable in results.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# The reasons that mean "the chip slowed itself down" (as opposed to idle or a user/application setting).
THROTTLE_REASONS = frozenset({"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                              "hw_power_brake_slowdown"})

# GPM metric ids (nvml.h nvmlGpmMetricId_t) -> result key. Utilisations are percent over the window.
GPM_METRICS: dict[int, str] = {
    1: "graphics_util_percent",
    2: "sm_util_percent",
    3: "sm_occupancy_percent",
    5: "any_tensor_util_percent",
    6: "dfma_tensor_util_percent",
    7: "hmma_tensor_util_percent",
    9: "imma_tensor_util_percent",
    10: "dram_bw_util_percent",
    11: "fp64_util_percent",
    12: "fp32_util_percent",
    13: "fp16_util_percent",
    20: "pcie_tx_mib_per_s",
    21: "pcie_rx_mib_per_s",
}

# nvml.h field ids used through nvmlDeviceGetFieldValues
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, mW
FI_PCIE_COUNT_TX_BYTES = 197  # NVML_FI_DEV_PCIE_COUNT_TX_BYTES, cumulative
FI_PCIE_COUNT_RX_BYTES = 198

_ERR_NAMES = {3: "not supported", 4: "no permission", 13: "function not found", 9: "driver not loaded",
              12: "library not found", 15: "gpu is lost", 6: "not found"}


def decode_reasons(mask: int | None) -> list[str]:
    """Names of the clock-event reason bits set in ``mask`` (unknown bits as hex)."""
    if mask is None:
        return []
    out = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_EVENT_REASONS)
    if rest:
        out.append(f"0x{rest:x}")
    return out


def classify_error(e: BaseException) -> str:
    """One of the probe's status words for an exception raised by a query."""
    code = getattr(e, "value", None)
    if isinstance(code, int) and code in _ERR_NAMES:
        return _ERR_NAMES[code]
    if isinstance(e, AttributeError):  # the binding lacks the function
        return "function not found"
    return f"error: {type(e).__name__}: {e}"


def cuda_uuid_string(raw: Any) -> str | None:
    """CUDA's 16-byte device UUID as NVML spells it: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx."""
    if isinstance(raw, (bytes, bytearray)) and len(raw) == 16:
        h = bytes(raw).hex()
        return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if isinstance(raw, str) and raw.startswith(("GPU-", "MIG-")):
        return raw
    return None


_init_lock = threading.Lock()
_init_count = 0


def _import() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


def _init(nv: Any) -> None:
    global _init_count
    with _init_lock:
        if _init_count == 0:
            nv.nvmlInit()
        _init_count += 1


def _shutdown(nv: Any) -> None:
    global _init_count
    with _init_lock:
        if _init_count <= 0:
            return
        _init_count -= 1
        if _init_count == 0:
            with contextlib.suppress(Exception):
                nv.nvmlShutdown()


class NvmlDevice:
    """One GPU through NVML. Construct with :meth:`open`; every read returns None when unavailable."""

    def __init__(self, nv: Any, handle: Any, uuid: str | None, matched_by: str) -> None:
        self.nv = nv
        self.h = handle
        self.uuid = uuid
        self.matched_by = matched_by
        self.caps: dict[str, str] = {}
        self._pcie_fields = False
        self._gpm_ok = False
        self._closed = False

    # ---- opening ----
    @classmethod
    def open(cls, uuid: str | None = None, index: int | None = None) -> tuple[NvmlDevice | None, str]:
        """The NVML device with CUDA UUID ``uuid`` (or NVML index ``index`` when no UUID is known), or
        (None, why not)."""
        try:
            nv = _import()
        except ImportError as e:
            return None, f"nvidia-ml-py is not installed ({e})"
        try:
            _init(nv)
        except Exception as e:
            return None, f"NVML unavailable: {classify_error(e)}"
        try:
            if uuid:
                h = nv.nvmlDeviceGetHandleByUUID(uuid)
                return cls(nv, h, uuid, "uuid"), ""
            idx = 0 if index is None else index
            h = nv.nvmlDeviceGetHandleByIndex(idx)
            try:
                u = nv.nvmlDeviceGetUUID(h)
            except Exception:
                u = None
            return cls(nv, h, u if isinstance(u, str) else None, f"index {idx} (no CUDA UUID known)"), ""
        except Exception as e:
            _shutdown(nv)
            return None, f"NVML has no device {'with UUID ' + uuid if uuid else f'at index {index or 0}'}: " \
                         f"{classify_error(e)}"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _shutdown(self.nv)

    # ---- the probe ----
    def _queries(self) -> dict[str, Callable[[], Any]]:
        nv, h = self.nv, self.h
        return {
            "power_instant": lambda: self._field(FI_POWER_INSTANT),
            "power_usage": lambda: nv.nvmlDeviceGetPowerUsage(h),
            "sm_clock": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            "mem_clock": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            "temperature": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            "utilization": lambda: nv.nvmlDeviceGetUtilizationRates(h),
            "memory_info": lambda: nv.nvmlDeviceGetMemoryInfo(h),
            "pcie_counters": lambda: self._field(FI_PCIE_COUNT_TX_BYTES),
            "pcie_throughput": lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES),
            "clock_event_reasons": self._reasons_raw,
            "total_energy": lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h),
            "default_sm_clock": lambda: nv.nvmlDeviceGetDefaultApplicationsClock(h, nv.NVML_CLOCK_SM),
            "max_sm_clock": lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
            "power_limit": lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h),
            "processes": lambda: nv.nvmlDeviceGetComputeRunningProcesses(h),
            "gpm": self._gpm_probe,
        }

    def probe(self) -> dict[str, str]:
        """Try each query once: {query: "supported" | "not supported" | "no permission" |
        "function not found" | "error: ..."}. Later reads skip what the probe found unusable."""
        caps: dict[str, str] = {}
        for name, q in self._queries().items():
            try:
                q()
                caps[name] = "supported"
            except Exception as e:
                caps[name] = classify_error(e)
        self.caps = caps
        self._pcie_fields = caps.get("pcie_counters") == "supported"
        self._gpm_ok = caps.get("gpm") == "supported"
        return dict(caps)

    def ok(self, name: str) -> bool:
        return self.caps.get(name) == "supported"

    def _field(self, fid: int) -> float:
        v = self.nv.nvmlDeviceGetFieldValues(self.h, [fid])[0]
        if v.nvmlReturn != 0:
            raise self.nv.NVMLError(v.nvmlReturn)
        return _field_value(v)

    def _fields(self, fids: list[int]) -> dict[int, float | None]:
        vals = self.nv.nvmlDeviceGetFieldValues(self.h, fids)
        return {fid: (_field_value(v) if v.nvmlReturn == 0 else None) for fid, v in zip(fids, vals, strict=False)}

    def _reasons_raw(self) -> int:
        nv = self.nv
        fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(fn(self.h))

    def _gpm_probe(self) -> None:
        nv = self.nv
        sup = nv.nvmlGpmQueryDeviceSupport(self.h)
        if not sup.isSupportedDevice:
            raise nv.NVMLError(3)  # report as "not supported"
        s = nv.nvmlGpmSampleAlloc()
        try:
            nv.nvmlGpmSampleGet(self.h, s)
        finally:
            nv.nvmlGpmSampleFree(s)

    # ---- reads (None when unavailable) ----
    def _try(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.caps and not self.ok(name):
            return None
        try:
            return fn()
        except Exception:
            return None

    def sm_clock_mhz(self) -> float | None:
        v = self._try("sm_clock", lambda: self.nv.nvmlDeviceGetClockInfo(self.h, self.nv.NVML_CLOCK_SM))
        return float(v) if v else None  # 0 MHz is not a reading

    def clock_event_reasons(self) -> int | None:
        v = self._try("clock_event_reasons", self._reasons_raw)
        return int(v) if v is not None else None

    def energy_mj(self) -> int | None:
        v = self._try("total_energy", lambda: self.nv.nvmlDeviceGetTotalEnergyConsumption(self.h))
        return int(v) if v is not None else None

    def default_sm_clock_mhz(self) -> float | None:
        v = self._try("default_sm_clock",
                      lambda: self.nv.nvmlDeviceGetDefaultApplicationsClock(self.h, self.nv.NVML_CLOCK_SM))
        return float(v) if v else None

    def max_sm_clock_mhz(self) -> float | None:
        v = self._try("max_sm_clock", lambda: self.nv.nvmlDeviceGetMaxClockInfo(self.h, self.nv.NVML_CLOCK_SM))
        return float(v) if v else None

    def power_limit_w(self) -> float | None:
        v = self._try("power_limit", lambda: self.nv.nvmlDeviceGetEnforcedPowerLimit(self.h))
        return v / 1000.0 if v else None

    def other_processes(self) -> list[dict[str, Any]] | None:
        """Compute processes on this GPU other than this one (counters are device-wide)."""
        procs = self._try("processes", lambda: self.nv.nvmlDeviceGetComputeRunningProcesses(self.h))
        if procs is None:
            return None
        me = os.getpid()
        out = []
        for p in procs:
            pid = int(getattr(p, "pid", -1))
            if pid == me:
                continue
            mem = getattr(p, "usedGpuMemory", None)
            out.append({"pid": pid, "used_memory_bytes": int(mem) if isinstance(mem, int) and mem < 2**63 else None})
        return out

    def poll(self) -> dict[str, Any]:
        """One sampler reading: only supported quantities, units in the keys, ``t`` = perf_counter()."""
        nv, h = self.nv, self.h
        r: dict[str, Any] = {"t": time.perf_counter()}
        fids = []
        if self.ok("power_instant"):
            fids.append(FI_POWER_INSTANT)
        if self._pcie_fields:
            fids += [FI_PCIE_COUNT_TX_BYTES, FI_PCIE_COUNT_RX_BYTES]
        if fids:
            try:
                vals = self._fields(fids)
                if vals.get(FI_POWER_INSTANT) is not None:
                    r["power_w"] = vals[FI_POWER_INSTANT] / 1000.0  # type: ignore[operator]
                if vals.get(FI_PCIE_COUNT_TX_BYTES) is not None:
                    r["pcie_tx_bytes_total"] = vals[FI_PCIE_COUNT_TX_BYTES]
                    r["pcie_rx_bytes_total"] = vals.get(FI_PCIE_COUNT_RX_BYTES)
            except Exception:
                pass
        if "power_w" not in r and self.ok("power_usage"):
            v = self._try("power_usage", lambda: nv.nvmlDeviceGetPowerUsage(h))
            if v is not None:
                r["power_w"] = v / 1000.0  # 1 s average on most boards: the instant field is preferred
                r["power_source"] = "average"
        v = self.sm_clock_mhz()
        if v is not None:
            r["sm_clock_mhz"] = v
        v = self._try("mem_clock", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))
        if v:
            r["mem_clock_mhz"] = float(v)
        v = self._try("temperature", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        if v is not None:
            r["temperature_c"] = float(v)
        u = self._try("utilization", lambda: nv.nvmlDeviceGetUtilizationRates(h))
        if u is not None:
            r["gpu_util_percent"] = float(u.gpu)
            r["memory_busy_percent"] = float(u.memory)  # share of time memory was busy, NOT bandwidth
        m = self._try("memory_info", lambda: nv.nvmlDeviceGetMemoryInfo(h))
        if m is not None:
            r["memory_used_bytes"] = int(m.used)
        if not self._pcie_fields and self.ok("pcie_throughput"):
            # nvmlDeviceGetPcieThroughput samples over 20 ms per call; we run on the sampler thread
            tx = self._try("pcie_throughput", lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES))
            rx = self._try("pcie_throughput", lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES))
            if tx is not None:
                r["pcie_tx_bytes_per_s"] = float(tx) * 1024.0  # KB/s
            if rx is not None:
                r["pcie_rx_bytes_per_s"] = float(rx) * 1024.0
        v = self.clock_event_reasons()
        if v is not None:
            r["clock_event_reasons"] = v
        return r

    # ---- GPM (Hopper and later) ----
    @property
    def gpm_supported(self) -> bool:
        return self._gpm_ok

    def gpm_sample(self) -> Any | None:
        if not self._gpm_ok:
            return None
        nv = self.nv
        try:
            s = nv.nvmlGpmSampleAlloc()
            nv.nvmlGpmSampleGet(self.h, s)
            return s
        except Exception:
            return None

    def gpm_free(self, s: Any) -> None:
        if s is not None:
            with contextlib.suppress(Exception):
                self.nv.nvmlGpmSampleFree(s)

    def gpm_metrics(self, s1: Any, s2: Any) -> dict[str, float]:
        """GPM metrics over the window between two samples; metrics the device refuses are left out."""
        nv = self.nv
        mg = nv.c_nvmlGpmMetricsGet_t()
        mg.version = nv.NVML_GPM_METRICS_GET_VERSION
        mg.sample1 = s1
        mg.sample2 = s2
        ids = list(GPM_METRICS)
        mg.numMetrics = len(ids)
        for i, mid in enumerate(ids):
            mg.metrics[i].metricId = mid
        nv.nvmlGpmMetricsGet(mg)
        out: dict[str, float] = {}
        for i, mid in enumerate(ids):
            m = mg.metrics[i]
            if m.nvmlReturn == 0:
                out[GPM_METRICS[mid]] = float(m.value)
        return out


def _field_value(v: Any) -> float:
    t = int(v.valueType)
    val = v.value
    return float({0: val.dVal, 1: val.uiVal, 2: val.ulVal, 3: val.ullVal, 4: val.sllVal, 5: val.siVal,
                  6: val.usVal}.get(t, val.ullVal))

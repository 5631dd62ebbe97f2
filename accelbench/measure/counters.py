"""Counters sampled while cases run: NVML (polled on a thread), energy and GPM (read around a window in the
runner thread), psutil for the host.

Contract used by the runner:

    sampler = CounterSampler(interval_s=0.1)
    sampler.start()                       # probes capabilities once, starts the polling thread
    with sampler.case(case_id, backend) as cc:
        ...timed loop...                  # measure_gpu may call cc.window_begin()/window_end(...)
    record.counters = cc.result()         # plain JSON-able dict, units in the keys (flat: reports read it)
    sampler.capabilities()                # dict recorded once per run
    sampler.stop()

Rules this module keeps:
- A counter the machine cannot give (no driver, no NVML, MIG, an unsupported query) is *absent* from the
  result, never 0; the capability probe says why, once per run (``capabilities()``), and each case lists
  what was absent under ``absent``.
- Samples are attributed to the case that was running for the whole poll; a poll that straddles a case
  boundary is dropped rather than given to the wrong case.
- NVML utilisation is averaged by the driver over 1/6 to 1 s and power over about 1 s: polling faster than
  ~100 ms adds cost, not information. ``memory_busy_percent`` (NVML's ``utilization.memory``) is the share
  of time the memory controller was busy, not a fraction of bandwidth: GPM's ``dram_bw_util_percent`` is
  the bandwidth figure.
- Energy and GPM need a window of at least ``MIN_WINDOW_S`` (GPM refreshes about every 100 ms; the energy
  counter steps every 10-100 ms). A shorter window is recorded as "window too short", not as noise.

The pure functions (``summarize_gpu``, ``energy_window``, ``gpm_window``) are tested on real readings
recorded on a GPU (tests/fixtures/gpu); ``ReplayDevice`` plays such a recording through the sampler.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import psutil

from .nvml import THROTTLE_REASONS, NvmlDevice, decode_reasons

MIN_WINDOW_S = 0.25  # energy/GPM window: >= 2 GPM refresh periods and many energy-counter steps
EDGE_WAIT_S = 0.5  # how long the steady loop runs on past MIN_WINDOW_S waiting for energy-counter updates


class EnergyEdges:
    """The energy counter read between batches of a steady loop, keeping the moments it changed.

    NVML's total-energy counter does not count continuously: on the H100 of the first GPU session it
    stepped about every 100 ms, so two plain readings 0.25 s apart covered anything from about 0.15 to 0.35 s
    of work (energy per operation off by up to 40%, the triad's average power 612 W against polled readings
    of 483-533 W). Between two *updates* of the counter, though, the energy is exact: the window is taken
    from the first update seen to the last one, and the operations in it are the loop's rate times that
    span. Pure (fed with time and reading), so it is tested without a GPU.
    """

    def __init__(self) -> None:
        self.last: int | None = None
        self.edges: list[tuple[float, int]] = []

    def feed(self, t: float, e_mj: int | None) -> None:
        if e_mj is None:
            return
        if self.last is not None and e_mj != self.last:
            self.edges.append((t, e_mj))
        self.last = e_mj

    def aligned(self, min_span_s: float = 0.0) -> bool:
        """Two updates seen, at least ``min_span_s`` apart."""
        return len(self.edges) >= 2 and self.edges[-1][0] - self.edges[0][0] >= min_span_s

    def span(self) -> tuple[float, int, float, int] | None:
        """(t0, e0, t1, e1) of the first and last update, or None before two updates."""
        if len(self.edges) < 2:
            return None
        (t0, e0), (t1, e1) = self.edges[0], self.edges[-1]
        return t0, e0, t1, e1


class GpuDevice(Protocol):
    """What the sampler needs from a GPU counter source (NvmlDevice, or ReplayDevice on recorded data)."""

    caps: dict[str, str]

    def probe(self) -> dict[str, str]: ...
    def poll(self) -> dict[str, Any]: ...
    def energy_mj(self) -> int | None: ...
    def sm_clock_mhz(self) -> float | None: ...
    def clock_event_reasons(self) -> int | None: ...
    def default_sm_clock_mhz(self) -> float | None: ...
    def max_sm_clock_mhz(self) -> float | None: ...
    def other_processes(self) -> list[dict[str, Any]] | None: ...
    def gpm_sample(self) -> Any | None: ...
    def gpm_free(self, s: Any) -> None: ...
    def gpm_metrics(self, s1: Any, s2: Any) -> dict[str, float]: ...
    def close(self) -> None: ...

    @property
    def gpm_supported(self) -> bool: ...


# ---------------------------------------------------------------- pure summaries


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def summarize_gpu(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarise polled NVML readings of one case. Only quantities present in the readings appear."""
    out: dict[str, Any] = {}
    if not samples:
        return out

    def col(k: str) -> list[float]:
        return [float(s[k]) for s in samples if s.get(k) is not None and math.isfinite(float(s[k]))]

    for key, aggs in (("power_w", ("mean", "max")), ("sm_clock_mhz", ("mean", "min")),
                      ("mem_clock_mhz", ("mean",)), ("temperature_c", ("mean", "max")),
                      ("gpu_util_percent", ("mean",)), ("memory_busy_percent", ("mean",)),
                      ("memory_used_bytes", ("max",)), ("pcie_tx_bytes_per_s", ("mean",)),
                      ("pcie_rx_bytes_per_s", ("mean",))):
        xs = col(key)
        if not xs:
            continue
        base = key.replace("_bytes_per_s", "")
        for a in aggs:
            v = _mean(xs) if a == "mean" else (max(xs) if a == "max" else min(xs))
            if key.endswith("_bytes_per_s"):
                out[f"{base}_bytes_per_s_{a}"] = v
            elif key == "memory_used_bytes":
                out["gpu_memory_used_bytes_max"] = int(v)
            else:
                out[f"{key}_{a}"] = v
    # cumulative PCIe byte counters: rate over the polled span
    for d in ("tx", "rx"):
        pts = [(s["t"], float(s[f"pcie_{d}_bytes_total"])) for s in samples
               if s.get(f"pcie_{d}_bytes_total") is not None]
        if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            out[f"pcie_{d}_bytes_per_s_mean"] = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    masks = [int(s["clock_event_reasons"]) for s in samples if s.get("clock_event_reasons") is not None]
    if masks:
        m = 0
        for x in masks:
            m |= x
        out["clock_event_reasons_mask"] = m
        out["clock_event_reasons"] = decode_reasons(m)
        out["throttled"] = any(r in THROTTLE_REASONS for r in out["clock_event_reasons"])
    out["gpu_samples"] = len(samples)
    return out


def energy_window(e0_mj: int | None, e1_mj: int | None, window_s: float, ops: float,
                  work: dict[str, Any] | None = None, min_window_s: float = MIN_WINDOW_S) -> dict[str, Any]:
    """Energy of ``ops`` operations over a window from two readings of NVML's total-energy counter (mJ).

    Returns flat keys: energy_j, energy_j_per_op, energy_j_per_item, gflop_per_j, energy_avg_power_w;
    or ``energy_status`` saying why there is no figure (absent counter, window too short, counter did not
    advance). Never zeros standing in for a missing reading.
    """
    if e0_mj is None or e1_mj is None:
        return {"energy_status": "absent"}
    if window_s < min_window_s:
        return {"energy_status": f"window too short ({window_s * 1e3:.0f} ms < {min_window_s * 1e3:.0f} ms)"}
    de = e1_mj - e0_mj
    if de <= 0:
        return {"energy_status": "energy counter did not advance"}
    j = de / 1000.0
    out: dict[str, Any] = {"energy_j": j, "energy_window_s": window_s, "energy_ops": ops,
                           "energy_avg_power_w": j / window_s}
    if ops > 0:
        out["energy_j_per_op"] = j / ops
        w = work or {}
        if w.get("items"):
            out["energy_j_per_item"] = j / (ops * float(w["items"]))
        if w.get("flops"):
            out["gflop_per_j"] = ops * float(w["flops"]) / 1e9 / j
    return out


def gpm_window(metrics: dict[str, float] | None, window_s: float, achieved_gbps: float | None = None,
               peak_gbps: float | None = None, min_window_s: float = MIN_WINDOW_S) -> dict[str, Any]:
    """GPM metrics over a window, prefixed ``gpm_``, beside the bandwidth the work model computes so each
    checks the other: ``gpm_dram_bw_util_percent`` should be close to ``model_bw_percent_of_peak`` (the
    work model counts the fewest bytes, so GPM may read higher when the kernel moves more)."""
    if metrics is None:
        return {"gpm_status": "absent"}
    if window_s < min_window_s:
        return {"gpm_status": f"window too short ({window_s * 1e3:.0f} ms < {min_window_s * 1e3:.0f} ms)"}
    out: dict[str, Any] = {f"gpm_{k}": v for k, v in metrics.items()}
    out["gpm_window_s"] = window_s
    if achieved_gbps is not None:
        out["model_gbps"] = achieved_gbps
    if achieved_gbps is not None and peak_gbps:
        out["model_bw_percent_of_peak"] = 100.0 * achieved_gbps / peak_gbps
        if "dram_bw_util_percent" in metrics and out["model_bw_percent_of_peak"] > 0:
            out["gpm_dram_over_model"] = metrics["dram_bw_util_percent"] / out["model_bw_percent_of_peak"]
    return out


# ---------------------------------------------------------------- per-case state


class CaseCounters:
    """Counters of one case. The sampler thread appends readings; the runner thread may open a counter
    window (energy + GPM) around a steady loop of known length."""

    def __init__(self, label: str, backend: str, device: GpuDevice | None = None,
                 absent: list[str] | None = None, peak_gbps: float | None = None) -> None:
        self.label, self.backend = label, backend
        self.device = device if backend == "gpu" else None
        self.absent = list(absent or []) if self.device is not None or backend == "gpu" else []
        self.peak_gbps = peak_gbps
        self.t0 = time.perf_counter()
        self.t1: float | None = None
        self.cpu_percent: list[float] = []
        self.cpu_freq_mhz: list[float] = []
        self.rss_bytes: list[int] = []
        self.gpu_samples: list[dict[str, Any]] = []
        self.window: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self._w0: tuple[float, int | None, Any] | None = None
        self._edges: EnergyEdges | None = None
        self._lock = threading.Lock()

    # ---- used by measure_gpu (runner thread) ----
    def counter_window_s(self) -> float:
        """Seconds a counter window must last to give energy/GPM figures; 0 when neither is available (the
        timer then skips the steady loop)."""
        d = self.device
        if d is None:
            return 0.0
        if d.caps.get("total_energy") == "supported" or d.gpm_supported:
            return MIN_WINDOW_S
        return 0.0

    def sm_clock_mhz(self) -> float | None:
        return self.device.sm_clock_mhz() if self.device is not None else None

    def default_sm_clock_mhz(self) -> float | None:
        d = self.device
        if d is None:
            return None
        return d.default_sm_clock_mhz() or d.max_sm_clock_mhz()

    def clock_event_reasons(self) -> list[str] | None:
        if self.device is None:
            return None
        m = self.device.clock_event_reasons()
        return decode_reasons(m) if m is not None else None

    def window_begin(self) -> None:
        d = self.device
        if d is None:
            return
        g = d.gpm_sample()
        e = d.energy_mj()
        self._w0 = (time.perf_counter(), e, g)
        self._edges = EnergyEdges()
        self._edges.feed(self._w0[0], e)

    def energy_tick(self) -> None:
        """Read the energy counter between batches of the steady loop (see :class:`EnergyEdges`)."""
        if self.device is not None and self._edges is not None:
            self._edges.feed(time.perf_counter(), self.device.energy_mj())

    def energy_aligned(self, min_span_s: float = MIN_WINDOW_S) -> bool:
        """The window holds two energy-counter updates at least ``min_span_s`` apart."""
        return self._edges is not None and self._edges.aligned(min_span_s)

    def window_end(self, ops: int, work: dict[str, Any] | None = None, gpu_time_s: float | None = None,
                   note: str = "") -> dict[str, Any]:
        """Close the window opened by window_begin: ``ops`` operations ran in it, taking ``gpu_time_s`` of
        GPU time (events). Stores and returns the energy/GPM summary."""
        d = self.device
        if d is None or self._w0 is None:
            return {}
        e1 = d.energy_mj()
        g1 = d.gpm_sample()
        t1 = time.perf_counter()
        t0, e0, g0 = self._w0
        self._w0 = None
        win = t1 - t0
        edges, self._edges = self._edges, None
        sp = edges.span() if edges is not None else None
        if edges is not None and sp is not None and sp[2] > sp[0] and win > 0:
            # energy between two counter updates, for the operations the loop ran in that span (its rate
            # over the whole window times the span)
            ta, ea, tb, eb = sp
            out = energy_window(ea, eb, tb - ta, ops * (tb - ta) / win, work, min_window_s=0.0)
            out["energy_alignment"] = f"between energy-counter updates ({len(edges.edges)} seen)"
        else:
            out = energy_window(e0, e1, win, ops, work)
            if "energy_j" in out:
                out["energy_alignment"] = "window ends (counter updates not tracked): +-1 update period"
        metrics = None
        if g0 is not None and g1 is not None:
            try:
                metrics = d.gpm_metrics(g0, g1)
            except Exception as ex:  # never fail a case for a counter
                out["gpm_status"] = f"error: {type(ex).__name__}: {ex}"
        d.gpm_free(g0)
        d.gpm_free(g1)
        achieved = None
        if gpu_time_s and gpu_time_s > 0 and work and work.get("bytes"):
            achieved = ops * float(work["bytes"]) / gpu_time_s / 1e9
        if "gpm_status" not in out:
            out.update(gpm_window(metrics, win, achieved, self.peak_gbps) if d.gpm_supported
                       else {"gpm_status": "absent"})
        if note:
            out["counter_window_note"] = note
        self.window = out
        return out

    def mark_window(self, status: str) -> None:
        """Record why no counter window was measured (e.g. quick run)."""
        if self.device is not None:
            self.window = {"energy_status": status, "gpm_status": status}

    # ---- result ----
    def result(self) -> dict[str, Any]:
        with self._lock:
            gpu = list(self.gpu_samples)
        out: dict[str, Any] = {"window_s": (self.t1 or time.perf_counter()) - self.t0}
        if self.cpu_percent:
            out["cpu_util_percent_mean"] = _mean(self.cpu_percent)
        if self.cpu_freq_mhz:
            out["cpu_freq_mhz_mean"] = _mean(self.cpu_freq_mhz)
        if self.rss_bytes:
            out["rss_bytes_max"] = max(self.rss_bytes)
        out["samples"] = len(self.cpu_percent)
        if self.backend == "gpu":
            out.update(summarize_gpu(gpu))
            out.update(self.window)
            out.update(self.extra)
            if self.absent:
                out["absent"] = list(self.absent)
        return out


# ---------------------------------------------------------------- the sampler


def _resolve_gpu(mode: str | bool | None) -> tuple[GpuDevice | None, str]:
    """The NVML device matching the CUDA device CuPy uses, or (None, why not). With ``mode="auto"`` NVML
    is used only when this process already initialised the GPU backend (a run with GPU cases); a CPU-only
    run does not import CuPy for its counters."""
    if mode is False:
        return None, "not used (disabled)"
    if mode == "auto" and "cupy" not in sys.modules:
        return None, "not used (no GPU backend in this run)"
    from .. import backends

    be = backends.gpu()
    if not be.available:
        return None, f"not used (GPU unavailable: {be.reason})"
    props = be.extra.get("properties", {})
    from .nvml import cuda_uuid_string

    uuid = cuda_uuid_string(props.get("uuid"))
    dev, why = NvmlDevice.open(uuid=uuid, index=None if uuid else be.xp.cuda.Device().id)
    return dev, why


class CounterSampler:
    """Polls NVML (GPU cases) and psutil (every case) on a daemon thread every ``interval_s``.

    ``device``: a GpuDevice to read (tests pass a ReplayDevice of recorded readings); default: resolve the
    NVML device of the CUDA device in use (see ``_resolve_gpu``), or none when there is no GPU.
    """

    def __init__(self, interval_s: float = 0.1, enabled: bool = True, device: GpuDevice | None = None,
                 gpu: str | bool = "auto") -> None:
        self.interval_s = interval_s
        self.enabled = enabled
        self._device: GpuDevice | None = device
        self._gpu_mode = gpu
        self._caps: dict[str, Any] = {"psutil": "supported", "nvml": "not probed"}
        self._absent: list[str] = []
        self._peak_gbps: float | None = None
        self._current: CaseCounters | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process()
        self._started = False
        self.poll_cost_s: list[float] = []  # wall time of each poll (the sampler's own overhead)

    @property
    def device(self) -> GpuDevice | None:
        return self._device

    def capabilities(self) -> dict[str, Any]:
        return dict(self._caps)

    def _probe(self) -> None:
        if self._device is None:
            dev, why = _resolve_gpu(self._gpu_mode)
            self._device = dev
            if dev is None:
                self._caps["nvml"] = why
                return
        d = self._device
        assert d is not None
        caps = d.probe()
        self._caps["nvml"] = "supported"
        self._caps["nvml_queries"] = caps
        self._caps["nvml_device_matched_by"] = getattr(d, "matched_by", "given")
        self._caps["gpm"] = "supported" if d.gpm_supported else caps.get("gpm", "not supported")
        self._absent = sorted(f"{k}: {v}" for k, v in caps.items() if v != "supported")
        others = d.other_processes()
        if others:
            self._caps["other_gpu_processes"] = others
        try:
            from .. import backends

            g = backends.gpu()
            p = g.extra.get("properties", {}) if g.available else {}
            if p.get("memoryBusWidth") and p.get("memoryClockRate"):
                self._peak_gbps = 2 * p["memoryClockRate"] * 1e3 * p["memoryBusWidth"] / 8 / 1e9
        except Exception:
            pass

    def start(self) -> None:
        if not self.enabled or self._started:
            return
        self._started = True
        try:
            self._probe()
        except Exception as e:  # counters never fail a run
            self._caps["nvml"] = f"error while probing: {type(e).__name__}: {e}"
            self._device = None
        psutil.cpu_percent(None)
        self._thread = threading.Thread(target=self._loop, name="accelbench-counters", daemon=True)
        self._thread.start()

    def poll_once(self) -> None:
        """One poll for the current case (the thread calls this; tests may call it directly)."""
        cur = self._current
        if cur is None:
            return
        t0 = time.perf_counter()
        try:
            cur.cpu_percent.append(psutil.cpu_percent(None))
            f = psutil.cpu_freq()
            if f:
                cur.cpu_freq_mhz.append(f.current)
            cur.rss_bytes.append(self._proc.memory_info().rss)
        except Exception:
            pass
        if cur.device is not None:
            try:
                r = cur.device.poll()
            except Exception:
                r = None
            # keep the reading only if the same case ran for the whole poll
            if r is not None and self._current is cur:
                with cur._lock:
                    cur.gpu_samples.append(r)
        self.poll_cost_s.append(time.perf_counter() - t0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll_once()

    @contextmanager
    def case(self, label: str, backend: str) -> Iterator[CaseCounters]:
        dev = self._device if self.enabled else None
        cc = CaseCounters(label, backend, device=dev, absent=self._absent if dev is not None else
                          ([f"nvml: {self._caps.get('nvml')}"] if self.enabled else ["counters disabled"]),
                          peak_gbps=self._peak_gbps)
        if dev is not None and backend == "gpu":
            others = dev.other_processes()
            if others:
                cc.extra["other_gpu_processes"] = len(others)
        self._current = cc
        try:
            yield cc
        finally:
            cc.t1 = time.perf_counter()
            self._current = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
            self._thread = None
        if self._device is not None:
            with suppress(Exception):
                self._device.close()


# ---------------------------------------------------------------- recorded data


class ReplayDevice:
    """A GpuDevice that plays back readings recorded on a real GPU (benchmarks/record_gpu_fixtures.py).

    ``polls`` are returned in order (the last one repeats); ``energy_mj`` and ``sm_clock_mhz`` step through
    their recorded sequences; GPM windows return the recorded metric dicts in order. ``clock_event_reasons``
    (the masks the timer read when it discarded throttled samples) step through their recorded sequence
    too; without one, the mask of the next poll is returned.
    """

    matched_by = "replay"

    def __init__(self, probe: dict[str, str], polls: list[dict[str, Any]], energy_mj: list[int] | None = None,
                 sm_clock_mhz: list[float] | None = None, gpm_windows: list[dict[str, float]] | None = None,
                 default_sm_clock_mhz: float | None = None, max_sm_clock_mhz: float | None = None,
                 other_processes: list[dict[str, Any]] | None = None,
                 clock_event_reasons: list[int | None] | None = None) -> None:
        self._probe = dict(probe)
        self.caps: dict[str, str] = {}
        self._polls = list(polls)
        self._energy = list(energy_mj or [])
        self._clocks = list(sm_clock_mhz or [])
        self._gpm = list(gpm_windows or [])
        self._default = default_sm_clock_mhz
        self._max = max_sm_clock_mhz
        self._others = other_processes
        self._reasons = list(clock_event_reasons or [])
        self._i = self._e = self._c = self._g = self._r = 0
        self.closed = False

    @classmethod
    def from_fixture(cls, path: str | os.PathLike[str]) -> ReplayDevice:
        d = json.loads(Path(path).read_text())
        return cls(probe=d["probe"], polls=d.get("polls", []), energy_mj=d.get("energy_mj"),
                   sm_clock_mhz=d.get("sm_clock_mhz"), gpm_windows=d.get("gpm_windows"),
                   default_sm_clock_mhz=d.get("default_sm_clock_mhz"), max_sm_clock_mhz=d.get("max_sm_clock_mhz"),
                   other_processes=d.get("other_processes"), clock_event_reasons=d.get("clock_event_reasons"))

    def probe(self) -> dict[str, str]:
        self.caps = dict(self._probe)
        return dict(self.caps)

    @property
    def gpm_supported(self) -> bool:
        return self.caps.get("gpm") == "supported" and bool(self._gpm)

    def _ok(self, k: str) -> bool:
        return self.caps.get(k) == "supported"

    def poll(self) -> dict[str, Any]:
        if not self._polls:
            return {"t": time.perf_counter()}
        r = dict(self._polls[min(self._i, len(self._polls) - 1)])
        self._i += 1
        return r

    def energy_mj(self) -> int | None:
        if not self._ok("total_energy") or not self._energy:
            return None
        v = self._energy[min(self._e, len(self._energy) - 1)]
        self._e += 1
        return int(v)

    def sm_clock_mhz(self) -> float | None:
        if not self._ok("sm_clock") or not self._clocks:
            return None
        v = self._clocks[min(self._c, len(self._clocks) - 1)]
        self._c += 1
        return float(v)

    def clock_event_reasons(self) -> int | None:
        if not self._ok("clock_event_reasons"):
            return None
        if self._reasons:  # what the timer itself read (recorded apart from the polls)
            v = self._reasons[min(self._r, len(self._reasons) - 1)]
            self._r += 1
            return int(v) if v is not None else None
        if not self._polls:
            return None
        v = self._polls[min(self._i, len(self._polls) - 1)].get("clock_event_reasons")
        return int(v) if v is not None else None

    def default_sm_clock_mhz(self) -> float | None:
        return self._default if self._ok("default_sm_clock") else None

    def max_sm_clock_mhz(self) -> float | None:
        return self._max if self._ok("max_sm_clock") else None

    def other_processes(self) -> list[dict[str, Any]] | None:
        return self._others

    def gpm_sample(self) -> Any | None:
        return object() if self.gpm_supported else None

    def gpm_free(self, s: Any) -> None:
        pass

    def gpm_metrics(self, s1: Any, s2: Any) -> dict[str, float]:
        m = self._gpm[min(self._g, len(self._gpm) - 1)]
        self._g += 1
        return dict(m)

    def close(self) -> None:
        self.closed = True

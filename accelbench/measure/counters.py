"""Counters sampled while cases run. (Minimal psutil-only version; NVML/GPM come with the GPU work.)

Contract used by the runner:

    sampler = CounterSampler(interval_s=0.1)
    sampler.start()                       # probes capabilities once, starts the polling thread
    with sampler.case(case_id, backend) as cc:
        ...timed loop...
    record.counters = cc.result()         # plain JSON-able dict, units in the keys
    sampler.capabilities()                # dict recorded once per run
    sampler.stop()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil


class CaseCounters:
    def __init__(self, label: str, backend: str) -> None:
        self.label, self.backend = label, backend
        self.t0 = time.perf_counter()
        self.t1: float | None = None
        self.cpu_percent: list[float] = []
        self.cpu_freq_mhz: list[float] = []
        self.rss_bytes: list[int] = []

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"window_s": (self.t1 or time.perf_counter()) - self.t0}
        if self.cpu_percent:
            out["cpu_util_percent_mean"] = sum(self.cpu_percent) / len(self.cpu_percent)
        if self.cpu_freq_mhz:
            out["cpu_freq_mhz_mean"] = sum(self.cpu_freq_mhz) / len(self.cpu_freq_mhz)
        if self.rss_bytes:
            out["rss_bytes_max"] = max(self.rss_bytes)
        out["samples"] = len(self.cpu_percent)
        return out


class CounterSampler:
    def __init__(self, interval_s: float = 0.1, enabled: bool = True) -> None:
        self.interval_s = interval_s
        self.enabled = enabled
        self._current: CaseCounters | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process()

    def capabilities(self) -> dict[str, Any]:
        return {"psutil": "supported", "nvml": "not probed"}

    def start(self) -> None:
        if not self.enabled or self._thread:
            return
        psutil.cpu_percent(None)
        self._thread = threading.Thread(target=self._loop, name="accelbench-counters", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            cur = self._current
            if cur is None:
                continue
            try:
                cur.cpu_percent.append(psutil.cpu_percent(None))
                f = psutil.cpu_freq()
                if f:
                    cur.cpu_freq_mhz.append(f.current)
                cur.rss_bytes.append(self._proc.memory_info().rss)
            except Exception:
                pass

    @contextmanager
    def case(self, label: str, backend: str) -> Iterator[CaseCounters]:
        cc = CaseCounters(label, backend)
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

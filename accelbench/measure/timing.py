"""Timing policy, the adaptive stopping rule, and the CPU timer.

The clock is a constructor argument (as in pytest-benchmark) so tests drive calibration and stopping with
a scripted clock instead of patching globals. GPU timers live in ``measure/gpu.py`` and follow the same
policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..results import Timing, TimingSummary
from .stats import rel_ci_halfwidth

Clock = Callable[[], int]  # nanoseconds, monotonic


@dataclass(frozen=True)
class TimingPolicy:
    """How long and how often to sample. Times in seconds."""

    warmup: int = 2  # untimed runs before sampling (at least this many ...)
    warmup_time_s: float = 0.05  # ... and at least this long
    min_samples: int = 10
    max_samples: int = 5000
    min_time_s: float = 0.2  # keep sampling at least this long
    max_time_s: float = 2.0  # stop here even if still noisy ("max_time")
    target_rel_ci: float = 0.01  # stop when the median's 95% CI half-width / median is under this
    min_sample_time_s: float = 1e-3  # CPU: calibrate inner loops so one sample takes at least this
    timeout_s: float = 300.0  # whole case (warm-up, validation, sampling)

    def quick(self) -> TimingPolicy:
        """Smoke-run policy: few samples, short windows, looser target."""
        return replace(
            self,
            warmup=1,
            warmup_time_s=0.0,
            min_samples=min(self.min_samples, 5),
            min_time_s=0.0,
            max_time_s=min(self.max_time_s, 0.15),
            target_rel_ci=max(self.target_rel_ci, 0.05),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def limit_reached(n: int, elapsed_s: float, policy: TimingPolicy) -> str | None:
    """The hard limits every stopping rule obeys first (CPU and GPU alike)."""
    if n >= policy.max_samples:
        return "max_samples"
    if elapsed_s >= policy.max_time_s and n >= 1:
        return "max_time"
    return None


def minimums_met(n: int, elapsed_s: float, policy: TimingPolicy) -> bool:
    return n >= policy.min_samples and elapsed_s >= policy.min_time_s


def should_stop(samples: list[float], elapsed_s: float, policy: TimingPolicy) -> str | None:
    """The stopping rule, as a pure function: None to go on, else the reason recorded in the result."""
    n = len(samples)
    limit = limit_reached(n, elapsed_s, policy)
    if limit or not minimums_met(n, elapsed_s, policy):
        return limit
    if rel_ci_halfwidth(samples) <= policy.target_rel_ci:
        return "rel_ci<target"
    return None


def clock_resolution_s(clock: Clock = time.perf_counter_ns, tries: int = 200) -> float:
    """Smallest non-zero step the clock shows."""
    best = math.inf
    for _ in range(tries):
        t0 = clock()
        t1 = clock()
        while t1 == t0:
            t1 = clock()
        best = min(best, t1 - t0)
    return best * 1e-9


class CpuTimer:
    """perf_counter_ns around a calibrated inner loop: one sample = ``loops`` calls of ``fn``."""

    method = "cpu-perf_counter"

    def __init__(self, clock: Clock = time.perf_counter_ns) -> None:
        self.clock = clock

    def time_loops(self, fn: Callable[[], Any], loops: int) -> float:
        """Seconds for ``loops`` calls of ``fn`` (one sample, before dividing by ``loops``)."""
        clock = self.clock
        t0 = clock()
        for _ in range(loops):
            fn()
        return (clock() - t0) * 1e-9

    def calibrate(self, fn: Callable[[], Any], policy: TimingPolicy) -> tuple[int, int]:
        """Warm up, then find the loop count so one sample is >= min_sample_time_s. Returns (loops, warmup
        runs done)."""
        runs = 0
        start = self.clock()
        while runs < policy.warmup or (self.clock() - start) * 1e-9 < policy.warmup_time_s:
            fn()
            runs += 1
        loops = 1
        while True:
            dt = self.time_loops(fn, loops)
            runs += loops
            if dt >= policy.min_sample_time_s or loops >= 1 << 24:
                return loops, runs
            # grow towards the target with headroom, at least doubling
            loops = max(loops * 2, int(math.ceil(loops * policy.min_sample_time_s * 1.2 / max(dt, 1e-9))))

    def measure(self, fn: Callable[[], Any], policy: TimingPolicy) -> Timing:
        loops, warm = self.calibrate(fn, policy)
        samples: list[float] = []
        t_start = self.clock()
        reason: str | None = None
        while reason is None:
            samples.append(self.time_loops(fn, loops) / loops)
            reason = should_stop(samples, (self.clock() - t_start) * 1e-9, policy)
        total = (self.clock() - t_start) * 1e-9
        return Timing(
            method=self.method,
            samples_s=samples,
            inner_loops=loops,
            warmup=warm,
            stop_reason=reason,
            total_time_s=total,
            summary=TimingSummary.of(samples),
        )


class CpuProcessTimer(CpuTimer):
    """The same loop timed in CPU seconds of this process (``time.process_time_ns``): what the work cost,
    without the time other processes' turns on the CPU added. For A/B on a machine where others preempt
    the benchmark (``accelbench ab --clock cpu``); it counts every thread of the process, so a BLAS that
    spins its threads adds their spinning."""

    method = "cpu-process_time"

    def __init__(self, clock: Clock = time.process_time_ns) -> None:
        super().__init__(clock)


CPU_TIMERS: dict[str, type[CpuTimer]] = {"wall": CpuTimer, "cpu": CpuProcessTimer}

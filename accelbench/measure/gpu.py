"""GPU timing with CUDA events (placeholder: one event pair per sample; cold/batch/graph modes to come).

Contract used by the runner:

    timing, extra = measure_gpu(workload, policy, quick=False, counters=cc)

``timing`` is the headline Timing; ``extra`` maps other modes ("batch", "graph", ...) to their Timing.
"""

from __future__ import annotations

import time
from typing import Any

from ..results import Timing
from .stats import summarize
from .timing import TimingPolicy, should_stop


def measure_gpu(workload: Any, policy: TimingPolicy, quick: bool = False, counters: Any = None
                ) -> tuple[Timing, dict[str, Timing]]:
    cp = workload.xp
    stream = cp.cuda.get_current_stream()
    warm = 0
    t0 = time.perf_counter()
    while warm < policy.warmup or time.perf_counter() - t0 < policy.warmup_time_s:
        workload.run()
        warm += 1
    stream.synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    samples: list[float] = []
    t_start = time.perf_counter()
    reason = None
    while reason is None:
        start.record(stream)
        workload.run()
        end.record(stream)
        end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, end) * 1e-3)
        reason = should_stop(samples, time.perf_counter() - t_start, policy)
    return Timing(method="cuda-events", samples_s=samples, warmup=warm, stop_reason=reason,
                  total_time_s=time.perf_counter() - t_start, summary=summarize(samples).to_dict()), {}

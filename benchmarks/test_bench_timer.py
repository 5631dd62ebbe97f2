"""The harness's own overhead (pytest-benchmark; not collected by the default `pytest`).

Run: python -m pytest benchmarks/test_bench_timer.py --benchmark-only
"""

from __future__ import annotations

import numpy as np

from accelbench.measure.stats import rel_ci_halfwidth, summarize
from accelbench.measure.timing import CpuTimer, TimingPolicy, should_stop


def _noop() -> None:
    return None


def test_cpu_timer_per_sample_overhead(benchmark):
    """One CpuTimer sample of a no-op with loops=1: the clock pair plus the loop, i.e. the floor under
    every CPU sample."""
    t = CpuTimer()
    benchmark(t._time, _noop, 1)


def test_stopping_rule_cost_per_sample(benchmark):
    """should_stop runs after every sample (outside the timed region): keep it cheap at large n."""
    samples = list(np.random.default_rng(0).normal(1.0, 0.05, 2000))
    p = TimingPolicy()
    benchmark(should_stop, samples, 0.5, p)


def test_rel_ci_halfwidth_cost(benchmark):
    x = np.random.default_rng(0).normal(1.0, 0.05, 500)
    benchmark(rel_ci_halfwidth, x)


def test_summarize_cost(benchmark):
    x = np.random.default_rng(0).normal(1.0, 0.05, 5000)
    benchmark(summarize, x)

"""Statistics on known numbers; the stopping rule and CPU timer calibration driven by a scripted clock."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from accelbench.measure.stats import median_ci, rel_ci_halfwidth, summarize
from accelbench.measure.timing import CpuTimer, TimingPolicy, clock_resolution_s, should_stop


def test_summary_on_known_numbers():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.n == 5 and s.median == 3.0 and s.mean == 22.0 and s.min == 1.0 and s.max == 100.0
    assert s.q1 == 2.0 and s.q3 == 4.0 and s.iqr == 2.0
    assert s.stdev == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1))
    assert s.cv == pytest.approx(s.stdev / 22.0)
    assert (s.ci_low, s.ci_high) == (1.0, 100.0)  # n < 6: the whole range


def test_median_ci_matches_binomial_order_statistics():
    x = np.arange(1, 101, dtype=float)  # n=100: the classical 95% interval is [x(40), x(61)]
    lo, hi = median_ci(x)
    assert (lo, hi) == (40.0, 61.0)
    k = int(lo)
    coverage = st.binom.cdf(100 - k, 100, 0.5) - st.binom.cdf(k - 1, 100, 0.5)
    assert coverage >= 0.95


def test_median_ci_coverage_by_simulation():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        x = rng.lognormal(0.0, 1.0, 30)  # heavy right tail, true median 1.0
        lo, hi = median_ci(x)
        hits += lo <= 1.0 <= hi
    assert hits / 400 >= 0.93


def test_outlier_does_not_move_median_ci_much():
    base = np.linspace(0.99, 1.01, 50)
    a = rel_ci_halfwidth(base)
    b = rel_ci_halfwidth(np.append(base, 50.0))
    assert b < 2 * a < 0.01


def test_should_stop_rules():
    p = TimingPolicy(min_samples=10, min_time_s=0.1, max_time_s=1.0, target_rel_ci=0.01, max_samples=100)
    flat = [1.0] * 10
    assert should_stop(flat[:5], 0.5, p) is None  # too few samples
    assert should_stop(flat, 0.05, p) is None  # too little time
    assert should_stop(flat, 0.2, p) == "rel_ci<target"
    noisy = list(np.random.default_rng(0).uniform(0.5, 1.5, 20))
    assert should_stop(noisy, 0.2, p) is None
    assert should_stop(noisy, 1.0, p) == "max_time"
    assert should_stop([1.0] * 100, 0.0, p) == "max_samples"


class ScriptedClock:
    """A clock where each call to the workload costs ``cost_ns``: the timer must calibrate to it."""

    def __init__(self, cost_ns: int) -> None:
        self.t = 0
        self.cost = cost_ns

    def __call__(self) -> int:
        return self.t

    def work(self) -> None:
        self.t += self.cost


def test_cpu_timer_calibrates_inner_loops_to_min_sample_time():
    clk = ScriptedClock(cost_ns=1_000)  # 1 us per call
    timer = CpuTimer(clock=clk)
    p = TimingPolicy(warmup=2, warmup_time_s=0.0, min_sample_time_s=1e-3, min_samples=10, min_time_s=0.0)
    t = timer.measure(clk.work, p)
    assert t.inner_loops >= 1000  # 1 ms / 1 us
    assert t.inner_loops < 4000
    assert all(s == pytest.approx(1e-6) for s in t.samples_s)
    assert t.stop_reason == "rel_ci<target" and len(t.samples_s) == 10
    assert t.summary.median == pytest.approx(1e-6)


def test_cpu_timer_single_slow_call_needs_no_loop():
    clk = ScriptedClock(cost_ns=50_000_000)  # 50 ms per call
    p = TimingPolicy(warmup=1, warmup_time_s=0.0, min_samples=3, min_time_s=0.0, max_time_s=10)
    t = CpuTimer(clock=clk).measure(clk.work, p)
    assert t.inner_loops == 1 and t.samples_s[0] == pytest.approx(0.05)


def test_quick_policy_is_shorter():
    p = TimingPolicy()
    q = p.quick()
    assert q.max_time_s <= p.max_time_s and q.min_samples <= p.min_samples and q.target_rel_ci >= 0.05


def test_clock_resolution_is_small_and_positive():
    r = clock_resolution_s()
    assert 0 < r < 1e-3 and math.isfinite(r)

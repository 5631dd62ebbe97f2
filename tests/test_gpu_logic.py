"""The GPU timer's decisions as pure functions (no GPU needed): the stopping rule, throttle handling,
batch sizing, input rotation, the blocking kernel's clock arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from accelbench.measure.gpu import (
    MAX_BATCH,
    NoiseState,
    ThrottleGuard,
    batch_size,
    clock_from_blocker,
    gpu_should_stop,
    mode_policy,
    rotation_needed,
)
from accelbench.measure.timing import TimingPolicy

POLICY = TimingPolicy(min_samples=10, max_samples=5000, min_time_s=0.2, max_time_s=2.0, target_rel_ci=0.01)


def drive(samples: np.ndarray, per_sample_wall_s: float, policy: TimingPolicy = POLICY) -> tuple[str, int]:
    """Feed samples one at a time with a scripted wall clock, as the timer does; return (reason, n)."""
    state = NoiseState()
    got: list[float] = []
    for x in samples:
        got.append(float(x))
        r = gpu_should_stop(got, len(got) * per_sample_wall_s, policy, state)
        if r:
            return r, len(got)
    return "not stopped", len(got)


def test_quiet_kernel_stops_on_the_ci_target_after_min_time() -> None:
    rng = np.random.default_rng(0)
    x = 1e-3 * (1 + 0.002 * rng.standard_normal(10000))
    reason, n = drive(x, per_sample_wall_s=1.2e-3)
    assert reason == "rel_ci<target"
    assert n * 1.2e-3 >= POLICY.min_time_s  # not before the minimum time
    assert n < 400


def test_noisy_tiny_kernel_stops_when_noise_is_stable_not_at_the_timeout() -> None:
    # nvbench #61: a short kernel whose relative noise never falls under the target ran to the time-out.
    # Heavy-tailed (lognormal, 60% spread) samples, 100 us of wall time each (flush + blocker + sync).
    rng = np.random.default_rng(1)
    x = 20e-6 * rng.lognormal(0.0, 0.6, 20000)
    p = TimingPolicy(**{**POLICY.to_dict(), "target_rel_ci": 0.001, "max_samples": 10**6})
    reason, n = drive(x, per_sample_wall_s=100e-6, policy=p)
    assert reason == "noise_stable"
    assert n * 100e-6 >= p.min_time_s
    assert n * 100e-6 < p.max_time_s / 2


def test_limits_win_over_everything() -> None:
    x = np.linspace(1, 100, 200)  # drifting: neither the CI nor the noise settles
    p = TimingPolicy(min_samples=5, max_samples=50, min_time_s=0.0, max_time_s=100.0, target_rel_ci=1e-9)
    assert drive(x, 1e-3, p) == ("max_samples", 50)
    p2 = TimingPolicy(min_samples=5, max_samples=10**6, min_time_s=0.0, max_time_s=0.03, target_rel_ci=1e-9)
    assert drive(x, 1e-3, p2) == ("max_time", 30)
    # min_samples holds even when the samples are identical
    p3 = TimingPolicy(min_samples=25, max_samples=1000, min_time_s=0.0, max_time_s=10.0, target_rel_ci=0.01)
    assert drive(np.full(100, 2e-3), 1e-3, p3) == ("rel_ci<target", 25)


def test_throttle_guard_discards_then_gives_up_and_keeps() -> None:
    g = ThrottleGuard(default_mhz=1755.0)
    assert g.limit_mhz == pytest.approx(0.75 * 1755)
    assert g.judge(1980.0) and g.judge(1400.0)  # 1400 > 1316.25: fine
    assert g.judge(None)  # no clock reading: cannot judge, keep
    assert not g.judge(1000.0)
    d1 = g.delay_s()
    assert not g.judge(990.0)
    assert g.delay_s() > d1  # recovery pause grows
    assert g.judge(1700.0)  # recovered: consecutive count resets
    assert g.consecutive == 0 and not g.gave_up
    assert not g.judge(900.0) and not g.judge(900.0) and not g.judge(900.0)
    assert g.gave_up
    assert g.judge(900.0) and g.judge(880.0)  # after repeated throttling, samples are kept and counted
    s = g.summary()
    assert s["discarded_samples"] == 5 and s["kept_throttled_samples"] == 2 and s["min_sm_clock_mhz"] == 880.0
    assert all(ThrottleGuard(default_mhz=None).judge(c) for c in (10.0, 5000.0))
    assert ThrottleGuard(default_mhz=1000.0, recovery_s=0.3).delay_s() <= 0.5


def test_throttle_guard_total_discard_cap() -> None:
    g = ThrottleGuard(default_mhz=2000.0, give_up_after=100, max_discards=4)
    seq = [1000.0, 1900.0] * 5
    kept = [g.judge(c) for c in seq]
    assert kept.count(False) == 4 and g.gave_up


def test_batch_size_targets_about_a_millisecond() -> None:
    assert batch_size(5e-6) == 200
    assert batch_size(0.3e-3) == 4
    assert batch_size(5e-3) == 1
    assert batch_size(1e-12) == MAX_BATCH
    assert batch_size(float("nan")) == 1 and batch_size(0.0) == 1


def test_rotation_and_blocker_clock_and_mode_budget() -> None:
    l2 = 50 * 2**20
    assert rotation_needed(12 * 2**20, l2) and not rotation_needed(3 * 2**30, l2)
    assert clock_from_blocker(cycles=99_000, ns=50_000) == pytest.approx(1980.0)
    assert clock_from_blocker(cycles=10, ns=500) is None  # too short a window
    assert clock_from_blocker(cycles=10**9, ns=10_000) is None  # implausible
    p = mode_policy(POLICY, 0.25)
    assert p.max_time_s == pytest.approx(0.5) and p.min_time_s <= p.max_time_s / 2
    assert p.min_samples == POLICY.min_samples

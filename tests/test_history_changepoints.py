"""Change points on numbers (accelbench.history.changepoints): planted steps found where they are, no step
gives none, a change of machine is never a change point, the settings bite."""

from __future__ import annotations

import numpy as np
import pytest

from accelbench.history.changepoints import Settings, detect, detect_by_group, segments


def noisy(n: int, sd: float, seed: int) -> np.ndarray:
    return 1e-3 * np.exp(np.random.default_rng(seed).normal(0.0, sd, n))


@pytest.mark.parametrize("seed", range(5))
def test_a_planted_5pct_step_is_found_at_its_run(seed: int):
    x = noisy(40, 0.01, seed)
    x[20:] *= 1.05
    cps = detect(x)
    assert [c.index for c in cps] == [20]
    c = cps[0]
    assert 1.03 < c.ratio < 1.07 and c.ci_low < c.ratio < c.ci_high and c.p_value < 1e-3
    assert (c.n_before, c.n_after) == (20, 20)
    assert c.after / c.before == pytest.approx(c.ratio)
    assert c.before == pytest.approx(1e-3, rel=0.01) and c.after == pytest.approx(1.05e-3, rel=0.01)  # seconds


def test_two_steps_both_directions():
    x = noisy(90, 0.01, 7)
    x[30:] *= 1.10
    x[60:] /= 1.10 * 1.05
    cps = detect(x)
    assert [c.index for c in cps] == [30, 60]
    assert cps[0].ratio > 1.05 and cps[1].ratio < 0.9


def test_no_step_gives_no_change_point():
    false = sum(len(detect(noisy(40, 0.02, s))) for s in range(100))
    assert false <= 3  # measured 2 per 100 at alpha 0.001 (benchmarks/history_error_rates.py)


def test_a_single_outlier_run_is_not_a_change_point():
    x = noisy(40, 0.01, 3)
    x[25] *= 2.0
    x[39] *= 2.0  # the newest run too: one noisy run never starts a segment of its own
    assert detect(x) == []


def test_min_change_drops_a_significant_but_small_step():
    x = noisy(60, 0.002, 4)
    x[30:] *= 1.01
    assert [c.index for c in detect(x)] == [30]
    assert detect(x, Settings(min_change=0.02)) == []


def test_alpha_is_the_final_level():
    x = noisy(40, 0.02, 5)
    x[20:] *= 1.02  # weak evidence: found only at a lax level
    strict = detect(x, Settings(alpha=1e-6))
    lax = detect(x, Settings(alpha=0.2))
    assert len(strict) <= len(lax) and all(c.p_value < 1e-6 for c in strict) and all(c.p_value < 0.2 for c in lax)


def test_deterministic_and_constant_series():
    x = noisy(200, 0.02, 6)
    x[120:] *= 1.05
    assert detect(x) == detect(x.copy())
    assert detect(np.full(30, 2e-3)) == []
    y = np.full(30, 2e-3)
    y[15:] = 3e-3
    assert [c.index for c in detect(y)] == [15]


def test_a_change_of_machine_is_never_a_change_point():
    a, b = noisy(20, 0.01, 8), 1.5 * noisy(20, 0.01, 9)  # machine B is 50% slower
    x = np.concatenate([a, b])
    groups = ["A"] * 20 + ["B"] * 20
    assert 20 in [c.index for c in detect(x)]  # blind to machines it would call the switch a change
    cps, _ = detect_by_group(x, groups)
    assert all(c.index != 20 for c in cps)  # the switch itself is never one
    assert all(c.point.ratio < 1.1 for c in cps)  # and no 50% jump hides in a group's own series


def test_groups_interleaved_keep_their_own_series_and_indices():
    n = 60
    x = noisy(n, 0.01, 10)
    groups = ["A" if i % 2 == 0 else "B" for i in range(n)]
    x[1::2] *= 1.5  # B is slower throughout: no change
    x[40::2] *= 1.06  # A steps up from position 40 on
    cps, _ = detect_by_group(x, groups)
    assert [(c.group, c.index) for c in cps] == [("A", 40)]


def test_bad_values_and_settings():
    with pytest.raises(ValueError):
        detect([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        detect([1.0] * 10, Settings(alpha=2))
    with pytest.raises(ValueError):
        detect_by_group([1.0, 2.0], ["a"])
    assert detect([1.0, 2.0]) == []


def test_long_series_steps_found():
    x = noisy(3000, 0.01, 11)
    x[1234:] *= 1.05
    assert 1234 in [c.index for c in detect(x)]


def test_segments():
    assert segments(10, [3, 7]) == [(0, 3), (3, 7), (7, 10)]
    assert segments(5, []) == [(0, 5)]


def test_a_grown_series_reuses_its_split_and_gives_the_fresh_answer():
    from accelbench.history.changepoints import detect_with_state

    x = noisy(700, 0.01, 12)
    x[150:] *= 1.05
    x[420:] *= 0.97
    x[650:] *= 1.08
    state = None
    for n in (100, 260, 261, 400, 530, 700):
        got, state = detect_with_state(x[:n], state=state)
        assert got == detect(x[:n]), n
        assert state.n == n
    assert {150, 420, 650} <= {c.index for c in got}
    # a state from another series' prefix is the caller's error; a state from a longer one is ignored
    again, _ = detect_with_state(x[:300], state=state)
    assert again == detect(x[:300])

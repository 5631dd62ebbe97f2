"""accelbench.drift: what two separate runs reveal about the machine's drift, on constructed numbers and
through compare_runs."""

from __future__ import annotations

import math

import numpy as np

from accelbench.compare import CompareOptions, LoadedRun, compare_runs
from accelbench.drift import Interval, assess, contended, smoke
from accelbench.results import CaseRecord, RunRecord, Timing


def rec(workload: str, n: int, samples: np.ndarray) -> CaseRecord:
    return CaseRecord(run_id="r", case_id=f"s/{workload}/{{\"n\":{n}}}@cpu", suite="s", workload=workload,
                      family="t", name=f"{workload} n={n}", params={"n": n}, backend="cpu", status="ok",
                      definition_hash="h", started_at="2026-01-01T00:00:00+00:00",
                      timing=Timing(method="cpu-perf_counter", samples_s=[float(x) for x in samples],
                                    inner_loops=1000))


def runs(shifts: dict[str, float], seed: int, quick: bool = False, per: int = 4) -> tuple[LoadedRun, LoadedRun]:
    """Two separate runs of ``per`` cases of each workload; in the second, every sample of workload w is
    multiplied by shifts[w] (tight within-run noise: each CI alone would call any such shift real)."""
    rng = np.random.default_rng(seed)
    b, n = [], []
    for w, f in shifts.items():
        for i in range(per):
            scale = 1e-4 * (i + 1)
            b.append(rec(w, i, scale * rng.lognormal(0, 0.01, 60)))
            n.append(rec(w, i, f * scale * rng.lognormal(0, 0.01, 60)))

    def run(cases: list[CaseRecord], rid: str) -> LoadedRun:
        r = RunRecord(run_id=rid, suite="s", started_at="2026-01-01T00:00:00+00:00",
                      options={"quick": quick}, environment={})
        return LoadedRun(r, cases, rid)

    return run(b, "base"), run(n, "new")


def verdicts(shifts: dict[str, float], **kw: object) -> dict[str, set[str]]:
    cmp = compare_runs(*runs(shifts, 1, **kw), CompareOptions(threshold=0.03))  # type: ignore[arg-type]
    out: dict[str, set[str]] = {}
    for c in cmp.cases:
        out.setdefault(c.workload, set()).add(c.verdict)
    return out


def test_the_whole_machine_shifting_is_not_called_a_regression_and_the_reason_says_why() -> None:
    cmp = compare_runs(*runs({"a": 1.08, "b": 1.09, "c": 1.07}, 2), CompareOptions(threshold=0.03))
    assert not cmp.regressions and {c.verdict for c in cmp.cases} == {"inconclusive"}
    assert all("separate runs cannot tell" in c.reason for c in cmp.cases)
    assert cmp.drift is not None and cmp.drift["estimable"] and math.isclose(cmp.drift["median_ratio"], 1.08, rel_tol=0.01)


def test_one_workload_slower_while_the_others_stay_is_a_regression() -> None:
    got = verdicts({"a": 1.10, "b": 1.0, "c": 1.0})
    assert got["a"] == {"slower"} and "slower" not in got["b"] | got["c"]


def test_a_change_stands_out_from_a_drifting_machine() -> None:
    got = verdicts({"a": 1.20, "b": 1.05, "c": 1.05})  # +20% where the machine moved +5%
    assert got["a"] == {"slower"} and "slower" not in got["b"] | got["c"]


def test_one_workload_alone_cannot_tell_a_shift_from_the_machine() -> None:
    got = verdicts({"a": 1.10})
    assert got == {"a": {"inconclusive"}}


def test_scattered_drift_widens_every_case() -> None:
    # within-run CIs of ~0.5%, but the cases disagree by several percent: tau carries that
    rng = np.random.default_rng(3)
    logs = rng.normal(0, 0.04, 12)
    iv = [Interval(math.exp(x), math.exp(x - 0.01), math.exp(x + 0.01)) for x in logs]
    a = assess(["w"] * 6 + ["v"] * 6, iv, [0.03] * 12)
    assert 0.02 < a.tau < 0.08
    for x, c in zip(logs, a.cases, strict=True):
        assert c.ci_high / c.ci_low > math.exp(0.02) ** 2  # wider than the within-run CI
        assert (c.p_slower < 0.5) == (x - math.log(c.shift) > 0)


def test_a_quick_run_never_gives_a_confident_verdict() -> None:
    got = verdicts({"a": 1.10, "b": 1.0, "c": 1.0}, quick=True)
    assert set().union(*got.values()) == {"inconclusive"}
    assert smoke("unchanged", "CI within") == ("inconclusive",
                                              "--quick smoke run: too little sampling for a verdict (unchanged: CI within)")
    assert smoke("failed", "x") == ("failed", "x")


def test_a_case_that_stood_still_while_the_others_moved_is_not_called_slower() -> None:
    got = verdicts({"a": 1.0, "b": 0.90, "c": 0.90})  # the others got 10% faster; a did not change
    assert "slower" not in got["a"] and got["a"] == {"inconclusive"}


def contended_runs(base_share: float, new_share: float) -> tuple[LoadedRun, LoadedRun]:
    """Workload b 60% slower in the second run, as a burst of other processes' work would make it, with
    the shares of the machine others took recorded on b's cases (a and c measured on a quiet machine)."""
    base, new = runs({"a": 1.0, "b": 1.6, "c": 1.0}, 3)
    for side, share in ((base, base_share), (new, new_share)):
        for c in side.cases:
            s = share if c.workload == "b" else 0.02
            c.contention = {"wall_s": 1.0, "cpu_s": 1.0, "other_cpu_s": 2 * s, "other_cores": 2 * s, "cores": 2.0}
    return base, new


def test_a_slowdown_measured_while_others_took_the_machine_is_not_called_a_regression() -> None:
    cmp = compare_runs(*contended_runs(0.03, 0.55), CompareOptions(threshold=0.03))
    b = [c for c in cmp.cases if c.workload == "b"]
    assert {c.verdict for c in b} == {"inconclusive"}
    assert all("other processes took 55% of the machine while new measured it (3% in the other run): unlike conditions" in c.reason
               for c in b)
    assert all(c.new_others == 0.55 and c.base_others == 0.03 for c in b)
    assert not cmp.regressions
    # the burst's cases do not define the machine's shift: a and c, unchanged, are judged against each other
    assert cmp.drift is not None and cmp.drift["between_run_scatter"] < 0.01
    assert {c.verdict for c in cmp.cases if c.workload != "b"} == {"unchanged"}


def test_the_same_contention_on_both_sides_leaves_the_verdict() -> None:
    # under the same load in both runs, the contention explains nothing: b is slower
    cmp = compare_runs(*contended_runs(0.45, 0.55), CompareOptions(threshold=0.03))
    assert {c.verdict for c in cmp.cases if c.workload == "b"} == {"slower"}


def test_contention_rule_holds_either_verdict_whichever_side_was_busier() -> None:
    # unlike contention slowed some cases and sped others up (measured): no direction is assumed
    for verdict in ("slower", "faster"):
        for b, n in ((0.0, 0.3), (0.3, 0.0), (0.1, 0.9)):
            v, why = contended(verdict, "r", b, n)
            assert v == "inconclusive" and f"while {'new' if n > b else 'base'} measured it" in why
        assert contended(verdict, "r", None, 0.9) == (verdict, "r")  # not measured: no rule
        assert contended(verdict, "r", 0.5, 0.74) == (verdict, "r")  # like conditions
    assert contended("unchanged", "r", 0.0, 0.9) == ("unchanged", "r")

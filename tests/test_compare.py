"""compare's statistics and verdicts as pure functions on constructed samples and records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accelbench.compare import (
    CompareOptions,
    LoadedRun,
    RatioCI,
    block_values,
    blocked_ratio,
    case_stats,
    compare_runs,
    decide,
    holm,
    log_median_var,
    machine_diff,
    parse_fraction,
    ratio_ci,
    shift_test,
    side_of,
    speedups,
)
from accelbench.errors import ResultsError, UsageError
from accelbench.identity import CaseKey
from accelbench.results import CaseRecord, RunRecord, Timing


def lognormal(rng: np.random.Generator, n: int, scale: float = 1e-3, sigma: float = 0.02) -> np.ndarray:
    return scale * rng.lognormal(0.0, sigma, n)


def verdict_of(base: np.ndarray, new: np.ndarray, threshold: float = 0.03, alpha: float = 0.01,
               metric: str = "median", rounds: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[str, RatioCI]:
    """Run two sample sets through the same path compare_runs uses, for one case."""
    b = case("c", base, rounds=None if rounds is None else rounds[0])
    n = case("c", new, rounds=None if rounds is None else rounds[1])
    sb, sn = side_of(b, metric), side_of(n, metric)
    assert sb is not None and sn is not None
    r, ps, pf, _ = case_stats(sb, sn, metric, paired=rounds is not None)
    v, _ = decide(r, ps, pf, threshold, alpha, sn.value - sb.value, 0.0)
    return v, r


def case(key: str, samples: np.ndarray | list[float] | None, status: str = "ok", backend: str = "cpu",
         params: dict | None = None, dh: str = "h", rounds: np.ndarray | None = None, thresholds: dict | None = None,
         suite: str = "s", workload: str = "w", label: str | None = None) -> CaseRecord:
    params = params if params is not None else {"n": key}
    timing = None
    if samples is not None:
        extra = {"rounds": [int(r) for r in rounds]} if rounds is not None else {}
        timing = Timing(method="cpu-perf_counter", samples_s=[float(x) for x in samples], inner_loops=1000,
                        **extra)
    cid = CaseKey.of(suite, workload, label, params, backend).id
    return CaseRecord(run_id="r", case_id=cid, suite=suite, workload=workload, name=f"{workload} n={key}",
                      label=label, params=params, backend=backend, status=status, definition_hash=dh, timing=timing,
                      thresholds=thresholds or {}, message="boom" if status != "ok" else "")


def run_of(cases: list[CaseRecord], env: dict | None = None, session: str | None = None) -> LoadedRun:
    opts = {"interleave": {"session": session}} if session else {}
    run = RunRecord(run_id="r", suite="s", started_at="2026-01-01T00:00:00Z",
                    environment=env if env is not None else {"cpu": {"model": "X"}}, options=opts)
    return LoadedRun(run=run, cases=cases, source="mem")


# ---------------------------------------------------------------- ratios, tests, verdicts


def test_identical_samples_are_unchanged_with_a_ratio_of_exactly_one():
    x = lognormal(np.random.default_rng(0), 200)
    v, r = verdict_of(x, x.copy())
    assert v == "unchanged"
    assert r.ratio == pytest.approx(1.0, abs=1e-12)
    assert r.ci_low <= 1.0 <= r.ci_high


def test_a_slowdown_of_exactly_5_percent_is_estimated_and_called_slower():
    rng = np.random.default_rng(1)
    base = lognormal(rng, 300, sigma=0.01)
    exact = base[rng.permutation(base.size)] * 1.05  # the same values, 5% slower, in another order
    v, r = verdict_of(base, exact, threshold=0.03)
    assert v == "slower"
    assert r.ratio == pytest.approx(1.05, abs=0.006) and 1.0 < r.ci_low < 1.05 < r.ci_high
    noisy = lognormal(rng, 300, sigma=0.01) * 1.05  # independent noise, same 5%
    v, r = verdict_of(base, noisy, threshold=0.03)
    assert v == "slower" and r.ci_low < 1.05 < r.ci_high
    # a threshold above the change never calls it slower
    assert verdict_of(base, noisy, threshold=0.07)[0] in ("inconclusive", "unchanged")


def test_a_speedup_is_faster_and_never_a_regression():
    rng = np.random.default_rng(2)
    base = lognormal(rng, 300, sigma=0.01)
    new = lognormal(rng, 300, sigma=0.01) / 1.10
    b, n = case("a", base), case("a", new)
    cmp = compare_runs(run_of([b]), run_of([n]), CompareOptions(threshold=0.05))
    assert cmp.cases[0].verdict == "faster" and not cmp.regressions


def test_heavy_tailed_noise_does_not_raise_false_alarms():
    """A/A with Student-t (df=1.5) multiplicative noise, 200 comparisons: no 'slower' at alpha=0.01."""
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(200):
        b = 1e-3 * (1 + 0.05 * np.abs(rng.standard_t(1.5, 120)))
        n = 1e-3 * (1 + 0.05 * np.abs(rng.standard_t(1.5, 120)))
        v, _ = verdict_of(b, n, threshold=0.02)
        alarms += v == "slower"
    assert alarms <= 1


def test_one_huge_outlier_neither_moves_the_ratio_nor_makes_a_verdict():
    rng = np.random.default_rng(4)
    base = lognormal(rng, 100)
    new = base[rng.permutation(base.size)].copy()
    new[17] *= 1000.0
    v, r = verdict_of(base, new)
    assert v == "unchanged"
    assert abs(r.ratio - 1) < 0.01


def test_tiny_samples_are_inconclusive_even_when_the_shift_is_large():
    v, r = verdict_of(np.array([1.0, 1.02, 0.99]) * 1e-3, np.array([1.2, 1.25, 1.22]) * 1e-3)
    assert v == "inconclusive"
    assert r.ratio == pytest.approx(1.22 / 1.0, rel=0.02)
    assert r.ci_low == 0.0 and math.isinf(r.ci_high)  # too few samples to bound anything


def test_price_bonett_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(5)
    hits = 0
    trials = 400
    for _ in range(trials):
        r = ratio_ci(lognormal(rng, 40, sigma=0.1), 1.1 * lognormal(rng, 40, sigma=0.1))
        hits += r.ci_low <= 1.1 <= r.ci_high
    assert 0.90 <= hits / trials <= 0.99


def test_log_median_variance_is_infinite_below_five_samples_and_shrinks_with_n():
    rng = np.random.default_rng(6)
    assert math.isinf(log_median_var(np.array([1.0, 2.0, 3.0])))
    v50 = log_median_var(lognormal(rng, 50, sigma=0.1))
    v500 = log_median_var(lognormal(rng, 500, sigma=0.1))
    assert v500 < v50 / 4


def test_mean_and_min_metrics_use_a_bootstrap_and_see_the_shift():
    rng = np.random.default_rng(7)
    base = lognormal(rng, 200, sigma=0.01)
    new = 1.08 * lognormal(rng, 200, sigma=0.01)
    for metric in ("mean", "min"):
        r = ratio_ci(base, new, metric)
        assert r.method == "bootstrap" and r.ci_low > 1.0 and r.ratio == pytest.approx(1.08, abs=0.02)


def test_shift_test_one_sided_p_values():
    rng = np.random.default_rng(8)
    b = lognormal(rng, 50)
    ps, pf = shift_test(b, b * 1.2)
    assert ps < 1e-6 and pf > 0.99
    assert shift_test([1.0], [2.0]) == (1.0, 1.0)


def test_holm_adjustment_matches_hand_computation():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2*0.8 caps at 1, and adjusted p never decrease


def test_timer_resolution_floor_makes_any_difference_unchanged():
    r = RatioCI(2.0, 1.9, 2.1, 0.95, "x")
    v, why = decide(r, 1e-9, 1.0, 0.05, 0.01, diff_s=5e-10, floor_s=1e-9)
    assert v == "unchanged" and "resolution" in why
    assert decide(r, 1e-9, 1.0, 0.05, 0.01, diff_s=5e-6, floor_s=1e-9)[0] == "slower"


def test_decide_needs_both_the_threshold_and_the_evidence():
    big_noisy = RatioCI(1.2, 0.9, 1.6, 0.95, "x")
    assert decide(big_noisy, 0.2, 0.8, 0.05, 0.01)[0] == "inconclusive"
    small_sure = RatioCI(1.02, 1.015, 1.025, 0.95, "x")
    assert decide(small_sure, 1e-9, 1.0, 0.05, 0.01)[0] == "unchanged"  # significant but within threshold
    assert decide(RatioCI(1.2, 1.1, 1.3, 0.95, "x"), 0.02, 1.0, 0.05, 0.01)[0] == "inconclusive"  # p > alpha


# ---------------------------------------------------------------- blocks (batch means) and rounds


def test_batch_means_do_not_take_a_level_shift_inside_a_run_for_a_regression():
    """Samples that come in level-shifted stretches (another process's load) are not independent: a
    sample-level test calls two such A/A runs different, the block analysis does not."""
    rng = np.random.default_rng(9)

    def shifty() -> np.ndarray:
        levels = rng.choice([1.0, 1.15], size=10)
        return np.concatenate([1e-3 * lv * rng.lognormal(0, 0.003, 30) for lv in levels])

    alarms_blocks = alarms_samples = 0
    for _ in range(60):
        b, n = shifty(), shifty()
        v, r = verdict_of(b, n, threshold=0.02)
        assert "batch means" in r.method
        alarms_blocks += v == "slower"
        ps, _ = shift_test(b, n)
        rs = ratio_ci(b, n)
        alarms_samples += ps < 0.01 and rs.ratio > 1.02 and rs.ci_low > 1
    assert alarms_blocks <= 1
    assert alarms_samples >= 5  # what treating samples as independent would have done


def test_block_values_split_in_time_order_and_refuse_short_series():
    x = np.arange(1, 31, dtype=float)
    bv = block_values(x, "median")
    assert len(bv) == 10 and bv[0] == 2.0 and bv[9] == 29.0
    assert block_values(np.ones(11), "median") == {}
    assert block_values(x, "min", rounds=np.repeat([0, 1, 2], 10)) == {0: 1.0, 1: 11.0, 2: 21.0}


def test_paired_rounds_cancel_round_effects_and_find_5_percent():
    rng = np.random.default_rng(10)
    rounds = np.repeat(np.arange(20), 15)
    effect = np.repeat(rng.choice([1.0, 1.3, 0.8], 20), 15)  # each round's machine state, shared by both sides
    base = 1e-3 * effect * rng.lognormal(0, 0.01, rounds.size)
    new_same = 1e-3 * effect * rng.lognormal(0, 0.01, rounds.size)
    v, r = verdict_of(base, new_same, rounds=(rounds, rounds), threshold=0.03)
    assert v == "unchanged" and "paired rounds" in r.method
    v, r = verdict_of(base, 1.05 * new_same, rounds=(rounds, rounds), threshold=0.03)
    assert v == "slower" and r.ci_low < 1.05 < r.ci_high


def test_paired_rounds_with_few_rounds_cannot_reach_significance():
    rounds = np.repeat(np.arange(5), 10)
    base = np.full(50, 1e-3)
    new = np.full(50, 1.2e-3) * (1 + 1e-3 * np.arange(50))
    _, ps, _, _ = (lambda s: blocked_ratio(block_values(s[0], "median", rounds),
                                           block_values(s[1], "median", rounds), paired=True))((base, new))
    assert ps >= 1 / 32  # exact signed-rank: 5 rounds cannot go below 2**-5


# ---------------------------------------------------------------- matching and runs


def test_compare_runs_lists_new_missing_failed_and_changed_definitions_never_dropping_any():
    rng = np.random.default_rng(11)
    x = lognormal(rng, 60)
    base = [case("a", x), case("gone", x), case("f", x), case("d", x, dh="old"), case("sk", x)]
    new = [case("a", x), case("f", None, status="failed"), case("d", x * 1.5, dh="new"), case("fresh", x),
           case("sk", None, status="skipped")]
    cmp = compare_runs(run_of(base), run_of(new))
    got = {c.name.split("=")[1]: c for c in cmp.cases}
    assert {k: c.verdict for k, c in got.items()} == {"a": "unchanged", "gone": "missing", "f": "failed",
                                                      "d": "slower", "fresh": "new", "sk": "missing"}
    assert got["d"].definition_changed and not cmp.regressions  # a changed benchmark is flagged, not gated
    assert "failed in new" in got["f"].reason and "skipped in new" in got["sk"].reason


def test_regressions_come_first_and_per_workload_thresholds_apply():
    rng = np.random.default_rng(12)
    x = lognormal(rng, 100, sigma=0.005)
    base = [case("lenient", x), case("strict", x), case("same", x)]
    new = [case("lenient", x * 1.08, thresholds={"regression": 0.10}),
           case("strict", x * 1.08, thresholds={"regression": 0.02}), case("same", x)]
    cmp = compare_runs(run_of(base), run_of(new), CompareOptions(threshold=0.05))
    assert cmp.cases[0].name.endswith("strict") and cmp.cases[0].verdict == "slower"
    lenient = next(c for c in cmp.cases if c.name.endswith("lenient"))
    assert lenient.verdict != "slower" and lenient.threshold == 0.10
    assert [c.name for c in cmp.regressions] == ["w n=strict"]


def test_match_key_ignores_named_params_and_keeps_label_and_backend():
    a = case("x", [1.0], params={"n": 4, "extra_work": 0.0}, label="big")
    b = case("x", [1.0], params={"n": 4, "extra_work": 0.05}, label="big")
    assert a.key.match_key() != b.key.match_key()
    assert a.key.match_key(["extra_work"]) == b.key.match_key(["extra_work"])
    assert "[big]" in a.key.match_key(["extra_work"]) and a.key.match_key(["extra_work"]).endswith("@cpu")
    assert a.key.label == "big" and case("y", [1.0]).key.label is None
    # the key is the record's fields, and its id is the stored case id
    assert a.key.id == a.case_id and a.key.pair_key == a.case_id.removesuffix("@cpu")


def test_a_label_tells_two_entries_with_the_same_params_apart_in_compare():
    x = [1e-3] * 30
    recs = [case("x", x, params={"n": 1}, label="a"), case("x", x, params={"n": 1}, label="b")]
    cmp = compare_runs(run_of(recs), run_of(recs))
    assert sorted(c.key for c in cmp.cases) == sorted(r.case_id for r in recs)
    assert all(c.verdict == "unchanged" for c in cmp.cases)


def test_ignored_parameter_explains_a_definition_change_so_the_case_is_gated():
    rng = np.random.default_rng(13)
    x = lognormal(rng, 100, sigma=0.005)
    b = case("x", x, params={"n": 1, "extra_work": 0.0}, dh="h0")
    n = case("x", x * 1.2, params={"n": 1, "extra_work": 0.2}, dh="h1")
    cmp = compare_runs(run_of([b]), run_of([n]), CompareOptions(ignore_params=("extra_work",)))
    c = cmp.cases[0]
    assert c.verdict == "slower" and not c.definition_changed and c.regressed
    assert "extra_work 0.0 -> 0.2" in c.notes[0]


def test_duplicate_identity_after_ignoring_params_is_an_error():
    recs = [case("x", [1.0], params={"n": 1, "k": 1}), case("x", [1.0], params={"n": 1, "k": 2})]
    with pytest.raises(ResultsError, match="share the identity"):
        compare_runs(run_of(recs), run_of(recs), CompareOptions(ignore_params=("k",)))


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError):
        compare_runs(run_of([]), run_of([]), CompareOptions(metric="p99"))
    with pytest.raises(UsageError):
        compare_runs(run_of([]), run_of([]), CompareOptions(alpha=1.5))


def test_parse_fraction():
    assert parse_fraction("5%") == pytest.approx(0.05)
    assert parse_fraction("0.05") == pytest.approx(0.05)
    assert parse_fraction("5") == pytest.approx(0.05)
    with pytest.raises(UsageError):
        parse_fraction("five")


def test_gpu_vs_cpu_speedup_within_one_run_with_its_ci():
    rng = np.random.default_rng(14)
    cpu = case("m", lognormal(rng, 100, scale=1e-2), backend="cpu")
    gpu = case("m", lognormal(rng, 100, scale=1e-3), backend="gpu")
    rows = speedups(run_of([cpu, gpu, case("only-cpu", lognormal(rng, 50))]))
    assert len(rows) == 1
    s = rows[0]
    assert s.speedup == pytest.approx(10.0, rel=0.02) and s.ci_low < 10.0 < s.ci_high


# ---------------------------------------------------------------- machine fingerprint


def test_machine_diff_ignores_volatile_fields_and_flags_real_differences():
    a = {"hostname": "ci-1", "cpu": {"model": "EPYC", "logical_cores": 2}, "packages": {"numpy": "2.0"},
         "gpu": {"name": "H100", "driver_version": "550", "volatile": {"sm_clock_mhz": 1980}},
         "volatile": {"memory_available_bytes": 5, "load_avg": [1, 2, 3]},
         "python": {"executable": "/a/python", "version": "3.11"}, "blas": [{"version": "0.3", "filepath": "/x/numpy.libs/libopenblas.so"}]}
    b = {"hostname": "ci-2", "cpu": {"model": "EPYC", "logical_cores": 2}, "packages": {"numpy": "2.0"},
         "gpu": {"name": "H100", "driver_version": "550", "volatile": {"sm_clock_mhz": 1410}},
         "volatile": {"memory_available_bytes": 9, "load_avg": [0, 0, 0]},
         "python": {"executable": "/b/python", "version": "3.11"}, "blas": [{"version": "0.3", "filepath": "/y/numpy.libs/libopenblas.so"}]}
    assert machine_diff(a, b) == []
    c = {**b, "gpu": {**b["gpu"], "name": "A100", "driver_version": "535"}, "packages": {"numpy": "2.1"}}
    keys = {d.key for d in machine_diff(a, c)}
    assert keys == {"gpu.name", "gpu.driver_version", "packages.numpy"}


def test_machine_diff_matches_libraries_by_identity_not_list_order():
    """threadpoolctl lists NumPy's and SciPy's OpenBLAS in load order: two runs of one machine were refused
    as 'blas[0].version: 0.3.30 -> 0.3.31.188.0; blas[1].version: 0.3.31.188.0 -> 0.3.30'."""
    np_blas = {"internal_api": "openblas", "version": "0.3.30", "num_threads": 2,
               "filepath": "/v1/site-packages/numpy.libs/libscipy_openblas64_-ff651d7f.so"}
    sp_blas = {"internal_api": "openblas", "version": "0.3.31.188.0", "num_threads": 2,
               "filepath": "/v1/site-packages/scipy.libs/libscipy_openblas-68440149.so"}
    moved = [{**d, "filepath": d["filepath"].replace("/v1/", "/v2/")} for d in (sp_blas, np_blas)]
    assert machine_diff({"blas": [np_blas, sp_blas]}, {"blas": moved}) == []
    upgraded = [{**sp_blas, "version": "0.3.32"}, np_blas]
    diffs = machine_diff({"blas": [np_blas, sp_blas]}, {"blas": upgraded})
    assert [(d.key, d.base, d.new) for d in diffs] == [
        ("blas[openblas:libscipy_openblas-68440149.so].version", "0.3.31.188.0", "0.3.32")]
    mkl = [{"internal_api": "mkl", "version": "2024", "filepath": "/v1/libmkl_rt.so.2"}]
    assert {d.key.split("]")[0] for d in machine_diff({"blas": [np_blas]}, {"blas": mkl})} == {
        "blas[openblas:libscipy_openblas64_-ff651d7f.so", "blas[mkl:libmkl_rt.so.2"}


def test_compare_reports_machine_differences():
    rng = np.random.default_rng(15)
    x = lognormal(rng, 50)
    cmp = compare_runs(run_of([case("a", x)], env={"cpu": {"model": "A"}}),
                       run_of([case("a", x)], env={"cpu": {"model": "B"}}))
    assert [(d.key, d.base, d.new) for d in cmp.machine] == [("cpu.model", "A", "B")]
    unchecked = compare_runs(run_of([case("a", x)], env={}), run_of([case("a", x)]))
    assert not unchecked.machine_checked and unchecked.machine == []


# ---------------------------------------------------------------- the fast paths equal what they replace


def test_mannwhitney_one_sided_equals_scipys_for_both_alternatives():
    """compare computes both one-sided p-values itself (scipy's wrapper cost ~1 ms a call, two calls per
    case); they must be scipy's, exact method and normal approximation, with ties and without."""
    from scipy import stats as st

    from accelbench.compare import mannwhitney_one_sided

    rng = np.random.default_rng(7)
    for trial in range(200):
        n1, n2 = int(rng.integers(2, 14)), int(rng.integers(2, 14))
        if trial % 3 == 0:  # ties
            x, y = rng.integers(0, 4, n1).astype(float), rng.integers(0, 4, n2).astype(float)
        else:
            x, y = rng.lognormal(0, 1, n1), rng.lognormal(0.4, 1, n2)
        if np.all(x == x[0]) and np.all(y == y[0]) and x[0] == y[0]:
            continue
        ref = (st.mannwhitneyu(x, y, alternative="greater").pvalue, st.mannwhitneyu(x, y, alternative="less").pvalue)
        assert mannwhitney_one_sided(x, y) == pytest.approx(ref, rel=1e-12, abs=1e-300), (x, y)


def test_block_medians_equal_numpys_exactly():
    rng = np.random.default_rng(8)
    for n in [24, 25, 29, 30, 31, 99, 100, 101, 1001, 4999]:
        x = rng.lognormal(0, 1, n)
        k = min(10, n // 3)
        assert block_values(x, "median") == {i: float(np.median(b)) for i, b in enumerate(np.array_split(x, k))}
        assert side_of(case("a", x), "median").value == float(np.median(x))


def test_the_match_text_is_the_keys_id_for_labels_nested_and_unicode_params() -> None:
    from accelbench.identity import case_id

    for suite, wl, label, params, be in (("s", "gemm", None, {"n": 1, "dtype": "float32"}, "cpu"),
                                         ("s", "conv", "big", {"shape": [1, 3, 224, 224], "x": {"b": 1, "a": 2}}, "gpu"),
                                         ("ü", "w", "", {"name": "π ✓", "f": 0.1}, "cpu")):
        key = CaseKey.of(suite, wl, label, params, be)
        assert case_id(suite, wl, label, params, be) == key.id == key.match_key(())
        assert CaseKey.parse(key.id) == key

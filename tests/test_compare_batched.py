"""compare's batched statistics (numpy over many cases at once) give exactly what the per-case functions
give, case by case; the lean reader (results.CaseCore) compares exactly as full records do and keeps
read_cases' refusals; the terminal table stays bounded."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from accelbench.compare import (
    METRICS,
    RatioCI,
    Side,
    block_matrix,
    block_values,
    case_stats,
    cases_stats,
    compare_runs,
    holm,
    load_core,
    load_side,
    side_of,
    sides_of,
    timing_problem,
    timing_problems,
)
from accelbench.errors import ResultsError
from accelbench.report.markdown import text_table
from accelbench.results import CaseCore, CaseRecord, RunRecord, RunWriter, TimingSummary, read_run

from .test_compare import case, run_of


def random_case(rng: np.random.Generator, i: int, paired: bool) -> tuple[CaseRecord, CaseRecord]:
    """A base and a new record of one case: sample counts from 0 (summary only) through short series
    (independent samples) to batch means of 8-10 blocks, some with ties, some changed, some interleaved."""
    counts = [0, 1, 2, 4, 5, 7, 12, 23, 24, 25, 26, 29, 30, 31, 33, 47, 60, 100]
    nb = int(rng.choice(counts))
    nn = nb if rng.random() < 0.6 else int(rng.choice(counts))
    med = math.exp(rng.uniform(math.log(1e-6), math.log(1e-2)))
    factor = float(rng.choice([1.0, 1.0, 1.02, 1.1, 1.5, 0.8]))
    tie = rng.random() < 0.25

    def samples(n: int, f: float) -> np.ndarray:
        x = med * f * rng.lognormal(0.0, float(rng.choice([1e-3, 0.03, 0.2])), n)
        return np.round(x / med, 2) * med if tie else x  # ties: two significant digits

    out = []
    for n, f in ((nb, 1.0), (nn, factor)):
        x = samples(n, f)
        rounds = np.arange(n) % int(rng.choice([2, 3, 5, 8])) if paired and n else None
        rec = case(str(i), x, rounds=rounds)
        if n == 0:  # an import without raw samples: its summary only
            assert rec.timing is not None
            rec.timing.stop_reason = "imported"
            rec.timing.summary = TimingSummary(n=20, median=med * f, mean=med * f, min=med * f * 0.9,
                                               iqr=med * 0.05, stdev=med * 0.04)
        out.append(rec)
    return out[0], out[1]


def sides(paired: bool, n: int = 500, seed: int = 0, metric: str = "median") -> list[tuple[Side, Side]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b, nw = random_case(rng, i, paired)
        sb, sn = side_of(b, metric), side_of(nw, metric)
        assert sb is not None and sn is not None
        out.append((sb, sn))
    return out


def same(a: tuple[RatioCI, float, float, str], b: tuple[RatioCI, float, float, str]) -> bool:
    """Bit for bit (NaN equal to NaN)."""
    return json.dumps([asdict(a[0]), *a[1:]]) == json.dumps([asdict(b[0]), *b[1:]])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("paired", [False, True])
def test_cases_stats_equals_case_stats_case_by_case(metric: str, paired: bool) -> None:
    # (interleave rounds go case by case through scipy's Wilcoxon, ~1 ms a case: fewer of them)
    pairs = sides(paired, n=200 if paired else 500, metric=metric, seed=int(paired) * 7 + METRICS.index(metric))
    batched = cases_stats(pairs, metric, paired=paired, seed=lambda i: i)
    single = [case_stats(b, n, metric, paired=paired, seed=i) for i, (b, n) in enumerate(pairs)]
    assert len(batched) == len(pairs)
    assert all(same(a, b) for a, b in zip(batched, single, strict=True))
    methods = {r.method.split(" (")[0] for r, *_ in batched}  # every path was taken
    expected = {"batch means, Hodges-Lehmann", "summary-only" if metric == "min" else "summary-normal",
                "price-bonett" if metric == "median" else "bootstrap"}
    assert expected <= methods, methods
    if paired:
        assert "paired rounds, Hodges-Lehmann" in methods
    tests = {t for *_, t in batched}
    assert "Mann-Whitney U on log block values" in tests
    # exact (a side of 8 blocks, no ties) and normal-approximation p-values both occurred among batch means
    blocks = {r.method for r, *_ in batched if r.method.startswith("batch means")}
    assert any("(8+" in m or "+8 " in m for m in blocks) and any("(10+10" in m for m in blocks)


def test_block_matrix_rows_are_block_values() -> None:
    rng = np.random.default_rng(3)
    for n in (23, 24, 25, 29, 30, 31, 47, 100):
        x = rng.lognormal(0, 0.1, (50, n))
        x[::7, 1] = x[::7, 0]  # ties within a block
        for metric in METRICS:
            m = block_matrix(x, metric)
            assert m.shape[1] == len(block_values(x[0], metric))
            for row, xs in zip(m, x, strict=True):
                assert row.tolist() == list(block_values(xs, metric).values())


def test_sides_of_and_timing_problems_equal_the_per_case_functions() -> None:
    rng = np.random.default_rng(4)
    recs: list[CaseRecord] = []
    for i in range(300):
        n = int(rng.choice([0, 1, 3, 30, 31]))
        x = rng.lognormal(0, 0.1, n) * 1e-3
        if n and rng.random() < 0.3:
            x[int(rng.integers(n))] = float(rng.choice([math.nan, math.inf, 0.0, -1.0]))
        recs.append(case(str(i), x))
    recs.append(case("none", None))
    for metric in METRICS:
        got = sides_of(recs, metric)
        for r, s in zip(recs, got, strict=True):
            ref = side_of(r, metric)
            if ref is None or s is None:
                assert ref is s
                continue
            assert s.samples.tolist() == ref.samples.tolist() and s.n == ref.n and s.floor_s == ref.floor_s
            assert json.dumps(s.value) == json.dumps(ref.value)
    assert timing_problems([r.timing for r in recs]) == [timing_problem(r.timing) for r in recs]
    assert any(timing_problem(r.timing) for r in recs) and any(not timing_problem(r.timing) for r in recs)


def test_holm_matches_the_step_down_definition() -> None:
    rng = np.random.default_rng(5)
    p = np.concatenate([rng.uniform(0, 1, 300), rng.uniform(0, 1e-4, 50), [0.5, 0.5, 0.0, 1.0, math.nan]])
    rng.shuffle(p)
    order = np.argsort(p, kind="stable")
    ref, running = np.empty(p.size), 0.0
    for rank, i in enumerate(order):  # the textbook loop
        running = max(running, min(1.0, (p.size - rank) * p[i]))
        ref[i] = running
    assert holm(p.tolist()) == ref.tolist()


def write_run(root, run_id: str, recs: list[CaseRecord], extra_lines: list[str] = ()):  # type: ignore[no-untyped-def]
    w = RunWriter(root, RunRecord(run_id=run_id, suite="s", started_at="2026-01-01T00:00:00Z",
                                  environment={"cpu": {"model": "X"}}))
    for r in recs:
        w.append(r)
    w.close("finished", {"ok": len(recs)})
    with open(w.dir / "cases.jsonl", "a") as f:
        f.writelines(line + "\n" for line in extra_lines)
    return w.dir


def test_lean_records_compare_exactly_as_full_records(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(6)
    pairs = [random_case(rng, i, False) for i in range(120)]
    base = write_run(tmp_path, "b", [b for b, _ in pairs] + [case("gone", [1e-3] * 30), case("bad", [1e-3] * 30)])
    new = write_run(tmp_path, "n", [n for _, n in pairs] + [case("fresh", [1e-3] * 30),
                                                            case("bad", [1e-3] * 29 + [math.nan])])
    full = compare_runs(load_side(base), load_side(new)).to_dict()
    lean = compare_runs(load_core(base), load_core(new)).to_dict()
    assert json.dumps(full) == json.dumps(lean)
    assert {c["verdict"] for c in lean["cases"]} >= {"missing", "new", "failed", "unchanged"}
    _, cores = read_run(base, CaseCore)
    assert all(isinstance(c, CaseCore) for c in cores) and [c.case_id for c in cores] == \
        [c.case_id for c in read_run(base)[1]]


def test_lean_reading_keeps_the_refusals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    one = case("a", [1e-3] * 30)
    line = json.dumps(one.model_dump(mode="json"))
    dup = write_run(tmp_path, "dup", [one, case("b", [1e-3] * 30)], [line])
    with pytest.raises(ResultsError, match=r"cases.jsonl:3: case .* is recorded twice \(first at line 1\)"):
        read_run(dup, CaseCore)
    bad = write_run(tmp_path, "bad", [one], ['{"schema_version": 2, "case_id": 5}'])
    with pytest.raises(ResultsError, match=r"cases.jsonl:2: not a case record: run_id"):  # as a full read says
        read_run(bad, CaseCore)
    # a version-1 record (no label field) takes the careful path and comes back upgraded
    old = {**one.model_dump(mode="json"), "schema_version": 1, "case_id": "s/w[lab]/{\"n\":\"a\"}@cpu"}
    del old["label"]
    v1 = write_run(tmp_path, "v1", [], [json.dumps(old)])
    (rec,) = read_run(v1, CaseCore)[1]
    assert isinstance(rec, CaseCore) and rec.label == "lab" and rec.timing is not None and len(rec.timing.samples_s) == 30


def test_terminal_table_is_bounded_and_says_what_it_left_out() -> None:
    x = np.full(30, 1e-3)
    base = run_of([case(str(i), x) for i in range(150)] + [case("s", x)])
    new = run_of([case(str(i), x) for i in range(150)] + [case("s", x * 2.0)])
    cmp = compare_runs(base, new)
    text = text_table(cmp, max_rows=20)
    assert len(text.splitlines()) < 30
    assert text.splitlines()[1].startswith("w n=s")  # the regression first
    assert "... 131 more cases not shown (131 unchanged): --json or --markdown lists every case" in text
    assert len(cmp.to_dict()["cases"]) == 151

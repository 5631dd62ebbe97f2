"""Exports CI dashboards read (pytest-benchmark, github-action-benchmark, Bencher) and the pytest-benchmark
import, on records and on pytest-benchmark's own code."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from accelbench import exports
from accelbench.compare import CompareOptions, LoadedRun, compare_runs, load_side
from accelbench.errors import ResultsError, UsageError
from accelbench.results import CaseRecord, RunRecord, Timing, TimingSummary


def record(name: str, samples: list[float], backend: str = "cpu", throughput: dict | None = None,
           status: str = "ok") -> CaseRecord:
    t = Timing(method="cpu-perf_counter", samples_s=samples, inner_loops=7, summary=TimingSummary.of(samples)) \
        if samples else None
    return CaseRecord(run_id="r1", case_id=f"s/w/{{\"n\":\"{name}\"}}@{backend}", suite="s", workload="w",
                      name=f"w n={name}", params={"n": name}, backend=backend, status=status, timing=t,
                      definition_hash="abc", throughput=throughput or {}, work={"item_unit": "images"},
                      thresholds={"regression": 0.1})


def a_run() -> RunRecord:
    return RunRecord(run_id="r1", suite="s", started_at="2026-01-01T00:00:00Z",
                     finished_at="2026-01-01T00:01:00Z", git={"commit": "deadbeef", "dirty": False},
                     environment={"hostname": "h", "os": "Linux 6.1", "cpu": {"model": "EPYC", "arch": "x86_64",
                                                                              "logical_cores": 2},
                                  "python": {"version": "3.11.7", "implementation": "CPython"}})


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 37, 100])
def test_stats_equal_pytest_benchmarks_own_computation(n: int):
    from pytest_benchmark.stats import Stats

    rng = np.random.default_rng(n)
    data = list(rng.lognormal(-7, 0.3, n))
    ref = Stats()
    for x in data:
        ref.update(x)
    ours = exports.pytest_benchmark_stats(data, iterations=3)
    for k, v in ref.as_dict().items():
        if isinstance(v, float):
            assert ours[k] == pytest.approx(v, rel=1e-12, abs=1e-300), k
        else:
            assert ours[k] == v, k
    assert ours["data"] == data and ours["iterations"] == 3


def test_pytest_benchmark_layout_and_round_trip_import(tmp_path: Path):
    rng = np.random.default_rng(0)
    cases = [record("a", list(rng.lognormal(-7, 0.05, 40))), record("b", list(rng.lognormal(-6, 0.05, 30)),
                                                                   backend="gpu"),
             record("bad", [], status="failed")]
    doc = exports.to_pytest_benchmark(a_run(), cases)
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert doc["commit_info"]["id"] == "deadbeef" and doc["machine_info"]["processor"] == "EPYC"
    assert [b["name"] for b in doc["benchmarks"]] == ["w n=a @cpu", "w n=b @gpu"]  # failed cases are left out
    st = doc["benchmarks"][0]["stats"]
    for k in ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ops", "rounds", "data"):
        assert k in st
    f = tmp_path / "pb.json"
    f.write_text(json.dumps(doc))
    imported = load_side(f)
    assert imported.kind == "pytest-benchmark"
    assert [c.case_id for c in imported.cases] == [c.case_id for c in cases[:2]]
    assert [c.backend for c in imported.cases] == ["cpu", "gpu"]
    assert imported.cases[0].timing is not None and imported.cases[0].timing.samples_s == cases[0].timing.samples_s
    assert imported.cases[0].thresholds == {"regression": 0.1}
    assert imported.run.environment["cpu"]["model"] == "EPYC"  # the fingerprint survives for the machine check
    cmp = compare_runs(LoadedRun(a_run(), cases[:2], "orig"), imported)
    assert [c.verdict for c in cmp.cases] == ["unchanged", "unchanged"] and cmp.machine == []


def test_pytest_benchmarks_own_compare_reads_the_export(tmp_path: Path):
    rng = np.random.default_rng(1)
    f = tmp_path / "0001_x.json"
    f.write_text(json.dumps(exports.to_pytest_benchmark(a_run(), [record("a", list(rng.lognormal(-7, 0.05, 20)))])))
    r = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(f)], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "w n=a @cpu" in r.stdout and "Median" in r.stdout


def test_import_of_a_foreign_pytest_benchmark_file_without_data_uses_the_summary(tmp_path: Path):
    def bench(name: str, median: float) -> dict:
        return {"name": name, "fullname": f"tests/test_x.py::{name}", "group": None, "params": None,
                "extra_info": {}, "options": {"timer": "perf_counter"},
                "stats": {"min": median * 0.9, "max": median * 1.2, "mean": median, "stddev": median * 0.01,
                          "rounds": 500, "median": median, "iqr": median * 0.01, "q1": median * 0.995,
                          "q3": median * 1.005, "ops": 1 / median, "total": 500 * median, "iterations": 1}}

    base = {"machine_info": {"node": "a", "cpu": {"brand_raw": "X"}}, "commit_info": {"id": "1", "project": "p"},
            "benchmarks": [bench("test_fast", 1e-3), bench("test_slow", 1e-3)], "datetime": "d", "version": "5.1.0"}
    new = {**base, "machine_info": {"node": "b", "cpu": {"brand_raw": "X"}},
           "benchmarks": [bench("test_fast", 1e-3), bench("test_slow", 1.2e-3)]}
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "new.json").write_text(json.dumps(new))
    a, b = load_side(tmp_path / "base.json"), load_side(tmp_path / "new.json")
    assert a.cases[0].case_id == "tests/test_x.py::test_fast" and a.cases[0].timing.samples_s == []
    cmp = compare_runs(a, b, CompareOptions(threshold=0.05))
    got = {c.name: c for c in cmp.cases}
    assert got["test_slow"].verdict == "slower" and "summaries" in got["test_slow"].test
    assert got["test_fast"].verdict == "unchanged"
    assert cmp.machine == []  # node (host name) is not a machine difference


def test_import_errors_are_results_errors(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match="invalid JSON"):
        load_side(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ResultsError, match="not a pytest-benchmark JSON"):
        load_side(bad)
    bad.write_text(json.dumps({"benchmarks": [{"name": "x", "stats": {"median": "fast"}}]}))
    with pytest.raises(ResultsError, match="benchmarks\\[0\\]"):
        load_side(bad)


def test_github_action_benchmark_smaller_and_bigger_is_better():
    rng = np.random.default_rng(2)
    cases = [record("a", list(rng.lognormal(-7, 0.05, 40)), throughput={"gflops": 12.5}),
             record("b", list(rng.lognormal(-7, 0.05, 40)))]
    small = exports.to_github_action_benchmark(cases)
    assert [set(e) for e in small] == [{"name", "unit", "value", "range", "extra"}] * 2
    assert small[0]["unit"] == "s" and small[0]["value"] == pytest.approx(np.median(cases[0].timing.samples_s))
    assert small[0]["range"].startswith("± ") and "case_id" in small[0]["extra"]
    big = exports.to_github_action_benchmark(cases, bigger_is_better=True)
    assert big[0]["unit"] == "GFLOP/s" and big[0]["value"] == 12.5
    assert big[1]["unit"] == "ops/s" and big[1]["value"] == pytest.approx(1 / np.median(cases[1].timing.samples_s))
    json.dumps(small + big)  # plain JSON


def test_bencher_metric_format():
    rng = np.random.default_rng(3)
    c = record("a", list(rng.lognormal(-7, 0.05, 40)))
    doc = exports.to_bencher([c])
    m = doc["w n=a @cpu"]
    s = c.timing.summary
    assert m["latency"]["value"] == pytest.approx(s.median * 1e9)
    assert m["latency"]["lower_value"] <= m["latency"]["value"] <= m["latency"]["upper_value"]
    assert m["throughput"]["value"] == pytest.approx(1 / s.median)
    assert all(math.isfinite(v) for meas in m.values() for v in meas.values())


def test_unknown_format_is_a_usage_error():
    with pytest.raises(UsageError, match="choose one of"):
        exports.export(a_run(), [], "csv")

"""Exports to formats CI dashboards already read, and importing pytest-benchmark JSON as a run.

Exporters turn records into plain JSON-ready objects and never write files themselves (the CLI writes).

- ``pytest-benchmark``: pytest-benchmark's saved layout (``machine_info``, ``commit_info``, ``benchmarks``
  with ``stats``: min, max, mean, stddev, rounds, median, iqr, q1, q3, outlier counts, ld15iqr, hd15iqr,
  ops, total, data, iterations) computed by pytest-benchmark's own ``Stats``, so tools
  that read its files (its own ``compare``, github-action-benchmark's ``pytest`` tool, Bencher's adapter)
  take accelbench results unchanged. ``data`` and every time are seconds per operation, as there.
- ``gab-smaller`` / ``gab-bigger``: github-action-benchmark's custom tools ``customSmallerIsBetter``
  (median time, unit "s") and ``customBiggerIsBetter`` (throughput: GFLOP/s, else GB/s, else items/s,
  else operations/s); entries ``{name, value, unit, range, extra}`` with ``range`` a "± x" string.
- ``bencher``: Bencher Metric Format: ``{benchmark: {"latency": {value, lower_value, upper_value}}}`` in
  nanoseconds (Bencher's built-in Latency measure) with the median's CI as the bounds, plus a
  ``throughput`` measure in operations per second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from .errors import ResultsError, UsageError
from .identity import CaseKey
from .results import SCHEMA_VERSION, CaseRecord, RunRecord, Timing, TimingSummary

FORMATS = ("pytest-benchmark", "gab-smaller", "gab-bigger", "bencher")
MAX_IMPORT_BYTES = 256 << 20  # a pytest-benchmark JSON with raw data for thousands of benchmarks


def _ok(cases: Sequence[CaseRecord]) -> list[CaseRecord]:
    return [c for c in cases if c.status == "ok" and c.timing is not None and c.timing.samples_s]


def bench_name(c: CaseRecord) -> str:
    return f"{c.name} @{c.backend}"


# ---------------------------------------------------------------- pytest-benchmark


def pytest_benchmark_stats(data: Sequence[float], iterations: int = 1) -> dict[str, Any]:
    """pytest-benchmark's own ``Stats.as_dict()`` plus ``data`` and ``iterations``, for per-operation
    seconds. Computed by the installed pytest-benchmark itself (a runtime dependency), so an exported file
    holds exactly what that version computes: a copy of its formulas drifted when it fixed ``hd15iqr``."""
    from pytest_benchmark.stats import Stats

    if not data:
        raise ValueError("no samples")
    st = Stats()
    for v in data:
        st.update(float(v))
    out: dict[str, Any] = st.as_dict()
    out["data"] = [float(v) for v in data]
    out["iterations"] = int(iterations)
    return out


def machine_info(run: RunRecord) -> dict[str, Any]:
    env = run.environment or {}
    py = env.get("python", {}) if isinstance(env.get("python"), dict) else {}
    cpu = env.get("cpu", {}) if isinstance(env.get("cpu"), dict) else {}
    os_ = str(env.get("os", ""))
    return {
        "node": env.get("hostname", ""),
        "processor": cpu.get("model", ""),
        "machine": cpu.get("arch", ""),
        "python_implementation": py.get("implementation", ""),
        "python_version": py.get("version", ""),
        "system": os_.split(" ", 1)[0] if os_ else "",
        "release": os_.split(" ", 1)[1] if " " in os_ else "",
        "cpu": {"brand_raw": cpu.get("model", ""), "count": cpu.get("logical_cores")},
        "accelbench": env,  # the full fingerprint, so an import back loses nothing
    }


def to_pytest_benchmark(run: RunRecord, cases: Sequence[CaseRecord]) -> dict[str, Any]:
    benches = []
    for c in _ok(cases):
        t = c.timing
        assert t is not None
        benches.append({
            "group": f"{c.suite}/{c.workload}",
            "name": bench_name(c),
            "fullname": c.case_id,
            "params": {**c.params, "backend": c.backend},
            "param": c.backend,
            "extra_info": {"case_id": c.case_id, "backend": c.backend, "workload": c.workload,
                           "definition_hash": c.definition_hash, "throughput": c.throughput, "work": c.work,
                           "validation": c.validation, "thresholds": c.thresholds, "run_id": c.run_id,
                           "suite": c.suite, "method": t.method, "params": c.params},
            "options": {"timer": t.method, "warmup": t.warmup, "stop_reason": t.stop_reason,
                        "min_rounds": None, "max_time": None, "min_time": None, "disable_gc": False},
            "stats": pytest_benchmark_stats(t.samples_s, t.inner_loops),
        })
    git = run.git or {}
    return {
        "machine_info": machine_info(run),
        "commit_info": {"id": git.get("commit", "unversioned"), "dirty": bool(git.get("dirty", False)),
                        "time": None, "author_time": None, "project": run.suite, "branch": git.get("branch", "")},
        "benchmarks": benches,
        "datetime": run.finished_at or run.started_at,
        "version": "5.1.0",  # the layout version this mirrors
    }


def import_pytest_benchmark(path: str | Path) -> tuple[RunRecord, list[CaseRecord]]:
    """Read a pytest-benchmark JSON (``--benchmark-json`` / ``--benchmark-save``) as an accelbench run.

    Each benchmark becomes a case on the "cpu" backend whose identity is its ``fullname``; raw samples come
    from ``stats.data`` when the file holds them (pytest-benchmark saves them unless
    ``--benchmark-save-data`` is off), otherwise only the summary is kept and compare falls back to a normal
    approximation from the summary (marked as such). Files accelbench exported keep their own case ids.
    """
    from .safeio import read_text

    p = Path(path)
    try:
        obj = json.loads(read_text(p, MAX_IMPORT_BYTES))  # regular files only, bounded
    except json.JSONDecodeError as e:
        raise ResultsError(f"{p}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("benchmarks"), list):
        raise ResultsError(f"{p}: not a pytest-benchmark JSON (no 'benchmarks' list) and not a run directory")
    mi: dict[str, Any] = obj["machine_info"] if isinstance(obj.get("machine_info"), dict) else {}
    env: dict[str, Any] = mi["accelbench"] if isinstance(mi.get("accelbench"), dict) else {"pytest_benchmark": mi}
    ci: dict[str, Any] = obj["commit_info"] if isinstance(obj.get("commit_info"), dict) else {}
    run_id = f"pytest-benchmark:{p.name}"
    suite = str(ci.get("project") or "pytest-benchmark")
    run = RunRecord(run_id=run_id, suite=suite, suite_file=str(p), started_at=str(obj.get("datetime", "")),
                    finished_at=str(obj.get("datetime", "")), status="finished",
                    git={"commit": ci.get("id"), "dirty": ci.get("dirty")} if ci else {},
                    options={"imported_from": "pytest-benchmark", "pytest_benchmark_version": obj.get("version")},
                    environment=env)
    cases: list[CaseRecord] = []
    seen: set[str] = set()
    for i, b in enumerate(obj["benchmarks"]):
        where = f"{p}: benchmarks[{i}]"
        if not isinstance(b, dict) or not isinstance(b.get("stats"), dict):
            raise ResultsError(f"{where}: no 'stats' object")
        st: dict[str, Any] = b["stats"]
        extra: dict[str, Any] = b["extra_info"] if isinstance(b.get("extra_info"), dict) else {}
        name = str(b.get("name") or b.get("fullname") or f"benchmark {i}")
        case_id = str(extra.get("case_id") or b.get("fullname") or name)
        if case_id in seen:
            raise ResultsError(f"{where}: duplicate benchmark {case_id!r}")
        seen.add(case_id)
        data = st.get("data")
        try:
            if isinstance(data, list) and data:
                samples = [float(v) for v in data]
                summary = TimingSummary.of(samples)
            else:
                samples = []
                summary = TimingSummary(n=int(st["rounds"]), median=float(st["median"]), mean=float(st["mean"]),
                                        min=float(st["min"]), max=float(st["max"]), stdev=float(st["stddev"]),
                                        q1=float(st["q1"]), q3=float(st["q3"]), iqr=float(st["iqr"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ResultsError(f"{where}: stats are incomplete or not numbers ({e})") from None
        if not all(math.isfinite(v) for v in samples):
            raise ResultsError(f"{where}: stats.data holds non-finite values")
        iterations = st.get("iterations") or 1
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ResultsError(f"{where}: stats.iterations {iterations!r} is not a positive whole number")
        opts: dict[str, Any] = b["options"] if isinstance(b.get("options"), dict) else {}
        timing = Timing(method=str(extra.get("method") or "pytest-benchmark"), samples_s=samples,
                        inner_loops=iterations, stop_reason="imported", summary=summary,
                        notes=[] if samples else ["summary only: the file holds no raw samples"])
        backend: Literal["gpu", "cpu"] = "gpu" if extra.get("backend") == "gpu" else "cpu"
        params: dict[str, Any] = extra["params"] if isinstance(extra.get("params"), dict) else (
            b["params"] if isinstance(b.get("params"), dict) else {})
        workload = str(extra.get("workload") or b.get("group") or name.split("[", 1)[0])
        cases.append(CaseRecord(
            schema_version=SCHEMA_VERSION, run_id=run_id, case_id=case_id, suite=str(extra.get("suite") or suite),
            workload=workload, name=name, label=_import_label(case_id, name, workload),
            params=params or {}, backend=backend, status="ok",
            definition_hash=str(extra.get("definition_hash") or ""), timing=timing,
            thresholds=extra["thresholds"] if isinstance(extra.get("thresholds"), dict) else {},
            variant={"timer": opts.get("timer")} if opts.get("timer") else {},
        ))
    run.counts = {"ok": len(cases)}
    return run, cases


def _import_label(case_id: str, name: str, workload: str) -> str | None:
    """The entry label of an imported case: an accelbench id's own; a foreign benchmark's name when it says
    more than its group (``test_x[4]`` in group ``test_x``), so that its identity stays its own."""
    try:
        return CaseKey.parse(case_id).label
    except ValueError:
        return name if name != workload else None


# ---------------------------------------------------------------- github-action-benchmark


def _throughput(c: CaseRecord) -> tuple[float, str] | None:
    tp = c.throughput or {}
    for key, unit in (("gflops", "GFLOP/s"), ("gbps", "GB/s"), ("items_per_s", f"{c.work.get('item_unit') or 'items'}/s")):
        if tp.get(key):
            return float(tp[key]), unit
    med = c.timing.summary.median if c.timing else None
    return (1.0 / med, "ops/s") if med else None


def _or(v: float | None, default: float) -> float:
    return float(v) if v is not None else default


def to_github_action_benchmark(cases: Sequence[CaseRecord], bigger_is_better: bool = False) -> list[dict[str, Any]]:
    out = []
    for c in _ok(cases):
        t = c.timing
        assert t is not None
        s = t.summary
        med = _or(s.median, math.nan)
        lo, hi = _or(s.ci_low, med), _or(s.ci_high, med)
        extra = f"case_id: {c.case_id}\nsamples: {len(t.samples_s)}\nmethod: {t.method}"
        if bigger_is_better:
            tp = _throughput(c)
            if tp is None:
                continue
            value, unit = tp
            # the throughput's CI follows from the time's: value scales as 1/time
            rng = value * max(med / lo - 1 if lo > 0 else 0, 1 - med / hi if hi > 0 else 0)
            out.append({"name": bench_name(c), "unit": unit, "value": value, "range": f"± {rng:.4g}",
                        "extra": extra})
        else:
            out.append({"name": bench_name(c), "unit": "s", "value": med,
                        "range": f"± {max(med - lo, hi - med):.4g}", "extra": extra})
    return out


# ---------------------------------------------------------------- Bencher


def to_bencher(cases: Sequence[CaseRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in _ok(cases):
        t = c.timing
        assert t is not None
        s = t.summary
        med = _or(s.median, math.nan)
        lo, hi = _or(s.ci_low, med), _or(s.ci_high, med)
        entry: dict[str, Any] = {"latency": {"value": med * 1e9, "lower_value": lo * 1e9, "upper_value": hi * 1e9}}
        if med > 0:
            entry["throughput"] = {"value": 1.0 / med, "lower_value": 1.0 / hi if hi > 0 else 0.0,
                                   "upper_value": 1.0 / lo if lo > 0 else 1.0 / med}
        out[bench_name(c)] = entry
    return out


def export(run: RunRecord, cases: Sequence[CaseRecord], fmt: str) -> Any:
    if fmt == "pytest-benchmark":
        return to_pytest_benchmark(run, cases)
    if fmt == "gab-smaller":
        return to_github_action_benchmark(cases, bigger_is_better=False)
    if fmt == "gab-bigger":
        return to_github_action_benchmark(cases, bigger_is_better=True)
    if fmt == "bencher":
        return to_bencher(cases)
    raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")

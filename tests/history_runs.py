"""Synthetic run directories for the history tests and benchmarks: real RunWriter output (run.json +
cases.jsonl, the format every reader reads), with timings we choose, so a planted step is exact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from accelbench.identity import CaseKey
from accelbench.measure.stats import summarize
from accelbench.results import CaseRecord, RunRecord, RunWriter, Timing

MACHINE_A: dict[str, Any] = {"cpu": {"model": "Synthetic CPU A", "logical_cores": 8}, "packages": {"numpy": "2.0"},
                             "hostname": "a1", "volatile": {"load_avg": [1.0]}}
MACHINE_B: dict[str, Any] = {"cpu": {"model": "Synthetic CPU B", "logical_cores": 64}, "packages": {"numpy": "2.0"},
                             "hostname": "b1"}


def case_record(run_id: str, suite: str, workload: str, params: Mapping[str, Any], samples: Sequence[float],
                status: str = "ok") -> CaseRecord:
    key = CaseKey.of(suite, workload, None, params, "cpu")
    x = np.asarray(samples, dtype=np.float64)
    timing = Timing(method="cpu-perf_counter", samples_s=[float(v) for v in x],
                    summary={k: float(v) for k, v in asdict(summarize(x)).items()
                             if isinstance(v, (int, float))}) if x.size else None
    return CaseRecord(run_id=run_id, case_id=key.id, suite=suite, workload=workload, name=f"{workload} "
                      + " ".join(f"{k}={v}" for k, v in params.items()), params=dict(params), backend="cpu",
                      status=status, timing=timing)  # type: ignore[arg-type]


def write_run(root: Path, run_id: str, started_at: str, cases: Mapping[str, Sequence[float]], *,
              suite: str = "syn", commit: str | None = None, env: Mapping[str, Any] | None = None) -> Path:
    """One run: ``cases`` maps a workload name to its samples (seconds); params {"n": 1} for all."""
    run = RunRecord(run_id=run_id, suite=suite, started_at=started_at, environment=dict(env or MACHINE_A),
                    git={"commit": commit, "dirty": False} if commit else {})
    w = RunWriter(root, run)
    for wl, samples in cases.items():
        w.append(case_record(run_id, suite, wl, {"n": 1}, samples))
    w.close("finished", {"ok": len(cases)})
    return w.dir


def stamp(i: int) -> tuple[str, str]:
    """(run id, start time) of the i-th synthetic run: a minute apart, sortable."""
    h, m = divmod(i, 60)
    d, h = divmod(h, 24)
    return f"2026{1 + d // 28:02d}{1 + d % 28:02d}T{h:02d}{m:02d}00.000Z", \
        f"2026-{1 + d // 28:02d}-{1 + d % 28:02d}T{h:02d}:{m:02d}:00.000+00:00"


def samples(level_s: float, rng: np.random.Generator, n: int = 12, sd: float = 0.01) -> list[float]:
    return list(level_s * np.exp(rng.normal(0.0, sd, n)))

"""One view of one or more runs, built once, that every reporter renders: terminal, Markdown and HTML.

It holds the typed records of each run, their GPU-vs-CPU speedups (compare.speedups: the one definition),
the comparisons of each earlier run against the last (compare.compare_runs, the earlier one as the base,
as ``compare BASE NEW`` reads), and a flat DataFrame per run for charts. Nothing is computed twice, and no
reporter goes back from dicts to records.

Which run is which: the LAST run given is the one the detail sections describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..compare import (
    DEFAULT_LEVEL,
    CompareOptions,
    Comparison,
    LoadedRun,
    Speedup,
    compare_runs,
    load_side,
    speedups,
)
from ..errors import UsageError
from ..onnx import engines as onnx_engines
from ..results import CaseRecord, RunRecord, case_columns

FRAME_COLUMNS = ["run_id", "suite", "case_id", "pair_key", "workload", "label", "head", "name", "backend", "status"]


@dataclass
class RunView:
    """One run as the reporters see it."""

    label: str  # "run 1", ...
    source: str  # where it was read from, as the user named it
    run: RunRecord
    cases: list[CaseRecord]
    speedups: list[Speedup]  # largest first
    frame: pd.DataFrame  # one row per case: results' flat columns, the CaseRecord under "record"
    # onnx cases' engines side by side, with the headline GPU speedup over the fastest CPU engine
    # (accelbench.onnx.engines: the one rule); empty for runs without onnx cases
    engines: list[onnx_engines.EngineTable] = field(default_factory=list)

    @property
    def speedup_by_key(self) -> dict[str, Speedup]:
        """Speedups by the cases' pair key (CaseKey.pair_key: the identity without the backend)."""
        return {s.key: s for s in self.speedups}

    @property
    def headline_by_key(self) -> dict[str, tuple[Speedup, str]]:
        """onnx GPU records' speedup over the fastest CPU engine (and which engine that was), by pair key."""
        return onnx_engines.headline_by_key(self.engines)


@dataclass
class ReportView:
    runs: list[RunView]
    comparisons: list[tuple[RunView, Comparison]] = field(default_factory=list)  # (base, base vs current)

    @property
    def current(self) -> RunView:
        """The run the detail sections describe: the last one given."""
        return self.runs[-1]


def frame(run: RunRecord, cases: Sequence[CaseRecord], sp: dict[str, Speedup] | None = None) -> pd.DataFrame:
    """The chart frame: flat columns per case (results.case_columns), the typed record itself under
    ``record``, and for GPU rows the speedup and its CI (``speedup``, ``speedup_low``, ``speedup_high``)."""
    rows = []
    for c in cases:
        row = case_columns(run, c)
        row["record"] = c
        s = (sp or {}).get(row["pair_key"]) if c.backend == "gpu" else None  # (c.key is built anew each time)
        row["speedup"], row["speedup_low"], row["speedup_high"] = (s.speedup, s.ci_low, s.ci_high) if s else \
            (None, None, None)
        rows.append(row)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=FRAME_COLUMNS + ["record", "speedup"])


def run_view(loaded: LoadedRun, label: str = "run 1", metric: str = "median", level: float = DEFAULT_LEVEL
             ) -> RunView:
    sp = speedups(loaded, metric=metric, level=level)
    by_key = {s.key: s for s in sp}
    return RunView(label=label, source=loaded.source, run=loaded.run, cases=list(loaded.cases), speedups=sp,
                   frame=frame(loaded.run, loaded.cases, by_key),
                   engines=onnx_engines.side_by_side(loaded.cases, by_key, metric, level))


def build(runs: Sequence[LoadedRun], options: CompareOptions | None = None) -> ReportView:
    """The view of ``runs``: each with its speedups and chart frame; each earlier run compared with the last."""
    if not runs:
        raise UsageError("report: give at least one run directory")
    opts = options or CompareOptions()
    views = [run_view(r, f"run {i + 1}", opts.metric, opts.level) for i, r in enumerate(runs)]
    cur = runs[-1]
    comps = [(views[i], compare_runs(runs[i], cur, opts)) for i in range(len(runs) - 1)]
    return ReportView(runs=views, comparisons=comps)


def load(paths: Sequence[str | Path], options: CompareOptions | None = None) -> ReportView:
    """Read ``paths`` (run directories, their run.json / cases.jsonl, results roots, pytest-benchmark JSON)
    and build their view."""
    return build([load_side(p) for p in paths], options)

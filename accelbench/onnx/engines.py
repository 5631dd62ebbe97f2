"""Engines side by side: for each onnx case (all parameters but ``engine`` and the backend), the median
time of every backend/engine pair, the fastest CPU engine, and each GPU engine's speedup over that
fastest CPU engine, so that a slow CPU baseline never inflates the headline GPU number.

Pure: it reads finished case records (a run directory's ``cases.jsonl``), never runs anything. The HTML
report and ``compare`` do not call it yet (see docs/onnx.md, "Not done").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EngineRow:
    key: str  # the case's match key without engine and backend
    name: str
    median_s: dict[str, float] = field(default_factory=dict)  # "cpu/onnxruntime" -> seconds
    fastest_cpu: str | None = None  # "cpu/<engine>"
    gpu_speedup_over_fastest_cpu: dict[str, float] = field(default_factory=dict)  # "gpu/<engine>" -> x


def side_by_side(cases: list[Any], workload: str = "onnx") -> list[EngineRow]:
    """Rows of the records (``CaseRecord``-like: case_id, status, backend, params, name, timing) of
    ``workload`` that finished ok with a median."""
    groups: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}
    for c in cases:
        if c.workload != workload or c.status != "ok" or c.timing is None:
            continue
        med = c.timing.summary.median
        if not med:
            continue
        key = c.key
        k = key.with_backend("*").match_key(["engine"])
        engine = str(c.params.get("engine", "accelbench"))
        groups.setdefault(k, {})[f"{key.backend}/{engine}"] = float(med)
        names.setdefault(k, str(c.name))
    rows = []
    for k, times in groups.items():
        cpu = {e: t for e, t in times.items() if e.startswith("cpu/")}
        fastest = min(cpu, key=lambda e: cpu[e]) if cpu else None
        speed = {e: cpu[fastest] / t for e, t in times.items() if e.startswith("gpu/") and fastest and t > 0}
        rows.append(EngineRow(k, names[k], dict(sorted(times.items())), fastest, speed))
    return rows

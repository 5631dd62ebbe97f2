"""Machine against machine: the same cases measured on different machines (a fleet's runs, or runs
brought together from anywhere), case by case, with each machine's speed relative to a chosen one.

Not a gate: machines differ by design, so there is no verdict, only figures. Pure: runs in, a view out
(renderings live in report/machines.py).

For every case (matched on its identity, accelbench.identity's ``CaseKey.id``) and every machine:
  time_s          the metric (median by default) of its headline timing, seconds per operation
  items_per_s     images (or the workload's item) per second; gflops (1e9 flop/s); gbps (1e9 bytes/s)
  energy_j_per_item  joules per item from the energy counter, where the GPU has one
  speedup         reference time / this machine's time (> 1: this machine is faster), with the 95% CI of
                  that ratio from compare.case_stats (the same statistics as compare and gate)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .compare import DEFAULT_LEVEL, LoadedRun, case_stats, side_of
from .errors import ResultsError, UsageError
from .results import CaseRecord, RunRecord


@dataclass(frozen=True)
class Machine:
    label: str  # unique within the view
    source: str  # the run directory it came from
    run_id: str
    gpu: str | None  # GPU name, None where the run had no usable GPU
    cpu: str
    host: str  # the fleet worker's name, else the hostname


@dataclass
class Cell:
    """One case on one machine."""

    status: str
    message: str = ""
    time_s: float | None = None
    n: int = 0
    items_per_s: float | None = None
    item_unit: str | None = None
    gflops: float | None = None
    gbps: float | None = None
    energy_j_per_item: float | None = None
    speedup: float | None = None  # over the reference machine; None for the reference itself
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass
class Row:
    key: str
    name: str
    backend: str
    cells: dict[str, Cell] = field(default_factory=dict)  # by machine label; absent: not in that run


@dataclass
class MachineView:
    machines: list[Machine]
    reference: str  # a machine label
    metric: str
    rows: list[Row]

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return clean({"reference": self.reference, "metric": self.metric,
                      "machines": [asdict(m) for m in self.machines], "rows": [asdict(r) for r in self.rows]})


def machine_of(run: RunRecord, source: str) -> Machine:
    env = run.environment or {}
    g = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
    cpu = str((env.get("cpu") or {}).get("model") or "?")
    fleet = (run.options or {}).get("fleet") if isinstance(run.options, dict) else None
    workers = fleet.get("workers") if isinstance(fleet, dict) else None
    host = str(workers[0]["name"]) if workers and len(workers) == 1 else \
        str(fleet.get("lane")) if isinstance(fleet, dict) and fleet.get("lane") else str(env.get("hostname") or "?")
    gpu = str(g.get("name")) if g and g.get("available") else None
    return Machine(label=f"{gpu or cpu} @ {host}", source=source, run_id=run.run_id, gpu=gpu, cpu=cpu, host=host)


def _unique(machines: list[Machine]) -> list[Machine]:
    seen: dict[str, int] = {}
    for m in machines:
        seen[m.label] = seen.get(m.label, 0) + 1
    return [m if seen[m.label] == 1 else Machine(**{**asdict(m), "label": f"{m.label} #{m.run_id}"})
            for m in machines]


def pick_reference(machines: Sequence[Machine], reference: str | None) -> Machine:
    """``reference``: a machine's label, its run directory or run id, a text only one label contains, or a
    1-based position; None: the first machine."""
    if not machines:
        raise UsageError("no runs to compare")
    if reference is None:
        return machines[0]
    r = reference.strip()
    if r.isdigit() and 1 <= int(r) <= len(machines):
        return machines[int(r) - 1]
    exact = [m for m in machines if r in (m.label, m.run_id) or Path(m.source) == Path(r)]
    if exact:
        return exact[0]
    part = [m for m in machines if r.lower() in m.label.lower()]
    if len(part) == 1:
        return part[0]
    listed = "; ".join(f"{i}: {m.label}" for i, m in enumerate(machines, 1))
    what = "matches several machines" if part else "matches no machine"
    raise UsageError(f"--reference {reference!r} {what} ({listed})")


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _cell(rec: CaseRecord, metric: str) -> Cell:
    c = Cell(status=rec.status, message=rec.message)
    s = side_of(rec, metric) if rec.status == "ok" else None
    if s is not None and s.value > 0:
        c.time_s, c.n = s.value, s.n
    tp = rec.throughput or {}
    c.items_per_s, c.gflops, c.gbps = tp.get("items_per_s"), tp.get("gflops"), tp.get("gbps")
    c.item_unit = (rec.work or {}).get("item_unit")
    e = (rec.counters or {}).get("energy_j_per_item")
    c.energy_j_per_item = float(e) if isinstance(e, (int, float)) else None
    return c


def view(runs: Sequence[LoadedRun], reference: str | None = None, metric: str = "median",
         level: float = DEFAULT_LEVEL) -> MachineView:
    """The machine-vs-machine view of ``runs`` (each from one machine), relative to ``reference``."""
    machines = _unique([machine_of(r.run, r.source) for r in runs])
    ref = pick_reference(machines, reference)
    rows: dict[str, Row] = {}
    recs: dict[str, dict[str, CaseRecord]] = {}
    for m, r in zip(machines, runs, strict=True):
        seen: set[str] = set()
        for rec in r.cases:
            key = rec.key.id
            if key in seen:
                raise ResultsError(f"{r.source}: two cases share the identity {key}")
            seen.add(key)
            row = rows.setdefault(key, Row(key=key, name=rec.name, backend=rec.backend))
            row.cells[m.label] = _cell(rec, metric)
            recs.setdefault(key, {})[m.label] = rec
    for key, row in rows.items():
        base = recs[key].get(ref.label)
        sb = side_of(base, metric) if base is not None and base.status == "ok" else None
        if sb is None or not sb.value > 0:
            continue
        for label, cell in row.cells.items():
            rec = recs[key][label]
            if label == ref.label or cell.time_s is None:
                continue
            sm = side_of(rec, metric)
            if sm is None:
                continue
            ratio, _, _, _ = case_stats(sm, sb, metric, level, seed=_seed(key))  # reference time / this one
            cell.speedup, cell.ci_low, cell.ci_high = ratio.ratio, ratio.ci_low, ratio.ci_high
    return MachineView(machines=machines, reference=ref.label, metric=metric, rows=list(rows.values()))


def expand(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories from the paths: a run directory (or its run.json / cases.jsonl) as itself; a folder
    of runs (a fleet's ``--out``) as every run in it, oldest first."""
    from .results import CASES_FILE, RUN_FILE, resolve_run_dir

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not (p / RUN_FILE).exists() and not (p / CASES_FILE).exists():
            runs = sorted(d for d in p.iterdir() if d.is_dir() and (d / RUN_FILE).exists())
            if runs:
                out += runs
                continue
        out.append(resolve_run_dir(p))
    return out

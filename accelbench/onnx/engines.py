"""Engines side by side: every onnx case (a model at one batch size with its knobs) on every backend and
engine, and the headline GPU number — the GPU's speedup over the FASTEST CPU engine measured for that
case — so that a slow CPU baseline never inflates it. Every reporter (HTML, terminal, ``compare RUN``)
takes these numbers from the report view, which builds them here once per run.

The rule (:func:`fastest_cpu`, the one definition): among the CPU records of the case that finished ok
with a usable timing, the engine with the smallest time of the report's metric (median by default);
a tie goes to the engine earlier in ``ENGINE_ORDER``, then by name. The headline of a GPU engine is its
speedup over that engine's CPU record, e.g. accelbench-GPU against max(accelbench-CPU, onnxruntime-CPU)
in images/s. The per-engine speedups (GPU engine over the same engine's CPU record) stay beside it.

Every ratio here comes from ``compare.speedups`` (block Hodges-Lehmann with its CI: the one definition
of a speedup). compare pairs only the two backends of one case; to pair two records of different
engines (the GPU of one over the CPU of another, or one engine over another on one backend) they are
given one identity first (:func:`ratio`), so the statistics are exactly compare's.

Pure: it reads finished case records, never runs anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..compare import DEFAULT_LEVEL, Speedup, speedups, timing_problem
from ..identity import CaseKey
from ..results import CaseRecord

WORKLOAD = "onnx"
ENGINE_ORDER = ("accelbench", "onnxruntime")
BACKENDS = ("gpu", "cpu")
HEADLINE = "GPU speedup over the fastest CPU engine"
RULE = ("the headline is the GPU's speedup over the fastest CPU engine measured for the case (of its CPU "
        "engines that finished ok, the one with the smallest {metric} time), so a slow CPU baseline never "
        "inflates it")


def engine_of(rec: CaseRecord) -> str:
    return str(rec.params.get("engine", "accelbench"))


def engine_sort_key(engine: str) -> tuple[int, str]:
    return (ENGINE_ORDER.index(engine) if engine in ENGINE_ORDER else len(ENGINE_ORDER), engine)


def fastest_cpu(times: Mapping[str, float | None]) -> str | None:
    """THE rule: the engine with the smallest finite, positive time among ``times`` (engine -> seconds of
    the metric, None where it was not measured); ties go to the engine earlier in ENGINE_ORDER. None
    when no engine was measured."""
    measured = [(t, engine_sort_key(e), e) for e, t in times.items()
                if t is not None and math.isfinite(t) and t > 0]
    return min(measured)[2] if measured else None


@dataclass(frozen=True)
class Side:
    """One backend and engine of one case: its record and time, or why there is no number."""

    backend: str
    engine: str
    record: CaseRecord | None
    time_s: float | None  # the metric's value, seconds per batch; None unless measured
    reason: str = ""  # why there is no number ("" when measured)

    @property
    def measured(self) -> bool:
        return self.time_s is not None

    @property
    def items_per_s(self) -> float | None:
        if not self.measured or self.record is None:
            return None
        v = self.record.throughput.get("items_per_s")
        return float(v) if v is not None and math.isfinite(v) else None


@dataclass
class EngineCase:
    """One onnx case (every parameter but engine and backend) on every backend and engine."""

    key: str  # CaseKey match key without engine, backend "*"
    name: str  # the case name of one of its records
    batch: object
    sides: dict[tuple[str, str], Side]  # (backend, engine) -> side
    fastest_cpu: str | None  # the engine (see fastest_cpu)
    per_engine: dict[str, Speedup] = field(default_factory=dict)  # engine -> its GPU over its CPU
    over_fastest_cpu: dict[str, Speedup] = field(default_factory=dict)  # engine -> its GPU over the fastest CPU
    engine_ratio: dict[str, Speedup] = field(default_factory=dict)  # backend -> accelbench/onnxruntime images/s
    why_not: dict[str, str] = field(default_factory=dict)  # engine -> why it has no headline

    def side(self, backend: str, engine: str) -> Side:
        return self.sides.get((backend, engine)) or Side(backend, engine, None, None, "not in this run")

    def headline_reason(self, engine: str) -> str:
        """Why GPU ``engine`` has no headline ("" when it has one)."""
        if engine in self.over_fastest_cpu:
            return ""
        s = self.side("gpu", engine)
        return self.why_not.get(engine) or f"GPU {engine}: {s.reason}"


@dataclass
class EngineTable:
    """The cases of one model and knobs (every parameter but engine, batch and backend), by batch."""

    key: str
    title: str  # the suite entry's label, or the model
    subtitle: str  # the other parameters, k=v
    engines: list[str]
    cases: list[EngineCase]

    @property
    def backends(self) -> list[str]:
        return [b for b in BACKENDS if any(c.side(b, e).record is not None for c in self.cases for e in self.engines)]


def ratio(fast: CaseRecord, slow: CaseRecord, metric: str = "median", level: float = DEFAULT_LEVEL
          ) -> Speedup | None:
    """``slow``'s time over ``fast``'s (> 1: ``fast`` is faster) with its CI, by compare.speedups. The two
    records are given ``fast``'s identity, ``fast`` as the gpu side and ``slow`` as the cpu side, because
    compare pairs only the two backends of one case. None when either lacks a usable timing."""
    a = fast.model_copy(update={"backend": "gpu"})
    b = slow.model_copy(update={"backend": "cpu", "suite": fast.suite, "workload": fast.workload,
                                "label": fast.label, "params": dict(fast.params)})
    out = speedups([a, b], metric=metric, level=level)
    return out[0] if out else None


def _side(backend: str, engine: str, rec: CaseRecord, metric: str) -> Side:
    if rec.status != "ok":
        return Side(backend, engine, rec, None, f"{rec.status}: {rec.message}" if rec.message else rec.status)
    problem = timing_problem(rec.timing) if rec.timing is not None else "no timing"
    v = getattr(rec.timing.summary, metric, None) if rec.timing is not None else None
    if problem is None and isinstance(v, (int, float)) and math.isfinite(v) and v > 0:
        return Side(backend, engine, rec, float(v), "")
    return Side(backend, engine, rec, None, f"timing unusable: {problem or f'no {metric} time'}")


def _table_key(key: CaseKey) -> str:
    return key.with_backend("*").match_key(["engine", "batch"])


def _subtitle(rec: CaseRecord) -> str:
    return " ".join(f"{k}={v}" for k, v in rec.params.items()
                    if k not in ("engine", "batch") and v is not None and (k != "model" or rec.label))


def side_by_side(cases: Sequence[CaseRecord], sp: Mapping[str, Speedup] | None = None, metric: str = "median",
                 level: float = DEFAULT_LEVEL, workload: str = WORKLOAD) -> list[EngineTable]:
    """The engines of ``workload``'s records side by side: a table per model and knobs, a row per batch.
    ``sp``: the run's speedups by pair key (the report view's, compare.speedups); computed when absent."""
    recs = [c for c in cases if c.workload == workload]
    if not recs:
        return []
    if sp is None:
        sp = {s.key: s for s in speedups(recs, metric=metric, level=level)}
    groups: dict[str, dict[tuple[str, str], CaseRecord]] = {}
    first: dict[str, CaseRecord] = {}
    for c in recs:
        k = c.key.with_backend("*").match_key(["engine"])
        groups.setdefault(k, {})[(c.backend, engine_of(c))] = c
        first.setdefault(k, c)
    tables: dict[str, EngineTable] = {}
    for k, by in groups.items():
        rec0 = first[k]
        case = _case(k, rec0, by, sp, metric, level)
        tk = _table_key(rec0.key)
        t = tables.get(tk)
        if t is None:
            title = rec0.label or str(rec0.params.get("model", workload))
            t = tables[tk] = EngineTable(tk, title, _subtitle(rec0), [], [])
        t.cases.append(case)
        t.engines = sorted({*t.engines, *(e for _, e in by)}, key=engine_sort_key)
    for t in tables.values():
        t.cases.sort(key=_batch_order)
    _distinct_titles(list(tables.values()))
    return list(tables.values())


def _distinct_titles(tables: list[EngineTable]) -> None:
    """Tables of one entry that differ in a knob (cuda_graph: [false, true]) get it in their title."""
    by: dict[str, list[EngineTable]] = {}
    for t in tables:
        by.setdefault(t.title, []).append(t)
    for same in by.values():
        if len(same) < 2:
            continue
        parts = [t.subtitle.split(" ") for t in same]
        common = set.intersection(*(set(p) for p in parts))
        for t, p in zip(same, parts, strict=True):
            t.title = " ".join([t.title, *(x for x in p if x not in common)])


def _batch_order(c: EngineCase) -> tuple[int, float, str]:
    b = c.batch
    return (0, float(b), "") if isinstance(b, (int, float)) and not isinstance(b, bool) else (1, 0.0, str(b))


def _case(k: str, rec0: CaseRecord, by: dict[tuple[str, str], CaseRecord], sp: Mapping[str, Speedup],
          metric: str, level: float) -> EngineCase:
    sides = {(b, e): _side(b, e, r, metric) for (b, e), r in by.items()}
    cpu = {e: s.time_s for (b, e), s in sides.items() if b == "cpu"}
    fast = fastest_cpu(cpu)
    out = EngineCase(key=k, name=rec0.name, batch=rec0.params.get("batch"), sides=sides, fastest_cpu=fast)
    for (b, e), s in sorted(sides.items()):
        if b != "gpu":
            continue
        own = sp.get(s.record.key.pair_key) if s.record is not None else None
        if own is not None:
            out.per_engine[e] = own
        if not s.measured:
            out.why_not[e] = f"GPU {e}: {s.reason}"
            continue
        if fast is None:
            out.why_not[e] = "no CPU engine measured for this case" + "".join(
                f"; CPU {ce}: {cs.reason}" for (cb, ce), cs in sorted(sides.items()) if cb == "cpu")
            continue
        head = own if fast == e else None
        if head is None:
            fr = sides[("cpu", fast)].record
            assert s.record is not None and fr is not None
            head = ratio(s.record, fr, metric, level)
        if head is None:
            out.why_not[e] = "no usable timing to pair"
        else:
            out.over_fastest_cpu[e] = head
    for b in BACKENDS:
        ab, ort = sides.get((b, "accelbench")), sides.get((b, "onnxruntime"))
        if ab is not None and ort is not None and ab.measured and ort.measured:
            assert ab.record is not None and ort.record is not None
            r = ratio(ab.record, ort.record, metric, level)
            if r is not None:
                out.engine_ratio[b] = r
    return out


def headline_by_key(tables: Sequence[EngineTable]) -> dict[str, tuple[Speedup, str]]:
    """The headline of every GPU record that has one, by its pair key: (its speedup over the fastest CPU
    engine, that engine). For reporters that show a speedup per GPU record (the workload tables)."""
    out: dict[str, tuple[Speedup, str]] = {}
    for t in tables:
        for c in t.cases:
            for e, s in c.over_fastest_cpu.items():
                rec = c.side("gpu", e).record
                if rec is not None and c.fastest_cpu is not None:
                    out[rec.key.pair_key] = (s, c.fastest_cpu)
    return out

"""compare's runs: match every case of two runs, give each a verdict (statistics from .stats, drift from
accelbench.drift), gate; GPU-vs-CPU speedups within one run; loading a side."""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import drift as drift_mod
from ..errors import ResultsError, UsageError
from ..identity import case_id
from ..measure.contention import others_share
from ..report.format import fmt_change, fmt_time
from ..results import CaseCore, CaseRecord, RunRecord, gc_paused, read_run, unfinished_note
from .match import EnvDiff, case_threshold, machine_diff
from .stats import (
    DEFAULT_ALPHA,
    DEFAULT_LEVEL,
    DEFAULT_THRESHOLD,
    FLOOR_TICKS,
    METRICS,
    VERDICTS,
    RatioCI,
    Side,
    Verdict,
    cases_stats,
    decide,
    holm,
    sides_and_problems,
    sides_of,
    timing_problems,
)

# ---------------------------------------------------------------- comparing runs


@dataclass(slots=True)  # (100k of them: a third less memory)
class CaseComparison:
    key: str
    name: str
    workload: str
    backend: str
    verdict: Verdict
    reason: str = ""
    base_value_s: float | None = None
    new_value_s: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str = ""
    test: str = ""
    p_slower: float | None = None
    p_faster: float | None = None
    p_slower_adj: float | None = None
    p_faster_adj: float | None = None
    threshold: float | None = None
    n_base: int = 0
    n_new: int = 0
    floor_s: float = 0.0
    definition_changed: bool = False
    notes: list[str] = field(default_factory=list)
    # the share of the machine (0..1) other processes took while each side measured the case (None: not
    # recorded); separate runs weigh it (accelbench.drift, rule 6)
    base_others: float | None = None
    new_others: float | None = None

    @property
    def regressed(self) -> bool:
        return self.verdict == "slower" and not self.definition_changed

    def one_line(self) -> str:
        if self.ratio is not None and self.ci_low is not None and self.ci_high is not None:
            return (f"{self.name} @{self.backend}: {fmt_time(self.base_value_s)} -> {fmt_time(self.new_value_s)} "
                    f"({fmt_change(self.ratio)}, CI {fmt_change(self.ci_low)}..{fmt_change(self.ci_high)}, "
                    f"threshold {self.threshold * 100 if self.threshold else 0:g}%, p={self.p_slower_adj:.2g})")
        return f"{self.name} @{self.backend}: {self.verdict} {self.reason}".rstrip()


@dataclass
class Speedup:
    """CPU time over GPU time for one case within one run (> 1: the GPU is faster)."""

    key: str
    name: str
    speedup: float
    ci_low: float
    ci_high: float
    gpu_s: float
    cpu_s: float
    method: str


@dataclass
class CompareOptions:
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    metric: str = "median"
    level: float = DEFAULT_LEVEL
    ignore_params: tuple[str, ...] = ()
    n_boot: int = 2000

    def check(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"--metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"--alpha {self.alpha}: must be in (0, 1)")
        if not 0 < self.threshold <= 10:
            raise UsageError(f"--threshold {self.threshold}: must be a fraction in (0, 10] (0.05 = 5%)")
        if not 0 < self.level < 1:
            raise UsageError(f"level {self.level}: must be in (0, 1)")


@dataclass
class LoadedRun:
    run: RunRecord
    cases: list[CaseRecord]
    source: str
    kind: str = "accelbench"  # or "pytest-benchmark"


@dataclass
class CoreRun:
    """A run read only to be compared (:func:`load_core`): its cases as results.CaseCore, the fields
    compare reads of a record."""

    run: RunRecord
    cases: list[CaseCore]
    source: str
    kind: str = "accelbench"


AnyRun = LoadedRun | CoreRun
AnyCase = CaseRecord | CaseCore


@dataclass
class Comparison:
    base: str
    new: str
    options: CompareOptions
    cases: list[CaseComparison]
    machine: list[EnvDiff]
    machine_checked: bool
    interleaved: bool
    base_suite: str = ""
    new_suite: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. a run that never finished
    drift: dict[str, Any] | None = None  # separate runs: accelbench.drift's assessment

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.regressed]

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in VERDICTS}
        for c in self.cases:
            out[c.verdict] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        with gc_paused():  # 100k small dicts without cycles (as reading records)
            cases = [_case_dict(c) for c in self.cases]
        return {
            "base": self.base, "new": self.new, "options": asdict(self.options),
            "interleaved": self.interleaved, "machine_checked": self.machine_checked,
            "machine_differences": [asdict(d) for d in self.machine],
            "counts": self.counts(), "regressions": [c.key for c in self.regressions], "warnings": self.warnings,
            "drift": self.drift,
            "cases": cases,
        }


_CASE_FIELDS = tuple(f.name for f in fields(CaseComparison))
_NUMBER_FIELDS = tuple(f.name for f in fields(CaseComparison) if "float" in str(f.type))
_GET_FIELDS = operator.attrgetter(*_CASE_FIELDS)


def _case_dict(c: CaseComparison) -> dict[str, Any]:
    """One case of :meth:`Comparison.to_dict`: its fields in order, NaN as null and infinities as "inf" /
    "-inf" (only the number fields are looked at: 100k cases of 30 fields each cost a --json compare 3 s)."""
    d = dict(zip(_CASE_FIELDS, _GET_FIELDS(c), strict=True))
    d["notes"] = list(c.notes)
    for f in _NUMBER_FIELDS:
        v = d[f]
        if v is not None and v - v != 0:  # NaN or an infinity (v - v is NaN); finite numbers give 0
            d[f] = None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return d


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _interleave_session(run: RunRecord) -> str | None:
    il = run.options.get("interleave") if isinstance(run.options, dict) else None
    return str(il.get("session")) if isinstance(il, dict) and il.get("session") else None


CaseStats = Callable[[str, "Side", "Side"], tuple[RatioCI, float, float, str]]


def _quick(run: RunRecord) -> bool:
    return bool(run.options.get("quick")) if isinstance(run.options, dict) else False


def compare_runs(base: AnyRun, new: AnyRun, opts: CompareOptions | None = None,
                 stats: CaseStats | None = None) -> Comparison:
    """Match every case of ``base`` and ``new`` and give each a verdict; nothing is dropped silently.
    ``stats(key, base_side, new_side)`` replaces :func:`case_stats` where the base is not one run (the
    history gate: a segment of runs, one value per run)."""
    with gc_paused():
        return _compare_runs(base, new, opts, stats)


def _compare_runs(base: AnyRun, new: AnyRun, opts: CompareOptions | None, stats: CaseStats | None) -> Comparison:
    opts = opts or CompareOptions()
    opts.check()
    ign = tuple(opts.ignore_params)
    paired = _interleave_session(base.run) is not None and _interleave_session(base.run) == \
        _interleave_session(new.run)

    def index(cases: Sequence[AnyCase], which: str) -> dict[str, AnyCase]:
        out: dict[str, AnyCase] = {}
        for c in cases:
            k = c.key.match_key(ign) if ign else case_id(c.suite, c.workload, c.label, c.params, c.backend)
            if k in out:  # (a repeated case id is refused on reading, with both line numbers)
                raise ResultsError(f"{which}: cases {out[k].case_id} and {c.case_id} share the identity {k}"
                                   + (" once the ignored parameters are dropped" if ign else ""))
            out[k] = c
        return out

    bi, ni = index(base.cases, base.source), index(new.cases, new.source)
    results: list[CaseComparison] = []
    both_ok: list[tuple[CaseComparison, AnyCase, AnyCase]] = []
    for key in list(bi) + [k for k in ni if k not in bi]:
        b, n = bi.get(key), ni.get(key)
        rec = n or b
        assert rec is not None
        cc = CaseComparison(key=key, name=rec.name, workload=rec.workload, backend=rec.backend,
                            verdict="unchanged", threshold=case_threshold(rec, opts.threshold))
        results.append(cc)
        if b is not None and n is not None and b.status == "skipped" and n.status == "skipped":
            cc.verdict, cc.reason = "skipped", f"skipped on both sides: {n.message}"  # e.g. no GPU either time
            continue
        if b is None or (b.status == "skipped" and n is not None and n.status != "skipped"):
            cc.verdict, cc.reason = "new", "not in base" if b is None else f"skipped in base: {b.message}"
            continue
        if n is None or n.status == "skipped":
            cc.verdict = "missing"
            cc.reason = "not in new" if n is None else f"skipped in new: {n.message}"
            continue
        if b.status != "ok" or n.status != "ok":
            which = "base" if b.status != "ok" else "new"
            bad = b if which == "base" else n
            cc.verdict, cc.reason = "failed", f"{bad.status} in {which}: {bad.message}"
            continue
        both_ok.append((cc, b, n))
    # the samples of all cases at once (numpy over every case of one sample count: see stats.cases_stats)
    (b_sides, b_why), (n_sides, n_why) = (sides_and_problems([b for _, b, _ in both_ok], opts.metric),
                                          sides_and_problems([n for _, _, n in both_ok], opts.metric))
    valid: list[tuple[CaseComparison, Side | None, Side | None]] = []
    for (cc, b, n), sb, sn, *why in zip(both_ok, b_sides, n_sides, b_why, n_why, strict=True):
        invalid = [(w, y) for w, y in zip(("base", "new"), why, strict=True) if y]
        if invalid:
            cc.verdict = "failed"
            cc.reason = "; ".join(f"invalid record in {w}: {y}: a time must be finite and positive" for w, y in invalid)
            continue
        if b.definition_hash and n.definition_hash and b.definition_hash != n.definition_hash:
            ignored_diff = {k for k in ign if b.params.get(k) != n.params.get(k)}
            if ignored_diff:
                cc.notes.append("ignored parameters differ: " + ", ".join(
                    f"{k} {b.params.get(k)!r} -> {n.params.get(k)!r}" for k in sorted(ignored_diff)))
            else:
                cc.definition_changed = True
                cc.notes.append("definition changed (workload definition or timing options): not gated")
        cc.base_others, cc.new_others = others_share(b.contention), others_share(n.contention)
        valid.append((cc, sb, sn))
    timed: list[tuple[CaseComparison, Side, Side]] = []
    for cc, sb, sn in valid:
        if sb is None or sn is None or not (sb.value > 0 and sn.value > 0):
            cc.verdict, cc.reason = "inconclusive", "no timing in " + ("base" if sb is None else "new")
            continue
        cc.base_value_s, cc.new_value_s, cc.n_base, cc.n_new = sb.value, sn.value, sb.n, sn.n
        cc.floor_s = FLOOR_TICKS * max(sb.floor_s, sn.floor_s)
        timed.append((cc, sb, sn))
    if stats is not None:
        found = [stats(cc.key, sb, sn) for cc, sb, sn in timed]
    else:
        found = cases_stats([(sb, sn) for _, sb, sn in timed], opts.metric, opts.level, paired=paired,
                            seed=lambda i: _seed(timed[i][0].key))
    tests: list[tuple[CaseComparison, float, float, RatioCI, float]] = []
    for (cc, sb, sn), (r, ps, pf, test) in zip(timed, found, strict=True):
        cc.ratio, cc.ci_low, cc.ci_high, cc.ci_method, cc.test = r.ratio, r.ci_low, r.ci_high, r.method, test
        cc.p_slower, cc.p_faster = ps, pf
        tests.append((cc, ps, pf, r, sn.value - sb.value))
    # separate runs: see accelbench.drift (a paired session and the history gate's per-run segment already
    # measure the between-run scatter)
    drift = None if paired or stats is not None else drift_mod.assess([t[0].workload for t in tests], [
        drift_mod.Interval(t[3].ratio, t[3].ci_low, t[3].ci_high) for t in tests],
        [t[0].threshold or opts.threshold for t in tests], opts.level,
        [(t[0].base_others, t[0].new_others) for t in tests])
    if drift is not None:
        for (cc, *_), a in zip(tests, drift.cases, strict=True):
            cc.ci_low, cc.ci_high = a.ci_low, a.ci_high
            if abs(a.shift - 1) >= 0.005:
                cc.notes.append(f"judged against the other workloads' shift of {fmt_change(a.shift)} "
                                f"({fmt_change(a.corrected)} relative to it)")
        # the drift can only weaken the within-run evidence: the larger of the two p-values counts
        tests = [(cc, max(ps, a.p_slower), max(pf, a.p_faster),
                  RatioCI(a.corrected, a.ci_low / a.shift, a.ci_high / a.shift, r.level,
                          r.method + " + between-run scatter"), diff)
                 for (cc, ps, pf, r, diff), a in zip(tests, drift.cases, strict=True)]
    adj_s = holm([t[1] for t in tests])
    adj_f = holm([t[2] for t in tests])
    for i, ((cc, _ps, _pf, r, diff), a_s, a_f) in enumerate(zip(tests, adj_s, adj_f, strict=True)):
        cc.p_slower_adj, cc.p_faster_adj = a_s, a_f
        cc.verdict, cc.reason = decide(r, a_s, a_f, cc.threshold or opts.threshold, opts.alpha, diff, cc.floor_s)
        if drift is not None:
            cc.verdict, cc.reason = drift.final(i, cc.verdict, cc.reason, cc.ratio or math.nan)  # type: ignore[assignment]
        if _quick(base.run) or _quick(new.run):
            cc.verdict, cc.reason = drift_mod.smoke(cc.verdict, cc.reason)  # type: ignore[assignment]
    order = {v: i for i, v in enumerate(VERDICTS)}
    results.sort(key=lambda c: (order[c.verdict], -(c.ratio or 0) if c.verdict != "faster" else (c.ratio or 0)))
    be, ne = base.run.environment or {}, new.run.environment or {}
    checked = bool(be) and bool(ne)
    warnings = [w for w in (unfinished_note(base.run, base.source), unfinished_note(new.run, new.source)) if w]
    return Comparison(base=base.source, new=new.source, options=opts, cases=results,
                      machine=machine_diff(be, ne) if checked else [], machine_checked=checked,
                      interleaved=paired, base_suite=base.run.suite, new_suite=new.run.suite, warnings=warnings,
                      drift=drift.to_dict() if drift is not None else None)


def speedups(run: AnyRun | Sequence[CaseRecord] | Sequence[CaseCore], metric: str = "median", level: float = DEFAULT_LEVEL
             ) -> list[Speedup]:
    """GPU-vs-CPU speedup (CPU time / GPU time) with its CI for every case measured on both backends: the
    one definition every reporter shows (terminal, Markdown, ``compare RUN``, HTML), by the method compare
    uses for two runs (batch means and Hodges-Lehmann; see the module docstring), largest first."""
    cases: Sequence[AnyCase] = run.cases if isinstance(run, LoadedRun | CoreRun) else run
    ok = [c for c in cases if c.status == "ok" and c.timing is not None]
    by: dict[str, dict[str, AnyCase]] = {}
    for c, why in zip(ok, timing_problems([c.timing for c in ok]), strict=True):
        if why is None:
            by.setdefault(c.key.pair_key, {})[c.backend] = c
    both = [(key, d) for key, d in by.items() if "gpu" in d and "cpu" in d]
    gpu, cpu = sides_of([d["gpu"] for _, d in both], metric), sides_of([d["cpu"] for _, d in both], metric)
    kept = [(key, d["gpu"].name, sg, sc) for (key, d), sg, sc in zip(both, gpu, cpu, strict=True)
            if sg is not None and sc is not None and sg.n and sc.n]
    found = cases_stats([(sg, sc) for _, _, sg, sc in kept], metric, level, seed=lambda i: _seed(kept[i][0]))
    out = [Speedup(key=key, name=name, speedup=r.ratio, ci_low=r.ci_low, ci_high=r.ci_high, gpu_s=sg.value,
                   cpu_s=sc.value, method=r.method) for (key, name, sg, sc), (r, _, _, _) in zip(kept, found, strict=True)]
    out.sort(key=lambda s: -s.speedup)
    return out


# ---------------------------------------------------------------- loading


def load_side(path: str | Path) -> LoadedRun:
    """A run directory (or its run.json / cases.jsonl, or a results root: its newest run), or a
    pytest-benchmark JSON file (imported as a run)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".json" and p.name != "run.json":
        from ..exports import import_pytest_benchmark

        run, cases = import_pytest_benchmark(p)
        return LoadedRun(run=run, cases=cases, source=str(p), kind="pytest-benchmark")
    run, cases = read_run(p)
    return LoadedRun(run=run, cases=cases, source=str(p))


def load_core(path: str | Path) -> AnyRun:
    """:func:`load_side` for compare and gate alone: a run directory's cases read as results.CaseCore
    (a third of the time of full records; a pytest-benchmark import is read whole)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".json" and p.name != "run.json":
        return load_side(p)
    run, cases = read_run(p, CaseCore)
    return CoreRun(run=run, cases=cases, source=str(p))


# ---------------------------------------------------------------- formatting


def parse_fraction(text: str) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05; a bare number above 1 is read as a percentage ('5' -> 0.05)."""
    t = str(text).strip()
    try:
        if t.endswith("%"):
            return float(t[:-1]) / 100.0
        v = float(t)
    except ValueError:
        raise UsageError(f"{text!r} is not a fraction or a percentage (e.g. 5% or 0.05)") from None
    return v / 100.0 if v > 1 else v


# ---------------------------------------------------------------- gate


@dataclass
class GateResult:
    comparison: Comparison
    refused: str | None  # a reason the gate would not decide (different machines)

    @property
    def failed(self) -> bool:
        return bool(self.comparison.regressions)


def check_machines(cmp: Comparison, allow_different_machines: bool, kept: str = "") -> None:
    """The one rule for judging runs of two machines (``gate`` and ``run --baseline``): refused, exit 2,
    unless allowed. ``kept`` says where a run that was just measured stays."""
    if cmp.machine and not allow_different_machines:
        diffs = "; ".join(f"{d.key}: {d.base!r} -> {d.new!r}" for d in cmp.machine[:6])
        more = f" (+{len(cmp.machine) - 6} more)" if len(cmp.machine) > 6 else ""
        raise ResultsError(f"the runs come from different machines or software ({diffs}{more}); "
                           "timings are not comparable. Pass --allow-different-machines to compare anyway"
                           + (f"; the new run is kept in {kept}" if kept else ""))


def gate(base: str | Path, new: str | Path, opts: CompareOptions | None = None,
         allow_different_machines: bool = False) -> GateResult:
    """Compare two runs and decide; raises ResultsError (exit 2) when the machines differ and that was
    not allowed, or when there is nothing to compare."""
    a, b = load_core(base), load_core(new)
    cmp = compare_runs(a, b, opts)
    check_machines(cmp, allow_different_machines)
    if not any(c.ratio is not None for c in cmp.cases):
        raise ResultsError(f"no case of {base} could be compared with {new} (no matching successful cases)")
    return GateResult(comparison=cmp, refused=None)

"""`accelbench gate --history RESULTS NEW`: NEW against each case's last stable segment of its history.

The segment of a case is every run of it on NEW's machine (compare.machine_fingerprint) since that
machine's last change point (:mod:`.changepoints`), NEW itself left out. The verdict rules, the Holm
correction over cases, the thresholds and the output are compare's (:func:`compare.compare_runs` with
:func:`prediction` in place of its within-run statistics).

Why per-run values, not pooled samples. Samples of one run share that run's conditions (other tenants,
clock, page placement, cache state), so runs differ by more than their samples scatter: on this project's
shared machine separate runs of one build were measured 6-11% apart at the same within-run CI
(compare.py's docstring, docs/ci.md). Pooling a segment's samples would describe the segment by its
within-run noise alone and call every ordinary run-to-run difference significant. The independent unit
is the run, so the segment contributes one value per run (its median, or min), and NEW, one run, is one
more draw: the question is whether it lies outside what the segment's runs do. That is a prediction
interval on logs,

    d = ln(new) - mean_i ln(seg_i),  se = s sqrt(1 + 1/k),  t = d / se  with k - 1 degrees of freedom

(s: the standard deviation of the k segment values' logs). The ratio reported is exp(d) (NEW over the
segment's geometric mean) with the CI exp(d +- t_q se); one-sided p-values come from t. NEW's own
within-run CI is not added: its run-level noise is already in s. At least MIN_SEGMENT runs are needed;
fewer give "inconclusive".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import special as _sp

from ..compare import (
    CompareOptions,
    GateResult,
    LoadedRun,
    RatioCI,
    Side,
    compare_runs,
    load_side,
    machine_fingerprint,
)
from ..errors import ResultsError, UsageError
from ..identity import CaseKey
from ..results import CaseRecord, RunRecord, Timing, TimingSummary
from .analysis import History, Series, load_history
from .changepoints import Settings

MIN_SEGMENT = 3


def prediction(values: np.ndarray, new_value: float, level: float) -> tuple[RatioCI, float, float]:
    """NEW's value against k per-run values: ratio, CI and one-sided p-values (slower, faster)."""
    y = np.log(np.asarray(values, dtype=np.float64))
    k = y.size
    if k < MIN_SEGMENT or not new_value > 0:
        r = new_value / float(np.exp(y.mean())) if k and new_value > 0 else math.nan
        return RatioCI(r, 0.0, math.inf, level, f"too few stable runs ({k} < {MIN_SEGMENT})"), 1.0, 1.0
    d = math.log(new_value) - float(y.mean())
    s = float(y.std(ddof=1))
    df = k - 1
    se = s * math.sqrt(1.0 + 1.0 / k)
    method = f"prediction interval from {k} runs (t, {df} df)"
    if se <= 0:
        p_slow, p_fast = (0.0 if d > 0 else 1.0), (0.0 if d < 0 else 1.0)
        return RatioCI(math.exp(d), math.exp(d), math.exp(d), level, method), p_slow, p_fast
    t = d / se
    half = float(_sp.stdtrit(df, 1.0 - (1.0 - level) / 2.0)) * se
    return (RatioCI(math.exp(d), math.exp(d - half), math.exp(d + half), level, method),
            float(_sp.stdtr(df, -t)), float(_sp.stdtr(df, t)))


def _segment_record(s: Series, idx: np.ndarray, h: History) -> CaseRecord:
    """The segment as one case record whose 'samples' are the per-run values, in run order."""
    vals = [float(v) for v in s.value[idx]]
    last = h.runs[int(s.pos[idx[-1]])] if idx.size else None
    key = CaseKey.parse(s.case)  # the record's fields are its identity: the same as NEW's record of the case
    return CaseRecord(run_id=last.run_id if last else "", case_id=s.case, suite=key.suite, workload=key.workload,
                      label=key.label, name=s.name, params=key.params, backend=s.backend,  # type: ignore[arg-type]
                      status="ok", timing=Timing(method="history-runs", samples_s=vals,
                                                 summary=TimingSummary.of(vals)))


def gate_history(results: str | Path, new: str | Path, opts: CompareOptions, allow_different_machines: bool = False,
                 repo: Path | None = None, settings: Settings | None = None) -> GateResult:
    """Gate NEW against the last stable segment of each of its cases in the history under ``results``."""
    opts.check()
    if opts.metric not in ("median", "min"):
        raise UsageError(f"--metric {opts.metric!r}: the history gate compares per-run medians or mins")
    if opts.ignore_params:
        raise UsageError("--ignore-param does not apply to --history (a history matches cases by identity)")
    nrun = load_side(new)
    h = load_history([Path(results)], metric=opts.metric, settings=settings, repo=repo if repo else Path(),
                     exclude_run_ids=frozenset({nrun.run.run_id}))
    if not h.runs:
        raise ResultsError(f"{results}: holds no readable run to gate against")
    machine = machine_fingerprint(nrun.run.environment or {})
    same = any(r.machine == machine for r in h.runs)
    if not same and not allow_different_machines:
        raise ResultsError(f"no run under {results} comes from the machine and software of {new} (fingerprint "
                           f"{machine}); pass --allow-different-machines to gate against each case's latest machine")
    by_case = {s.case: s for s in h.series}
    base_cases: list[CaseRecord] = []
    for c in nrun.cases:
        s = by_case.get(c.key.id)
        if s is None or not s.value.size:
            continue
        m = machine if same else str(s.machine[-1])
        idx = s.stable_segment(m)
        if idx.size:
            base_cases.append(_segment_record(s, idx, h))
    env = dict(nrun.run.environment or {}) if same else {}
    base = LoadedRun(run=RunRecord(run_id=f"history:{results}", suite=nrun.run.suite, started_at="",
                                   environment=env),
                     cases=base_cases, source=f"history {results} (last stable segment per case)")

    def stats(key: str, b: Side, n: Side) -> tuple[RatioCI, float, float, str]:
        r, ps, pf = prediction(b.samples, n.value, opts.level)
        return r, ps, pf, f"t-test of NEW's {opts.metric} against the segment's per-run {opts.metric}s"

    cmp = compare_runs(base, nrun, opts, stats=stats)
    if not any(c.ratio is not None and math.isfinite(c.ratio) for c in cmp.cases):
        raise ResultsError(f"no case of {new} has a history under {results} to compare with")
    return GateResult(comparison=cmp, refused=None)

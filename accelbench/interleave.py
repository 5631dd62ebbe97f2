"""``accelbench run SUITE --baseline BASE_RUN [--interleave]``: measure against a baseline run.

Without ``--interleave`` the suite runs as usual and the new run is compared with BASE_RUN as it was
recorded. With ``--interleave`` both are measured now, in one session, alternately: the baseline's suite
(its text is stored in its run.json under ``options.suite_yaml``) and the candidate suite are expanded,
their cases matched, and each matched pair is measured in ``rounds`` short rounds, base-then-new in even
rounds and new-then-base in odd ones (as asv's ``--interleave-rounds`` does). Whatever drifts during the
session (other users' load, thermal state, frequency scaling) then hits both sides alike, and compare
analyses the per-round ratios (a paired t over rounds), so drift between rounds is not mistaken for a
change and the round-to-round spread, not the much smaller spread within a round, sets the CI.

Each round gets ``1/rounds`` of the case's timing budget; a round re-runs setup, warm-up, calibration and
validation, so a case that fails validation in any round is recorded as failed. The two sides are
written as two ordinary run directories (so every other command reads them), tagged with the same
``options.interleave.session`` and each sample's round in ``timing.rounds``.

What it cannot do: both sides run the code installed here. It re-measures a baseline *suite definition*
(parameters, sizes, timing options) against the candidate's; to re-measure a baseline *code version*,
run the baseline from its own checkout or environment and compare the runs without interleaving.
"""

from __future__ import annotations

import math
import random
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import __version__, environment
from .backends import Backend
from .compare import MIN_ROUNDS, CompareOptions, Comparison, LoadedRun, compare_runs, match_key
from .errors import ResultsError, SuiteError, UsageError
from .measure.stats import summarize
from .measure.timing import CpuTimer, TimingPolicy
from .results import CaseRecord, RunRecord, RunWriter, Timing, new_run_id, now_iso, read_run
from .runner import RunOptions, count_statuses, measure_case, plan, skipped_record, throughput
from .suite import Case, Suite, parse

DEFAULT_ROUNDS = 20

Progress = Callable[[int, int, str], None]


@dataclass
class InterleaveResult:
    base_dir: Path
    new_dir: Path
    base: LoadedRun
    new: LoadedRun


def baseline_suite(base_dir: str | Path, fallback_dir: Path) -> tuple[Suite, RunRecord]:
    """The baseline run's own suite, rebuilt from the text stored in its run.json."""
    run, _ = read_run(base_dir)
    text = run.options.get("suite_yaml") if isinstance(run.options, dict) else None
    if not text:
        raise ResultsError(f"{base_dir}: the baseline run does not store its suite text (options.suite_yaml); "
                           "re-run the baseline with this accelbench, or compare without --interleave")
    sf = Path(run.suite_file) if run.suite_file else None
    suite_dir = sf.resolve().parent if sf is not None and sf.exists() else fallback_dir
    try:
        return parse(str(text), f"{base_dir}:options.suite_yaml", suite_dir), run
    except SuiteError as e:
        raise ResultsError(f"the baseline's stored suite no longer loads here: {e}") from None


def round_policy(case: Case, rounds: int, quick: bool) -> Case:
    """The case with 1/rounds of its sampling budget (at least 3 samples a round)."""
    p = case.timing.quick() if quick else case.timing
    per = replace(
        p,
        min_samples=max(3, math.ceil(p.min_samples / rounds)),
        max_samples=max(3, math.ceil(p.max_samples / rounds)),
        min_time_s=p.min_time_s / rounds,
        warmup_time_s=p.warmup_time_s / rounds,
        max_time_s=max(p.max_time_s / rounds, 1e-3),
        # a round stops on time, not on precision: the pooled samples give the precision
        target_rel_ci=min(p.target_rel_ci, 1e-9),
    )
    return replace(case, timing=per)


def merge_rounds(recs: list[CaseRecord], case: Case | None, backend: str, run_id: str) -> CaseRecord:
    """One record from a case's rounds: samples pooled, each tagged with its round. Without ``case`` (the
    rounds came from workers of another environment: accelbench.ab) the records' definition hash stays."""
    bad = next((r for r in recs if r.status != "ok"), None)
    if bad is not None:
        out = bad.model_copy(deep=True)
        out.run_id = run_id
        if case is not None:
            out.definition_hash = case.definition_hash()
        out.message = f"round {recs.index(bad)}: {bad.message}"
        return out
    first = recs[0]
    samples: list[float] = []
    rounds: list[int] = []
    loops = []
    total = 0.0
    for i, r in enumerate(recs):
        assert r.timing is not None
        samples += list(r.timing.samples_s)
        rounds += [i] * len(r.timing.samples_s)
        loops.append(r.timing.inner_loops)
        total += r.timing.total_time_s
    t0 = first.timing
    assert t0 is not None
    timing = Timing(method=t0.method, samples_s=samples, inner_loops=min(loops), warmup=t0.warmup,
                    stop_reason="interleaved", total_time_s=total, summary=summarize(samples).to_dict(),
                    clock_resolution_s=t0.clock_resolution_s,
                    notes=[f"{len(recs)} interleaved rounds; inner loops per round {loops}"],
                    rounds=rounds)  # type: ignore[call-arg]  # extra field (Timing allows extras): each sample's round
    out = first.model_copy(deep=True)
    out.run_id = run_id
    out.timing = timing
    out.timings = {}
    if case is not None:
        out.definition_hash = case.definition_hash()
    out.duration_s = sum(r.duration_s for r in recs)
    out.throughput = throughput(out.work, timing.summary.get("median"))
    return out


def _time_loops(fn: Callable[[], Any], loops: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(loops):
        fn()
    return (time.perf_counter_ns() - t0) * 1e-9


def measure_pair_cpu(bcase: Case, ncase: Case, be: Backend, base_run_id: str, new_run_id: str, rounds: int,
                     quick: bool = False, seed: int = 0) -> tuple[CaseRecord, CaseRecord]:
    """Baseline and candidate of one case on the CPU, alternating sample by sample.

    First each side goes through the runner's own ``measure_case`` with a 3-sample policy: that validates
    its output and yields a complete record (or the failure, recorded as the runner records it). Then, in
    each of ``rounds`` rounds, both workloads are set up afresh (new allocations, so layout effects
    average out over rounds), warmed up, and timed in pairs with the same inner-loop count, the order
    inside each pair drawn at random, so neither side systematically runs first. Pairs cancel the
    machine's moment-to-moment load; rounds average set-up effects; compare tests over rounds."""
    pb = bcase.timing.quick() if quick else bcase.timing
    pn = ncase.timing.quick() if quick else ncase.timing

    def tiny(p: TimingPolicy) -> TimingPolicy:
        return replace(p, min_samples=3, max_samples=3, min_time_s=0.0, max_time_s=1e-3, warmup=1,
                       warmup_time_s=0.0)

    tb = measure_case(replace(bcase, timing=tiny(pb)), be, base_run_id)
    tn = measure_case(replace(ncase, timing=tiny(pn)), be, new_run_id)
    tb.definition_hash, tn.definition_hash = bcase.definition_hash(), ncase.definition_hash()
    if tb.status != "ok" or tn.status != "ok":
        return tb, tn
    rng = random.Random(seed)
    per_round_s = max(pb.max_time_s, pn.max_time_s) / rounds
    min_pairs = max(3, math.ceil(max(pb.min_samples, pn.min_samples) / rounds))
    max_pairs = max(3, math.ceil(min(pb.max_samples, pn.max_samples) / rounds))
    warm = replace(pb, warmup_time_s=pb.warmup_time_s / rounds)
    xs: dict[str, list[float]] = {"b": [], "n": []}
    tags: list[int] = []
    pair_ids: list[int] = []
    loops_used: list[int] = []
    total = 0.0
    t_all = time.perf_counter()
    try:
        for r in range(rounds):
            wb = bcase.cls(bcase.params, be, seed=bcase.seed)
            wn = ncase.cls(ncase.params, be, seed=ncase.seed)
            # a random-size allocation held through the round, and a random set-up order, so where the
            # two sides' buffers land differs from round to round (layout effects average over rounds)
            pad = bytearray(rng.randrange(1, 1 << 16) * 64)
            try:
                for w in ((wb, wn) if rng.random() < 0.5 else (wn, wb)):
                    w.setup()
                timer = CpuTimer()
                loops, _ = timer.calibrate(wb.run, warm)
                timer.calibrate(wn.run, warm)  # its warm-up; both sides then use the baseline's loop count
                loops_used.append(loops)
                t0 = time.perf_counter()
                k = 0
                while k < max_pairs and (k < min_pairs or time.perf_counter() - t0 < 2 * per_round_s):
                    if rng.random() < 0.5:
                        a = _time_loops(wb.run, loops)
                        b = _time_loops(wn.run, loops)
                    else:
                        b = _time_loops(wn.run, loops)
                        a = _time_loops(wb.run, loops)
                    xs["b"].append(a / loops)
                    xs["n"].append(b / loops)
                    tags.append(r)
                    pair_ids.append(len(pair_ids))
                    k += 1
                total += time.perf_counter() - t0
            finally:
                wb.teardown()
                wn.teardown()
                del pad
    except Exception as e:  # a case-level failure after validation passed: recorded, the session goes on
        for rec in (tb, tn):
            rec.status, rec.timing = "error", None
            rec.message = f"interleaved sampling: {type(e).__name__}: {e}"
        return tb, tn
    for rec, key in ((tb, "b"), (tn, "n")):
        t = Timing(method="cpu-perf_counter", samples_s=xs[key], inner_loops=min(loops_used), warmup=0,
                   stop_reason="interleaved", total_time_s=total, summary=summarize(xs[key]).to_dict(),
                   notes=[f"{rounds} interleaved rounds, pairs timed alternately in random order; inner loops "
                          f"per round {loops_used}"],
                   rounds=list(tags), pairs=list(pair_ids))  # type: ignore[call-arg]  # extra fields
        rec.timing, rec.timings = t, {}
        rec.duration_s += time.perf_counter() - t_all
        rec.throughput = throughput(rec.work, t.summary.get("median"))
    return tb, tn


def run_interleaved(base_dir: str | Path, suite: Suite, opts: RunOptions, rounds: int = DEFAULT_ROUNDS,
                    ignore_params: tuple[str, ...] = (), progress: Progress | None = None) -> InterleaveResult:
    """Measure the baseline run's suite and ``suite`` alternately, ``rounds`` rounds per matched case."""
    if rounds < MIN_ROUNDS:
        raise UsageError(f"--rounds {rounds}: interleaving needs at least {MIN_ROUNDS} rounds")
    bsuite, brun = baseline_suite(base_dir, Path(suite.file).resolve().parent)
    new_pairs, bes = plan(suite, opts)
    # the baseline side runs whatever backends the candidate side selected
    base_opts = replace(opts, backends=sorted({b for _, b in new_pairs}), strict_backend=False)
    try:
        base_pairs, bbes = plan(bsuite, base_opts)
    except UsageError:
        base_pairs, bbes = [], {}
    bes.update(bbes)

    def key(case: Case, b: str) -> str:
        rec = skipped_record(case, b, "", "")
        return match_key(rec, ignore_params)

    base_by = {key(c, b): (c, b) for c, b in base_pairs}
    new_by = {key(c, b): (c, b) for c, b in new_pairs}
    order = list(new_by) + [k for k in base_by if k not in new_by]
    root = Path(opts.out)
    root.mkdir(parents=True, exist_ok=True)
    session = secrets.token_hex(6)
    env = environment.fingerprint(with_gpu=True)

    def writer(role: str, s: Suite) -> RunWriter:
        run = RunRecord(
            run_id=new_run_id(root) + f"-{role}", suite=s.name, suite_file=s.file, suite_sha256=s.sha256,
            description=s.description, started_at=now_iso(), accelbench_version=__version__,
            git=environment.git_info(), argv=list(opts.argv or sys.argv),
            options={"backends": opts.backends, "filter": opts.filter, "quick": opts.quick, "counters": False,
                     "suite_yaml": s.text,
                     "interleave": {"session": session, "role": role, "rounds": rounds,
                                    "baseline_run": str(base_dir), "baseline_run_id": brun.run_id,
                                    "ignore_params": list(ignore_params)}},
            environment=env,
        )
        return RunWriter(root, run)

    wb, wn = writer("baseline", bsuite), writer("candidate", suite)
    done_b: list[CaseRecord] = []
    done_n: list[CaseRecord] = []
    status = "finished"
    try:
        for i, k in enumerate(order):
            if progress:
                progress(i, len(order), k)
            sides: list[tuple[str, tuple[Case, str], RunWriter, list[CaseRecord]]] = []
            if k in base_by:
                sides.append(("b", base_by[k], wb, done_b))
            if k in new_by:
                sides.append(("n", new_by[k], wn, done_n))
            if len(sides) == 2 and sides[0][1][1] == "cpu" and not sides[0][1][0].cls.custom \
                    and not sides[1][1][0].cls.custom:
                (_, (cb, b), _, _), (_, (cn, _), _, _) = sides
                rb, rn = measure_pair_cpu(cb, cn, bes[b], wb.run.run_id, wn.run.run_id, rounds, opts.quick,
                                          seed=i)
                for rec, w, done in ((rb, wb, done_b), (rn, wn, done_n)):
                    w.append(rec)
                    done.append(rec)
                continue
            per: dict[str, list[CaseRecord]] = {s[0]: [] for s in sides}
            for r in range(rounds):
                seq = sides if r % 2 == 0 else sides[::-1]
                for tag, (case, b), w, _ in seq:
                    be: Backend = bes[b]
                    if not be.available:
                        continue
                    per[tag].append(measure_case(round_policy(case, rounds, opts.quick), be, w.run.run_id))
                if any(rec and rec[-1].status != "ok" for rec in per.values()):
                    break  # a failing case fails in every round; do not spend the budget on it
            for tag, (case, b), w, done in sides:
                be = bes[b]
                if not be.available:
                    rec = skipped_record(case, b, w.run.run_id, f"GPU unavailable: {be.reason}" if b == "gpu"
                                         else be.reason)
                elif per[tag] and per[tag][0].status == "skipped":
                    rec = per[tag][0]
                else:
                    rec = merge_rounds(per[tag], case, b, w.run.run_id)
                w.append(rec)
                done.append(rec)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        wb.close(status, count_statuses(done_b))  # type: ignore[arg-type]
        wn.close(status, count_statuses(done_n))  # type: ignore[arg-type]
    if status == "interrupted":
        from .runner import Interrupted

        raise Interrupted(wn.dir)
    return InterleaveResult(base_dir=wb.dir, new_dir=wn.dir,
                            base=LoadedRun(wb.run, done_b, str(wb.dir)),
                            new=LoadedRun(wn.run, done_n, str(wn.dir)))


def run_with_baseline(suite: Suite, opts: RunOptions, baseline: str | Path, interleave: bool,
                      rounds: int = DEFAULT_ROUNDS, compare: CompareOptions | None = None,
                      progress: Progress | None = None) -> tuple[Comparison, Path, Path]:
    """The ``run --baseline`` path: returns the comparison and the (baseline, candidate) run dirs."""
    from .compare import load_side

    compare = compare or CompareOptions()
    if interleave:
        res = run_interleaved(baseline, suite, opts, rounds, tuple(compare.ignore_params), progress)
        return compare_runs(res.base, res.new, compare), res.base_dir, res.new_dir
    from .runner import run_suite

    base = load_side(baseline)  # fail on a bad baseline before spending time on the run
    hook: Any = (lambda i, n, case, b: progress(i, n, case.name)) if progress else None
    r = run_suite(suite, opts, hook)
    return compare_runs(base, LoadedRun(r.run, r.cases, str(r.run_dir)), compare), Path(base.source), r.run_dir

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

import contextlib
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import environment
from .backends import Backend
from .compare import MIN_ROUNDS, CompareOptions, Comparison, LoadedRun, check_rounds, compare_runs
from .errors import ResultsError, SuiteError, UsageError
from .measure.timing import CpuTimer, TimingPolicy
from .results import CaseRecord, RunRecord, RunWriter, Timing, TimingSummary, new_run_id, read_run
from .runner import (
    Interrupted,
    RunOptions,
    close_run,
    measure_case,
    new_run,
    open_run,
    plan,
    run_case,
    select,
    stop_signals,
    throughput,
)
from .suite import MAX_FILE_BYTES, Case, Suite, parse

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
    if not isinstance(text, str) or len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise ResultsError(f"{base_dir}: options.suite_yaml is not a suite text of at most {MAX_FILE_BYTES} bytes "
                           "(the limit for a suite file)")
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
                    stop_reason="interleaved", total_time_s=total, summary=TimingSummary.of(samples),
                    clock_resolution_s=t0.clock_resolution_s,
                    notes=[f"{len(recs)} interleaved rounds; inner loops per round {loops}"], rounds=rounds)
    out = first.model_copy(deep=True)
    out.run_id = run_id
    out.timing = timing
    out.timings = {}
    if case is not None:
        out.definition_hash = case.definition_hash()
    out.duration_s = sum(r.duration_s for r in recs)
    out.throughput = throughput(out.work, timing.summary.median)
    return out


@dataclass
class _PairSamples:
    """Both sides' per-operation samples, each pair's round and number, and the loop count per round."""

    base: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    loops: list[int] = field(default_factory=list)
    total_s: float = 0.0


def validation_policy(p: TimingPolicy) -> TimingPolicy:
    """Three samples, no warm-up time: enough for the runner to validate a side and give its record."""
    return replace(p, min_samples=3, max_samples=3, min_time_s=0.0, max_time_s=1e-3, warmup=1, warmup_time_s=0.0)


@dataclass(frozen=True)
class RoundBudget:
    """How many pairs one round times: at least ``min_pairs``, then until ``2 * per_round_s`` (both sides'
    share of the round) has passed, never more than ``max_pairs``."""

    per_round_s: float
    min_pairs: int
    max_pairs: int

    @classmethod
    def of(cls, policies: Sequence[TimingPolicy], rounds: int) -> RoundBudget:
        return cls(per_round_s=max(p.max_time_s for p in policies) / rounds,
                   min_pairs=max(3, math.ceil(max(p.min_samples for p in policies) / rounds)),
                   max_pairs=max(3, math.ceil(min(p.max_samples for p in policies) / rounds)))

    def more(self, done: int, elapsed_s: float) -> bool:
        return done < self.max_pairs and (done < self.min_pairs or elapsed_s < 2 * self.per_round_s)


class RoundSide:
    """One side of a paired round: its workload set up afresh behind a random-size allocation (so where its
    buffers land differs from round to round), warmed up and calibrated, then timed one sample at a time
    at the loop count the pair shares. The in-process interleave holds two; an ``accelbench ab`` worker
    holds one, and the orchestrator alternates samples between two workers (accelbench.worker)."""

    def __init__(self, case: Case, be: Backend, rng: random.Random, timer: CpuTimer) -> None:
        self.workload = case.cls(case.params, be, seed=case.seed)
        self.pad = bytearray(rng.randrange(1, 1 << 16) * 64)
        self.timer = timer

    def setup(self) -> None:
        self.workload.setup()

    def calibrate(self, policy: TimingPolicy, rounds: int) -> int:
        """Warm up with 1/rounds of the policy's warm-up time; the loop count for one sample."""
        loops, _ = self.timer.calibrate(self.workload.run, replace(policy, warmup_time_s=policy.warmup_time_s / rounds))
        return loops

    def sample(self, loops: int) -> float:
        """Seconds per operation of one sample of ``loops`` operations."""
        return self.timer.time_loops(self.workload.run, loops) / loops

    def close(self) -> None:
        self.workload.teardown()
        self.pad = bytearray()


def _pair_round(r: int, bcase: Case, ncase: Case, be: Backend, pb: TimingPolicy, pn: TimingPolicy, rounds: int,
                rng: random.Random, out: _PairSamples) -> None:
    """One round: both sides set up afresh (:class:`RoundSide`, in random order), warmed up, and timed in
    pairs with the baseline's inner-loop count, the order inside each pair drawn at random."""
    budget = RoundBudget.of((pb, pn), rounds)
    timer = CpuTimer()
    sb, sn = RoundSide(bcase, be, rng, timer), RoundSide(ncase, be, rng, timer)
    try:
        for s in ((sb, sn) if rng.random() < 0.5 else (sn, sb)):
            s.setup()
        loops = sb.calibrate(pb, rounds)
        sn.calibrate(pb, rounds)  # its warm-up; both sides then use the baseline's loop count
        out.loops.append(loops)
        t0 = time.perf_counter()
        k = 0
        while budget.more(k, time.perf_counter() - t0):
            first, second = (sb, sn) if rng.random() < 0.5 else (sn, sb)
            t = {id(first): first.sample(loops), id(second): second.sample(loops)}
            out.base.append(t[id(sb)])
            out.new.append(t[id(sn)])
            out.rounds.append(r)
            k += 1
        out.total_s += time.perf_counter() - t0
    finally:
        sb.close()
        sn.close()


def measure_pair_cpu(bcase: Case, ncase: Case, be: Backend, base_run_id: str, new_run_id: str, rounds: int,
                     quick: bool = False, seed: int = 0) -> tuple[CaseRecord, CaseRecord]:
    """Baseline and candidate of one case on the CPU, alternating sample by sample.

    First each side goes through the runner's own ``measure_case`` with a 3-sample policy: that validates
    its output and yields a complete record (or the failure, recorded as the runner records it). Then, in
    each of ``rounds`` rounds (:func:`_pair_round`), both workloads are set up afresh, warmed up and timed
    in pairs. Pairs cancel the machine's moment-to-moment load; rounds average set-up effects; compare
    tests over rounds."""
    pb = bcase.timing.quick() if quick else bcase.timing
    pn = ncase.timing.quick() if quick else ncase.timing
    tb = measure_case(replace(bcase, timing=validation_policy(pb)), be, base_run_id)
    tn = measure_case(replace(ncase, timing=validation_policy(pn)), be, new_run_id)
    tb.definition_hash, tn.definition_hash = bcase.definition_hash(), ncase.definition_hash()
    if tb.status != "ok" or tn.status != "ok":
        return tb, tn
    rng = random.Random(seed)
    got = _PairSamples()
    t_all = time.perf_counter()
    try:
        for r in range(rounds):
            _pair_round(r, bcase, ncase, be, pb, pn, rounds, rng, got)
    except Exception as e:  # a case-level failure after validation passed: recorded, the session goes on
        for rec in (tb, tn):
            rec.status, rec.timing = "error", None
            rec.message = f"interleaved sampling: {type(e).__name__}: {e}"
        return tb, tn
    for rec, xs in ((tb, got.base), (tn, got.new)):
        t = Timing(method=CpuTimer.method, samples_s=xs, inner_loops=min(got.loops), warmup=0,
                   stop_reason="interleaved", total_time_s=got.total_s, summary=TimingSummary.of(xs),
                   notes=[f"{rounds} interleaved rounds, pairs timed alternately in random order; inner loops "
                          f"per round {got.loops}"],
                   rounds=list(got.rounds), pairs=list(range(len(xs))))
        rec.timing, rec.timings = t, {}
        rec.duration_s += time.perf_counter() - t_all
        rec.throughput = throughput(rec.work, t.summary.median)
    return tb, tn


Side = tuple[str, tuple[Case, str], RunWriter, list[CaseRecord]]  # tag, (case, backend), writer, done


@dataclass
class _Session:
    """The two sides of an interleaved session: their matched cases, backends and open runs."""

    base_by: dict[str, tuple[Case, str]]
    new_by: dict[str, tuple[Case, str]]
    bes: dict[str, Backend]
    wb: RunWriter
    wn: RunWriter
    done_b: list[CaseRecord] = field(default_factory=list)
    done_n: list[CaseRecord] = field(default_factory=list)

    def order(self) -> list[str]:
        return list(self.new_by) + [k for k in self.base_by if k not in self.new_by]

    def sides(self, k: str) -> list[Side]:
        out: list[Side] = []
        if k in self.base_by:
            out.append(("b", self.base_by[k], self.wb, self.done_b))
        if k in self.new_by:
            out.append(("n", self.new_by[k], self.wn, self.done_n))
        return out


def _open_session(base_dir: str | Path, suite: Suite, opts: RunOptions, rounds: int,
                  ignore_params: tuple[str, ...]) -> _Session:
    """Both suites planned on the candidate's backends, their cases matched by identity, both runs opened
    (tagged with one session id) through the runner."""
    bsuite, brun = baseline_suite(base_dir, Path(suite.file).resolve().parent)
    new_pairs, bes = plan(suite, opts)
    # the baseline side runs whatever backends the candidate side selected
    base_opts = replace(opts, backends=sorted({b for _, b in new_pairs}), strict_backend=False)
    try:
        base_pairs, bbes = plan(bsuite, base_opts)
    except UsageError:
        base_pairs, bbes = [], {}
    bes.update(bbes)
    root = Path(opts.out)
    session = secrets.token_hex(6)
    env = environment.fingerprint(with_gpu=True)

    def writer(role: str, s: Suite) -> RunWriter:
        il = {"session": session, "role": role, "rounds": rounds, "baseline_run": str(base_dir),
              "baseline_run_id": brun.run_id, "ignore_params": list(ignore_params)}
        run = new_run(s, replace(opts, counters=False), root, run_id=new_run_id(root) + f"-{role}",
                      options={"interleave": il}, environment=env)
        return open_run(root, run)

    return _Session(base_by={c.key(b).match_key(ignore_params): (c, b) for c, b in base_pairs},
                    new_by={c.key(b).match_key(ignore_params): (c, b) for c, b in new_pairs},
                    bes=bes, wb=writer("baseline", bsuite), wn=writer("candidate", suite))


def _measure_rounds(sides: list[Side], bes: dict[str, Backend], rounds: int, quick: bool) -> list[CaseRecord]:
    """Each side's case in ``rounds`` rounds of 1/rounds of its budget, base first in even rounds and new
    first in odd ones; one merged record per side."""
    per: dict[str, list[CaseRecord]] = {s[0]: [] for s in sides}
    for r in range(rounds):
        for tag, (case, b), w, _ in (sides if r % 2 == 0 else sides[::-1]):
            if bes[b].available:
                per[tag].append(measure_case(round_policy(case, rounds, quick), bes[b], w.run.run_id))
        if any(rec and rec[-1].status != "ok" for rec in per.values()):
            break  # a failing case fails in every round; do not spend the budget on it
    out = []
    for tag, (case, b), w, _ in sides:
        if not bes[b].available or (per[tag] and per[tag][0].status == "skipped"):
            out.append(per[tag][0] if per[tag] else run_case(case, b, bes[b], w.run.run_id))
        else:
            out.append(merge_rounds(per[tag], case, b, w.run.run_id))
    return out


def _measure_matched(i: int, sides: list[Side], ses: _Session, rounds: int, quick: bool) -> list[CaseRecord]:
    """One matched case: on the CPU the two sides alternate pair by pair (measure_pair_cpu), elsewhere
    (the GPU, custom workloads, a case only one side has) round by round."""
    if len(sides) == 2 and sides[0][1][1] == "cpu" and not any(s[1][0].cls.custom for s in sides):
        (_, (cb, b), _, _), (_, (cn, _), _, _) = sides
        return list(measure_pair_cpu(cb, cn, ses.bes[b], ses.wb.run.run_id, ses.wn.run.run_id, rounds, quick,
                                     seed=i))
    return _measure_rounds(sides, ses.bes, rounds, quick)


def run_interleaved(base_dir: str | Path, suite: Suite, opts: RunOptions, rounds: int = DEFAULT_ROUNDS,
                    ignore_params: tuple[str, ...] = (), progress: Progress | None = None) -> InterleaveResult:
    """Measure the baseline run's suite and ``suite`` alternately, ``rounds`` rounds per matched case."""
    if rounds < MIN_ROUNDS:
        raise UsageError(f"--rounds {rounds}: interleaving needs at least {MIN_ROUNDS} rounds")
    ses = _open_session(base_dir, suite, opts, rounds, ignore_params)
    order = ses.order()
    interrupted = False
    signals = contextlib.ExitStack()
    sig = signals.enter_context(stop_signals())  # SIGTERM closes the session as Ctrl-C does
    try:
        for i, k in enumerate(order):
            if progress:
                progress(i, len(order), k)
            sides = ses.sides(k)
            for (_, _, w, done), rec in zip(sides, _measure_matched(i, sides, ses, rounds, opts.quick), strict=True):
                w.append(rec)
                done.append(rec)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sig.closing = True
        try:
            close_run(ses.wb, interrupted, ses.done_b)
            close_run(ses.wn, interrupted, ses.done_n)
        finally:
            signals.close()
    if interrupted:
        raise Interrupted(ses.wn.dir, sig.signum)
    return InterleaveResult(base_dir=ses.wb.dir, new_dir=ses.wn.dir,
                            base=LoadedRun(ses.wb.run, ses.done_b, str(ses.wb.dir)),
                            new=LoadedRun(ses.wn.run, ses.done_n, str(ses.wn.dir)))


def run_with_baseline(suite: Suite, opts: RunOptions, baseline: str | Path, interleave: bool,
                      rounds: int = DEFAULT_ROUNDS, compare: CompareOptions | None = None,
                      progress: Progress | None = None, allow_different_machines: bool = False
                      ) -> tuple[Comparison, Path, Path]:
    """The ``run --baseline`` path: returns the comparison and the (baseline, candidate) run dirs. A
    baseline from another machine is refused as ``gate`` refuses it (compare.check_machines)."""
    from .compare import check_machines, load_side

    compare = compare or CompareOptions()
    if interleave:
        check_rounds(rounds, len(select(suite, opts)), compare.alpha)  # before anything is opened or measured
        res = run_interleaved(baseline, suite, opts, rounds, tuple(compare.ignore_params), progress)
        return compare_runs(res.base, res.new, compare), res.base_dir, res.new_dir
    from .runner import run_suite

    base = load_side(baseline)  # fail on a bad baseline before spending time on the run
    hook: Any = (lambda i, n, case, b: progress(i, n, case.name)) if progress else None
    r = run_suite(suite, opts, hook)
    cmp = compare_runs(base, LoadedRun(r.run, r.cases, str(r.run_dir)), compare)
    check_machines(cmp, allow_different_machines, kept=str(r.run_dir))
    return cmp, Path(base.source), r.run_dir

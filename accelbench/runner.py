"""Orchestrates one run: preflight, one case at a time in isolation, streaming each record to disk.

A case that raises, runs out of memory or exceeds its time limit is recorded with its status and message
and the run goes on. Ctrl-C stops cleanly: the run is closed as "interrupted" with every finished case
kept, then ``Interrupted`` propagates to the CLI (exit 130).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, backends
from . import environment as environment_mod
from .backends import Backend
from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED, BackendUnavailable, UsageError, WriteError
from .measure.contention import contention, cpu_snapshot
from .measure.counters import CounterSampler
from .measure.timing import CpuTimer, TimingPolicy
from .results import CaseRecord, RunRecord, RunWriter, Timing, TimingSummary, new_run_id, now_iso
from .suite import Case, Suite, check_memory
from .workloads.base import Check


class Interrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM during a run; the run directory is closed and keeps every finished case.
    ``exit_code`` is 130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, run_dir: Path, signum: int = signal.SIGINT) -> None:
        what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        super().__init__(f"{what}; finished cases kept in {run_dir}")
        self.run_dir = run_dir
        self.signum = signum
        self.exit_code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


class Stop(KeyboardInterrupt):
    """SIGINT or SIGTERM arriving while a run is open, raised in the main thread. A KeyboardInterrupt, so
    every place that lets Ctrl-C through (measure_case, the workloads) lets SIGTERM through alike."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """The state of :func:`stop_signals`: which signals came, and whether raising is held back."""

    def __init__(self) -> None:
        self.got: list[int] = []
        self.held = 0
        self.closing = False

    def handler(self, signum: int, frame: Any) -> None:
        self.got.append(signum)
        if len(self.got) == 1 and not self.held and not self.closing:
            raise Stop(signum)

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        """Hold a signal back while a record is being written (so it is written whole and counted), then
        raise it."""
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1
        if self.got and not self.held and not self.closing:
            raise Stop(self.got[0])

    @property
    def signum(self) -> int:
        return self.got[0] if self.got else signal.SIGINT


@contextlib.contextmanager
def stop_signals() -> Iterator[_Signals]:
    """While a run is open, SIGINT and SIGTERM (what CI cancellation and ``timeout`` send) stop it as
    Ctrl-C does: the run is closed as interrupted with every finished case. The handler is installed even
    where SIGINT was inherited as ignored (a background job of a non-interactive shell starts so): a
    signal sent to stop the run must not be lost. A second signal while the run is being closed is
    recorded, not raised, so the closing completes and the exit code stays 130 / 143. No-op off the main
    thread (signals are delivered to it only)."""
    state = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    old = {sig: signal.signal(sig, state.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        state.closing = True
        for sig, h in old.items():
            signal.signal(sig, h)


class CaseTimeout(Exception):
    pass


@dataclass
class RunOptions:
    backends: list[str] | None = None  # None: every backend the suite names
    filter: str | None = None
    quick: bool = False
    out: Path = Path("results")
    counters: bool = True
    counter_interval_s: float = 0.1
    argv: list[str] = field(default_factory=list)
    strict_backend: bool = False  # True when the user asked for a backend explicitly
    isolate: bool = False  # measure each case in a spawned worker process (accelbench.isolate)


@dataclass
class RunResult:
    run_dir: Path
    run: RunRecord
    cases: list[CaseRecord]

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.cases)


def count_statuses(cases: list[CaseRecord]) -> dict[str, int]:
    out = {"ok": 0, "failed": 0, "skipped": 0, "error": 0}
    for c in cases:
        out[c.status] = out.get(c.status, 0) + 1
    return out


Hook = Callable[..., None]


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after ``seconds`` (checked between Python bytecodes, so a long
    BLAS call finishes first). No-op off the main thread or where SIGALRM does not exist."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread() \
            or not math.isfinite(seconds):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"exceeded its time limit of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    name = type(e).__name__
    return name in ("OutOfMemoryError", "CUDARuntimeError") and "memory" in str(e).lower()


def throughput(work: dict[str, Any], median_s: float | None) -> dict[str, float]:
    if not median_s or median_s <= 0 or not math.isfinite(median_s):
        return {}
    out = {}
    if work.get("flops"):
        out["gflops"] = work["flops"] / median_s / 1e9
    if work.get("bytes"):
        out["gbps"] = work["bytes"] / median_s / 1e9
    if work.get("items"):
        out["items_per_s"] = work["items"] / median_s
    return out


def skipped_record(case: Case, backend: str, run_id: str, reason: str) -> CaseRecord:
    return CaseRecord(
        run_id=run_id, case_id=case.case_id(backend), suite=case.suite, workload=case.workload,
        family=case.cls.family, name=case.name, label=case.label, params=case.params_dict,
        backend=backend,  # type: ignore[arg-type]
        status="skipped", message=reason, definition_hash=case.definition_hash(),
        work=case.cls.work(case.params).to_dict(),
        thresholds={"regression": case.threshold} if case.threshold is not None else {},
        started_at=now_iso(),
    )


def measure_case(case: Case, be: Backend, run_id: str, quick: bool = False,
                 sampler: CounterSampler | None = None, cpu_timer: type[CpuTimer] = CpuTimer) -> CaseRecord:
    """Set up, validate, time and tear down one case on one backend. Never raises for a case-level
    problem (those become the record's status); KeyboardInterrupt propagates."""
    rec = skipped_record(case, be.name, run_id, "")
    rec.variant = case.cls.variant(case.params, be.name)
    policy: TimingPolicy = case.timing.quick() if quick else case.timing
    rec.definition_hash = case.definition_hash(policy)  # a --quick run is not comparable to a full one
    reason = case.cls.unsupported(case.params, be.name)
    if reason:
        rec.message = reason
        return rec
    t0 = time.perf_counter()
    wl = None
    try:
        with _deadline(policy.timeout_s):
            wl = case.cls(case.params, be, seed=case.seed)
            wl.setup()
            if case.cls.custom:
                _measure_custom(wl, policy, quick, rec)
            else:
                _validate_and_time(wl, case, be, policy, quick, sampler, rec, cpu_timer)
        if rec.timing is not None and rec.status == "ok":
            rec.throughput = throughput(rec.work, rec.timing.summary.median)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        _record_error(rec, e)
    finally:
        if wl is not None:
            with contextlib.suppress(Exception):
                wl.teardown()
        del wl
        with contextlib.suppress(Exception):
            be.free_memory_pools()
        rec.duration_s = time.perf_counter() - t0
    return rec


def _measure_custom(wl: Any, policy: TimingPolicy, quick: bool, rec: CaseRecord) -> None:
    """A workload that measures itself (e.g. train to accuracy): its metrics, check and samples."""
    custom = wl.measure_custom(budget_s=policy.max_time_s, quick=quick)
    rec.metrics = dict(custom.metrics)
    if custom.check is not None:
        rec.validation = custom.check.to_dict()
    if custom.samples_s:
        rec.timing = Timing(method="custom", samples_s=list(custom.samples_s), stop_reason="custom",
                            summary=TimingSummary.of(custom.samples_s))
    if custom.check is not None and not custom.check.passed:
        rec.status, rec.message = "failed", f"FAILED VALIDATION: {custom.check.message}"
        rec.timing = None
    else:
        rec.status = "ok"


def _validate_and_time(wl: Any, case: Case, be: Backend, policy: TimingPolicy, quick: bool,
                       sampler: CounterSampler | None, rec: CaseRecord, cpu_timer: type[CpuTimer] = CpuTimer
                       ) -> None:
    """Run once and check the output against the reference; only a validated case is timed (under the
    counters when a sampler is given)."""
    wl.run()
    be.synchronize()
    chk: Check = wl.check()
    rec.validation = chk.to_dict()
    if not chk.passed:
        rec.status, rec.message = "failed", f"FAILED VALIDATION: {chk.message}"
        return
    cm = sampler.case(case.case_id(be.name), be.name) if sampler else contextlib.nullcontext(None)
    with cm as cc:
        if be.is_gpu:
            from .measure.gpu import measure_gpu

            timing, extra = measure_gpu(wl, policy, quick=quick, counters=cc)
        else:
            timing, extra = cpu_timer().measure(wl.run, policy), {}
    if cc is not None:
        rec.counters = cc.result()
    rec.timing, rec.timings = timing, extra
    rec.status = "ok"


def _record_error(rec: CaseRecord, e: Exception) -> None:
    """A case-level exception as the record's status and one-line message (out of memory, time-out, or the
    exception with where it was raised)."""
    rec.status = "error"
    rec.timing = None
    if isinstance(e, CaseTimeout):
        rec.message = f"timeout: {e}"
    elif _is_oom(e):
        rec.message = f"out of memory: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    else:
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        rec.message = f"{type(e).__name__}: {e}{where}"


def select(suite: Suite, opts: RunOptions) -> list[tuple[Case, str]]:
    """The (case, backend) pairs a run measures, in run order; UsageError when there are none."""
    pairs = suite.select(opts.backends, opts.filter)
    if not pairs:
        what = f" matching {opts.filter!r}" if opts.filter else ""
        raise UsageError(f"{suite.file}: no case{what} on backend(s) "
                         f"{', '.join(opts.backends or ['any'])}; `accelbench list` shows the cases")
    return pairs


def plan(suite: Suite, opts: RunOptions) -> tuple[list[tuple[Case, str]], dict[str, Backend]]:
    """Select (case, backend) pairs and resolve backends; refuse what cannot fit or cannot run."""
    pairs = select(suite, opts)
    wanted = sorted({b for _, b in pairs})
    bes = {b: backends.get(b) for b in wanted}
    if opts.strict_backend:
        for b, be in bes.items():
            if not be.available:
                raise BackendUnavailable(f"backend {b} is unavailable: {be.reason}")
    available = {b: be.memory_available() for b, be in bes.items() if be.available}
    check_memory(suite, pairs, available)
    return pairs, bes


def new_run(suite: Suite, opts: RunOptions, root: Path, run_id: str | None = None,
            options: dict[str, Any] | None = None, environment: dict[str, Any] | None = None) -> RunRecord:
    """The run record of ``suite`` started now under ``opts`` (interleave adds its own options and id)."""
    return RunRecord(
        run_id=run_id or new_run_id(root), suite=suite.name, suite_file=suite.file, suite_sha256=suite.sha256,
        description=suite.description, started_at=now_iso(), accelbench_version=__version__,
        git=environment_mod.git_info(), argv=list(opts.argv or sys.argv),
        options={"backends": opts.backends, "filter": opts.filter, "quick": opts.quick, "counters": opts.counters,
                 "suite_yaml": suite.text, **(options or {})},
        environment=environment if environment is not None else environment_mod.fingerprint(with_gpu=True),
    )


def open_run(root: Path, run: RunRecord) -> RunWriter:
    """The run's directory under ``root`` (created), or a UsageError naming why it cannot be written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{root}: cannot create the results directory: {e.strerror}") from None
    try:
        return RunWriter(root, run)
    except OSError as e:
        raise UsageError(f"{root}: cannot write results: {e.strerror}") from None


def add_peaks(rec: CaseRecord, env: dict[str, Any]) -> None:
    """Add the case's % of the measured peaks of its machine (``env["peaks"]``) to its throughput."""
    from . import calibrate

    if rec.status == "ok" and env.get("peaks"):
        rec.throughput.update(calibrate.percent_of_peak(rec.model_dump(mode="json"), env["peaks"], env))


def close_run(writer: RunWriter, interrupted: bool, records: list[CaseRecord]) -> None:
    writer.close("interrupted" if interrupted else "finished", count_statuses(records))


def unavailable_reason(b: str, be: Backend) -> str:
    return f"GPU unavailable: {be.reason}" if b == "gpu" else be.reason


def run_case(case: Case, b: str, be: Backend, run_id: str, quick: bool = False,
             sampler: CounterSampler | None = None) -> CaseRecord:
    """One (case, backend) of a run: measured, or skipped with the reason when the backend is unavailable."""
    if not be.available:
        return skipped_record(case, b, run_id, unavailable_reason(b, be))
    return measure_case(case, be, run_id, quick=quick, sampler=sampler)


def run_suite(suite: Suite, opts: RunOptions, on_start: Hook | None = None, on_end: Hook | None = None
              ) -> RunResult:
    pairs, bes = plan(suite, opts)
    root = Path(opts.out)
    run = new_run(suite, opts, root)
    from . import calibrate

    # measured ceilings of this machine (from `accelbench calibrate`), so reports show % of peak
    run.environment["peaks"] = calibrate.peaks_for(run.environment)
    writer = open_run(root, run)
    sampler = CounterSampler(interval_s=opts.counter_interval_s, enabled=opts.counters)
    executor = None
    if opts.isolate:  # each case in a worker process; a crash or a hang in native code ends it, not the run
        from .isolate import IsolatedExecutor

        executor = IsolatedExecutor(suite, quick=opts.quick, counters=opts.counters)
        run.options["isolate"] = True
    records: list[CaseRecord] = []
    status = "finished"
    failure: WriteError | None = None
    with stop_signals() as sig:
        try:
            sampler.start()
            run.options["counters_capabilities"] = sampler.capabilities()
            writer.write_run()
            for i, (case, b) in enumerate(pairs):
                if on_start:
                    on_start(i, len(pairs), case, b)
                if executor is not None and bes[b].available:
                    rec = executor.measure(case, b, run.run_id)
                else:
                    before = cpu_snapshot()
                    rec = run_case(case, b, bes[b], run.run_id, quick=opts.quick, sampler=sampler)
                    if rec.status != "skipped":  # what others took meanwhile: compare weighs it (drift)
                        rec.contention = contention(before, cpu_snapshot(), os.cpu_count())
                add_peaks(rec, run.environment)
                with sig.shield():
                    writer.append(rec)
                    records.append(rec)
                if on_end:
                    on_end(i, len(pairs), rec)
        except KeyboardInterrupt:
            status = "interrupted"
        except WriteError as e:  # a full disk: keep what was written, close the run, say what happened
            status, failure = "interrupted", e
        finally:
            sig.closing = True
            sampler.stop()
            if executor is not None:
                executor.close()
            try:
                writer.close(status, count_statuses(records))  # type: ignore[arg-type]
            except WriteError as e:
                if failure is None:
                    raise
                raise WriteError(f"{failure}; run.json could not be closed either ({e}); the "
                                 f"{len(records)} case(s) in {writer.dir / 'cases.jsonl'} are intact") from None
    if failure is not None:
        raise WriteError(f"{failure}; the run is closed as interrupted with the {len(records)} case(s) written "
                         f"before it, intact, in {writer.dir}")
    if status == "interrupted":
        raise Interrupted(writer.dir, sig.signum)
    return RunResult(run_dir=writer.dir, run=run, cases=records)

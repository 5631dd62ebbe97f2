"""The worker protocol: a case spec in, a case record out (plain, versioned JSON both ways).

One protocol serves every executor that measures a case outside the orchestrating process: a worker
process of another environment (``python -m accelbench worker``, A/B and ``--isolate``) and a Dask worker
of another machine (fleets). The orchestrator never imports the code under test; it sends specs.
The full wire description, with examples, is docs/worker-protocol.md.

A spec (``PROTOCOL`` 1) is a JSON object:

  protocol      1
  suite         {"file": path of the suite as the user named it, "text": the suite's YAML,
                 "dir": the folder relative paths in the suite resolve against}
  case_id       the case's identity (accelbench.identity.CaseKey.id), backend included
  run_id        the run the record belongs to
  quick         bool: the --quick timing policy
  counters      bool: sample NVML/psutil counters while the case runs
  rounds        optional int (default 1): measure with 1/rounds of the case's sampling budget, as one
                round of an interleaved A/B (``interleave.round_policy``)
  clock         optional "wall" (default) or "cpu": CPU cases timed in this process's CPU seconds
                (measure.timing.CPU_TIMERS), immune to other processes' preemption

The answer is the case record as ``results.CaseRecord.model_dump(mode="json")`` plus ``contention``: the
CPU time other processes took while the case ran (see :func:`contention`); a spec that cannot be served
(bad protocol, a suite that does not load here, an unknown case) raises ``WorkerError``.

The stream (``python -m accelbench worker``): JSON lines on stdin and stdout, one message per line, each
an object with a ``type``. The worker speaks first:

  worker -> {"type": "hello", "protocol": 1, "accelbench": VERSION, "python": "3.11.9", "executable": ...}
  parent -> {"type": "case", ...a spec...}      worker -> {"type": "started", "case_id": ...}
                                                worker -> {"type": "record", "record": {...}}
  parent -> {"type": "load", "suite": {...}, "backends": ["cpu"] | null, "filter": TEXT | null}
                                                worker -> {"type": "loaded", "suite": {...}, "cases": [...]}
  parent -> {"type": "fingerprint"}             worker -> {"type": "fingerprint", "environment": {...}}
  parent -> {"type": "open", ...a spec..., "seed": N}
                                                worker -> {"type": "opened", "record": {...}, "loops": L,
                                                           "method": ..., "budget": {...}}
  parent -> {"type": "sample", "loops": L, "n": 1}
                                                worker -> {"type": "samples", "samples_s": [...]}
  parent -> {"type": "close"}                   worker -> {"type": "closed", "contention": {...}}
  parent -> {"type": "bye"} (or end of stdin)   the worker exits 0
  any request it cannot serve                   worker -> {"type": "error", "message": "one line"}

open / sample / close (feature "paired", listed in the hello's ``features``) let a parent alternate the
samples of one CPU case between two workers, one sample at a time, so that whatever the machine does
hits both sides of a pair within a millisecond of each other (accelbench.ab); ``open`` validates the case
first and answers ``loops: null`` with the failed record when it does not validate.

Only protocol lines reach the worker's stdout: file descriptor 1 is pointed at stderr before anything
is imported (so a workload's print, or a C library's printf, lands in the log), and the protocol writes
to a private copy of the original descriptor.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import __version__
from .errors import AccelbenchError
from .measure.contention import contention, cpu_snapshot

if TYPE_CHECKING:
    from .measure.timing import CpuTimer

PROTOCOL = 1
# Requests beyond protocol 1's first version, announced in the hello (an older worker lists none, and its
# parent then sends each case as one request): "paired" = open / sample / close.
FEATURES = ("paired",)
CPUS_ENV = "ACCELBENCH_WORKER_CPUS"  # the parent's CPU pinning for this worker (see pin_from_env)


class WorkerError(AccelbenchError):
    """A spec this worker cannot serve (its message says why)."""


@dataclass(frozen=True)
class SuiteRef:
    """What a spec needs of a suite (its file name and text) when the orchestrator cannot load the suite
    itself: the workloads may exist only in the worker's environment (a plugin under test)."""

    file: str
    text: str


def case_spec(suite: Any, case_id: str, run_id: str, quick: bool = False, counters: bool = True,
              rounds: int = 1, clock: str = "wall") -> dict[str, Any]:
    """The spec that asks a worker to measure ``case_id`` of ``suite`` (a suite.Suite or a SuiteRef)."""
    spec = {
        "protocol": PROTOCOL,
        "suite": suite_payload(suite),
        "case_id": case_id,
        "run_id": run_id,
        "quick": bool(quick),
        "counters": bool(counters),
    }
    if rounds != 1:
        spec["rounds"] = int(rounds)
    if clock != "wall":
        spec["clock"] = clock
    return spec


def suite_payload(suite: Any) -> dict[str, str]:
    return {"file": suite.file, "text": suite.text, "dir": str(Path(suite.file).resolve().parent)}


@functools.lru_cache(maxsize=4)
def _parse(text: str, file: str, folder: str) -> Any:
    from . import suite as suite_mod

    return suite_mod.parse(text, file, Path(folder))


def _suite_of(payload: Any) -> Any:
    if not isinstance(payload, dict) or not all(isinstance(payload.get(k), str) for k in ("file", "text", "dir")):
        raise WorkerError("the message's suite is not {file, text, dir}")
    return _parse(payload["text"], payload["file"], payload["dir"])


# ---------------------------------------------------------------- one spec


def _resolve(spec: dict[str, Any]) -> tuple[Any, str, Any, type[CpuTimer], int, bool]:
    """(case, backend name, backend, CPU timer class, rounds, quick) of a spec; WorkerError when it
    cannot be served here."""
    from . import backends
    from .measure.timing import CPU_TIMERS

    if not isinstance(spec, dict) or spec.get("protocol") != PROTOCOL:
        got = spec.get("protocol") if isinstance(spec, dict) else type(spec).__name__
        raise WorkerError(f"worker protocol {got!r} is not the one this accelbench speaks ({PROTOCOL})")
    s = spec["suite"]
    suite = _suite_of(s)
    want = spec["case_id"]
    timer = CPU_TIMERS.get(str(spec.get("clock", "wall")))
    if timer is None:
        raise WorkerError(f"clock {spec.get('clock')!r}: this worker knows {', '.join(CPU_TIMERS)}")
    for case in suite.cases:
        for b in case.backends:
            if case.case_id(b) == want:
                return case, b, backends.get(b), timer, int(spec.get("rounds") or 1), bool(spec.get("quick"))
    raise WorkerError(f"{s['file']}: no case {want!r} in this suite")


def measure_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one spec in this process with the runner's own code; the record as plain JSON."""
    from .measure.counters import CounterSampler
    from .runner import measure_case, skipped_record, unavailable_reason

    case, b, be, timer, rounds, quick = _resolve(spec)
    if not be.available:
        return skipped_record(case, b, spec["run_id"], unavailable_reason(b, be)).model_dump(mode="json")
    measured, mquick = case, quick
    if rounds > 1:
        from .interleave import round_policy

        measured, mquick = round_policy(case, rounds, quick), False
    sampler = CounterSampler(enabled=bool(spec.get("counters", True)))
    sampler.start()
    t0 = cpu_snapshot()
    try:
        rec = measure_case(measured, be, spec["run_id"], quick=mquick, sampler=sampler, cpu_timer=timer)
    finally:
        t1 = cpu_snapshot()
        sampler.stop()
    if rounds > 1:  # the record names the case as the whole run measures it, not one round
        rec.definition_hash = case.definition_hash(case.timing.quick() if quick else None)
    rec.contention = contention(t0, t1, os.cpu_count())
    return rec.model_dump(mode="json")


# ---------------------------------------------------------------- paired sampling (open / sample / close)


@dataclass
class _Open:
    side: Any  # interleave.RoundSide
    wall_s: float = 0.0
    busy_s: float = 0.0
    own_s: float = 0.0


_OPEN: dict[str, _Open] = {}  # at most one case held open by this worker, under the key "case"


def open_case(spec: dict[str, Any]) -> dict[str, Any]:
    """``open``: validate a CPU case with the runner's own code (a 3-sample record, as the in-process
    interleave does), then set it up afresh and calibrate it; the case stays open for ``sample`` requests
    until ``close``. The answer: the validated record, the calibrated loop count and the round's budget
    (interleave.RoundBudget); ``loops`` is null when the case did not validate (the record says why)."""
    import random
    from dataclasses import asdict, replace

    from .interleave import RoundBudget, RoundSide, validation_policy
    from .runner import measure_case, skipped_record, unavailable_reason

    close_case()
    case, b, be, timer, rounds, quick = _resolve(spec)
    if b != "cpu":
        raise WorkerError(f"{spec['case_id']}: paired sampling is for CPU cases; send the case as one request")
    if not be.available:
        rec = skipped_record(case, b, spec["run_id"], unavailable_reason(b, be))
        return {"type": "opened", "record": rec.model_dump(mode="json"), "loops": None}
    policy = case.timing.quick() if quick else case.timing
    rec = measure_case(replace(case, timing=validation_policy(policy)), be, spec["run_id"], cpu_timer=timer)
    rec.definition_hash = case.definition_hash(case.timing.quick() if quick else None)
    if rec.status != "ok":
        return {"type": "opened", "record": rec.model_dump(mode="json"), "loops": None}
    side = RoundSide(case, be, random.Random(spec.get("seed")), timer())
    try:
        side.setup()
        loops = side.calibrate(policy, rounds)
    except Exception as e:  # a failure after validation passed: the case's error, the worker goes on
        side.close()
        rec.status, rec.timing, rec.message = "error", None, f"paired set-up: {type(e).__name__}: {e}"
        return {"type": "opened", "record": rec.model_dump(mode="json"), "loops": None}
    _OPEN["case"] = _Open(side)
    return {"type": "opened", "record": rec.model_dump(mode="json"), "loops": loops, "method": timer.method,
            "budget": asdict(RoundBudget.of([policy], rounds))}


def sample_case(msg: dict[str, Any]) -> dict[str, Any]:
    """``sample``: ``n`` (default 1) samples of ``loops`` operations of the open case, seconds per
    operation; the CPU others took meanwhile is added to the case's contention."""
    held = _OPEN.get("case")
    if held is None:
        raise WorkerError("no case is open: send open first")
    loops, n = int(msg["loops"]), int(msg.get("n", 1))
    if loops < 1 or not 1 <= n <= 10_000:
        raise WorkerError(f"sample: loops {loops} and n {n} must be positive (n at most 10000)")
    a = cpu_snapshot()
    try:
        xs = [held.side.sample(loops) for _ in range(n)]
    except Exception as e:
        close_case()
        raise WorkerError(f"sampling: {type(e).__name__}: {e}") from None
    z = cpu_snapshot()
    held.wall_s += z[0] - a[0]
    held.busy_s += z[1] - a[1]
    held.own_s += z[2] - a[2]
    return {"type": "samples", "samples_s": xs}


def close_case() -> dict[str, Any]:
    """``close``: tear the open case down; the answer carries the contention over its samples."""
    held = _OPEN.pop("case", None)
    if held is None:
        return {"type": "closed", "contention": None}
    held.side.close()
    return {"type": "closed",
            "contention": contention((0.0, 0.0, 0.0), (held.wall_s, held.busy_s, held.own_s), os.cpu_count())}


def load_cases(msg: dict[str, Any]) -> dict[str, Any]:
    """The ``load`` request: the suite as this environment loads it, and the cases it selects, each with
    the skeleton record (``runner.skipped_record``) a parent fills in when the case's worker dies."""
    from .runner import skipped_record

    suite = _suite_of(msg.get("suite"))
    pairs = suite.select(msg.get("backends"), msg.get("filter"))
    cases = []
    for case, b in pairs:
        timing = case.timing.quick() if msg.get("quick") else case.timing
        cases.append({"case_id": case.case_id(b), "name": case.name, "backend": b, "timeout_s": timing.timeout_s,
                      "skeleton": skipped_record(case, b, "", "").model_dump(mode="json")})
    return {"type": "loaded", "cases": cases,
            "suite": {"name": suite.name, "file": suite.file, "sha256": suite.sha256,
                      "description": suite.description}}


def hello() -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"type": "hello", "protocol": PROTOCOL, "accelbench": __version__,
            "python": platform.python_version(), "executable": sys.executable, "pid": os.getpid(),
            "features": list(FEATURES), "cpus": cpus}


def parse_cpus(text: str) -> set[int]:
    """``"0"``, ``"0,2"``, ``"0-3,6"`` -> the set of CPU numbers; ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        a, b = int(lo), int(hi) if hi else int(lo)
        if a < 0 or b < a:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(a, b + 1))
    if not cpus:
        raise ValueError("no CPU given")
    return cpus


def pin_from_env() -> None:
    """Pin every thread of this worker to the CPUs named by ``ACCELBENCH_WORKER_CPUS`` (set by a parent
    that wants both sides of an A/B on the same CPU: accelbench.ab ``--affinity``). Every thread, because
    a BLAS library may have started its pool when NumPy was imported, before this runs."""
    text = os.environ.get(CPUS_ENV)
    if not text or not hasattr(os, "sched_setaffinity"):
        return
    cpus = parse_cpus(text)
    tids = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


def handle(msg: Any) -> dict[str, Any] | None:
    """One request of the stream -> its answer (None: stop). Errors a request can cause become
    ``{"type": "error"}`` answers; the worker goes on."""
    if not isinstance(msg, dict):
        return {"type": "error", "message": f"a message must be a JSON object, not {type(msg).__name__}"}
    kind = msg.get("type", "case")
    try:
        if kind == "bye":
            return None
        if kind == "case":
            return {"type": "record", "record": measure_spec({k: v for k, v in msg.items() if k != "type"})}
        if kind == "load":
            return load_cases(msg)
        if kind == "open":
            return open_case({k: v for k, v in msg.items() if k != "type"})
        if kind == "sample":
            return sample_case(msg)
        if kind == "close":
            return close_case()
        if kind == "fingerprint":
            from . import environment

            return {"type": "fingerprint", "environment": environment.fingerprint(with_gpu=True)}
        return {"type": "error", "message": f"unknown message type {kind!r}"}
    except AccelbenchError as e:
        return {"type": "error", "message": str(e)}
    except (KeyError, TypeError, ValueError) as e:
        return {"type": "error", "message": f"malformed {kind} message: {type(e).__name__}: {e}"}


def _protocol_stream() -> IO[str]:
    """A private copy of stdout for protocol lines; fd 1 (and sys.stdout) then go to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)


def serve(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """The worker loop: hello, then one answer per request line until ``bye`` or end of input."""
    import faulthandler

    out = stdout if stdout is not None else _protocol_stream()
    if stdout is None:  # a worker process: a segfault leaves the Python stack in the stderr tail
        faulthandler.enable()
        pin_from_env()
    inp = stdin if stdin is not None else sys.stdin

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, default=str, allow_nan=True) + "\n")
        out.flush()

    send(hello())
    for line in inp:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as e:
            send({"type": "error", "message": f"not JSON: {e}"})
            continue
        if isinstance(msg, dict) and msg.get("type", "case") == "case":
            send({"type": "started", "case_id": msg.get("case_id")})
        reply = handle(msg)
        if reply is None:
            break
        send(reply)
    return 0

"""Cases measured in spawned worker processes: isolation that holds for native code.

A :class:`WorkerProcess` is ``PYTHON -m accelbench worker`` started with ``subprocess`` (spawned, never
forked: a CUDA context does not survive ``fork``) speaking the JSON-lines protocol of accelbench.worker.
The parent enforces each case's deadline itself, from outside: a case stuck inside a C call, where the
worker's own SIGALRM deadline cannot interrupt it, is killed when ``timeout_s`` plus a grace period has
passed. A case that segfaults, calls ``os._exit``, or is OOM-killed ends its worker, not the run: the
case is recorded as ``error`` with the worker's exit status (or signal) and the tail of its stderr, and
the next case gets a fresh worker.

``accelbench run --isolate`` measures every case this way (:class:`IsolatedExecutor`, chosen in
runner.run_suite); accelbench.ab drives two environments' workers with the same class.

What isolation costs (measured with benchmarks/isolate_overhead.py, docs/worker-protocol.md): one worker
start per run (importing accelbench with NumPy, SciPy and pandas: 1-3 s on a loaded 2-core machine) and
a few milliseconds per case for the JSON round trip; the timings themselves are taken by the same code.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from . import __version__
from .results import CaseRecord
from .worker import PROTOCOL, WorkerError, case_spec

# The parent's deadline for a case is its timeout_s plus this grace (the worker's own SIGALRM deadline
# fires first for Python code; the parent's catches a hang inside a C call): GRACE_S, and a tenth of the
# timeout on top, for the spec's suite parse and a slow machine.
GRACE_S = 5.0
GRACE_FRACTION = 0.1
HELLO_TIMEOUT_S = 180.0  # starting Python and importing accelbench on a heavily loaded machine
TAIL_LINES = 30  # lines of the worker's stderr kept for the record of a lost case


class WorkerLost(Exception):
    """The worker died, or was killed at its deadline, while serving a request."""

    def __init__(self, reason: str, tail: str) -> None:
        super().__init__(reason)
        self.reason, self.tail = reason, tail


def describe_exit(returncode: int | None) -> str:
    """'exit status 3', 'killed by SIGSEGV', ... for a worker's return code (negative: a signal)."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
        return f"killed by {name}{why}"
    return f"exit status {returncode}"


def clean_env(extra_path: str | None = None) -> dict[str, str]:
    """The environment for a worker of *another* Python environment: without PYTHONPATH/PYTHONHOME, so
    it imports its own accelbench and its own code under test, not ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    if extra_path:
        env["PYTHONPATH"] = extra_path
    return env


class WorkerProcess:
    """One ``python -m accelbench worker`` child; see the module docstring."""

    def __init__(self, python: str, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 name: str = "worker") -> None:
        self.python, self.env, self.cwd, self.name = python, env, cwd, name
        self.proc: subprocess.Popen[str] | None = None
        self.hello: dict[str, Any] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    # ---- life cycle
    def start(self, timeout_s: float = HELLO_TIMEOUT_S) -> dict[str, Any]:
        """Spawn the worker and read its hello; WorkerError (one line) when it is not a compatible worker."""
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "accelbench", "worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
                env=self.env, cwd=self.cwd, close_fds=True)
        except OSError as e:
            raise WorkerError(f"{self.name}: cannot start {self.python}: {e.strerror or e}") from None
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        try:
            msg = self._read(timeout_s, want="hello")
        except WorkerLost as e:
            last = e.tail.strip().splitlines()[-1] if e.tail.strip() else ""
            raise WorkerError(f"{self.name}: {self.python} -m accelbench worker did not start ({e.reason})"
                              + (f": {last}" if last else "")) from None
        self.hello = msg
        check_hello(msg, self.name)
        return msg

    def close(self) -> None:
        p = self.proc
        if p is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if p.poll() is None and p.stdin is not None:
                p.stdin.write('{"type": "bye"}\n')
                p.stdin.flush()
                p.stdin.close()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def stderr_tail(self) -> str:
        return "".join(self._tail)

    # ---- requests
    def request(self, msg: dict[str, Any], timeout_s: float, want: str) -> dict[str, Any]:
        """Send one request and wait for the answer of type ``want`` (or ``error``: WorkerError). A worker
        that dies, or does not answer within ``timeout_s`` (it is then killed), raises WorkerLost."""
        p = self.proc
        if p is None or p.stdin is None:
            raise WorkerLost("worker not running", self.stderr_tail)
        try:
            p.stdin.write(json.dumps(msg, default=str) + "\n")
            p.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the read below reports how it ended
        return self._read(timeout_s, want)

    def _read(self, timeout_s: float, want: str) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            try:
                if left <= 0:
                    raise queue.Empty
                line = self._lines.get(timeout=left)
            except queue.Empty:
                self.kill()
                raise WorkerLost(f"timeout: no answer within {timeout_s:.3g} s (the case's timeout_s and a "
                                 "grace period); the worker was killed",
                                 self._settled_tail()) from None
            if line is None:  # end of the worker's stdout: it exited
                assert self.proc is not None
                rc: int | None
                try:
                    rc = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill()
                    rc = self.proc.returncode if self.proc else None
                raise WorkerLost(f"worker {describe_exit(rc)}", self._settled_tail())
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                self._tail.append(f"[non-protocol line on stdout] {line}")
                continue
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == want:
                return dict(msg)
            if kind == "error":
                raise WorkerError(f"{self.name}: {msg.get('message')}")
            # "started" and anything unknown to this side: informational

    def _settled_tail(self) -> str:
        time.sleep(0.05)  # let the stderr thread take the last lines the dead worker wrote
        return self.stderr_tail

    @staticmethod
    def _pump(stream: IO[str], q: queue.Queue[str | None]) -> None:
        try:
            for line in stream:
                q.put(line)
        finally:
            q.put(None)

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._tail.append(line)


def deadline_s(timeout_s: float) -> float:
    """How long the parent waits for a case's record before it kills the worker."""
    return timeout_s + GRACE_S + GRACE_FRACTION * timeout_s


def check_hello(msg: dict[str, Any], where: str) -> None:
    """Refuse a worker that speaks another protocol, in one line naming both sides."""
    if msg.get("protocol") != PROTOCOL:
        raise WorkerError(f"{where}: its accelbench {msg.get('accelbench')} speaks worker protocol "
                          f"{msg.get('protocol')!r}, this accelbench {__version__} speaks {PROTOCOL}; install "
                          "matching versions")


def short_tail(text: str, lines: int = TAIL_LINES, width: int = 200) -> str:
    """The last ``lines`` lines of a worker's stderr, each cut to ``width``; faulthandler's list of loaded
    extension modules (one very long line) is left out."""
    keep = [ln[:width] for ln in text.rstrip().splitlines() if not ln.startswith("Extension modules:")]
    return "\n".join(keep[-lines:]).strip()


def lost_record(skeleton: dict[str, Any], run_id: str, e: WorkerLost) -> CaseRecord:
    """The record of a case whose worker was lost: error, the exit status and the tail of stderr."""
    rec = CaseRecord.model_validate(skeleton)
    rec.run_id, rec.status = run_id, "error"
    tail = short_tail(e.tail)
    rec.message = e.reason + (f"; stderr tail:\n{tail}" if tail else "")
    return rec


class WorkerPool:
    """One worker at a time that is replaced when it is lost (a crash ends the worker, not the run)."""

    def __init__(self, python: str, env: dict[str, str] | None = None, name: str = "worker") -> None:
        self.python, self.env, self.name = python, env, name
        self.worker: WorkerProcess | None = None
        self.starts = 0

    def get(self) -> WorkerProcess:
        if self.worker is None or not self.worker.alive:
            self.worker = WorkerProcess(self.python, self.env, name=self.name)
            self.starts += 1
            self.worker.start()
        return self.worker

    def measure(self, spec: dict[str, Any], skeleton: dict[str, Any], timeout_s: float) -> CaseRecord:
        """One case: its record, or the record of the lost worker (which is then replaced next time)."""
        w = self.get()
        try:
            reply = w.request({"type": "case", **spec}, deadline_s(timeout_s), want="record")
        except WorkerLost as e:
            w.close()
            self.worker = None
            return lost_record(skeleton, spec["run_id"], e)
        return CaseRecord.model_validate(reply["record"])

    def drop(self) -> None:
        """Forget a lost worker (killed or exited); the next request starts a fresh one."""
        if self.worker is not None:
            self.worker.close()
        self.worker = None

    def close(self) -> None:
        self.drop()


class IsolatedExecutor:
    """``run --isolate``: each case of ``suite`` measured in a worker process of ``python``."""

    def __init__(self, suite: Any, quick: bool = False, counters: bool = True, python: str | None = None) -> None:
        self.suite, self.quick, self.counters = suite, quick, counters
        # the same interpreter and environment (PYTHONPATH included): the worker runs this accelbench
        self.pool = WorkerPool(python or sys.executable, name="isolated worker")

    def measure(self, case: Any, backend: str, run_id: str) -> CaseRecord:
        from .runner import skipped_record

        spec = case_spec(self.suite, case.case_id(backend), run_id, self.quick, self.counters)
        policy = case.timing.quick() if self.quick else case.timing
        skeleton = skipped_record(case, backend, run_id, "").model_dump(mode="json")
        return self.pool.measure(spec, skeleton, policy.timeout_s)

    def close(self) -> None:
        self.pool.close()

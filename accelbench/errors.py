"""Typed errors a user can cause. Only ``cli.py`` turns them into messages and exit codes.

Exit codes (documented in README.md):
  0  every case ran (and validated)
  1  some case failed, errored or failed validation; or ``gate`` found a regression
  2  usage error: bad suite, bad path, bad option, bad input file
  3  the requested backend is unavailable (e.g. ``--backend gpu`` on a machine without a usable GPU)
 130 interrupted (Ctrl-C, SIGINT); finished cases are kept, the run is closed as "interrupted"
 143 terminated (SIGTERM: CI cancellation, ``timeout``); handled like Ctrl-C
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process killed by it


class AccelbenchError(Exception):
    """Base of every error the user can cause; carries its exit code."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(AccelbenchError):
    """A bad option, path or argument."""


class SuiteError(AccelbenchError):
    """A suite file that cannot be loaded or validated. Message is ``file:line:col: what``."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None, col: int | None = None):
        self.file, self.line, self.col = file, line, col
        where = ""
        if file:
            where = file
            if line is not None:
                where += f":{line}"
                if col is not None:
                    where += f":{col}"
            where += ": "
        super().__init__(where + message)
        self.detail = message


class ModelError(AccelbenchError):
    """A model file (ONNX) that cannot be loaded, checked or run as asked. Message is ``file: what``."""

    def __init__(self, message: str, file: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)
        self.detail = message


class ResultsError(AccelbenchError):
    """A results path or file that cannot be read."""


class WriteError(AccelbenchError):
    """A result file that could not be written (full disk, quota, I/O error): ``path: cannot write: why``.
    What was written before it is intact; the run is closed as interrupted where that is still possible."""


class BackendUnavailable(AccelbenchError):
    """The requested backend cannot run on this machine (reason says why)."""

    exit_code = EXIT_UNAVAILABLE


class WorkloadError(Exception):
    """Raised inside a workload for a case-level problem (recorded as the case's error, the run goes on)."""


class ValidationFailed(Exception):
    """A workload's output does not match its float64 reference."""

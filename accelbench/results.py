"""Run and case records, the on-disk format, loading into pandas.

A run directory ``results/<run-id>/`` holds:
  run.json      one RunRecord (written at start, replaced atomically at the end)
  cases.jsonl   one CaseRecord per line, appended and flushed (fsync) as each case finishes

Format history (bump SCHEMA_VERSION on any incompatible change, and note it here):
  1  (accelbench 0.1.0) first format.

Units: every time is in seconds (fields end in ``_s`` or live under a ``unit: "s"`` timing block),
bytes in bytes, flops in floating-point operations, throughput fields name their unit (gflops = 1e9
flop/s, gbps = 1e9 bytes/s, items_per_s).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ResultsError
from .identity import CaseKey

if TYPE_CHECKING:  # pandas costs a second to import, and a worker process never needs it
    import pandas as pd

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
CASES_FILE = "cases.jsonl"

Status = Literal["ok", "failed", "skipped", "error"]


class _Rec(BaseModel):
    model_config = ConfigDict(extra="allow")


class Timing(_Rec):
    """One timing mode's samples. ``samples_s`` are per-operation seconds (a sample's time divided by its
    inner loop count / batch size)."""

    method: str  # "cpu-perf_counter", "cuda-events", "cuda-events-cold", "cuda-events-batch", "cuda-graph"
    unit: Literal["s"] = "s"
    samples_s: list[float]
    inner_loops: int = 1  # operations per sample
    warmup: int = 0  # untimed runs before the first sample
    stop_reason: str = ""  # "rel_ci<target", "max_time", "max_samples", "timeout", "custom"
    total_time_s: float = 0.0  # wall time spent sampling (not counting warm-up)
    summary: dict[str, float] = Field(default_factory=dict)  # measure.stats.Summary as dict (seconds)
    clock_resolution_s: float | None = None
    cpu_launch_s: list[float] | None = None  # host-side time per sample (GPU only)
    notes: list[str] = Field(default_factory=list)


class CaseRecord(_Rec):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    case_id: str  # stable across runs: suite/workload/params/backend (no run id)
    suite: str
    workload: str
    family: str = ""
    name: str  # display name, e.g. "gemm m=1024 n=1024 k=1024 dtype=float32"
    label: str | None = None  # the suite entry's label (part of the identity)
    params: dict[str, Any]
    backend: Literal["gpu", "cpu"]
    status: Status
    message: str = ""
    definition_hash: str = ""  # hash of workload + params + timing options: a changed definition shows
    timing: Timing | None = None  # the headline timing
    timings: dict[str, Timing] = Field(default_factory=dict)  # other modes: "batch", "graph", "cold", ...
    work: dict[str, Any] = Field(default_factory=dict)  # flops, bytes, items, item_unit (per operation)
    throughput: dict[str, float] = Field(default_factory=dict)  # gflops, gbps, items_per_s (at median)
    validation: dict[str, Any] = Field(default_factory=dict)  # passed, rel_error, tolerance, reference
    variant: dict[str, Any] = Field(default_factory=dict)  # what actually ran (e.g. math mode, library)
    counters: dict[str, Any] = Field(default_factory=dict)  # NVML / GPM / psutil summaries
    metrics: dict[str, Any] = Field(default_factory=dict)  # custom workloads' metrics (unit in the key)
    thresholds: dict[str, float] = Field(default_factory=dict)  # per-workload gate thresholds from the suite
    started_at: str = ""
    duration_s: float = 0.0

    @property
    def key(self) -> CaseKey:
        """The case's identity (accelbench.identity), from the stored id: the one definition."""
        return CaseKey.parse(self.case_id)


class RunRecord(_Rec):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    suite: str
    suite_file: str = ""
    suite_sha256: str = ""
    description: str = ""
    started_at: str
    finished_at: str | None = None
    status: Literal["running", "finished", "interrupted"] = "running"
    accelbench_version: str = ""
    git: dict[str, Any] = Field(default_factory=dict)  # commit, dirty (of the working directory)
    argv: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)  # environment.fingerprint()
    counts: dict[str, int] = Field(default_factory=dict)  # cases per status


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id(root: Path) -> str:
    """Sortable by time, never reused: UTC timestamp to the millisecond plus a counter if taken."""
    base = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    rid, i = base, 1
    while (root / rid).exists():
        rid = f"{base}-{i}"
        i += 1
    return rid


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _dumps(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), allow_nan=True, separators=(",", ":"))


class RunWriter:
    """Owns one run directory. run.json is replaced atomically; cases.jsonl is appended and fsynced per
    case so a run killed half-way keeps every finished case."""

    def __init__(self, root: Path, run: RunRecord) -> None:
        self.dir = root / run.run_id
        self.dir.mkdir(parents=True, exist_ok=False)
        self.run = run
        self._cases = open(self.dir / CASES_FILE, "a", encoding="utf-8")  # noqa: SIM115 (held for the run)
        self.write_run()

    def write_run(self) -> None:
        atomic_write_text(self.dir / RUN_FILE, json.dumps(self.run.model_dump(mode="json"), indent=2) + "\n")

    def append(self, case: CaseRecord) -> None:
        self._cases.write(_dumps(case) + "\n")
        self._cases.flush()
        os.fsync(self._cases.fileno())

    def close(self, status: Literal["finished", "interrupted"], counts: dict[str, int]) -> None:
        self.run.finished_at = now_iso()
        self.run.status = status
        self.run.counts = counts
        self.write_run()
        self._cases.close()


# ---------------------------------------------------------------- reading


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory, its run.json / cases.jsonl, or a results root (its newest run)."""
    p = Path(path)
    if not p.exists():
        raise ResultsError(f"{p}: no such file or directory")
    if p.is_file():
        if p.name in (RUN_FILE, CASES_FILE):
            return p.parent
        raise ResultsError(f"{p}: not a run directory, run.json or cases.jsonl")
    if (p / CASES_FILE).exists() or (p / RUN_FILE).exists():
        return p
    runs = sorted(d for d in p.iterdir() if d.is_dir() and (d / RUN_FILE).exists())
    if runs:
        return runs[-1]
    raise ResultsError(f"{p}: holds no run (no {RUN_FILE} or {CASES_FILE})")


def read_run(path: str | Path) -> tuple[RunRecord, list[CaseRecord]]:
    d = resolve_run_dir(path)
    rf = d / RUN_FILE
    try:
        raw = json.loads(rf.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{rf}: missing") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{rf}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    _check_version(raw, rf)
    try:
        run = RunRecord.model_validate(raw)
    except ValidationError as e:
        raise ResultsError(f"{rf}: not a run record: {_first_error(e)}") from None
    cases: list[CaseRecord] = []
    cf = d / CASES_FILE
    if cf.exists():
        with open(cf, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    if i > 1 and not line.endswith("\n"):
                        break  # a torn last line from a killed run: everything before it stands
                    raise ResultsError(f"{cf}:{i}:{e.colno}: invalid JSON: {e.msg}") from None
                _check_version(obj, cf, i)
                try:
                    cases.append(CaseRecord.model_validate(obj))
                except ValidationError as e:
                    raise ResultsError(f"{cf}:{i}: not a case record: {_first_error(e)}") from None
    return run, cases


def _check_version(obj: Any, f: Path, line: int | None = None) -> None:
    v = obj.get("schema_version") if isinstance(obj, dict) else None
    where = f"{f}:{line}" if line else str(f)
    if v is None:
        raise ResultsError(f"{where}: no schema_version: not an accelbench result")
    if not isinstance(v, int) or v > SCHEMA_VERSION:
        raise ResultsError(f"{where}: schema_version {v} is newer than this accelbench reads ({SCHEMA_VERSION})")


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"{loc}: {err['msg']}"


SUMMARY_FIELDS = ("n", "median", "mean", "min", "max", "stdev", "q1", "q3", "iqr", "cv", "ci_low", "ci_high")


def case_row(run: RunRecord, c: CaseRecord) -> dict[str, Any]:
    """Flatten one case to a DataFrame row. Time columns end in ``_s``."""
    s = c.timing.summary if c.timing else {}
    row: dict[str, Any] = {
        "run_id": c.run_id,
        "suite": c.suite,
        "case_id": c.case_id,
        "workload": c.workload,
        "family": c.family,
        "name": c.name,
        "backend": c.backend,
        "status": c.status,
        "message": c.message,
        "started_at": c.started_at,
        "duration_s": c.duration_s,
        "params": c.params,
        "method": c.timing.method if c.timing else None,
        "stop_reason": c.timing.stop_reason if c.timing else None,
        "samples_s": list(c.timing.samples_s) if c.timing else [],
    }
    for k in SUMMARY_FIELDS:
        key = "n_samples" if k == "n" else ("cv" if k == "cv" else f"{k}_s")
        row[key] = s.get(k)
    row["flops"] = c.work.get("flops")
    row["bytes"] = c.work.get("bytes")
    row["items"] = c.work.get("items")
    row["item_unit"] = c.work.get("item_unit")
    row["gflops"] = c.throughput.get("gflops")
    row["gbps"] = c.throughput.get("gbps")
    row["items_per_s"] = c.throughput.get("items_per_s")
    row["valid"] = c.validation.get("passed")
    row["rel_error"] = c.validation.get("rel_error")
    for k, v in c.params.items():
        row[f"param.{k}"] = v
    for k, v in c.metrics.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            row[f"metric.{k}"] = v
    for mode, t in c.timings.items():
        row[f"{mode}_median_s"] = t.summary.get("median")
    row["gpu_name"] = (run.environment.get("gpu") or {}).get("name") if isinstance(run.environment.get("gpu"), dict) else None
    row["record"] = c.model_dump(mode="json")
    return row


def load(path: str | Path) -> pd.DataFrame:
    """Load a run (directory, run.json or cases.jsonl) as a DataFrame, one row per case."""
    import pandas as pd

    run, cases = read_run(path)
    rows = [case_row(run, c) for c in cases]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["run_id", "suite", "case_id", "workload", "name", "backend", "status"])
    df.attrs["run"] = run.model_dump(mode="json")
    return df

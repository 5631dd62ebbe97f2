"""Run and case records, the on-disk format, loading into pandas.

A run directory ``results/<run-id>/`` holds:
  run.json      one RunRecord (written at start, replaced atomically at the end)
  cases.jsonl   one CaseRecord per line, appended and flushed (fsync) as each case finishes

Format history (bump SCHEMA_VERSION on any incompatible change, and note it here):
  1  (accelbench 0.1.0) first format.
  2  case records carry ``label`` (the suite entry's label, part of the identity) as a field; a timing
     declares ``rounds`` and ``pairs`` (interleaved runs) and its ``summary`` is a declared model
     (TimingSummary). Version 1 files are still read: a missing ``label`` comes from ``case_id``.

Units: every time is in seconds (fields end in ``_s`` or live under a ``unit: "s"`` timing block),
bytes in bytes, flops in floating-point operations, throughput fields name their unit (gflops = 1e9
flop/s, gbps = 1e9 bytes/s, items_per_s).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, overload

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from .errors import ResultsError, WriteError
from .identity import CaseKey
from .measure.stats import summarize

if TYPE_CHECKING:  # pandas costs a second to import, and a worker process never needs it
    import pandas as pd

SCHEMA_VERSION = 2
RUN_FILE = "run.json"
CASES_FILE = "cases.jsonl"

Status = Literal["ok", "failed", "skipped", "error"]


class _Rec(BaseModel):
    model_config = ConfigDict(extra="allow")


class TimingSummary(_Rec):
    """:class:`accelbench.measure.stats.Summary` as stored (seconds, except ``n``, the fractions ``cv`` and
    ``rel_ci_halfwidth`` and ``ci_level``). A field is None when its source did not give it (an import
    that carried only some statistics)."""

    n: int = 0
    median: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    stdev: float | None = None
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None
    cv: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float | None = None
    rel_ci_halfwidth: float | None = None

    @classmethod
    def of(cls, samples: Sequence[float]) -> TimingSummary:
        """The summary of ``samples`` (seconds), by measure.stats.summarize."""
        return cls.model_validate(summarize(samples).to_dict())


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
    summary: TimingSummary = Field(default_factory=TimingSummary)
    clock_resolution_s: float | None = None
    cpu_launch_s: list[float] | None = None  # host-side time per sample (GPU only)
    notes: list[str] = Field(default_factory=list)
    # interleaved runs (accelbench.interleave): each sample's round, and on the CPU its pair (the two
    # sides' samples with the same pair number were timed back to back); None otherwise
    rounds: list[int] | None = None
    pairs: list[int] | None = None


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
    # the CPU other processes took while it ran (accelbench.measure.contention; A/B rounds keep a list per
    # round) and which worker measured it (a fleet's worker name, host, fingerprint)
    contention: dict[str, Any] | None = None
    worker: dict[str, Any] | None = None

    @property
    def key(self) -> CaseKey:
        """The case's identity (accelbench.identity), from the fields that hold it (suite, workload, label,
        params, backend); records written before ``label`` existed get it on read (:func:`read_run`)."""
        return CaseKey.of(self.suite, self.workload, self.label, self.params, self.backend)


_LEAN = ConfigDict(extra="ignore")  # the fields not declared are skipped by the JSON parser, never built


def _packed(v: Sequence[float]) -> array[float]:
    return array("d", v)


# Floats validated as a list, kept as a packed array('d') (a sequence of floats that numpy reads as a buffer)
PackedFloats = Annotated[Sequence[float], AfterValidator(_packed)]


@pydantic_dataclass(slots=True, config=_LEAN)
class SummaryCore:
    """The fields of a :class:`TimingSummary` that compare reads (a record without raw samples)."""

    n: int = 0
    median: float | None = None
    mean: float | None = None
    min: float | None = None
    stdev: float | None = None
    iqr: float | None = None


@pydantic_dataclass(slots=True, config=_LEAN)
class TimingCore:
    """The fields of a :class:`Timing` that compare reads (``read_cases(..., CaseCore)``)."""

    method: str
    samples_s: PackedFloats  # a 100k-case gate holds 3M samples: packed, 8 bytes each instead of 32
    inner_loops: int = 1
    stop_reason: str = ""
    summary: SummaryCore = dataclass_field(default_factory=SummaryCore)
    clock_resolution_s: float | None = None
    rounds: list[int] | None = None


@pydantic_dataclass(slots=True, config=_LEAN)
class CaseCore:
    """The fields of a :class:`CaseRecord` that compare and gate read: its identity, status, definition,
    thresholds and headline timing, validated as in a full record. The other fields (work, counters,
    validation, other timing modes...) are skipped by the JSON parser, never built (nor validated), and
    the records are slotted dataclasses, not models: a 100k-case run reads in a third of the time and a
    quarter of the memory (~6 KB a record as CaseRecord)."""

    schema_version: int  # required: a line without one takes the careful path, which names the problem
    case_id: str
    suite: str
    workload: str
    name: str
    params: dict[str, Any]
    backend: Literal["gpu", "cpu"]
    status: Status
    label: str | None = None
    message: str = ""
    definition_hash: str = ""
    timing: TimingCore | None = None
    thresholds: dict[str, float] = dataclass_field(default_factory=dict)
    contention: dict[str, Any] | None = None  # the separate-run drift assessment weighs it

    @property
    def key(self) -> CaseKey:
        """As :attr:`CaseRecord.key`."""
        return CaseKey.of(self.suite, self.workload, self.label, self.params, self.backend)


@functools.lru_cache(maxsize=1)
def _core_adapter() -> TypeAdapter[CaseCore]:
    return TypeAdapter(CaseCore)


Case = TypeVar("Case", CaseRecord, CaseCore)


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


# Slack written after run.json's JSON while a run is open (JSON allows trailing whitespace): the space the
# closing record needs is then already the file's, so a run whose disk filled up can still be closed.
RUN_FILE_SLACK = 4096


def _write_error(path: Path, e: OSError) -> WriteError:
    from .safeio import os_reason

    return WriteError(f"{path}: cannot write: {os_reason(e)}")


class RunWriter:
    """Owns one run directory. run.json is replaced atomically; cases.jsonl is appended and fsynced per
    case so a run killed half-way keeps every finished case.

    Faults while writing end as :class:`~accelbench.errors.WriteError` (path and errno) and never leave a
    torn record: an append that fails is cut back to the last whole line; a directory that cannot even be
    started is removed again. The directory name is taken with ``mkdir`` itself (atomic), so two runs
    started in the same millisecond get ``-1``, ``-2``... instead of one failing."""

    def __init__(self, root: Path, run: RunRecord) -> None:
        base, i = run.run_id, 0
        while True:
            self.dir = root / run.run_id
            try:
                self.dir.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                i += 1
                if i > 10_000:
                    raise
                run.run_id = f"{base}-{i}"
        self.run = run
        self._good = 0  # bytes of cases.jsonl that hold whole records
        try:
            self._cases = open(self.dir / CASES_FILE, "ab")  # noqa: SIM115 (held for the run)
            self.write_run(slack=True)
        except (OSError, WriteError) as e:
            self._discard()
            if isinstance(e, WriteError):
                raise
            raise _write_error(self.dir / CASES_FILE, e) from None

    def _discard(self) -> None:
        """Remove a run directory that never held a case (nothing to keep, nothing half-written)."""
        if getattr(self, "_cases", None) is not None:
            self._cases.close()
        for f in self.dir.iterdir():
            f.unlink(missing_ok=True)
        self.dir.rmdir()

    def write_run(self, slack: bool = True) -> None:
        text = json.dumps(self.run.model_dump(mode="json"), indent=2) + "\n"
        try:
            atomic_write_text(self.dir / RUN_FILE, text + (" " * RUN_FILE_SLACK + "\n" if slack else ""))
        except OSError as e:
            if not self._overwrite_in_place(text):
                raise _write_error(self.dir / RUN_FILE, e) from None

    def _overwrite_in_place(self, text: str) -> bool:
        """The disk is full: rewrite run.json inside the space it already holds (its slack), if it fits,
        padded with spaces to its old size so that the space stays its own. Not atomic: the fallback only."""
        f = self.dir / RUN_FILE
        data = text.encode("utf-8")
        try:
            size = f.stat().st_size if f.is_file() else -1
            if size < len(data):
                return False
            with open(f, "r+b") as fh:
                fh.write(data + b" " * (size - len(data)))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            return False
        return True

    def append(self, case: CaseRecord) -> None:
        data = (_dumps(case) + "\n").encode("utf-8")
        try:
            self._cases.write(data)
            self._cases.flush()
            os.fsync(self._cases.fileno())
        except OSError as e:
            self._cut_back()
            raise _write_error(self.dir / CASES_FILE, e) from None
        self._good += len(data)

    def _cut_back(self) -> None:
        """Drop the part of a record a failed write left behind, so the file ends with a whole line."""
        with contextlib.suppress(OSError):  # its buffer cannot be flushed either; the error is raised already
            self._cases.close()
        with contextlib.suppress(OSError):
            os.truncate(self.dir / CASES_FILE, self._good)
            self._cases = open(self.dir / CASES_FILE, "ab")  # noqa: SIM115

    def close(self, status: Literal["finished", "interrupted"], counts: dict[str, int]) -> None:
        self.run.finished_at = now_iso()
        self.run.status = status
        self.run.counts = counts
        try:
            self.write_run(slack=False)
        finally:
            with contextlib.suppress(OSError):
                self._cases.close()


# ---------------------------------------------------------------- reading


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory, its run.json / cases.jsonl, or a results root (its newest run)."""
    from .safeio import describe

    p = Path(path)
    if not p.exists():
        raise ResultsError(f"{p}: {describe(p) or 'no such file or directory'}")  # a loop is not "missing"
    if not p.is_dir() and not p.is_file():
        raise ResultsError(f"{p}: {describe(p)}")  # a FIFO or device: never opened
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


MAX_RUN_FILE_BYTES = 16 << 20  # run.json: the fingerprint, options and a suite text of at most 1 MiB
MAX_CASE_LINE_BYTES = 64 << 20  # one case record (a million samples is ~20 MB of JSON)


@overload
def read_run(path: str | Path) -> tuple[RunRecord, list[CaseRecord]]: ...
@overload
def read_run(path: str | Path, model: type[Case]) -> tuple[RunRecord, list[Case]]: ...


def read_run(path: str | Path, model: Any = CaseRecord) -> tuple[RunRecord, list[Any]]:
    """The run record and every case record of a run, cases.jsonl streamed line by line (bounded memory
    per line, regular files only); two records with one identity are refused with both line numbers.
    ``model=CaseCore``: only the fields compare reads (see :class:`CaseCore`)."""
    d, run = read_run_record(path)
    cf = d / CASES_FILE
    with gc_paused():
        return run, (list(read_cases(cf, model)) if os.path.lexists(cf) else [])


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while many records are built: each of its full passes
    walks every live object again, and building 100k records (or comparing them) triggered enough of them
    to cost a third of a 100k-case gate. Records hold no reference cycles; reference counting frees them.
    The collector's state is restored on leaving, with what was built meanwhile moved straight to its
    oldest generation (freeze, then unfreeze: a list splice): otherwise the first young collections
    after it walk every one of those objects again (0.4 s after a 100k-case compare). Cycles among them
    are still collected, by the next full collection."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def unfinished_note(run: RunRecord, where: str | Path) -> str | None:
    """What to tell a reader of a run that never finished (None for a finished one): its results are what
    was written before it stopped."""
    if run.status == "finished":
        return None
    if run.status == "interrupted":
        return f"{where} was interrupted (status 'interrupted'): only the cases it finished are there"
    return (f"{where} never finished (status 'running': it was killed, or is still running); only the cases "
            "it wrote are there")


def read_run_record(path: str | Path) -> tuple[Path, RunRecord]:
    """The run directory and its run.json, without reading the cases."""
    from .safeio import FileRefused, read_text

    d = resolve_run_dir(path)
    rf = d / RUN_FILE
    try:
        raw = json.loads(read_text(rf, MAX_RUN_FILE_BYTES))  # ignores the open run's trailing slack
    except FileRefused as e:
        raise ResultsError(f"{rf}: missing" if e.why == "no such file or directory" else str(e)) from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{rf}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    _check_version(raw, rf)
    try:
        run = RunRecord.model_validate(raw)
    except ValidationError as e:
        raise ResultsError(f"{rf}: not a run record: {_first_error(e)}") from None
    return d, run


@overload
def read_cases(cf: Path) -> Iterator[CaseRecord]: ...
@overload
def read_cases(cf: Path, model: type[Case]) -> Iterator[Case]: ...


def read_cases(cf: Path, model: Any = CaseRecord) -> Iterator[Any]:
    """The records of a cases.jsonl, streamed. A torn last line (a killed run) is dropped; a repeated
    identity is refused at its second line, naming both lines. ``model=CaseCore`` reads only what compare
    needs of each record (a line it cannot read is reported exactly as for a full record)."""
    from .safeio import iter_lines, line_text

    seen: dict[str, int] = {}
    for i, raw in iter_lines(cf, MAX_CASE_LINE_BYTES):
        if not raw.strip():
            continue
        rec = _fast_case(raw, model)  # pydantic parses the JSON itself: 3x faster (a 100k-case gate)
        if rec is None:  # whatever it is, the careful path says exactly what is wrong with it
            line = line_text(cf, i, raw)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                if i > 1 and not line.endswith("\n"):
                    break  # a torn last line from a killed run: everything before it stands
                raise ResultsError(f"{cf}:{i}:{e.colno}: invalid JSON: {e.msg}") from None
            _check_version(obj, cf, i)
            try:
                full = CaseRecord.model_validate(_upgrade_case(obj))
            except ValidationError as e:
                raise ResultsError(f"{cf}:{i}: not a case record: {_first_error(e)}") from None
            rec = full if model is CaseRecord else _core_adapter().validate_python(full.model_dump())
        first = seen.setdefault(rec.case_id, i)
        if first != i:
            raise ResultsError(f"{cf}:{i}: case {rec.case_id!r} is recorded twice (first at line {first}); a run "
                               "holds each case once")
        yield rec


def _fast_case(raw: bytes, model: type[CaseRecord] | type[CaseCore] = CaseRecord) -> CaseRecord | CaseCore | None:
    """A record of a version this reads, parsed in one step; None for anything else (the caller's careful
    path then reports it). The version must have been written, not defaulted."""
    try:
        if model is CaseCore:
            core = _core_adapter().validate_json(raw)
            return core if core.schema_version == SCHEMA_VERSION else None
        rec = CaseRecord.model_validate_json(raw)
    except ValidationError:
        return None
    if "schema_version" not in rec.model_fields_set or rec.schema_version != SCHEMA_VERSION:
        return None  # older versions go through _upgrade_case on the careful path
    return rec


def _check_version(obj: Any, f: Path, line: int | None = None) -> None:
    v = obj.get("schema_version") if isinstance(obj, dict) else None
    where = f"{f}:{line}" if line else str(f)
    if v is None:
        raise ResultsError(f"{where}: no schema_version: not an accelbench result")
    if not isinstance(v, int) or v > SCHEMA_VERSION:
        raise ResultsError(f"{where}: schema_version {v} is newer than this accelbench reads ({SCHEMA_VERSION})")


def _upgrade_case(obj: dict[str, Any]) -> dict[str, Any]:
    """A case record of an older schema in today's shape (read once, here; the file is never rewritten).
    Version 1 records before ``label`` existed keep the label only inside ``case_id``."""
    if obj.get("schema_version", SCHEMA_VERSION) < 2 and "label" not in obj and isinstance(obj.get("case_id"), str):
        with contextlib.suppress(ValueError):  # not an accelbench id (an import): it has no entry label
            obj = {**obj, "label": CaseKey.parse(obj["case_id"]).label}
    return obj


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"{loc}: {err['msg']}"


SUMMARY_FIELDS = ("n", "median", "mean", "min", "max", "stdev", "q1", "q3", "iqr", "cv", "ci_low", "ci_high")


def case_row(run: RunRecord, c: CaseRecord) -> dict[str, Any]:
    """One case as a row of :func:`load`'s DataFrame: :func:`case_columns` and ``record`` (its dict)."""
    return {**case_columns(run, c), "record": c.model_dump(mode="json")}


def case_columns(run: RunRecord, c: CaseRecord) -> dict[str, Any]:
    """Flatten one case to a DataFrame row. Time columns end in ``_s``."""
    s = c.timing.summary if c.timing else TimingSummary()
    row: dict[str, Any] = {
        "run_id": c.run_id,
        "suite": c.suite,
        "case_id": c.case_id,
        "pair_key": c.key.pair_key,  # the identity without the backend: pairs GPU and CPU rows
        "workload": c.workload,
        "label": c.label,
        "head": c.key.head,  # workload[label]
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
        row[key] = getattr(s, k)
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
        row[f"{mode}_median_s"] = t.summary.median
    row["gpu_name"] = (run.environment.get("gpu") or {}).get("name") if isinstance(run.environment.get("gpu"), dict) else None
    return row


class _SharedDict(dict[str, Any]):
    """A dict that pandas' attribute propagation shares instead of copying: every derived frame, and each
    row ``iterrows`` yields, deep-copied the run record (fingerprint and suite text) stored in
    ``df.attrs``, which made a 10k-case report spend most of its time in ``copy.deepcopy``. Read it, do not
    change it."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedDict:
        return self


def load(path: str | Path) -> pd.DataFrame:
    """Load a run (directory, run.json or cases.jsonl) as a DataFrame, one row per case."""
    import pandas as pd

    run, cases = read_run(path)
    rows = [case_row(run, c) for c in cases]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["run_id", "suite", "case_id", "workload", "name", "backend", "status"])
    df.attrs["run"] = _SharedDict(run.model_dump(mode="json"))
    return df

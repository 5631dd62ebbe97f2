"""The history index: per-case summaries of every run under a results root, in an embedded DuckDB file.

The run directories stay the source of truth; the index is a cache of what :func:`results.read_run`
gives for each of them, so deleting it, or it being corrupt or written by a newer accelbench, only costs a
rebuild. It lives at ``<root>/.accelbench-history.duckdb`` (in memory when the root cannot be written or
another process holds the file).

Incremental: a run is (re)read only when its directory is new or the size or mtime of its run.json or
cases.jsonl changed; runs whose directory disappeared are dropped. A run that cannot be read is recorded
with its reason (and listed by every query) and re-read only when its files change.

Tables (INDEX_VERSION 1):
  meta(key, value)            version
  runs(run_dir, stamp, run_id, suite, started_at, git_commit, git_dirty, machine, status, error)
  cases(run_dir, case_id, suite, workload, name, backend, status, definition_hash,
        median_s, min_s, ci_low_s, ci_high_s, n)
  cp_series(key, digest, n, state, result)
                              per series (case, metric, settings): a digest of its values and machines,
                              its length, the split state and its change points (analysis.cached_changes)
``machine`` is :func:`compare.machine_fingerprint` of the run's environment: two runs share it exactly
when ``compare.machine_diff`` finds no difference between them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..compare import machine_fingerprint
from ..errors import ResultsError
from ..results import CASES_FILE, RUN_FILE, CaseRecord, RunRecord, read_run

INDEX_VERSION = 1
INDEX_FILE = ".accelbench-history.duckdb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (run_dir VARCHAR PRIMARY KEY, stamp VARCHAR, run_id VARCHAR, suite VARCHAR,
    started_at VARCHAR, git_commit VARCHAR, git_dirty BOOLEAN, machine VARCHAR, status VARCHAR, error VARCHAR);
CREATE TABLE IF NOT EXISTS cases (run_dir VARCHAR, case_id VARCHAR, suite VARCHAR, workload VARCHAR,
    name VARCHAR, backend VARCHAR, status VARCHAR, definition_hash VARCHAR, median_s DOUBLE, min_s DOUBLE,
    ci_low_s DOUBLE, ci_high_s DOUBLE, n INTEGER);
DROP TABLE IF EXISTS cp_cache;
CREATE TABLE IF NOT EXISTS cp_series (key VARCHAR PRIMARY KEY, digest VARCHAR, n INTEGER, state VARCHAR,
    result VARCHAR);
"""
CASE_COLUMNS = ("run_dir", "case_id", "suite", "workload", "name", "backend", "status", "definition_hash",
                "median_s", "min_s", "ci_low_s", "ci_high_s", "n")
RUN_COLUMNS = ("run_dir", "stamp", "run_id", "suite", "started_at", "git_commit", "git_dirty", "machine",
               "status", "error")


@dataclass(frozen=True)
class Skipped:
    """A run directory that could not be read, and why (one line naming the file)."""

    path: str
    reason: str


@dataclass
class UpdateReport:
    read: int = 0  # runs (re)read from their files
    unchanged: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # every unreadable run, new or known
    notes: list[str] = field(default_factory=list)  # e.g. "index rebuilt: ..."


def _stamp(d: str) -> str:
    parts = []
    for name in (RUN_FILE, CASES_FILE):
        try:
            st = os.stat(os.path.join(d, name))
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def run_dirs(root: Path) -> list[Path]:
    """The run directories directly under ``root`` (those holding a run.json or a cases.jsonl)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as err:
        raise ResultsError(f"{root}: cannot list: {err.strerror}") from None
    out = []
    for e in entries:
        if e.is_dir() and not e.name.startswith(".") and (
                os.path.exists(os.path.join(e.path, RUN_FILE)) or os.path.exists(os.path.join(e.path, CASES_FILE))):
            out.append(Path(e.path))
    return out


def _case_row(run_dir: str, c: CaseRecord) -> tuple[Any, ...]:
    s = c.timing.summary if c.timing else {}

    def num(k: str) -> float | None:
        v = s.get(k)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    key = c.key  # the case's identity, parsed once from the stored id (a malformed id: ValueError)
    n = s.get("n")
    return (run_dir, key.id, c.suite, c.workload, c.name, c.backend, c.status, c.definition_hash,
            num("median"), num("min"), num("ci_low"), num("ci_high"), int(n) if isinstance(n, (int, float)) else None)


def _run_row(run_dir: str, stamp: str, run: RunRecord | None, error: str | None) -> tuple[Any, ...]:
    if run is None:
        return (run_dir, stamp, None, None, None, None, None, None, None, error)
    g = run.git or {}
    return (run_dir, stamp, run.run_id, run.suite, run.started_at, str(g["commit"]) if g.get("commit") else None,
            bool(g.get("dirty")) if "dirty" in g else None, machine_fingerprint(run.environment or {}), run.status,
            None)


class Index:
    """One results root's index. Use as a context manager; :meth:`update` before querying."""

    def __init__(self, root: str | Path, path: str | Path | None = None) -> None:
        import duckdb

        self.root = Path(root)
        if not self.root.is_dir():
            raise ResultsError(f"{self.root}: not a results folder")
        self.path = Path(path) if path is not None else self.root / INDEX_FILE
        self.notes: list[str] = []
        self._duckdb = duckdb
        self.con = self._open()

    # -------------------------------------------------------------- opening, rebuilding

    def _connect(self) -> Any:
        try:
            return self._duckdb.connect(str(self.path))
        except self._duckdb.Error as e:
            text = str(e)
            if "lock" in text.lower():
                self.notes.append(f"{self.path}: in use by another process; indexing in memory this time")
                return self._duckdb.connect(":memory:")
            if not self.path.exists() and not os.access(self.path.parent, os.W_OK):
                self.notes.append(f"{self.path.parent}: not writable; indexing in memory this time")
                return self._duckdb.connect(":memory:")
            raise

    def _open(self) -> Any:
        try:
            con = self._connect()
            con.execute(_SCHEMA)
            row = con.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        except self._duckdb.Error as e:
            self._remove_files()
            self.notes.append(f"{self.path}: unreadable index ({str(e).splitlines()[0][:120]}); rebuilt")
            con = self._connect()
            con.execute(_SCHEMA)
            row = None
        if row is not None and str(row[0]) != str(INDEX_VERSION):
            version = str(row[0])
            con.close()
            self._remove_files()
            newer = version.isdigit() and int(version) > INDEX_VERSION
            self.notes.append(f"{self.path}: index version {version} was written by a "
                              f"{'newer' if newer else 'different'} accelbench (this one writes "
                              f"{INDEX_VERSION}); rebuilt")
            con = self._connect()
            con.execute(_SCHEMA)
            row = None
        if row is None:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", [str(INDEX_VERSION)])
        return con

    def _remove_files(self) -> None:
        for p in (self.path, Path(str(self.path) + ".wal")):
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                raise ResultsError(f"{p}: cannot remove the unusable index: {e.strerror}") from None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- updating

    def update(self) -> UpdateReport:
        """Read new and changed runs, drop vanished ones; returns what was done and what was skipped."""
        rep = UpdateReport(notes=list(self.notes))
        known = dict(self.con.execute("SELECT run_dir, stamp FROM runs").fetchall())
        present: dict[str, Path] = {d.name: d for d in run_dirs(self.root)}
        gone = [k for k in known if k not in present]
        todo: list[tuple[str, Path, str]] = []
        for name, d in present.items():
            st = _stamp(str(d))
            if known.get(name) == st:
                rep.unchanged += 1
            else:
                todo.append((name, d, st))
        run_rows: list[tuple[Any, ...]] = []
        case_rows: list[tuple[Any, ...]] = []
        for name, d, st in todo:
            try:
                run, cases = read_run(d)
                rows = [_case_row(name, c) for c in cases]
            except ResultsError as e:
                run_rows.append(_run_row(name, st, None, str(e)))
            except ValueError as e:  # a record whose case id is not one (identity.CaseKey.parse)
                run_rows.append(_run_row(name, st, None, f"{d / CASES_FILE}: {e}"))
            else:
                run_rows.append(_run_row(name, st, run, None))
                case_rows.extend(rows)
            rep.read += 1
        stale = gone + [t[0] for t in todo if t[0] in known]
        self.con.execute("BEGIN TRANSACTION")
        try:
            if stale:
                self._delete(stale)
            if run_rows:
                self._insert("runs", RUN_COLUMNS, run_rows)
            if case_rows:
                self._insert("cases", CASE_COLUMNS, case_rows)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        rep.removed = len(gone)
        rep.skipped = [Skipped(str(self.root / r), str(e)) for r, e in
                       self.con.execute("SELECT run_dir, error FROM runs WHERE error IS NOT NULL ORDER BY run_dir")
                       .fetchall()]
        return rep

    def _delete(self, names: list[str]) -> None:
        df = pd.DataFrame({"run_dir": names})
        self.con.register("stale_runs", df)
        try:
            self.con.execute("DELETE FROM cases WHERE run_dir IN (SELECT run_dir FROM stale_runs)")
            self.con.execute("DELETE FROM runs WHERE run_dir IN (SELECT run_dir FROM stale_runs)")
        finally:
            self.con.unregister("stale_runs")

    def _insert(self, table: str, columns: Iterable[str], rows: list[tuple[Any, ...]]) -> None:
        cols = list(columns)
        df = pd.DataFrame.from_records(rows, columns=cols)
        if table == "cases":
            for c in ("median_s", "min_s", "ci_low_s", "ci_high_s"):
                df[c] = df[c].astype("float64")
            df["n"] = df["n"].astype("Int32")
        self.con.register("new_rows", df)
        try:
            self.con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM new_rows")
        finally:
            self.con.unregister("new_rows")

    # -------------------------------------------------------------- reading

    def runs(self) -> pd.DataFrame:
        """Readable runs: run_dir (relative to the root), run_id, suite, started_at, git_commit, git_dirty,
        machine, status."""
        df: pd.DataFrame = self.con.execute(
            "SELECT run_dir, run_id, suite, started_at, git_commit, git_dirty, machine, status "
            "FROM runs WHERE error IS NULL ORDER BY run_dir").df()
        return df

    def cases(self, positions: dict[str, int], case_text: str | None = None
              ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Successful timed cases (status ok, a positive median) of the runs in ``positions`` (run_dir ->
        the run's place in the history's order). Returns the cases (case_id, workload, name, backend; row
        ``cid`` of the points) and the points sorted by (cid, pos): cid, pos, median_s, min_s, ci_low_s,
        ci_high_s, n. Grouping and sorting happen in DuckDB, so a million points cross as numbers."""
        pos = pd.DataFrame({"run_dir": list(positions), "pos": np.fromiter(positions.values(), dtype=np.int64,
                                                                           count=len(positions))})
        where = "c.status = 'ok' AND c.median_s > 0"
        args: list[Any] = []
        if case_text:
            where += " AND (strpos(lower(c.case_id), lower(?)) > 0 OR strpos(lower(c.name), lower(?)) > 0)"
            args += [case_text, case_text]
        sel = f"SELECT c.*, p.pos FROM cases c JOIN positions p USING (run_dir) WHERE {where}"
        self.con.register("positions", pos)
        try:
            names: pd.DataFrame = self.con.execute(
                f"WITH sel AS ({sel}) SELECT case_id, any_value(workload) AS workload, arg_max(name, pos) AS name, "
                f"any_value(backend) AS backend FROM sel GROUP BY case_id ORDER BY case_id", args).df()
            raw = self.con.execute(
                f"WITH sel AS ({sel}) SELECT (dense_rank() OVER (ORDER BY case_id)) - 1 AS cid, pos, median_s, "
                f"min_s, ci_low_s, ci_high_s, coalesce(n, 0) AS n FROM sel ORDER BY cid, pos", args).fetchnumpy()
        finally:
            self.con.unregister("positions")
        pts = {k: (np.ma.filled(v, np.nan) if isinstance(v, np.ma.MaskedArray) else np.asarray(v))
               for k, v in raw.items()}
        return names, pts

    # -------------------------------------------------------------- change-point cache

    def cached(self, keys: list[str]) -> dict[str, tuple[str, int, str, str]]:
        """key -> (digest, n, state, result) of the cached series among ``keys``."""
        if not keys:
            return {}
        self.con.register("wanted", pd.DataFrame({"key": keys}))
        try:
            rows = self.con.execute("SELECT c.key, c.digest, c.n, c.state, c.result FROM cp_series c "
                                    "JOIN wanted USING (key)").fetchall()
        finally:
            self.con.unregister("wanted")
        return {r[0]: (str(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in rows}

    def store_cached(self, new: dict[str, tuple[str, int, str, str]], keep: set[str]) -> None:
        """Add or replace ``new`` rows; when the cache has grown to many times what one query uses, keep
        only ``keep`` (the keys of this query)."""
        if new:
            df = pd.DataFrame([(k, *v) for k, v in new.items()], columns=["key", "digest", "n", "state", "result"])
            self.con.register("fresh", df)
            try:
                self.con.execute("INSERT OR REPLACE INTO cp_series SELECT key, digest, n, state, result FROM fresh")
            finally:
                self.con.unregister("fresh")
        (size,) = self.con.execute("SELECT count(*) FROM cp_series").fetchone() or (0,)
        if size > 4 * max(len(keep), 1000):
            self.con.register("kept", pd.DataFrame({"key": sorted(keep | set(new))}))
            try:
                self.con.execute("DELETE FROM cp_series WHERE key NOT IN (SELECT key FROM kept)")
            finally:
                self.con.unregister("kept")

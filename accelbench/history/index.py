"""The history index: per-case summaries of every run under a results root, in an embedded DuckDB file.

The run directories stay the source of truth; the index is a cache of what :func:`results.read_run`
gives for each of them, so deleting it, or it being corrupt or written by a newer accelbench, only costs a
rebuild. It lives at ``<root>/.accelbench-history.duckdb`` (in memory when the root cannot be written or
another process holds the file).

Incremental: a run is (re)read only when its directory is new or the size or mtime of its run.json or
cases.jsonl changed; runs whose directory disappeared are dropped. A run that cannot be read is recorded
with its reason (and listed by every query) and re-read only when its files change.

Tables (INDEX_VERSION 2; version 1 stored names in every case row, too slow at a million rows):
  meta(key, value)            version
  runs(rid, run_dir, stamp, run_id, suite, started_at, git_commit, git_dirty, machine, status, error)
  case_keys(cid, case_id, suite, workload, name, backend)      one row per case identity (CaseRecord.key)
  cases(rid, cid, status, definition_hash, median_s, min_s, ci_low_s, ci_high_s, n)
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

INDEX_VERSION = 2
INDEX_FILE = ".accelbench-history.duckdb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (rid INTEGER PRIMARY KEY, run_dir VARCHAR UNIQUE, stamp VARCHAR, run_id VARCHAR,
    suite VARCHAR, started_at VARCHAR, git_commit VARCHAR, git_dirty BOOLEAN, machine VARCHAR, status VARCHAR,
    error VARCHAR);
CREATE TABLE IF NOT EXISTS case_keys (cid INTEGER PRIMARY KEY, case_id VARCHAR UNIQUE, suite VARCHAR,
    workload VARCHAR, name VARCHAR, backend VARCHAR);
CREATE TABLE IF NOT EXISTS cases (rid INTEGER, cid INTEGER, status VARCHAR, definition_hash VARCHAR,
    median_s DOUBLE, min_s DOUBLE, ci_low_s DOUBLE, ci_high_s DOUBLE, n INTEGER);
CREATE TABLE IF NOT EXISTS cp_series (key VARCHAR PRIMARY KEY, digest VARCHAR, n INTEGER, state VARCHAR,
    result VARCHAR);
"""
CASE_COLUMNS = ("rid", "cid", "status", "definition_hash", "median_s", "min_s", "ci_low_s", "ci_high_s", "n")
RUN_COLUMNS = ("rid", "run_dir", "stamp", "run_id", "suite", "started_at", "git_commit", "git_dirty", "machine",
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


def _stamp(d: str, dir_fd: int | None = None) -> str | None:
    """mtime and size of run.json and cases.jsonl of run directory ``d`` (relative to ``dir_fd`` when
    given); None when neither exists (not a run directory)."""
    parts = []
    for name in (RUN_FILE, CASES_FILE):
        try:
            st = os.stat(f"{d}/{name}", dir_fd=dir_fd)
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return None if parts == ["-", "-"] else "|".join(parts)


def run_dirs(root: Path) -> dict[str, str]:
    """The run directories directly under ``root`` (those holding a run.json or a cases.jsonl): name ->
    the stamp of their files."""
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise ResultsError(f"{root}: cannot list: {err.strerror}") from None
    try:
        use_fd = fd if os.stat in os.supports_dir_fd else None
        out = {}
        for e in os.scandir(root):
            if not e.name.startswith(".") and e.is_dir():
                st = _stamp(e.name, use_fd) if use_fd is not None else _stamp(e.path)
                if st is not None:
                    out[e.name] = st
    except OSError as err:
        raise ResultsError(f"{root}: cannot list: {err.strerror}") from None
    finally:
        os.close(fd)
    return dict(sorted(out.items()))


def _case_row(rid: int, cid: int, c: CaseRecord) -> tuple[Any, ...]:
    s: dict[str, Any] = c.timing.summary.model_dump() if c.timing else {}

    def num(k: str) -> float | None:
        v = s.get(k)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    n = s.get("n")
    return (rid, cid, c.status, c.definition_hash, num("median"), num("min"), num("ci_low"), num("ci_high"),
            int(n) if isinstance(n, (int, float)) else None)


def _run_row(rid: int, run_dir: str, stamp: str, run: RunRecord | None, error: str | None) -> tuple[Any, ...]:
    if run is None:
        return (rid, run_dir, stamp, None, None, None, None, None, None, None, error)
    g = run.git or {}
    return (rid, run_dir, stamp, run.run_id, run.suite, run.started_at,
            str(g["commit"]) if g.get("commit") else None, bool(g.get("dirty")) if "dirty" in g else None,
            machine_fingerprint(run.environment or {}), run.status, None)


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
        known = {d: (st, rid) for rid, d, st in self.con.execute("SELECT rid, run_dir, stamp FROM runs").fetchall()}
        present = run_dirs(self.root)
        gone = [known[k][1] for k in known if k not in present]
        todo: list[tuple[str, str]] = []
        for name, st in present.items():
            if name in known and known[name][0] == st:
                rep.unchanged += 1
            else:
                todo.append((name, st))
        (next_rid,) = self.con.execute("SELECT coalesce(max(rid), -1) + 1 FROM runs").fetchone() or (0,)
        cids: dict[str, int] = dict(self.con.execute("SELECT case_id, cid FROM case_keys").fetchall())
        new_keys: list[tuple[Any, ...]] = []
        run_rows: list[tuple[Any, ...]] = []
        case_rows: list[tuple[Any, ...]] = []
        for name, st in todo:
            rid = next_rid
            next_rid += 1
            d = self.root / name
            try:
                run, cases = read_run(d)
                keyed = [(c.key, c) for c in cases]  # the case's identity (a malformed id: ValueError)
            except ResultsError as e:
                run_rows.append(_run_row(rid, name, st, None, str(e)))
            except ValueError as e:
                run_rows.append(_run_row(rid, name, st, None, f"{d / CASES_FILE}: {e}"))
            else:
                run_rows.append(_run_row(rid, name, st, run, None))
                for key, c in keyed:
                    cid = cids.get(key.id)
                    if cid is None:
                        cid = cids[key.id] = len(cids)
                        new_keys.append((cid, key.id, key.suite, key.workload, c.name, key.backend))
                    case_rows.append(_case_row(rid, cid, c))
            rep.read += 1
        stale = gone + [known[t[0]][1] for t in todo if t[0] in known]
        self.con.execute("BEGIN TRANSACTION")
        try:
            if stale:
                self._delete(stale)
            if new_keys:
                self._insert("case_keys", ("cid", "case_id", "suite", "workload", "name", "backend"), new_keys)
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

    def _delete(self, rids: list[int]) -> None:
        self.con.register("stale_runs", pd.DataFrame({"rid": np.asarray(rids, dtype=np.int64)}))
        try:
            self.con.execute("DELETE FROM cases WHERE rid IN (SELECT rid FROM stale_runs)")
            self.con.execute("DELETE FROM runs WHERE rid IN (SELECT rid FROM stale_runs)")
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
        """Readable runs: rid, run_dir (relative to the root), run_id, suite, started_at, git_commit,
        git_dirty, machine, status."""
        df: pd.DataFrame = self.con.execute(
            "SELECT rid, run_dir, run_id, suite, started_at, git_commit, git_dirty, machine, status "
            "FROM runs WHERE error IS NULL ORDER BY run_dir").df()
        return df

    def cases(self, positions: dict[int, int], case_text: str | None = None, metric: str = "median"
              ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """Successful timed cases (status ok, a positive median) of the runs in ``positions`` (rid -> the
        run's place in the history's order). Returns the case identities (cid, case_id, workload, name,
        backend) and the points sorted by (cid, pos): cid, pos, value (``metric``: median_s or min_s),
        ci_low_s, ci_high_s (NaN where absent). The points cross as numbers; names come from the (small)
        case_keys table."""
        if metric not in ("median", "min"):
            raise ValueError(f"metric {metric!r}")
        where, args = "", []
        if case_text:
            where = " WHERE strpos(lower(case_id), lower(?)) > 0 OR strpos(lower(name), lower(?)) > 0"
            args = [case_text, case_text]
        names: pd.DataFrame = self.con.execute(
            f"SELECT cid, case_id, workload, name, backend FROM case_keys{where} ORDER BY cid", args).df()
        nan = "'nan'::DOUBLE"
        raw = self.con.execute(f"SELECT rid, cid, coalesce({metric}_s, {nan}) AS value, coalesce(ci_low_s, {nan}) "
                               f"AS ci_low_s, coalesce(ci_high_s, {nan}) AS ci_high_s FROM cases "
                               f"WHERE status = 'ok' AND median_s > 0").fetchnumpy()
        pts = {k: np.asarray(v) for k, v in raw.items()}
        rid = pts.pop("rid").astype(np.int64)
        lut = np.full(int(rid.max()) + 1 if rid.size else 1, -1, dtype=np.int64)
        for r, p in positions.items():
            if r < lut.size:
                lut[r] = p
        pos = lut[rid] if rid.size else rid
        wanted = np.zeros(int(max(names["cid"].max(), pts["cid"].max(initial=0))) + 1 if len(names) else 1, bool)
        wanted[names["cid"].to_numpy(dtype=np.int64)] = True
        keep = (pos >= 0) & wanted[pts["cid"].astype(np.int64)]
        order = np.lexsort((pos[keep], pts["cid"][keep]))
        out = {k: v[keep][order] for k, v in pts.items()}
        out["pos"] = pos[keep][order]
        return names.set_index("cid", drop=False), out

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

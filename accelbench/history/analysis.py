"""Every case's series across the runs of one or more results folders, and its change points.

Order. Runs are ordered by their commits' order when every run records a commit and all those commits
are in one git repository (``git rev-list --topo-order`` of them: parents before children; runs of one
commit by start time); otherwise by start time. A dirty working tree is still its commit.

Series. A case (``CaseRecord.key``, so the suite is part of it: runs of different suites never mix) has
one point per run where it succeeded: the run's median (or min) seconds, with the run's CI of the median.
Change points come from :mod:`.changepoints`, per machine fingerprint (compare.machine_fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ResultsError, UsageError
from .changepoints import ChangePoint, GroupChangePoint, Settings, SplitState, detect_by_group
from .index import Index, Skipped

METRICS = ("median", "min")
CACHE_VERSION = 2  # bump when changepoints' results for the same series change: cached ones are then ignored


@dataclass(frozen=True)
class HistoryRun:
    run_id: str
    run_dir: str
    suite: str
    started_at: str
    commit: str | None
    dirty: bool | None
    machine: str


@dataclass(frozen=True)
class Change:
    """A change point of one case: the first run after it, by how much, with what confidence."""

    case: str  # the case id
    name: str
    workload: str
    backend: str
    position: int  # the first run after the change, in History.runs
    run_id: str
    run_dir: str
    commit: str | None
    started_at: str
    previous_run_id: str  # the last run before it (same machine)
    previous_commit: str | None
    ratio: float  # after / before (geometric means of the two segments)
    ci_low: float
    ci_high: float
    p_value: float
    before_s: float
    after_s: float
    n_before: int
    n_after: int
    machine: str

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {k: clean(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass
class Series:
    case: str
    name: str
    workload: str
    backend: str
    pos: np.ndarray  # positions in History.runs, increasing
    value: np.ndarray  # the metric, seconds
    ci_low: np.ndarray  # the run's CI of the median, seconds (nan where none)
    ci_high: np.ndarray
    machine: np.ndarray  # the run's machine fingerprint per point
    changes: list[Change] = field(default_factory=list)
    machine_code: np.ndarray | None = None  # per point: an index into History's machine names (hashing)

    def stable_segment(self, machine: str) -> np.ndarray:
        """Indices (into this series) of the points on ``machine`` since its last change point."""
        on = np.flatnonzero(self.machine == machine)
        starts = [c.position for c in self.changes if c.machine == machine]
        if starts:
            on = on[self.pos[on] >= max(starts)]
        return on


@dataclass
class History:
    runs: list[HistoryRun]
    series: list[Series]
    skipped: list[Skipped]
    notes: list[str]
    ordered_by: str  # "commit" or "time"
    metric: str
    settings: Settings

    def changes(self) -> list[Change]:
        """Every change point, most recent first."""
        out = [c for s in self.series for c in s.changes]
        out.sort(key=lambda c: (-c.position, c.case))
        return out


def parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: not a date (use YYYY-MM-DD or an ISO time)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _time(s: Any) -> datetime:
    try:
        t = datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def commit_order(commits: list[str], repo: Path) -> dict[str, int] | None:
    """Topological position of each commit in ``repo`` (parents first), or None when git is absent or some
    commit is not in that repository."""
    uniq = sorted(set(commits))
    if not uniq:
        return None
    try:
        p = subprocess.run(["git", "-C", str(repo), "rev-list", "--topo-order", "--reverse", "--stdin"],
                           input="\n".join(uniq) + "\n", capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    order = {c: i for i, c in enumerate(p.stdout.split())}
    if not all(c in order for c in uniq):
        return None
    return {c: order[c] for c in uniq}


def order_runs(runs: pd.DataFrame, repo: Path | None) -> tuple[list[int], str]:
    """Row order of ``runs`` (git_commit, started_at columns) and what it follows ("commit" or "time")."""
    times = [_time(s) for s in runs["started_at"]]
    commits = [c if isinstance(c, str) and c else None for c in runs["git_commit"]]
    known = [c for c in commits if c is not None]
    if repo is not None and known and len(known) == len(commits):
        order = commit_order(known, repo)
        if order is not None:
            return sorted(range(len(known)), key=lambda i: (order[known[i]], times[i])), "commit"
    ids = [str(r) for r in runs["run_id"]]
    return sorted(range(len(times)), key=lambda i: (times[i], ids[i])), "time"


def load_history(roots: list[Path], metric: str = "median", since: str | None = None, case: str | None = None,
                 settings: Settings | None = None, repo: Path | None = None,
                 exclude_run_ids: frozenset[str] = frozenset()) -> History:
    """Index (incrementally) every results folder in ``roots`` and analyse every case's series (without
    the runs named in ``exclude_run_ids``: the run a gate judges is not its own history)."""
    if metric not in METRICS:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    st = settings or Settings()
    try:
        st.check()
    except ValueError as e:
        raise UsageError(str(e)) from None
    t_since = parse_since(since)
    if not roots:
        raise UsageError("name at least one results folder")
    indexes: list[Index] = []
    try:
        skipped: list[Skipped] = []
        notes: list[str] = []
        frames = []
        for i, root in enumerate(roots):
            if not Path(root).exists():
                raise ResultsError(f"{root}: no such file or directory")
            ix = Index(root)
            indexes.append(ix)
            rep = ix.update()
            skipped += rep.skipped
            notes += rep.notes
            df = ix.runs()
            df["root"] = i
            frames.append(df)
        runs_df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if exclude_run_ids and len(runs_df):
            runs_df = runs_df[~runs_df["run_id"].isin(list(exclude_run_ids))].reset_index(drop=True)
        if t_since is not None and len(runs_df):
            runs_df = runs_df[[_time(s) >= t_since for s in runs_df["started_at"]]].reset_index(drop=True)
        order, ordered_by = order_runs(runs_df, repo) if len(runs_df) else ([], "time")
        runs_df = runs_df.iloc[order].reset_index(drop=True)
        root_text = [str(r) for r in roots]
        cols = [runs_df[c].tolist() if len(runs_df) else [] for c in
                ("run_id", "root", "run_dir", "suite", "started_at", "git_commit", "git_dirty", "machine")]
        runs = [HistoryRun(run_id=str(rid), run_dir=os.path.join(root_text[int(ri)], str(rd)), suite=str(su),
                           started_at=str(sa), commit=gc if isinstance(gc, str) else None,
                           dirty=None if gd is None or pd.isna(gd) else bool(gd), machine=str(m))
                for rid, ri, rd, su, sa, gc, gd, m in zip(*cols, strict=True)]
        machines = np.asarray([r.machine for r in runs], dtype=object)
        names = list(dict.fromkeys(r.machine for r in runs))
        code_of = {m: i for i, m in enumerate(names)}
        codes = np.asarray([code_of[r.machine] for r in runs], dtype=np.int32)
        series: list[Series] = []
        for i, ix in enumerate(indexes):
            sub = runs_df[runs_df["root"] == i]
            positions = {int(r): int(p) for r, p in zip(sub["rid"], sub.index, strict=True)}
            if positions:
                series += _series(ix, positions, case, metric, machines, codes)
        if len(roots) > 1:
            series = _merge_roots(series)
        found = cached_changes(indexes[0], series, st, metric, names)
        for s, cps in zip(series, found, strict=True):
            s.changes = _changes(s, runs, cps)
    finally:
        for ix in indexes:
            ix.close()
    series.sort(key=lambda s: s.case)
    return History(runs=runs, series=series, skipped=skipped, notes=notes, ordered_by=ordered_by, metric=metric,
                   settings=st)


def _series(ix: Index, positions: dict[int, int], case: str | None, metric: str, machines: np.ndarray,
            codes: np.ndarray) -> list[Series]:
    names, pts = ix.cases(positions, case, metric)
    if not len(names) or not pts["cid"].size:
        return []
    cid = pts["cid"]
    bounds = np.flatnonzero(np.diff(cid)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [cid.size]])
    out = []
    for a, b in zip(starts, ends, strict=True):
        pos = pts["pos"][a:b]
        val = pts["value"][a:b]
        ok = np.isfinite(val) & (val > 0)
        row = names.loc[int(cid[a])]
        out.append(Series(case=str(row.case_id), name=str(row["name"]), workload=str(row.workload),
                          backend=str(row.backend), pos=pos[ok], value=val[ok],
                          ci_low=pts["ci_low_s"][a:b][ok], ci_high=pts["ci_high_s"][a:b][ok],
                          machine=machines[pos[ok]], machine_code=codes[pos[ok]]))
    return out


def _merge_roots(series: list[Series]) -> list[Series]:
    """One series per case when several results folders hold it."""
    by: dict[str, list[Series]] = {}
    for s in series:
        by.setdefault(s.case, []).append(s)
    out = []
    for parts in by.values():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        pos = np.concatenate([p.pos for p in parts])
        o = np.argsort(pos, kind="stable")
        f = parts[-1]
        out.append(Series(case=f.case, name=f.name, workload=f.workload, backend=f.backend, pos=pos[o],
                          value=np.concatenate([p.value for p in parts])[o],
                          ci_low=np.concatenate([p.ci_low for p in parts])[o],
                          ci_high=np.concatenate([p.ci_high for p in parts])[o],
                          machine=np.concatenate([p.machine for p in parts])[o],
                          machine_code=np.concatenate([p.machine_code for p in parts if p.machine_code is not None])[o]
                          if all(p.machine_code is not None for p in parts) else None))
    return out


def _digest(value: np.ndarray, code: np.ndarray, names: list[str]) -> str:
    """A digest of a series' values and machines (``code`` indexes ``names``); independent of which
    other machines the history holds."""
    h = hashlib.sha256(np.ascontiguousarray(value, dtype=np.float64).tobytes())
    used, local = np.unique(code, return_inverse=True)
    h.update("\0".join(names[int(u)] for u in used).encode())
    h.update(local.astype(np.int32).tobytes())
    return h.hexdigest()[:32]


def _state_json(states: dict[Any, SplitState]) -> str:
    return json.dumps([[str(g), st.n, st.window, [[a, list(b)] for a, b in st.weak]] for g, st in states.items()])


def _state_load(text: str) -> dict[Any, SplitState]:
    return {g: SplitState(n=n, window=w, weak=tuple((a, tuple(b)) for a, b in weak))
            for g, n, w, weak in json.loads(text)}


def cached_changes(ix: Index, series: list[Series], st: Settings, metric: str, names: list[str]
                   ) -> list[list[GroupChangePoint]]:
    """Change points of every series, through the index's cache: a series whose values and machines are
    unchanged is not analysed again; one that only grew (new runs at its end) reuses the split pass of
    its old windows (changepoints.SplitState); anything else is analysed afresh."""
    keys = [hashlib.sha256(f"{CACHE_VERSION}\0{s.case}\0{metric}\0{st!r}".encode()).hexdigest()[:32]
            for s in series]
    known = ix.cached(keys)
    out: list[list[GroupChangePoint]] = []
    new: dict[str, tuple[str, int, str, str]] = {}
    for s, k in zip(series, keys, strict=True):
        code = s.machine_code if s.machine_code is not None else np.asarray(
            [names.index(str(m)) for m in s.machine], dtype=np.int32)
        digest = _digest(s.value, code, names)
        row = known.get(k)
        if row is not None and row[0] == digest:
            out.append([GroupChangePoint(group=d["group"], index=d["index"], point=ChangePoint(**d["point"]))
                        for d in json.loads(row[3])])
            continue
        states = None
        if row is not None and row[1] < s.value.size and _digest(s.value[:row[1]], code[:row[1]], names) == row[0]:
            states = _state_load(row[2])
        cps, new_states = detect_by_group(s.value, s.machine, st, states)
        out.append(cps)
        new[k] = (digest, int(s.value.size), _state_json(new_states),
                  json.dumps([{"group": c.group, "index": c.index, "point": asdict(c.point)} for c in cps]))
    ix.store_cached(new, keep=set(keys))
    return out


def _changes(s: Series, runs: list[HistoryRun], found: list[GroupChangePoint]) -> list[Change]:
    out = []
    members: dict[Any, np.ndarray] = {}
    for g in found:
        cp = g.point
        i = g.index
        idx = members.get(g.group)
        if idx is None:
            idx = members[g.group] = np.flatnonzero(s.machine == g.group)
        k = int(np.searchsorted(idx, i))
        prev = runs[int(s.pos[idx[k - 1]])] if k > 0 else runs[int(s.pos[i])]
        r = runs[int(s.pos[i])]
        out.append(Change(case=s.case, name=s.name, workload=s.workload, backend=s.backend, position=int(s.pos[i]),
                          run_id=r.run_id, run_dir=r.run_dir, commit=r.commit, started_at=r.started_at,
                          previous_run_id=prev.run_id, previous_commit=prev.commit, ratio=cp.ratio,
                          ci_low=cp.ci_low, ci_high=cp.ci_high, p_value=cp.p_value, before_s=cp.before,
                          after_s=cp.after, n_before=cp.n_before, n_after=cp.n_after, machine=str(g.group)))
    return out

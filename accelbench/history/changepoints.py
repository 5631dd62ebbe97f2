"""Change points in a series of per-run timings: pure functions on numbers (no I/O, no randomness).

The method is Hunter's (Fleming et al., "Hunter: Using Change Point Detection to Hunt for Performance
Regressions", ICPE 2023), the algorithm of Apache Otava: e-divisive candidates in sliding windows, a
Student t-test for significance, then a merge pass that keeps only strong change points. Why this and
not MongoDB's full-series e-divisive with a permutation test: docs/history.md. In short: the permutation
test costs 100 re-analyses per candidate and the full-series statistic O(n^2) memory, which is far from
10,000 runs x 100 cases in 2 s; and a permutation p-value is random unless seeded, the t-test's is not.

Notation. A series z_0..z_{T-1} is the natural log of one case's metric (median or min seconds), one
value per run, in run order. Logs, because performance changes are relative (a 5% step is the same step
at 1 us and at 1 s) and run-to-run noise is multiplicative; a difference of means of logs is the log of a
ratio of geometric means.

1. Divergence (Matteson & James 2014, alpha = 1). For a stretch split into X = z[s:tau] and
   Y = z[tau:kappa], with a = tau - s and b = kappa - tau,

       E(X, Y) = 2/(a b) sum_{i in X, j in Y} |z_i - z_j|
                 - 1/C(a,2) sum_{i<j in X} |z_i - z_j| - 1/C(b,2) sum_{i<j in Y} |z_i - z_j|
       Q(X, Y) = a b / (a + b) E(X, Y)

   (a within-term over one point is 0). E is the energy distance: 0 when X and Y come from one
   distribution, and it grows with any difference between them. Every sum is a block sum of the distance
   matrix D_ij = |z_i - z_j|, read from its 2-D prefix sums in O(1), so Q for all (tau, kappa) of a
   window of w points costs O(w^2) array operations. The candidate of a stretch is argmax Q over
   tau and kappa with both sides at least ``min_size`` long.

2. Split. Windows of ``window`` points start every window/2 points (the last ends at the series' end;
   Otava slides its next window to the last change point found, we keep the fixed grid so that the
   first candidate of every window can be computed in one batched array operation). Within a window,
   candidates are
   found hierarchically: the best candidate over the stretches between the change points found so far
   is tested, accepted if significant at the first-pass level, and the search goes on; the first
   rejected candidate ends the window. The first-pass level is 10 x ``alpha`` (Otava's), so that the
   window pass keeps "weak" change points the merge can judge with the full neighbouring segments.

3. Significance. A change point at tau between neighbours p < tau < q (or the series' ends) compares
   L = z[p:tau] with R = z[tau:q]: Student's two-sample t statistic with the pooled variance,

       t = (mean R - mean L) / (s_p sqrt(1/n_L + 1/n_R)),  s_p^2 = (SS_L + SS_R) / (n_L + n_R - 2),

   two-sided p = 2 F_t(-|t|; n_L + n_R - 2). A side shorter than ``min_size`` makes p = 1: one or two
   outlying runs are never a change point of their own, the single noisy run a gate between two runs
   cannot ignore. The estimate of the change is the ratio of geometric means exp(mean R - mean L), with
   the t-based CI exp(diff +- t_{1-(1-level)/2} s_p sqrt(1/n_L + 1/n_R)).

4. Merge. All weak change points of all windows are pooled; repeatedly, the weakest is dropped (the
   largest p-value when it is >= ``alpha``, else the smallest change when it is below ``min_change``)
   and its two neighbours are re-tested against their new, longer segments, until every change point
   left has p < alpha and |ratio - 1| >= min_change (in log terms |ln ratio| >= ln(1 + min_change)).

The p-value is a t-test at a position chosen to maximise the divergence, so it is optimistic (the
selection is not accounted for); Otava compensates with a small default level, 0.001, and so do we.
The measured false-alarm and detection rates are in docs/history.md (benchmarks/history_error_rates.py).

Machines. A change of machine (or of its software: see compare.machine_fingerprint) is never a change
point: :func:`detect_by_group` splits a series by its points' machine group and analyses each group's
points on their own, in order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special as _sp

DEFAULT_ALPHA = 0.001
DEFAULT_MIN_CHANGE = 0.0
DEFAULT_WINDOW = 50
DEFAULT_MIN_SIZE = 3
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Settings:
    """How change points are judged. ``alpha``: significance level of the final (merge) test;
    ``min_change``: smallest relative change kept (0.02 = 2%); ``window``: points per split window;
    ``min_size``: fewest points on each side of a change point; ``level``: confidence of the ratio's CI."""

    alpha: float = DEFAULT_ALPHA
    min_change: float = DEFAULT_MIN_CHANGE
    window: int = DEFAULT_WINDOW
    min_size: int = DEFAULT_MIN_SIZE
    level: float = DEFAULT_LEVEL

    def check(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha {self.alpha}: must be in (0, 1)")
        if not 0 <= self.min_change < 10:
            raise ValueError(f"min_change {self.min_change}: must be a fraction in [0, 10)")
        if self.min_size < 2:
            raise ValueError(f"min_size {self.min_size}: must be at least 2")
        if self.window < 2 * self.min_size:
            raise ValueError(f"window {self.window}: must hold two sides of min_size {self.min_size}")
        if not 0 < self.level < 1:
            raise ValueError(f"level {self.level}: must be in (0, 1)")

    @property
    def first_pass_alpha(self) -> float:
        a = self.alpha
        return a * 10 if a < 0.05 else (a * 2 if a < 0.5 else a)


@dataclass(frozen=True)
class ChangePoint:
    """A change beginning at ``index`` (the first point after it) of the analysed series.

    ``before`` / ``after``: geometric means of the segments on either side (the series' units);
    ``ratio`` = after / before with its CI; ``p_value``: the two-sided t-test of the two segments."""

    index: int
    before: float
    after: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    n_before: int
    n_after: int


# ---------------------------------------------------------------- the two-segment test


def _moments(cs: np.ndarray, cs2: np.ndarray, a: int, b: int) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations of z[a:b] from prefix sums of z and z^2."""
    n = b - a
    s = cs[b] - cs[a]
    mean = s / n
    ss = max(0.0, float(cs2[b] - cs2[a] - s * mean))
    return n, float(mean), ss


def _ttest(cs: np.ndarray, cs2: np.ndarray, p: int, tau: int, q: int, min_size: int, level: float
           ) -> tuple[float, float, float, float, float, float]:
    """(p_value, raw p_value, diff, ci half-width, mean left, mean right) for z[p:tau] vs z[tau:q]."""
    nl, ml, ssl = _moments(cs, cs2, p, tau)
    nr, mr, ssr = _moments(cs, cs2, tau, q)
    diff = mr - ml
    df = nl + nr - 2
    if df < 1:
        return 1.0, 1.0, diff, math.inf, ml, mr
    sp2 = (ssl + ssr) / df
    se = math.sqrt(sp2 * (1.0 / nl + 1.0 / nr))
    if se <= 1e-15 * max(1.0, abs(ml), abs(mr)):
        raw = 1.0 if abs(diff) <= 1e-15 * max(1.0, abs(ml)) else 0.0
        half = 0.0
    else:
        t = abs(diff) / se
        raw = float(2.0 * _sp.stdtr(df, -t))
        half = float(_sp.stdtrit(df, 1.0 - (1.0 - level) / 2.0)) * se
    pv = raw if nl >= min_size and nr >= min_size else 1.0
    return pv, raw, diff, half, ml, mr


# ---------------------------------------------------------------- the divergence in one window


class _Window:
    """One window's distance-matrix prefix sums; best e-divisive candidate of a stretch in O(w^2)."""

    def __init__(self, z: np.ndarray) -> None:
        d = np.abs(z[:, None] - z[None, :])
        m = z.size
        self.P = np.zeros((m + 1, m + 1))
        self.P[1:, 1:] = d.cumsum(0).cumsum(1)

    def best(self, s: int, e: int, min_size: int) -> tuple[int, float] | None:
        if e - s < 2 * min_size:
            return None
        P = self.P
        taus = np.arange(s + min_size, e - min_size + 1)[:, None]
        kappas = np.arange(s + 2 * min_size, e + 1)[None, :]
        a = (taus - s).astype(np.float64)
        b = (kappas - taus).astype(np.float64)
        valid = b >= min_size
        bc = np.maximum(b, 1.0)
        between = P[taus, kappas] - P[s, kappas] - P[taus, taus] + P[s, taus]
        wl = (P[taus, taus] - 2.0 * P[s, taus] + P[s, s]) / 2.0
        wr = (P[kappas, kappas] - 2.0 * P[taus, kappas] + P[taus, taus]) / 2.0
        cl = a * (a - 1.0) / 2.0
        cr = bc * (bc - 1.0) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            e_stat = 2.0 * between / (a * bc) - np.where(cl > 0, wl / np.where(cl > 0, cl, 1.0), 0.0) \
                - np.where(cr > 0, wr / np.where(cr > 0, cr, 1.0), 0.0)
            q = a * bc / (a + bc) * e_stat
        q = np.where(valid, q, -np.inf)
        i = int(np.argmax(q))
        ti, _ = np.unravel_index(i, q.shape)
        qv = float(q.ravel()[i])
        if not math.isfinite(qv):
            return None
        return int(taus[ti, 0]), qv


def _window_points(z: np.ndarray, cs: np.ndarray, cs2: np.ndarray, start: int, end: int, st: Settings
                   ) -> list[int]:
    """Hierarchical e-divisive within z[start:end]; returns accepted indices (of the whole series)."""
    w = _Window(z[start:end])
    bounds = [0, end - start]
    cache: dict[tuple[int, int], tuple[int, float] | None] = {}
    found: list[int] = []
    while True:
        best: tuple[float, int, int, int] | None = None
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if (lo, hi) not in cache:
                cache[(lo, hi)] = w.best(lo, hi, st.min_size)
            c = cache[(lo, hi)]
            if c is not None and (best is None or c[1] > best[0]):
                best = (c[1], c[0], lo, hi)
        if best is None:
            return found
        _, tau, lo, hi = best
        pv = _ttest(cs, cs2, start + lo, start + tau, start + hi, st.min_size, st.level)[0]
        if pv >= st.first_pass_alpha:
            return found
        found.append(start + tau)
        bounds = sorted([*bounds, tau])


def _window_starts(n: int, window: int) -> list[int]:
    """Windows of ``window`` points every window/2 points, the last one ending at the series' end."""
    if n <= window:
        return [0]
    step = max(1, window // 2)
    starts = list(range(0, n - window + 1, step))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


def _first_candidates(z: np.ndarray, starts: list[int], w: int, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The best split tau (relative to its window) of every full window at once: the first step of each
    window's search, batched because in a series without changes it is the only step."""
    zw = z[np.asarray(starts)[:, None] + np.arange(w)[None, :]].astype(np.float32)  # choice only: f32 is ample
    P = np.zeros((len(starts), w + 1, w + 1), dtype=np.float32)
    np.cumsum(np.abs(zw[:, :, None] - zw[:, None, :]), axis=1, out=P[:, 1:, 1:])
    np.cumsum(P[:, 1:, 1:], axis=2, out=P[:, 1:, 1:])
    diag = P[:, np.arange(w + 1), np.arange(w + 1)]
    t0, t1, k0 = min_size, w - min_size + 1, 2 * min_size
    a = np.arange(t0, t1, dtype=np.float32)[:, None]
    b = np.arange(k0, w + 1, dtype=np.float32)[None, :] - a
    valid = b >= min_size
    bc = np.maximum(b, 2.0)
    ptt = diag[:, t0:t1, None]
    ptk = P[:, t0:t1, k0:]
    pkk = diag[:, None, k0:]
    # Q = ab/(a+b) * (2 between/(ab) - WL/C(a,2) - WR/C(b,2)), between = ptk - ptt, WL = ptt/2,
    # WR = (pkk - 2 ptk + ptt)/2; the factors are folded into per-(tau, kappa) constants
    f = a * bc / (a + bc)
    q = f * (2.0 / (a * bc) * (ptk - ptt) - ptt / (a * (a - 1.0)) - (pkk - 2.0 * ptk + ptt) / (bc * (bc - 1.0)))
    q = np.where(valid[None], q, -np.inf).reshape(len(starts), -1)
    best = q.argmax(1)
    return np.arange(t0, t1)[best // b.shape[1]], q.max(1)


@dataclass(frozen=True)
class SplitState:
    """What the split pass found in the full grid windows of a series' first ``n`` points. A window's
    weak change points depend on its own values only, so when the series has only grown (its first ``n``
    values unchanged, which the caller checks) these windows need no second look; only the windows that
    reach past ``n`` are searched. ``weak``: (window start, its weak change points) where it found any."""

    n: int
    window: int
    weak: tuple[tuple[int, tuple[int, ...]], ...] = ()


def _split(z: np.ndarray, cs: np.ndarray, cs2: np.ndarray, st: Settings, state: SplitState | None = None
           ) -> tuple[list[int], SplitState]:
    n = z.size
    w = min(st.window, n)
    step = max(1, w // 2)
    grid = set(range(0, n - w + 1, step)) if n >= st.window else set()
    done: dict[int, tuple[int, ...]] = {}
    reused: set[int] = set()
    if state is not None and state.window == st.window and state.n <= n:
        reused = {s for s in grid if s + w <= state.n}
        done = {s: pts for s, pts in state.weak if s in reused}
    starts = [s for s in _window_starts(n, w) if s not in reused]
    if starts:
        taus, _ = _first_candidates(z, starts, w, st.min_size)
        s0 = np.asarray(starts)
        pv = _ttest_many(cs, cs2, s0, s0 + taus, s0 + w)
        for start in s0[pv < st.first_pass_alpha]:  # only such windows can hold change points: search them
            done[int(start)] = tuple(_window_points(z, cs, cs2, int(start), int(start) + w, st))
    weak = sorted({i for pts in done.values() for i in pts})
    keep = tuple(sorted((s, pts) for s, pts in done.items() if s in grid and pts))
    return weak, SplitState(n=n, window=st.window, weak=keep)


def _ttest_many(cs: np.ndarray, cs2: np.ndarray, p: np.ndarray, tau: np.ndarray, q: np.ndarray) -> np.ndarray:
    """:func:`_ttest`'s raw p-value for many (p, tau, q) at once (the sides are >= min_size here)."""
    nl, nr = (tau - p).astype(np.float64), (q - tau).astype(np.float64)
    sl, sr = cs[tau] - cs[p], cs[q] - cs[tau]
    ml, mr = sl / nl, sr / nr
    ss = np.maximum(0.0, cs2[tau] - cs2[p] - sl * ml) + np.maximum(0.0, cs2[q] - cs2[tau] - sr * mr)
    df = nl + nr - 2.0
    se = np.sqrt(ss / df * (1.0 / nl + 1.0 / nr))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(mr - ml) / se
    pv = 2.0 * _sp.stdtr(df, -np.where(se > 0, t, 0.0))
    return np.where(se > 0, pv, np.where(np.abs(mr - ml) > 0, 0.0, 1.0))


def _merge(cs: np.ndarray, cs2: np.ndarray, n: int, points: list[int], st: Settings, z0: float = 0.0
           ) -> list[ChangePoint]:
    """The merge pass; ``z0`` is the log the series was taken relative to (for before/after in its units)."""
    pts = list(points)
    min_log = math.log1p(st.min_change)

    def stats(i: int) -> tuple[float, float, float, float, float, float]:
        lo = pts[i - 1] if i > 0 else 0
        hi = pts[i + 1] if i + 1 < len(pts) else n
        return _ttest(cs, cs2, lo, pts[i], hi, st.min_size, st.level)

    cur = [stats(i) for i in range(len(pts))]
    while pts:
        # weakest: the largest p (raw p breaks ties among too-short sides), else the smallest change
        j = max(range(len(pts)), key=lambda i: (cur[i][0], cur[i][1]))
        if cur[j][0] < st.alpha:
            j = min(range(len(pts)), key=lambda i: abs(cur[i][2]))
            if abs(cur[j][2]) >= min_log:
                break
        del pts[j], cur[j]
        for k in (j - 1, j):
            if 0 <= k < len(pts):
                cur[k] = stats(k)
    out: list[ChangePoint] = []
    for i, tau in enumerate(pts):
        pv, _, diff, half, ml, mr = cur[i]
        lo = pts[i - 1] if i > 0 else 0
        hi = pts[i + 1] if i + 1 < len(pts) else n
        out.append(ChangePoint(index=tau, before=math.exp(z0 + ml), after=math.exp(z0 + mr), ratio=math.exp(diff),
                               ci_low=math.exp(diff - half), ci_high=math.exp(diff + half), p_value=pv,
                               n_before=tau - lo, n_after=hi - tau))
    return out


# ---------------------------------------------------------------- public


def detect(values: Sequence[float] | np.ndarray, settings: Settings | None = None) -> list[ChangePoint]:
    """Change points of one series of positive values (seconds) in order; indices into ``values``.
    Non-positive or non-finite values are a ValueError: the caller drops failed runs first."""
    return detect_with_state(values, settings)[0]


def detect_with_state(values: Sequence[float] | np.ndarray, settings: Settings | None = None,
                      state: SplitState | None = None) -> tuple[list[ChangePoint], SplitState]:
    """:func:`detect`, reusing the split pass of an earlier analysis of the same series' first
    ``state.n`` values (only valid when those values are unchanged); returns the state for next time.
    The result is the same as a fresh analysis: the merge pass always runs over every weak point."""
    st = settings or Settings()
    st.check()
    x = np.asarray(values, dtype=np.float64)
    if x.size and not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError("change points need positive, finite values")
    if x.size < 2 * st.min_size:
        return [], SplitState(n=int(x.size), window=st.window)
    # relative to the first value (not the mean): a grown series keeps the same numbers for its old
    # windows; both the divergence and the t-test are blind to a shift
    z0 = math.log(x[0])
    z = np.log(x) - z0
    cs = np.concatenate([[0.0], np.cumsum(z)])
    cs2 = np.concatenate([[0.0], np.cumsum(z * z)])
    weak, new_state = _split(z, cs, cs2, st, state)
    return _merge(cs, cs2, z.size, weak, st, z0), new_state


@dataclass(frozen=True)
class GroupChangePoint:
    """A change point of one machine group's sub-series, with ``index`` into the full series."""

    group: Hashable
    index: int
    point: ChangePoint


def detect_by_group(values: Sequence[float] | np.ndarray, groups: Sequence[Hashable] | np.ndarray,
                    settings: Settings | None = None, states: dict[Hashable, SplitState] | None = None
                    ) -> tuple[list[GroupChangePoint], dict[Hashable, SplitState]]:
    """Change points of a series whose points belong to groups (machine fingerprints): each group's
    points, in order, form their own series, so a change of group is never a change point. Indices are
    positions in the full series (the first point of the group after the change). ``states``: each
    group's split state from an earlier analysis of a prefix of this series (see detect_with_state);
    the new states are returned."""
    x = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups, dtype=object) if not isinstance(groups, np.ndarray) else groups
    if g.shape != x.shape:
        raise ValueError("one group per value")
    out: list[GroupChangePoint] = []
    new_states: dict[Hashable, SplitState] = {}
    for u in dict.fromkeys(g.tolist()):  # groups in order of first appearance
        idx = np.flatnonzero(g == u)
        cps, new_states[u] = detect_with_state(x[idx], settings, (states or {}).get(u))
        for cp in cps:
            out.append(GroupChangePoint(group=u, index=int(idx[cp.index]), point=cp))
    out.sort(key=lambda c: c.index)
    return out, new_states


def segments(n: int, points: Sequence[int]) -> list[tuple[int, int]]:
    """The stable stretches [start, end) of a series of n points cut at ``points``."""
    cuts = [0, *sorted(points), n]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]

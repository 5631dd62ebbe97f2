"""compare's statistics: ratios of a metric with their CIs, the shift tests, Holm's correction and the
verdict of one case; the reduction of a record to what they need (:class:`Side`). Pure functions on
numbers. How they combine into a verdict: the package docstring (accelbench/compare/__init__.py)."""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

# scipy.stats costs a second to import: its few uses here (the binomial CDF of a short series, Wilcoxon's
# test of interleave rounds) import it where they run, so a gate of batch means never loads it.
from scipy import special as _special

from ..errors import UsageError
from ..results import CaseCore, CaseRecord, SummaryCore, Timing, TimingCore, TimingSummary

Verdict = Literal["slower", "faster", "unchanged", "inconclusive", "new", "missing", "failed", "skipped"]
VERDICTS: tuple[str, ...] = ("slower", "inconclusive", "failed", "missing", "new", "faster", "unchanged",
                             "skipped")
METRICS = ("median", "mean", "min")

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01
DEFAULT_LEVEL = 0.95
# A difference must exceed this many ticks of the coarser side's per-operation clock quantum: one tick
# of quantisation on each side can make two identical medians differ by up to two ticks.
FLOOR_TICKS = 2.0
# Clock resolution (seconds per sample) when a timing does not record one. CUDA events resolve about
# 0.5 us (CUDA Runtime API, cudaEventElapsedTime); perf_counter is ~1 ns on Linux, 100 ns on Windows.
DEFAULT_RESOLUTION_S = {"cuda": 5e-7, "cpu-perf_counter": 1e-7, "pytest-benchmark": 1e-7}
UNKNOWN_RESOLUTION_S = 1e-6
# Below this many samples on a side the order statistics bound nothing useful: the CI is (0, inf) and
# the verdict can only be unchanged (timer floor) or inconclusive.
MIN_SAMPLES_CI = 5
# Batch means: a run's samples in time order are cut into at most MAX_BLOCKS blocks of at least
# MIN_BLOCK_SAMPLES; with fewer than MIN_BLOCKS blocks the samples are treated as independent.
MAX_BLOCKS = 10
MIN_BLOCK_SAMPLES = 3
MIN_BLOCKS = 8  # 8 vs 8 blocks: the exact Mann-Whitney p can go down to 1/12870
MIN_ROUNDS = 3  # interleave rounds needed for the paired analysis


# ---------------------------------------------------------------- pure statistics


def rounds_needed(cases: int, alpha: float) -> int:
    """The fewest paired rounds with which any of ``cases`` cases can be called slower (or faster) at
    ``alpha``: the exact one-sided signed-rank p-value of n rounds that all agree is 2^-n, and Holm asks
    the most significant case for p < alpha / cases. Fewer rounds can only ever say inconclusive."""
    return max(MIN_ROUNDS, math.floor(math.log2(max(cases, 1) / alpha)) + 1)


def check_rounds(rounds: int, cases: int, alpha: float) -> None:
    """UsageError (before anything is measured) when ``rounds`` can never give a verdict for ``cases``."""
    need = rounds_needed(cases, alpha)
    if rounds < need:
        raise UsageError(f"--rounds {rounds}: with {cases} case(s) at --alpha {alpha:g} no case can ever be called "
                         f"slower ({rounds} rounds reach p = {2.0 ** -rounds:.2g} at best; Holm asks for p < "
                         f"{alpha / max(cases, 1):.2g}): give --rounds {need} or more")


def _sorted_median(s: np.ndarray) -> np.ndarray:
    """Medians along the last axis of an array sorted along it: np.median's values exactly (the middle
    value, or the mean of the two middle ones computed as (a + b) / 2 as np.mean does), without its
    ~20 us of overhead a call, which dominated a 100k-case compare. NaN-free input (callers filter)."""
    n = s.shape[-1]
    h = n // 2
    return s[..., h] if n % 2 else (s[..., h - 1] + s[..., h]) / 2.0


def _metric_rows(x: np.ndarray, metric: str) -> np.ndarray:
    """The metric along the last axis of ``x`` (non-empty, NaN-free): one numpy call for many cases."""
    if metric == "median":
        return _sorted_median(np.sort(x, axis=-1))
    if metric == "mean":
        return np.mean(x, axis=-1)
    if metric == "min":
        return np.min(x, axis=-1)
    raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")


def _metric(x: np.ndarray, metric: str) -> float:
    if not x.size and metric in METRICS:
        return float({"median": np.median, "mean": np.mean, "min": np.min}[metric](x))  # type: ignore[operator]
    return float(_metric_rows(x[None, :], metric)[0])


@functools.lru_cache(maxsize=64)
def _z_two_sided(level: float) -> float:
    """The normal quantile of a two-sided ``level`` interval: scipy.stats.norm.isf, which is -ndtri
    (cached: scipy's distribution machinery costs ~1 ms a call, once per case)."""
    return float(-_special.ndtri((1.0 - level) / 2.0))


@functools.lru_cache(maxsize=4096)
def _price_bonett_rank(n: int) -> tuple[int, float]:
    """The order-statistic rank c and its normal quantile z for n samples (depend on n alone: cached)."""
    from scipy import stats as _st

    c = max(1, int(round((n + 1) / 2.0 - math.sqrt(n))))
    p = float(_st.binom.cdf(c - 1, n, 0.5))
    return c, (float(-_special.ndtri(p)) if p > 0 else math.inf)


def log_median_var(samples: np.ndarray) -> float:
    """Price-Bonett variance of ln(median) from order statistics; inf when the sample is too small."""
    y = np.sort(np.asarray(samples, dtype=np.float64))
    n = y.size
    if n < MIN_SAMPLES_CI or y[0] <= 0:
        return math.inf
    c, z = _price_bonett_rank(n)
    if not z > 0:  # n = 2..3: the order statistics carry no coverage at all
        return math.inf
    width = math.log(y[n - c]) - math.log(y[c - 1])
    return (width / (2.0 * z)) ** 2


def _bootstrap_ratio(base: np.ndarray, new: np.ndarray, metric: str, level: float, n_boot: int, seed: int
                     ) -> tuple[float, float]:
    """Percentile bootstrap CI of metric(new)/metric(base)."""
    rng = np.random.default_rng(seed)
    # keep B*n bounded so a 5000-sample case costs a fraction of a second, not seconds
    b = int(max(200, min(n_boot, 4_000_000 // max(base.size, new.size, 1))))
    fn: Callable[..., Any] = {"median": np.median, "mean": np.mean, "min": np.min}[metric]  # type: ignore[assignment]
    rb = fn(base[rng.integers(0, base.size, (b, base.size))], axis=1)
    rn = fn(new[rng.integers(0, new.size, (b, new.size))], axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(rn / rb, [a, 1.0 - a])
    return float(lo), float(hi)


@dataclass(frozen=True, slots=True)
class RatioCI:
    """metric(new) / metric(base) with its CI at ``level``; ``method`` names how the CI was made."""

    ratio: float
    ci_low: float
    ci_high: float
    level: float
    method: str


def ratio_ci(base: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray, metric: str = "median",
             level: float = DEFAULT_LEVEL, *, n_boot: int = 2000, seed: int = 0) -> RatioCI:
    """Ratio of ``metric`` (new over base) and its CI treating samples as independent: Price-Bonett for
    the median, a percentile bootstrap for mean and min. Used for short sample series; see
    :func:`blocked_ratio` for the usual case."""
    xb = np.asarray(base, dtype=np.float64)
    xn = np.asarray(new, dtype=np.float64)
    if xb.size == 0 or xn.size == 0:
        return RatioCI(math.nan, math.nan, math.nan, level, "none")
    mb, mn = _metric(xb, metric), _metric(xn, metric)
    if mb <= 0 or mn <= 0:
        return RatioCI(math.nan, math.nan, math.nan, level, "none")
    ratio = mn / mb
    if metric == "median":
        var = log_median_var(xb) + log_median_var(xn)
        if not math.isfinite(var):
            return RatioCI(ratio, 0.0, math.inf, level, "price-bonett")
        h = _z_two_sided(level) * math.sqrt(var)
        return RatioCI(ratio, ratio * math.exp(-h), ratio * math.exp(h), level, "price-bonett")
    if xb.size < MIN_SAMPLES_CI or xn.size < MIN_SAMPLES_CI:
        return RatioCI(ratio, 0.0, math.inf, level, "bootstrap")
    lo, hi = _bootstrap_ratio(xb, xn, metric, level, n_boot, seed)
    return RatioCI(ratio, lo, hi, level, "bootstrap")


def shift_test(base: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """One-sided Mann-Whitney U p-values (new slower, new faster), exact for small samples."""
    xb = np.asarray(base, dtype=np.float64)
    xn = np.asarray(new, dtype=np.float64)
    ps, pf = _shift_test_rows(xb[None, :], xn[None, :])
    return float(ps[0]), float(pf[0])


def mannwhitney_one_sided(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.mannwhitneyu(x, y, alternative=...)`` p-values for "greater" and "less" at once, with
    scipy's own rules (method "auto": exact null distribution when a side has at most 8 values and there
    are no ties, else the normal approximation with tie and continuity corrections).

    Computed here because scipy's wrapper (input validation, nan policy, broadcasting) cost ~1 ms a call,
    two calls per case, which made a 100k-case gate take minutes; both alternatives also share one
    ranking. tests/test_compare.py checks the values against scipy's on random samples with and without
    ties, so a scipy that changed its method would be noticed. One case of :func:`_mannwhitney_rows`."""
    ps, pf = _mannwhitney_rows(np.asarray(x, dtype=np.float64)[None, :], np.asarray(y, dtype=np.float64)[None, :])
    return float(ps[0]), float(pf[0])


def _mannwhitney_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mannwhitney_one_sided` of every row of x (cases, n1) against the same row of y (cases, n2)."""
    c, n1 = x.shape
    n2 = y.shape[1]
    s = np.sort(np.concatenate([x, y], axis=1), axis=1)
    # average 1-based rank of each x: a value filling sorted positions [left, right) ranks (left+right+1)/2
    # (left: how many values are below it, right: how many are not above it; sums of halves are exact)
    left = (s[:, None, :] < x[:, :, None]).sum(axis=2)
    right = (s[:, None, :] <= x[:, :, None]).sum(axis=2)
    r1 = ((left + right + 1) / 2.0).sum(axis=1)
    u1 = r1 - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    ties = (s[:, 1:] == s[:, :-1]).any(axis=1)
    normal = ties | ((n1 > 8) and (n2 > 8))
    p1, p2 = np.empty(c), np.empty(c)
    if normal.any():
        sn = s[normal]
        n = n1 + n2
        starts = np.ones(sn.shape, dtype=bool)
        starts[:, 1:] = sn[:, 1:] != sn[:, :-1]
        first = np.flatnonzero(starts.ravel())
        size = np.diff(np.append(first, sn.size)).astype(np.float64)  # each group of equal values
        tie_term = np.bincount(first // n, weights=size ** 3 - size, minlength=sn.shape[0])  # integers: exact
        sd = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        mu = n1 * n2 / 2

        def p(u: np.ndarray) -> np.ndarray:
            d = u - mu - 0.5
            with np.errstate(divide="ignore", invalid="ignore"):
                z = -(d / sd)
            return np.where(sd > 0, _special.ndtr(z), np.where(d > 0, 0.0, 1.0))

        p1[normal], p2[normal] = p(u1[normal]), p(u2[normal])
    if not normal.all():
        tail = np.asarray(_mwu_upper_tail(min(n1, n2), max(n1, n2)))

        def q(u: np.ndarray) -> np.ndarray:
            i = u.astype(np.int64)  # U is a whole number without ties
            return np.where(i < tail.size, tail[np.minimum(i, tail.size - 1)], 0.0)

        exact = ~normal
        p1[exact], p2[exact] = q(u1[exact]), q(u2[exact])
    return np.minimum(1.0, np.maximum(0.0, p1)), np.minimum(1.0, np.maximum(0.0, p2))


def _shift_test_rows(base: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shift_test` of every row of base (cases, m) and new (cases, n)."""
    c = base.shape[0]
    if base.shape[1] < 2 or new.shape[1] < 2:
        return np.ones(c), np.ones(c)
    ps, pf = _mannwhitney_rows(new, base)
    same = (base == base[:, :1]).all(axis=1) & (new == new[:, :1]).all(axis=1) & (base[:, 0] == new[:, 0])
    ps[same], pf[same] = 1.0, 1.0
    return ps, pf


@functools.lru_cache(maxsize=256)
def _mwu_upper_tail(m: int, n: int) -> tuple[float, ...]:
    """P(U >= u) for u = 0..m*n under the null (no ties): the number of ways to reach each U, counted by
    the usual recurrence over the largest value's side, over C(m+n, m)."""
    # f[j][k][u]: arrangements of j values of one side and k of the other with statistic u; built by sizes
    counts = {(0, k): [1] for k in range(n + 1)}
    for j in range(1, m + 1):
        counts[(j, 0)] = [1]
        for k in range(1, n + 1):
            a, b = counts[(j - 1, k)], counts[(j, k - 1)]  # the largest value is from side one / side two
            out = [0] * (j * k + 1)
            for u, v in enumerate(a):
                out[u + k] += v
            for u, v in enumerate(b):
                out[u] += v
            counts[(j, k)] = out
    f = counts[(m, n)]
    total = math.comb(m + n, m)
    tail, acc = [0.0] * len(f), 0
    for u in range(len(f) - 1, -1, -1):
        acc += f[u]
        tail[u] = acc / total
    return tuple(tail)


def block_values(samples: Sequence[float] | np.ndarray, metric: str = "median",
                 rounds: Sequence[int] | np.ndarray | None = None) -> dict[int, float]:
    """The metric per block of consecutive samples: per interleave round when ``rounds`` is given, else
    ``min(MAX_BLOCKS, n // MIN_BLOCK_SAMPLES)`` equal batches in time order (batch means). Empty when there
    are too few samples for MIN_BLOCKS blocks."""
    x = np.asarray(samples, dtype=np.float64)
    if rounds is not None:
        r = np.asarray(rounds)
        return {int(k): _metric(x[r == k], metric) for k in np.unique(r)}
    return dict(enumerate(block_matrix(x[None, :], metric)[0].tolist()))


def block_matrix(x: np.ndarray, metric: str = "median") -> np.ndarray:
    """:func:`block_values` (batch means) of every row of ``x`` (cases, n samples in time order) at once:
    (cases, k) values, k = ``min(MAX_BLOCKS, n // MIN_BLOCK_SAMPLES)`` blocks cut as np.array_split cuts
    (the first ``n % k`` one sample longer); (cases, 0) when k < MIN_BLOCKS."""
    c, n = x.shape
    k = min(MAX_BLOCKS, n // MIN_BLOCK_SAMPLES)
    if k < MIN_BLOCKS:
        return np.empty((c, 0))
    q, extra = divmod(n, k)  # np.array_split's blocks: `extra` of q + 1 values, then k - extra of q
    cut = extra * (q + 1)
    parts = [x[:, :cut].reshape(c, extra, q + 1), x[:, cut:].reshape(c, k - extra, q)]
    return np.concatenate([_metric_rows(b, metric) for b in parts if b.shape[1]], axis=1)


def _walsh_ci(d: np.ndarray, level: float) -> tuple[float, float, float]:
    """Hodges-Lehmann estimate of the centre of ``d`` (median of Walsh averages) and the CI that inverts
    the signed-rank test (normal approximation for the rank k; (-inf, inf) when k < 1)."""
    n = d.size
    i, j = np.triu_indices(n)
    w = np.sort((d[i] + d[j]) / 2.0)
    est = float(_sorted_median(w))
    z = _z_two_sided(level)
    k = int(math.floor(n * (n + 1) / 4.0 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)))
    if k < 1:
        return est, -math.inf, math.inf
    return est, float(w[k - 1]), float(w[w.size - k])


def _shift_ci_rows(x: np.ndarray, y: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sample Hodges-Lehmann shift (median of y_j - x_i) and the CI inverting Mann-Whitney, for every
    row of x (cases, m) and y (cases, n)."""
    c, m = x.shape
    n = y.shape[1]
    diffs = np.sort((y[:, :, None] - x[:, None, :]).reshape(c, n * m), axis=1)
    est = _sorted_median(diffs)
    z = _z_two_sided(level)
    k = int(math.floor(m * n / 2.0 - z * math.sqrt(m * n * (m + n + 1) / 12.0)))
    if k < 1:
        return est, np.full(c, -math.inf), np.full(c, math.inf)
    return est, diffs[:, k - 1], diffs[:, m * n - k]


Stats = tuple["RatioCI", float, float, str]  # ratio with CI, p(slower), p(faster), the test's name
_ROWS = 4096  # cases per numpy call in the batched tests: bounds the (cases, m*n) differences' memory


def _blocked_rows(lb: np.ndarray, ln: np.ndarray, level: float) -> list[Stats]:
    """The unpaired :func:`blocked_ratio` of every row of log block values lb (cases, m), ln (cases, n)."""
    method = f"batch means, Hodges-Lehmann ({lb.shape[1]}+{ln.shape[1]} blocks)"
    out: list[Stats] = []
    for i in range(0, lb.shape[0], _ROWS):
        b, n = lb[i:i + _ROWS], ln[i:i + _ROWS]
        est, lo, hi = _shift_ci_rows(b, n, level)
        ps, pf = _shift_test_rows(b, n)
        out += [(RatioCI(math.exp(e), math.exp(lw), math.exp(h), level, method), p, f,
                 "Mann-Whitney U on log block values")
                for e, lw, h, p, f in zip(est.tolist(), lo.tolist(), hi.tolist(), ps.tolist(), pf.tolist(), strict=True)]
    return out


def blocked_ratio(base_blocks: Mapping[int, float], new_blocks: Mapping[int, float], level: float = DEFAULT_LEVEL,
                  paired: bool = False) -> tuple[RatioCI, float, float, str]:
    """Ratio, CI and one-sided p-values (slower, faster) from per-block values of the metric, on logs.

    Unpaired (separate runs, batch means): Mann-Whitney U on the log block values, the ratio exp(the
    Hodges-Lehmann shift) with the CI that inverts the test. Paired (interleave rounds): Wilcoxon's
    signed-rank test on the per-round log ratios, exp(their Hodges-Lehmann centre) and its CI. Rank tests,
    because a block or round hit by another process's burst is an outlier that a t statistic would let
    decide; exact p-values at these sizes (scipy's exact method), so no asymptotics are trusted at n=10."""
    if paired:
        common = sorted(set(base_blocks) & set(new_blocks))
        d = np.log([new_blocks[k] for k in common]) - np.log([base_blocks[k] for k in common])
        if d.size < MIN_ROUNDS:
            return RatioCI(math.nan, math.nan, math.nan, level, "none"), 1.0, 1.0, "none"
        est, lo, hi = _walsh_ci(d, level)
        if np.all(d == 0):
            ps = pf = 1.0
        else:
            from scipy import stats as _st

            ps = float(_st.wilcoxon(d, alternative="greater").pvalue)
            pf = float(_st.wilcoxon(d, alternative="less").pvalue)
        method, test = f"paired rounds, Hodges-Lehmann ({d.size} rounds)", "Wilcoxon signed-rank over rounds"
    else:
        lb = np.log(np.asarray(list(base_blocks.values()), dtype=np.float64))
        ln = np.log(np.asarray(list(new_blocks.values()), dtype=np.float64))
        if lb.size < 2 or ln.size < 2:
            return RatioCI(math.nan, math.nan, math.nan, level, "none"), 1.0, 1.0, "none"
        return _blocked_rows(lb[None, :], ln[None, :], level)[0]
    return RatioCI(math.exp(est), math.exp(lo), math.exp(hi), level, method), ps, pf, test


def case_stats(base: Side, new: Side, metric: str = "median", level: float = DEFAULT_LEVEL, paired: bool = False,
               seed: int = 0) -> Stats:
    """The ratio, its CI and one-sided p-values for one matched case, by the best method the data allow:
    paired interleave rounds > batch means > independent samples (short series) > summaries only.
    One case of :func:`cases_stats`."""
    return cases_stats([(base, new)], metric, level, paired, lambda _: seed)[0]


def cases_stats(pairs: Sequence[tuple[Side, Side]], metric: str = "median", level: float = DEFAULT_LEVEL,
                paired: bool = False, seed: Callable[[int], int] = lambda _: 0) -> list[Stats]:
    """:func:`case_stats` of many (base, new) cases at once, ``seed(i)`` the bootstrap seed of case i. The
    batch means of every side of one sample count, and the tests of every case of one pair of block
    counts, each take one numpy call (per case they cost ~0.3 ms: most of a 100k-case gate); interleave
    rounds, short series and summaries go case by case."""
    out: list[Stats | None] = [None] * len(pairs)
    todo: list[int] = []
    for i, (b, n) in enumerate(pairs):
        if b.n == 0 or n.n == 0:
            r, ps, pf = _summary_ratio(b, n, metric, level)
            out[i] = (r, ps, pf, "z (from summaries: no raw samples)")
            continue
        if paired and b.strata is not None and n.strata is not None:
            bb = block_values(b.samples, metric, b.strata)
            nb = block_values(n.samples, metric, n.strata)
            if len(set(bb) & set(nb)) >= MIN_ROUNDS:
                out[i] = blocked_ratio(bb, nb, level, paired=True)
                continue
        todo.append(i)
    blocks = [_blocks([pairs[i][w].samples for i in todo], metric) for w in (0, 1)]
    groups: dict[tuple[int, int], list[int]] = {}
    for j, i in enumerate(todo):
        kb, kn = blocks[0][j].size, blocks[1][j].size
        if kb and kn:
            groups.setdefault((kb, kn), []).append(j)
            continue
        b, n = pairs[i]
        r = ratio_ci(b.samples, n.samples, metric, level, seed=seed(i))
        ps, pf = shift_test(b.samples, n.samples)
        out[i] = (r, ps, pf, "mann-whitney (few samples: treated as independent)")
    for js in groups.values():
        lb = np.log(np.stack([blocks[0][j] for j in js]))
        ln = np.log(np.stack([blocks[1][j] for j in js]))
        for j, st in zip(js, _blocked_rows(lb, ln, level), strict=True):
            out[todo[j]] = st
    return [st for st in out if st is not None]


def _blocks(samples: Sequence[np.ndarray], metric: str) -> list[np.ndarray]:
    """The batch-means block values of each series (empty where there are too few samples), every series
    of one length in one :func:`block_matrix` call."""
    out: list[np.ndarray] = [np.empty(0)] * len(samples)
    by_n: dict[int, list[int]] = {}
    for i, x in enumerate(samples):
        if x.size // MIN_BLOCK_SAMPLES >= MIN_BLOCKS:
            by_n.setdefault(x.size, []).append(i)
    for idx in by_n.values():
        for i, row in zip(idx, block_matrix(np.stack([samples[i] for i in idx]), metric), strict=True):
            out[i] = row
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control under arbitrary dependence)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    step = np.where(np.isnan(scaled), 1.0, np.minimum(1.0, scaled))  # min(1, nan) is 1, as Python's min has it
    adj = np.empty(m)
    adj[order] = np.maximum.accumulate(np.maximum(step, 0.0))  # the running maximum of the step-down values
    return adj.tolist()


def decide(ratio: RatioCI, p_slower_adj: float, p_faster_adj: float, threshold: float, alpha: float,
           diff_s: float = math.inf, floor_s: float = 0.0) -> tuple[Verdict, str]:
    """The verdict for one matched case (rules in the module docstring) and a short reason."""
    if not math.isfinite(ratio.ratio):
        return "inconclusive", "no usable samples"
    up, down = 1.0 + threshold, 1.0 / (1.0 + threshold)
    if abs(diff_s) <= floor_s:
        return "unchanged", f"difference {abs(diff_s):.3g} s is within the timer's resolution ({floor_s:.3g} s)"
    if ratio.ratio > up and p_slower_adj < alpha and ratio.ci_low > 1.0:
        return "slower", f"+{(ratio.ratio - 1) * 100:.1f}% > {threshold * 100:g}% threshold, p={p_slower_adj:.2g}"
    if ratio.ratio < down and p_faster_adj < alpha and ratio.ci_high < 1.0:
        return "faster", f"{(ratio.ratio - 1) * 100:.1f}%, p={p_faster_adj:.2g}"
    if ratio.ci_low >= down and ratio.ci_high <= up:
        return "unchanged", f"CI within ±{threshold * 100:g}%"
    ci = f"CI {ratio.ci_low:.3f}..{ratio.ci_high:.3f}"
    if not (ratio.ci_low > 0 and math.isfinite(ratio.ci_high)):
        ci = "no CI: too few samples"  # (0, inf) bounds nothing; "-100% .. inf" read like a measurement
    if ratio.ratio > up or ratio.ratio < down:
        return "inconclusive", f"{(ratio.ratio - 1) * 100:+.1f}% beyond ±{threshold * 100:g}% but the evidence " \
                               f"does not hold (p={min(p_slower_adj, p_faster_adj):.2g}, {ci})"
    return "inconclusive", f"{ci} reaches beyond ±{threshold * 100:g}%" if ci.startswith("CI") else \
        f"{ci} to rule out ±{threshold * 100:g}%"


# ---------------------------------------------------------------- records -> sides


@dataclass(slots=True)
class Side:
    """One case's timing in one run, reduced to what the statistics need."""

    samples: np.ndarray  # seconds per operation
    strata: np.ndarray | None  # interleave round of each sample, or None
    value: float  # the chosen metric, seconds
    floor_s: float  # one clock quantum per operation
    n: int
    summary: TimingSummary | SummaryCore


def resolution_per_op_s(t: Timing | TimingCore) -> float:
    return _resolution_per_op_s(t.method, t.clock_resolution_s, t.inner_loops)


@functools.lru_cache(maxsize=1024)  # a run has a handful of methods and inner-loop counts
def _resolution_per_op_s(method: str, res: float | None, inner_loops: int) -> float:
    if res is None:
        res = next((v for k, v in DEFAULT_RESOLUTION_S.items() if method.startswith(k)), UNKNOWN_RESOLUTION_S)
    return float(res) / max(1, int(inner_loops or 1))


def timing_problem(t: Timing | TimingCore | None) -> str | None:
    """Why a successful record's headline timing cannot be compared (None when it can): every sample must
    be a finite, positive time. A summary-only import (pytest-benchmark without raw data) must have a
    finite, positive median, mean and min instead. Such a record is invalid, never "unchanged"."""
    if t is None:
        return None
    x = np.asarray(t.samples_s, dtype=np.float64)
    if x.size and np.isfinite(x).all() and (x > 0).all():
        return None
    if not t.samples_s:
        if t.stop_reason == "imported":
            vals = {k: getattr(t.summary, k) for k in ("median", "mean", "min")}
            bad = [k for k, v in vals.items() if v is None or not (math.isfinite(float(v)) and float(v) > 0)]
            return f"its summary's {', '.join(bad)} not a finite, positive time" if bad else None
        return "no samples"
    parts = [f"{n} {what}" for n, what in ((int(np.isnan(x).sum()), "NaN"), (int(np.isinf(x).sum()), "infinite"),
                                            (int((x <= 0).sum()), "zero or negative")) if n]
    return f"{', '.join(parts)} of {x.size} samples" if parts else None


def side_of(rec: CaseRecord | CaseCore, metric: str) -> Side | None:
    """One record's headline timing as a :class:`Side` (None without one); one case of :func:`sides_of`."""
    return sides_of([rec], metric)[0]


def sides_of(recs: Sequence[CaseRecord | CaseCore], metric: str) -> list[Side | None]:
    """:func:`side_of` of many records: the non-finite samples dropped, the metric of all samples; every
    record of one sample count in one numpy call."""
    return _table([r.timing for r in recs], metric)[0]


def timing_problems(timings: Sequence[Timing | TimingCore | None]) -> list[str | None]:
    """:func:`timing_problem` of many timings; the (usual) ones whose samples are all finite and positive
    are recognised together, every timing of one sample count in one numpy call."""
    return _table(timings, None)[1]


def sides_and_problems(recs: Sequence[CaseRecord | CaseCore], metric: str) -> tuple[list[Side | None], list[str | None]]:
    """:func:`sides_of` and :func:`timing_problems` of the same records, their samples made arrays once."""
    return _table([r.timing for r in recs], metric)


def _table(timings: Sequence[Timing | TimingCore | None], metric: str | None
           ) -> tuple[list[Side | None], list[str | None]]:
    sides: list[Side | None] = [None] * len(timings)
    problems: list[str | None] = [None] * len(timings)
    for n, idx in _by_length(timings).items():
        ts = [t for t in (timings[i] for i in idx) if t is not None]
        x = _matrix([t.samples_s for t in ts], n)
        fin = np.isfinite(x)
        good = np.asarray((fin & (x > 0)).all(axis=1)).tolist() if n else [False] * len(ts)
        for i, t, g in zip(idx, ts, good, strict=True):
            if not g:
                problems[i] = timing_problem(t)
        if metric is None:
            continue
        finite = np.asarray(fin.all(axis=1))
        values = _metric_rows(x[finite], metric).tolist() if n and finite.any() else []
        k = 0
        for i, t, row, f in zip(idx, ts, x, finite.tolist(), strict=True):
            if f and n:
                xs, value = row, values[k]
                k += 1
            else:
                xs = row[np.isfinite(row)]
                if xs.size:
                    value = _metric(xs, metric)
                else:
                    v = {"median": t.summary.median, "mean": t.summary.mean, "min": t.summary.min}[metric]
                    value = float(v) if v is not None else math.nan
            strata = None
            if t.rounds is not None and len(t.rounds) == n and xs.size == len(t.rounds):
                strata = np.asarray(t.rounds)
            sides[i] = Side(samples=xs, strata=strata, value=value, floor_s=resolution_per_op_s(t), n=int(xs.size),
                            summary=t.summary)
    return sides, problems


def _matrix(rows: list[Sequence[float]], n: int) -> np.ndarray:
    """Equal-length sample rows as one (rows, n) float64 matrix: packed rows (results.CaseCore's array('d'))
    joined as bytes in one step, lists through numpy."""
    if rows and isinstance(rows[0], array) and all(isinstance(r, array) and r.typecode == "d" for r in rows):
        return np.frombuffer(b"".join(cast("list[array[float]]", rows)), dtype=np.float64).reshape(len(rows), n)
    return np.array(rows, dtype=np.float64).reshape(len(rows), n)


def _by_length(timings: Sequence[Timing | TimingCore | None]) -> dict[int, list[int]]:
    """The indices of the timings (None left out) by their number of samples."""
    by: dict[int, list[int]] = {}
    for i, t in enumerate(timings):
        if t is not None:
            by.setdefault(len(t.samples_s), []).append(i)
    return by


def _summary_ratio(b: Side, n: Side, metric: str, level: float) -> tuple[RatioCI, float, float]:
    """Ratio, CI and z-test p-values from summaries alone (an import without raw data): the median's
    standard error from the IQR (sigma ~ IQR/1.349, se(median) ~ 1.2533 sigma/sqrt(n)), the mean's from
    the standard deviation. An approximation, named as such in the result."""

    def se_rel(s: Side) -> float:
        nn = float(s.summary.n or 0)
        if nn < 2 or not s.value > 0:
            return math.inf
        spread = s.summary.stdev if metric == "mean" else s.summary.iqr
        sd = math.nan if spread is None else (spread if metric == "mean" else spread / 1.349 * 1.2533)
        return sd / math.sqrt(nn) / s.value if math.isfinite(sd) else math.inf

    if not (b.value > 0 and n.value > 0):
        return RatioCI(math.nan, math.nan, math.nan, level, "none"), 1.0, 1.0
    r = n.value / b.value
    se = math.hypot(se_rel(b), se_rel(n))
    if not math.isfinite(se) or metric == "min":
        return RatioCI(r, 0.0, math.inf, level, "summary-only"), 1.0, 1.0
    if se == 0:
        return RatioCI(r, r, r, level, "summary-normal"), (0.0 if r > 1 else 1.0), (0.0 if r < 1 else 1.0)
    h = _z_two_sided(level) * se
    z = math.log(r) / se
    return RatioCI(r, r * math.exp(-h), r * math.exp(h), level, "summary-normal"), \
        float(_special.ndtr(-z)), float(_special.ndtr(z))  # norm.sf, norm.cdf

"""compare's statistics: ratios of a metric with their CIs, the shift tests, Holm's correction and the
verdict of one case; the reduction of a record to what they need (:class:`Side`). Pure functions on
numbers. How they combine into a verdict: the package docstring (accelbench/compare/__init__.py)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import special as _special
from scipy import stats as _st

from ..errors import UsageError
from ..results import CaseRecord, Timing, TimingSummary

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


def _sorted_median(s: np.ndarray) -> np.ndarray:
    """Medians along the last axis of an array sorted along it: np.median's values exactly (the middle
    value, or the mean of the two middle ones computed as (a + b) / 2 as np.mean does), without its
    ~20 us of overhead a call, which dominated a 100k-case compare. NaN-free input (callers filter)."""
    n = s.shape[-1]
    h = n // 2
    return s[..., h] if n % 2 else (s[..., h - 1] + s[..., h]) / 2.0


def _metric(x: np.ndarray, metric: str) -> float:
    if metric == "median":
        return float(_sorted_median(np.sort(x))) if x.size else float(np.median(x))
    if metric == "mean":
        return float(np.mean(x))
    if metric == "min":
        return float(np.min(x))
    raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")


@functools.lru_cache(maxsize=64)
def _z_two_sided(level: float) -> float:
    """The normal quantile of a two-sided ``level`` interval (cached: scipy's distribution machinery costs
    ~1 ms a call, once per case)."""
    return float(_st.norm.isf((1.0 - level) / 2.0))


@functools.lru_cache(maxsize=4096)
def _price_bonett_rank(n: int) -> tuple[int, float]:
    """The order-statistic rank c and its normal quantile z for n samples (depend on n alone: cached)."""
    c = max(1, int(round((n + 1) / 2.0 - math.sqrt(n))))
    p = float(_st.binom.cdf(c - 1, n, 0.5))
    return c, (float(_st.norm.isf(p)) if p > 0 else math.inf)


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


@dataclass(frozen=True)
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
    if xb.size < 2 or xn.size < 2:
        return 1.0, 1.0
    if np.all(xb == xb[0]) and np.all(xn == xn[0]) and xb[0] == xn[0]:
        return 1.0, 1.0
    return mannwhitney_one_sided(xn, xb)


def mannwhitney_one_sided(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.mannwhitneyu(x, y, alternative=...)`` p-values for "greater" and "less" at once, with
    scipy's own rules (method "auto": exact null distribution when a side has at most 8 values and there
    are no ties, else the normal approximation with tie and continuity corrections).

    Computed here because scipy's wrapper (input validation, nan policy, broadcasting) cost ~1 ms a call,
    two calls per case, which made a 100k-case gate take minutes; both alternatives also share one
    ranking. tests/test_compare.py checks the values against scipy's on random samples with and without
    ties, so a scipy that changed its method would be noticed."""
    n1, n2 = int(x.size), int(y.size)
    s = np.sort(np.concatenate([x, y]))
    # average 1-based rank of each x: a value filling sorted positions [left, right) ranks (left+right+1)/2
    r1 = float(((np.searchsorted(s, x, "left") + np.searchsorted(s, x, "right") + 1) / 2.0).sum())
    u1 = r1 - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    ties = bool((s[1:] == s[:-1]).any())
    if (n1 > 8 and n2 > 8) or ties:
        n = n1 + n2
        edges = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1], [True]]))
        c = np.diff(edges).astype(np.float64)  # the size of each group of equal values
        tie_term = float((c ** 3 - c).sum())
        sd = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        mu = n1 * n2 / 2

        def p(u: float) -> float:
            return float(_special.ndtr(-((u - mu - 0.5) / sd))) if sd > 0 else (0.0 if u - mu - 0.5 > 0 else 1.0)
    else:
        tail = _mwu_upper_tail(min(n1, n2), max(n1, n2))

        def p(u: float) -> float:
            return tail[int(u)] if int(u) < len(tail) else 0.0
    return min(1.0, max(0.0, p(u1))), min(1.0, max(0.0, p(u2)))


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
    k = min(MAX_BLOCKS, x.size // MIN_BLOCK_SAMPLES)
    if k < MIN_BLOCKS:
        return {}
    if metric == "median":  # the default: np.median along rows, not once per block (a 100k-case gate)
        q, extra = divmod(x.size, k)  # np.array_split's blocks: `extra` of q + 1 values, then k - extra of q
        cut = extra * (q + 1)
        head = _sorted_median(np.sort(x[:cut].reshape(extra, q + 1), axis=1)) if extra else np.empty(0)
        rest = _sorted_median(np.sort(x[cut:].reshape(k - extra, q), axis=1))
        return dict(enumerate(np.concatenate([head, rest]).tolist()))
    return {i: _metric(b, metric) for i, b in enumerate(np.array_split(x, k))}


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


def _shift_ci(x: np.ndarray, y: np.ndarray, level: float) -> tuple[float, float, float]:
    """Two-sample Hodges-Lehmann shift (median of y_j - x_i) and the CI inverting Mann-Whitney."""
    diffs = np.sort((y[:, None] - x[None, :]).ravel())
    m, n = x.size, y.size
    est = float(_sorted_median(diffs))
    z = _z_two_sided(level)
    k = int(math.floor(m * n / 2.0 - z * math.sqrt(m * n * (m + n + 1) / 12.0)))
    if k < 1:
        return est, -math.inf, math.inf
    return est, float(diffs[k - 1]), float(diffs[diffs.size - k])


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
            ps = float(_st.wilcoxon(d, alternative="greater").pvalue)
            pf = float(_st.wilcoxon(d, alternative="less").pvalue)
        method, test = f"paired rounds, Hodges-Lehmann ({d.size} rounds)", "Wilcoxon signed-rank over rounds"
    else:
        lb = np.log(np.asarray(list(base_blocks.values()), dtype=np.float64))
        ln = np.log(np.asarray(list(new_blocks.values()), dtype=np.float64))
        if lb.size < 2 or ln.size < 2:
            return RatioCI(math.nan, math.nan, math.nan, level, "none"), 1.0, 1.0, "none"
        est, lo, hi = _shift_ci(lb, ln, level)
        ps, pf = shift_test(lb, ln)
        method = f"batch means, Hodges-Lehmann ({lb.size}+{ln.size} blocks)"
        test = "Mann-Whitney U on log block values"
    return RatioCI(math.exp(est), math.exp(lo), math.exp(hi), level, method), ps, pf, test


def case_stats(base: Side, new: Side, metric: str = "median", level: float = DEFAULT_LEVEL, paired: bool = False,
               seed: int = 0) -> tuple[RatioCI, float, float, str]:
    """The ratio, its CI and one-sided p-values for one matched case, by the best method the data allow:
    paired interleave rounds > batch means > independent samples (short series) > summaries only."""
    if base.n == 0 or new.n == 0:
        r, ps, pf = _summary_ratio(base, new, metric, level)
        return r, ps, pf, "z (from summaries: no raw samples)"
    if paired and base.strata is not None and new.strata is not None:
        bb = block_values(base.samples, metric, base.strata)
        nb = block_values(new.samples, metric, new.strata)
        if len(set(bb) & set(nb)) >= MIN_ROUNDS:
            return blocked_ratio(bb, nb, level, paired=True)
    bb, nb = block_values(base.samples, metric), block_values(new.samples, metric)
    if bb and nb:
        return blocked_ratio(bb, nb, level, paired=False)
    r = ratio_ci(base.samples, new.samples, metric, level, seed=seed)
    ps, pf = shift_test(base.samples, new.samples)
    return r, ps, pf, "mann-whitney (few samples: treated as independent)"


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control under arbitrary dependence)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return [float(x) for x in adj]


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


@dataclass
class Side:
    """One case's timing in one run, reduced to what the statistics need."""

    samples: np.ndarray  # seconds per operation
    strata: np.ndarray | None  # interleave round of each sample, or None
    value: float  # the chosen metric, seconds
    floor_s: float  # one clock quantum per operation
    n: int
    summary: TimingSummary


def resolution_per_op_s(t: Timing) -> float:
    res = t.clock_resolution_s
    if res is None:
        res = next((v for k, v in DEFAULT_RESOLUTION_S.items() if t.method.startswith(k)), UNKNOWN_RESOLUTION_S)
    return float(res) / max(1, int(t.inner_loops or 1))


def timing_problem(t: Timing | None) -> str | None:
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


def side_of(rec: CaseRecord, metric: str) -> Side | None:
    t = rec.timing
    if t is None:
        return None
    x = np.asarray(t.samples_s, dtype=np.float64)
    x = x[np.isfinite(x)]
    strata = None
    if t.rounds is not None and len(t.rounds) == len(t.samples_s) and x.size == len(t.rounds):
        strata = np.asarray(t.rounds)
    if x.size:
        value = _metric(x, metric)
    else:
        v = {"median": t.summary.median, "mean": t.summary.mean, "min": t.summary.min}[metric]
        value = float(v) if v is not None else math.nan
    return Side(samples=x, strata=strata, value=value, floor_s=resolution_per_op_s(t), n=int(x.size),
                summary=t.summary)


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
    return RatioCI(r, r * math.exp(-h), r * math.exp(h), level, "summary-normal"), float(_st.norm.sf(z)), \
        float(_st.norm.cdf(z))

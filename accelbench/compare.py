"""Compare runs: match cases, estimate time ratios with confidence intervals, decide verdicts, gate.

Pure logic on numbers and records; the only I/O is :func:`load_side`, which reads a run directory (or a
pytest-benchmark JSON through :mod:`accelbench.exports`).

How a verdict is reached (``ratio`` = new / base of the chosen metric, > 1 means slower)
------------------------------------------------------------------------------------------
1. The unit of evidence is a block of consecutive samples, not a sample. Measured on a shared machine,
   samples taken within a few tens of milliseconds resemble each other and the next block can sit 10-30%
   away (other tenants, frequency, cache state); treating samples as independent makes every such shift
   "significant" and a gate built on it cries wolf. So each side's samples are cut, in time order, into
   up to 10 blocks (batch means, the standard remedy for autocorrelated series), the metric (median by
   default) is taken per block, and the comparison is a Mann-Whitney U test on the log block values with
   the Hodges-Lehmann shift and its rank-inversion CI (rank statistics: a block hit by another process's
   burst is an outlier, and must not decide). For runs
   interleaved by ``run --baseline --interleave`` the blocks are the rounds (on the CPU each round sets
   both sides up afresh and times them alternately, pair by pair): the per-round log ratio of the metric
   is one observation and Wilcoxon's signed-rank test over rounds decides (exact p-values; the estimate is
   the rounds' Hodges-Lehmann centre with its CI). The round, not the sample or the pair, is the
   independent unit: a round's set-up (allocation, page placement) can favour one side for the whole
   round, so pairs of one round share it; a test counting pairs as independent called such A/A
   differences significant when we measured it.
   On a machine where other processes preempt ours, samples are either clean or inflated by a time
   slice; ``--metric min`` is then far more stable than the median (preemption only ever adds time).
   Short series (fewer than 24 samples a side) fall back to treating samples as independent: Price &
   Bonett's distribution-free CI for a ratio of medians (J. Stat. Comput. Simul. 72(2), 2002; from order
   statistics, O(n)) or a percentile bootstrap for mean/min, and a one-sided Mann-Whitney U test, exact at
   small n, so tiny samples can rarely reach significance: they come out inconclusive.
   Imports without raw samples use a normal approximation from the summary (named as such).
2. Multiplicity: the one-sided p-values of all compared cases are adjusted with Holm's step-down
   procedure. Holm, not Benjamini-Hochberg, because a CI gate makes one decision for the whole change
   ("does this PR regress anything?"): the error users feel is a red build on a harmless change, i.e. the
   family-wise error rate, which Holm controls under any dependence between cases (cases of one run share
   the machine's state, so they are dependent), while BH controls the expected share of false discoveries
   among discoveries and needs positive dependence for that.
3. Decision per case, with threshold t (per workload from the suite, else the command's):
   slower       ratio > 1+t  AND Holm-adjusted p(slower) < alpha AND CI low > 1
   faster       ratio < 1/(1+t) AND Holm-adjusted p(faster) < alpha AND CI high < 1
   unchanged    the CI lies inside [1/(1+t), 1+t] (a change as large as t is ruled out), or the
                difference of the metric is within the timer's resolution floor (never counts)
   inconclusive anything else: the noise is too large to tell
   Only ``slower`` fails the gate; a faster case never does.

What no within-run statistic can see: drift between two runs taken minutes apart. Only the threshold
stands against it, and on a heavily shared machine it is not enough (measured: 6-11 false alarms per 100
case-comparisons between separate runs at load average 6-10 on 2 cores, none when interleaved);
``accelbench run --baseline ... --interleave`` removes it (see interleave.py). The measurements:
benchmarks/gate_error_rates.py and docs/ci.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import special as _special
from scipy import stats as _st

from . import drift as drift_mod
from .errors import ResultsError, UsageError
from .report.format import fmt_change, fmt_time
from .results import CaseRecord, RunRecord, Timing, TimingSummary, read_run, unfinished_note

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


# ---------------------------------------------------------------- matching


def case_threshold(rec: CaseRecord, default: float) -> float:
    th = rec.thresholds or {}
    v = th.get("regression", th.get(rec.workload))
    return float(v) if v is not None else default


# ---------------------------------------------------------------- machine fingerprint


# Keys whose values change from moment to moment or name a location rather than a capability.
VOLATILE_KEYS = frozenset({
    "volatile", "hostname", "node", "executable", "filepath", "uuid", "nvml", "pci_bus_id", "datetime",
    "hz_actual", "hz_actual_friendly", "pid", "started_at", "load_avg",
})
VOLATILE_RE = re.compile(r"(^|_)(free|available|used|temperature|temp|util|utilization|uptime|timestamp|"
                         r"current)(_|$)")


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            ks = str(k)
            if ks in VOLATILE_KEYS or VOLATILE_RE.search(ks):
                continue
            out.update(_flatten(v, f"{prefix}.{ks}" if prefix else ks))
    elif isinstance(obj, list) and obj and all(isinstance(v, Mapping) for v in obj):
        seen: dict[str, int] = {}
        for i, v in enumerate(obj):
            ident = _library_identity(v)
            if ident is None:
                out.update(_flatten(v, f"{prefix}[{i}]"))
                continue
            seen[ident] = seen.get(ident, 0) + 1
            out.update(_flatten(v, f"{prefix}[{ident}{'' if seen[ident] == 1 else f'#{seen[ident]}'}]"))
    else:
        out[prefix] = obj
    return out


def _library_identity(item: Mapping[str, Any]) -> str | None:
    """A loaded library's identity in a fingerprint list (threadpoolctl's BLAS entries): its internal API
    and file name. threadpoolctl lists NumPy's and SciPy's OpenBLAS in whatever order they were loaded, so
    matching by list position compared one library's version with the other's. The directory is left out:
    it names where the environment lives, not what runs."""
    api = item.get("internal_api")
    if not api:
        return None
    return f"{api}:{Path(str(item.get('filepath') or '')).name}"


@dataclass(frozen=True)
class EnvDiff:
    key: str
    base: Any
    new: Any


def machine_diff(base_env: Mapping[str, Any], new_env: Mapping[str, Any]) -> list[EnvDiff]:
    """Differences between two fingerprints that matter for speed (GPU, driver, CUDA, CPU, BLAS, library
    versions, thread settings); volatile fields (clocks, free memory, load, temperatures, host names,
    paths) never count."""
    a, b = _flatten(base_env), _flatten(new_env)
    return [EnvDiff(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def machine_fingerprint(env: Mapping[str, Any]) -> str:
    """A short hash of what :func:`machine_diff` compares: two fingerprints hash alike exactly when
    machine_diff finds no difference between them (keys holding None count as absent, as there)."""
    flat = {k: v for k, v in _flatten(env).items() if v is not None}
    text = json.dumps(flat, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- comparing runs


@dataclass
class CaseComparison:
    key: str
    name: str
    workload: str
    backend: str
    verdict: Verdict
    reason: str = ""
    base_value_s: float | None = None
    new_value_s: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str = ""
    test: str = ""
    p_slower: float | None = None
    p_faster: float | None = None
    p_slower_adj: float | None = None
    p_faster_adj: float | None = None
    threshold: float | None = None
    n_base: int = 0
    n_new: int = 0
    floor_s: float = 0.0
    definition_changed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return self.verdict == "slower" and not self.definition_changed

    def one_line(self) -> str:
        if self.ratio is not None and self.ci_low is not None and self.ci_high is not None:
            return (f"{self.name} @{self.backend}: {fmt_time(self.base_value_s)} -> {fmt_time(self.new_value_s)} "
                    f"({fmt_change(self.ratio)}, CI {fmt_change(self.ci_low)}..{fmt_change(self.ci_high)}, "
                    f"threshold {self.threshold * 100 if self.threshold else 0:g}%, p={self.p_slower_adj:.2g})")
        return f"{self.name} @{self.backend}: {self.verdict} {self.reason}".rstrip()


@dataclass
class Speedup:
    """CPU time over GPU time for one case within one run (> 1: the GPU is faster)."""

    key: str
    name: str
    speedup: float
    ci_low: float
    ci_high: float
    gpu_s: float
    cpu_s: float
    method: str


@dataclass
class CompareOptions:
    threshold: float = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    metric: str = "median"
    level: float = DEFAULT_LEVEL
    ignore_params: tuple[str, ...] = ()
    n_boot: int = 2000

    def check(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"--metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"--alpha {self.alpha}: must be in (0, 1)")
        if not 0 < self.threshold <= 10:
            raise UsageError(f"--threshold {self.threshold}: must be a fraction in (0, 10] (0.05 = 5%)")
        if not 0 < self.level < 1:
            raise UsageError(f"level {self.level}: must be in (0, 1)")


@dataclass
class LoadedRun:
    run: RunRecord
    cases: list[CaseRecord]
    source: str
    kind: str = "accelbench"  # or "pytest-benchmark"


@dataclass
class Comparison:
    base: str
    new: str
    options: CompareOptions
    cases: list[CaseComparison]
    machine: list[EnvDiff]
    machine_checked: bool
    interleaved: bool
    base_suite: str = ""
    new_suite: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. a run that never finished
    drift: dict[str, Any] | None = None  # separate runs: accelbench.drift's assessment

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.regressed]

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in VERDICTS}
        for c in self.cases:
            out[c.verdict] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return v

        return {
            "base": self.base, "new": self.new, "options": asdict(self.options),
            "interleaved": self.interleaved, "machine_checked": self.machine_checked,
            "machine_differences": [asdict(d) for d in self.machine],
            "counts": self.counts(), "regressions": [c.key for c in self.regressions], "warnings": self.warnings,
            "drift": self.drift,
            "cases": [{k: clean(v) for k, v in asdict(c).items()} for c in self.cases],
        }


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _interleave_session(run: RunRecord) -> str | None:
    il = run.options.get("interleave") if isinstance(run.options, dict) else None
    return str(il.get("session")) if isinstance(il, dict) and il.get("session") else None


CaseStats = Callable[[str, "Side", "Side"], tuple[RatioCI, float, float, str]]


def _quick(run: RunRecord) -> bool:
    return bool(run.options.get("quick")) if isinstance(run.options, dict) else False


def compare_runs(base: LoadedRun, new: LoadedRun, opts: CompareOptions | None = None,
                 stats: CaseStats | None = None) -> Comparison:
    """Match every case of ``base`` and ``new`` and give each a verdict; nothing is dropped silently.
    ``stats(key, base_side, new_side)`` replaces :func:`case_stats` where the base is not one run (the
    history gate: a segment of runs, one value per run)."""
    opts = opts or CompareOptions()
    opts.check()
    ign = tuple(opts.ignore_params)
    paired = _interleave_session(base.run) is not None and _interleave_session(base.run) == \
        _interleave_session(new.run)

    def index(cases: list[CaseRecord], which: str) -> dict[str, CaseRecord]:
        out: dict[str, CaseRecord] = {}
        for c in cases:
            k = c.key.match_key(ign)
            if k in out:  # (a repeated case id is refused on reading, with both line numbers)
                raise ResultsError(f"{which}: cases {out[k].case_id} and {c.case_id} share the identity {k}"
                                   + (" once the ignored parameters are dropped" if ign else ""))
            out[k] = c
        return out

    bi, ni = index(base.cases, base.source), index(new.cases, new.source)
    results: list[CaseComparison] = []
    tests: list[tuple[CaseComparison, float, float, RatioCI, float]] = []
    for key in list(bi) + [k for k in ni if k not in bi]:
        b, n = bi.get(key), ni.get(key)
        rec = n or b
        assert rec is not None
        cc = CaseComparison(key=key, name=rec.name, workload=rec.workload, backend=rec.backend,
                            verdict="unchanged", threshold=case_threshold(rec, opts.threshold))
        results.append(cc)
        if b is not None and n is not None and b.status == "skipped" and n.status == "skipped":
            cc.verdict, cc.reason = "skipped", f"skipped on both sides: {n.message}"  # e.g. no GPU either time
            continue
        if b is None or (b.status == "skipped" and n is not None and n.status != "skipped"):
            cc.verdict, cc.reason = "new", "not in base" if b is None else f"skipped in base: {b.message}"
            continue
        if n is None or n.status == "skipped":
            cc.verdict = "missing"
            cc.reason = "not in new" if n is None else f"skipped in new: {n.message}"
            continue
        if b.status != "ok" or n.status != "ok":
            which = "base" if b.status != "ok" else "new"
            bad = b if which == "base" else n
            cc.verdict, cc.reason = "failed", f"{bad.status} in {which}: {bad.message}"
            continue
        invalid = [(w, why) for w, r in (("base", b), ("new", n)) if (why := timing_problem(r.timing))]
        if invalid:
            cc.verdict = "failed"
            cc.reason = "; ".join(f"invalid record in {w}: {why}: a time must be finite and positive"
                                  for w, why in invalid)
            continue
        if b.definition_hash and n.definition_hash and b.definition_hash != n.definition_hash:
            ignored_diff = {k for k in ign if b.params.get(k) != n.params.get(k)}
            if ignored_diff:
                cc.notes.append("ignored parameters differ: " + ", ".join(
                    f"{k} {b.params.get(k)!r} -> {n.params.get(k)!r}" for k in sorted(ignored_diff)))
            else:
                cc.definition_changed = True
                cc.notes.append("definition changed (workload definition or timing options): not gated")
        sb, sn = side_of(b, opts.metric), side_of(n, opts.metric)
        if sb is None or sn is None or not (sb.value > 0 and sn.value > 0):
            cc.verdict, cc.reason = "inconclusive", "no timing in " + ("base" if sb is None else "new")
            continue
        cc.base_value_s, cc.new_value_s, cc.n_base, cc.n_new = sb.value, sn.value, sb.n, sn.n
        cc.floor_s = FLOOR_TICKS * max(sb.floor_s, sn.floor_s)
        r, ps, pf, test = stats(key, sb, sn) if stats else case_stats(sb, sn, opts.metric, opts.level,
                                                                      paired=paired, seed=_seed(key))
        cc.ratio, cc.ci_low, cc.ci_high, cc.ci_method, cc.test = r.ratio, r.ci_low, r.ci_high, r.method, test
        cc.p_slower, cc.p_faster = ps, pf
        tests.append((cc, ps, pf, r, sn.value - sb.value))
    # separate runs: see accelbench.drift (a paired session and the history gate's per-run segment already
    # measure the between-run scatter)
    drift = None if paired or stats is not None else drift_mod.assess([t[0].workload for t in tests], [
        drift_mod.Interval(t[3].ratio, t[3].ci_low, t[3].ci_high) for t in tests],
        [t[0].threshold or opts.threshold for t in tests], opts.level)
    if drift is not None:
        for (cc, *_), a in zip(tests, drift.cases, strict=True):
            cc.ci_low, cc.ci_high = a.ci_low, a.ci_high
            if abs(a.shift - 1) >= 0.005:
                cc.notes.append(f"judged against the other workloads' shift of {fmt_change(a.shift)} "
                                f"({fmt_change(a.corrected)} relative to it)")
        # the drift can only weaken the within-run evidence: the larger of the two p-values counts
        tests = [(cc, max(ps, a.p_slower), max(pf, a.p_faster),
                  RatioCI(a.corrected, a.ci_low / a.shift, a.ci_high / a.shift, r.level,
                          r.method + " + between-run scatter"), diff)
                 for (cc, ps, pf, r, diff), a in zip(tests, drift.cases, strict=True)]
    adj_s = holm([t[1] for t in tests])
    adj_f = holm([t[2] for t in tests])
    for i, ((cc, _ps, _pf, r, diff), a_s, a_f) in enumerate(zip(tests, adj_s, adj_f, strict=True)):
        cc.p_slower_adj, cc.p_faster_adj = a_s, a_f
        cc.verdict, cc.reason = decide(r, a_s, a_f, cc.threshold or opts.threshold, opts.alpha, diff, cc.floor_s)
        if drift is not None:
            cc.verdict, cc.reason = drift.final(i, cc.verdict, cc.reason, cc.ratio or math.nan)  # type: ignore[assignment]
        if _quick(base.run) or _quick(new.run):
            cc.verdict, cc.reason = drift_mod.smoke(cc.verdict, cc.reason)  # type: ignore[assignment]
    order = {v: i for i, v in enumerate(VERDICTS)}
    results.sort(key=lambda c: (order[c.verdict], -(c.ratio or 0) if c.verdict != "faster" else (c.ratio or 0)))
    be, ne = base.run.environment or {}, new.run.environment or {}
    checked = bool(be) and bool(ne)
    warnings = [w for w in (unfinished_note(base.run, base.source), unfinished_note(new.run, new.source)) if w]
    return Comparison(base=base.source, new=new.source, options=opts, cases=results,
                      machine=machine_diff(be, ne) if checked else [], machine_checked=checked,
                      interleaved=paired, base_suite=base.run.suite, new_suite=new.run.suite, warnings=warnings,
                      drift=drift.to_dict() if drift is not None else None)


def speedups(run: LoadedRun | Sequence[CaseRecord], metric: str = "median", level: float = DEFAULT_LEVEL
             ) -> list[Speedup]:
    """GPU-vs-CPU speedup (CPU time / GPU time) with its CI for every case measured on both backends: the
    one definition every reporter shows (terminal, Markdown, ``compare RUN``, HTML), by the method compare
    uses for two runs (batch means and Hodges-Lehmann; see the module docstring), largest first."""
    cases = run.cases if isinstance(run, LoadedRun) else run
    by: dict[str, dict[str, CaseRecord]] = {}
    for c in cases:
        if c.status == "ok" and c.timing is not None and timing_problem(c.timing) is None:
            by.setdefault(c.key.pair_key, {})[c.backend] = c
    out = []
    for key, d in by.items():
        if "gpu" not in d or "cpu" not in d:
            continue
        sg, sc = side_of(d["gpu"], metric), side_of(d["cpu"], metric)
        if sg is None or sc is None or not sg.n or not sc.n:
            continue
        r, _, _, _ = case_stats(sg, sc, metric, level, seed=_seed(key))
        out.append(Speedup(key=key, name=d["gpu"].name, speedup=r.ratio, ci_low=r.ci_low, ci_high=r.ci_high,
                           gpu_s=sg.value, cpu_s=sc.value, method=r.method))
    out.sort(key=lambda s: -s.speedup)
    return out


# ---------------------------------------------------------------- loading


def load_side(path: str | Path) -> LoadedRun:
    """A run directory (or its run.json / cases.jsonl, or a results root: its newest run), or a
    pytest-benchmark JSON file (imported as a run)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".json" and p.name != "run.json":
        from .exports import import_pytest_benchmark

        run, cases = import_pytest_benchmark(p)
        return LoadedRun(run=run, cases=cases, source=str(p), kind="pytest-benchmark")
    run, cases = read_run(p)
    return LoadedRun(run=run, cases=cases, source=str(p))


# ---------------------------------------------------------------- formatting


def parse_fraction(text: str) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05; a bare number above 1 is read as a percentage ('5' -> 0.05)."""
    t = str(text).strip()
    try:
        if t.endswith("%"):
            return float(t[:-1]) / 100.0
        v = float(t)
    except ValueError:
        raise UsageError(f"{text!r} is not a fraction or a percentage (e.g. 5% or 0.05)") from None
    return v / 100.0 if v > 1 else v


# ---------------------------------------------------------------- gate


@dataclass
class GateResult:
    comparison: Comparison
    refused: str | None  # a reason the gate would not decide (different machines)

    @property
    def failed(self) -> bool:
        return bool(self.comparison.regressions)


def check_machines(cmp: Comparison, allow_different_machines: bool, kept: str = "") -> None:
    """The one rule for judging runs of two machines (``gate`` and ``run --baseline``): refused, exit 2,
    unless allowed. ``kept`` says where a run that was just measured stays."""
    if cmp.machine and not allow_different_machines:
        diffs = "; ".join(f"{d.key}: {d.base!r} -> {d.new!r}" for d in cmp.machine[:6])
        more = f" (+{len(cmp.machine) - 6} more)" if len(cmp.machine) > 6 else ""
        raise ResultsError(f"the runs come from different machines or software ({diffs}{more}); "
                           "timings are not comparable. Pass --allow-different-machines to compare anyway"
                           + (f"; the new run is kept in {kept}" if kept else ""))


def gate(base: str | Path, new: str | Path, opts: CompareOptions | None = None,
         allow_different_machines: bool = False) -> GateResult:
    """Compare two runs and decide; raises ResultsError (exit 2) when the machines differ and that was
    not allowed, or when there is nothing to compare."""
    a, b = load_side(base), load_side(new)
    cmp = compare_runs(a, b, opts)
    check_machines(cmp, allow_different_machines)
    if not any(c.ratio is not None for c in cmp.cases):
        raise ResultsError(f"no case of {base} could be compared with {new} (no matching successful cases)")
    return GateResult(comparison=cmp, refused=None)

"""Pure statistics on samples (seconds). No I/O; tested on known numbers.

The median's confidence interval is distribution-free: the order statistics whose ranks come from the
binomial distribution Bin(n, 1/2) (the classical sign-test interval), so heavy tails and outliers do not
make it lie the way a mean +- t*sd interval would.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import bdtr as _bdtr  # the binomial CDF; scipy.stats costs seconds to import in a worker


@dataclass(frozen=True)
class Summary:
    """Summary of samples; every time field is in seconds, ``cv`` and ``rel_ci_halfwidth`` are fractions."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    stdev: float
    q1: float
    q3: float
    iqr: float
    cv: float
    ci_low: float
    ci_high: float
    ci_level: float
    rel_ci_halfwidth: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# Below this many samples the order statistics give no 95% interval of the median: median_ci returns the
# range [min, max] instead, which reporters show as "too few samples", never as an interval.
MIN_CI_SAMPLES = 6


def median_ci(samples: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics. With n < MIN_CI_SAMPLES the interval is
    [min, max]."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 0:
        return (math.nan, math.nan)
    if n < MIN_CI_SAMPLES:
        return (float(x[0]), float(x[-1]))
    k = _ci_rank(n, level)
    return (float(x[k - 1]), float(x[n - k]))


@functools.lru_cache(maxsize=4096)
def _ci_rank(n: int, level: float) -> int:
    """Largest k with P(B <= k-1) <= alpha/2, B ~ Bin(n, 1/2): [x_(k), x_(n-k+1)] covers >= level.
    Cached: the stopping rule asks after every sample."""
    alpha = 1.0 - level
    # the binomial quantile, the smallest k with P(B <= k) >= alpha/2 (scipy.stats.binom.ppf), searched
    # upwards from 8 standard deviations below the mean, where P(B <= k) is below 1e-15 for every n and level
    k = max(0, int(n / 2.0 - 4.0 * math.sqrt(n)))
    while _bdtr(k, n, 0.5) < alpha / 2.0:
        k += 1
    while k > 0 and _bdtr(k - 1, n, 0.5) > alpha / 2.0:
        k -= 1
    return max(k, 1)


def summarize(samples: Sequence[float] | np.ndarray, level: float = 0.95) -> Summary:
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("cannot summarise zero samples")
    med = float(np.median(x))
    mean = float(np.mean(x))
    sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    q1, q3 = (float(v) for v in np.percentile(x, [25, 75]))
    lo, hi = median_ci(x, level)
    half = (hi - lo) / 2.0
    return Summary(
        n=int(x.size),
        median=med,
        mean=mean,
        min=float(x.min()),
        max=float(x.max()),
        stdev=sd,
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        cv=sd / mean if mean > 0 else math.nan,
        ci_low=lo,
        ci_high=hi,
        ci_level=level,
        rel_ci_halfwidth=half / med if med > 0 else math.inf,
    )


def rel_ci_halfwidth(samples: Sequence[float] | np.ndarray, level: float = 0.95) -> float:
    """Relative half-width of the median's CI: the adaptive stopping rule's noise measure."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 6:
        return math.inf
    lo, hi = median_ci(x, level)
    med = float(np.median(x))
    return (hi - lo) / 2.0 / med if med > 0 else math.inf

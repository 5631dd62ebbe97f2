"""Compare runs: match cases, estimate time ratios with confidence intervals, decide verdicts, gate.

Pure logic on numbers and records; the only I/O is :func:`load_side`, which reads a run directory (or a
pytest-benchmark JSON through :mod:`accelbench.exports`).

How a verdict is reached (``ratio`` = new / base of the chosen metric, > 1 means slower)
------------------------------------------------------------------------------------------
1. Ratio and its CI. For the median (the default metric) the CI is Price & Bonett's distribution-free
   interval for a ratio of medians (J. Stat. Comput. Simul. 72(2), 2002): each side's log-median variance
   comes from the order statistics Y(c), Y(n-c+1) with c = round((n+1)/2 - sqrt(n)), so heavy tails and
   outliers cannot inflate it the way a standard deviation would, and it costs O(n) where a bootstrap of
   the median costs O(B n) (0.5 s per case at n = 2000). Mean and min use a percentile bootstrap
   (stratified by interleave round when there are rounds).
2. Evidence. A one-sided Mann-Whitney U test per direction ("new is stochastically slower" /
   "... faster"); for interleaved runs the van Elteren test, i.e. Mann-Whitney blocked on the interleave
   round, so drift between rounds cannot masquerade as a difference. The p-values of all compared cases
   are adjusted with Holm's step-down procedure. Holm, not Benjamini-Hochberg, because a CI gate makes
   one decision for the whole change ("does this PR regress anything?"): the error users feel is a red
   build on a harmless change, i.e. the family-wise error rate, which Holm controls under any dependence
   between cases (cases of one run share the machine's state, so they are dependent), while BH controls
   the false-discovery proportion and needs positive dependence for that.
3. Decision per case, with threshold t (per workload from the suite, else the command's):
   slower       ratio > 1+t  AND Holm-adjusted p(slower) < alpha AND CI low > 1
   faster       ratio < 1/(1+t) AND Holm-adjusted p(faster) < alpha AND CI high < 1
   unchanged    the CI lies inside [1/(1+t), 1+t] (a change as large as t is ruled out), or the
                difference of the metric is within the timer's resolution floor (never counts)
   inconclusive anything else: the noise is too large to tell
   Only ``slower`` fails the gate; a faster case never does.

What the statistics cannot see: samples within one run share that session's machine state, so two runs
taken minutes apart on a busy machine differ by a few percent that no within-run test can attribute to
noise (every test above will call it significant given thousands of samples). The threshold is what
absorbs that drift; ``accelbench run --baseline ... --interleave`` removes it (see interleave.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats as _st

from .errors import ResultsError, UsageError
from .results import CaseRecord, RunRecord, Timing, read_run

Verdict = Literal["slower", "faster", "unchanged", "inconclusive", "new", "missing", "failed"]
VERDICTS: tuple[str, ...] = ("slower", "inconclusive", "failed", "missing", "new", "faster", "unchanged")
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


# ---------------------------------------------------------------- pure statistics


def _metric(x: np.ndarray, metric: str) -> float:
    if metric == "median":
        return float(np.median(x))
    if metric == "mean":
        return float(np.mean(x))
    if metric == "min":
        return float(np.min(x))
    raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")


def log_median_var(samples: np.ndarray) -> float:
    """Price-Bonett variance of ln(median) from order statistics; inf when the sample is too small."""
    y = np.sort(np.asarray(samples, dtype=np.float64))
    n = y.size
    if n < MIN_SAMPLES_CI or y[0] <= 0:
        return math.inf
    c = max(1, int(round((n + 1) / 2.0 - math.sqrt(n))))
    p = float(_st.binom.cdf(c - 1, n, 0.5))
    z = float(_st.norm.isf(p)) if p > 0 else math.inf
    if not z > 0:  # n = 2..3: the order statistics carry no coverage at all
        return math.inf
    width = math.log(y[n - c]) - math.log(y[c - 1])
    return (width / (2.0 * z)) ** 2


def _bootstrap_ratio(base: np.ndarray, new: np.ndarray, metric: str, level: float, n_boot: int, seed: int,
                     base_strata: np.ndarray | None, new_strata: np.ndarray | None) -> tuple[float, float]:
    """Percentile bootstrap CI of metric(new)/metric(base); resampling within strata when given."""
    rng = np.random.default_rng(seed)
    # keep B*n bounded so a 5000-sample case costs a fraction of a second, not seconds
    b = int(max(200, min(n_boot, 4_000_000 // max(base.size, new.size, 1))))

    def draws(x: np.ndarray, strata: np.ndarray | None) -> np.ndarray:
        if strata is None:
            return x[rng.integers(0, x.size, (b, x.size))]
        parts = []
        for s in np.unique(strata):
            xs = x[strata == s]
            parts.append(xs[rng.integers(0, xs.size, (b, xs.size))])
        return np.concatenate(parts, axis=1)

    fn = {"median": np.median, "mean": np.mean, "min": np.min}[metric]
    rb = fn(draws(base, base_strata), axis=1)
    rn = fn(draws(new, new_strata), axis=1)
    r = rn / rb
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(r, [a, 1.0 - a])
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
             level: float = DEFAULT_LEVEL, *, n_boot: int = 2000, seed: int = 0,
             base_strata: np.ndarray | None = None, new_strata: np.ndarray | None = None) -> RatioCI:
    """Ratio of ``metric`` (new over base) and its confidence interval (see the module docstring)."""
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
        h = float(_st.norm.isf((1.0 - level) / 2.0)) * math.sqrt(var)
        return RatioCI(ratio, ratio * math.exp(-h), ratio * math.exp(h), level, "price-bonett")
    if xb.size < 2 or xn.size < 2:
        return RatioCI(ratio, 0.0, math.inf, level, "bootstrap")
    lo, hi = _bootstrap_ratio(xb, xn, metric, level, n_boot, seed, base_strata, new_strata)
    return RatioCI(ratio, lo, hi, level, "bootstrap" + ("-stratified" if base_strata is not None else ""))


def _ranks_rank_sum(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Rank sum W of x among x+y, its mean and its tie-corrected variance under H0."""
    n, m = x.size, y.size
    big = n + m
    r = _st.rankdata(np.concatenate([x, y]))
    w = float(r[:n].sum())
    _, t = np.unique(np.concatenate([x, y]), return_counts=True)
    tie = float((t**3 - t).sum())
    var = n * m / 12.0 * ((big + 1) - tie / (big * (big - 1))) if big > 1 else 0.0
    return w, n * (big + 1) / 2.0, var


def shift_test(base: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray,
               base_strata: np.ndarray | None = None, new_strata: np.ndarray | None = None
               ) -> tuple[float, float, str]:
    """One-sided p-values (new slower, new faster) and the test's name.

    Without strata: Mann-Whitney U (exact for small samples, asymptotic otherwise). With strata (interleave
    rounds present on both sides): van Elteren's stratified rank-sum test, weights 1/(N_k+1)."""
    xb = np.asarray(base, dtype=np.float64)
    xn = np.asarray(new, dtype=np.float64)
    if xb.size < 2 or xn.size < 2:
        return 1.0, 1.0, "none (too few samples)"
    if base_strata is None or new_strata is None:
        if np.all(xb == xb[0]) and np.all(xn == xn[0]) and xb[0] == xn[0]:
            return 1.0, 1.0, "mann-whitney"
        p_slow = float(_st.mannwhitneyu(xn, xb, alternative="greater").pvalue)
        p_fast = float(_st.mannwhitneyu(xn, xb, alternative="less").pvalue)
        return p_slow, p_fast, "mann-whitney"
    t = 0.0
    v = 0.0
    for s in np.intersect1d(np.unique(base_strata), np.unique(new_strata)):
        yn, yb = xn[new_strata == s], xb[base_strata == s]
        w, e, var = _ranks_rank_sum(yn, yb)
        wk = 1.0 / (yn.size + yb.size + 1.0)
        t += wk * (w - e)
        v += wk * wk * var
    if v <= 0:
        return 1.0, 1.0, "van-elteren"
    z = t / math.sqrt(v)
    return float(_st.norm.sf(z)), float(_st.norm.cdf(z)), "van-elteren"


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
    if ratio.ratio > up or ratio.ratio < down:
        return "inconclusive", f"{(ratio.ratio - 1) * 100:+.1f}% beyond ±{threshold * 100:g}% but the evidence " \
                               f"does not hold (p={min(p_slower_adj, p_faster_adj):.2g}, CI " \
                               f"{ratio.ci_low:.3f}..{ratio.ci_high:.3f})"
    return "inconclusive", f"CI {ratio.ci_low:.3f}..{ratio.ci_high:.3f} reaches beyond ±{threshold * 100:g}%"


# ---------------------------------------------------------------- records -> sides


@dataclass
class Side:
    """One case's timing in one run, reduced to what the statistics need."""

    samples: np.ndarray  # seconds per operation
    strata: np.ndarray | None  # interleave round of each sample, or None
    value: float  # the chosen metric, seconds
    floor_s: float  # one clock quantum per operation
    n: int
    summary: dict[str, float]


def resolution_per_op_s(t: Timing) -> float:
    res = t.clock_resolution_s
    if res is None:
        res = next((v for k, v in DEFAULT_RESOLUTION_S.items() if t.method.startswith(k)), UNKNOWN_RESOLUTION_S)
    return float(res) / max(1, int(t.inner_loops or 1))


def side_of(rec: CaseRecord, metric: str) -> Side | None:
    t = rec.timing
    if t is None:
        return None
    x = np.asarray(t.samples_s, dtype=np.float64)
    x = x[np.isfinite(x)]
    rounds = getattr(t, "rounds", None)
    strata = None
    if isinstance(rounds, list) and len(rounds) == len(t.samples_s) and x.size == len(rounds):
        strata = np.asarray(rounds)
    if x.size:
        value = _metric(x, metric)
    else:
        key = {"median": "median", "mean": "mean", "min": "min"}[metric]
        value = float(t.summary.get(key, math.nan))
    return Side(samples=x, strata=strata, value=value, floor_s=resolution_per_op_s(t), n=int(x.size),
                summary=dict(t.summary))


def _summary_ratio(b: Side, n: Side, metric: str, level: float) -> tuple[RatioCI, float, float]:
    """Ratio, CI and z-test p-values from summaries alone (an import without raw data): the median's
    standard error from the IQR (sigma ~ IQR/1.349, se(median) ~ 1.2533 sigma/sqrt(n)), the mean's from
    the standard deviation. An approximation, named as such in the result."""

    def se_rel(s: Side) -> float:
        nn = float(s.summary.get("n") or 0)
        if nn < 2 or not s.value > 0:
            return math.inf
        if metric == "mean":
            sd = float(s.summary.get("stdev", math.nan))
        else:
            sd = float(s.summary.get("iqr", math.nan)) / 1.349 * 1.2533
        return sd / math.sqrt(nn) / s.value if math.isfinite(sd) else math.inf

    if not (b.value > 0 and n.value > 0):
        return RatioCI(math.nan, math.nan, math.nan, level, "none"), 1.0, 1.0
    r = n.value / b.value
    se = math.hypot(se_rel(b), se_rel(n))
    if not math.isfinite(se) or metric == "min":
        return RatioCI(r, 0.0, math.inf, level, "summary-only"), 1.0, 1.0
    if se == 0:
        return RatioCI(r, r, r, level, "summary-normal"), (0.0 if r > 1 else 1.0), (0.0 if r < 1 else 1.0)
    h = float(_st.norm.isf((1 - level) / 2)) * se
    z = math.log(r) / se
    return RatioCI(r, r * math.exp(-h), r * math.exp(h), level, "summary-normal"), float(_st.norm.sf(z)), \
        float(_st.norm.cdf(z))


# ---------------------------------------------------------------- matching


CASE_ID_RE = re.compile(r"^(?P<suite>[^/]*)/(?P<workload>[^/\[]+)(?:\[(?P<label>[^\]]*)\])?/(?P<params>.*)@(?P<backend>\w+)$")


def label_of(rec: CaseRecord) -> str | None:
    lab = getattr(rec, "label", None)
    if lab:
        return str(lab)
    m = CASE_ID_RE.match(rec.case_id)
    return m.group("label") if m and m.group("label") else None


def match_key(rec: CaseRecord, ignore_params: Iterable[str] = ()) -> str:
    """The identity compare matches on: the case id (suite, workload, label, params, backend), rebuilt
    without the ignored parameters when some are named."""
    ign = set(ignore_params)
    if not ign:
        return rec.case_id
    params = {k: v for k, v in rec.params.items() if k not in ign}
    lab = label_of(rec)
    p = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return f"{rec.suite}/{rec.workload}{f'[{lab}]' if lab else ''}/{p}@{rec.backend}"


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
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


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
            "counts": self.counts(), "regressions": [c.key for c in self.regressions],
            "cases": [{k: clean(v) for k, v in asdict(c).items()} for c in self.cases],
        }


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _interleave_session(run: RunRecord) -> str | None:
    il = run.options.get("interleave") if isinstance(run.options, dict) else None
    return str(il.get("session")) if isinstance(il, dict) and il.get("session") else None


def compare_runs(base: LoadedRun, new: LoadedRun, opts: CompareOptions | None = None) -> Comparison:
    """Match every case of ``base`` and ``new`` and give each a verdict; nothing is dropped silently."""
    opts = opts or CompareOptions()
    opts.check()
    ign = tuple(opts.ignore_params)
    paired = _interleave_session(base.run) is not None and _interleave_session(base.run) == \
        _interleave_session(new.run)

    def index(cases: list[CaseRecord], which: str) -> dict[str, CaseRecord]:
        out: dict[str, CaseRecord] = {}
        for c in cases:
            k = match_key(c, ign)
            if k in out:
                raise ResultsError(f"{which}: two cases share the identity {k}"
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
        strata_ok = paired and sb.strata is not None and sn.strata is not None
        if sb.n and sn.n:
            r = ratio_ci(sb.samples, sn.samples, opts.metric, opts.level, n_boot=opts.n_boot, seed=_seed(key),
                         base_strata=sb.strata if strata_ok else None, new_strata=sn.strata if strata_ok else None)
            ps, pf, test = shift_test(sb.samples, sn.samples, sb.strata if strata_ok else None,
                                      sn.strata if strata_ok else None)
        else:
            r, ps, pf = _summary_ratio(sb, sn, opts.metric, opts.level)
            test = "z (from summaries: no raw samples)"
        cc.ratio, cc.ci_low, cc.ci_high, cc.ci_method, cc.test = r.ratio, r.ci_low, r.ci_high, r.method, test
        cc.p_slower, cc.p_faster = ps, pf
        tests.append((cc, ps, pf, r, sn.value - sb.value))
    adj_s = holm([t[1] for t in tests])
    adj_f = holm([t[2] for t in tests])
    for (cc, _ps, _pf, r, diff), a_s, a_f in zip(tests, adj_s, adj_f, strict=True):
        cc.p_slower_adj, cc.p_faster_adj = a_s, a_f
        cc.verdict, cc.reason = decide(r, a_s, a_f, cc.threshold or opts.threshold, opts.alpha, diff, cc.floor_s)
    order = {v: i for i, v in enumerate(VERDICTS)}
    results.sort(key=lambda c: (order[c.verdict], -(c.ratio or 0) if c.verdict != "faster" else (c.ratio or 0)))
    be, ne = base.run.environment or {}, new.run.environment or {}
    checked = bool(be) and bool(ne)
    return Comparison(base=base.source, new=new.source, options=opts, cases=results,
                      machine=machine_diff(be, ne) if checked else [], machine_checked=checked,
                      interleaved=paired, base_suite=base.run.suite, new_suite=new.run.suite)


def speedups(run: LoadedRun, metric: str = "median", level: float = DEFAULT_LEVEL) -> list[Speedup]:
    """GPU-vs-CPU speedup (CPU time / GPU time) with its CI for every case measured on both backends."""
    by: dict[str, dict[str, CaseRecord]] = {}
    for c in run.cases:
        if c.status == "ok" and c.timing is not None:
            by.setdefault(c.case_id.rsplit("@", 1)[0], {})[c.backend] = c
    out = []
    for key, d in by.items():
        if "gpu" not in d or "cpu" not in d:
            continue
        g, c = side_of(d["gpu"], metric), side_of(d["cpu"], metric)
        if g is None or c is None or not g.n or not c.n:
            continue
        r = ratio_ci(g.samples, c.samples, metric, level, seed=_seed(key))
        out.append(Speedup(key=key, name=d["gpu"].name, speedup=r.ratio, ci_low=r.ci_low, ci_high=r.ci_high,
                           gpu_s=g.value, cpu_s=c.value, method=r.method))
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


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(s) >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_change(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "inf" if r is not None and r > 0 else "-"
    return f"{(r - 1) * 100:+.1f}%"


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


def gate(base: str | Path, new: str | Path, opts: CompareOptions | None = None,
         allow_different_machines: bool = False) -> GateResult:
    """Compare two runs and decide; raises ResultsError (exit 2) when the machines differ and that was
    not allowed, or when there is nothing to compare."""
    a, b = load_side(base), load_side(new)
    cmp = compare_runs(a, b, opts)
    if cmp.machine and not allow_different_machines:
        diffs = "; ".join(f"{d.key}: {d.base!r} -> {d.new!r}" for d in cmp.machine[:6])
        more = f" (+{len(cmp.machine) - 6} more)" if len(cmp.machine) > 6 else ""
        raise ResultsError(f"the runs come from different machines or software ({diffs}{more}); "
                           "timings are not comparable. Pass --allow-different-machines to gate anyway")
    if not any(c.ratio is not None for c in cmp.cases):
        raise ResultsError(f"no case of {base} could be compared with {new} (no matching successful cases)")
    return GateResult(comparison=cmp, refused=None)

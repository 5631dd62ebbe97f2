"""Compare runs: match cases, estimate time ratios with confidence intervals, decide verdicts, gate.

Pure logic on numbers and records; the only I/O is :func:`load_side`, which reads a run directory (or a
pytest-benchmark JSON through :mod:`accelbench.exports`). Modules: :mod:`.stats` (ratios, CIs, tests,
Holm, one case's verdict), :mod:`.match` (thresholds, machine diff and fingerprint), :mod:`.runs`
(compare_runs, speedups, loading, gate); every public name is re-exported here.

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

from ..report.format import fmt_change, fmt_time  # re-exported: older callers import them from here
from .match import (
    VOLATILE_KEYS,
    VOLATILE_RE,
    EnvDiff,
    case_threshold,
    machine_diff,
    machine_fingerprint,
)
from .runs import (
    CaseComparison,
    CaseStats,
    CompareOptions,
    Comparison,
    CoreRun,
    GateResult,
    LoadedRun,
    Speedup,
    check_machines,
    compare_runs,
    gate,
    load_core,
    load_side,
    parse_fraction,
    speedups,
)
from .stats import (
    DEFAULT_ALPHA,
    DEFAULT_LEVEL,
    DEFAULT_RESOLUTION_S,
    DEFAULT_THRESHOLD,
    FLOOR_TICKS,
    MAX_BLOCKS,
    METRICS,
    MIN_BLOCK_SAMPLES,
    MIN_BLOCKS,
    MIN_ROUNDS,
    MIN_SAMPLES_CI,
    UNKNOWN_RESOLUTION_S,
    VERDICTS,
    RatioCI,
    Side,
    Verdict,
    block_matrix,
    block_values,
    blocked_ratio,
    case_stats,
    cases_stats,
    check_rounds,
    decide,
    holm,
    log_median_var,
    mannwhitney_one_sided,
    ratio_ci,
    resolution_per_op_s,
    rounds_needed,
    shift_test,
    side_of,
    sides_of,
    timing_problem,
    timing_problems,
)

__all__ = [
    "CaseComparison",
    "CaseStats",
    "CoreRun",
    "CompareOptions",
    "Comparison",
    "DEFAULT_ALPHA",
    "DEFAULT_LEVEL",
    "DEFAULT_RESOLUTION_S",
    "DEFAULT_THRESHOLD",
    "EnvDiff",
    "FLOOR_TICKS",
    "GateResult",
    "LoadedRun",
    "MAX_BLOCKS",
    "METRICS",
    "MIN_BLOCKS",
    "MIN_BLOCK_SAMPLES",
    "MIN_ROUNDS",
    "MIN_SAMPLES_CI",
    "RatioCI",
    "Side",
    "Speedup",
    "UNKNOWN_RESOLUTION_S",
    "VERDICTS",
    "VOLATILE_KEYS",
    "VOLATILE_RE",
    "Verdict",
    "block_values",
    "block_matrix",
    "blocked_ratio",
    "case_stats",
    "cases_stats",
    "check_rounds",
    "case_threshold",
    "check_machines",
    "compare_runs",
    "decide",
    "fmt_change",
    "fmt_time",
    "gate",
    "holm",
    "load_core",
    "load_side",
    "log_median_var",
    "machine_diff",
    "machine_fingerprint",
    "mannwhitney_one_sided",
    "parse_fraction",
    "ratio_ci",
    "resolution_per_op_s",
    "rounds_needed",
    "shift_test",
    "side_of",
    "sides_of",
    "speedups",
    "timing_problem",
    "timing_problems",
]

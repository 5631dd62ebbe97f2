"""Drift between two separately made runs: what the runs themselves reveal about the machine.

Pure functions on numbers; compare.compare_runs calls :func:`assess` for runs that were not interleaved
(and :func:`smoke` for every comparison).

Model. For case i of workload g, the log ratio l_i = ln(new_i / base_i) = d_i + c_i + e_i, where
  d_i  the machine's drift between the two sessions (other tenants' load, frequency, thermal state):
       shared by the cases of a run, though not equally (memory-bound cases move most);
  c_i  the change under test (0 for the cases it does not touch);
  e_i  the case's own measurement noise, with the standard error s_i that its within-run CI implies
       (s_i = ln(ci_high / ci_low) / (2 z)).
A within-run statistic sees only e_i, so every drift looks like a change to it. The cases of the two
runs together reveal the rest:

1. Scatter. Over the compared cases, S = 1.4826 MAD(l) (a robust standard deviation: a minority of
   changed cases does not inflate it) against the typical within-run error: the between-run scatter is
   tau^2 = max(0, S^2 - median(s_i^2)). It is added to every case's variance: a case must stand out from
   how much the whole run scattered, not only from its own samples.
2. Common shift. The machine's shift seen by workload g is D_g = median of l_j over the cases of the
   *other* workloads (left out so that a change to g cannot explain itself away), with standard error
   se(D_g) = 1.2533 S_other / sqrt(m_other) (the median's efficiency under normality). A case is tested
   on l_i - D_g with variance s_i^2 + tau^2 + se(D_g)^2: z = (l_i - D_g) / sqrt(...), one-sided normal
   p-values, the CI exp(l_i +- z_level sqrt(...)) around the raw ratio; compare then applies Holm and
   compare.decide to the corrected ratio exp(l_i - D_g) as usual, with the larger of this p-value and the
   within-run test's (the drift can only weaken the evidence; a case whose samples disagree with their
   own CI stays unproven). A case is called slower (faster) only
   when its own raw ratio crosses the threshold too: one that stood still while the others moved is
   ``inconclusive``.
3. What cannot be told apart. When the run moved by at least half the threshold as a whole (|D_g| >=
   ln(1+t)/2; or, with no other workload in the suite, the case's own workload's median), a case whose
   raw ratio crosses the threshold in that direction but that does not stand out from the shift cannot
   be attributed: a busier machine and a change that slows every workload (a NumPy upgrade) look the
   same in two separate runs. Its verdict is ``inconclusive`` with that reason, never ``slower`` (nor
   ``unchanged``). ``accelbench ab`` measures both sides in one session and can tell.
4. With fewer than MIN_CASES compared cases neither tau nor D can be estimated: the within-run evidence
   decides alone, and a verdict beyond the threshold says that the drift could not be estimated.
5. Smoke runs: when either side ran with ``--quick`` no verdict is confident; slower, faster and
   unchanged all become ``inconclusive`` (a quick run's few short samples make the gate cry wolf).
6. Contention. Rules 1-3 model one shift for the whole run; a burst of other processes' work (or of a
   hypervisor's steal) slows a stretch of consecutive cases, usually cases of one workload, which then
   look changed against every other workload. Each record says what share of the machine other
   processes took while it was measured (accelbench.measure.contention). A case called slower or
   faster while others took at least CONTENTION_SHARE more of the machine during one side's
   measurement than during the other's is ``inconclusive``: the evidence cannot tell contention from a
   change. Whichever side was busier: measured on this project's 2-vCPU VM, a neighbour's bursts made
   some cases slower and others faster (a triad 18% slower in the quieter run). A quarter of the
   machine: half a core of two, where a single-threaded case starts to compete for a core; 16 of 64,
   where one stray process is not enough. Cases whose two sides differ by that much
   are also left out of the scatter and the shifts of rules 1-2 (while at least MIN_CASES others remain):
   a burst's cases would pull the machine's shift towards themselves. Records without the measurement
   (older runs, imports) are judged without this rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special as _special

MIN_CASES = 4
CONTENTION_SHARE = 0.25  # rule 6: how much more of the machine others took on one side
MAD_TO_SD = 1.4826
MEDIAN_SE = 1.2533


@dataclass(frozen=True, slots=True)
class Interval:
    """A ratio with its CI (compare.RatioCI's fields; kept apart so this module needs nothing else)."""

    ratio: float
    ci_low: float
    ci_high: float


@dataclass(slots=True)  # (one per compared case)
class Adjusted:
    """One case after the drift assessment."""

    corrected: float  # exp(l - D): the ratio relative to the machine's shift
    ci_low: float  # CI of the raw ratio with the between-run variance added
    ci_high: float
    p_slower: float
    p_faster: float
    shift: float  # D applied, as a ratio (1.0: none)
    material: bool  # the run moved by >= half the threshold around this case
    controlled: bool  # D came from other workloads (False: no unrelated workload to compare with)
    threshold: float
    others: tuple[float | None, float | None] = (None, None)  # share of the machine others took: base, new


@dataclass
class Assessment:
    cases: list[Adjusted]
    n: int  # cases with finite evidence
    estimable: bool
    tau: float  # between-run scatter (log scale)
    shift: float  # median ratio over all cases
    notes: list[str] = field(default_factory=list)
    own_shift: dict[int, float] = field(default_factory=dict)  # log shift of the case's own workload (uncontrolled)

    def to_dict(self) -> dict[str, Any]:
        return {"cases": self.n, "estimable": self.estimable, "between_run_scatter": self.tau,
                "median_ratio": self.shift, "notes": list(self.notes)}

    def final(self, i: int, verdict: str, reason: str, raw_ratio: float) -> tuple[str, str]:
        """The verdict of case ``i`` (decided on the corrected ratio) after rules 3, 4 and 6."""
        verdict, reason = self._final(i, verdict, reason, raw_ratio)
        return contended(verdict, reason, *self.cases[i].others)

    def _final(self, i: int, verdict: str, reason: str, raw_ratio: float) -> tuple[str, str]:
        a = self.cases[i]
        up = math.log1p(a.threshold)
        raw = math.log(raw_ratio) if raw_ratio > 0 and math.isfinite(raw_ratio) else 0.0
        if not self.estimable:
            if verdict in ("slower", "faster"):
                return verdict, f"{reason}; separate runs with {self.n} case(s): the machine's drift could not be " \
                                "estimated"
            return verdict, reason
        if verdict in ("slower", "faster") and not abs(raw) > up:
            # relative to the other workloads it moved, but its own ratio is within the threshold: the others
            # moved, not it (a change must show in the case's own ratio as well)
            return "inconclusive", (f"{(raw_ratio - 1) * 100:+.1f}% itself, {(a.corrected - 1) * 100:+.1f}% "
                                    f"against the other workloads' shift of {(a.shift - 1) * 100:+.1f}%: "
                                    "separate runs cannot tell which moved")
        moved = math.log(a.shift) if a.controlled else self.own_shift.get(i, 0.0)
        crossed = abs(raw) > up and raw * moved > 0
        # controlled: a case that stands out from the other workloads' shift keeps its verdict; without
        # another workload nothing can stand out, so nothing is attributed
        if abs(moved) >= up / 2 and crossed and (not a.controlled or verdict not in ("slower", "faster")):
            whom = "the suite's other workloads" if a.controlled else "this workload (no unrelated workload " \
                "in the suite to compare with)"
            return "inconclusive", (f"{(raw_ratio - 1) * 100:+.1f}%, but {whom} moved {(math.exp(moved) - 1) * 100:+.1f}% "
                                    "too: machine drift or a change to them all, separate runs cannot tell "
                                    "(accelbench ab can)")
        return verdict, reason


def contended(verdict: str, reason: str, base: float | None, new: float | None) -> tuple[str, str]:
    """Rule 6 for one case: ``base`` and ``new`` are the shares of the machine (0..1) other processes
    took while each side measured it (None: not measured). Either direction: unlike contention made
    cases slower, and some faster (a neighbour's burst on a 2-vCPU VM), so neither verdict stands."""
    if verdict not in ("slower", "faster") or base is None or new is None or abs(new - base) < CONTENTION_SHARE:
        return verdict, reason
    busier = "new" if new > base else "base"
    return "inconclusive", (f"{verdict} ({reason}), but other processes took {max(base, new) * 100:.0f}% of the "
                            f"machine while {busier} measured it ({min(base, new) * 100:.0f}% in the other run): "
                            "unlike conditions, separate runs cannot tell contention from a change (rerun on a "
                            "quiet machine, or use accelbench ab)")


def _z(level: float) -> float:
    """The two-sided normal quantile of ``level`` (scipy.stats.norm.isf((1 - level) / 2) is -ndtri of it;
    scipy.special directly: the distribution wrapper cost ~0.1 ms a call, once per case)."""
    return float(-_special.ndtri((1 - level) / 2))


def _se(iv: Interval, z: float) -> float:
    if not (iv.ci_low > 0 and math.isfinite(iv.ci_high) and iv.ci_high > 0):
        return math.inf
    return max(math.log(iv.ci_high / iv.ci_low) / (2 * z), 0.0)


def _mad_sd(x: np.ndarray) -> float:
    return float(MAD_TO_SD * np.median(np.abs(x - np.median(x)))) if x.size else math.inf


def assess(workloads: Sequence[str], intervals: Sequence[Interval], thresholds: Sequence[float],
           level: float = 0.95, others: Sequence[tuple[float | None, float | None]] | None = None) -> Assessment:
    """Rules 1-2 of the module docstring for the matched cases of two separate runs (rules 3, 4 and 6
    are :meth:`Assessment.final`; ``others``: per case, the shares of the machine other processes took
    while base and new measured it)."""
    n_all = len(intervals)
    shares = list(others) if others is not None else [(None, None)] * n_all
    z = _z(level)
    logs = np.array([math.log(iv.ratio) if iv.ratio > 0 and math.isfinite(iv.ratio) else math.nan
                     for iv in intervals])
    ses = np.array([_se(iv, z) for iv in intervals])
    ok = np.isfinite(logs) & np.isfinite(ses)
    m = int(ok.sum())
    codes: dict[str, int] = {}
    wl = np.array([codes.setdefault(w, len(codes)) for w in workloads], dtype=np.int64)
    estimable = m >= MIN_CASES
    # the machine's shift and scatter come from the cases measured under like contention on both sides
    # (rule 6: a burst's cases would pull the shift towards themselves); all of them when too few are left
    calm = np.array([b is None or n is None or abs(n - b) < CONTENTION_SHARE for b, n in shares], dtype=bool)
    pool = ok & calm if int((ok & calm).sum()) >= MIN_CASES else ok
    tau = 0.0
    if estimable:
        s = _mad_sd(logs[pool])
        tau = math.sqrt(max(0.0, s * s - float(np.median(ses[pool] ** 2))))
    # the shift a workload is judged against depends on the workload alone: once per workload, not per
    # case (per case it cost O(cases^2): minutes for a 100k-case gate)
    per_workload: dict[int, tuple[bool, float, float, float | None]] = {}
    for g in range(len(codes)):
        rest = pool & (wl != g)
        controlled = estimable and int(rest.sum()) >= 2
        if controlled:
            d = float(np.median(logs[rest]))
            se_d = MEDIAN_SE * _mad_sd(logs[rest]) / math.sqrt(int(rest.sum()))
            per_workload[g] = (True, d, se_d, None)
        else:
            mine = pool & (wl == g)
            mine = mine if mine.any() else ok & (wl == g)
            per_workload[g] = (False, 0.0, 0.0, float(np.median(logs[mine])) if mine.any() else 0.0)
    # every case at once (numpy), then one Adjusted per case
    groups = [per_workload[g] for g in range(len(codes))]
    g_ctrl = np.array([x[0] for x in groups], dtype=bool)[wl] if n_all else np.zeros(0, dtype=bool)
    g_d = np.array([x[1] for x in groups])[wl] if n_all else np.zeros(0)
    g_se = np.array([x[2] for x in groups])[wl] if n_all else np.zeros(0)
    g_own = np.array([0.0 if x[3] is None else x[3] for x in groups])[wl] if n_all else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(ses ** 2 + tau ** 2 + g_se ** 2)
        l_c = logs - g_d
        zs = np.where(sd > 0, l_c / np.where(sd > 0, sd, 1.0), 0.0)
    ps = np.where(sd > 0, _special.ndtr(-zs), np.where(l_c > 0, 0.0, 1.0))  # norm.sf
    pf = np.where(sd > 0, _special.ndtr(zs), np.where(l_c < 0, 0.0, 1.0))  # norm.cdf
    t_arr = np.asarray(thresholds, dtype=np.float64)
    material = np.abs(np.where(g_ctrl, g_d, g_own)) >= np.log1p(t_arr) / 2
    out: list[Adjusted] = []
    rows = zip(intervals, thresholds, shares, ok.tolist(), g_ctrl.tolist(), g_d.tolist(), logs.tolist(),
               sd.tolist(), l_c.tolist(), ps.tolist(), pf.tolist(), material.tolist(), strict=True)
    for iv, t, oth, good, controlled, d, lg, sdi, lci, p_s, p_f, mat in rows:
        if not good:
            out.append(Adjusted(iv.ratio, iv.ci_low, iv.ci_high, 1.0, 1.0, 1.0, False, controlled, t, oth))
            continue
        out.append(Adjusted(math.exp(lci), math.exp(lg - z * sdi), math.exp(lg + z * sdi), p_s, p_f, math.exp(d),
                            mat, controlled, t, oth))
    free = np.flatnonzero(~g_ctrl)
    own = dict(zip(free.tolist(), g_own[free].tolist(), strict=True))
    shift = math.exp(float(np.median(logs[ok]))) if m else math.nan
    a = Assessment(cases=out, n=m, estimable=estimable, tau=tau, shift=shift, own_shift=own)
    if not estimable:
        a.notes.append(f"separate runs with {m} comparable case(s): too few to estimate the machine's drift; "
                       "the verdicts rest on within-run evidence alone")
    else:
        a.notes.append(f"separate runs: median change over {m} cases {(shift - 1) * 100:+.1f}%, between-run "
                       f"scatter {tau * 100:.1f}% (added to every case's uncertainty); each case is judged "
                       "against the shift of the suite's other workloads")
    return a


def smoke(verdict: str, reason: str) -> tuple[str, str]:
    """Rule 5: a comparison involving a --quick run never gives a confident verdict."""
    if verdict in ("slower", "faster", "unchanged"):
        return "inconclusive", f"--quick smoke run: too little sampling for a verdict ({verdict}: {reason})"
    return verdict, reason

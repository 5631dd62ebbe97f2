"""How often does the gate cry wolf, and how often does it catch a real 5% slowdown? Measured, not assumed.

A/A: the same CPU suite measured repeatedly with nothing changed; every "slower" verdict is a false alarm.
A/B: the same suite with a planted slowdown of exactly 5%: the ``gate_probe`` workload below repeats its
NumPy operation ``reps`` times per run; ``extra_work: 0.05`` adds round(0.05 * reps) repetitions, i.e.
21 instead of 20, exactly 5% more of the same work on the same data (nothing else changes: no new
allocation, same cache footprint). ``extra_work`` is matched away with compare's ``ignore_params``, which
is how a user A/B-tests one knob; the definition-hash difference it causes is explained by the ignored
parameter, so those cases are gated like any other.

Two ways of measuring, each on this machine as it is (shared, 2 cores, noisy):
  separate   A and B are separate runs minutes apart (what CI does when it keeps a baseline run)
  interleave ``run --baseline A --interleave``: A's suite and B's measured alternately in one session

Run:  PYTHONPATH=. python benchmarks/gate_error_rates.py [--runs 6 --sessions 10 --rounds 20 --time 0.6] [--json OUT]
Prints false alarms per 100 case-comparisons (A/A) and the share of planted regressions caught (A/B), per
threshold, with Clopper-Pearson 95% intervals, for both modes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from scipy import stats as st

from accelbench.compare import CompareOptions, LoadedRun, compare_runs
from accelbench.interleave import run_interleaved
from accelbench.runner import RunOptions, run_suite
from accelbench.suite import parse
from accelbench.workloads.base import Params, Work, Workload, register


class ProbeParams(Params):
    op: str = Field("scale", pattern="^(scale|sum|cumsum)$")
    n: int = Field(4096, gt=0, le=10**7)
    reps: int = Field(20, ge=1, le=10_000)
    extra_work: float = Field(0.0, ge=0.0, le=10.0)  # fraction of reps added: 0.05 -> 21 instead of 20


@register
class GateProbe(Workload):
    """``reps`` (+ round(extra_work * reps)) repetitions of a NumPy op on one float64 array."""

    name = "gate_probe"
    family = "test"
    Params = ProbeParams
    backends = ("cpu",)

    @classmethod
    def work(cls, p: Any) -> Work:
        k = p.reps + round(p.extra_work * p.reps)
        return Work(flops=k * p.n, bytes=16 * k * p.n, items=k * p.n, item_unit="elements")

    def setup(self) -> None:
        self.x = self.random((self.p.n,), "float64")
        self.y = np.empty_like(self.x)
        self.k = self.p.reps + round(self.p.extra_work * self.p.reps)
        self.fn = {"scale": lambda: np.multiply(self.x, 1.5, out=self.y),
                   "sum": lambda: self.y.__setitem__(0, self.x.sum()),
                   "cumsum": lambda: np.cumsum(self.x, out=self.y)}[self.p.op]

    def run(self) -> None:
        fn = self.fn
        for _ in range(self.k):
            fn()

    def output(self) -> Any:
        return self.y[:1] if self.p.op == "sum" else self.y

    def reference(self) -> np.ndarray:
        x = self.x.astype(np.float64)
        if self.p.op == "scale":
            return x * 1.5
        if self.p.op == "sum":
            return np.array([x.sum()])
        return np.cumsum(x)


def suite_text(extra: float, timing: str) -> str:
    return f"""suite: gate-probe
defaults:
  backends: [cpu]
  timing: {timing}
benchmarks:
  - workload: gate_probe
    params: {{op: [scale, sum, cumsum], n: [4096, 32768, 131072], extra_work: {extra}}}
"""


TIMING = ("{warmup: 1, warmup_time_s: 0.01, min_samples: 10, min_time_s: %(t)s, max_time_s: %(t)s, "
          "target_rel_ci: 0.002, min_sample_time_s: 0.0005}")
IGNORE = ("extra_work",)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    a = 1 - level
    lo = 0.0 if k == 0 else float(st.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(st.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def verdicts(pairs: list[tuple[LoadedRun, LoadedRun]], threshold: float, alpha: float, metric: str
             ) -> dict[str, int]:
    out: dict[str, int] = {}
    for a, b in pairs:
        cmp = compare_runs(a, b, CompareOptions(threshold=threshold, alpha=alpha, metric=metric,
                                                ignore_params=IGNORE))
        for c in cmp.cases:
            v = "slower" if c.regressed else c.verdict
            out[v] = out.get(v, 0) + 1
    return out


def ratios(pairs: list[tuple[LoadedRun, LoadedRun]], metric: str) -> list[float]:
    out = []
    for a, b in pairs:
        for c in compare_runs(a, b, CompareOptions(metric=metric, ignore_params=IGNORE)).cases:
            if c.ratio is not None:
                out.append(c.ratio)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=6, help="separate runs of A and of B (alternating A, B, A, ...)")
    ap.add_argument("--sessions", type=int, default=10, help="interleaved sessions each of A/A and A/B")
    ap.add_argument("--rounds", type=int, default=20, help="interleave rounds per case")
    ap.add_argument("--time", type=float, default=0.6, help="sampling seconds per case and side")
    ap.add_argument("--thresholds", default="0.02,0.03,0.05", help="gate thresholds to evaluate")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--metrics", default="median,min", help="compare metrics to evaluate")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    args = ap.parse_args()
    timing = TIMING % {"t": args.time}
    sa, sb = parse(suite_text(0.0, timing), "A"), parse(suite_text(0.05, timing), "B")
    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="accelbench-gate-"))
    opts = RunOptions(out=root / "separate", counters=False, argv=["gate_error_rates"])
    a_runs: list[LoadedRun] = []
    b_runs: list[LoadedRun] = []
    for i in range(args.runs):
        for s, dest in ((sa, a_runs), (sb, b_runs)):
            r = run_suite(s, opts)
            dest.append(LoadedRun(r.run, r.cases, str(r.run_dir)))
        print(f"separate run pair {i + 1}/{args.runs} done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    t_sep = time.perf_counter() - t_start
    il_aa: list[tuple[LoadedRun, LoadedRun]] = []
    il_ab: list[tuple[LoadedRun, LoadedRun]] = []
    iopts = RunOptions(out=root / "interleaved", counters=False, argv=["gate_error_rates"])
    for i in range(args.sessions):
        base_dir = a_runs[i % len(a_runs)].source
        for s, dest in ((sa, il_aa), (sb, il_ab)):
            res = run_interleaved(base_dir, s, iopts, rounds=args.rounds, ignore_params=IGNORE)
            dest.append((res.base, res.new))
        print(f"interleaved session pair {i + 1}/{args.sessions} done ({time.perf_counter() - t_start:.0f} s)",
              flush=True)
    t_il = time.perf_counter() - t_start - t_sep
    # separate: A/A over all pairs of A runs; A/B pairs each A run with the B run measured right after it
    sep_aa = [(a_runs[i], a_runs[j]) for i, j in itertools.combinations(range(len(a_runs)), 2)]
    sep_ab = list(zip(a_runs, b_runs, strict=True))
    conditions = {"separate": (sep_aa, sep_ab), "interleaved": (il_aa, il_ab)}
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_avg_at_end": list(os.getloadavg())},
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "seconds": {"separate": t_sep, "interleaved": t_il},
        "results": {},
    }
    print()
    print(f"cases per run: {len(a_runs[0].cases)}; planted slowdown: exactly 5% (21 vs 20 repetitions)")
    for metric in args.metrics.split(","):
        for mode, (aa, ab) in conditions.items():
            r_aa, r_ab = ratios(aa, metric), ratios(ab, metric)
            res = report["results"].setdefault(f"{metric}/{mode}", {
                "aa_log_ratio_sd": float(np.std(np.log(r_aa))), "ab_ratio_median": float(np.median(r_ab)),
                "thresholds": {}})
            print(f"\nmetric {metric}, {mode}: A/A log-ratio sd {res['aa_log_ratio_sd'] * 100:.2f}%, "
                  f"A/B median ratio {res['ab_ratio_median']:.4f}")
            for th in (float(x) for x in args.thresholds.split(",")):
                vaa, vab = verdicts(aa, th, args.alpha, metric), verdicts(ab, th, args.alpha, metric)
                n_aa, n_ab = sum(vaa.values()), sum(vab.values())
                fa, caught = vaa.get("slower", 0), vab.get("slower", 0)
                fa_ci, c_ci = clopper_pearson(fa, n_aa), clopper_pearson(caught, n_ab)
                res["thresholds"][str(th)] = {
                    "aa": vaa, "ab": vab, "false_alarms": fa, "aa_comparisons": n_aa, "caught": caught,
                    "ab_comparisons": n_ab, "false_alarm_per_100": 100 * fa / n_aa, "false_alarm_ci95": fa_ci,
                    "caught_share": caught / n_ab, "caught_ci95": c_ci}
                print(f"  threshold {th * 100:g}%: false alarms {fa}/{n_aa} = {100 * fa / n_aa:.2f} per 100 "
                      f"(95% CI {fa_ci[0] * 100:.2f}..{fa_ci[1] * 100:.2f}); caught {caught}/{n_ab} = "
                      f"{100 * caught / n_ab:.1f}% (95% CI {c_ci[0] * 100:.1f}..{c_ci[1] * 100:.1f}); "
                      f"A/B verdicts {vab}")
    total = time.perf_counter() - t_start
    report["seconds"]["total"] = total
    print(f"\ntotal {total:.0f} s (separate {t_sep:.0f} s, interleaved {t_il:.0f} s); "
          f"load average now {os.getloadavg()}; results kept in {root}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

"""Evidence for the history's change points on real runs: quick CPU runs with a real 5% step planted.

Each batch is ``--runs`` (default 40) separate runs of a small suite, run one after another through the
real runner into their own results folder. The suite has ``--cases`` (default 4) "step" cases and as many
"flat" cases, all of the ``history_probe`` workload below (gate_error_rates' probe: ``reps`` repetitions
of a NumPy multiply on one float64 array). From run ``--step-at`` (default 20) on, the step cases do round(1.05 * reps) repetitions
instead of reps (21 instead of 20: exactly 5% more of the same work on the same data), like a commit that
makes the code slower (``--extra`` sets the fraction, default 0.05); their parameters, hence their case
identity and series, do not change. The flat
cases never change. Then `accelbench history` analyses the folder (default settings) and we count:

  found      step series with a change point at the step's run +- 1
  false_step change points of step series anywhere else
  false_flat change points of flat series (every one is false)

The machine is shared (2 cores, six helpers building and testing at once), so the runs are noisy; that is
the point, but it also means the numbers depend on the load at the time (printed with them).

Run:  PYTHONPATH=. python benchmarks/history_real_runs.py [--batches 3 --runs 40 --step-at 20 --cases 3
      --time 0.1] [--keep DIR] [--json OUT]   (each batch is analysed with --metric median and min)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from accelbench.history.analysis import load_history
from accelbench.runner import RunOptions, run_suite
from accelbench.suite import parse
from accelbench.workloads.base import register
from benchmarks.gate_error_rates import GateProbe, ProbeParams

EXTRA = {"fraction": 0.0}  # the "code change": set between runs, never a parameter


class HistoryProbeParams(ProbeParams):
    kind: str = Field("flat", pattern="^(step|flat)$")


@register
class HistoryProbe(GateProbe):
    """gate_error_rates' probe (``reps`` repetitions of y = 1.5 x); the "step" kind does round(EXTRA * reps)
    more repetitions, set between runs like a code change, not through a parameter."""

    name = "history_probe"
    Params = HistoryProbeParams

    def setup(self) -> None:
        super().setup()
        if self.p.kind == "step":
            self.k += round(EXTRA["fraction"] * self.p.reps)


def suite_text(cases: int, time_s: float) -> str:
    sizes = [2048 * (2 ** i) for i in range(cases)]
    lines = ["suite: history-evidence", "defaults:", "  backends: [cpu]",
             f"  timing: {{min_samples: 20, min_time_s: {time_s}, max_time_s: {time_s * 2}, warmup: 3, "
             "warmup_time_s: 0.02}", "benchmarks:"]
    for kind in ("step", "flat"):
        for n in sizes:
            lines.append(f"  - workload: history_probe\n    params: {{op: scale, n: {n}, reps: 20, kind: {kind}}}")
    return "\n".join(lines) + "\n"


def measure(root: Path, runs: int, step_at: int, cases: int, time_s: float, extra: float) -> dict[str, Any]:
    s = parse(suite_text(cases, time_s))
    opts = RunOptions(out=root, counters=False, argv=["history_real_runs"])
    t0 = time.perf_counter()
    loads = []
    for i in range(runs):
        EXTRA["fraction"] = extra if i >= step_at else 0.0
        run_suite(s, opts)
        loads.append(os.getloadavg()[0])
    return {"runs": runs, "step_at": step_at, "extra": extra, "wall_s": round(time.perf_counter() - t0, 1),
            "load_avg_mean": round(float(np.mean(loads)), 2), "load_avg_max": round(float(np.max(loads)), 2)}


def analyse(root: Path, step_at: int, metric: str) -> dict[str, Any]:
    h = load_history([root], metric=metric)
    found = false_step = false_flat = 0
    n_step = n_flat = 0
    detail = []
    for se in h.series:
        kind = "step" if '"kind":"step"' in se.case else "flat"
        idx = [int(np.searchsorted(se.pos, c.position)) for c in se.changes]
        detail.append({"case": se.name, "kind": kind, "change_points": idx,
                       "ratios": [round(c.ratio, 4) for c in se.changes],
                       "p_values": [float(f"{c.p_value:.3g}") for c in se.changes],
                       "run_cv": float(np.std(np.log(se.value[:step_at]), ddof=1))})
        if kind == "step":
            n_step += 1
            hit = [i for i in idx if abs(i - step_at) <= 1]
            found += bool(hit)
            false_step += len(idx) - min(1, len(hit))
        else:
            n_flat += 1
            false_flat += len(idx)
    return {"metric": metric, "step_series": n_step, "found": found, "false_in_step_series": false_step,
            "flat_series": n_flat, "false_in_flat_series": false_flat, "series": detail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--step-at", type=int, default=20)
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--time", type=float, default=0.05, help="min_time_s per case")
    ap.add_argument("--extra", type=float, default=0.05, help="the planted step: this fraction more repetitions")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the results folders here (default: a temporary folder)")
    ap.add_argument("--analyse-only", action="store_true", help="re-analyse the folders under --keep")
    a = ap.parse_args()
    out: list[dict[str, Any]] = []
    keep = a.keep
    with tempfile.TemporaryDirectory(prefix="history-real-") as tmp:
        base = keep or Path(tmp)
        for b in range(a.batches):
            root = base / f"batch{b}"
            if a.analyse_only:
                m = {"runs": a.runs, "step_at": a.step_at, "extra": a.extra, "wall_s": None, "load_avg_mean": None, "load_avg_max": None}
            else:
                m = measure(root, a.runs, a.step_at, a.cases, a.time, a.extra)
            for metric in ("median", "min"):
                r = m | analyse(root, a.step_at, metric)
                out.append(r)
                print(f"batch {b} metric {metric}: {r['runs']} runs in {r['wall_s']} s (load {r['load_avg_mean']} "
                      f"mean, {r['load_avg_max']} max): step found at run {a.step_at}+-1 in "
                      f"{r['found']}/{r['step_series']} step series; false change points: "
                      f"{r['false_in_step_series']} in step series, {r['false_in_flat_series']} in "
                      f"{r['flat_series']} flat series", flush=True)
                for d in r["series"]:
                    print(f"   {d['kind']:4} {d['case']:44} run-to-run sd {d['run_cv'] * 100:.2f}%  "
                          f"change points at {d['change_points']} ratios {d['ratios']} p {d['p_values']}", flush=True)
    for metric in ("median", "min"):
        rs = [r for r in out if r["metric"] == metric]
        tot = {k: sum(r[k] for r in rs) for k in ("step_series", "found", "false_in_step_series", "flat_series",
                                                   "false_in_flat_series")}
        print(f"total ({metric}): step found {tot['found']}/{tot['step_series']}; false change points "
              f"{tot['false_in_step_series']} (step series) + {tot['false_in_flat_series']} "
              f"(in {tot['flat_series']} flat series)")
    if a.json:
        a.json.write_text(json.dumps({"batches": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()

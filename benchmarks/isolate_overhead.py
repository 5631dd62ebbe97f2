"""What ``run --isolate`` costs against in-process measurement, measured side by side.

The same CPU suite is run ``--pairs`` times in each mode, alternating (in-process, isolated, isolated,
in-process, ...), each as its own ``python -m accelbench run`` process, so both modes pay Python's and
accelbench's import once and the difference is the worker's start and the per-case round trip.
Reports the wall time per run and per case of each mode and the ratio of the case medians measured by
the two modes (the timings themselves come from the same runner code).

Run:  PYTHONPATH=. python benchmarks/isolate_overhead.py [--pairs 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from accelbench.results import read_run

SUITE = """suite: isolate-overhead
defaults:
  backends: [cpu]
  timing: {min_time_s: 0.05, max_time_s: 0.1}
benchmarks:
  - workload: triad
    params: {n: [4096, 65536, 1048576]}
  - workload: reduction
    params: {rows: [256, 1024], cols: 1024}
  - workload: softmax
    params: {rows: [64, 512], cols: 1024}
  - workload: gemm
    params: {m: 128, n: 128, k: 128}
"""


def one(suite: Path, out: Path, isolate: bool) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "accelbench", "run", str(suite), "--no-counters", "--json", "--out", str(out)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd + (["--isolate"] if isolate else []), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(r.stderr[-1000:])
    return wall, json.loads(r.stdout)["run_dir"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "s.yaml"
        suite.write_text(SUITE)
        walls: dict[str, list[float]] = {"in-process": [], "isolate": []}
        medians: dict[str, dict[str, list[float]]] = {"in-process": {}, "isolate": {}}
        for i in range(args.pairs):
            for iso in ((False, True) if i % 2 == 0 else (True, False)):
                mode = "isolate" if iso else "in-process"
                wall, run_dir = one(suite, Path(tmp) / "res", iso)
                walls[mode].append(wall)
                for c in read_run(run_dir)[1]:
                    if c.timing is not None:
                        medians[mode].setdefault(c.case_id, []).append(float(c.timing.summary["median"]))
        n_cases = len(medians["in-process"])
        ratios = [statistics.median(medians["isolate"][k]) / statistics.median(v)
                  for k, v in medians["in-process"].items() if k in medians["isolate"]]
        res = {
            "cases": n_cases, "pairs": args.pairs,
            "wall_s_per_run": {m: statistics.median(w) for m, w in walls.items()},
            "overhead_s_per_run": statistics.median(walls["isolate"]) - statistics.median(walls["in-process"]),
            "overhead_s_per_case": (statistics.median(walls["isolate"]) - statistics.median(walls["in-process"]))
            / max(n_cases, 1),
            "overhead_fraction": statistics.median(walls["isolate"]) / statistics.median(walls["in-process"]) - 1,
            "median_ratio_isolate_over_in_process": {"median": statistics.median(ratios), "min": min(ratios),
                                                     "max": max(ratios)},
        }
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

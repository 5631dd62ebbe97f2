"""Scale of the readers: gate/compare on 100k-case runs, report on a 10k-case run, a 200 MB cases.jsonl of
one repeated line. Synthetic runs written with accelbench's own RunWriter (real files, real readers).

Targets (issue 13): gate and compare of 100k cases under 10 s and 1 GB; a 10k-case report under 10 s; a
cases.jsonl of one repeated line refused at its second line, in constant memory.

Each step runs in a fresh process (`python -m accelbench ...`), timed by wall clock, with its peak RSS
from getrusage(RUSAGE_CHILDREN). Run it on an idle machine; on a shared one compare ratios, not seconds.

    python benchmarks/bench_scale.py [--cases 100000] [--report-cases 10000] [--samples 30] [--dir DIR]
                                     [--steps gate,compare,compare-json,report,dup]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from accelbench.measure.stats import summarize
from accelbench.results import CASES_FILE, CaseRecord, RunRecord, RunWriter, Timing, _dumps

REPO = Path(__file__).resolve().parents[1]


def synthetic_run(root: Path, run_id: str, n: int, samples: int, seed: int, slower: float = 1.0) -> Path:
    """n cases of one workload, ``samples`` lognormal samples each (1 us .. 10 ms medians, the same in every
    run; every 1000th case ``slower`` times slower)."""
    rng = np.random.default_rng(seed)
    env = {"cpu": {"model": "bench"}, "packages": {"numpy": np.__version__}}
    w = RunWriter(root, RunRecord(run_id=run_id, suite="scale", started_at="2026-01-01T00:00:00Z", environment=env))
    medians = np.exp(np.random.default_rng(0).uniform(np.log(1e-6), np.log(1e-2), n))  # the same cases in every run
    # the writer's own line format, without its fsync per case (200k fsyncs would be the benchmark)
    with open(w.dir / CASES_FILE, "a", encoding="utf-8") as f:
        for i in range(n):
            x = medians[i] * rng.lognormal(0.0, 0.03, samples) * (slower if i % 1000 == 0 else 1.0)
            t = Timing(method="cpu-perf_counter", samples_s=[float(v) for v in x], inner_loops=10,
                       summary=summarize(x).to_dict())
            f.write(_dumps(CaseRecord(run_id=run_id, case_id=f'scale/w/{{"i":{i}}}@cpu', suite="scale",
                                      workload="w", name=f"w i={i}", params={"i": i}, backend="cpu", status="ok",
                                      timing=t, definition_hash="h")) + "\n")
    w.close("finished", {"ok": n})
    return w.dir


def timed(*args: str) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and exit code of ``python -m accelbench ARGS`` in a fresh process."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run([sys.executable, '-m', 'accelbench', *sys.argv[1:]], stdout=subprocess.DEVNULL); "
            "dt = time.perf_counter() - t; "
            "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, r.returncode)")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--report-cases", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--steps", default="gate,compare,compare-json,report,dup",
                    help="which steps to time (comma-separated)")
    a = ap.parse_args()
    steps = set(a.steps.split(","))
    root = a.dir or Path(tempfile.mkdtemp(prefix="accelbench-scale-"))
    t0 = time.perf_counter()
    base = synthetic_run(root, "base", a.cases, a.samples, 1)
    new = synthetic_run(root, "new", a.cases, a.samples, 2, slower=1.3)
    small = synthetic_run(root, "small", a.report_cases, a.samples, 3)
    print(f"wrote 2 x {a.cases} + {a.report_cases} cases ({a.samples} samples each) in "
          f"{time.perf_counter() - t0:.1f} s under {root}")
    results: dict[str, dict[str, float]] = {}
    for name, step, args in (("gate", "gate", ["gate", str(base), str(new)]),
                             ("compare", "compare", ["compare", str(base), str(new)]),
                             ("compare --json", "compare-json", ["compare", str(base), str(new), "--json"]),
                             ("report", "report", ["report", str(small), "-o", str(root / "report.html")])):
        if step not in steps:
            continue
        dt, rss, rc = timed(*args)
        results[name] = {"seconds": round(dt, 2), "peak_rss_mb": round(rss), "exit": rc}
        print(f"{name:>15}: {dt:7.2f} s  {rss:7.0f} MB peak RSS  exit {rc}")
    if (root / "report.html").exists():
        print(f"{'report size':>15}: {(root / 'report.html').stat().st_size / 1e6:.1f} MB")
    if "dup" not in steps:
        print(json.dumps(results))
        return
    # one repeated line, 200 MB
    dup = root / "dup"
    dup.mkdir()
    line = (small / "cases.jsonl").open().readline()
    (dup / "run.json").write_text((small / "run.json").read_text())
    with open(dup / "cases.jsonl", "w") as f:
        f.write(line * max(2, (200 << 20) // len(line)))
    dt, rss, rc = timed("gate", str(dup), str(dup))
    results["gate on 200 MB of one repeated line"] = {"seconds": round(dt, 2), "peak_rss_mb": round(rss), "exit": rc}
    print(f"{'gate dup 200MB':>15}: {dt:7.2f} s  {rss:7.0f} MB peak RSS  exit {rc}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

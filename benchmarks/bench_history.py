"""Scale of `accelbench history`: synthetic results folders of --runs runs x --cases cases.

The runs are written as the runner writes them (run.json + cases.jsonl, schema version 1; 5 samples per
case, lognormal noise of 1%, a 5% step in every tenth case at a random run), straight to files because
RunWriter's fsync per case would make writing a million cases take an hour. Then, timed:

  build        the first `history`: index every run (results.read_run of each) and analyse every case
  query        `history` again with nothing new: the target is under 2 s at 10,000 runs x 100 cases
  incremental  --add new runs appear: only they are read; every series they extend is re-analysed
  query again  nothing new once more

Each step is load_history() as the CLI calls it; the index-update part is timed on its own too.

Run:  PYTHONPATH=. python benchmarks/bench_history.py [--runs 10000 --cases 100 --add 10] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from accelbench.history.analysis import load_history
from accelbench.history.index import Index
from accelbench.identity import CaseKey
from tests.history_runs import MACHINE_A, stamp


def write_runs(root: Path, first: int, n: int, cases: int, steps: dict[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [CaseKey.of("scale", f"w{c:03d}", None, {"n": c}, "cpu").id for c in range(cases)]
    levels = 1e-4 * (1.0 + np.arange(cases))
    env = json.dumps(MACHINE_A)
    for i in range(first, first + n):
        rid, t = stamp(i)
        d = root / rid
        d.mkdir(parents=True)
        (d / "run.json").write_text(
            f'{{"schema_version":1,"run_id":"{rid}","suite":"scale","started_at":"{t}","status":"finished",'
            f'"git":{{}},"environment":{env}}}')
        x = levels[:, None] * np.exp(rng.normal(0.0, 0.01, (cases, 5)))
        for c, at in steps.items():
            if i >= at:
                x[c] *= 1.05
        xs = np.sort(x, axis=1)
        lines = []
        for c in range(cases):
            s = xs[c]
            summ = {"n": 5.0, "median": float(s[2]), "min": float(s[0]), "ci_low": float(s[0]), "ci_high": float(s[4])}
            lines.append(json.dumps({"schema_version": 1, "run_id": rid, "case_id": ids[c], "suite": "scale",
                                     "workload": f"w{c:03d}", "name": f"w{c:03d} n={c}", "params": {"n": c},
                                     "backend": "cpu", "status": "ok",
                                     "timing": {"method": "cpu-perf_counter", "samples_s": x[c].tolist(),
                                                "summary": summ}}, separators=(",", ":")))
        (d / "cases.jsonl").write_text("\n".join(lines) + "\n")


def timed(label: str, root: Path) -> float:
    """The index update on its own, then load_history (which updates again: nothing new by then).
    Wall and CPU seconds: on a shared machine the wall time is the CPU time stretched by the load."""
    t0, c0 = time.perf_counter(), time.process_time()
    with Index(root) as ix:
        rep = ix.update()
    t1, c1 = time.perf_counter(), time.process_time()
    h = load_history([root])
    t2, c2 = time.perf_counter(), time.process_time()
    n_cp = sum(len(s.changes) for s in h.series)
    print(f"{label:12} update {t1 - t0:6.2f} s wall ({c1 - c0:.2f} CPU): {rep.read} runs read, {rep.unchanged} "
          f"unchanged; history {t2 - t1:6.2f} s wall ({c2 - c1:.2f} CPU): {len(h.series)} cases x {len(h.runs)} "
          f"runs, {n_cp} change points; load {os.getloadavg()[0]:.1f}", flush=True)
    return t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--add", type=int, default=10)
    ap.add_argument("--dir", type=Path, help="results folder to use (default: a temporary one)")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    steps = {c: int(rng.integers(a.runs // 10, a.runs)) for c in range(0, a.cases, 10)}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        root = a.dir or Path(tmp) / "results"
        t0 = time.perf_counter()
        write_runs(root, 0, a.runs, a.cases, steps, seed=2)
        print(f"wrote {a.runs} runs x {a.cases} cases in {time.perf_counter() - t0:.1f} s", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        h = load_history([root])
        print(f"{'build':12} {time.perf_counter() - t0:.1f} s wall ({time.process_time() - c0:.1f} CPU): index every "
              f"run and analyse every case: {len(h.series)} cases, {sum(len(s.changes) for s in h.series)} change "
              f"points ({len(steps)} steps planted); load {os.getloadavg()[0]:.1f}", flush=True)
        q = [timed("query", root) for _ in range(3)]
        write_runs(root, a.runs, a.add, a.cases, steps, seed=3)
        timed("incremental", root)
        q += [timed("query again", root)]
        print(f"target: history under 2 s once indexed -> {'met' if min(q) < 2.0 else 'NOT met'} "
              f"(best {min(q):.2f} s, worst {max(q):.2f} s wall)")


if __name__ == "__main__":
    main()

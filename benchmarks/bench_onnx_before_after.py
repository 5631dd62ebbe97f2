"""accelbench's ONNX executor of an older commit ("before") and of this tree ("after") side by side in one
process, alternating run by run on the same plan input, with onnxruntime (one thread) beside them.

    git archive 2a4c1f9 | tar -x -C /tmp/base
    python benchmarks/bench_onnx_before_after.py /tmp/base [--model zoo:squeezenet] [--batch 1] [--runs 40]

The older tree's ``accelbench`` package is copied into a temporary folder as ``accelbench_base`` (its
imports are relative), so both import at once. BLAS runs one thread. Reported per engine: the thread's
CPU time (minimum and median: less sensitive to a loaded machine than wall time), the median wall time
and images/s, and onnxruntime's time over each (the issue's accelbench/onnxruntime ratio). Only the
ratios measured in one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _executor(pkg: str, ref: str, batch: int) -> tuple[Any, str, Any]:
    mod = {n: importlib.import_module(f"{pkg}.onnx.{n}") for n in ("executor", "importer", "planner", "zoo", "workload")}
    path = str(mod["zoo"].path_for(ref))
    lm = mod["importer"].load_checked(path)
    p = mod["planner"].plan(lm, fold_batchnorm=True, input_shapes=mod["workload"].input_shape(lm, batch))
    return mod["executor"].Executor(p), path, mod["workload"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_tree", type=Path, help="a checkout or `git archive` of the older commit")
    ap.add_argument("--model", default="zoo:squeezenet")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=40)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    with tempfile.TemporaryDirectory(prefix="accelbench-base-") as tmp:
        shutil.copytree(a.base_tree / "accelbench", Path(tmp) / "accelbench_base")
        sys.path.insert(0, tmp)
        before, path, workload = _executor("accelbench_base", a.model, a.batch)
        after, _, _ = _executor("accelbench", a.model, a.batch)
        sess = workload.ort_session(path, threads=1)
        x = {"input": np.random.default_rng(0).standard_normal((a.batch, 3, 224, 224)).astype(np.float32)}
        fns = {"before": lambda: before.run(x), "after": lambda: after.run(x), "onnxruntime": lambda: sess.run(None, x)}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        wall: dict[str, list[float]] = {k: [] for k in fns}
        with threadpool_limits(1, user_api="blas"):
            b0, a0 = before.run(x)[0], after.run(x)[0]
            diff = float(np.linalg.norm(b0 - a0) / np.linalg.norm(b0))
            sess.run(None, x)
            for i in range(a.runs):
                for k in (("before", "after", "onnxruntime") if i % 2 == 0 else ("after", "before", "onnxruntime")):
                    c0, w0 = time.thread_time(), time.perf_counter()
                    fns[k]()
                    cpu[k].append(time.thread_time() - c0)
                    wall[k].append(time.perf_counter() - w0)
    o_cpu, o_wall = min(cpu["onnxruntime"]), statistics.median(wall["onnxruntime"])
    print(f"{a.model} batch {a.batch}, {a.runs} runs each, alternating (outputs before/after differ by {diff:.1e})")
    for k in fns:
        cmin, cmed, wmed = min(cpu[k]), statistics.median(cpu[k]), statistics.median(wall[k])
        print(f"  {k:11} cpu min {cmin * 1e3:8.2f} ms, median {cmed * 1e3:8.2f} ms; wall median {wmed * 1e3:8.2f} ms "
              f"= {a.batch / wmed:7.1f} img/s; onnxruntime / this: cpu-min {o_cpu / cmin:.3f}, wall-median {o_wall / wmed:.3f}")


if __name__ == "__main__":
    main()

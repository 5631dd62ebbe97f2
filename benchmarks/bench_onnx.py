"""accelbench.onnx against onnxruntime and onnx.reference.ReferenceEvaluator on this CPU, side by side.

    python benchmarks/bench_onnx.py [--threads N] [--rounds 5] [--skip-rss] [--json out.json]
                                    [--models resnet50,squeezenet] [--batches 1,16] [--skip-reference]

1. images/s of accelbench and onnxruntime (CPUExecutionProvider, intra-op threads = NumPy's BLAS threads
   or --threads for both) on ResNet-50 and SqueezeNet 1.1 (accelbench.onnx.zoo, seeded weights) at batch
   1 and 16; the two engines alternate run by run, the median of each is compared (target >= 0.5).
   accelbench folds BatchNormalization into the convolutions as onnxruntime's optimizer does.
2. accelbench against onnx.reference.ReferenceEvaluator (the readable Python semantics) on SqueezeNet at
   batch 1 (target >= 10x).
3. peak RSS of ResNet-50 at batch 64 (a fresh process, sampled every 2 ms during one run) above the
   interpreter's with its libraries imported, against weights + the two largest activations of the plan
   (target <= 1.5x).
Timings on a shared machine are noisy: only ratios measured in one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelbench.onnx import executor, importer, planner, zoo  # noqa: E402
from accelbench.onnx.workload import input_shape, ort_session, ort_threads  # noqa: E402


def engines(ref: str, batch: int, rounds: int, threads: int | None) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    path = str(zoo.path_for(ref))
    lm = importer.load_checked(path)
    p = planner.plan(lm, fold_batchnorm=True, input_shapes=input_shape(lm, batch))
    ex = executor.Executor(p)
    x = {"input": np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    sess = ort_session(path, threads=threads)
    ta, to = [], []
    with threadpool_limits(limits=threads, user_api="blas") if threads else _null():
        ex.run(x)
        sess.run(None, x)
        for _ in range(rounds):
            t0 = time.perf_counter()
            ex.run(x)
            t1 = time.perf_counter()
            sess.run(None, x)
            t2 = time.perf_counter()
            ta.append(t1 - t0)
            to.append(t2 - t1)
    a, o = statistics.median(ta), statistics.median(to)
    return {"model": ref, "batch": batch, "accelbench_images_per_s": batch / a, "onnxruntime_images_per_s": batch / o,
            "ratio": o / a}


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def reference_evaluator(rounds: int) -> dict[str, Any]:
    from onnx.reference import ReferenceEvaluator

    path = str(zoo.path_for("zoo:squeezenet"))
    lm = importer.load_checked(path)
    ex = executor.Executor(planner.plan(lm, input_shapes=input_shape(lm, 1)))
    x = {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    ref = ReferenceEvaluator(path)
    ex.run(x)  # both under the caller's thread limit
    t0 = time.perf_counter()
    want = ref.run(None, x)[0]
    tr = time.perf_counter() - t0
    ta = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        got = ex.run(x)[0]
        ta.append(time.perf_counter() - t0)
    err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    return {"model": "zoo:squeezenet", "batch": 1, "reference_s": tr, "accelbench_s": statistics.median(ta),
            "speedup": tr / statistics.median(ta), "rel_error": err}


_RSS_CHILD = r'''
import gc, json, sys, threading, time
import numpy as np, psutil
proc = psutil.Process()
bare = proc.memory_info().rss
from accelbench.onnx import executor, importer, planner, zoo
from accelbench.onnx.workload import input_shape
import onnx, onnx.shape_inference, scipy.special  # everything a run imports, before the model is read
gc.collect()
base = proc.memory_info().rss
path = str(zoo.path_for("zoo:resnet50"))
lm = importer.load_checked(path)
p = planner.plan(lm, fold_batchnorm=True, input_shapes=input_shape(lm, 64))
del lm
gc.collect()
ex = executor.Executor(p)
x = {"input": np.random.default_rng(0).standard_normal((64, 3, 224, 224)).astype(np.float32)}
gc.collect()
before = proc.memory_info().rss
peak = [before]
stop = False
def sample():
    while not stop:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
t = threading.Thread(target=sample); t.start()
out = ex.run(x)
stop = True; t.join()
_, two = p.peak_activation_bytes()
print(json.dumps({"bare_interpreter_rss": bare, "interpreter_rss": base, "rss_before_run": before, "peak_rss_run": peak[0],
                  "weights": p.weight_bytes, "input": int(x["input"].nbytes), "two_largest": two}))
'''


def rss() -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", _RSS_CHILD], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], check=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    model = d["peak_rss_run"] - d["interpreter_rss"]
    budget = d["weights"] + sum(d["two_largest"])
    d["model_peak_bytes"] = model
    d["budget_bytes"] = budget
    d["ratio"] = model / budget
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="threads of both engines (default: NumPy's BLAS)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-reference", action="store_true", help="skip the ReferenceEvaluator comparison")
    ap.add_argument("--models", default="resnet50,squeezenet", help="zoo models of part 1, comma-separated")
    ap.add_argument("--batches", default="1,16", help="batch sizes of part 1, comma-separated")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res: dict[str, Any] = {"threads": a.threads or ort_threads(), "engines": []}
    for ref in [f"zoo:{m.strip()}" for m in a.models.split(",") if m.strip()]:
        for b in [int(v) for v in a.batches.split(",") if v.strip()]:
            r = engines(ref, b, a.rounds if b == 1 else max(2, a.rounds // 2), a.threads)
            res["engines"].append(r)
            print(f"{ref:16} batch {b:2}: accelbench {r['accelbench_images_per_s']:7.2f} img/s, onnxruntime "
                  f"{r['onnxruntime_images_per_s']:7.2f} img/s, ratio {r['ratio']:.2f} (target >= 0.5)", flush=True)
    from threadpoolctl import threadpool_limits

    if not a.skip_reference:
        with threadpool_limits(limits=a.threads, user_api="blas") if a.threads else _null():
            r = reference_evaluator(a.rounds)
        res["reference_evaluator"] = r
        print(f"ReferenceEvaluator {r['reference_s']:.2f} s vs accelbench {r['accelbench_s'] * 1e3:.1f} ms on "
              f"SqueezeNet batch 1: {r['speedup']:.0f}x (target >= 10x), rel. error {r['rel_error']:.1e}", flush=True)
    if not a.skip_rss:
        d = rss()
        res["rss"] = d
        mib = 2**20
        print(f"ResNet-50 batch 64: peak RSS {d['peak_rss_run'] / mib:.0f} MiB, interpreter {d['interpreter_rss'] / mib:.0f} "
              f"MiB, model {d['model_peak_bytes'] / mib:.0f} MiB vs weights {d['weights'] / mib:.0f} + two largest "
              f"activations {sum(d['two_largest']) / mib:.0f} MiB: {d['ratio']:.2f}x (target <= 1.5x)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

"""Does the harness cost GEMM throughput? The CPU ``gemm`` workload, timed by accelbench's CpuTimer, against
a bare ``a @ b`` loop timed the same way (perf_counter_ns, calibrated inner loops, median of samples).

Target: workload GFLOP/s >= 90% of bare. Rounds alternate workload / bare so drift on a shared machine
hits both alike; the verdict uses the median of the per-round (paired) ratios. The best sample of each
side is shown too: on a loaded machine it is the least disturbed view of what each loop can do.

    PYTHONPATH=. python benchmarks/bench_cpu_gemm.py [--size 1024] [--dtype float32] [--rounds 5] [--strict]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

from accelbench import backends
from accelbench.measure.timing import CpuTimer, TimingPolicy
from accelbench.workloads.base import get_workload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--size", type=int, default=1024, help="m = n = k")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--max-time", type=float, default=0.5, help="seconds of sampling per measurement")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the ratio is under 0.90")
    args = ap.parse_args(argv)

    n = args.size
    flops = 2.0 * n * n * n
    policy = TimingPolicy(max_time_s=args.max_time, min_time_s=min(0.5, args.max_time))
    timer = CpuTimer()

    cls = get_workload("gemm")
    wl = cls(cls.Params(m=n, n=n, k=n, dtype=args.dtype), backends.cpu(), seed=0)
    wl.setup()
    wl.run()
    chk = wl.check()
    if not chk.passed:
        print(f"gemm workload failed validation: {chk.message}", file=sys.stderr)
        return 1
    a, b = wl.a, wl.b  # type: ignore[attr-defined]  (same operands for both)

    def bare() -> None:
        a @ b

    wl_gf: list[float] = []
    bare_gf: list[float] = []
    ratios: list[float] = []
    best_w = best_b = 0.0
    for r in range(args.rounds):
        tw = timer.measure(wl.run, policy)
        tb = timer.measure(bare, policy)
        wl_gf.append(flops / tw.summary["median"] / 1e9)
        bare_gf.append(flops / tb.summary["median"] / 1e9)
        ratios.append(wl_gf[-1] / bare_gf[-1])
        best_w = max(best_w, flops / min(tw.samples_s) / 1e9)
        best_b = max(best_b, flops / min(tb.samples_s) / 1e9)
        print(f"round {r + 1}: workload {wl_gf[-1]:8.1f} GFLOP/s ({len(tw.samples_s)} samples x {tw.inner_loops} "
              f"loops, {tw.stop_reason})   bare a @ b {bare_gf[-1]:8.1f} GFLOP/s ({len(tb.samples_s)} samples x "
              f"{tb.inner_loops} loops, {tb.stop_reason})")
    w, bb = statistics.median(wl_gf), statistics.median(bare_gf)
    ratio = statistics.median(ratios)
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})  # type: ignore[func-returns-value]
    print(f"\ngemm {n}x{n}x{n} {args.dtype} on CPU ({blas.get('name', '?')} {blas.get('version', '')}), "
          f"median of {args.rounds} rounds:")
    print(f"  accelbench gemm workload (CpuTimer): {w:8.1f} GFLOP/s")
    print(f"  bare a @ b loop (CpuTimer):          {bb:8.1f} GFLOP/s")
    print(f"  best sample: workload {best_w:.1f}, bare {best_b:.1f} GFLOP/s (ratio {best_w / best_b:.3f})")
    print(f"  ratio workload / bare (median of paired rounds): {ratio:.3f}  "
          f"(target >= 0.90: {'PASS' if ratio >= 0.9 else 'FAIL'})")
    wl.teardown()
    return 1 if args.strict and ratio < 0.9 else 0


if __name__ == "__main__":
    raise SystemExit(main())

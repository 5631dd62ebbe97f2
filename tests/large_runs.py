"""Large synthetic runs for the report's scale tests: thousands of cases, written through accelbench's own
RunWriter and record format (real files, read back by the real readers), with seeded lognormal samples.

Two workloads: ``gemm`` (cases ``i`` at 12 sizes ``m``, with flop and byte counts for the roofline) and
``scale`` (cases ``i``, no work counts), each measured on cpu and on a "gpu" stand-in (a fixed factor
faster), so the speedups, the roofline, the distributions and run-vs-run all have thousands of cases.
Every ``skip_every``-th gpu case is recorded as skipped (a problem row with its reason).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accelbench.identity import CaseKey
from accelbench.measure.stats import summarize
from accelbench.results import CASES_FILE, CaseRecord, RunRecord, RunWriter, Timing, _dumps

SUITE = "large"
SIZES = [2 ** k for k in range(4, 16)]


def large_run(root: Path, run_id: str, n: int, seed: int = 0, samples: int = 12, slower: float = 1.0,
              skip_every: int = 100) -> Path:
    """A run of ``n`` cases (n // 2 per backend; ``gemm`` and ``scale`` alternate). Case ``i``'s median is
    the same in every run of the same ``n``; ``slower`` multiplies the cpu times of every 50th case (a
    planted regression for run vs run)."""
    rng = np.random.default_rng(seed)
    base = np.exp(np.random.default_rng(12345).uniform(np.log(1e-6), np.log(1e-2), n // 2))
    env = {"cpu": {"model": "large-test"}, "packages": {"numpy": np.__version__}}
    w = RunWriter(root, RunRecord(run_id=run_id, suite=SUITE, started_at="2026-01-01T00:00:00Z", environment=env))
    counts = {"ok": 0, "skipped": 0}
    # the writer's line format without its fsync per case (thousands of fsyncs would be the test's time)
    with open(w.dir / CASES_FILE, "a", encoding="utf-8") as f:
        for i in range(n // 2):
            wl = "gemm" if i % 2 == 0 else "scale"
            params: dict[str, int] = {"m": SIZES[i // 2 % len(SIZES)], "i": i} if wl == "gemm" else {"i": i}
            for be in ("cpu", "gpu"):
                key = CaseKey.of(SUITE, wl, None, params, be)
                rec = CaseRecord(run_id=w.run.run_id, case_id=key.id, suite=SUITE, workload=wl, family="test",
                                 name=f"{wl} " + " ".join(f"{k}={v}" for k, v in params.items()), params=params,
                                 backend=be, status="ok", definition_hash="h")
                if be == "gpu" and skip_every and i % skip_every == skip_every - 1:
                    rec.status, rec.message = "skipped", "GPU unavailable: synthetic skip"
                else:
                    med = base[i] * (0.25 if be == "gpu" else (slower if i % 50 == 0 else 1.0))
                    x = med * rng.lognormal(0.0, 0.02 + 0.1 * (i % 7 == 0), samples)
                    rec.timing = Timing(method="cpu-perf_counter", samples_s=[float(v) for v in x], inner_loops=1,
                                        summary=summarize(x).to_dict())
                    if wl == "gemm":
                        m = params["m"]
                        rec.work = {"flops": 2.0 * m ** 3, "bytes": 12.0 * m * m}
                        rec.throughput = {"gflops": 2.0 * m ** 3 / float(np.median(x)) / 1e9,
                                          "gbps": 12.0 * m * m / float(np.median(x)) / 1e9}
                counts[rec.status] += 1
                f.write(_dumps(rec) + "\n")
    w.close("finished", counts)
    return w.dir

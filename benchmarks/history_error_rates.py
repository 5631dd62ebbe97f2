"""Detection rate and false change points of accelbench.history.changepoints on synthetic series.

Each series has ``--length`` (default 40) per-run values, lognormal noise of relative sd sigma around a
level, and (unless step = 0) a multiplicative step at ``--step-at`` (default 20). For every (step, sigma)
pair, ``--series`` (default 100) series with seeds 0..N-1:

  detected   share of step series with a change point at the step +- 1 (95% Clopper-Pearson interval)
  near       share with a change point 2 or 3 runs from the step but none within +- 1 (found, misplaced)
  false/100  change points more than 3 runs from the step, per 100 series (for step 0: every one)

Noise "normal" is lognormal; "t3" draws the log-noise from Student's t with 3 degrees of freedom scaled
to the same sd (heavy tails: the occasional run hit by another tenant), which is what this shared
machine does to per-run medians.

Run:  PYTHONPATH=. python benchmarks/history_error_rates.py [--series 100 --alpha 0.001] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from accelbench.history.changepoints import Settings, detect
from benchmarks.gate_error_rates import clopper_pearson

STEPS = (0.0, 0.01, 0.02, 0.05, 0.10)
SIGMAS = (0.005, 0.01, 0.02, 0.05)


def series(step: float, sigma: float, n: int, at: int, seed: int, noise: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # t3 has variance 3: scaled to the same sd
    e = rng.standard_t(3, n) * sigma / np.sqrt(3.0) if noise == "t3" else rng.normal(0.0, sigma, n)
    x = 1e-3 * np.exp(e)
    if step:
        x[at:] *= 1.0 + step
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--step-at", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=Settings().alpha)
    ap.add_argument("--min-change", type=float, default=0.0)
    ap.add_argument("--noise", default="normal,t3")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    settings = Settings(alpha=a.alpha, min_change=a.min_change)
    rows = []
    t0 = time.perf_counter()
    for noise in a.noise.split(","):
        print(f"noise {noise}, {a.series} series of {a.length} runs, step at {a.step_at}, alpha {a.alpha:g}, "
              f"min change {a.min_change:g}")
        print("cells: detected at +-1 + detected 2-3 runs off, false change points per 100 series")
        print(f"{'step':>6} " + " ".join(f"{'sd ' + format(s * 100, 'g') + '%':>22}" for s in SIGMAS))
        for step in STEPS:
            cells = []
            for sigma in SIGMAS:
                hit = near3 = false = 0
                for seed in range(a.series):
                    idx = [c.index for c in detect(series(step, sigma, a.length, a.step_at, seed, noise), settings)]
                    d = [abs(i - a.step_at) for i in idx] if step else [10**9] * len(idx)
                    hit += any(x <= 1 for x in d)
                    near3 += any(1 < x <= 3 for x in d) and not any(x <= 1 for x in d)
                    false += sum(x > 3 for x in d)
                lo, hi = clopper_pearson(hit, a.series)
                rows.append({"noise": noise, "step": step, "sigma": sigma, "series": a.series, "detected": hit,
                             "detected_ci": [round(lo, 3), round(hi, 3)], "near": near3,
                             "false_per_100": 100.0 * false / a.series})
                cells.append(f"{'-' if not step else f'{hit}+{near3}'} det, {100.0 * false / a.series:3.0f} false")
            print(f"{step * 100:5g}% " + " ".join(f"{c:>22}" for c in cells))
    print(f"({time.perf_counter() - t0:.1f} s)")
    if a.json:
        a.json.write_text(json.dumps({"settings": vars(a) | {"json": None}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

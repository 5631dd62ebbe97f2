"""``horner``: evaluate a polynomial of ``degree`` at ``n`` points by Horner's rule, on NumPy or CuPy.

    y = c[0];  for k in 1..degree:  y = y * x + c[k]

Each step is one multiply and one add over the whole array (two ufunc passes, in place), so the work
grows linearly with ``degree``: a suite can scale it, and an A/B can plant a known change in the code.
The check compares the output with the same polynomial evaluated in float64 NumPy on the host.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from accelbench.workloads.base import Params, Work, Workload, register

# Steps run per unit of ``degree``. The A/B evidence (benchmarks/ab_error_rates.py in accelbench) plants
# a real code change by installing a copy of this package with WORK_FACTOR = 1.05: 21 steps instead of 20.
WORK_FACTOR = 1.0


class HornerParams(Params):
    n: int = Field(1 << 16, gt=0, le=1 << 26, description="points evaluated")
    degree: int = Field(20, ge=1, le=4096, description="polynomial degree: the work scales with it")
    dtype: Literal["float32", "float64"] = "float32"


def steps(p: HornerParams) -> int:
    return max(1, round(p.degree * WORK_FACTOR))


@register
class Horner(Workload):
    """Horner evaluation of a fixed random polynomial; validated against float64."""

    name = "horner"
    family = "example"
    Params = HornerParams
    description = "polynomial evaluation by Horner's rule (multiply-add chain over an array)"

    @classmethod
    def work(cls, p: Any) -> Work:
        k = steps(p)
        size = np.dtype(p.dtype).itemsize
        # 2 flops per point per step; the fewest bytes: read x once, write y once
        return Work(flops=2.0 * p.n * k, bytes=2.0 * size * p.n, items=p.n, item_unit="points")

    @classmethod
    def memory_bytes(cls, p: Any, backend: str) -> int:
        return 2 * np.dtype(p.dtype).itemsize * p.n

    def setup(self) -> None:
        # seeded, identical on both backends; both buffers 64-byte aligned, so every round of an A/B times
        # the same SIMD loop rather than whatever alignment malloc happened to give (Workload.empty_aligned)
        self.x = self.empty_aligned((self.p.n,), self.p.dtype)
        self.x[...] = self.random((self.p.n,), self.p.dtype)
        # coefficients in [-1, 1] and |x| <= 1 keep |y| <= degree + 1: no overflow, a meaningful check
        self.coef = [float(c) for c in self.rng().uniform(-1.0, 1.0, size=steps(self.p) + 1)]
        self.y = self.empty_aligned((self.p.n,), self.p.dtype)

    def run(self) -> None:
        xp, x, y = self.xp, self.x, self.y
        y.fill(self.coef[0])
        for c in self.coef[1:]:
            xp.multiply(y, x, out=y)
            xp.add(y, c, out=y)

    def output(self) -> Any:
        return self.y

    def reference(self) -> np.ndarray:
        x = self.backend.asnumpy(self.x).astype(np.float64)
        y = np.full_like(x, self.coef[0])
        for c in self.coef[1:]:
            y = y * x + c
        return y

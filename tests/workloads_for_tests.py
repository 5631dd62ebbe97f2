"""Small real workloads for testing the runner's paths. Names start with ``t_`` so they never collide
with shipped workloads."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import Field

from accelbench.workloads.base import Params, Work, Workload, register


class ScaleParams(Params):
    n: int = Field(1000, gt=0, le=10**9)
    dtype: str = "float32"
    extra: list[int] = Field(default_factory=list)  # a list-typed parameter: not an axis


@register
class TScale(Workload):
    """y = 2x, validated against float64."""

    name = "t_scale"
    family = "test"
    Params = ScaleParams

    @classmethod
    def work(cls, p: Any) -> Work:
        return Work(flops=p.n, bytes=8 * p.n, items=p.n, item_unit="elements")

    @classmethod
    def memory_bytes(cls, p: Any, backend: str) -> int:
        return 8 * p.n

    def setup(self) -> None:
        self.x = self.random((self.p.n,), self.p.dtype)
        self.y = self.xp.empty_like(self.x)

    def run(self) -> None:
        self.xp.multiply(self.x, 2.0, out=self.y)

    def output(self) -> Any:
        return self.y

    def reference(self) -> np.ndarray:
        return self.backend.asnumpy(self.x).astype(np.float64) * 2.0


@register
class TWrong(TScale):
    """Computes 2x + 1e-2*x: a plausible but wrong kernel that validation must catch."""

    name = "t_wrong"

    def run(self) -> None:
        self.xp.multiply(self.x, 2.01, out=self.y)


@register
class TRaise(TScale):
    name = "t_raise"

    def run(self) -> None:
        raise RuntimeError("kernel exploded")


@register
class TOom(TScale):
    name = "t_oom"

    def setup(self) -> None:
        raise MemoryError("Unable to allocate 1.00 TiB")


class SlowParams(Params):
    sleep_s: float = Field(0.01, ge=0)


@register
class TSlow(Workload):
    name = "t_slow"
    family = "test"
    Params = SlowParams

    def setup(self) -> None:
        self.y = np.ones(4)

    def run(self) -> None:
        time.sleep(self.p.sleep_s)

    def output(self) -> Any:
        return self.y

    def reference(self) -> np.ndarray:
        return np.ones(4)

"""Optimisers: SGD with momentum, and Adam.

Both update parameters in place on the parameters' array module with preallocated state and scratch
buffers: a step allocates nothing and never reads a value back to the host, so a GPU training step can
be captured in a CUDA graph. Adam's bias correction therefore lives in 0-d device arrays updated on the
device (a Python step counter would be frozen into a captured graph).
"""

from __future__ import annotations

import math
from typing import Any


class Optimizer:
    def __init__(self, params: list[Any], grads: list[Any], xp: Any, lr: float) -> None:
        if len(params) != len(grads):
            raise ValueError("params and grads differ in length")
        self.params = params
        self.grads = grads
        self.xp = xp
        self.lr = float(lr)

    def step(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Back to the state before the first step, in place (a captured CUDA graph holds the buffers)."""
        raise NotImplementedError


class SGD(Optimizer):
    """v = momentum * v + (g + weight_decay * p);  p -= lr * v  (PyTorch's formulation)."""

    def __init__(self, params: list[Any], grads: list[Any], xp: Any, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, grads, xp, lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.velocity = [xp.zeros_like(p) for p in params]
        self.scratch = [xp.empty_like(p) for p in params]

    def reset(self) -> None:
        for v in self.velocity:
            v.fill(0)

    def step(self) -> None:
        xp = self.xp
        for p, g, v, s in zip(self.params, self.grads, self.velocity, self.scratch, strict=True):
            if self.momentum:
                xp.multiply(v, self.momentum, out=v)
                xp.add(v, g, out=v)
            else:
                v[...] = g
            if self.weight_decay:
                xp.multiply(p, self.weight_decay, out=s)
                xp.add(v, s, out=v)
            xp.multiply(v, self.lr, out=s)
            xp.subtract(p, s, out=p)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction: p -= lr_t * m / (sqrt(v) + eps_t)."""

    def __init__(self, params: list[Any], grads: list[Any], xp: Any, lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(params, grads, xp, lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = [xp.zeros_like(p) for p in params]
        self.v = [xp.zeros_like(p) for p in params]
        self.scratch = [xp.empty_like(p) for p in params]
        dt = params[0].dtype if params else "float64"
        # beta^t kept on the device (see module docstring); float64 so many steps keep their precision
        self.b1t = xp.ones((), dtype="float64")
        self.b2t = xp.ones((), dtype="float64")
        self._c1 = xp.empty((), dtype="float64")
        self._c2 = xp.empty((), dtype="float64")
        self._lr_t = xp.empty((), dtype=dt)
        self._eps_t = xp.empty((), dtype=dt)

    def reset(self) -> None:
        for a in (*self.m, *self.v):
            a.fill(0)
        self.b1t.fill(1)
        self.b2t.fill(1)

    @property
    def steps(self) -> int:
        """Steps taken so far (reads the device counter: not for use inside a timed step)."""
        b1t = float(self.b1t)
        return 0 if b1t == 1.0 else round(math.log(b1t) / math.log(self.beta1))

    def step(self) -> None:
        xp = self.xp
        xp.multiply(self.b1t, self.beta1, out=self.b1t)
        xp.multiply(self.b2t, self.beta2, out=self.b2t)
        # c1 = 1 - beta1^t, c2 = sqrt(1 - beta2^t); lr_t = lr * c2 / c1; eps_t = eps * c2 so that
        # m / (sqrt(v) + eps_t) * lr_t == lr * m_hat / (sqrt(v_hat) + eps)
        xp.subtract(1.0, self.b1t, out=self._c1)
        xp.subtract(1.0, self.b2t, out=self._c2)
        xp.sqrt(self._c2, out=self._c2)
        xp.divide(self._c2, self._c1, out=self._c1)
        xp.multiply(self._c1, self.lr, out=self._c1)
        xp.multiply(self._c2, self.eps, out=self._c2)
        # float64 -> parameter dtype by assignment (a device-side cast; no ufunc casting= needed)
        self._lr_t[...] = self._c1
        self._eps_t[...] = self._c2
        b1, b2 = self.beta1, self.beta2
        for p, g, m, v, s in zip(self.params, self.grads, self.m, self.v, self.scratch, strict=True):
            xp.multiply(m, b1, out=m)
            xp.multiply(g, 1.0 - b1, out=s)
            xp.add(m, s, out=m)
            xp.multiply(v, b2, out=v)
            xp.multiply(g, g, out=s)
            xp.multiply(s, 1.0 - b2, out=s)
            xp.add(v, s, out=v)
            xp.sqrt(v, out=s)
            xp.add(s, self._eps_t, out=s)
            xp.divide(m, s, out=s)
            xp.multiply(s, self._lr_t, out=s)
            xp.subtract(p, s, out=p)


def make(name: str, params: list[Any], grads: list[Any], xp: Any, lr: float | None = None,
         momentum: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    if name == "sgd":
        return SGD(params, grads, xp, lr=0.01 if lr is None else lr, momentum=momentum,
                   weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, grads, xp, lr=1e-3 if lr is None else lr)
    raise ValueError(f"unknown optimizer {name!r}; allowed: sgd, adam")

"""A CNN built from a validated :class:`~accelbench.models.spec.ModelSpec`, with a softmax cross-entropy
head, a training step, evaluation, weight snapshots, a float64 NumPy reference twin, and CUDA-graph
capture of a step on the GPU.

Labels travel as one-hot arrays so the loss needs no fancy indexing (no host synchronisation, no
allocation): a step is forward, loss, backward and the optimiser update, all queued on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops.capture import capturable
from . import layers as L
from . import optim
from .spec import ModelSpec

Array = Any


class Network:
    def __init__(self, spec: ModelSpec, xp: Any = np, dtype: Any = "float32", seed: int = 0) -> None:
        self.spec = spec
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.seed = seed
        rng = np.random.default_rng(seed)  # host generator: CPU and GPU start from identical weights
        self.scratch = L.Scratch(xp)
        self.layers: list[L.Layer] = []
        for i, (ls, a, b) in enumerate(zip(spec.layers, spec.in_shapes(), spec.shapes, strict=True)):
            self.layers.append(L.build(ls, xp, self.dtype, a, b, self.scratch, rng, spec.init, seed + 7919 * (i + 1)))
        for conv, relu in zip(self.layers, self.layers[1:], strict=False):
            # conv -> relu: the CPU shifted-GEMM convolution applies the ReLU on its output in cache
            if isinstance(conv, L.Conv2D) and type(relu) is L.ReLU:
                conv.fuse_relu = True
                relu.after = conv
        self.params: list[Array] = [p for ly in self.layers for p in ly.params]
        self.grads: list[Array] = [g for ly in self.layers for g in ly.grads]
        self._bufs: dict[str, Array] = {}
        self.optimizer: optim.Optimizer | None = None

    # ---- buffers ----
    def _buf(self, name: str, shape: tuple[int, ...], dtype: Any = None) -> Array:
        dt = np.dtype(dtype) if dtype is not None else self.dtype
        a = self._bufs.get(name)
        if a is None or tuple(a.shape) != tuple(shape) or a.dtype != dt:
            a = self.xp.empty(shape, dtype=dt)
            self._bufs[name] = a
        return a

    def flat_layers(self) -> list[L.Layer]:
        return [s for ly in self.layers for s in ly.sublayers()]

    def state_arrays(self) -> list[Array]:
        """Non-trained state (batchnorm running statistics), in a fixed order."""
        return [v for s in self.flat_layers() for _k, v in sorted(s.state.items())]

    def param_count(self) -> int:
        return int(sum(int(p.size) for p in self.params))

    # ---- compute ----
    def forward(self, x: Array, train: bool = True) -> Array:
        a = x
        for ly in self.layers:
            a = ly.forward(a, train)
        return a

    def loss(self, logits: Array, onehot: Array) -> tuple[Array, Array]:
        """Mean softmax cross-entropy (0-d array, stays on the device) and dL/dlogits."""
        xp = self.xp
        n, k = logits.shape
        mx = self._buf("ce.max", (n, 1))
        z = self._buf("ce.z", (n, k))
        t = self._buf("ce.t", (n, k))
        zy = self._buf("ce.zy", (n,))
        ssum = self._buf("ce.sum", (n, 1))
        loss = self._buf("ce.loss", ())
        dlogits = self._buf("ce.dlogits", (n, k))
        logits.max(axis=1, keepdims=True, out=mx)
        xp.subtract(logits, mx, out=z)  # shifted logits: exp cannot overflow
        xp.multiply(z, onehot, out=t)
        t.sum(axis=1, out=zy)
        xp.exp(z, out=t)
        t.sum(axis=1, keepdims=True, out=ssum)
        xp.divide(t, ssum, out=dlogits)  # softmax probabilities
        xp.log(ssum, out=ssum)
        xp.subtract(ssum[:, 0], zy, out=zy)  # per-example loss: logsumexp - z_y
        zy.mean(out=loss)
        xp.subtract(dlogits, onehot, out=dlogits)
        xp.multiply(dlogits, 1.0 / n, out=dlogits)
        return loss, dlogits

    def backward(self, dlogits: Array) -> None:
        d = dlogits
        for i in range(len(self.layers) - 1, -1, -1):
            d = self.layers[i].backward(d, need_dx=i > 0)  # the input image needs no gradient

    def forward_backward(self, x: Array, onehot: Array) -> Array:
        logits = self.forward(x, train=True)
        loss, dlogits = self.loss(logits, onehot)
        self.backward(dlogits)
        return loss

    def set_optimizer(self, name: str = "sgd", lr: float | None = None, momentum: float = 0.9,
                      weight_decay: float = 0.0) -> optim.Optimizer:
        self.optimizer = optim.make(name, self.params, self.grads, self.xp, lr=lr, momentum=momentum,
                                    weight_decay=weight_decay)
        return self.optimizer

    def train_step(self, x: Array, onehot: Array) -> Array:
        """Forward, loss, backward, update. Returns the loss as a 0-d device array (no host sync)."""
        if self.optimizer is None:
            self.set_optimizer()
        assert self.optimizer is not None
        loss = self.forward_backward(x, onehot)
        self.optimizer.step()
        return loss

    def predict(self, x: Array, batch: int = 256) -> np.ndarray:
        """Class predictions (host array) in inference mode, ``batch`` images at a time."""
        out = []
        for i in range(0, x.shape[0], batch):
            logits = self.forward(x[i:i + batch], train=False)
            out.append(_asnumpy(self.xp, logits.argmax(axis=1)))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def accuracy(self, x: Array, labels: np.ndarray, batch: int = 256) -> float:
        pred = self.predict(x, batch)
        return float(np.mean(pred == np.asarray(labels))) if len(pred) else 0.0

    # ---- weights ----
    def get_weights(self) -> list[np.ndarray]:
        """Host copies of every parameter and state array."""
        return [_asnumpy(self.xp, a).copy() for a in (*self.params, *self.state_arrays())]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        targets = [*self.params, *self.state_arrays()]
        if len(weights) != len(targets):
            raise ValueError(f"{len(weights)} arrays for {len(targets)} weights")
        for t, w in zip(targets, weights, strict=True):
            if tuple(t.shape) != tuple(w.shape):
                raise ValueError(f"weight shape {w.shape} != {t.shape}")
            t[...] = self.xp.asarray(np.asarray(w).astype(t.dtype))

    def grads_host(self) -> np.ndarray:
        """Every gradient, flattened into one float64 host vector."""
        if not self.grads:
            return np.zeros(0)
        return np.concatenate([_asnumpy(self.xp, g).astype(np.float64).ravel() for g in self.grads])

    def reference(self, weights: list[np.ndarray] | None = None, follow_kinks: bool = False) -> Network:
        """A float64 NumPy twin with this network's weights (or ``weights``) and its last dropout masks.

        With ``follow_kinks`` the twin also makes this network's last ReLU and max-pool choices (see
        :mod:`.layers`): a float32 pre-activation within rounding of 0 may land on the other side of it
        than in float64, and there the gradient jumps (by a whole unit's contribution to a bias gradient,
        for instance), so a reference that decides for itself compares two different branches of the same
        piecewise-linear function. The twin's :meth:`kinks` tells how far from 0 the followed choices were.
        """
        ref = Network(self.spec, np, "float64", self.seed)
        ref.set_weights(weights if weights is not None else self.get_weights())
        ref.follow(self, kinks=follow_kinks)
        return ref

    def follow(self, other: Network | None, kinks: bool = True) -> None:
        """Make ``other``'s last dropout masks (and, with ``kinks``, its ReLU and max-pool choices) in
        this network's forward passes until ``follow(None)``; ``other`` has the same spec and its last
        forward had the batch size of ours."""
        theirs_all = other.flat_layers() if other is not None else [None] * len(self.flat_layers())
        for theirs, mine in zip(theirs_all, self.flat_layers(), strict=True):
            mine.follow = None
            mine.kinks = (0, 0.0)
            if theirs is not None and (isinstance(mine, L.Dropout) or kinks):
                mine.follow = theirs.decision()
        for relu in self.layers:
            if isinstance(relu, L.ReLU) and relu.after is not None:  # a followed mask is the ReLU layer's job
                relu.after.fuse_relu = relu.follow is None

    def kinks(self) -> tuple[int, float]:
        """After a forward that followed another network: how many ReLU / max-pool choices differed from
        this network's own, and the largest distance from the switch point among them, relative to the RMS
        of that layer's input (0 when all agreed)."""
        found = [ly.kinks for ly in self.flat_layers() if ly.follow is not None and not isinstance(ly, L.Dropout)]
        return sum(n for n, _ in found), max((w for _, w in found), default=0.0)


def _asnumpy(xp: Any, a: Array) -> np.ndarray:
    if xp is np:
        return np.asarray(a)
    return xp.asnumpy(a)


def one_hot(labels: np.ndarray, classes: int, dtype: Any = "float32") -> np.ndarray:
    out = np.zeros((len(labels), classes), dtype=dtype)
    out[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1
    return out


class CudaGraph:
    """``fn`` (a training or inference step) captured once into a CUDA graph; ``launch()`` replays it on
    the current stream with one API call instead of one launch per kernel.

    Temporaries that ``fn`` allocates come from a memory pool private to the graph (kept alive with it),
    so nothing allocated after capture can take the addresses the graph writes to. ``fn`` runs once
    eagerly on the capture stream first, so every buffer already exists and the capture itself needs no
    cudaMalloc. GEMMs go through :func:`accelbench.ops.capture.capturable` (warm-up and capture alike, so
    both allocate the same buffers): CuPy itself refuses cuBLAS calls on a capturing stream.
    """

    def __init__(self, cp: Any, fn: Callable[[], Any]) -> None:
        self.cp = cp
        self.pool = cp.cuda.MemoryPool()
        self.stream = cp.cuda.Stream(non_blocking=True)
        cp.cuda.get_current_stream().synchronize()
        with cp.cuda.using_allocator(self.pool.malloc), self.stream, capturable(cp):
            fn()
            self.stream.synchronize()
            self.stream.begin_capture()
            try:
                fn()
            finally:
                self.graph = self.stream.end_capture()
        self.stream.synchronize()

    def launch(self) -> None:
        self.graph.launch(self.cp.cuda.get_current_stream())

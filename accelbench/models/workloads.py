"""Model workloads: ``inference``, ``train_step`` and ``train_to_accuracy`` of a suite-defined CNN.

Each takes ``model`` (a name from the suite's ``models:`` mapping, or a built-in one such as
``mnist-classic``), so a list of names is an axis across model variants like any other parameter. The
resolved :class:`ModelSpec` is part of the case's definition (it enters the definition hash).

* ``inference``: one forward pass (inference mode) of a preallocated batch. Work: 2 x MACs per image;
  items: images. Checked against a float64 NumPy forward with the same weights and inputs.
* ``train_step``: forward, softmax cross-entropy, backward and the optimiser update. Work: ~3x the
  forward. Checked by recomputing the first step's loss and gradients in float64 NumPy from the weights
  the step started from.
* ``train_to_accuracy`` (custom): train until the test accuracy reaches ``target`` (DAWNBench's measure)
  or ``max_epochs`` / ``time_limit_s`` run out; reports time to accuracy and the final test accuracy.

On the GPU, ``cuda_graph: true`` captures the step in a CUDA graph once during setup and ``run()``
replays it, which removes the per-kernel launch overhead that dominates small batches.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ..errors import WorkloadError
from ..ops import cpu_blas
from ..workloads.base import (
    TOLERANCE,
    BaseParams,
    Check,
    CustomResult,
    Params,
    Work,
    Workload,
    register,
    rel_error,
)
from . import data as D
from .network import CudaGraph, Network, one_hot
from .spec import Conv, ModelSpec, Residual, resolve

ModelDType = Literal["float32", "float64"]
DataName = Literal["synthetic", "digits", "mnist"]

# float32 gradients of a deep net against float64 accumulate more rounding than one GEMM's output;
# the step check allows this multiple of the dtype's forward tolerance.
GRAD_TOL_FACTOR = 10.0


class ModelParams(Params):
    model: str = Field(description="a name from the suite's models: mapping (or a built-in model)")
    batch: int = Field(32, ge=1, le=8192, description="images per step")
    dtype: ModelDType = "float32"
    data: DataName = Field("synthetic", description="synthetic, digits (scikit-learn) or mnist (IDX files)")
    data_dir: str | None = Field(None, description="mnist: directory of the IDX files, relative to the suite")

    _spec: ModelSpec | None = PrivateAttr(default=None)
    _suite_dir: Path | None = PrivateAttr(default=None)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str, info: ValidationInfo) -> str:
        resolve(v, (info.context or {}).get("models"))  # raises ValueError naming the defined models
        return v

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> ModelParams:
        ctx = info.context or {}
        self._spec = resolve(self.model, ctx.get("models"))
        sd = ctx.get("suite_dir")
        self._suite_dir = Path(sd) if sd is not None else None
        return self

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:  # built without validation (model_construct)
            self._spec = resolve(self.model, None)
        return self._spec


class StepParams(ModelParams):
    cuda_graph: bool = Field(False, description="GPU: capture the step in a CUDA graph and replay it")


class TrainStepParams(StepParams):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float | None = Field(None, gt=0, le=10, description="learning rate (default: 0.01 sgd, 1e-3 adam)")
    momentum: float = Field(0.9, ge=0, lt=1)


class TrainToAccuracyParams(ModelParams):
    data: DataName = "digits"
    target: float = Field(0.97, gt=0, le=1, description="test accuracy to reach")
    max_epochs: int = Field(10, ge=1, le=1000)
    time_limit_s: float = Field(600.0, gt=0, le=86_400, description="stop training after this long")
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float | None = Field(None, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    lr_decay: float = Field(1.0, gt=0, le=1, description="learning rate multiplier after each epoch")
    evals_per_epoch: int = Field(2, ge=1, le=100, description="test-accuracy checks per epoch")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="digits: share held out for testing")
    limit_train: int | None = Field(None, ge=1, description="mnist: use only the first N training images")
    batch: int = Field(32, ge=1, le=8192)


# ---------------------------------------------------------------- shared pieces


def _model_memory(spec: ModelSpec, batch: int, itemsize: int, train: bool) -> int:
    """Rough peak bytes: every layer's output, input-gradient and scratch buffers, im2col columns of every
    conv (kept for backward), and parameters with gradients and optimiser state."""
    per_image = 0
    cols_max = 0
    for ls, a, b in zip(spec.layers, spec.in_shapes(), spec.shapes, strict=True):
        out = math.prod(b)
        per_image += out * (4 if train else 2)
        if isinstance(ls, (Conv, Residual)):
            k = ls.kernel
            cols = a[0] * k * k * b[1] * b[2] + 2 * out
            if isinstance(ls, Residual):
                cols += b[0] * k * k * b[1] * b[2] + 6 * out
            per_image += cols
            cols_max = max(cols_max, b[0] * k * k * math.prod(a[1:]))
    if train:
        per_image += cols_max  # the input-gradient convolution's shared columns
    n_params = _param_count(spec)
    return int((per_image * batch + n_params * (4 if train else 1)) * itemsize) + (64 << 20)


def _param_count(spec: ModelSpec) -> int:
    n = 0
    for ls, a, b in zip(spec.layers, spec.in_shapes(), spec.shapes, strict=True):
        if isinstance(ls, Conv):
            n += ls.out * a[0] * ls.kernel ** 2 + (ls.out if ls.bias else 0)
        elif isinstance(ls, Residual):
            n += ls.out * a[0] * ls.kernel ** 2 + ls.out * ls.out * ls.kernel ** 2 + a[0] * ls.out + 6 * ls.out
        elif ls.kind == "dense":
            n += a[0] * b[0] + b[0]
        elif ls.kind == "batchnorm":
            n += 2 * a[0]
    return n


def load_data(p: ModelParams, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` training images and labels for a throughput case, from the case's data source."""
    spec = p.spec
    if p.data == "synthetic":
        return D.synthetic(tuple(spec.input), spec.classes, n, seed, p.dtype)  # type: ignore[arg-type]
    ds = load_dataset(p, seed)
    reps = -(-n // len(ds.y_train))
    x = np.concatenate([ds.x_train] * reps)[:n]
    y = np.concatenate([ds.y_train] * reps)[:n]
    return x.astype(p.dtype), y


def load_dataset(p: ModelParams, seed: int) -> D.Dataset:
    spec = p.spec
    shape = tuple(spec.input)
    try:
        if p.data == "digits":
            ds = D.digits(shape, getattr(p, "test_fraction", 0.25), seed)  # type: ignore[arg-type]
        elif p.data == "mnist":
            ds = D.mnist(shape, p.data_dir, p._suite_dir, limit_train=getattr(p, "limit_train", None))  # type: ignore[arg-type]
        else:
            raise WorkloadError("train_to_accuracy needs a real data set (digits or mnist), not synthetic")
    except D.DataError as e:
        raise WorkloadError(str(e)) from None
    if ds.classes > spec.classes:
        raise WorkloadError(f"{p.data} has {ds.classes} classes but model {p.model!r} outputs {spec.classes}")
    return ds


REF_IMAGES = 32  # images checked in float64 per inference case


class _ModelWorkload(Workload):
    train: ClassVar[bool] = False  # True: one step is forward + backward + optimiser update

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        assert isinstance(params, ModelParams)
        spec = params.spec
        isz = np.dtype(params.dtype).itemsize
        # training: forward + backward (input and weight gradients: two GEMMs per forward GEMM) ~ 3x
        # forward; weights are read, their gradients written, and the optimiser reads/writes its state
        flops_factor, weight_passes = (3, 4) if cls.train else (1, 1)
        bytes_ = (params.batch * (math.prod(spec.input) + spec.classes) + weight_passes * _param_count(spec)) * isz
        return Work(flops=float(flops_factor * spec.forward_flops() * params.batch), bytes=float(bytes_),
                    items=float(params.batch), item_unit="images")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        assert isinstance(params, ModelParams)
        return _model_memory(params.spec, params.batch, np.dtype(params.dtype).itemsize, train=cls.train)

    family = "model"

    @classmethod
    def definition(cls, params: BaseParams) -> dict[str, Any]:
        assert isinstance(params, ModelParams)
        return {"model": params.spec.model_dump(mode="json")}

    @classmethod
    def unsupported(cls, params: BaseParams, backend: str) -> str | None:
        r = super().unsupported(params, backend)
        if r:
            return r
        if getattr(params, "cuda_graph", False) and backend != "gpu":
            return "cuda_graph applies to the gpu backend only"
        return None

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        out: dict[str, Any] = {"conv": "im2col+gemm (accelbench.ops.conv)"}
        if backend == "cpu":  # see accelbench.models.layers: the CPU has its own conv algorithm and BLAS path
            out["conv"] = ("stride 1: shifted gemm (accelbench.ops.conv_shift); otherwise im2col+gemm in "
                           "chunks (accelbench.ops.conv)")
            out["blas"] = cpu_blas.backend()
        if getattr(params, "cuda_graph", False):
            out["launch"] = "cuda-graph"
        return out

    def _build(self) -> Network:
        p = self.p
        assert isinstance(p, ModelParams)
        return Network(p.spec, self.xp, p.dtype, self.seed)

    def tolerance(self) -> float:
        return TOLERANCE.get(str(self.p.dtype), 1e-4)  # type: ignore[attr-defined]

    graph: CudaGraph | None = None

    def _step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        """One step: a replay of the captured graph (``cuda_graph: true`` on the GPU), else the step itself."""
        if self.graph is not None:
            self.graph.launch()
        else:
            self._step()


# ---------------------------------------------------------------- inference


@register
class Inference(_ModelWorkload):
    name = "inference"
    description = "forward pass of a CNN at a batch size (inference mode); images/s and latency per batch"
    Params = StepParams

    train = False

    def setup(self) -> None:
        p = self.p
        assert isinstance(p, StepParams)
        self.net = self._build()
        x, _y = load_data(p, p.batch, self.seed)
        self.x_host = x
        self.x = self.xp.asarray(x)
        self.out = None
        self.graph = None
        if p.cuda_graph and self.backend.is_gpu:
            self.graph = CudaGraph(self.xp, self._step)

    def _step(self) -> None:
        self.out = self.net.forward(self.x, train=False)

    def output(self) -> Any:
        return self.out

    def reference(self) -> np.ndarray:
        ref = self.net.reference()
        return np.asarray(ref.forward(self.x_host.astype(np.float64), train=False))

    def check(self) -> Check:
        """Inference treats images independently (batchnorm uses running statistics, dropout is off), so
        the float64 reference of the first REF_IMAGES images checks the batch at a fraction of the cost: a
        float64 forward of 512 images would cost more than the whole timed region on a small CPU."""
        k = min(self.p.batch, REF_IMAGES)  # type: ignore[attr-defined]
        out = self.backend.asnumpy(self.output())[:k]
        ref = np.asarray(self.net.reference().forward(self.x_host[:k].astype(np.float64), train=False))
        err = rel_error(out, ref)
        tol = self.tolerance()
        ok = bool(err <= tol)
        return Check(passed=ok, rel_error=err, tolerance=tol,
                     reference=f"float64 NumPy forward of the first {k} images",
                     message="" if ok else f"relative error {err:.3g} exceeds tolerance {tol:.3g}")


# ---------------------------------------------------------------- train step


@register
class TrainStep(_ModelWorkload):
    name = "train_step"
    description = "one training step of a CNN (forward, softmax cross-entropy, backward, optimiser update)"
    Params = TrainStepParams

    train = True

    def setup(self) -> None:
        p = self.p
        assert isinstance(p, TrainStepParams)
        spec = p.spec
        self.net = self._build()
        opt = self.net.set_optimizer(p.optimizer, p.lr, p.momentum)
        x, y = load_data(p, p.batch, self.seed)
        self.x_host = x
        self.onehot_host = one_hot(y, spec.classes, p.dtype)
        self.x = self.xp.asarray(x)
        self.onehot = self.xp.asarray(self.onehot_host)
        self.loss = None
        self.graph = None
        if p.cuda_graph and self.backend.is_gpu:
            before = self.net.get_weights()
            self.graph = CudaGraph(self.xp, self._step)  # runs one eager step before capturing
            # That warm-up step moved the weights and the optimiser state. Put both back, in place (the graph
            # holds their addresses), so the first replay is the same first step an eager run takes. Without
            # this, check() judged the second step of a batch of 1, whose loss had already collapsed to 0:
            # gradients of ~1e-45 compared by relative error (first GPU session: "gradient error 1").
            self.net.set_weights(before)
            opt.reset()
        # the weights the next run() starts from: check() recomputes that step in float64
        self.start_weights = self.net.get_weights()

    def _step(self) -> None:
        self.loss = self.net.train_step(self.x, self.onehot)

    def output(self) -> Any:
        return self.loss

    def check(self) -> Check:
        """The first step's loss and gradients against a float64 NumPy step from the same weights, inputs
        and dropout masks. Call it right after the first run(), as the runner does.

        The reference makes the device's ReLU and max-pool choices (:meth:`Network.reference`): where a
        pre-activation lies within rounding of 0, float32 and float64 may fall on either side, and the
        gradient jumps there (one such unit at -2e-8 put a batch-1 residual network's gradient 2e-3 off
        on an H100). Choices the reference would have made differently must lie within the forward
        tolerance of their switch point (relative to the layer's RMS), or the check fails: a forward pass
        that is really wrong is not excused."""
        ref = self.net.reference(self.start_weights, follow_kinks=True)
        loss_ref = float(ref.forward_backward(self.x_host.astype(np.float64), self.onehot_host.astype(np.float64)))
        n_kinks, kink_dist = ref.kinks()
        g = self.net.grads_host()
        g_ref = ref.grads_host()
        err = rel_error(g, g_ref)
        loss = float(self.backend.asnumpy(self.net._bufs["ce.loss"]))
        loss_err = abs(loss - loss_ref) / max(abs(loss_ref), 1e-12)
        tol = self.tolerance() * GRAD_TOL_FACTOR
        worst = max(err, loss_err)
        kinks_ok = kink_dist <= self.tolerance()
        ok = bool(math.isfinite(worst) and worst <= tol and kinks_ok)
        reference = "float64 NumPy forward+backward of the first step"
        if n_kinks:
            reference += (f", following the device at {n_kinks} ReLU/max-pool choice(s) within "
                          f"{kink_dist:.2g} x RMS of their switch point")
        if ok:
            msg = ""
        elif not kinks_ok:
            msg = (f"{n_kinks} ReLU/max-pool choice(s) differ from float64, up to {kink_dist:.3g} x the layer's "
                   f"RMS from the switch point (rounding allows {self.tolerance():.3g}): the forward pass is off")
        else:
            msg = f"gradient relative error {err:.3g}, loss relative error {loss_err:.3g} (tolerance {tol:.3g})"
        return Check(passed=ok, rel_error=worst, tolerance=tol, reference=reference, message=msg)


# ---------------------------------------------------------------- train to accuracy


@register
class TrainToAccuracy(_ModelWorkload):
    name = "train_to_accuracy"
    description = "train a CNN on a real data set until a target test accuracy (time to accuracy)"
    Params = TrainToAccuracyParams
    custom = True

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        return Work(item_unit="images")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        assert isinstance(params, ModelParams)
        return _model_memory(params.spec, max(params.batch, 256), np.dtype(params.dtype).itemsize, train=True)

    def setup(self) -> None:
        p = self.p
        assert isinstance(p, TrainToAccuracyParams)
        self.ds = load_dataset(p, self.seed)
        if len(self.ds.y_train) < p.batch:
            raise WorkloadError(f"batch {p.batch} is larger than the training set ({len(self.ds.y_train)})")
        self.net = self._build()
        self.net.set_optimizer(p.optimizer, p.lr, p.momentum)
        xp = self.xp
        self.x_train = xp.asarray(self.ds.x_train.astype(p.dtype))
        self.onehot_train = xp.asarray(one_hot(self.ds.y_train, p.spec.classes, p.dtype))
        self.x_test = xp.asarray(self.ds.x_test.astype(p.dtype))
        self.xb = xp.empty((p.batch, *p.spec.input), dtype=p.dtype)
        self.yb = xp.empty((p.batch, p.spec.classes), dtype=p.dtype)

    def measure_custom(self, budget_s: float, quick: bool) -> CustomResult:
        """Train until ``target``. The limits are the case's own ``max_epochs`` and ``time_limit_s``: the
        runner's ``budget_s`` is a sampling window (seconds) meant for timed kernels and is not used."""
        p = self.p
        assert isinstance(p, TrainToAccuracyParams)
        return train_to_accuracy(self.net, self.x_train, self.onehot_train, self.ds.y_train, self.x_test,
                                 self.ds.y_test, self.xb, self.yb, p, self.seed, self.backend.synchronize,
                                 self.ds.summary())


def train_to_accuracy(net: Network, x_train: Any, onehot_train: Any, y_train: np.ndarray, x_test: Any,
                      y_test: np.ndarray, xb: Any, yb: Any, p: TrainToAccuracyParams, seed: int,
                      sync: Any = lambda: None, info: dict[str, Any] | None = None) -> CustomResult:
    """The training loop: seeded shuffles, full batches (the remainder of an epoch is dropped), test
    accuracy ``evals_per_epoch`` times per epoch. Training time excludes evaluation; wall time does not."""
    xp = net.xp
    n = len(y_train)
    steps = n // p.batch
    eval_at = {int(round(steps * (k + 1) / p.evals_per_epoch)) for k in range(p.evals_per_epoch)}
    assert net.optimizer is not None
    base_lr = net.optimizer.lr
    rng = np.random.default_rng(seed)
    train_s = 0.0
    t_wall = time.perf_counter()
    reached_at: float | None = None
    reached_wall: float | None = None
    history: list[dict[str, float]] = []
    acc = 0.0
    best = 0.0
    epoch_float = 0.0
    images = 0
    stop = ""
    for epoch in range(p.max_epochs):
        net.optimizer.lr = base_lr * p.lr_decay ** epoch
        perm = rng.permutation(n)
        perm_dev = xp.asarray(perm)
        t0 = time.perf_counter()
        for s in range(steps):
            idx = perm_dev[s * p.batch:(s + 1) * p.batch]
            xp.take(x_train, idx, axis=0, out=xb)
            xp.take(onehot_train, idx, axis=0, out=yb)
            net.train_step(xb, yb)
            images += p.batch
            if s + 1 in eval_at:
                sync()
                train_s += time.perf_counter() - t0
                acc = net.accuracy(x_test, y_test)
                best = max(best, acc)
                epoch_float = epoch + (s + 1) / steps
                history.append({"epoch": round(epoch_float, 3), "test_accuracy": acc,
                                "train_time_s": round(train_s, 4)})
                if acc >= p.target and reached_at is None:
                    reached_at, reached_wall = train_s, time.perf_counter() - t_wall
                    stop = "target"
                    break
                if train_s >= p.time_limit_s:
                    stop = "time_limit"
                    break
                t0 = time.perf_counter()
        if stop:
            break
    if not stop:
        stop = "max_epochs"
    metrics: dict[str, Any] = {
        "target_accuracy": p.target,
        "reached_target": reached_at is not None,
        "time_to_accuracy_s": reached_at,
        "wall_time_to_accuracy_s": reached_wall,
        "final_test_accuracy": acc,
        "best_test_accuracy": best,
        "epochs": round(epoch_float, 3),
        "train_time_s": train_s,
        "train_images_per_s": images / train_s if train_s > 0 else None,
        "stop_reason": stop,
        "optimizer": p.optimizer,
        "learning_rate": base_lr,
        "accuracy_checks": len(history),
        **(info or {}),
    }
    ok = reached_at is not None
    msg = "" if ok else (f"test accuracy {best:.4f} (best) did not reach {p.target} within {epoch_float:.2f} "
                         f"epochs ({stop})")
    check = Check(passed=ok, rel_error=None, tolerance=p.target, reference="held-out test split", message=msg)
    return CustomResult(metrics=metrics, samples_s=[reached_at] if reached_at is not None else [], check=check)

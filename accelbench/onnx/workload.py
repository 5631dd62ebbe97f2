"""The ``onnx`` workload: inference of an ONNX model on one engine and backend.

Parameters (``params`` of a suite entry): ``model`` (a path relative to the suite file, or ``zoo:<name>``,
see :mod:`accelbench.onnx.zoo`), ``batch`` (the first dimension of a dynamic-batch input), ``engine``
(``accelbench`` or ``onnxruntime``: an axis like any other), ``fold_batchnorm``, ``cuda_graph`` (GPU),
``dtype`` (``float16`` on the GPU), ``input`` (a ``.npy`` file instead of seeded random data), ``threads`` (CPU
threads of both engines; on a busy machine one thread each avoids OpenBLAS's sleeping workers: with a load
average of 10 on 2 cores, ResNet-50 at batch 4 ran 2.6x faster on one BLAS thread than on two).

* accelbench: the model's plan run by :class:`accelbench.onnx.executor.Executor` on NumPy or CuPy,
  validated against onnxruntime (CPUExecutionProvider) on the same input.
* onnxruntime: an InferenceSession on the same file and input: CPUExecutionProvider with
  ``intra_op_num_threads`` = the threads NumPy's BLAS uses on the cpu backend, CUDAExecutionProvider with
  I/O binding (inputs and outputs stay on the device) on the gpu backend when onnxruntime-gpu is
  installed (skipped with the reason otherwise); validated against accelbench's float64 execution of
  the first images.

Work: FLOPs of the plan (2 x MACs of Conv/Gemm/MatMul plus elementwise arithmetic) per batch, bytes =
weights + the inputs and outputs; items: images (the batch).
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from ..errors import ModelError, WorkloadError
from ..workloads.base import TOLERANCE, BaseParams, Check, Params, Work, Workload, register, rel_error
from . import zoo
from .executor import Executor
from .importer import LoadedModel, load_checked, q
from .planner import Plan, plan

REF_IMAGES = 2  # images the onnxruntime engine's float64 check recomputes


class OnnxParams(Params):
    model: str = Field(min_length=1, description="ONNX file (relative to the suite) or zoo:<name>[@<size>]")
    batch: int = Field(1, ge=1, le=4096, description="images per run (first dimension of a dynamic-batch input)")
    engine: Literal["accelbench", "onnxruntime"] = "accelbench"
    fold_batchnorm: bool = Field(False, description="fold BatchNormalization into the preceding Conv")
    cuda_graph: bool = Field(False, description="GPU, accelbench engine: capture the graph once, replay it")
    dtype: Literal["float32", "float16"] = Field("float32", description="float16: GPU only")
    input: str | None = Field(None, description=".npy input (relative to the suite) instead of seeded data")
    threads: int | None = Field(None, ge=1, le=1024, description="cpu: BLAS threads of accelbench and intra-op "
                                "threads of onnxruntime alike (default: what NumPy's BLAS uses)")

    _path: Path | None = PrivateAttr(default=None)
    _input_path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> OnnxParams:
        sd = (info.context or {}).get("suite_dir")
        base = Path(sd) if sd is not None else Path(".")
        try:
            self._path = model_path(self.model, base)
            lm = loaded(str(self._path), self.model)
            shape = input_shape(lm, self.batch)
            if self.input is not None:
                self._input_path = (base / self.input) if not Path(self.input).is_absolute() else Path(self.input)
                read_input(self._input_path, lm, shape)
        except ModelError as e:
            raise ValueError(str(e)) from None
        return self

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = model_path(self.model, Path("."))
        return self._path


def model_path(model: str, base: Path) -> Path:
    if zoo.is_ref(model):
        try:
            return zoo.path_for(model)
        except ValueError as e:
            raise ModelError(str(e), model) from None
    p = Path(model)
    return p if p.is_absolute() else base / p


@functools.lru_cache(maxsize=8)
def _loaded(path: str, shown: str, stamp: tuple[float, ...]) -> LoadedModel:
    return load_checked(path, shown)


def _stamp(p: Path) -> tuple[float, ...]:
    """Changes when the file or its folder (external data files added or removed) changes."""
    st = p.stat()
    return (st.st_mtime, float(st.st_size), p.resolve().parent.stat().st_mtime)


def loaded(path: str, shown: str | None = None) -> LoadedModel:
    """The checked model at ``path`` (cached while the file and its folder are unchanged)."""
    p = Path(path)
    if not p.exists():
        raise ModelError("no such file", shown or path)
    return _loaded(path, shown or path, _stamp(p))


@functools.lru_cache(maxsize=16)
def _plan(path: str, shown: str, stamp: tuple[float, ...], batch: int, fold: bool) -> Plan:
    lm = _loaded(path, shown, stamp)
    return plan(lm, fold_batchnorm=fold, input_shapes=input_shapes(lm, batch))


def planned(p: OnnxParams) -> Plan:
    path = str(p.path)
    return _plan(path, p.model, _stamp(Path(path)), p.batch, p.fold_batchnorm)


def input_shape(lm: LoadedModel, batch: int) -> dict[str, tuple[int, ...]]:
    """Each input's shape with ``batch`` as its first dimension. A fixed first dimension other than
    ``batch``, or another dynamic dimension, is a ModelError naming the input and its declared shape."""
    out: dict[str, tuple[int, ...]] = {}
    for info in lm.inputs:
        dims = list(info.dims)
        shown = tuple(d if d is not None else "?" for d in dims)
        if not dims:
            out[info.name] = ()
            continue
        if isinstance(dims[0], int) and dims[0] > 0 and dims[0] != batch:
            raise ModelError(f"input {q(info.name)} has a fixed batch of {dims[0]} (shape {shown}); batch {batch} "
                             f"cannot be set", lm.file)
        rest = dims[1:]
        if any(not isinstance(d, int) or d <= 0 for d in rest):
            raise ModelError(f"input {q(info.name)} has dynamic dimensions besides the batch (shape {shown}); "
                             "give an input .npy or export with fixed sizes", lm.file)
        out[info.name] = (batch, *[int(d) for d in rest if isinstance(d, int)])
    return out


input_shapes = input_shape


def read_input(path: Path, lm: LoadedModel, shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """The .npy input for a one-input model, checked against the model's declared shape."""
    if len(lm.inputs) != 1:
        raise ModelError(f"an input .npy feeds one input; the model has {len(lm.inputs)}", lm.file)
    if not path.exists():
        raise ModelError("no such file", str(path))
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ModelError(f"not a .npy array: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                         str(path)) from None
    info = lm.inputs[0]
    want = shapes[info.name]
    if tuple(a.shape) != want:
        raise ModelError(f"has shape {tuple(a.shape)}, model input {q(info.name)} needs {want} "
                         f"(declared {tuple(d if d is not None else '?' for d in info.dims)})", str(path))
    return np.asarray(a)


def seeded_inputs(lm: LoadedModel, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for info in lm.inputs:
        shape = shapes[info.name]
        if np.issubdtype(info.dtype, np.floating):
            out[info.name] = rng.standard_normal(shape).astype(info.dtype)
        elif info.dtype == np.bool_:
            out[info.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            out[info.name] = rng.integers(0, 10, shape).astype(info.dtype)
    return out


def ort_threads() -> int:
    """The thread count NumPy's BLAS uses (onnxruntime's intra-op pool is pinned to it)."""
    from ..environment import blas_info

    for b in blas_info():
        n = b.get("num_threads")
        if isinstance(n, int) and n > 0:
            return n
    import os

    return os.cpu_count() or 1


def ort_session(path: str, provider: str = "CPUExecutionProvider", threads: int | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if provider == "CPUExecutionProvider":
        so.intra_op_num_threads = threads or ort_threads()
        so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=[provider])


def ort_reason(backend: str) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return f"onnxruntime is not installed ({e})"
    want = "CUDAExecutionProvider" if backend == "gpu" else "CPUExecutionProvider"
    if want not in ort.get_available_providers():
        return (f"onnxruntime has no {want} (providers: {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu for the gpu backend")
    return None


def _file_sha(path: Path) -> str:
    st = path.stat()
    return _sha(str(path), st.st_mtime, st.st_size)


@functools.lru_cache(maxsize=16)
def _sha(path: str, mtime: float, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@register
class OnnxInference(Workload):
    name = "onnx"
    family = "model"
    description = "inference of an ONNX model on accelbench's NumPy/CuPy operators or onnxruntime"
    Params: ClassVar[type[BaseParams]] = OnnxParams

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        assert isinstance(params, OnnxParams)
        pl = planned(params)
        isz = np.dtype(params.dtype).itemsize
        io = sum(math.prod(pl.shapes.get(i.name, ())) for i in pl.inputs) + \
            sum(math.prod(pl.shapes.get(o, ())) for o in pl.outputs)
        return Work(flops=float(pl.flops), bytes=float(pl.weight_bytes * isz / 4 + io * isz),
                    items=float(params.batch), item_unit="images")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        assert isinstance(params, OnnxParams)
        pl = planned(params)
        peak, _two = pl.peak_activation_bytes(np.dtype(params.dtype).itemsize)
        # the reference engine holds its own copy of the weights and activations during the check
        return int(2 * (pl.weight_bytes + peak)) + (64 << 20)

    @classmethod
    def definition(cls, params: BaseParams) -> dict[str, Any]:
        assert isinstance(params, OnnxParams)
        return {"model_sha256": _file_sha(params.path), "opset": planned(params).opset}

    @classmethod
    def unsupported(cls, params: BaseParams, backend: str) -> str | None:
        assert isinstance(params, OnnxParams)
        if params.cuda_graph and backend != "gpu":
            return "cuda_graph applies to the gpu backend only"
        if params.cuda_graph and params.engine != "accelbench":
            return "cuda_graph applies to the accelbench engine"
        if params.dtype == "float16" and backend != "gpu":
            return "float16 runs on the gpu backend only (NumPy has no fast half-precision GEMM)"
        if params.dtype == "float16" and params.engine == "onnxruntime":
            return "float16 applies to the accelbench engine (onnxruntime runs the file's own types)"
        if params.engine == "onnxruntime":
            return ort_reason(backend)
        return None

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        assert isinstance(params, OnnxParams)
        if params.engine == "onnxruntime":
            out: dict[str, Any] = {"engine": "onnxruntime",
                                   "provider": "CUDAExecutionProvider (I/O binding)" if backend == "gpu"
                                   else f"CPUExecutionProvider ({params.threads or ort_threads()} intra-op threads)"}
            try:
                import onnxruntime as ort

                out["onnxruntime"] = ort.__version__
            except ImportError:
                pass
            return out
        out = {"engine": "accelbench", "conv": "im2col+gemm (accelbench.ops.conv)"}
        if backend == "cpu":
            from ..ops import cpu_blas

            out["conv"] = "im2col+gemm in chunks of images (accelbench.ops.conv)"
            out["blas"] = cpu_blas.backend()
            out["blas_threads"] = params.threads or ort_threads()
        if params.cuda_graph:
            out["launch"] = "cuda-graph"
        return out

    def tolerance(self) -> float:
        return TOLERANCE[str(self.p.dtype)]  # type: ignore[attr-defined]

    # ---- life cycle
    def setup(self) -> None:
        p = self.p
        assert isinstance(p, OnnxParams)
        self.lm = loaded(str(p.path), p.model)
        self.pl = planned(p)
        shapes = input_shape(self.lm, p.batch)
        if p._input_path is not None:
            self.host_inputs = {self.lm.inputs[0].name: read_input(p._input_path, self.lm, shapes)}
        else:
            self.host_inputs = seeded_inputs(self.lm, shapes, self.seed)
        self.out: Any = None
        self.graph: Any = None
        self.limits: Any = None
        if p.threads is not None and not self.backend.is_gpu and p.engine == "accelbench":
            from threadpoolctl import threadpool_limits

            self.limits = threadpool_limits(limits=p.threads, user_api="blas")
        if p.engine == "onnxruntime":
            self._setup_ort()
            return
        self.ex = Executor(self.pl, self.xp, p.dtype)
        self.feeds = self.ex.prepare_inputs(self.host_inputs)
        if p.cuda_graph and self.backend.is_gpu:
            from ..models.network import CudaGraph

            self.graph = CudaGraph(self.xp, self._step)

    def _setup_ort(self) -> None:
        p = self.p
        assert isinstance(p, OnnxParams)
        gpu = self.backend.is_gpu
        self.sess = ort_session(str(p.path), "CUDAExecutionProvider" if gpu else "CPUExecutionProvider", p.threads)
        self.names = [o.name for o in self.sess.get_outputs()]
        if gpu:
            import onnxruntime as ort

            self.binding = self.sess.io_binding()
            self.ort_inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in self.host_inputs.items()}
            for k, v in self.ort_inputs.items():
                self.binding.bind_ortvalue_input(k, v)
            for n in self.names:
                self.binding.bind_output(n, "cuda", 0)

    def _step(self) -> None:
        self.out = self.ex.run(self.feeds)

    def run(self) -> None:
        if self.p.engine == "onnxruntime":  # type: ignore[attr-defined]
            if self.backend.is_gpu:
                self.sess.run_with_iobinding(self.binding)
                self.binding.synchronize_outputs()
            else:
                self.out = self.sess.run(None, self.host_inputs)
            return
        if self.graph is not None:
            self.graph.launch()
        else:
            self._step()

    def teardown(self) -> None:
        if getattr(self, "limits", None) is not None:
            self.limits.restore_original_limits()
        super().teardown()

    def outputs_host(self) -> list[np.ndarray]:
        if self.p.engine == "onnxruntime":  # type: ignore[attr-defined]
            if self.backend.is_gpu:
                return [np.asarray(v.numpy()) for v in self.binding.get_outputs()]
            return [np.asarray(o) for o in self.out]
        return [np.asarray(self.backend.asnumpy(o), dtype=np.float32 if o.dtype == np.float16 else None)
                for o in self.out]

    def output(self) -> Any:
        return self.outputs_host()[0]

    def check(self) -> Check:
        """accelbench: every output against onnxruntime (CPU) on the same input. onnxruntime: against
        accelbench's float64 execution of the first REF_IMAGES images."""
        p = self.p
        assert isinstance(p, OnnxParams)
        outs = self.outputs_host()
        if p.engine == "accelbench":
            ref = ort_session(str(p.path)).run(None, self.host_inputs)
            what = "onnxruntime CPUExecutionProvider, same input"
            k = None
        else:
            k = min(p.batch, REF_IMAGES)
            feeds = {n: (v[:k] if v.ndim and v.shape[0] == p.batch else v) for n, v in self.host_inputs.items()}
            ex = Executor(plan(self.lm, fold_batchnorm=False), np, "float64")
            ref = ex.run_host(feeds)
            what = f"accelbench float64 NumPy execution of the first {k} image(s)"
        worst = 0.0
        for i, (o, r) in enumerate(zip(outs, ref, strict=True)):
            if k is not None and o.ndim and o.shape[0] == p.batch and r.shape[0] == k:
                o = o[:k]
            try:
                e = rel_error(o, np.asarray(r))
            except ValueError as err:
                raise WorkloadError(f"output {i} ({q(self.pl.outputs[i])}): {err}") from None
            worst = max(worst, e)
        tol = self.tolerance()
        ok = bool(worst <= tol)
        return Check(passed=ok, rel_error=worst, tolerance=tol, reference=what,
                     message="" if ok else f"relative error {worst:.3g} exceeds tolerance {tol:.3g}")

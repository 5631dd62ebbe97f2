"""The workload contract and the registry that maps YAML names to workload classes.

A workload is one benchmarkable operation at fixed parameters on one backend. The runner drives it:

    wl = cls(params, backend, seed)        # params: an instance of cls.Params (validated)
    wl.setup()                             # allocate + initialise inputs from a seeded generator (untimed)
    wl.run()                               # the timed operation (called many times)
    check = wl.check()                     # after the first run: output vs float64 reference
    wl.teardown()

The same code serves both backends through ``self.xp`` (numpy or cupy). Work models (flops, bytes moved,
items) are pure functions of the parameters so reports can show GFLOP/s, GB/s and items/s.

Workloads that are not "one timed operation" (e.g. train-to-accuracy) set ``custom = True`` and implement
``measure_custom`` instead; the runner stores what it returns under the case's ``metrics``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..backends import Backend

# Relative error ||out - ref|| / ||ref|| (Frobenius) allowed per compute dtype, against a float64 reference.
# fp32 lands far under 1e-4; TF32 (10-bit mantissa inputs) near 3e-4; fp16/bf16 operands 1e-3..1e-2.
TOLERANCE: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-4,
    "tf32": 5e-3,
    "float16": 2e-2,
    "bfloat16": 4e-2,
}

DTYPES = ("float64", "float32", "float16")


class BaseParams(BaseModel):
    """Base for every workload's parameters: strict, unknown keys are errors, frozen (hashable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Params = BaseParams  # the name workload modules import


@dataclass(frozen=True)
class Work:
    """What one run of the workload does. flops: floating-point operations; bytes: the fewest bytes that
    must move through the backend's memory (each input read once, each output written once); items: units
    of useful output (elements, images, ...) named by ``item_unit``."""

    flops: float = 0.0
    bytes: float = 0.0
    items: float = 0.0
    item_unit: str = "items"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Check:
    """Result of validating an output against its float64 reference."""

    passed: bool
    rel_error: float | None
    tolerance: float
    reference: str = "float64 NumPy"
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rel_error(out: np.ndarray, ref: np.ndarray) -> float:
    """||out - ref||_F / ||ref||_F in float64; NaN/inf anywhere gives inf (never passes)."""
    o = np.asarray(out, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if o.shape != r.shape:
        raise ValueError(f"output shape {o.shape} != reference shape {r.shape}")
    if not np.all(np.isfinite(o)):
        return math.inf
    denom = float(np.linalg.norm(r.ravel()))
    num = float(np.linalg.norm((o - r).ravel()))
    if denom == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / denom


@dataclass
class CustomResult:
    """What a custom workload reports: named metrics (each key ends in its unit, e.g. ``time_to_accuracy_s``)
    plus optional per-sample times in seconds so the usual statistics apply."""

    metrics: dict[str, Any] = field(default_factory=dict)
    samples_s: list[float] = field(default_factory=list)
    check: Check | None = None


class Workload:
    """Base class; see the module docstring for the life cycle."""

    name: ClassVar[str] = ""  # YAML name, e.g. "gemm"
    family: ClassVar[str] = ""  # "blas", "conv", "memory", "elementwise", "reduction", "model", ...
    Params: ClassVar[type[BaseParams]] = BaseParams
    description: ClassVar[str] = ""
    synchronizes: ClassVar[bool] = False  # True when run() synchronises internally (host copies, ...)
    custom: ClassVar[bool] = False  # True: runner calls measure_custom() instead of timing run()
    backends: ClassVar[tuple[str, ...]] = ("gpu", "cpu")  # where this workload can run

    def __init__(self, params: BaseParams, backend: Backend, seed: int = 0) -> None:
        self.p = params
        self.backend = backend
        self.xp = backend.xp
        self.seed = seed

    # ---- sizing (classmethods: used before anything is allocated) ----
    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        """Peak bytes this case allocates on ``backend`` (inputs, outputs, workspace). Used to refuse a
        suite up front when it cannot fit."""
        return 0

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        return Work()

    @classmethod
    def unsupported(cls, params: BaseParams, backend: str) -> str | None:
        """A reason this case cannot run on ``backend`` (recorded as skipped), or None."""
        if backend not in cls.backends:
            return f"{cls.name} does not run on the {backend} backend"
        return None

    @classmethod
    def definition(cls, params: BaseParams) -> dict[str, Any]:
        """Anything beyond ``params`` that defines the case (e.g. a model's resolved layer list); it enters
        the definition hash so compare notices a changed definition."""
        return {}

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        """Extra facts about what actually runs (e.g. {"math": "tf32"}); recorded in the case."""
        return {}

    # ---- life cycle ----
    def setup(self) -> None:
        """Allocate and initialise inputs (seeded, never zeros). Untimed."""

    def run(self) -> None:
        raise NotImplementedError

    def output(self) -> Any:
        """The result of the last run(), on its backend."""
        raise NotImplementedError

    def reference(self) -> np.ndarray:
        """The float64 NumPy reference for the current inputs."""
        raise NotImplementedError

    def tolerance(self) -> float:
        dtype = str(getattr(self.p, "dtype", "float32"))
        return TOLERANCE.get(dtype, 1e-4)

    def check(self) -> Check:
        """Validate the last output against the float64 reference. Override for exact checks."""
        out = self.backend.asnumpy(self.output())
        ref = self.reference()
        err = rel_error(out, ref)
        tol = self.tolerance()
        ok = bool(err <= tol)
        msg = "" if ok else f"relative error {err:.3g} exceeds tolerance {tol:.3g}"
        return Check(passed=ok, rel_error=err, tolerance=tol, message=msg)

    def measure_custom(self, budget_s: float, quick: bool) -> CustomResult:
        raise NotImplementedError

    def teardown(self) -> None:
        for k in list(vars(self)):
            if k not in ("p", "backend", "xp", "seed", "_rng"):
                setattr(self, k, None)

    def rng(self) -> np.random.Generator:
        """The case's generator: one per instance, so successive inputs differ (A != B) yet the same seed
        gives the same inputs on every backend."""
        g = self.__dict__.get("_rng")
        if g is None:
            g = self.__dict__["_rng"] = np.random.default_rng(self.seed)
        return g

    def random(self, shape: tuple[int, ...], dtype: str, low: float = -1.0, high: float = 1.0) -> Any:
        """Seeded uniform random array on the backend (generated on the host so CPU and GPU see identical
        inputs for the same seed)."""
        host = self.rng().uniform(low, high, size=shape).astype(np.float64)
        return self.xp.asarray(host.astype(dtype))

    def empty_aligned(self, shape: tuple[int, ...], dtype: str, align: int = 64) -> Any:
        """An uninitialised array on the backend whose data starts on an ``align``-byte boundary.

        NumPy's buffers are only as aligned as malloc makes them (16 bytes), so whether a SIMD loop's loads
        and stores are aligned is a lottery drawn at every allocation, and a benchmark measures the draw:
        on this project's machine the example plugin's in-place multiply-add ran 22% slower with its output
        8 or 16 bytes off a 32-byte boundary, which made per-process timings of identical code differ by
        ~10% (sd) between A/B rounds. CuPy's allocations are already 256-byte aligned."""
        if self.xp is not np:
            return self.xp.empty(shape, dtype=dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        buf = np.empty(nbytes + align, dtype=np.uint8)
        off = (-buf.ctypes.data) % align
        return buf[off:off + nbytes].view(dtype).reshape(shape)


# ---------------------------------------------------------------- registry

REGISTRY: dict[str, type[Workload]] = {}
_BUILTIN_MODULES = (
    "accelbench.workloads.blas",
    "accelbench.workloads.conv",
    "accelbench.workloads.elementwise",
    "accelbench.workloads.memory",
    "accelbench.models.workloads",
    "accelbench.onnx.workload",
)
_loaded = False


def register(cls: type[Workload]) -> type[Workload]:
    """Class decorator: make ``cls`` available to suites under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"workload name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Workload]]:
    """Import built-in workload modules and third-party plugins (entry-point group ``accelbench.workloads``,
    each entry a module that registers its classes or a Workload class)."""
    global _loaded
    if _loaded:
        return REGISTRY
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency inside the module must surface
                raise
    for ep in entry_points(group="accelbench.workloads"):
        obj: Any = ep.load()
        if isinstance(obj, type) and issubclass(obj, Workload):
            register(obj)
    _loaded = True
    return REGISTRY


def get_workload(name: str) -> type[Workload]:
    reg = load_all()
    if name not in reg:
        raise KeyError(name)
    return reg[name]


Factory = Callable[..., Workload]

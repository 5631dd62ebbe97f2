"""``accelbench profile``: per-layer forward and backward times of a model on each backend: which layer
dominates, and where the GPU helps most. (An application command: it sits beside the other commands,
above suite and models, so that models/ stays a library below suite.)

Each top-level layer (a residual block counts as one) is timed on its own with the input it sees inside
the network: a full forward first fills every layer's input, then each layer's forward (training mode,
as in a step) and backward are repeated until ``min_time_s`` has passed (at least ``min_repeats`` times).
GPU times come from CUDA events around the repeats; CPU times from ``perf_counter``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .backends import Backend
from .models.network import Network
from .models.spec import ModelSpec, fmt_shape, layer_macs


@dataclass
class LayerTime:
    index: int
    kind: str
    input: str
    output: str
    backend: str
    forward_s: float
    backward_s: float
    forward_flops: float  # per batch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timer(be: Backend, fn: Any, min_time_s: float, min_repeats: int) -> float:
    """Median-free mean seconds per call over a block of calls long enough to time (one warm-up call)."""
    fn()
    be.synchronize()
    reps = 0
    if be.is_gpu:
        cp = be.xp
        start, end = cp.cuda.Event(), cp.cuda.Event()
        total = 0.0
        while reps < min_repeats or total < min_time_s:
            start.record()
            fn()
            end.record()
            end.synchronize()
            total += cp.cuda.get_elapsed_time(start, end) * 1e-3
            reps += 1
        return total / reps
    t0 = time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if reps >= min_repeats and dt >= min_time_s:
            return dt / reps


def profile_model(spec: ModelSpec, be: Backend, batch: int = 64, dtype: str = "float32", seed: int = 0,
                  min_time_s: float = 0.05, min_repeats: int = 3) -> list[LayerTime]:
    """Forward and backward seconds of every top-level layer of ``spec`` on ``be`` at ``batch``."""
    xp = be.xp
    net = Network(spec, xp, dtype, seed)
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal((batch, *spec.input)).astype(dtype))
    inputs = []
    a = x
    for ly in net.layers:
        inputs.append(a)
        a = ly.forward(a, True)
    out: list[LayerTime] = []
    in_shapes = spec.in_shapes()
    for i, ly in enumerate(net.layers):
        xi = inputs[i]
        fwd = _timer(be, lambda ly=ly, xi=xi: ly.forward(xi, True), min_time_s, min_repeats)
        y = ly.forward(xi, True)
        dy = xp.asarray(rng.standard_normal(tuple(y.shape)).astype(dtype))
        need_dx = i > 0  # as in training: the image itself needs no gradient
        bwd = _timer(be, lambda ly=ly, dy=dy, nd=need_dx: ly.backward(dy, need_dx=nd), min_time_s, min_repeats)
        out.append(LayerTime(
            index=i, kind=ly.kind, input=fmt_shape(in_shapes[i]), output=fmt_shape(spec.shapes[i]),
            backend=be.name, forward_s=fwd, backward_s=bwd,
            forward_flops=2.0 * layer_macs(spec.layers[i], in_shapes[i], spec.shapes[i]) * batch,
        ))
    return out


def profile(spec: ModelSpec, backends: list[Backend], batch: int = 64, dtype: str = "float32", seed: int = 0,
            min_time_s: float = 0.05) -> dict[str, list[LayerTime]]:
    """:func:`profile_model` on each available backend (unavailable ones are left out)."""
    return {be.name: profile_model(spec, be, batch, dtype, seed, min_time_s) for be in backends if be.available}


def table_rows(result: dict[str, list[LayerTime]]) -> list[dict[str, Any]]:
    """One row per layer: times on each backend, share of the step, and GPU speedup where both ran."""
    names = list(result)
    if not names:
        return []
    base = result[names[0]]
    totals = {b: sum(t.forward_s + t.backward_s for t in result[b]) for b in names}
    rows = []
    for j, lt in enumerate(base):
        row: dict[str, Any] = {"index": lt.index, "kind": lt.kind, "input": lt.input, "output": lt.output,
                               "gflop": lt.forward_flops / 1e9}
        for b in names:
            t = result[b][j]
            row[f"{b}_forward_ms"] = t.forward_s * 1e3
            row[f"{b}_backward_ms"] = t.backward_s * 1e3
            row[f"{b}_share"] = (t.forward_s + t.backward_s) / totals[b] if totals[b] > 0 else 0.0
        if "gpu" in result and "cpu" in result:
            g, c = result["gpu"][j], result["cpu"][j]
            gt = g.forward_s + g.backward_s
            row["speedup"] = (c.forward_s + c.backward_s) / gt if gt > 0 else None
        rows.append(row)
    return rows


def render(result: dict[str, list[LayerTime]], model: str, batch: int) -> Any:
    """A rich Table of :func:`table_rows`."""
    from rich.table import Table

    rows = table_rows(result)
    names = list(result)
    t = Table(title=f"{model}: per-layer time at batch {batch} (training mode)")
    for col in ("#", "layer", "in", "out", "GFLOP"):
        t.add_column(col, justify="right" if col in ("#", "GFLOP") else "left")
    for b in names:
        t.add_column(f"{b} fwd ms", justify="right")
        t.add_column(f"{b} bwd ms", justify="right")
        t.add_column(f"{b} %", justify="right")
    if "speedup" in (rows[0] if rows else {}):
        t.add_column("GPU speedup", justify="right")
    for r in rows:
        cells = [str(r["index"]), r["kind"], r["input"], r["output"], f"{r['gflop']:.3f}"]
        for b in names:
            cells += [f"{r[f'{b}_forward_ms']:.3f}", f"{r[f'{b}_backward_ms']:.3f}", f"{100 * r[f'{b}_share']:.1f}"]
        if "speedup" in r:
            cells.append(f"{r['speedup']:.1f}x" if r["speedup"] else "-")
        t.add_row(*cells)
    return t


def profile_suite_model(suite_path: Any, model: str, backend: str | None = None, batch: int = 64,
                        dtype: str = "float32", min_time_s: float = 0.05) -> dict[str, Any]:
    """Entry point of ``accelbench profile``: load the suite, find ``model`` and profile it on the chosen
    backends (None: every available one). Raises UsageError / BackendUnavailable for user errors."""
    from . import backends as B
    from . import suite as suite_mod
    from .errors import BackendUnavailable, UsageError
    from .models.spec import resolve

    s = suite_mod.load(suite_path)
    try:
        spec = resolve(model, s.models)
    except ValueError as e:
        raise UsageError(f"--model: {e}") from None
    if batch < 1:
        raise UsageError("--batch must be at least 1")
    if dtype not in ("float32", "float64"):
        raise UsageError(f"--dtype {dtype!r}: choose float32 or float64")
    names = ["gpu", "cpu"] if backend in (None, "all") else [backend]
    bes = []
    for n in names:
        if n not in ("gpu", "cpu"):
            raise UsageError(f"--backend {n!r}: choose gpu, cpu or all")
        be = B.get(n)
        if not be.available and backend not in (None, "all"):
            raise BackendUnavailable(f"{n} backend unavailable: {be.reason}")
        bes.append(be)
    res = profile(spec, bes, batch, dtype, min_time_s=min_time_s)
    skipped = {be.name: be.reason for be in bes if not be.available}
    return {"model": model, "batch": batch, "dtype": dtype, "result": res, "skipped": skipped,
            "rows": table_rows(res)}

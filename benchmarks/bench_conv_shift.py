"""The CPU shifted-GEMM convolution (accelbench.ops.conv_shift) on the classic MNIST network's stride-1
layers (32->64 and 64->64 channels, 3x3 "same", 28x28), two views:

* layers (default): forward and backward GFLOP/s of ``ShiftConv`` with the weight gradient per tap or
  stacked (``stack_dw``), for a few chunk sizes, optionally beside another version of the module
  (``--baseline FILE``, e.g. ``git show HEAD~1:accelbench/ops/conv_shift.py > /tmp/old.py``);
* ``--gemms``: the GEMMs of one 4 MB chunk alone, per tap (K = C, 9 GEMMs) against the KW taps of a
  kernel row stacked into one GEMM (K = 3C, 3 GEMMs), *including* the copy that stacking needs, for the
  forward, the weight gradient and the input gradient. This is what decided which GEMMs stack.

Variants alternate within each round so drift on a shared machine hits them alike; tables show the
median over rounds and the min-max. GFLOP/s count the valid outputs' work (2*N*OH*OW*F*C*KH*KW forward,
twice that for a backward with dX and dW), not the border positions the grid also computes.

    PYTHONPATH=. python benchmarks/bench_conv_shift.py [--batch 64] [--rounds 7] [--chunk-mb 4]
        [--baseline /tmp/old.py]
    PYTHONPATH=. python benchmarks/bench_conv_shift.py --gemms [--rounds 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelbench.ops import conv_geometry, conv_shift  # noqa: E402
from accelbench.ops.cpu_blas import gemm  # noqa: E402

LAYERS = {"conv2 32->64": (32, 64), "conv3 64->64": (64, 64)}


def _time(fn: Callable[[], Any], min_time_s: float) -> float:
    """Seconds per call over a block of at least ``min_time_s`` (after one warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time_s and n >= 3:
            return dt / n


def _summary(v: list[float]) -> str:
    return f"{statistics.median(v):6.1f} ({min(v):.0f}-{max(v):.0f})"


def _load_baseline(path: Path) -> Any:
    """Another conv_shift.py, loaded as a sibling module so that its relative imports resolve."""
    spec = importlib.util.spec_from_file_location("accelbench.ops._bench_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_layers(a: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    dt = np.dtype(a.dtype)
    base = _load_baseline(a.baseline) if a.baseline is not None else None
    for name, (c, f) in LAYERS.items():
        g = conv_geometry((a.batch, c, 28, 28), (f, c, 3, 3), 1, 1)
        x = rng.standard_normal(g.x_shape).astype(dt)
        w = rng.standard_normal(g.w_shape).astype(dt)
        b = rng.standard_normal(f).astype(dt)
        dy = rng.standard_normal(g.y_shape).astype(dt)
        y, dx, dw, db = np.empty(g.y_shape, dt), np.empty(g.x_shape, dt), np.empty(g.w_shape, dt), np.empty(f, dt)
        fl = 2.0 * g.n * g.oh * g.ow * g.f * g.c * g.kh * g.kw
        variants: dict[str, Any] = {}
        for mb in a.chunk_mb:
            nb = max(1, int(mb * 2**20) // (max(c, f) * 29 * 29 * dt.itemsize))
            if base is not None:
                variants[f"baseline, chunk {nb}"] = base.ShiftConv(g, dt, nb)
            for st in (False, True):
                variants[f"{'stacked' if st else 'per-tap'} dW, chunk {nb}"] = conv_shift.ShiftConv(g, dt, nb, st)
        calls = {k: (partial(sc.forward, x, w, b, y, relu=True), partial(sc.backward, dy, x, w, dw, db, dx, relu_y=y))
                 for k, sc in variants.items()}
        res: dict[str, dict[str, list[float]]] = {k: {"fwd": [], "bwd": []} for k in variants}
        for _ in range(a.rounds):
            for k, (fwd, bwd) in calls.items():
                res[k]["fwd"].append(fl / _time(fwd, a.min_time) / 1e9)
                res[k]["bwd"].append(2 * fl / _time(bwd, a.min_time) / 1e9)
        print(f"{name}, batch {a.batch}, {a.dtype}: GFLOP/s, median (min-max) of {a.rounds} rounds")
        for k, r in res.items():
            ms = 1e3 * (fl / statistics.median(r["fwd"]) + 2 * fl / statistics.median(r["bwd"])) / 1e9
            best = 1e3 * (fl / max(r["fwd"]) + 2 * fl / max(r["bwd"])) / 1e9
            print(f"  {k:24s} fwd {_summary(r['fwd'])}  bwd {_summary(r['bwd'])}  "
                  f"fwd+bwd {ms:6.1f} ms (best {best:.1f})")


def _gemm_variants(c: int, f: int, dt: np.dtype, rng: np.random.Generator) -> tuple[float, dict[str, Any]]:
    """(FLOPs, {variant: call}) for one 4 MB chunk's GEMMs of a C -> F 3x3 layer on the channel-major grid."""
    wp = 29
    nb = max(1, (4 << 20) // (max(c, f) * 29 * 29 * dt.itemsize))
    m = nb * 29 * 29 - 2 * wp  # positions computed: the chunk's grid (its last border rows aside)
    cols = m + 2 * wp + 2 + 64
    offs = [i * wp + j for i in range(3) for j in range(3)]
    reach = 2 * wp + 2
    mx = m - reach  # input-gradient columns, read from dy up to ``reach`` behind

    def mk(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dt)

    xg, yg, dyp, dxg = mk(c, cols), mk(f, cols), mk(f, cols), mk(c, cols)
    x3, dy3 = mk(3 * c, cols), mk(3 * f, cols)
    wf, wb, w3, wb3 = mk(9, f, c), mk(9, c, f), mk(3, f, 3 * c), mk(3, c, 3 * f)
    dwt, dw3 = mk(9, c, f), mk(3, 3 * c, f)

    def x_neighbours() -> None:  # x3[j*C + c, p] = xg[c, p + j]
        for j in range(3):
            x3[j * c:(j + 1) * c, :m + 2 * wp] = xg[:, j:j + m + 2 * wp]

    def fwd_tap() -> None:
        for k, off in enumerate(offs):
            gemm(wf[k], xg[:, off:off + m], yg[:, :m], beta=0.0 if k == 0 else 1.0)

    def fwd_stacked() -> None:
        x_neighbours()
        for i in range(3):
            gemm(w3[i], x3[:, i * wp:i * wp + m], yg[:, :m], beta=0.0 if i == 0 else 1.0)

    def dw_tap() -> None:
        for k, off in enumerate(offs):
            gemm(xg[:, off:off + m], dyp[:, :m].T, dwt[k], beta=1.0)

    def dw_stacked() -> None:
        x_neighbours()
        for i in range(3):
            gemm(x3[:, i * wp:i * wp + m], dyp[:, :m].T, dw3[i], beta=1.0)

    def dx_tap() -> None:
        for k, off in enumerate(offs):
            gemm(wb[k], dyp[:, reach - off:reach - off + mx], dxg[:, :mx], beta=0.0 if k == 0 else 1.0)

    def dx_stacked() -> None:
        n = mx + 2 * wp
        for j in range(3):  # dy3[j*F + f, p] = dyp[f, p + 2 - j]: dy with its left neighbours
            dy3[j * f:(j + 1) * f, :n] = dyp[:, 2 - j:2 - j + n]
        for i in range(3):
            s0 = (2 - i) * wp
            gemm(wb3[i], dy3[:, s0:s0 + mx], dxg[:, :mx], beta=0.0 if i == 0 else 1.0)

    return 2.0 * 9 * c * f * m, {
        "fwd per tap (K=C)": fwd_tap, "fwd stacked (K=3C)": fwd_stacked,
        "dW per tap (CxF out)": dw_tap, "dW stacked (3CxF out)": dw_stacked,
        "dX per tap (K=F)": dx_tap, "dX stacked (K=3F)": dx_stacked}


def bench_gemms(a: argparse.Namespace) -> None:
    """One chunk's GEMMs on the channel-major grid, per tap vs stacked (with the stacking copy)."""
    rng = np.random.default_rng(0)
    variants: dict[tuple[str, str], Any] = {}
    flops: dict[str, float] = {}
    for name, (c, f) in LAYERS.items():
        flops[name], fns = _gemm_variants(c, f, np.dtype(a.dtype), rng)
        variants.update({(name, part): fn for part, fn in fns.items()})
    res: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k, fn in variants.items():
            res[k].append(flops[k[0]] / _time(fn, a.min_time) / 1e9)
    print(f"GEMMs of one 4 MB chunk, {a.dtype}, stacking copies included: GFLOP/s, median (min-max) of "
          f"{a.rounds} rounds")
    for (name, part), v in res.items():
        print(f"  {name:13s} {part:22s} {_summary(v)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per measurement")
    ap.add_argument("--chunk-mb", type=float, nargs="+", default=[4.0], help="chunk sizes (MB of grid) to compare")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another conv_shift.py to time alongside (its default settings)")
    ap.add_argument("--gemms", action="store_true", help="compare per-tap and stacked GEMMs instead of layers")
    a = ap.parse_args(argv)
    if a.gemms:
        bench_gemms(a)
    else:
        bench_layers(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

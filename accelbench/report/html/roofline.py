"""The roofline: each case by arithmetic intensity and achieved GFLOP/s under its backend's ceilings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..format import finite, fmt_num
from .figures import BACKEND_COLOR, SYMBOLS, esc, figure, layout
from .model import Block, Chart, Ids

DASH_OF = {"measured": "solid", "theoretical": "dash", "datasheet": "dot"}
ROOF_MAX_POINTS = 1000  # beyond this many cases, neighbouring cases merge into one marker
GRID_PER_DECADE = 20  # the cells they merge in: 1/20 of a decade on each log axis


@dataclass
class Ceiling:
    backend: str
    kind: str  # "memory" (GB/s) or "compute" (GFLOP/s)
    value: float
    label: str  # what it is
    provenance: str  # "measured", "theoretical", "datasheet"


def _walk_numbers(obj: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif finite(obj):
        yield prefix, float(obj)


def ceilings(env: dict[str, Any]) -> list[Ceiling]:
    """Roofline ceilings from the run's environment: measured ones under ``environment["peaks"]``
    (written by ``accelbench calibrate``: per backend, keys naming GB/s or GFLOP/s), else the GPU's
    theoretical DRAM bandwidth from its device properties. Anything else is absent, and the page says so."""
    out: list[Ceiling] = []
    peaks = env.get("peaks") or {}
    if isinstance(peaks, dict):
        for be in ("gpu", "cpu"):
            sub = peaks.get(be)
            if not isinstance(sub, dict):
                continue
            prov = str(sub.get("provenance") or sub.get("source") or "measured")
            for key, v in _walk_numbers(sub):
                k = key.lower()
                if v <= 0:
                    continue
                if "gbps" in k or "bandwidth" in k or "gb_s" in k:
                    out.append(Ceiling(be, "memory", v, key.replace("_gbps", "").replace(".gbps", ""), prov))
                elif "gflops" in k or "tflops" in k:
                    out.append(Ceiling(be, "compute", v * (1e3 if "tflops" in k else 1.0),
                                       key.replace("_gflops", "").replace(".gflops", ""), prov))
    g = env.get("gpu") or {}
    if not any(c.backend == "gpu" and c.kind == "memory" for c in out) and finite(g.get("theoretical_bandwidth_gbps")):
        out.append(Ceiling("gpu", "memory", float(g["theoretical_bandwidth_gbps"]),
                           "DRAM (2 × memory clock × bus width)", "theoretical"))
    return out


@dataclass
class Roof:
    """Each backend's highest bandwidth and compute ceiling: the roof is min(bandwidth × AI, peak)."""

    bw: dict[str, float | None]
    peak: dict[str, float | None]

    @classmethod
    def of(cls, cs: list[Ceiling]) -> Roof:
        def best(be: str, kind: str) -> float | None:
            return max((c.value for c in cs if c.backend == be and c.kind == kind), default=None)

        return cls({be: best(be, "memory") for be in ("gpu", "cpu")}, {be: best(be, "compute") for be in ("gpu", "cpu")})

    def ridges(self) -> list[float]:
        return [pk / bw for be in ("gpu", "cpu") if (pk := self.peak[be]) and (bw := self.bw[be])]

    def at(self, backend: str, ai: float) -> float:
        return min((self.bw.get(backend) or math.inf) * ai, self.peak.get(backend) or math.inf)


def roofline_block(ids: Ids, df: pd.DataFrame, env: dict[str, Any]) -> tuple[Block, list[Chart]]:
    b = Block(id="roofline", title="Roofline",
              subtitle="each case by arithmetic intensity (flop per byte moved) and achieved GFLOP/s")
    ok = df[(df["status"] == "ok")] if len(df) else df
    pts = ok[ok["flops"].map(lambda v: finite(v) and v > 0) & ok["bytes"].map(lambda v: finite(v) and v > 0)
             & ok["gflops"].map(finite)] if len(ok) else ok
    if len(ok) - len(pts):
        b.notes.append(f"{len(ok) - len(pts)} finished case(s) have no flop or byte count (copies, model workloads "
                       f"measured in images) and are not placed.")
    if pts.empty:
        b.notes.insert(0, "No finished case has both a flop and a byte count, so there is no roofline.")
        return b, []
    ai = (pts["flops"] / pts["bytes"]).astype(float)
    cs = ceilings(env)
    roof = Roof.of(cs)
    xmin = min([float(ai.min()), *roof.ridges()]) / 4
    xmax = max([float(ai.max()), *roof.ridges()]) * 4
    if len(pts) > ROOF_MAX_POINTS:
        traces = _binned_traces(pts)
        b.notes.append(f"{len(pts)} cases, more than the {ROOF_MAX_POINTS} drawn one by one: cases within 1/"
                       f"{GRID_PER_DECADE} of a decade of each other on both axes (same backend and workload) "
                       f"share one marker, sized by their count; {sum(len(t.x) for t in traces)} markers stand "
                       f"for the {len(pts)} cases (hover: how many)")
    else:
        traces = _case_traces(pts)
    lines, line_ys = _ceiling_traces(cs, roof, xmin, xmax)
    b.notes += _roof_notes(pts, ai, cs, roof)
    g = [float(v) for v in pts["gflops"]]
    # every point and every ceiling in view, but a bandwidth line alone may not stretch the axis endlessly
    ymin = max(min(g + line_ys) / 2, min(g) / 1e3, 1e-9)
    ymax = min(max(g + line_ys) * 2, max(g + [c.value for c in cs if c.kind == "compute"]) * 1e3)
    lay = layout("arithmetic intensity (flop / byte)", "achieved GFLOP/s", log_y=True, log_x=True, height=440,
                 legend={"orientation": "v", "x": 1.01, "y": 1, "yanchor": "top"})
    lay.xaxis.range = [math.log10(xmin), math.log10(xmax)]
    lay.yaxis.range = [math.log10(ymin), math.log10(ymax)]
    ch = Chart(ids("chart-roofline"), "Achieved GFLOP/s against arithmetic intensity", figure(traces + lines, lay),
               "ceilings: solid = measured, dashed = theoretical from device properties, dotted = datasheet")
    b.charts.append(ch)
    return b, [ch]


def _case_traces(pts: pd.DataFrame) -> list[go.Scatter]:
    symbols = {wl: SYMBOLS[i % len(SYMBOLS)] for i, wl in enumerate(dict.fromkeys(pts["workload"]))}
    out = []
    for (be, wl), br in pts.groupby(["backend", "workload"], sort=True):
        out.append(go.Scatter(
            mode="markers", name=esc(f"{wl} @{be}"), x=list((br["flops"] / br["bytes"]).astype(float)),
            y=[float(v) for v in br["gflops"]],
            marker={"color": BACKEND_COLOR.get(str(be), "#888"), "size": 9, "opacity": 0.85, "symbol": symbols[wl],
                    "line": {"width": 0.5, "color": "#222"}},
            hovertext=[esc(f"{n} @{be}") + f"<br>{fmt_num(g)} GFLOP/s, {fmt_num(gb)} GB/s"
                       for n, g, gb in zip(br["name"], br["gflops"], br["gbps"], strict=True)],
            hoverinfo="text"))
    return out


def _binned_traces(pts: pd.DataFrame) -> list[go.Scatter]:
    """Per backend and workload, one marker per occupied cell of a log-spaced grid, at the cell's cases'
    mean (log) position, its size growing with their count."""
    symbols = {wl: SYMBOLS[i % len(SYMBOLS)] for i, wl in enumerate(dict.fromkeys(pts["workload"]))}
    out = []
    for (be, wl), br in pts.groupby(["backend", "workload"], sort=True):
        lx = np.log10((br["flops"] / br["bytes"]).to_numpy(dtype=float))
        ly = np.log10(br["gflops"].to_numpy(dtype=float))
        cells = pd.DataFrame({"cx": np.floor(lx * GRID_PER_DECADE), "cy": np.floor(ly * GRID_PER_DECADE),
                              "lx": lx, "ly": ly, "name": list(br["name"])})
        agg = cells.groupby(["cx", "cy"], sort=True).agg(lx=("lx", "mean"), ly=("ly", "mean"), n=("lx", "size"),
                                                         name=("name", "first"))
        n = agg["n"].to_numpy()
        out.append(go.Scatter(
            mode="markers", name=esc(f"{wl} @{be}"), x=list(10 ** agg["lx"]), y=list(10 ** agg["ly"]),
            marker={"color": BACKEND_COLOR.get(str(be), "#888"), "size": list(6 + 3 * np.log2(n)), "opacity": 0.7,
                    "symbol": symbols[wl], "line": {"width": 0.5, "color": "#222"}},
            hovertext=[f"{k} case(s) @{esc(be)}, e.g. {esc(nm)}<br>about {fmt_num(10 ** y)} GFLOP/s"
                       for k, nm, y in zip(n, agg["name"], agg["ly"], strict=True)],
            hoverinfo="text"))
    return out


def _ceiling_traces(cs: list[Ceiling], roof: Roof, xmin: float, xmax: float) -> tuple[list[go.Scatter], list[float]]:
    """Bandwidth lines up to the highest compute ceiling, compute lines from the highest bandwidth line on
    (each from its own ridge point), so the chart shows min(bw × AI, peak)."""
    out, ys_all = [], []
    for c in cs:
        if c.kind == "memory":
            pk = roof.peak[c.backend]
            xs = [xmin, max(xmin, pk / c.value) if pk else xmax]
            ys = [c.value * x for x in xs]
            name = f"{c.backend} {c.label}: {fmt_num(c.value)} GB/s ({c.provenance})"
        else:
            bw = roof.bw[c.backend]
            xs = [min(xmax, c.value / bw) if bw else xmin, xmax]
            ys = [c.value, c.value]
            name = f"{c.backend} {c.label}: {fmt_num(c.value)} GFLOP/s ({c.provenance})"
        ys_all += ys
        out.append(go.Scatter(mode="lines", name=esc(name), x=xs, y=ys, hoverinfo="name",
                              line={"color": BACKEND_COLOR.get(c.backend, "#888"),
                                    "dash": DASH_OF.get(c.provenance, "dashdot"), "width": 1.5}))
    return out, ys_all


def _roof_notes(pts: pd.DataFrame, ai: pd.Series, cs: list[Ceiling], roof: Roof) -> list[str]:
    notes = []
    above = sum(bool(math.isfinite(r := roof.at(str(be), float(x))) and y > 1.1 * r)
                for be, x, y in zip(pts["backend"], ai, pts["gflops"], strict=True))
    if above:
        notes.append(f"{above} case(s) lie more than 10% above their measured ceiling: the calibration "
                     f"underestimates this machine (re-run `accelbench calibrate` without --quick on an idle "
                     f"machine).")
    for be in sorted(set(pts["backend"])):
        have = {c.kind for c in cs if c.backend == be}
        missing = [k for k in ("memory", "compute") if k not in have]
        if missing:
            what = " and ".join("bandwidth" if k == "memory" else "compute" for k in missing)
            notes.append(f"{be}: {what} ceiling absent (no measured peak in this run; `accelbench calibrate` "
                         f"measures them).")
    return notes

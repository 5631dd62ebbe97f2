"""Model workloads: images/s against batch size, the per-layer profile, and time to accuracy."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..format import DASH, finite, fmt_num, fmt_time, time_unit
from .figures import BACKEND_COLOR, PALETTE, case_labels, esc, figure, hbar_height, layout, series_names
from .model import Block, Cell, Chart, Ids, Table, cell_backend

BATCH_KEYS = ("batch", "batch_size")


def is_model(rows: pd.DataFrame) -> pd.Series:
    return rows["family"] == "model"


def model_blocks(ids: Ids, df: pd.DataFrame) -> tuple[list[Block], list[Chart]]:
    m = df[is_model(df)] if len(df) else df
    if m.empty:
        return [], []
    ok = m[m["status"] == "ok"]
    blocks = [throughput_block(ids, ok), layers_block(ids, ok), accuracy_block(ids, ok)]
    return blocks, [c for b in blocks for c in b.charts]


# ---------------------------------------------------------------- images/s against batch size


def throughput_block(ids: Ids, ok: pd.DataFrame) -> Block:
    """One chart per workload (inference, train step), one line per series (colour) and backend (GPU solid
    circles, CPU dashed squares)."""
    b = Block(id="models-throughput", title="Throughput against batch size",
              subtitle="images per second per backend (log–log)")
    for wl, rows in ok.groupby("workload", sort=False):
        bkey = next((k for k in BATCH_KEYS if any(k in (p or {}) for p in rows["params"])), None)
        rows = rows[rows["items_per_s"].map(finite)] if bkey else rows.iloc[0:0]
        rows = rows[rows["params"].map(lambda p, k=bkey: finite((p or {}).get(k)))] if len(rows) else rows
        if rows.empty or bkey is None:
            continue
        names = series_names(rows, bkey)
        tags = list(dict.fromkeys(names.values()))
        traces = []
        for (tag, be), idx in rows.groupby([rows.index.map(names), "backend"], sort=False).groups.items():
            pts = sorted((float(rows.at[i, "params"][bkey]), float(rows.at[i, "items_per_s"]), str(rows.at[i, "name"]))
                         for i in idx)
            gpu = be == "gpu"
            traces.append(go.Scatter(
                mode="lines+markers", name=esc(f"{tag} @{be}"), x=[p[0] for p in pts], y=[p[1] for p in pts],
                line={"color": PALETTE[tags.index(tag) % len(PALETTE)], "dash": "solid" if gpu else "dash",
                      "width": 2},
                marker={"symbol": "circle" if gpu else "square", "size": 7}, hoverinfo="text",
                hovertext=[esc(p[2]) + f"<br>{fmt_num(p[1])} images/s" for p in pts]))
        lay = layout("batch size", "images / s", log_x=True, log_y=True, height=400,
                     legend={"orientation": "v", "x": 1.01, "y": 1, "yanchor": "top"})
        b.charts.append(Chart(ids("chart-model-batch", str(wl)), f"{wl}: images per second against batch size",
                              figure(traces, lay), "solid: GPU, dashed: CPU"))
    if not b.charts:
        b.notes.append("No finished model case reports images/s at a batch size.")
    return b


# ---------------------------------------------------------------- per-layer profile


def layer_profile(metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A per-layer profile in a case's metrics: a list of dicts naming a layer and its times in seconds
    (keys ending in ``_s``). Accepts ``layers`` / ``profile`` / ``per_layer`` lists."""
    for key in ("layers", "per_layer", "profile", "layer_profile"):
        v = metrics.get(key)
        if (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
                and any(k.endswith("_s") and finite(x.get(k)) for x in v for k in x)):
            return v
    return None


def _layer_times(prof: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, str]]:
    """Per layer ("i: name"): its summed recorded time, and the parts for the hover text."""
    vals: dict[str, float] = {}
    hov: dict[str, str] = {}
    for i, layer in enumerate(prof):
        nm = str(layer.get("name") or layer.get("layer") or layer.get("kind") or f"layer {i}")
        nm = f"{i}: {nm}" if not nm.startswith(f"{i}") else nm
        parts = {k: float(v) for k, v in layer.items() if k.endswith("_s") and finite(v)}
        vals[nm] = sum(parts.values())
        hov[nm] = ", ".join(f"{k[:-2]} {fmt_time(v)}" for k, v in parts.items())
    return vals, hov


def layers_block(ids: Ids, ok: pd.DataFrame) -> Block:
    """Stacked bars of each layer's time, one bar per case."""
    b = Block(id="models-layers", title="Per-layer profile", subtitle="time of each layer, stacked per case")
    profs = {i: p for i, rec in ok["record"].items() if (p := layer_profile(rec.metrics))}
    if not profs:
        b.notes.append("No per-layer profile was recorded in this run (model cases' metrics hold no layer list).")
        return b
    short = case_labels(ok.loc[list(profs)])
    per_case = [(f"{short[i]} @{ok.at[i, 'backend']}", *_layer_times(p)) for i, p in profs.items()]
    layer_names = list(dict.fromkeys(nm for _, vals, _ in per_case for nm in vals))
    unit, scale = time_unit([sum(v.values()) for _, v, _ in per_case])
    traces = [go.Bar(orientation="h", name=esc(nm), y=[esc(c) for c, _, _ in per_case],
                     x=[v.get(nm, 0.0) / scale for _, v, _ in per_case],
                     hovertext=[esc(f"{nm}: {h.get(nm, '')}") for _, _, h in per_case], hoverinfo="text+x")
              for nm in layer_names]
    lay = layout(f"time ({unit})", "", barmode="stack", height=hbar_height(len(per_case)),
                 legend={"orientation": "v", "traceorder": "normal"})
    lay.yaxis.autorange = "reversed"
    b.charts.append(Chart(ids("chart-model-layers"), "Per-layer time (stacked)", figure(traces, lay),
                          "each segment sums the layer's recorded times (forward + backward where both are recorded)"))
    return b


# ---------------------------------------------------------------- time to accuracy


def _metric_value(mt: dict[str, Any], names: tuple[str, ...], like: Any) -> float | None:
    for n in names:
        if finite(mt.get(n)):
            return float(mt[n])
    return next((float(v) for k, v in mt.items() if like(k) and finite(v)), None)


def _accuracy(mt: dict[str, Any]) -> tuple[float | None, float | None, float | None, float | None, Any]:
    """time to accuracy, target, final accuracy, epochs, reached: the models' train_to_accuracy metric
    names first, then any key that says the same thing."""
    return (_metric_value(mt, ("time_to_accuracy_s",), lambda k: "time_to_accuracy" in k),
            _metric_value(mt, ("target_accuracy",), lambda k: "target" in k and "accuracy" in k),
            _metric_value(mt, ("final_test_accuracy", "test_accuracy"),
                          lambda k: "accuracy" in k and "time" not in k and "target" not in k),
            _metric_value(mt, ("epochs",), lambda k: "epoch" in k),
            mt.get("reached_target", mt.get("reached")))


def accuracy_block(ids: Ids, ok: pd.DataFrame) -> Block:
    b = Block(id="models-accuracy", title="Time to accuracy", subtitle="training until the target test accuracy")
    tta = ok[ok["record"].map(lambda rec: any("time_to_accuracy" in k for k in rec.metrics))]
    if tta.empty:
        b.notes.append("No train-to-accuracy case finished in this run.")
        return b
    cols = ["case", "backend", "time to accuracy", "target", "final test accuracy", "epochs", "reached"]
    rows: list[list[Cell]] = []
    bars: list[tuple[str, float, str]] = []
    short = case_labels(tta)
    for idx, r in tta.iterrows():
        t, target, acc, epochs, reached = _accuracy(r["record"].metrics)
        rows.append([Cell(short[idx], short[idx], title=str(r["name"])), cell_backend(str(r["backend"])),
                     Cell(fmt_time(t), t), Cell(fmt_num(target), target), Cell(fmt_num(acc), acc),
                     Cell(fmt_num(epochs), epochs),
                     Cell(DASH if reached is None else ("yes" if reached else "no"), str(reached),
                          "" if reached is None else ("st-ok" if reached else "st-failed"))])
        if t is not None:
            bars.append((esc(f"{short[idx]} @{r['backend']}"), t, BACKEND_COLOR.get(str(r["backend"]), "#888")))
    b.table = Table(ids("table-tta"), cols, rows, numeric={2, 3, 4, 5})
    if bars:
        lay = layout("seconds to reach the target accuracy", "", height=hbar_height(len(bars)))
        lay.yaxis.autorange = "reversed"
        trace = go.Bar(orientation="h", y=[x for x, _, _ in bars], x=[t for _, t, _ in bars],
                       marker={"color": [c for _, _, c in bars]}, hoverinfo="x+y")
        b.charts.append(Chart(ids("chart-model-tta"), "Time to accuracy", figure([trace], lay)))
    return b

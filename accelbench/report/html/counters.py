"""Counters: power, energy, clocks and utilisation per case (table), and per counter group for models."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..format import finite, fmt_num
from .figures import BACKEND_COLOR, esc, figure, hbar_height, layout, num, short_labels
from .model import Block, Cell, Chart, Ids, Table, cell_backend
from .models import is_model

GPU_COUNTER_GROUPS = {
    "power": ("power",),
    "energy per image": ("energy",),
    "clocks": ("clock", "sm_mhz", "freq"),
    "utilisation": ("util",),
}


def counters_block(ids: Ids, df: pd.DataFrame) -> tuple[Block, list[Chart]]:
    b = Block(id="counters", title="Counters", subtitle="power, energy, clocks and utilisation where recorded")
    ok = df[df["status"] == "ok"] if len(df) else df
    keys = list(dict.fromkeys(k for rec in ok.get("record", []) for k, v in rec.counters.items() if finite(v)))
    if not keys:
        b.notes.append("No counters were recorded in this run (run without --no-counters; NVML counters need a "
                       "GPU).")
        return b, []
    for group, needles in GPU_COUNTER_GROUPS.items():
        if not any(any(n in k.lower() for n in needles) for k in keys):
            b.notes.append(f"{group}: not recorded in this run.")
    short = short_labels(ok)
    cols = ["case", "backend"] + keys
    rows: list[list[Cell]] = []
    for idx, r in zip(ok.index, ok.to_dict("records"), strict=True):
        c = r["record"].counters
        if any(finite(c.get(k)) for k in keys):
            rows.append([Cell(short[idx], short[idx], "nowrap", str(r["name"])), cell_backend(str(r["backend"]))]
                        + [Cell(fmt_num(num(c.get(k))), num(c.get(k))) for k in keys])
    b.table = Table(ids("table-counters"), cols, rows, numeric=set(range(2, len(cols))))
    b.charts = _model_charts(ids, ok[is_model(ok)] if len(ok) else ok, keys, short)
    return b, b.charts


def _model_charts(ids: Ids, m: pd.DataFrame, keys: list[str], short: dict[object, str]) -> list[Chart]:
    """One chart per counter group (its first key; units differ between groups, so never one shared axis),
    e.g. watts, joules per image, MHz, % busy."""
    charts = []
    for group, needles in GPU_COUNTER_GROUPS.items():
        k = next((k for k in keys if any(n in k.lower() for n in needles)), None)
        if k is None or not len(m):
            continue
        bars = [(esc(f"{short[i]} @{r['backend']}"), v, BACKEND_COLOR.get(str(r["backend"]), "#888"))
                for i, r in m.iterrows() if (v := num(r["record"].counters.get(k))) is not None]
        if not bars:
            continue
        lay = layout(esc(k), "", height=hbar_height(len(bars)))
        lay.yaxis.update(autorange="reversed", tickfont={"size": 10})
        trace = go.Bar(orientation="h", x=[v for _, v, _ in bars], y=[x for x, _, _ in bars],
                       marker={"color": [c for _, _, c in bars]}, hoverinfo="x+y")
        charts.append(Chart(ids("chart-counters", group), f"{group} of model cases: {k}", figure([trace], lay)))
    return charts

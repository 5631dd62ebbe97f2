"""Sample distributions per workload: each sample over its case's median, boxes per case and backend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..format import finite, fmt_time
from .figures import BACKEND_COLOR, CASE_CHART_LIMIT, figure, flat_ticks, layout, tick_labels
from .model import Block, Chart, Ids

MAX_CHART_CASES = CASE_CHART_LIMIT  # beyond this many cases of a workload, only the most variable are drawn
SHOWN_CASES = 30  # how many
RATIO_TICKS = [0.25, 0.5, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100]  # spreads span < a decade
MAX_POINTS = 1000  # samples drawn per box; beyond this an evenly spaced quantile subsample (shape kept)


def _subsample(x: list[float]) -> list[float]:
    if len(x) <= MAX_POINTS:
        return x
    s = np.sort(np.asarray(x))
    return [float(v) for v in s[np.linspace(0, len(s) - 1, MAX_POINTS).round().astype(int)]]


def distribution_blocks(ids: Ids, df: pd.DataFrame) -> tuple[list[Block], list[Chart]]:
    blocks, charts = [], []
    for wl, rows in df.groupby("workload", sort=False):
        ok = rows[(rows["status"] == "ok") & rows["samples_s"].map(lambda s: isinstance(s, list) and len(s) > 0)]
        b = Block(id=ids("dist", str(wl)), title=str(wl))
        if ok.empty:
            b.notes.append("No samples: every case of this workload was skipped (see Problems)."
                           if (rows["status"] == "skipped").all() else
                           "No samples: no case of this workload finished (see Problems).")
        elif len(ok) > MAX_CHART_CASES:  # thousands of boxes are unreadable and made a 10k-case report take minutes
            shown = most_variable(ok, min(SHOWN_CASES, MAX_CHART_CASES))
            b.notes.append(f"{len(ok)} cases with samples, more than the {MAX_CHART_CASES} drawn one by one: the "
                           f"{len(shown)} most variable (largest CV) are drawn, the other {len(ok) - len(shown)} "
                           f"are left out here; each case's spread is in its workload's table (CI, CV)")
            b.charts.append(_chart(ids, str(wl), shown, f"the {len(shown)} most variable of {len(ok)} cases"))
        else:
            b.charts.append(_chart(ids, str(wl), ok))
        charts += b.charts
        blocks.append(b)
    return blocks, charts


def most_variable(ok: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` rows of largest coefficient of variation (ties and cases without one: in run order)."""
    cv = pd.to_numeric(ok["cv"], errors="coerce")
    return ok.loc[cv.sort_values(ascending=False, kind="stable", na_position="last").index[:n]]


def _chart(ids: Ids, wl: str, ok: pd.DataFrame, title: str = "samples per case") -> Chart:
    """Each sample over its case's median: cases of very different sizes share one axis on which the
    spread itself (the noise) is what shows. Absolute times are in the hover text and the tables."""
    labels = tick_labels(ok)
    traces = []
    capped = False
    for be, br in ok.groupby("backend", sort=True):
        xs: list[str] = []
        ys: list[float] = []
        hover: list[str] = []
        for idx, r in br.iterrows():
            raw = [float(v) for v in r["samples_s"] if finite(v) and v > 0]
            med = float(np.median(raw)) if raw else 0.0
            smp = _subsample(raw)
            if not smp or med <= 0:
                continue
            capped = capped or len(smp) < len(raw)
            xs += [labels[idx]] * len(smp)
            ys += [v / med for v in smp]
            hover += [fmt_time(v) for v in smp]
        traces.append(go.Box(name=str(be), x=xs, y=ys, boxpoints="all", jitter=0.4, pointpos=0,
                             marker={"color": BACKEND_COLOR.get(str(be), "#888"), "size": 3, "opacity": 0.6},
                             line={"width": 1.2}, hovertext=hover, hoverinfo="text+y"))
    lay = flat_ticks(layout("case", "sample ÷ case median (log)", log_y=True, boxmode="group", height=340),
                     len(labels))
    lay.yaxis.update(tickmode="array", tickvals=RATIO_TICKS)
    note = "each dot is one sample (time per operation) over its case's median; box: quartiles"
    if capped:
        note += f"; cases with more than {MAX_POINTS} samples show {MAX_POINTS} evenly spaced quantiles"
    return Chart(ids("chart-dist", wl), title, figure(traces, lay), note)

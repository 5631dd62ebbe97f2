"""GPU vs CPU per workload: the speedup against the sweep's size axis, the median time per backend, and
the table of every measured case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import pandas as pd
import plotly.graph_objects as go

from ...compare import Speedup
from ...measure.stats import MIN_CI_SAMPLES
from ...onnx.engines import HEADLINE
from ...results import CaseRecord
from ..format import (
    DASH,
    finite,
    fmt_num,
    fmt_pct,
    fmt_range,
    fmt_rate,
    fmt_time,
    fmt_x,
    param_text,
    time_unit,
)
from .figures import (
    BACKEND_COLOR,
    CASE_CHART_LIMIT,
    PALETTE,
    aggregate_box,
    decade_ticks,
    esc,
    figure,
    flat_ticks,
    group_by_axis,
    layout,
    log_worthy,
    num,
    series_names,
    span,
    sweep_axis,
    sweep_title,
    tick_labels,
    unity_line,
    varying_params,
)
from .model import Block, Cell, Chart, Ids, Table, cell_backend

SPEEDUP_NOTE = "CPU time / GPU time (accelbench.compare: the number every reporter shows); whiskers: its 95% CI"


def gpu_absent_reason(df: pd.DataFrame) -> str:
    """Why no GPU case of the whole run has a time ("" when some did)."""
    if df.empty:
        return ""
    g = df[df["backend"] == "gpu"]
    if g.empty:
        return "the run has no GPU cases"
    if (g["status"] == "ok").any():
        return ""
    msgs = sorted({str(m) for m in g["message"] if m})
    return "no GPU case ran: " + ("; ".join(msgs[:3]) if msgs else "no GPU case finished")


def speedup_blocks(ids: Ids, df: pd.DataFrame, sp: dict[str, Speedup],
                   headline: dict[str, tuple[Speedup, str]] | None = None) -> tuple[list[Block], list[Chart]]:
    """``headline``: onnx GPU records' speedup over the fastest CPU engine (RunView.headline_by_key)."""
    blocks: list[Block] = []
    charts: list[Chart] = []
    # When no GPU case ran anywhere the page says so once (a banner); each workload then only counts.
    run_reason = gpu_absent_reason(df)
    for wl, rows in df.groupby("workload", sort=False):
        b = Block(id=ids("wl", str(wl)), title=str(wl), subtitle=str(rows["family"].iloc[0] or ""))
        ok = rows[rows["status"] == "ok"]
        ch = speedup_chart(ids, str(wl), ok, sp)
        if ch is not None:
            b.charts.append(ch)
        elif not run_reason:
            b.notes.append("No GPU-vs-CPU speedup: no case of this workload finished on both backends.")
        if headline and any(str(k) in headline for k in rows["pair_key"]):
            b.notes.append(f"The speedups plotted are each engine's GPU over its own CPU; the headline, the "
                           f"{HEADLINE.lower()} measured for the case, is the table's column '{HEADLINE}' and "
                           f"the Engines side by side section.")
        ch = time_chart(ids, str(wl), ok)
        if ch is not None:
            b.charts.append(ch)
        else:
            b.notes.append("No case of this workload finished, so there is no time to plot (see Problems).")
        charts += b.charts
        b.notes += skipped_notes(rows, run_reason)
        shown = rows[rows["status"] != "skipped"]
        if len(shown):
            b.table = workload_table(ids, str(wl), shown, sp, with_speedup=bool(sp), headline=headline)
        blocks.append(b)
    return blocks, charts


def skipped_notes(rows: pd.DataFrame, run_reason: str) -> list[str]:
    """Skipped cases (typically every GPU case on a machine without one) are listed under Problems with
    their reason; here one line per reason says how many, so the table holds what was measured."""
    skipped = rows[rows["status"] == "skipped"]
    out = []
    for (be, msg), n in skipped.groupby(["backend", "message"], sort=False).size().items():
        why = "no usable GPU (see the banner above)" if run_reason and str(msg) in run_reason else str(msg)
        out.append(f"{n} {be} case(s) skipped: {why}; listed under Problems.")
    return out


def speedup_chart(ids: Ids, wl: str, ok: pd.DataFrame, sp: dict[str, Speedup]) -> Chart | None:
    """The speedup of each case measured on both backends: against the sweep's size (batch, or the numeric
    parameter with most values), one line per series (model, entry, other knobs); bars per case when the
    sweep has no numeric axis."""
    g = ok[(ok["backend"] == "gpu") & ok["pair_key"].map(lambda k: k in sp and finite(sp[k].speedup)).astype(bool)]
    if g.empty:
        return None
    if len(g) > CASE_CHART_LIMIT:
        return _speedup_boxes(ids, wl, g, sp)
    x = sweep_axis(ok)
    hover = {i: esc(f"{r['name']}<br>") + _speedup_text(sp[str(r["pair_key"])]) for i, r in g.iterrows()}
    if x is None:
        labels = tick_labels(ok)
        ss = [sp[str(k)] for k in g["pair_key"]]
        trace = go.Bar(x=[labels[i] for i in g.index], y=[s.speedup for s in ss], name="speedup",
                       marker={"color": BACKEND_COLOR["gpu"]}, error_y=ci_bars(ss),
                       hovertext=list(hover.values()), hoverinfo="text")
        lay = flat_ticks(layout("case", "speedup (CPU time / GPU time)", log_y=True, shapes=[unity_line("y")]),
                         len(g))
        return Chart(ids("chart-speedup", wl), "GPU speedup over the CPU (log scale)", figure([trace], lay),
                     "bars: " + SPEEDUP_NOTE)
    names = series_names(g, x)
    traces = []
    for i, name in enumerate(dict.fromkeys(names.values())):
        pts = sorted(((float(g.at[j, "params"][x]), sp[str(g.at[j, "pair_key"])], hover[j])
                      for j in g.index if names[j] == name), key=lambda t: t[0])
        traces.append(go.Scatter(x=[p[0] for p in pts], y=[p[1].speedup for p in pts], name=esc(name),
                                 mode="lines+markers", line={"color": PALETTE[i % len(PALETTE)], "width": 2},
                                 marker={"size": 8}, error_y=ci_bars([p[1] for p in pts]),
                                 hovertext=[p[2] for p in pts], hoverinfo="text"))
    xs = sorted({float(p[x]) for p in g["params"]})
    lay = layout(sweep_title(x), "speedup (CPU time / GPU time)", log_y=True, log_x=log_worthy(xs),
                 shapes=[unity_line("y")])
    lay.xaxis.update(tickvals=xs, ticktext=[f"{v:g}" for v in xs])  # the sizes the sweep ran, no others
    decade_ticks(lay.yaxis, [sp[str(k)].speedup for k in g["pair_key"]] + [1.0])
    lay.legend.title.text = esc(", ".join(k for k in varying_params(g) if k != x))
    return Chart(ids("chart-speedup", wl), f"GPU speedup over the CPU against {sweep_title(x)} (log scale)",
                 figure(traces, lay), "each line: one series of the sweep; " + SPEEDUP_NOTE
                 + "; no whisker: too few samples on a side for a CI")


def aggregated_note(n: int, what: str, groups: list[tuple[str, list[float]]]) -> str:
    """What an aggregate chart of ``n`` cases shows instead of each case."""
    per = "one box over all of them" if len(groups) == 1 else f"one box per {groups[0][0].split('=')[0]}"
    return (f"{n} cases, more than the {CASE_CHART_LIMIT} drawn one by one: {per} of the cases' {what} "
            f"(box: quartiles and median, whiskers: smallest and largest); each case is in the table")


def _speedup_boxes(ids: Ids, wl: str, g: pd.DataFrame, sp: dict[str, Speedup]) -> Chart:
    """The speedups of a workload of many cases, as boxes (per size of the sweep when it has few sizes)."""
    groups = group_by_axis(g, [sp[str(k)].speedup for k in g["pair_key"]])
    lay = layout("", "speedup (CPU time / GPU time)", log_y=True, shapes=[unity_line("y")])
    decade_ticks(lay.yaxis, [v for _, vs in groups for v in vs] + [1.0])
    return Chart(ids("chart-speedup", wl), "GPU speedup over the CPU, aggregated (log scale)",
                 figure([aggregate_box("speedup", BACKEND_COLOR["gpu"], groups)], lay),
                 aggregated_note(len(g), "speedups (CPU time / GPU time)", groups))


def _speedup_text(s: Speedup) -> str:
    return f"speedup {fmt_x(s.speedup)} (95% CI {fmt_range(s.ci_low, s.ci_high, fmt_x)})"


class SpeedupCI(Protocol):
    """A speedup with its CI: compare.Speedup, or a machines.Cell (speedup over the reference machine)."""

    @property
    def speedup(self) -> float | None: ...
    @property
    def ci_low(self) -> float | None: ...
    @property
    def ci_high(self) -> float | None: ...


def has_ci(s: SpeedupCI) -> bool:
    """Whether the CI bounds anything: with a handful of samples on a side it is (0, inf), and a whisker
    down to zero on a log axis would read like a measurement."""
    return s.ci_low is not None and s.ci_low > 0 and finite(s.ci_high)


def ci_bars(ss: Sequence[SpeedupCI]) -> dict[str, Any]:
    """Plotly error bars (error_x or error_y) of the speedups' CIs; none where the CI bounds nothing."""
    return {"type": "data", "symmetric": False, "color": "#333", "thickness": 1.2, "width": 3,
            "array": [span(s.ci_high, s.speedup) if has_ci(s) else 0.0 for s in ss],
            "arrayminus": [span(s.speedup, s.ci_low) if has_ci(s) else 0.0 for s in ss]}


def time_chart(ids: Ids, wl: str, ok: pd.DataFrame) -> Chart | None:
    """Median time per operation per backend with its CI, so a CPU-only run still shows its sweep."""
    if ok.empty:
        return None
    unit, scale = time_unit(ok["median_s"])
    if ok["pair_key"].nunique() > CASE_CHART_LIMIT:
        return _time_boxes(ids, wl, ok, unit, scale)
    labels = tick_labels(ok)
    traces = []
    for be, br in ok.groupby("backend", sort=True):
        meds = [float(v) / scale for v in br["median_s"]]
        hi = [max(0.0, (num(h) or m * scale) / scale - m) for h, m in zip(br["ci_high_s"], meds, strict=True)]
        lo = [max(0.0, m - (num(v) or m * scale) / scale) for v, m in zip(br["ci_low_s"], meds, strict=True)]
        traces.append(go.Bar(name=str(be), x=[labels[i] for i in br.index], y=meds,
                             marker={"color": BACKEND_COLOR.get(str(be), "#888")},
                             error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo,
                                      "color": "#333"},
                             hovertext=[esc(n) for n in br["name"]], hoverinfo="text+y"))
    lay = flat_ticks(layout("case", f"time per operation ({unit})", log_y=True, barmode="group"), len(labels))
    return Chart(ids("chart-time", wl), "Median time per operation (log scale)", figure(traces, lay),
                 "whiskers: 95% CI of the median (distribution-free)")


def _time_boxes(ids: Ids, wl: str, ok: pd.DataFrame, unit: str, scale: float) -> Chart:
    """The median times of a workload of many cases, as boxes per backend (and size, when few)."""
    traces, n = [], 0
    for be, br in ok.groupby("backend", sort=True):
        groups = group_by_axis(br, [float(v) / scale for v in br["median_s"]])
        n = max(n, len(br))
        traces.append(aggregate_box(str(be), BACKEND_COLOR.get(str(be), "#888"), groups, f" {unit}"))
    lay = layout("", f"time per operation ({unit})", log_y=True, boxmode="group")
    return Chart(ids("chart-time", wl), "Median time per operation, aggregated (log scale)", figure(traces, lay),
                 aggregated_note(n, "median times per backend", groups))


# ---------------------------------------------------------------- the table


PCT_NAMES = {"flops_percent_of_measured": "% of peak GFLOP/s", "bw_percent_of_measured": "% of peak GB/s"}
TEXT_COLUMNS = ("backend", "status", "validation (rel. error)", "variant")
ROW_COLUMNS = ("params", "backend", "status", "message", "pair_key", "record", "median_s", "ci_low_s", "ci_high_s",
               "cv", "n_samples", "gflops", "gbps", "items_per_s", "item_unit")  # what a table row reads


def workload_table(ids: Ids, wl: str, rows: pd.DataFrame, sp: dict[str, Speedup], with_speedup: bool = True,
                   headline: dict[str, tuple[Speedup, str]] | None = None) -> Table:
    keys = varying_params(rows) or [k for k in (rows["params"].iloc[0] or {})][:4]
    variants = [_variant_text(rec) for rec in rows["record"]]
    # share of the measured ceiling (the runner adds it when the machine was calibrated)
    pct_keys = [k for k in PCT_NAMES if any(k in rec.throughput for rec in rows["record"])]
    cols = keys + ["backend", "status", "median", "95% CI of median", "CV", "samples", "GFLOP/s", "GB/s"] + [
        PCT_NAMES[k] for k in pct_keys] + ["items/s"] + (
        ["speedup (CPU/GPU)", "speedup 95% CI"] if with_speedup else [])
    heads = {k: v for k, v in (headline or {}).items() if k in set(rows["pair_key"])}
    if heads:
        cols.append(HEADLINE)
    cols.append("validation (rel. error)")
    if any(variants):
        cols.append("variant")
    numeric = {len(keys) + i for i, c in enumerate(cols[len(keys):]) if c not in TEXT_COLUMNS}
    out: list[list[Cell]] = []
    with_variant = any(variants)
    # plain dicts of the columns the cells read: a pandas row per case costs more than the cells themselves
    used = [c for c in (*ROW_COLUMNS, *pct_keys) if c in rows.columns]
    for r, variant in zip(rows[used].to_dict("records"), variants, strict=True):
        p = r["params"] or {}
        cells = [Cell(param_text(p.get(k, "")), num(p.get(k)) if finite(p.get(k)) else param_text(p.get(k, "")),
                      "nowrap") for k in keys]
        cells.append(cell_backend(str(r["backend"])))
        cells.append(Cell(str(r["status"]), str(r["status"]), f"st-{r['status']}", str(r["message"] or "")))
        cells += _timing_cells(r) + _rate_cells(r, pct_keys)
        if with_speedup:
            cells += _speedup_cells(sp.get(str(r["pair_key"])) if r["backend"] == "gpu" else None)
        if heads:
            h = heads.get(str(r["pair_key"])) if r["backend"] == "gpu" else None
            cells.append(_speedup_cells(h[0])[0] if h else Cell(DASH, None))
            if h:
                cells[-1].title = f"over CPU {h[1]}, the fastest CPU engine measured for this case"
        cells.append(_validation_cell(r["record"]))
        if with_variant:
            cells.append(Cell(variant, variant, "variant"))
        out.append(cells)
    return Table(id=ids("table", wl), columns=cols, rows=out, numeric=numeric)


def _timing_cells(r: Any) -> list[Cell]:
    """median, its CI, CV and the sample count: dashes unless the case ran and validated."""
    ok = r["status"] == "ok"
    med = num(r.get("median_s")) if ok else None
    lo, hi = (num(r.get("ci_low_s")), num(r.get("ci_high_s"))) if ok else (None, None)
    cv = num(r.get("cv")) if ok else None
    n = num(r.get("n_samples")) if ok else None
    if n is not None and n < MIN_CI_SAMPLES:  # [min, max] of a few samples is no interval ("192 ms – 192 ms")
        ci = Cell("too few samples", None, "nowrap")
    else:
        ci = Cell(fmt_range(lo, hi, fmt_time), hi - lo if lo is not None and hi is not None else None)
    return [Cell(fmt_time(med), med), ci,
            Cell(fmt_pct(cv), cv), Cell(f"{int(n)}" if n is not None else DASH, n)]


def _rate_cells(r: Any, pct_keys: list[str]) -> list[Cell]:
    ok = r["status"] == "ok"
    rec: CaseRecord = r["record"]
    cells = []
    for col in ("gflops", "gbps", *pct_keys, "items_per_s"):
        v = (num(r.get(col)) if col in r else num(rec.throughput.get(col))) if ok else None
        if col == "items_per_s":
            cells.append(Cell(fmt_rate(v, f"{r.get('item_unit') or 'items'}/s"), v))
        elif col in pct_keys:
            cells.append(Cell(f"{v:.0f}%" if v is not None else DASH, v, "bad" if v is not None and v > 110 else ""))
        else:
            cells.append(Cell(fmt_num(v), v))
    return cells


def _speedup_cells(s: Speedup | None) -> list[Cell]:
    if s is None:
        return [Cell(DASH, None), Cell(DASH, None)]
    return [Cell(fmt_x(s.speedup), s.speedup, "good" if s.speedup > 1 else "bad"),
            Cell(fmt_range(s.ci_low, s.ci_high, fmt_x), s.ci_low, title=f"CI method: {s.method}")]


def _validation_cell(rec: CaseRecord) -> Cell:
    v = rec.validation or {}
    if rec.status == "skipped":
        return Cell("skipped", None, "st-skipped")
    if rec.status == "error":
        return Cell("error", None, "st-error", rec.message)
    if not v:
        return Cell("not checked", None, "muted")
    err, tol = v.get("rel_error"), v.get("tolerance")
    tip = f"relative error {fmt_num(err)} against {v.get('reference') or 'reference'}, tolerance {fmt_num(tol)}"
    if v.get("message"):
        tip += f": {v['message']}"
    return Cell(("✓ " if v.get("passed") else "✗ ") + fmt_num(err), err if finite(err) else None,
                "st-ok nowrap" if v.get("passed") else "st-failed nowrap", tip)


def _variant_text(rec: CaseRecord) -> str:
    return ", ".join(f"{k}={param_text(x)}" for k, x in (rec.variant or {}).items())


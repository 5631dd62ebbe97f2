"""Engines side by side (onnx cases): per model, a table by batch size — images/s of every engine on every
backend, the GPU's speedup over the fastest CPU engine measured for the case (the headline), each engine's
own GPU-vs-CPU speedup, accelbench/onnxruntime per backend — and a chart of images/s against batch size,
one line per engine and backend. Absent when the run has no onnx cases.

The numbers are the report view's (``RunView.engines``: accelbench.onnx.engines, built once; every ratio
from compare.speedups). A side that was not measured (no GPU, onnxruntime-gpu not installed, an error)
shows a dash with the reason in its tooltip, never a number.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import plotly.graph_objects as go

from ...compare import Speedup
from ...onnx.engines import RULE, EngineCase, EngineTable
from ..format import DASH, fmt_range, fmt_rate, fmt_x, param_text
from ..view import RunView
from .figures import BACKEND_COLOR, decade_ticks, esc, figure, layout, log_worthy, unity_line
from .model import Block, Cell, Chart, Ids, Table
from .workloads import ci_bars, has_ci

ENGINE_DASH = {"accelbench": "solid", "onnxruntime": "dash"}
ENGINE_SYMBOL = {"accelbench": "circle", "onnxruntime": "square"}


def engines_blocks(ids: Ids, rv: RunView, metric: str = "median") -> tuple[list[Block], list[Chart]]:
    """The headline block (the rule; a chart of every case's headline when a GPU case ran), then one block
    per model and knobs of the run's onnx cases; none when it has no onnx cases."""
    if not rv.engines:
        return [], []
    head = Block(id=ids("engines", "headline"), title="GPU speedup over the fastest CPU engine",
                 notes=[_sentence(RULE.format(metric=metric)) + ". Each engine's own GPU-vs-CPU speedup and "
                        "accelbench/onnxruntime (images/s) stand beside it in the tables; speedups and ratios "
                        "are accelbench.compare's, with their 95% CI in the tooltips."])
    blocks = [head]
    charts: list[Chart] = []
    ch = _headline_chart(ids, rv.engines)
    if ch is None:
        head.notes.append("No onnx case was measured on the GPU and the CPU, so there is no headline to plot.")
    else:
        head.charts.append(ch)
        charts.append(ch)
    stated: set[str] = set()  # reasons already given above (no GPU: every model's GPU sides)
    for t in rv.engines:
        b = Block(id=ids("engines", t.title), title=t.title, subtitle=t.subtitle)
        b.notes += _absent_notes(t, stated)
        ch = _chart(ids, t)
        if ch is not None:
            b.charts.append(ch)
            charts.append(ch)
        else:
            b.notes.append("No line to draw: no engine measured two batch sizes on one backend; the table has "
                           "the numbers.")
        b.table = _table(ids, t)
        blocks.append(b)
    return blocks, charts


def _sentence(s: str) -> str:
    return s[:1].upper() + s[1:]


def _headline_chart(ids: Ids, tables: list[EngineTable]) -> Chart | None:
    """A row per case and GPU engine: its headline (filled) and its speedup over its own CPU (open), with
    CI whiskers. None when no GPU case has either."""
    rows = [(t, c, e) for t in tables for c in t.cases for e in t.engines
            if e in c.over_fastest_cpu or e in c.per_engine]
    if not rows:
        return None
    ys = [esc(f"{t.title} batch={param_text(c.batch)} · GPU {e}") for t, c, e in rows]
    traces = []
    for what, filled in (("over the fastest CPU engine (headline)", True), ("over its own CPU engine", False)):
        pts = [(y, c, e, s) for y, (_, c, e) in zip(ys, rows, strict=True)
               if (s := (c.over_fastest_cpu if filled else c.per_engine).get(e)) is not None]
        if not pts:
            continue
        traces.append(go.Scatter(
            mode="markers", name=esc(f"GPU {what}"), x=[p[3].speedup for p in pts], y=[p[0] for p in pts],
            error_x=ci_bars([p[3] for p in pts]), hoverinfo="text",
            marker={"color": BACKEND_COLOR["gpu"] if filled else "#555", "size": 10 if filled else 8,
                    "symbol": "circle" if filled else "circle-open"},
            hovertext=[f"{y}<br>" + esc(f"over CPU {c.fastest_cpu if filled else e}: ") + fmt_x(s.speedup)
                       for y, c, e, s in pts]))
    lay = layout("speedup (CPU time / GPU time, log scale)", "", log_x=True,
                 height=max(240, 80 + 30 * len(rows)), shapes=[unity_line("x")])
    lay.yaxis.update(categoryorder="array", categoryarray=list(reversed(ys)), tickfont={"size": 10})
    lay.showlegend = True
    return Chart(ids("chart-engines", "headline"), "GPU speedup over the fastest CPU engine, per case",
                 figure(traces, lay), "filled: over the fastest CPU engine measured for the case (the headline); "
                 "open: over the same engine's CPU; whiskers: 95% CI")


def _absent_notes(t: EngineTable, stated: set[str]) -> list[str]:
    """One line per reason a side has no number (e.g. every GPU side on a machine without one); a reason
    given for an earlier model is not spelt out again."""
    reasons: dict[str, list[str]] = {}
    for c in t.cases:
        for b in t.backends:
            for e in t.engines:
                s = c.side(b, e)
                if not s.measured and f"{e} {b.upper()}" not in reasons.setdefault(s.reason, []):
                    reasons[s.reason].append(f"{e} {b.upper()}")
    out = []
    for why, who in reasons.items():
        out.append(f"Not measured: {', '.join(who)}: " + ("as above (each dash's tooltip says why)."
                                                          if why in stated else why))
        stated.add(why)
    return out


CellOf = Callable[[EngineCase], Cell]


def _columns(t: EngineTable) -> list[tuple[str, CellOf]]:
    """(column title, the cell of a case) in table order; the backends and engines the table has."""
    cols: list[tuple[str, CellOf]] = [("batch", _batch_cell)]
    cols += [(f"{e} {b.upper()} images/s", partial(_ips_cell, b, e)) for e in t.engines for b in t.backends]
    if "cpu" in t.backends:
        cols.append(("fastest CPU engine", _fastest_cell))
    if "gpu" in t.backends and "cpu" in t.backends:
        cols += [(f"GPU {e} over the fastest CPU", partial(_headline_cell, e)) for e in t.engines]
        cols += [(f"GPU {e} over CPU {e}", partial(_own_cell, e)) for e in t.engines]
    if {"accelbench", "onnxruntime"} <= set(t.engines):
        cols += [(f"accelbench / onnxruntime {b.upper()}", partial(_ratio_cell, b)) for b in t.backends]
    return cols


def _table(ids: Ids, t: EngineTable) -> Table:
    cols = _columns(t)
    text = {i for i, (name, _) in enumerate(cols) if name == "fastest CPU engine"}
    return Table(id=ids("table-engines", t.title), columns=[name for name, _ in cols],
                 rows=[[cell(c) for _, cell in cols] for c in t.cases], numeric=set(range(1, len(cols))) - text)


def _batch_cell(c: EngineCase) -> Cell:
    return Cell(param_text(c.batch), c.batch if isinstance(c.batch, (int, float)) else None, "nowrap")


def _fastest_cell(c: EngineCase) -> Cell:
    return Cell(c.fastest_cpu or DASH, c.fastest_cpu, title="" if c.fastest_cpu else
                "no CPU engine measured for this case")


def _ips_cell(b: str, e: str, c: EngineCase) -> Cell:
    s = c.side(b, e)
    if not s.measured:
        return Cell(DASH, None, "muted", s.reason)
    v = s.items_per_s
    unit = (s.record.work.get("item_unit") if s.record is not None else None) or "images"
    return Cell(fmt_rate(v, f"{unit}/s"), v)


def _headline_cell(e: str, c: EngineCase) -> Cell:
    return _x_cell(c.over_fastest_cpu.get(e), c.headline_reason(e), "headline", f"GPU {e} over CPU {c.fastest_cpu}")


def _own_cell(e: str, c: EngineCase) -> Cell:
    return _x_cell(c.per_engine.get(e), _unmeasured(c, [("gpu", e), ("cpu", e)]), "", f"GPU {e} over CPU {e}")


def _ratio_cell(b: str, c: EngineCase) -> Cell:
    return _x_cell(c.engine_ratio.get(b), _unmeasured(c, [(b, "accelbench"), (b, "onnxruntime")]), "",
                   f"accelbench / onnxruntime images/s on the {b.upper()}", colour=False)


def _x_cell(s: Speedup | None, reason: str, cls: str, what: str, colour: bool = True) -> Cell:
    if s is None:
        return Cell(DASH, None, f"muted {cls}".strip(), reason)
    ci = (f"95% CI {fmt_range(s.ci_low, s.ci_high, fmt_x)} ({s.method})" if has_ci(s)
          else "too few samples for a CI")
    tone = ("good" if s.speedup > 1 else "bad") if colour else ""
    return Cell(fmt_x(s.speedup), s.speedup, f"{tone} {cls}".strip(), f"{what}: {ci}")


def _unmeasured(c: EngineCase, pairs: list[tuple[str, str]]) -> str:
    """Why a ratio of the (backend, engine) ``pairs`` has no number: the first side not measured."""
    for b, e in pairs:
        s = c.side(b, e)
        if not s.measured:
            return f"{e} {b.upper()}: {s.reason}"
    return "no usable timing to pair"


def _chart(ids: Ids, t: EngineTable) -> Chart | None:
    """images/s against batch size, one line per engine and backend that measured two or more sizes; None
    when none did (one batch size: the table says it all)."""
    traces = []
    xs: list[float] = []
    for b in t.backends:
        for e in t.engines:
            pts = [(float(c.batch), c.side(b, e).items_per_s, c) for c in t.cases
                   if isinstance(c.batch, (int, float)) and c.side(b, e).items_per_s is not None]
            if len(pts) < 2:
                continue
            xs += [p[0] for p in pts]
            traces.append(go.Scatter(
                x=[p[0] for p in pts], y=[p[1] for p in pts], name=esc(f"{e} {b.upper()}"), mode="lines+markers",
                line={"color": BACKEND_COLOR.get(b, "#888"), "dash": ENGINE_DASH.get(e, "dot"), "width": 2},
                marker={"size": 8, "symbol": ENGINE_SYMBOL.get(e, "diamond")},
                hovertext=[esc(f"{e} {b.upper()}, batch {p[0]:g}: ") + fmt_rate(p[1], "images/s") for p in pts],
                hoverinfo="text"))
    if not traces:
        return None
    ticks = sorted(set(xs))
    lay = layout("batch size", "images/s (log scale)", log_y=True, log_x=log_worthy(ticks))
    lay.xaxis.update(tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    decade_ticks(lay.yaxis, [y for tr in traces for y in tr.y])
    lay.showlegend = True
    return Chart(ids("chart-engines", t.title), "images/s against batch size, per engine and backend",
                 figure(traces, lay), "solid: accelbench, dashed: onnxruntime; green: GPU, blue: CPU; "
                 "images/s at the median time of one batch")


"""Plotly helpers: colours, the shared layout, figures built from plotly.graph_objects and turned into the
JSON the page embeds, the escaping of user text for plotly, and short case labels for chart axes."""

from __future__ import annotations

import html as _html
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup

from ..format import finite, param_text

BACKEND_COLOR = {"gpu": "#76b900", "cpu": "#1f77b4"}  # NVIDIA green for the GPU, plotly blue for the CPU
VERDICT_COLOR = {"slower": "#d62728", "faster": "#2ca02c", "unchanged": "#7f7f7f", "inconclusive": "#ff9f1c",
                 "new": "#1f77b4", "missing": "#9467bd", "failed": "#8c1c13", "skipped": "#bbbbbb"}
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon", "triangle-down")
# plotly's default qualitative colours (D3 category10), for series that are not a backend
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
FLAT_TICKS = 8  # up to this many cases per chart, tick labels stay horizontal, one parameter per line
# Up to this many cases a chart draws each one (a bar, a box, a point of a line, a row of markers); beyond,
# no one reads them case by case: the chart aggregates (boxes over the cases) or shows the few that matter
# most, and says so with the counts. The tables keep every case.
CASE_CHART_LIMIT = 200
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
GRID = "#e6e6e6"


def num(v: Any) -> float | None:
    return float(v) if finite(v) else None


def esc(s: Any) -> str:
    """Escape a user string for plotly, which parses a few tags (<b>, <a href>, ...) in SVG text and decodes
    &amp; &lt; &gt; back into literal text (it knows no &quot;, and quotes are harmless once no tag can
    open)."""
    return _html.escape(str(s), quote=False)


def span(a: float | None, b: float | None) -> float:
    """a - b for an error bar; 0 when either end is missing or infinite."""
    return float(a - b) if a is not None and b is not None and finite(a) and finite(b) else 0.0


def layout(title_x: str = "", title_y: str = "", log_y: bool = False, log_x: bool = False,
           **extra: Any) -> go.Layout:
    """The layout every chart starts from: white plot, light grid, legend above, axes titled."""
    def axis(title: str, log: bool) -> dict[str, Any]:
        a: dict[str, Any] = {"title": {"text": title}, "automargin": True, "gridcolor": GRID, "zerolinecolor": GRID,
                             "type": "log" if log else "-"}
        if log:  # unlabelled minor grid lines at 2..9 between labelled ticks ("2, 100, 5, 2, 10" read as noise)
            a["minor"] = {"dtick": "D1", "showgrid": True, "gridcolor": GRID}
        return a

    lay = go.Layout(margin={"l": 64, "r": 16, "t": 16, "b": 64}, height=360, font={"family": FONT, "size": 12},
                    paper_bgcolor="white", plot_bgcolor="white", xaxis=axis(title_x, log_x),
                    yaxis=axis(title_y, log_y), hoverlabel={"align": "left"},
                    legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    if title_x == "case":  # categorical case axis: the tick labels (one parameter per line) say what it is
        lay.xaxis.title.text = ""
        lay.xaxis.tickfont.size = 11
    lay.update(extra)
    return lay


def flat_ticks(lay: go.Layout, n: int) -> go.Layout:
    """Horizontal multi-line tick labels while they fit; plotly rotates them itself beyond that."""
    if n <= FLAT_TICKS:
        lay.xaxis.tickangle = 0
    return lay


def hbar_height(n: int) -> int:
    return max(200, 110 + 34 * n)


def unity_line(axis: str) -> dict[str, Any]:
    """A dotted line at ratio 1 across the plot (``axis``: the value axis, "x" or "y")."""
    other = "y" if axis == "x" else "x"
    return {"type": "line", f"{other}ref": "paper", f"{other}0": 0, f"{other}1": 1, f"{axis}0": 1, f"{axis}1": 1,
            "line": {"color": "#999", "dash": "dot"}}


def figure(traces: Sequence[go.Trace] | Sequence[Any], lay: go.Layout) -> dict[str, Any]:
    """The figure as the JSON the page embeds (no template: the layout above carries the styling)."""
    fig = go.Figure(data=list(traces), layout=lay)
    out: dict[str, Any] = clean(fig.to_plotly_json())
    out.get("layout", {}).pop("template", None)
    return out


def clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars/arrays and tuples -> Python lists and numbers."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [clean(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


_JS_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(obj: Any, cleaned: bool = False) -> Markup:
    """JSON that is safe inside a <script> element: no ``</script>``, ``<!--`` or line separators.
    ``cleaned``: ``obj`` holds only JSON types already (a table's data), so :func:`clean`'s walk is skipped
    (``allow_nan=False`` still refuses a NaN)."""
    s = json.dumps(obj if cleaned else clean(obj), allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return Markup(re.sub("[<>&\u2028\u2029]", lambda m: _JS_ESCAPES[m.group(0)], s))


# ---------------------------------------------------------------- case labels


def varying_params(rows: pd.DataFrame) -> list[str]:
    """Parameters that take more than one value among ``rows`` (the axes of this workload's sweep)."""
    keys: list[str] = []
    for p in rows["params"]:
        for k in p or {}:
            if k not in keys:
                keys.append(k)
    return [k for k in keys if len({param_text((p or {}).get(k)) for p in rows["params"]}) > 1]


def case_labels(rows: pd.DataFrame, sep: str = " ") -> dict[Any, str]:
    """Short label per row index: the varying parameters (plus the entry label when entries differ).
    Each part is HTML-escaped for plotly when ``sep`` is "<br>" (one part per line on a chart axis)."""
    keys = varying_params(rows)
    several_heads = len(set(rows["head"].astype(str))) > 1
    out: dict[Any, str] = {}
    for idx, head, params in zip(rows.index, rows["head"], rows["params"], strict=True):
        p = params or {}
        parts = [f"{k}={param_text(p.get(k))}" for k in keys]
        if several_heads:
            parts.insert(0, str(head))
        if not parts:  # a single case: its head and model say what it is; the full name is in the table
            model = p.get("model")
            parts = [str(head)] + ([f"model={param_text(model)}"] if model is not None else [])
        out[idx] = sep.join(esc(p) for p in parts) if sep == "<br>" else sep.join(parts)
    return out


def tick_labels(rows: pd.DataFrame) -> dict[Any, str]:
    """Chart axis labels, escaped for plotly: one parameter per line while the cases fit side by side
    (see flat_ticks), one line each (rotated by plotly) beyond that."""
    if len(set(rows["pair_key"])) <= FLAT_TICKS:
        return case_labels(rows, "<br>")
    return {k: esc(v) for k, v in case_labels(rows).items()}


def short_labels(rows: pd.DataFrame) -> dict[Any, str]:
    """Workload plus its varying parameters, per row: short names for tables and charts spanning several
    workloads (the full name stays in the tooltip)."""
    out: dict[Any, str] = {}
    for wl, g in rows.groupby("workload", sort=False):
        for idx, lab in case_labels(g).items():
            out[idx] = lab if lab.startswith(str(wl)) else f"{wl} {lab}"
    return out


def sweep_axis(rows: pd.DataFrame, prefer: Sequence[str] = ("batch", "batch_size")) -> str | None:
    """The parameter to plot along x: a batch size when the sweep has one, else the numeric parameter
    with the most values (m of a GEMM sweep, n of an elementwise one); None when no numeric one varies."""
    keys = varying_params(rows)
    numeric = [k for k in keys if all(finite((p or {}).get(k)) for p in rows["params"])]
    for k in prefer:
        if k in numeric:
            return k
    return max(numeric, key=lambda k: len({(p or {}).get(k) for p in rows["params"]}), default=None)


def series_names(rows: pd.DataFrame, x: str) -> dict[Any, str]:
    """Per row, the name of its series when ``x`` runs along the axis: the entry label (when entries
    differ) and the other varying parameters, a model named by itself ("mnist-classic, cuda_graph=True")."""
    others = [k for k in varying_params(rows) if k != x and not _follows(rows, x, k)]
    heads = set(rows["head"])
    out: dict[Any, str] = {}
    for idx, r in rows.iterrows():
        p = r["params"] or {}
        parts = [r["label"]] if len(heads) > 1 and isinstance(r["label"], str) and r["label"] else []
        parts += [param_text(p.get(k)) if k == "model" else f"{k}={param_text(p.get(k))}" for k in others]
        out[idx] = ", ".join(parts) or str(p.get("model") or r["workload"])
    return out


def _follows(rows: pd.DataFrame, x: str, k: str) -> bool:
    """Whether parameter ``k`` moves with ``x`` one to one (n and k of a square GEMM sweep over m): then it
    names no series of its own."""
    pairs = {(param_text((p or {}).get(x)), param_text((p or {}).get(k))) for p in rows["params"]}
    return len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def sweep_title(x: str) -> str:
    return "batch size" if x in ("batch", "batch_size") else x


def log_worthy(values: Sequence[float]) -> bool:
    """A log axis when the values span a factor of 8 or more (a sweep of sizes), linear otherwise."""
    v = [float(x) for x in values if finite(x) and x > 0]
    return bool(v) and max(v) / min(v) >= 8


def decade_ticks(axis: Any, values: Sequence[float]) -> None:
    """On a log axis spanning a decade or more, label the powers of ten only (plotly's 2 and 5 between
    them crowd a small chart)."""
    v = [float(x) for x in values if finite(x) and x > 0]
    if v and max(v) / min(v) >= 10:
        axis.dtick = 1


# ---------------------------------------------------------------- aggregates of many cases


def box_stats(values: Sequence[float]) -> dict[str, float]:
    """A box from precomputed statistics (plotly draws it without the values): quartiles and median, the
    whiskers at the smallest and the largest value, the count in ``n``."""
    v = np.asarray([float(x) for x in values if finite(x)], dtype=float)
    q1, med, q3 = (float(q) for q in np.quantile(v, [0.25, 0.5, 0.75]))
    return {"q1": q1, "median": med, "q3": q3, "lowerfence": float(v.min()), "upperfence": float(v.max()),
            "n": int(len(v))}


def aggregate_box(name: str, color: str, groups: Sequence[tuple[str, Sequence[float]]], unit: str = "") -> go.Box:
    """One box per group (x category) of many cases' values, drawn from precomputed statistics: a chart of
    thousands of cases stays a few numbers per group in the page."""
    stats = [(x, box_stats(v)) for x, v in groups if any(finite(e) for e in v)]

    def col(k: str) -> list[float]:
        return [st[k] for _, st in stats]

    hover = [f"{esc(x)}: {st['n']} cases<br>median {st['median']:.3g}{unit}, quartiles {st['q1']:.3g}{unit} – "
             f"{st['q3']:.3g}{unit}<br>range {st['lowerfence']:.3g}{unit} – {st['upperfence']:.3g}{unit}"
             for x, st in stats]
    return go.Box(name=esc(name), x=[esc(x) for x, _ in stats], q1=col("q1"), median=col("median"), q3=col("q3"),
                  lowerfence=col("lowerfence"), upperfence=col("upperfence"), boxpoints=False,
                  marker={"color": color}, line={"width": 1.2}, hovertext=hover, hoverinfo="text")


def group_by_axis(rows: pd.DataFrame, values: Sequence[float], max_groups: int = 40
                  ) -> list[tuple[str, list[float]]]:
    """``values`` (one per row) grouped by a numeric parameter of the sweep that takes at most
    ``max_groups`` values (a batch size if there is one, else the one with most values: a box per size, in
    order), else one group of all of them."""
    params = list(rows["params"])
    numeric = [k for k in varying_params(rows) if all(finite((p or {}).get(k)) for p in params)]
    counts = {k: len({float((p or {})[k]) for p in params}) for k in numeric}
    fit = [k for k in numeric if counts[k] <= max_groups]
    batch = [k for k in ("batch", "batch_size") if k in fit]
    x: str | None = batch[0] if batch else max(fit, key=counts.__getitem__, default=None)
    if x is None:
        return [("all cases", [float(v) for v in values])]
    by: dict[float, list[float]] = {}
    for p, v in zip(params, values, strict=True):
        by.setdefault(float((p or {})[x]), []).append(float(v))
    return [(f"{sweep_title(x)}={xv:g}", by[xv]) for xv in sorted(by)]

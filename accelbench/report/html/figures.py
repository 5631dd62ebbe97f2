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


def script_json(obj: Any) -> Markup:
    """JSON that is safe inside a <script> element: no ``</script>``, ``<!--`` or line separators."""
    s = json.dumps(clean(obj), allow_nan=False, separators=(",", ":"), ensure_ascii=False)
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
    heads = {idx: str(r["head"]) for idx, r in rows.iterrows()}
    out: dict[Any, str] = {}
    for idx, r in rows.iterrows():
        parts = [f"{k}={param_text((r['params'] or {}).get(k))}" for k in keys]
        if len(set(heads.values())) > 1:
            parts.insert(0, heads[idx])
        if not parts:  # a single case: its head and model say what it is; the full name is in the table
            model = (r["params"] or {}).get("model")
            parts = [heads[idx]] + ([f"model={param_text(model)}"] if model is not None else [])
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

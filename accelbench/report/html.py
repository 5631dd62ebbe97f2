"""Self-contained HTML report of one or more runs: `accelbench report RUN [RUN ...] -o reports/NAME.html`.

A thin layer over the DataFrames of :func:`accelbench.results.load`: this module turns rows into view
models (tables of cells, plotly figure dicts) and one jinja2 template lays them out. The page carries
plotly.js, its CSS and its few lines of JavaScript inline, so it opens from a CI artifact or an e-mail
with no network.

Escaping, because suite names, parameters and error messages are user-supplied:
  * HTML: jinja autoescape on every template variable (never ``|safe`` on data).
  * Figures: embedded as one JSON blob in ``<script type="application/json">``; ``<``, ``>``, ``&`` and
    U+2028/9 are written as ``\\uXXXX`` escapes, so no string can close the script element.
  * Plotly renders a few HTML-like tags inside SVG text (``<b>``, ``<a href>``...); every user string put
    into a figure is HTML-escaped first, which plotly decodes back to literal text.

Which run is which: the LAST run given is the one the detail sections describe (GPU vs CPU, roofline,
distributions, models); with two or more runs each earlier run is compared against it, the earlier one
as the base (``report BASE NEW`` reads like ``compare BASE NEW``).
"""

from __future__ import annotations

import html as _html
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from .. import __version__
from ..errors import UsageError
from ..measure.stats import MIN_CI_SAMPLES
from ..results import CaseRecord, RunRecord, atomic_write_text, load

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

BACKEND_COLOR = {"gpu": "#76b900", "cpu": "#1f77b4"}  # NVIDIA green for the GPU, plotly blue for the CPU
VERDICT_COLOR = {"slower": "#d62728", "faster": "#2ca02c", "unchanged": "#7f7f7f", "inconclusive": "#ff9f1c",
                 "new": "#1f77b4", "missing": "#9467bd", "failed": "#8c1c13",
                 "skipped": "#bbbbbb"}
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon", "triangle-down")
# plotly's default qualitative colours (D3 category10), for series that are not a backend
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
MAX_POINTS = 1000
RATIO_TICKS = [0.25, 0.5, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100]
MAX_CHART_CASES = 200  # per-case sample charts beyond this many cases of one workload become a note
FLAT_TICKS = 8  # up to this many cases per chart, tick labels stay horizontal, one parameter per line  # samples drawn per box; beyond this an evenly spaced quantile subsample (shape kept)


# ---------------------------------------------------------------- view models


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # numeric (or text) sort key; None sorts last
    cls: str = ""  # CSS class (status / verdict colours, right alignment)
    title: str = ""  # tooltip


@dataclass
class Table:
    id: str
    columns: list[str]
    rows: list[list[Cell]]
    numeric: set[int] = field(default_factory=set)  # right-aligned column indices

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Chart:
    id: str
    title: str
    figure: dict[str, Any]
    note: str = ""


@dataclass
class Block:
    """A titled group: charts, notes (things absent, and why) and a table."""

    id: str
    title: str
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: Table | None = None
    subtitle: str = ""


@dataclass
class RunView:
    label: str  # "run 1" ...
    source: str
    run_id: str
    suite: str
    status: str
    facts: list[tuple[str, str]]
    counts: dict[str, int]
    warnings: list[str]


@dataclass
class Page:
    title: str
    generated: str
    runs: list[RunView]
    banners: list[str]
    speedup: list[Block]
    roofline: Block
    distributions: list[Block]
    comparisons: list[Block]
    models: list[Block]
    counters: Block
    problems: Block
    charts: list[Chart]


# ---------------------------------------------------------------- small helpers


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any) -> float | None:
    return float(v) if _finite(v) else None


def esc(s: Any) -> str:
    """Escape a user string for plotly, which parses a few tags (<b>, <a href>, ...) in SVG text and decodes
    &amp; &lt; &gt; back into literal text (it knows no &quot;, and quotes are harmless once no tag can
    open)."""
    return _html.escape(str(s), quote=False)


def time_unit(values: Iterable[float | None]) -> tuple[str, float]:
    """A unit that makes the typical (median) of ``values`` (seconds) read as 1..1000."""
    v = [x for x in values if x is not None and _finite(x) and x > 0]
    if not v:
        return "s", 1.0
    m = float(np.median(v))
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if m >= scale:
            return unit, scale
    return "ns", 1e-9


def fmt_time(s: float | None) -> str:
    if s is None or not _finite(s):
        return "–"
    unit, scale = next(((u, f) for u, f in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)) if s >= f), ("ns", 1e-9))
    return f"{s / scale:.3g} {unit}"  # (time_unit's rule for one value, without a median per call)


def fmt_num(v: float | None, digits: int = 3) -> str:
    if v is None or not _finite(v):
        return "–"
    a = abs(v)
    if a != 0 and (a >= 1e6 or a < 1e-3):
        return f"{v:.{digits}g}"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_si(v: float | None) -> str:
    """3 significant digits with an SI prefix: 2.8e8 -> "280 M"."""
    if v is None or not _finite(v):
        return "–"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}"
    return f"{v:.3g} "


def fmt_x(v: float | None) -> str:
    if v is None or not _finite(v):
        return "–"
    return f"{v:.3g}×"


def _param_text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
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
    s = json.dumps(_clean(obj), allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return Markup(re.sub("[<>&\u2028\u2029]", lambda m: _JS_ESCAPES[m.group(0)], s))


def slug(s: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", s).strip("-").lower() or "x"


class _Ids:
    """Unique element ids derived from names (names may repeat or be hostile)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, *parts: str) -> str:
        base = "-".join(slug(p) for p in parts)[:60]
        n = self.seen.get(base, 0)
        self.seen[base] = n + 1
        return base if n == 0 else f"{base}-{n}"


def _layout(title_x: str = "", title_y: str = "", log_y: bool = False, log_x: bool = False,
            **extra: Any) -> dict[str, Any]:
    lay: dict[str, Any] = {
        "margin": {"l": 64, "r": 16, "t": 16, "b": 64},
        "height": 360,
        "template": "plotly_white",
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12},
        "xaxis": {"title": {"text": title_x}, "automargin": True},
        "yaxis": {"title": {"text": title_y}, "automargin": True},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "hoverlabel": {"align": "left"},
    }
    if title_x == "case":
        # categorical case axis: the tick labels (one parameter per line) say what each case is
        lay["xaxis"]["title"] = {"text": ""}
        lay["xaxis"]["tickfont"] = {"size": 11}
    # log axes: label the decades only ("0.1, 1, 10"), unlabelled minor grid lines at 2..9 between them;
    # plotly's default labelled the 2s and 5s too and read "2, 100, 5, 2, 10, 5, 2, 1"
    log_axis = {"type": "log", "dtick": 1, "minor": {"dtick": "D1", "showgrid": True}}
    if log_y:
        lay["yaxis"].update(log_axis)
    if log_x:
        lay["xaxis"].update(log_axis)
    lay.update(extra)
    return lay


def _flat_ticks(lay: dict[str, Any], n: int) -> dict[str, Any]:
    """Horizontal multi-line tick labels while they fit; plotly rotates them itself beyond that."""
    if n <= FLAT_TICKS:
        lay["xaxis"]["tickangle"] = 0
    return lay


# ---------------------------------------------------------------- case labels


def entry_label(suite: str, workload: str, case_id: str) -> str | None:
    """The suite entry's label, read from the case id ``suite/workload[label]/{params}@backend`` by its
    known prefix (a suite name or label may itself hold '/', ' ' or '[')."""
    prefix = f"{suite}/{workload}"
    if not case_id.startswith(prefix + "["):
        return None
    rest = case_id[len(prefix) + 1:]
    end = rest.rfind("]/{")
    return rest[:end] if end >= 0 else None


def _head(r: Any) -> str:
    lab = entry_label(str(r["suite"]), str(r["workload"]), str(r["case_id"]))
    return f"{r['workload']}[{lab}]" if lab else str(r["workload"])


def varying_params(rows: pd.DataFrame) -> list[str]:
    """Parameters that take more than one value among ``rows`` (the axes of this workload's sweep)."""
    keys: list[str] = []
    for p in rows["params"]:
        for k in p or {}:
            if k not in keys:
                keys.append(k)
    return [k for k in keys if len({_param_text((p or {}).get(k)) for p in rows["params"]}) > 1]


def case_labels(rows: pd.DataFrame, sep: str = " ") -> dict[Any, str]:
    """Short label per row index: the varying parameters (plus the entry label when entries differ).
    Each part is HTML-escaped for plotly when ``sep`` is "<br>" (one part per line on a chart axis)."""
    keys = varying_params(rows)
    heads = {idx: _head(r) for idx, r in rows.iterrows()}
    out: dict[Any, str] = {}
    for idx, r in rows.iterrows():
        parts = [f"{k}={_param_text((r['params'] or {}).get(k))}" for k in keys]
        if len(set(heads.values())) > 1:
            parts.insert(0, heads[idx])
        if not parts:  # a single case: its head and model say what it is; the full name is in the table
            model = (r["params"] or {}).get("model")
            parts = [heads[idx]] + ([f"model={_param_text(model)}"] if model is not None else [])
        out[idx] = sep.join(esc(p) for p in parts) if sep == "<br>" else sep.join(parts)
    return out


def tick_labels(rows: pd.DataFrame) -> dict[Any, str]:
    """Chart axis labels, escaped for plotly: one parameter per line while the cases fit side by side
    (see _flat_ticks), one line each (rotated by plotly) beyond that."""
    n = len({pair_key(str(c)) for c in rows["case_id"]})
    if n <= FLAT_TICKS:
        return case_labels(rows, "<br>")
    return {k: esc(v) for k, v in case_labels(rows).items()}


def pair_key(case_id: str) -> str:
    return case_id.rsplit("@", 1)[0]


# ---------------------------------------------------------------- compare's logic (plugs in)


@dataclass
class Ratio:
    value: float
    low: float
    high: float
    method: str


def _loaded(df: pd.DataFrame, source: str) -> Any:
    from ..compare import LoadedRun

    run = RunRecord.model_validate(df.attrs["run"])
    cases = [CaseRecord.model_validate(r) for r in df["record"]] if "record" in df else []
    return LoadedRun(run=run, cases=cases, source=source)


def gpu_cpu_speedups(df: pd.DataFrame, source: str = "") -> dict[str, Ratio]:
    """CPU time / GPU time with its CI per case identity (without the backend), from compare.speedups."""
    from ..compare import speedups

    return {s.key: Ratio(s.speedup, s.ci_low, s.ci_high, s.method) for s in speedups(_loaded(df, source))}


def compare_frames(base: pd.DataFrame, new: pd.DataFrame, base_src: str, new_src: str) -> Any:
    """compare.compare_runs on two loaded frames: verdicts, ratio CIs, machine differences."""
    from ..compare import compare_runs

    return compare_runs(_loaded(base, base_src), _loaded(new, new_src))


# ---------------------------------------------------------------- header


def _env_facts(run: dict[str, Any]) -> list[tuple[str, str]]:
    env = run.get("environment") or {}
    facts: list[tuple[str, str]] = []
    g = env.get("gpu") or {}
    if g.get("available"):
        mem = _num(g.get("memory_total_bytes"))
        facts.append(("GPU", f"{g.get('name')} (cc {g.get('compute_capability')}, {g.get('multiprocessors')} SMs"
                             + (f", {mem / 2**30:.0f} GiB" if mem is not None else "") + ")"))
        facts.append(("driver / CUDA", f"{g.get('driver_version', '?')} / runtime {g.get('cuda_runtime_version')}"
                                       f", driver API {g.get('cuda_driver_version')}"))
        if g.get("cupy_version"):
            facts.append(("CuPy", str(g["cupy_version"])))
    elif g:
        facts.append(("GPU", f"none usable: {g.get('reason', 'unknown')}"))
    else:
        facts.append(("GPU", "not recorded"))
    cpu = env.get("cpu") or {}
    if cpu:
        facts.append(("CPU", f"{cpu.get('model')} ({cpu.get('physical_cores')} cores, "
                             f"{cpu.get('logical_cores')} threads, {cpu.get('arch')})"))
    for b in env.get("blas") or []:
        if "error" in b:
            facts.append(("BLAS", str(b["error"])))
        else:
            facts.append(("BLAS", f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads, "
                                  f"{b.get('threading_layer')})"))
    if _finite(env.get("memory_total_bytes")):
        facts.append(("memory", f"{env['memory_total_bytes'] / 2**30:.1f} GiB"))
    if env.get("platform"):
        facts.append(("OS", str(env["platform"])))
    py = env.get("python") or {}
    if py:
        facts.append(("Python", f"{py.get('version')} ({py.get('implementation')})"))
    pk = env.get("packages") or {}
    if pk:
        facts.append(("packages", ", ".join(f"{k} {v}" for k, v in pk.items())))
    if env.get("threads_env"):
        facts.append(("thread settings", ", ".join(f"{k}={v}" for k, v in env["threads_env"].items())))
    facts.append(("accelbench", str(run.get("accelbench_version") or env.get("accelbench_version") or "?")))
    git = run.get("git") or {}
    if git.get("commit"):
        facts.append(("commit", f"{str(git['commit'])[:12]}{' (dirty)' if git.get('dirty') else ''}"))
    if run.get("argv"):
        facts.append(("command", " ".join(str(a) for a in run["argv"])))
    return facts


def run_view(i: int, df: pd.DataFrame, source: str) -> RunView:
    run = df.attrs.get("run") or {}
    counts = {k: int((df["status"] == k).sum()) for k in ("ok", "failed", "error", "skipped")} if len(df) else \
        {k: 0 for k in ("ok", "failed", "error", "skipped")}
    facts = [("run id", str(run.get("run_id"))), ("suite", str(run.get("suite"))),
             ("started", str(run.get("started_at"))), ("finished", str(run.get("finished_at") or "–"))]
    if run.get("description"):
        facts.insert(2, ("description", str(run["description"])))
    warnings = []
    if run.get("status") != "finished":
        warnings.append(f"run status is {run.get('status')!s}: the run did not finish; the cases it finished "
                        f"are shown")
    if (run.get("options") or {}).get("quick"):
        warnings.append("smoke run (--quick): few samples, short windows; numbers are indicative")
    return RunView(label=f"run {i + 1}", source=source, run_id=str(run.get("run_id")), suite=str(run.get("suite")),
                   status=str(run.get("status")), facts=facts + _env_facts(run), counts=counts, warnings=warnings)


# ---------------------------------------------------------------- GPU vs CPU per workload


def _validation_cell(rec: dict[str, Any], status: str) -> Cell:
    v = rec.get("validation") or {}
    if status == "skipped":
        return Cell("skipped", None, "st-skipped")
    if status == "error":
        return Cell("error", None, "st-error", str(rec.get("message", "")))
    if not v:
        return Cell("not checked", None, "muted")
    err, tol = v.get("rel_error"), v.get("tolerance")
    ref = v.get("reference") or "reference"
    tip = f"relative error {fmt_num(err)} against {ref}, tolerance {fmt_num(tol)}"
    if v.get("message"):
        tip += f": {v['message']}"
    return Cell(("✓ " if v.get("passed") else "✗ ") + fmt_num(err), err if _finite(err) else None,
                "st-ok nowrap" if v.get("passed") else "st-failed nowrap", tip)


def _ci_text(lo: float | None, hi: float | None, fmt: Any) -> str:
    if lo is None or hi is None or not _finite(lo) or not _finite(hi):
        return "–"
    return f"{fmt(lo)} – {fmt(hi)}"


def workload_table(ids: _Ids, wl: str, rows: pd.DataFrame, sp: dict[str, Ratio], with_speedup: bool = True
                   ) -> Table:
    keys = varying_params(rows) or [k for k in (rows["params"].iloc[0] or {})][:4]
    variants = [_variant_text(rec) for rec in rows["record"]]
    # share of the measured ceiling (the runner adds it when the machine was calibrated)
    pct_keys = [k for k in ("flops_percent_of_measured", "bw_percent_of_measured")
                if any(k in (rec.get("throughput") or {}) for rec in rows["record"])]
    pct_names = {"flops_percent_of_measured": "% of peak GFLOP/s", "bw_percent_of_measured": "% of peak GB/s"}
    cols = keys + ["backend", "status", "median", "95% CI of median", "CV", "samples", "GFLOP/s", "GB/s"] + [
        pct_names[k] for k in pct_keys] + ["items/s"] + (
        ["speedup (CPU/GPU)", "speedup 95% CI"] if with_speedup else []) + ["validation (rel. error)"]
    if any(variants):
        cols.append("variant")
    k0 = len(keys)
    numeric = {k0 + i for i, c in enumerate(cols[k0:]) if c not in ("backend", "status", "validation (rel. error)",
                                                                   "variant")}
    out: list[list[Cell]] = []
    for (_, r), variant in zip(rows.iterrows(), variants, strict=True):
        rec = r["record"]
        ok = r["status"] == "ok"
        p = r["params"] or {}
        cells = [Cell(_param_text(p.get(k, "")), _num(p.get(k)) if _finite(p.get(k)) else _param_text(p.get(k, "")),
                      "nowrap") for k in keys]
        cells.append(Cell(str(r["backend"]), str(r["backend"]), f"be-{r['backend']}"))
        cells.append(Cell(str(r["status"]), str(r["status"]), f"st-{r['status']}", str(r["message"] or "")))
        med = _num(r.get("median_s")) if ok else None
        cells.append(Cell(fmt_time(med), med))
        lo, hi = (_num(r.get("ci_low_s")), _num(r.get("ci_high_s"))) if ok else (None, None)
        n = _num(r.get("n_samples")) if ok else None
        if n is not None and n < MIN_CI_SAMPLES:  # [min, max] of a few samples is no interval ("192 ms – 192 ms")
            cells.append(Cell("too few samples", None, "nowrap"))
        else:
            cells.append(Cell(_ci_text(lo, hi, fmt_time), hi - lo if lo is not None and hi is not None else None))
        cv = _num(r.get("cv")) if ok else None
        cells.append(Cell(f"{cv * 100:.1f}%" if cv is not None else "–", cv))
        cells.append(Cell(f"{int(n)}" if n is not None else "–", n))
        for col in ("gflops", "gbps", *pct_keys, "items_per_s"):
            v = (_num(r.get(col)) if col in r else _num((rec.get("throughput") or {}).get(col))) if ok else None
            if col == "items_per_s":
                unit = f"{r.get('item_unit') or 'items'}/s"
                cells.append(Cell(f"{fmt_si(v)}{unit}" if v is not None else "–", v))
            elif col in pct_keys:
                cells.append(Cell(f"{v:.0f}%" if v is not None else "–", v,
                                  "bad" if v is not None and v > 110 else ""))
            else:
                cells.append(Cell(fmt_num(v), v))
        if with_speedup:
            s = sp.get(pair_key(str(r["case_id"]))) if r["backend"] == "gpu" else None
            cells.append(Cell(fmt_x(s.value) if s else "–", s.value if s else None,
                              "" if not s else ("good" if s.value > 1 else "bad")))
            cells.append(Cell(_ci_text(s.low, s.high, fmt_x) if s else "–", s.low if s else None,
                              title=f"CI method: {s.method}" if s else ""))
        cells.append(_validation_cell(rec, str(r["status"])))
        if any(variants):
            cells.append(Cell(variant, variant, "variant"))
        out.append(cells)
    return Table(id=ids("table", wl), columns=cols, rows=out, numeric=numeric)


def _variant_text(rec: dict[str, Any]) -> str:
    v = rec.get("variant") or {}
    return ", ".join(f"{k}={_param_text(x)}" for k, x in v.items())


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


def speedup_blocks(ids: _Ids, df: pd.DataFrame, sp: dict[str, Ratio]) -> tuple[list[Block], list[Chart]]:
    blocks: list[Block] = []
    charts: list[Chart] = []
    # When no GPU case ran anywhere the page says so once (a banner); each workload then only counts.
    run_reason = gpu_absent_reason(df)
    for wl, rows in df.groupby("workload", sort=False):
        wl = str(wl)
        ok_rows = rows[rows["status"] == "ok"]
        labels = tick_labels(ok_rows) if len(ok_rows) else {}  # what the charts show varies among these
        fam = str(rows["family"].iloc[0] or "")
        b = Block(id=ids("wl", wl), title=wl, subtitle=fam)
        # speedup bars: one per case measured on both backends
        g = rows[rows["backend"] == "gpu"]
        xs, ys, lo, hi, hover = [], [], [], [], []
        for idx, r in g.iterrows():
            s = sp.get(pair_key(str(r["case_id"])))
            if s is None or not _finite(s.value) or idx not in labels:
                continue
            xs.append(labels[idx])
            ys.append(s.value)
            lo.append(s.value - s.low if _finite(s.low) else 0)
            hi.append(s.high - s.value if _finite(s.high) else 0)
            hover.append(esc(f"{r['name']}<br>") + f"speedup {s.value:.3g}× (95% CI {s.low:.3g}–{s.high:.3g})")
        if xs:
            fig = {"data": [{"type": "bar", "x": xs, "y": ys, "marker": {"color": BACKEND_COLOR["gpu"]},
                             "error_y": {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo,
                                         "color": "#333"},
                             "hovertext": hover, "hoverinfo": "text", "name": "speedup"}],
                   "layout": _flat_ticks(_layout("case", "speedup (CPU time / GPU time)", log_y=True,
                                     shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                                              "line": {"color": "#999", "dash": "dot"}}]), len(xs))}
            ch = Chart(ids("chart-speedup", wl), "GPU speedup over the CPU (log scale)", fig,
                       "bars: CPU time / GPU time (accelbench.compare); whiskers: its 95% CI")
            b.charts.append(ch)
            charts.append(ch)
        else:
            if not run_reason:
                b.notes.append("No GPU-vs-CPU speedup: no case of this workload finished on both backends.")
        # median time per backend with its CI, so a CPU-only run still shows its sweep
        unit, scale = time_unit(rows.loc[rows["status"] == "ok", "median_s"])
        traces = []
        for be, br in rows[rows["status"] == "ok"].groupby("backend", sort=True):
            meds = [float(v) / scale for v in br["median_s"]]
            traces.append({
                "type": "bar", "name": str(be), "x": [labels[i] for i in br.index], "y": meds,
                "marker": {"color": BACKEND_COLOR.get(str(be), "#888")},
                "error_y": {"type": "data", "symmetric": False,
                            "array": [max(0.0, (_num(h) or m * scale) / scale - m) for h, m in
                                      zip(br["ci_high_s"], meds, strict=True)],
                            "arrayminus": [max(0.0, m - (_num(lo_) or m * scale) / scale) for lo_, m in
                                           zip(br["ci_low_s"], meds, strict=True)], "color": "#333"},
                "hovertext": [esc(n) for n in br["name"]], "hoverinfo": "text+y",
            })
        if traces:
            ch = Chart(ids("chart-time", wl), "Median time per operation (log scale)",
                       {"data": traces, "layout": _flat_ticks(_layout("case", f"time per operation ({unit})",
                                                                      log_y=True, barmode="group"), len(labels))},
                       "whiskers: 95% CI of the median (distribution-free)")
            b.charts.append(ch)
            charts.append(ch)
        else:
            b.notes.append("No case of this workload finished, so there is no time to plot (see Problems).")
        # Skipped cases (typically every GPU case on a machine without one) are listed under Problems with
        # their reason; here one line per reason says how many, so the table holds what was measured.
        skipped = rows[rows["status"] == "skipped"]
        for (be, msg), n in skipped.groupby(["backend", "message"], sort=False).size().items():
            why = "no usable GPU (see the banner above)" if run_reason and str(msg) in run_reason else str(msg)
            b.notes.append(f"{n} {be} case(s) skipped: {why}; listed under Problems.")
        shown = rows[rows["status"] != "skipped"]
        if len(shown):
            b.table = workload_table(ids, wl, shown, sp, with_speedup=bool(sp))
        blocks.append(b)
    return blocks, charts


# ---------------------------------------------------------------- roofline


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
    elif _finite(obj):
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
    if not any(c.backend == "gpu" and c.kind == "memory" for c in out) and _finite(g.get("theoretical_bandwidth_gbps")):
        out.append(Ceiling("gpu", "memory", float(g["theoretical_bandwidth_gbps"]),
                           "DRAM (2 × memory clock × bus width)", "theoretical"))
    return out


def roofline_block(ids: _Ids, df: pd.DataFrame) -> tuple[Block, list[Chart]]:
    run = df.attrs.get("run") or {}
    b = Block(id="roofline", title="Roofline",
              subtitle="each case by arithmetic intensity (flop per byte moved) and achieved GFLOP/s")
    ok = df[(df["status"] == "ok")] if len(df) else df
    pts = ok[ok["flops"].map(lambda v: _finite(v) and v > 0) & ok["bytes"].map(lambda v: _finite(v) and v > 0)
             & ok["gflops"].map(_finite)] if len(ok) else ok
    not_placed = len(ok) - len(pts)
    if not_placed:
        b.notes.append(f"{not_placed} finished case(s) have no flop or byte count (copies, model workloads "
                       f"measured in images) and are not placed.")
    if pts.empty:
        b.notes.insert(0, "No finished case has both a flop and a byte count, so there is no roofline.")
        return b, []
    ai = (pts["flops"] / pts["bytes"]).astype(float)
    cs = ceilings(run.get("environment") or {})
    # the roof of each backend: bandwidth lines up to the highest compute ceiling, compute lines from the
    # highest bandwidth line on (each from its own ridge point), so the chart shows min(bw * AI, peak)
    bw_max = {be: max((c.value for c in cs if c.backend == be and c.kind == "memory"), default=None)
              for be in ("gpu", "cpu")}
    pk_max = {be: max((c.value for c in cs if c.backend == be and c.kind == "compute"), default=None)
              for be in ("gpu", "cpu")}
    ridges = [pk / bw for be in ("gpu", "cpu") if (pk := pk_max[be]) and (bw := bw_max[be])]
    xmin = min([float(ai.min())] + ridges) / 4
    xmax = max([float(ai.max())] + ridges) * 4
    traces: list[dict[str, Any]] = []
    symbols = {wl: SYMBOLS[i % len(SYMBOLS)] for i, wl in enumerate(dict.fromkeys(pts["workload"]))}
    for (be, wl), br in pts.groupby(["backend", "workload"], sort=True):
        traces.append({"type": "scatter", "mode": "markers", "name": esc(f"{wl} @{be}"),
                       "x": list((br["flops"] / br["bytes"]).astype(float)), "y": [float(v) for v in br["gflops"]],
                       "marker": {"color": BACKEND_COLOR.get(str(be), "#888"), "size": 9, "opacity": 0.85,
                                  "symbol": symbols[wl], "line": {"width": 0.5, "color": "#222"}},
                       "hovertext": [esc(f"{n} @{be}") + f"<br>{fmt_num(g)} GFLOP/s, {fmt_num(gb)} GB/s"
                                     for n, g, gb in zip(br["name"], br["gflops"], br["gbps"], strict=True)],
                       "hoverinfo": "text"})
    dash = {"measured": "solid", "theoretical": "dash", "datasheet": "dot"}
    line_ys: list[float] = []
    for c in cs:
        col = BACKEND_COLOR.get(c.backend, "#888")
        if c.kind == "memory":
            pk = pk_max[c.backend]
            xs = [xmin, max(xmin, pk / c.value) if pk else xmax]
            ys = [c.value * x for x in xs]
            name = f"{c.backend} {c.label}: {fmt_num(c.value)} GB/s ({c.provenance})"
        else:
            bw = bw_max[c.backend]
            xs = [min(xmax, c.value / bw) if bw else xmin, xmax]
            ys = [c.value, c.value]
            name = f"{c.backend} {c.label}: {fmt_num(c.value)} GFLOP/s ({c.provenance})"
        line_ys += ys
        traces.append({"type": "scatter", "mode": "lines", "name": esc(name), "x": xs, "y": ys,
                       "line": {"color": col, "dash": dash.get(c.provenance, "dashdot"), "width": 1.5},
                       "hoverinfo": "name"})
    above = 0
    for be, x, y in zip(pts["backend"], ai, pts["gflops"], strict=True):
        roof = min([v for v in ((bw_max.get(be) or math.inf) * x, pk_max.get(be) or math.inf)])
        above += bool(math.isfinite(roof) and y > 1.1 * roof)
    if above:
        b.notes.append(f"{above} case(s) lie more than 10% above their measured ceiling: the calibration "
                       f"underestimates this machine (re-run `accelbench calibrate` without --quick on an idle "
                       f"machine).")
    for be in sorted(set(pts["backend"])):
        have = {c.kind for c in cs if c.backend == be}
        missing = [k for k in ("memory", "compute") if k not in have]
        if missing:
            what = " and ".join("bandwidth" if k == "memory" else "compute" for k in missing)
            b.notes.append(f"{be}: {what} ceiling absent (no measured peak in this run; `accelbench calibrate` "
                           f"measures them).")
    g = [float(v) for v in pts["gflops"]]
    # every point and every ceiling in view, but a bandwidth line alone may not stretch the axis endlessly
    ymin = max(min(g + line_ys) / 2, min(g) / 1e3, 1e-9)
    ymax = min(max(g + line_ys) * 2, max(g + [c.value for c in cs if c.kind == "compute"]) * 1e3)
    lay = _layout("arithmetic intensity (flop / byte)", "achieved GFLOP/s", log_y=True, log_x=True, height=440)
    lay["xaxis"]["range"] = [math.log10(xmin), math.log10(xmax)]
    lay["yaxis"]["range"] = [math.log10(ymin), math.log10(ymax)]
    lay["legend"] = {"orientation": "v", "x": 1.01, "y": 1}
    ch = Chart(ids("chart-roofline"), "Achieved GFLOP/s against arithmetic intensity", {"data": traces, "layout": lay},
               "ceilings: solid = measured, dashed = theoretical from device properties, dotted = datasheet")
    b.charts.append(ch)
    return b, [ch]


# ---------------------------------------------------------------- distributions


def _subsample(x: list[float]) -> list[float]:
    if len(x) <= MAX_POINTS:
        return x
    s = np.sort(np.asarray(x))
    return [float(v) for v in s[np.linspace(0, len(s) - 1, MAX_POINTS).round().astype(int)]]


def distribution_blocks(ids: _Ids, df: pd.DataFrame) -> tuple[list[Block], list[Chart]]:
    blocks, charts = [], []
    for wl, rows in df.groupby("workload", sort=False):
        wl = str(wl)
        ok = rows[(rows["status"] == "ok") & rows["samples_s"].map(lambda s: isinstance(s, list) and len(s) > 0)]
        b = Block(id=ids("dist", wl), title=wl)
        if ok.empty:
            b.notes.append("No samples: every case of this workload was skipped (see Problems)."
                           if (rows["status"] == "skipped").all() else
                           "No samples: no case of this workload finished (see Problems).")
            blocks.append(b)
            continue
        if len(ok) > MAX_CHART_CASES:  # thousands of boxes are unreadable and made a 10k-case report take minutes
            b.notes.append(f"{len(ok)} cases: too many to draw one box each (at most {MAX_CHART_CASES}); each case's "
                           "spread is in the table (CI, CV)")
            blocks.append(b)
            continue
        labels = tick_labels(ok)
        traces = []
        capped = False
        # Each sample over its case's median: cases of very different sizes share one axis on which the
        # spread itself (the noise) is what shows. Absolute times are in the hover text and the tables.
        for be, br in ok.groupby("backend", sort=True):
            xs: list[str] = []
            ys: list[float] = []
            hover: list[str] = []
            for idx, r in br.iterrows():
                raw = [float(v) for v in r["samples_s"] if _finite(v) and v > 0]
                med = float(np.median(raw)) if raw else 0.0
                smp = _subsample(raw)
                if not smp or med <= 0:
                    continue
                capped = capped or len(smp) < len(raw)
                xs += [labels[idx]] * len(smp)
                ys += [v / med for v in smp]
                hover += [fmt_time(v) for v in smp]
            traces.append({"type": "box", "name": str(be), "x": xs, "y": ys, "boxpoints": "all", "jitter": 0.4,
                           "pointpos": 0, "marker": {"color": BACKEND_COLOR.get(str(be), "#888"), "size": 3,
                                                     "opacity": 0.6},
                           "line": {"width": 1.2}, "hovertext": hover, "hoverinfo": "text+y"})
        lay = _flat_ticks(_layout("case", "sample ÷ case median (log)", log_y=True, boxmode="group",
                                  height=340), len(labels))
        lay["yaxis"].update(tickmode="array", tickvals=RATIO_TICKS)  # spreads span less than a decade
        note = "each dot is one sample (time per operation) over its case's median; box: quartiles"
        if capped:
            note += f"; cases with more than {MAX_POINTS} samples show {MAX_POINTS} evenly spaced quantiles"
        ch = Chart(ids("chart-dist", wl), "samples per case", {"data": traces, "layout": lay}, note)
        b.charts.append(ch)
        charts.append(ch)
        blocks.append(b)
    return blocks, charts


# ---------------------------------------------------------------- run vs run


def comparison_block(ids: _Ids, base: pd.DataFrame, new: pd.DataFrame, base_src: str, new_src: str,
                     base_label: str, new_label: str) -> tuple[Block, list[Chart]]:
    cmp = compare_frames(base, new, base_src, new_src)
    b = Block(id=ids("cmp", base_label, new_label), title=f"{base_label} → {new_label}",
              subtitle="ratio = new time / base time (> 1: slower); regressions first")
    counts = cmp.counts()
    b.notes.append("verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    if cmp.machine:
        b.notes.append("the runs come from different machines or software: " + "; ".join(
            f"{d.key}: {d.base} → {d.new}" for d in cmp.machine[:8]) + (" …" if len(cmp.machine) > 8 else ""))
    if not cmp.machine_checked:
        b.notes.append("machine fingerprint missing in one run: not checked")
    cols = ["verdict", "case", "backend", "base median", "new median", "ratio", "95% CI", "threshold", "reason"]
    rows: list[list[Cell]] = []
    # regressions first, then what needs a look (compare's verdict order), each group by ratio, largest first
    from ..compare import VERDICTS

    rank = {v: i for i, v in enumerate(VERDICTS)}
    cases = sorted(cmp.cases, key=lambda c: (rank.get(c.verdict, len(rank)),
                                             -(c.ratio if _finite(c.ratio) else -math.inf)))
    for c in cases:
        col = f"vd-{c.verdict}"
        rows.append([
            Cell(c.verdict, c.verdict, col),
            Cell(c.name, c.name),
            Cell(c.backend, c.backend, f"be-{c.backend}"),
            Cell(fmt_time(c.base_value_s), _num(c.base_value_s)),
            Cell(fmt_time(c.new_value_s), _num(c.new_value_s)),
            Cell(f"{c.ratio:.3f}" if _finite(c.ratio) else "–", _num(c.ratio), col),
            Cell(f"{c.ci_low:.3f} – {c.ci_high:.3f}" if _finite(c.ci_low) and _finite(c.ci_high) else "–",
                 _num(c.ci_low), title=f"CI method: {c.ci_method}" if c.ci_method else ""),
            Cell(f"±{c.threshold * 100:g}%" if c.threshold is not None else "–", c.threshold),
            Cell("; ".join([c.reason] + list(c.notes)).strip("; "), None),
        ])
    b.table = Table(id=ids("table-cmp", base_label, new_label), columns=cols, rows=rows, numeric={3, 4, 5, 6, 7})
    measured = [c for c in cases if _finite(c.ratio)]
    if not measured:
        b.notes.append("No case was measured in both runs, so there is no ratio to plot.")
        return b, []
    traces = []
    for verdict in VERDICT_COLOR:
        cs = [c for c in measured if c.verdict == verdict]
        if not cs:
            continue
        traces.append({
            "type": "scatter", "mode": "markers", "name": verdict,
            "x": [c.ratio for c in cs], "y": [esc(f"{c.name} @{c.backend}") for c in cs],
            "error_x": {"type": "data", "symmetric": False,
                        "array": [(c.ci_high - c.ratio) if _finite(c.ci_high) else 0 for c in cs],
                        "arrayminus": [(c.ratio - c.ci_low) if _finite(c.ci_low) else 0 for c in cs]},
            "marker": {"color": VERDICT_COLOR[verdict], "size": 9},
            "hovertext": [esc(f"{c.name} @{c.backend}: ") + f"{c.ratio:.3f} ({esc(c.reason)})" for c in cs],
            "hoverinfo": "text"})
    order = [esc(f"{c.name} @{c.backend}") for c in reversed(measured)]
    lay = _layout("ratio new / base (log scale)", "", log_x=True,
                  height=max(240, 60 + 22 * len(measured)),
                  shapes=[{"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": 1, "x1": 1,
                           "line": {"color": "#999", "dash": "dot"}}])
    lay["yaxis"].update({"categoryorder": "array", "categoryarray": order, "tickfont": {"size": 10}})
    lay["margin"]["l"] = 16
    ch = Chart(ids("chart-cmp", base_label, new_label), "Ratio per case with its 95% CI", {"data": traces,
                                                                                             "layout": lay})
    b.charts.append(ch)
    return b, [ch]


# ---------------------------------------------------------------- models


BATCH_KEYS = ("batch", "batch_size")


def _is_model(rows: pd.DataFrame) -> pd.Series:
    return rows["family"] == "model"


def _layer_profile(metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A per-layer profile in a case's metrics: a list of dicts naming a layer and its times in seconds
    (keys ending in ``_s``). Accepts ``layers`` / ``profile`` / ``per_layer`` lists."""
    for key in ("layers", "per_layer", "profile", "layer_profile"):
        v = metrics.get(key)
        if (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
                and any(k.endswith("_s") and _finite(x.get(k)) for x in v for k in x)):
            return v
    return None


def _metric_value(mt: dict[str, Any], names: tuple[str, ...], like: Any) -> float | None:
    for n in names:
        if _finite(mt.get(n)):
            return float(mt[n])
    return next((float(v) for k, v in mt.items() if like(k) and _finite(v)), None)


def _hbar_height(n: int) -> int:
    return max(200, 110 + 34 * n)


def model_blocks(ids: _Ids, df: pd.DataFrame) -> tuple[list[Block], list[Chart]]:
    if df.empty:
        return [], []
    m = df[_is_model(df)]
    if m.empty:
        return [], []
    blocks: list[Block] = []
    charts: list[Chart] = []
    ok = m[m["status"] == "ok"]

    # images/s against batch size: one chart per workload (inference, train step), one line per model
    # (colour) and backend (GPU solid circles, CPU dashed squares)
    tb = Block(id="models-throughput", title="Throughput against batch size",
               subtitle="images per second per backend (log–log)")
    for wl, rows in ok.groupby("workload", sort=False):
        bkey = next((k for k in BATCH_KEYS if any(k in (p or {}) for p in rows["params"])), None)
        if bkey is None or not rows["items_per_s"].map(_finite).any():
            continue
        others = [k for k in varying_params(rows) if k != bkey]
        series: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
        for _, r in rows.iterrows():
            p = r["params"] or {}
            if not _finite(p.get(bkey)) or not _finite(r["items_per_s"]):
                continue
            tag = " ".join(f"{k}={_param_text(p.get(k))}" for k in others) or str(p.get("model") or wl)
            series.setdefault((tag, str(r["backend"])), []).append((float(p[bkey]), float(r["items_per_s"]),
                                                                     str(r["name"])))
        tags = list(dict.fromkeys(t for t, _ in series))
        traces: list[dict[str, Any]] = []
        for (tag, be), pts in series.items():
            pts.sort()
            gpu = be == "gpu"
            traces.append({"type": "scatter", "mode": "lines+markers", "name": esc(f"{tag} @{be}"),
                           "x": [p[0] for p in pts], "y": [p[1] for p in pts],
                           "line": {"color": PALETTE[tags.index(tag) % len(PALETTE)],
                                    "dash": "solid" if gpu else "dash", "width": 2},
                           "marker": {"symbol": "circle" if gpu else "square", "size": 7},
                           "hovertext": [esc(p[2]) + f"<br>{fmt_num(p[1])} images/s" for p in pts],
                           "hoverinfo": "text"})
        lay = _layout("batch size", "images / s", log_x=True, log_y=True, height=400)
        lay["legend"] = {"orientation": "v", "x": 1.01, "y": 1}
        ch = Chart(ids("chart-model-batch", str(wl)), f"{wl}: images per second against batch size",
                   {"data": traces, "layout": lay}, "solid: GPU, dashed: CPU")
        tb.charts.append(ch)
        charts.append(ch)
    if not tb.charts:
        tb.notes.append("No finished model case reports images/s at a batch size.")
    blocks.append(tb)

    # per-layer profile: stacked bars of each layer's time, one bar per case
    pb = Block(id="models-layers", title="Per-layer profile", subtitle="time of each layer, stacked per case")
    prof_rows: list[tuple[Any, list[dict[str, Any]]]] = []
    for _, r in ok.iterrows():
        prof = _layer_profile(r["record"].get("metrics") or {})
        if prof:
            prof_rows.append((r, prof))
    if prof_rows:
        short = case_labels(ok.loc[[r.name for r, _ in prof_rows]])
        layer_names: list[str] = []
        per_case: list[tuple[str, dict[str, float], dict[str, str]]] = []
        for r, prof in prof_rows:
            vals: dict[str, float] = {}
            hov: dict[str, str] = {}
            for i, layer in enumerate(prof):
                nm = str(layer.get("name") or layer.get("layer") or layer.get("kind") or f"layer {i}")
                nm = f"{i}: {nm}" if not nm.startswith(f"{i}") else nm
                parts = {k: float(v) for k, v in layer.items() if k.endswith("_s") and _finite(v)}
                vals[nm] = sum(parts.values())
                hov[nm] = ", ".join(f"{k[:-2]} {fmt_time(v)}" for k, v in parts.items())
                if nm not in layer_names:
                    layer_names.append(nm)
            per_case.append((f"{short[r.name]} @{r['backend']}", vals, hov))
        unit, scale = time_unit([sum(v.values()) for _, v, _ in per_case])
        ptraces = [{"type": "bar", "orientation": "h", "name": esc(nm), "y": [esc(c) for c, _, _ in per_case],
                    "x": [v.get(nm, 0.0) / scale for _, v, _ in per_case],
                    "hovertext": [esc(f"{nm}: {h.get(nm, '')}") for _, _, h in per_case], "hoverinfo": "text+x"}
                   for nm in layer_names]
        lay = _layout(f"time ({unit})", "", barmode="stack", height=_hbar_height(len(per_case)),
                      legend={"orientation": "v", "traceorder": "normal"})
        lay["yaxis"]["autorange"] = "reversed"
        ch = Chart(ids("chart-model-layers"), "Per-layer time (stacked)", {"data": ptraces, "layout": lay},
                   "each segment sums the layer's recorded times (forward + backward where both are recorded)")
        pb.charts.append(ch)
        charts.append(ch)
    else:
        pb.notes.append("No per-layer profile was recorded in this run (model cases' metrics hold no layer list).")
    blocks.append(pb)

    # time to accuracy and final accuracy
    ab = Block(id="models-accuracy", title="Time to accuracy", subtitle="training until the target test accuracy")
    tta = ok[ok["record"].map(lambda rec: any("time_to_accuracy" in k for k in (rec.get("metrics") or {})))]
    if not tta.empty:
        cols = ["case", "backend", "time to accuracy", "target", "final test accuracy", "epochs", "reached"]
        rows_t: list[list[Cell]] = []
        xs, ys, colors = [], [], []
        short = case_labels(tta)
        for idx, r in tta.iterrows():
            mt = r["record"].get("metrics") or {}
            # the models' train_to_accuracy metric names first, then any key that says the same thing
            t = _metric_value(mt, ("time_to_accuracy_s",), lambda k: "time_to_accuracy" in k)
            acc = _metric_value(mt, ("final_test_accuracy", "test_accuracy"),
                                lambda k: "accuracy" in k and "time" not in k and "target" not in k)
            target = _metric_value(mt, ("target_accuracy",), lambda k: "target" in k and "accuracy" in k)
            epochs = _metric_value(mt, ("epochs",), lambda k: "epoch" in k)
            reached = mt.get("reached_target", mt.get("reached"))
            rows_t.append([Cell(short[idx], short[idx], title=str(r["name"])),
                           Cell(str(r["backend"]), str(r["backend"]),
                                                                    f"be-{r['backend']}"),
                           Cell(fmt_time(t), t), Cell(fmt_num(target), target), Cell(fmt_num(acc), acc),
                           Cell(fmt_num(epochs), epochs),
                           Cell("–" if reached is None else ("yes" if reached else "no"), str(reached),
                                "" if reached is None else ("st-ok" if reached else "st-failed"))])
            if t is not None:
                xs.append(esc(f"{short[idx]} @{r['backend']}"))
                ys.append(t)
                colors.append(BACKEND_COLOR.get(str(r["backend"]), "#888"))
        ab.table = Table(ids("table-tta"), cols, rows_t, numeric={2, 3, 4, 5})
        if xs:
            lay = _layout("seconds to reach the target accuracy", "", height=_hbar_height(len(xs)))
            lay["yaxis"]["autorange"] = "reversed"
            ch = Chart(ids("chart-model-tta"), "Time to accuracy",
                       {"data": [{"type": "bar", "orientation": "h", "y": xs, "x": ys, "marker": {"color": colors},
                                  "hoverinfo": "x+y"}], "layout": lay})
            ab.charts.append(ch)
            charts.append(ch)
    else:
        ab.notes.append("No train-to-accuracy case finished in this run.")
    blocks.append(ab)
    return blocks, charts


# ---------------------------------------------------------------- counters


GPU_COUNTER_GROUPS = {
    "power": ("power",),
    "energy per image": ("energy",),
    "clocks": ("clock", "sm_mhz", "freq"),
    "utilisation": ("util",),
}


def counters_block(ids: _Ids, df: pd.DataFrame) -> tuple[Block, list[Chart]]:
    b = Block(id="counters", title="Counters", subtitle="power, energy, clocks and utilisation where recorded")
    ok = df[df["status"] == "ok"] if len(df) else df
    keys: list[str] = []
    for rec in ok.get("record", []):
        for k, v in (rec.get("counters") or {}).items():
            if _finite(v) and k not in keys:
                keys.append(k)
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
    for idx, r in ok.iterrows():
        c = r["record"].get("counters") or {}
        if not any(_finite(c.get(k)) for k in keys):
            continue
        rows.append([Cell(short[idx], short[idx], "nowrap", str(r["name"])),
                     Cell(str(r["backend"]), str(r["backend"]), f"be-{r['backend']}")]
                    + [Cell(fmt_num(_num(c.get(k))), _num(c.get(k))) for k in keys])
    b.table = Table(ids("table-counters"), cols, rows, numeric=set(range(2, len(cols))))
    charts: list[Chart] = []
    # Model cases: one chart per counter group (its first key; units differ between groups, so never one
    # shared axis), e.g. watts, joules per image, MHz, % busy
    m = ok[_is_model(ok)] if len(ok) else ok
    for group, needles in GPU_COUNTER_GROUPS.items():
        k = next((k for k in keys if any(n in k.lower() for n in needles)), None)
        if k is None or not len(m):
            continue
        xs, ys, colors = [], [], []
        for idx, r in m.iterrows():
            v = _num((r["record"].get("counters") or {}).get(k))
            if v is not None:
                xs.append(esc(f"{short[idx]} @{r['backend']}"))
                ys.append(v)
                colors.append(BACKEND_COLOR.get(str(r["backend"]), "#888"))
        if not xs:
            continue
        lay = _layout(esc(k), "", height=_hbar_height(len(xs)))
        lay["yaxis"]["autorange"] = "reversed"
        lay["yaxis"]["tickfont"] = {"size": 10}
        ch = Chart(ids("chart-counters", group), f"{group} of model cases: {k}",
                   {"data": [{"type": "bar", "orientation": "h", "x": ys, "y": xs, "marker": {"color": colors},
                              "hoverinfo": "x+y"}], "layout": lay})
        b.charts.append(ch)
        charts.append(ch)
    return b, charts


def short_labels(rows: pd.DataFrame) -> dict[Any, str]:
    """Workload plus its varying parameters, per row: short names for tables and charts spanning several
    workloads (the full name stays in the tooltip)."""
    out: dict[Any, str] = {}
    for wl, g in rows.groupby("workload", sort=False):
        for idx, lab in case_labels(g).items():
            out[idx] = lab if lab.startswith(str(wl)) else f"{wl} {lab}"
    return out


# ---------------------------------------------------------------- problems


def problems_block(ids: _Ids, frames: Sequence[tuple[str, pd.DataFrame]]) -> Block:
    b = Block(id="problems", title="Failed, errored and skipped cases",
              subtitle="every case that did not produce a validated time, with its reason")
    cols = ["run", "status", "case", "backend", "reason"]
    rows: list[list[Cell]] = []
    order = {"failed": 0, "error": 1, "skipped": 2}
    for label, df in frames:
        if df.empty:
            continue
        bad = df[df["status"] != "ok"]
        for _, r in bad.sort_values("status", key=lambda s: s.map(order)).iterrows():
            rows.append([Cell(label, label), Cell(str(r["status"]), str(r["status"]), f"st-{r['status']}"),
                         Cell(str(r["name"]), str(r["name"])),
                         Cell(str(r["backend"]), str(r["backend"]), f"be-{r['backend']}"),
                         Cell(str(r["message"] or "(no message)"), str(r["message"] or ""))])
        reasons = bad[bad["status"] == "skipped"].groupby("message").size()
        for msg, n in reasons.items():
            b.notes.append(f"{label}: {n} case(s) skipped: {msg}")
    if not rows:
        b.notes.append("Every case ran and validated." if any(len(df) for _, df in frames) else
                       "No case was recorded in these runs.")
    b.table = Table(ids("table-problems"), cols, rows) if rows else None
    return b


# ---------------------------------------------------------------- page


def build_page(frames: Sequence[pd.DataFrame], sources: Sequence[str], title: str | None = None) -> Page:
    """All view models for ``frames`` (results.load DataFrames); the last frame is described in detail."""
    if not frames:
        raise UsageError("report: give at least one run directory")
    ids = _Ids()
    runs = [run_view(i, df, src) for i, (df, src) in enumerate(zip(frames, sources, strict=True))]
    cur = frames[-1]
    cur_src = sources[-1]
    banners: list[str] = []
    if len(frames) > 1:
        banners.append(f"Detail sections describe {runs[-1].label} ({runs[-1].suite}, {runs[-1].run_id}); "
                       f"run vs run compares each earlier run (base) with it.")
    absent = gpu_absent_reason(cur)
    if absent:
        banners.append(f"No GPU-vs-CPU speedup in this report: {absent}. The CPU measurements are shown; "
                       f"run on a machine with a usable GPU for the comparison.")
    sp = gpu_cpu_speedups(cur, cur_src) if len(cur) else {}
    speedup, charts = speedup_blocks(ids, cur, sp) if len(cur) else ([], [])
    roof, c2 = roofline_block(ids, cur) if len(cur) else (Block("roofline", "Roofline", notes=["No cases."]), [])
    dists, c3 = distribution_blocks(ids, cur) if len(cur) else ([], [])
    comps: list[Block] = []
    c4: list[Chart] = []
    for i in range(len(frames) - 1):
        blk, cc = comparison_block(ids, frames[i], cur, sources[i], cur_src, runs[i].label, runs[-1].label)
        comps.append(blk)
        c4 += cc
    models, c5 = model_blocks(ids, cur)
    counters, c6 = counters_block(ids, cur) if len(cur) else (Block("counters", "Counters"), [])
    probs = problems_block(ids, [(rv.label, df) for rv, df in zip(runs, frames, strict=True)])
    suites = sorted({rv.suite for rv in runs})
    return Page(
        title=title or f"accelbench report: {', '.join(suites)}",
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        runs=runs, banners=banners, speedup=speedup, roofline=roof, distributions=dists, comparisons=comps,
        models=models, counters=counters, problems=probs, charts=charts + c2 + c3 + c4 + c5 + c6,
    )


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env


def _static(name: str) -> Markup:
    """Our own CSS/JS, inlined. They are ours (not user data); the guard keeps them from ending the element."""
    text = (STATIC / name).read_text(encoding="utf-8")
    if re.search(r"</(script|style)", text, re.IGNORECASE):
        raise RuntimeError(f"{name} must not contain a closing script/style tag")
    return Markup(text)


def _plotly_js() -> Markup:
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    # plotly.js has no such sequence today; the replacement keeps a future build from ending the element
    return Markup(re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE))


def render_html(frames: Sequence[pd.DataFrame], sources: Sequence[str], title: str | None = None) -> str:
    page = build_page(frames, sources, title)
    figures = {c.id: c.figure for c in page.charts}
    tpl = _env().get_template("report.html.j2")
    return tpl.render(page=page, figures_json=script_json(figures), css=_static("report.css"),
                      js=_static("report.js"), plotly_js=_plotly_js(), version=__version__,
                      n_charts=len(page.charts))


def default_output(frames: Sequence[pd.DataFrame]) -> Path:
    run = frames[-1].attrs.get("run") or {}
    name = slug(str(run.get("suite") or "run")) + "-" + slug(str(run.get("run_id") or "report"))
    if len(frames) > 1:
        name += f"-vs-{len(frames) - 1}"
    return Path("reports") / f"{name}.html"


def write_report(runs: Sequence[str | Path], out: str | Path | None = None, title: str | None = None) -> Path:
    """Load ``runs`` (run directories, their run.json/cases.jsonl, or results roots), render and write the
    page atomically (a temporary file renamed into place: an error leaves nothing half-written).
    Returns the path written."""
    if not runs:
        raise UsageError("report: give at least one run directory")
    frames = [load(r) for r in runs]
    html_text = render_html(frames, [str(r) for r in runs], title)
    dest = Path(out) if out is not None else default_output(frames)
    if dest.is_dir():
        dest = dest / default_output(frames).name
    if dest.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {dest}: the report is an HTML file; name it *.html")
    try:
        atomic_write_text(dest, html_text)
        # mkstemp creates 0600; a report is meant to be shared, so give it the umask's usual mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(dest, 0o666 & ~umask)
    except OSError as e:
        raise UsageError(f"{dest}: cannot write the report: {e.strerror or e}") from None
    return dest

"""The end-of-run terminal report: one rich table per workload with time, noise, throughput, speedup
and validation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..compare import Speedup
from ..measure.stats import MIN_CI_SAMPLES
from ..results import CaseRecord, TimingSummary
from ..textsafe import plain, term
from . import engines as engines_text
from .format import DASH, fmt_pct, fmt_rate, fmt_time, fmt_x, machine_facts, param_text
from .view import RunView

_STATUS = {"ok": "[green]✓[/]", "failed": "[red]✗ invalid[/]", "skipped": "[yellow]skipped[/]",
           "error": "[red]error[/]"}


def _throughput_cells(c: CaseRecord) -> tuple[str, str]:
    t = c.throughput
    rate = DASH
    if "gflops" in t:
        rate = fmt_rate(t["gflops"] * 1e9, "FLOP/s")
    elif "gbps" in t:
        rate = fmt_rate(t["gbps"] * 1e9, "B/s")
    items = DASH
    if "items_per_s" in t:
        items = fmt_rate(t["items_per_s"], f"{c.work.get('item_unit') or 'items'}/s")
    return rate, items


def _pct(c: CaseRecord) -> float | None:
    """% of the measured ceiling (from `accelbench calibrate`): compute for flop-bound work, else bandwidth."""
    t = c.throughput
    return t.get("flops_percent_of_measured", t.get("bw_percent_of_measured"))


def _metric_cells(c: CaseRecord) -> str:
    parts = []
    for k, v in c.metrics.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        elif isinstance(v, (int, str, bool)):
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def render(rv: RunView, console: Console | None = None, title: str = "") -> None:
    """One table per workload of the view's run; the GPU rows carry the view's speedups (compare.speedups:
    the same number ``compare RUN`` and the HTML report show); then the problems."""
    console = console or Console()
    by_wl: dict[str, list[CaseRecord]] = defaultdict(list)
    for c in rv.cases:
        by_wl[c.workload].append(c)
    heads = rv.headline_by_key
    for wl, rows in by_wl.items():
        console.print(workload_table(f"{title + ': ' if title else ''}{wl}", rows, rv.speedup_by_key, heads))
    engines = engines_text.rich_table(rv.engines)
    if engines is not None:
        console.print(engines)
    problems(rv.cases, console)


def _varying(rows: Sequence[CaseRecord]) -> list[str]:
    """The parameters that tell the rows apart (the first four when none varies)."""
    keys: list[str] = []
    for c in rows:
        for k in c.params:
            if k not in keys and len({param_text(r.params.get(k)) for r in rows}) > 1:
                keys.append(k)
    return keys or (list(rows[0].params)[:4] if rows else [])


def workload_table(title: str, rows: Sequence[CaseRecord], sp: dict[str, Speedup],
                   headline: dict[str, tuple[Speedup, str]] | None = None) -> Table:
    """``headline``: onnx GPU records' speedup over the fastest CPU engine (RunView.headline_by_key), a
    column beside the per-engine speedup when any row has one."""
    keys = _varying(rows)
    heads = {k: v for k, v in (headline or {}).items() if k in {c.key.pair_key for c in rows}}
    has_peak = any(_pct(c) is not None for c in rows)
    has_metrics = any(c.metrics for c in rows)
    t = Table(title=term(title), title_justify="left", show_lines=False)
    for k in keys:
        t.add_column(term(k), overflow="fold")
    t.add_column("backend")
    for col in ("median", "±95% CI", "CV", "throughput", "items/s") + (("% peak",) if has_peak else ()) + (
            "speedup",) + (("vs fastest CPU",) if heads else ()):
        t.add_column(col, justify="right")
    t.add_column("check")
    if has_metrics:
        t.add_column("metrics", overflow="fold")
    for c in rows:
        cells: list[str | Text] = [Text(plain(param_text(c.params.get(k, "")))) for k in keys]
        cells += [c.backend, *_measured_cells(c)]
        if has_peak:
            pct = _pct(c)
            cells.append(f"{pct:.0f}%" if pct is not None else DASH)
        speed = sp.get(c.key.pair_key) if c.backend == "gpu" else None
        cells.append(fmt_x(speed.speedup) if speed else "")
        if heads:
            h = heads.get(c.key.pair_key) if c.backend == "gpu" else None
            cells.append(f"{fmt_x(h[0].speedup)} ({term(h[1])})" if h else "")
        cells.append(_STATUS.get(c.status, term(c.status)))
        if has_metrics:
            cells.append(Text(plain(_metric_cells(c))))
        t.add_row(*cells)
    return t


def _measured_cells(c: CaseRecord) -> list[str]:
    """median, CI half-width, CV, throughput, items/s: dashes unless the case ran and validated."""
    if c.status != "ok":
        return [DASH] * 5
    s = c.timing.summary if c.timing else TimingSummary()
    ci = s.rel_ci_halfwidth if s.n >= MIN_CI_SAMPLES else None  # [min, max] of a few samples is no CI
    return [fmt_time(s.median), fmt_pct(ci), fmt_pct(s.cv), *_throughput_cells(c)]


def problems(cases: list[CaseRecord], console: Console) -> None:
    """Failed and errored cases one line each; skipped ones grouped by reason (never hidden)."""
    bad = [c for c in cases if c.status in ("failed", "error")]
    for c in bad:
        console.print(f"[red]{c.status}[/] {term(c.name)} @{c.backend}: {term(c.message)}", soft_wrap=True)
    reasons: dict[str, int] = defaultdict(int)
    for c in cases:
        if c.status == "skipped":
            reasons[c.message] += 1
    for r, n in reasons.items():
        console.print(f"[yellow]skipped[/] {n} case(s): {term(r)}", soft_wrap=True)


def facts_table(title: str, facts: Sequence[tuple[str, str]]) -> Table:
    """(what, value) rows, e.g. format.machine_facts; a value saying something is missing shows yellow."""
    t = Table(show_header=False, title=term(title), title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", overflow="fold")
    for what, value in facts:
        t.add_row(term(what), Text(plain(value), style="yellow" if value.startswith("none usable") else ""))
    return t


def machine_table(env: dict[str, Any]) -> Table:
    """``accelbench info``: this machine, as the HTML report shows a run's."""
    return facts_table("accelbench info", machine_facts(env))


def cases_table(suite: str, pairs: Sequence[tuple[Any, str]]) -> Table:
    """``accelbench list``: the (case, backend) pairs a suite expands to, in run order."""
    t = Table(title=term(f"{suite}: {len(pairs)} case-backend runs"), title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("case")
    t.add_column("backend")
    t.add_column("defined at")
    for i, (c, b) in enumerate(pairs, 1):
        t.add_row(str(i), Text(plain(c.name)), b, Text(plain(c.location)))
    return t


def peaks_table(res: dict[str, Any]) -> Table:
    """``accelbench calibrate``: the ceilings measured (and the GPU's theoretical bandwidth)."""
    t = Table(title=term(f"peaks of this machine (key {res['key']})"), title_justify="left")
    t.add_column("backend")
    t.add_column("ceiling")
    t.add_column("value", justify="right")
    for b in ("gpu", "cpu"):
        for k, v in (res.get(b) or {}).items():
            if isinstance(v, float) and (k.endswith("gbps") or k.endswith("gb_per_s") or k.endswith("gflops")):
                unit = "GFLOP/s" if k.endswith("gflops") else "GB/s"
                t.add_row(b, term(k), f"{v:,.1f} {unit}")
    for k, v in (res.get("theoretical") or {}).items():
        t.add_row("gpu", term(f"{k} (theoretical)"), f"{v:,.1f} GB/s")
    return t


def summary_line(counts: dict[str, int]) -> str:
    parts = [f"{counts.get(k, 0)} {k}" for k in ("ok", "failed", "error", "skipped")]
    return ", ".join(parts)


def as_json(cases: list[CaseRecord]) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in cases]

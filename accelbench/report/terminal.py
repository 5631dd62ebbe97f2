"""The end-of-run terminal report: one rich table per workload with time, noise, throughput, speedup
and validation."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from ..measure.stats import MIN_CI_SAMPLES
from ..results import CaseRecord
from ..textsafe import term


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale or unit == "ns":
            return f"{s / scale:.3g} {unit}"
    return f"{s:.3g} s"  # pragma: no cover


def fmt_rate(v: float | None, unit: str) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def backend_key(c: CaseRecord) -> str:
    """The case identity without the backend, to pair GPU and CPU."""
    return c.case_id.rsplit("@", 1)[0]


def speedups(cases: list[CaseRecord]) -> dict[str, float]:
    """GPU-vs-CPU speedup (CPU median / GPU median) per case identity without backend."""
    med: dict[str, dict[str, float]] = defaultdict(dict)
    for c in cases:
        if c.status == "ok" and c.timing and c.timing.summary.get("median"):
            med[backend_key(c)][c.backend] = c.timing.summary["median"]
    return {k: v["cpu"] / v["gpu"] for k, v in med.items() if "cpu" in v and "gpu" in v and v["gpu"] > 0}


_STATUS = {"ok": "[green]✓[/]", "failed": "[red]✗ invalid[/]", "skipped": "[yellow]skipped[/]",
           "error": "[red]error[/]"}


def _throughput_cells(c: CaseRecord) -> tuple[str, str]:
    t = c.throughput
    rate = "-"
    if "gflops" in t:
        rate = fmt_rate(t["gflops"] * 1e9, "FLOP/s")
    elif "gbps" in t:
        rate = fmt_rate(t["gbps"] * 1e9, "B/s")
    items = "-"
    if "items_per_s" in t:
        unit = str(c.work.get("item_unit") or "items")
        items = f"{fmt_rate(t['items_per_s'], '')}{unit}/s".replace("  ", " ")
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


def render(cases: list[CaseRecord], console: Console | None = None, title: str = "") -> None:
    console = console or Console()
    sp = speedups(cases)
    by_wl: dict[str, list[CaseRecord]] = defaultdict(list)
    for c in cases:
        by_wl[c.workload].append(c)
    for wl, rows in by_wl.items():
        param_keys: list[str] = []
        for c in rows:
            for k in c.params:
                if k not in param_keys and len({str(r.params.get(k)) for r in rows}) > 1:
                    param_keys.append(k)
        if not param_keys and rows:
            param_keys = list(rows[0].params)[:4]
        t = Table(title=term(f"{title + ': ' if title else ''}{wl}"), title_justify="left", show_lines=False)
        for k in param_keys:
            t.add_column(term(k), overflow="fold")
        t.add_column("backend")
        t.add_column("median", justify="right")
        t.add_column("±95% CI", justify="right")
        t.add_column("CV", justify="right")
        t.add_column("throughput", justify="right")
        t.add_column("items/s", justify="right")
        has_peak = any(_pct(c) is not None for c in rows)
        if has_peak:
            t.add_column("% peak", justify="right")
        t.add_column("speedup", justify="right")
        t.add_column("check")
        has_metrics = any(c.metrics for c in rows)
        if has_metrics:
            t.add_column("metrics", overflow="fold")
        for c in rows:
            s = c.timing.summary if c.timing else {}
            med = s.get("median")
            ci = s.get("rel_ci_halfwidth") if s.get("n", 0) >= MIN_CI_SAMPLES else None  # [min, max] is no CI
            rate, items = _throughput_cells(c) if c.status == "ok" else ("-", "-")
            speed = sp.get(backend_key(c)) if c.backend == "gpu" else None
            status = _STATUS.get(c.status, c.status)
            cells = [term(c.params.get(k, "")) for k in param_keys] + [
                c.backend,
                fmt_time(med) if c.status == "ok" else "-",
                f"{ci * 100:.1f}%" if ci is not None and math.isfinite(ci) and c.status == "ok" else "-",
                f"{s['cv'] * 100:.1f}%" if s.get("cv") is not None and c.status == "ok" else "-",
                rate,
                items,
            ]
            if has_peak:
                pct = _pct(c)
                cells.append(f"{pct:.0f}%" if pct is not None else "-")
            cells += [f"{speed:.1f}×" if speed else "", status]
            if has_metrics:
                cells.append(term(_metric_cells(c)))
            t.add_row(*cells)
        console.print(t)
    problems(cases, console)


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


def summary_line(counts: dict[str, int]) -> str:
    parts = [f"{counts.get(k, 0)} {k}" for k in ("ok", "failed", "error", "skipped")]
    return ", ".join(parts)


def as_json(cases: list[CaseRecord]) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in cases]

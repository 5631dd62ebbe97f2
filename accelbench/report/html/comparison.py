"""Run vs run: compare.compare_runs' verdicts (from the report view) as a table and a ratio chart."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from ...compare import VERDICTS, CaseComparison, Comparison
from ..format import DASH, finite, fmt_range, fmt_time
from .figures import (
    CASE_CHART_LIMIT,
    VERDICT_COLOR,
    aggregate_box,
    esc,
    figure,
    layout,
    num,
    span,
    unity_line,
)
from .model import Block, Cell, Chart, Ids, Table, cell_backend

SHOWN_CASES = 100  # cases in the per-case ratio chart when there are more than CASE_CHART_LIMIT
COLUMNS = ["verdict", "case", "backend", "base median", "new median", "ratio", "95% CI", "threshold", "reason"]


def comparison_block(ids: Ids, cmp: Comparison, base_label: str, new_label: str) -> tuple[Block, list[Chart]]:
    b = Block(id=ids("cmp", base_label, new_label), title=f"{base_label} → {new_label}",
              subtitle="ratio = new time / base time (> 1: slower); regressions first")
    b.notes.append("verdicts: " + ", ".join(f"{n} {v}" for v, n in cmp.counts().items() if n))
    if cmp.machine:
        b.notes.append("the runs come from different machines or software: " + "; ".join(
            f"{d.key}: {d.base} → {d.new}" for d in cmp.machine[:8]) + (" …" if len(cmp.machine) > 8 else ""))
    if not cmp.machine_checked:
        b.notes.append("machine fingerprint missing in one run: not checked")
    # regressions first, then what needs a look (compare's verdict order), each group by ratio, largest first
    rank = {v: i for i, v in enumerate(VERDICTS)}
    cases = sorted(cmp.cases, key=lambda c: (rank.get(c.verdict, len(rank)),
                                             -(c.ratio if c.ratio is not None and finite(c.ratio) else -math.inf)))
    b.table = Table(id=ids("table-cmp", base_label, new_label), columns=COLUMNS, rows=[_row(c) for c in cases],
                    numeric={3, 4, 5, 6, 7})
    measured = [c for c in cases if finite(c.ratio)]
    if not measured:
        b.notes.append("No case was measured in both runs, so there is no ratio to plot.")
        return b, []
    if len(measured) <= CASE_CHART_LIMIT:
        ch = Chart(ids("chart-cmp", base_label, new_label), "Ratio per case with its 95% CI", _figure(measured))
        b.charts.append(ch)
        return b, [ch]
    shown = measured[:SHOWN_CASES]
    b.notes.append(f"{len(measured)} cases measured in both runs, more than the {CASE_CHART_LIMIT} drawn one by "
                   f"one: the per-case chart shows the first {len(shown)} in the table's order (regressions first, "
                   f"then by ratio), the other {len(measured) - len(shown)} are left out of it; the box chart "
                   f"summarises all {len(measured)} by verdict, and the table holds every case")
    b.charts.append(Chart(ids("chart-cmp", base_label, new_label),
                          f"Ratio per case with its 95% CI: the first {len(shown)} of {len(measured)}",
                          _figure(shown)))
    b.charts.append(Chart(ids("chart-cmp-boxes", base_label, new_label),
                          f"Ratios of all {len(measured)} measured cases, per verdict", _boxes(measured),
                          "box: quartiles and median, whiskers: smallest and largest ratio; hover: how many"))
    return b, list(b.charts)


def _boxes(measured: list[CaseComparison]) -> dict[str, object]:
    traces = [aggregate_box(v, color, [(v, [c.ratio for c in measured if c.verdict == v and c.ratio is not None])])
              for v, color in VERDICT_COLOR.items() if any(c.verdict == v for c in measured)]
    lay = layout("", "ratio new / base (log scale)", log_y=True, shapes=[unity_line("y")], showlegend=False)
    return figure(traces, lay)


def _ratio(v: float | None) -> str:
    return f"{v:.3f}" if v is not None and finite(v) else DASH


def _row(c: CaseComparison) -> list[Cell]:
    col = f"vd-{c.verdict}"
    return [Cell(c.verdict, c.verdict, col), Cell(c.name, c.name), cell_backend(c.backend),
            Cell(fmt_time(c.base_value_s), num(c.base_value_s)), Cell(fmt_time(c.new_value_s), num(c.new_value_s)),
            Cell(_ratio(c.ratio), num(c.ratio), col),
            Cell(fmt_range(c.ci_low, c.ci_high, _ratio), num(c.ci_low),
                 title=f"CI method: {c.ci_method}" if c.ci_method else ""),
            Cell(f"±{c.threshold * 100:g}%" if c.threshold is not None else DASH, c.threshold),
            Cell("; ".join([c.reason] + list(c.notes)).strip("; "), None)]


def _figure(measured: list[CaseComparison]) -> dict[str, object]:
    traces = []
    for verdict, color in VERDICT_COLOR.items():
        cs = [c for c in measured if c.verdict == verdict]
        if cs:
            traces.append(go.Scatter(
                mode="markers", name=verdict, x=[c.ratio for c in cs], y=[esc(f"{c.name} @{c.backend}") for c in cs],
                error_x={"type": "data", "symmetric": False, "array": [span(c.ci_high, c.ratio) for c in cs],
                         "arrayminus": [span(c.ratio, c.ci_low) for c in cs]},
                marker={"color": color, "size": 9}, hoverinfo="text",
                hovertext=[esc(f"{c.name} @{c.backend}: ") + f"{_ratio(c.ratio)} ({esc(c.reason)})" for c in cs]))
    order = [esc(f"{c.name} @{c.backend}") for c in reversed(measured)]
    lay = layout("ratio new / base (log scale)", "", log_x=True, height=max(240, 60 + 22 * len(measured)),
                 shapes=[unity_line("x")])
    lay.yaxis.update(categoryorder="array", categoryarray=order, tickfont={"size": 10})
    lay.margin.l = 16
    return figure(traces, lay)

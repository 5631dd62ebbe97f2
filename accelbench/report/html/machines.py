"""Machine vs machine: when the report's runs come from more than one machine, the same cases on each
machine (accelbench.machines' view: time, items/s, GFLOP/s, GB/s, J/item, speedup over the reference
machine with its 95% CI) as a sortable table and one chart of the speedups. Not a gate: no verdicts.

Which runs are which machine is accelbench.machines' notion (``machine_of``: GPU or CPU @ host); with one
machine the section is absent. The reference is the first run's machine (``report`` has no option for it).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from ... import machines as mv
from ...compare import LoadedRun, machine_diff
from ..format import DASH, finite, fmt_num, fmt_range, fmt_rate, fmt_time, fmt_x
from ..view import ReportView
from .figures import CASE_CHART_LIMIT, PALETTE, esc, figure, layout, short_labels, unity_line
from .model import Block, Cell, Chart, Ids, Table, cell_backend
from .workloads import ci_bars, has_ci

COLUMNS = ["case", "backend", "machine", "time", "speedup", "95% CI", "items/s", "GFLOP/s", "GB/s", "J/item",
           "note"]
NUMERIC = {3, 4, 5, 6, 7, 8, 9}
SHOWN_CASES = 100  # cases in the chart when there are more than CASE_CHART_LIMIT
NOTE = ("speedup = reference time / this machine's time of the {metric} (> 1: faster than the reference); "
        "whiskers: its 95% CI. Machines differ by design: a view, not a gate.")


def several_machines(view: ReportView) -> bool:
    """Whether the runs come from more than one machine (accelbench.machines.machine_of's labels)."""
    return len({mv.machine_of(rv.run, rv.source).label for rv in view.runs}) > 1


def machines_block(ids: Ids, view: ReportView) -> tuple[Block | None, list[Chart]]:
    """The section, or None when every run comes from one machine."""
    if not several_machines(view):
        return None, []
    v = mv.view([LoadedRun(run=rv.run, cases=rv.cases, source=rv.source) for rv in view.runs])
    b = Block(id=ids("machines"), title=f"{len(v.machines)} machines against {v.reference}",
              subtitle="the reference: the first run's machine")
    envs = {m.label: rv.run.environment or {} for m, rv in zip(v.machines, view.runs, strict=True)}
    for i, m in enumerate(v.machines, 1):
        line = f"machine {i}: {m.label} ({m.source}, run {m.run_id})"
        if m.label == v.reference:
            line += ": the reference"
        else:
            d = machine_diff(envs[v.reference], envs[m.label])
            if d:
                line += "; differs from the reference in " + "; ".join(
                    f"{x.key}: {x.base} → {x.new}" for x in d[:8]) + (" …" if len(d) > 8 else "")
        b.notes.append(line)
    labels = _labels(view, v)
    b.table = Table(id=ids("table-machines"), columns=COLUMNS, numeric=NUMERIC,
                    rows=[_row(r, m.label, r.cells.get(m.label), m.label == v.reference, labels[r.key])
                          for r in v.rows for m in v.machines])
    ch = _chart(ids, v, labels)
    if ch is None:
        b.notes.append("No case was measured on the reference and another machine, so there is no speedup "
                       "to plot.")
        return b, []
    b.charts.append(ch)
    return b, [ch]


def _labels(view: ReportView, v: mv.MachineView) -> dict[str, str]:
    """Short case labels (workload and its varying parameters, figures.short_labels) by case identity."""
    df = pd.concat([rv.frame for rv in view.runs if len(rv.frame)], ignore_index=True) \
        if any(len(rv.frame) for rv in view.runs) else pd.DataFrame()
    out: dict[str, str] = {}
    if len(df):
        df = df.drop_duplicates("case_id").reset_index(drop=True)
        for idx, lab in short_labels(df).items():
            out[str(df.at[idx, "record"].key.id)] = lab
    return {r.key: out.get(r.key, r.name) for r in v.rows}


def _row(r: mv.Row, machine: str, c: mv.Cell | None, is_ref: bool, label: str) -> list[Cell]:
    head = [Cell(label, label, title=r.name), cell_backend(r.backend), Cell(machine, machine)]
    if c is None or c.status != "ok" or c.time_s is None:
        note = "not in this run" if c is None else f"{c.status}: {c.message}" if c.message else c.status
        return head + [Cell(DASH, None) for _ in range(7)] + [Cell(note, note, f"st-{c.status}" if c else "muted")]
    if is_ref:
        sp, ci = Cell("reference", 1.0, "muted"), Cell(DASH, None)
    elif c.speedup is None or not finite(c.speedup):
        sp, ci = Cell(DASH, None), Cell(DASH, None)
    else:
        sp = Cell(fmt_x(c.speedup), c.speedup, "good" if c.speedup > 1 else "bad")
        ci = Cell(fmt_range(c.ci_low, c.ci_high, fmt_x), c.ci_low) if has_ci(c) else \
            Cell("too few samples", None, "nowrap")
    return head + [Cell(fmt_time(c.time_s), c.time_s, title=f"{c.n} samples"), sp, ci,
                   Cell(fmt_rate(c.items_per_s, f"{c.item_unit or 'items'}/s"), c.items_per_s),
                   Cell(fmt_num(c.gflops), c.gflops), Cell(fmt_num(c.gbps), c.gbps),
                   Cell(fmt_num(c.energy_j_per_item), c.energy_j_per_item), Cell("", None)]


def _chart(ids: Ids, v: mv.MachineView, labels: dict[str, str]) -> Chart | None:
    """Speedup over the reference per case, one marker series per other machine, CI whiskers."""
    others = [m.label for m in v.machines if m.label != v.reference]
    measured = [r for r in v.rows if any(finite(_sp(r, m)) for m in others)]
    if not measured:
        return None
    title, note = "Speedup over the reference machine per case", NOTE.format(metric=v.metric)
    if len(measured) > CASE_CHART_LIMIT:  # the cases furthest from the reference, in their table order
        far = sorted(measured, key=lambda r: -_distance(r, others))
        keep = {r.key for r in far[:SHOWN_CASES]}
        title += f": the {len(keep)} of {len(measured)} furthest from the reference"
        note = (f"{len(measured)} cases, more than the {CASE_CHART_LIMIT} drawn one by one: the {len(keep)} whose "
                f"speedup is furthest from 1 are drawn, the other {len(measured) - len(keep)} are left out here "
                f"(each is in the table); " + note)
        measured = [r for r in measured if r.key in keep]
    ys: dict[str, str] = {}
    for r in measured:  # one axis category per case, even where two short labels coincide
        y = esc(f"{labels[r.key]} @{r.backend}")
        ys[r.key] = y if y not in ys.values() else esc(f"{r.name} @{r.backend}")
    traces = []
    for i, m in enumerate(others):
        rs = [r for r in measured if finite(_sp(r, m))]
        cells = [r.cells[m] for r in rs]
        traces.append(go.Scatter(
            mode="markers", name=esc(m), x=[c.speedup for c in cells], y=[ys[r.key] for r in rs],
            error_x=ci_bars(cells),
            marker={"color": PALETTE[i % len(PALETTE)], "size": 9}, hoverinfo="text",
            hovertext=[esc(f"{r.name} @{r.backend} on {m}: ") + fmt_x(c.speedup) for r, c in
                       zip(rs, cells, strict=True)]))
    lay = layout(f"speedup over {esc(v.reference)} (log scale)", "", log_x=True,
                 height=max(240, 60 + 22 * len(measured)), shapes=[unity_line("x")])
    lay.yaxis.update(categoryorder="array", categoryarray=[ys[r.key] for r in reversed(measured)],
                     tickfont={"size": 10})
    lay.margin.l = 16
    lay.showlegend = True  # the machine each marker is, even with one machine beside the reference
    return Chart(ids("chart-machines"), title, figure(traces, lay), note)


def _sp(r: mv.Row, machine: str) -> float | None:
    c = r.cells.get(machine)
    return c.speedup if c is not None else None


def _distance(r: mv.Row, others: list[str]) -> float:
    """How far the case's speedups on the other machines are from 1 (in log terms)."""
    return max((abs(math.log(s)) for m in others if (s := _sp(r, m)) is not None and finite(s) and s > 0), default=0.0)

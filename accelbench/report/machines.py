"""The machine-vs-machine view (accelbench.machines) as aligned plain text for the terminal and as a
Markdown table; both are built from the same rows of cells, one row per (case, machine)."""

from __future__ import annotations

import math

from ..compare import fmt_time
from ..machines import Cell, MachineView

HEAD = ("case", "backend", "machine", "time", "speedup", "95% CI", "items/s", "GFLOP/s", "GB/s", "J/item",
        "note")
EMPTY = ["-", "", "", "", "", "", ""]


def _num(v: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "-"
    for f, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= f:
            return f"{v / f:.3g}{p}{unit}"
    return f"{v:.3g}{unit}"


def _cells(c: Cell, is_ref: bool) -> list[str]:
    if c.status != "ok" or c.time_s is None:
        return [*EMPTY, f"{c.status}: {c.message}" if c.message else c.status]
    if is_ref:
        sp, ci = "reference", ""
    elif c.speedup is None:
        sp, ci = "-", ""
    else:
        sp = f"{c.speedup:.3g}x"
        ci = (f"{c.ci_low:.3g}..{c.ci_high:.3g}x" if c.ci_low and c.ci_high and c.ci_low > 0
              and math.isfinite(c.ci_high) else "(too few samples)")
    items = _num(c.items_per_s, f" {c.item_unit}" if c.item_unit else "")
    return [fmt_time(c.time_s), sp, ci, items, _num(c.gflops), _num(c.gbps),
            f"{c.energy_j_per_item:.3g}" if c.energy_j_per_item is not None else "-", ""]


def rows(v: MachineView) -> list[list[str]]:
    """One row of text cells per case and machine; a case's name on its first row only."""
    out = []
    order = [m.label for m in v.machines]
    for r in v.rows:
        first = True
        for label in order:
            c = r.cells.get(label)
            cells = _cells(c, label == v.reference) if c is not None else [*EMPTY, "not in this run"]
            out.append([r.name if first else "", r.backend if first else "", label, *cells])
            first = False
    return out


def _legend(v: MachineView) -> str:
    return (f"speedup = reference time / machine time of the {v.metric} (> 1: faster than {v.reference}); "
            "CI: 95% interval of that ratio; J/item from the GPU's energy counter where it has one. "
            "Machines differ by design: this is a view, not a gate.")


def text(v: MachineView) -> str:
    body = [list(HEAD), *rows(v)]
    widths = [min(60, max(len(r[i]) for r in body)) for i in range(len(HEAD) - 1)]
    lines = ["  ".join([*(r[i][:60].ljust(widths[i]) for i in range(len(widths))), r[-1]]).rstrip() for r in body]
    lines.append("")
    lines += [f"machine {i}: {m.label} ({m.source})" for i, m in enumerate(v.machines, 1)]
    lines.append(_legend(v))
    return "\n".join(lines) + "\n"


def markdown(v: MachineView, title: str = "Machines") -> str:
    def cell(t: str) -> str:
        return t.replace("|", "\\|").replace("\n", " ")

    lines = [f"## {title}", "", f"reference: **{cell(v.reference)}**; {len(v.machines)} machines, "
             f"{len(v.rows)} cases.", "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows(v)]
    lines += ["", f"<sub>{_legend(v)}</sub>"]
    return "\n".join(lines) + "\n"

"""The onnx engines side by side as one text table, rendered three ways from the same cells: a rich table
(the end of ``accelbench run``), aligned plain text and Markdown (``accelbench compare RUN`` and its
``--markdown``). The numbers are the report view's (``RunView.engines``, accelbench.onnx.engines): the
headline is the GPU's speedup over the fastest CPU engine measured for the case, each engine's own
GPU-vs-CPU speedup beside it. The HTML section is report/html/engines.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from ..compare import Speedup
from ..onnx.engines import BACKENDS, RULE, EngineTable, engine_sort_key
from ..textsafe import md, plain, term
from .format import DASH, fmt_x, param_text

TITLE = "onnx engines side by side"


def _engines(tables: Sequence[EngineTable]) -> list[str]:
    return sorted({e for t in tables for e in t.engines}, key=engine_sort_key)


def cells(tables: Sequence[EngineTable]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of plain strings: a row per case with any side measured, a column where any row has a
    number; names from data are returned raw (each renderer neutralises them)."""
    engines = _engines(tables)
    both = {"accelbench", "onnxruntime"} <= set(engines)
    head = ["model", "batch", "fastest CPU"] + [f"GPU {e} / fastest CPU" for e in engines] + [
        f"GPU/CPU {e}" for e in engines] + ([f"accelbench/onnxruntime {b.upper()}" for b in BACKENDS] if both else [])
    rows = []
    for t in tables:
        for c in t.cases:
            if not any(s.measured for s in c.sides.values()):
                continue  # nothing ran (every side skipped): the skipped lines say why
            row = [t.title, param_text(c.batch), c.fastest_cpu or DASH]
            row += [_x(c.over_fastest_cpu.get(e)) for e in engines]
            row += [_x(c.per_engine.get(e)) for e in engines]
            if both:
                row += [_x(c.engine_ratio.get(b)) for b in BACKENDS]
            rows.append(row)
    # a column with no number at all (every GPU column on a machine without one) says nothing
    keep = [i for i in range(len(head)) if i < 3 or any(r[i] != DASH for r in rows)]
    return [head[i] for i in keep], [[r[i] for i in keep] for r in rows]


def _x(s: Speedup | None) -> str:
    return fmt_x(s.speedup) if s is not None else DASH


def note(metric: str = "median") -> str:
    return "GPU <engine> / fastest CPU: " + RULE.format(metric=metric) + "; GPU/CPU <engine>: over its own CPU."


def rich_table(tables: Sequence[EngineTable], metric: str = "median") -> Table | None:
    if not tables:
        return None
    head, rows = cells(tables)
    t = Table(title=TITLE, title_justify="left", caption=term(note(metric)), caption_justify="left")
    for i, h in enumerate(head):
        t.add_column(h, justify="right" if i > 2 else "left", overflow="fold")
    for r in rows:
        t.add_row(*(Text(plain(x)) for x in r))
    return t


def text(tables: Sequence[EngineTable], metric: str = "median") -> str:
    """Aligned plain text (names neutralised with textsafe.plain); "" without onnx cases."""
    if not tables:
        return ""
    head, rows = cells(tables)
    grid = [head] + [[plain(x) for x in r] for r in rows]
    widths = [min(40, max(len(r[i]) for r in grid)) for i in range(len(head))]
    lines = ["", TITLE]
    for r in grid:
        lines.append("  ".join((r[i][:40].ljust(widths[i]) if i < 3 else r[i].rjust(widths[i]))
                               for i in range(len(head))).rstrip())
    lines.append(f"({note(metric)})")
    return "\n".join(lines) + "\n"


def markdown(tables: Sequence[EngineTable], metric: str = "median") -> str:
    """A Markdown table (names escaped with textsafe.md); "" without onnx cases."""
    if not tables:
        return ""
    head, rows = cells(tables)
    out = ["", f"## {TITLE}", "", "| " + " | ".join(md(h) for h in head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(md(x) for x in r) + " |" for r in rows]
    out += ["", f"<sub>{md(note(metric))}</sub>"]
    return "\n".join(out) + "\n"

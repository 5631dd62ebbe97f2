"""The page model: what the template lays out (tables of cells, charts, titled blocks, run headers)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # numeric (or text) sort key; None sorts last
    cls: str = ""  # CSS class (status / verdict colours, right alignment)
    title: str = ""  # tooltip


PAGINATE_ABOVE = 300  # a table of more rows is shown a page at a time (report.js), its rows embedded as JSON
PAGE_ROWS = 100  # rows per page of such a table


@dataclass
class Table:
    id: str
    columns: list[str]
    rows: list[list[Cell]]
    numeric: set[int] = field(default_factory=set)  # right-aligned column indices

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def paginated(self) -> bool:
        """Whether the page shows this table a page at a time: its rows travel as JSON (:meth:`data`) and
        report.js renders, sorts and filters them, across all rows; smaller tables are plain HTML rows."""
        return len(self.rows) > PAGINATE_ABOVE

    @property
    def page_rows(self) -> int:
        return PAGE_ROWS

    def data(self) -> dict[str, Any]:
        """The rows column by column, for report.js: per column ``t`` (texts), ``s`` (sort keys: a list,
        1 when every key is the text itself, absent when no cell has one), ``c`` (CSS classes) and ``h``
        (tooltips, absent when none), both as :func:`repeated` writes them. Column-wise, because
        10,000 rows cell by cell repeat the same class names and brackets 200,000 times."""
        cols: list[dict[str, Any]] = []
        for j in range(len(self.columns)):
            cells = [r[j] for r in self.rows]
            texts = [c.text for c in cells]
            col: dict[str, Any] = {"t": texts}
            # the common keys (text, none, a finite float) as they are; the rest through sort_value
            sorts = [v if v is None or type(v) is str or (type(v) is float and math.isfinite(v)) else sort_value(v)
                     for v in (c.sort for c in cells)]
            if sorts == texts:
                col["s"] = 1
            elif any(v is not None for v in sorts):
                col["s"] = sorts
            col["c"] = repeated([c.cls for c in cells])
            if any(c.title for c in cells):
                col["h"] = repeated([c.title for c in cells])
            cols.append(col)
        return {"n": len(self.rows), "page": self.page_rows, "numeric": sorted(self.numeric), "cols": cols}


def repeated(values: list[str]) -> str | list[str] | dict[str, list[Any]]:
    """A column of strings that repeat (classes, tooltips such as "CI method: ..."): one string when all
    are the same, ``{"k": distinct values, "i": index of each}`` when there are at most a quarter as many
    distinct values as rows, else the list itself."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return distinct[0]
    if len(distinct) * 4 > len(values):
        return values
    at = {v: i for i, v in enumerate(distinct)}
    return {"k": distinct, "i": [at[v] for v in values]}


def sort_value(v: float | str | None) -> float | str | None:
    """A sort key as the HTML rows carry it (``data-sort="{{ cell.sort }}"``, read back by report.js):
    finite numbers stay numbers, anything else is its text; None (and NaN/inf, which JSON cannot hold)
    has no key and sorts last."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (v if isinstance(v, int) else float(v)) if math.isfinite(v) else None
    return str(v)


@dataclass
class Chart:
    id: str
    title: str
    figure: dict[str, Any]  # a plotly figure as JSON (figures.figure: built from plotly.graph_objects)
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
class RunHeader:
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
    runs: list[RunHeader]
    banners: list[str]
    speedup: list[Block]
    roofline: Block
    distributions: list[Block]
    comparisons: list[Block]
    models: list[Block]
    counters: Block
    problems: Block
    charts: list[Chart]
    machines: Block | None = None  # machine vs machine, only when the runs come from several machines
    engines: list[Block] = field(default_factory=list)  # onnx engines side by side, only with onnx cases

    def tables(self) -> list[Table]:
        """Every table on the page: of each field that holds a block or a list of blocks (a section added
        to the page is found without being named here)."""
        blocks: list[Block] = []
        for f in fields(self):
            v = getattr(self, f.name)
            blocks += [v] if isinstance(v, Block) else [b for b in v if isinstance(b, Block)] \
                if isinstance(v, list) else []
        return [b.table for b in blocks if b.table is not None]


def slug(s: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", s).strip("-").lower() or "x"


class Ids:
    """Unique element ids derived from names (names may repeat or be hostile)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, *parts: str) -> str:
        base = "-".join(slug(p) for p in parts)[:60]
        n = self.seen.get(base, 0)
        self.seen[base] = n + 1
        return base if n == 0 else f"{base}-{n}"


def cell_backend(backend: str) -> Cell:
    return Cell(backend, backend, f"be-{backend}")

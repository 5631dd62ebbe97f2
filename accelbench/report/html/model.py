"""The page model: what the template lays out (tables of cells, charts, titled blocks, run headers)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


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

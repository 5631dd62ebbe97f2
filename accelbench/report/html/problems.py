"""Every case that did not produce a validated time, with its reason, across all runs of the page."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .model import Block, Cell, Ids, Table, cell_backend

ORDER = {"failed": 0, "error": 1, "skipped": 2}


def problems_block(ids: Ids, frames: Sequence[tuple[str, pd.DataFrame]]) -> Block:
    b = Block(id="problems", title="Failed, errored and skipped cases",
              subtitle="every case that did not produce a validated time, with its reason")
    rows: list[list[Cell]] = []
    for label, df in frames:
        if df.empty:
            continue
        bad = df[df["status"] != "ok"]
        for r in bad.sort_values("status", key=lambda s: s.map(ORDER)).to_dict("records"):
            rows.append([Cell(label, label), Cell(str(r["status"]), str(r["status"]), f"st-{r['status']}"),
                         Cell(str(r["name"]), str(r["name"])), cell_backend(str(r["backend"])),
                         Cell(str(r["message"] or "(no message)"), str(r["message"] or ""))])
        for msg, n in bad[bad["status"] == "skipped"].groupby("message").size().items():
            b.notes.append(f"{label}: {n} case(s) skipped: {msg}")
    if not rows:
        b.notes.append("Every case ran and validated." if any(len(df) for _, df in frames) else
                       "No case was recorded in these runs.")
    b.table = Table(ids("table-problems"), ["run", "status", "case", "backend", "reason"], rows) if rows else None
    return b

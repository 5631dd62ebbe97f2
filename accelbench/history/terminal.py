"""`accelbench history` on a terminal: one row per case (its series as a sparkline, its change points)
and a table of the most recent changes. Names from data go through rich's ``Text`` (never markup)."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..compare import fmt_change, fmt_time
from .analysis import Change, History

SPARK = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 40
RECENT = 20


def sparkline(values: np.ndarray, marks: set[int] | None = None) -> str:
    """The last SPARK_POINTS values as block characters (low to high); '|' before a change point."""
    v = np.asarray(values, dtype=np.float64)
    first = max(0, v.size - SPARK_POINTS)
    v = v[first:]
    if v.size == 0:
        return ""
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    out = []
    for i, x in enumerate(v):
        if marks and (i + first) in marks:
            out.append("|")
        k = 0 if span <= 0 else int(round((x - lo) / span * (len(SPARK) - 1)))
        out.append(SPARK[k])
    return "".join(out)


def _commit(c: str | None) -> str:
    return c[:10] if c else "-"


def render(h: History, out: Console, recent: int = RECENT) -> None:
    t = Table(title=f"history: {len(h.series)} cases over {len(h.runs)} runs (ordered by {h.ordered_by}, "
                    f"metric {h.metric}, alpha {h.settings.alpha:g}, min change {h.settings.min_change * 100:g}%)",
              title_justify="left")
    t.add_column("case")
    t.add_column("backend")
    t.add_column("runs", justify="right")
    t.add_column("latest", justify="right")
    t.add_column(f"series (last {SPARK_POINTS}; | = change point)")
    t.add_column("changes", justify="right")
    t.add_column("last change")
    for s in h.series:
        marks = {int(np.searchsorted(s.pos, c.position)) for c in s.changes}
        last = s.changes[-1] if s.changes else None
        t.add_row(Text(s.name), s.backend, str(s.value.size), fmt_time(float(s.value[-1])) if s.value.size else "-",
                  sparkline(s.value, marks), str(len(s.changes)),
                  Text(f"{fmt_change(last.ratio)} at {last.run_id}") if last else "-")
    out.print(t)
    changes = h.changes()[:recent]
    if not changes:
        out.print("no change points")
        return
    r = Table(title=f"most recent changes ({len(changes)} of {len(h.changes())})", title_justify="left")
    for col in ("first run after", "commit", "case", "before", "after", "change", "CI", "p", "runs before/after"):
        r.add_column(col, justify="right" if col in ("before", "after", "change", "p") else "left")
    for c in changes:
        r.add_row(Text(c.run_id), Text(_commit(c.commit)), Text(f"{c.name} @{c.backend}"), fmt_time(c.before_s),
                  fmt_time(c.after_s), fmt_change(c.ratio), f"{fmt_change(c.ci_low)}..{fmt_change(c.ci_high)}",
                  f"{c.p_value:.2g}", f"{c.n_before}/{c.n_after}")
    out.print(r)


def as_json(h: History) -> list[dict[str, Any]]:
    """The change points, most recent first (the `--json` contract: case, run_id, ratio, p_value, ...)."""
    return [_json(c) for c in h.changes()]


def _json(c: Change) -> dict[str, Any]:
    return c.to_dict()

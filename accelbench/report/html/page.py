"""The whole page model, section by section, from the report view."""

from __future__ import annotations

from datetime import datetime, timezone

from ..view import ReportView
from .comparison import comparison_block
from .counters import counters_block
from .distributions import distribution_blocks
from .engines import engines_blocks
from .header import run_header
from .machines import machines_block
from .model import Block, Chart, Ids, Page
from .models import model_blocks
from .problems import problems_block
from .roofline import roofline_block
from .workloads import gpu_absent_reason, speedup_blocks


def build_page(view: ReportView, title: str | None = None) -> Page:
    """All page models, from the report view; its current (last) run is described in detail, each earlier
    run is compared with it (the earlier one as the base)."""
    ids = Ids()
    runs = [run_header(rv) for rv in view.runs]
    cur = view.current
    df = cur.frame
    banners: list[str] = []
    if len(view.runs) > 1:
        banners.append(f"Detail sections describe {runs[-1].label} ({runs[-1].suite}, {runs[-1].run_id}); "
                       f"run vs run compares each earlier run (base) with it.")
    absent = gpu_absent_reason(df)
    if absent:
        banners.append(f"No GPU-vs-CPU speedup in this report: {absent}. The CPU measurements are shown; "
                       f"run on a machine with a usable GPU for the comparison.")
    charts: list[Chart] = []
    speedup, c1 = speedup_blocks(ids, df, cur.speedup_by_key, cur.headline_by_key) if len(df) else ([], [])
    roof, c2 = roofline_block(ids, df, cur.run.environment or {}) if len(df) else (
        Block("roofline", "Roofline", notes=["No cases."]), [])
    dists, c3 = distribution_blocks(ids, df) if len(df) else ([], [])
    comps: list[Block] = []
    for base, cmp in view.comparisons:
        blk, cc = comparison_block(ids, cmp, base.label, cur.label)
        comps.append(blk)
        charts += cc
    models, c5 = model_blocks(ids, df)
    counters, c6 = counters_block(ids, df) if len(df) else (Block("counters", "Counters"), [])
    machines, c7 = machines_block(ids, view)
    engines, c8 = engines_blocks(ids, cur)
    probs = problems_block(ids, [(rv.label, rv.frame) for rv in view.runs])
    suites = sorted({rv.suite for rv in runs})
    return Page(
        title=title or f"accelbench report: {', '.join(suites)}",
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        runs=runs, banners=banners, speedup=speedup, roofline=roof, distributions=dists, comparisons=comps,
        models=models, counters=counters, problems=probs, charts=c1 + c2 + c3 + charts + c5 + c6 + c7 + c8,
        machines=machines, engines=engines,
    )

"""The HTML report of large runs (1,500 cases, tests/large_runs.py): big tables travel as JSON and are shown a
page at a time, charts of more cases than anyone reads one by one aggregate or show the few that matter,
and the page says what it aggregated or left out, with the counts. ``test_report_html_browser.py`` drives
the same pages' pagination in Chromium.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accelbench.compare import VERDICTS, load_side, speedups
from accelbench.report import html as rh
from accelbench.report import view
from accelbench.report.html import distributions, roofline
from accelbench.report.html.figures import CASE_CHART_LIMIT
from accelbench.report.html.model import PAGE_ROWS, PAGINATE_ABOVE, Cell, Table, repeated, sort_value
from tests.large_runs import large_run

N = 1500  # cases per run: 750 per workload, 375 per workload and backend


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("large-runs")
    return large_run(root, "base", N, seed=1), large_run(root, "new", N, seed=2, slower=1.5)


@pytest.fixture(scope="module")
def single(large: tuple[Path, Path]) -> tuple[view.ReportView, rh.Page]:
    """The view and page of the base run alone (built once: each takes seconds on a loaded machine)."""
    v = view.load([large[0]])
    return v, rh.build_page(v)


def tables_json(html_text: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="ab-tables">(.*?)</script>', html_text, re.S)
    assert m, "no embedded table rows"
    return dict(json.loads(m.group(1)))


def cells(data: dict[str, Any], j: int) -> list[tuple[str, Any]]:
    """(text, sort key) of column ``j`` of a table's embedded rows, as report.js reads them."""
    col = data["cols"][j]
    s = col.get("s")
    return [(t, None if s is None else (t if s == 1 else s[i])) for i, t in enumerate(col["t"])]


def test_table_data_is_the_cells_column_by_column():
    rows = [[Cell("a", "a"), Cell("1.5 ms", 1.5e-3, "good", "tip"), Cell("–", None), Cell("x", math.nan, "bad")],
            [Cell("b", "b"), Cell("2 ms", 2e-3, "bad"), Cell("–", None), Cell("y", 3, "bad")]]
    t = Table("t", ["name", "time", "none", "odd"], rows, numeric={1})
    d = t.data()
    assert d["n"] == 2 and d["numeric"] == [1] and d["page"] == PAGE_ROWS
    name, time, none, odd = d["cols"]
    assert name == {"t": ["a", "b"], "s": 1, "c": ""}  # the sort key is the text itself
    assert time == {"t": ["1.5 ms", "2 ms"], "s": [1.5e-3, 2e-3], "c": ["good", "bad"], "h": ["tip", ""]}
    assert none == {"t": ["–", "–"], "c": ""}  # no key at all: sorts last, as a cell without data-sort
    assert odd["s"] == [None, 3] and odd["c"] == "bad"  # NaN has no key (JSON cannot hold it)
    # repeated strings (classes, tooltips) as distinct values and an index per row, when that is shorter
    assert repeated(["a", "b"] * 4) == {"k": ["a", "b"], "i": [0, 1] * 4} and repeated(["a", "b"]) == ["a", "b"]
    assert [sort_value(v) for v in (True, "x", math.inf, 2, 2.5)] == ["True", "x", None, 2, 2.5]
    assert not t.paginated and Table("u", ["x"], [[Cell("x")]] * (PAGINATE_ABOVE + 1)).paginated


def test_large_tables_paginate_and_embed_every_row(single: tuple[view.ReportView, rh.Page]):
    v, page = single
    html_text = rh.render_html(v)
    data = tables_json(html_text)
    df = v.current.frame
    for blk in page.speedup:
        t = blk.table
        assert t is not None and t.paginated
        n = int(((df["workload"] == blk.title) & (df["status"] != "skipped")).sum())
        assert len(t) == n > PAGINATE_ABOVE
        d = data[t.id]
        assert d["n"] == n and d["page"] == PAGE_ROWS and len(d["cols"]) == len(t.columns)
        # every row is in the JSON, none of them as an HTML row: the page starts empty, report.js shows page 1
        i_col = t.columns.index("i")
        assert sorted(int(x) for x, _ in cells(d, i_col)) == sorted(
            int(p["i"]) for p, s, w in zip(df["params"], df["status"], df["workload"], strict=True)
            if w == blk.title and s != "skipped")
        m = re.search(rf'<table class="sortable paged" id="{t.id}" data-rows="{n}">.*?<tbody>(.*?)</tbody>',
                      html_text, re.S)
        assert m and "<tr" not in m.group(1)
        assert f'<div class="pager" data-for="{t.id}">' in html_text
        assert f"rows 1–{PAGE_ROWS} of {n}" in html_text
        # the sort keys of the median column are numbers for every measured row (sorting reaches them all)
        med = [s for _, s in cells(d, t.columns.index("median"))]
        ok = int(((df["workload"] == blk.title) & (df["status"] == "ok")).sum())
        assert sum(isinstance(s, float) for s in med) == ok
    # every table of the page is found (a paged one left out would show no rows)
    assert {t.id for t in page.tables()} >= {b.table.id for b in page.speedup if b.table} | {
        page.problems.table.id if page.problems.table else ""}
    # the problems table is small: plain HTML rows, as on every small page
    assert page.problems.table is not None and not page.problems.table.paginated
    assert page.problems.table.id not in data


def test_large_charts_aggregate_and_say_so_with_counts(large: tuple[Path, Path],
                                                       single: tuple[view.ReportView, rh.Page]):
    v, page = single
    df = v.current.frame
    sp = {s.key: s for s in speedups(load_side(large[0]))}
    for blk in page.speedup:
        wl = blk.title
        speed, times = blk.charts
        # speedups: boxes over all of the workload's pairs (gemm: one per size m), drawn from statistics
        pairs = [s for k, s in sp.items() if k.split("/")[1] == wl]
        assert len(pairs) > CASE_CHART_LIMIT
        assert speed.note.startswith(f"{len(pairs)} cases, more than the {CASE_CHART_LIMIT} drawn one by one")
        (box,) = speed.figure["data"]
        assert box["type"] == "box" and "y" not in box  # precomputed: no per-case values in the page
        assert len(box["x"]) == (12 if wl == "gemm" else 1)
        assert sum(int(h.split(": ")[1].split()[0]) for h in box["hovertext"]) == len(pairs)
        allsp = np.array([s.speedup for s in pairs])
        assert min(box["lowerfence"]) == pytest.approx(allsp.min()) and max(box["upperfence"]) == pytest.approx(
            allsp.max())
        if wl == "scale":
            assert box["median"][0] == pytest.approx(float(np.median(allsp)))
        # times: a box per backend
        ok = df[(df["workload"] == wl) & (df["status"] == "ok")]
        assert sorted(t["name"] for t in times.figure["data"]) == ["cpu", "gpu"]
        assert str(int((ok["backend"] == "cpu").sum())) in times.note
    # distributions: the 30 most variable cases of each workload, and how many are left out
    for blk in page.distributions:
        ok = df[(df["workload"] == blk.title) & (df["status"] == "ok")]
        shown = distributions.SHOWN_CASES
        (note,) = blk.notes
        assert note.startswith(f"{len(ok)} cases with samples") and f"the other {len(ok) - shown} " in note
        (ch,) = blk.charts
        drawn = {x for t in ch.figure["data"] for x in t["x"]}
        assert len(drawn) <= shown and ch.title == f"the {shown} most variable of {len(ok)} cases"
        cv = ok["cv"].astype(float)
        assert float(cv.nlargest(shown).min()) >= float(cv.nsmallest(len(ok) - shown).max())
    # the roofline places every gemm case with flop and byte counts (under its merge limit)
    (rch,) = page.roofline.charts
    placed = sum(len(t["x"]) for t in rch.figure["data"] if t["mode"] == "markers")
    assert placed == int(((df["workload"] == "gemm") & (df["status"] == "ok")).sum())


def test_roofline_of_many_cases_merges_neighbours(single: tuple[view.ReportView, rh.Page],
                                                  monkeypatch: pytest.MonkeyPatch):
    df = single[0].current.frame
    pts = int(((df["workload"] == "gemm") & (df["status"] == "ok")).sum())
    monkeypatch.setattr(roofline, "ROOF_MAX_POINTS", 100)
    b, (ch,) = roofline.roofline_block(rh.model.Ids(), df, {})
    markers = [t for t in ch.figure["data"] if t["mode"] == "markers"]
    counts = [int(h.split()[0]) for t in markers for h in t["hovertext"]]
    assert sum(counts) == pts and len(counts) < pts  # every case in exactly one marker, fewer markers
    (note,) = [n for n in b.notes if "share one marker" in n]
    assert note.startswith(f"{pts} cases, more than the 100") and f"{len(counts)} markers stand for the {pts}" in note


@pytest.mark.slow  # compare_runs of 1,500 cases: ~10 s on a loaded machine
def test_run_vs_run_of_large_runs(large: tuple[Path, Path]):
    base, new = large
    v = view.load([base, new])
    page = rh.build_page(v)
    ((_, cmp),) = v.comparisons
    (blk,) = page.comparisons
    assert blk.table is not None and blk.table.paginated and len(blk.table) == len(cmp.cases) == N
    measured = [c for c in cmp.cases if c.ratio is not None and math.isfinite(c.ratio)]
    per_case, boxes = blk.charts
    # the per-case chart: the first 100 rows of the table (regressions first), each a marker
    first = [r for r in blk.table.rows if r[5].text != "–"][:100]
    ys = [y for t in per_case.figure["data"] for y in t["y"]]
    assert len(ys) == 100 and per_case.title.endswith(f"the first 100 of {len(measured)}")
    assert sorted(ys) == sorted(rh.esc(f"{r[1].text} @{r[2].text}") for r in first)
    assert any(f"the other {len(measured) - 100} are left out" in n for n in blk.notes)
    # the boxes: every measured case, by verdict
    by_verdict = {t["name"]: int(t["hovertext"][0].split(": ")[1].split()[0]) for t in boxes.figure["data"]}
    assert sum(by_verdict.values()) == len(measured)
    assert by_verdict == {vd: n for vd in by_verdict if (n := sum(c.verdict == vd for c in measured))}
    # regressions first: the chart starts with the earliest verdict of the order any case has
    assert VERDICTS.index(first[0][0].text) == min(VERDICTS.index(c.verdict) for c in measured)

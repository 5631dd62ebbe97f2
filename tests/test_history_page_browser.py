"""The history page (`accelbench report --history`) in headless Chromium: it opens offline with no console
error and no request beyond its own file, draws a chart per case with its change points, hover shows the
run, commit and date, and hostile names stay text. Shares the browser set-up of the run report's test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from accelbench.cli import app
from tests.history_runs import MACHINE_B, samples, stamp, write_run
from tests.test_report_html_browser import assert_clean_and_drawn, browser, open_report  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # Chromium parses the inlined plotly.js: ~25 s here
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("hist-page")
    rng = np.random.default_rng(0)
    ids = []
    for i in range(16):
        rid, t = stamp(i)
        env = MACHINE_B if i >= 13 else None  # the last three runs on another machine
        write_run(root, rid, t, {"w_a": samples(1e-3 * (1.1 if i >= 8 else 1.0), rng),
                                 "w_b": samples(2e-6, rng), HOSTILE: samples(5e-3, rng)},
                  commit=f"{i:040x}", env=env)
        ids.append(rid)
    out = root / "page.html"
    r = CliRunner().invoke(app, ["report", "--history", str(root), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out, ids


def test_history_page_opens_offline_and_draws_every_case(browser: Any, page_file: tuple[Path, list[str]]):  # noqa: F811
    path, ids = page_file
    o = open_report(browser, path)
    try:
        marks = assert_clean_and_drawn(o, path)
        assert len(marks) == 3
        figures = json.loads(o.page.evaluate("document.getElementById('ab-figures').textContent"))
        wa = next(k for k in figures if "w-a" in k)
        assert len(figures[wa]["layout"]["shapes"]) == 1  # the planted change, machine B's runs not one
        assert o.page.locator(f"#{wa} .annotation-text").count() == 1
        assert "+1" in (o.page.locator(f"#{wa} .annotation-text").text_content() or "")
        assert ids[8] in o.page.inner_text("#changes-table")
        # hover over the w_a point of run 8: run id, commit and date show
        o.page.evaluate("(id) => Plotly.Fx.hover(document.getElementById(id), [{curveNumber: 1, pointNumber: 8}])",
                        wa)
        hover = o.page.locator(f"#{wa} .hoverlayer").text_content() or ""
        assert f"run {ids[8]}" in hover and f"commit {8:040x}"[:17] in hover and "2026-01-01" in hover
        # the hostile workload is text in the caption and the charts, never an element
        assert HOSTILE in o.page.inner_text("main")
        assert o.page.evaluate("document.querySelectorAll('main img').length") == 0
        headings = o.page.evaluate("Array.from(document.querySelectorAll('section h2')).map(h => h.textContent)")
        assert any(h.startswith(HOSTILE) for h in headings)
    finally:
        o.page.close()

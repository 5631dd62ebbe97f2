"""The HTML report's machine-vs-machine section: the shipped H100 run beside a copy of it made twice as
slow on another GPU (tests.test_machines' helpers), and the section's absence with one machine."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from accelbench import machines
from accelbench.compare import load_side
from accelbench.report import html as rh
from accelbench.report.html.machines import machines_block
from accelbench.report.html.model import Ids
from accelbench.report.view import load
from tests.test_machines import fast_copy, slower_copy

HOSTILE_GPU = "<img src=x onerror=alert(1)>"


def _figures(text: str) -> dict[str, dict[str, object]]:
    m = re.search(r'<script type="application/json" id="ab-figures">(.*?)</script>', text, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_two_machines_get_the_section_with_the_speedups(tmp_path: Path) -> None:
    fast, slow = fast_copy(tmp_path), slower_copy(tmp_path)
    out = rh.write_report([fast, slow], tmp_path / "r.html")
    text = out.read_text()
    assert 'id="machine-vs-machine"' in text and 'href="#machine-vs-machine"' in text
    assert "Slow GPU 9000 @ slowbox" in text and "table-machines" in text

    # the section's model: a speedup of 0.5 (every sample twice as long), inside its CI, per timed case
    blk, charts = machines_block(Ids(), load([fast, slow]))
    assert blk is not None and blk.table is not None and len(charts) == 1
    cols = blk.table.columns
    by_machine = [r for r in blk.table.rows if r[cols.index("machine")].text == "Slow GPU 9000 @ slowbox"]
    timed = [r for r in by_machine if r[cols.index("speedup")].sort is not None]
    assert timed
    for r in timed:
        assert abs(float(r[cols.index("speedup")].sort) - 0.5) < 1e-6
        assert r[cols.index("speedup")].text == "0.5×"
    cis = [[float(x) for x in re.findall(r"[0-9.]+", r[cols.index("95% CI")].text)] for r in timed]
    bounded = [ci for ci in cis if len(ci) == 2]
    assert bounded and all(lo < 0.5 < hi for lo, hi in bounded)  # the CI as the page shows it
    assert "0.5×" in text and bounded and f"{bounded[0][0]:.3g}× – {bounded[0][1]:.3g}×" in text
    v = machines.view([load_side(fast), load_side(slow)])
    slow_label = v.machines[1].label
    cells = [r.cells[slow_label] for r in v.rows if r.cells[slow_label].speedup is not None]
    # each (case, machine) a row; the reference rows say so
    assert len(blk.table.rows) == 2 * len(v.rows)
    ref_rows = [r for r in blk.table.rows if r[cols.index("machine")].text == v.reference]
    assert {r[cols.index("speedup")].text for r in ref_rows if r[cols.index("time")].sort is not None} == {"reference"}

    # the chart on the page: one marker per case measured on both machines, at 0.5
    fig = _figures(text)[charts[0].id]
    (trace,) = fig["data"]  # type: ignore[misc]
    assert len(trace["x"]) == len(cells) and all(abs(x - 0.5) < 1e-6 for x in trace["x"])
    assert len(set(trace["y"])) == len(trace["y"])  # one category per case


def test_one_machine_has_no_section(tmp_path: Path) -> None:
    fast = fast_copy(tmp_path)
    text = rh.write_report([fast, fast], tmp_path / "r.html").read_text()
    assert "machine-vs-machine" not in text and "table-machines" not in text
    blk, charts = machines_block(Ids(), load([fast]))
    assert blk is None and charts == []


def test_hostile_machine_name_is_escaped(tmp_path: Path) -> None:
    fast, slow = fast_copy(tmp_path), slower_copy(tmp_path, gpu=HOSTILE_GPU)
    text = rh.write_report([fast, slow], tmp_path / "r.html").read_text()
    assert 'id="machine-vs-machine"' in text
    assert HOSTILE_GPU not in text
    assert html.escape(HOSTILE_GPU, quote=False) in text  # shown, as text
    fig = next(f for k, f in _figures(text).items() if k.startswith("chart-machines"))
    assert all(HOSTILE_GPU not in json.dumps(t) for t in fig["data"])  # type: ignore[union-attr]

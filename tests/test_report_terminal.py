"""report/terminal: the tables cli.py prints (it builds none itself), with names from data shown as text."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from accelbench import suite as suite_mod
from accelbench.report import terminal


def text_of(t: object) -> str:
    con = Console(file=io.StringIO(), width=300, record=True)
    con.print(t)
    return con.export_text()


def test_peaks_table_lists_every_ceiling_with_its_unit():
    res = {"key": "k1", "gpu": {"copy_gbps": 3000.0, "gemm_float32_gflops": 51000.5, "name": "x"},
           "cpu": {"stream_triad_gbps": 80.25}, "theoretical": {"dram_gbps": 3350.0}}
    out = text_of(terminal.peaks_table(res))
    assert "peaks of this machine (key k1)" in out
    assert "3,000.0 GB/s" in out and "51,000.5 GFLOP/s" in out and "80.2 GB/s" in out
    assert "dram_gbps (theoretical)" in out and "3,350.0 GB/s" in out and "name" not in out


def test_cases_table_shows_the_cases_in_run_order_and_markup_as_text(tmp_path: Path):
    f = tmp_path / "s.yaml"
    f.write_text("suite: s\nbenchmarks:\n  - workload: gemm\n    label: '[red]x'\n"
                 "    params: {m: [8, 16], n: 8, k: 8}\n", encoding="utf-8")
    s = suite_mod.load(f)
    pairs = s.select()
    out = text_of(terminal.cases_table(s.name, pairs))
    assert f"{s.name}: {len(pairs)} case-backend runs" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert len(rows) == len(pairs) == 4 and pairs[0][0].name in rows[0]
    assert "s: 4 case-backend runs" in out and "gemm[[red]x] m=8" in out  # markup shown, not applied

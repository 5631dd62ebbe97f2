"""accelbench.report.format: every unit and number format, once, and the one machine summary."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from accelbench import results
from accelbench.cli import app
from accelbench.report import format as fmt
from accelbench.report import html as rh
from accelbench.report import view

RUN = Path(__file__).resolve().parents[1] / "examples" / "runs" / "h100-cnn"


def test_time_unit_and_fmt_time():
    assert fmt.time_unit([2e-3, 3e-3]) == ("ms", 1e-3)
    assert fmt.time_unit([5e-9]) == ("ns", 1e-9)
    assert fmt.time_unit([5e-12]) == ("ns", 1e-9)  # below a nanosecond stays in ns
    assert fmt.time_unit([]) == ("s", 1.0) and fmt.time_unit([None, math.nan, 0.0]) == ("s", 1.0)
    assert fmt.fmt_time(1.5e-6) == "1.5 µs" and fmt.fmt_time(None) == fmt.DASH == "–"
    assert fmt.fmt_time(2.5) == "2.5 s" and fmt.fmt_time(12.3e-3) == "12.3 ms" and fmt.fmt_time(7e-10) == "0.7 ns"
    assert fmt.fmt_time(-3e-6) == "-3 µs"  # a difference keeps its sign and its unit
    assert fmt.fmt_time(math.inf) == "–" and fmt.fmt_time(np.float64(1e-3)) == "1 ms"


def test_rates_ratios_changes_and_ranges():
    assert fmt.fmt_rate(2.8e8, "FLOP/s") == "280 MFLOP/s" and fmt.fmt_rate(1.92e6, "images/s") == "1.92 Mimages/s"
    assert fmt.fmt_rate(5.0, "B/s") == "5 B/s" and fmt.fmt_rate(None, "B/s") == "–"
    assert fmt.fmt_x(3.24567) == "3.25×" and fmt.fmt_x(math.nan) == "–"
    assert fmt.fmt_change(1.05) == "+5.0%" and fmt.fmt_change(0.9) == "-10.0%"
    assert fmt.fmt_change(math.inf) == "inf" and fmt.fmt_change(None) == "–"
    assert fmt.fmt_pct(0.217) == "21.7%" and fmt.fmt_pct(math.inf) == "–"
    assert fmt.fmt_num(123456.0) == "123,456" and fmt.fmt_num(1e-5) == "1e-05" and fmt.fmt_num(True) == "–"
    assert fmt.fmt_range(1e-3, 2e-3, fmt.fmt_time) == "1 ms – 2 ms"
    assert fmt.fmt_range(0.5, math.inf, fmt.fmt_x) == "–"


def test_parameter_text_is_the_case_names():
    assert fmt.param_text({"b": [1, 2]}) == '{"b":[1,2]}' and fmt.param_text(None) == "None"
    assert fmt.params_text({"m": 4, "dtype": "float32"}) == "m=4 dtype=float32"
    assert fmt.params_text({"m": 4, "n": 5}, ["n"]) == "n=5"
    _, cases = results.read_run(RUN)
    for c in cases:  # the names the suite wrote are the parameters as format prints them
        assert c.name == f"{c.key.head} {fmt.params_text(c.params)}"


def test_info_and_the_report_show_one_machine_summary(tmp_path: Path):
    run, _ = results.read_run(RUN)
    facts = fmt.machine_facts(run.environment)
    what = [w for w, _ in facts]
    assert what[:3] == ["GPU", "driver / CUDA", "CuPy"] and "CPU" in what and "BLAS" in what
    assert facts[0][1].startswith("NVIDIA H100 80GB HBM3 (cc 9.0, 132 SMs, 79.")
    page = rh.build_page(view.load([RUN]))
    shown = page.runs[0].facts
    assert all(f in shown for f in facts)  # every machine fact, as `accelbench info` would print it
    # `accelbench info` prints format.machine_facts of this machine, row by row
    from accelbench import environment

    out = CliRunner().invoke(app, ["info"], env={"COLUMNS": "400"}).output
    for w, v in fmt.machine_facts(environment.fingerprint()):
        if w == "memory":  # the available memory moves between the two calls
            v = v.split(" (")[0]
        assert re.search(rf"{re.escape(w)}\s+│\s+{re.escape(v)}", out), (w, v)
    assert fmt.machine_facts({})[0] == ("GPU", "not recorded")

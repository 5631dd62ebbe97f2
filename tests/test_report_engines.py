"""onnx engines side by side (issue 14): the HTML section, the headline GPU speedup over the FASTEST CPU
engine, the terminal table of ``accelbench run`` and ``accelbench compare RUN``.

The CPU side is real: ``accelbench run`` of a small onnx model (both engines, batch 1 and 2, real
onnxruntime, real timings, validated). This machine has no GPU, so that run's GPU cases are skipped
with the runner's own reason.

The GPU side is a SYNTHETIC FIXTURE (``synthetic_gpu_run``): a second run written with the real
RunWriter from the real run's records, in which
  * the gpu records are the real accelbench-CPU records with every sample multiplied by a planted factor
    (GPU_FACTOR), recorded under backend "gpu";
  * the onnxruntime-CPU samples are the accelbench-CPU samples times ORT_CPU_FACTOR, so which CPU engine
    is faster is planted, not left to the machine: at batch 1 onnxruntime is 4x faster than accelbench,
    at batch 2 4x slower;
  * onnxruntime-GPU at batch 1 is skipped with onnxruntime's real reason (no CUDAExecutionProvider).
Each synthetic record says so in its ``variant``. No number in it is a GPU measurement; the factors
make the expected speedups exact (a ratio of proportional samples), whatever the machine's speed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import onnx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from accelbench import results
from accelbench.cli import app
from accelbench.onnx import zoo
from accelbench.onnx.engines import HEADLINE, fastest_cpu
from accelbench.onnx.workload import ort_reason
from accelbench.report import html as rh
from accelbench.report import terminal, view
from accelbench.report.format import DASH, fmt_x
from accelbench.runner import throughput
from tests.test_report_html import kernels_run

# a model file name that is HTML and a terminal escape at once
HOSTILE_MODEL = 'tiny<img src=x onerror="window.__pwned=3">\x1b[2J.onnx'
SYNTHETIC = {"synthetic": "test fixture: real CPU samples scaled by a planted factor; not a measurement"}
GPU_FACTOR = {("accelbench", 1): 0.1, ("accelbench", 2): 0.1, ("onnxruntime", 2): 0.05}
ORT_CPU_FACTOR = {1: 0.25, 2: 4.0}
FAST = "{min_samples: 5, max_samples: 8, min_time_s: 0.0, max_time_s: 0.2, warmup: 1, warmup_time_s: 0.0}"


def real_onnx_run(root: Path) -> tuple[Path, str]:
    """A real run of the onnx workload (its cpu cases measured, its gpu cases skipped) under ``root``; and
    the terminal output of ``accelbench run``."""
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(zoo.build("tiny_cnn", 16, seed=1), root / HOSTILE_MODEL)
    model = json.dumps(HOSTILE_MODEL)  # a YAML double-quoted scalar: escapes as JSON writes them
    suite = root / "s.yaml"
    suite.write_text(f"suite: eng\ndefaults:\n  backends: [gpu, cpu]\n  timing: {FAST}\nbenchmarks:\n"
                     f"  - workload: onnx\n    params: {{model: {model}, batch: [1, 2], threads: 1, "
                     f"engine: [accelbench, onnxruntime]}}\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(root / "res"), "--no-counters"])
    assert r.exit_code == 0, r.output
    (run_dir,) = (root / "res").iterdir()
    return run_dir, r.output


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return real_onnx_run(tmp_path_factory.mktemp("onnx-engines"))


def _scaled(rec: results.CaseRecord, factor: float, **update: Any) -> results.CaseRecord:
    assert rec.timing is not None
    samples = [s * factor for s in rec.timing.samples_s]
    timing = rec.timing.model_copy(update={"samples_s": samples, "summary": results.TimingSummary.of(samples)})
    out = rec.model_copy(update={"timing": timing, "variant": {**rec.variant, **SYNTHETIC}, **update})
    out.throughput = throughput(out.work, timing.summary.median)
    out.case_id = out.key.id
    return out


def synthetic_gpu_run(root: Path, cpu_dir: Path) -> Path:
    """The SYNTHETIC FIXTURE of the module docstring, as a run directory."""
    run, cases = results.read_run(cpu_dir)
    w = results.RunWriter(root, run.model_copy(update={"run_id": results.new_run_id(root)}))
    ab_cpu = {c.params["batch"]: c for c in cases if c.backend == "cpu" and c.params["engine"] == "accelbench"}
    assert set(ab_cpu) == {1, 2} and all(c.status == "ok" for c in ab_cpu.values())
    out: list[results.CaseRecord] = []
    for c in cases:
        if c.backend == "cpu" and c.params["engine"] == "onnxruntime":
            out.append(_scaled(ab_cpu[c.params["batch"]], ORT_CPU_FACTOR[c.params["batch"]],
                               params=dict(c.params), validation=c.validation))
        elif c.backend == "cpu":
            out.append(c)
    for batch, ab in ab_cpu.items():
        for engine in ("accelbench", "onnxruntime"):
            params = {**ab.params, "engine": engine}
            f = GPU_FACTOR.get((engine, batch))
            if f is None:
                why = ort_reason("gpu")
                assert why is not None, "this test expects onnxruntime without its CUDA provider"
                out.append(ab.model_copy(update={"backend": "gpu", "params": params, "status": "skipped",
                                                 "message": why, "timing": None, "throughput": {}}))
                out[-1].case_id = out[-1].key.id
            else:
                out.append(_scaled(ab, f, backend="gpu", params=params))
    for c in out:
        w.append(c.model_copy(update={"run_id": w.run.run_id}))
    w.close("finished", {s: sum(c.status == s for c in out) for s in ("ok", "failed", "skipped", "error")})
    return w.dir


@pytest.fixture(scope="module")
def gpu_run(cpu_run: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_gpu_run(tmp_path_factory.mktemp("synthetic-gpu"), cpu_run[0])


def _case(rv: view.RunView, batch: int) -> Any:
    (t,) = rv.engines
    (c,) = [c for c in t.cases if c.batch == batch]
    return c


def test_fastest_cpu_rule() -> None:
    assert fastest_cpu({"accelbench": 2.0, "onnxruntime": 1.0}) == "onnxruntime"
    assert fastest_cpu({"accelbench": 1.0, "onnxruntime": 2.0}) == "accelbench"
    assert fastest_cpu({"onnxruntime": 1.0, "accelbench": 1.0}) == "accelbench"  # a tie: ENGINE_ORDER
    assert fastest_cpu({"accelbench": None, "onnxruntime": float("nan"), "x": 0.0}) is None
    assert fastest_cpu({"accelbench": None, "onnxruntime": 3.0}) == "onnxruntime"  # only what was measured


def test_headline_is_over_the_fastest_cpu_engine(gpu_run: Path) -> None:
    rv = view.load([gpu_run]).current
    sp = rv.speedup_by_key
    b1, b2 = _case(rv, 1), _case(rv, 2)
    # batch 1: onnxruntime-CPU is 4x faster than accelbench-CPU, so the headline is 4x smaller than the
    # accelbench GPU's speedup over its own CPU
    assert b1.fastest_cpu == "onnxruntime"
    assert b1.per_engine["accelbench"].speedup == pytest.approx(10.0, rel=1e-9)
    assert b1.over_fastest_cpu["accelbench"].speedup == pytest.approx(2.5, rel=1e-9)
    assert "onnxruntime" not in b1.over_fastest_cpu and "CUDAExecutionProvider" in b1.why_not["onnxruntime"]
    # batch 2: onnxruntime-CPU is the slow one; it must not inflate the onnxruntime GPU's headline (80x)
    assert b2.fastest_cpu == "accelbench"
    assert b2.per_engine["onnxruntime"].speedup == pytest.approx(80.0, rel=1e-9)
    assert b2.over_fastest_cpu["onnxruntime"].speedup == pytest.approx(20.0, rel=1e-9)
    assert b2.over_fastest_cpu["accelbench"] is b2.per_engine["accelbench"]
    # the per-engine speedups are compare.speedups' (the view's), not a copy
    for c in (b1, b2):
        for e, s in c.per_engine.items():
            assert sp[c.side("gpu", e).record.key.pair_key] is s
    assert b1.engine_ratio["cpu"].speedup == pytest.approx(0.25, rel=1e-9)  # accelbench / onnxruntime images/s
    assert b2.engine_ratio["gpu"].speedup == pytest.approx(0.5, rel=1e-9)
    assert "gpu" not in b1.engine_ratio
    heads = rv.headline_by_key
    assert sorted(s.speedup for s, _ in heads.values()) == pytest.approx([2.5, 10.0, 20.0])


def _table(page: rh.Page) -> tuple[list[str], dict[str, list[rh.Cell]]]:
    head, b = page.engines  # the headline block, then one per model
    assert head.table is None and b.table is not None
    return b.table.columns, {r[0].text: r for r in b.table.rows}


def test_html_section_with_headline_and_dashes(gpu_run: Path) -> None:
    page = rh.build_page(view.load([gpu_run]))
    cols, rows = _table(page)
    cell = {b: dict(zip(cols, r, strict=True)) for b, r in rows.items()}
    h1 = cell["1"]["GPU accelbench over the fastest CPU"]
    assert h1.text == fmt_x(2.5) and "over CPU onnxruntime" in h1.title
    assert cell["1"]["GPU accelbench over CPU accelbench"].text == fmt_x(10.0)
    assert cell["2"]["GPU onnxruntime over the fastest CPU"].text == fmt_x(20.0)
    assert cell["1"]["fastest CPU engine"].text == "onnxruntime" and cell["2"]["fastest CPU engine"].text == "accelbench"
    # onnxruntime-gpu not installed: a dash, never a number, with the reason as its tooltip
    for col in ("onnxruntime GPU images/s", "GPU onnxruntime over the fastest CPU", "GPU onnxruntime over CPU onnxruntime",
                "accelbench / onnxruntime GPU"):
        c = cell["1"][col]
        assert c.text == DASH and c.sort is None and "CUDAExecutionProvider" in c.title, col
    assert cell["2"]["onnxruntime GPU images/s"].text.endswith("images/s")
    head, blk = page.engines
    (hc,) = head.charts  # every case's headline (filled) beside its per-engine speedup (open)
    pts = {t["name"]: dict(zip(t["y"], t["x"], strict=True)) for t in hc.figure["data"]}
    head_x, own_x = pts["GPU over the fastest CPU engine (headline)"], pts["GPU over its own CPU engine"]
    assert sorted(head_x.values()) == pytest.approx([2.5, 10.0, 20.0])
    assert sorted(own_x.values()) == pytest.approx([10.0, 10.0, 80.0])
    (y1,) = [y for y in head_x if "batch=1 · GPU accelbench" in y]
    assert head_x[y1] == pytest.approx(2.5) and own_x[y1] == pytest.approx(10.0) and "&lt;img" in y1
    assert len(blk.charts) == 1
    names = sorted(t["name"] for t in blk.charts[0].figure["data"])
    assert names == ["accelbench CPU", "accelbench GPU", "onnxruntime CPU"]  # onnxruntime GPU: one size only
    assert blk.charts[0] in page.charts
    # the workload table states the headline beside the per-engine speedup
    (wl,) = [b for b in page.speedup if b.title == "onnx"]
    assert wl.table is not None and HEADLINE in wl.table.columns
    i = wl.table.columns.index(HEADLINE)
    assert sorted(r[i].text for r in wl.table.rows if r[i].text != DASH) == sorted(
        fmt_x(x) for x in (2.5, 10.0, 20.0))


def test_html_real_cpu_run_shows_gpu_dashes_and_no_section_without_onnx(cpu_run: tuple[Path, str],
                                                                     tmp_path: Path) -> None:
    page = rh.build_page(view.load([cpu_run[0]]))
    cols, rows = _table(page)
    assert not page.engines[0].charts and "no headline to plot" in " ".join(page.engines[0].notes)
    assert set(rows) == {"1", "2"}
    for r in rows.values():
        c = dict(zip(cols, r, strict=True))
        assert c["accelbench CPU images/s"].text.endswith("images/s") and c["accelbench CPU images/s"].sort > 0
        for col in ("accelbench GPU images/s", "GPU accelbench over the fastest CPU"):
            assert c[col].text == DASH and "GPU unavailable" in c[col].title, col
        assert c["fastest CPU engine"].text in ("accelbench", "onnxruntime")
        assert c["accelbench / onnxruntime CPU"].sort > 0
    html = rh.render_html(view.load([cpu_run[0]]))
    assert 'id="engines"' in html and 'href="#engines"' in html
    other = rh.render_html(view.load([kernels_run(tmp_path)]))
    assert 'id="engines"' not in other and 'href="#engines"' not in other
    assert rh.build_page(view.load([kernels_run(tmp_path / "k2")])).engines == []


def test_hostile_model_name_is_escaped_in_html(gpu_run: Path) -> None:
    html = rh.render_html(view.load([gpu_run]))
    assert "<img" not in html and "onerror=\"window" not in html
    assert "tiny&lt;img src=x onerror=&#34;window.__pwned=3&#34;&gt;" in html


def _strip_ansi(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def test_terminal_of_run_and_report_neutralises_names(cpu_run: tuple[Path, str], gpu_run: Path) -> None:
    out = cpu_run[1]
    assert "onnx engines side by side" in out
    assert "\x1b[2J" not in out and "\\x1b[2J" in _strip_ansi(out)
    con = Console(record=True, width=400, color_system=None)
    terminal.render(view.load([gpu_run]).current, con)
    text = con.export_text()
    assert "vs fastest CPU" in text and f"{fmt_x(2.5)} (onnxruntime)" in text
    assert "\x1b[2J" not in text
    line = next(ln for ln in text.splitlines() if "onnx engines side by side" not in ln and "tiny<img" in ln
                and " 1 " in ln and "onnxruntime" in ln and fmt_x(2.5) in ln)
    assert fmt_x(10.0) in line  # the per-engine speedup beside the headline


def test_compare_run_shows_the_headline(gpu_run: Path, tmp_path: Path) -> None:
    mdfile = tmp_path / "c.md"
    r = CliRunner().invoke(app, ["compare", str(gpu_run), "--markdown", str(mdfile)])
    assert r.exit_code == 0, r.output
    assert "onnx engines side by side" in r.output and "fastest CPU" in r.output
    assert "\x1b[2J" not in r.output
    rows = [ln for ln in r.output.splitlines() if ln.startswith("tiny")]
    assert len(rows) == 2 and fmt_x(2.5) in rows[0] and fmt_x(20.0) in rows[1]
    md = mdfile.read_text(encoding="utf-8")
    assert "## onnx engines side by side" in md and "<img" not in md and "&lt;img" in md
    assert f"| {fmt_x(2.5)} |" in md

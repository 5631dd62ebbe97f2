"""The HTML report in a real browser: headless Chromium (Debian's package) driven by Playwright.

Each page must load with no console error and no network request, draw every chart (an SVG with marks in
it), hold the expected rows in its tables, sort them, and show hostile names as text without running
them. One browser per module; skipped with the reason when Chromium or Playwright is absent (.ci/run
installs Chromium).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accelbench import results
from accelbench.report import html as rh
from accelbench.report import view
from accelbench.report.html.machines import COLUMNS
from accelbench.report.html.model import PAGE_ROWS
from tests.large_runs import large_run
from tests.test_machines import fast_copy, slower_copy
from tests.test_report_engines import real_onnx_run, synthetic_gpu_run
from tests.test_report_html import HOSTILE_LABEL, HOSTILE_SUITE, kernels_run, models_run
from tests.test_report_html_machines import HOSTILE_GPU

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium_path() -> str | None:
    for p in (os.environ.get("ACCELBENCH_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
              shutil.which("chromium-browser")):
        if p and Path(p).exists():
            return p
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("headless Chromium not found (apt-get install chromium, or set ACCELBENCH_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Path]]]:
    """name -> (report file, the run directories it shows)."""
    root = tmp_path_factory.mktemp("browser-runs")
    k, ks = kernels_run(root), kernels_run(root, slow_matmul=True)
    m, h = models_run(root), kernels_run(root, suite=HOSTILE_SUITE)
    out = root / "reports"
    return {
        "kernels": (rh.write_report([k], out / "kernels.html"), [k]),
        "compare": (rh.write_report([k, ks], out / "compare.html"), [k, ks]),
        "models": (rh.write_report([m], out / "models.html"), [m]),
        "hostile": (rh.write_report([h], out / "hostile.html"), [h]),
        "machines": (rh.write_report([fast_copy(root), slower_copy(root, gpu=HOSTILE_GPU)],
                                     out / "machines.html"), []),
    }


@pytest.fixture(scope="module")
def opened(browser: Any, reports: dict[str, Any]) -> Iterator[Any]:
    """Each report opened once per module (parsing the inlined plotly.js takes seconds on a busy machine)."""
    cache: dict[str, Opened] = {}

    def get(name: str) -> Opened:
        if name not in cache:
            cache[name] = open_report(browser, reports[name][0])
        return cache[name]

    yield get
    for o in cache.values():
        o.page.close()


class Opened:
    def __init__(self, page: Any, console: list[tuple[str, str]], requests: list[str]) -> None:
        self.page, self.console, self.requests = page, console, requests


def open_report(browser: Any, path: Path) -> Opened:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    console: list[tuple[str, str]] = []
    requests: list[str] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_function("document.body.hasAttribute('data-charts-rendered') || "
                           "document.body.hasAttribute('data-charts-error')", timeout=30_000)
    return Opened(page, console, requests)


# Marks plotly draws per trace type: bars, markers/lines, boxes.
MARKS = ".barlayer .point path, .scatterlayer path.point, .scatterlayer path.js-line, .boxlayer path.box"


def chart_marks(page: Any) -> dict[str, int]:
    return page.evaluate("""(sel) => Object.fromEntries(
        Array.from(document.querySelectorAll('[data-chart]')).map(el => {
            const svg = el.querySelector('svg.main-svg');
            const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
            const n = (r.width > 0 && r.height > 0) ? el.querySelectorAll(sel).length : 0;
            return [el.id, n];
        }))""", MARKS)


def assert_clean_and_drawn(o: Opened, path: Path) -> dict[str, int]:
    assert not [c for c in o.console if c[0] in ("error", "pageerror", "warning")], o.console
    assert o.requests == [path.resolve().as_uri()], "the page must need nothing beyond its own file"
    assert o.page.evaluate("document.body.getAttribute('data-charts-error')") is None
    figures = json.loads(o.page.evaluate("document.getElementById('ab-figures').textContent"))
    marks = chart_marks(o.page)
    assert set(marks) == set(figures) and len(marks) == int(o.page.evaluate(
        "document.body.getAttribute('data-charts-rendered')"))
    empty = [k for k, n in marks.items() if n == 0]
    assert not empty, f"charts drawn without marks: {empty}"
    return marks


def table_rows(page: Any, table_id: str) -> int:
    return int(page.evaluate("(id) => document.getElementById(id).tBodies[0].rows.length", table_id))


def test_kernels_report_loads_draws_and_tables_hold_rows(opened: Any, reports: dict[str, Any]):
    path, (run,) = reports["kernels"]
    df = results.load(run)
    o = opened("kernels")
    marks = assert_clean_and_drawn(o, path)
    # the gemm speedup against m: one line through one point per size measured on both backends; one box
    # per case and backend
    assert marks["chart-speedup-gemm"] == 3 + 1
    assert o.page.locator("#chart-speedup-gemm .scatterlayer path.js-line").count() == 1
    n_ok = int((df["status"] == "ok").sum())
    box_marks = sum(n for k, n in marks.items() if k.startswith("chart-dist"))
    assert box_marks == n_ok
    for wl in set(df["workload"]):
        assert table_rows(o.page, f"table-{rh.slug(wl)}") == int(((df["workload"] == wl)
                                                                   & (df["status"] != "skipped")).sum())
    assert table_rows(o.page, "table-problems") == int((df["status"] != "ok").sum())
    # the reasons are on the page, as text
    text = o.page.inner_text("#problems")
    assert "FAILED VALIDATION" in text and "CuPy is not installed </td></table><b>x</b>" in text


def test_tables_sort_numerically_with_missing_last(opened: Any):
    o = opened("kernels")
    col = o.page.evaluate("""() => Array.from(document.querySelectorAll('#table-gemm th'))
                              .findIndex(th => th.textContent.trim() === 'median')""")
    assert col >= 0

    def column() -> list[str | None]:
        return o.page.evaluate("""(c) => Array.from(document.querySelectorAll('#table-gemm tbody tr'))
                                   .map(r => r.cells[c].getAttribute('data-sort'))""", col)

    before = column()
    o.page.click(f"#table-gemm th:nth-child({col + 1})")
    asc = column()
    nums = [float(v) for v in asc if v is not None]
    assert nums == sorted(nums) and asc[len(nums):] == [None] * (len(asc) - len(nums))
    o.page.click(f"#table-gemm th:nth-child({col + 1})")
    desc = column()
    nums_d = [float(v) for v in desc if v is not None]
    assert nums_d == sorted(nums, reverse=True) and desc[len(nums_d):] == [None] * (len(desc) - len(nums_d))
    assert sorted(map(str, before)) == sorted(map(str, desc))  # same rows, reordered


def test_compare_report_verdicts_regressions_first(opened: Any, reports: dict[str, Any]):
    path, (base, new) = reports["compare"]
    o = opened("compare")
    marks = assert_clean_and_drawn(o, path)
    (tid,) = o.page.evaluate("Array.from(document.querySelectorAll('#run-vs-run table')).map(t => t.id)")
    assert table_rows(o.page, tid) == len(results.load(new))
    from accelbench.compare import VERDICTS

    verdicts = o.page.evaluate("(id) => Array.from(document.getElementById(id).tBodies[0].rows)"
                               ".map(r => [r.cells[0].textContent, getComputedStyle(r.cells[0]).color])", tid)
    order = [VERDICTS.index(v) for v, _ in verdicts]
    assert order == sorted(order)  # regressions first
    # each verdict has its own colour on the page
    colours = {v: c for v, c in verdicts}
    assert len(set(colours.values())) == len(colours)
    (cid,) = [k for k in marks if k.startswith("chart-cmp")]
    measured = int((results.load(base)["status"] == "ok").sum())
    assert marks[cid] == measured  # one marker per case measured in both runs


def test_models_report(opened: Any, reports: dict[str, Any]):
    path, _ = reports["models"]
    o = opened("models")
    marks = assert_clean_and_drawn(o, path)
    assert marks["chart-model-batch-inference"] >= 2  # a line (and markers) per backend
    assert marks["chart-model-layers"] == 2  # one segment per layer of the one profiled case
    assert marks["chart-model-tta"] == 1
    assert table_rows(o.page, "table-tta") == 1
    assert "power: not recorded in this run" in o.page.inner_text("#counters")


def test_hostile_names_show_as_text_and_run_nothing(opened: Any, reports: dict[str, Any]):
    path, _ = reports["hostile"]
    o = opened("hostile")
    assert_clean_and_drawn(o, path)
    p = o.page
    assert p.evaluate("typeof window.__pwned") == "undefined"
    assert p.evaluate("document.querySelectorAll('script').length") == 3  # plotly, figure JSON, page script
    assert p.evaluate("document.querySelectorAll('img').length") == 0
    assert HOSTILE_SUITE in p.title()
    assert HOSTILE_SUITE in p.inner_text("h1")
    assert HOSTILE_LABEL in p.inner_text("#table-scale")
    # inside the charts too: plotly shows the label as literal SVG text
    svg_texts = p.evaluate("Array.from(document.querySelectorAll('svg text')).map(t => t.textContent)")
    assert any(HOSTILE_LABEL in t for t in svg_texts)


def test_machines_section_draws_sorts_and_shows_a_hostile_machine_as_text(opened: Any, reports: dict[str, Any]):
    path, _ = reports["machines"]
    o = opened("machines")
    marks = assert_clean_and_drawn(o, path)
    p = o.page
    assert p.evaluate("typeof window.__pwned") == "undefined" and p.evaluate(
        "document.querySelectorAll('img').length") == 0
    n = table_rows(p, "table-machines")
    assert n > 0 and n % 2 == 0  # a row per case and machine
    (cid,) = [k for k in marks if k.startswith("chart-machines")]
    assert marks[cid] == n // 2  # one marker per case, on the one other machine
    assert HOSTILE_GPU in p.inner_text("#machine-vs-machine")
    svg_texts = p.evaluate("Array.from(document.querySelectorAll('#machine-vs-machine svg text'))"
                           ".map(t => t.textContent)")
    assert any(HOSTILE_GPU in t for t in svg_texts)  # legend and axis title, as literal text
    col = COLUMNS.index("speedup")
    p.click(f"#table-machines th:nth-child({col + 1})")
    keys = p.evaluate("(c) => Array.from(document.querySelectorAll('#table-machines tbody tr'))"
                      ".map(r => r.cells[c].getAttribute('data-sort'))", col)
    nums = [float(v) for v in keys if v is not None]
    assert nums == sorted(nums) and nums[0] < 1 and nums[-1] == 1.0  # 0.5s, then the reference rows


def test_report_of_a_real_runner_run(browser: Any, tmp_path: Path):
    """End to end: the runner measures a small CPU suite (real workloads), the CLI writes the report."""
    from typer.testing import CliRunner

    from accelbench.cli import app

    suite = tmp_path / "s.yaml"
    suite.write_text("suite: e2e\ndefaults:\n  backends: [gpu, cpu]\n  timing: {min_samples: 5, min_time_s: 0.0, "
                     "max_time_s: 0.03, warmup: 1, warmup_time_s: 0.0}\nbenchmarks:\n"
                     "  - workload: t_scale\n    params: {n: [1000, 20000]}\n"
                     "  - workload: t_wrong\n  - workload: t_raise\n")
    r = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "res")])
    assert r.exit_code in (0, 1), r.output
    out = tmp_path / "rep.html"
    r = CliRunner().invoke(app, ["report", str(tmp_path / "res"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    df = results.load(tmp_path / "res")
    o = open_report(browser, out)
    assert_clean_and_drawn(o, out)
    for wl in set(df["workload"]):
        assert table_rows(o.page, f"table-{rh.slug(wl)}") == int(((df["workload"] == wl)
                                                                   & (df["status"] != "skipped")).sum())
    assert table_rows(o.page, "table-problems") == int((df["status"] != "ok").sum())
    o.page.close()


@pytest.mark.slow  # writes a 1,500-case run and its report, then parses it in Chromium
def test_large_table_pages_sort_and_filter_across_all_rows(browser: Any, tmp_path: Path):
    """A 1,500-case run: its workload tables show 100 rows a page; the pager moves through them, and
    sorting and the filter reach the rows of every page, not just the visible one."""
    v = view.load([large_run(tmp_path, "large", 1500, seed=1)])
    out = tmp_path / "large.html"
    out.write_text(rh.render_html(v), encoding="utf-8")
    t = next(b.table for b in rh.build_page(v).speedup if b.title == "scale")
    assert t is not None and t.paginated
    n, i_col, med_col = len(t), t.columns.index("i"), t.columns.index("median")
    pages = -(-n // PAGE_ROWS)
    o = open_report(browser, out)
    assert_clean_and_drawn(o, out)
    p = o.page
    pager = f'.pager[data-for="{t.id}"]'

    def shown(col: int, attr: bool = False) -> list[Any]:
        js = "r.cells[c].getAttribute('data-sort')" if attr else "r.cells[c].textContent"
        return p.evaluate(f"([id, c]) => Array.from(document.getElementById(id).tBodies[0].rows).map(r => {js})",
                          [t.id, col])

    def status() -> str:
        return p.inner_text(f"{pager} .pager-status")

    # page 1: the first 100 rows, as the page model orders them, in the cells' own markup
    assert table_rows(p, t.id) == PAGE_ROWS and status() == f"rows 1–{PAGE_ROWS} of {n} · page 1 of {pages}"
    assert shown(i_col) == [r[i_col].text for r in t.rows[:PAGE_ROWS]]
    first = p.evaluate("(id) => document.getElementById(id).tBodies[0].rows[0].cells[1].className", t.id)
    assert first == t.rows[0][1].cls  # the backend cell's class (colour) survives the JSON
    assert p.is_disabled(f"{pager} .pager-prev") and not p.is_disabled(f"{pager} .pager-next")
    p.click(f"{pager} .pager-next")
    assert shown(i_col) == [r[i_col].text for r in t.rows[PAGE_ROWS:2 * PAGE_ROWS]]
    assert status().startswith(f"rows {PAGE_ROWS + 1}–{2 * PAGE_ROWS} of {n} · page 2")
    for _ in range(pages - 2):
        p.click(f"{pager} .pager-next")
    assert p.is_disabled(f"{pager} .pager-next")
    p.click(f"{pager} .pager-next", force=True)  # past the end: the last page stays
    assert shown(i_col) == [r[i_col].text for r in t.rows[(pages - 1) * PAGE_ROWS:]]
    assert status() == f"rows {(pages - 1) * PAGE_ROWS + 1}–{n} of {n} · page {pages} of {pages}"
    # sorting orders all rows: page 1 then holds the smallest medians of the whole table
    keys = sorted(float(r[med_col].sort) for r in t.rows if r[med_col].sort is not None)
    p.click(f"#{t.id} th:nth-child({med_col + 1})")
    assert [float(v) for v in shown(med_col, attr=True)] == keys[:PAGE_ROWS]
    assert status().startswith(f"rows 1–{PAGE_ROWS} of {n} · page 1")
    p.click(f"#{t.id} th:nth-child({med_col + 1})")
    assert [float(v) for v in shown(med_col, attr=True)] == keys[::-1][:PAGE_ROWS]
    # the filter searches every row's text (each word somewhere in the row), in the current order
    last = t.rows[-1][i_col].text  # a row of the last page

    def matching(*words: str) -> list[str]:
        hits = [r for r in t.rows if all(any(w in c.text.lower() for c in r) for w in words)]
        hits.sort(key=lambda r: -float(r[med_col].sort))
        return [r[i_col].text for r in hits]

    p.fill(f"{pager} .pager-filter", last)
    want = matching(last)
    assert last in shown(i_col) and shown(i_col) == want[:PAGE_ROWS]
    assert status().startswith(f"rows 1–{len(want)} of {len(want)} matching of {n}")
    p.fill(f"{pager} .pager-filter", f"CPU  {last}")
    assert shown(i_col) == matching("cpu", last)
    p.fill(f"{pager} .pager-filter", "no such text anywhere")
    assert table_rows(p, t.id) == 0 and status() == f"no row of {n} matches"
    p.fill(f"{pager} .pager-filter", "")
    assert table_rows(p, t.id) == PAGE_ROWS and status() == f"rows 1–{PAGE_ROWS} of {n} · page 1 of {pages}"
    assert not [c for c in o.console if c[0] in ("error", "pageerror", "warning")], o.console
    p.close()

@pytest.mark.slow
def test_onnx_engines_section_draws(browser: Any, tmp_path: Path):
    """The engines side by side of a real onnx CPU run plus its synthetic GPU side (tests/test_report_engines:
    real CPU samples scaled, recorded as gpu): no console error, the images/s chart drawn, the hostile
    model name shown as text."""
    cpu, _ = real_onnx_run(tmp_path / "cpu")
    out = rh.write_report([synthetic_gpu_run(tmp_path / "gpu", cpu)], tmp_path / "onnx.html")
    o = open_report(browser, out)
    marks = assert_clean_and_drawn(o, out)
    p = o.page
    assert marks["chart-engines-headline"] == 6  # 3 GPU cases: over the fastest CPU and over their own
    (cid,) = [k for k in marks if k.startswith("chart-engines") and k != "chart-engines-headline"]
    assert p.locator(f"#{cid} .scatterlayer path.js-line").count() == 3  # accelbench CPU/GPU, onnxruntime CPU
    (tid,) = p.evaluate("Array.from(document.querySelectorAll('#engines table')).map(t => t.id)")
    assert table_rows(p, tid) == 2  # batch 1 and 2
    assert p.evaluate("typeof window.__pwned") == "undefined" and p.evaluate(
        "document.querySelectorAll('#engines img').length") == 0
    assert "tiny<img src=x" in p.inner_text("#engines")
    o.page.close()

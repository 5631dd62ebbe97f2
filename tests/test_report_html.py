"""HTML report: view models, escaping and writing, on run directories built from real measurements.

The runs here are written with accelbench.results.RunWriter from real CpuTimer measurements of small
NumPy operations (no hand-typed numbers). This machine has no GPU, so the "gpu" cases of these fixtures
are stand-ins: real CPU timings of a *different implementation* of the same operation, recorded under the
backend name "gpu" so the GPU-vs-CPU pairing, speedup and roofline paths run. The records say so in
their ``variant``. ``test_report_html_browser.py`` opens the same pages in headless Chromium.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from accelbench import environment, results
from accelbench.compare import LoadedRun, compare_runs, load_side
from accelbench.errors import ResultsError, UsageError
from accelbench.identity import CaseKey
from accelbench.measure.counters import CounterSampler
from accelbench.measure.timing import CpuTimer, TimingPolicy
from accelbench.report import html as rh
from accelbench.report import view

HOSTILE_SUITE = "k<script>window.__pwned=1</script>"
HOSTILE_LABEL = "<img src=x onerror=\"window.__pwned=2\">"
FAST = TimingPolicy(warmup=1, warmup_time_s=0.0, min_samples=12, max_samples=40, min_time_s=0.0,
                    max_time_s=0.03, target_rel_ci=0.5, min_sample_time_s=2e-4)
STANDIN = {"stand_in": "real CPU timing of a second implementation, recorded as gpu (no GPU in CI)"}


def _case_id(suite: str, workload: str, label: str | None, params: dict[str, Any], backend: str) -> str:
    return CaseKey.of(suite, workload, label, params, backend).id


def _name(workload: str, label: str | None, params: dict[str, Any]) -> str:
    head = f"{workload}[{label}]" if label else workload
    return f"{head} " + " ".join(f"{k}={v}" for k, v in params.items())


class Builder:
    """Measures small NumPy operations for real and writes them as one run directory."""

    def __init__(self, root: Path, suite: str, env: dict[str, Any] | None = None) -> None:
        rid = results.new_run_id(root)
        run = results.RunRecord(run_id=rid, suite=suite, started_at=results.now_iso(), accelbench_version="test",
                                environment=env if env is not None else environment.fingerprint(with_gpu=False),
                                options={"quick": True}, git=environment.git_info())
        self.w = results.RunWriter(root, run)
        self.suite = suite
        self.sampler = CounterSampler(interval_s=0.005)
        self.sampler.start()
        self.cases: list[results.CaseRecord] = []

    def rec(self, workload: str, params: dict[str, Any], backend: str, label: str | None = None,
            family: str = "test", **kw: Any) -> results.CaseRecord:
        return results.CaseRecord(run_id=self.w.run.run_id, case_id=_case_id(self.suite, workload, label, params,
                                                                              backend),
                                  suite=self.suite, workload=workload, family=family,
                                  name=_name(workload, label, params), label=label, params=params,
                                  backend=backend,
                                  status="ok", **kw)

    def timed(self, workload: str, params: dict[str, Any], backend: str, fn: Callable[[], Any],
              out: Callable[[], np.ndarray], ref: np.ndarray, work: dict[str, Any], label: str | None = None,
              family: str = "test", variant: dict[str, Any] | None = None, tol: float = 1e-4) -> None:
        fn()
        err = float(np.linalg.norm(out() - ref) / np.linalg.norm(ref))
        r = self.rec(workload, params, backend, label, family, work=work, variant=variant or {})
        r.validation = {"passed": err <= tol, "rel_error": err, "tolerance": tol, "reference": "float64 NumPy"}
        if err > tol:
            r.status, r.message = "failed", f"FAILED VALIDATION: relative error {err:.3g} exceeds {tol:.3g}"
        else:
            with self.sampler.case(r.case_id, backend) as cc:
                r.timing = CpuTimer().measure(fn, FAST)
            r.counters = cc.result()
            med = r.timing.summary.median
            r.throughput = {k: v for k, v in (("gflops", work.get("flops", 0) / med / 1e9),
                                              ("gbps", work.get("bytes", 0) / med / 1e9),
                                              ("items_per_s", work.get("items", 0) / med)) if v}
        self.add(r)

    def add(self, r: results.CaseRecord) -> None:
        self.w.append(r)
        self.cases.append(r)

    def close(self) -> Path:
        self.sampler.stop()
        counts = {s: sum(c.status == s for c in self.cases) for s in ("ok", "failed", "skipped", "error")}
        self.w.close("finished", counts)
        return self.w.dir


def kernels_run(root: Path, suite: str = "kernels-t", slow_matmul: bool = False,
                env: dict[str, Any] | None = None) -> Path:
    """gemm and scale sweeps on cpu + stand-in gpu, a case that fails validation, an errored and a skipped
    one, and a case whose label is hostile HTML. ``slow_matmul`` plants a real 2x slowdown (the work runs
    twice) for the run-vs-run verdicts."""
    b = Builder(root, suite, env)
    rng = np.random.default_rng(0)
    for m in (24, 48, 96):
        a = rng.standard_normal((m, m)).astype(np.float32)
        c = rng.standard_normal((m, m)).astype(np.float32)
        ref = a.astype(np.float64) @ c.astype(np.float64)
        work = {"flops": 2.0 * m**3, "bytes": 3.0 * 4 * m * m, "items": m * m, "item_unit": "elements"}
        box: dict[str, np.ndarray] = {}
        reps = 2 if slow_matmul and m == 96 else 1

        def cpu(a: np.ndarray = a, c: np.ndarray = c, box: dict[str, np.ndarray] = box, reps: int = reps) -> None:
            for _ in range(reps):
                box["y"] = np.dot(a, c)

        def gpu(a: np.ndarray = a, c: np.ndarray = c, box: dict[str, np.ndarray] = box) -> None:
            box["y"] = np.einsum("ij,jk->ik", a, c)  # a slower second implementation: the stand-in

        for be, fn in (("cpu", cpu), ("gpu", gpu)):
            b.timed("gemm", {"m": m, "n": m, "k": m, "dtype": "float32"}, be, fn, lambda box=box: box["y"], ref,
                    work, family="blas", variant=STANDIN if be == "gpu" else {})
    for n in (1000, 100000):
        x = rng.uniform(-1, 1, n).astype(np.float32)
        y = np.empty_like(x)
        ref = x.astype(np.float64) * 2
        work = {"flops": float(n), "bytes": 8.0 * n, "items": float(n), "item_unit": "elements"}
        b.timed("scale", {"n": n}, "cpu", lambda x=x, y=y: np.multiply(x, 2.0, out=y), lambda y=y: y, ref, work,
                family="elementwise")
        b.timed("scale", {"n": n}, "gpu", lambda x=x, y=y: np.add(x, x, out=y), lambda y=y: y, ref, work,
                family="elementwise", variant=STANDIN)
    # a plausible but wrong kernel: validation catches it for real
    x = rng.uniform(-1, 1, 1000).astype(np.float32)
    y = np.empty_like(x)
    b.timed("scale", {"n": 1000}, "cpu", lambda: np.multiply(x, 2.01, out=y), lambda: y, x.astype(np.float64) * 2,
            {"flops": 1000.0, "bytes": 8000.0}, label="wrong", family="elementwise")
    try:
        np.zeros((3, 4)) @ np.zeros((5, 6))
    except ValueError as e:
        r = b.rec("gemm", {"m": 3, "n": 6, "k": 4, "dtype": "float32"}, "cpu", label="bad-shape", family="blas")
        r.status, r.message = "error", f"{type(e).__name__}: {e}"
        b.add(r)
    r = b.rec("gemm", {"m": 4096, "n": 4096, "k": 4096, "dtype": "float16"}, "gpu", label="big", family="blas")
    r.status, r.message = "skipped", "GPU unavailable: CuPy is not installed </td></table><b>x</b>"
    b.add(r)
    x2 = rng.uniform(-1, 1, 500).astype(np.float32)
    y2 = np.empty_like(x2)
    b.timed("scale", {"n": 500, "note": HOSTILE_LABEL}, "cpu", lambda: np.multiply(x2, 2.0, out=y2), lambda: y2,
            x2.astype(np.float64) * 2, {"flops": 500.0, "bytes": 4000.0}, label=HOSTILE_LABEL, family="elementwise")
    return b.close()


def _dense_forward(ws: list[np.ndarray], x: np.ndarray, times: dict[str, float] | None = None) -> np.ndarray:
    for i, w in enumerate(ws):
        t0 = time.perf_counter()
        x = x @ w
        if i < len(ws) - 1:
            x = np.maximum(x, 0)
        if times is not None:
            times[f"dense{i}"] = times.get(f"dense{i}", 0.0) + time.perf_counter() - t0
    return x


def models_run(root: Path) -> Path:
    """A tiny dense network on the digits data: inference images/s at three batch sizes (cpu + stand-in
    gpu), a measured per-layer profile, and a real train-to-accuracy (logistic regression by SGD)."""
    from sklearn.datasets import load_digits

    b = Builder(root, "cnn-t")
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((64, 64)).astype(np.float32) * 0.1, rng.standard_normal((64, 10)).astype(np.float32)]
    flops_per_img = 2.0 * (64 * 64 + 64 * 10)
    for batch in (1, 8, 64):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        ref = _dense_forward([w.astype(np.float64) for w in ws], x.astype(np.float64))
        box: dict[str, np.ndarray] = {}
        work = {"flops": flops_per_img * batch, "items": float(batch), "item_unit": "images"}
        params = {"model": "mlp", "batch": batch}

        def cpu(x: np.ndarray = x, box: dict[str, np.ndarray] = box) -> None:
            box["y"] = _dense_forward(ws, x)

        def gpu(x: np.ndarray = x, box: dict[str, np.ndarray] = box) -> None:
            box["y"] = np.einsum("ij,jk->ik", np.maximum(np.einsum("ij,jk->ik", x, ws[0]), 0), ws[1])

        for be, fn in (("cpu", cpu), ("gpu", gpu)):
            b.timed("inference", params, be, fn, lambda box=box: box["y"], ref, work, family="model",
                    variant=STANDIN if be == "gpu" else {})
    # per-layer profile, measured
    x = rng.standard_normal((64, 64)).astype(np.float32)
    times: dict[str, float] = {}
    for _ in range(20):
        _dense_forward(ws, x, times)
    r = b.rec("profile", {"model": "mlp", "batch": 64}, "cpu", family="model",
              work={"items": 64.0, "item_unit": "images"})
    r.metrics = {"layers": [{"name": k, "forward_s": v / 20} for k, v in times.items()]}
    b.add(r)
    # train to accuracy: softmax regression by SGD on digits until 90% test accuracy
    d = load_digits()
    X = d.data / 16.0
    idx = rng.permutation(len(X))
    tr, te = idx[:1400], idx[1400:]
    W = np.zeros((64, 10))
    t0 = time.perf_counter()
    acc, epochs = 0.0, 0
    while acc < 0.9 and epochs < 50:
        for i in range(0, len(tr), 32):
            bi = tr[i:i + 32]
            z = X[bi] @ W
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(bi)), d.target[bi]] -= 1
            W -= 0.5 * X[bi].T @ p / len(bi)
        epochs += 1
        acc = float((np.argmax(X[te] @ W, 1) == d.target[te]).mean())
    r = b.rec("train_to_accuracy", {"model": "softmax", "batch": 32}, "cpu", family="model",
              work={"item_unit": "images"})
    r.metrics = {"time_to_accuracy_s": time.perf_counter() - t0, "test_accuracy": acc, "target_accuracy": 0.9,
                 "epochs": epochs, "reached": acc >= 0.9}
    b.add(r)
    return b.close()


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report-runs")
    return {"kernels": kernels_run(root), "kernels_slow": kernels_run(root, slow_matmul=True),
            "hostile_suite": kernels_run(root, suite=HOSTILE_SUITE), "models": models_run(root)}


def page_of(*paths: Path, title: str | None = None) -> rh.Page:
    """The page of these run directories, through the report view as `accelbench report` builds it."""
    return rh.build_page(view.load(list(paths)), title)


# ---------------------------------------------------------------- pure helpers


def test_script_json_cannot_close_the_script_element():
    s = str(rh.script_json({"name": "</script><script>alert(1)</script><!--", "x": [math.nan, math.inf, 1.5],
                            "sep": "a\u2028b"}))
    assert "<" not in s and ">" not in s and "\u2028" not in s
    back = json.loads(s)  # still valid JSON that decodes to the original text
    assert back["name"] == "</script><script>alert(1)</script><!--"
    assert back["x"] == [None, None, 1.5] and back["sep"] == "a\u2028b"


def test_ceilings_measured_theoretical_and_absent():
    env = {"peaks": {"gpu": {"d2d_copy_gbps": 1800.0, "gemm_gflops": {"float16": 700000.0}},
                     "cpu": {"stream_triad_gbps": 20.0}},
           "gpu": {"theoretical_bandwidth_gbps": 2000.0}}
    cs = rh.ceilings(env)
    kinds = {(c.backend, c.kind, c.provenance) for c in cs}
    assert ("gpu", "memory", "measured") in kinds and ("gpu", "compute", "measured") in kinds
    assert ("cpu", "memory", "measured") in kinds
    # a measured GPU bandwidth wins over the theoretical one
    assert not any(c.provenance == "theoretical" for c in cs)
    only_theory = rh.ceilings({"gpu": {"theoretical_bandwidth_gbps": 2000.0}})
    assert [(c.kind, c.provenance, c.value) for c in only_theory] == [("memory", "theoretical", 2000.0)]
    assert rh.ceilings({}) == []


# ---------------------------------------------------------------- view models over real runs


def test_workload_tables_hold_every_case(runs: dict[str, Path]):
    df = results.load(runs["kernels"])
    page = page_of(runs["kernels"])
    by_title = {b.title: b for b in page.speedup}
    assert set(by_title) == set(df["workload"])
    for wl, blk in by_title.items():
        # measured, failed and errored cases are rows; skipped ones are counted in a note (listed under
        # Problems)
        assert blk.table is not None
        assert len(blk.table) == int(((df["workload"] == wl) & (df["status"] != "skipped")).sum())
        n_skipped = int(((df["workload"] == wl) & (df["status"] == "skipped")).sum())
        assert sum(int(n.split()[0]) for n in blk.notes if "skipped" in n) == n_skipped
    # gemm ran on both backends at every size: one speedup chart with one bar per size
    gemm = by_title["gemm"]
    sp = [c for c in gemm.charts if c.id.startswith("chart-speedup")]
    assert len(sp) == 1 and len(sp[0].figure["data"][0]["y"]) == 3
    # the bars are compare's speedups (CPU time / GPU time), in the order of the sweep
    from accelbench.compare import load_side, speedups

    by_key = {s.key: s.speedup for s in speedups(load_side(runs["kernels"]))}
    gpu = df[(df["workload"] == "gemm") & (df["backend"] == "gpu") & (df["status"] == "ok")]
    expected = [by_key[k] for k in gpu["pair_key"]]
    assert np.allclose(sp[0].figure["data"][0]["y"], expected)
    # and they agree in direction with the medians: the einsum stand-in is the slower one here
    med = df[df["status"] == "ok"].set_index("case_id")["median_s"]
    for cid, v in zip(gpu["case_id"], expected, strict=True):
        assert (v < 1) == (med[cid] > med[cid.replace("@gpu", "@cpu")])


def test_problems_listed_with_reasons(runs: dict[str, Path]):
    df = results.load(runs["kernels"])
    page = page_of(runs["kernels"])
    t = page.problems.table
    assert t is not None
    statuses = sorted(row[1].text for row in t.rows)
    assert statuses == sorted(df.loc[df["status"] != "ok", "status"])
    assert {"failed", "error", "skipped"} <= set(statuses)
    reasons = " ".join(row[4].text for row in t.rows)
    assert "FAILED VALIDATION" in reasons and "ValueError" in reasons and "CuPy is not installed" in reasons


def test_roofline_places_cases_with_flops_and_bytes(runs: dict[str, Path]):
    df = results.load(runs["kernels"])
    page = page_of(runs["kernels"])
    (ch,) = page.roofline.charts
    placed = sum(len(t["x"]) for t in ch.figure["data"] if t["mode"] == "markers")
    ok = df[df["status"] == "ok"]
    assert placed == int(((ok["flops"] > 0) & (ok["bytes"] > 0)).sum())
    # no measured peaks in these runs and no GPU: the page says the ceilings are absent
    assert any("ceiling absent" in n for n in page.roofline.notes)


def test_models_sections(runs: dict[str, Path]):
    page = page_of(runs["models"])
    blocks = {b.id: b for b in page.models}
    (thr,) = blocks["models-throughput"].charts  # one chart per workload with a batch axis
    assert thr.id == "chart-model-batch-inference"
    assert {len(t["x"]) for t in thr.figure["data"]} == {3}  # three batch sizes per backend
    assert sorted(t["name"] for t in thr.figure["data"]) == ["mlp @cpu", "mlp @gpu"]
    (layers,) = blocks["models-layers"].charts
    assert [t["name"] for t in layers.figure["data"]] == ["0: dense0", "1: dense1"]
    tta = blocks["models-accuracy"]
    assert tta.table is not None and len(tta.table) == 1 and tta.charts
    # counters: psutil ones were recorded; the GPU ones were not, and the page says so
    assert page.counters.table is not None and len(page.counters.table) > 0
    assert any(n.startswith("power: not recorded") for n in page.counters.notes)


def test_absent_things_are_said_not_plotted(tmp_path: Path):
    b = Builder(tmp_path, "empty-ish")
    r = b.rec("gemm", {"m": 8}, "gpu", family="blas")
    r.status, r.message = "skipped", "GPU unavailable: no CUDA driver"
    b.add(r)
    d = b.close()
    page = page_of(d)
    (blk,) = page.speedup
    assert not blk.charts
    # said once for the page, and counted for the workload
    assert any("No GPU-vs-CPU speedup" in x and "no CUDA driver" in x for x in page.banners)
    assert any(n.startswith("1 gpu case(s) skipped") for n in blk.notes)
    assert page.roofline.charts == [] and page.roofline.notes
    assert page.counters.notes and page.counters.table is None


def test_run_vs_run_regressions_first(runs: dict[str, Path]):
    from accelbench.compare import VERDICTS

    base = results.load(runs["kernels"])
    v = view.load([runs["kernels"], runs["kernels_slow"]])
    page = rh.build_page(v)
    (blk,) = page.comparisons
    assert blk.table is not None
    rows = blk.table.rows
    ((_, cmp),) = v.comparisons  # computed once, in the view: what compare BASE NEW computes
    again = compare_runs(load_side(runs["kernels"]), load_side(runs["kernels_slow"]))
    assert [(c.key, c.verdict, c.ratio) for c in cmp.cases] == [(c.key, c.verdict, c.ratio) for c in again.cases]
    # the table is compare's verdicts, every case of both runs, regressions first
    assert sorted((r[0].text, r[1].text, r[2].text) for r in rows) == \
        sorted((c.verdict, c.name, c.backend) for c in cmp.cases)
    assert len(rows) == len(base)
    assert all(r[0].cls == f"vd-{r[0].text}" for r in rows)
    order = [VERDICTS.index(r[0].text) for r in rows]
    assert order == sorted(order)
    # within a verdict group, the largest ratio first
    for verdict in set(r[0].text for r in rows):
        ratios = [float(r[5].text) for r in rows if r[0].text == verdict and r[5].text != "–"]
        assert ratios == sorted(ratios, reverse=True), verdict
    # the planted 2x slowdown (gemm m=96 on cpu) shows compare's ratio, verdict and CI for that case, and
    # every row before it is of an earlier verdict or of its own with a larger ratio. (How large the
    # measured ratio comes out depends on the machine's load while the fixtures ran: not asserted here.)
    planted = next(i for i, r in enumerate(rows) if "m=96" in r[1].text and r[2].text == "cpu")
    pc = next(c for c in cmp.cases if "m=96" in c.name and c.backend == "cpu")
    assert pc.ratio is not None and pc.ci_low is not None and pc.ci_high is not None
    assert (rows[planted][0].text, rows[planted][5].text) == (pc.verdict, f"{pc.ratio:.3f}")
    assert rows[planted][6].text == (f"{pc.ci_low:.3f} – {pc.ci_high:.3f}" if 0 < pc.ci_high < math.inf else "–")
    assert all(VERDICTS.index(r[0].text) < VERDICTS.index(pc.verdict) or float(r[5].text) >= pc.ratio - 5e-4
               for r in rows[:planted])


def test_write_report_atomic_and_errors(runs: dict[str, Path], tmp_path: Path):
    out = rh.write_report([runs["kernels"]], tmp_path / "r" / "k.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Plotly" in text
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    # a bad run leaves the existing report untouched and nothing half-written
    before = out.read_bytes()
    with pytest.raises(ResultsError):
        rh.write_report([tmp_path / "no-such-run"], out)
    assert out.read_bytes() == before
    with pytest.raises(UsageError):
        rh.write_report([runs["kernels"]], tmp_path / "k.txt")
    with pytest.raises(UsageError):
        rh.write_report([], tmp_path / "x.html")
    # a directory as -o gets the default file name inside it
    d = rh.write_report([runs["kernels"]], tmp_path)
    assert d.parent == tmp_path and d.suffix == ".html"


def test_hostile_names_are_escaped_in_the_html(runs: dict[str, Path], tmp_path: Path):
    out = rh.write_report([runs["hostile_suite"]], tmp_path / "h.html")
    text = out.read_text(encoding="utf-8")
    body = text.split("<script>", 1)[0]  # everything before plotly.js: our markup
    assert "<script>window.__pwned" not in text
    assert HOSTILE_LABEL not in text and "</td></table><b>x</b>" not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in body
    # the only script elements are ours: plotly, the figure JSON, the page script
    assert len(re.findall(r"<script\b", text)) == 3


def test_the_report_view_is_the_input(runs: dict[str, Path]):
    # the page depends only on the view: records in memory render as well as records read from files
    run, cases = results.read_run(runs["kernels"])
    v = view.build([LoadedRun(run, cases, "in-memory")])
    assert isinstance(v.current.frame, pd.DataFrame) and len(v.current.frame) == len(cases)
    assert all(r is c for r, c in zip(v.current.frame["record"], cases, strict=True))  # the records, not dumps
    html_text = rh.render_html(v)
    assert "in-memory" in html_text


def test_run_without_cases_still_renders(tmp_path: Path):
    # a run killed before its first case finished: the page renders and says what is missing
    run = results.RunRecord(run_id="r0", suite="s", started_at=results.now_iso(),
                            environment=environment.fingerprint(with_gpu=False))
    w = results.RunWriter(tmp_path, run)
    w._cases.close()  # as a killed process leaves it: run.json says "running", cases.jsonl empty
    page = page_of(w.dir)
    assert page.charts == [] and page.speedup == []
    assert any("did not finish" in x for x in page.runs[0].warnings)
    text = rh.render_html(view.load([w.dir]))
    assert "No case was recorded" in text and "Every case ran and validated." not in text


def test_roofline_roof_from_peaks(runs: dict[str, Path]):
    # peaks taken from this run's own best measurements: every case sits under the roof, and the roof
    # bends at the ridge point (compute peak / bandwidth)
    v = view.load([runs["kernels"]])
    df = v.current.frame
    ok = df[(df["status"] == "ok") & (df["backend"] == "cpu")]
    bw, pk = float(ok["gbps"].max()), float(ok["gflops"].max())
    env = v.current.run.environment
    env["peaks"] = {"cpu": {"provenance": "measured", "best_gbps": bw, "best_gflops": pk}}
    page = rh.build_page(v)
    (ch,) = page.roofline.charts
    lines = {t["name"]: t for t in ch.figure["data"] if t["mode"] == "lines"}
    mem = next(t for n, t in lines.items() if "GB/s" in n)
    cmp_ = next(t for n, t in lines.items() if "GFLOP/s" in n)
    ridge = pk / bw
    assert math.isclose(mem["x"][1], ridge) and math.isclose(mem["y"][1], pk)
    assert math.isclose(cmp_["x"][0], ridge) and cmp_["y"] == [pk, pk]
    assert not any("above their measured ceiling" in n for n in page.roofline.notes)
    assert any(n.startswith("gpu: bandwidth and compute ceiling absent") for n in page.roofline.notes)
    # a ceiling under what the run achieved is called out, not silently drawn
    env["peaks"]["cpu"]["best_gflops"] = pk / 2
    page = rh.build_page(v)
    assert any("above their measured ceiling" in n for n in page.roofline.notes)


def test_percent_of_peak_columns_only_when_recorded(runs: dict[str, Path]):
    v = view.load([runs["kernels"]])
    df = v.current.frame
    page = rh.build_page(v)
    assert not any("% of peak" in c for b in page.speedup if b.table for c in b.table.columns)
    # the runner adds these to throughput when the machine was calibrated: derive one from the data
    i = df.index[(df["workload"] == "gemm") & (df["status"] == "ok")][0]
    rec = df.at[i, "record"]
    rec.throughput["flops_percent_of_measured"] = 100 * rec.throughput["gflops"] / float(df["gflops"].max())
    page = rh.build_page(v)
    gemm = next(b for b in page.speedup if b.title == "gemm")
    assert gemm.table is not None
    col = gemm.table.columns.index("% of peak GFLOP/s")
    cells = [row[col] for row in gemm.table.rows]
    assert sum(c.sort is not None for c in cells) == 1 and "% of peak GB/s" not in gemm.table.columns


def drift_run(root: Path) -> Path:
    """A GPU-vs-CPU pair with 100 samples a side whose GPU times drift in blocks (1, 2, 3 ms): compare's
    blocked Hodges-Lehmann speedup (10 / sqrt(2)) differs from the ratio of sample medians (10 / 1.5)."""
    run = results.RunRecord(run_id="drift", suite="d", started_at=results.now_iso())
    w = results.RunWriter(root, run)
    rng = np.random.default_rng(5)
    gpu = np.repeat([1, 1, 1, 1, 1, 2, 2, 2, 3, 3], 10) * 1e-3 * rng.lognormal(0, 0.001, 100)
    cpu = 1e-2 * rng.lognormal(0, 0.001, 100)
    for be, x in (("cpu", cpu), ("gpu", gpu)):
        params = {"n": 1}
        w.append(results.CaseRecord(
            run_id=run.run_id, case_id=_case_id("d", "w", None, params, be), suite="d", workload="w", name="w n=1",
            params=params, backend=be, status="ok", validation={"passed": True, "rel_error": 0.0},
            timing=results.Timing(method="cpu-perf_counter", samples_s=list(x), inner_loops=1,
                                  summary=results.TimingSummary.of(list(x)))))
    w.close("finished", {"ok": 2})
    return w.dir


def test_terminal_html_and_compare_show_the_one_speedup_of_each_case(runs: dict[str, Path], tmp_path: Path):
    """Defect: the terminal printed a ratio of medians while ``compare RUN`` and the HTML page showed the
    block Hodges-Lehmann estimate. Every reporter now shows compare.speedups' number for each case."""
    import io
    import re as _re

    from rich.console import Console
    from typer.testing import CliRunner

    from accelbench.cli import app
    from accelbench.compare import load_side, speedups
    from accelbench.report import terminal

    for d, n in ((runs["kernels"], 5), (drift_run(tmp_path), 1)):
        run = load_side(d)
        sp = speedups(run)
        want = sorted(f"{s.speedup:.3g}" for s in sp)
        assert len(want) == n  # kernels: gemm at three sizes, scale at two
        if n == 1:  # the two definitions differ here, so the check below tells them apart
            assert f"{sp[0].cpu_s / sp[0].gpu_s:.3g}" != want[0] == f"{10 / math.sqrt(2):.3g}"
        con = Console(file=io.StringIO(), width=400, record=True)
        terminal.render(view.run_view(run), con)
        shown: list[str] = []
        for table in _re.split(r"\n(?=\S.*\n┏)", con.export_text()):
            rows = [[c.strip() for c in _re.split("[│┃]", ln)[1:-1]] for ln in table.splitlines()
                    if _re.search("[│┃]", ln)]
            if rows and "speedup" in rows[0]:
                col = rows[0].index("speedup")
                shown += [r[col].rstrip("×") for r in rows[1:] if r[col]]
        assert sorted(shown) == want
        page = page_of(d)
        html_cells = [r[t.columns.index("speedup (CPU/GPU)")].text.rstrip("×") for b in page.speedup
                      if (t := b.table) is not None for r in t.rows]
        assert sorted(c for c in html_cells if c != "–") == want
        out = CliRunner().invoke(app, ["compare", str(d)]).output
        cli = [m.group(1) for ln in out.splitlines()[1:] if (m := _re.match(r"\s*([\d.e+-]+)[x×]\s", ln))]
        assert sorted(cli) == want

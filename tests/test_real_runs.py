"""The report and compare code on a real GPU run (examples/runs/h100-cnn: cnn.yaml on an H100 and its host
CPU), so CI exercises the GPU-vs-CPU paths with real numbers, not only with runs made on this CPU machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from accelbench import compare, results
from accelbench.cli import app

RUN = Path(__file__).resolve().parents[1] / "examples" / "runs" / "h100-cnn"


def test_the_real_run_loads_with_both_backends_and_its_machine() -> None:
    df = results.load(RUN)
    assert set(df["backend"]) == {"gpu", "cpu"}
    assert (df["gpu_name"].dropna() == "NVIDIA H100 80GB HBM3").all()
    ok = df[df["status"] == "ok"]
    assert ok["valid"].all()
    assert len(df[df["status"] == "failed"]) == 3  # stated in examples/runs/README.md


def test_speedups_are_cpu_over_gpu_medians_with_a_ci_around_them() -> None:
    run = compare.load_side(RUN)
    sp = compare.speedups(run)
    df = results.load(RUN)
    med = {(r.case_id.rsplit("@", 1)[0], r.backend): r.median_s for r in df.itertuples()}
    assert len(sp) >= 15
    for s in sp:
        assert s.speedup == pytest.approx(med[(s.key, "cpu")] / med[(s.key, "gpu")], rel=1e-9)
        assert s.ci_low <= s.speedup <= s.ci_high
    # the GPU's advantage grows with the batch for the classic network's inference
    inf = {int(k.split('"batch":')[1].split(",")[0]): s.speedup for s in sp for k in [s.key]
           if k.startswith("cnn/inference/") and '"model":"mnist-classic"' in k and '"cuda_graph":false' in k}
    batches = sorted(inf)
    assert batches[0] == 1 and batches[-1] >= 256
    assert np.all(np.diff([inf[b] for b in batches]) > 0)


def test_report_of_the_real_run_names_the_gpu_and_lists_the_failures(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["report", str(RUN), "-o", str(out)])
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert "NVIDIA H100 80GB HBM3" in html
    assert "FAILED VALIDATION" in html and "gradient relative error" in html


def test_compare_within_the_run_prints_whole_case_names_and_no_fake_interval() -> None:
    """``accelbench compare RUN`` (GPU against CPU): names once cut at 60 characters made the sgd and adam
    train steps at batch 64 look alike, and a CPU case with 3 samples printed its CI as "0x..infx"."""
    r = CliRunner().invoke(app, ["compare", str(RUN)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:2] == ["speedup", "95%"]
    adam = [ln for ln in lines if "train_step[adam] model=mnist-classic batch=64 " in ln and "optimizer=adam" in ln]
    sgd = [ln for ln in lines if "train_step model=mnist-classic batch=64 " in ln and "optimizer=sgd" in ln]
    assert len(adam) == 1 and len(sgd) == 1
    sp = {s.name: s for s in compare.speedups(compare.load_side(RUN))}
    few = [s for s in sp.values() if s.ci_high == float("inf")]
    assert few, "the run has CPU cases with too few samples for a CI"
    assert "infx" not in r.output and r.output.count("too few samples") == len(few)
    # parameters every case shares are said once, not on every row
    assert "dtype=float32" not in "".join(lines[1:-1]) and "every case: dtype=float32" in lines[-1]


def test_records_written_before_the_label_field_get_their_identity_from_the_id_once_on_read() -> None:
    """The H100 run is schema version 1 without ``label``: read_run fills it from the case id, and the key
    built from the record's fields is exactly the id stored in the file."""
    assert '"label"' not in (RUN / "cases.jsonl").read_text()
    _, cases = results.read_run(RUN)
    assert {c.label for c in cases} == {None, "adam", "graph", "gpu-large"}
    assert sum(c.label == "adam" for c in cases) == 2  # train_step[adam] on the GPU and the CPU
    for c in cases:
        assert c.key.id == c.case_id


def test_the_speedup_chart_reads_at_a_glance_speedup_against_batch_one_line_per_model() -> None:
    """The chart once stacked ~40 rotated full case names; now: x = the batch sizes that ran, one line per
    model, named by the model alone, y = compare.speedups (the number every reporter shows)."""
    from accelbench.report import html as rh
    from accelbench.report import view

    page = rh.build_page(view.load([RUN]))
    (ch,) = [c for b in page.speedup if b.title == "inference" for c in b.charts if c.id.startswith("chart-speedup")]
    data, lay = ch.figure["data"], ch.figure["layout"]
    assert [t["name"] for t in data] == ["mnist-classic", "mnist-classic-bn", "mnist-residual", "cifar-wide"]
    assert lay["xaxis"]["title"]["text"] == "batch size" and lay["xaxis"]["ticktext"] == ["1", "16", "64", "256", "512"]
    sp = {(s.name.split(" batch=")[0], int(s.name.split(" batch=")[1].split()[0])): s.speedup
          for s in compare.speedups(compare.load_side(RUN)) if s.name.startswith("inference ")}
    for t in data:
        assert t["mode"] == "lines+markers" and t["x"] == sorted(t["x"])
        assert t["y"] == [sp[(f"inference model={t['name']}", int(b))] for b in t["x"]]

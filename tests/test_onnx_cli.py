"""The onnx workload and CLI end to end (real onnxruntime, real files), and bad input: one line naming
the file, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from accelbench import results
from accelbench.cli import app
from accelbench.onnx import zoo

runner = CliRunner()
FAST = "timing: {min_samples: 2, min_time_s: 0.0, max_time_s: 0.05, warmup: 1, warmup_time_s: 0.0}"


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("models") / "tiny.onnx"
    onnx.save(zoo.build("tiny_cnn", 32, seed=1), p)
    return p


def _suite(tmp: Path, params: str, name: str = "s.yaml") -> Path:
    p = tmp / name
    p.write_text(f"suite: t\ndefaults:\n  backends: [cpu]\n  {FAST}\nbenchmarks:\n"
                 f"  - workload: onnx\n    params: {params}\n")
    return p


def test_suite_runs_both_engines_validated(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tiny.onnx").write_bytes(tiny.read_bytes())
    s = _suite(tmp_path, "{model: m/tiny.onnx, batch: [1, 3], engine: [accelbench, onnxruntime], "
                         "fold_batchnorm: [false, true]}")
    r = invoke("run", s, "--out", tmp_path / "res", "--json")
    assert r.exit_code == 0, r.output
    df = results.load(tmp_path / "res")
    assert len(df) == 8 and set(df["status"]) == {"ok"} and df["valid"].all()
    recs = [json.loads(line) for line in next((tmp_path / "res").iterdir()).joinpath("cases.jsonl").read_text().splitlines()]
    refs = {r["params"]["engine"]: r["validation"]["reference"] for r in recs}
    assert "onnxruntime" in refs["accelbench"] and "float64" in refs["onnxruntime"]
    assert all(r["work"]["flops"] > 0 and r["work"]["item_unit"] == "images" for r in recs)


def test_run_model_file_without_yaml(tiny: Path, tmp_path: Path) -> None:
    r = invoke("list", tiny, "--json")
    assert r.exit_code == 0, r.output
    cases = json.loads(r.output)
    assert {c["params"]["batch"] for c in cases} == {1, 16, 64}
    assert {c["params"]["engine"] for c in cases} == {"accelbench", "onnxruntime"}
    assert {c["backend"] for c in cases} == {"gpu", "cpu"}
    r = invoke("run", tiny, "--backend", "cpu", "--quick", "--filter", "batch=1 ", "--out", tmp_path / "res")
    assert r.exit_code == 0, r.output
    assert set(results.load(tmp_path / "res")["status"]) == {"ok"}


def test_validate_and_inspect(tiny: Path) -> None:
    r = invoke("validate", tiny)
    assert r.exit_code == 0 and "6 cases" in r.output, r.output
    r = invoke("inspect", tiny, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["supported"] and info["opset"] == 17 and info["inputs"][0]["shape"] == ["N", 3, 32, 32]
    assert {o["op"]: o["count"] for o in info["ops"]}["Conv"] == 4
    assert [b["batch"] for b in info["per_batch"]] == [1, 16, 64]
    b1, b16 = info["per_batch"][0], info["per_batch"][1]
    assert b16["flops"] == pytest.approx(16 * b1["flops"]) and b16["peak_memory_bytes"] > b1["peak_memory_bytes"]
    assert invoke("inspect", tiny).exit_code == 0


def test_profile_model_file(tiny: Path) -> None:
    r = invoke("profile", tiny, "--batch", "2", "--backend", "cpu", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)["results"]
    assert set(res) == {"cpu/accelbench", "cpu/onnxruntime"}
    assert "Conv" in res["cpu/accelbench"]["ops"] and "Conv" in res["cpu/onnxruntime"]["ops"]
    assert all(n["time_s"] >= 0 for n in res["cpu/accelbench"]["nodes"])


def test_fp16_and_cuda_graph_skip_on_cpu_with_reason(tiny: Path, tmp_path: Path) -> None:
    s = _suite(tmp_path, f"{{model: {tiny}, dtype: float16, cuda_graph: true}}")
    r = invoke("run", s, "--out", tmp_path / "res", "--json")
    assert r.exit_code == 0, r.output
    df = results.load(tmp_path / "res")
    assert list(df["status"]) == ["skipped"] and "gpu" in df["message"][0]


# ---------------------------------------------------------------- bad input


def _one_line_exit_2(r, name: str) -> str:  # type: ignore[no-untyped-def]
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert name in lines[0], lines[0]
    return lines[0]


def _model(nodes: list, opset: int = 17, extra_opsets: list | None = None, inits: list | None = None,
           x_shape: list | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape or ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    g = helper.make_graph(nodes, "g", [x], [y], inits or [])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *(extra_opsets or [])])


@pytest.mark.parametrize("cmd", ["validate", "run", "inspect"])
def test_not_onnx_and_truncated(tmp_path: Path, tiny: Path, cmd: str) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is a text file, not a model\n")
    msg = _one_line_exit_2(invoke(cmd, bad, *(["--out", tmp_path / "res"] if cmd == "run" else [])), "notes.onnx")
    assert "not an ONNX model" in msg
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny.read_bytes()[: tiny.stat().st_size // 2])
    _one_line_exit_2(invoke(cmd, cut, *(["--out", tmp_path / "res"] if cmd == "run" else [])), "cut.onnx")
    assert not (tmp_path / "res").exists()  # nothing half-written


def test_missing_external_data(tmp_path: Path) -> None:
    m = zoo.build("tiny_cnn", 32)
    p = tmp_path / "ext.onnx"
    onnx.save_model(m, p, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.bin",
                    size_threshold=0)
    assert invoke("validate", p).exit_code == 0
    (tmp_path / "ext.bin").unlink()
    msg = _one_line_exit_2(invoke("validate", p), "ext.onnx")
    assert "external data" in msg


def test_opset_newer_than_supported_and_unknown_domain(tmp_path: Path) -> None:
    p = tmp_path / "new.onnx"
    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"])], opset=99), p)
    _one_line_exit_2(invoke("validate", p), "new.onnx")
    p = tmp_path / "dom.onnx"
    m = _model([helper.make_node("Frobnicate", ["x"], ["y"], name="f1", domain="com.example")],
               extra_opsets=[helper.make_opsetid("com.example", 1)])
    onnx.save(m, p)
    msg = _one_line_exit_2(invoke("validate", p), "dom.onnx")
    assert "domain 'com.example'" in msg and "'f1'" in msg and "supported ops: " in msg and "Conv" in msg


def test_unsupported_op_names_node_op_opset(tmp_path: Path) -> None:
    p = tmp_path / "op.onnx"
    onnx.save(_model([helper.make_node("Einsum", ["x", "x"], ["y"], name="e1", equation="ij,ij->ij")]), p)
    msg = _one_line_exit_2(invoke("validate", p), "op.onnx")
    assert "node 'e1' ('Einsum') at opset 17: not supported" in msg


def test_names_with_terminal_and_html_escapes_are_neutralised(tmp_path: Path) -> None:
    evil = "\x1b[31m<script>alert(1)</script>[bold]x"
    p = tmp_path / "evil.onnx"
    onnx.save(_model([helper.make_node("Einsum", ["x", "x"], ["y"], name=evil, equation="ij,ij->ij")]), p)
    r = invoke("validate", p)
    msg = _one_line_exit_2(r, "evil.onnx")
    assert "\x1b" not in r.output and "\\x1b[31m<script>" in msg and "[bold]x" in msg


def test_input_shape_contradicting_the_model(tmp_path: Path, tiny: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 16, 16), np.float32))
    s = _suite(tmp_path, f"{{model: {tiny}, batch: 2, input: x.npy}}")
    msg = _one_line_exit_2(invoke("validate", s), "x.npy")
    assert "(2, 3, 16, 16)" in msg and "(2, 3, 32, 32)" in msg
    np.save(tmp_path / "ok.npy", np.ones((2, 3, 32, 32), np.float32))
    assert invoke("validate", _suite(tmp_path, f"{{model: {tiny}, batch: 2, input: ok.npy}}", "ok.yaml")).exit_code == 0
    fixed = tmp_path / "fixed.onnx"
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    onnx.save(_model([helper.make_node("MatMul", ["x", "w"], ["y"])], inits=[w], x_shape=[1, 4]), fixed)
    msg = _one_line_exit_2(invoke("validate", _suite(tmp_path, f"{{model: {fixed}, batch: 8}}", "f.yaml")), "f.yaml")
    assert "fixed batch of 1" in msg and "fixed.onnx" in msg
    missing = _one_line_exit_2(invoke("validate", _suite(tmp_path, "{model: nowhere.onnx}", "m.yaml")), "m.yaml")
    assert "nowhere.onnx: no such file" in missing


@pytest.mark.gpu
def test_gpu_cases_validate(tiny: Path, tmp_path: Path) -> None:
    """accelbench on CuPy (eager, CUDA graph, float16) and onnxruntime's CUDA provider when installed."""
    s = _suite(tmp_path, f"{{model: {tiny}, batch: [1, 8], cuda_graph: [false, true]}}").read_text()
    s = s.replace("backends: [cpu]", "backends: [gpu]")
    s += f"  - workload: onnx\n    params: {{model: {tiny}, batch: 8, dtype: float16}}\n"
    s += f"  - workload: onnx\n    params: {{model: {tiny}, batch: 8, engine: onnxruntime}}\n"
    (tmp_path / "g.yaml").write_text(s)
    r = invoke("run", tmp_path / "g.yaml", "--out", tmp_path / "res", "--json")
    df = results.load(tmp_path / "res")
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 5 and ok["valid"].all(), r.output
    ort_rows = df[df["case_id"].str.contains("onnxruntime")]
    assert ort_rows["status"].iloc[0] in ("ok", "skipped")


def test_model_over_the_memory_limit_is_refused_before_running(tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    onnx.save(zoo.build("tiny_cnn", 1024), big)  # 64 MiB of activations per image
    s = _suite(tmp_path, f"{{model: {big}, batch: 4096}}")
    msg = _one_line_exit_2(invoke("validate", s), "s.yaml")
    assert "would not fit in cpu memory" in msg
    r = invoke("run", s, "--out", tmp_path / "res")
    _one_line_exit_2(r, "s.yaml")
    assert not (tmp_path / "res").exists()

"""accelbench.onnx: planner (folding, fusion, liveness, work model) and executor against onnxruntime and
onnx.reference.ReferenceEvaluator on graphs built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from accelbench.onnx import executor, importer, planner, zoo
from accelbench.workloads.base import rel_error


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], **kw: object) -> tuple[list[np.ndarray], planner.Plan]:
    lm = importer.load_checked(model)
    p = planner.plan(lm, **kw)  # type: ignore[arg-type]
    return executor.Executor(p).run_host(feeds), p


@pytest.fixture(scope="module")
def tiny() -> onnx.ModelProto:
    return zoo.build("tiny_cnn", 32, seed=3)


def _x(n: int = 3, size: int = 32) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(1).standard_normal((n, 3, size, size)).astype(np.float32)}


def test_tiny_cnn_matches_onnxruntime_with_and_without_bn_folding(tiny: onnx.ModelProto) -> None:
    ref = _ort(tiny, _x())[0]
    plain, p0 = _run(tiny, _x())
    folded, p1 = _run(tiny, _x(), fold_batchnorm=True)
    assert p0.bn_folded == 0 and p1.bn_folded == 4
    assert not any(s.op_type == "BatchNormalization" for s in p1.steps)
    assert rel_error(plain[0], ref) < 1e-5 and rel_error(folded[0], ref) < 1e-5


def test_relu_fused_into_conv_only_when_conv_has_one_reader(tiny: onnx.ModelProto) -> None:
    lm = importer.load_checked(tiny)
    p = planner.plan(lm, fold_batchnorm=True)
    fused = [s for s in p.steps if s.attrs.get("_relu")]
    assert fused and all(s.op_type == "Conv" and "Relu" in s.fused for s in fused)
    # the Relu after the residual Add reads an Add, not a Conv: it stays
    assert any(s.op_type == "Relu" for s in p.steps)


def test_liveness_frees_every_intermediate_after_its_last_reader(tiny: onnx.ModelProto) -> None:
    p = planner.plan(importer.load_checked(tiny), input_shapes={"input": (2, 3, 32, 32)})
    freed = [n for s in p.steps for n in s.free]
    produced = [o for s in p.steps for o in s.outputs if o]
    assert sorted(freed) == sorted(set(produced) - set(p.outputs)) + [i.name for i in p.inputs] or \
        set(freed) == (set(produced) - set(p.outputs)) | {i.name for i in p.inputs}
    last_read = {n: s.index for s in p.steps for n in s.inputs if n}
    for s in p.steps:
        for n in s.free:
            assert last_read.get(n, s.index) == s.index, n
    # the executor drops them: only the graph output survives a run
    ex = executor.Executor(p)
    seen: list[int] = []
    env_sizes = []

    def hook(st: planner.Step, dt: float) -> None:
        seen.append(st.index)

    ex.run(ex.prepare_inputs(_x(2)), on_step=hook)
    assert seen == list(range(len(p.steps)))
    del env_sizes
    peak, two = p.peak_activation_bytes()
    assert two[0] >= two[1] > 0 and peak >= two[0]


def _dynamic_batch_reshape_model() -> onnx.ModelProto:
    """The Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain of a dynamic-batch export."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 36])
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["shape2"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "shape2"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "dyn", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_chains_fold_for_known_input_shapes() -> None:
    m = _dynamic_batch_reshape_model()
    lm = importer.load_checked(m)
    p = planner.plan(lm, input_shapes={"x": (5, 4, 3, 3)})
    assert [s.op_type for s in p.steps] == ["Reshape", "Relu"] and p.folded == 4
    dyn = planner.plan(lm)  # batch unknown: the chain runs at run time
    assert [s.op_type for s in dyn.steps][:2] == ["Shape", "Gather"]
    x = np.random.default_rng(0).standard_normal((5, 4, 3, 3)).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    for pl in (p, dyn):
        np.testing.assert_array_equal(executor.Executor(pl).run_host({"x": x})[0], want)


@pytest.mark.parametrize("group,dil,pads,stride,auto", [
    (1, 2, [1, 2, 2, 1], 1, None), (4, 1, [0, 0, 0, 0], 2, None), (8, 1, None, 2, "SAME_UPPER"),
    (2, 1, None, 3, "SAME_LOWER"), (1, 1, [1, 1, 1, 1], 1, None), (16, 2, [2, 1, 2, 1], 2, None),
    (16, 1, None, 1, "SAME_UPPER"),
])
def test_conv_attributes_against_reference_evaluator(group: int, dil: int, pads: list[int] | None, stride: int,
                                                     auto: str | None) -> None:
    rng = np.random.default_rng(group * 10 + dil)
    c = 16 if group == 16 else 8  # group 16: depthwise (C = F = groups)
    x = rng.standard_normal((2, c, 11, 9)).astype(np.float32)
    w = rng.standard_normal((16, c // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    attrs: dict[str, object] = {"group": group, "dilations": [dil, dil], "strides": [stride, stride]}
    if auto:
        attrs["auto_pad"] = auto
    else:
        attrs["pads"] = pads
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="c", **attrs)  # type: ignore[arg-type]
    g = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "f", "h", "w"])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    got, _ = _run(m, {"x": x})
    assert got[0].shape == want.shape
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name,gmacs", [("resnet50", 4.09), ("resnet18", 1.81), ("mobilenet_v2", 0.30)])
def test_work_model_matches_published_gmacs(name: str, gmacs: float) -> None:
    """Published multiply-accumulates per 224x224 image (torchvision / the papers), within 2%."""
    p = planner.plan(importer.load_checked(zoo.build(name, 224)), input_shapes={"input": (1, 3, 224, 224)})
    assert abs(p.macs / 1e9 - gmacs) / gmacs < 0.02, p.macs
    assert p.flops >= 2 * p.macs


def test_work_model_of_one_conv_and_gemm_is_exact() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.ones((10, 4 * 8 * 8), np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    m = helper.make_model(helper.make_graph(nodes, "w", [x], [y], [w, fc]), opset_imports=[helper.make_opsetid("", 17)])
    p = planner.plan(importer.load_checked(m), input_shapes={"x": (2, 3, 8, 8)})
    conv, _flat, gemm = p.steps
    assert conv.work.macs == 2 * 4 * 8 * 8 * 27
    assert gemm.work.macs == 2 * 10 * 256
    assert p.weight_bytes == (4 * 27 + 10 * 256) * 4


def test_float64_execution_for_the_reference_engine_check(tiny: onnx.ModelProto) -> None:
    lm = importer.load_checked(tiny)
    ex = executor.Executor(planner.plan(lm), np, "float64")
    out = ex.run(ex.prepare_inputs(_x(1)))
    assert out[0].dtype == np.float64
    assert rel_error(out[0], _ort(tiny, _x(1))[0]) < 1e-5


@pytest.mark.gpu
def test_gpu_executor_and_cuda_graph_match_cpu(tiny: onnx.ModelProto) -> None:
    import cupy as cp

    from accelbench.models.network import CudaGraph

    lm = importer.load_checked(tiny)
    p = planner.plan(lm, input_shapes={"input": (3, 3, 32, 32)})
    cpu = executor.Executor(p).run_host(_x())[0]
    ex = executor.Executor(p, cp)
    feeds = ex.prepare_inputs(_x())
    assert rel_error(cp.asnumpy(ex.run(feeds)[0]), cpu) < 1e-4
    box: list[object] = []
    graph = CudaGraph(cp, lambda: box.append(ex.run(feeds)[0]))
    graph.launch()
    cp.cuda.get_current_stream().synchronize()
    assert rel_error(cp.asnumpy(box[-1]), cpu) < 1e-4  # type: ignore[arg-type]
    half = executor.Executor(p, cp, "float16").run_host(_x())[0]
    assert rel_error(half, cpu) < 2e-2


def test_zoo_files_are_deterministic_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path))
    p = zoo.path_for("zoo:tiny_cnn@48")
    first = p.read_bytes()
    assert p.parent == tmp_path / "onnx" and "tiny_cnn-48-seed0" in p.name
    p.unlink()
    assert zoo.path_for("zoo:tiny_cnn@48").read_bytes() == first
    assert not list(p.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="not a zoo model"):
        zoo.parse_ref("zoo:lenet")


def test_engines_side_by_side_takes_the_fastest_cpu_engine() -> None:
    from accelbench.identity import CaseKey
    from accelbench.onnx.engines import side_by_side
    from accelbench.results import CaseRecord, Timing

    def rec(backend: str, engine: str, med: float, batch: int = 1) -> CaseRecord:
        params = {"model": "m.onnx", "batch": batch, "engine": engine}
        cid = CaseKey.of("s", "onnx", None, params, backend).id
        return CaseRecord(run_id="r", case_id=cid, suite="s", workload="onnx", name=f"onnx batch={batch}",
                          params=params, backend=backend, status="ok",  # type: ignore[arg-type]
                          timing=Timing(method="m", samples_s=[med], summary={"median": med}))

    (t,) = side_by_side([rec("cpu", "accelbench", 4.0), rec("cpu", "onnxruntime", 1.0), rec("gpu", "accelbench", 0.5),
                         rec("gpu", "onnxruntime", 0.25), rec("cpu", "accelbench", 9.0, batch=16)])
    r, r16 = t.cases  # by batch
    assert (r.batch, r16.batch) == (1, 16) and t.engines == ["accelbench", "onnxruntime"]
    assert r.fastest_cpu == "onnxruntime"
    assert {e: s.speedup for e, s in r.over_fastest_cpu.items()} == pytest.approx({"accelbench": 2.0, "onnxruntime": 4.0})
    assert {e: s.speedup for e, s in r.per_engine.items()} == pytest.approx({"accelbench": 8.0, "onnxruntime": 4.0})
    assert r16.over_fastest_cpu == {} and r16.fastest_cpu == "accelbench"
    assert "not in this run" in r16.why_not.get("accelbench", r16.side("gpu", "accelbench").reason)

"""Model specs: shape inference, impossible networks refused with the layer's position and shapes (also
through the suite loader, down to the YAML line), model-name validation in workload parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from accelbench import suite as suite_mod
from accelbench.errors import SuiteError
from accelbench.models import spec as S
from accelbench.models.workloads import TrainStepParams

REPO = Path(__file__).resolve().parents[1]


def _spec(layers: list[Any], input: list[int] | None = None, classes: int = 10) -> S.ModelSpec:
    return S.ModelSpec.model_validate({"input": input or [1, 28, 28], "classes": classes, "layers": layers})


def test_classic_shapes_and_flops() -> None:
    m = S.classic_mnist()
    assert m.shapes[0] == (32, 28, 28)
    assert m.shapes[4] == (64, 28, 28)
    assert m.shapes[6] == (64, 14, 14)
    assert m.shapes[7] == (12544,)
    assert m.shapes[-1] == (10,)
    macs = 28 * 28 * (32 * 1 * 9 + 64 * 32 * 9 + 64 * 64 * 9) + 12544 * 64 + 64 * 10
    assert m.forward_flops() == 2 * macs


def test_strides_padding_pools_and_residual_shapes() -> None:
    m = _spec([{"kind": "conv", "out": 8, "kernel": 5, "stride": 2, "pad": 2},  # 16x16
               {"kind": "residual", "out": 16, "stride": 2},  # 8x8, projection
               {"kind": "residual", "out": 16},  # identity
               {"kind": "maxpool", "size": 3, "stride": 2},  # (8-3)//2+1 = 3
               {"kind": "avgpool", "size": 3},  # 1
               "flatten", "dropout", {"kind": "dense", "out": 10}], input=[3, 32, 32])
    assert m.shapes[:6] == [(8, 16, 16), (16, 8, 8), (16, 8, 8), (16, 3, 3), (16, 1, 1), (16,)]
    r1, r2 = m.layers[1], m.layers[2]
    assert isinstance(r1, S.Residual) and isinstance(r2, S.Residual)
    assert S.residual_projects(r1, (8, 16, 16))
    assert not S.residual_projects(r2, (16, 8, 8))


def _err(layers: list[Any], **kw: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as ei:
        _spec(layers, **kw)
    errs = ei.value.errors()
    assert len(errs) == 1
    return dict(errs[0])


def test_kernel_larger_than_input_names_layer_and_shapes() -> None:
    e = _err([{"kind": "conv", "out": 4, "kernel": 5}, {"kind": "maxpool", "size": 2}, "flatten",
              {"kind": "dense", "out": 10}], input=[1, 4, 4])
    assert e["loc"] == ("layers", 0)
    assert "layer 0 (conv)" in e["msg"] and "5x5" in e["msg"] and "1x4x4" in e["msg"]


def test_conv_after_flatten_is_refused() -> None:
    e = _err(["flatten", {"kind": "conv", "out": 4}, {"kind": "dense", "out": 10}])
    assert e["loc"] == ("layers", 1)
    assert "layer 1 (conv)" in e["msg"] and "784" in e["msg"]


def test_zero_channels_is_refused() -> None:
    e = _err([{"kind": "conv", "out": 8, "pad": "same"}, {"kind": "conv", "out": 0}, "flatten",
              {"kind": "dense", "out": 10}])
    assert e["loc"] == ("layers", 1)
    assert "0 output channels" in e["msg"] and "8x28x28" in e["msg"]
    e = _err(["flatten", {"kind": "dense", "out": 10}], input=[0, 28, 28])
    assert e["loc"] == ("input",)


def test_pool_window_too_large_and_dense_on_images() -> None:
    e = _err([{"kind": "maxpool", "size": 4}, {"kind": "maxpool", "size": 8}, "flatten",
              {"kind": "dense", "out": 10}], input=[1, 16, 16])
    assert e["loc"] == ("layers", 1) and "8x8" in e["msg"] and "1x4x4" in e["msg"]
    e = _err([{"kind": "dense", "out": 10}])
    assert e["loc"] == ("layers", 0) and "flatten" in e["msg"]


def test_head_must_produce_class_scores() -> None:
    e = _err(["flatten", {"kind": "dense", "out": 7}])
    assert e["loc"] == ("layers", 1) and "10 scores" in e["msg"] and "ends in 7" in e["msg"]


def test_unknown_kind_and_unknown_option() -> None:
    with pytest.raises(ValidationError):
        _spec(["flatten", {"kind": "lstm"}, {"kind": "dense", "out": 10}])
    with pytest.raises(ValidationError) as ei:
        _spec(["flatten", {"kind": "dense", "out": 10, "units": 3}])
    assert ei.value.errors()[0]["loc"][:2] == ("layers", 1)


def test_model_param_must_name_a_defined_model() -> None:
    models = {"tiny": _spec(["flatten", {"kind": "dense", "out": 10}])}
    p = TrainStepParams.model_validate({"model": "tiny", "batch": 4}, context={"models": models})
    assert p.spec is models["tiny"]
    with pytest.raises(ValidationError) as ei:
        TrainStepParams.model_validate({"model": "nope"}, context={"models": models})
    err = ei.value.errors()[0]
    assert err["loc"] == ("model",) and "tiny" in err["msg"]
    # built-in definitions need no suite entry
    assert TrainStepParams.model_validate({"model": "mnist-classic"}).spec == S.classic_mnist()


SUITE = """\
suite: bad
defaults: {backends: [cpu]}
models:
  ok:
    input: [1, 8, 8]
    classes: 10
    layers: [flatten, {kind: dense, out: 10}]
  broken:
    input: [1, 8, 8]
    classes: 10
    layers:
      - {kind: conv, out: 4, kernel: 3}
      - flatten
      - {kind: conv, out: 4}
      - {kind: dense, out: 10}
benchmarks:
  - workload: inference
    params: {model: ok}
"""


def test_suite_loader_points_at_the_offending_layer() -> None:
    with pytest.raises(SuiteError) as ei:
        suite_mod.parse(SUITE, "bad.yaml")
    e = ei.value
    assert e.file == "bad.yaml" and e.line == 14
    assert "layer 2 (conv)" in e.message and "144" in e.message


def test_suite_loader_unknown_model_name() -> None:
    text = SUITE.replace("""      - flatten
      - {kind: conv, out: 4}
""", "      - flatten\n").replace("{model: ok}", "{model: [ok, okay]}")
    with pytest.raises(SuiteError) as ei:
        suite_mod.parse(text, "bad.yaml")
    assert ei.value.line == 17 and "okay" in ei.value.message


def test_shipped_cnn_suite_validates() -> None:
    s = suite_mod.load(REPO / "suites" / "cnn.yaml")
    names = {c.workload for c in s.cases}
    assert {"inference", "train_step", "train_to_accuracy"} <= names
    batches = {c.params.batch for c in s.cases if c.workload != "train_to_accuracy"}  # type: ignore[attr-defined]
    assert min(batches) == 1 and max(batches) == 512
    specs = s.models
    assert specs["mnist-classic"].layers == S.classic_mnist().layers
    assert specs["mnist-classic"].input == (1, 28, 28)
    assert specs["cifar-wide"].input == (3, 32, 32)
    assert any(ly.kind == "residual" for ly in specs["mnist-residual"].layers)
    assert sum(ly.kind == "batchnorm" for ly in specs["mnist-classic-bn"].layers) == 3

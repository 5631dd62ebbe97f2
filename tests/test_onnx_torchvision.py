"""Models a user would bring: torchvision architectures (random weights, nothing downloaded) exported by
both PyTorch exporters — the TorchScript-based one (``dynamo=False``) and the default (``torch.export``,
"dynamo") — with a dynamic batch axis, run by accelbench and checked against onnxruntime on the same
file and input, at the project's float32 tolerance (relative Frobenius error 1e-4, as the onnx
workload's own check).

Needs the ``torch`` extra (``pip install -e ".[torch]"``: torch, torchvision, onnxscript for the default
exporter); without it the module is skipped with that reason. Inputs are small (64x64, 75x75 for
Inception v3) to keep the tests fast; each model is exported at batch 2 and run at batch 3, so the
batch really is dynamic.

An export costs 1-10 s of CPU with the TorchScript exporter and 5-20 s with the default one
(torch.export, decompositions, onnxscript's optimizer), so by default the module runs the subsets
``TORCHSCRIPT_DEFAULT`` and ``DYNAMO_DEFAULT`` and the published-GMAC check with the TorchScript exporter
(about 100 s of CPU); ``ACCELBENCH_TORCH_ALL=1`` runs every architecture and check with both exporters.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
    pytest.skip('torch and torchvision are not installed (pip install -e ".[torch]")', allow_module_level=True)

import torch  # noqa: E402
import torchvision  # noqa: E402

torch.set_num_threads(1)  # tracing and the eager sanity check gain nothing from a second, contended core

from accelbench.onnx import backend, executor, importer, planner  # noqa: E402
from accelbench.onnx.workload import input_shape  # noqa: E402
from accelbench.workloads.base import TOLERANCE, rel_error  # noqa: E402

pytestmark = pytest.mark.slow

TOL = TOLERANCE["float32"]
EXPORTERS = ("torchscript", "dynamo")
ALL = os.environ.get("ACCELBENCH_TORCH_ALL") == "1"


def _has_onnxscript() -> bool:
    return importlib.util.find_spec("onnxscript") is not None


def _tv(name: str, **kw: Any) -> Callable[[], torch.nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None, **kw)


# name -> (constructor, input size). Each covers ops the others do not: residual Add (resnet), depthwise
# conv and Clip/hardtanh (mobilenet_v2), ceil_mode pools and Concat (squeezenet), dense Concat chains and
# average pools (densenet), channel shuffle Reshape/Transpose and Split/Slice (shufflenet), HardSwish /
# HardSigmoid and squeeze-excitation Mul (mobilenet_v3), SiLU and SE (efficientnet), Inception branches
# with ceil_mode max pools (googlenet, inception_v3).
ARCHS: dict[str, tuple[Callable[[], torch.nn.Module], int]] = {
    "resnet18": (_tv("resnet18"), 64),
    "mobilenet_v2": (_tv("mobilenet_v2"), 64),
    "squeezenet1_1": (_tv("squeezenet1_1"), 64),
    "densenet121": (_tv("densenet121"), 64),
    "shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5"), 64),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), 64),
    "efficientnet_b0": (_tv("efficientnet_b0"), 64),
    "googlenet": (_tv("googlenet", aux_logits=False, init_weights=True), 64),
    "inception_v3": (_tv("inception_v3", aux_logits=False, init_weights=True), 75),
}
# Run by default (the rest with ACCELBENCH_TORCH_ALL=1): every architecture but the two largest with the
# TorchScript exporter; with the default exporter residual Adds, depthwise convolutions + Clip, and
# ceil-mode pools + Concat.
TORCHSCRIPT_DEFAULT = tuple(n for n in ARCHS if n not in ("efficientnet_b0", "inception_v3"))
DYNAMO_DEFAULT = ("resnet18", "mobilenet_v2", "squeezenet1_1")


def _cases(names: list[str], torchscript: tuple[str, ...], dynamo: tuple[str, ...]) -> list[tuple[str, str]]:
    runs = {"torchscript": torchscript, "dynamo": dynamo}
    return [(n, e) for n in names for e in EXPORTERS if ALL or n in runs[e]]


def export(model: torch.nn.Module, size: int, path: Path, exporter: str, batch: int = 2,
           dynamic: bool = True) -> Path:
    """``model`` (eval mode) exported to ``path`` the way docs/onnx.md tells a user to."""
    x = torch.randn(batch, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notes
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "N"}} if dynamic else None)
        else:
            shapes = {"x": {0: torch.export.Dim("N")}} if dynamic else None
            torch.onnx.export(model, (x,), str(path), dynamic_shapes=shapes, input_names=["input"],
                              output_names=["logits"])
    return path


def _model(name: str) -> tuple[torch.nn.Module, int]:
    make, size = ARCHS[name]
    torch.manual_seed(0)
    return make().eval(), size


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name,exporter", _cases(list(ARCHS), TORCHSCRIPT_DEFAULT, DYNAMO_DEFAULT))
def test_torchvision_export_runs_like_onnxruntime(name: str, exporter: str, tmp_path: Path) -> None:
    if exporter == "dynamo" and not _has_onnxscript():
        pytest.skip('the default exporter needs onnxscript (pip install -e ".[torch]")')
    model, size = _model(name)
    path = export(model, size, tmp_path / f"{name}.onnx", exporter)
    lm = importer.load_checked(path)  # refuses an unsupported op with one line: that is a finding
    (inp,) = lm.inputs
    assert isinstance(inp.dims[0], str) or inp.dims[0] is None, f"batch is not dynamic: {inp.dims}"
    x = np.random.default_rng(1).standard_normal((3, 3, size, size)).astype(np.float32)
    want = _ort(path, x)
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x)).numpy()
    assert rel_error(want, torch_out) < 1e-3  # the export itself is faithful (a sanity check of the test)
    # the Python backend API: the dynamic-batch plan, shapes computed at run time
    (dyn,) = backend.prepare(str(path), device="CPU").run([x])
    assert dyn.shape == want.shape and rel_error(dyn, want) < TOL
    # the workload's path: planned for the batch, BatchNormalization folded as onnxruntime does
    p = planner.plan(lm, fold_batchnorm=True, input_shapes=input_shape(lm, 3))
    (folded,) = executor.Executor(p).run_host({inp.name: x})
    assert rel_error(folded, want) < TOL


PUBLISHED_GMACS = {"resnet50": 4.09, "resnet18": 1.81, "mobilenet_v2": 0.30}


@pytest.mark.parametrize("name,exporter", _cases(list(PUBLISHED_GMACS), tuple(PUBLISHED_GMACS), ()))
def test_work_model_of_torchvision_exports_matches_published_gmacs(name: str, exporter: str, tmp_path: Path) -> None:
    """accelbench's MACs of the exported torchvision model at 224x224 within 2% of the published count
    (FLOPs = 2 x MACs plus the elementwise work)."""
    if exporter == "dynamo" and not _has_onnxscript():
        pytest.skip('the default exporter needs onnxscript (pip install -e ".[torch]")')
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    path = export(model, 224, tmp_path / f"{name}.onnx", exporter, batch=1, dynamic=False)
    lm = importer.load_checked(path)
    p = planner.plan(lm, input_shapes=input_shape(lm, 1))
    gmacs = PUBLISHED_GMACS[name]
    assert abs(p.macs / 1e9 - gmacs) / gmacs < 0.02, p.macs
    assert p.flops >= 2 * p.macs

"""onnx's own conformance tests (``onnx.backend.test.BackendTest``) against accelbench.onnx.backend.

Included: every node test whose nodes accelbench supports at the test's opset (attributes included, as
``accelbench validate`` decides), the pytorch-converted and pytorch-operator cases and the "simple" and
"real" model tests whose ops it supports. The "real" tests run the classic CNNs the onnx wheel ships in
``onnx/backend/test/data/light`` (ResNet-50, VGG-19, DenseNet-121, Inception v1/v2, ShuffleNet,
SqueezeNet, AlexNet, ZFNet-512, with light weights), offline; the full-size "real" models would be
downloaded and are not used. Tests of supported ops that fail for a reason stated below are excluded
explicitly (EXCLUDE); everything else included must pass. CUDA tests run when a GPU is usable.
"""

from __future__ import annotations

import os
import re
import tempfile

import pytest

pytestmark = pytest.mark.slow

os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="onnx_home_"))

import onnx.backend.test  # noqa: E402
import onnx.backend.test.runner as _runner  # noqa: E402
from onnx.backend.test.loader import load_model_tests  # noqa: E402

from accelbench.onnx import backend  # noqa: E402
from accelbench.onnx.importer import load, unsupported  # noqa: E402

# test name pattern -> why it is excluded although its ops are supported (none at present: every node
# test accelbench's validation accepts passes)
EXCLUDE: dict[str, str] = {
}

# Node tests of a supported op type that validation refuses, by the reason it gives (each is skipped as
# "no matched include pattern"); test_refusals_are_the_documented_ones fails on any other reason.
REFUSED: dict[str, str] = {
    r"not supported": "the test also uses an op accelbench does not implement (or an opset below 7)",
    r"element type (FLOAT8|FLOAT4|INT4|UINT4|INT2|UINT2|BFLOAT16|STRING)": "NumPy has no such dtype",
    r"mode='cubic'": "Resize cubic interpolation is not implemented (nearest, linear are)",
    r"tf_crop_and_resize": "Resize with a region of interest is not implemented",
    r"keep_aspect_ratio_policy": "Resize aspect-ratio policies other than stretch are not implemented",
    r"antialias": "antialiased Resize is not implemented",
    r"training_mode": "inference engine: BatchNormalization/Dropout training mode is refused",
    r"sequence_type|optional_type|map_type": "only tensor values are supported",
    r"-D input is not supported|-D kernels are not supported": "3-D convolution and pooling are not implemented",
    r"only the first 1 output": "MaxPool's Indices output is not implemented",
    r"storage_order": "MaxPool storage_order=1 (column-major indices) is not implemented",
    r"auto_pad=": "invalid auto_pad values",
    r"sparse or string constants": "sparse and string constants are not supported",
}

_KINDS = ("node", "real", "simple", "pytorch-converted", "pytorch-operator")
_CASES = {k: load_model_tests(kind=k) for k in _KINDS}


def _supported(case: object) -> bool:
    model = getattr(case, "model", None)
    if model is None:
        path = os.path.join(getattr(case, "model_dir", "") or "", "model.onnx")
        url = getattr(case, "url", "") or ""
        if url.startswith("onnx/backend/test/data/light/"):
            path = os.path.join(os.path.dirname(onnx.__file__), "..", url)
        if not os.path.exists(path):
            return False
        model = onnx.load(path)
    try:
        return not unsupported(load(model, check=False))
    except Exception:
        return False


INCLUDED = sorted(c.name for cases in _CASES.values() for c in cases if _supported(c))

_orig = _runner.load_model_tests
_runner.load_model_tests = lambda kind, *a, **k: _CASES[kind] if kind in _CASES and not a and not k else _orig(kind, *a, **k)
try:
    _bt = onnx.backend.test.BackendTest(backend.AccelbenchBackend, __name__)
finally:
    _runner.load_model_tests = _orig

for _name in INCLUDED:
    _bt.include(rf"^{re.escape(_name)}_(cpu|cuda)$")
for _pat in EXCLUDE:
    _bt.exclude(_pat)

globals().update(_bt.test_cases)


def test_conformance_covers_the_issue_ops() -> None:
    """The include list is computed, so check that it holds the tests a reader expects."""
    must = ["test_conv_with_strides_padding", "test_maxpool_2d_ceil", "test_averagepool_2d_pads_count_include_pad",
            "test_batchnorm_example", "test_gemm_default_single_elem_vector_bias", "test_resize_upsample_scales_linear",
            "test_resnet50", "test_squeezenet", "test_vgg19", "test_densenet121", "test_inception_v1",
            "test_shufflenet", "test_softmax_axis_0", "test_lrn"]
    missing = [m for m in must if m not in INCLUDED]
    assert not missing, missing


def test_refusals_are_the_documented_ones() -> None:
    """Every node test of a supported op type that is left out is left out for a reason in REFUSED."""
    from accelbench.onnx import ops

    sup = set(ops.supported_ops())
    odd = []
    for c in _CASES["node"]:
        m = c.model
        if m is None or c.name in INCLUDED or not ({n.op_type for n in m.graph.node} & sup):
            continue
        try:
            why = unsupported(load(m, check=False))
        except Exception as e:  # a test model the loader refuses outright
            odd.append((c.name, f"load: {e}"))
            continue
        reason = why[0][1] if why else "(accepted but not included)"
        if not any(re.search(p, reason) for p in REFUSED):
            odd.append((c.name, reason))
    assert not odd, odd[:10]

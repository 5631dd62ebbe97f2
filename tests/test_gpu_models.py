"""Whole networks on the GPU against the CPU, and CUDA-graph steps against eager ones (``gpu`` marker).

Issue 3 asks that the GPU forward and backward agree with the CPU within dtype tolerance on the same
weights and inputs; the layer tests (test_models_gradcheck.py) do it per layer, these do it for every
network of suites/cnn.yaml as the suite runs it, and name the parameters that disagree most when one does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accelbench import backends, suite
from accelbench.models.network import CudaGraph, Network, one_hot

pytestmark = pytest.mark.gpu

CNN = Path(__file__).resolve().parents[1] / "suites" / "cnn.yaml"
MODELS = ["mnist-classic", "mnist-classic-bn", "mnist-residual", "cifar-wide"]
F32_TOL = 1e-4  # relative error of a float32 network between two BLAS libraries (orders of rounding)


def _spec(name: str) -> Any:
    return suite.load(CNN).models[name]


def _batch(spec: Any, b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, *spec.input)).astype(np.float32)
    return x, one_hot(rng.integers(0, spec.classes, b), spec.classes)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _per_param(cpu: Network, gpu: Any, cp: Any) -> list[tuple[float, str]]:
    names = [n for ly in cpu.flat_layers() for n in ly.param_names]
    out = []
    for i, (gc, gg) in enumerate(zip(cpu.grads, gpu.grads, strict=True)):
        name = names[i] if i < len(names) else f"param {i}"
        out.append((_rel(cp.asnumpy(gg).astype(np.float64), np.asarray(gc, dtype=np.float64)), f"{i}:{name}{tuple(gc.shape)}"))
    return sorted(out, reverse=True)


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("model", MODELS)
def test_gpu_network_matches_cpu_on_same_weights_and_inputs(model: str, batch: int) -> None:
    cp = backends.gpu().xp
    spec = _spec(model)
    x, oh = _batch(spec, batch)
    gpu = Network(spec, cp, "float32", seed=3)
    cpu = Network(spec, np, "float32", seed=3)
    cpu.set_weights(gpu.get_weights())  # before the step: a training forward moves batchnorm's running stats
    lg = float(gpu.forward_backward(cp.asarray(x), cp.asarray(oh)))
    cpu.follow(gpu)  # same dropout masks, and the GPU's side of any ReLU / max-pool kink (see Network.reference)
    lc = float(cpu.forward_backward(x, oh))
    cpu.follow(None)
    assert abs(lg - lc) <= F32_TOL * max(1.0, abs(lc)), (lg, lc)
    err = _rel(gpu.grads_host(), cpu.grads_host())
    assert err < F32_TOL, f"gradients differ by {err:.3g}; worst: {_per_param(cpu, gpu, cp)[:4]}"
    yg = cp.asnumpy(gpu.forward(cp.asarray(x), False))
    yc = cpu.forward(x, False)
    assert _rel(yg.astype(np.float64), yc.astype(np.float64)) < F32_TOL


@pytest.mark.parametrize("model", ["mnist-classic", "mnist-classic-bn"])
def test_cuda_graph_train_steps_equal_eager_steps(model: str) -> None:
    """Replaying the captured step must train exactly like calling it: same weights after 4 steps."""
    cp = backends.gpu().xp
    spec = _spec(model)
    x, oh = _batch(spec, 8, seed=1)
    xd, ohd = cp.asarray(x), cp.asarray(oh)
    eager = Network(spec, cp, "float32", seed=5)
    eager.set_optimizer("sgd", 0.05, 0.9)
    graphed = Network(spec, cp, "float32", seed=5)
    graphed.set_optimizer("sgd", 0.05, 0.9)
    before = graphed.get_weights()
    g = CudaGraph(cp, lambda: graphed.train_step(xd, ohd))  # one eager step, then the capture (not run)
    for _ in range(3):
        g.launch()
    cp.cuda.get_current_stream().synchronize()
    for _ in range(4):
        eager.train_step(xd, ohd)
    we, wg = eager.get_weights(), graphed.get_weights()
    moved = max(_rel(a, b) for a, b in zip(wg, before, strict=True))
    assert moved > 1e-4, "the replays must have trained"
    worst = max(_rel(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(wg, we, strict=True))
    assert worst < 1e-5, worst


def test_cuda_graph_inference_equals_eager() -> None:
    cp = backends.gpu().xp
    spec = _spec("mnist-classic")
    x, _ = _batch(spec, 4, seed=2)
    xd = cp.asarray(x)
    net = Network(spec, cp, "float32", seed=1)
    want = cp.asnumpy(net.forward(xd, False)).copy()
    out: dict[str, Any] = {}

    def step() -> None:
        out["y"] = net.forward(xd, False)

    g = CudaGraph(cp, step)
    out["y"].fill(cp.nan)
    g.launch()
    cp.cuda.get_current_stream().synchronize()
    np.testing.assert_allclose(cp.asnumpy(out["y"]), want, rtol=1e-6, atol=1e-6)


def _train_cases() -> list[Any]:
    s = suite.load(CNN)
    out = []
    for c, _ in s.select(["gpu"], "train_step"):
        if c.params.batch > 64:
            continue
        # mnist-residual batch 1 was a strict xfail until the check followed the GPU's ReLU choices: one
        # pre-activation at -2e-8 in float64 came out positive in float32 (tests/test_models_workloads.py)
        out.append(pytest.param(c, id=c.case_id("gpu").split("/", 1)[1]))
    return out


@pytest.mark.parametrize("case", _train_cases())
def test_every_cnn_train_step_case_passes_its_first_step_check_on_gpu(case: Any) -> None:
    """What the runner does for each train_step case of suites/cnn.yaml (set-up, one run, check)."""
    be = backends.gpu()
    wl = case.cls(case.params, be, seed=case.seed)
    wl.setup()
    try:
        wl.run()
        be.synchronize()
        chk = wl.check()
        assert chk.passed, chk.message
    finally:
        wl.teardown()

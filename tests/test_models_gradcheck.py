"""Every layer's backward against central finite differences in float64 (relative error < 1e-6).

Loss = sum(forward(x) * R) for a fixed random R, so dL/dy = R. Entries are sampled (not all) to keep the
test fast; the sampled set always includes both gradients (input and each parameter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from accelbench import backends
from accelbench.models import layers as L
from accelbench.models import spec as S
from accelbench.models.network import Network, one_hot

H = 1e-6
TOL = 1e-6


def _numeric(f: Callable[[], float], arr: np.ndarray, idx: list[tuple[int, ...]]) -> np.ndarray:
    out = []
    for i in idx:
        old = arr[i]
        arr[i] = old + H
        fp = f()
        arr[i] = old - H
        fm = f()
        arr[i] = old
        out.append((fp - fm) / (2 * H))
    return np.array(out)


def _sample(shape: tuple[int, ...], rng: np.random.Generator, n: int = 25) -> list[tuple[int, ...]]:
    total = int(np.prod(shape))
    flat = rng.choice(total, size=min(n, total), replace=False)
    return [tuple(int(v) for v in np.unravel_index(k, shape)) for k in flat]


def _rel(num: np.ndarray, ana: np.ndarray) -> float:
    denom = max(float(np.linalg.norm(num)), float(np.linalg.norm(ana)), 1e-30)
    return float(np.linalg.norm(num - ana)) / denom


def check_layer(layer: L.Layer, x: np.ndarray, train: bool = True, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    y = layer.forward(x, train)
    r = rng.standard_normal(y.shape)

    def f() -> float:
        return float(np.sum(layer.forward(x, train) * r))

    layer.forward(x, train)
    dx = layer.backward(r.copy(), need_dx=True)
    dx = np.array(dx, copy=True)
    grads = [np.array(g, copy=True) for g in layer.grads]
    idx = _sample(x.shape, rng)
    err = _rel(_numeric(f, x, idx), np.array([dx[i] for i in idx]))
    assert err < TOL, f"{layer.kind}: dx relative error {err:.3g}"
    for name, p, g in zip(layer.param_names, layer.params, grads, strict=True):
        idx = _sample(p.shape, rng)
        err = _rel(_numeric(f, p, idx), np.array([g[i] for i in idx]))
        assert err < TOL, f"{layer.kind}.{name}: relative error {err:.3g}"


def _make(layer_spec: dict[str, Any] | str, in_shape: tuple[int, ...], seed: int = 0) -> L.Layer:
    spec: Any = TypeAdapter(S.LayerSpec).validate_python(S._coerce_layer(layer_spec))
    out = S.layer_output(0, spec, in_shape)
    rng = np.random.default_rng(seed)
    return L.build(spec, np, "float64", in_shape, out, L.Scratch(np), rng, "he", seed)


def _x(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("ls,in_shape", [
    ({"kind": "conv", "out": 4, "kernel": 3, "pad": "same"}, (3, 7, 6)),
    ({"kind": "conv", "out": 3, "kernel": 3, "stride": 2, "pad": 1}, (2, 7, 7)),
    ({"kind": "conv", "out": 3, "kernel": 2, "stride": 1, "pad": 0, "bias": False}, (2, 5, 5)),
    ({"kind": "conv", "out": 2, "kernel": 5, "pad": 2}, (2, 6, 6)),
    ({"kind": "conv", "out": 3, "kernel": 1, "stride": 2}, (2, 6, 5)),
    ("relu", (3, 4, 4)),
    ({"kind": "maxpool", "size": 2}, (2, 6, 6)),
    ({"kind": "maxpool", "size": 3, "stride": 2}, (2, 7, 7)),
    ({"kind": "maxpool", "size": 2}, (2, 5, 5)),  # a leftover row and column
    ({"kind": "avgpool", "size": 2}, (2, 6, 6)),
    ({"kind": "avgpool", "size": 3, "stride": 1}, (2, 5, 5)),
    ("batchnorm", (3, 4, 4)),
    ("batchnorm", (5,)),
    ("flatten", (2, 3, 3)),
    ({"kind": "dense", "out": 4}, (6,)),
    ({"kind": "residual", "out": 3}, (3, 5, 5)),  # identity skip
    ({"kind": "residual", "out": 4, "stride": 2}, (2, 6, 6)),  # 1x1 projection, stride 2
    ({"kind": "residual", "out": 4, "batchnorm": False}, (2, 5, 5)),  # projection for channels only
])
def test_layer_gradients(ls: Any, in_shape: tuple[int, ...]) -> None:
    layer = _make(ls, in_shape)
    check_layer(layer, _x((3, *in_shape)))


def test_dropout_gradient_with_fixed_mask() -> None:
    layer = _make({"kind": "dropout", "rate": 0.3}, (4, 3, 3))
    assert isinstance(layer, L.Dropout)
    x = _x((2, 4, 3, 3))
    layer.forward(x, True)
    layer.follow = layer.decision()  # replay one mask so the loss is a function of x
    assert 0 < np.mean(layer.follow == 0) < 1
    check_layer(layer, x)
    # inference is the identity
    assert np.array_equal(layer.forward(x, train=False), x)


@pytest.mark.parametrize("ls,in_shape", [
    ("relu", (3, 4, 4)),
    ({"kind": "maxpool", "size": 2}, (2, 6, 6)),  # the pairwise path
    ({"kind": "maxpool", "size": 2}, (2, 5, 5)),
    ({"kind": "maxpool", "size": 3, "stride": 2}, (2, 7, 7)),  # the general (offset) path
])
def test_a_layer_follows_another_layers_choices(ls: Any, in_shape: tuple[int, ...]) -> None:
    """``follow`` replays another forward's ReLU / max-pool choices (what a training step's float64
    reference does with the device's): the same choices change nothing; one flipped choice is taken, its
    distance from the switch point is reported, and with the choices fixed the gradient is exact."""
    x = _x((2, *in_shape), seed=4)
    rms = float(np.sqrt(np.mean(x ** 2)))
    leader, follower = _make(ls, in_shape), _make(ls, in_shape)
    y = np.array(leader.forward(x, True), copy=True)
    dy = _x(y.shape, seed=5)
    dx = np.array(leader.backward(dy), copy=True)
    follower.follow = leader.decision()
    assert np.array_equal(follower.forward(x, True), y)
    assert np.array_equal(follower.backward(dy), dx)
    assert follower.kinks == (0, 0.0)

    d = leader.decision()
    w = x[0, 0, :3, :3]
    if ls == "relu":
        d[0, 0, 0, 0] = not d[0, 0, 0, 0]
        taken, gap = x[0, 0, 0, 0] if d[0, 0, 0, 0] else 0.0, abs(x[0, 0, 0, 0])
    elif in_shape[-1] != 7:  # pairwise: the other row of the first window
        selw, selh = d
        top, bottom = w[0, :2].max(), w[1, :2].max()
        selh[0, 0, 0, 0] = not selh[0, 0, 0, 0]
        taken, gap = min(top, bottom), abs(bottom - top)
    else:  # offsets: the next element of the first 3x3 window
        o = (int(d[0, 0, 0, 0]) + 1) % 9
        d[0, 0, 0, 0] = o
        taken, gap = w.ravel()[o], w.max() - w.ravel()[o]
    follower.follow = d
    yf = follower.forward(x, True)
    assert yf[0, 0, 0, 0] == taken
    assert follower.kinks[0] == 1 and follower.kinks[1] == pytest.approx(gap / rms)
    check_layer(follower, x)  # with the choices fixed, backward is the exact gradient of what forward did


def test_batchnorm_inference_uses_running_statistics() -> None:
    layer = _make("batchnorm", (3, 4, 4))
    x = _x((8, 3, 4, 4)) * 2 + 5
    for _ in range(200):
        layer.forward(x, True)
    # after many identical batches the running stats equal the batch stats: inference ~= training output
    train_y = np.array(layer.forward(x, True))
    eval_y = layer.forward(x, False)
    m = x.size // 3
    # running var is unbiased, the batch var is not: they differ by m/(m-1)
    assert np.allclose(eval_y * np.sqrt(m / (m - 1)), train_y, atol=1e-3)


def test_maxpool_gradient_goes_to_first_maximum_on_ties() -> None:
    layer = _make({"kind": "maxpool", "size": 2}, (1, 2, 2))
    x = np.zeros((1, 1, 2, 2))
    layer.forward(x, True)
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    assert dx is not None and dx.sum() == 1.0 and dx[0, 0, 0, 0] == 1.0


def test_whole_network_loss_gradient() -> None:
    spec = S.ModelSpec.model_validate({"input": [2, 8, 8], "classes": 3, "layers": [
        {"kind": "conv", "out": 3, "kernel": 3, "pad": "same"}, "batchnorm", "relu",
        {"kind": "residual", "out": 4, "stride": 2}, {"kind": "maxpool", "size": 2}, "flatten",
        {"kind": "dense", "out": 5}, "relu", {"kind": "dense", "out": 3}]})
    net = Network(spec, np, "float64", seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 8, 8))
    oh = one_hot(rng.integers(0, 3, 4), 3, "float64")

    def f() -> float:
        loss, _ = net.loss(net.forward(x, True), oh)
        return float(loss)

    net.forward_backward(x, oh)
    grads = [np.array(g, copy=True) for g in net.grads]
    num_all, ana_all = [], []
    for p, g in zip(net.params, grads, strict=True):
        idx = _sample(p.shape, rng, 6)
        num_all.append(_numeric(f, p, idx))
        ana_all.append(np.array([g[i] for i in idx]))
    # one norm over every sampled entry: a conv bias right before batchnorm has a true gradient of 0,
    # where a per-array relative error would compare rounding noise with rounding noise
    err = _rel(np.concatenate(num_all), np.concatenate(ana_all))
    assert err < TOL
    assert np.linalg.norm(np.concatenate(ana_all)) > 1e-3  # the check is not vacuous


@pytest.mark.gpu
def test_gpu_layers_match_cpu() -> None:
    be = backends.gpu()
    if not be.available:
        pytest.skip(be.reason)
    cp = be.xp
    spec = S.ModelSpec.model_validate({"input": [3, 12, 12], "classes": 4, "layers": [
        {"kind": "conv", "out": 8, "kernel": 3, "pad": "same"}, "batchnorm", "relu",
        {"kind": "residual", "out": 8}, {"kind": "residual", "out": 16, "stride": 2},
        {"kind": "maxpool", "size": 2}, {"kind": "avgpool", "size": 3}, "flatten",
        {"kind": "dense", "out": 4}]})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 12, 12)).astype(np.float32)
    oh = one_hot(rng.integers(0, 4, 5), 4)
    cpu = Network(spec, np, "float32", seed=1)
    gpu = Network(spec, cp, "float32", seed=1)
    lc = float(cpu.forward_backward(x, oh))
    lg = float(gpu.forward_backward(cp.asarray(x), cp.asarray(oh)))
    assert abs(lc - lg) <= 1e-4 * max(1.0, abs(lc))
    gc, gg = cpu.grads_host(), gpu.grads_host()
    assert np.linalg.norm(gc - gg) / np.linalg.norm(gc) < 1e-4
    yc = cpu.forward(x, False)
    yg = cp.asnumpy(gpu.forward(cp.asarray(x), False))
    assert np.linalg.norm(yc - yg) / np.linalg.norm(yc) < 1e-4


@pytest.mark.gpu
def test_gpu_gradient_check_float64() -> None:
    be = backends.gpu()
    if not be.available:
        pytest.skip(be.reason)
    cp = be.xp
    spec = S.ModelSpec.model_validate({"input": [2, 6, 6], "classes": 3, "layers": [
        {"kind": "conv", "out": 3, "kernel": 3, "pad": "same"}, "relu", {"kind": "maxpool", "size": 2},
        "flatten", {"kind": "dense", "out": 3}]})
    net = Network(spec, cp, "float64", seed=2)
    rng = np.random.default_rng(0)
    x = cp.asarray(rng.standard_normal((3, 2, 6, 6)))
    oh = cp.asarray(one_hot(rng.integers(0, 3, 3), 3, "float64"))
    net.forward_backward(x, oh)
    grads = [cp.asnumpy(g) for g in net.grads]
    for p, g in zip(net.params, grads, strict=True):
        idx = _sample(tuple(p.shape), rng, 5)
        num = []
        for i in idx:
            old = float(p[i])
            p[i] = old + H
            fp = float(net.loss(net.forward(x, True), oh)[0])
            p[i] = old - H
            fm = float(net.loss(net.forward(x, True), oh)[0])
            p[i] = old
            num.append((fp - fm) / (2 * H))
        assert _rel(np.array(num), np.array([g[i] for i in idx])) < TOL

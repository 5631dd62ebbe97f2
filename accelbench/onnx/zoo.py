"""Classic CNNs as ONNX graphs with seeded weights, built with ``onnx.helper``: the models of
``suites/onnx.yaml``, generated on first use into a cache folder, so that the suite runs offline.

Architectures follow the torchvision definitions (ResNet v1.5 with the stride on the 3x3, VGG-19,
DenseNet-121, SqueezeNet 1.1, ShuffleNet V2 x1.0, MobileNetV2) and the original GoogLeNet (Inception v1,
with its LRN layers). Weights are He-normal from ``numpy.random.default_rng(seed)``, BatchNormalization
statistics near identity: outputs are meaningless but finite and deterministic, which is all a
benchmark and a cross-engine check need. The batch dimension is symbolic (``N``).

A suite names them ``zoo:<name>`` or ``zoo:<name>@<size>`` (square input size, default 224).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

VERSION = 1  # bump when a builder changes: cached files carry it in their name
OPSET = 17


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}_{self.n}"

    def const(self, arr: np.ndarray, kind: str = "w") -> str:
        from onnx import numpy_helper

        name = self._name(kind)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        import onnx

        outs = [self._name(op.lower()) for _ in range(n_out)]
        self.nodes.append(onnx.helper.make_node(op, inputs, outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k: int, s: int = 1, p: int | None = None, groups: int = 1,
             bias: bool = False) -> str:
        fan_in = cin // groups * k * k
        w = (self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        ins = [x, self.const(w)]
        if bias:
            ins.append(self.const((self.rng.standard_normal(cout) * 0.01).astype(np.float32), "b"))
        pad = k // 2 if p is None else p
        return self.node("Conv", ins, kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4, group=groups)

    def bn(self, x: str, c: int) -> str:
        r = self.rng
        scale = (1 + 0.1 * r.standard_normal(c)).astype(np.float32)
        beta = (0.05 * r.standard_normal(c)).astype(np.float32)
        mean = (0.05 * r.standard_normal(c)).astype(np.float32)
        var = (1 + 0.1 * np.abs(r.standard_normal(c))).astype(np.float32)
        return self.node("BatchNormalization", [x, self.const(scale, "g"), self.const(beta, "b"),
                                                self.const(mean, "m"), self.const(var, "v")], epsilon=1e-5)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])

    def cbr(self, x: str, cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: bool = True,
            relu6: bool = False) -> str:
        y = self.bn(self.conv(x, cin, cout, k, s, groups=groups), cout)
        if not act:
            return y
        if relu6:
            return self.node("Clip", [y, self.const(np.array(0, np.float32), "lo"),
                                      self.const(np.array(6, np.float32), "hi")])
        return self.relu(y)

    def maxpool(self, x: str, k: int, s: int, p: int = 0, ceil: bool = False) -> str:
        return self.node("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=int(ceil))

    def avgpool(self, x: str, k: int, s: int) -> str:
        return self.node("AveragePool", [x], kernel_shape=[k, k], strides=[s, s])

    def fc(self, x: str, cin: int, cout: int) -> str:
        w = (self.rng.standard_normal((cout, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
        b = np.zeros(cout, np.float32)
        return self.node("Gemm", [x, self.const(w), self.const(b, "b")], transB=1)

    def head(self, x: str, c: int, classes: int = 1000) -> str:
        y = self.node("Flatten", [self.node("GlobalAveragePool", [x])], axis=1)
        return self.fc(y, c, classes)

    def model(self, name: str, out: str, size: int) -> Any:
        import onnx

        inp = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, size, size])
        outp = onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["N", 1000])
        g = onnx.helper.make_graph(self.nodes, name, [inp], [outp], self.inits)
        m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="accelbench.onnx.zoo")
        m.ir_version = 8
        return m


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def resnet(depth: int, size: int = 224, seed: int = 0) -> Any:
    g = _Graph(seed)
    bottleneck = depth >= 50
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
    x = g.maxpool(g.cbr("input", 3, 64, 7, 2), 3, 2, 1)
    cin = 64
    for stage, n in enumerate(blocks):
        width = 64 * 2 ** stage
        cout = width * (4 if bottleneck else 1)
        for i in range(n):
            s = 2 if (i == 0 and stage > 0) else 1
            if bottleneck:
                y = g.cbr(x, cin, width, 1)
                y = g.cbr(y, width, width, 3, s)
                y = g.cbr(y, width, cout, 1, act=False)
            else:
                y = g.cbr(x, cin, width, 3, s)
                y = g.cbr(y, width, cout, 3, act=False)
            skip = g.cbr(x, cin, cout, 1, s, act=False) if (s != 1 or cin != cout) else x
            x = g.relu(g.node("Add", [y, skip]))
            cin = cout
    return g.model(f"resnet{depth}", g.head(x, cin), size)


def vgg19(size: int = 224, seed: int = 0) -> Any:
    g = _Graph(seed)
    cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                            512, 512, 512, 512, "M"]
    x, cin = "input", 3
    for v in cfg:
        if v == "M":
            x = g.maxpool(x, 2, 2)
        else:
            x = g.relu(g.conv(x, cin, int(v), 3, bias=True))
            cin = int(v)
    side = size // 32
    x = g.node("Flatten", [x], axis=1)
    x = g.node("Dropout", [g.relu(g.fc(x, 512 * side * side, 4096))])
    x = g.node("Dropout", [g.relu(g.fc(x, 4096, 4096))])
    return g.model("vgg19", g.fc(x, 4096, 1000), size)


def densenet121(size: int = 224, seed: int = 0) -> Any:
    g = _Graph(seed)
    growth, bn_size = 32, 4
    x = g.maxpool(g.cbr("input", 3, 64, 7, 2), 3, 2, 1)
    c = 64
    for bi, n in enumerate([6, 12, 24, 16]):
        feats = [x]
        for _ in range(n):
            cat = g.node("Concat", feats, axis=1) if len(feats) > 1 else feats[0]
            y = g.conv(g.relu(g.bn(cat, c)), c, bn_size * growth, 1)
            y = g.conv(g.relu(g.bn(y, bn_size * growth)), bn_size * growth, growth, 3)
            feats.append(y)
            c += growth
        x = g.node("Concat", feats, axis=1)
        if bi < 3:
            x = g.avgpool(g.conv(g.relu(g.bn(x, c)), c, c // 2, 1), 2, 2)
            c //= 2
    x = g.relu(g.bn(x, c))
    return g.model("densenet121", g.head(x, c), size)


def inception_v1(size: int = 224, seed: int = 0) -> Any:
    g = _Graph(seed)

    def lrn(x: str) -> str:
        return g.node("LRN", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)

    def block(x: str, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int) -> tuple[str, int]:
        b1 = g.relu(g.conv(x, cin, c1, 1, bias=True))
        b2 = g.relu(g.conv(g.relu(g.conv(x, cin, c3r, 1, bias=True)), c3r, c3, 3, bias=True))
        b3 = g.relu(g.conv(g.relu(g.conv(x, cin, c5r, 1, bias=True)), c5r, c5, 5, bias=True))
        b4 = g.relu(g.conv(g.maxpool(x, 3, 1, 1), cin, pp, 1, bias=True))
        return g.node("Concat", [b1, b2, b3, b4], axis=1), c1 + c3 + c5 + pp

    x = g.relu(g.conv("input", 3, 64, 7, 2, bias=True))
    x = lrn(g.maxpool(x, 3, 2, ceil=True))
    x = g.relu(g.conv(x, 64, 64, 1, bias=True))
    x = lrn(g.relu(g.conv(x, 64, 192, 3, bias=True)))
    x = g.maxpool(x, 3, 2, ceil=True)
    c = 192
    for i, cfg in enumerate([(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M",
                             (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
                             (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "M",
                             (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)]):
        del i
        if cfg == "M":
            x = g.maxpool(x, 3, 2, ceil=True)
        else:
            assert isinstance(cfg, tuple)
            x, c = block(x, c, *cfg)
    x = g.node("Dropout", [g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)])
    return g.model("inception_v1", g.node("Softmax", [g.fc(x, c, 1000)], axis=1), size)


def squeezenet(size: int = 224, seed: int = 0) -> Any:
    """SqueezeNet 1.1."""
    g = _Graph(seed)

    def fire(x: str, cin: int, s: int, e: int) -> tuple[str, int]:
        sq = g.relu(g.conv(x, cin, s, 1, bias=True))
        a = g.relu(g.conv(sq, s, e, 1, bias=True))
        b = g.relu(g.conv(sq, s, e, 3, bias=True))
        return g.node("Concat", [a, b], axis=1), 2 * e

    x = g.maxpool(g.relu(g.conv("input", 3, 64, 3, 2, p=0, bias=True)), 3, 2, ceil=True)
    c = 64
    for cfg in [(16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)]:
        if cfg == "M":
            x = g.maxpool(x, 3, 2, ceil=True)
        else:
            assert isinstance(cfg, tuple)
            x, c = fire(x, c, *cfg)
    x = g.relu(g.conv(g.node("Dropout", [x]), c, 1000, 1, bias=True))
    out = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    return g.model("squeezenet1.1", out, size)


def shufflenet_v2(size: int = 224, seed: int = 0) -> Any:
    """ShuffleNet V2 x1.0: channel split (Split), depthwise 3x3, channel shuffle (Reshape/Transpose)."""
    g = _Graph(seed)

    def shuffle(x: str, c: int) -> str:
        shape = g.const(np.array([0, 2, c // 2, -1], np.int64), "shape")
        y = g.node("Transpose", [g.node("Reshape", [x, shape])], perm=[0, 2, 1, 3])
        back = g.const(np.array([0, c, -1], np.int64), "shape")
        return g.node("Reshape", [y, back])

    def unit(x: str, cin: int, cout: int, s: int, hw: int) -> str:
        half = cout // 2
        if s == 1:
            a, b = g.node("Split", [x, g.const(np.array([cin // 2, cin // 2], np.int64), "split")], 2, axis=1)
            bin_ = cin // 2
        else:
            a = g.cbr(g.cbr(x, cin, cin, 3, 2, groups=cin, act=False), cin, half, 1)
            b, bin_ = x, cin
        y = g.cbr(b, bin_, half, 1)
        y = g.cbr(y, half, half, 3, s, groups=half, act=False)
        y = g.cbr(y, half, half, 1)
        cat = g.node("Concat", [a, y], axis=1)
        flat = shuffle(cat, cout)
        return g.node("Reshape", [flat, g.const(np.array([0, cout, hw, hw], np.int64), "shape")])

    x = g.maxpool(g.cbr("input", 3, 24, 3, 2), 3, 2, 1)
    hw = _ceil_div(_ceil_div(size, 2), 2)
    cin = 24
    for cout, n in [(116, 4), (232, 8), (464, 4)]:
        for i in range(n):
            s = 2 if i == 0 else 1
            if s == 2:
                hw = _ceil_div(hw, 2)
            x = unit(x, cin, cout, s, hw)
            cin = cout
    x = g.cbr(x, cin, 1024, 1)
    return g.model("shufflenet_v2", g.head(x, 1024), size)


def mobilenet_v2(size: int = 224, seed: int = 0) -> Any:
    g = _Graph(seed)
    x = g.cbr("input", 3, 32, 3, 2, relu6=True)
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hid = cin * t
            y = g.cbr(x, cin, hid, 1, relu6=True) if t != 1 else x
            y = g.cbr(y, hid, hid, 3, stride, groups=hid, relu6=True)
            y = g.cbr(y, hid, c, 1, act=False)
            x = g.node("Add", [x, y]) if (stride == 1 and cin == c) else y
            cin = c
    x = g.cbr(x, cin, 1280, 1, relu6=True)
    return g.model("mobilenet_v2", g.head(x, 1280), size)


def tiny_cnn(size: int = 32, seed: int = 0) -> Any:
    """A small network with the common ops (Conv+BN+Relu, grouped and depthwise convs, pools, residual
    Add, Concat, Gemm, Softmax), fast enough for tests and examples."""
    g = _Graph(seed)
    x = g.maxpool(g.cbr("input", 3, 16, 3), 2, 2)
    y = g.cbr(x, 16, 16, 3, groups=16)
    y = g.cbr(y, 16, 16, 1, groups=2, act=False)
    x = g.relu(g.node("Add", [x, y]))
    x = g.node("Concat", [x, g.node("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4,
                                    count_include_pad=0)], axis=1)
    x = g.cbr(x, 32, 24, 3, 2)
    return g.model("tiny_cnn", g.node("Softmax", [g.head(x, 24, 1000)], axis=1), size)


BUILDERS: dict[str, Callable[..., Any]] = {
    "tiny_cnn": tiny_cnn,
    "resnet18": lambda size, seed: resnet(18, size, seed),
    "resnet50": lambda size, seed: resnet(50, size, seed),
    "vgg19": vgg19,
    "densenet121": densenet121,
    "inception_v1": inception_v1,
    "squeezenet": squeezenet,
    "shufflenet_v2": shufflenet_v2,
    "mobilenet_v2": mobilenet_v2,
}

_REF = re.compile(r"^zoo:([a-z0-9_]+)(?:@(\d{2,4}))?$")


def is_ref(ref: str) -> bool:
    return str(ref).startswith("zoo:")


def parse_ref(ref: str) -> tuple[str, int]:
    m = _REF.match(ref)
    if not m or m.group(1) not in BUILDERS:
        raise ValueError(f"{ref!r} is not a zoo model; known: {', '.join('zoo:' + n for n in BUILDERS)} "
                         "(optionally @<input size>, e.g. zoo:vgg19@112)")
    size = int(m.group(2) or 224)
    if not 32 <= size <= 1024:
        raise ValueError(f"{ref!r}: input size {size} is outside 32..1024")
    return m.group(1), size


def cache_dir() -> Path:
    env = os.environ.get("ACCELBENCH_CACHE")
    return Path(env) / "onnx" if env else Path.home() / ".cache" / "accelbench" / "onnx"


def build(name: str, size: int = 224, seed: int = 0) -> Any:
    return BUILDERS[name](size, seed)


def path_for(ref: str, seed: int = 0) -> Path:
    """The cached file of a zoo reference, written (atomically) on first use."""
    import onnx

    name, size = parse_ref(ref)
    d = cache_dir()
    p = d / f"{name}-{size}-seed{seed}-v{VERSION}.onnx"
    if p.exists():
        return p
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=p.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(build(name, size, seed).SerializeToString())
        os.replace(tmp, p)
    except OSError as e:
        raise ModelError(f"cannot write the generated model: {e.strerror}", str(p)) from None
    del onnx
    return p

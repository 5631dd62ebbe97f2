"""Declarative CNN descriptions (pydantic) with layer-by-layer shape inference.

A suite's top-level ``models: {NAME: spec}`` is validated as ``dict[str, ModelSpec]``. A spec gives an
input shape (C, H, W), a number of classes and a list of layers; each layer is a mapping with a ``kind``
(or just the kind's name as a string for layers without options, e.g. ``- relu``)::

    input: [1, 28, 28]
    classes: 10
    layers:
      - {kind: conv, out: 32, kernel: 3, pad: same}
      - relu
      - {kind: maxpool, size: 2}
      - flatten
      - {kind: dense, out: 10}

Shapes are inferred when the spec is validated. An impossible network (a kernel larger than its input,
a conv after flatten, zero channels, a head that does not produce ``classes`` scores) is refused with a
pydantic ``ValidationError`` whose ``loc`` is ``("layers", i)`` and whose message names the position, the
kind and the shapes involved, so the suite loader can point at the offending YAML line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

Shape = tuple[int, ...]  # per-image activation shape: (C, H, W) or (F,)


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Conv(_Layer):
    """2-D convolution. ``pad: same`` keeps H and W at stride 1 (odd kernels only)."""

    kind: Literal["conv"]
    out: int = Field(ge=0, le=65536)  # 0 is refused by shape inference, with the shapes
    kernel: int = Field(3, ge=1, le=64)
    stride: int = Field(1, ge=1, le=64)
    pad: int | Literal["same", "valid"] = 0
    bias: bool = True

    def padding(self) -> int:
        if self.pad == "same":
            return (self.kernel - 1) // 2
        if self.pad == "valid":
            return 0
        return int(self.pad)


class ReLU(_Layer):
    kind: Literal["relu"]


class MaxPool(_Layer):
    kind: Literal["maxpool"]
    size: int = Field(2, ge=1, le=64)
    stride: int | None = Field(None, ge=1, le=64)  # default: size (non-overlapping windows)


class AvgPool(_Layer):
    kind: Literal["avgpool"]
    size: int = Field(2, ge=1, le=64)
    stride: int | None = Field(None, ge=1, le=64)


class BatchNorm(_Layer):
    """Batch normalisation over the channel axis (spatial) or the feature axis (after flatten)."""

    kind: Literal["batchnorm"]
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # running = momentum * running + (1 - momentum) * batch
    eps: float = Field(1e-5, gt=0.0, le=1.0)


class Dropout(_Layer):
    kind: Literal["dropout"]
    rate: float = Field(0.5, ge=0.0, lt=1.0)


class Flatten(_Layer):
    kind: Literal["flatten"]


class Dense(_Layer):
    kind: Literal["dense"]
    out: int = Field(ge=0, le=1 << 20)
    bias: bool = True


class Residual(_Layer):
    """conv(k, stride) [bn] relu conv(k, 1) [bn], plus the input (through a 1x1 conv with the same stride,
    [bn], when channels or size change), then relu. Both convs use 'same' padding."""

    kind: Literal["residual"]
    out: int = Field(ge=0, le=65536)
    kernel: int = Field(3, ge=1, le=15)
    stride: int = Field(1, ge=1, le=8)
    batchnorm: bool = True


LayerSpec = Annotated[
    Conv | ReLU | MaxPool | AvgPool | BatchNorm | Dropout | Flatten | Dense | Residual,
    Field(discriminator="kind"),
]
KINDS = ("conv", "relu", "maxpool", "avgpool", "batchnorm", "dropout", "flatten", "dense", "residual")


class ShapeError(ValueError):
    """An impossible layer; ``index`` is its position in the layer list (-1: the input itself)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def fmt_shape(s: Shape) -> str:
    return "x".join(str(d) for d in s)


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def layer_output(i: int, layer: Any, shape: Shape) -> Shape:
    """Output shape of ``layer`` (position ``i``) for a per-image input ``shape``; ShapeError if impossible."""
    where = f"layer {i} ({layer.kind})"
    ins = fmt_shape(shape)
    spatial = len(shape) == 3
    if isinstance(layer, (Conv, Residual)):
        if not spatial:
            raise ShapeError(i, f"{where}: needs a CxHxW input but gets a flat vector of {ins} "
                                "(a conv cannot follow flatten or dense)")
        c, h, w = shape
        if layer.out == 0:
            raise ShapeError(i, f"{where}: 0 output channels (input {ins})")
        if isinstance(layer, Conv):
            k, s, p = layer.kernel, layer.stride, layer.padding()
            if layer.pad == "same" and k % 2 == 0:
                raise ShapeError(i, f"{where}: pad 'same' needs an odd kernel, got {k}x{k}")
        else:
            k, s, p = layer.kernel, layer.stride, (layer.kernel - 1) // 2
            if k % 2 == 0:
                raise ShapeError(i, f"{where}: residual blocks need an odd kernel, got {k}x{k}")
        if p >= k:
            raise ShapeError(i, f"{where}: padding {p} must be smaller than the kernel {k}x{k}")
        if k > h + 2 * p or k > w + 2 * p:
            raise ShapeError(i, f"{where}: kernel {k}x{k} is larger than its input {ins} "
                                f"(padded by {p}: {h + 2 * p}x{w + 2 * p})")
        return (layer.out, _conv_out(h, k, s, p), _conv_out(w, k, s, p))
    if isinstance(layer, (MaxPool, AvgPool)):
        if not spatial:
            raise ShapeError(i, f"{where}: needs a CxHxW input but gets a flat vector of {ins}")
        c, h, w = shape
        k = layer.size
        s = layer.stride or k
        if k > h or k > w:
            raise ShapeError(i, f"{where}: window {k}x{k} is larger than its input {ins}")
        return (c, (h - k) // s + 1, (w - k) // s + 1)
    if isinstance(layer, Flatten):
        if not spatial:
            raise ShapeError(i, f"{where}: input {ins} is already flat")
        return (shape[0] * shape[1] * shape[2],)
    if isinstance(layer, Dense):
        if spatial:
            raise ShapeError(i, f"{where}: needs a flat input but gets {ins}; add a flatten layer before it")
        if layer.out == 0:
            raise ShapeError(i, f"{where}: 0 outputs (input {ins})")
        return (layer.out,)
    # relu, batchnorm, dropout keep the shape
    return shape


def infer_shapes(input_shape: Shape, layers: list[Any]) -> list[Shape]:
    """Per-image output shape after each layer (not counting the batch axis)."""
    if any(d < 1 for d in input_shape):
        raise ShapeError(-1, f"input {fmt_shape(input_shape)}: every dimension must be at least 1 (C, H, W)")
    shapes = []
    shape: Shape = tuple(input_shape)
    for i, layer in enumerate(layers):
        shape = layer_output(i, layer, shape)
        shapes.append(shape)
    return shapes


def layer_macs(layer: Any, in_shape: Shape, out_shape: Shape) -> int:
    """Multiply-accumulates of one image through ``layer`` (convs and dense layers; the rest is O(size))."""
    if isinstance(layer, Conv):
        return out_shape[0] * out_shape[1] * out_shape[2] * in_shape[0] * layer.kernel ** 2
    if isinstance(layer, Dense):
        return in_shape[0] * layer.out
    if isinstance(layer, Residual):
        o, oh, ow = out_shape
        macs = o * oh * ow * in_shape[0] * layer.kernel ** 2 + o * oh * ow * o * layer.kernel ** 2
        if residual_projects(layer, in_shape):
            macs += o * oh * ow * in_shape[0]
        return macs
    return 0


def residual_projects(layer: Residual, in_shape: Shape) -> bool:
    """Whether the skip path needs a 1x1 projection (channels or spatial size change)."""
    return layer.stride != 1 or in_shape[0] != layer.out


def _coerce_layer(v: Any) -> Any:
    # "relu" is shorthand for {kind: relu}
    if isinstance(v, str):
        return {"kind": v}
    return v


class ModelSpec(BaseModel):
    """A CNN: input (C, H, W), ``classes`` scores out of the last layer, softmax cross-entropy head."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: tuple[int, int, int]
    classes: int = Field(ge=2, le=1 << 20)
    layers: list[LayerSpec] = Field(min_length=1, max_length=1000)
    head: Literal["softmax_cross_entropy"] = "softmax_cross_entropy"
    init: Literal["he", "glorot"] = "he"
    description: str = ""

    _shapes: list[Shape] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("layers"), list):
            data = {**data, "layers": [_coerce_layer(v) for v in data["layers"]]}
        return data

    @model_validator(mode="after")
    def _infer(self) -> ModelSpec:
        try:
            shapes = infer_shapes(self.input, self.layers)
            last = shapes[-1]
            if last != (self.classes,):
                raise ShapeError(len(self.layers) - 1,
                                 f"layer {len(self.layers) - 1} ({self.layers[-1].kind}): the softmax "
                                 f"cross-entropy head needs {self.classes} scores (classes) but the network "
                                 f"ends in {fmt_shape(last)}; end with a dense layer of out: {self.classes}")
        except ShapeError as e:
            # A ValidationError (not a bare ValueError) so the error's loc points at the layer itself.
            loc: tuple[str | int, ...] = ("input",) if e.index < 0 else ("layers", e.index)
            bad = list(self.input) if e.index < 0 else self.layers[e.index].model_dump()
            raise ValidationError.from_exception_data(
                "ModelSpec",
                [InitErrorDetails(type=PydanticCustomError("impossible_network", "{msg}", {"msg": str(e)}),
                                  loc=loc, input=bad)],
            ) from None
        self._shapes = shapes
        return self

    # ---- derived facts ----
    @property
    def shapes(self) -> list[Shape]:
        """Per-image output shape after each layer."""
        return list(self._shapes)

    def in_shapes(self) -> list[Shape]:
        return [tuple(self.input), *self._shapes[:-1]]

    def forward_flops(self) -> int:
        """FLOPs of one image's forward pass: 2 x (conv + dense multiply-accumulates)."""
        return 2 * sum(layer_macs(ly, a, b) for ly, a, b in zip(self.layers, self.in_shapes(), self._shapes, strict=True))

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer: index, kind, input and output shape, forward MACs per image."""
        return [
            {"index": i, "kind": ly.kind, "in": fmt_shape(a), "out": fmt_shape(b), "macs": layer_macs(ly, a, b)}
            for i, (ly, a, b) in enumerate(zip(self.layers, self.in_shapes(), self._shapes, strict=True))
        ]


# ---------------------------------------------------------------- built-in definitions

def classic_mnist(batchnorm: bool = False) -> ModelSpec:
    """The classic MNIST classifier: conv 32, 64, 64 (3x3, same, ReLU), maxpool 2, dense 64, dense 10."""
    layers: list[Any] = []
    for c in (32, 64, 64):
        layers.append({"kind": "conv", "out": c, "kernel": 3, "pad": "same"})
        if batchnorm:
            layers.append("batchnorm")
        layers.append("relu")
    layers += [{"kind": "maxpool", "size": 2}, "flatten", {"kind": "dense", "out": 64}, "relu",
               {"kind": "dense", "out": 10}]
    return ModelSpec.model_validate({"input": [1, 28, 28], "classes": 10, "layers": layers})


BUILTIN_MODELS: dict[str, Any] = {
    "mnist-classic": classic_mnist,
    "mnist-classic-bn": lambda: classic_mnist(batchnorm=True),
}


def resolve(name: str, models: dict[str, ModelSpec] | None) -> ModelSpec:
    """The spec called ``name``: the suite's own ``models`` first, then the built-in ones."""
    if models and name in models:
        m = models[name]
        return m if isinstance(m, ModelSpec) else ModelSpec.model_validate(m)
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name]()
    known = sorted(set(models or {}) | set(BUILTIN_MODELS))
    raise ValueError(f"unknown model {name!r}; defined: {', '.join(known)}")

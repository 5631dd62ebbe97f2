"""Plan an ONNX graph once: order, constant folding, BatchNormalization folding, Conv+Relu fusion,
liveness and a work model per node. Pure: a :class:`Plan` is data that the executor walks.

* Order: Kahn's algorithm, ties broken by the file's node order (a valid file is already sorted).
* Constant folding: a node whose inputs are all initializers or folded values is evaluated once here on
  the host (the Shape / Gather / Unsqueeze / Concat chains of dynamic-batch exports, ConstantOfShape
  weights); so is ``Shape`` of a tensor whose shape is static for the planned input shapes.
* BatchNormalization folding (``fold_batchnorm``): a BN whose input is a Conv used only by it becomes the
  Conv's weights and bias, ``w' = w * s / sqrt(v + eps)``, ``b' = (b - mean) * s / sqrt(v + eps) + beta``
  (computed in float64), as onnxruntime's graph optimizer does.
* Conv+Relu fusion: a Relu whose input is a Conv used only by it is done by the convolution (in cache on
  the CPU's shifted-GEMM path, in place otherwise) and disappears from the plan.
* Liveness: each step lists the values whose last reader it is; the executor drops them after the step,
  so the live set is what later steps still need.
* Work per node: MACs of Conv / ConvTranspose / Gemm / MatMul (FLOPs = 2 x MACs plus one per output
  element of arithmetic ops), bytes = inputs read + outputs written once, weight bytes.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelError
from . import ops
from .importer import LoadedModel, TensorInfo, attrs_of, q

# Arithmetic ops counted as this many FLOPs per output element (data movement counts none).
_ELEMENT_FLOPS = {
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Sum": 1, "Max": 1, "Min": 1, "Mean": 1, "Pow": 1, "Relu": 1,
    "LeakyRelu": 2, "PRelu": 2, "Clip": 2, "Sigmoid": 4, "HardSigmoid": 3, "HardSwish": 4, "Tanh": 4, "Erf": 4,
    "Exp": 1, "Log": 1, "Sqrt": 1, "Neg": 1, "Abs": 1, "Reciprocal": 1, "Elu": 3, "Selu": 4, "Softplus": 3,
    "Softmax": 5, "LogSoftmax": 5, "BatchNormalization": 2, "LRN": 6, "Resize": 3,
}
_NO_FOLD = {"Dropout"}  # folding is fine but keeps the graph as written when its input is constant anyway


@dataclass(frozen=True)
class NodeWork:
    macs: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    weight_bytes: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"macs": self.macs, "flops": self.flops, "bytes": self.bytes, "weight_bytes": self.weight_bytes}


@dataclass
class Step:
    index: int
    name: str
    op_type: str
    handler: ops.Handler
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    free: list[str] = field(default_factory=list)
    work: NodeWork = NodeWork()
    fused: list[str] = field(default_factory=list)  # op types folded or fused into this step


@dataclass
class Plan:
    file: str
    opset: int
    steps: list[Step]
    constants: dict[str, np.ndarray]
    inputs: list[TensorInfo]
    outputs: list[str]
    shapes: dict[str, tuple[int, ...]]  # static shapes known for the planned input shapes
    dtypes: dict[str, np.dtype]
    folded: int = 0
    bn_folded: int = 0
    relu_fused: int = 0

    @property
    def macs(self) -> float:
        return sum(s.work.macs for s in self.steps)

    @property
    def flops(self) -> float:
        return sum(s.work.flops for s in self.steps)

    @property
    def weight_bytes(self) -> int:
        return sum(int(a.nbytes) for a in self.constants.values())

    def op_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.op_type] = out.get(s.op_type, 0) + 1
        return out

    def peak_activation_bytes(self, itemsize: int | None = None) -> tuple[int, list[int]]:
        """(largest live activation bytes over the plan, the two largest single activations), from the
        static shapes (0 for values of unknown shape)."""
        def nbytes(n: str) -> int:
            s = self.shapes.get(n)
            if s is None:
                return 0
            isz = itemsize or self.dtypes.get(n, np.dtype(np.float32)).itemsize
            return int(math.prod(s)) * isz

        live: dict[str, int] = {i.name: nbytes(i.name) for i in self.inputs}
        peak = sum(live.values())
        sizes: list[int] = list(live.values())
        for st in self.steps:
            for o in st.outputs:
                if o:
                    live[o] = nbytes(o)
                    sizes.append(live[o])
            peak = max(peak, sum(live.values()))
            for f in st.free:
                live.pop(f, None)
        sizes.sort(reverse=True)
        return peak, sizes[:2]


def _toposort(lm: LoadedModel) -> list[Any]:
    nodes = list(lm.graph.node)
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    deps: list[set[int]] = []
    users: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        d = {producer[x] for x in n.input if x in producer and producer[x] != i}
        deps.append(d)
        for j in d:
            users.setdefault(j, []).append(i)
    indeg = [len(d) for d in deps]
    ready = [i for i, k in enumerate(indeg) if k == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in users.get(i, []):
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise lm.error("the graph has a cycle")
    return order


def _static_shapes(lm: LoadedModel, input_shapes: dict[str, tuple[int, ...]] | None) -> dict[str, tuple[int, ...]]:
    """Static shapes of every value shape inference can fix, with the inputs set to ``input_shapes``."""
    import onnx

    model = lm.model
    if input_shapes:
        model = onnx.ModelProto()
        model.CopyFrom(lm.model)
        del model.graph.value_info[:]
        for vi in model.graph.input:
            if vi.name in input_shapes:
                dims = vi.type.tensor_type.shape.dim
                for d, v in zip(dims, input_shapes[vi.name], strict=False):
                    d.Clear()
                    d.dim_value = int(v)
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception as e:
            raise lm.error(f"shape inference failed for input shapes {input_shapes}: "
                           f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    out: dict[str, tuple[int, ...]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if all(d is not None for d in dims):
            out[vi.name] = tuple(int(d) for d in dims if d is not None)
    return out


def plan(lm: LoadedModel, *, fold_batchnorm: bool = False, fuse_relu: bool = True,
         input_shapes: dict[str, tuple[int, ...]] | None = None) -> Plan:
    """The execution plan of a validated model (see the module docstring)."""
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in lm.graph.initializer}
    shapes = _static_shapes(lm, input_shapes)
    dtypes: dict[str, np.dtype] = {i.name: i.dtype for i in lm.inputs}
    steps: list[Step] = []
    folded = 0
    for node in _toposort(lm):
        h = ops.lookup(node.op_type, lm.opset)
        if h is None or node.domain not in ("", "ai.onnx"):
            raise lm.error(f"node {q(node.name)} ({q(node.op_type)}) is not supported (validate first)")
        attrs = attrs_of(node)
        ins, outs = list(node.input), list(node.output)
        static_shape = node.op_type == "Shape" and ins[0] in shapes
        if (node.op_type not in _NO_FOLD and all(not n or n in consts for n in ins)) or static_shape:
            call = ops.Call(np, attrs, lm.opset, len(outs), node.name)
            args: list[Any] = [consts.get(n) if n else None for n in ins]
            if static_shape:
                args[0] = np.empty(shapes[ins[0]], dtype=np.uint8)
            try:
                vals = h.fn(call, args)
            except Exception as e:
                raise lm.error(f"node {q(node.name)} ({q(node.op_type)}): {e}") from None
            for n, v in zip(outs, vals, strict=False):
                if n:
                    consts[n] = np.asarray(v)
            folded += 1
            continue
        steps.append(Step(len(steps), node.name, node.op_type, h, ins, outs, attrs))
    p = Plan(lm.file, lm.opset, steps, consts, lm.inputs, [o.name for o in lm.outputs], shapes, dtypes, folded)
    if fold_batchnorm:
        _fold_bn(p)
    if fuse_relu:
        _fuse_relu(p)
    _liveness(p)
    _inplace(p)
    for s in p.steps:
        s.work = node_work(s, p)
    _drop_unused_constants(p)
    return p


def _consumers(p: Plan) -> dict[str, list[Step]]:
    users: dict[str, list[Step]] = {}
    for s in p.steps:
        for n in s.inputs:
            if n:
                users.setdefault(n, []).append(s)
    return users


def _sole_conv_producer(p: Plan, s: Step, users: dict[str, list[Step]], by_out: dict[str, Step]) -> Step | None:
    x = s.inputs[0]
    conv = by_out.get(x)
    if conv is None or conv.op_type != "Conv" or x in p.outputs or len(users.get(x, [])) != 1:
        return None
    return conv


def _absorb(p: Plan, op_type: str, fuse: Any) -> int:
    """Merge each ``op_type`` step whose input is a Conv read only by it into that Conv, when
    ``fuse(conv, step)`` agrees (and has rewritten the Conv); returns how many were merged."""
    users = _consumers(p)
    by_out = {o: s for s in p.steps for o in s.outputs if o}
    keep, n = [], 0
    for s in p.steps:
        conv = _sole_conv_producer(p, s, users, by_out) if s.op_type == op_type else None
        if conv is None or not fuse(conv, s):
            keep.append(s)
            continue
        conv.outputs = [s.outputs[0]]
        conv.fused.append(op_type)
        n += 1
    p.steps = keep
    _reindex(p)
    return n


def _fold_bn(p: Plan) -> None:
    def fuse(conv: Step, s: Step) -> bool:
        names = s.inputs[1:5]
        if len(s.inputs) < 5 or not all(n in p.constants for n in names) \
                or conv.inputs[1] not in p.constants or (len(conv.inputs) > 2 and conv.inputs[2]
                                                          and conv.inputs[2] not in p.constants) \
                or conv.attrs.get("_relu") or len([o for o in s.outputs if o]) != 1:
            return False
        scale, beta, mean, var = (p.constants[n].astype(np.float64) for n in names)
        a, b = ops.nn.bn_affine(scale, beta, mean, var, float(s.attrs.get("epsilon", 1e-5)))
        w = p.constants[conv.inputs[1]]
        bias = p.constants[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] \
            else np.zeros(w.shape[0])
        wname, bname = f"{conv.outputs[0]}::bn_w", f"{conv.outputs[0]}::bn_b"
        p.constants[wname] = (w.astype(np.float64) * a.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        p.constants[bname] = (bias * a + b).astype(w.dtype)
        conv.inputs = [conv.inputs[0], wname, bname]
        return True

    p.bn_folded += _absorb(p, "BatchNormalization", fuse)


def _fuse_relu(p: Plan) -> None:
    def fuse(conv: Step, s: Step) -> bool:
        conv.attrs = {**conv.attrs, "_relu": True}
        return True

    p.relu_fused += _absorb(p, "Relu", fuse)


def _reindex(p: Plan) -> None:
    for i, s in enumerate(p.steps):
        s.index = i


def _liveness(p: Plan) -> None:
    last: dict[str, int] = {}
    for s in p.steps:
        for n in s.inputs:
            if n and n not in p.constants:
                last[n] = s.index
        for n in s.outputs:
            if n:
                last.setdefault(n, s.index)  # produced and never read: dropped right away
    keep = set(p.outputs)
    for s in p.steps:
        s.free = []
    for n, i in last.items():
        if n not in keep:
            p.steps[i].free.append(n)


# Ops whose output is always a new array (never a view of an input), and the elementwise ops that may
# write their output into a dying input of one (the step where it is read for the last time).
_FRESH = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Sum",
          "Relu", "Clip", "MaxPool", "AveragePool", "Concat", "LeakyRelu", "Sigmoid", "HardSwish", "HardSigmoid",
          "GlobalAveragePool", "Softmax", "LRN", "Resize", "Pad"}
INPLACE = {"Relu", "Add", "Sub", "Mul", "Div", "Sum", "BatchNormalization", "Clip"}


def _inplace(p: Plan) -> None:
    """Mark (``_inplace`` = input position) elementwise steps that may overwrite an input they read for
    the last time: it saves a whole activation per step (a residual block's Add and Relu would each
    allocate one). Only inputs computed by a step whose output is fresh memory qualify, so no view of a
    live value is ever written (Reshape, Flatten, Identity, Dropout return views or their input)."""
    fresh = {o for s in p.steps if s.op_type in _FRESH for o in s.outputs if o}
    for s in p.steps:
        if s.op_type not in INPLACE:
            continue
        cands = [0, 1] if s.op_type in ("Add", "Mul", "Sum") else [0]
        for i in cands:
            if i >= len(s.inputs):
                continue
            n = s.inputs[i]
            if n in fresh and n in s.free and s.inputs.count(n) == 1 and \
                    p.shapes.get(n) is not None and p.shapes.get(n) == p.shapes.get(s.outputs[0]):
                s.attrs = {**s.attrs, "_inplace": i}
                break


def _drop_unused_constants(p: Plan) -> None:
    used = {n for s in p.steps for n in s.inputs} | set(p.outputs)
    for n in list(p.constants):
        if n not in used:
            del p.constants[n]


def node_work(s: Step, p: Plan) -> NodeWork:
    """The work model of one step from the static shapes (zero where a shape is unknown)."""
    def shape(n: str) -> tuple[int, ...] | None:
        if n in p.constants:
            return tuple(p.constants[n].shape)
        return p.shapes.get(n)

    def nbytes(n: str) -> float:
        sh = shape(n)
        if sh is None:
            return 0.0
        dt = p.constants[n].dtype if n in p.constants else p.dtypes.get(n, np.dtype(np.float32))
        return float(math.prod(sh) * dt.itemsize)

    ins = [n for n in s.inputs if n]
    outs = [n for n in s.outputs if n]
    byt = sum(nbytes(n) for n in ins) + sum(nbytes(n) for n in outs)
    wbytes = sum(nbytes(n) for n in ins if n in p.constants)
    out0 = shape(outs[0]) if outs else None
    macs = 0.0
    try:
        if s.op_type == "Conv" and out0 is not None and shape(ins[1]) is not None:
            w = shape(ins[1])
            assert w is not None
            macs = float(out0[0] * out0[1] * math.prod(out0[2:]) * math.prod(w[1:]))
        elif s.op_type == "ConvTranspose" and shape(ins[0]) is not None and shape(ins[1]) is not None:
            x, w = shape(ins[0]), shape(ins[1])
            assert x is not None and w is not None
            macs = float(x[0] * math.prod(x[2:]) * x[1] * math.prod(w[1:]))
        elif s.op_type in ("Gemm", "MatMul") and out0 is not None and shape(ins[0]) is not None:
            a = shape(ins[0])
            assert a is not None
            k = a[0] if (s.op_type == "Gemm" and s.attrs.get("transA", 0)) else a[-1]
            macs = float(math.prod(out0) * k)
    except (IndexError, TypeError):
        macs = 0.0
    elems = float(math.prod(out0)) if out0 is not None else 0.0
    per = _ELEMENT_FLOPS.get(s.op_type, 0)
    if s.op_type in ("MaxPool", "AveragePool"):
        per = int(math.prod(s.attrs.get("kernel_shape", [1])))
    extra = elems * (per + (1 if s.attrs.get("_relu") else 0))
    if s.op_type in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"):
        sh = shape(ins[0])
        extra = float(math.prod(sh)) if sh is not None else 0.0
    return NodeWork(macs=macs, flops=2 * macs + extra, bytes=byt, weight_bytes=wbytes)


def check_inputs(p: Plan, feeds: dict[str, Any]) -> None:
    """Refuse feeds that contradict the model's declared inputs (name, rank, fixed dimensions)."""
    for info in p.inputs:
        if info.name not in feeds:
            if info.name in p.constants:
                continue
            raise ModelError(f"input {q(info.name)} is missing", p.file)
        shape = tuple(feeds[info.name].shape)
        if info.dims and (len(shape) != len(info.dims) or any(
                isinstance(d, int) and d > 0 and d != v for d, v in zip(info.dims, shape, strict=False))):
            raise ModelError(f"input {q(info.name)} has shape {shape}, the model declares "
                             f"{tuple(d if d is not None else '?' for d in info.dims)}", p.file)

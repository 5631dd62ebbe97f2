"""Load an ONNX model (checker, shape inference, external data) and refuse what accelbench cannot run.

Every refusal is a :class:`accelbench.errors.ModelError` whose one-line message starts with the model
file; names taken from the model are quoted with ``repr`` so that terminal escapes or markup in a node
name reach no terminal raw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from . import ops

DOMAINS = ("", "ai.onnx")
MAX_FILE_BYTES = 4 << 30  # a larger protobuf needs external data anyway; refuse before reading


def q(name: str) -> str:
    """A name from the model, quoted with its control characters escaped."""
    return repr(str(name)[:200])


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: np.dtype
    dims: tuple[int | str | None, ...]  # int, a symbolic name, or None (unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": str(self.dtype), "shape": list(self.dims)}


@dataclass
class LoadedModel:
    file: str  # what messages name
    model: Any  # onnx.ModelProto
    opset: int  # ai.onnx opset
    inputs: list[TensorInfo]  # graph inputs that are not initializers
    outputs: list[TensorInfo]

    @property
    def graph(self) -> Any:
        return self.model.graph

    def error(self, msg: str) -> ModelError:
        return ModelError(msg, self.file)


def _info(vi: Any) -> TensorInfo:
    t = vi.type.tensor_type
    dims: list[int | str | None] = []
    for d in t.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None))
    try:
        dtype = ops.elementwise.np_dtype(t.elem_type) if t.elem_type else np.dtype(np.float32)
    except ValueError:
        dtype = np.dtype(object)
    return TensorInfo(vi.name, dtype, tuple(dims))


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def load(source: str | os.PathLike[str] | Any, file: str | None = None, check: bool = True) -> LoadedModel:
    """A model from a path or a ModelProto, checked (``onnx.checker``) and shape-inferred. Raises ModelError."""
    import onnx
    from google.protobuf.message import DecodeError

    ops._load()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        file = file or str(source)
        if not path.exists():
            raise ModelError("no such file", file)
        if path.is_dir():
            raise ModelError("is a directory, not an ONNX model", file)
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ModelError(f"file is {size} bytes; accelbench reads models up to {MAX_FILE_BYTES} bytes", file)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as e:
            raise ModelError(f"not an ONNX model (the protobuf does not parse: {_first_line(e)})", file) from None
        except OSError as e:
            raise ModelError(f"cannot read: {e.strerror}", file) from None
        if not model.graph.node and not model.opset_import:
            raise ModelError("not an ONNX model (no graph, no opset)", file)
        from onnx.external_data_helper import load_external_data_for_model, uses_external_data

        if any(uses_external_data(t) for t in model.graph.initializer):
            try:
                load_external_data_for_model(model, str(path.resolve().parent))
            except Exception as e:  # OSError, ValueError, onnx.checker.ValidationError
                raise ModelError(f"external data cannot be read: {_first_line(e)}", file) from None
    else:
        model = source
        file = file or (model.graph.name or "<model>")
    if not model.opset_import and not model.graph.node:
        raise ModelError("not an ONNX model (no graph, no opset)", file)
    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as e:  # onnx.checker.ValidationError and C++ errors surface as various types
            raise ModelError(f"fails the ONNX checker: {_first_line(e)}", file) from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        raise ModelError(f"shape inference failed: {_first_line(e)}", file) from None
    opset = next((int(o.version) for o in inferred.opset_import if o.domain in DOMAINS), 0)
    inits = {t.name for t in inferred.graph.initializer}
    inputs = [_info(i) for i in inferred.graph.input if i.name not in inits]
    outputs = [_info(o) for o in inferred.graph.output]
    return LoadedModel(file, inferred, opset, inputs, outputs)


def attrs_of(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (tensors as NumPy arrays, strings as str)."""
    import onnx
    from onnx import numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            out[a.name] = a
        else:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode("utf-8", "replace") for x in v]
            out[a.name] = v
    return out


def unsupported(lm: LoadedModel) -> list[tuple[Any, str]]:
    """(node, reason) for every node accelbench cannot run (empty when the model is supported)."""
    bad: list[tuple[Any, str]] = []
    if lm.opset > ops.MAX_OPSET or (lm.opset and lm.opset < ops.MIN_OPSET):
        return [(None, f"ai.onnx opset {lm.opset} is outside the supported {ops.MIN_OPSET}..{ops.MAX_OPSET}")]
    g = lm.graph
    typed = [(vi.name, vi.type.tensor_type.elem_type) for vi in [*g.input, *g.output, *g.value_info]
             if vi.type.HasField("tensor_type")] + [(t.name, t.data_type) for t in g.initializer]
    for vi in [*g.input, *g.output]:
        if not vi.type.HasField("tensor_type") and vi.type.WhichOneof("value"):
            return [(None, f"value {q(vi.name)} is a {vi.type.WhichOneof('value')}; only tensors are supported")]
    for name, et in typed:
        if et:
            try:
                ops.elementwise.np_dtype(et)
            except ValueError as e:
                return [(None, f"value {q(name)}: {e}")]
    from onnx import numpy_helper

    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in [*g.input, *g.value_info, *g.output]
             if vi.type.tensor_type.HasField("shape")}
    ranks.update({t.name: len(t.dims) for t in g.initializer})
    inits = {t.name: t for t in g.initializer}
    for node in lm.graph.node:
        if node.domain not in DOMAINS:
            bad.append((node, f"domain {q(node.domain)} is not supported (only ai.onnx is)"))
            continue
        h = ops.lookup(node.op_type, lm.opset)
        if h is None:
            known = node.op_type in ops.REGISTRY
            bad.append((node, "not supported at this opset" if known else "not supported"))
            continue
        why = h.check(attrs_of(node), lm.opset) if h.check is not None else None
        if why is None and h.max_outputs is not None and len([o for o in node.output if o]) > h.max_outputs:
            why = f"only the first {h.max_outputs} output(s) are supported"
        if why is None and h.max_rank is not None and node.input and ranks.get(node.input[0], 0) > h.max_rank:
            why = f"{ranks[node.input[0]]}-D input is not supported (up to {h.max_rank}-D)"
        if why is None and h.inference_only is not None and len(node.input) > h.inference_only \
                and node.input[h.inference_only]:
            t = inits.get(node.input[h.inference_only])
            if t is None or bool(numpy_helper.to_array(t).reshape(-1)[0]):
                why = "training_mode is not supported (inference only)"
        if why:
            bad.append((node, why))
    return bad


def validate(lm: LoadedModel) -> None:
    """Raise a one-line ModelError for the first node accelbench cannot run."""
    bad = unsupported(lm)
    if not bad:
        return
    node, why = bad[0]
    more = f" (and {len(bad) - 1} more node(s))" if len(bad) > 1 else ""
    if node is None:
        raise lm.error(f"{why}{more}")
    raise lm.error(f"node {q(node.name or '(unnamed)')} ({q(node.op_type)}) at opset {lm.opset}: {why}{more}; "
                   f"supported ops: {', '.join(ops.supported_ops())}")


def load_checked(source: Any, file: str | None = None) -> LoadedModel:
    lm = load(source, file)
    validate(lm)
    return lm

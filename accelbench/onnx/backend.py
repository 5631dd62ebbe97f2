"""accelbench as an ``onnx.backend.base.Backend``, so that onnx's own conformance tests
(``onnx.backend.test.BackendTest``) run against it.

    from accelbench.onnx import backend
    rep = backend.prepare("model.onnx", device="CPU")     # or "CUDA" (CuPy)
    outputs = rep.run([x])                               # NumPy arrays, in the graph's output order
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend as _Backend
from onnx.backend.base import BackendRep as _BackendRep
from onnx.backend.base import Device, DeviceType

from .. import backends
from .executor import Executor
from .importer import load_checked
from .planner import Plan, check_inputs, plan


def _xp(device: str) -> Any:
    d = Device(device)
    if d.type == DeviceType.CUDA:
        be = backends.gpu()
        if not be.available:
            raise RuntimeError(f"CUDA is not available: {be.reason}")
        return be.xp
    return np


class AccelbenchRep(_BackendRep):
    """A planned model on one device; ``run`` takes inputs in graph-input order (or a name -> array dict)."""

    def __init__(self, p: Plan, xp: Any) -> None:
        self.plan = p
        self.executor = Executor(p, xp)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            names = [i.name for i in self.plan.inputs]
            feeds = dict(zip(names, inputs, strict=False))
        check_inputs(self.plan, feeds)
        return tuple(self.executor.run_host(feeds))


class AccelbenchBackend(_Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        from .importer import load, unsupported

        try:
            return not unsupported(load(model, check=False))
        except Exception:
            return False

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> AccelbenchRep:
        xp = _xp(device)
        lm = load_checked(model)
        return AccelbenchRep(plan(lm, fold_batchnorm=bool(kwargs.get("fold_batchnorm", False))), xp)

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, Any]] | None = None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """One node on ``inputs`` (arrays in the node's input order), as a one-node model."""
        arrays = [np.asarray(a) for a in inputs]
        names = [n for n in node.input]
        vis = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in zip(names, arrays, strict=False) if n]
        outs = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n]
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        graph = onnx.helper.make_graph([node], "run_node", vis, outs)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        from .importer import load, validate

        lm = load(model, check=False)
        validate(lm)
        rep = AccelbenchRep(plan(lm), _xp(device))
        return rep.run({n: a for n, a in zip(names, arrays, strict=False) if n})

    @classmethod
    def supports_device(cls, device: str) -> bool:
        d = Device(device)
        if d.type == DeviceType.CPU:
            return True
        if d.type == DeviceType.CUDA:
            return backends.gpu().available
        return False


prepare = AccelbenchBackend.prepare
run_model = AccelbenchBackend.run_model
run_node = AccelbenchBackend.run_node
supports_device = AccelbenchBackend.supports_device
is_compatible = AccelbenchBackend.is_compatible

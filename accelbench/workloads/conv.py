"""conv2d forward, NCHW, through im2col + one GEMM (accelbench.ops.conv) on both backends.

Parameters follow DeepBench's naming: input N x C x H x W, K filters of R x S (height x width), stride
and zero padding per side. The float64 reference is computed independently of the strided-view im2col
(patches gathered by slice assignment, then a float64 GEMM), so a bug in the unfolding cannot hide in its
own reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from ..ops.conv import ConvGeometry, ConvWorkspace, conv2d_forward, conv_geometry
from ._common import MAX_ELEMENTS, Dim, FloatDType, host64, itemsize, poisoned, uniform
from .base import BaseParams, Check, Params, Work, Workload, register, rel_error

# Validate every image while the float64 reference stays under this many multiply-adds; above it,
# validate the first and last image of the batch (each output image depends only on its input image).
FULL_CHECK_MACS = 1 << 30


class Conv2dParams(Params):
    n: int = Dim(8, le=1 << 16, description="batch size")
    c: int = Dim(64, le=1 << 16, description="input channels")
    h: int = Dim(56, le=1 << 16, description="input height")
    w: int = Dim(56, le=1 << 16, description="input width")
    k: int = Dim(64, le=1 << 16, description="output channels (filters)")
    r: int = Dim(3, le=1024, description="filter height")
    s: int = Dim(3, le=1024, description="filter width")
    stride: int = Field(1, ge=1, le=1024, description="stride (both dimensions unless stride_w is set)")
    pad: int = Field(0, ge=0, le=1024, description="zero padding per side (both unless pad_w is set)")
    stride_w: int | None = Field(None, ge=1, le=1024, description="width stride when it differs")
    pad_w: int | None = Field(None, ge=0, le=1024, description="width padding when it differs")
    dtype: FloatDType = "float32"

    @model_validator(mode="after")
    def _check(self) -> Conv2dParams:
        try:
            g = geometry(self)
        except ValueError as e:
            raise ValueError(str(e)) from None
        for what, size in (("input", np.prod(g.x_shape)), ("im2col columns", np.prod(g.cols_shape)),
                           ("output", np.prod(g.y_shape))):
            if int(size) > MAX_ELEMENTS:
                raise ValueError(f"the {what} would have {int(size)} elements, more than {MAX_ELEMENTS}")
        return self


def geometry(p: Any) -> ConvGeometry:
    sw = p.stride if p.stride_w is None else p.stride_w
    pw = p.pad if p.pad_w is None else p.pad_w
    return conv_geometry((p.n, p.c, p.h, p.w), (p.k, p.c, p.r, p.s), (p.stride, sw), (p.pad, pw))


def reference_conv(x: np.ndarray, w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """Direct float64 convolution, written independently of ``ops.conv.im2col``: the patch matrix is
    filled by KH*KW slice assignments (no strided view), then one float64 GEMM."""
    n = x.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)))
    cols = np.empty((g.c, g.kh, g.kw, n, g.oh, g.ow))
    hs, ws = g.sh * (g.oh - 1) + 1, g.sw * (g.ow - 1) + 1
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, i, j] = xp[:, :, i:i + hs:g.sh, j:j + ws:g.sw].transpose(1, 0, 2, 3)
    y = w.reshape(g.f, -1) @ cols.reshape(g.ckk, -1)  # (F, N*OH*OW)
    return y.reshape(g.f, n, g.oh, g.ow).transpose(1, 0, 2, 3)


@register
class Conv2d(Workload):
    name = "conv2d"
    family = "conv"
    Params = Conv2dParams
    description = "2-D convolution forward, NCHW, im2col + one GEMM"

    @classmethod
    def work(cls, params: BaseParams) -> Work:
        g = geometry(params)
        e = itemsize(params.dtype)  # type: ignore[attr-defined]
        nbytes = e * (g.elements(g.x_shape) + g.elements(g.w_shape) + g.elements(g.y_shape))
        return Work(flops=float(g.forward_flops), bytes=float(nbytes), items=float(g.n), item_unit="images")

    @classmethod
    def memory_bytes(cls, params: BaseParams, backend: str) -> int:
        g = geometry(params)
        e = itemsize(params.dtype)  # type: ignore[attr-defined]
        x, w, y = g.elements(g.x_shape), g.elements(g.w_shape), g.elements(g.y_shape)
        dev = e * (x + w + y + g.workspace_elements())
        if backend == "gpu":
            return dev + (32 << 20)
        # float64 reference: padded input, patch matrix, weights, output, and the compared copies
        return dev + 8 * (2 * x + g.elements(g.cols_shape) + w + 3 * y)

    @classmethod
    def variant(cls, params: BaseParams, backend: str) -> dict[str, Any]:
        g = geometry(params)
        v: dict[str, Any] = {"impl": "im2col (strided view + copy) + one GEMM",
                             "gemm": {"m": g.f, "n": g.n * g.oh * g.ow, "k": g.ckk}}
        if backend == "gpu":
            from ._common import gpu_math_variant

            v.update(gpu_math_variant(params.dtype, "default"))  # type: ignore[attr-defined]
        return v

    def setup(self) -> None:
        p: Any = self.p
        self.g = geometry(p)
        if self.backend.is_gpu:
            from ._common import GpuMathMode

            self._math: Any = GpuMathMode(self.xp, p.dtype, "default")
        rng = self.rng()
        self.x = uniform(self.xp, rng, self.g.x_shape, p.dtype)
        self.wt = uniform(self.xp, rng, self.g.w_shape, p.dtype)
        self.y = poisoned(self.xp, self.g.y_shape, p.dtype)
        self.ws = ConvWorkspace(self.xp, self.g, p.dtype)
        self._stride = (self.g.sh, self.g.sw)
        self._pad = (self.g.ph, self.g.pw)

    def run(self) -> None:
        conv2d_forward(self.x, self.wt, None, self._stride, self._pad, out=self.y, workspace=self.ws)

    def output(self) -> Any:
        return self.y

    def reference(self) -> np.ndarray:
        return reference_conv(host64(self.backend, self.x), host64(self.backend, self.wt), self.g)

    def check(self) -> Check:
        g, tol = self.g, self.tolerance()
        out = self.backend.asnumpy(self.y)
        if g.forward_flops // 2 <= FULL_CHECK_MACS:
            idx, ref_name = np.arange(g.n), "float64 NumPy direct convolution"
        else:
            idx = np.unique(np.array([0, g.n - 1]))
            ref_name = f"float64 NumPy direct convolution ({len(idx)} of {g.n} images)"
        x64 = host64(self.backend, self.x[idx.tolist()] if len(idx) < g.n else self.x)
        ref = reference_conv(x64, host64(self.backend, self.wt), g)
        err = rel_error(out[idx], ref)
        ok = bool(err <= tol)
        return Check(passed=ok, rel_error=err, tolerance=tol, reference=ref_name,
                     message="" if ok else f"relative error {err:.3g} exceeds tolerance {tol:.3g}")

    def teardown(self) -> None:
        if getattr(self, "_math", None) is not None:
            self._math.restore()
        super().teardown()

"""Stride-1 2-D convolution on the CPU as KH*KW shifted GEMMs accumulated in place (no im2col copy).

The input of a chunk of images is laid out once as a zero-bordered NHWC grid flattened to rows,
``xg`` of shape ``(n*Hp*Wp, C)``. For a stride-1 convolution the output at grid row ``p`` is
``sum_{i,j} xg[p + i*Wp + j] @ W_ij`` with ``W_ij = w[:, :, i, j].T`` (C, F): every term reads a
*contiguous* block of rows ``xg[off:off + M]``, so each tap is one plain BLAS GEMM (M x C by C x F) that
adds into the output (``beta = 1``). Outputs are computed on the whole padded grid (``Hp*Wp`` instead
of ``OH*OW`` rows per image, 15% extra work on 28x28 with padding 1) and the valid ones are picked out
by one strided copy. Backward is the same pattern: ``dW_ij = xg[off:off+M].T @ dyg`` and
``dxg[off:off+M] += dyg @ W_ij.T``.

Why on the CPU: im2col writes and re-reads KH*KW times the activation (116 MB per 64-channel 3x3 layer
at batch 64 on 28x28), which on a 2-core machine costs about a third of a training step; here the
largest buffer is the padded activation itself and, processed a few images at a time, it stays in cache
between the GEMMs. NumPy's matmul cannot accumulate (no ``beta``), so the GEMMs go through
:func:`accelbench.ops.cpu_blas.gemm` (``cblas_?gemm`` of NumPy's own OpenBLAS, in place on row blocks).
Measured on the classic MNIST train step at batch 64 (2-core EPYC, interleaved A/B): 180 ms vs 197 ms
with whole-batch im2col and 185 ms with cache-sized im2col chunks.
The GPU keeps im2col + one large GEMM (:mod:`accelbench.ops.conv`): large GEMMs are what keep a GPU busy.

Layouts at the interface match :mod:`accelbench.ops.conv`: ``x`` (N, C, H, W), ``w`` (F, C, KH, KW),
``y`` (N, F, OH, OW). NumPy only; float32 and float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .conv import ConvGeometry
from .cpu_blas import _FLOATS, gemm

__all__ = ["ShiftConv", "supported"]

# Bytes of one chunk's padded activation grid (the larger of input and output channels). On the quiet
# 2-core EPYC 1 MB chunks (4 images of 64 channels at 29x29) were a few % faster than 4 MB ones (the
# operands stay in L2), but every chunk costs 21 GEMM calls, each a fork/join of OpenBLAS's threads,
# and when another process holds a core each join waits for a scheduler slice: with one busy process
# beside it the batch-64 step took 604 ms at 1 MB, 519 ms at 2 MB, 480 ms at 4 MB (the whole-batch
# im2col code: 478 ms). 4 MB keeps most of the cache benefit and is robust on a shared machine.
CHUNK_BYTES = 4 << 20

def supported(g: ConvGeometry, dtype: Any, min_channels: int = 8) -> bool:
    """Whether :class:`ShiftConv` handles this geometry: stride 1, a float type it has a GEMM for, and
    enough input channels for the per-tap GEMMs (K = C) to run near BLAS speed (a 1-channel first layer
    stays with im2col, whose columns are small there anyway)."""
    return g.sh == 1 and g.sw == 1 and np.dtype(dtype) in _FLOATS and g.c >= min_channels


class ShiftConv:
    """Forward and backward of one stride-1 convolution geometry, in chunks of images, with buffers
    allocated once (a step allocates nothing but SciPy's small call wrappers)."""

    def __init__(self, g: ConvGeometry, dtype: Any, chunk: int | None = None) -> None:
        if not supported(g, dtype, min_channels=1):
            raise ValueError(f"ShiftConv needs stride 1 and float32/float64, got {g} {dtype}")
        self.g = g
        self.dtype = np.dtype(dtype)
        # Each image gets an (Hp, Wp) block of the grid, its pixels at row offset ph and column offset
        # pw. Neighbouring images and rows share their zero borders: the bottom padding of an image is
        # the top padding of the next, and a row's right padding is read, one position further, as the
        # next row's left padding. So a block needs only max(p, 2p - k + 1) extra rows (columns), and
        # it must hold the OH x OW outputs, whose origin is the block's: for 3x3 "same" that is 29 x 29
        # per 28 x 28 image instead of 30 x 30 (7% instead of 15% of the GEMMs spent on border outputs).
        self.hp = g.h + max(g.ph, 2 * g.ph - g.kh + 1)
        self.wp = g.w + max(g.pw, 2 * g.pw - g.kw + 1)
        grid = self.hp * self.wp
        if chunk is None:
            chunk = CHUNK_BYTES // (max(g.c, g.f) * grid * self.dtype.itemsize)
        self.nb = max(1, min(g.n, chunk))
        self.reach = (g.kh - 1) * self.wp + (g.kw - 1)  # furthest shifted read
        # a zero tail past the last block for the last image's bottom border
        rows = self.nb * grid + max(0, self._m(self.nb) + self.reach - self.nb * grid)
        self.offsets = [i * self.wp + j for i in range(g.kh) for j in range(g.kw)]
        dt = self.dtype
        self.xg = np.zeros((rows, g.c), dtype=dt)  # border stays zero: only the interior is written
        self.yg = np.empty((rows, g.f), dtype=dt)
        self.dyg = np.zeros((rows, g.f), dtype=dt)  # rows outside the valid outputs stay zero
        self.dxg = np.empty((rows, g.c), dtype=dt)
        self.wf = np.empty((g.kh * g.kw, g.c, g.f), dtype=dt)  # W_ij = w[:, :, i, j].T
        self.wb = np.empty((g.kh * g.kw, g.f, g.c), dtype=dt)  # w[:, :, i, j]
        self.dwk = np.empty((g.kh * g.kw, g.c, g.f), dtype=dt)  # dW_ij accumulated over chunks
        self.x3 = np.empty((rows, g.kw * g.c), dtype=dt) if g.kw > 1 else self.xg
        self.mask = np.empty((self.nb, g.f, g.oh, g.ow), dtype=bool)  # fused ReLU's mask of one chunk

    @property
    def nbytes(self) -> int:
        bufs = (self.xg, self.yg, self.dyg, self.dxg, self.wf, self.wb, self.dwk)
        return sum(int(a.nbytes) for a in bufs) + (int(self.x3.nbytes) if self.x3 is not self.xg else 0)

    def _m(self, r: int) -> int:
        """Grid positions computed for a chunk of ``r`` images: up to the last valid output."""
        return (r - 1) * self.hp * self.wp + (self.g.oh - 1) * self.wp + self.g.ow

    def chunks(self) -> list[tuple[int, int]]:
        return [(n0, min(self.g.n, n0 + self.nb)) for n0 in range(0, self.g.n, self.nb)]

    def _grid(self, a: np.ndarray, r: int) -> np.ndarray:
        return a[: r * self.hp * self.wp].reshape(r, self.hp, self.wp, a.shape[1])

    def _load_x(self, x: np.ndarray) -> tuple[int, int]:
        """Copy a chunk (r, C, H, W) into the interior of the NHWC grid; returns (r, rows computed)."""
        g, r = self.g, x.shape[0]
        self._grid(self.xg, r)[:, g.ph:g.ph + g.h, g.pw:g.pw + g.w, :] = x.transpose(0, 2, 3, 1)
        return r, self._m(r)

    def _neighbours(self, r: int) -> np.ndarray:
        """The chunk's grid rows with their KW-1 right neighbours side by side, (rows, KW*C)."""
        g = self.g
        if g.kw == 1:
            return self.xg
        n = self._m(r) + (g.kh - 1) * self.wp  # the rows the weight-gradient GEMMs read
        it = self.xg.itemsize
        view = np.lib.stride_tricks.as_strided(self.xg, shape=(n, g.kw, g.c), strides=(g.c * it, g.c * it, it),
                                               writeable=False)
        self.x3[:n].reshape(n, g.kw, g.c)[...] = view
        return self.x3

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, out: np.ndarray,
                relu: bool = False) -> np.ndarray:
        """``out`` (N, F, OH, OW) = conv(x, w) + b, rectified (max(., 0)) when ``relu``: on a chunk of
        the output that is still in cache, instead of another pass over the whole activation."""
        g = self.g
        self.wf[...] = w.transpose(2, 3, 1, 0).reshape(self.wf.shape)
        for n0, n1 in self.chunks():
            r, m = self._load_x(x[n0:n1])
            for k, off in enumerate(self.offsets):
                # yg[:m] (m, F) += xg[off:off+m] (m, C) @ wf[k] (C, F)
                gemm(self.xg[off:off + m], self.wf[k], self.yg[:m], beta=0.0 if k == 0 else 1.0)
            valid = self._grid(self.yg, r)[:, :g.oh, :g.ow, :].transpose(0, 3, 1, 2)
            if b is not None:
                np.add(valid, b.reshape(1, g.f, 1, 1), out=out[n0:n1])
            else:
                out[n0:n1] = valid
            if relu:
                np.maximum(out[n0:n1], 0, out=out[n0:n1])
        return out

    def backward(self, dy: np.ndarray, x: np.ndarray, w: np.ndarray, dw: np.ndarray,
                 db: np.ndarray | None, dx: np.ndarray | None, relu_y: np.ndarray | None = None) -> None:
        """Given dy (N, F, OH, OW) and the forward's input x, write dW into ``dw`` (shaped like w), dB
        into ``db`` and dL/dx into ``dx`` (each skipped when None). ``relu_y``: the rectified output of
        a ``relu=True`` forward; dy is then the gradient after the ReLU and is masked with ``relu_y > 0``
        chunk by chunk as it is loaded."""
        g = self.g
        if dx is not None:
            self.wb[...] = w.transpose(2, 3, 0, 1).reshape(self.wb.shape)
        for ci, (n0, n1) in enumerate(self.chunks()):
            r, m = self._load_x(x[n0:n1])
            dyv = self._grid(self.dyg, r)[:, :g.oh, :g.ow, :]
            if relu_y is None:
                dyv[...] = dy[n0:n1].transpose(0, 2, 3, 1)
            else:
                mask = self.mask[:r]
                np.greater(relu_y[n0:n1], 0, out=mask)
                np.multiply(dy[n0:n1].transpose(0, 2, 3, 1), mask.transpose(0, 2, 3, 1), out=dyv)
            beta = 0.0 if ci == 0 else 1.0
            if db is not None:  # from the grid: the masked dy when the ReLU is fused
                if ci == 0:
                    self.dyg[:m].sum(axis=0, out=db)
                else:
                    db += self.dyg[:m].sum(axis=0)
            # dW_ij (C, F) += xg[off_ij:off_ij+m].T (C, m) @ dyg[:m] (m, F). A GEMM with a 64 x 64 output
            # and K = m runs at ~110 GFLOP/s here; stacking the KW taps of a kernel row makes the output
            # (KW*C) x F and the GEMM ~1.5x faster, for one in-cache copy of the grid's KW neighbours:
            # x3[p] = (xg[p], xg[p+1], ..., xg[p+KW-1]).
            x3 = self._neighbours(r)
            dw3 = self.dwk.reshape(g.kh, g.kw * g.c, g.f)  # dw3[i][j*C + c] = dW_ij[c]
            for i in range(g.kh):
                gemm(x3[i * self.wp:i * self.wp + m].T, self.dyg[:m], dw3[i], beta=beta)
            if dx is not None:
                self.dxg.fill(0)
                for k, off in enumerate(self.offsets):
                    # dxg[off:off+m] (m, C) += dyg[:m] (m, F) @ w[:, :, i, j] (F, C)
                    gemm(self.dyg[:m], self.wb[k], self.dxg[off:off + m], beta=1.0)
                dx[n0:n1] = self._grid(self.dxg, r)[:, g.ph:g.ph + g.h, g.pw:g.pw + g.w, :].transpose(0, 3, 1, 2)
        dw[...] = self.dwk.reshape(g.kh, g.kw, g.c, g.f).transpose(3, 2, 0, 1)

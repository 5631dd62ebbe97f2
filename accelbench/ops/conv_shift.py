"""Stride-1 2-D convolution on the CPU as KH*KW shifted GEMMs accumulated in place (no im2col copy).

The input of a chunk of images is laid out once as a zero-bordered grid, channel-major: ``xg`` of shape
``(C, cols)``, the images' padded planes one after the other along the columns. For a stride-1
convolution the output at grid column ``p`` is ``sum_{i,j} W_ij @ xg[:, p + i*Wp + j]`` with
``W_ij = w[:, :, i, j]`` (F, C): every term reads a *block of columns* ``xg[:, off:off + M]`` (unit stride
along M), so each tap is one plain BLAS GEMM (F x C by C x M) that adds into the output (``beta = 1``).
Outputs are computed on the whole padded grid (``Hp*Wp`` instead of ``OH*OW`` positions per image) and
the valid ones are picked out by one strided copy. Backward is the same pattern:
``dW_ij = dyg @ xg[:, off:off+M].T`` and ``dxg[:, q] = sum_ij W_ij.T @ dyg[:, q - off]``.

Why channel-major: the layer's activations are NCHW, whose planes are runs of W contiguous values; the
grid keeps that order, so filling it from ``x``, reading the output back into ``y`` and the same for
``dy``/``dx`` copy runs of W values. A pixel-major grid ((cols, C), NHWC) needs a transposing copy on
each of those four ways, and NumPy's transposing copies ran at ~1-2 GB/s: on the classic MNIST step at
batch 64 they took ~40% of the 64-channel layer's time, more than the GEMMs' shortfall from peak (the
GEMMs themselves run at the same speed in both layouts: 160-180 GFLOP/s for the forward shape).

Why on the CPU: im2col writes and re-reads KH*KW times the activation (116 MB per 64-channel 3x3 layer
at batch 64 on 28x28), which on a 2-core machine costs about a third of a training step; here the
largest buffers are a few times the padded activation and, processed a few images at a time, they stay
in cache between the GEMMs. NumPy's matmul cannot accumulate (no ``beta``), so the GEMMs go through
:func:`accelbench.ops.cpu_blas.gemm` (``cblas_?gemm`` of NumPy's own OpenBLAS, in place on column blocks).
The GPU keeps im2col + one large GEMM (:mod:`accelbench.ops.conv`): large GEMMs are what keep a GPU busy.

Layouts at the interface match :mod:`accelbench.ops.conv`: ``x`` (N, C, H, W), ``w`` (F, C, KH, KW),
``y`` (N, F, OH, OW). NumPy only; float32 and float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .conv import ConvGeometry
from .cpu_blas import _FLOATS, gemm, transpose

__all__ = ["STACK_DW", "ShiftConv", "supported"]

# Bytes of one chunk's padded activation grid (the larger of input and output channels). On the quiet
# 2-core EPYC 1 MB chunks (4 images of 64 channels at 29x29) were a few % faster than 4 MB ones (the
# operands stay in L2), but every chunk costs ~20 GEMM calls, each a fork/join of OpenBLAS's threads,
# and when another process holds a core each join waits for a scheduler slice: with one busy process
# beside it the batch-64 step took 604 ms at 1 MB, 519 ms at 2 MB, 480 ms at 4 MB (the whole-batch
# im2col code: 478 ms). 4 MB keeps most of the cache benefit and is robust on a shared machine.
CHUNK_BYTES = 4 << 20

# Whether the weight gradient stacks the KW taps of a kernel row into one GEMM (KH GEMMs with a KW*C x F
# output instead of KH*KW with C x F), from a copy of the grid with each column's KW-1 right neighbours
# below it (``x3``). Those GEMMs have K = M and a small output, and the larger output runs faster: with
# the copy included, 112 vs 97 GFLOP/s (C = 64) and 97 vs 75 (C = 32) on the 2-core EPYC.
# The forward and the input gradient stay per tap: their K = C (F) GEMMs with an M-wide output already
# run at 146-160 GFLOP/s, near this machine's sgemm peak (~190), and stacking them (K = 3C from an x3
# copy, or K = 3F from a copy of dy with its left neighbours) measured 120-129 and 87-119 GFLOP/s: the
# copy costs more than the larger K gains (``benchmarks/bench_conv_shift.py --gemms``).
STACK_DW = True

# Whether the weight gradient reads dy transposed, (positions, F), from a copy made per chunk
# (:func:`accelbench.ops.cpu_blas.transpose`, OpenBLAS's omatcopy, ~0.2 ms per 4 MB chunk): with both
# operands' K (the positions) contiguous the dW GEMM ran at 126-135 GFLOP/s, with dy's F contiguous at
# 148-153 (192 x 64 output, K = 16000, 2-core EPYC). The input gradient keeps reading the (F, cols) grid.
DY_T = True


def supported(g: ConvGeometry, dtype: Any, min_channels: int = 8) -> bool:
    """Whether :class:`ShiftConv` handles this geometry: stride 1, a float type it has a GEMM for, and
    enough input channels for the per-tap GEMMs (K = C) to run near BLAS speed (a 1-channel first layer
    stays with im2col, whose columns are small there anyway)."""
    return g.sh == 1 and g.sw == 1 and np.dtype(dtype) in _FLOATS and g.c >= min_channels


class ShiftConv:
    """Forward and backward of one stride-1 convolution geometry, in chunks of images, with buffers
    allocated once (a step allocates nothing but small temporaries)."""

    def __init__(self, g: ConvGeometry, dtype: Any, chunk: int | None = None, stack_dw: bool | None = None,
                 dy_t: bool | None = None) -> None:
        if not supported(g, dtype, min_channels=1):
            raise ValueError(f"ShiftConv needs stride 1 and float32/float64, got {g} {dtype}")
        self.g = g
        self.dtype = np.dtype(dtype)
        self.stack_dw = (STACK_DW if stack_dw is None else bool(stack_dw)) and g.kw > 1
        self.dy_t = DY_T if dy_t is None else bool(dy_t)
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
        cols = self.nb * grid + max(0, self._m(self.nb) + self.reach - self.nb * grid)
        self.offsets = [i * self.wp + j for i in range(g.kh) for j in range(g.kw)]
        dt = self.dtype
        # When the weight gradient stacks taps, the grid is the first C rows of the stacked copy ``x3``
        # (its j = 0 block), so that copy only writes the KW-1 shifted blocks; x3's last row is ones:
        # its GEMM row is sum_p dyg[:, p], the bias gradient (dyg is zero outside the valid outputs),
        # which saves a separate pass over dy.
        self.x3 = np.zeros((g.kw * g.c + 1, cols), dtype=dt) if self.stack_dw else None
        if self.x3 is not None:
            self.x3[-1] = 1
        # border stays zero: only the interior is written
        self.xg = self.x3[:g.c] if self.x3 is not None else np.zeros((g.c, cols), dtype=dt)
        self.yg = np.empty((g.f, cols), dtype=dt)
        # The input gradient reads dy at *negative* shifts (dxg[:, q] += W_ij.T @ dyg[:, q - off]): dyg
        # has ``reach`` zero columns in front of it. Columns outside the valid outputs stay zero.
        self.dyp = np.zeros((g.f, self.reach + cols), dtype=dt)
        self.dyg = self.dyp[:, self.reach:]
        self.dxg = np.empty((g.c, cols), dtype=dt)
        self.wf = np.empty((g.kh * g.kw, g.f, g.c), dtype=dt)  # W_ij = w[:, :, i, j]
        self.wb = np.empty((g.kh * g.kw, g.c, g.f), dtype=dt)  # W_ij.T
        # dW.T accumulated over chunks: per tap (KH*KW, C, F), or per kernel row (KH, KW*C, F) when stacked
        # (plus the bias gradient in row KW*C when stacked)
        self.dwk = np.empty((g.kh, g.kw * g.c + 1, g.f) if self.stack_dw else (g.kh * g.kw, g.c, g.f), dtype=dt)
        self.dyt = np.empty((cols, g.f), dtype=dt) if self.dy_t else None
        self.mask = np.empty((self.nb, g.f, g.oh, g.ow), dtype=bool)  # fused ReLU's mask of one chunk

    @property
    def nbytes(self) -> int:
        bufs = [self.x3 if self.x3 is not None else self.xg, self.yg, self.dyp, self.dxg, self.wf, self.wb, self.dwk,
                self.dyt]
        return sum(int(a.nbytes) for a in bufs if a is not None)

    def _m(self, r: int) -> int:
        """Grid positions computed for a chunk of ``r`` images: up to the last valid output."""
        return (r - 1) * self.hp * self.wp + (self.g.oh - 1) * self.wp + self.g.ow

    def chunks(self) -> list[tuple[int, int]]:
        return [(n0, min(self.g.n, n0 + self.nb)) for n0 in range(0, self.g.n, self.nb)]

    def _grid(self, a: np.ndarray, r: int) -> np.ndarray:
        """(channels, r, Hp, Wp) view of the first ``r`` image blocks of a grid buffer (never a copy:
        writes through it must land in the buffer)."""
        s0, s1 = a.strides
        return np.lib.stride_tricks.as_strided(a, shape=(a.shape[0], r, self.hp, self.wp),
                                               strides=(s0, self.hp * self.wp * s1, self.wp * s1, s1))

    def _load_x(self, x: np.ndarray) -> tuple[int, int]:
        """Copy a chunk (r, C, H, W) into the interior of the grid; returns (r, positions computed)."""
        g, r = self.g, x.shape[0]
        self._grid(self.xg, r)[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w] = x.transpose(1, 0, 2, 3)
        return r, self._m(r)

    def _neighbours(self, r: int) -> np.ndarray:
        """The chunk's grid with its KW-1 right neighbours below each column: (KW*C + 1, cols),
        x3[j*C + c, p] = xg[c, p + j] (the j = 0 block *is* xg), and a last row of ones. Block copies of
        contiguous runs, in cache."""
        g = self.g
        assert self.x3 is not None
        n = self._m(r) + (g.kh - 1) * self.wp  # the columns the stacked GEMMs read
        for j in range(1, g.kw):
            self.x3[j * g.c:(j + 1) * g.c, :n] = self.xg[:, j:j + n]
        return self.x3

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, out: np.ndarray,
                relu: bool = False) -> np.ndarray:
        """``out`` (N, F, OH, OW) = conv(x, w) + b, rectified (max(., 0)) when ``relu``: on a chunk of
        the output that is still in cache, instead of another pass over the whole activation."""
        g = self.g
        self.wf[...] = w.transpose(2, 3, 0, 1).reshape(self.wf.shape)
        for n0, n1 in self.chunks():
            r, m = self._load_x(x[n0:n1])
            for k, off in enumerate(self.offsets):
                # yg[:, :m] (F, m) += W_ij (F, C) @ xg[:, off:off+m] (C, m)
                gemm(self.wf[k], self.xg[:, off:off + m], self.yg[:, :m], beta=0.0 if k == 0 else 1.0)
            valid = self._grid(self.yg, r)[:, :, :g.oh, :g.ow]  # (F, r, OH, OW)
            if b is not None:  # the grid's own order, the output viewed to match (as for dy below)
                np.add(valid, b.reshape(g.f, 1, 1, 1), out=out[n0:n1].transpose(1, 0, 2, 3))
            else:
                out[n0:n1].transpose(1, 0, 2, 3)[...] = valid
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
            self.wb[...] = w.transpose(2, 3, 1, 0).reshape(self.wb.shape)
        for ci, (n0, n1) in enumerate(self.chunks()):
            r, m = self._load_x(x[n0:n1])
            dyv = self._grid(self.dyg, r)[:, :, :g.oh, :g.ow]  # (F, r, OH, OW)
            if relu_y is None:
                dyv.transpose(1, 0, 2, 3)[...] = dy[n0:n1]
            else:
                # operands in their own (N, F, ...) order and the grid view transposed to match: NumPy
                # then iterates in the inputs' order, 3x faster than with the inputs transposed
                mask = self.mask[:r]
                np.greater(relu_y[n0:n1], 0, out=mask)
                np.multiply(dy[n0:n1], mask, out=dyv.transpose(1, 0, 2, 3))
            beta = 0.0 if ci == 0 else 1.0
            dyg = self.dyg[:, :m]
            if db is not None and not self.stack_dw:  # from the grid: the masked dy when the ReLU is fused
                if ci == 0:
                    dyg.sum(axis=1, out=db)
                else:
                    db += dyg.sum(axis=1)
            # The weight gradient's GEMMs have a small output and K = m; computed as dW.T (the long
            # operand first) they ran faster than as dW (129 vs 120 GFLOP/s for 192 x 64, K = 16000).
            if self.dy_t:
                assert self.dyt is not None
                transpose(dyg, self.dyt[:m])
                dygt = self.dyt[:m]
            else:
                dygt = dyg.T
            if self.stack_dw:
                # dW_i.T (KW*C + 1, F) += x3[:, i*Wp:i*Wp+m] (KW*C + 1, m) @ dyg.T (m, F); row j*C + c is
                # dW_ij[:, c], row KW*C the bias gradient
                x3 = self._neighbours(r)
                for i in range(g.kh):
                    gemm(x3[:, i * self.wp:i * self.wp + m], dygt, self.dwk[i], beta=beta)
            else:
                for k, off in enumerate(self.offsets):
                    # dW_ij.T (C, F) += xg[:, off:off+m] (C, m) @ dyg.T (m, F)
                    gemm(self.xg[:, off:off + m], dygt, self.dwk[k], beta=beta)
            if dx is not None:
                # dxg[:, q] = sum_ij W_ij.T @ dyg[:, q - off_ij] for the columns up to the last interior
                # one of the chunk's last image (dyg[:, p] = dyp[:, reach + p]; zero in front of it)
                mx = (r - 1) * self.hp * self.wp + (g.ph + g.h - 1) * self.wp + g.pw + g.w
                for k, off in enumerate(self.offsets):
                    s0 = self.reach - off
                    gemm(self.wb[k], self.dyp[:, s0:s0 + mx], self.dxg[:, :mx], beta=0.0 if k == 0 else 1.0)
                dx[n0:n1] = self._grid(self.dxg, r)[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w].transpose(1, 0, 2, 3)
        # dwk[i, j*C + c, f] (stacked) or dwk[i*KW + j, c, f] (per tap): both are (KH, KW, C, F) in C order
        if self.stack_dw:
            dw[...] = self.dwk[:, :g.kw * g.c].reshape(g.kh, g.kw, g.c, g.f).transpose(3, 2, 0, 1)
            if db is not None:
                db[...] = self.dwk[0, g.kw * g.c]
        else:
            dw[...] = self.dwk.reshape(g.kh, g.kw, g.c, g.f).transpose(3, 2, 0, 1)

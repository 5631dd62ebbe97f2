"""The capturable matmul's layout plan (accelbench.ops.capture.gemm_plan), checked on the CPU by emulating the
column-major GEMM cuBLAS would run on the very same memory, and on a GPU (``gpu`` marker) for real."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from accelbench.ops.capture import OP_N, GemmPlan, gemm_plan


def _colmajor(flat: np.ndarray, off: int, rows: int, cols: int, ld: int) -> np.ndarray:
    it = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[off:], shape=(rows, cols), strides=(it, ld * it))


def _offset(view: np.ndarray, base: np.ndarray) -> int:
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // view.itemsize


def emulate(plan: GemmPlan, a: np.ndarray, abase: np.ndarray, b: np.ndarray, bbase: np.ndarray) -> np.ndarray:
    """What cublasGemm(StridedBatched)Ex(opB, opA, n, m, k, B, ldb, A, lda, C, ldc) computes, reading the
    operands only through the plan's pointer, leading dimensions and batch strides."""
    fa, fb = abase.reshape(-1), bbase.reshape(-1)
    oa, ob = _offset(a, abase), _offset(b, bbase)
    c = np.empty((plan.batch, plan.n, plan.m), dtype=np.float64)
    for i in range(plan.batch):
        bn = (plan.n, plan.k) if plan.b.trans == OP_N else (plan.k, plan.n)
        an = (plan.k, plan.m) if plan.a.trans == OP_N else (plan.m, plan.k)
        mb = _colmajor(fb, ob + i * plan.b.batch_stride, *bn, plan.b.ld)
        ma = _colmajor(fa, oa + i * plan.a.batch_stride, *an, plan.a.ld)
        opb = mb if plan.b.trans == OP_N else mb.T
        opa = ma if plan.a.trans == OP_N else ma.T
        c[i] = opb @ opa  # column-major (n x m) result = C^T
    out = np.transpose(c, (0, 2, 1))  # back to row-major (batch, m, n)
    return out.reshape(plan.out_shape)


def layouts(rng: np.random.Generator, rows: int, cols: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, view, its base) for one logical (rows x cols) matrix in every layout the layers produce."""
    out = []
    base = rng.standard_normal((rows, cols))
    out.append(("c-contiguous", base, base))
    base_t = rng.standard_normal((cols, rows))
    out.append(("transposed view", base_t.T, base_t))
    wide = rng.standard_normal((rows, cols + 5))
    out.append(("row slice (ld > cols)", wide[:, 2:2 + cols], wide))
    tall = rng.standard_normal((cols + 3, rows))
    out.append(("transposed slice", tall[1:1 + cols].T, tall))
    return out


SHAPES = [(5, 7, 3), (1, 9, 4), (6, 1, 5), (4, 3, 1), (1, 1, 1), (64, 10, 576)]


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_plan_reproduces_matmul_for_every_layout(m: int, n: int, k: int) -> None:
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    for an, a, abase in layouts(rng, m, k):
        for bn, b, bbase in layouts(rng, k, n):
            plan = gemm_plan(a.shape, a.strides, b.shape, b.strides, a.itemsize)
            assert plan is not None, (an, bn)
            got = emulate(plan, a, abase, b, bbase)
            np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12, err_msg=f"A {an}, B {bn}")


def test_batched_plan_with_broadcast_operand() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 3, 5))
    b = rng.standard_normal((5, 2))
    plan = gemm_plan(a.shape, a.strides, b.shape, b.strides, 8)
    assert plan is not None and plan.batch == 4 and plan.b.batch_stride == 0 and plan.out_shape == (4, 3, 2)
    np.testing.assert_allclose(emulate(plan, a, a, b, b), a @ b, rtol=1e-12)
    bt = rng.standard_normal((4, 2, 5))
    b3 = np.transpose(bt, (0, 2, 1))  # per-item transposed views
    plan = gemm_plan(a.shape, a.strides, b3.shape, b3.strides, 8)
    assert plan is not None
    np.testing.assert_allclose(emulate(plan, a, a, b3, bt), a @ b3, rtol=1e-12)


def test_layouts_without_a_unit_stride_or_mismatched_shapes_are_refused() -> None:
    x = np.zeros((6, 8))
    assert gemm_plan(x[::2, ::2].shape, x[::2, ::2].strides, (4, 3), (24, 8), 8) is None  # no unit stride
    assert gemm_plan((3, 4), (32, 8), (5, 2), (16, 8), 8) is None  # k mismatch
    assert gemm_plan((2, 3, 4), (96, 32, 8), (3, 4, 2), (64, 16, 8), 8) is None  # batch 2 vs 3
    assert gemm_plan((3,), (8,), (3, 2), (16, 8), 8) is None  # vectors are left to CuPy


@pytest.mark.gpu
def test_capturable_matmul_matches_cupy_and_is_recorded_by_a_graph() -> None:
    from accelbench import backends
    from accelbench.ops.capture import capturable

    cp: Any = backends.gpu().xp
    rng = np.random.default_rng(3)
    for dtype, tol in (("float32", 1e-5), ("float16", 2e-3), ("float64", 1e-12)):
        for m, n, k in [(64, 96, 576), (1, 10, 64), (33, 1, 7)]:
            a = cp.asarray(rng.standard_normal((k, m)).astype(dtype)).T  # transposed operand
            b = cp.asarray(rng.standard_normal((k, n)).astype(dtype))
            want = cp.matmul(a, b)
            out = cp.full((m, n), cp.nan, dtype=dtype)
            s = cp.cuda.Stream(non_blocking=True)
            with capturable(cp), s:
                s.begin_capture()
                cp.matmul(a, b, out=out)
                g = s.end_capture()
            assert bool(cp.isnan(out).all()), "capture must record, not run"
            g.launch(s)
            s.synchronize()
            err = float(cp.linalg.norm((out - want).astype("float64")) / cp.linalg.norm(want.astype("float64")))
            assert err < tol, (dtype, m, n, k, err)
    assert cp.matmul.__module__.startswith("cupy"), "cupy.matmul restored after the block"

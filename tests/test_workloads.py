"""The built-in kernel workloads, driven through the Workload life cycle on the CPU backend (and on the GPU
when one is usable): correct outputs pass, corrupted or unwritten outputs fail, work models match their
formulae, parameters are bounded, and the shipped suites validate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from accelbench import backends
from accelbench.workloads.base import REGISTRY, Workload, load_all

load_all()
ROOT = Path(__file__).resolve().parents[1]

# Small shapes (odd sizes on purpose: no power-of-two luck) for every kernel that runs on the CPU.
CPU_CASES: list[tuple[str, dict[str, Any]]] = [
    ("gemm", {"m": 67, "n": 45, "k": 33}),
    ("gemm", {"m": 67, "n": 45, "k": 33, "transa": True}),
    ("gemm", {"m": 67, "n": 45, "k": 33, "transb": True}),
    ("gemm", {"m": 40, "n": 24, "k": 56, "dtype": "float16"}),
    ("gemm", {"m": 31, "n": 17, "k": 9, "dtype": "float64"}),
    ("batched_gemm", {"batch": 5, "m": 19, "n": 23, "k": 11}),
    ("batched_gemm", {"batch": 3, "m": 19, "n": 23, "k": 11, "transa": True, "transb": True,
                      "dtype": "float16"}),
    ("conv2d", {"n": 2, "c": 3, "h": 11, "w": 9, "k": 5, "r": 3, "s": 3, "stride": 1, "pad": 1}),
    ("conv2d", {"n": 3, "c": 4, "h": 12, "w": 10, "k": 6, "r": 5, "s": 3, "stride": 2, "pad": 2,
                "stride_w": 1, "pad_w": 0}),
    ("conv2d", {"n": 2, "c": 3, "h": 8, "w": 8, "k": 4, "r": 1, "s": 1, "dtype": "float16"}),
    ("triad", {"n": 1001}),
    ("triad", {"n": 1001, "dtype": "float16"}),
    ("reduction", {"rows": 37, "cols": 53, "axis": 0}),
    ("reduction", {"rows": 37, "cols": 53, "axis": 1}),
    ("reduction", {"rows": 512, "cols": 300, "axis": 0, "dtype": "float16"}),
    ("softmax", {"rows": 13, "cols": 101}),
    ("softmax", {"rows": 13, "cols": 1001, "dtype": "float16"}),
    ("memcpy_d2d", {"kib": 3}),
]


def _ids(cases: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{n}-" + "-".join(f"{k}={v}" for k, v in p.items()) for n, p in cases]


def make(name: str, params: dict[str, Any], backend: str = "cpu", seed: int = 0) -> Workload:
    cls = REGISTRY[name]
    wl = cls(cls.Params.model_validate(params), backends.get(backend), seed=seed)
    wl.setup()
    return wl


def corrupt(wl: Workload) -> None:
    """Make the output plausibly wrong: every float value off by 50%, or one copied byte flipped."""
    out = wl.output()
    if out.dtype == np.uint8:
        out[len(out) // 2] ^= 0xFF
    else:
        out *= 1.5


def test_every_builtin_kernel_is_registered() -> None:
    want = {"gemm", "batched_gemm", "conv2d", "triad", "reduction", "softmax", "memcpy_d2d", "memcpy_h2d",
            "memcpy_d2h"}
    assert want <= set(REGISTRY)
    for name in want:
        cls = REGISTRY[name]
        assert cls.family and cls.description and cls.Params.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("name,params", CPU_CASES, ids=_ids(CPU_CASES))
def test_cpu_life_cycle_validates(name: str, params: dict[str, Any]) -> None:
    wl = make(name, params)
    wl.run()
    chk = wl.check()
    assert chk.passed, chk.message
    assert chk.rel_error is not None and chk.rel_error <= chk.tolerance
    wl.run()  # run() is repeatable on the same buffers (the timer calls it many times)
    assert wl.check().passed
    wl.teardown()
    assert all(v is None for k, v in vars(wl).items() if k not in ("p", "backend", "xp", "seed", "_rng"))


@pytest.mark.parametrize("name,params", CPU_CASES, ids=_ids(CPU_CASES))
def test_corrupted_output_fails(name: str, params: dict[str, Any]) -> None:
    wl = make(name, params)
    wl.run()
    corrupt(wl)
    chk = wl.check()
    assert not chk.passed
    assert chk.message


@pytest.mark.parametrize("name,params", CPU_CASES, ids=_ids(CPU_CASES))
def test_unwritten_output_fails(name: str, params: dict[str, Any]) -> None:
    """Outputs are poisoned at set-up, so a run() that writes nothing cannot pass validation."""
    wl = make(name, params)
    assert not wl.check().passed


def test_inputs_are_seeded_distinct_and_never_zero() -> None:
    a0 = make("gemm", {"m": 32, "n": 32, "k": 32}, seed=3)
    a1 = make("gemm", {"m": 32, "n": 32, "k": 32}, seed=3)
    a2 = make("gemm", {"m": 32, "n": 32, "k": 32}, seed=4)
    np.testing.assert_array_equal(a0.a, a1.a)  # type: ignore[attr-defined]
    assert not np.array_equal(a0.a, a2.a)  # type: ignore[attr-defined]
    assert not np.array_equal(a0.a, a0.b)  # type: ignore[attr-defined]  (A != B, or A@B == A@A hides bugs)
    for wl, attrs in ((a0, ("a", "b")), (make("triad", {"n": 4096, "dtype": "float16"}), ("b", "c")),
                      (make("memcpy_d2d", {"kib": 4}), ("src",))):
        for at in attrs:
            assert np.count_nonzero(getattr(wl, at) == 0) == 0


def test_work_models_follow_their_formulae() -> None:
    g = REGISTRY["gemm"].work(REGISTRY["gemm"].Params(m=100, n=30, k=7))
    assert (g.flops, g.bytes, g.items) == (2 * 100 * 30 * 7, 4 * (100 * 7 + 7 * 30 + 100 * 30), 100 * 30)
    bg = REGISTRY["batched_gemm"].work(REGISTRY["batched_gemm"].Params(batch=3, m=10, n=20, k=5,
                                                                          dtype="float16"))
    assert (bg.flops, bg.bytes) == (3 * 2 * 10 * 20 * 5, 3 * 2 * (10 * 5 + 5 * 20 + 10 * 20))
    # conv: 2 x 3 x 11 x 9 input, 5 filters 3x3, stride 2, pad 1 -> OH = (11+2-3)//2+1 = 6, OW = 5
    cv = REGISTRY["conv2d"].work(REGISTRY["conv2d"].Params(n=2, c=3, h=11, w=9, k=5, r=3, s=3, stride=2, pad=1))
    assert cv.flops == 2 * (2 * 5 * 6 * 5) * (3 * 3 * 3)
    assert cv.bytes == 4 * (2 * 3 * 11 * 9 + 5 * 3 * 3 * 3 + 2 * 5 * 6 * 5)
    assert (cv.items, cv.item_unit) == (2, "images")
    t = REGISTRY["triad"].work(REGISTRY["triad"].Params(n=1000, dtype="float16"))
    assert (t.flops, t.bytes, t.items) == (2000, 3 * 2 * 1000, 1000)
    r = REGISTRY["reduction"].work(REGISTRY["reduction"].Params(rows=40, cols=30, axis=0))
    assert (r.flops, r.bytes) == (40 * 30 - 30, 4 * (40 * 30 + 30))
    r16 = REGISTRY["reduction"].work(REGISTRY["reduction"].Params(rows=40, cols=30, axis=1, dtype="float16"))
    assert r16.bytes == 2 * 40 * 30 + 4 * 40  # fp16 in, fp32 sums out
    s = REGISTRY["softmax"].work(REGISTRY["softmax"].Params(rows=8, cols=100))
    assert (s.flops, s.bytes, s.items) == (5 * 800, 2 * 4 * 800, 8)
    d = REGISTRY["memcpy_d2d"].work(REGISTRY["memcpy_d2d"].Params(kib=2))
    h = REGISTRY["memcpy_h2d"].work(REGISTRY["memcpy_h2d"].Params(kib=2))
    assert (d.bytes, h.bytes, d.flops) == (2 * 2048, 2048, 0)


def test_conv_work_matches_what_runs() -> None:
    """The declared flops equal 2 x the GEMM the im2col formulation actually performs."""
    p = {"n": 2, "c": 3, "h": 11, "w": 9, "k": 5, "r": 3, "s": 3, "stride": 2, "pad": 1}
    wl = make("conv2d", p)
    gm = REGISTRY["conv2d"].variant(wl.p, "cpu")["gemm"]
    assert REGISTRY["conv2d"].work(wl.p).flops == 2 * gm["m"] * gm["n"] * gm["k"]
    wl.run()
    assert wl.output().shape == (2, 5, gm["n"] // 2 // 5, 5)


@pytest.mark.parametrize("name,params", CPU_CASES, ids=_ids(CPU_CASES))
def test_memory_bytes_covers_what_setup_allocates(name: str, params: dict[str, Any]) -> None:
    cls = REGISTRY[name]
    need = cls.memory_bytes(cls.Params.model_validate(params), "cpu")
    wl = make(name, params)
    held, seen = 0, set()
    for v in vars(wl).values():
        if id(v) in seen:  # on the CPU, xp.asarray(host) is the host array itself
            continue
        seen.add(id(v))
        if isinstance(v, np.ndarray):
            held += v.nbytes if v.base is None else 0  # views (transposed operands) hold nothing extra
        elif hasattr(v, "nbytes") and hasattr(v, "cols"):  # a ConvWorkspace
            held += v.nbytes
    assert held > 0
    assert held <= need <= 40 * held + (1 << 20)


def test_memory_bytes_scales_with_size() -> None:
    small = REGISTRY["gemm"].memory_bytes(REGISTRY["gemm"].Params(m=1024, n=1024, k=1024), "gpu")
    big = REGISTRY["gemm"].memory_bytes(REGISTRY["gemm"].Params(m=8192, n=8192, k=8192), "gpu")
    assert big >= 3 * 8192 * 8192 * 4 > small >= 3 * 1024 * 1024 * 4


def test_host_device_copies_and_tf32_are_skipped_on_cpu_with_a_reason() -> None:
    for name in ("memcpy_h2d", "memcpy_d2h"):
        cls = REGISTRY[name]
        for host in ("pinned", "pageable"):
            reason = cls.unsupported(cls.Params(kib=4, host=host), "cpu")
            assert reason and "device" in reason
            assert cls.unsupported(cls.Params(kib=4, host=host), "gpu") is None
    gemm = REGISTRY["gemm"]
    assert "TF32" in (gemm.unsupported(gemm.Params(math="tf32"), "cpu") or "")
    assert gemm.unsupported(gemm.Params(math="tf32"), "gpu") is None
    assert gemm.unsupported(gemm.Params(), "cpu") is None
    assert REGISTRY["memcpy_d2d"].unsupported(REGISTRY["memcpy_d2d"].Params(kib=4), "cpu") is None


def test_pageable_copies_declare_that_they_synchronise() -> None:
    cls = REGISTRY["memcpy_h2d"]
    be = backends.cpu()  # __init__ only: no set-up, so no GPU is needed
    assert cls(cls.Params(host="pageable"), be).synchronizes is True
    assert cls(cls.Params(host="pinned"), be).synchronizes is False
    assert REGISTRY["gemm"].synchronizes is False


def test_variant_records_what_runs() -> None:
    gemm = REGISTRY["gemm"]
    assert gemm.variant(gemm.Params(), "cpu")["math"] == "fp32"
    assert "no BLAS" in gemm.variant(gemm.Params(dtype="float16"), "cpu")["impl"]
    triad = REGISTRY["triad"]
    assert triad.variant(triad.Params(), "gpu")["impl"].startswith("vectorised RawKernel")
    assert triad.variant(triad.Params(dtype="float64"), "gpu")["impl"].startswith("one fused")


@pytest.mark.parametrize("name,params,msg", [
    ("gemm", {"m": 0}, "greater than or equal to 1"),
    ("gemm", {"m": -5}, "greater than or equal to 1"),
    ("gemm", {"m": 10**9}, "less than or equal"),
    ("gemm", {"m": 1 << 20, "n": 1 << 20}, "elements"),
    ("gemm", {"mm": 3}, "Extra inputs"),
    ("gemm", {"dtype": "int8"}, "float"),
    ("gemm", {"dtype": "float16", "math": "tf32"}, "tf32"),
    ("batched_gemm", {"batch": 0}, "greater than or equal to 1"),
    ("conv2d", {"h": 2, "w": 2, "r": 3, "s": 3}, "does not fit"),
    ("conv2d", {"stride": 0}, "greater than or equal to 1"),
    ("conv2d", {"pad": -1}, "greater than or equal to 0"),
    ("triad", {"n": 0}, "greater than or equal to 1"),
    ("reduction", {"axis": 2}, "Input should be"),
    ("softmax", {"rows": 1 << 20, "cols": 1 << 20}, "elements"),
    ("memcpy_d2d", {"kib": 0}, "greater than or equal to 1"),
    ("memcpy_h2d", {"host": "mapped"}, "pinned"),
])
def test_params_are_bounded_and_strict(name: str, params: dict[str, Any], msg: str) -> None:
    with pytest.raises(ValidationError, match=msg):
        REGISTRY[name].Params.model_validate(params)


def test_params_are_frozen() -> None:
    p = REGISTRY["gemm"].Params(m=4)
    with pytest.raises(ValidationError):
        p.m = 5  # type: ignore[misc]


def test_large_gemm_check_samples_rows_and_still_catches_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelbench.workloads import blas

    monkeypatch.setattr(blas, "FULL_CHECK_MACS", 100)  # force the sampled path on a small shape
    wl = make("gemm", {"m": 300, "n": 20, "k": 10})
    wl.run()
    chk = wl.check()
    assert chk.passed and "rows" in chk.reference
    wl.output()[150:, :] = 0.0  # half the rows wrong: the sample always includes the last row
    assert not wl.check().passed


def test_large_conv_check_samples_images_and_still_catches_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelbench.workloads import conv

    monkeypatch.setattr(conv, "FULL_CHECK_MACS", 10)
    wl = make("conv2d", {"n": 4, "c": 2, "h": 6, "w": 6, "k": 3, "r": 3, "s": 3, "pad": 1})
    wl.run()
    chk = wl.check()
    assert chk.passed and "images" in chk.reference
    wl.output()[-1] *= 2.0
    assert not wl.check().passed


@pytest.mark.parametrize("suite", ["kernels.yaml", "deepbench.yaml"])
def test_shipped_suites_validate(suite: str) -> None:
    from accelbench import suite as suite_mod

    s = suite_mod.load(ROOT / "suites" / suite)
    assert s.cases
    names = {c.workload for c in s.cases}
    if suite == "kernels.yaml":
        assert {"gemm", "batched_gemm", "conv2d", "triad", "reduction", "softmax", "memcpy_d2d",
                "memcpy_h2d", "memcpy_d2h"} <= names
        assert any(getattr(c.params, "math", "") == "tf32" for c in s.cases)
        assert {getattr(c.params, "dtype", None) for c in s.cases} >= {"float32", "float16"}
    else:
        assert names == {"gemm", "conv2d"}
    for c in s.cases:  # every CPU case's up-front memory need is modest on a laptop-class machine
        if "cpu" in c.backends:
            assert c.cls.memory_bytes(c.params, "cpu") < 8 << 30, c.name


# ---------------------------------------------------------------- GPU

GPU_CASES: list[tuple[str, dict[str, Any]]] = [
    *CPU_CASES,
    ("gemm", {"m": 512, "n": 384, "k": 256, "math": "tf32"}),
    ("batched_gemm", {"batch": 4, "m": 64, "n": 96, "k": 128, "math": "tf32"}),
    # the vectorised GPU triad's scalar tail: n not a multiple of its 4 (fp32) / 8 (fp16) vector width
    ("triad", {"n": 4099, "dtype": "float32"}),
    ("triad", {"n": 100_003, "dtype": "float16"}),
    ("memcpy_h2d", {"kib": 257, "host": "pinned"}),
    ("memcpy_h2d", {"kib": 257, "host": "pageable"}),
    ("memcpy_d2h", {"kib": 257, "host": "pinned"}),
    ("memcpy_d2h", {"kib": 257, "host": "pageable"}),
]


@pytest.mark.gpu
@pytest.mark.parametrize("name,params", GPU_CASES, ids=_ids(GPU_CASES))
def test_gpu_life_cycle_validates_and_corruption_fails(name: str, params: dict[str, Any]) -> None:
    be = backends.gpu()
    wl = make(name, params, "gpu")
    assert not wl.check().passed  # poisoned before the first run
    wl.run()
    be.synchronize()
    chk = wl.check()
    assert chk.passed, chk.message
    out = wl.output()
    if out.dtype == np.uint8:
        out[len(out) // 2] ^= 0xFF
    else:
        out *= 1.5
    be.synchronize()
    assert not wl.check().passed
    wl.teardown()


@pytest.mark.gpu
def test_gpu_math_mode_is_set_and_restored() -> None:
    from cupy._core import _routines_linalg as rl

    from accelbench.workloads._common import tf32_available

    before = rl.get_compute_type(np.float32)
    wl = make("gemm", {"m": 256, "n": 256, "k": 256, "math": "tf32"}, "gpu")
    want = "COMPUTE_TYPE_TF32" if tf32_available() else "COMPUTE_TYPE_DEFAULT"
    assert wl._math.active() == want  # type: ignore[attr-defined]
    v = REGISTRY["gemm"].variant(wl.p, "gpu")
    assert v["math"] == ("tf32" if tf32_available() else "fp32")
    wl.teardown()
    assert rl.get_compute_type(np.float32) == before
    fp32 = make("gemm", {"m": 256, "n": 256, "k": 256}, "gpu")
    assert fp32._math.active() == "COMPUTE_TYPE_DEFAULT"  # type: ignore[attr-defined]
    fp32.run()
    assert fp32.check().rel_error < 1e-5  # true fp32, not TF32 (which lands near 1e-4..1e-3)
    fp32.teardown()


@pytest.mark.gpu
def test_gpu_and_cpu_see_identical_inputs() -> None:
    c = make("gemm", {"m": 64, "n": 32, "k": 16}, "cpu", seed=9)
    g = make("gemm", {"m": 64, "n": 32, "k": 16}, "gpu", seed=9)
    np.testing.assert_array_equal(c.a, backends.gpu().asnumpy(g.a))  # type: ignore[attr-defined]
    assert math.isfinite(float(backends.gpu().asnumpy(g.b).sum()))  # type: ignore[attr-defined]

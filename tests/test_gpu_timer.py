"""The GPU timer on a real GPU (marked ``gpu``: skipped with the reason where none is usable).

Small real workloads (CuPy ops following the Workload contract) drive every path: cold samples with the
blocking kernel and L2 flush, batch and graph with rotated inputs, a workload that synchronises (declared,
and undeclared: caught by the blocking kernel's time-out), a capture that fails, and the counter window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from accelbench import backends
from accelbench.measure.counters import CounterSampler
from accelbench.measure.timing import TimingPolicy
from accelbench.workloads.base import Params, Work, Workload

pytestmark = pytest.mark.gpu

FAST = TimingPolicy(warmup=2, warmup_time_s=0.0, min_samples=10, max_samples=2000, min_time_s=0.05,
                    max_time_s=0.4, target_rel_ci=0.02)


class NParams(Params):
    n: int = 1 << 22


class Scale(Workload):
    """y = 2x on n float32: a memory-bound kernel whose work model is exact."""

    name = "t_gpu_scale"
    Params = NParams

    @classmethod
    def work(cls, p: Any) -> Work:
        return Work(flops=p.n, bytes=8 * p.n, items=p.n)

    @classmethod
    def memory_bytes(cls, p: Any, backend: str) -> int:
        return 8 * p.n

    def setup(self) -> None:
        self.x = self.random((self.p.n,), "float32")
        self.y = self.xp.empty_like(self.x)

    def run(self) -> None:
        self.xp.multiply(self.x, 2.0, out=self.y)

    def output(self) -> Any:
        return self.y

    def reference(self) -> np.ndarray:
        return self.backend.asnumpy(self.x).astype(np.float64) * 2


class SyncsDeclared(Scale):
    name = "t_gpu_syncs"
    synchronizes = True

    def run(self) -> None:
        self.xp.multiply(self.x, 2.0, out=self.y)
        self.host = self.xp.asnumpy(self.y[:4])  # a device-to-host copy: synchronises


class SyncsUndeclared(SyncsDeclared):
    name = "t_gpu_syncs_hidden"
    synchronizes = False


def _wl(cls: type[Workload], n: int = 1 << 22) -> Workload:
    be = backends.gpu()
    wl = cls(cls.Params.model_validate({"n": n}), be, seed=0)
    wl.setup()
    wl.run()
    be.synchronize()
    assert wl.check().passed
    return wl


def test_cold_batch_graph_on_a_memory_bound_kernel() -> None:
    from accelbench.measure.gpu import measure_gpu

    wl = _wl(Scale)
    cold, extra = measure_gpu(wl, FAST)
    assert cold.method == "cuda-events-cold"
    assert cold.blocking_kernel is True  # type: ignore[attr-defined]
    assert len(cold.samples_s) >= FAST.min_samples and all(s > 0 for s in cold.samples_s)
    assert cold.cpu_launch_s is not None and len(cold.cpu_launch_s) == len(cold.samples_s)
    assert cold.stop_reason in ("rel_ci<target", "noise_stable", "max_time", "max_samples")
    # 32 MiB moved: far below any H100/A100 bandwidth ceiling would take < 1 us or > 1 ms
    gbps = 8 * (1 << 22) / cold.summary.median / 1e9
    assert 50 < gbps < 10000
    assert {"batch", "graph"} <= set(extra)
    # a 16 MiB working set fits in L2: batch and graph must rotate inputs
    assert extra["graph"].rotation > 1  # type: ignore[attr-defined]
    assert extra["batch"].inner_loops >= 1
    # the blocking kernel measured the SM clock for every kept sample
    clocks = cold.sm_clock_mhz  # type: ignore[attr-defined]
    assert clocks and all(c is None or 100 < c < 5000 for c in clocks)


def test_declared_sync_skips_blocker_and_batch_and_graph_fails_gracefully() -> None:
    from accelbench.measure.gpu import measure_gpu

    wl = _wl(SyncsDeclared, 1 << 16)
    cold, extra = measure_gpu(wl, FAST)
    assert cold.blocking_kernel is False  # type: ignore[attr-defined]
    assert "batch" not in extra and "graph" not in extra
    assert any("synchronises" in n for n in cold.notes)
    assert len(cold.samples_s) >= FAST.min_samples


def test_graph_capture_failure_is_a_note_not_an_error() -> None:
    from accelbench.measure.gpu import _context, _graph

    wl = _wl(SyncsDeclared, 1 << 16)
    ctx = _context(wl.xp)
    notes: list[str] = []
    with ctx.stream:
        g = _graph([wl], ctx, FAST, 1e-5, notes)
    assert g is None
    assert notes and notes[0].startswith("graph capture failed")
    # the stream still works afterwards
    wl2 = _wl(Scale, 1 << 16)
    from accelbench.measure.gpu import measure_gpu

    cold, _ = measure_gpu(wl2, FAST, modes=("cold",))
    assert cold.samples_s


def test_undeclared_sync_is_caught_by_the_blocking_kernel_timeout() -> None:
    from accelbench.measure.gpu import measure_gpu

    wl = _wl(SyncsUndeclared, 1 << 16)
    cold, extra = measure_gpu(wl, FAST, modes=("cold",))
    assert any("blocking kernel timed out" in n for n in cold.notes)
    assert cold.blocking_kernel is False  # type: ignore[attr-defined]
    assert len(cold.samples_s) >= FAST.min_samples


def test_counters_with_real_nvml_are_readings_or_absent_never_zero() -> None:
    from accelbench.measure.gpu import measure_gpu

    wl = _wl(Scale, 1 << 24)
    s = CounterSampler(interval_s=0.05)
    s.start()
    try:
        caps = s.capabilities()
        with s.case("scale", "gpu") as cc:
            measure_gpu(wl, FAST, counters=cc)
        r = cc.result()
    finally:
        s.stop()
    if caps["nvml"] != "supported":
        pytest.skip(f"NVML not usable here: {caps['nvml']}")
    assert r["gpu_samples"] >= 1
    for k in ("power_w_mean", "sm_clock_mhz_mean", "temperature_c_max"):
        if k in r:
            assert r[k] > 0, k
    if caps["nvml_queries"].get("total_energy") == "supported":
        # the steady window lasted long enough for an energy figure
        assert r.get("energy_j", 0) > 0, r.get("energy_status")
        assert r["energy_window_s"] >= 0.25


def test_calibrate_gpu_quick_gives_positive_plausible_ceilings() -> None:
    from accelbench import environment
    from accelbench.calibrate import gpu_peaks

    pk = gpu_peaks(quick=True, copy_bytes=1 << 26, gemm_n=1024)
    assert pk["d2d_copy_gbps"] > 10 and pk["h2d_gb_per_s"] > 0.1 and pk["d2h_gb_per_s"] > 0.1
    th = environment.gpu_info().get("theoretical_bandwidth_gbps")
    if th:
        assert pk["d2d_copy_gbps"] < th * 1.05  # a copy cannot beat the DRAM's theoretical bandwidth
    assert pk.get("gemm_fp16_gflops", 0) > pk.get("gemm_fp32_gflops", 0) > 0

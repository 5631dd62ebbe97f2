"""Counters: summaries, energy/GPM arithmetic, attribution of polls to cases, and clean degradation when
NVML, GPM or a query is missing (this machine has no GPU driver, which is itself the degradation test).

Expected values are computed independently here (numpy over the same inputs), never copied from a run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest

from accelbench import backends
from accelbench.measure.counters import (
    MIN_WINDOW_S,
    CounterSampler,
    EnergyEdges,
    ReplayDevice,
    energy_window,
    gpm_window,
    summarize_gpu,
)
from accelbench.measure.nvml import (
    CLOCK_EVENT_REASONS,
    NvmlDevice,
    classify_error,
    cuda_uuid_string,
    decode_reasons,
)

ALL_OK = {k: "supported" for k in ("power_instant", "power_usage", "sm_clock", "mem_clock", "temperature",
                                   "utilization", "memory_info", "pcie_counters", "pcie_throughput",
                                   "clock_event_reasons", "total_energy", "default_sm_clock", "max_sm_clock",
                                   "power_limit", "processes", "gpm")}


def polls(n: int, t0: float = 0.0, dt: float = 0.1, seed: int = 0, reasons: list[int] | None = None
          ) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({"t": t0 + i * dt, "power_w": float(rng.uniform(300, 700)),
                    "sm_clock_mhz": float(rng.choice([1755.0, 1980.0, 1410.0])),
                    "mem_clock_mhz": 2619.0, "temperature_c": float(rng.uniform(40, 80)),
                    "gpu_util_percent": float(rng.integers(0, 101)), "memory_busy_percent": float(rng.integers(0, 101)),
                    "memory_used_bytes": int(rng.integers(1, 80) * 2**30),
                    "pcie_tx_bytes_total": 10_000 + 5_000_000 * i, "pcie_rx_bytes_total": 7 + 1_000_000 * i,
                    "clock_event_reasons": (reasons[i % len(reasons)] if reasons else 0)})
    return out


# ---------------------------------------------------------------- pure summaries


def test_summarize_gpu_matches_numpy_and_ors_reasons() -> None:
    ps = polls(12, reasons=[0x1, 0x0, 0x4, 0x0])
    s = summarize_gpu(ps)
    col = {k: np.array([p[k] for p in ps], dtype=float) for k in ps[0]}
    assert s["power_w_mean"] == pytest.approx(col["power_w"].mean())
    assert s["power_w_max"] == pytest.approx(col["power_w"].max())
    assert s["sm_clock_mhz_min"] == pytest.approx(col["sm_clock_mhz"].min())
    assert s["temperature_c_max"] == pytest.approx(col["temperature_c"].max())
    assert s["memory_busy_percent_mean"] == pytest.approx(col["memory_busy_percent"].mean())
    assert s["gpu_memory_used_bytes_max"] == int(col["memory_used_bytes"].max())
    span = ps[-1]["t"] - ps[0]["t"]
    assert s["pcie_tx_bytes_per_s_mean"] == pytest.approx((ps[-1]["pcie_tx_bytes_total"] - ps[0]["pcie_tx_bytes_total"]) / span)
    assert s["clock_event_reasons_mask"] == 0x5
    assert s["clock_event_reasons"] == ["gpu_idle", "sw_power_cap"]
    assert s["throttled"] is True  # sw_power_cap is a slowdown; gpu_idle alone is not
    assert s["gpu_samples"] == 12
    assert summarize_gpu(polls(3, reasons=[0x1]))["throttled"] is False


def test_summarize_gpu_leaves_missing_quantities_out_never_zero() -> None:
    ps = [{"t": 0.0, "sm_clock_mhz": 1980.0}, {"t": 0.1, "sm_clock_mhz": 1900.0}]
    s = summarize_gpu(ps)
    assert s["sm_clock_mhz_mean"] == pytest.approx(1940.0)
    for k in ("power_w_mean", "temperature_c_max", "gpu_util_percent_mean", "clock_event_reasons",
              "pcie_tx_bytes_per_s_mean", "gpu_memory_used_bytes_max"):
        assert k not in s
    assert summarize_gpu([]) == {}


def test_energy_window_arithmetic_and_refusals() -> None:
    work = {"flops": 2 * 4096**3, "bytes": 3 * 2**30, "items": 4096 * 4096}
    e = energy_window(1_000_000, 1_150_000, 0.5, ops=300, work=work)
    joules = 150.0
    assert e["energy_j"] == pytest.approx(joules)
    assert e["energy_j_per_op"] == pytest.approx(joules / 300)
    assert e["energy_j_per_item"] == pytest.approx(joules / (300 * 4096 * 4096))
    assert e["gflop_per_j"] == pytest.approx(300 * 2 * 4096**3 / 1e9 / joules)
    assert e["energy_avg_power_w"] == pytest.approx(joules / 0.5)
    short = energy_window(0, 5000, MIN_WINDOW_S / 2, ops=10)
    assert short["energy_status"].startswith("window too short") and "energy_j" not in short
    assert energy_window(None, 5, 1.0, 1) == {"energy_status": "absent"}
    assert energy_window(7, 7, 1.0, 1)["energy_status"] == "energy counter did not advance"


def test_gpm_window_puts_dram_utilisation_beside_the_work_model() -> None:
    m = {"dram_bw_util_percent": 88.0, "sm_util_percent": 97.0}
    g = gpm_window(m, 0.4, achieved_gbps=2900.0, peak_gbps=3352.3)
    assert g["gpm_dram_bw_util_percent"] == 88.0 and g["gpm_sm_util_percent"] == 97.0
    assert g["model_bw_percent_of_peak"] == pytest.approx(100 * 2900 / 3352.3)
    assert g["gpm_dram_over_model"] == pytest.approx(88.0 / (100 * 2900 / 3352.3))
    assert gpm_window(m, 0.05)["gpm_status"].startswith("window too short")
    assert gpm_window(None, 1.0) == {"gpm_status": "absent"}


def test_decode_reasons_and_error_classification_with_real_pynvml_errors() -> None:
    assert decode_reasons(None) == []
    assert decode_reasons(0) == []
    assert decode_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_reasons(0x1000)[-1] == "0x1000"
    assert len(CLOCK_EVENT_REASONS) == 9
    pynvml = pytest.importorskip("pynvml")
    assert classify_error(pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)) == "not supported"
    assert classify_error(pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)) == "no permission"
    assert classify_error(pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)) == "function not found"
    assert classify_error(AttributeError("x")) == "function not found"
    assert classify_error(ValueError("boom")).startswith("error: ValueError")


def test_cuda_uuid_formatting_matches_nvml_spelling() -> None:
    raw = bytes(range(16))
    assert cuda_uuid_string(raw) == "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert cuda_uuid_string("MIG-abc") == "MIG-abc"
    assert cuda_uuid_string(b"short") is None


# ---------------------------------------------------------------- the sampler on replayed readings


def _replay(probe: dict[str, str] | None = None, n: int = 40, **kw: Any) -> ReplayDevice:
    return ReplayDevice(probe=probe or ALL_OK, polls=polls(n, reasons=[0x0, 0x4]),
                        energy_mj=kw.pop("energy_mj", [5_000_000, 5_300_000]),
                        gpm_windows=kw.pop("gpm_windows", [{"dram_bw_util_percent": 90.0}]),
                        default_sm_clock_mhz=1755.0, max_sm_clock_mhz=1980.0, **kw)


def test_polls_are_attributed_to_the_case_running() -> None:
    dev = _replay()
    s = CounterSampler(interval_s=3600, device=dev)  # the thread never fires: we poll by hand
    s.start()
    try:
        s.poll_once()  # no case: dropped
        with s.case("a", "gpu") as a:
            for _ in range(3):
                s.poll_once()
        s.poll_once()  # between cases: dropped
        with s.case("b", "gpu") as b:
            for _ in range(5):
                s.poll_once()
    finally:
        s.stop()
    ra, rb = a.result(), b.result()
    assert ra["gpu_samples"] == 3 and rb["gpu_samples"] == 5
    assert ra["samples"] == 3 and rb["samples"] == 5  # psutil readings ride the same polls
    # with no case running the device is not read at all, so case a got the recording's first 3 readings
    expect = np.mean([p["power_w"] for p in dev._polls[0:3]])
    assert ra["power_w_mean"] == pytest.approx(expect)
    assert dev.closed


def test_a_poll_that_straddles_a_case_boundary_is_dropped() -> None:
    class Boundary(ReplayDevice):
        sampler: CounterSampler

        def poll(self) -> dict[str, Any]:
            r = super().poll()
            self.sampler._current = None  # the case ended while NVML was answering
            return r

    dev = Boundary(probe=ALL_OK, polls=polls(4))
    s = CounterSampler(interval_s=3600, device=dev)
    dev.sampler = s
    s.start()
    with s.case("a", "gpu") as cc:
        s.poll_once()
    s.stop()
    assert cc.result().get("gpu_samples", 0) == 0


def test_counter_window_energy_and_gpm_from_replayed_device() -> None:
    dev = _replay()
    s = CounterSampler(interval_s=3600, device=dev)
    s.start()
    with s.case("triad", "gpu") as cc:
        assert cc.counter_window_s() == MIN_WINDOW_S
        assert cc.default_sm_clock_mhz() == 1755.0
        cc.window_begin()
        time.sleep(MIN_WINDOW_S + 0.02)
        cc.window_end(ops=100, work={"bytes": 3 * 2**28 * 4, "items": 2**28}, gpu_time_s=0.3)
    s.stop()
    r = cc.result()
    assert r["energy_j"] == pytest.approx(300.0)
    assert r["energy_j_per_op"] == pytest.approx(3.0)
    assert r["gpm_dram_bw_util_percent"] == 90.0
    assert r["model_gbps"] == pytest.approx(100 * 3 * 2**28 * 4 / 0.3 / 1e9)
    assert "absent" not in r


def _stepping_counter(t: float, power_w: float = 500.0, period_s: float = 0.1, e0_mj: int = 7_000_000) -> int:
    """An energy counter (mJ) that, like the H100's, only updates every ``period_s`` with the energy so far."""
    return e0_mj + int(round(power_w * 1000 * period_s * math.floor(t / period_s)))


def test_energy_between_counter_updates_is_exact_where_window_ends_are_not() -> None:
    edges = EnergyEdges()
    ts = np.arange(0.037, 0.40, 0.001)  # the steady loop reads the counter after each ~1 ms batch
    for t in ts:
        edges.feed(float(t), _stepping_counter(float(t)))
    assert edges.aligned(0.25) and not edges.aligned(0.35)
    t0, e0, t1, e1 = edges.span()  # type: ignore[misc]
    assert (e1 - e0) / 1000 / (t1 - t0) == pytest.approx(500.0, rel=0.02)
    # two plain readings at the window's ends: 0.2 s of energy over a 0.253 s window
    naive = (_stepping_counter(0.29) - _stepping_counter(0.037)) / 1000 / (0.29 - 0.037)
    assert abs(naive / 500.0 - 1) > 0.15
    none = EnergyEdges()
    none.feed(0.0, None)
    none.feed(0.1, 5)
    assert none.span() is None and not none.aligned()


def test_counter_window_uses_the_span_between_updates_when_the_loop_ticks() -> None:
    # counter readings: begin, 3 ticks unchanged, update (+40 J), 4 ticks, update (+40 J), 2 ticks, end
    seq = [1_000_000] * 4 + [1_040_000] * 5 + [1_080_000] * 3 + [1_080_000]
    dev = _replay(energy_mj=seq)
    s = CounterSampler(interval_s=3600, device=dev)
    s.start()
    with s.case("triad", "gpu") as cc:
        cc.window_begin()
        for _ in range(len(seq) - 2):
            time.sleep(0.02)
            cc.energy_tick()
        aligned = cc.energy_aligned(0.05)
        cc.window_end(ops=1200, work={"bytes": 12, "items": 3, "flops": 2e9}, gpu_time_s=0.2)
    s.stop()
    r = cc.result()
    assert aligned
    assert r["energy_j"] == pytest.approx(40.0)  # from the first update to the second, not 80 J
    assert "between energy-counter updates" in r["energy_alignment"]
    # the operations in that span: the loop's rate over the whole window times the span
    assert 0 < r["energy_ops"] < 1200
    assert r["energy_j_per_op"] == pytest.approx(40.0 / r["energy_ops"])
    assert r["gflop_per_j"] == pytest.approx(r["energy_ops"] * 2.0 / 40.0)
    assert r["energy_avg_power_w"] == pytest.approx(40.0 / r["energy_window_s"])
    assert 0.07 < r["energy_window_s"] < 0.2  # about 4 ticks of 20 ms


def test_unsupported_queries_are_absent_and_said_once() -> None:
    probe = dict(ALL_OK, total_energy="not supported", gpm="not supported", power_instant="no permission",
                 power_usage="not supported")
    dev = ReplayDevice(probe=probe, polls=[{k: v for k, v in p.items() if k != "power_w"} for p in polls(5)],
                       energy_mj=[1, 2])
    s = CounterSampler(interval_s=3600, device=dev)
    s.start()
    caps = s.capabilities()
    assert caps["nvml"] == "supported" and caps["gpm"] == "not supported"
    assert caps["nvml_queries"]["power_instant"] == "no permission"
    with s.case("x", "gpu") as cc:
        assert cc.counter_window_s() == 0.0  # neither energy nor GPM: the timer skips the steady loop
        s.poll_once()
        cc.window_begin()
        cc.window_end(ops=10)
    s.stop()
    r = cc.result()
    assert "energy_j" not in r and "power_w_mean" not in r and "gpm_dram_bw_util_percent" not in r
    assert r["energy_status"] == "absent"
    assert "total_energy: not supported" in r["absent"] and "gpm: not supported" in r["absent"]


def test_cpu_case_gets_psutil_counters_only() -> None:
    s = CounterSampler(interval_s=0.05, device=_replay())
    s.start()
    with s.case("cpu-case", "cpu") as cc:
        t0 = time.perf_counter()
        x = 0.0
        while time.perf_counter() - t0 < 0.35:
            x += math.sqrt(x + 1.0)
    s.stop()
    r = cc.result()
    assert r["samples"] >= 2
    assert 0.0 <= r["cpu_util_percent_mean"] <= 100.0
    assert r["rss_bytes_max"] > 10 * 2**20
    assert not any(k.startswith(("power", "sm_clock", "energy", "gpm")) for k in r)
    assert "absent" not in r


# ---------------------------------------------------------------- no driver on this machine


@pytest.mark.skipif(backends.gpu().available, reason="this machine has a usable GPU")
def test_without_a_gpu_nvml_is_reported_unused_and_the_case_still_records() -> None:
    s = CounterSampler(interval_s=0.05, gpu=True)
    s.start()
    caps = s.capabilities()
    assert caps["nvml"].startswith("not used (GPU unavailable")
    with s.case("g", "gpu") as cc:
        time.sleep(0.12)
        assert cc.counter_window_s() == 0.0 and cc.sm_clock_mhz() is None
    s.stop()
    r = cc.result()
    assert r["absent"] == [f"nvml: {caps['nvml']}"]
    assert not any(k.startswith(("power", "energy", "gpm", "sm_clock")) for k in r)
    # a CPU-only run does not import CuPy just for counters
    s2 = CounterSampler(gpu=False)
    s2.start()
    assert s2.capabilities()["nvml"] == "not used (disabled)"
    s2.stop()


def test_nvml_open_without_a_driver_says_why_instead_of_raising() -> None:
    dev, why = NvmlDevice.open(uuid="GPU-00000000-0000-0000-0000-000000000000")
    if dev is not None:  # a machine with NVML but no such device would not get here
        dev.close()
        pytest.fail("an all-zero UUID matched a device")
    assert why and ("NVML" in why or "nvidia-ml-py" in why)

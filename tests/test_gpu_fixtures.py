"""Real GPU readings replayed through the CPU-only code paths, so CI without a GPU exercises the NVML/GPM
counter summaries, the stopping rule and the timing statistics on data an actual H100 produced.

The fixtures in tests/fixtures/gpu/ are written by benchmarks/record_gpu_fixtures.py (see the README
there). They are re-recorded from time to time, so nothing here hard-codes a reading: every expectation is
derived from the files and from the code (or from physics, with the tolerance stated beside it).

What each recording is:
- ``sampler_<case>.json``: every value the real CounterSampler / timer read from NVML while one case ran
  (``polls`` on the sampler thread; ``sm_clock_mhz`` and ``clock_event_reasons`` read by the timer's cold
  loop; ``energy_mj`` and ``gpm_windows`` from the one counter window of the steady loop), the case's
  work model and the counter summary (``result``) the real code produced from those readings.
- ``event_timings.json``: the CUDA-event Timing of each mode (cold, batch, graph) of the same runs.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accelbench.measure.counters import MIN_WINDOW_S, CounterSampler, ReplayDevice
from accelbench.measure.gpu import (
    THROTTLE_THRESHOLD,
    NoiseState,
    ThrottleGuard,
    batch_size,
    gpu_should_stop,
    mode_policy,
)
from accelbench.measure.nvml import GPM_METRICS, decode_reasons
from accelbench.measure.stats import rel_ci_halfwidth, summarize
from accelbench.measure.timing import TimingPolicy
from accelbench.results import Timing

FIX = Path(__file__).parent / "fixtures" / "gpu"

# The policy record_gpu_fixtures.record() times every case with (its default); batch and graph get
# mode_policy(POLICY, 0.25), as measure_gpu gives them.
POLICY = TimingPolicy(max_time_s=2.0)
SECONDARY_SHARE = 0.25

# NVML's total-energy counter does not advance continuously: it steps every 10-100 ms (counters.py). A
# window of W seconds therefore sees the energy of anything between W - STEP and W + STEP seconds.
ENERGY_STEP_MAX_S = 0.1

# Counter summary keys that depend on the host or on wall time, not on the GPU readings (replay cannot
# reproduce them; they are checked for consistency instead).
HOST_KEYS = {"cpu_util_percent_mean", "cpu_freq_mhz_mean", "rss_bytes_max", "samples"}
WALL_KEYS = {"window_s", "energy_window_s", "gpm_window_s", "energy_avg_power_w"}
# other_processes() is not recorded (always None on replay): a recording taken beside another process
# would carry this count, which replay cannot give.
# energy_alignment says how the energy window was cut: a real steady loop reads the counter between batches
# (energy between two counter updates), this replay does not drive that loop (window ends), so the two differ
# by construction; recordings before 2026-11-23 12:00 UTC lack the key.
NOT_RECORDED = {"other_gpu_processes", "energy_alignment"}

# The probe queries and the poll keys each one feeds (nvml.NvmlDevice.poll).
POLL_KEYS = {
    "sm_clock": ["sm_clock_mhz"],
    "mem_clock": ["mem_clock_mhz"],
    "temperature": ["temperature_c"],
    "utilization": ["gpu_util_percent", "memory_busy_percent"],
    "memory_info": ["memory_used_bytes"],
    "pcie_counters": ["pcie_tx_bytes_total", "pcie_rx_bytes_total"],
    "clock_event_reasons": ["clock_event_reasons"],
}


@functools.cache
def _json(name: str) -> Any:
    return json.loads((FIX / name).read_text())


def case_keys() -> list[str]:
    return sorted(p.name[len("sampler_"):-len(".json")] for p in FIX.glob("sampler_*.json"))


CASES = case_keys()


def sampler(key: str) -> dict[str, Any]:
    return _json(f"sampler_{key}.json")


def timings(key: str) -> dict[str, Any]:
    return _json("event_timings.json")["cases"][key]


def modes() -> list[tuple[str, str]]:
    return [(k, m) for k in CASES for m in ("cold", "batch", "graph") if m in timings(k)]


def mode_pol(mode: str) -> TimingPolicy:
    return POLICY if mode == "cold" else mode_policy(POLICY, SECONDARY_SHARE)


def peak_gbps(result: dict[str, Any]) -> float | None:
    """The theoretical DRAM bandwidth the sampler used (CUDA's memory clock x bus width); the fixtures do
    not store it, but it is what model_gbps was divided by."""
    if result.get("model_gbps") and result.get("model_bw_percent_of_peak"):
        return 100.0 * result["model_gbps"] / result["model_bw_percent_of_peak"]
    return None


def steady_op_s(fx: dict[str, Any]) -> float | None:
    """GPU seconds per operation in the steady counter loop: the events' time is not stored, but model_gbps
    is ops * bytes / gpu_time."""
    r, w = fx["result"], fx["work"]
    if not r.get("model_gbps") or not w.get("bytes"):
        return None
    return float(w["bytes"]) / r["model_gbps"] / 1e9


def find_case(workload: str, pick: Any = None, **params: Any) -> str:
    keys = [k for k in CASES if sampler(k)["workload"] == workload
            and all(sampler(k)["params"].get(p) == v for p, v in params.items())]
    if not keys:
        pytest.skip(f"no {workload} {params} recording in {FIX}")
    return max(keys, key=pick) if pick else keys[0]


def big_triad() -> str:
    return find_case("triad", pick=lambda k: sampler(k)["work"]["bytes"])


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=0.0)
    return bool(a == b)


# ---------------------------------------------------------------- the recordings belong together


def test_fixtures_describe_one_device_and_the_same_cases() -> None:
    assert CASES, f"no sampler fixtures in {FIX}"
    probe = _json("nvml_probe.json")
    ev = _json("event_timings.json")
    assert set(ev["cases"]) == set(CASES)  # the recorder writes both files for each case or neither
    assert ev["device"] == probe["device"]
    for k in CASES:
        fx = sampler(k)
        assert fx["case"] == k and fx["device"] == probe["device"]
        assert fx["probe"] == probe["capabilities"]["nvml_queries"]
        assert fx["default_sm_clock_mhz"] == probe["default_sm_clock_mhz"]
        assert fx["max_sm_clock_mhz"] == probe["max_sm_clock_mhz"]
        assert timings(k)["workload"] == fx["workload"] and timings(k)["params"] == fx["params"]
        assert timings(k)["check"]["passed"], f"{k}: the recorded case did not validate"


@pytest.mark.parametrize("key", CASES)
def test_the_work_model_in_the_code_is_the_one_recorded(key: str) -> None:
    # The fixtures' throughput and energy-per-item figures used this work model; a changed model makes
    # the recording stale (re-record, see tests/fixtures/gpu/README.md).
    from accelbench.workloads.base import get_workload

    fx = sampler(key)
    cls = get_workload(fx["workload"])
    assert cls.work(cls.Params.model_validate(fx["params"])).to_dict() == fx["work"]


def test_cases_were_recorded_one_after_another_on_one_cumulative_energy_counter() -> None:
    fxs = sorted((sampler(k) for k in CASES), key=lambda f: f["polls"][0]["t"])
    for a, b in zip(fxs, fxs[1:], strict=False):
        assert a["polls"][-1]["t"] < b["polls"][0]["t"]
        # NVML's energy counter counts since the driver loaded: later cases read larger totals
        assert a["energy_mj"][-1] < b["energy_mj"][0]


# ---------------------------------------------------------------- readings: present or absent, never 0


@pytest.mark.parametrize("key", CASES)
def test_readings_are_real_values_and_absent_ones_are_missing_not_zero(key: str) -> None:
    fx = sampler(key)
    caps, polls, res = fx["probe"], fx["polls"], fx["result"]
    assert polls, "a case of more than a second must have been polled"
    for p in polls:
        assert all(v is not None for v in p.values()), f"None stored as a reading: {p}"
    for q, keys in POLL_KEYS.items():
        for k in keys:
            if caps.get(q) == "supported":
                assert all(k in p for p in polls), f"{k} missing although {q} is supported"
            else:
                assert not any(k in p for p in polls)
    power_ok = caps.get("power_instant") == "supported" or caps.get("power_usage") == "supported"
    assert all(("power_w" in p) == power_ok for p in polls)
    # quantities that are never 0 on a powered, running GPU: a 0 would be a missing reading in disguise
    for k in ("power_w", "sm_clock_mhz", "mem_clock_mhz", "temperature_c", "memory_used_bytes"):
        assert all(p[k] > 0 for p in polls if k in p), k
    assert all(v is not None and v > 0 for v in fx["sm_clock_mhz"])
    # poll times increase and follow the sampler's interval (poll cost makes them a little longer)
    ts = np.array([p["t"] for p in polls])
    assert np.all(np.diff(ts) > 0)
    if len(ts) > 2:
        assert float(np.median(np.diff(ts))) == pytest.approx(fx["interval_s"], rel=0.25)
    for d in ("tx", "rx"):  # cumulative PCIe byte counters never go back
        k = f"pcie_{d}_bytes_total"
        xs = [p[k] for p in polls if k in p]
        assert all(b >= a for a, b in zip(xs, xs[1:], strict=False))
    # the energy counter: integer millijoules, read twice (window begin / end), advancing
    if caps.get("total_energy") == "supported":
        e = fx["energy_mj"]
        assert len(e) == 2 and all(isinstance(v, int) and v > 0 for v in e) and e[1] > e[0]
    else:
        assert "energy_j" not in res
    for m in fx["gpm_windows"]:
        assert set(m) <= set(GPM_METRICS.values())
        for name, v in m.items():
            assert math.isfinite(v) and v >= 0.0
            if name.endswith("_percent"):
                assert v <= 100.0 + 1e-6, (name, v)
    unsupported = sorted(f"{q}: {v}" for q, v in caps.items() if v != "supported")
    assert res.get("absent", []) == unsupported
    # the summary carries no counter whose query is unsupported
    if caps.get("temperature") != "supported":
        assert "temperature_c_max" not in res
    if caps.get("gpm") != "supported":
        assert not any(k.startswith("gpm_") and k != "gpm_status" for k in res)


# ---------------------------------------------------------------- the sampler, replayed


@pytest.mark.parametrize("key", CASES)
def test_replaying_the_readings_through_the_sampler_reproduces_the_recorded_summary(key: str) -> None:
    """The case's life cycle as record_gpu_fixtures._record_case drove it: sampler.start(), then inside
    sampler.case(): the sampler thread's polls, the timer's clock/reason reads in its cold loop, and the
    counter window (window_begin / window_end) around the steady loop; cc.result() after the case."""
    fx = sampler(key)
    rec, tm = fx["result"], timings(key)
    polls = fx["polls"]
    kept = rec["gpu_samples"]
    # the recorder logs every poll, but the sampler drops one that straddles the case's end: only the
    # last can be such a poll
    assert 0 <= len(polls) - kept <= 1
    dev = ReplayDevice.from_fixture(FIX / f"sampler_{key}.json")
    # The real thread polled every interval_s during the case (checked against the poll times in the
    # test above); replaying in real time would take the case's whole wall time, so the thread is parked
    # and the recorded polls are replayed by hand, as many as the sampler kept.
    smp = CounterSampler(interval_s=3600, device=dev)
    smp.start()
    try:
        caps = smp.capabilities()
        assert caps["nvml"] == "supported" and caps["nvml_queries"] == fx["probe"]
        with smp.case(key, "gpu") as cc:
            # the timer's reads in the cold loop
            assert cc.default_sm_clock_mhz() == tm["cold"]["throttle"]["default_sm_clock_mhz"]
            assert [cc.sm_clock_mhz() for _ in fx["sm_clock_mhz"]] == fx["sm_clock_mhz"]
            seen = [cc.clock_event_reasons() for _ in fx["clock_event_reasons"]]
            for _ in range(kept):
                smp.poll_once()
            # the steady loop's counter window; its GPU time (events) is not in the fixture, so it is
            # taken back from model_gbps = ops * bytes / gpu_time (model_gbps then matches by construction;
            # test_steady_window_time_fits_the_event_timings checks that time against the batch samples)
            if "counter_window_note" in rec:
                assert cc.counter_window_s() == MIN_WINDOW_S
                cc.peak_gbps = peak_gbps(rec)
                op_s = steady_op_s(fx)
                ops = int(rec.get("energy_ops") or 0)
                cc.window_begin()
                if str(rec.get("energy_alignment", "")).startswith("between"):
                    # a recording whose steady loop read the counter between batches: replay those reads
                    # (the recorder logged every energy_mj call; the first and last are the window's ends)
                    for _ in range(len(fx["energy_mj"]) - 2):
                        time.sleep((MIN_WINDOW_S + 0.005) / max(len(fx["energy_mj"]) - 2, 1))
                        cc.energy_tick()
                else:
                    time.sleep(MIN_WINDOW_S + 0.005)  # the real window lasted >= MIN_WINDOW_S too
                cc.window_end(ops, work=fx["work"], gpu_time_s=ops * op_s if op_s else None,
                              note=rec["counter_window_note"])
        got = cc.result()
    finally:
        smp.stop()
    assert dev.closed
    # the reasons the timer saw when it discarded samples are the recorded ones, and those its Timing reports
    assert seen == [decode_reasons(m) if m is not None else None for m in fx["clock_event_reasons"]]
    assert sorted({r for rs in seen for r in (rs or [])}) == tm["cold"]["throttle"]["clock_event_reasons"]

    skip = HOST_KEYS | WALL_KEYS | NOT_RECORDED
    if str(rec.get("energy_alignment", "")).startswith("between"):
        # the operations in the span between counter updates come from the loop's wall-clock rate, which
        # replay cannot give: the energy itself (first to last update) still must match exactly
        skip |= {"energy_ops", "energy_j_per_op", "energy_j_per_item", "gflop_per_j"}
    assert set(got) - skip == set(rec) - skip
    for k in set(rec) - skip:
        assert _close(got[k], rec[k]), (k, got[k], rec[k])
    # pure functions of the readings, spelled out (the loop above already compared them)
    pw = [p["power_w"] for p in polls[:kept] if "power_w" in p]
    if pw:
        assert got["power_w_mean"] == pytest.approx(float(np.mean(pw)), rel=1e-12)
        assert got["power_w_max"] == max(pw)
    masks = [p["clock_event_reasons"] for p in polls[:kept] if "clock_event_reasons" in p]
    if masks:
        assert got["clock_event_reasons"] == decode_reasons(int(np.bitwise_or.reduce(masks)))
        assert got["throttled"] == bool(set(got["clock_event_reasons"]) & {"sw_power_cap", "hw_slowdown",
                                        "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})
    if "energy_j" in rec:
        assert got["energy_j"] == (fx["energy_mj"][-1] - fx["energy_mj"][0]) / 1000.0
    for name, v in (fx["gpm_windows"][0] if fx["gpm_windows"] else {}).items():
        assert got[f"gpm_{name}"] == v
    # wall-time fields: the replayed window is as long as we slept, and the rates follow from it
    assert got["samples"] == got["gpu_samples"] == kept
    if "energy_j" in got:
        assert got["energy_window_s"] >= MIN_WINDOW_S
        assert got["energy_avg_power_w"] == pytest.approx(got["energy_j"] / got["energy_window_s"])
        assert got["window_s"] >= got["energy_window_s"]
    if "gpm_window_s" in got and "energy_window_s" in got:
        assert got["gpm_window_s"] == got["energy_window_s"]  # one window for both


# ---------------------------------------------------------------- physics of the recorded counters


@pytest.mark.parametrize("key", CASES)
def test_energy_window_is_consistent_with_the_polled_power(key: str) -> None:
    fx = sampler(key)
    r = fx["result"]
    if "energy_j" not in r:
        pytest.skip(f"{key}: no energy figure ({r.get('energy_status')})")
    w = r["energy_window_s"]
    assert w >= MIN_WINDOW_S and w <= r["window_s"]
    assert r["gpm_window_s"] == w if "gpm_window_s" in r else True
    assert r["energy_j"] == pytest.approx((fx["energy_mj"][-1] - fx["energy_mj"][0]) / 1000.0, rel=1e-12)
    assert r["energy_avg_power_w"] == pytest.approx(r["energy_j"] / w, rel=1e-12)
    ops = r["energy_ops"]
    assert r["energy_j_per_op"] * ops == pytest.approx(r["energy_j"], rel=1e-12)
    if fx["work"].get("flops"):
        assert r["gflop_per_j"] == pytest.approx(ops * fx["work"]["flops"] / 1e9 / r["energy_j"], rel=1e-12)
    # The counter steps (up to every ENERGY_STEP_MAX_S), so the window's energy is that of W +- one step;
    # the true power in the window lies within what the polls saw during the case. Hence the bound.
    pw = [p["power_w"] for p in fx["polls"] if "power_w" in p]
    lo = min(pw) * (w - ENERGY_STEP_MAX_S) / w
    hi = max(pw) * (w + ENERGY_STEP_MAX_S) / w
    assert lo <= r["energy_avg_power_w"] <= hi, (lo, r["energy_avg_power_w"], hi)


def test_triad_dram_bandwidth_from_gpm_agrees_with_the_work_model() -> None:
    key = big_triad()
    fx, tm = sampler(key), timings(key)
    r = fx["result"]
    if "gpm_dram_bw_util_percent" not in r:
        pytest.skip(f"{key}: no GPM ({r.get('gpm_status')})")
    peak = peak_gbps(r)
    if peak is None:
        pytest.skip(f"{key}: the recording has no theoretical bandwidth (no CUDA memory clock/bus width)")
    # the peak is 2 x memory clock x bus width: with NVML's polled memory clock the bus width comes out
    # as a whole number of 1024-bit HBM stacks (5120 bits on an H100 SXM)
    mem_mhz = float(np.median([p["mem_clock_mhz"] for p in fx["polls"] if "mem_clock_mhz" in p]))
    bus_bits = peak * 1e9 * 8 / (2 * mem_mhz * 1e6)
    assert bus_bits == pytest.approx(1024 * round(bus_bits / 1024), rel=0.005), bus_bits
    gpm = r["gpm_dram_bw_util_percent"]
    # same window: the steady loop's bytes (work model: the three arrays, each touched once; 1 GiB
    # arrays leave nothing to cache) over its event time, as a share of the peak -- within 5%
    assert r["gpm_dram_over_model"] == pytest.approx(gpm / r["model_bw_percent_of_peak"], rel=1e-12)
    assert gpm / r["model_bw_percent_of_peak"] == pytest.approx(1.0, abs=0.05)
    # and the headline: bytes / median cold time / peak -- within 10% (the cold samples were taken
    # earlier, with a flushed L2, at whatever clock and power state the GPU had then)
    cold_pct = 100.0 * fx["work"]["bytes"] / tm["cold"]["summary"]["median"] / 1e9 / peak
    assert gpm / cold_pct == pytest.approx(1.0, abs=0.10), (gpm, cold_pct)


def test_fp16_gemm_keeps_the_tensor_pipes_busy_and_the_triad_does_not() -> None:
    g = sampler(find_case("gemm", dtype="float16"))["result"]
    t = sampler(big_triad())["result"]
    if "gpm_any_tensor_util_percent" not in g or "gpm_any_tensor_util_percent" not in t:
        pytest.skip("no GPM tensor utilisation recorded")
    gt, tt = g["gpm_any_tensor_util_percent"], t["gpm_any_tensor_util_percent"]
    assert gt >= 10 * tt and gt - tt >= 25.0, (gt, tt)
    # fp16 goes through the HMMA (half-precision MMA) pipe, not the integer or fp64 ones
    assert g["gpm_hmma_tensor_util_percent"] == pytest.approx(gt, abs=1.0)
    assert g.get("gpm_imma_tensor_util_percent", 0.0) <= 1.0 and g.get("gpm_dfma_tensor_util_percent", 0.0) <= 1.0
    # and the memory-bound triad keeps DRAM busier than the compute-bound GEMM
    assert t["gpm_dram_bw_util_percent"] > g["gpm_dram_bw_util_percent"]


# ---------------------------------------------------------------- the timer's throttle decisions


@pytest.mark.parametrize("key", CASES)
def test_recorded_clocks_agree_with_the_throttle_guard(key: str) -> None:
    fx, cold = sampler(key), timings(key)["cold"]
    th = cold["throttle"]
    n = len(cold["samples_s"])
    # every discarded sample made the timer read the clock-event reasons once
    assert len(fx["clock_event_reasons"]) == th["discarded_samples"]
    # NVML clock reads happen only for samples whose blocking kernel gave no clock (kept or discarded)
    assert len(fx["sm_clock_mhz"]) <= n + th["discarded_samples"]
    assert ("nvml" in cold["clock_source"]) == any(v is not None for v in fx["sm_clock_mhz"])
    clocks = cold["sm_clock_mhz"] or []
    assert len(clocks) in (0, n)
    kept = [c for c in clocks if c is not None]
    g = ThrottleGuard(th["default_sm_clock_mhz"], threshold=th["threshold_fraction"])
    assert th["threshold_fraction"] == THROTTLE_THRESHOLD
    if not th["gave_up"]:
        # kept samples were all judged unthrottled: the pure guard agrees on every recorded clock
        assert all(g.judge(c) for c in kept)
        assert th["kept_throttled_samples"] == 0
    if kept:
        assert th["min_sm_clock_mhz"] <= min(kept)
        if th["discarded_samples"] == 0:
            assert th["min_sm_clock_mhz"] == min(kept)
    if th["discarded_samples"]:
        assert th["min_sm_clock_mhz"] < th["default_sm_clock_mhz"] * th["threshold_fraction"]
        assert any("discarded" in s for s in cold["notes"])


# ---------------------------------------------------------------- event timings through the pure code


@pytest.mark.parametrize(("key", "mode"), modes())
def test_recorded_summary_recomputes_from_the_samples(key: str, mode: str) -> None:
    d = timings(key)[mode]
    t = Timing.model_validate(d)  # the on-disk Timing format accepts what the timer wrote
    assert t.unit == "s" and t.samples_s and t.method.startswith(("cuda-events", "cuda-graph"))
    s = summarize(t.samples_s).to_dict()
    stored = t.summary.model_dump()
    assert set(s) == set(stored)
    for k, v in s.items():
        assert v == pytest.approx(stored[k], rel=1e-12, abs=0.0), k
    assert rel_ci_halfwidth(t.samples_s) == pytest.approx(t.summary.rel_ci_halfwidth, rel=1e-12)
    assert t.cpu_launch_s is not None and len(t.cpu_launch_s) == len(t.samples_s)
    # a sample's GPU interval lies inside its wall time, so sampling took at least the GPU time
    gpu = np.asarray(t.samples_s) * t.inner_loops
    assert float(gpu.sum()) <= t.total_time_s + 1e-9


@pytest.mark.parametrize("key", CASES)
def test_batch_and_graph_sizes_follow_from_the_cold_median(key: str) -> None:
    tm = timings(key)
    med = tm["cold"]["summary"]["median"]
    if "batch" in tm:
        b = tm["batch"]
        assert b["inner_loops"] == batch_size(med)
        assert b["launch_overhead_s"] == pytest.approx(float(np.median(b["samples_s"])) - med, rel=1e-9, abs=1e-15)
    if "graph" in tm:
        gr = tm["graph"]
        k = gr["rotation"]
        assert gr["ops_per_replay"] == k
        assert gr["inner_loops"] == batch_size(med * k, cap=1000) * k
        if "batch" in tm:
            assert tm["batch"]["rotation"] == k  # both cycle through the same instances
    else:
        # no graph: the cold Timing says why (capture failed)
        assert any("graph" in s for s in tm["cold"]["notes"])


def _replay_stop(samples: list[float], policy: TimingPolicy, m: int, n_stop: int, reason: str) -> tuple[str, int]:
    """Feed samples in order as the timer did, with the wall clock reaching min_time at sample m (and
    max_time at the last one when that is the recorded reason)."""
    state = NoiseState()
    got: list[float] = []
    for i, x in enumerate(samples, start=1):
        got.append(x)
        el = 0.0 if i < m else policy.min_time_s
        if reason == "max_time" and i == n_stop:
            el = policy.max_time_s
        r = gpu_should_stop(got, el, policy, state)
        if r:
            return r, i
    return "not stopped", len(samples)


@pytest.mark.parametrize(("key", "mode"), modes())
def test_stop_reason_is_what_the_stopping_rule_gives_on_the_recorded_samples(key: str, mode: str) -> None:
    """The per-sample wall clock is not recorded, and gpu_should_stop uses it only through two thresholds:
    min_time (sample m, unknown) and max_time. Physics bounds m: a sample's GPU interval lies inside its
    wall time, so before m the GPU time so far is under min_time, and after m the remaining GPU time fits
    in total_time_s - min_time. Some m in that range must reproduce the recorded (stop_reason, n)
    exactly -- the rule is otherwise a pure function of the samples."""
    d = timings(key)[mode]
    pol = mode_pol(mode)
    xs = [float(v) for v in d["samples_s"]]
    n, reason = len(xs), d["stop_reason"]
    gpu = np.asarray(xs) * d["inner_loops"]
    before = np.concatenate([[0.0], np.cumsum(gpu)])  # before[i] = GPU time of samples 1..i
    after = before[-1] - before  # after[i] = GPU time of samples i+1..n
    eps = 1e-6
    if reason == "max_samples":
        assert n == pol.max_samples
    elif reason == "max_time":
        assert d["total_time_s"] >= pol.max_time_s and before[n - 1] < pol.max_time_s + eps
    else:
        assert reason in ("rel_ci<target", "noise_stable"), reason
        assert n >= pol.min_samples and pol.min_time_s <= d["total_time_s"] + eps
    cands = [m for m in range(n, 0, -1)
             if before[m - 1] < pol.min_time_s + eps and after[m] <= d["total_time_s"] - pol.min_time_s + eps]
    assert cands, "no sample could have been the one that reached min_time"
    outcomes = {}
    for m in cands:
        got = _replay_stop(xs, pol, m, n, reason)
        if got == (reason, n):
            break
        outcomes[m] = got
    else:
        pytest.fail(f"{key}/{mode}: recorded ({reason}, n={n}) not reproduced for any min_time sample in "
                    f"[{cands[-1]}, {cands[0]}]; e.g. {list(outcomes.items())[:3]}")
    if reason == "rel_ci<target":
        assert rel_ci_halfwidth(xs) <= pol.target_rel_ci


@pytest.mark.parametrize(("key", "mode"), [(k, m) for k, m in modes() if m in ("batch", "graph")])
def test_eager_gpu_time_covers_the_host_time_to_issue_it(key: str, mode: str) -> None:
    # batch/graph: the start event is queued just before the host's launch loop and the end event just
    # after it, on an idle stream, so the GPU interval cannot be shorter than the host loop, save the
    # GPU's submission latency (allowed: 50 us per sample). Catches per-op/per-sample unit mix-ups.
    d = timings(key)[mode]
    inner = d["inner_loops"]
    gpu = np.asarray(d["samples_s"]) * inner
    host = np.asarray(d["cpu_launch_s"]) * inner
    assert float(np.min(gpu - host)) >= -50e-6


@pytest.mark.parametrize("key", [k for k in CASES if {"batch", "graph"} <= set(timings(k))])
def test_graph_replay_removes_launch_overhead_only_where_the_batch_is_launch_bound(key: str) -> None:
    tm = timings(key)
    b, g = tm["batch"], tm["graph"]
    b_med, g_med = float(np.median(b["samples_s"])), float(np.median(g["samples_s"]))
    host_b = float(np.median(b["cpu_launch_s"]))  # host seconds to launch one op eagerly
    host_g = float(np.median(g["cpu_launch_s"]))
    assert host_g < host_b  # one graph launch replaces many kernel launches
    if host_b >= 0.8 * b_med:
        # launch-bound: the GPU waited for the host in batch mode; the graph, issued far faster than it
        # runs, must then beat the eager per-op time
        assert host_g < 0.5 * g_med
        assert g_med < b_med, (g_med, b_med)
    elif host_b < 0.1 * b_med:
        # the kernel dwarfs its launch: removing the launch changes little (both rotate the same inputs)
        assert g_med == pytest.approx(b_med, rel=0.05)
    else:
        assert g_med <= b_med * 1.05


@pytest.mark.parametrize("key", CASES)
def test_steady_window_time_fits_the_event_timings(key: str) -> None:
    fx, tm = sampler(key), timings(key)
    r = fx["result"]
    op_s = steady_op_s(fx)
    if op_s is None or "energy_ops" not in r:
        pytest.skip(f"{key}: no steady-loop window recorded")
    ops = r["energy_ops"]
    if "batch" in tm:
        # the steady loop launches in rounds of the batch size, over the same instances
        assert ops % tm["batch"]["inner_loops"] == 0
        xs = tm["batch"]["samples_s"]
        # same launch pattern as batch mode: its per-op time falls within the batch samples' range
        assert min(xs) * 0.95 <= op_s <= max(xs) * 1.05, (min(xs), op_s, max(xs))
    # events span the whole loop, which the counter window encloses; rounds are synchronised about
    # every millisecond, so the GPU interval is nearly all of the window
    gpu_s = ops * op_s
    w = r["energy_window_s"] if "energy_window_s" in r else r["gpm_window_s"]
    assert 0.8 * w <= gpu_s <= w + 1e-6, (gpu_s, w)

"""Record real NVML/GPM readings and CUDA-event timings on a GPU into small JSON fixtures for the CPU tests.

Run on a machine with a GPU (a lent device session), from the repo root:

    python3 benchmarks/record_gpu_fixtures.py --out /tmp/fixtures     # then copy into tests/fixtures/gpu/

Each case runs the real timer (accelbench.measure.gpu.measure_gpu) inside a real CounterSampler case; a
proxy around the NVML device logs every reading the sampler and the timer take, so the fixture is exactly
what the code saw. tests/test_counters*.py and tests/test_gpu_*.py replay them through ReplayDevice and the
pure summaries. benchmarks/gpu_evidence.py calls ``record`` too, so one GPU call gives fixtures and evidence.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from accelbench import backends
from accelbench.measure.counters import CounterSampler
from accelbench.measure.gpu import measure_gpu
from accelbench.measure.nvml import NvmlDevice, cuda_uuid_string
from accelbench.measure.timing import TimingPolicy
from accelbench.workloads.base import get_workload


class RecordingDevice:
    """Wraps an NvmlDevice and keeps what each read returned (the fixture), passing everything through."""

    def __init__(self, dev: NvmlDevice) -> None:
        self.dev = dev
        self.matched_by = dev.matched_by
        self.log: dict[str, list[Any]] = {"polls": [], "energy_mj": [], "sm_clock_mhz": [], "gpm_windows": [],
                                          "clock_event_reasons": []}

    @property
    def caps(self) -> dict[str, str]:
        return self.dev.caps

    @property
    def gpm_supported(self) -> bool:
        return self.dev.gpm_supported

    def reset(self) -> None:
        for v in self.log.values():
            v.clear()

    def probe(self) -> dict[str, str]:
        return self.dev.probe()

    def poll(self) -> dict[str, Any]:
        r = self.dev.poll()
        self.log["polls"].append(r)
        return r

    def energy_mj(self) -> int | None:
        v = self.dev.energy_mj()
        self.log["energy_mj"].append(v)
        return v

    def sm_clock_mhz(self) -> float | None:
        v = self.dev.sm_clock_mhz()
        self.log["sm_clock_mhz"].append(v)
        return v

    def clock_event_reasons(self) -> int | None:
        v = self.dev.clock_event_reasons()
        self.log["clock_event_reasons"].append(v)
        return v

    def default_sm_clock_mhz(self) -> float | None:
        return self.dev.default_sm_clock_mhz()

    def max_sm_clock_mhz(self) -> float | None:
        return self.dev.max_sm_clock_mhz()

    def other_processes(self) -> list[dict[str, Any]] | None:
        return self.dev.other_processes()

    def gpm_sample(self) -> Any | None:
        return self.dev.gpm_sample()

    def gpm_free(self, s: Any) -> None:
        self.dev.gpm_free(s)

    def gpm_metrics(self, s1: Any, s2: Any) -> dict[str, float]:
        m = self.dev.gpm_metrics(s1, s2)
        self.log["gpm_windows"].append(m)
        return m

    def close(self) -> None:
        self.dev.close()


def make(name: str, **params: Any) -> Any:
    cls = get_workload(name)
    wl = cls(cls.Params.model_validate(params), backends.gpu(), seed=0)
    wl.setup()
    return wl


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "triad_1gib": ("triad", {"n": 1 << 28, "dtype": "float32"}),  # 1 GiB per array, 3 GiB moved per run
    "gemm_4096_fp16": ("gemm", {"m": 4096, "n": 4096, "k": 4096, "dtype": "float16"}),
    "triad_tiny": ("triad", {"n": 1 << 20, "dtype": "float32"}),  # about 5 us
}


def record(out: Path, policy: TimingPolicy | None = None, interval_s: float = 0.1) -> dict[str, Any]:
    """Run each case under the real sampler; write fixtures to ``out``; return everything measured
    (workloads kept set up under ``workloads`` for the evidence script)."""
    out.mkdir(parents=True, exist_ok=True)
    be = backends.gpu()
    if not be.available:
        raise SystemExit(f"no GPU: {be.reason}")
    uuid = cuda_uuid_string(be.extra["properties"].get("uuid"))
    dev, why = NvmlDevice.open(uuid=uuid)
    if dev is None:
        raise SystemExit(f"NVML unavailable: {why}")
    rec = RecordingDevice(dev)
    sampler = CounterSampler(interval_s=interval_s, device=rec)
    sampler.start()
    caps = sampler.capabilities()
    probe = {"device": be.device_name, "uuid": uuid, "matched_by": dev.matched_by,
             "driver": dev.nv.nvmlSystemGetDriverVersion(), "capabilities": caps,
             "default_sm_clock_mhz": dev.default_sm_clock_mhz(), "max_sm_clock_mhz": dev.max_sm_clock_mhz(),
             "power_limit_w": dev.power_limit_w(), "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "nvml_probe.json").write_text(json.dumps(probe, indent=1))
    policy = policy or TimingPolicy(max_time_s=2.0)
    results: dict[str, Any] = {"probe": probe, "cases": {}, "workloads": {}}
    timings: dict[str, Any] = {}
    for key, (name, params) in CASES.items():
        try:
            _record_case(key, name, params, sampler, rec, policy, probe, caps, interval_s, out, results, timings)
        except Exception:  # one broken case must not lose the others' fixtures
            import traceback

            traceback.print_exc()
            results.setdefault("errors", {})[key] = traceback.format_exc()
    (out / "event_timings.json").write_text(json.dumps({"device": be.device_name, "cases": timings}, default=str))
    results["sampler"] = sampler
    return results


def _record_case(key: str, name: str, params: dict[str, Any], sampler: CounterSampler, rec: RecordingDevice,
                 policy: TimingPolicy, probe: dict[str, Any], caps: dict[str, Any], interval_s: float, out: Path,
                 results: dict[str, Any], timings: dict[str, Any]) -> None:
    be = backends.gpu()
    wl = make(name, **params)
    wl.run()
    be.synchronize()
    chk = wl.check()
    rec.reset()
    t0 = time.perf_counter()
    with sampler.case(key, "gpu") as cc:
        timing, extra = measure_gpu(wl, policy, counters=cc)
    wall = time.perf_counter() - t0
    counters = cc.result()
    fixture = {
        "case": key, "workload": name, "params": params, "device": be.device_name,
        "probe": caps.get("nvml_queries", {}), "default_sm_clock_mhz": probe["default_sm_clock_mhz"],
        "max_sm_clock_mhz": probe["max_sm_clock_mhz"], "interval_s": interval_s, "case_wall_s": wall,
        "polls": rec.log["polls"], "energy_mj": rec.log["energy_mj"], "sm_clock_mhz": rec.log["sm_clock_mhz"],
        "clock_event_reasons": rec.log["clock_event_reasons"], "gpm_windows": rec.log["gpm_windows"],
        "work": type(wl).work(wl.p).to_dict(), "result": counters,
    }
    (out / f"sampler_{key}.json").write_text(json.dumps(fixture, indent=1, default=str))
    timings[key] = {
        "workload": name, "params": params, "check": chk.to_dict(),
        "cold": timing.model_dump(mode="json"),
        **{m: t.model_dump(mode="json") for m, t in extra.items()},
    }
    results["cases"][key] = {"timing": timing, "extra": extra, "counters": counters, "check": chk}
    results["workloads"][key] = wl
    print(f"recorded {key}: cold median {timing.summary['median'] * 1e6:.2f} us "
          f"({timing.stop_reason}, n={len(timing.samples_s)}), modes {sorted(extra)}, "
          f"{len(rec.log['polls'])} polls", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    res = record(a.out)
    res["sampler"].stop()


if __name__ == "__main__":
    main()

"""`accelbench calibrate`: CPU ceilings measured for real (small sizes), the peaks file keyed by machine
fingerprint, attaching peaks to a run's environment, % of peak, and the CLI's exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accelbench import backends, calibrate
from accelbench.cli import app
from accelbench.errors import UsageError

ENV = {"cpu": {"model": "Test CPU", "logical_cores": 2, "affinity_cores": 2}, "packages": {"numpy": "2.0"},
       "blas": [], "gpu": {"available": False, "reason": "none"}}


def test_cpu_peaks_are_measured_and_plausible() -> None:
    pk = calibrate.cpu_peaks(quick=True, nbytes=1 << 23, gemm_n=128)
    for k in ("stream_copy_gbps", "stream_triad_gbps", "gemm_fp32_gflops", "gemm_fp64_gflops"):
        assert 0 < pk[k] < 10_000, k
    assert pk["provenance"] == "measured" and pk["stream_bytes"] == 1 << 23


def test_calibrate_stores_by_fingerprint_and_peaks_for_finds_only_this_machine(tmp_path: Path) -> None:
    f = tmp_path / "peaks.json"
    res = calibrate.calibrate(["cpu"], quick=True, path=f, env=ENV)
    assert res["file"] == str(f) and res["cpu"]["stream_copy_gbps"] > 0
    got = calibrate.peaks_for(ENV, path=f)
    assert got["cpu"] == res["cpu"] and got["machine_key"] == res["key"]
    other = json.loads(json.dumps(ENV))
    other["cpu"]["model"] = "Another CPU"
    assert calibrate.peaks_for(other, path=f) == {}
    # calibrating the GPU of a machine without one is refused; the CPU peaks stay
    with pytest.raises(Exception) as ei:
        calibrate.calibrate(["gpu"], quick=True, path=f, env=ENV)
    assert "unavailable" in str(ei.value)
    assert calibrate.peaks_for(ENV, path=f)["cpu"] == res["cpu"]


def test_bad_peaks_file_is_a_usage_error_but_never_fails_a_run(tmp_path: Path) -> None:
    f = tmp_path / "peaks.json"
    f.write_text("{not json")
    with pytest.raises(UsageError):
        calibrate.load_file(f)
    assert calibrate.peaks_for(ENV, path=f) == {}
    assert calibrate.peaks_for(ENV, path=tmp_path / "missing.json") == {}


def test_percent_of_peak_picks_the_ceiling_of_the_math_mode() -> None:
    peaks = {"gpu": {"d2d_copy_gbps": 3000.0, "gemm_fp16_gflops": 600_000.0, "gemm_tf32_gflops": 400_000.0},
             "cpu": {"stream_copy_gbps": 20.0, "stream_triad_gbps": 25.0, "gemm_fp32_gflops": 100.0}}
    env = {"gpu": {"theoretical_bandwidth_gbps": 3352.0}}
    tri = {"backend": "gpu", "params": {"dtype": "float32"}, "throughput": {"gbps": 2700.0, "gflops": 500.0}}
    p = calibrate.percent_of_peak(tri, peaks, env)
    assert p["bw_percent_of_measured"] == pytest.approx(90.0)
    assert p["bw_percent_of_theoretical"] == pytest.approx(100 * 2700 / 3352)
    assert "flops_percent_of_measured" not in p  # no fp32 GEMM ceiling measured: absent, not guessed
    g = {"backend": "gpu", "params": {"dtype": "float32", "math": "tf32"}, "throughput": {"gflops": 300_000.0}}
    assert calibrate.percent_of_peak(g, peaks)["flops_percent_of_measured"] == pytest.approx(75.0)
    c = {"backend": "cpu", "params": {"dtype": "float32"}, "throughput": {"gbps": 20.0, "gflops": 50.0}}
    pc = calibrate.percent_of_peak(c, peaks)
    assert pc["bw_percent_of_measured"] == pytest.approx(80.0) and pc["flops_percent_of_measured"] == 50.0
    assert calibrate.percent_of_peak(c, {}) == {}


def test_cli_calibrate_cpu_json_and_gpu_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "p.json"
    monkeypatch.setenv("ACCELBENCH_PEAKS", str(f))
    r = CliRunner().invoke(app, ["calibrate", "--backend", "cpu", "--quick", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["cpu"]["gemm_fp32_gflops"] > 0
    assert f.exists()
    if not backends.gpu().available:
        r = CliRunner().invoke(app, ["calibrate", "--backend", "gpu"])
        assert r.exit_code == 3
        assert "unavailable" in r.output and "Traceback" not in r.output

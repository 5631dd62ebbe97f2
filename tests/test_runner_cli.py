"""The runner and CLI end to end through typer's runner, on real (tiny) workloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accelbench import backends, results
from accelbench.cli import app

runner = CliRunner()
FAST = "timing: {min_samples: 3, min_time_s: 0.0, max_time_s: 0.05, warmup: 1, warmup_time_s: 0.0}"


def suite_file(tmp: Path, body: str, name: str = "s.yaml", backends_: str = "[cpu]") -> Path:
    p = tmp / name
    p.write_text(f"suite: t\ndefaults:\n  backends: {backends_}\n  {FAST}\nbenchmarks:\n{body}")
    return p


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_run_ok_writes_results_and_exit_0(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_scale\n    params: {n: [100, 1000]}\n")
    r = invoke("run", s, "--out", tmp_path / "res")
    assert r.exit_code == 0, r.output
    assert "2 ok" in r.output
    df = results.load(tmp_path / "res")
    assert list(df["status"]) == ["ok", "ok"]
    assert (df["gflops"] > 0).all() and df["valid"].all()
    run = df.attrs["run"]
    assert run["status"] == "finished" and run["environment"]["cpu"]["logical_cores"] >= 1
    assert "suite_yaml" in run["options"] and run["suite_sha256"]


def test_each_case_records_the_share_of_the_machine_others_took(tmp_path: Path):
    # compare weighs it between separate runs (accelbench.drift, rule 6): it must be in every measured record
    s = suite_file(tmp_path, "  - workload: t_scale\n    params: {n: [100, 1000]}\n")
    assert invoke("run", s, "--out", tmp_path / "res").exit_code == 0
    _, cases = results.read_run(tmp_path / "res", results.CaseCore)
    for c in cases:
        assert c.contention is not None and c.contention["cores"] == os.cpu_count()
        assert 0 <= c.contention["other_cores"] <= os.cpu_count() and c.contention["wall_s"] > 0


def test_failed_validation_and_errors_are_recorded_and_run_goes_on(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_wrong\n  - workload: t_raise\n  - workload: t_oom\n"
                             "  - workload: t_scale\n")
    r = invoke("run", s, "--out", tmp_path / "res")
    assert r.exit_code == 1, r.output
    df = results.load(tmp_path / "res").set_index("workload")
    assert df.loc["t_wrong", "status"] == "failed"
    assert "FAILED VALIDATION" in df.loc["t_wrong", "message"]
    assert df.loc["t_wrong", "median_s"] is None or df.loc["t_wrong", "median_s"] != df.loc["t_wrong", "median_s"]
    assert df.loc["t_raise", "status"] == "error" and "kernel exploded" in df.loc["t_raise", "message"]
    assert df.loc["t_oom", "status"] == "error" and df.loc["t_oom", "message"].startswith("out of memory")
    assert df.loc["t_scale", "status"] == "ok"


def test_timeout_is_recorded(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_slow\n    params: {sleep_s: 0.3}\n    timing: {timeout_s: 0.5, "
                             "min_time_s: 5, max_time_s: 10, min_samples: 100}\n")
    t0 = time.perf_counter()
    r = invoke("run", s, "--out", tmp_path / "res")
    assert r.exit_code == 1
    assert time.perf_counter() - t0 < 5
    df = results.load(tmp_path / "res")
    assert df["status"][0] == "error" and df["message"][0].startswith("timeout")


def test_gpu_cases_skip_with_reason_when_no_gpu(tmp_path: Path):
    be = backends.gpu()
    if be.available:
        pytest.skip("this machine has a GPU")
    s = suite_file(tmp_path, "  - workload: t_scale\n", backends_="[gpu, cpu]")
    r = invoke("run", s, "--out", tmp_path / "res")
    assert r.exit_code == 0, r.output
    df = results.load(tmp_path / "res").set_index("backend")
    assert df.loc["gpu", "status"] == "skipped" and be.reason in df.loc["gpu", "message"]
    assert df.loc["cpu", "status"] == "ok"
    r = invoke("run", s, "--out", tmp_path / "res", "--backend", "gpu")
    assert r.exit_code == 3 and "unavailable" in r.output and "Traceback" not in r.output


def test_bad_suite_exit_2_one_line_no_traceback(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_scale\n    params: {n: -1}\n")
    for cmd in ("run", "validate", "list"):
        r = invoke(cmd, s)
        assert r.exit_code == 2, (cmd, r.output)
        assert "Traceback" not in r.output
        assert f"{s}:7:" in r.output.replace("\n", "")
    assert not (tmp_path / "results").exists()  # nothing half-written
    r = invoke("run", tmp_path / "missing.yaml")
    assert r.exit_code == 2 and "no such file" in r.output


def test_bad_options_exit_2(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_scale\n")
    assert invoke("run", s, "--backend", "tpu").exit_code == 2
    r = invoke("run", s, "--filter", "nothing-matches", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "no case" in r.output
    assert invoke("run", s, "--no-such-option").exit_code == 2


def test_validate_list_info_json(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_scale\n    params: {n: [1, 2, 3]}\n")
    r = invoke("validate", s)
    assert r.exit_code == 0 and "3 cases" in r.output
    r = invoke("list", s, "--json")
    rows = json.loads(r.output)
    assert [x["params"]["n"] for x in rows] == [1, 2, 3] and rows[0]["location"].endswith(":6")
    r = invoke("info", "--json")
    env = json.loads(r.output)
    assert env["cpu"]["logical_cores"] >= 1 and "gpu" in env
    r = invoke("info")
    assert r.exit_code == 0 and "BLAS" in r.output


def test_run_json_output(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_scale\n")
    r = invoke("run", s, "--out", tmp_path / "res", "--json", "--backend", "cpu")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["counts"]["ok"] == 1 and doc["cases"][0]["timing"]["samples_s"]


def test_help_has_examples():
    for cmd in ("run", "validate", "list", "info"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.output


def test_ctrl_c_keeps_finished_cases(tmp_path: Path):
    # The first case is quick and the others sleep a minute each, so the Ctrl-C, sent once the first case
    # is on disk, always lands mid-run: with six equal 1-second cases a starved test process could see the
    # run finish first. (Exit 0 inside a full suite had another cause too: started as a background job of
    # a non-interactive shell, the child inherited SIGINT ignored; the runner now installs its own handler,
    # tested in test_hardening.py.)
    body = "  - workload: t_slow\n    label: c0\n    params: {sleep_s: 0.01}\n" + "".join(
        f"  - workload: t_slow\n    label: c{i}\n    params: {{sleep_s: 60}}\n"
        "    timing: {min_samples: 1, max_samples: 1, warmup: 0, min_time_s: 0, max_time_s: 600, timeout_s: 3600}\n"
        for i in range(1, 6))
    s = suite_file(tmp_path, body)
    out = tmp_path / "res"
    code = ("import sys; import tests.workloads_for_tests; from accelbench.cli import main; "
            f"sys.argv=['accelbench','run',{str(s)!r},'--out',{str(out)!r}]; main()")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=Path(__file__).resolve().parents[1])
    deadline = time.time() + 60
    while time.time() < deadline:
        runs = list(out.glob("*/cases.jsonl")) if out.exists() else []
        if runs and runs[0].read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err.decode()
    run, cases = results.read_run(out)
    assert run.status == "interrupted" and 1 <= len(cases) < 6
    assert all(c.status == "ok" for c in cases)
    assert b"Traceback" not in err


def test_quick_runs_carry_a_different_definition_so_compare_does_not_gate_them(tmp_path: Path):
    s = suite_file(tmp_path, "  - workload: t_scale\n")
    assert invoke("run", s, "--out", tmp_path / "full").exit_code == 0
    assert invoke("run", s, "--out", tmp_path / "quick", "--quick").exit_code == 0
    assert invoke("run", s, "--out", tmp_path / "full2").exit_code == 0
    h = {d: results.load(tmp_path / d)["record"][0]["definition_hash"] for d in ("full", "quick", "full2")}
    assert h["full"] == h["full2"] != h["quick"]


def test_tables_piped_to_a_log_are_laid_out_wide_unless_columns_says_otherwise() -> None:
    """Piped into a CI log, rich would fold every cell for 80 columns ("suites/cnn.yaml:115" in pieces)."""
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(repo)

    def listing(extra: dict[str, str]) -> list[str]:
        p = subprocess.run([sys.executable, "-m", "accelbench", "list", "suites/cnn.yaml"], cwd=repo,
                           env={**env, **extra}, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    wide = listing({})
    assert max(len(ln) for ln in wide) > 120
    assert any("suites/cnn.yaml:115" in ln for ln in wide)
    narrow = listing({"COLUMNS": "80"})
    assert max(len(ln) for ln in narrow) <= 80

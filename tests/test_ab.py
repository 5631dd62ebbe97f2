"""``accelbench ab`` on real virtual environments made here: the example plugin installed (pip, editable)
with this checkout's accelbench, an A/A and an A/B with a planted change, and sides that cannot serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from accelbench.ab import pair_order, resolve_python, split_fingerprints
from accelbench.errors import UsageError
from accelbench.isolate import clean_env
from accelbench.results import read_run
from tests.venvs import EXAMPLE, ROOT, make_env, planted_example, python_of

SUITE = """suite: ab-test
defaults:
  backends: [cpu]
  timing: {min_time_s: 0.3, max_time_s: 0.5}  # split over the rounds
benchmarks:
  - workload: horner
    params: {n: 4096, degree: 20}
  - workload: triad
    params: {n: 4096}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "accelbench", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ab")
    (d / "suite.yaml").write_text(SUITE)
    return {"dir": d, "a": make_env(d / "env-a", [ROOT, EXAMPLE]),
            # a real code change: three times the Horner steps (large, so that it shows under any load)
            "b": make_env(d / "env-b", [ROOT, planted_example(d / "plugin-b", 3.0)])}


@pytest.mark.slow
def test_the_example_plugin_runs_through_accelbench_in_its_own_venv(envs: dict[str, Path]) -> None:
    r = subprocess.run([str(envs["a"]), "-m", "accelbench", "run", str(EXAMPLE / "suite.yaml"), "--backend", "cpu",
                        "--quick", "--no-counters", "--json", "--out", str(envs["dir"] / "res")],
                       capture_output=True, text=True, env=clean_env(), cwd=envs["dir"], timeout=600)
    assert r.returncode == 0, r.stderr
    run, cases = read_run(json.loads(r.stdout)["run_dir"])
    horner = [c for c in cases if c.workload == "horner"]
    assert len(horner) == 3 and all(c.status == "ok" for c in horner)
    assert all(c.validation["passed"] and c.validation["rel_error"] < 1e-5 for c in horner)  # float64 check
    assert run.environment["packages"]["accelbench"] == "0.1.0"


@pytest.mark.slow
def test_ab_of_identical_envs_passes_and_a_planted_slowdown_fails_the_gate(envs: dict[str, Path]) -> None:
    d = envs["dir"]
    # min: preemption by other processes only ever adds time (this machine may run at load 10 on 2 cores)
    aa = cli("ab", "suite.yaml", "--base", str(envs["a"]), "--new", str(envs["a"]), "--rounds", "6",
             "--threshold", "25%", "--alpha", "0.1", "--metric", "min", "--out", "aa", cwd=d)
    assert aa.returncode == 0, aa.stdout + aa.stderr
    assert "REGRESSION" not in aa.stdout and "ab: ok" in aa.stdout
    assert "CPU taken by other processes" in aa.stdout
    # 6 rounds: the fewest whose 95% signed-rank CI is finite; CPU seconds: immune to preemption
    ab = cli("ab", "suite.yaml", "--base", str(envs["a"]), "--new", str(envs["b"].parent.parent), "--rounds", "6",
             "--threshold", "25%", "--alpha", "0.1", "--clock", "cpu", "--out", "ab", "--markdown", "pr.md", cwd=d)
    assert ab.returncode == 1, ab.stdout + ab.stderr
    regressed = [ln for ln in ab.stdout.splitlines() if ln.startswith("REGRESSION")]
    assert len(regressed) == 1 and "horner" in regressed[0]  # the control case (triad) did not move
    assert "horner" in (d / "pr.md").read_text()
    runs = sorted(p for p in (d / "ab").iterdir() if p.is_dir())
    (br, bc), (nr, nc) = (read_run(p) for p in runs)
    assert br.options["interleave"]["session"] == nr.options["interleave"]["session"]
    assert br.options["ab"]["python"] != nr.options["ab"]["python"]
    for c in bc + nc:  # every sample carries its round; every record what other processes took
        assert c.status == "ok" and sorted(set(c.timing.rounds)) == list(range(6))  # type: ignore[union-attr]
        assert c.timing.method == "cpu-process_time"  # type: ignore[union-attr]
        assert len(c.contention["per_round_other_cores"]) == 6


@pytest.mark.slow
def test_a_side_that_cannot_serve_is_one_line_and_exit_2_before_measuring(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text(SUITE)
    venv.create(tmp_path / "bare", with_pip=False)  # no accelbench at all
    noplug = make_env(tmp_path / "noplugin", [])  # the shared dependencies only...
    site = next((tmp_path / "noplugin" / "lib").glob("python*/site-packages"))
    (site / "accelbench_src.pth").write_text(str(ROOT) + "\n")  # ...and accelbench, but not the plugin
    for base, want in ((str(tmp_path / "bare"), "No module named accelbench"),
                       (str(noplug), "unknown workload 'horner'"),
                       (str(tmp_path / "nowhere"), "no such interpreter"),
                       (str(tmp_path), "not a virtual environment")):
        # the base side is refused first; the new side (this interpreter) is never asked
        r = cli("ab", "suite.yaml", "--base", base, "--new", sys.executable, "--out", str(tmp_path / "o"),
                cwd=tmp_path)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]  # beside the progress lines
        assert r.returncode == 2 and len(errors) == 1 and want in errors[0] and "--base" in errors[0], r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()  # nothing measured, nothing written


def test_abba_order_alternates_over_rounds_and_cases() -> None:
    import random

    rng = random.Random(0)
    firsts = [[pair_order("abba", r, i, rng)[0] for i in range(3)] for r in range(4)]
    assert firsts == [["base", "new", "base"], ["new", "base", "new"]] * 2
    rnd = [pair_order("random", 0, i, rng) for i in range(200)]
    assert 60 < sum(p[0] == "base" for p in rnd) < 140 and all(set(p) == {"base", "new"} for p in rnd)


def test_hardware_must_agree_software_differences_are_listed(tmp_path: Path) -> None:
    a = {"cpu": {"model": "X", "logical_cores": 2}, "packages": {"numpy": "2.0"}, "gpu": {"available": False}}
    b = {"cpu": {"model": "X", "logical_cores": 2}, "packages": {"numpy": "2.1"},
         "gpu": {"available": True, "name": "H100", "cupy_version": "13"}}
    hw, sw = split_fingerprints(a, b)
    assert hw == [] and {d.key for d in sw} == {"packages.numpy", "gpu.name", "gpu.cupy_version"}  # 'available' is volatile
    hw, _ = split_fingerprints(a, {**a, "cpu": {"model": "Y", "logical_cores": 2}})
    assert [d.key for d in hw] == ["cpu.model"]
    with pytest.raises(UsageError, match="not executable"):
        f = tmp_path / "py"
        f.write_text("")
        resolve_python(str(f), "--new")
    assert resolve_python(str(Path(sys.executable).parent.parent), "--base") == str(python_of(
        Path(sys.executable).parent.parent))


def test_rounds_too_few_for_any_verdict_are_refused_before_measuring(tmp_path: Path) -> None:
    from accelbench.compare import rounds_needed

    # 2^-n is the best exact signed-rank p of n rounds; Holm asks the best of m cases for p < alpha / m
    assert [rounds_needed(m, 0.01) for m in (1, 10, 28, 40, 1000)] == [7, 10, 12, 12, 17]
    assert rounds_needed(4, 0.1) == 6 and rounds_needed(1, 0.5) == 3  # never below the paired minimum
    (tmp_path / "suite.yaml").write_text("suite: few\ndefaults: {backends: [cpu]}\nbenchmarks:\n"
                                         "  - workload: triad\n    params: {n: [4096, 8192]}\n")
    r = cli("ab", "suite.yaml", "--base", sys.executable, "--new", sys.executable, "--rounds", "7",
            "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--rounds 7: with 2 case(s) at --alpha 0.01" in r.stderr and "--rounds 8 or more" in r.stderr and "give --rounds" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # nothing measured or written

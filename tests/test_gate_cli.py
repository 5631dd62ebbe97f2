"""compare / gate / export / run --baseline end to end: run directories made by the runner itself, the CLI
through typer's runner, exit codes and messages as a CI job sees them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accelbench import results
from accelbench.cli import app

runner = CliRunner()
TIMING = "timing: {min_samples: 30, min_time_s: 0.0, max_time_s: 0.3, warmup: 1, warmup_time_s: 0.0}"


def suite(tmp: Path, name: str, sleep_s: float) -> Path:
    """Two t_slow cases (time.sleep: a slowdown we can plant exactly). Fast sleeps 1 ms, slow 10 ms: a
    loaded machine adds its wake-up latency to both, and (10 + x) / (1 + x) stays above the 5% threshold
    for any latency x under 170 ms (with 3 ms it fell under it at 39 ms, which a load of 15 reaches)."""
    p = tmp / f"{name}.yaml"
    p.write_text(f"suite: gate-test\ndefaults:\n  backends: [cpu]\n  {TIMING}\nbenchmarks:\n"
                 f"  - workload: t_slow\n    label: first\n    params: {{sleep_s: {sleep_s}}}\n"
                 f"  - workload: t_slow\n    label: second\n    params: {{sleep_s: {sleep_s}}}\n")
    return p


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def run_dir(s: Path, out: Path) -> Path:
    r = invoke("run", s, "--out", out)
    assert r.exit_code == 0, r.output
    return results.resolve_run_dir(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("gate")
    return {"fast": run_dir(suite(tmp, "fast", 0.001), tmp / "fast"),
            "slow": run_dir(suite(tmp, "slow", 0.01), tmp / "slow"), "tmp": tmp}


def test_gate_passes_a_run_against_itself(runs: dict[str, Path]):
    r = invoke("gate", runs["fast"], runs["fast"])
    assert r.exit_code == 0, r.output
    assert "gate: ok, no regression (2 unchanged)" in r.output


def test_gate_fails_naming_each_regressed_case_on_one_line(runs: dict[str, Path]):
    r = invoke("gate", runs["fast"], runs["slow"], "--ignore-param", "sleep_s")
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("REGRESSION ")]
    assert len(lines) == 2
    assert any("t_slow[first]" in ln or "first" in ln for ln in lines)
    assert all("threshold 5%" in ln and "+" in ln for ln in lines)
    assert "gate: FAIL, 2 regression(s)" in r.output and "Traceback" not in r.output


def test_a_faster_case_never_fails_the_gate(runs: dict[str, Path]):
    r = invoke("gate", runs["slow"], runs["fast"], "--ignore-param", "sleep_s", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[: r.output.rindex("}") + 1])
    assert doc["counts"]["faster"] == 2 and doc["regressions"] == []


def test_gate_threshold_above_the_slowdown_passes(runs: dict[str, Path]):
    r = invoke("gate", runs["fast"], runs["slow"], "--ignore-param", "sleep_s", "--threshold", "1000%")
    assert r.exit_code == 0, r.output


def test_bad_input_exits_2_with_one_line(runs: dict[str, Path], tmp_path: Path):
    r = invoke("gate", tmp_path / "nope", runs["fast"])
    assert r.exit_code == 2 and "no such file" in r.output and "Traceback" not in r.output
    r = invoke("gate", runs["fast"], runs["fast"], "--threshold", "lots")
    assert r.exit_code == 2 and "percentage" in r.output
    r = invoke("gate", runs["fast"], runs["fast"], "--metric", "p99")
    assert r.exit_code == 2 and "--metric" in r.output
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    r = invoke("gate", empty, runs["fast"])
    assert r.exit_code == 2 and "not a pytest-benchmark JSON" in r.output


def test_different_machines_are_refused_unless_allowed(runs: dict[str, Path], tmp_path: Path):
    other = tmp_path / "other"
    shutil.copytree(runs["slow"], other)
    rj = other / "run.json"
    run = json.loads(rj.read_text())
    run["environment"]["cpu"]["model"] = "Some Other CPU"
    run["environment"]["volatile"]["memory_available_bytes"] = 1  # volatile: never a difference
    rj.write_text(json.dumps(run))
    r = invoke("gate", runs["fast"], other, "--ignore-param", "sleep_s")
    assert r.exit_code == 2, r.output
    assert "cpu.model" in r.output and "--allow-different-machines" in r.output
    assert "memory_available" not in r.output
    r = invoke("gate", runs["fast"], other, "--ignore-param", "sleep_s", "--allow-different-machines")
    assert r.exit_code == 1 and "machines differ: cpu.model" in r.output


def test_compare_prints_verdicts_and_writes_markdown_regressions_first(runs: dict[str, Path], tmp_path: Path):
    md = tmp_path / "comment.md"
    r = invoke("compare", runs["fast"], runs["slow"], "--ignore-param", "sleep_s", "--markdown", md)
    assert r.exit_code == 0, r.output  # compare reports; only gate decides
    assert "slower" in r.output and "2 regressions in 2 cases" in r.output
    text = md.read_text()
    assert text.startswith("## accelbench: 2 regressions in 2 cases")
    first_row = next(ln for ln in text.splitlines() if ln.startswith("| 🔴") or ln.startswith("| ⚫"))
    assert first_row.startswith("| 🔴")


def test_compare_lists_unmatched_cases(runs: dict[str, Path]):
    r = invoke("compare", runs["fast"], runs["slow"], "--json")  # sleep_s differs: different identities
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["counts"]["new"] == 2 and doc["counts"]["missing"] == 2


def test_compare_one_run_compares_backends(runs: dict[str, Path]):
    r = invoke("compare", runs["fast"])
    assert r.exit_code == 0
    assert "no case ran successfully on both the GPU and the CPU" in r.output  # this suite is CPU-only


def test_export_and_gate_an_imported_pytest_benchmark_file(runs: dict[str, Path], tmp_path: Path):
    pb = tmp_path / "pb.json"
    r = invoke("export", runs["slow"], "--format", "pytest-benchmark", "-o", pb)
    assert r.exit_code == 0, r.output
    assert len(json.loads(pb.read_text())["benchmarks"]) == 2
    r = invoke("gate", runs["slow"], pb)
    assert r.exit_code == 0, r.output
    r = invoke("export", runs["slow"], "--format", "gab-bigger")
    assert r.exit_code == 0 and json.loads(r.output)[0]["unit"].endswith("/s")
    r = invoke("export", runs["slow"], "--format", "bencher")
    assert r.exit_code == 0 and "latency" in json.loads(r.output)["t_slow[first] sleep_s=0.01 @cpu"]


def test_run_with_a_baseline_compares_and_lists_unmatched(runs: dict[str, Path]):
    r = invoke("run", suite(runs["tmp"], "fast2", 0.001), "--out", runs["tmp"] / "cand", "--baseline", runs["slow"])
    assert r.exit_code == 0, r.output
    assert "new" in r.output and "missing" in r.output


def test_run_interleaved_remeasures_the_baseline_in_the_same_session(runs: dict[str, Path]):
    out = runs["tmp"] / "il"
    r = invoke("run", suite(runs["tmp"], "fast3", 0.001), "--out", out, "--baseline", runs["fast"], "--interleave",
               "--rounds", "8")
    # 8 rounds: the fewest with which 2 cases can reach alpha 0.01 (fewer are refused, below); what this
    # test checks is the session's structure, not the verdict an A/A of 1 ms sleeps gets on a busy machine
    assert r.exit_code in (0, 1), r.output
    dirs = sorted(d for d in out.iterdir() if d.is_dir())
    assert [d.name.rsplit("-", 1)[1] for d in dirs] == ["baseline", "candidate"]
    runs_ = [results.read_run(d) for d in dirs]
    sessions = {rr.options["interleave"]["session"] for rr, _ in runs_}
    assert len(sessions) == 1
    for _, cases in runs_:
        assert len(cases) == 2
        for c in cases:
            assert c.status == "ok" and c.timing is not None and c.timing.rounds is not None
            rounds = c.timing.rounds  # declared in the record (schema 2), read back as such
            assert sorted(set(rounds)) == list(range(8)) and len(rounds) == len(c.timing.samples_s)
            # on the CPU the sides alternate pair by pair: pair i of the baseline was timed next to pair i
            # of the candidate, in the same round
            assert c.timing.pairs == list(range(len(c.timing.samples_s)))
    (_, base_cases), (_, new_cases) = runs_
    for b, n in zip(sorted(base_cases, key=lambda c: c.case_id), sorted(new_cases, key=lambda c: c.case_id),
                    strict=True):
        assert b.key == n.key and b.timing is not None and n.timing is not None
        assert b.timing.rounds == n.timing.rounds and b.timing.inner_loops == n.timing.inner_loops
    assert "paired" not in r.output or "unchanged" in r.output


def test_interleave_refuses_rounds_that_can_never_give_a_verdict(runs: dict[str, Path]):
    out = runs["tmp"] / "il-few"
    r = invoke("run", suite(runs["tmp"], "fast5", 0.001), "--out", out, "--baseline", runs["fast"], "--interleave",
               "--rounds", "7")
    assert r.exit_code == 2 and "--rounds 7: with 2 case(s) at --alpha 0.01" in r.output, r.output
    assert not out.exists() or not any(out.iterdir())  # refused before anything was opened


def test_interleave_needs_a_baseline(runs: dict[str, Path]):
    r = invoke("run", suite(runs["tmp"], "fast4", 0.001), "--out", runs["tmp"] / "x", "--interleave")
    assert r.exit_code == 2 and "--baseline" in r.output


def test_cases_skipped_on_both_sides_are_skipped_not_missing(tmp_path):
    """A GPU case skipped in both runs (no GPU either time) is neither missing nor a regression."""
    from typer.testing import CliRunner

    from accelbench.cli import app
    from accelbench.compare import compare_runs, load_side

    s = tmp_path / "s.yaml"
    s.write_text("suite: t\ndefaults:\n  backends: [gpu, cpu]\n  timing: {min_samples: 3, min_time_s: 0.0, "
                 "max_time_s: 0.05}\nbenchmarks:\n  - workload: t_scale\n")
    r = CliRunner()
    for d in ("a", "b"):
        assert r.invoke(app, ["run", str(s), "--out", str(tmp_path / d)]).exit_code == 0
    from accelbench import backends

    if backends.gpu().available:
        return  # with a GPU nothing is skipped; the CPU-only path below is what this test is about
    c = compare_runs(load_side(str(tmp_path / "a")), load_side(str(tmp_path / "b")))
    verdicts = {cc.backend: cc.verdict for cc in c.cases}
    assert verdicts["gpu"] == "skipped" and c.counts()["missing"] == 0


def test_json_output_is_indented_when_small_and_compact_when_large(capsys) -> None:
    from accelbench.cli import _print_json

    small = {"cases": [{"key": "a", "ratio": 1.0}]}
    _print_json(small)
    out = capsys.readouterr().out
    assert '\n  "cases": [' in out and json.loads(out) == small
    large = {"cases": [{"key": f"case {i}", "ratio": 1.0 + i * 1e-9, "notes": ["x" * 20]} for i in range(30_000)]}
    _print_json(large)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == large  # one line, the same values

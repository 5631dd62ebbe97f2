"""`accelbench history` and `accelbench gate --history` end to end through typer: planted steps in real
run directories (tests/history_runs.py), ordering by commit or time, machines, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from accelbench.cli import app
from tests.history_runs import MACHINE_A, MACHINE_B, samples, stamp, write_run

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def json_out(text: str):
    return json.loads(text[text.index("["):text.rindex("]") + 1])


def step_history(root: Path, n: int = 20, step_at: int = 10, factor: float = 1.10, seed: int = 0,
                 env: dict | None = None, first: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        rid, t = stamp(first + i)
        a = 1e-3 * (factor if i >= step_at else 1.0)
        write_run(root, rid, t, {"w_a": samples(a, rng), "w_b": samples(2e-3, rng)}, env=env)
        ids.append(rid)
    return ids


def test_history_json_lists_the_planted_change_point(tmp_path: Path):
    ids = step_history(tmp_path)
    r = invoke("history", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    cps = json_out(r.output)
    assert len(cps) == 1
    c = cps[0]
    assert c["case"] == 'syn/w_a/{"n":1}@cpu' and c["run_id"] == ids[10] and c["previous_run_id"] == ids[9]
    assert 1.08 < c["ratio"] < 1.12 and c["p_value"] < 1e-3 and c["n_before"] == 10 and c["n_after"] == 10
    assert c["before_s"] == pytest.approx(1e-3, rel=0.02) and c["after_s"] == pytest.approx(1.1e-3, rel=0.02)


def test_history_table_names_cases_and_recent_changes(tmp_path: Path):
    ids = step_history(tmp_path)
    r = invoke("history", tmp_path)
    assert r.exit_code == 0, r.output
    assert "w_a n=1" in r.output and "w_b n=1" in r.output and "most recent changes" in r.output
    assert ids[10] in r.output and "+10" in r.output.replace("+9.", "+10").replace("+10.", "+10")
    r = invoke("history", tmp_path, "--case", "w_b", "--json")
    assert r.exit_code == 0 and json_out(r.output) == []
    r = invoke("history", tmp_path, "--since", "2026-01-01T00:15:00", "--json")  # only the last 5 runs
    assert r.exit_code == 0 and json_out(r.output) == []
    r = invoke("history", tmp_path, "--min-change", "20%", "--json")
    assert r.exit_code == 0 and json_out(r.output) == []


def test_a_change_of_machine_is_not_a_change_point(tmp_path: Path):
    step_history(tmp_path, n=10, step_at=99, seed=1, env=MACHINE_A)
    step_history(tmp_path, n=10, step_at=0, factor=1.5, seed=2, env=MACHINE_B, first=10)  # B is 50% slower
    r = invoke("history", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    assert json_out(r.output) == []


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_runs_follow_commit_order_when_their_commits_are_in_the_repository(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commits = []
    for i in range(3):
        (repo / "f").write_text(str(i))
        git(repo, "add", "f")
        git(repo, "commit", "-qm", f"c{i}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    res = tmp_path / "results"
    rng = np.random.default_rng(3)
    # the newest commit was measured first: start times run against the commit order
    for k, (ci, level) in enumerate([(2, 1.2e-3)] * 4 + [(1, 1e-3)] * 4 + [(0, 1e-3)] * 4):
        rid, t = stamp(k)
        write_run(res, rid, t, {"w_a": samples(level, rng)}, commit=commits[ci])
    by_commit = json_out(invoke("history", res, "--repo", repo, "--json").output)
    assert [(c["commit"], round(c["ratio"], 1)) for c in by_commit] == [(commits[2], 1.2)]
    by_time = json_out(invoke("history", res, "--repo", tmp_path, "--json").output)  # not a repository
    assert [round(c["ratio"], 2) for c in by_time] == [0.83] and by_time[0]["commit"] == commits[1]


def test_corrupt_runs_are_skipped_with_one_line_each(tmp_path: Path):
    step_history(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{")
    r = invoke("history", tmp_path, "--json")
    assert r.exit_code == 0 and "Traceback" not in r.output
    assert "skipped:" in r.output and "broken/run.json:1" in r.output
    assert len(json_out(r.output[r.output.index("["):])) == 1


def test_history_bad_input_exits_2(tmp_path: Path):
    for args, what in [((tmp_path / "nope",), "no such file"), ((tmp_path, "--metric", "mean"), "--metric"),
                       ((tmp_path, "--since", "yesterday"), "--since"), ((tmp_path, "--alpha", "3"), "alpha")]:
        r = invoke("history", *args)
        assert r.exit_code == 2 and what in r.output and "Traceback" not in r.output, (args, r.output)


# ---------------------------------------------------------------- gate --history


@pytest.fixture(scope="module")
def hist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 runs at 1 ms, then a change (w_a 20% faster) and 8 runs at 0.8 ms, on machine A."""
    root = tmp_path_factory.mktemp("hist")
    step_history(root, n=20, step_at=12, factor=0.8, seed=4)
    return root


def new_run(tmp: Path, a_s: float, env: dict | None = None, seed: int = 9) -> Path:
    rng = np.random.default_rng(seed)
    rid, t = stamp(500)
    return write_run(tmp, rid, t, {"w_a": samples(a_s, rng), "w_b": samples(2e-3, rng)}, env=env)


def test_gate_history_passes_a_run_like_the_stable_segment(hist: Path, tmp_path: Path):
    r = invoke("gate", "--history", hist, new_run(tmp_path, 0.8e-3))
    assert r.exit_code == 0, r.output
    assert "gate: ok, no regression (2 unchanged)" in r.output


def test_gate_history_judges_against_the_segment_after_the_last_change(hist: Path, tmp_path: Path):
    # 1 ms is the level of the whole history's first 12 runs, but 25% slower than the runs since the change
    r = invoke("gate", "--history", hist, new_run(tmp_path, 1.0e-3), "--json")
    assert r.exit_code == 1, r.output
    doc = json.loads(r.output[r.output.index("{"):r.output.rindex("}") + 1])
    (reg,) = doc["regressions"]
    assert reg.startswith("syn/w_a/")
    case = next(c for c in doc["cases"] if c["key"] == reg)
    assert 1.2 < case["ratio"] < 1.3 and case["n_base"] == 8 and "prediction interval from 8 runs" in case["ci_method"]
    assert "REGRESSION w_a n=1" in r.output and "gate: FAIL, 1 regression(s)" in r.output


def test_gate_history_a_faster_run_passes(hist: Path, tmp_path: Path):
    r = invoke("gate", "--history", hist, new_run(tmp_path, 0.6e-3))
    assert r.exit_code == 0 and "1 faster" in r.output, r.output


def test_gate_history_other_machine_refused_unless_allowed(hist: Path, tmp_path: Path):
    run = new_run(tmp_path, 0.8e-3, env=MACHINE_B)
    r = invoke("gate", "--history", hist, run)
    assert r.exit_code == 2 and "--allow-different-machines" in r.output and "Traceback" not in r.output
    r = invoke("gate", "--history", hist, run, "--allow-different-machines")
    assert r.exit_code == 0, r.output


def test_gate_history_bad_input(hist: Path, tmp_path: Path):
    run = new_run(tmp_path, 0.8e-3)
    r = invoke("gate", "--history", hist, run, "--metric", "mean")
    assert r.exit_code == 2 and "per-run medians or mins" in r.output
    r = invoke("gate", "--history", tmp_path / "nope", run)
    assert r.exit_code == 2 and "no such file" in r.output

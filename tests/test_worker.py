"""The worker protocol (accelbench.worker) and isolated execution (accelbench.isolate): real streams,
real spawned worker processes, real crashes."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from accelbench import suite as suite_mod
from accelbench.errors import AccelbenchError
from accelbench.isolate import WorkerProcess, check_hello, clean_env, describe_exit
from accelbench.measure.contention import contention
from accelbench.results import CaseRecord, read_run
from accelbench.runner import RunOptions, run_suite
from accelbench.worker import PROTOCOL, SuiteRef, case_spec, serve
from tests import worker_plugins  # noqa: F401  (run --isolate loads the suite here too)

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
suite: w
defaults: {backends: [cpu], timing: {min_time_s: 0.02, max_time_s: 0.05, timeout_s: 2}}
benchmarks:
  - workload: t_scale
    params: {n: 1000}
"""


def plugin_path(tmp: Path) -> str:
    """A real distribution on sys.path whose ``accelbench.workloads`` entry points name the test
    workloads, so that worker processes register them as they would a user's plugin."""
    d = tmp / "plugins" / "accelbench_test_plugins-0.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: accelbench-test-plugins\nVersion: 0\n")
    (d / "entry_points.txt").write_text("[accelbench.workloads]\nscale = tests.workloads_for_tests\n"
                                        "crash = tests.worker_plugins\n")
    return os.pathsep.join([str(ROOT), str(tmp / "plugins")])


def talk(lines: list[object]) -> list[dict]:
    inp = io.StringIO("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    out = io.StringIO()
    assert serve(inp, out) == 0
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_stream_hello_first_then_one_answer_per_request_and_errors_as_messages(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(SUITE)
    s = suite_mod.load(f)
    cid = s.cases[0].case_id("cpu")
    spec = case_spec(s, cid, "r1", quick=True, counters=False)
    bad_protocol = {**spec, "protocol": PROTOCOL + 1}
    unknown = {**spec, "case_id": cid.replace("1000", "7")}
    got = talk([{"type": "case", **spec}, "not json", {"type": "nope"}, bad_protocol, unknown,
                {"type": "load", "suite": spec["suite"], "backends": ["cpu"]}, {"type": "bye"},
                {"type": "fingerprint"}])
    assert got[0]["type"] == "hello" and got[0]["protocol"] == PROTOCOL and got[0]["accelbench"]
    assert [m["type"] for m in got[1:]] == ["started", "record", "error", "error", "started", "error",
                                            "started", "error", "loaded"]  # nothing after bye
    rec = CaseRecord.model_validate(got[2]["record"])
    assert rec.case_id == cid and rec.status == "ok" and rec.run_id == "r1" and rec.timing is not None
    c = got[2]["record"]["contention"]
    assert c["wall_s"] > 0 and c["other_cpu_s"] >= 0 and c["cpu_s"] > 0
    assert "not JSON" in got[3]["message"] and "'nope'" in got[4]["message"]
    assert f"protocol {PROTOCOL + 1}" in got[6]["message"] and "no case" in got[8]["message"]
    loaded = got[9]
    assert loaded["suite"]["name"] == "w" and [c["case_id"] for c in loaded["cases"]] == [cid]
    assert CaseRecord.model_validate(loaded["cases"][0]["skeleton"]).case_id == cid


def test_contention_is_other_processes_cpu_over_wall_time() -> None:
    # 2 s wall; the machine used 3 CPU-s, we used 1.2 of them: others kept 0.9 cores busy
    c = contention((10.0, 100.0, 5.0), (12.0, 103.0, 6.2), cores=2)
    assert c["other_cpu_s"] == pytest.approx(1.8) and c["other_cores"] == pytest.approx(0.9)
    assert c["cpu_s"] == pytest.approx(1.2) and c["cores"] == 2
    assert contention((0.0, 5.0, 1.0), (1.0, 5.5, 2.0))["other_cpu_s"] == 0.0  # never negative


def test_exit_descriptions_and_an_incompatible_worker_is_one_line() -> None:
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert "out of memory" in describe_exit(-signal.SIGKILL) and describe_exit(3) == "exit status 3"
    with pytest.raises(AccelbenchError) as e:
        check_hello({"type": "hello", "protocol": PROTOCOL + 1, "accelbench": "9.0"}, "--new /x/python")
    assert "--new /x/python" in str(e.value) and "9.0" in str(e.value) and "\n" not in str(e.value)


def test_a_python_without_accelbench_is_one_clear_line(tmp_path: Path) -> None:
    import venv

    venv.create(tmp_path / "bare", with_pip=False)  # a real environment without accelbench
    py = tmp_path / "bare" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    with pytest.raises(AccelbenchError) as e:
        WorkerProcess(str(py), env=clean_env(), cwd=tmp_path, name="--base").start()
    msg = str(e.value)
    assert msg.startswith("--base: ") and "No module named accelbench" in msg and "\n" not in msg


def test_worker_process_keeps_stdout_for_the_protocol(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(SUITE.replace("t_scale", "t_crash").replace("{n: 1000}", "{how: print}"))
    # the parent needs no workload of the suite: a SuiteRef is its file and text
    spec = {"type": "case", **case_spec(SuiteRef(str(f), f.read_text()), "", "r", quick=True, counters=False)}
    with WorkerProcess(sys.executable, env={**os.environ, "PYTHONPATH": plugin_path(tmp_path)}) as w:
        assert w.start()["protocol"] == PROTOCOL
        loaded = w.request({"type": "load", "suite": spec["suite"]}, 60, want="loaded")
        spec["case_id"] = loaded["cases"][0]["case_id"]
        rec = CaseRecord.model_validate(w.request(spec, 60, want="record")["record"])
    assert rec.status == "ok", rec.message
    assert "chatter must not break the protocol" in w.stderr_tail


@pytest.mark.slow
def test_isolated_run_survives_segfault_exit_oom_kill_and_a_hang_in_native_code(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", plugin_path(tmp_path))
    f = tmp_path / "crash.yaml"
    # a long timeout for every case but the hang (a loaded machine must not turn a slow case into a
    # "timeout"); the hang's own 3 s is what ends it
    f.write_text(SUITE.replace("timeout_s: 2", "timeout_s: 120") + """  - workload: t_crash
    params: {how: [segv, exit, sigkill]}
  - workload: t_crash
    params: {how: hang}
    timing: {timeout_s: 3}
  - workload: t_scale
    params: {n: 2000}
""")
    res = run_suite(suite_mod.load(f), RunOptions(out=tmp_path / "res", counters=False, isolate=True))
    by = {r.params.get("how", r.params.get("n")): r for r in res.cases}
    assert by[1000].status == "ok" and by[2000].status == "ok"  # before and after the crashes
    assert by["segv"].status == "error" and by["segv"].message.startswith("worker killed by SIGSEGV")
    assert "Segmentation fault" in by["segv"].message  # the stderr tail (faulthandler's dump)
    assert by["exit"].message.startswith("worker exit status 3")
    assert by["sigkill"].message.startswith("worker killed by SIGKILL")
    assert by["hang"].message.startswith("timeout:") and "killed" in by["hang"].message
    run, cases = read_run(res.run_dir)  # every case was streamed to disk as usual
    assert len(cases) == 6 and run.options["isolate"] is True and run.status == "finished"


def test_a_spec_can_ask_for_cpu_seconds_and_an_unknown_clock_is_an_error_message(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(SUITE)
    s = suite_mod.load(f)
    cid = s.cases[0].case_id("cpu")
    got = talk([{"type": "case", **case_spec(s, cid, "r", counters=False, rounds=4, clock="cpu")},
                {"type": "case", **case_spec(s, cid, "r", counters=False, clock="sundial")}])
    rec = CaseRecord.model_validate(got[2]["record"])
    assert rec.timing is not None and rec.timing.method == "cpu-process_time" and rec.status == "ok"
    # a round's record names the case as the whole run measures it (its definition, not the round's)
    assert rec.definition_hash == s.cases[0].definition_hash()
    assert got[4]["type"] == "error" and "sundial" in got[4]["message"]

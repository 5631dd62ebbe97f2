"""Paired sampling between two worker processes (worker requests open / sample / close, ab.paired_round)
and CPU pinning of workers (``ab --affinity``): real streams, real spawned workers, a real crash."""

from __future__ import annotations

import io
import json
import os
import random
import sys
from pathlib import Path

import pytest

from accelbench import suite as suite_mod
from accelbench.ab import PAIRED_NOTE, AbOptions, paired_round, run_ab
from accelbench.compare import CompareOptions
from accelbench.errors import UsageError
from accelbench.isolate import WorkerPool, WorkerProcess
from accelbench.results import CaseRecord, read_run
from accelbench.worker import CPUS_ENV, SuiteRef, case_spec, parse_cpus, serve
from tests.test_worker import ROOT, SUITE, plugin_path

PINNABLE = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this platform cannot pin to CPUs")


def talk(lines: list[object]) -> list[dict]:
    inp = io.StringIO("".join(json.dumps(x) + "\n" for x in lines))
    out = io.StringIO()
    assert serve(inp, out) == 0
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_open_sample_close_and_what_a_worker_refuses(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(SUITE + "  - workload: t_wrong\n    params: {n: 1000}\n")
    s = suite_mod.load(f)
    good, wrong = (c.case_id("cpu") for c in s.cases)
    spec = case_spec(s, good, "r", counters=False, rounds=4, clock="cpu")
    got = talk([{"type": "sample", "loops": 1},  # nothing open yet
                {"type": "open", **spec, "seed": 1},
                {"type": "sample", "loops": 2, "n": 3},
                {"type": "sample", "loops": 0},  # refused; the case stays open
                {"type": "sample", "loops": 1},
                {"type": "close"},
                {"type": "sample", "loops": 1},  # closed
                {"type": "close"},
                {"type": "open", **case_spec(s, wrong, "r", counters=False, rounds=4), "seed": 2}])
    assert "paired" in got[0]["features"]
    assert [m["type"] for m in got[1:]] == ["error", "opened", "samples", "error", "samples", "closed", "error",
                                            "closed", "opened"]
    assert "open first" in got[1]["message"]
    opened = got[2]
    rec = CaseRecord.model_validate(opened["record"])
    assert rec.status == "ok" and rec.case_id == good and rec.run_id == "r"
    assert rec.definition_hash == s.cases[0].definition_hash()  # the case as the run measures it
    assert opened["loops"] >= 1 and opened["method"] == "cpu-process_time"
    assert opened["budget"]["min_pairs"] >= 3 and opened["budget"]["per_round_s"] == pytest.approx(0.05 / 4)
    assert len(got[3]["samples_s"]) == 3 and all(x > 0 for x in got[3]["samples_s"])
    assert "loops 0" in got[4]["message"] and len(got[5]["samples_s"]) == 1
    c = got[6]["contention"]
    assert c["wall_s"] > 0 and c["cpu_s"] >= 0 and c["other_cores"] >= 0
    assert got[8]["contention"] is None
    failed = got[9]  # a case that does not validate is not held open: its record says why
    assert failed["loops"] is None and CaseRecord.model_validate(failed["record"]).status == "failed"


def test_cpu_lists_parse_and_bad_ones_are_refused() -> None:
    assert parse_cpus("0") == {0} and parse_cpus("0-2,5") == {0, 1, 2, 5} and parse_cpus(" 3 ,3") == {3}
    for bad in ("", "a", "3-1", "-1", "1,"):
        with pytest.raises(ValueError):
            parse_cpus(bad)
    for opts, flag in ((AbOptions(pairing="pairs"), "--pairing"), (AbOptions(affinity="x"), "--affinity"),
                       (AbOptions(affinity="100000"), "--affinity")):
        with pytest.raises(UsageError, match=flag):
            opts.check()


@PINNABLE
def test_a_worker_pins_every_thread_to_the_cpus_its_parent_names() -> None:
    cpu = max(os.sched_getaffinity(0))
    with WorkerProcess(sys.executable, env={**os.environ, CPUS_ENV: str(cpu), "PYTHONPATH": str(ROOT)}) as w:
        hello = w.start()
        assert hello["cpus"] == [cpu]
        tids = os.listdir(f"/proc/{hello['pid']}/task")
        assert tids and all(os.sched_getaffinity(int(t)) == {cpu} for t in tids)


@pytest.mark.slow
def test_paired_round_alternates_samples_and_a_side_that_crashes_is_its_own_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", plugin_path(tmp_path))
    f = tmp_path / "p.yaml"
    f.write_text(SUITE + "  - workload: t_crash\n    params: {how: segv}\n")
    ref = SuiteRef(str(f), f.read_text())
    pools = {r: WorkerPool(sys.executable, dict(os.environ), name=f"--{r}") for r in ("base", "new")}
    try:
        loaded = pools["base"].get().request({"type": "load", "suite": {"file": ref.file, "text": ref.text,
                                                                        "dir": str(tmp_path)}}, 60, "loaded")
        (scale, crash) = loaded["cases"]
        skel = {r: dict(scale["skeleton"], run_id=f"run-{r}") for r in pools}
        specs = {r: case_spec(ref, scale["case_id"], f"run-{r}", counters=False, rounds=4, clock="cpu")
                 for r in pools}
        recs = paired_round(["new", "base"], pools, specs, skel, 30.0, random.Random(0))
        b, n = recs["base"], recs["new"]
        assert b.status == n.status == "ok" and b.run_id == "run-base" and n.run_id == "run-new"
        assert b.timing is not None and n.timing is not None
        assert len(b.timing.samples_s) == len(n.timing.samples_s) >= 3  # one pair at a time
        assert b.timing.inner_loops == n.timing.inner_loops  # the base side's loop count, for both
        assert PAIRED_NOTE in b.timing.notes and b.contention is not None and b.contention["wall_s"] > 0

        specs["new"] = case_spec(ref, crash["case_id"], "run-new", counters=False, rounds=4, clock="cpu")
        skel["new"] = dict(crash["skeleton"], run_id="run-new")
        recs = paired_round(["base", "new"], pools, specs, skel, 30.0, random.Random(1))
        assert recs["new"].status == "error" and recs["new"].message.startswith("worker killed by SIGSEGV")
        assert recs["base"].status == "ok"  # its validated record; nothing paired with a lost side
        assert recs["base"].timing is not None and PAIRED_NOTE not in recs["base"].timing.notes
        assert pools["new"].get().alive  # the lost worker is replaced on the next request
    finally:
        for p in pools.values():
            p.close()


@PINNABLE
@pytest.mark.slow
def test_ab_pairs_cpu_cases_sample_by_sample_on_one_cpu_per_round(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"  # built-in workloads: ab's workers run without this process's PYTHONPATH
    f.write_text("suite: a\ndefaults: {backends: [cpu], timing: {min_time_s: 0.02, max_time_s: 0.06}}\n"
                 "benchmarks:\n  - workload: triad\n    params: {n: 4096}\n")
    py = sys.executable  # A/A with this checkout's accelbench on both sides
    res = run_ab(f, py, py, AbOptions(rounds=3, clock="cpu", affinity="same", out=tmp_path / "res", seed=3,
                                      compare=CompareOptions(alpha=0.2)))  # 3 rounds can reach p = 1/8
    (br, bc), (nr, nc) = read_run(res.base_dir), read_run(res.new_dir)
    for run in (br, nr):
        assert run.options["ab"]["pairing"] == "samples" and run.options["ab"]["affinity"] == "same"
    for c in bc + nc:
        assert c.status == "ok" and c.timing is not None and sorted(set(c.timing.rounds or [])) == [0, 1, 2]
        assert PAIRED_NOTE in c.timing.notes
    rb, rn = bc[0].timing.rounds, nc[0].timing.rounds  # type: ignore[union-attr]
    assert rb is not None and rn is not None and [rb.count(k) for k in range(3)] == [rn.count(k) for k in range(3)]
    assert res.comparison.cases[0].verdict != "slower"

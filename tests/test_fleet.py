"""Fleets on a real local Dask cluster of worker processes (Nannies), without a GPU.

One cluster serves the module: three single-thread workers, two alike (told apart as CPUs by
ACCELBENCH_HOST, so they may measure CPU cases side by side) and one started with OMP_NUM_THREADS=1,
which changes its fingerprint. The kill test kills one of the pair and waits for its Nanny to bring it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from accelbench import backends, fleet, results
from accelbench import suite as suite_mod
from accelbench.cli import app
from accelbench.errors import BackendUnavailable, UsageError
from accelbench.runner import RunOptions, run_suite

REPO = Path(__file__).resolve().parent.parent
PRELOAD = ("tests.workloads_for_tests",)
FAST = "timing: {min_samples: 3, min_time_s: 0.0, max_time_s: 0.05, warmup: 1, warmup_time_s: 0.0}"
ENVS = [{"ACCELBENCH_HOST": "cpu-a"}, {"ACCELBENCH_HOST": "cpu-b"},
        {"ACCELBENCH_HOST": "cpu-c", "OMP_NUM_THREADS": "1"}]
for _e in ENVS:
    _e["PYTHONPATH"] = str(REPO)  # the worker processes import `tests` (preload)
cli = CliRunner()


def suite_file(tmp: Path, body: str, backends_: str = "[cpu]", timing: str = FAST) -> Path:
    p = tmp / "s.yaml"
    p.write_text(f"suite: t\ndefaults:\n  backends: {backends_}\n  {timing}\nbenchmarks:\n{body}")
    return p


SIX = "  - workload: t_scale\n    params: {n: [100, 200, 300, 400, 500, 600]}\n"


@contextlib.contextmanager
def kept_environ() -> Iterator[None]:
    """Nannies write their pre-spawn variables into this process's environment; put it back."""
    old = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with kept_environ():
        c = fleet.local_cluster(3, preload=PRELOAD, envs=ENVS)
        try:
            yield c
        finally:
            c.close()


def workers_of(run_dir: Path) -> list[str]:
    _, cases = results.read_run(run_dir)
    return [(c.worker or {})["name"] for c in cases]


def test_shard_groups_workers_by_fingerprint_and_splits_cases(cluster: Any, tmp_path: Path) -> None:
    s = suite_mod.load(suite_file(tmp_path, SIX))
    res = fleet.run_fleet(s, RunOptions(out=tmp_path / "res"), cluster.scheduler_address, "shard")
    assert len(res.runs) == 2
    by_size = sorted(res.runs, key=lambda r: len(r.run.options["fleet"]["workers"]))
    odd, pair = by_size
    assert [w["name"] for w in odd.run.options["fleet"]["workers"]] == ["local-2"]
    assert sorted(w["name"] for w in pair.run.options["fleet"]["workers"]) == ["local-0", "local-1"]
    assert odd.run.environment["threads_env"] == {"OMP_NUM_THREADS": "1"}
    # local_cluster's workers run without Dask's profiler and without the Nanny's BLAS=1 default
    assert [w["dask_profiler"] for r in res.runs for w in r.run.options["fleet"]["workers"]] == [False] * 3
    assert [x for x in res.warnings if "profiler" in x or "=1" in x] == \
        ["worker local-2 measures the CPU with OMP_NUM_THREADS=1 (Dask's Nanny sets them by default; docs/fleet.md "
         "says how to unset them): its CPU numbers are single-threaded"]
    assert "OMP_NUM_THREADS" not in pair.run.environment["threads_env"]
    want = sorted(c.case_id("cpu") for c in s.cases)
    for r in res.runs:
        run, cases = results.read_run(r.run_dir)
        assert run.status == "finished" and run.counts["ok"] == 6
        assert sorted(c.case_id for c in cases) == want  # each case exactly once per group
        fid = run.options["fleet"]["fingerprint_id"]
        assert all((c.worker or {})["fingerprint_id"] == fid for c in cases)
    assert odd.run.options["fleet"]["fingerprint_id"] != pair.run.options["fleet"]["fingerprint_id"]
    assert set(workers_of(odd.run_dir)) == {"local-2"}
    # the two alike workers (separate CPUs by ACCELBENCH_HOST) both took cases
    assert set(workers_of(pair.run_dir)) == {"local-0", "local-1"}


def test_each_mode_runs_the_suite_on_every_worker_like_a_local_run(cluster: Any, tmp_path: Path) -> None:
    s = suite_file(tmp_path, SIX + "  - workload: t_wrong\n  - workload: t_raise\n")
    r = cli.invoke(app, ["run", str(s), "--out", str(tmp_path / "res"), "--cluster", cluster.scheduler_address,
                         "--mode", "each", "--json"])
    assert r.exit_code == 1, r.output  # t_wrong fails validation and t_raise errors, on every worker
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert sorted(x["lane"] for x in out["runs"]) == ["local-0", "local-1", "local-2"]
    local = run_suite(suite_mod.load(s), RunOptions(out=tmp_path / "local"))
    lrec = {c.case_id: c.model_dump(mode="json") for c in local.cases}
    for x in out["runs"]:
        assert x["counts"] == {"ok": 6, "failed": 1, "skipped": 0, "error": 1}
        run, cases = results.read_run(x["run_dir"])
        assert set(workers_of(Path(x["run_dir"]))) == {x["lane"]}
        assert run.options["fleet"]["mode"] == "each" and run.environment["hostname"]
        assert ("OMP_NUM_THREADS" in run.environment["threads_env"]) == (x["lane"] == "local-2")
        for c in cases:
            d, lo = c.model_dump(mode="json"), lrec[c.case_id]
            assert set(d) == set(lo) and d["worker"] and lo["worker"] is None  # the fields of a local record,
            assert d["contention"] is not None  # plus who measured it and how busy its machine was
            for k in ("status", "workload", "params", "definition_hash", "work", "thresholds", "variant"):
                assert d[k] == lo[k], k
            assert d["message"].split(" at ")[0] == lo["message"].split(" at ")[0]
            assert (d["timing"] is None) == (lo["timing"] is None)
            if d["timing"]:
                assert set(d["throughput"]) == set(lo["throughput"]) and d["validation"]["passed"]


def test_gpu_cases_skip_with_the_workers_reason_and_backend_gpu_is_refused(cluster: Any, tmp_path: Path) -> None:
    if backends.gpu().available:
        pytest.skip("this machine has a GPU")
    s = suite_mod.load(suite_file(tmp_path, "  - workload: t_scale\n", backends_="[gpu, cpu]"))
    res = fleet.run_fleet(s, RunOptions(out=tmp_path / "res"), cluster.scheduler_address, "shard")
    for r in res.runs:
        by = {c.backend: c for c in r.cases}
        assert by["cpu"].status == "ok"
        assert by["gpu"].status == "skipped" and by["gpu"].message.startswith("GPU unavailable: ")  # as a local run says it
    with pytest.raises(BackendUnavailable, match="unavailable on every worker"):
        fleet.run_fleet(s, RunOptions(out=tmp_path / "r2", backends=["gpu"], strict_backend=True),
                        cluster.scheduler_address, "shard")
    assert not (tmp_path / "r2").exists()  # refused before any run directory was made


def test_bad_cluster_addresses_are_one_line_exit_2(tmp_path: Path) -> None:
    s = suite_file(tmp_path, "  - workload: t_scale\n")
    for addr, msg in (("local:0", "worker count"), ("nowhere", "expected tcp://host:port"),
                      (str(tmp_path / "missing.json"), "no such scheduler file")):
        r = cli.invoke(app, ["run", str(s), "--out", str(tmp_path / "res"), "--cluster", addr])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    r = cli.invoke(app, ["run", str(s), "--cluster", "local:1", "--mode", "both"])
    assert r.exit_code == 2 and "--mode 'both'" in r.output
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        fleet.run_fleet(suite_mod.load(s), RunOptions(out=tmp_path / "res"), "tcp://127.0.0.1:9",
                        connect_timeout_s=1.0)
    assert not (tmp_path / "res").exists()


def _dask_worker(address: str, name: str, pythonpath: Path, resources: str = "GPU=1,CPU=1",
                 preload: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    res = ["--resources", resources] if resources else []
    pre = [x for m in preload for x in ("--preload", m)]
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name,
                             "--nthreads", "1", *res, *pre, "--no-dashboard", "--no-nanny",
                             "--host", "127.0.0.1"],
                            env=env, cwd=pythonpath, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_workers_without_accelbench_another_protocol_or_no_resources(cluster: Any, tmp_path: Path) -> None:
    # a worker where `accelbench` is an unrelated empty folder, and one with an accelbench that speaks protocol 0
    (tmp_path / "none" / "accelbench").mkdir(parents=True)
    old = tmp_path / "old" / "accelbench"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text("__version__ = '0.0.1'\n")
    (old / "fleet.py").write_text("def probe():\n    return {'protocol': 0, 'accelbench_version': '0.0.1'}\n")
    procs = [_dask_worker(cluster.scheduler_address, "no-ab", tmp_path / "none"),
             _dask_worker(cluster.scheduler_address, "old-ab", tmp_path / "old"),
             _dask_worker(cluster.scheduler_address, "no-res", REPO, resources="")]  # a plain `dask worker`
    try:
        from distributed import Client

        with Client(cluster.scheduler_address) as c:
            c.wait_for_workers(6, timeout=60)
        s = suite_mod.load(suite_file(tmp_path, "  - workload: t_scale\n"))
        res = fleet.run_fleet(s, RunOptions(out=tmp_path / "res"), cluster.scheduler_address, "each")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    assert sorted(res.lanes) == ["local-0", "local-1", "local-2", "no-res"]
    (plain,) = [r for lane, r in zip(res.lanes, res.runs, strict=True) if lane == "no-res"]
    assert [c.status for c in plain.cases] == ["skipped"]
    assert "offers the CPU resource" in plain.cases[0].message and "--resources CPU=1" in plain.cases[0].message
    text = "\n".join(res.warnings)
    assert "no-ab" in text and "accelbench is not importable there" in text
    assert "old-ab" in text and "worker protocol 0 (accelbench 0.0.1)" in text
    assert "worker no-res runs Dask's statistical profiler" in text  # a plain `dask worker` has it on


@pytest.mark.slow
def test_a_worker_killed_mid_case_records_the_case_as_error_and_the_rest_moves_on(cluster: Any, tmp_path: Path
                                                                                 ) -> None:
    """SIGKILL the worker measuring the first case of the alike pair: that case is an error naming the worker
    and is not retried; every other case is measured (by the other worker or the Nanny's restarted one)."""
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        names = {a: w["name"] for a, w in fleet.cluster_workers(client).items()}
        pids = {names[a]: pid for a, pid in client.run(os.getpid).items()}
    slow = "timing: {min_samples: 1000, min_time_s: 1.0, max_time_s: 1.0, warmup: 0, warmup_time_s: 0.0}"
    s = suite_mod.load(suite_file(tmp_path, "  - workload: t_slow\n    params: {sleep_s: [0.01, 0.011, 0.012, "
                                            "0.013, 0.014, 0.015]}\n", timing=slow))
    killed: list[tuple[str, str]] = []

    def on_start(done: int, total: int, case: Any, b: str, worker: str) -> None:
        if not killed and worker in ("local-0", "local-1"):
            killed.append((case.case_id(b), worker))
            threading.Timer(0.5, os.kill, (pids[worker], signal.SIGKILL)).start()

    try:
        res = fleet.run_fleet(s, RunOptions(out=tmp_path / "res"), cluster.scheduler_address, "shard",
                              on_start=on_start)
    finally:
        with Client(cluster.scheduler_address) as client:  # leave the module's cluster whole for the others
            client.wait_for_workers(3, timeout=120)
            client.run(fleet.probe)
    (pair,) = [r for r in res.runs if len(r.run.options["fleet"]["workers"]) == 2]
    run, cases = results.read_run(pair.run_dir)
    assert run.status == "finished" and len(cases) == 6
    by = {x.case_id: x for x in cases}
    (case_id, worker), = killed
    dead = by[case_id]
    assert dead.status == "error" and f"worker {worker}" in dead.message, dead.message
    assert "died while measuring this case" in dead.message and "not retried" in dead.message
    assert all(x.status == "ok" for k, x in by.items() if k != case_id)
    assert f"worker {worker}" in "\n".join(res.warnings)
    (odd,) = [r for r in res.runs if r is not pair]
    assert odd.counts["ok"] == 6  # the other group never noticed


@pytest.mark.slow
def test_ctrl_c_closes_every_run_directory_as_interrupted(cluster: Any, tmp_path: Path) -> None:
    """A real SIGINT to a CLI process running on the cluster: exit 130, every run directory interrupted
    and keeping its finished cases."""
    s = tmp_path / "k.yaml"
    s.write_text("suite: k\ndefaults:\n  backends: [cpu]\n  timing: {min_samples: 3, min_time_s: 0.3, max_time_s: "
                 "0.3, warmup: 0, warmup_time_s: 0.0}\nbenchmarks:\n  - workload: triad\n"
                 "    params: {n: [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009]}\n")
    out = tmp_path / "res"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "accelbench", "run", str(s), "--out", str(out), "--cluster",
                          cluster.scheduler_address, "--mode", "each"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [f for f in out.glob("*/cases.jsonl") if f.read_text().strip()]
        if done:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    dirs = sorted(d for d in out.iterdir() if d.is_dir())
    assert len(dirs) == 3
    kept = 0
    for d in dirs:
        run, cases = results.read_run(d)
        assert run.status == "interrupted"
        assert len(cases) < 10 and all(c.status == "ok" for c in cases)
        kept += len(cases)
    assert kept >= 1


@pytest.mark.slow
def test_a_lost_scheduler_keeps_every_finished_case(tmp_path: Path) -> None:
    """Kill a real scheduler (its own process) after the first record: one line (UsageError), the run
    directory closed as interrupted with the finished case in it."""
    import socket

    from distributed import Client

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    sch = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                            "--port", str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    wk = _dask_worker(address, "solo", REPO, preload=PRELOAD)
    try:
        with Client(address, timeout=60) as c:
            c.wait_for_workers(1, timeout=60)
        slow = "timing: {min_samples: 1000, min_time_s: 0.5, max_time_s: 0.5, warmup: 0, warmup_time_s: 0.0}"
        s = suite_mod.load(suite_file(tmp_path, "  - workload: t_slow\n    params: {sleep_s: [0.01, 0.011, 0.012, "
                                                "0.013]}\n", timing=slow))
        with pytest.raises(UsageError, match="lost the Dask scheduler at .*finished cases are kept in"):
            fleet.run_fleet(s, RunOptions(out=tmp_path / "res"), address, "each",
                            on_end=lambda done, total, rec: sch.kill())
    finally:
        for p in (wk, sch):
            p.kill()
            p.wait(timeout=30)
    (d,) = list((tmp_path / "res").iterdir())
    run, cases = results.read_run(d)
    assert run.status == "interrupted"
    assert len(cases) >= 1 and cases[0].status == "ok" and len(cases) < 4

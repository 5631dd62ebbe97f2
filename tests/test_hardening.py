"""Issue 13's probes, each as a hostile but realistic user tried it: names that try to drive the terminal,
special files, deep YAML, full disks, signals, numbers that are not numbers, duplicate identities.

Every fault here is real: a FIFO made with mkfifo, /dev/zero, a symlink loop, a 64 KiB tmpfs filled up
(where this process may mount one) and a real RLIMIT_FSIZE in a child process, real signals to a real
`accelbench run` process.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from accelbench import results, suite, textsafe
from accelbench.cli import app
from accelbench.compare import LoadedRun, compare_runs
from accelbench.errors import ResultsError, SuiteError, WriteError
from accelbench.measure.stats import summarize
from accelbench.report import markdown
from accelbench.results import CaseRecord, RunRecord, RunWriter, Timing

REPO = Path(__file__).resolve().parents[1]
FAST = "timing: {min_samples: 3, min_time_s: 0.0, max_time_s: 0.05, warmup: 1, warmup_time_s: 0.0}"
HOSTILE = r'"\e]0;pwned\a\e[2J[blink red]x[/blink red] [link=https://evil.example]click[/link]"'
HTMLISH = '"<img src=x onerror=alert(1)> a|b `c`"'
runner = CliRunner()


def invoke(*args: object, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def cli(*args: object, timeout: float = 60, preexec=None) -> subprocess.CompletedProcess[str]:
    """`accelbench ARGS` in its own process (as a user or CI job runs it), with the test workloads."""
    code = ("import sys; import tests.workloads_for_tests; from accelbench.cli import main; "
            "sys.argv=['accelbench']+sys.argv[1:]; main()")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), preexec_fn=preexec)


def suite_text(body: str) -> str:
    return f"suite: t\ndefaults:\n  backends: [cpu]\n  {FAST}\nbenchmarks:\n{body}"


def rec(key: str, samples: list[float], run_id: str = "r", backend: str = "cpu") -> CaseRecord:
    t = Timing(method="cpu-perf_counter", samples_s=samples, inner_loops=1,
               summary=summarize([x for x in samples if math.isfinite(x)] or [1.0]).to_dict())
    return CaseRecord(run_id=run_id, case_id=f's/w/{{"n":"{key}"}}@{backend}', suite="s", workload="w",
                      name=f"w n={key}", params={"n": key}, backend=backend, status="ok", timing=t,
                      definition_hash="h")


def write_run(root: Path, cases: list[CaseRecord], env: dict | None = None, run_id: str = "r") -> Path:
    w = RunWriter(root, RunRecord(run_id=run_id, suite="s", started_at="2026-01-01T00:00:00Z",
                                  environment=env if env is not None else {"cpu": {"model": "EPYC"}}))
    for c in cases:
        w.append(c)
    w.close("finished", {"ok": len(cases)})
    return w.dir


# ---------------------------------------------------------------- data must not drive the terminal


def test_textsafe_shows_controls_and_makes_markup_and_html_inert():
    s = "\x1b]0;pwned\x07[link=https://e.x]c[/link] <img src=x onerror=a()> a|b `c` \u202e\n"
    assert textsafe.plain(s) == "\\x1b]0;pwned\\x07[link=https://e.x]c[/link] <img src=x onerror=a()> a|b `c` " \
                                "\\u202e\\n"
    from rich.console import Console

    con = Console(record=True, width=300, color_system=None)
    con.print(textsafe.term(s))
    shown = con.export_text()
    assert "\x1b" not in shown and "[link=https://e.x]c[/link]" in shown
    m = textsafe.md(s)
    assert "<img" not in m and "&lt;img" in m and "\\|" in m and "\\`c\\`" in m and "\\[link" in m
    assert textsafe.plain("gemm n=1024 µs ±5%") == "gemm n=1024 µs ±5%"  # ordinary text is left alone


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("hostile")
    s = tmp / "h.yaml"
    s.write_text(suite_text(f"  - workload: t_scale\n    label: {HOSTILE}\n  - workload: t_scale\n    label: {HTMLISH}\n"))
    for d in ("a", "b"):
        assert invoke("run", s, "--out", tmp / d).exit_code == 0
    return s, tmp / "a", tmp / "b"


def _assert_inert(text: str, whole: bool = True) -> None:
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;pwned\\x07\\x1b[2J[blink red]x[/blink red]" in text  # shown, visibly, as text
    if whole:  # (compare's table cuts names at 60 characters)
        assert "[link=https://evil.example]click[/link]" in text


def test_list_compare_and_gate_show_hostile_names_as_text(hostile_runs: tuple[Path, Path, Path]):
    s, a, b = hostile_runs
    listed = invoke("list", s)
    assert listed.exit_code == 0
    _assert_inert(listed.output)
    cmp = invoke("compare", a, b)
    _assert_inert(cmp.output, whole=False)
    g = invoke("gate", a, b, "--threshold", "500%")
    assert g.exit_code in (0, 1)
    assert "\x1b" not in g.output
    exact = json.loads(invoke("compare", a, b, "--json").output)  # --json stays exact
    assert any("\x1b]0;pwned\x07" in c["name"] for c in exact["cases"])


def test_markdown_escapes_html_links_and_controls(hostile_runs: tuple[Path, Path, Path], tmp_path: Path):
    _, a, b = hostile_runs
    out = tmp_path / "c.md"
    assert invoke("compare", a, b, "--markdown", out).exit_code == 0
    text = out.read_text()
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "\x1b" not in text and "](https://evil" not in text and "\\[link=https://evil.example\\]" in text


def test_info_prints_install_hints_whole(monkeypatch: pytest.MonkeyPatch):
    """rich ate `[cuda13]`: "install it with: pip install -e '.' (or '.')"."""
    from rich.console import Console

    from accelbench import backends, cli

    con = Console(width=1000, record=True, color_system=None)  # wide: no cell folds the reason
    monkeypatch.setattr(cli, "out", con)
    assert invoke("info").exit_code == 0
    shown = con.export_text()
    reason = backends.gpu().reason if not backends.gpu().available else ""
    if "[" in reason:  # where CuPy is missing: "pip install -e '.[cuda13]' (or '.[cuda12]')"
        assert reason in shown, shown


# ---------------------------------------------------------------- special files and sizes


def test_a_fifo_suite_or_run_is_refused_not_waited_on(tmp_path: Path):
    import threading

    f = tmp_path / "s.yaml"
    os.mkfifo(f)
    got: list[object] = []

    def load() -> None:
        try:
            suite.load(f)
        except SuiteError as e:
            got.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(30)  # before: blocked forever in open(), waiting for a writer
    assert got and "s.yaml: is a FIFO, not a regular file" in str(got[0])
    r = invoke("compare", f)
    assert r.exit_code == 2 and "is a FIFO, not a regular file" in r.output


def test_dev_zero_as_suite_or_cases_is_refused(tmp_path: Path):
    with pytest.raises(SuiteError, match="character device"):
        suite.load("/dev/zero")  # before: MemoryError
    d = write_run(tmp_path, [rec("a", [1e-3] * 10)])
    (d / "cases.jsonl").unlink()
    (d / "cases.jsonl").symlink_to("/dev/zero")  # before: read until the OOM killer came
    with pytest.raises(ResultsError, match="cases.jsonl: is a character device, not a regular file"):
        results.read_run(d)


def test_symlink_loops_and_directories_say_what_they_are(tmp_path: Path):
    d = write_run(tmp_path, [rec("a", [1e-3] * 10)])
    (d / "run.json").unlink()
    (d / "run.json").symlink_to(d / "run.json")
    with pytest.raises(ResultsError, match="run.json: symlink loop"):
        results.read_run(d)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    r = invoke("compare", loop)
    assert r.exit_code == 2 and "symlink loop" in r.output and "no such file" not in r.output
    d2 = write_run(tmp_path, [], run_id="r2")
    (d2 / "cases.jsonl").unlink()
    (d2 / "cases.jsonl").mkdir()
    with pytest.raises(ResultsError, match="cases.jsonl: is a directory, not a regular file"):
        results.read_run(d2)


def test_pytest_benchmark_iterations_that_are_not_a_number(tmp_path: Path):
    f = tmp_path / "pb.json"
    f.write_text(json.dumps({"benchmarks": [{"name": "x", "stats": {"data": [1e-3, 2e-3], "iterations": "many"}}]}))
    r = invoke("compare", f)
    assert r.exit_code == 2 and "stats.iterations 'many' is not a positive whole number" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_yaml_nested_500_deep_is_refused_before_pyyaml_recurses(tmp_path: Path):
    flow = "suite: t\nbenchmarks: " + "[" * 600 + "]" * 600 + "\n"
    with pytest.raises(SuiteError, match=r"s.yaml:2:\d+: nesting deeper than 64 levels"):
        suite.parse(flow, "s.yaml")
    block = "suite: t\nbenchmarks:\n" + "".join("  " * i + "- \n" for i in range(1, 600))
    with pytest.raises(SuiteError, match="nesting deeper than 64 levels"):
        suite.parse(block, "s.yaml")
    # the same document through a baseline's stored suite (run --baseline --interleave)
    from accelbench.interleave import baseline_suite

    d = write_run(tmp_path, [])
    run = json.loads((d / "run.json").read_text())
    run["options"] = {"suite_yaml": flow}
    (d / "run.json").write_text(json.dumps(run))
    with pytest.raises(ResultsError, match="nesting deeper than 64 levels"):
        baseline_suite(d, tmp_path)


def test_a_baselines_stored_suite_is_bounded_like_a_suite_file(tmp_path: Path):
    from accelbench.interleave import baseline_suite

    d = write_run(tmp_path, [])
    run = json.loads((d / "run.json").read_text())
    run["options"] = {"suite_yaml": suite_text("  - workload: t_scale\n") + "#" * (5 << 20)}
    (d / "run.json").write_text(json.dumps(run))
    with pytest.raises(ResultsError, match="options.suite_yaml is not a suite text of at most 1048576 bytes"):
        baseline_suite(d, tmp_path)


def test_duplicate_identities_are_refused_with_their_line_numbers(tmp_path: Path):
    d = write_run(tmp_path, [rec("a", [1e-3] * 10), rec("b", [1e-3] * 10)])
    lines = (d / "cases.jsonl").read_text().splitlines()
    (d / "cases.jsonl").write_text("\n".join([lines[0], lines[1], lines[1]] + [lines[0]] * 5000) + "\n")
    with pytest.raises(ResultsError, match=r"cases.jsonl:3: case .* is recorded twice \(first at line 2\)"):
        results.read_run(d)
    for cmd in (("compare", d, d), ("report", d, "-o", tmp_path / "r.html"), ("export", d, "-f", "bencher")):
        r = invoke(*cmd)
        assert r.exit_code == 2 and "cases.jsonl:3:" in r.output, cmd


# ---------------------------------------------------------------- faults while writing


def _run_in(out: Path, n: int, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    s = out.parent.parent / "fill.yaml"  # outside the file system being filled
    s.write_text(suite_text(f"  - workload: t_scale\n    params: {{n: {list(range(10, 10 + n))}}}\n"))

    def limit() -> None:  # a real per-file size limit: writes past it fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))  # type: ignore[arg-type]

    return cli("run", s, "--out", out, preexec=limit if fsize else None, timeout=120)


def _check_closed(out: Path, message: str, errno_name: str) -> int:
    assert "cases.jsonl: cannot write: " in message and f"({errno_name})" in message
    assert "closed as interrupted" in message
    (d,) = list(out.iterdir())
    data = (d / "cases.jsonl").read_bytes()
    assert data == b"" or data.endswith(b"\n")  # no torn line
    run, cases = results.read_run(d)
    assert run.status == "interrupted" and run.counts["ok"] == len(cases)
    return len(cases)


@pytest.mark.slow
def test_a_file_size_limit_mid_run_keeps_every_written_case_and_closes_the_run(tmp_path: Path):
    out = tmp_path / "res"
    r = _run_in(out, 20, fsize=12 << 10)
    # one line, exit 2, and no blank line before it (rich's progress printed one off a terminal)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    kept = _check_closed(out, r.stderr, "EFBIG")
    assert 1 <= kept < 20


def _run_here(out: Path, n: int) -> WriteError:
    """The runner in this process (no start-up cost) on ``n`` quick cases; the WriteError it ends with."""
    from accelbench.runner import RunOptions, run_suite

    s = suite.parse(suite_text(f"  - workload: t_scale\n    params: {{n: {list(range(10, 10 + n))}}}\n"), "s.yaml")
    with pytest.raises(WriteError) as ei:
        run_suite(s, RunOptions(out=out, counters=False))
    return ei.value


def _tmpfs(path: Path, free_kib: int) -> bool:
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True).returncode:
        return False
    with open(path / "fill", "wb") as f:  # leave free_kib free (0: fill it up)
        for _ in range(64 - free_kib):
            try:
                f.write(b"\0" * 1024)
                f.flush()
            except OSError:
                break
    return True


@pytest.mark.parametrize("free_kib", [24, 12])
def test_a_full_tmpfs_mid_run_keeps_every_written_case_and_closes_the_run(tmp_path: Path, free_kib: int):
    fs = tmp_path / "fs"
    if not _tmpfs(fs, free_kib):
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE test covers the same path)")
    try:
        out = fs / "res"
        kept = _check_closed(out, str(_run_here(out, 30)), "ENOSPC")
        assert kept < 30
    finally:
        subprocess.run(["umount", str(fs)], check=True)


def test_a_full_tmpfs_before_the_first_case_leaves_nothing(tmp_path: Path):
    fs = tmp_path / "fs"
    if not _tmpfs(fs, 0):
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE test covers the same path)")
    try:
        e = _run_here(fs / "res", 3)
        assert "No space left on device (ENOSPC)" in str(e) and e.exit_code == 2
        assert list((fs / "res").iterdir()) == []  # no run folder holding an empty cases.jsonl
    finally:
        subprocess.run(["umount", str(fs)], check=True)


def test_a_writer_that_cannot_start_removes_its_folder(tmp_path: Path):
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    code = ("from pathlib import Path; import sys; from accelbench.results import RunWriter, RunRecord\n"
            "from accelbench.errors import WriteError\n"
            "try:\n    RunWriter(Path(sys.argv[1]), RunRecord(run_id='x', suite='s', started_at='t'))\n"
            "except WriteError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, preexec_fn=limit,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert "run.json: cannot write: File too large (EFBIG)" in r.stdout, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_output_is_replaced_atomically(tmp_path: Path):
    d = write_run(tmp_path / "runs", [rec(str(i), [1e-3] * 200) for i in range(20)])
    target = tmp_path / "bench.json"
    target.write_text('{"previous": true}\n')

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    r = cli("export", d, "-f", "pytest-benchmark", "-o", target, preexec=limit)
    assert r.returncode == 2 and "cannot write: File too large (EFBIG)" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(target.read_text()) == {"previous": True}  # before: truncated, then broken JSON
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bench")] == []


def test_two_writers_with_one_run_id_take_a_suffix(tmp_path: Path):
    """Two runs that start in the same millisecond: the second failed with "File exists"."""
    a = RunWriter(tmp_path, RunRecord(run_id="20260101T000000.000Z", suite="s", started_at="t"))
    b = RunWriter(tmp_path, RunRecord(run_id="20260101T000000.000Z", suite="s", started_at="t"))
    assert a.dir.name == "20260101T000000.000Z" and b.dir.name == "20260101T000000.000Z-1"
    assert b.run.run_id == b.dir.name and results.read_run(b.dir)[0].run_id == b.dir.name


def _slow_run(tmp_path: Path, preexec=None) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a run whose first case is quick and whose next cases sleep 60 s each: a signal sent once the
    first case is on disk (_first_case) always lands mid-run, however loaded the machine is."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    body = "  - workload: t_slow\n    label: quick\n    params: {sleep_s: 0.001}\n" + "".join(
        f"  - workload: t_slow\n    label: long{i}\n    params: {{sleep_s: 60}}\n"
        "    timing: {min_samples: 1, max_samples: 1, warmup: 0, min_time_s: 0, max_time_s: 600, timeout_s: 3600}\n"
        for i in range(3))
    s = tmp_path / "slow.yaml"
    s.write_text(suite_text(body))
    out = tmp_path / "res"
    code = ("import sys; import tests.workloads_for_tests; from accelbench.cli import main; "
            f"sys.argv=['accelbench','run',{str(s)!r},'--out',{str(out)!r}]; main()")
    p = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, preexec_fn=preexec)
    return p, out


def _first_case(p: subprocess.Popen[bytes], out: Path) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = list(out.glob("*/cases.jsonl")) if out.exists() else []
        if runs and runs[0].read_bytes().count(b"\n") >= 1:
            return
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    p.kill()
    raise AssertionError("the first case never reached the disk")


def _closed_as_interrupted(p: subprocess.Popen[bytes], out: Path, code: int) -> None:
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError("the signal was lost: the run went on") from None
    assert p.returncode == code, err.decode()
    assert b"Traceback" not in err
    run, cases = results.read_run(out)
    assert run.status == "interrupted" and [c.label for c in cases] == ["quick"] and run.counts["ok"] == 1


@pytest.mark.slow
def test_signals_close_the_run_as_interrupted(tmp_path: Path):
    """Three runs at once (one start-up's wait): SIGTERM exits 143; SIGINT exits 130 even where it was
    inherited ignored (a background job of a non-interactive shell, `cmd &` in a CI script, starts so:
    test_ctrl_c_keeps_finished_cases passed alone and exited 0 inside a full suite run so); a burst of
    Ctrl-C still exits 130 (a second one used to kill the process by SIGINT, exit -2)."""
    term = _slow_run(tmp_path / "term")
    ignored = _slow_run(tmp_path / "ignored", preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    burst = _slow_run(tmp_path / "burst")
    for p, out in (term, ignored, burst):
        _first_case(p, out)
    term[0].send_signal(signal.SIGTERM)
    ignored[0].send_signal(signal.SIGINT)
    for _ in range(30):
        if burst[0].poll() is not None:
            break
        burst[0].send_signal(signal.SIGINT)
        time.sleep(0.002)
    _closed_as_interrupted(*term, 143)
    _closed_as_interrupted(*ignored, 130)
    _closed_as_interrupted(*burst, 130)


def test_compare_gate_and_report_say_when_a_run_never_finished(tmp_path: Path):
    a = write_run(tmp_path, [rec("a", list(np.full(30, 1e-3)))], run_id="a")
    w = RunWriter(tmp_path, RunRecord(run_id="b", suite="s", started_at="t", environment={"cpu": {"model": "EPYC"}}))
    w.append(rec("a", list(np.full(30, 1e-3)), run_id="b"))  # killed with -9: never closed
    for cmd in (("compare", a, w.dir), ("gate", a, w.dir)):
        r = invoke(*cmd)
        assert f"{w.dir} never finished (status 'running'" in " ".join(r.output.split()), cmd
    r = invoke("report", a, w.dir, "-o", tmp_path / "r.html")
    assert r.exit_code == 0 and "never finished" in r.output


# ---------------------------------------------------------------- numbers that cannot be numbers


@pytest.mark.parametrize("bad", [[math.nan] * 30, [], [1e-3] * 29 + [math.inf], [1e-3] * 29 + [0.0],
                                 [-1e-3] * 30])
def test_samples_that_are_not_finite_positive_times_make_the_case_invalid(bad: list[float]):
    good = [1e-3] * 30
    base = LoadedRun(RunRecord(run_id="a", suite="s", started_at="t"), [rec("x", good)], "a")
    new = LoadedRun(RunRecord(run_id="b", suite="s", started_at="t"), [rec("x", bad)], "b")
    (c,) = compare_runs(base, new).cases
    assert c.verdict == "failed" and "invalid record in new" in c.reason and "finite and positive" in c.reason


def test_gate_names_an_invalid_case_instead_of_calling_it_unchanged(tmp_path: Path):
    a = write_run(tmp_path, [rec("x", [1e-3] * 30), rec("y", [1e-3] * 30)], run_id="a")
    b = write_run(tmp_path, [rec("x", [math.nan] * 30, "b"), rec("y", [1e-3] * 30, "b")], run_id="b")
    r = invoke("gate", a, b)
    assert "not gated: w n=x @cpu: failed invalid record in new: 30 NaN of 30 samples" in r.output
    assert "1 failed" in r.output


# ---------------------------------------------------------------- smaller ones


def test_run_with_a_baseline_from_another_machine_is_refused_as_gate_refuses(tmp_path: Path):
    s = tmp_path / "s.yaml"
    s.write_text(suite_text("  - workload: t_scale\n"))
    assert invoke("run", s, "--out", tmp_path / "base").exit_code == 0
    (bdir,) = list((tmp_path / "base").iterdir())
    run = json.loads((bdir / "run.json").read_text())
    run["environment"]["cpu"]["model"] = "Another CPU"
    (bdir / "run.json").write_text(json.dumps(run))
    r = invoke("run", s, "--out", tmp_path / "new", "--baseline", bdir)
    assert r.exit_code == 2 and "different machines" in r.output and "the new run is kept in" in r.output
    assert invoke("run", s, "--out", tmp_path / "new", "--baseline", bdir,
                  "--allow-different-machines").exit_code in (0, 1)


def test_too_few_samples_is_said_not_shown_as_an_interval():
    base = LoadedRun(RunRecord(run_id="a", suite="s", started_at="t"), [rec("x", [1e-3, 1.1e-3])], "a")
    new = LoadedRun(RunRecord(run_id="b", suite="s", started_at="t"), [rec("x", [2e-3, 2.1e-3])], "b")
    cmp = compare_runs(base, new)
    assert cmp.cases[0].ci_low == 0.0 and cmp.cases[0].ci_high == math.inf
    for text in (markdown.text_table(cmp), markdown.comparison(cmp)):
        assert "too few samples" in text and "inf" not in text.replace("inconclusive", "")


def test_html_report_says_too_few_samples_for_a_one_sample_case(tmp_path: Path):
    d = write_run(tmp_path, [rec("x", [0.192])])
    out = tmp_path / "r.html"
    assert invoke("report", d, "-o", out).exit_code == 0
    page = out.read_text()
    assert "too few samples" in page and "192 ms – 192 ms" not in page


def test_markdown_appends_to_the_job_summary_named_by_the_variable(tmp_path: Path):
    d = write_run(tmp_path / "runs", [rec("x", [1e-3] * 30)])
    summary = tmp_path / "_runner_file_commands" / "step_summary_1234"
    summary.parent.mkdir()
    summary.write_text("# earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    for _ in range(2):
        assert invoke("compare", d, d, "--markdown", summary, env=env).exit_code == 0
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and text.count("## accelbench") == 2
    other = tmp_path / "comment.md"
    other.write_text("OLD-CONTENT\n")
    for _ in range(2):
        assert invoke("compare", d, d, "--markdown", other, env=env).exit_code == 0
    assert other.read_text().count("## accelbench") == 1 and "OLD-CONTENT" not in other.read_text()


def test_write_error_is_a_typed_usage_class_error():
    assert WriteError("x").exit_code == 2


def test_log_axes_label_decades_only():
    from accelbench.report.html import figures

    lay = figures.layout("case", "t", log_y=True, log_x=True)
    for ax in (lay.xaxis, lay.yaxis):
        assert ax.type == "log" and ax.minor.dtick == "D1" and ax.minor.showgrid  # 2..9: grid lines, no labels
    figures.decade_ticks(lay.yaxis, [0.5, 3.0, 120.0])  # a sweep over decades: powers of ten labelled only
    assert lay.yaxis.dtick == 1
    narrow = figures.layout("case", "t", log_y=True)
    figures.decade_ticks(narrow.yaxis, [0.9, 1.1])  # within a decade plotly's own ticks are kept
    assert narrow.yaxis.dtick is None


def test_a_workload_with_too_many_cases_gets_a_note_not_a_box_per_case(tmp_path: Path, monkeypatch):
    from accelbench.report import html, view
    from accelbench.report.html import distributions

    monkeypatch.setattr(distributions, "MAX_CHART_CASES", 3)
    d = write_run(tmp_path, [rec(str(i), [1e-3] * 10) for i in range(5)])
    out = tmp_path / "r.html"
    html.write_report([d], out, None)
    text = out.read_text()
    # not a box per case: the 3 most variable are drawn, and the page says how many are left out
    assert "5 cases with samples, more than the 3 drawn one by one: the 3 most variable (largest CV) are drawn, " \
        "the other 2 are left out here" in text
    (blk,) = html.build_page(view.load([d])).distributions
    (ch,) = blk.charts
    assert len({x for t in ch.figure["data"] for x in t["x"]}) == 3

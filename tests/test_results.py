"""Result files: writer/reader round trip, torn last line, version checks, pandas loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accelbench import results
from accelbench.errors import ResultsError
from accelbench.results import CaseRecord, RunRecord, RunWriter, Timing, TimingSummary


def _case(run_id: str, i: int, status: str = "ok") -> CaseRecord:
    samples = [1e-3 * (1 + 0.01 * j) for j in range(10)]
    return CaseRecord(
        run_id=run_id, case_id=f"s/w/{{\"n\":{i}}}@cpu", suite="s", workload="w", name=f"w n={i}",
        params={"n": i}, backend="cpu", status=status,  # type: ignore[arg-type]
        timing=Timing(method="cpu-perf_counter", samples_s=samples, summary=TimingSummary.of(samples)),
        work={"flops": 2e6, "bytes": 1e6, "items": 10, "item_unit": "images"},
        throughput={"gflops": 2.0}, validation={"passed": True, "rel_error": 1e-7},
    )


def _write(tmp: Path, n: int = 3) -> Path:
    run = RunRecord(run_id=results.new_run_id(tmp), suite="s", started_at=results.now_iso())
    w = RunWriter(tmp, run)
    for i in range(n):
        w.append(_case(run.run_id, i))
    w.close("finished", {"ok": n})
    return w.dir


def test_round_trip_and_dataframe(tmp_path: Path):
    d = _write(tmp_path)
    run, cases = results.read_run(d)
    assert run.status == "finished" and run.counts == {"ok": 3}
    assert [c.params["n"] for c in cases] == [0, 1, 2]
    df = results.load(d)
    assert len(df) == 3
    assert list(df["param.n"]) == [0, 1, 2]
    assert df["median_s"].iloc[0] == pytest.approx(cases[0].timing.summary.median)
    assert df["n_samples"].iloc[0] == 10 and df["valid"].all()
    assert df.attrs["run"]["suite"] == "s"
    # any of the three paths loads the same run
    assert len(results.load(d / "run.json")) == 3 and len(results.load(d / "cases.jsonl")) == 3
    assert len(results.load(tmp_path)) == 3  # a results root: its newest run


def test_run_ids_sort_by_time_and_are_never_reused(tmp_path: Path):
    ids = []
    for _ in range(3):
        rid = results.new_run_id(tmp_path)
        (tmp_path / rid).mkdir()
        ids.append(rid)
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_torn_last_line_keeps_finished_cases(tmp_path: Path):
    d = _write(tmp_path)
    with open(d / "cases.jsonl", "a") as f:
        f.write('{"schema_version": 1, "run_id": "x", "cas')  # killed mid-write
    _run, cases = results.read_run(d)
    assert len(cases) == 3


def test_corrupt_middle_line_is_an_error_with_line_number(tmp_path: Path):
    d = _write(tmp_path)
    lines = (d / "cases.jsonl").read_text().splitlines(keepends=True)
    lines[1] = "{not json}\n"
    (d / "cases.jsonl").write_text("".join(lines))
    with pytest.raises(ResultsError, match=r"cases.jsonl:2:"):
        results.read_run(d)


def test_newer_schema_is_refused(tmp_path: Path):
    d = _write(tmp_path)
    raw = json.loads((d / "run.json").read_text())
    raw["schema_version"] = results.SCHEMA_VERSION + 1
    (d / "run.json").write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match="newer"):
        results.read_run(d)


def test_bad_paths(tmp_path: Path):
    with pytest.raises(ResultsError, match="no such file"):
        results.load(tmp_path / "nope")
    with pytest.raises(ResultsError, match="holds no run"):
        results.load(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ResultsError, match="not a run directory"):
        results.load(tmp_path / "x.txt")


def test_atomic_write_leaves_no_temp_files(tmp_path: Path):
    p = tmp_path / "a.json"
    results.atomic_write_text(p, "one")
    results.atomic_write_text(p, "two")
    assert p.read_text() == "two" and [x.name for x in tmp_path.iterdir()] == ["a.json"]


def test_result_files_are_readable_by_others(tmp_path: Path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        d = _write(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((d / "run.json").stat().st_mode) == 0o644


def test_the_stored_summary_declares_exactly_the_fields_of_measure_stats_summary():
    from dataclasses import fields

    from accelbench.measure.stats import Summary, summarize

    assert set(TimingSummary.model_fields) == {f.name for f in fields(Summary)}
    x = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3]
    assert TimingSummary.of(x).model_dump() == summarize(x).to_dict()


def test_interleave_fields_and_the_summary_survive_the_file_as_declared_types(tmp_path: Path):
    run = RunRecord(run_id=results.new_run_id(tmp_path), suite="s", started_at=results.now_iso())
    w = RunWriter(tmp_path, run)
    c = _case(run.run_id, 0)
    assert c.timing is not None
    c.timing.rounds, c.timing.pairs = [0] * 5 + [1] * 5, list(range(10))
    w.append(c)
    w.close("finished", {"ok": 1})
    raw = json.loads((w.dir / "cases.jsonl").read_text())
    assert raw["schema_version"] == results.SCHEMA_VERSION == 2 and "label" in raw
    _, (back,) = results.read_run(w.dir)
    assert back.timing is not None and back.timing.rounds == c.timing.rounds and back.timing.pairs == c.timing.pairs
    assert isinstance(back.timing.summary, TimingSummary) and back.timing.summary.n == 10
    assert back.timing.summary == c.timing.summary
    assert back.timing.model_extra == {}  # nothing undeclared


def test_version_1_records_still_load(tmp_path: Path):
    """A version 1 line as accelbench 0.1 wrote it: no label field (it lives in case_id), the summary a
    plain mapping; it reads into today's record with the label filled from the id."""
    d = _write(tmp_path, 1)
    raw = json.loads((d / "cases.jsonl").read_text())
    raw.update(schema_version=1, case_id='s/w[big]/{"n":0}@cpu')
    del raw["label"]
    del raw["timing"]["rounds"], raw["timing"]["pairs"]
    (d / "cases.jsonl").write_text(json.dumps(raw) + "\n")
    _, (c,) = results.read_run(d)
    assert c.label == "big" and c.key.id == c.case_id and c.schema_version == 1
    assert c.timing is not None and c.timing.summary.median == pytest.approx(1.045e-3)

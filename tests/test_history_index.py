"""The history index (accelbench.history.index): incremental updates keyed by file stamps, rebuilds after
deletion, corruption or a newer index version, corrupt runs listed and skipped, runs of different suites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from accelbench.history.index import INDEX_FILE, Index
from tests.history_runs import samples, stamp, write_run


def make_runs(root: Path, n: int, start: int = 0, suite: str = "syn") -> list[Path]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        rid, t = stamp(i)
        out.append(write_run(root, f"{rid}-{suite}", t, {"w_a": samples(1e-3, rng), "w_b": samples(2e-3, rng)},
                             suite=suite))
    return out


def snapshot(ix: Index) -> tuple[list[tuple], list[tuple]]:
    runs = sorted(ix.con.execute("SELECT run_dir, run_id, suite, machine, error FROM runs").fetchall())
    cases = sorted(ix.con.execute("SELECT r.run_dir, k.case_id, c.median_s, c.min_s, c.ci_low_s, c.n FROM cases c "
                                  "JOIN runs r USING (rid) JOIN case_keys k USING (cid)").fetchall())
    return runs, cases


def test_update_reads_only_new_and_changed_runs(tmp_path: Path):
    dirs = make_runs(tmp_path, 4)
    with Index(tmp_path) as ix:
        r = ix.update()
        assert (r.read, r.unchanged, r.removed, r.skipped) == (4, 0, 0, [])
        r = ix.update()
        assert (r.read, r.unchanged) == (0, 4)
        make_runs(tmp_path, 1, start=10)
        with open(dirs[0] / "cases.jsonl", "a", encoding="utf-8") as f:  # a case appended to a known run
            line = (dirs[1] / "cases.jsonl").read_text().splitlines()[0]
            f.write(line.replace('"w_a', '"w_c').replace("/w_a/", "/w_c/") + "\n")  # a new identity
        shutil.rmtree(dirs[2])
        r = ix.update()
        assert (r.read, r.unchanged, r.removed) == (2, 2, 1)
        runs, cases = snapshot(ix)
        assert len(runs) == 4 and dirs[2].name not in [x[0] for x in runs]
        assert len([c for c in cases if c[0] == dirs[0].name]) == 3  # the re-read run has its new case
        assert len(cases) == 9


def test_deleting_or_corrupting_the_index_only_costs_a_rebuild(tmp_path: Path):
    make_runs(tmp_path, 5)
    with Index(tmp_path) as ix:
        ix.update()
        before = snapshot(ix)
    (tmp_path / INDEX_FILE).unlink()
    with Index(tmp_path) as ix:
        assert ix.update().read == 5
        assert snapshot(ix) == before
    (tmp_path / INDEX_FILE).write_bytes(b"this is not a duckdb file" * 100)
    with Index(tmp_path) as ix:
        r = ix.update()
        assert r.read == 5 and any("unreadable index" in n and "rebuilt" in n for n in r.notes)
        assert snapshot(ix) == before


def test_an_index_from_a_newer_version_is_rebuilt_with_one_line(tmp_path: Path):
    make_runs(tmp_path, 3)
    with Index(tmp_path) as ix:
        ix.update()
        before = snapshot(ix)
    con = duckdb.connect(str(tmp_path / INDEX_FILE))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'version'")  # as a future accelbench would
    con.execute("CREATE TABLE from_the_future (x INTEGER)")
    con.close()
    with Index(tmp_path) as ix:
        r = ix.update()
        assert r.read == 3 and snapshot(ix) == before
        assert [n for n in r.notes if "index version 99" in n and "newer" in n and "rebuilt" in n]
        assert not ix.con.execute("SELECT * FROM information_schema.tables WHERE table_name = 'from_the_future'"
                                  ).fetchall()


def test_corrupt_runs_are_listed_with_their_reason_and_skipped(tmp_path: Path):
    good = make_runs(tmp_path, 3)
    bad_json = tmp_path / "bad-json"
    bad_json.mkdir()
    (bad_json / "run.json").write_text("{not json")
    newer = tmp_path / "newer"
    shutil.copytree(good[0], newer)
    doc = json.loads((newer / "run.json").read_text())
    doc["schema_version"] = 99
    (newer / "run.json").write_text(json.dumps(doc))
    bad_case = tmp_path / "bad-case"
    shutil.copytree(good[1], bad_case)
    lines = (bad_case / "cases.jsonl").read_text().splitlines()
    (bad_case / "cases.jsonl").write_text(lines[0] + "\n{torn in the middle\n" + lines[1] + "\n")
    with Index(tmp_path) as ix:
        r = ix.update()
        reasons = {Path(s.path).name: s.reason for s in r.skipped}
        assert set(reasons) == {"bad-json", "newer", "bad-case"}
        assert "bad-json/run.json:1" in reasons["bad-json"] and "invalid JSON" in reasons["bad-json"]
        assert "schema_version 99 is newer" in reasons["newer"]
        assert "bad-case/cases.jsonl:2" in reasons["bad-case"]
        assert len(ix.runs()) == 3
        r = ix.update()  # known corrupt runs are not re-read, but still listed
        assert r.read == 0 and len(r.skipped) == 3
        (bad_json / "run.json").write_text((good[0] / "run.json").read_text())  # repaired: read again
        r = ix.update()
        assert r.read == 1 and len(r.skipped) == 2


def test_runs_of_different_suites_keep_their_own_cases(tmp_path: Path):
    make_runs(tmp_path, 3, suite="one")
    make_runs(tmp_path, 2, start=5, suite="two")
    with Index(tmp_path) as ix:
        ix.update()
        runs = ix.runs()
        names, pts = ix.cases({int(r): i for i, r in enumerate(runs["rid"])})
        assert sorted(names["case_id"]) == sorted(f'{s}/{w}/{{"n":1}}@cpu' for s in ("one", "two")
                                                   for w in ("w_a", "w_b"))
        counts = np.bincount(pts["cid"])
        assert sorted(counts.tolist()) == [2, 2, 3, 3]
        assert (np.diff(pts["cid"]) >= 0).all() and len(set(zip(pts["cid"], pts["pos"], strict=True))) == 10


def test_not_a_folder(tmp_path: Path):
    from accelbench.errors import ResultsError

    with pytest.raises(ResultsError, match="not a results folder"):
        Index(tmp_path / "nope")


def test_change_points_are_cached_per_series_and_equal_a_fresh_analysis(tmp_path: Path):
    from accelbench.history.analysis import load_history
    from accelbench.history.changepoints import Settings

    rng = np.random.default_rng(5)
    for i in range(16):
        rid, t = stamp(i)
        write_run(tmp_path, rid, t, {"w_a": samples(1e-3 * (1.1 if i >= 8 else 1.0), rng), "w_b": samples(2e-3, rng)})
    first = load_history([tmp_path])
    with Index(tmp_path) as ix:
        (n,) = ix.con.execute("SELECT count(*) FROM cp_series").fetchone()
        assert n == 2
        ix.con.execute("UPDATE cp_series SET result = '[]'")  # a tampered cache is what the next query reads
    assert load_history([tmp_path]).changes() == []
    (tmp_path / INDEX_FILE).unlink()
    again = load_history([tmp_path])
    assert again.changes() == first.changes() and [c.position for c in first.changes()] == [8]
    strict = load_history([tmp_path], settings=Settings(min_change=0.5))  # other settings: another key
    assert strict.changes() == []


def test_new_runs_extend_the_cached_analysis_to_the_fresh_answer(tmp_path: Path):
    from accelbench.history.analysis import load_history

    rng = np.random.default_rng(6)

    def add(first: int, n: int) -> None:
        for i in range(first, first + n):
            rid, t = stamp(i)
            write_run(tmp_path, rid, t, {"w_a": samples(1e-3 * (1.1 if i >= 70 else 1.0), rng, n=5)})

    add(0, 60)
    assert load_history([tmp_path]).changes() == []
    add(60, 20)
    grown = load_history([tmp_path])
    assert [c.position for c in grown.changes()] == [70]
    (tmp_path / INDEX_FILE).unlink()
    assert load_history([tmp_path]).changes() == grown.changes()

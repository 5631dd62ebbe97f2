"""Machine-vs-machine view on the shipped H100 run and a second machine made from it (every sample twice
as long, another GPU): speedups, their direction, the reference choice, and the renderings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accelbench import machines
from accelbench.cli import app
from accelbench.compare import load_side
from accelbench.errors import UsageError
from accelbench.report import machines as render

H100 = Path(__file__).resolve().parent.parent / "examples" / "runs" / "h100-cnn"


KEEP = 12  # cases of the H100 run kept (its GPU and CPU cases of several workloads, energy included)


def fast_copy(tmp: Path) -> Path:
    d = tmp / "fast"
    if not d.exists():
        shutil.copytree(H100, d)
        (d / "cases.jsonl").write_text("".join((H100 / "cases.jsonl").read_text().splitlines(True)[:KEEP]))
    return d


def slower_copy(tmp: Path, factor: float = 2.0, gpu: str = "Slow GPU 9000") -> Path:
    """The H100 run as if measured on a machine ``factor`` times slower (samples and throughput scaled)."""
    d = tmp / "slow"
    shutil.copytree(fast_copy(tmp), d)
    run = json.loads((d / "run.json").read_text())
    run["environment"]["gpu"]["name"] = gpu
    run["environment"]["hostname"] = "slowbox"
    (d / "run.json").write_text(json.dumps(run))
    lines = []
    for line in (d / "cases.jsonl").read_text().splitlines():
        c = json.loads(line)
        for t in [c.get("timing"), *(c.get("timings") or {}).values()]:
            if t:
                t["samples_s"] = [x * factor for x in t["samples_s"]]
                t["summary"] = {k: (v * factor if k.endswith(("median", "mean", "min", "max", "q1", "q3",
                                                             "stdev", "iqr", "ci_low", "ci_high")) else v)
                                for k, v in t["summary"].items()}
        c["throughput"] = {k: v / factor for k, v in (c.get("throughput") or {}).items()}
        lines.append(json.dumps(c))
    (d / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_speedups_over_the_reference_machine(tmp_path: Path) -> None:
    slow = slower_copy(tmp_path)
    v = machines.view([load_side(fast_copy(tmp_path)), load_side(slow)])
    fast_label, slow_label = (m.label for m in v.machines)
    assert v.reference == fast_label and "H100" in fast_label and slow_label == "Slow GPU 9000 @ slowbox"
    timed = [r for r in v.rows if r.cells[fast_label].time_s is not None]
    assert timed
    for r in timed:
        f, s = r.cells[fast_label], r.cells[slow_label]
        assert f.speedup is None  # the reference itself
        assert s.time_s == pytest.approx(2 * f.time_s)
        assert s.speedup == pytest.approx(0.5, rel=1e-6)
        assert s.ci_low is not None and s.ci_high is not None and s.ci_low <= 0.5 + 1e-9 <= s.ci_high + 1e-9
        if f.items_per_s:
            assert s.items_per_s == pytest.approx(f.items_per_s / 2)
    v2 = machines.view([load_side(fast_copy(tmp_path)), load_side(slow)], reference="slow")
    assert v2.reference == slow_label
    r = next(r for r in v2.rows if r.cells[fast_label].time_s is not None)
    assert r.cells[fast_label].speedup == pytest.approx(2.0, rel=1e-6)
    energy = [r.cells[fast_label].energy_j_per_item for r in v.rows]
    assert any(e is not None and e > 0 for e in energy)  # the H100 run has energy-counter figures


def test_reference_must_name_one_machine(tmp_path: Path) -> None:
    ms = machines.view([load_side(fast_copy(tmp_path)), load_side(slower_copy(tmp_path))]).machines
    assert machines.pick_reference(ms, "2") is ms[1]
    with pytest.raises(UsageError, match="matches no machine"):
        machines.pick_reference(ms, "A100")
    with pytest.raises(UsageError, match="matches several machines"):
        machines.pick_reference(ms, " @ ")


def test_renderings_and_cli(tmp_path: Path) -> None:
    slow = slower_copy(tmp_path)
    v = machines.view([load_side(fast_copy(tmp_path)), load_side(slow)])
    txt, md = render.text(v), render.markdown(v)
    assert "0.5x" in txt and "reference" in txt and "not a gate" in txt
    assert md.startswith("## Machines") and "| 0.5x |" in md
    r = CliRunner().invoke(app, ["machines", str(fast_copy(tmp_path)), str(slow), "--reference", "Slow", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["reference"] == "Slow GPU 9000 @ slowbox" and len(d["machines"]) == 2
    r = CliRunner().invoke(app, ["compare", str(fast_copy(tmp_path)), str(slow), "--machines", "--markdown", str(tmp_path / "m.md")])
    assert r.exit_code == 0 and "0.5x" in r.stdout and "| 0.5x |" in (tmp_path / "m.md").read_text()
    r = CliRunner().invoke(app, ["machines", str(fast_copy(tmp_path)), "--reference", "nothing-like-it"])
    assert r.exit_code == 2 and "matches no machine" in r.output

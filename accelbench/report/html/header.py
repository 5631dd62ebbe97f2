"""The page header of each run: what ran, where (format.machine_facts, as `accelbench info` shows it),
its counts and warnings."""

from __future__ import annotations

from ...results import RunRecord
from ..format import DASH, machine_facts
from ..view import RunView
from .model import RunHeader

STATUSES = ("ok", "failed", "error", "skipped")


def run_facts(run: RunRecord) -> list[tuple[str, str]]:
    """The machine and what ran on it."""
    env = run.environment or {}
    facts = machine_facts(env)
    facts.append(("accelbench", str(run.accelbench_version or env.get("accelbench_version") or "?")))
    git = run.git or {}
    if git.get("commit"):
        facts.append(("commit", f"{str(git['commit'])[:12]}{' (dirty)' if git.get('dirty') else ''}"))
    if run.argv:
        facts.append(("command", " ".join(str(a) for a in run.argv)))
    return facts


def run_header(rv: RunView) -> RunHeader:
    run = rv.run
    facts = [("run id", run.run_id), ("suite", run.suite), ("started", run.started_at),
             ("finished", run.finished_at or DASH)]
    if run.description:
        facts.insert(2, ("description", run.description))
    warnings = []
    if run.status != "finished":
        warnings.append(f"run status is {run.status}: the run did not finish; the cases it finished are shown")
    if (run.options or {}).get("quick"):
        warnings.append("smoke run (--quick): few samples, short windows; numbers are indicative")
    return RunHeader(label=rv.label, source=rv.source, run_id=run.run_id, suite=run.suite, status=run.status,
                     facts=facts + run_facts(run), counts={k: sum(c.status == k for c in rv.cases) for k in STATUSES},
                     warnings=warnings)

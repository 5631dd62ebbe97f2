"""The worker protocol: a case spec in, a case record out (plain, versioned JSON both ways).

One protocol serves every executor that measures a case outside the orchestrating process: a worker
process of another environment (``python -m accelbench worker``, A/B and ``--isolate``) and a Dask worker
of another machine (fleets). The orchestrator never imports the code under test; it sends specs.

A spec (``PROTOCOL`` 1) is a JSON object:

  protocol      1
  suite         {"file": path of the suite as the user named it, "text": the suite's YAML,
                 "dir": the folder relative paths in the suite resolve against}
  case_id       the case's identity (accelbench.identity.CaseKey.id), backend included
  run_id        the run the record belongs to
  quick         bool: the --quick timing policy
  counters      bool: sample NVML/psutil counters while the case runs

The answer is the case record as ``results.CaseRecord.model_dump(mode="json")``; a spec that cannot be
served (bad protocol, a suite that does not load here, an unknown case) raises ``WorkerError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import AccelbenchError

PROTOCOL = 1


class WorkerError(AccelbenchError):
    """A spec this worker cannot serve (its message says why)."""


def case_spec(suite: Any, case_id: str, run_id: str, quick: bool = False, counters: bool = True) -> dict[str, Any]:
    """The spec that asks a worker to measure ``case_id`` of ``suite`` (a suite.Suite)."""
    return {
        "protocol": PROTOCOL,
        "suite": {"file": suite.file, "text": suite.text, "dir": str(Path(suite.file).resolve().parent)},
        "case_id": case_id,
        "run_id": run_id,
        "quick": bool(quick),
        "counters": bool(counters),
    }


def measure_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one spec in this process with the runner's own code; the record as plain JSON."""
    from . import backends
    from . import suite as suite_mod
    from .measure.counters import CounterSampler
    from .runner import measure_case

    if not isinstance(spec, dict) or spec.get("protocol") != PROTOCOL:
        got = spec.get("protocol") if isinstance(spec, dict) else type(spec).__name__
        raise WorkerError(f"worker protocol {got!r} is not the one this accelbench speaks ({PROTOCOL})")
    s = spec["suite"]
    suite = suite_mod.parse(s["text"], s["file"], Path(s["dir"]))
    want = spec["case_id"]
    for case in suite.cases:
        for b in case.backends:
            if case.case_id(b) == want:
                be = backends.get(b)
                if not be.available:
                    from .runner import skipped_record

                    rec = skipped_record(case, b, spec["run_id"], f"{b} unavailable: {be.reason}")
                    return rec.model_dump(mode="json")
                sampler = CounterSampler(enabled=bool(spec.get("counters", True)))
                sampler.start()
                try:
                    rec = measure_case(case, be, spec["run_id"], quick=bool(spec.get("quick")), sampler=sampler)
                finally:
                    sampler.stop()
                return rec.model_dump(mode="json")
    raise WorkerError(f"{s['file']}: no case {want!r} in this suite")

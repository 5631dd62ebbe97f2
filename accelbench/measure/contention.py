"""CPU contention: how much of the machine other processes took while a case was measured.

Owned here once: ``accelbench run`` records it per case (in process), a worker per case or per paired
round (accelbench.worker), and accelbench.drift reads it when two separate runs are compared (a case
measured while others took a quarter more of the machine in one run than in the other cannot have its
slowdown attributed to the code).
"""

from __future__ import annotations

import os
import time


def cpu_snapshot() -> tuple[float, float, float]:
    """(monotonic time, CPU seconds every process on the machine used, CPU seconds this process used).

    Machine-wide busy time is every field of /proc/stat except idle and iowait (guest time is already
    inside user); steal counts: it is time a hypervisor gave another guest."""
    import psutil

    t = psutil.cpu_times()
    idle = getattr(t, "idle", 0.0) + getattr(t, "iowait", 0.0)
    total = sum(getattr(t, f) for f in t._fields if f not in ("guest", "guest_nice"))
    own = os.times()  # this process's user + system seconds, without building a psutil.Process per call
    return time.monotonic(), total - idle, own.user + own.system


def contention(before: tuple[float, float, float], after: tuple[float, float, float],
               cores: int | None = None) -> dict[str, float]:
    """How much CPU other processes took between two snapshots: other_cpu_s = machine busy - ours, and
    other_cores = other_cpu_s / wall_s (on average how many cores others kept busy; 0 on an idle machine,
    up to ``cores``). Pure: tests feed it numbers."""
    wall = max(after[0] - before[0], 1e-9)
    own = max(after[2] - before[2], 0.0)
    other = max((after[1] - before[1]) - own, 0.0)
    out = {"wall_s": wall, "cpu_s": own, "other_cpu_s": other, "other_cores": other / wall}
    if cores:
        out["cores"] = float(cores)
    return out


def others_share(c: object) -> float | None:
    """The share of the machine (0..1) other processes took while a record was measured: its contention's
    other_cores / cores; None when the record carries no such measurement (older runs, imports, GPU
    records of a fleet)."""
    if not isinstance(c, dict):
        return None
    oc, cores = c.get("other_cores"), c.get("cores")
    if not isinstance(oc, (int, float)) or not isinstance(cores, (int, float)) or not cores > 0 or oc != oc:
        return None
    return min(max(float(oc) / float(cores), 0.0), 1.0)

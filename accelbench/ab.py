"""``accelbench ab SUITE --base ENV --new ENV``: A/B two code versions, interleaved, in worker processes.

Each ENV is a Python interpreter or a virtual-environment folder with its own accelbench and its own code
under test (a checkout of the base branch and one of the PR, say). This process never imports that code:
it sends case specs to ``ENV -m accelbench worker`` processes (accelbench.worker, accelbench.isolate).

1. Preflight, before anything is measured, one clear line (exit 2) when a side is unusable: the
   interpreter exists, accelbench is importable there and speaks this worker protocol, the suite loads
   there (its workloads exist in that environment). Both sides' machine fingerprints must agree on the
   hardware (CPU, memory, GPU); the software differences (the change under test: package versions,
   Python, BLAS, driver) are listed, never refused.
2. Rounds (asv's ``--interleave-rounds``, pyperf's worker processes): every round starts a fresh worker
   per side, so process-level luck (address-space layout, allocator state, import order, a CUDA context)
   is sampled, not fixed; cases are measured side by side, base and new back to back, in ABBA order
   (base first when round + case index is even) or at random (``--order random``), each with 1/rounds of
   the case's sampling budget (interleave.round_policy). Whatever the machine does during the session
   hits both sides of a pair alike. CPU cases are paired sample by sample (``--pairing samples``, the
   default, when both workers offer it): each worker opens the case (validates it, sets it up afresh,
   calibrates), and the parent asks them for one sample at a time, alternately (AB BA AB ...), at the
   base side's loop count, until the round's budget is spent; both sides' samples are then taken within a
   millisecond or so of each other. Measured on this project's shared 2-core machine, the host's
   contention moves the speed of a CPU case by up to 2x on a scale of tens of milliseconds, so pairs of
   whole cases (``--pairing cases``: base measures the case, then new) carried per-round noise of 15-30%
   where sample pairs carry a few percent. GPU cases are always paired as whole cases.
3. Evidence: the per-round pair is the unit. Both sides are written as ordinary run directories tagged
   with one interleave session and each sample's round, so compare.compare_runs takes its paired path
   (Wilcoxon signed-rank over the per-round log ratios, Holm over the cases, compare.decide) exactly as
   for ``run --baseline --interleave``; exit codes as ``gate``.
4. CPU contention: each record carries what other processes took of the CPU while it ran
   (worker.contention). A pair measured while others kept more than ``max_contention`` cores busy on
   either side is measured again in the same round (at most once per pair, at most ``rerun_share`` of
   all pairs); the less contended of the two pairs is kept (the choice is made on the pair, so it favours
   neither side), and a pair still above the limit is flagged in the case's notes.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .compare import CompareOptions, Comparison, EnvDiff, LoadedRun, check_rounds, compare_runs, machine_diff
from .errors import ResultsError, UsageError
from .interleave import RoundBudget, merge_rounds
from .isolate import WorkerError, WorkerLost, WorkerPool, WorkerProcess, clean_env, deadline_s, lost_record
from .results import CaseRecord, RunRecord, RunWriter, Timing, TimingSummary, new_run_id, now_iso
from .worker import CPUS_ENV, SuiteRef, case_spec, parse_cpus, suite_payload

DEFAULT_ROUNDS = 40  # the measured configuration (docs/ci.md); compare.check_rounds sets the floor
ORDERS = ("abba", "random")
PAIRINGS = ("samples", "cases")

# Fingerprint fields that describe the machine rather than the software on it: they must agree.
HARDWARE_PREFIXES = ("cpu.", "memory_total_bytes", "gpu.name", "gpu.nvml_name", "gpu.compute_capability",
                     "gpu.multiprocessors", "gpu.memory_total_bytes", "gpu.l2_cache_bytes",
                     "gpu.memory_bus_width_bits")

Progress = Callable[[str], None]


@dataclass
class AbOptions:
    rounds: int = DEFAULT_ROUNDS
    order: str = "abba"
    backends: list[str] | None = None
    filter: str | None = None
    quick: bool = False
    counters: bool = False  # NVML/psutil polling threads add their own noise to a tight A/B
    out: Path = Path("results")
    seed: int | None = None
    max_contention: float | None = None  # cores; None: half the machine's cores
    rerun_share: float = 0.25
    clock: str = "wall"  # or "cpu": CPU cases timed in process CPU seconds (immune to preemption)
    pairing: str = "samples"  # CPU cases: alternate single samples between the two workers; or "cases"
    affinity: str = "none"  # "same": both workers of a round on one CPU (rotating); "0,2-3": on these; none
    compare: CompareOptions = field(default_factory=CompareOptions)
    argv: list[str] = field(default_factory=list)

    def check(self) -> None:
        from .compare import MIN_ROUNDS

        if self.rounds < MIN_ROUNDS:
            raise UsageError(f"--rounds {self.rounds}: the paired analysis needs at least {MIN_ROUNDS} rounds")
        if self.clock not in ("wall", "cpu"):
            raise UsageError(f"--clock {self.clock!r}: choose wall or cpu")
        if self.pairing not in PAIRINGS:
            raise UsageError(f"--pairing {self.pairing!r}: choose {' or '.join(PAIRINGS)}")
        self.cpu_sets(0)
        if self.order not in ORDERS:
            raise UsageError(f"--order {self.order!r}: choose {' or '.join(ORDERS)}")
        self.compare.check()

    def cpu_sets(self, rnd: int) -> str | None:
        """The CPUs both workers of round ``rnd`` are pinned to (worker.CPUS_ENV's text), or None."""
        if self.affinity == "none":
            return None
        if not hasattr(os, "sched_getaffinity"):
            raise UsageError(f"--affinity {self.affinity}: this platform cannot pin processes to CPUs")
        mine = sorted(os.sched_getaffinity(0))
        if self.affinity == "same":
            return str(mine[rnd % len(mine)])
        try:
            want = parse_cpus(self.affinity)
        except ValueError:
            raise UsageError(f"--affinity {self.affinity!r}: give none, same, or CPU numbers like 0,2-3") from None
        if not want <= set(mine):
            raise UsageError(f"--affinity {self.affinity}: this process may use CPUs {mine} only")
        return ",".join(str(c) for c in sorted(want))


@dataclass
class Side:
    """One environment, after its preflight."""

    role: str  # "base" or "new"
    flag: str  # "--base" / "--new", for messages
    given: str  # what the user typed
    python: str
    hello: dict[str, Any]
    environment: dict[str, Any]
    suite: dict[str, Any]
    cases: dict[str, dict[str, Any]]  # case id -> {case_id, name, backend, timeout_s, skeleton}

    @property
    def where(self) -> str:
        return f"{self.flag} {self.given}"


@dataclass
class AbResult:
    comparison: Comparison
    base_dir: Path
    new_dir: Path
    base: Side
    new: Side
    software: list[EnvDiff]
    contention: dict[str, dict[str, Any]]  # case key -> per side: median / max other cores, flagged rounds
    reruns: int
    worker_starts: int
    limit: float
    clock: str = "wall"


# ---------------------------------------------------------------- preflight


def resolve_python(text: str, flag: str) -> str:
    """An interpreter path, a virtual-environment folder (its bin/python) or a command on PATH."""
    p = Path(text)
    if p.is_dir():
        for cand in (p / "bin" / "python", p / "Scripts" / "python.exe"):
            if cand.is_file():
                return str(cand)
        raise UsageError(f"{flag} {text}: a folder, but not a virtual environment (no bin/python in it)")
    if p.is_file():
        if not os.access(p, os.X_OK):
            raise UsageError(f"{flag} {text}: not executable")
        return str(p)
    found = shutil.which(text) if os.sep not in text else None
    if found:
        return found
    raise UsageError(f"{flag} {text}: no such interpreter or virtual environment folder")


def preflight(role: str, given: str, suite: SuiteRef, opts: AbOptions) -> Side:
    """Start one worker of the environment and ask it who it is and what the suite is there."""
    flag = f"--{role}"
    python = resolve_python(given, flag)
    where = f"{flag} {given}"
    with WorkerProcess(python, env=clean_env(), name=where) as w:
        hello = w.start()
        loaded = w.request({"type": "load", "suite": suite_payload(suite), "backends": opts.backends,
                            "filter": opts.filter, "quick": opts.quick}, 300, want="loaded")
        fp = w.request({"type": "fingerprint"}, 300, want="fingerprint")
    cases = {c["case_id"]: c for c in loaded["cases"]}
    if not cases:
        what = f" matching {opts.filter!r}" if opts.filter else ""
        raise UsageError(f"{where}: {suite.file} has no case{what} on backend(s) {', '.join(opts.backends or ['any'])}")
    return Side(role, flag, given, python, hello, fp["environment"], loaded["suite"], cases)


def split_fingerprints(base: dict[str, Any], new: dict[str, Any]) -> tuple[list[EnvDiff], list[EnvDiff]]:
    """(hardware differences, software differences) between two fingerprints (compare.machine_diff).
    A hardware field present on one side only (no GPU library there) is not a hardware difference."""
    hw, sw = [], []
    for d in machine_diff(base, new):
        if d.key.startswith(HARDWARE_PREFIXES) and d.base is not None and d.new is not None:
            hw.append(d)
        else:
            sw.append(d)
    return hw, sw


# ---------------------------------------------------------------- rounds


def pair_order(order: str, rnd: int, index: int, rng: random.Random) -> tuple[str, str]:
    """Which side goes first for case ``index`` in round ``rnd``: ABBA (base first when rnd + index is
    even: each case alternates over rounds, neighbouring cases alternate within a round) or random."""
    if order == "random":
        return ("base", "new") if rng.random() < 0.5 else ("new", "base")
    return ("base", "new") if (rnd + index) % 2 == 0 else ("new", "base")


def _other_cores(rec: CaseRecord) -> float:
    c = rec.contention
    return float(c.get("other_cores", 0.0)) if isinstance(c, dict) else 0.0


def contention_summary(recs: list[CaseRecord], limit: float) -> dict[str, Any]:
    vals = sorted(_other_cores(r) for r in recs)
    if not vals:
        return {}
    return {"median_other_cores": vals[len(vals) // 2], "max_other_cores": vals[-1],
            "rounds_over_limit": sum(v > limit for v in vals)}


def paired_round(todo: list[str], pools: dict[str, WorkerPool], specs: dict[str, dict[str, Any]],
                 skeletons: dict[str, dict[str, Any]], timeout_s: float, rng: random.Random) -> dict[str, CaseRecord]:
    """One round of one CPU case, paired sample by sample between the two sides' workers (``todo`` in the
    order the round's ABBA or random draw gave): both open the case, then single samples alternate,
    AB BA AB ..., at the base side's loop count, until the base side's round budget is spent; both close.
    A side whose case fails validation, or whose worker is lost, gets that record; the other side keeps
    its validated record."""
    recs: dict[str, CaseRecord] = {}
    opened: dict[str, dict[str, Any]] = {}
    wait = deadline_s(timeout_s)

    def ask(r: str, msg: dict[str, Any], want: str) -> dict[str, Any] | None:
        try:
            return pools[r].get().request(msg, wait, want)
        except WorkerLost as e:
            pools[r].drop()
            recs[r] = lost_record(skeletons[r], specs[r]["run_id"], e)
        except WorkerError as e:
            rec = CaseRecord.model_validate(opened[r]["record"] if r in opened else skeletons[r])
            rec.run_id, rec.status, rec.timing, rec.message = specs[r]["run_id"], "error", None, str(e)
            recs[r] = rec
        return None

    for r in todo:
        got = ask(r, {"type": "open", **specs[r], "seed": rng.randrange(1 << 30)}, "opened")
        if got is not None:
            opened[r] = got
    loops = opened.get("base", {}).get("loops")
    xs: dict[str, list[float]] = {r: [] for r in todo}
    t0 = time.perf_counter()
    if len(opened) == 2 and loops and opened["new"].get("loops"):
        budget = RoundBudget(**opened["base"]["budget"])
        k = 0
        while budget.more(k, time.perf_counter() - t0) and not recs:
            for r in (todo if k % 2 == 0 else todo[::-1]):
                got = ask(r, {"type": "sample", "loops": loops, "n": 1}, "samples")
                if got is None:
                    break
                xs[r] += [float(x) for x in got["samples_s"]]
            k += 1
    total = time.perf_counter() - t0
    lost = bool(recs)  # a side failed or was lost: the other keeps its validated record, unpaired
    n = min(len(v) for v in xs.values())
    for r in todo:
        if r in recs:
            continue
        closed = ask(r, {"type": "close"}, "closed") if opened.get(r, {}).get("loops") else None
        rec = CaseRecord.model_validate(opened[r]["record"])
        if rec.status == "ok" and n and not lost:
            samples = xs[r][:n]
            rec.timing = Timing(method=str(opened[r]["method"]), samples_s=samples, inner_loops=int(loops or 1),
                                warmup=0, stop_reason="interleaved", total_time_s=total,
                                summary=TimingSummary.of(samples), notes=[PAIRED_NOTE])
            rec.timings = {}
        if closed is not None:
            rec.contention = closed.get("contention")
        recs[r] = rec
    return recs


PAIRED_NOTE = "paired sample by sample with the other side's worker (AB BA ...)"


def run_ab(suite_file: str | Path, base_env: str, new_env: str, opts: AbOptions,
           progress: Progress | None = None) -> AbResult:
    opts.check()
    sf = Path(suite_file)
    try:
        text = sf.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{sf}: cannot read the suite: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{sf}: not a UTF-8 text file") from None
    ref = SuiteRef(str(sf), text)
    say = progress or (lambda _msg: None)
    say(f"preflight {base_env}")
    base = preflight("base", base_env, ref, opts)
    say(f"preflight {new_env}")
    new = preflight("new", new_env, ref, opts)
    hw, sw = split_fingerprints(base.environment, new.environment)
    if hw:
        diffs = "; ".join(f"{d.key}: {d.base!r} -> {d.new!r}" for d in hw[:4])
        raise ResultsError(f"{base.where} and {new.where} do not see the same hardware ({diffs})")
    check_rounds(opts.rounds, len(set(base.cases) | set(new.cases)), opts.compare.alpha)

    root = Path(opts.out)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{root}: cannot create the results directory: {e.strerror}") from None
    session = secrets.token_hex(6)
    stem = new_run_id(root)
    sides = {"base": base, "new": new}

    def writer(s: Side, role: str) -> RunWriter:
        run = RunRecord(
            run_id=f"{stem}-{s.role}", suite=s.suite["name"], suite_file=str(sf), suite_sha256=s.suite["sha256"],
            description=s.suite.get("description", ""), started_at=now_iso(),
            accelbench_version=str(s.hello.get("accelbench")), argv=list(opts.argv or sys.argv),
            options={"backends": opts.backends, "filter": opts.filter, "quick": opts.quick,
                     "counters": opts.counters, "suite_yaml": text,
                     "interleave": {"session": session, "role": role, "rounds": opts.rounds},
                     "ab": {"env": s.given, "python": s.python, "order": opts.order, "side": s.role,
                            "clock": opts.clock, "pairing": opts.pairing, "affinity": opts.affinity,
                            "orchestrator_accelbench": __version__}},
            environment=s.environment,
        )
        try:
            return RunWriter(root, run)
        except OSError as e:
            raise UsageError(f"{root}: cannot write results: {e.strerror}") from None

    writers = {"base": writer(base, "baseline"), "new": writer(new, "candidate")}
    for w in writers.values():
        w.write_run()
    order = list(base.cases) + [k for k in new.cases if k not in base.cases]
    per: dict[str, dict[str, list[CaseRecord]]] = {"base": {}, "new": {}}
    failed: dict[str, set[str]] = {"base": set(), "new": set()}
    flagged: dict[str, int] = {}
    limit = opts.max_contention if opts.max_contention is not None else (os.cpu_count() or 2) / 2
    rerun_budget = int(opts.rerun_share * opts.rounds * len(order))
    reruns = starts = 0
    rng = random.Random(opts.seed)
    status = "finished"

    def measure(role: str, pool: WorkerPool, cid: str) -> CaseRecord:
        info = sides[role].cases[cid]
        spec = case_spec(ref, cid, writers[role].run.run_id, opts.quick, opts.counters, rounds=opts.rounds,
                         clock=opts.clock)
        skel = dict(info["skeleton"], run_id=writers[role].run.run_id)
        return pool.measure(spec, skel, float(info["timeout_s"]))

    def measure_pair(todo: list[str], pools: dict[str, WorkerPool], cid: str) -> dict[str, CaseRecord]:
        paired = (opts.pairing == "samples" and len(todo) == 2 and sides["base"].cases[cid]["backend"] == "cpu"
                  and all("paired" in pools[r].get().hello.get("features", ()) for r in todo))
        if not paired:
            return {r: measure(r, pools[r], cid) for r in todo}
        specs = {r: case_spec(ref, cid, writers[r].run.run_id, opts.quick, False, rounds=opts.rounds,
                              clock=opts.clock) for r in todo}
        skels = {r: dict(sides[r].cases[cid]["skeleton"], run_id=writers[r].run.run_id) for r in todo}
        return paired_round(todo, pools, specs, skels, float(sides["base"].cases[cid]["timeout_s"]), rng)

    try:
        for rnd in range(opts.rounds):
            say(f"round {rnd + 1}/{opts.rounds}")
            cpus = opts.cpu_sets(rnd)
            env = clean_env() | ({CPUS_ENV: cpus} if cpus else {})
            pools = {r: WorkerPool(sides[r].python, env, name=sides[r].where) for r in ("base", "new")}
            try:
                for i, cid in enumerate(order):
                    first, second = pair_order(opts.order, rnd, i, rng)
                    todo = [r for r in (first, second) if cid in sides[r].cases and cid not in failed[r]]
                    if not todo:
                        continue
                    pair = measure_pair(todo, pools, cid)
                    worst = max(_other_cores(x) for x in pair.values())
                    if worst > limit and reruns < rerun_budget and len(todo) == 2:
                        reruns += 1
                        again = measure_pair(todo, pools, cid)
                        if max(_other_cores(x) for x in again.values()) < worst:
                            pair = again
                        worst = min(worst, max(_other_cores(x) for x in again.values()))
                    if worst > limit:
                        flagged[cid] = flagged.get(cid, 0) + 1
                    for r, rec in pair.items():
                        per[r].setdefault(cid, []).append(rec)
                        if rec.status != "ok":
                            failed[r].add(cid)  # it fails in every round; do not spend the budget on it
            finally:
                for p in pools.values():
                    starts += p.starts
                    p.close()
    except KeyboardInterrupt:
        status = "interrupted"
    done: dict[str, list[CaseRecord]] = {"base": [], "new": []}
    contention: dict[str, dict[str, Any]] = {}
    for cid in order:
        contention[cid] = {}
        for r in ("base", "new"):
            recs = per[r].get(cid)
            if not recs:
                continue
            rec = merge_rounds(recs, None, sides[r].cases[cid]["backend"], writers[r].run.run_id)
            paired = sum(PAIRED_NOTE in x.timing.notes for x in recs if x.timing is not None)
            if paired and rec.timing is not None:
                rec.timing.notes.append(PAIRED_NOTE + ("" if paired == len(recs) else
                                                       f" in {paired} of {len(recs)} rounds"))
            summary = contention_summary(recs, limit)
            rec.contention = {"per_round_other_cores": [_other_cores(x) for x in recs],
                              "limit_cores": limit, **summary}
            contention[cid][r] = summary
            writers[r].append(rec)
            done[r].append(rec)
    from .runner import Interrupted, count_statuses

    for r in ("base", "new"):
        writers[r].close(status, count_statuses(done[r]))  # type: ignore[arg-type]
    if status == "interrupted":
        raise Interrupted(writers["new"].dir)
    cmp = compare_runs(LoadedRun(writers["base"].run, done["base"], str(writers["base"].dir)),
                       LoadedRun(writers["new"].run, done["new"], str(writers["new"].dir)), opts.compare)
    for cc in cmp.cases:
        n = flagged.get(cc.key)
        if n:
            cc.notes.append(f"{n}/{opts.rounds} rounds under heavy CPU contention (> {limit:g} cores taken by "
                            "other processes)")
    return AbResult(comparison=cmp, base_dir=writers["base"].dir, new_dir=writers["new"].dir, base=base, new=new,
                    software=sw, contention=contention, reruns=reruns, worker_starts=starts,
                    limit=limit, clock=opts.clock)


def contention_rows(res: AbResult) -> list[tuple[str, str, str]]:
    """(case name, base, new): the cores other processes took while the case ran, median / max over its
    rounds, and how many rounds were over the limit."""
    names = {c.key: f"{c.name} @{c.backend}" for c in res.comparison.cases}

    def cell(s: dict[str, Any] | None) -> str:
        if not s:
            return "-"
        heavy = f" ({s['rounds_over_limit']} heavy)" if s.get("rounds_over_limit") else ""
        return f"{s['median_other_cores']:.2f} / {s['max_other_cores']:.2f}{heavy}"

    return [(names.get(cid, cid), cell(d.get("base")), cell(d.get("new"))) for cid, d in res.contention.items()]


def summary_text(res: AbResult) -> str:
    """What the terminal and the PR comment add to compare's table: the two environments, their software
    differences, and the contention each case was measured under."""
    lines = [f"base: {res.base.given} ({res.base.python}, accelbench {res.base.hello.get('accelbench')}) "
             f"-> {res.base_dir}",
             f"new:  {res.new.given} ({res.new.python}, accelbench {res.new.hello.get('accelbench')}) "
             f"-> {res.new_dir}"]
    if res.software:
        lines.append("software differences (the change under test):")
        lines += [f"  {d.key}: {d.base!r} -> {d.new!r}" for d in res.software]
    lines.append(f"CPU taken by other processes while each case ran, cores of {os.cpu_count()} (median / max "
                 f"over rounds; heavy: over {res.limit:g}); {res.reruns} pair(s) re-measured for contention, "
                 f"{res.worker_starts} worker processes:")
    rows = contention_rows(res)
    w = min(70, max([4, *(len(r[0]) for r in rows)]))
    cw = max([4, *(len(r[1]) for r in rows)])
    lines.append(f"  {'case':{w}}  {'base':{cw}}  new")
    lines += [f"  {n[:w]:{w}}  {b:{cw}}  {nn}" for n, b, nn in rows]
    heavy = any(s.get("rounds_over_limit") for d in res.contention.values() for s in d.values())
    if heavy and res.clock == "wall":
        lines.append("hint: other processes took much of the CPU while this ran; --clock cpu times CPU cases in "
                     "CPU seconds, which their turns on the CPU do not inflate")
    return "\n".join(lines) + "\n"

"""Fleets: one suite measured on every GPU of many machines through Dask's ``distributed``.

``accelbench run SUITE --cluster ADDRESS [--mode each|shard]`` sends case specs (accelbench.worker,
PROTOCOL 1) to Dask workers and writes the records they send back with results.RunWriter, exactly as the
local runner does. Dask moves the specs and records, starts and restarts the worker processes (Nannies)
and enforces resources; this module decides which worker measures which case, and when.

How the numbers stay honest
  * One worker per device. A worker pins its own ``CUDA_VISIBLE_DEVICES`` (set in its environment when
    it is started; ``local:N`` does it per worker) and advertises ``--resources GPU=1,CPU=1``. Every GPU
    case is submitted under ``resources={"GPU": 1}``, every CPU case under ``{"CPU": 1}``, so even another
    client's tasks that use the same resource names never share the device with a case.
  * Workers that report the same GPU UUID (CUDA_VISIBLE_DEVICES not pinned) are warned about and never
    measure GPU cases at the same time.
  * The client sends a worker its next case only when its last one has come back (one case in flight per
    worker), so a case never waits in a worker's queue behind another and a killed worker had exactly one
    case.
  * A CPU case uses the whole host (NumPy's BLAS threads): it starts only when no other case of this run is
    in flight on that host, and nothing else of this run starts there until it ends. Hosts are told apart
    by hostname and /etc/machine-id, or by ``$ACCELBENCH_HOST`` in the worker's environment.
  * Each worker fingerprints itself once (environment.fingerprint on the worker, cached in its process).
    The fingerprint's identity is its non-volatile part, as compare.machine_diff sees it (clocks, free
    memory, host names, paths and GPU UUIDs do not count); ``fingerprint_id`` is a hash of that part.

Modes
  each    the whole suite on every worker, one run directory per worker (device), whose run.json holds
          that worker's fingerprint.
  shard   workers are grouped by fingerprint_id; each group's workers share one queue of all the cases
          (whichever is free takes the next), so a group finishes sooner; one run directory per group.
          Workers whose fingerprints differ are never mixed in one run.

Every record carries ``worker``: {name, address, host, fingerprint_id, pid}; run.json's
``options.fleet`` holds the mode, the scheduler and every worker of the run with its fingerprint_id.

Faults
  * A worker that dies (or restarts) while it holds a case: the case is recorded as error with the reason
    and is not retried (a case that kills its worker would kill the next one). Its lane goes on on the other
    workers of its group; a worker restarted by its Nanny under the same name rejoins once its new
    fingerprint matches. A lane with no worker left for ``rejoin_s`` records its remaining cases as errors.
  * A case that outlives its timeout (``timing.timeout_s``; measure_case's own alarm only works in a
    main thread, and Dask runs tasks in a thread pool) is recorded as a timeout error and its worker is
    restarted through its Nanny.
  * Scheduler unreachable, no worker, no worker that speaks this protocol: UsageError (exit 2). Workers
    that cannot import accelbench or speak another protocol are left out with a warning; a worker
    without the resource a case needs gets the case recorded as skipped with the reason.
  * Ctrl-C cancels the cases in flight and closes every run directory as interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import BackendUnavailable, UsageError
from .results import CaseRecord, RunWriter
from .runner import (
    Interrupted,
    RunOptions,
    RunResult,
    add_peaks,
    count_statuses,
    new_run,
    open_run,
    select,
    skipped_record,
)
from .suite import Case, Suite
from .worker import PROTOCOL, case_spec

Mode = Literal["each", "shard"]
MODES = ("each", "shard")
RESOURCE = {"gpu": "GPU", "cpu": "CPU"}  # the Dask resource a case of each backend holds
POLL_S = 0.5  # how often the client looks at the cluster's workers while cases are in flight
TIMEOUT_GRACE_S = 30.0  # beyond a case's own timeout before the client gives up on it


# ---------------------------------------------------------------- worker side (runs in Dask workers)


HOST_ENV = "ACCELBENCH_HOST"


def host_id() -> str:
    """The CPU this worker's CPU cases share with other workers: ``$ACCELBENCH_HOST`` where set (workers
    pinned to disjoint cores, e.g. ``taskset -c 0-7 dask worker ...``, are separate CPUs), else the
    hostname plus /etc/machine-id where readable."""
    if os.environ.get(HOST_ENV):
        return os.environ[HOST_ENV]
    mid = ""
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            mid = Path(p).read_text().strip()
            break
    return f"{platform.node()}/{mid[:12]}" if mid else platform.node()


def fingerprint_id(env: dict[str, Any]) -> str:
    """A hash of the fingerprint's non-volatile fields (the ones compare.machine_diff compares)."""
    from .compare import machine_diff

    stable = {d.key: d.base for d in machine_diff(env, {})}
    blob = json.dumps(stable, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _describe_self() -> dict[str, Any]:
    """This worker process's fingerprint, taken once (the first probe or case) and kept."""
    from . import __version__, calibrate, environment

    env = environment.fingerprint(with_gpu=True)
    env["peaks"] = calibrate.peaks_for(env)
    try:
        import dask

        profiler = bool(dask.config.get("distributed.worker.profile.enabled", default=False))
    except ImportError:
        profiler = False
    return {"protocol": PROTOCOL, "accelbench_version": __version__, "fingerprint": env, "host": host_id(),
            "pid": os.getpid(), "profiler": profiler}


def probe() -> dict[str, Any]:
    """Run on every worker (Client.run) before a fleet run: what it speaks and what it is."""
    return _describe_self()


def measure_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: measure one spec with the worker protocol; the record and the process (pid) that
    measured it (the client checks it is the worker it surveyed)."""
    from .worker import measure_spec

    return {"record": measure_spec(spec), "pid": _describe_self()["pid"]}


# ---------------------------------------------------------------- client side


@dataclass
class WorkerInfo:
    address: str
    name: str
    id: str  # the scheduler's id of this worker process (changes on every restart)
    host: str
    resources: dict[str, float]
    fingerprint: dict[str, Any]
    fingerprint_id: str
    pid: int
    accelbench_version: str
    profiler: bool = False  # Dask's statistical profiler samples the measuring thread's stack every 10 ms

    def ref(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "host": self.host,
                "fingerprint_id": self.fingerprint_id, "pid": self.pid, "dask_profiler": self.profiler}

    @property
    def gpu_uuid(self) -> str | None:
        """The GPU its GPU cases run on (device 0 of its CUDA_VISIBLE_DEVICES), where it has one."""
        g = self.fingerprint.get("gpu") or {}
        return str(g["uuid"]) if g.get("available") and g.get("uuid") else None

    def describe(self) -> str:
        g = self.fingerprint.get("gpu") or {}
        dev = g.get("name") if g.get("available") else (self.fingerprint.get("cpu") or {}).get("model", "?")
        return f"{self.name} ({self.host.split('/')[0]}, {dev})"


@dataclass
class _Item:
    index: int  # position in the suite's run order
    case: Case
    backend: str


@dataclass
class _Lane:
    """One run directory and the workers that may measure its cases."""

    name: str
    fingerprint_id: str
    writer: RunWriter
    queue: deque[_Item]
    members: set[str]  # worker names
    total: int
    records: list[CaseRecord] = field(default_factory=list)
    orphaned_at: float | None = None  # when its last worker went away


@dataclass
class _Flight:
    future: Any
    lane: _Lane
    item: _Item
    worker: WorkerInfo
    started: float
    deadline: float


@dataclass
class FleetResult:
    runs: list[RunResult]
    lanes: list[str]  # one label per run: the worker (each) or the group's workers (shard)
    warnings: list[str]


Notify = Callable[[str], None]
StartHook = Callable[[int, int, Case, str, str], None]  # done, total, case, backend, worker name
EndHook = Callable[[int, int, CaseRecord], None]  # done, total, record


@contextlib.contextmanager
def connect(address: str, preload: tuple[str, ...] = (), timeout_s: float = 10.0) -> Iterator[Any]:
    """A Client for ``address``: ``tcp://host:port`` (or host:port) of a running scheduler, a scheduler
    file, or ``local:N`` (N worker processes on this machine, one per GPU where there are GPUs)."""
    import distributed  # noqa: F401  (configures its loggers, whose levels are set here)

    # distributed logs every lost connection and restart at ERROR with a traceback; the fleet reports each
    # fault itself, in one line
    logs = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
            if n == "distributed" or n.startswith("distributed.")]
    levels = [lg.level for lg in logs]
    for lg in logs:
        lg.setLevel(logging.CRITICAL)
    try:
        yield from _connect(address, preload, timeout_s)
    finally:
        for lg, lv in zip(logs, levels, strict=True):
            lg.setLevel(lv)


def _connect(address: str, preload: tuple[str, ...], timeout_s: float) -> Iterator[Any]:
    from distributed import Client

    if address.startswith("local:"):
        try:
            n = int(address[len("local:"):])
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"--cluster {address!r}: local:N needs a worker count N >= 1")
        try:
            cluster = local_cluster(n, preload=preload)
        except (RuntimeError, OSError, TimeoutError) as e:
            cause = e.__cause__ or e
            raise UsageError(f"--cluster {address}: could not start the local Dask workers ({_short(cause)})"
                             ) from None
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    p = Path(address)
    try:
        if "://" not in address and p.suffix == ".json" or p.is_file():
            if not p.is_file():
                raise UsageError(f"{address}: no such scheduler file")
            client = Client(scheduler_file=str(p), timeout=timeout_s)
        elif "://" in address or ":" in address:
            client = Client(address, timeout=timeout_s)
        else:
            raise UsageError(f"--cluster {address!r}: expected tcp://host:port of a Dask scheduler, a "
                             "scheduler file, or local:N")
    except UsageError:
        raise
    except (OSError, TimeoutError, ValueError, json.JSONDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {msg}") from None
    try:
        yield client
    finally:
        client.close()


LOCAL_HOST = "127.0.0.1"  # a local:N cluster listens on loopback only, never on the machine's network address


def local_cluster(n: int, preload: tuple[str, ...] = (), envs: list[dict[str, str]] | None = None) -> Any:
    """N Nanny-managed worker processes of one thread each, with ``GPU=1, CPU=1`` and their own
    ``CUDA_VISIBLE_DEVICES`` (the i-th of this process's visible devices, or device i; none past the
    list). ``preload`` names modules each worker imports first (workloads not shipped with accelbench);
    ``envs[i]`` adds to worker i's environment."""
    import dask
    from distributed import Nanny, Scheduler, SpecCluster

    parent = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in parent.split(",") if d.strip()] if parent is not None else [str(i) for i in range(n)]
    workers = {}
    for i in range(n):
        wenv = {"CUDA_VISIBLE_DEVICES": devices[i] if i < len(devices) else "",
                **(envs[i] if envs and i < len(envs) else {})}
        if os.environ.get("PYTHONPATH"):
            wenv.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
        workers[f"local-{i}"] = {"cls": Nanny, "options": {
            "host": LOCAL_HOST, "nthreads": 1, "resources": {"GPU": 1, "CPU": 1}, "env": wenv,
            "preload": list(preload),
            "silence_logs": logging.ERROR, "memory_limit": 0,
            # the Nanny merges this shallowly over the whole configuration: hand it the whole of it
            "config": dask.config.merge(dask.config.config, WORKER_CONFIG)}}
    # Dask's Nanny sets OMP/MKL/OPENBLAS_NUM_THREADS=1 (and a malloc trim threshold) in every worker it
    # spawns; a CPU case would then run single-threaded BLAS, unlike a local run. Unset them (a value
    # this process or envs[i] sets still wins).
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": None for k in NANNY_DEFAULT_ENV}):
        return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"host": LOCAL_HOST,
                                                                                 "dashboard_address": ":0"}},
                           silence_logs=logging.ERROR)


# Dask settings of a worker that measures: no statistical profiler (it walks the measuring thread's stack
# every 10 ms under the GIL), no GIL-contention monitor; memory_limit 0 keeps the Nanny from killing a
# worker whose case needs most of the host's memory.
WORKER_CONFIG = {"distributed": {"worker": {"profile": {"enabled": False}},
                                 "admin": {"system-monitor": {"gil": {"enabled": False}}}}}

# what distributed's Nanny puts into every worker's environment by default (distributed.yaml)
NANNY_DEFAULT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def _connection_lost(e: BaseException) -> bool:
    """The client lost its scheduler: a closed comm, or futures cancelled because of it."""
    if isinstance(e, (OSError, TimeoutError)):
        return True
    return type(e).__name__ in ("FuturesCancelledError", "CancelledError", "CommClosedError") and \
        ("connection" in str(e).lower() or type(e).__name__ == "CommClosedError")


def _short(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def cluster_workers(client: Any) -> dict[str, dict[str, Any]]:
    """The scheduler's workers now, by address. (Client.scheduler_info() can return the client's periodic
    summary, which lists no workers, when that refresh lands between its fetch and its return: a fleet
    would take every worker for dead.)"""
    ident = client.sync(client.scheduler.identity, n_workers=-1)
    return dict(ident.get("workers") or {})


def survey(client: Any, notify: Notify, addresses: list[str] | None = None) -> dict[str, WorkerInfo]:
    """Probe the workers (all, or ``addresses``): the ones that speak this protocol, by address. Others are
    reported through ``notify`` and left out."""
    info = cluster_workers(client)
    targets = [a for a in (addresses if addresses is not None else list(info)) if a in info]
    if not targets:
        return {}
    got = client.run(probe, workers=targets, on_error="return")
    out: dict[str, WorkerInfo] = {}
    for addr, r in got.items():
        name = str(info[addr].get("name", addr))
        if isinstance(r, BaseException):
            if isinstance(r, (ModuleNotFoundError, ImportError)) or "accelbench" in str(r):
                notify(f"worker {name} ({addr}) left out: accelbench is not importable there ({_short(r)})")
            else:
                notify(f"worker {name} ({addr}) left out: its probe failed ({_short(r)})")
            continue
        if not isinstance(r, dict) or r.get("protocol") != PROTOCOL:
            got_p = r.get("protocol") if isinstance(r, dict) else None
            ver = r.get("accelbench_version") if isinstance(r, dict) else None
            notify(f"worker {name} ({addr}) left out: it speaks worker protocol {got_p!r} (accelbench {ver}), "
                   f"this accelbench speaks {PROTOCOL}")
            continue
        out[addr] = WorkerInfo(address=addr, name=name, id=str(info[addr].get("id", "")), host=str(r["host"]),
                               resources=dict(info[addr].get("resources") or {}), fingerprint=r["fingerprint"],
                               fingerprint_id=fingerprint_id(r["fingerprint"]), pid=int(r["pid"]),
                               accelbench_version=str(r["accelbench_version"]), profiler=bool(r.get("profiler")))
    return out


def _preload_modules(suite: Suite) -> tuple[str, ...]:
    """Modules outside accelbench that define the suite's workloads (a local cluster imports them)."""
    return tuple(sorted({c.cls.__module__ for c in suite.cases if not c.cls.__module__.startswith("accelbench.")}))


def run_fleet(suite: Suite, opts: RunOptions, address: str, mode: str = "each", *,
              notify: Notify | None = None, on_start: StartHook | None = None, on_end: EndHook | None = None,
              rejoin_s: float = 60.0, wait_workers_s: float = 10.0, connect_timeout_s: float = 10.0
              ) -> FleetResult:
    """Measure ``suite`` on the workers of the Dask cluster at ``address``; one RunResult per run
    directory. Raises UsageError (no cluster, no usable worker), BackendUnavailable (the user asked for a
    backend no worker has) and Interrupted (Ctrl-C; every run directory closed as interrupted)."""
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: choose each or shard")
    pairs = select(suite, opts)
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        if notify:
            notify(msg)

    with connect(address, preload=_preload_modules(suite), timeout_s=connect_timeout_s) as client:
        with contextlib.suppress(TimeoutError, OSError):
            client.wait_for_workers(1, timeout=wait_workers_s)
        workers = survey(client, warn)
        if not workers:
            raise UsageError(f"the Dask cluster at {address} has no worker that can run accelbench "
                             f"(worker protocol {PROTOCOL})")
        _check_backends(pairs, workers, opts)
        shared: dict[str, list[str]] = {}
        for w in workers.values():
            if w.gpu_uuid:
                shared.setdefault(w.gpu_uuid, []).append(w.name)
        for uuid, names in shared.items():
            if len(names) > 1:
                warn(f"workers {', '.join(sorted(names))} share GPU {uuid} (each worker should pin its own "
                     "CUDA_VISIBLE_DEVICES): their GPU cases take turns")
        for w in workers.values():
            if w.profiler:
                warn(f"worker {w.name} runs Dask's statistical profiler (distributed.worker.profile.enabled), "
                     "which samples the measuring thread every 10 ms and slows what it measures; docs/fleet.md "
                     "says how to turn it off")
        if any(b == "cpu" for _, b in pairs):
            for w in workers.values():
                one = sorted(k for k, v in (w.fingerprint.get("threads_env") or {}).items() if str(v) == "1")
                if one:
                    warn(f"worker {w.name} measures the CPU with {', '.join(one)}=1 (Dask's Nanny sets them "
                         "by default; docs/fleet.md says how to unset them): its CPU numbers are single-threaded")
        return _Dispatcher(client, suite, opts, address, mode, workers, pairs, warn, on_start, on_end,
                           rejoin_s).run(warnings)


def _check_backends(pairs: list[tuple[Case, str]], workers: dict[str, WorkerInfo], opts: RunOptions) -> None:
    """--backend gpu (or cpu) asked explicitly: some worker must offer it, as `run` requires locally."""
    if not opts.strict_backend:
        return
    for b in sorted({b for _, b in pairs}):
        if b == "gpu" and not any((w.fingerprint.get("gpu") or {}).get("available") for w in workers.values()):
            why = sorted({f"{w.name}: {(w.fingerprint.get('gpu') or {}).get('reason', '?')}"
                          for w in workers.values()})
            raise BackendUnavailable(f"backend gpu is unavailable on every worker ({'; '.join(why[:4])})")
        if not any(w.resources.get(RESOURCE[b], 0) >= 1 for w in workers.values()):
            raise BackendUnavailable(f"no worker offers the {RESOURCE[b]} resource that {b} cases need "
                                     f"(start workers with --resources {RESOURCE[b]}=1)")


class _Dispatcher:
    """The fleet run's loop: assigns cases to free workers, streams records, watches for faults."""

    def __init__(self, client: Any, suite: Suite, opts: RunOptions, address: str, mode: str,
                 workers: dict[str, WorkerInfo], pairs: list[tuple[Case, str]], warn: Notify,
                 on_start: StartHook | None, on_end: EndHook | None, rejoin_s: float) -> None:
        self.client, self.suite, self.opts, self.address, self.mode = client, suite, opts, address, mode
        self.workers = workers  # live and usable, by address
        self.pairs, self.warn, self.on_start, self.on_end, self.rejoin_s = pairs, warn, on_start, on_end, rejoin_s
        self.flights: dict[str, _Flight] = {}  # by worker address
        self.lanes: list[_Lane] = []
        self.lane_of: dict[str, _Lane] = {}  # worker name -> lane
        self.rejected: set[str] = set()  # addresses probed and left out
        self.token = hashlib.sha256(f"{time.time_ns()}-{os.getpid()}".encode()).hexdigest()[:10]
        self.done = 0
        self.total = 0
        self.submitted = 0
        self.turn: dict[str, int] = {}  # worker address -> when it was last given a case

    # ---- planning

    def _groups(self) -> list[list[WorkerInfo]]:
        ws = sorted(self.workers.values(), key=lambda w: (w.host, w.name))
        if self.mode == "each":
            return [[w] for w in ws]
        by: dict[str, list[WorkerInfo]] = {}
        for w in ws:
            by.setdefault(w.fingerprint_id, []).append(w)
        return list(by.values())

    def _open_lanes(self) -> None:
        for group in self._groups():
            lead = group[0]
            label = lead.name if self.mode == "each" else f"{lead.fingerprint_id} ({', '.join(w.name for w in group)})"
            fleet = {"mode": self.mode, "scheduler": self.address, "lane": label,
                     "fingerprint_id": lead.fingerprint_id, "workers": [w.ref() for w in group]}
            root = Path(self.opts.out)
            writer = open_run(root, new_run(self.suite, self.opts, root, options={"fleet": fleet},
                                            environment=dict(lead.fingerprint)))
            lane = _Lane(name=label, fingerprint_id=lead.fingerprint_id, writer=writer, queue=deque(),
                         members={w.name for w in group}, total=len(self.pairs))
            self.lanes.append(lane)
            for w in group:
                self.lane_of[w.name] = lane
            self.total += len(self.pairs)
        for lane in self.lanes:
            for i, (case, b) in enumerate(self.pairs):
                item = _Item(i, case, b)
                if not any(w.resources.get(RESOURCE[b], 0) >= 1 for w in self._members(lane)):
                    self._record(lane, self._error(lane, item, "skipped",
                                                   f"no worker of this run offers the {RESOURCE[b]} resource "
                                                   f"{b} cases need (start workers with --resources "
                                                   f"{RESOURCE[b]}=1)"))
                else:
                    lane.queue.append(item)

    def _members(self, lane: _Lane) -> list[WorkerInfo]:
        return [w for w in self.workers.values() if w.name in lane.members and self.lane_of.get(w.name) is lane]

    # ---- records

    def _error(self, lane: _Lane, item: _Item, status: str, message: str,
               worker: WorkerInfo | None = None) -> CaseRecord:
        rec = skipped_record(item.case, item.backend, lane.writer.run.run_id, message)
        rec.status = status  # type: ignore[assignment]
        if worker is not None:
            rec = CaseRecord.model_validate({**rec.model_dump(mode="json"), "worker": worker.ref()})
        return rec

    def _record(self, lane: _Lane, rec: CaseRecord) -> None:
        add_peaks(rec, lane.writer.run.environment)
        lane.writer.append(rec)
        lane.records.append(rec)
        self.done += 1
        if self.on_end:
            self.on_end(self.done, self.total, rec)

    # ---- assignment

    def _host_busy(self, host: str) -> list[str]:
        return [f.item.backend for f in self.flights.values() if f.worker.host == host]

    def _next_item(self, w: WorkerInfo) -> tuple[_Lane, _Item] | None:
        """The first case of ``w``'s lane it has the resource for, if it is idle and in a lane."""
        lane = self.lane_of.get(w.name)
        if w.address in self.flights or lane is None or w.name not in lane.members:
            return None
        item = next((it for it in lane.queue if w.resources.get(RESOURCE[it.backend], 0) >= 1), None)
        return (lane, item) if item is not None else None

    def _assign(self) -> None:
        # the worker that waited longest goes first, so workers sharing a host take turns
        order = sorted(self.workers.values(), key=lambda w: (self.turn.get(w.address, -1), w.name))
        # hosts where a CPU case waits for the host to be free: start nothing else there meanwhile
        draining: set[str] = set()
        for w in order:
            nxt = self._next_item(w)
            if nxt is not None and nxt[1].backend == "cpu" and self._host_busy(w.host):
                draining.add(w.host)
        for w in order:
            nxt = self._next_item(w)  # again: a worker before it in this pass may have taken its case
            if nxt is None:
                continue
            lane, item = nxt
            busy = self._host_busy(w.host)
            if item.backend == "cpu":
                if busy:
                    continue
            elif "cpu" in busy or w.host in draining or (w.gpu_uuid is not None and any(
                    f.item.backend == "gpu" and f.worker.gpu_uuid == w.gpu_uuid for f in self.flights.values())):
                continue  # the host's CPU is taken or wanted, or this GPU is (workers sharing one take turns)
            lane.queue.remove(item)
            self._submit(w, lane, item)

    def _submit(self, w: WorkerInfo, lane: _Lane, item: _Item) -> None:
        spec = case_spec(self.suite, item.case.case_id(item.backend), lane.writer.run.run_id,
                         quick=self.opts.quick, counters=self.opts.counters)
        key = f"accelbench-{self.token}-{self.lanes.index(lane)}-{item.index}"
        fut = self.client.submit(measure_task, spec, key=key, workers=[w.address], allow_other_workers=False,
                                 resources={RESOURCE[item.backend]: 1}, pure=False, retries=0)
        self.turn[w.address] = self.submitted = self.submitted + 1
        policy = item.case.timing.quick() if self.opts.quick else item.case.timing
        now = time.monotonic()
        self.flights[w.address] = _Flight(fut, lane, item, w, now, now + policy.timeout_s + TIMEOUT_GRACE_S)
        if self.on_start:
            self.on_start(self.done, self.total, item.case, item.backend, w.name)

    # ---- results and faults

    def _land(self, fl: _Flight) -> None:
        del self.flights[fl.worker.address]
        fut, lane, item, w = fl.future, fl.lane, fl.item, fl.worker
        if fut.status == "finished":
            res = fut.result()
            rec = CaseRecord.model_validate({**res["record"], "worker": {**w.ref(), "pid": res["pid"]}})
        elif fut.status == "error":
            e = fut.exception()
            if type(e).__name__ == "KilledWorker":
                msg = f"worker {w.name} ({w.address}) died while measuring this case ({_short(e)})"
            else:
                msg = f"on worker {w.name}: {_short(e)}"
            rec = self._error(lane, item, "error", msg, w)
        else:
            rec = self._error(lane, item, "error", f"cancelled on worker {w.name} ({fut.status})", w)
        self._record(lane, rec)

    def _lost(self, w: WorkerInfo, why: str) -> None:
        """Worker ``w`` is gone (died, restarted, removed): its case in flight is an error, not retried."""
        self.workers.pop(w.address, None)
        fl = self.flights.get(w.address)
        if fl is not None and fl.future.status == "finished":
            self._land(fl)  # it came back just before its worker went
        elif fl is not None:
            del self.flights[w.address]
            fl.future.cancel()
            self._record(fl.lane, self._error(fl.lane, fl.item, "error",
                                              f"worker {w.name} ({w.address}) {why} while measuring this "
                                              "case; not retried (a case that kills its worker would kill "
                                              "the next)", w))
        self.warn(f"worker {w.name} ({w.address}) {why}")

    def _watch(self) -> None:
        info = cluster_workers(self.client)
        for addr, w in list(self.workers.items()):
            now = info.get(addr)
            if now is None:
                self._lost(w, "died")
            elif str(now.get("id", "")) != w.id:
                self._lost(w, "was restarted")
        t = time.monotonic()
        for fl in list(self.flights.values()):
            if t > fl.deadline:
                self.workers.pop(fl.worker.address, None)
                del self.flights[fl.worker.address]
                fl.future.cancel()
                limit = fl.deadline - fl.started - TIMEOUT_GRACE_S
                self._record(fl.lane, self._error(fl.lane, fl.item, "error",
                                                  f"timeout: exceeded its time limit of {limit:g} s on worker "
                                                  f"{fl.worker.name}; the worker is restarted", fl.worker))
                with contextlib.suppress(Exception):
                    self.client.restart_workers([fl.worker.address], raise_for_error=False)
        # workers that came back under a lane member's name (a Nanny restart) or joined late
        known = {w.address for w in self.workers.values()}
        fresh = [a for a, d in info.items()
                 if a not in known and a not in self.rejected and str(d.get("name")) in self.lane_of]
        if fresh:
            usable = survey(self.client, self.warn, fresh)
            self.rejected.update(a for a in fresh if a not in usable)
            for addr, w in usable.items():
                lane = self.lane_of[w.name]
                if w.fingerprint_id != lane.fingerprint_id:
                    self.warn(f"worker {w.name} came back with another fingerprint ({w.fingerprint_id}, was "
                              f"{lane.fingerprint_id}); left out of {lane.name}")
                    lane.members.discard(w.name)
                    self.rejected.add(addr)
                    continue
                self.workers[addr] = w
        for lane in self.lanes:
            # cases no worker of the lane can take any more (gone, or none left with their resource)
            members = self._members(lane)
            stuck = [it for it in lane.queue
                     if not any(w.resources.get(RESOURCE[it.backend], 0) >= 1 for w in members)]
            if not stuck:
                lane.orphaned_at = None
            elif lane.orphaned_at is None:
                lane.orphaned_at = t
            elif t - lane.orphaned_at > self.rejoin_s:
                for it in stuck:
                    lane.queue.remove(it)
                    self._record(lane, self._error(lane, it, "error",
                                                   f"no worker of this run left that offers the "
                                                   f"{RESOURCE[it.backend]} resource (waited {self.rejoin_s:g} s "
                                                   "for one to come back)"))
                lane.orphaned_at = None

    def run(self, warnings: list[str]) -> FleetResult:
        from distributed import wait

        status = "finished"
        lost: UsageError | None = None
        try:
            self._open_lanes()
            last_watch = 0.0
            while self.flights or any(lane.queue for lane in self.lanes):
                self._assign()
                if self.flights:
                    with contextlib.suppress(TimeoutError):
                        wait([f.future for f in self.flights.values()], timeout=POLL_S,
                             return_when="FIRST_COMPLETED")
                    for fl in [f for f in self.flights.values() if f.future.done()]:
                        self._land(fl)
                else:
                    time.sleep(POLL_S)
                if time.monotonic() - last_watch >= POLL_S:
                    self._watch()
                    last_watch = time.monotonic()
        except KeyboardInterrupt:
            status = "interrupted"
            with contextlib.suppress(Exception):
                self.client.cancel([f.future for f in self.flights.values()], force=True)
        except BaseException as e:
            status = "interrupted"  # whatever happened, the run directories say they are incomplete
            if not _connection_lost(e):
                raise
            lost = UsageError(f"lost the Dask scheduler at {self.address} ({_short(e)}); the finished cases "
                              f"are kept in {', '.join(str(lane.writer.dir) for lane in self.lanes)}")
        finally:
            for lane in self.lanes:
                lane.writer.close(status, count_statuses(lane.records))  # type: ignore[arg-type]
        if status == "interrupted":
            if lost is not None:
                raise lost
            raise Interrupted(Path(self.opts.out))
        runs = [RunResult(run_dir=lane.writer.dir, run=lane.writer.run, cases=lane.records) for lane in self.lanes]
        return FleetResult(runs=runs, lanes=[lane.name for lane in self.lanes], warnings=warnings)

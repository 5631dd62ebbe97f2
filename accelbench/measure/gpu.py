"""GPU timing with CUDA events on a dedicated non-blocking stream: cold, batch and graph samples.

Contract used by the runner:

    timing, extra = measure_gpu(workload, policy, quick=False, counters=cc)

``timing`` is the headline Timing (cold samples); ``extra`` maps the other modes ("batch", "graph") to their
Timing. The method follows nvbench (cold/batch, blocking kernel, L2 flush, noise-driven stopping,
throttle detection) and adds CUDA-graph replays with rotated inputs:

- **cold** (headline): before each sample the L2 is flushed (a memset of a buffer twice the L2 size,
  allocated once, outside the timed region) and the stream is held by a one-thread kernel spinning on a
  host-mapped flag (with a time-out) while the start event, the workload and the end event are queued; the
  host then releases the flag. Host-side Python launch delay therefore does not leak into the GPU time. The
  host time of the launch (``run()`` call) is recorded per sample in ``cpu_launch_s``, as
  cupyx.profiler.benchmark does. The spinning kernel also reads the SM clock (clock64 cycles over
  %globaltimer ns) for free, which throttle detection uses when NVML is absent.
- **batch**: N back-to-back launches between one event pair, N sized from the cold median (about 1 ms per
  sample), no flush and no blocking kernel: the per-operation time includes launch overhead when the
  kernel is shorter than its launch, which is the point.
- **graph**: the workload captured into a CUDA graph on the stream, replayed; per-operation time beside the
  eager one (nvbench issue #124). Inputs rotate: when one instance's buffers are smaller than twice the L2,
  extra instances of the workload are set up (own buffers, same parameters) until the rotation is larger,
  and batch and graph cycle through them, so neither is timed on a warm cache (the flaw that makes
  triton's do_bench_cudagraph overstate bandwidth). Capture failing (a workload that synchronises, an
  API that cannot be captured) is recorded in the graph Timing's notes; it never fails the case.
- Workloads with ``synchronizes = True`` skip the blocking kernel and batch mode. A workload that
  synchronises without saying so is caught by the blocking kernel's time-out: the sample is discarded,
  the blocking kernel is turned off for the case, and the notes say why.
- Stopping (per mode): ``gpu_should_stop`` -- the median CI under target after the minimum time, or noise
  that has stabilised (nvbench's stdrel rule: the relative stdev of the last checks within 5%), or
  max_time / max_samples. Short kernels therefore stop once their noise is known instead of running to the
  time-out (nvbench #61).
- Throttling: the SM clock of every cold sample (blocking-kernel clock, else NVML) is judged by
  ``ThrottleGuard``: samples below 75% of the default clock are discarded and retried after a pause; after
  repeated throttling they are kept, and the Timing says so with NVML's clock-event reasons.
- Counters: when the case's counters can give energy or GPM, a steady loop of known length runs inside a
  counter window of at least ``counters.MIN_WINDOW_S`` after timing, so energy per operation and GPM
  utilisations come from a window long enough to mean something.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..ops.capture import capturable
from ..results import Timing, TimingSummary
from .counters import EDGE_WAIT_S
from .stats import rel_ci_halfwidth
from .timing import TimingPolicy, limit_reached, minimums_met

THROTTLE_THRESHOLD = 0.75  # fraction of the default SM clock under which a sample is discarded
BLOCK_TIMEOUT_S = 2.0  # the blocking kernel gives up after this long (then the workload must be syncing)
BATCH_TARGET_S = 1e-3  # GPU time per batch/graph sample
MAX_BATCH = 20000
MAX_ROTATION = 64  # input copies at most
NOISE_WINDOW = 8  # stdrel checks over which noise must be stable
NOISE_STABLE = 0.05  # ... to within this relative spread (nvbench's value)

_BLOCKER_SRC = r"""
extern "C" __global__ void accelbench_block_stream(volatile int* flag, unsigned long long timeout_ns,
                                                   unsigned long long* clk) {
    unsigned long long t0, t1;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    long long c0 = clock64();
    t1 = t0;
    while (flag[0] == 0) {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
        if (t1 - t0 > timeout_ns) { flag[1] = 1; break; }
    }
    long long c1 = clock64();
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
    clk[0] = (unsigned long long)(c1 - c0);
    clk[1] = t1 - t0;
    __threadfence_system();
}
"""


# ---------------------------------------------------------------- pure logic (tested without a GPU)


@dataclass
class NoiseState:
    """Running state of the stopping rule for one mode."""

    cv_history: list[float] = field(default_factory=list)
    last_check_n: int = 0


def gpu_should_stop(samples: list[float], elapsed_s: float, policy: TimingPolicy, state: NoiseState) -> str | None:
    """The GPU stopping rule, a pure function of the samples, the wall time spent and the running state.

    Order: max_samples; max_time; (min samples and min time not reached -> go on); then, checked after
    every sample below 64 and every 16th after that (so the sort stays cheap): the median CI under
    ``target_rel_ci`` -> "rel_ci<target"; the relative stdev (stdev/mean, nvbench's noise) stable within
    5% over the last 8 checks -> "noise_stable". The minimum time counts wall time, not accumulated GPU
    time: a 5 us kernel would need 40 000 samples to accumulate 0.2 s of GPU time.
    """
    n = len(samples)
    limit = limit_reached(n, elapsed_s, policy)
    if limit or not minimums_met(n, elapsed_s, policy):
        return limit
    if n >= 64 and n - state.last_check_n < 16:
        return None
    state.last_check_n = n
    if rel_ci_halfwidth(samples) <= policy.target_rel_ci:
        return "rel_ci<target"
    x = np.asarray(samples, dtype=np.float64)
    mean = float(x.mean())
    if mean > 0:
        state.cv_history.append(float(x.std(ddof=1)) / mean)
    h = state.cv_history
    if n >= 64 and len(h) >= NOISE_WINDOW:
        cur = h[-1]
        win = np.asarray(h[-NOISE_WINDOW:])
        spread = float(np.sqrt(np.mean((win - cur) ** 2)))
        if cur > 0 and spread / cur < NOISE_STABLE:
            return "noise_stable"
    return None


@dataclass
class ThrottleGuard:
    """Decides, per sample, whether an SM clock reading means the sample was throttled.

    Samples under ``threshold * default_mhz`` are discarded (``judge`` returns False) and the caller pauses
    ``delay_s()`` before retrying (growing like nvbench's recovery delay). After ``give_up_after``
    consecutive discards, or ``max_discards`` in all, throttling is accepted: samples are kept and counted in
    ``kept_throttled`` so the case is never left empty and says it was throttled.
    """

    default_mhz: float | None
    threshold: float = THROTTLE_THRESHOLD
    give_up_after: int = 3
    max_discards: int = 20
    recovery_s: float = 0.05
    discarded: int = 0
    consecutive: int = 0
    kept_throttled: int = 0
    gave_up: bool = False
    min_seen_mhz: float | None = None

    @property
    def limit_mhz(self) -> float | None:
        return self.default_mhz * self.threshold if self.default_mhz else None

    def judge(self, clock_mhz: float | None) -> bool:
        """True: keep the sample. False: discard it (and pause delay_s())."""
        if clock_mhz is None or not self.default_mhz:
            return True
        if self.min_seen_mhz is None or clock_mhz < self.min_seen_mhz:
            self.min_seen_mhz = clock_mhz
        if clock_mhz >= self.default_mhz * self.threshold:
            self.consecutive = 0
            return True
        if self.gave_up:
            self.kept_throttled += 1
            return True
        self.discarded += 1
        self.consecutive += 1
        if self.consecutive >= self.give_up_after or self.discarded >= self.max_discards:
            self.gave_up = True
        return False

    def delay_s(self) -> float:
        return min(0.5, self.recovery_s * (1.5 ** max(0, self.consecutive - 1)))

    def summary(self) -> dict[str, Any]:
        return {"default_sm_clock_mhz": self.default_mhz, "threshold_fraction": self.threshold,
                "discarded_samples": self.discarded, "kept_throttled_samples": self.kept_throttled,
                "gave_up": self.gave_up, "min_sm_clock_mhz": self.min_seen_mhz}


def batch_size(cold_median_s: float, target_s: float = BATCH_TARGET_S, cap: int = MAX_BATCH) -> int:
    """Launches per batch sample so one sample takes about ``target_s`` of GPU time."""
    if not cold_median_s or cold_median_s <= 0 or not math.isfinite(cold_median_s):
        return 1
    return int(max(1, min(cap, math.ceil(target_s / cold_median_s))))


def rotation_needed(footprint_bytes: float, l2_bytes: float) -> bool:
    """Whether one instance's buffers could stay in L2 between back-to-back runs (then inputs rotate)."""
    return footprint_bytes < 2 * l2_bytes


def clock_from_blocker(cycles: int, ns: int) -> float | None:
    """SM clock in MHz from the blocking kernel's clock64 cycles over %globaltimer nanoseconds; None when
    the window is too short to mean anything or the result is implausible."""
    if ns < 2000 or cycles <= 0:
        return None
    mhz = cycles / ns * 1e3
    return mhz if 50.0 <= mhz <= 5000.0 else None


def mode_policy(policy: TimingPolicy, share: float) -> TimingPolicy:
    """Budget of a secondary mode (batch, graph): ``share`` of the case's sampling time."""
    mt = max(0.05, policy.max_time_s * share)
    return replace(policy, max_time_s=mt, min_time_s=min(policy.min_time_s, mt / 2))


# ---------------------------------------------------------------- device state (cached per device)


class _Blocker:
    """The blocking kernel and its host-mapped flag/clock words."""

    def __init__(self, cp: Any) -> None:
        rt = cp.cuda.runtime
        self.ptr = rt.hostAlloc(64, rt.hostAllocMapped)
        # unified addressing (every 64-bit CUDA platform): the mapped host pointer is also the device one;
        # ask the runtime where it can say
        try:
            self.dptr = int(rt.pointerGetAttributes(self.ptr).devicePointer) or self.ptr
        except Exception:
            self.dptr = self.ptr
        buf: Any = (ctypes.c_char * 64).from_address(self.ptr)
        self.flag = np.frombuffer(buf, dtype=np.int32, count=2, offset=0)
        self.clk = np.frombuffer(buf, dtype=np.uint64, count=2, offset=16)
        self.kernel = cp.RawKernel(_BLOCKER_SRC, "accelbench_block_stream")

    def hold(self, timeout_s: float) -> None:
        self.flag[:] = 0
        self.clk[:] = 0
        self.kernel((1,), (1,), (np.uint64(self.dptr), np.uint64(int(timeout_s * 1e9)), np.uint64(self.dptr + 16)))

    def release(self) -> None:
        self.flag[0] = 1

    @property
    def timed_out(self) -> bool:
        return bool(self.flag[1])

    def clock_mhz(self) -> float | None:
        return clock_from_blocker(int(self.clk[0]), int(self.clk[1]))


@dataclass
class _Ctx:
    cp: Any
    device_id: int
    stream: Any
    l2_bytes: int
    flush_buf: Any
    blocker: _Blocker | None
    blocker_error: str
    clock_rate_mhz: float | None


_CTX: dict[int, _Ctx] = {}


def _context(cp: Any) -> _Ctx:
    dev = cp.cuda.Device()
    ctx = _CTX.get(dev.id)
    if ctx is not None:
        return ctx
    rt = cp.cuda.runtime
    props = rt.getDeviceProperties(dev.id)
    l2 = int(props.get("l2CacheSize") or 0)
    clock_khz = props.get("clockRate")
    try:
        l2 = l2 or int(rt.deviceGetAttribute(38, dev.id))  # cudaDevAttrL2CacheSize
        clock_khz = clock_khz or int(rt.deviceGetAttribute(13, dev.id))  # cudaDevAttrClockRate (kHz)
    except Exception:
        pass
    l2 = l2 or 50 * 2**20
    stream = cp.cuda.Stream(non_blocking=True)
    flush = cp.empty(2 * l2, dtype=cp.uint8)  # twice the L2: nothing of the last sample survives
    blocker, err = None, ""
    try:
        blocker = _Blocker(cp)
        with stream:
            blocker.hold(1.0)
            blocker.release()
        stream.synchronize()
    except Exception as e:  # NVRTC or mapped memory unavailable: cold samples without the blocking kernel
        blocker, err = None, f"blocking kernel unavailable: {type(e).__name__}: {e}"
    ctx = _Ctx(cp=cp, device_id=dev.id, stream=stream, l2_bytes=l2, flush_buf=flush, blocker=blocker,
               blocker_error=err, clock_rate_mhz=clock_khz / 1e3 if clock_khz else None)
    _CTX[dev.id] = ctx
    return ctx


# ---------------------------------------------------------------- the timer


def _flush(ctx: _Ctx, value: int) -> None:
    ctx.cp.cuda.runtime.memsetAsync(ctx.flush_buf.data.ptr, value & 0xFF, ctx.flush_buf.nbytes, ctx.stream.ptr)


def _timing(method: str, samples: list[float], *, inner: int = 1, warm: int = 0, reason: str = "",
            total: float = 0.0, cpu: list[float] | None = None, notes: list[str] | None = None,
            **extra: Any) -> Timing:
    return Timing(method=method, samples_s=samples, inner_loops=inner, warmup=warm, stop_reason=reason,
                  total_time_s=total, summary=TimingSummary.of(samples), cpu_launch_s=cpu,
                  notes=list(notes or []), **extra)


def _make_copies(workload: Any, ctx: _Ctx, quick: bool) -> tuple[list[Any], str]:
    """The workload plus extra instances (own buffers) until their buffers together exceed twice the L2."""
    if quick:
        return [workload], "quick run: inputs not rotated"
    cp = ctx.cp
    pool = cp.get_default_memory_pool()
    cls = type(workload)
    est = 0
    try:
        est = int(cls.memory_bytes(workload.p, "gpu"))
    except Exception:
        est = 0
    if est and not rotation_needed(est, ctx.l2_bytes):
        return [workload], ""
    copies = [workload]
    total = est
    try:
        free, _ = cp.cuda.runtime.memGetInfo()
        while len(copies) < MAX_ROTATION and rotation_needed(total, ctx.l2_bytes):
            before = pool.used_bytes()
            c = cls(workload.p, workload.backend, seed=workload.seed + len(copies))
            c.setup()
            with ctx.stream:
                c.run()
            used = pool.used_bytes() - before
            copies.append(c)
            total += max(used, est)
            if used <= 0 and est <= 0:
                break  # memory we cannot see (not from CuPy's pool): do not guess
            if total > free // 4:
                break
    except Exception as e:
        for c in copies[1:]:
            _teardown(c)
        return [workload], f"inputs not rotated (extra instance failed: {type(e).__name__}: {e})"
    ctx.stream.synchronize()
    if len(copies) == 1:
        return copies, ""
    return copies, f"inputs rotated over {len(copies)} instances ({total / 2**20:.1f} MiB > 2 x L2)"


def _teardown(c: Any) -> None:
    with contextlib.suppress(Exception):
        c.teardown()


def _default_sm_mhz(counters: Any, ctx: _Ctx) -> float | None:
    """The SM clock a sample is judged against: NVML's default application clock, else the device's rate."""
    mhz = counters.default_sm_clock_mhz() if counters is not None and hasattr(counters, "default_sm_clock_mhz") \
        else None
    return mhz or ctx.clock_rate_mhz


def _sample_sm_mhz(blocker: Any, counters: Any, clock_src: set[str]) -> float | None:
    """The SM clock during the sample just taken: the blocking kernel's reading when it held the sample,
    else NVML's; adds where it came from to ``clock_src``."""
    mhz = blocker.clock_mhz() if blocker is not None else None
    if mhz is not None:
        clock_src.add("blocking-kernel clock64/globaltimer")
    elif counters is not None and hasattr(counters, "sm_clock_mhz"):
        mhz = counters.sm_clock_mhz()
        if mhz is not None:
            clock_src.add("nvml")
    return mhz


def _throttle_notes(guard: ThrottleGuard, default_mhz: float | None, reasons: set[str], clock_src: set[str]) -> list[str]:
    notes = []
    if guard.discarded:
        notes.append(f"throttling: {guard.discarded} sample(s) under {THROTTLE_THRESHOLD:.0%} of the default "
                     f"SM clock ({default_mhz:.0f} MHz) discarded and retried"
                     + (f"; reasons: {', '.join(sorted(reasons))}" if reasons else ""))
    if guard.gave_up:
        notes.append(f"THROTTLED: repeated throttling; {guard.kept_throttled} throttled sample(s) kept so the case "
                     f"is not empty")
    if not clock_src:
        notes.append("SM clock not recorded (no NVML clock and no blocking kernel): throttling not checked")
    return notes


def _cold(workload: Any, ctx: _Ctx, policy: TimingPolicy, counters: Any, use_blocker: bool, warm: int,
          notes: list[str]) -> Timing:
    cp, stream = ctx.cp, ctx.stream
    start, end = cp.cuda.Event(), cp.cuda.Event()
    default_mhz = _default_sm_mhz(counters, ctx)
    guard = ThrottleGuard(default_mhz)
    blocker = ctx.blocker if use_blocker else None
    if use_blocker and blocker is None:
        notes.append(ctx.blocker_error)
    samples: list[float] = []
    cpu: list[float] = []
    clocks: list[float | None] = []
    clock_src: set[str] = set()
    reasons: set[str] = set()
    state = NoiseState()
    t_start = time.perf_counter()
    reason: str | None = None
    i = 0
    while reason is None:
        i += 1
        t_sample = time.perf_counter()
        _flush(ctx, i)
        held = False
        if blocker is not None:
            blocker.hold(BLOCK_TIMEOUT_S)
            held = True
        start.record(stream)
        t0 = time.perf_counter()
        try:
            workload.run()
        finally:
            t1 = time.perf_counter()
            end.record(stream)
            if held:
                blocker.release()  # type: ignore[union-attr]
        end.synchronize()
        gpu_s = cp.cuda.get_elapsed_time(start, end) * 1e-3
        if held and blocker.timed_out:  # type: ignore[union-attr]
            notes.append(f"blocking kernel timed out after {BLOCK_TIMEOUT_S:g} s: run() seems to synchronise "
                         f"internally; sample discarded and cold samples taken without the blocking kernel "
                         f"(host launch time may leak into GPU time)")
            blocker = None
            # the seconds spent waiting for the time-out are the harness's detection, not the case's
            # measuring: they must not use up max_time_s (a 2 s wait would end a 0.4 s budget at 1 sample)
            t_start += time.perf_counter() - t_sample
            continue
        mhz = _sample_sm_mhz(blocker if held else None, counters, clock_src)
        if not guard.judge(mhz):
            r = counters.clock_event_reasons() if counters is not None and hasattr(counters, "clock_event_reasons") \
                else None
            reasons.update(r or [])
            time.sleep(guard.delay_s())
            continue
        samples.append(gpu_s)
        cpu.append(t1 - t0)
        clocks.append(mhz)
        reason = gpu_should_stop(samples, time.perf_counter() - t_start, policy, state)
    total = time.perf_counter() - t_start
    notes += _throttle_notes(guard, default_mhz, reasons, clock_src)
    method = "cuda-events-cold"
    extra: dict[str, Any] = {
        "sm_clock_mhz": clocks if clock_src else None,
        "clock_source": sorted(clock_src),
        "blocking_kernel": blocker is not None,
        "l2_flush_bytes": int(ctx.flush_buf.nbytes),
        "throttle": {**guard.summary(), "clock_event_reasons": sorted(reasons)},
    }
    return _timing(method, samples, warm=warm, reason=reason, total=total, cpu=cpu, notes=notes, **extra)


def _batch(copies: list[Any], ctx: _Ctx, policy: TimingPolicy, n: int, cold_median_s: float) -> Timing:
    cp, stream = ctx.cp, ctx.stream
    start, end = cp.cuda.Event(), cp.cuda.Event()
    k = len(copies)
    runs = [c.run for c in copies]
    samples: list[float] = []
    cpu: list[float] = []
    state = NoiseState()
    t_start = time.perf_counter()
    reason: str | None = None
    j = 0
    while reason is None:
        start.record(stream)
        t0 = time.perf_counter()
        for _ in range(n):
            runs[j % k]()
            j += 1
        t1 = time.perf_counter()
        end.record(stream)
        end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, end) * 1e-3 / n)
        cpu.append((t1 - t0) / n)
        reason = gpu_should_stop(samples, time.perf_counter() - t_start, policy, state)
    # per-operation batch time minus the cold time: launch overhead where the kernel is shorter than its
    # launch (positive), or warm-cache / overlap gain (negative)
    return _timing("cuda-events-batch", samples, inner=n, reason=reason, total=time.perf_counter() - t_start,
                   cpu=cpu, rotation=k, launch_overhead_s=float(np.median(samples)) - cold_median_s)


def _capture(copies: list[Any], ctx: _Ctx) -> Any:
    """Capture one run of every copy into one CUDA graph; raise with the cause on failure."""
    stream = ctx.stream
    with stream, capturable(ctx.cp):  # CuPy refuses cuBLAS under capture; cuBLAS itself does not
        stream.begin_capture()
        try:
            for c in copies:
                c.run()
        except BaseException:
            with contextlib.suppress(Exception):
                stream.end_capture()
            raise
        g = stream.end_capture()
    g.upload(stream)
    return g


def _graph(copies: list[Any], ctx: _Ctx, policy: TimingPolicy, eager_median_s: float, notes: list[str]
           ) -> Timing | None:
    cp, stream = ctx.cp, ctx.stream
    try:
        g = _capture(copies, ctx)
        for _ in range(2):
            g.launch(stream)
        stream.synchronize()
    except Exception as e:
        # a failed capture can leave a sticky error on the stream's capture state; clear what we can
        with contextlib.suppress(Exception):
            cp.cuda.runtime.getLastError()
        notes.append(f"graph capture failed, no graph timing: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return None
    k = len(copies)
    r = batch_size(eager_median_s * k, cap=1000)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    samples: list[float] = []
    cpu: list[float] = []
    state = NoiseState()
    t_start = time.perf_counter()
    reason: str | None = None
    while reason is None:
        start.record(stream)
        t0 = time.perf_counter()
        for _ in range(r):
            g.launch(stream)
        t1 = time.perf_counter()
        end.record(stream)
        end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, end) * 1e-3 / (r * k))
        cpu.append((t1 - t0) / (r * k))
        reason = gpu_should_stop(samples, time.perf_counter() - t_start, policy, state)
    return _timing("cuda-graph", samples, inner=r * k, reason=reason, total=time.perf_counter() - t_start, cpu=cpu,
                   rotation=k, ops_per_replay=k)


def _steady_window(copies: list[Any], ctx: _Ctx, counters: Any, window_s: float, n: int,
                   work: dict[str, Any]) -> None:
    """Run the workload back to back for at least ``window_s`` inside the case's counter window."""
    cp, stream = ctx.cp, ctx.stream
    start, end = cp.cuda.Event(), cp.cuda.Event()
    k = len(copies)
    ops = 0
    tick = getattr(counters, "energy_tick", None)
    counters.window_begin()
    t0 = time.perf_counter()
    start.record(stream)
    j = 0
    while True:
        for _ in range(n):
            copies[j % k].run()
            j += 1
        ops += n
        end.record(stream)
        end.synchronize()
        if tick is not None:
            tick()
        el = time.perf_counter() - t0
        # past the minimum, run on (up to EDGE_WAIT_S) until the energy counter has updated twice far enough
        # apart, so energy comes from between two updates (see counters.EnergyEdges)
        if el >= window_s and (tick is None or counters.energy_aligned(window_s) or el >= window_s + EDGE_WAIT_S):
            break
    gpu_s = cp.cuda.get_elapsed_time(start, end) * 1e-3
    counters.window_end(ops, work=work, gpu_time_s=gpu_s, note=f"steady loop: {ops} runs back to back")


def measure_gpu(workload: Any, policy: TimingPolicy, quick: bool = False, counters: Any = None,
                modes: tuple[str, ...] = ("cold", "batch", "graph")) -> tuple[Timing, dict[str, Timing]]:
    """Time ``workload.run()`` on the GPU: cold samples (headline), batch and graph samples (extra)."""
    cp = workload.xp
    ctx = _context(cp)
    stream = ctx.stream
    cp.cuda.Device().synchronize()  # setup ran on the default stream; ours does not wait for it
    syncs = bool(getattr(workload, "synchronizes", False))
    notes: list[str] = []
    if syncs:
        notes.append("workload synchronises internally: no blocking kernel, no batch mode")
    copies: list[Any] = [workload]
    extra: dict[str, Timing] = {}
    try:
        with stream:
            warm = 0
            t0 = time.perf_counter()
            while warm < policy.warmup or time.perf_counter() - t0 < policy.warmup_time_s:
                workload.run()
                warm += 1
            stream.synchronize()
            cold = _cold(workload, ctx, policy, counters, use_blocker=not syncs, warm=warm, notes=notes)
            med = float(cold.summary.median or math.nan)
            want_batch = "batch" in modes and not syncs
            want_graph = "graph" in modes and not syncs
            rot_note = ""
            if want_batch or want_graph:
                copies, rot_note = _make_copies(workload, ctx, quick)
            n = batch_size(med)
            if want_batch:
                b = _batch(copies, ctx, mode_policy(policy, 0.25), n, med)
                if rot_note:
                    b.notes.append(rot_note)
                extra["batch"] = b
            if want_graph:
                gnotes: list[str] = []
                g = _graph(copies, ctx, mode_policy(policy, 0.25), med, gnotes)
                if g is not None:
                    if rot_note:
                        g.notes.append(rot_note)
                    extra["graph"] = g
                else:
                    cold.notes.extend(gnotes)
            if counters is not None and hasattr(counters, "counter_window_s"):
                need = counters.counter_window_s()
                if need > 0 and quick:
                    counters.mark_window("not measured (quick run)")
                elif need > 0:
                    work = type(workload).work(workload.p).to_dict()
                    _steady_window(copies if not syncs else [workload], ctx, counters, need,
                                   n if not syncs else 1, work)
    finally:
        stream.synchronize()
        for c in copies[1:]:
            _teardown(c)
    return cold, extra

"""Measured ceilings of this machine (``accelbench calibrate``), stored with the machine fingerprint.

GPU: device-to-device copy bandwidth (bytes read + written), host-to-device and device-to-host bandwidth
(pinned memory), GEMM throughput per math mode (fp32, TF32, fp16, bf16; cublasGemmEx, fp32 accumulate).
CPU: STREAM-like copy and triad bandwidth through NumPy, GEMM throughput (fp32, fp64) through NumPy's BLAS.
Theoretical figures come from the device properties where they give them (2 x memory clock x bus width).

Peaks live in one JSON file (default ``~/.cache/accelbench/peaks.json``; ``ACCELBENCH_PEAKS`` or
``--file`` override), keyed by a hash of the fingerprint fields that decide performance (GPU UUID, name,
driver, CUDA runtime, CPU model and cores, NumPy/CuPy versions, BLAS), so peaks measured on one machine
are never applied to another. The runner attaches them to a run with::

    env = environment.fingerprint()
    env["peaks"] = calibrate.peaks_for(env)      # {} when this machine was never calibrated

and reports read ``environment["peaks"]["gpu"|"cpu"]`` (keys ending in ``_gbps`` / ``_gflops``), and
``percent_of_peak`` gives a case's share of the measured and the theoretical ceiling.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BackendUnavailable, UsageError
from .results import atomic_write_text, now_iso

FORMAT = 1
ENV_VAR = "ACCELBENCH_PEAKS"


def default_path() -> Path:
    p = os.environ.get(ENV_VAR)
    if p:
        return Path(p)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "accelbench" / "peaks.json"


# ---------------------------------------------------------------- fingerprint


def machine_key(env: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(hash, the fields hashed) of what decides this machine's ceilings, from environment.fingerprint()."""
    g = env.get("gpu") or {}
    cpu = env.get("cpu") or {}
    pk = env.get("packages") or {}
    blas = [{k: b.get(k) for k in ("internal_api", "version", "num_threads")} for b in env.get("blas") or []
            if isinstance(b, dict) and "error" not in b]
    fields = {
        "gpu_uuid": g.get("uuid") if g.get("available") else None,
        "gpu_name": g.get("name") if g.get("available") else None,
        "driver": g.get("driver_version"),
        "cuda_runtime": g.get("cuda_runtime_version"),
        "cupy": g.get("cupy_version"),
        "cpu_model": cpu.get("model"),
        "cpu_logical_cores": cpu.get("logical_cores"),
        "cpu_affinity_cores": cpu.get("affinity_cores"),
        "numpy": pk.get("numpy"),
        "blas": blas,
    }
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return h, fields


def load_file(path: Path | None = None) -> dict[str, Any]:
    p = path or default_path()
    if not p.exists():
        return {"format": FORMAT, "machines": {}}
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{p}: cannot read the peaks file: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("machines"), dict):
        raise UsageError(f"{p}: not an accelbench peaks file")
    return d


def save(entry: dict[str, Any], key: str, path: Path | None = None) -> Path:
    p = path or default_path()
    d = load_file(p)
    d["format"] = FORMAT
    d["machines"][key] = entry
    try:
        atomic_write_text(p, json.dumps(d, indent=2) + "\n")
    except OSError as e:
        raise UsageError(f"{p}: cannot write the peaks file: {e.strerror}") from None
    return p


def peaks_for(env: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """Measured peaks of the machine ``env`` describes, for ``environment["peaks"]``; {} when none stored
    (or the file is unreadable: peaks are information, never a reason to fail a run)."""
    try:
        d = load_file(path)
    except UsageError:
        return {}
    key, _ = machine_key(env)
    e = d["machines"].get(key)
    if not isinstance(e, dict):
        return {}
    out: dict[str, Any] = {b: dict(e[b]) for b in ("gpu", "cpu") if isinstance(e.get(b), dict)}
    out["calibrated_at"] = e.get("calibrated_at")
    out["machine_key"] = key
    out["file"] = str(path or default_path())
    return out


# ---------------------------------------------------------------- measuring


def _median_time(fn: Callable[[], Any], sync: Callable[[], float], reps: int) -> float:
    """Median seconds of ``reps`` timed calls: ``sync`` returns the seconds of the last call (events)."""
    ts = []
    for _ in range(reps):
        fn()
        ts.append(sync())
    return float(np.median(ts))


def gpu_peaks(quick: bool = False, copy_bytes: int | None = None, gemm_n: int | None = None) -> dict[str, Any]:
    """Measure the GPU's ceilings with CuPy (events on a non-blocking stream)."""
    from . import backends

    be = backends.gpu()
    if not be.available:
        raise BackendUnavailable(f"backend gpu is unavailable: {be.reason}")
    cp = be.xp
    rt = cp.cuda.runtime
    stream = cp.cuda.Stream(non_blocking=True)
    ev0, ev1 = cp.cuda.Event(), cp.cuda.Event()
    reps = 5 if quick else 20
    free, _ = rt.memGetInfo()
    nbytes = copy_bytes or int(min(2**30 if not quick else 2**28, free // 8))
    out: dict[str, Any] = {"provenance": "measured", "device": be.device_name}

    def timed(fn: Callable[[], Any]) -> float:
        def run() -> None:
            ev0.record(stream)
            fn()
            ev1.record(stream)

        def sync() -> float:
            ev1.synchronize()
            return cp.cuda.get_elapsed_time(ev0, ev1) * 1e-3

        for _ in range(3):
            run()
        sync()
        return _median_time(run, sync, reps)

    with stream:
        src = cp.random.random(nbytes // 8)  # not zeros: a copy moves real data
        dst = cp.empty_like(src)
        t = timed(lambda: rt.memcpyAsync(dst.data.ptr, src.data.ptr, src.nbytes, rt.memcpyDeviceToDevice,
                                          stream.ptr))
        out["d2d_copy_gbps"] = 2 * src.nbytes / t / 1e9  # bytes read + bytes written
        out["d2d_copy_bytes"] = int(src.nbytes)
        hb = min(src.nbytes, 2**28)
        pinned = cp.cuda.alloc_pinned_memory(hb)
        host = np.frombuffer(pinned, dtype=np.uint8, count=hb)
        host[:] = np.random.default_rng(0).integers(0, 255, size=hb, dtype=np.uint8)
        t = timed(lambda: rt.memcpyAsync(src.data.ptr, host.ctypes.data, hb, rt.memcpyHostToDevice, stream.ptr))
        out["h2d_gb_per_s"] = hb / t / 1e9  # PCIe/NVLink-C2C; named so reports do not take it for DRAM
        t = timed(lambda: rt.memcpyAsync(host.ctypes.data, src.data.ptr, hb, rt.memcpyDeviceToHost, stream.ptr))
        out["d2h_gb_per_s"] = hb / t / 1e9
        out.update(_gpu_gemms(cp, stream, timed, gemm_n or (4096 if quick else 8192)))
    stream.synchronize()
    be.free_memory_pools()
    return out


# cuBLAS / CUDA enums (cublas_api.h, library_types.h)
_CUDA_R_32F, _CUDA_R_16F, _CUDA_R_16BF = 0, 2, 14
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32 = 68, 77
_GEMM_DEFAULT = -1


def _gpu_gemms(cp: Any, stream: Any, timed: Callable[[Callable[[], Any]], float], n: int) -> dict[str, Any]:
    """GEMM throughput per math mode through cublasGemmEx (what CuPy's matmul calls), n x n x n."""
    from cupy_backends.cuda.libs import cublas

    handle = cp.cuda.device.get_cublas_handle()
    one = np.array(1.0, dtype=np.float32)
    zero = np.array(0.0, dtype=np.float32)
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {"gemm_n": n}
    modes = {"fp32": (np.float32, _CUDA_R_32F, _COMPUTE_32F), "tf32": (np.float32, _CUDA_R_32F, _COMPUTE_32F_FAST_TF32),
             "fp16": (np.float16, _CUDA_R_16F, _COMPUTE_32F), "bf16": (None, _CUDA_R_16BF, _COMPUTE_32F)}
    for name, (dt, ctype, compute) in modes.items():
        try:
            host = rng.uniform(-1, 1, size=(n, n)).astype(np.float32)
            if dt is None:  # bfloat16: the top 16 bits of float32 (CuPy has no bf16 dtype)
                bits = (host.view(np.uint32) >> 16).astype(np.uint16)
                a = cp.asarray(bits)
            else:
                a = cp.asarray(host.astype(dt))
            b = a.copy()
            c = cp.empty_like(a)

            def gemm(a: Any = a, b: Any = b, c: Any = c, ctype: int = ctype, compute: int = compute) -> None:
                cublas.gemmEx(handle, 0, 0, n, n, n, one.ctypes.data, a.data.ptr, ctype, n, b.data.ptr, ctype, n,
                              zero.ctypes.data, c.data.ptr, ctype, n, compute, _GEMM_DEFAULT)

            t = timed(gemm)
            out[f"gemm_{name}_gflops"] = 2.0 * n**3 / t / 1e9
        except Exception as e:  # one unsupported mode does not lose the others
            out[f"gemm_{name}_error"] = f"{type(e).__name__}: {e}"
    return out


def cpu_peaks(quick: bool = False, nbytes: int | None = None, gemm_n: int | None = None) -> dict[str, Any]:
    """STREAM-like bandwidth (copy: 2 x bytes; triad a = b + s*c counted as 3 arrays, NumPy's two passes)
    and GEMM throughput through NumPy, medians of repeated runs."""
    nb = nbytes or (2**25 if quick else 2**28)
    n_el = nb // 8
    rng = np.random.default_rng(0)
    b = rng.random(n_el)
    c = rng.random(n_el)
    a = np.empty_like(b)
    reps = 3 if quick else 7

    def best(fn: Callable[[], Any]) -> float:
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    out: dict[str, Any] = {"provenance": "measured"}
    def copy() -> None:
        np.copyto(a, b)

    out["stream_copy_gbps"] = 2 * a.nbytes / best(copy) / 1e9

    def triad() -> None:
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)

    out["stream_triad_gbps"] = 3 * a.nbytes / best(triad) / 1e9
    out["stream_bytes"] = int(a.nbytes)
    n = gemm_n or (1024 if quick else 2048)  # 512 is too small to reach the BLAS peak
    for name, dt in (("fp32", np.float32), ("fp64", np.float64)):
        x = rng.uniform(-1, 1, size=(n, n)).astype(dt)
        y = rng.uniform(-1, 1, size=(n, n)).astype(dt)
        z = np.empty_like(x)
        def mm(x: np.ndarray = x, y: np.ndarray = y, z: np.ndarray = z) -> None:
            np.matmul(x, y, out=z)

        out[f"gemm_{name}_gflops"] = 2.0 * n**3 / best(mm) / 1e9
    out["gemm_n"] = n
    return out


def theoretical(env: dict[str, Any]) -> dict[str, Any]:
    g = env.get("gpu") or {}
    out: dict[str, Any] = {}
    if g.get("theoretical_bandwidth_gbps"):
        out["gpu_dram_gbps"] = g["theoretical_bandwidth_gbps"]
    return out


def calibrate(backends: list[str] | None = None, quick: bool = False, path: Path | None = None,
              env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure and store this machine's peaks. Returns the stored entry (with ``file`` and ``key``)."""
    from . import environment

    want = backends or ["gpu", "cpu"]
    env = env or environment.fingerprint(with_gpu="gpu" in want)
    key, fields = machine_key(env)
    entry: dict[str, Any] = {"calibrated_at": now_iso(), "fingerprint": fields, "quick": quick,
                             "theoretical": theoretical(env)}
    old = load_file(path)["machines"].get(key) or {}
    for b in ("gpu", "cpu"):  # keep the other backend's earlier peaks when calibrating one
        if b not in want and isinstance(old.get(b), dict):
            entry[b] = old[b]
    if "gpu" in want:
        g = env.get("gpu") or {}
        if g.get("available"):
            entry["gpu"] = gpu_peaks(quick=quick)
            th = entry["theoretical"].get("gpu_dram_gbps")
            if th:
                entry["gpu"]["d2d_copy_percent_of_theoretical"] = 100 * entry["gpu"]["d2d_copy_gbps"] / th
        elif want == ["gpu"]:
            raise BackendUnavailable(f"backend gpu is unavailable: {g.get('reason')}")
        else:
            entry["gpu_skipped"] = f"GPU unavailable: {g.get('reason')}"
    if "cpu" in want:
        entry["cpu"] = cpu_peaks(quick=quick)
    p = save(entry, key, path)
    return {**entry, "file": str(p), "key": key}


# ---------------------------------------------------------------- using peaks


def percent_of_peak(case: dict[str, Any], peaks: dict[str, Any], env: dict[str, Any] | None = None
                    ) -> dict[str, float]:
    """A case's throughput as a percentage of the measured ceiling (and of the theoretical one where the
    device properties give it). ``case`` is a CaseRecord dict; picks the GEMM ceiling of the case's math
    mode (fp16 -> gemm_fp16, float32 + math=tf32 -> gemm_tf32, ...) and the bandwidth ceiling (d2d copy on
    the GPU, STREAM triad/copy on the CPU)."""
    be = str(case.get("backend"))
    tp = case.get("throughput") or {}
    pk = peaks.get(be) if isinstance(peaks.get(be), dict) else None
    out: dict[str, float] = {}
    if pk is None:
        return out
    gbps = tp.get("gbps")
    if gbps:
        ceil = pk.get("d2d_copy_gbps") if be == "gpu" else max(pk.get("stream_triad_gbps") or 0,
                                                                 pk.get("stream_copy_gbps") or 0) or None
        if ceil:
            out["bw_percent_of_measured"] = 100.0 * gbps / ceil
        th = ((env or {}).get("gpu") or {}).get("theoretical_bandwidth_gbps") if be == "gpu" else None
        if th:
            out["bw_percent_of_theoretical"] = 100.0 * gbps / th
    gflops = tp.get("gflops")
    if gflops:
        params = case.get("params") or {}
        dt = str(params.get("dtype", "float32"))
        mode = {"float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "float32": "fp32"}.get(dt, dt)
        if params.get("math") == "tf32":
            mode = "tf32"
        ceil = pk.get(f"gemm_{mode}_gflops")
        if ceil:
            out["flops_percent_of_measured"] = 100.0 * gflops / ceil
    return out

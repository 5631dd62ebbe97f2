"""Every unit and number format of the reporters, once: times, rates, ratios, changes, parameters and the
machine summary. Terminal, Markdown, HTML, compare's one-liners and ``accelbench info`` all take their
text from here, so one value reads the same wherever it is shown.

Conventions: a missing or non-finite value is ``DASH``; times are seconds in, "1.5 µs" out (3 significant
digits, the unit that makes the value read 1..1000); rates carry an SI prefix ("953 MFLOP/s"); a speedup
or ratio is "3.2×"; a change is the signed percentage of a ratio ("+5.0%").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from statistics import median
from typing import Any

DASH = "–"
TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))
SI_PREFIXES = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))
GIB = 2**30


def finite(v: Any) -> bool:
    """A real number that is not NaN or infinite (bools are not numbers here)."""
    if isinstance(v, bool) or v is None:
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def time_unit(values: Iterable[float | None]) -> tuple[str, float]:
    """The unit (name, seconds) that makes the typical (median) magnitude of ``values`` read 1..1000."""
    v = [abs(float(x)) for x in values if x is not None and finite(x) and x != 0]
    return _unit_of(median(v)) if v else ("s", 1.0)


def _unit_of(m: float) -> tuple[str, float]:
    return next(((u, s) for u, s in TIME_UNITS if m >= s), TIME_UNITS[-1])


def fmt_time(s: float | None) -> str:
    """Seconds as "1.5 µs" (3 significant digits)."""
    if not finite(s):
        return DASH
    assert s is not None
    # time_unit([s]) without its list and median (a 10k-case table formats 30,000 times)
    unit, scale = _unit_of(abs(float(s))) if s != 0 else ("s", 1.0)
    return f"{s / scale:.3g} {unit}"


def fmt_rate(v: float | None, unit: str = "") -> str:
    """A rate with an SI prefix and 3 significant digits: (2.8e8, "FLOP/s") -> "280 MFLOP/s"."""
    if not finite(v):
        return DASH
    assert v is not None
    for prefix, scale in SI_PREFIXES:
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def fmt_num(v: float | None, digits: int = 3) -> str:
    """A plain number: thousands separated from 100 up, scientific beyond 1e6 or below 1e-3."""
    if not finite(v):
        return DASH
    assert v is not None
    a = abs(v)
    if a != 0 and (a >= 1e6 or a < 1e-3):
        return f"{v:.{digits}g}"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_x(v: float | None) -> str:
    """A speedup or ratio: "3.2×"."""
    return f"{v:.3g}×" if finite(v) else DASH


def fmt_pct(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: 0.217 -> "21.7%"."""
    return f"{fraction * 100:.{digits}f}%" if finite(fraction) and fraction is not None else DASH


def fmt_change(r: float | None) -> str:
    """A ratio new/base as the signed change: 1.05 -> "+5.0%"; an infinite ratio is "inf"."""
    if r is None or not math.isfinite(r):
        return "inf" if r is not None and r > 0 else DASH
    return f"{(r - 1) * 100:+.1f}%"


def fmt_range(lo: float | None, hi: float | None, fmt: Any = fmt_num, sep: str = " – ") -> str:
    """An interval in ``fmt`` ("1.2 ms – 1.4 ms"), or DASH when an end is missing or infinite."""
    if not (finite(lo) and finite(hi)):
        return DASH
    return f"{fmt(lo)}{sep}{fmt(hi)}"


def param_text(v: Any) -> str:
    """A parameter value as a case name shows it: JSON for mappings and lists, str() otherwise."""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def params_text(params: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """``k=v`` pairs of ``params`` (of ``keys``, in their order, when given), space separated."""
    return " ".join(f"{k}={param_text(params.get(k))}" for k in (params if keys is None else keys))


# ---------------------------------------------------------------- the machine


def _gib(n: Any, digits: int = 1) -> str:
    return f"{float(n) / GIB:.{digits}f} GiB"


def gpu_facts(g: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not g:
        return [("GPU", "not recorded")]
    if not g.get("available"):
        return [("GPU", f"none usable: {g.get('reason', 'unknown')}")]
    mem = f", {_gib(g['memory_total_bytes'])}" if finite(g.get("memory_total_bytes")) else ""
    out = [("GPU", f"{g.get('name')} (cc {g.get('compute_capability')}, {g.get('multiprocessors')} SMs{mem})"),
           ("driver / CUDA", f"{g.get('driver_version', '?')} / runtime {g.get('cuda_runtime_version')}, "
                             f"driver API {g.get('cuda_driver_version')}")]
    if g.get("cupy_version"):
        out.append(("CuPy", str(g["cupy_version"])))
    if g.get("uuid"):
        out.append(("GPU UUID", str(g["uuid"])))
    return out


def machine_facts(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The machine of a fingerprint (environment.fingerprint(), a run's ``environment``) as (what, value)
    rows: GPU, CPU, BLAS, memory, OS, Python, packages, thread settings. ``accelbench info`` and the HTML
    report both show exactly these."""
    facts = gpu_facts(env.get("gpu") or {})
    cpu = env.get("cpu") or {}
    if cpu:
        facts.append(("CPU", f"{cpu.get('model')} ({cpu.get('physical_cores')} cores, "
                             f"{cpu.get('logical_cores')} threads, {cpu.get('arch')})"))
    for b in env.get("blas") or []:
        facts.append(("BLAS", str(b["error"]) if "error" in b else
                      f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads, "
                      f"{b.get('threading_layer')})"))
    if finite(env.get("memory_total_bytes")):
        avail = (env.get("volatile") or {}).get("memory_available_bytes")
        facts.append(("memory", _gib(env["memory_total_bytes"])
                      + (f" ({_gib(avail)} available)" if finite(avail) else "")))
    if env.get("platform"):
        facts.append(("OS", str(env["platform"])))
    py = env.get("python") or {}
    if py:
        where = f", {py['executable']}" if py.get("executable") else ""
        facts.append(("Python", f"{py.get('version')} ({py.get('implementation')}{where})"))
    if env.get("packages"):
        facts.append(("packages", ", ".join(f"{k} {v}" for k, v in env["packages"].items())))
    if env.get("threads_env"):
        facts.append(("thread settings", ", ".join(f"{k}={v}" for k, v in env["threads_env"].items())))
    return facts

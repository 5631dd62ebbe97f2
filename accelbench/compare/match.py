"""compare's matching: per-case thresholds and the machine fingerprint (which differences between two
runs' environments matter for speed)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..results import CaseCore, CaseRecord

# ---------------------------------------------------------------- matching


def case_threshold(rec: CaseRecord | CaseCore, default: float) -> float:
    th = rec.thresholds or {}
    v = th.get("regression", th.get(rec.workload))
    return float(v) if v is not None else default


# ---------------------------------------------------------------- machine fingerprint


# Keys whose values change from moment to moment or name a location rather than a capability.
VOLATILE_KEYS = frozenset({
    "volatile", "hostname", "node", "executable", "filepath", "uuid", "nvml", "pci_bus_id", "datetime",
    "hz_actual", "hz_actual_friendly", "pid", "started_at", "load_avg",
})
VOLATILE_RE = re.compile(r"(^|_)(free|available|used|temperature|temp|util|utilization|uptime|timestamp|"
                         r"current)(_|$)")


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            ks = str(k)
            if ks in VOLATILE_KEYS or VOLATILE_RE.search(ks):
                continue
            out.update(_flatten(v, f"{prefix}.{ks}" if prefix else ks))
    elif isinstance(obj, list) and obj and all(isinstance(v, Mapping) for v in obj):
        seen: dict[str, int] = {}
        for i, v in enumerate(obj):
            ident = _library_identity(v)
            if ident is None:
                out.update(_flatten(v, f"{prefix}[{i}]"))
                continue
            seen[ident] = seen.get(ident, 0) + 1
            out.update(_flatten(v, f"{prefix}[{ident}{'' if seen[ident] == 1 else f'#{seen[ident]}'}]"))
    else:
        out[prefix] = obj
    return out


def _library_identity(item: Mapping[str, Any]) -> str | None:
    """A loaded library's identity in a fingerprint list (threadpoolctl's BLAS entries): its internal API
    and file name. threadpoolctl lists NumPy's and SciPy's OpenBLAS in whatever order they were loaded, so
    matching by list position compared one library's version with the other's. The directory is left out:
    it names where the environment lives, not what runs."""
    api = item.get("internal_api")
    if not api:
        return None
    return f"{api}:{Path(str(item.get('filepath') or '')).name}"


@dataclass(frozen=True)
class EnvDiff:
    key: str
    base: Any
    new: Any


def machine_diff(base_env: Mapping[str, Any], new_env: Mapping[str, Any]) -> list[EnvDiff]:
    """Differences between two fingerprints that matter for speed (GPU, driver, CUDA, CPU, BLAS, library
    versions, thread settings); volatile fields (clocks, free memory, load, temperatures, host names,
    paths) never count."""
    a, b = _flatten(base_env), _flatten(new_env)
    return [EnvDiff(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def machine_fingerprint(env: Mapping[str, Any]) -> str:
    """A short hash of what :func:`machine_diff` compares: two fingerprints hash alike exactly when
    machine_diff finds no difference between them (keys holding None count as absent, as there)."""
    flat = {k: v for k, v in _flatten(env).items() if v is not None}
    text = json.dumps(flat, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

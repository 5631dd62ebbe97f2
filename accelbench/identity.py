"""Case identity: the one definition of which case a record measures.

A case is a workload at one point of its parameter axes, in one suite, on one backend. ``CaseKey`` holds
those parts as a small immutable value; everything that matches, pairs or names cases derives from it:

  id          ``suite/workload[label]/{"param":value,...}@backend`` — stable across runs (no run id); the
              parameters are canonical JSON (sorted keys, no spaces), so the same point always gives the
              same text. This is the ``case_id`` every record has carried since schema version 1.
  pair_key    the id without ``@backend``: pairs a case's GPU and CPU records within one run.
  match_key   the id with some parameters left out: compare's ``--ignore-param`` A/B of one knob.

Keys are built once, when a suite is expanded (``suite.Case.key``), and stored in each record's fields;
records written before the fields existed are parsed once on read (``CaseKey.parse``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_ID_RE = re.compile(
    r"^(?P<suite>[^/]*)/(?P<workload>[^/\[]+)(?:\[(?P<label>[^\]]*)\])?/(?P<params>.*)@(?P<backend>[A-Za-z0-9_*]+)$")


# json.dumps(..., sort_keys=True, separators=(",", ":"), default=str) builds this encoder on every call:
# once, since every record read builds its key (200k of them in a 100k-case gate)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_params(params: Mapping[str, Any]) -> str:
    """The parameters as canonical JSON: the text identity is built from."""
    return _CANONICAL.encode(dict(params))


def _head(workload: str, label: str | None) -> str:
    return f"{workload}[{label}]" if label else workload


def _id_text(suite: str, workload: str, label: str | None, params_json: str, backend: str) -> str:
    """The one layout of an id: ``suite/workload[label]/{params}@backend``."""
    return f"{suite}/{_head(workload, label)}/{params_json}@{backend}"


def case_id(suite: str, workload: str, label: str | None, params: Mapping[str, Any], backend: str) -> str:
    """``CaseKey.of(...).id`` without building the key: the text a 100k-case compare matches on."""
    return _id_text(suite, workload, label, canonical_params(params), backend)


@dataclass(frozen=True)
class CaseKey:
    suite: str
    workload: str
    label: str | None
    params_json: str  # canonical_params(params): hashable, and the exact text of the id
    backend: str

    @classmethod
    def of(cls, suite: str, workload: str, label: str | None, params: Mapping[str, Any], backend: str) -> CaseKey:
        return cls(suite, workload, label or None, canonical_params(params), backend)

    @classmethod
    def parse(cls, case_id: str) -> CaseKey:
        """The key of an id written by any accelbench version; ValueError when it is not one."""
        m = _ID_RE.match(case_id)
        if not m:
            raise ValueError(f"not a case id: {case_id!r}")
        try:
            params = json.loads(m.group("params"))
        except json.JSONDecodeError:
            raise ValueError(f"not a case id (parameters are not JSON): {case_id!r}") from None
        if not isinstance(params, dict):
            raise ValueError(f"not a case id (parameters are not a mapping): {case_id!r}")
        return cls.of(m.group("suite"), m.group("workload"), m.group("label") or None, params, m.group("backend"))

    @property
    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.params_json)
        return out

    @property
    def head(self) -> str:
        """``workload[label]``: the entry part of the id."""
        return _head(self.workload, self.label)

    @property
    def pair_key(self) -> str:
        """The id without the backend: a case's GPU and CPU records share it."""
        return f"{self.suite}/{self.head}/{self.params_json}"

    @property
    def id(self) -> str:
        return _id_text(self.suite, self.workload, self.label, self.params_json, self.backend)

    def match_key(self, ignore_params: Iterable[str] = ()) -> str:
        """The id with the named parameters left out (compare matches on it)."""
        ign = set(ignore_params)
        if not ign:
            return self.id
        kept = {k: v for k, v in self.params.items() if k not in ign}
        return _id_text(self.suite, self.workload, self.label, canonical_params(kept), self.backend)

    def with_backend(self, backend: str) -> CaseKey:
        return CaseKey(self.suite, self.workload, self.label, self.params_json, backend)

    def __str__(self) -> str:
        return self.id

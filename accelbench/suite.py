"""YAML suite -> validated Suite -> expanded Cases.

Loading is safe and strict:
- the YAML is composed into nodes with PyYAML's SafeLoader and converted by hand, so every value keeps
  its file:line:col, duplicate keys are errors, no tag can construct a Python object, and aliases are
  counted as they expand (an "alias bomb" is refused long before it costs memory);
- the structure is validated by pydantic models with extra="forbid"; each pydantic error is mapped back
  to the YAML node it came from;
- each entry's parameters are validated by its workload's own ``Params`` model, axis value by axis value,
  and the expansion is bounded (``max_cases``) before anything is built.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import SuiteError
from .identity import CaseKey
from .measure.timing import TimingPolicy
from .report.format import params_text
from .workloads.base import Params, Workload, load_all

MAX_FILE_BYTES = 1 << 20  # a suite is a config file, not a data set
MAX_NODES = 100_000  # after alias expansion
MAX_DEPTH = 64  # nesting of mappings and sequences
HARD_MAX_CASES = 100_000
DEFAULT_MAX_CASES = 2_000

Path_ = tuple[Any, ...]  # a location inside the document: keys and indices


# ---------------------------------------------------------------- YAML with positions


class _Doc:
    """Plain Python data from YAML plus the position (line, col; 1-based) of every node by path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.pos: dict[Path_, tuple[int, int]] = {}
        self.key_pos: dict[Path_, tuple[int, int]] = {}
        self.nodes = 0

    def where(self, path: Sequence[Any], key: bool = False) -> tuple[int | None, int | None]:
        """Position of the deepest known node along ``path`` (the key itself when ``key``)."""
        p = tuple(path)
        while True:
            if key and p in self.key_pos:
                return self.key_pos[p]
            if p in self.pos:
                return self.pos[p]
            if not p:
                return (None, None)
            p = p[:-1]

    def error(self, msg: str, path: Sequence[Any] = (), key: bool = False) -> SuiteError:
        line, col = self.where(path, key)
        return SuiteError(msg, self.file, line, col)


_STD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}


def _convert(node: yaml.Node, doc: _Doc, loader: yaml.SafeLoader, path: Path_, depth: int) -> Any:
    doc.nodes += 1
    if doc.nodes > MAX_NODES:
        raise doc.error(
            f"the document expands to more than {MAX_NODES} values (aliases included): refused "
            "(an alias bomb, or a suite far larger than any real one)", path)
    if depth > MAX_DEPTH:
        raise doc.error(f"nesting deeper than {MAX_DEPTH} levels", path)
    doc.pos.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if node.tag not in _STD_TAGS:
        raise doc.error(f"YAML tag {node.tag!r} is not allowed (suites hold plain data only)", path)
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node)
        except yaml.YAMLError as e:
            raise doc.error(f"bad value: {getattr(e, 'problem', e)}", path) from None
    if isinstance(node, yaml.SequenceNode):
        return [_convert(n, doc, loader, path + (i,), depth + 1) for i, n in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise doc.error("YAML merge keys (<<) are not supported; write the keys out", path)
            if not isinstance(knode, yaml.ScalarNode):
                raise SuiteError("mapping keys must be plain scalars", doc.file, knode.start_mark.line + 1,
                                 knode.start_mark.column + 1)
            key = _convert(knode, doc, loader, path + ("<key>",), depth + 1)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SuiteError(f"mapping key {key!r} must be a string", doc.file,
                                 knode.start_mark.line + 1, knode.start_mark.column + 1)
            if key in out:
                raise SuiteError(f"duplicate key {key!r}", doc.file, knode.start_mark.line + 1,
                                 knode.start_mark.column + 1)
            doc.key_pos[path + (key,)] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            out[key] = _convert(vnode, doc, loader, path + (key,), depth + 1)
        return out
    raise doc.error(f"unsupported YAML node {type(node).__name__}", path)  # pragma: no cover


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts nesting as it descends. PyYAML composes recursively, two or three
    Python frames a level, so a document nested ~500 deep blew the interpreter's recursion limit (a
    RecursionError traceback) before any check on the composed nodes could run; this refuses at
    MAX_DEPTH + 1, where the deep node starts."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1 and not self.check_event(yaml.AliasEvent):
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, file: str) -> tuple[Any, _Doc]:
    doc = _Doc(file)
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
    except _TooDeep as e:
        raise SuiteError(f"nesting deeper than {MAX_DEPTH} levels", file, e.mark.line + 1, e.mark.column + 1) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        raise SuiteError(f"invalid YAML: {problem}", file, mark.line + 1 if mark else None,
                         mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise SuiteError(f"invalid YAML: {e}", file) from None
    finally:
        loader.dispose()
    if node is None:
        raise SuiteError("the suite is empty", file, 1, 1)
    return _convert(node, doc, yaml.SafeLoader(""), (), 0), doc


# ---------------------------------------------------------------- structure


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Backend = Literal["gpu", "cpu"]


class TimingSpec(_Strict):
    """Timing knobs a suite may set (seconds). Unset ones take TimingPolicy's defaults."""

    warmup: int | None = Field(None, ge=0, le=10_000)
    warmup_time_s: float | None = Field(None, ge=0, le=600)
    min_samples: int | None = Field(None, ge=1, le=1_000_000)
    max_samples: int | None = Field(None, ge=1, le=1_000_000)
    min_time_s: float | None = Field(None, ge=0, le=3600)
    max_time_s: float | None = Field(None, gt=0, le=3600)
    target_rel_ci: float | None = Field(None, gt=0, le=1)
    min_sample_time_s: float | None = Field(None, gt=0, le=60)
    timeout_s: float | None = Field(None, gt=0, le=86_400)


class Defaults(_Strict):
    backends: list[Backend] = Field(default_factory=lambda: ["gpu", "cpu"], min_length=1)  # type: ignore[arg-type]
    seed: int = Field(0, ge=0, le=2**32 - 1)
    params: dict[str, Any] = Field(default_factory=dict)
    timing: TimingSpec = Field(default_factory=TimingSpec)  # type: ignore[arg-type]
    max_cases: int = Field(DEFAULT_MAX_CASES, ge=1, le=HARD_MAX_CASES)


class Entry(_Strict):
    workload: str = Field(min_length=1)
    label: str | None = Field(None, min_length=1, max_length=80)
    params: dict[str, Any] = Field(default_factory=dict)
    backends: list[Backend] | None = Field(None, min_length=1)
    timing: TimingSpec | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    threshold: float | None = Field(None, gt=0, le=10)


class SuiteFile(_Strict):
    suite: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)  # type: ignore[arg-type]
    thresholds: dict[str, float] = Field(default_factory=dict)
    models: dict[str, Any] = Field(default_factory=dict)
    benchmarks: list[Entry] = Field(min_length=1)


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One workload at one point of its axes; runs on each of ``backends``."""

    suite: str
    workload: str
    cls: type[Workload]
    params: Params
    label: str | None
    backends: tuple[str, ...]
    timing: TimingPolicy
    seed: int
    threshold: float | None
    location: str  # file:line of the entry, for messages
    entry_index: int

    @property
    def params_dict(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")

    @property
    def name(self) -> str:
        ps = params_text(self.params_dict)
        head = f"{self.workload}[{self.label}]" if self.label else self.workload
        return f"{head} {ps}".strip()

    def key(self, backend: str) -> CaseKey:
        """This case's identity on ``backend`` (accelbench.identity)."""
        return CaseKey.of(self.suite, self.workload, self.label, self.params_dict, backend)

    def case_id(self, backend: str) -> str:
        """Stable identity across runs: suite, workload, label, params, backend."""
        return self.key(backend).id

    def definition_hash(self, timing: TimingPolicy | None = None) -> str:
        """Changes when what the case computes or how it is timed changes (compare flags it). ``timing``:
        the policy actually used (e.g. the --quick one), when it differs from the suite's."""
        blob = json.dumps(
            {
                "workload": self.workload,
                "params": self.params_dict,
                "definition": self.cls.definition(self.params),
                "timing": (timing or self.timing).to_dict(),
                "seed": self.seed,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Suite:
    name: str
    description: str
    file: str
    text: str
    sha256: str
    cases: list[Case]
    thresholds: dict[str, float] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)

    def select(self, backends: Iterable[str] | None = None, text: str | None = None) -> list[tuple[Case, str]]:
        """(case, backend) pairs in run order, filtered by backend and a case-insensitive substring of
        the case's name or id."""
        want = set(backends) if backends else None
        out = []
        needle = text.lower() if text else None
        for c in self.cases:
            for b in c.backends:
                if want is not None and b not in want:
                    continue
                if needle and needle not in c.name.lower() and needle not in f"{c.name} @{b}".lower():
                    continue
                out.append((c, b))
        return out


def _is_container_type(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (list, tuple, dict, set, frozenset):
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_is_container_type(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is typing.Annotated:
        return _is_container_type(typing.get_args(tp)[0])
    return tp in (list, tuple, dict)


def _pydantic_msg(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg


def _structure_error(doc: _Doc, e: ValidationError, prefix: Path_ = ()) -> SuiteError:
    err = e.errors()[0]
    loc = prefix + tuple(err["loc"])
    msg = _pydantic_msg(err)
    dotted = ".".join(str(x) for x in loc)
    if err.get("type") == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        extra = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return doc.error(f"{dotted}: unknown key{extra}", loc, key=True)
    if err.get("type") == "missing":
        return doc.error(f"{dotted}: required key is missing", loc[:-1])
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    return doc.error(f"{dotted}: {msg}{shown}", loc)


def _allowed_keys(loc: Path_) -> list[str]:
    model: Any = SuiteFile
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        f = getattr(model, "model_fields", {}).get(part)
        if f is None:
            return []
        ann = f.annotation
        model = None
        for cand in (ann, *typing.get_args(ann)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
            for sub in typing.get_args(cand):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    model = sub
    return list(getattr(model, "model_fields", {})) if model is not None else []


def _validate_models(raw: dict[str, Any], doc: _Doc) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        from .models.spec import ModelSpec
    except ImportError:
        raise doc.error("this accelbench has no model support (accelbench.models.spec)", ("models",)) from None
    out = {}
    for name, spec in raw.items():
        try:
            out[name] = ModelSpec.model_validate(spec)
        except ValidationError as e:
            raise _structure_error(doc, e, ("models", name)) from None
    return out


def _workload_of(entry: Entry, registry: dict[str, type[Workload]], doc: _Doc, base: Path_) -> type[Workload]:
    """The entry's workload class, its parameters checked by name ("did you mean" hints)."""
    cls = registry.get(entry.workload)
    if cls is None:
        close = difflib.get_close_matches(entry.workload, registry, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise doc.error(f"unknown workload {entry.workload!r}{hint} known: {', '.join(sorted(registry))}",
                        base + ("workload",))
    fields = cls.Params.model_fields
    for k in entry.params:
        if k not in fields:
            close = difflib.get_close_matches(str(k), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise doc.error(f"{entry.workload}: unknown parameter {k!r}{hint}; allowed: "
                            f"{', '.join(fields) or '(none)'}", base + ("params", k), key=True)
    return cls


def _axes(entry: Entry, values: dict[str, Any], fields: dict[str, Any], doc: _Doc, base: Path_
          ) -> list[tuple[str, list[Any]]]:
    """The parameters given as lists of values (a list-typed parameter's own value is not an axis)."""
    axes: list[tuple[str, list[Any]]] = []
    for k, v in values.items():
        if isinstance(v, list) and not (_is_container_type(fields[k].annotation) and
                                        not (v and all(isinstance(x, list) for x in v))):
            if not v:
                raise doc.error(f"{entry.workload}: parameter {k!r} is an empty list (an axis needs values)",
                                base + ("params", k))
            axes.append((k, v))
    return axes


def _policy(entry: Entry, sf: SuiteFile, doc: _Doc, base: Path_) -> TimingPolicy:
    """The entry's timing: the defaults' with the entry's own keys over them, checked for consistency."""
    timing_raw = sf.defaults.timing.model_dump(exclude_none=True)
    if entry.timing:
        timing_raw.update(entry.timing.model_dump(exclude_none=True))
    policy = TimingPolicy(**timing_raw)
    if policy.min_samples > policy.max_samples:
        raise doc.error(f"timing: min_samples {policy.min_samples} > max_samples {policy.max_samples}",
                        base + ("timing",))
    if policy.min_time_s > policy.max_time_s:
        raise doc.error(f"timing: min_time_s {policy.min_time_s} > max_time_s {policy.max_time_s}",
                        base + ("timing",))
    return policy


def _params_at(cls: type[Workload], point: dict[str, Any], idx: dict[str, int], ctx: dict[str, Any],
               entry: Entry, sf: SuiteFile, doc: _Doc, base: Path_) -> Params:
    """One point of the axes validated by the workload's Params; an error points at the value (the axis
    element, or the default it came from)."""
    try:
        return cls.Params.model_validate(point, context=ctx)
    except ValidationError as e:
        err = e.errors()[0]
        key = err["loc"][0] if err["loc"] else None
        path: Path_ = base + ("params",)
        if key is not None:
            path = path + (key,) + ((idx[key],) if key in idx else ())
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) or err.get("type") == "missing" else f" (got {got!r})"
        what = f"parameter {key!r}" if key is not None else "parameters"
        if key is not None and key not in entry.params and key in sf.defaults.params:
            path = ("defaults", "params", key)
        raise doc.error(f"{entry.workload}: {what}: {_pydantic_msg(err)}{shown}", path) from None
    except (ValueError, TypeError) as e:
        raise doc.error(f"{entry.workload}: {e}", base + ("params",)) from None


def _expand_entry(i: int, entry: Entry, sf: SuiteFile, models: dict[str, Any], doc: _Doc,
                  suite_dir: Path, registry: dict[str, type[Workload]], budget: int) -> list[Case]:
    base = ("benchmarks", i)
    cls = _workload_of(entry, registry, doc, base)
    fields = cls.Params.model_fields
    values: dict[str, Any] = {k: v for k, v in sf.defaults.params.items() if k in fields}
    values.update(entry.params)
    axes = _axes(entry, values, fields, doc, base)
    n = 1
    for _, vals in axes:
        n *= len(vals)
    if n > budget:
        raise doc.error(f"entry {i} ({entry.workload}) expands to {n} cases; with the entries before it "
                        f"that exceeds max_cases={sf.defaults.max_cases} (raise defaults.max_cases, at most "
                        f"{HARD_MAX_CASES}, or trim the axes)", base)
    backends = tuple(entry.backends or sf.defaults.backends)
    policy = _policy(entry, sf, doc, base)
    threshold = entry.threshold if entry.threshold is not None else sf.thresholds.get(entry.workload)
    line, _col = doc.where(base)
    location = f"{doc.file}:{line}" if line else doc.file
    ctx = {"models": models, "suite_dir": suite_dir}
    cases = []
    names = [k for k, _ in axes]
    for combo in itertools.product(*[list(enumerate(vals)) for _, vals in axes]):
        point = {**values, **{k: v for k, (_, v) in zip(names, combo, strict=True)}}
        idx = {k: j for k, (j, _) in zip(names, combo, strict=True)}
        cases.append(Case(
            suite=sf.suite, workload=cls.name, cls=cls, params=_params_at(cls, point, idx, ctx, entry, sf, doc, base),
            label=entry.label, backends=backends, timing=policy,
            seed=entry.seed if entry.seed is not None else sf.defaults.seed,
            threshold=threshold, location=location, entry_index=i,
        ))
    return cases


def parse(text: str, file: str = "<suite>", suite_dir: Path | None = None) -> Suite:
    data, doc = load_yaml(text, file)
    if not isinstance(data, dict):
        raise doc.error("a suite is a mapping with keys: suite, description, defaults, thresholds, models, "
                        "benchmarks")
    try:
        sf = SuiteFile.model_validate(data)
    except ValidationError as e:
        raise _structure_error(doc, e) from None
    registry = load_all()
    for w, t in sf.thresholds.items():
        if w not in registry:
            raise doc.error(f"thresholds: unknown workload {w!r}", ("thresholds", w), key=True)
        if not 0 < t <= 10:
            raise doc.error(f"thresholds: {w}: {t} is not a fraction in (0, 10] (0.05 means 5%)",
                            ("thresholds", w))
    models = _validate_models(sf.models, doc)
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(sf.benchmarks):
        new = _expand_entry(i, entry, sf, models, doc, suite_dir or Path("."), registry,
                            sf.defaults.max_cases - len(cases))
        for c in new:
            cid = c.case_id("*")
            if cid in seen:
                raise doc.error(f"case {c.name!r} is defined twice (also at {seen[cid]}); give one a label",
                                ("benchmarks", i))
            seen[cid] = c.location
        cases.extend(new)
    return Suite(name=sf.suite, description=sf.description, file=file, text=text,
                 sha256=hashlib.sha256(text.encode()).hexdigest(), cases=cases,
                 thresholds=dict(sf.thresholds), models=models)


def load(path: str | Path) -> Suite:
    from .safeio import FileRefused, read_text

    p = Path(path)
    if p.suffix.lower() == ".onnx":  # a model file: its inference sweep (accelbench.onnx.commands)
        from .onnx.commands import suite_for_model

        return suite_for_model(p)
    try:
        text = read_text(p, MAX_FILE_BYTES)  # regular files only, never more than the limit
    except FileRefused as e:
        raise SuiteError(e.why, str(p)) from None
    return parse(text, str(path), p.resolve().parent)


# ---------------------------------------------------------------- memory


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_memory(suite: Suite, pairs: list[tuple[Case, str]], available: dict[str, int]) -> None:
    """Refuse up front when a case cannot fit in its backend's memory (cases run one at a time, so the
    largest case counts). ``available`` maps backend -> bytes; backends missing from it are not checked."""
    worst: dict[str, tuple[int, Case, int]] = {}
    for case, b in pairs:
        if b not in available:
            continue
        need = int(case.cls.memory_bytes(case.params, b))
        if need > available[b]:
            n, c, biggest = worst.get(b, (0, case, 0))
            worst[b] = (n + 1, c if n else case, max(biggest, need))
    if worst:
        b, (n, c, need) = next(iter(worst.items()))
        raise SuiteError(
            f"{n} case(s) would not fit in {b} memory: the largest needs {_gib(need)}, "
            f"{_gib(available[b])} available (first: {c.name}); shrink the sizes or limit that entry's backends",
            c.location.rsplit(":", 1)[0] if ":" in c.location else c.location,
            int(c.location.rsplit(":", 1)[1]) if ":" in c.location and c.location.rsplit(":", 1)[1].isdigit()
            else None,
        )

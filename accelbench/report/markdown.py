"""Markdown for pull-request comments and GitHub's job summary (``$GITHUB_STEP_SUMMARY``), and the same
table as plain text for the terminal. Regressions come first; unchanged cases fold away."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ..compare import CaseComparison, Comparison, Speedup
from ..textsafe import md, plain
from .format import fmt_change, fmt_range, fmt_time, fmt_x

ICON = {"slower": "🔴", "inconclusive": "🟡", "failed": "❌", "missing": "⚪", "new": "🆕", "faster": "🟢",
        "unchanged": "⚫", "skipped": "⏭"}
HEAD = ("", "case", "backend", "base", "new", "change", "CI", "verdict")


def _cell(text: str) -> str:
    """One markdown table cell from text that may hold names from data (textsafe.md)."""
    return md(text)


def _row(c: CaseComparison) -> list[str]:
    ci = ""
    if c.ci_low is not None and c.ci_high is not None:
        # (0, inf) is what few samples or rounds bound: no interval at all ("-100.0% … inf" read as one)
        ok = c.ci_low > 0 and math.isfinite(c.ci_high)
        ci = f"{fmt_change(c.ci_low)} … {fmt_change(c.ci_high)}" if ok else "too few samples"
    verdict: str = c.verdict
    if c.definition_changed:
        verdict += " (definition changed, not gated)"
    why = c.reason if c.verdict != "unchanged" else ""
    if why:
        verdict += f": {why}"
    return [ICON.get(c.verdict, ""), c.name, c.backend, fmt_time(c.base_value_s), fmt_time(c.new_value_s),
            fmt_change(c.ratio), ci, verdict]


def _table(rows: Sequence[CaseComparison]) -> list[str]:
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(_cell(x) for x in _row(c)) + " |" for c in rows]
    return out


def headline(cmp: Comparison) -> str:
    n = len(cmp.regressions)
    total = len(cmp.cases)
    if n:
        return f"accelbench: {n} regression{'s' if n != 1 else ''} in {total} cases"
    return f"accelbench: no regression in {total} cases"


def comparison(cmp: Comparison, title: str | None = None) -> str:
    """The whole PR comment."""
    o = cmp.options
    counts = {k: v for k, v in cmp.counts().items() if v}
    lines = [f"## {title or headline(cmp)}", ""]
    lines.append(f"base {md(cmp.base)} → new {md(cmp.new)}; metric {o.metric}, threshold {o.threshold * 100:g}% "
                 f"(per-workload thresholds from the suite apply), alpha {o.alpha:g} with Holm's correction over "
                 f"{sum(1 for c in cmp.cases if c.p_slower_adj is not None)} cases"
                 + ("; interleaved in one session" if cmp.interleaved else "; separate sessions") + ".")
    lines.append("")
    lines.append(", ".join(f"{ICON[k]} {v} {k}" for k, v in counts.items()))
    lines.append("")
    for w in cmp.warnings:
        lines += ["> [!WARNING]", f"> {md(w)}", ""]
    if cmp.machine:
        lines.append("> [!WARNING]")
        lines.append("> The runs come from different machines or software; timings may not be comparable:")
        for d in cmp.machine[:10]:
            lines.append(f"> - {md(d.key)}: {md(d.base)} → {md(d.new)}")
        if len(cmp.machine) > 10:
            lines.append(f"> - … and {len(cmp.machine) - 10} more")
        lines.append("")
    elif not cmp.machine_checked:
        lines += ["> [!NOTE]", "> One run has no machine fingerprint; the machines could not be compared.", ""]
    shown = [c for c in cmp.cases if c.verdict != "unchanged"]
    hidden = [c for c in cmp.cases if c.verdict == "unchanged"]
    if shown:
        lines += _table(shown)
        lines.append("")
    if hidden:
        lines.append(f"<details><summary>{len(hidden)} unchanged</summary>")
        lines.append("")
        lines += _table(hidden)
        lines.append("")
        lines.append("</details>")
        lines.append("")
    lines.append("<sub>change = new/base − 1 of the metric; CI: 95% interval of that ratio; a case is a "
                 "regression only when slower than its threshold with Holm-corrected significance.</sub>")
    return "\n".join(lines) + "\n"


def _speedup_ci(s: Speedup, sep: str) -> str:
    """The speedup's 95% CI, or why there is none: with a handful of samples on a side (a slow CPU case)
    the order statistics bound nothing, and "0×..inf×" would read like a measurement."""
    if not (s.ci_low > 0 and math.isfinite(s.ci_high)):
        return "- (too few samples)"
    return fmt_range(s.ci_low, s.ci_high, fmt_x, sep)


def speedups(rows: Sequence[Speedup], title: str = "GPU vs CPU") -> str:
    lines = [f"## {title}", "", "| case | GPU | CPU | speedup | 95% CI |", "|---|---|---|---|---|"]
    for s in rows:
        lines.append(f"| {_cell(s.name)} | {fmt_time(s.gpu_s)} | {fmt_time(s.cpu_s)} | {fmt_x(s.speedup)} | "
                     f"{_speedup_ci(s, ' … ')} |")
    return "\n".join(lines) + "\n"


TEXT_ROWS = 100  # cases a terminal table shows; --json and --markdown hold every case


def text_table(cmp: Comparison, max_rows: int = TEXT_ROWS) -> str:
    """The comparison as aligned plain text for the terminal: the first ``max_rows`` cases in verdict
    order (regressions, then inconclusive, failed... unchanged last) and a count of the others by verdict."""
    shown = cmp.cases[:max_rows]
    rows = [list(HEAD[1:])] + [[plain(x) for x in _row(c)[1:]] for c in shown]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(rows[0]) - 1)]
    out = []
    for r in rows:
        cells = [r[i][:60].ljust(widths[i]) for i in range(len(widths))] + [r[-1]]
        out.append("  ".join(cells).rstrip())
    if len(cmp.cases) > len(shown):
        left: dict[str, int] = {}
        for c in cmp.cases[len(shown):]:
            left[c.verdict] = left.get(c.verdict, 0) + 1
        out.append(f"... {len(cmp.cases) - len(shown)} more cases not shown ("
                   + ", ".join(f"{v} {k}" for k, v in left.items()) + "): --json or --markdown lists every case")
    counts = ", ".join(f"{v} {k}" for k, v in cmp.counts().items() if v)
    out.append("")
    out.append(f"{headline(cmp)} ({counts})")
    for d in cmp.machine:
        out.append(plain(f"WARNING: machine differs: {d.key}: {d.base!r} -> {d.new!r}"))
    return "\n".join(out) + "\n"


def _short_names(names: Sequence[str]) -> tuple[list[str], str]:
    """Case names without the ``key=value`` parameters that every row shares (returned once, apart):
    cutting names to a fixed width instead hid the parameters that tell rows apart (optimizer, graph)."""
    split = [re.split(r" (?=[\w.]+=)", n) for n in names]
    common = set.intersection(*(set(p[1:]) for p in split)) if len(split) > 1 else set()
    short = [" ".join([p[0], *(t for t in p[1:] if t not in common)]) for p in split]
    shared = " ".join(t for t in split[0][1:] if t in common) if split else ""
    return short, shared


def speedup_text(rows: Sequence[Speedup]) -> str:
    names, shared = _short_names([plain(s.name) for s in rows])
    cis = [_speedup_ci(s, "..") for s in rows]
    w = max([6, *(len(c) for c in cis)])
    out = [f"{'speedup':>8}  {'95% CI':{w}}  {'GPU':>10}  {'CPU':>10}  case"]  # the name last: it is long
    for s, name, ci in zip(rows, names, cis, strict=True):
        out.append(f"{fmt_x(s.speedup):>8}  {ci:{w}}  {fmt_time(s.gpu_s):>10}  {fmt_time(s.cpu_s):>10}  {name}")
    if shared:
        out.append(f"(every case: {shared})")
    if not rows:
        out.append("(no case ran successfully on both the GPU and the CPU)")
    return "\n".join(out) + "\n"

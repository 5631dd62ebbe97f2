"""`accelbench report --history RESULTS -o page.html`: one trend chart per case, grouped by workload.

Each chart shows the case's per-run metric in history order, the run's CI of the median as a band, its
change points as dashed lines labelled with the change, and, on hover, the run id, commit and date.
Points of different machines have their own colour (a change of machine is never a change point). The
page is self-contained like the run report and shares its pieces (accelbench.report.html): its CSS and
JavaScript (which draws the figures from one embedded JSON blob and sorts tables), plotly.js inlined,
the escaping of user strings for plotly (``esc``) and for <script> (``script_json``), and time units.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, StrictUndefined

from .. import __version__
from ..errors import UsageError
from ..report.format import fmt_change, fmt_time, time_unit
from ..report.html.figures import PALETTE, esc, script_json
from ..report.html.model import Ids
from ..report.html.render import _plotly_js, _static
from ..results import atomic_write_text
from .analysis import History, Series, load_history
from .changepoints import Settings

MAX_POINTS = 2000  # per chart: the most recent runs (a 10,000-run history would make a page of megabytes)

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="accelbench {{ version }}">
<title>{{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<header class="top">
  <h1>{{ title }}</h1>
  <p class="sub">generated {{ generated }} by accelbench {{ version }} · {{ n_runs }} runs · {{ n_cases }} cases ·
  ordered by {{ ordered_by }} · metric {{ metric }} · alpha {{ alpha }} · {{ n_charts }} charts</p>
  <nav><a href="#changes">Recent changes</a>{% for g in groups %} <a href="#{{ g.id }}">{{ g.name }}</a>{% endfor %}</nav>
</header>
<main>
{% for n in notes %}<p class="banner">{{ n }}</p>{% endfor %}
<section class="block" id="changes">
  <h2>Change points <span class="sub">most recent first</span></h2>
  {% if not changes %}<p class="note">No change points.</p>{% else %}
  <div class="table-wrap"><table class="sortable" id="changes-table" data-rows="{{ changes|length }}">
  <thead><tr>{% for c in change_columns %}<th scope="col" title="click to sort">{{ c }}</th>{% endfor %}</tr></thead>
  <tbody>
  {% for row in changes %}<tr>{% for cell in row %}<td{% if cell[1] is not none %} data-sort="{{ cell[1] }}"{% endif %}>{{ cell[0] }}</td>{% endfor %}</tr>
  {% endfor %}
  </tbody></table></div>
  {% endif %}
</section>
{% for g in groups %}
<section class="block" id="{{ g.id }}">
  <h2>{{ g.name }} <span class="sub">{{ g.charts|length }} case{{ 's' if g.charts|length != 1 else '' }}</span></h2>
  <div class="charts">
  {% for c in g.charts %}
    <figure class="chart-fig">
      <figcaption><strong>{{ c.title }}</strong> <span class="sub">{{ c.note }}</span></figcaption>
      <div class="chart" id="{{ c.id }}" data-chart></div>
    </figure>
  {% endfor %}
  </div>
</section>
{% endfor %}
</main>
<footer><p class="sub">One point per run: the run's {{ metric }} time per operation; the band is the run's 95%
confidence interval of the median. Change points: accelbench.history.changepoints (docs/history.md).</p></footer>
<script>{{ plotly_js }}</script>
<script type="application/json" id="ab-figures">{{ figures_json }}</script>
<script>{{ js }}</script>
</body>
</html>
"""


def _short(commit: str | None) -> str:
    return commit[:10] if commit else "no commit"


def figure(s: Series, h: History) -> dict[str, Any]:
    """The plotly figure (as a dict) of one case's series."""
    import plotly.graph_objects as go

    keep = slice(max(0, s.value.size - MAX_POINTS), None)
    pos, val, lo, hi, mach = s.pos[keep], s.value[keep], s.ci_low[keep], s.ci_high[keep], s.machine[keep]
    unit, scale = time_unit(val.tolist())
    fig = go.Figure()
    machines = list(dict.fromkeys(mach.tolist()))
    for k, m in enumerate(machines):
        sel = mach == m
        color = PALETTE[k % len(PALETTE)]
        x = pos[sel]
        runs = [h.runs[int(p)] for p in x]
        hover = ["<br>".join(esc(t) for t in (f"run {r.run_id}", f"commit {_short(r.commit)}", r.started_at))
                 for r in runs]
        if h.metric == "median" and np.isfinite(lo[sel]).any():
            band_x = np.concatenate([x, x[::-1]])
            band_y = np.concatenate([hi[sel], lo[sel][::-1]]) / scale
            fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", mode="none", hoverinfo="skip",
                                     fillcolor=color, opacity=0.18, showlegend=False, name="CI"))
        name = "this machine" if len(machines) == 1 else f"machine {m[:8]}"
        fig.add_trace(go.Scatter(x=x, y=val[sel] / scale, mode="lines+markers", name=name,
                                 line={"color": color, "width": 1.5}, marker={"size": 5, "color": color},
                                 customdata=hover,
                                 hovertemplate="%{customdata}<br>%{y:.4g} " + unit + "<extra></extra>"))
    shapes, notes = [], []
    for c in s.changes:
        if c.position < (pos[0] if pos.size else 0):
            continue
        shapes.append({"type": "line", "x0": c.position - 0.5, "x1": c.position - 0.5, "yref": "paper", "y0": 0,
                       "y1": 1, "line": {"color": "#d62728" if c.ratio > 1 else "#2ca02c", "dash": "dash", "width": 1.5}})
        notes.append({"x": c.position - 0.5, "y": 1, "yref": "paper", "yanchor": "bottom", "showarrow": False,
                      "text": esc(f"{fmt_change(c.ratio)} (p={c.p_value:.1g})"), "font": {"size": 11}})
    fig.update_layout(template="plotly_white", height=280, margin={"l": 60, "r": 16, "t": 28, "b": 40},
                      xaxis={"title": {"text": f"run (in {h.ordered_by} order)"}},
                      yaxis={"title": {"text": f"{h.metric} ({unit})"}}, shapes=shapes, annotations=notes,
                      legend={"orientation": "h", "y": -0.25}, showlegend=len(machines) > 1)
    out: dict[str, Any] = json.loads(fig.to_json())
    out["layout"].pop("template", None)  # plotly.js applies its own defaults; the template is 10 kB per chart
    return out


def render(h: History, title: str | None = None) -> str:
    ids = Ids()
    groups: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, Any] = {}
    for s in h.series:
        cid = ids("trend", s.workload, s.case)
        figures[cid] = figure(s, h)
        note = f"@{s.backend} · {s.value.size} runs · {len(s.changes)} change point" + \
            ("s" if len(s.changes) != 1 else "")
        groups.setdefault(s.workload, []).append({"id": cid, "title": s.name, "note": note})
    group_list = [{"id": ids("workload", w), "name": w, "charts": c} for w, c in sorted(groups.items())]
    rows = []
    for c in h.changes():
        rows.append([(c.run_id, c.position), (_short(c.commit), None), (c.started_at, c.started_at),
                     (f"{c.name} @{c.backend}", None), (fmt_time(c.before_s), c.before_s),
                     (fmt_time(c.after_s), c.after_s), (fmt_change(c.ratio), c.ratio),
                     (f"{fmt_change(c.ci_low)}..{fmt_change(c.ci_high)}", None), (f"{c.p_value:.2g}", c.p_value)])
    notes = [f"skipped {s.path}: {s.reason}" for s in h.skipped] + list(h.notes)
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    tpl = env.from_string(_TEMPLATE)
    return tpl.render(
        title=title or "accelbench history", version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), n_runs=len(h.runs),
        n_cases=len(h.series), ordered_by=h.ordered_by, metric=h.metric, alpha=f"{h.settings.alpha:g}",
        n_charts=len(figures), groups=group_list, notes=notes, changes=rows,
        change_columns=["first run after", "commit", "started", "case", "before", "after", "change", "CI", "p"],
        css=_static("report.css"), js=_static("report.js"), plotly_js=_plotly_js(),
        figures_json=script_json(figures))


def write_page(results: Sequence[str | Path], out: str | Path | None, title: str | None = None,
               metric: str = "median", settings: Settings | None = None, repo: Path | None = None) -> Path:
    """Analyse the history under ``results`` and write its page atomically; returns the path."""
    dest = Path(out) if out is not None else Path("reports") / "history.html"
    if dest.is_dir():
        dest = dest / "history.html"
    if dest.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {dest}: the page is an HTML file; name it *.html")
    h = load_history([Path(r) for r in results], metric=metric, settings=settings, repo=repo or Path())
    text = render(h, title)
    try:
        atomic_write_text(dest, text)
    except OSError as e:
        raise UsageError(f"{dest}: cannot write the page: {e.strerror or e}") from None
    return dest

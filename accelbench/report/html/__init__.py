"""Self-contained HTML report of one or more runs: `accelbench report RUN [RUN ...] -o reports/NAME.html`.

Rendered from the report view (:mod:`accelbench.report.view`: typed records, speedups, comparisons and
a chart frame, built once): this module turns it into page models (tables of cells, plotly figures) and
one jinja2 template lays them out. The page carries plotly.js, its CSS and its few lines of JavaScript
inline, so it opens from a CI artifact or an e-mail with no network.

Modules: model (the page model: cells, tables, charts, blocks), figures (plotly helpers: layout, colours,
escaping, case labels; every figure is built from plotly.graph_objects), one module per section (header,
workloads, roofline, distributions, comparison, models, counters, problems), page (the page from the
view) and render (template, inlined assets, writing the file).

Escaping, because suite names, parameters and error messages are user-supplied:
  * HTML: jinja autoescape on every template variable (never ``|safe`` on data).
  * Figures: embedded as one JSON blob in ``<script type="application/json">``; ``<``, ``>``, ``&`` and
    U+2028/9 are written as ``\\uXXXX`` escapes, so no string can close the script element.
  * Plotly renders a few HTML-like tags inside SVG text (``<b>``, ``<a href>``...); every user string put
    into a figure is HTML-escaped first, which plotly decodes back to literal text.

Which run is which: the LAST run given is the one the detail sections describe (GPU vs CPU, roofline,
distributions, models); with two or more runs each earlier run is compared against it, the earlier one
as the base (``report BASE NEW`` reads like ``compare BASE NEW``).
"""

from __future__ import annotations

from .figures import esc, script_json
from .model import Block, Cell, Chart, Page, RunHeader, Table, slug
from .page import build_page
from .render import default_output, render_html, write_report
from .roofline import Ceiling, ceilings

__all__ = ["Block", "Ceiling", "Cell", "Chart", "Page", "RunHeader", "Table", "build_page", "ceilings",
           "default_output", "esc", "render_html", "script_json", "slug", "write_report"]

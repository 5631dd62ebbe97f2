"""The page as one self-contained HTML file: the jinja2 template, our CSS/JS and plotly.js inline."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ... import __version__
from ...errors import UsageError
from ...results import atomic_write_text
from .. import view as view_mod
from ..view import ReportView
from .figures import script_json
from .model import slug
from .page import build_page

HERE = Path(__file__).resolve().parent.parent  # accelbench/report: templates/ and static/
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def _static(name: str) -> Markup:
    """Our own CSS/JS, inlined. They are ours (not user data); the guard keeps them from ending the element."""
    text = (STATIC / name).read_text(encoding="utf-8")
    if re.search(r"</(script|style)", text, re.IGNORECASE):
        raise RuntimeError(f"{name} must not contain a closing script/style tag")
    return Markup(text)


def _plotly_js() -> Markup:
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    # plotly.js has no such sequence today; the replacement keeps a future build from ending the element
    return Markup(re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE))


def render_html(view: ReportView, title: str | None = None) -> str:
    page = build_page(view, title)
    figures = {c.id: c.figure for c in page.charts}
    # the rows of tables shown a page at a time, once, as JSON (none: no such script element at all)
    paged = {t.id: t.data() for t in page.tables() if t.paginated}
    tpl = _env().get_template("report.html.j2")
    return tpl.render(page=page, figures_json=script_json(figures), css=_static("report.css"),
                      tables_json=script_json(paged, cleaned=True) if paged else None, js=_static("report.js"),
                      plotly_js=_plotly_js(), version=__version__, n_charts=len(page.charts))


def default_output(view: ReportView) -> Path:
    run = view.current.run
    name = slug(run.suite or "run") + "-" + slug(run.run_id or "report")
    if len(view.runs) > 1:
        name += f"-vs-{len(view.runs) - 1}"
    return Path("reports") / f"{name}.html"


def write_report(runs: Sequence[str | Path], out: str | Path | None = None, title: str | None = None) -> Path:
    """Load ``runs`` (run directories, their run.json/cases.jsonl, or results roots), render and write the
    page atomically (a temporary file renamed into place: an error leaves nothing half-written).
    Returns the path written."""
    if not runs:
        raise UsageError("report: give at least one run directory")
    v = view_mod.load(runs)
    html_text = render_html(v, title)
    dest = Path(out) if out is not None else default_output(v)
    if dest.is_dir():
        dest = dest / default_output(v).name
    if dest.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {dest}: the report is an HTML file; name it *.html")
    try:
        atomic_write_text(dest, html_text)
        # mkstemp creates 0600; a report is meant to be shared, so give it the umask's usual mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(dest, 0o666 & ~umask)
    except OSError as e:
        raise UsageError(f"{dest}: cannot write the report: {e.strerror or e}") from None
    return dest

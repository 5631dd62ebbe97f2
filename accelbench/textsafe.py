"""Neutralise text that comes from data (suite labels, imported benchmark names, paths, messages) before
it reaches a terminal or a markdown document.

A name is data, never an instruction: ``\\x1b]0;pwned\\x07`` must not retitle the window, ``\\x1b[2J`` must
not clear the screen (it could hide a REGRESSION line), a rich tag ``[link=...]`` must not become a
hyperlink and ``<img onerror=...>`` must not become HTML in a pull-request comment. Three renderings:

  plain(s)   control characters (C0, DEL, C1) and the bidirectional/zero-width format characters shown
             visibly as Python escapes (``\\x1b``, ``\\n``, ``\\u202e``); for text written with
             ``sys.stdout.write``.
  term(s)    plain(s) with rich markup made inert; for text embedded in a string rich will print.
  md(s)      plain(s), HTML-escaped, with the markdown characters that could make links, code spans,
             emphasis or table cells (``\\ ` | [ ] * _ ~``) backslash-escaped; for markdown.

``--json`` output is exact and never goes through this module.
"""

from __future__ import annotations

import html
import re

from rich.markup import escape as _rich_escape

# C0 controls, DEL, C1 controls; bidi embeddings/overrides/isolates and zero-width characters, which can
# reorder or hide what a line appears to say (CVE-2021-42574, "trojan source").
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_MD_SPECIAL = re.compile(r"([\\`|\[\]*_~])")


def _show(m: re.Match[str]) -> str:
    c = m.group(0)
    o = ord(c)
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if c == "\r":
        return "\\r"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def plain(s: object) -> str:
    """``s`` as text with every control or invisible format character shown as an escape."""
    return _INVISIBLE.sub(_show, str(s))


def term(s: object) -> str:
    """``s`` for a string that rich prints as markup: controls visible, markup inert."""
    return _rich_escape(plain(s))


def md(s: object) -> str:
    """``s`` for markdown (GitHub-flavoured, table cells included): controls visible, HTML escaped,
    link/code/emphasis/table syntax escaped."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(plain(s), quote=True))

"""Reporters: terminal (rich), Markdown and HTML, all rendered from one report view (view.py) with every
number formatted by format.py. They read records and never re-run anything."""

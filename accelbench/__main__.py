"""`python -m accelbench` is the `accelbench` command (useful where the package is not installed)."""

import sys

if sys.argv[1:] == ["worker"]:  # the worker loop needs neither typer nor rich: a worker starts per round
    from .worker import serve

    sys.exit(serve())
from .cli import main

main()

"""`python -m accelbench` is the `accelbench` command (useful where the package is not installed)."""

from .cli import main

main()

"""History of runs: an index of every run's per-case summaries (DuckDB, rebuilt from the run
directories at will) and change-point detection across it (see docs/history.md)."""

"""Measurement: timers (CPU clock, CUDA events), stopping rules, statistics and counters."""

"""Inference validation checks a float64 subset of the batch: it must still catch a wrong output."""

from __future__ import annotations

from pathlib import Path

from accelbench import backends, suite

SUITE = Path(__file__).resolve().parents[1] / "suites" / "cnn.yaml"


def _case(batch: int):
    s = suite.load(SUITE)
    for c in s.cases:
        if c.workload == "inference" and c.params.model == "mnist-classic" and c.params.batch == batch:
            return c
    raise AssertionError(f"suites/cnn.yaml has no mnist-classic inference at batch {batch}")


def test_subset_check_passes_and_catches_corruption():
    c = _case(64)
    wl = c.cls(c.params, backends.cpu(), seed=c.seed)
    wl.setup()
    wl.run()
    chk = wl.check()
    assert chk.passed and chk.rel_error < chk.tolerance and "first 32 images" in chk.reference
    wl.out[0, 3] += 1.0  # one logit of one checked image wrong
    assert not wl.check().passed

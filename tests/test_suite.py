"""Suite loading: every error path ends as a SuiteError naming file:line:col; expansion is right."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from accelbench import suite
from accelbench.errors import SuiteError


def parse(text: str):
    return suite.parse(textwrap.dedent(text), "s.yaml")


def err(text: str) -> SuiteError:
    with pytest.raises(SuiteError) as ei:
        parse(text)
    return ei.value


GOOD = """\
suite: demo
description: a test
defaults:
  backends: [cpu]
  params: {dtype: float32}
  timing: {max_time_s: 0.5}
thresholds: {t_scale: 0.07}
benchmarks:
  - workload: t_scale
    params:
      n: [10, 20, 30]
      dtype: [float32, float64]
  - workload: t_scale
    label: big
    params: {n: 1000}
    timing: {min_samples: 3}
    threshold: 0.2
"""


def test_expansion_is_cartesian_product_of_axes():
    s = parse(GOOD)
    assert s.name == "demo"
    assert len(s.cases) == 3 * 2 + 1
    ns = sorted({(c.params.n, c.params.dtype) for c in s.cases if c.label is None})
    assert ns == [(n, d) for n in (10, 20, 30) for d in ("float32", "float64")]
    big = [c for c in s.cases if c.label == "big"][0]
    assert big.timing.min_samples == 3 and big.timing.max_time_s == 0.5  # merged over defaults
    assert big.threshold == 0.2
    assert s.cases[0].threshold == 0.07
    assert big.backends == ("cpu",)
    assert big.location == "s.yaml:13"


def test_case_identity_is_stable_and_distinct():
    a, b = parse(GOOD), parse(GOOD)
    ids = [c.case_id("cpu") for c in a.cases]
    assert ids == [c.case_id("cpu") for c in b.cases]
    assert len(set(ids)) == len(ids)
    assert a.cases[0].definition_hash() == b.cases[0].definition_hash()
    assert a.cases[0].definition_hash() != a.cases[1].definition_hash()


def test_list_typed_parameter_is_not_an_axis():
    s = parse("""\
    suite: x
    benchmarks:
      - workload: t_scale
        params: {n: 4, extra: [1, 2, 3]}
      - workload: t_scale
        label: axis
        params: {n: 4, extra: [[1], [2]]}
    """)
    assert [c.params.extra for c in s.cases] == [[1, 2, 3], [1], [2]]


def test_select_filters_by_backend_and_text():
    s = parse(GOOD.replace("backends: [cpu]", "backends: [gpu, cpu]"))
    assert len(s.select()) == 14
    assert len(s.select(["cpu"])) == 7
    assert [c.label for c, _ in s.select(None, "BIG")] == ["big", "big"]


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("suite: x\nbenchmarks: [\n", "s.yaml:3:1", "invalid YAML"),
        ("suite: x\nbenchmarks:\n  - workload: gemmm\n", "s.yaml:3:15", "unknown workload 'gemmm'"),
        ("suite: x\nbogus: 1\nbenchmarks:\n  - workload: t_scale\n", "s.yaml:2:1", "unknown key"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    params: {n: 5, m: 3}\n", "s.yaml:4:20",
         "unknown parameter 'm'"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    params: {n: -5}\n", "s.yaml:4:17", "greater than 0"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    params:\n      n: [4, 5, 1e12]\n", "s.yaml:5:17",
         "n"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    params: {n: lots}\n", "s.yaml:4:17", "integer"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    params: {n: []}\n", "s.yaml:4:17", "empty list"),
        ("suite: x\nbenchmarks: []\n", "s.yaml:2:", "at least 1"),
        ("benchmarks:\n  - workload: t_scale\n", "s.yaml:1:1", "suite: required"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    backends: [tpu]\n", "s.yaml:4:16", "'gpu' or 'cpu'"),
        ("suite: x\nsuite: y\nbenchmarks: []\n", "s.yaml:2:1", "duplicate key 'suite'"),
        ("suite: !!python/object/apply:os.system ['echo hi']\nbenchmarks: []\n", "s.yaml:1:8", "tag"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    params: !mytag {n: 1}\n", "s.yaml:4:13", "tag"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    timing: {max_time_s: -1}\n", "s.yaml:4:26",
         "greater than 0"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n    timing: {min_time_s: 5, max_time_s: 1}\n",
         "s.yaml:4:13", "min_time_s"),
        ("- 1\n- 2\n", "s.yaml", "a suite is a mapping"),
        ("", "s.yaml:1:1", "empty"),
        ("suite: x\nthresholds: {nope: 0.1}\nbenchmarks:\n  - workload: t_scale\n", "s.yaml:2:14",
         "unknown workload"),
        ("suite: x\nbenchmarks:\n  - workload: t_scale\n  - workload: t_scale\n", "s.yaml:4:", "defined twice"),
    ],
)
def test_errors_name_file_line_col(text, where, words):
    e = err(text)
    assert str(e).startswith(where), str(e)
    assert words in str(e), str(e)
    assert "\n" not in str(e)


def test_unknown_workload_suggests_close_name():
    e = err("suite: x\nbenchmarks:\n  - workload: t_scal\n")
    assert "did you mean 't_scale'" in str(e)


def test_alias_bomb_is_refused_quickly():
    lines = ["suite: x", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
    lines.append("benchmarks: []")
    t0 = time.perf_counter()
    e = err("\n".join(lines) + "\n")
    assert "alias" in str(e)
    assert time.perf_counter() - t0 < 5


def test_too_many_cases_is_refused_with_the_numbers():
    e = err("""\
    suite: x
    defaults: {max_cases: 50}
    benchmarks:
      - workload: t_scale
        params: {n: [1, 2, 3, 4, 5, 6, 7, 8], dtype: [float32, float64], extra: [[1],[2],[3],[4]]}
    """)
    assert "expands to 64 cases" in str(e) and "max_cases=50" in str(e)


def test_memory_check_refuses_with_numbers():
    s = parse("suite: x\nbenchmarks:\n  - workload: t_scale\n    params: {n: 100000000}\n")
    pairs = s.select(["cpu"])
    with pytest.raises(SuiteError) as ei:
        suite.check_memory(s, pairs, {"cpu": 1 << 20})
    msg = str(ei.value)
    assert msg.startswith("s.yaml:3") and "0.75 GiB" in msg and "0.00 GiB available" in msg
    suite.check_memory(s, pairs, {"cpu": 1 << 40})  # fits: no error


def test_load_file_errors(tmp_path: Path):
    with pytest.raises(SuiteError, match="no such file"):
        suite.load(tmp_path / "missing.yaml")
    with pytest.raises(SuiteError, match="directory"):
        suite.load(tmp_path)
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SuiteError, match="UTF-8"):
        suite.load(bad)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (suite.MAX_FILE_BYTES + 1))
    with pytest.raises(SuiteError, match="limited"):
        suite.load(big)


def test_defaults_params_apply_only_where_the_workload_has_them():
    s = parse("""\
    suite: x
    defaults: {params: {dtype: float64, sleep_s: 0.0}}
    benchmarks:
      - workload: t_scale
        params: {n: 4}
      - workload: t_slow
    """)
    assert s.cases[0].params.dtype == "float64"
    assert s.cases[1].params.sleep_s == 0.0

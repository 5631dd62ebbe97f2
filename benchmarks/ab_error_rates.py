"""False alarms and detection of ``accelbench ab`` between two real environments, and of separate runs.

Two virtual environments of the example plugin (examples/plugin-example) are made, each with its own
editable accelbench and plugin: A (the plugin as shipped) and B (a copy whose WORK_FACTOR is 1.05, so
each ``horner`` case runs 21 Horner steps instead of 20, 42 instead of 40: a real code change doing
exactly 5% more of the same work). The suite has 24 horner cases (3 sizes x 4 degrees x float32/64)
and 4 built-in control cases that the change does not touch. ``ab`` times CPU cases in process CPU
seconds by default here (``--clock cpu``: on a shared 2-core machine a benchmark process runs a fraction
of the wall time), pairs them sample by sample (``--pairing samples``) with both workers of a round on
one CPU (``--affinity same``), 40 rounds of 1/40 of 0.75 s per case and side; separate runs use
``accelbench run`` as it is (wall clock). Numbers and their history: docs/ci.md.

  ab A/A      ``accelbench ab --base A --new A``: every ``slower`` verdict is a false alarm
  ab A/B      ``accelbench ab --base A --new B``: a horner case found ``slower`` is a catch
  separate    ``accelbench run`` in A (and in B), separately, between the sessions; compare (with the
              drift assessment of accelbench.drift) run A_i against A_{i+1} (A/A) and against B_i (A/B)

All at a 3% threshold, alpha 0.01, Holm over the suite's cases, default metric (median). Everything is
kept under --work (the environments are reused), so ``--analyse`` re-reads the runs without measuring.

Run:  PYTHONPATH=. python benchmarks/ab_error_rates.py --sessions 14 --ab-every 4 --separate-a 1 --json ab.json
Separate runs beside a neighbour that keeps every CPU busy in bursts (the contention that slows a stretch
of consecutive cases in one run; accelbench.drift rule 6):
      PYTHONPATH=. python benchmarks/ab_error_rates.py --work /tmp/bursts --no-ab --bursts --sessions 20 --separate-a 1 --separate-b 0
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from accelbench.ab import AbOptions, run_ab
from accelbench.compare import CompareOptions, compare_runs, holm, load_side
from accelbench.isolate import clean_env
from tests.venvs import EXAMPLE, ROOT, make_env, planted_example

SIZES = (4096, 16384, 65536)
DEGREES = (20, 40, 60, 80)  # x 1.05 is whole: 21, 42, 63, 84 steps


def suite_text(max_time_s: float) -> str:
    return f"""suite: ab-error-rates
description: "horner (example plugin) at 24 points and 4 built-in controls"
defaults:
  backends: [cpu]
  timing: {{min_time_s: {max_time_s / 2:g}, max_time_s: {max_time_s:g}}}
benchmarks:
  - workload: horner
    params: {{n: {list(SIZES)}, degree: {list(DEGREES)}, dtype: [float32, float64]}}
  - workload: triad
    params: {{n: [65536, 1048576]}}
  - workload: reduction
    params: {{rows: 512, cols: 512}}
  - workload: softmax
    params: {{rows: 256, cols: 1024}}
"""


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy import stats as st

    a = 1 - level
    lo = 0.0 if k == 0 else float(st.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(st.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def envs(work: Path) -> tuple[Path, Path]:
    """The two environments, each with accelbench from a snapshot of this checkout's HEAD (so editing the
    checkout while the benchmark runs changes neither side)."""
    a, b = work / "env-a", work / "env-b"
    src = work / "accelbench-src"
    if not src.exists():
        src.mkdir()
        subprocess.run(f"git -C {ROOT} archive HEAD | tar -x -C {src}", shell=True, check=True)
    if not (a / "bin" / "python").exists():
        make_env(a, [src, EXAMPLE])
    if not (b / "bin" / "python").exists():
        make_env(b, [src, planted_example(work / "plugin-b", 1.05)])
    return a, b


def separate_run(env: Path, suite: Path, out: Path) -> str:
    r = subprocess.run([str(env / "bin" / "python"), "-m", "accelbench", "run", str(suite), "--backend", "cpu",
                        "--no-counters", "--out", str(out), "--json"], capture_output=True, text=True,
                       env=clean_env(), cwd=str(suite.parent))
    if r.returncode not in (0, 1):
        raise SystemExit(f"separate run in {env} failed: {r.stderr.strip()[-500:]}")
    return str(json.loads(r.stdout)["run_dir"])


# A neighbour that works in bursts (another job's test run, a build): busy on every CPU for 1-4 s, then
# idle for 2-8 s, at the benchmark's own priority, for as long as the measurement runs (--bursts).
NEIGHBOUR = """
import os, random, time
rng = random.Random(int.from_bytes(os.urandom(4), "little"))
while True:
    time.sleep(rng.uniform(2, 8))
    end = time.monotonic() + rng.uniform(1, 4)
    while time.monotonic() < end:
        sum(i * i for i in range(10000))
"""


def neighbours() -> list[subprocess.Popen[bytes]]:
    import os

    return [subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) for _ in range(os.cpu_count() or 2)]


def measure(args: argparse.Namespace, work: Path, log: dict[str, Any]) -> None:
    procs = neighbours() if args.bursts else []
    try:
        _measure(args, work, log)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _measure(args: argparse.Namespace, work: Path, log: dict[str, Any]) -> None:
    a, b = envs(work)
    suite = work / "suite.yaml"
    suite.write_text(suite_text(args.time))
    for s in range(args.sessions):
        planted = args.ab_every > 0 and s % args.ab_every == args.ab_every - 1
        if args.no_ab:  # separate runs only
            for env, name in [(a, "A")] * args.separate_a + ([(b, "B")] if args.separate_b else []):
                t0 = time.perf_counter()
                log["separate"].append({"env": name, "run": separate_run(env, suite, work / "runs"),
                                        "wall_s": time.perf_counter() - t0})
            (work / "log.json").write_text(json.dumps(log, indent=1))
            print(f"session {s + 1}/{args.sessions} (separate runs only)", flush=True)
            continue
        new = b if planted else a
        t0 = time.perf_counter()
        res = run_ab(suite, str(a), str(new), AbOptions(rounds=args.rounds, out=work / "ab", seed=s, clock=args.clock,
                                                       pairing=args.pairing, affinity=args.affinity,
                                                       compare=CompareOptions(threshold=0.03)))
        log["ab"].append({"kind": "A/B" if planted else "A/A", "base": str(res.base_dir), "new": str(res.new_dir),
                          "wall_s": time.perf_counter() - t0, "cases": len(res.comparison.cases),
                          "reruns": res.reruns})
        for _ in range(args.separate_a):
            t0 = time.perf_counter()
            log["separate"].append({"env": "A", "run": separate_run(a, suite, work / "runs"),
                                    "wall_s": time.perf_counter() - t0})
        if args.separate_b:
            t0 = time.perf_counter()
            log["separate"].append({"env": "B", "run": separate_run(b, suite, work / "runs"),
                                    "wall_s": time.perf_counter() - t0})
        (work / "log.json").write_text(json.dumps(log, indent=1))
        print(f"session {s + 1}/{args.sessions} ({log['ab'][-1]['kind']}) {log['ab'][-1]['wall_s']:.0f} s",
              flush=True)


def tally(pairs: list[tuple[str, str, str]], threshold: float, metric: str = "median") -> dict[str, Any]:
    """pairs: (kind, base dir, new dir) -> false alarms (A/A) and catches of planted horner cases (A/B)."""
    out: dict[str, Any] = {"A/A": {"n": 0, "slower": 0, "faster": 0, "inconclusive": 0},
                           "A/B": {"n": 0, "caught": 0, "inconclusive": 0, "control_alarms": 0, "controls": 0}}
    out["A/A"]["within_run_alarms"] = 0
    # slower verdicts that drift rule 6 turned inconclusive (measured while others took the machine)
    out["A/A"]["held_for_contention"] = out["A/B"]["held_for_contention"] = 0
    for kind, bdir, ndir in pairs:
        cmp = compare_runs(load_side(bdir), load_side(ndir), CompareOptions(threshold=threshold, metric=metric))
        if kind == "A/A":  # what the gate said before the drift assessment: within-run evidence alone
            tested = [c for c in cmp.cases if c.p_slower is not None and c.ratio is not None]
            for c, p in zip(tested, holm([c.p_slower or 1.0 for c in tested]), strict=True):
                out["A/A"]["within_run_alarms"] += bool(c.ratio > 1 + threshold and p < 0.01)  # type: ignore[operator]
        for c in cmp.cases:
            out[kind]["held_for_contention"] += c.verdict == "inconclusive" and "other processes took" in c.reason
            if kind == "A/A" or c.workload != "horner":
                d = out["A/A"] if kind == "A/A" else None
                if d is not None:
                    d["n"] += 1
                    d["slower"] += c.verdict == "slower"
                    d["faster"] += c.verdict == "faster"
                    d["inconclusive"] += c.verdict == "inconclusive"
                else:
                    out["A/B"]["controls"] += 1
                    out["A/B"]["control_alarms"] += c.verdict == "slower"
            else:
                out["A/B"]["n"] += 1
                out["A/B"]["caught"] += c.verdict == "slower"
                out["A/B"]["inconclusive"] += c.verdict == "inconclusive"
    for kind, key in (("A/A", "slower"), ("A/B", "caught")):
        d = out[kind]
        if d["n"]:
            lo, hi = clopper_pearson(d[key], d["n"])
            d["rate_per_100"], d["ci95_per_100"] = 100 * d[key] / d["n"], (100 * lo, 100 * hi)
    return out


def analyse(log: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Verdicts of every stored pair, recomputed with this checkout's compare (within_run_alarms: the A/A
    cases the gate would have called slower on within-run evidence alone, Holm-corrected; for ab the
    paired rounds, for separate runs what the gate did before accelbench.drift)."""
    ab_pairs = [(x["kind"], x["base"], x["new"]) for x in log["ab"]]
    runs_a = [x["run"] for x in log["separate"] if x["env"] == "A"]
    runs_b = [x["run"] for x in log["separate"] if x["env"] == "B"]
    sep = [("A/A", runs_a[i], runs_a[i + 1]) for i in range(len(runs_a) - 1)]
    # each B run against the A run made just before it
    order = [x for x in log["separate"]]
    for i, x in enumerate(order):
        if x["env"] == "B":
            prev = next(y["run"] for y in reversed(order[:i]) if y["env"] == "A")
            sep.append(("A/B", prev, x["run"]))
    res: dict[str, Any] = {f"{mode} {metric}": tally(pairs, threshold, metric) for metric in ("median", "min")
                           for mode, pairs in (("ab", ab_pairs), ("separate", sep))}
    n_ab = sum(x["cases"] for x in log["ab"])
    res["ab_wall_s_per_case_comparison"] = sum(x["wall_s"] for x in log["ab"]) / max(n_ab, 1)
    sep_cases = sum(1 for _ in runs_a + runs_b) * 28
    res["separate_wall_s_per_case_per_run"] = sum(x["wall_s"] for x in log["separate"]) / max(sep_cases, 1)
    res["sessions"] = len(log["ab"])
    res["separate_runs"] = {"A": len(runs_a), "B": len(runs_b)}
    del runs_b
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ab-error-rates"))
    ap.add_argument("--sessions", type=int, default=15)
    ap.add_argument("--ab-every", type=int, default=4, help="every Nth session is an A/B (the rest A/A)")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--separate-a", type=int, default=3, help="separate runs of A after each session")
    ap.add_argument("--separate-b", type=int, default=1, help="separate runs of B after each session (0 or 1)")
    ap.add_argument("--time", type=float, default=0.75, help="max_time_s per case and side (split over rounds)")
    ap.add_argument("--clock", default="cpu", choices=("wall", "cpu"), help="ab's --clock")
    ap.add_argument("--pairing", default="samples", choices=("samples", "cases"), help="ab's --pairing")
    ap.add_argument("--affinity", default="same", help="ab's --affinity (none, same, or CPU numbers)")
    ap.add_argument("--threshold", type=float, default=0.03)
    ap.add_argument("--no-ab", action="store_true", help="separate runs only (no ab sessions)")
    ap.add_argument("--bursts", action="store_true", help="a neighbour busy on every CPU in bursts meanwhile")
    ap.add_argument("--analyse", action="store_true", help="only analyse the runs already under --work")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    logf = args.work / "log.json"
    log = json.loads(logf.read_text()) if logf.exists() else {"ab": [], "separate": []}
    if not args.analyse:
        measure(args, args.work, log)
    res = analyse(log, args.threshold)
    text = json.dumps(res, indent=1, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

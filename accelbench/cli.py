"""Command-line interface (typer). Parses, calls one function, prints; no logic.

Typed errors (accelbench.errors) become one line on stderr and their exit code here, and only here.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from . import __version__
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, AccelbenchError
from .textsafe import plain, term

if TYPE_CHECKING:
    from .runner import Interrupted

app = typer.Typer(
    name="accelbench",
    help="Measure how much a GPU accelerates deep-learning work over the CPU, and catch regressions.\n\n"
    "Example: accelbench run suites/cnn.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Piped into a file or a CI log, rich would lay tables out for 80 columns and fold every cell into
# fragments; such logs are read in wide viewers, so use 200 unless COLUMNS says otherwise.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
out = Console(width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)

F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Map user-caused errors to one line and an exit code; internal errors keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AccelbenchError as e:
            err.print(f"[bold red]error:[/] {term(e)}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except _interrupted() as e:
            _ignore_further_signals()
            err.print(f"[yellow]{term(e)}[/]")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            _ignore_further_signals()
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _interrupted() -> tuple[type[Interrupted], ...]:
    """runner.Interrupted, where the runner was loaded (only code that imports it raises it): importing
    the runner for every command cost a 100k-case gate a third of a second of its start."""
    runner = sys.modules.get(f"{__package__}.runner")
    return (runner.Interrupted,) if runner is not None else ()


def _ignore_further_signals() -> None:
    """The process is on its way out with 130/143: a second Ctrl-C must not turn that into death by
    SIGINT (exit -2) half-way through the last message. Only when this module owns the process (main()),
    never for a caller that invoked a command in its own process."""
    import signal
    import threading

    if _OWNS_PROCESS and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


_INDENT_BELOW = 1 << 20  # bytes of compact JSON under which --json output is indented for reading


def _print_json(obj: Any) -> None:
    """``--json`` output: indented for a reader when small; a large document (a 100k-case compare) compact,
    the same JSON: json's C encoder serves only unindented output, and indenting cost a 100k-case
    compare 4 s."""
    text = json.dumps(obj, default=str)
    if len(text) < _INDENT_BELOW:
        text = json.dumps(obj, indent=2, default=str)
    sys.stdout.write(text + "\n")


SuiteArg = Annotated[Path, typer.Argument(help="Suite YAML file, e.g. suites/kernels.yaml.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _backends(backend: str) -> list[str] | None:
    from .errors import UsageError

    if backend == "all":
        return None
    if backend not in ("gpu", "cpu"):
        raise UsageError(f"--backend {backend!r}: choose gpu, cpu or all")
    return [backend]


@app.command()
@guarded
def run(
    suite: SuiteArg,
    backend: Annotated[str, typer.Option("--backend", "-b", help="gpu, cpu or all.")] = "all",
    filter: Annotated[str | None, typer.Option("--filter", "-k", help="Only cases whose name contains TEXT.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke run: few samples, short windows.")] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Results root; the run goes to OUT/<run-id>/.")] = Path(
        "results"),
    no_counters: Annotated[bool, typer.Option("--no-counters", help="Do not sample NVML/psutil counters.")] = False,
    as_json: JsonOpt = False,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Compare with this run (see `compare`).")] = None,
    interleave: Annotated[bool, typer.Option("--interleave", help="With --baseline: re-measure the baseline's "
                                             "suite and this one alternately in one session.")] = False,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved rounds per case.")] = 20,
    allow_different_machines: Annotated[bool, typer.Option("--allow-different-machines", help="With --baseline: "
                                        "compare even when the fingerprints differ (as gate's option).")] = False,
    isolate: Annotated[bool, typer.Option("--isolate", help="Measure each case in a spawned worker process: a "
                                          "crash, an OOM kill or a hang in native code ends the worker, "
                                          "not the run.")] = False,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Measure on the workers of a Dask cluster: "
                                                "tcp://host:port, a scheduler file, or local:N (docs/fleet.md).",
                                                show_default=False)] = None,
    mode: Annotated[str, typer.Option("--mode", help="With --cluster: each (the whole suite on every worker, "
                                      "a run per device) or shard (cases split over identical workers).")] = "each",
) -> None:
    """Run every case of SUITE on the GPU (CuPy) and the CPU (NumPy), validate, time and report.

    Example: accelbench run suites/kernels.yaml --backend cpu --quick
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import suite as suite_mod
    from .report import terminal
    from .runner import RunOptions, run_suite

    s = suite_mod.load(suite)
    opts = RunOptions(backends=_backends(backend), filter=filter, quick=quick, out=out_dir,
                      counters=not no_counters, argv=sys.argv, strict_backend=backend != "all", isolate=isolate)
    if cluster is not None:
        raise typer.Exit(_run_fleet(s, opts, cluster, mode, as_json, baseline is not None or interleave))
    if baseline is not None or interleave:
        raise typer.Exit(_run_with_baseline(s, opts, baseline or "", interleave, rounds, as_json,
                                            allow_different_machines))
    progress = Progress(TextColumn("[bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True, disable=as_json)
    task = progress.add_task("run", total=None, what="")

    def on_start(i: int, n: int, case: Any, b: str) -> None:
        if i == 0:
            progress.start()  # only once the plan is accepted, so a refused suite prints just its error
        progress.update(task, total=n, completed=i, what=term(f"{case.name} @{b}"[:70]))

    def on_end(i: int, n: int, rec: Any) -> None:
        progress.update(task, completed=i + 1)

    try:
        res = run_suite(s, opts, on_start, on_end)
    finally:
        progress.live.stop()  # not Progress.stop(): off a terminal that prints a blank line before any error
    counts = res.counts
    if as_json:
        _print_json({"run_dir": str(res.run_dir), "counts": counts, "cases": terminal.as_json(res.cases)})
    else:
        from .compare import LoadedRun
        from .report import view

        terminal.render(view.run_view(LoadedRun(res.run, res.cases, str(res.run_dir))), out, title=s.name)
        out.print(f"[bold]{terminal.summary_line(counts)}[/]; results in {term(res.run_dir)}")
    raise typer.Exit(EXIT_FAILED if counts["failed"] or counts["error"] else EXIT_OK)


@app.command()
@guarded
def validate(suite: SuiteArg, as_json: JsonOpt = False) -> None:
    """Check a suite (syntax, workloads, parameters, case count, memory) without running it.

    Example: accelbench validate suites/kernels.yaml
    """
    from . import backends
    from . import suite as suite_mod

    s = suite_mod.load(suite)
    pairs = s.select()
    available = {}
    for b in sorted({b for _, b in pairs}):
        be = backends.get(b)
        if be.available:
            available[b] = be.memory_available()
    suite_mod.check_memory(s, pairs, available)
    if as_json:
        _print_json({"suite": s.name, "file": str(suite), "cases": len(s.cases), "runs": len(pairs)})
    else:
        out.print(f"[green]ok[/] {term(suite)}: suite {term(repr(s.name))}, {len(s.cases)} cases, {len(pairs)} case-backend "
              "runs")


@app.command("list")
@guarded
def list_cases(
    suite: SuiteArg,
    backend: Annotated[str, typer.Option("--backend", "-b", help="gpu, cpu or all.")] = "all",
    filter: Annotated[str | None, typer.Option("--filter", "-k", help="Only cases whose name contains TEXT.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the cases SUITE expands to.

    Example: accelbench list suites/kernels.yaml --filter gemm
    """
    from . import suite as suite_mod

    s = suite_mod.load(suite)
    pairs = s.select(_backends(backend), filter)
    if as_json:
        _print_json([{"case_id": c.case_id(b), "name": c.name, "workload": c.workload, "params": c.params_dict,
                      "backend": b, "location": c.location} for c, b in pairs])
        return
    from .report import terminal

    out.print(terminal.cases_table(s.name, pairs))


@app.command()
@guarded
def info(as_json: JsonOpt = False) -> None:
    """Print this machine: CPU, BLAS, memory, Python/NumPy/CuPy versions, GPUs (or why none is usable).

    Example: accelbench info --json
    """
    from . import environment

    env = environment.fingerprint()
    if as_json:
        _print_json(env)
        return
    from .report import terminal

    out.print(terminal.machine_table(env))


@app.command()
def version() -> None:
    """Print accelbench's version."""
    out.print(__version__)


_OWNS_PROCESS = False


def main() -> None:
    global _OWNS_PROCESS
    _OWNS_PROCESS = True
    try:
        app()
    except KeyboardInterrupt:  # one that arrived outside a command (while typer was starting or ending)
        _ignore_further_signals()
        sys.exit(EXIT_INTERRUPTED)


# ---- commands owned by feature modules ----

# -- calibrate (accelbench.calibrate) --


@app.command("calibrate")
@guarded
def calibrate_cmd(
    backend: Annotated[str, typer.Option("--backend", "-b", help="gpu, cpu or all.")] = "all",
    quick: Annotated[bool, typer.Option("--quick", help="Smaller buffers and fewer repeats.")] = False,
    file: Annotated[Path | None, typer.Option("--file", help="Peaks file (default ~/.cache/accelbench/peaks.json "
                                              "or $ACCELBENCH_PEAKS).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure this machine's ceilings (copy/host-device bandwidth, GEMM per dtype; STREAM and GEMM on the
    CPU) and store them with the machine fingerprint; runs then report cases as % of these peaks.

    Example: accelbench calibrate --backend gpu
    """
    from . import calibrate as cal

    res = cal.calibrate(_backends(backend), quick=quick, path=file)
    if as_json:
        _print_json(res)
        return
    from .report import terminal

    out.print(terminal.peaks_table(res))
    if res.get("gpu_skipped"):
        out.print(f"[yellow]gpu skipped:[/] {term(res['gpu_skipped'])}")
    out.print(f"stored in {term(res['file'])}")

# -- report (accelbench.report.html) --


@app.command()
@guarded
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (or their run.json, or a results root: its "
                                               "newest run). With several, each earlier run is compared with "
                                               "the last, which the detail sections describe.",
                                               show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write (a directory gets "
                                                "the default name); default reports/<suite>-<run-id>.html.",
                                                show_default=False)] = None,
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    history: Annotated[bool, typer.Option("--history", help="RUNS are results folders: write the trend page "
                                          "(a chart per case across all their runs, change points marked).")] = False,
) -> None:
    """Write one self-contained HTML report (charts, sortable tables, machines) that opens offline.

    Example: accelbench report results/ -o reports/kernels.html
    """
    from .report import html
    from .results import read_run_record, unfinished_note

    if history:
        from .history.page import write_page

        out.print(f"history page written to {term(write_page(runs, output, title))}")
        return
    _warn([w for r in runs if (w := unfinished_note(read_run_record(r)[1], r))])
    path = html.write_report(runs, output, title)
    out.print(f"report written to {term(path)}")

# -- compare / gate / export (accelbench.compare, accelbench.exports, accelbench.interleave) --

RunArg = Annotated[str, typer.Argument(help="A run directory (or its run.json), a results root (its newest "
                                            "run), or a pytest-benchmark JSON file.", show_default=False)]
ThresholdOpt = Annotated[str, typer.Option("--threshold", "-t", help="Slowdown that counts, e.g. 5% or 0.05; "
                                           "per-workload thresholds in the suite take precedence.")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="Significance level, Holm-corrected over all cases.")]
MetricOpt = Annotated[str, typer.Option("--metric", help="median, mean or min.")]
IgnoreOpt = Annotated[list[str] | None, typer.Option("--ignore-param", help="Match cases ignoring this "
                                                     "parameter (repeatable), e.g. to A/B one knob.")]
MarkdownOpt = Annotated[Path | None, typer.Option("--markdown", help="Also write a Markdown table (PR comment, "
                                                  "$GITHUB_STEP_SUMMARY) to FILE.")]


ReferenceOpt = Annotated[str | None, typer.Option("--reference", help="Machine view: the machine the others "
                                                  "are compared with (label, run directory or id, or 1-based "
                                                  "position); default the first run.", show_default=False)]


def _compare_options(threshold: str, alpha: float, metric: str, ignore: list[str] | None) -> Any:
    from .compare import CompareOptions, parse_fraction

    o = CompareOptions(threshold=parse_fraction(threshold), alpha=alpha, metric=metric,
                       ignore_params=tuple(ignore or ()))
    o.check()
    return o


def _warn(lines: list[str]) -> None:
    for w in lines:
        err.print(f"[bold yellow]warning:[/] {term(w)}", soft_wrap=True)


def _is_step_summary(path: Path) -> bool:
    """Is ``path`` GitHub's job summary file? Its name is the runner's (``.../step_summary_<id>``), so
    compare with $GITHUB_STEP_SUMMARY's value, not the path's text."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return False
    try:
        return os.path.samefile(path, summary)
    except OSError:
        return os.path.abspath(path) == os.path.abspath(summary)


def _write_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically (a full disk leaves the previous file, never a broken one)."""
    from .errors import UsageError
    from .results import atomic_write_text
    from .safeio import os_reason

    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {os_reason(e)}") from None


def _write_markdown(path: Path | None, text: str) -> None:
    from .errors import UsageError
    from .safeio import os_reason

    if path is None:
        return
    if not _is_step_summary(path):
        _write_text(path, text)
        return
    try:  # the job summary collects every step's markdown: append
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {os_reason(e)}") from None


@app.command()
@guarded
def compare(
    base: RunArg,
    new: Annotated[str | None, typer.Argument(help="The run to compare with BASE; omit it to compare the GPU "
                                              "with the CPU within BASE.", show_default=False)] = None,
    threshold: ThresholdOpt = "5%",
    alpha: AlphaOpt = 0.01,
    metric: MetricOpt = "median",
    ignore_param: IgnoreOpt = None,
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
    machines: Annotated[bool, typer.Option("--machines", help="Machine against machine instead (runs from "
                                           "different machines; `accelbench machines` takes any number).")] = False,
    reference: ReferenceOpt = None,
) -> None:
    """Compare two runs case by case (ratio, CI, verdict), or GPU against CPU within one run.

    Example: accelbench compare results/base-run results/new-run --markdown comment.md
    """
    from . import compare as cmp_mod
    from .report import markdown as md

    if machines or reference is not None:
        _machines_out([base, *([new] if new else [])], reference, metric, markdown, as_json)
        return
    opts = _compare_options(threshold, alpha, metric, ignore_param)
    if new is None:
        from .report import engines as eng
        from .report import view

        rv = view.run_view(cmp_mod.load_side(base), metric=opts.metric)
        rows = rv.speedups
        if as_json:
            from dataclasses import asdict

            _print_json([asdict(r) for r in rows])
        else:
            sys.stdout.write(md.speedup_text(rows) + eng.text(rv.engines, opts.metric))
        _write_markdown(markdown, md.speedups(rows) + eng.markdown(rv.engines, opts.metric))
        return
    c = cmp_mod.compare_runs(cmp_mod.load_core(base), cmp_mod.load_core(new), opts)
    if as_json:
        _print_json(c.to_dict())
    else:
        sys.stdout.write(md.text_table(c))
    _warn(c.warnings)
    for d in c.machine:
        err.print(f"[bold yellow]warning:[/] machines differ: {term(d.key)}: {term(repr(d.base))} -> {term(repr(d.new))}",
                  soft_wrap=True)
    if markdown is not None:
        _write_markdown(markdown, md.comparison(c))


@app.command()
@guarded
def gate(
    base: RunArg,
    new: RunArg,
    threshold: ThresholdOpt = "5%",
    alpha: AlphaOpt = 0.01,
    metric: MetricOpt = "median",
    ignore_param: IgnoreOpt = None,
    allow_different_machines: Annotated[bool, typer.Option("--allow-different-machines", help="Gate even when "
                                        "the fingerprints differ (GPU, driver, CUDA, CPU, library versions).")] = False,
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
    history: Annotated[bool, typer.Option("--history", help="BASE is a results folder: gate NEW against each "
                                          "case's last stable segment (its runs on NEW's machine since the last "
                                          "change point; see `accelbench history`).")] = False,
) -> None:
    """CI gate: exit 0 when no case regressed, 1 when one did (each named on one line), 2 on bad input.

    A case regresses when it is slower than its threshold AND the slowdown is significant (Mann-Whitney U,
    Holm-corrected); a faster case never fails the gate. Example: accelbench gate base/ new/ --threshold 5%
    """
    from . import compare as cmp_mod
    from .report import markdown as md

    if history:
        from .history.gate import gate_history

        res = gate_history(base, new, _compare_options(threshold, alpha, metric, ignore_param),
                           allow_different_machines=allow_different_machines)
    else:
        res = cmp_mod.gate(base, new, _compare_options(threshold, alpha, metric, ignore_param),
                           allow_different_machines=allow_different_machines)
    c = res.comparison
    if markdown is not None:  # (a 100k-case comment takes seconds to build)
        _write_markdown(markdown, md.comparison(c))
    _warn(c.warnings)
    for d in c.machine:
        err.print(f"[bold yellow]warning:[/] machines differ: {term(d.key)}: {term(repr(d.base))} -> {term(repr(d.new))}",
                  soft_wrap=True)
    if as_json:
        _print_json(c.to_dict())
    counts = ", ".join(f"{v} {k}" for k, v in c.counts().items() if v)
    for r in c.regressions:
        sys.stdout.write(f"REGRESSION {plain(r.one_line())}\n")
    for r in c.cases:
        if r.verdict == "slower" and r.definition_changed:
            sys.stdout.write(f"not gated (definition changed): {plain(r.one_line())}\n")
        elif r.verdict == "failed":
            sys.stdout.write(f"not gated: {plain(r.one_line())}\n")
    if res.failed:
        sys.stdout.write(f"gate: FAIL, {len(c.regressions)} regression(s) ({counts})\n")
        raise typer.Exit(EXIT_FAILED)
    sys.stdout.write(f"gate: ok, no regression ({counts})\n")


@app.command("export")
@guarded
def export_cmd(
    run: RunArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="pytest-benchmark, gab-smaller, gab-bigger "
                                     "(github-action-benchmark custom) or bencher (Bencher Metric Format).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")] = None,
) -> None:
    """Export a run for dashboards that read pytest-benchmark, github-action-benchmark or Bencher JSON.

    Example: accelbench export results/ --format gab-smaller -o bench.json
    """
    from . import compare as cmp_mod
    from . import exports

    r = cmp_mod.load_side(run)
    text = json.dumps(exports.export(r.run, r.cases, fmt), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    _write_text(output, text)
    err.print(f"wrote {term(output)}")


def _run_with_baseline(s: Any, opts: Any, baseline: str, interleave: bool, rounds: int, as_json: bool,
                       allow_different_machines: bool = False) -> int:
    """`run --baseline [--interleave]`: measure, compare with the baseline, print; returns the exit code
    (1 when a case failed or regressed)."""
    from .errors import UsageError
    from .interleave import run_with_baseline
    from .report import markdown as md

    if not baseline:
        raise UsageError("--interleave needs --baseline BASE_RUN")

    def progress(i: int, n: int, what: str) -> None:
        if not as_json:
            err.print(f"[{i + 1}/{n}] {term(what)}", highlight=False)

    c, bdir, ndir = run_with_baseline(s, opts, baseline, interleave, rounds, progress=progress,
                                      allow_different_machines=allow_different_machines)
    if as_json:
        _print_json({"baseline_dir": str(bdir), "run_dir": str(ndir), "comparison": c.to_dict()})
    else:
        sys.stdout.write(md.text_table(c))
        out.print(f"baseline {'re-measured in ' + term(bdir) if interleave else term(bdir)}; results in {term(ndir)}")
    bad = sum(1 for x in c.cases if x.verdict == "failed")
    return EXIT_FAILED if c.regressions or bad else EXIT_OK

# -- profile (accelbench.profile) --


@app.command("profile")
@guarded
def profile_cmd(
    suite: SuiteArg,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name from the suite's models: mapping "
                                              "(not for an .onnx file).", show_default=False)] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="gpu, cpu or all.")] = "all",
    batch: Annotated[int, typer.Option("--batch", help="Images per step.")] = 64,
    dtype: Annotated[str, typer.Option("--dtype", help="float32 or float64.")] = "float32",
    as_json: JsonOpt = False,
) -> None:
    """Time each layer's forward and backward on each backend: which layer dominates, where the GPU helps.

    Example: accelbench profile suites/cnn.yaml --model mnist-classic --batch 64 (or: profile model.onnx)
    """
    if str(suite).lower().endswith(".onnx"):
        raise typer.Exit(_profile_onnx(suite, backend, batch, as_json))
    if model is None:
        from .errors import UsageError

        raise UsageError("--model is required with a suite file")
    from .profile import profile_suite_model, render

    res = profile_suite_model(suite, model, backend, batch, dtype)
    if as_json:
        _print_json({k: v for k, v in res.items() if k != "result"})
        return
    out.print(render(res["result"], model, batch))
    for b, why in res["skipped"].items():
        out.print(f"[yellow]{b} skipped:[/] {term(why)}")

# -- history (accelbench.history) --


@app.command("history")
@guarded
def history_cmd(
    results_dirs: Annotated[list[Path], typer.Argument(help="Results folders (each holding run directories); "
                                                       "their runs form one history.", show_default=False)],
    metric: Annotated[str, typer.Option("--metric", help="median or min (per run).")] = "median",
    since: Annotated[str | None, typer.Option("--since", help="Only runs started on or after DATE "
                                              "(YYYY-MM-DD or an ISO time).")] = None,
    case: Annotated[str | None, typer.Option("--case", help="Only cases whose id or name contains TEXT.")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of a change point.")] = 0.001,
    min_change: Annotated[str, typer.Option("--min-change", help="Smallest change reported, e.g. 2% "
                                            "(default 0: any significant change).")] = "0",
    repo: Annotated[Path, typer.Option("--repo", help="Git repository whose commit order orders the runs.")] = Path(),
    as_json: JsonOpt = False,
) -> None:
    """Every case's series across the runs, its change points (where, by how much, p-value, the first run
    after each) and the most recent changes. A change of machine is never a change point.

    Example: accelbench history results/ --case gemm
    """
    from .compare import parse_fraction
    from .history import terminal as ht
    from .history.analysis import load_history
    from .history.changepoints import Settings

    st = Settings(alpha=alpha, min_change=parse_fraction(min_change) if min_change.strip() not in ("0", "0%") else 0.0)
    h = load_history(results_dirs, metric=metric, since=since, case=case, settings=st, repo=repo)
    for note in h.notes:
        err.print(f"[yellow]note:[/] {term(note)}", soft_wrap=True)
    for s in h.skipped:
        err.print(f"[bold yellow]skipped:[/] {term(s.reason)}", soft_wrap=True)
    if as_json:
        _print_json(ht.as_json(h))
    else:
        ht.render(h, out)

# -- worker processes, isolation and A/B of two environments (accelbench.worker, accelbench.isolate,
#    accelbench.ab) --


@app.command("worker")
def worker_cmd() -> None:
    """Serve the worker protocol: case specs as JSON lines on stdin, records on stdout (docs/worker-protocol.md).

    Started by `accelbench ab` and `run --isolate`; not meant to be typed. Logs go to stderr.
    """
    from .worker import serve

    raise typer.Exit(serve())


@app.command("ab")
@guarded
def ab_cmd(
    suite: SuiteArg,
    base_env: Annotated[str, typer.Option("--base", help="The baseline environment: a Python interpreter or a "
                                          "virtual-environment folder with accelbench installed.",
                                          show_default=False)],
    new_env: Annotated[str, typer.Option("--new", help="The candidate environment (interpreter or venv folder).",
                                         show_default=False)],
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds; each starts a fresh worker per side (too few to "
                                        "reach --alpha over the suite's cases are refused).")] = 40,  # ab.DEFAULT_ROUNDS
    order: Annotated[str, typer.Option("--order", help="abba or random: which side goes first in a pair.")] = "abba",
    clock: Annotated[str, typer.Option("--clock", help="wall, or cpu: time CPU cases in process CPU seconds (immune "
                                       "to other processes preempting the benchmark).")] = "wall",
    pairing: Annotated[str, typer.Option("--pairing", help="samples: CPU cases alternate single samples between "
                                         "the two workers (default); cases: each side measures the whole "
                                         "case in turn.")] = "samples",
    affinity: Annotated[str, typer.Option("--affinity", help="none; same: both workers of a round on one CPU "
                                          "(a different one each round; for single-threaded CPU code on a "
                                          "shared host); or CPU numbers like 0,2-3 for both.")] = "none",
    threshold: ThresholdOpt = "5%",
    alpha: AlphaOpt = 0.01,
    metric: MetricOpt = "median",
    backend: Annotated[str, typer.Option("--backend", "-b", help="gpu, cpu or all.")] = "all",
    filter: Annotated[str | None, typer.Option("--filter", "-k", help="Only cases whose name contains TEXT.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke run (never a confident verdict).")] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Results root; both sides are written there.")] = Path(
        "results"),
    max_contention: Annotated[float | None, typer.Option("--max-contention", help="Cores other processes may "
                                                         "take while a pair runs before it is re-measured or "
                                                         "flagged (default: half the cores).")] = None,
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A/B two environments (two code versions) on SUITE, interleaved in fresh worker processes; gate exit codes.

    Exit 0 when no case is confirmed slower, 1 when one is, 2 on bad input (an environment without a
    compatible accelbench, a suite that does not load there, different hardware).
    Example: accelbench ab suites/kernels.yaml --base ../base/.venv --new .venv --threshold 3%
    """
    from . import ab as ab_mod
    from .report import markdown as md

    opts = ab_mod.AbOptions(rounds=rounds, order=order, clock=clock, pairing=pairing, affinity=affinity, backends=_backends(backend), filter=filter, quick=quick,
                            out=out_dir, max_contention=max_contention, argv=sys.argv,
                            compare=_compare_options(threshold, alpha, metric, None))

    def progress(msg: str) -> None:
        if not as_json:
            err.print(term(msg), highlight=False)

    res = ab_mod.run_ab(suite, base_env, new_env, opts, progress)
    c = res.comparison
    extra = ab_mod.summary_text(res)
    _write_markdown(markdown, md.comparison(c, title=None) + "\n```\n" + extra + "```\n")
    if as_json:
        _print_json({"base_dir": str(res.base_dir), "new_dir": str(res.new_dir), "comparison": c.to_dict(),
                     "contention": res.contention, "reruns": res.reruns,
                     "software_differences": [{"key": d.key, "base": d.base, "new": d.new} for d in res.software]})
    else:
        sys.stdout.write(md.text_table(c))
        sys.stdout.write(extra)
        for r in c.regressions:
            sys.stdout.write(f"REGRESSION {r.one_line()}\n")
    counts = ", ".join(f"{v} {k}" for k, v in c.counts().items() if v)
    if not as_json:
        head = f"FAIL, {len(c.regressions)} regression(s)" if c.regressions else "ok, no regression"
        sys.stdout.write(f"ab: {head} ({counts})\n")
    raise typer.Exit(EXIT_FAILED if c.regressions else EXIT_OK)

# -- fleet (accelbench.fleet) --


def _run_fleet(s: Any, opts: Any, cluster: str, mode: str, as_json: bool, with_baseline: bool) -> int:
    """`run --cluster`: measure on a Dask cluster, one run directory per device (each) or per group of
    identical workers (shard); returns the exit code (1 when a case failed or errored)."""
    from .compare import LoadedRun
    from .errors import UsageError
    from .fleet import run_fleet
    from .report import terminal, view

    if with_baseline:
        raise UsageError("--cluster cannot be combined with --baseline/--interleave; compare the runs afterwards")

    def notify(msg: str) -> None:
        err.print(f"[yellow]warning:[/] {term(msg)}", soft_wrap=True)

    def on_start(done: int, total: int, case: Any, b: str, worker: str) -> None:
        if not as_json:
            err.print(f"[{done}/{total}] {term(f'{case.name} @{b}'[:70])} on {term(worker)}", highlight=False)

    res = run_fleet(s, opts, cluster, mode, notify=notify, on_start=on_start)
    bad = 0
    runs_json = []
    for lane, r in zip(res.lanes, res.runs, strict=True):
        counts = r.counts
        bad += counts["failed"] + counts["error"]
        runs_json.append({"lane": lane, "run_dir": str(r.run_dir), "counts": counts})
        if not as_json:
            terminal.render(view.run_view(LoadedRun(r.run, r.cases, str(r.run_dir))), out,
                            title=f"{s.name} on {lane}")
            out.print(f"[bold]{terminal.summary_line(counts)}[/] on {term(lane)}; results in {r.run_dir}")
    if as_json:
        _print_json({"mode": mode, "runs": runs_json, "warnings": res.warnings})
    return EXIT_FAILED if bad else EXIT_OK


@app.command("machines")
@guarded
def machines_cmd(
    runs: Annotated[list[str], typer.Argument(help="Run directories from different machines, or a folder of "
                                              "runs (a fleet's --out: every run in it).", show_default=False)],
    reference: ReferenceOpt = None,
    metric: MetricOpt = "median",
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Machine against machine, case by case: time, images/s, GFLOP/s, GB/s, energy per item and each
    machine's speedup over the reference (a view, not a gate).

    Example: accelbench machines results/fleet/ --reference H100
    """
    _machines_out(runs, reference, metric, markdown, as_json)


def _machines_out(paths: list[str], reference: str | None, metric: str, markdown: Path | None,
                  as_json: bool) -> None:
    from . import compare as cmp_mod
    from . import machines as mach
    from .errors import UsageError
    from .report import machines as render

    if metric not in cmp_mod.METRICS:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(cmp_mod.METRICS)}")
    v = mach.view([cmp_mod.load_side(p) for p in mach.expand(paths)], reference, metric)
    if as_json:
        _print_json(v.to_dict())
    else:
        sys.stdout.write(render.text(v))
    _write_markdown(markdown, render.markdown(v))

# -- onnx (accelbench.onnx.commands, accelbench.onnx.profile) --


@app.command("inspect")
@guarded
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="An ONNX model file.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Inputs and outputs, opset, op types (count, supported), parameters, FLOPs and weight bytes per image,
    estimated peak memory per batch size.

    Example: accelbench inspect resnet50.onnx --json
    """
    from .onnx.commands import inspect_model, render_inspect

    info = inspect_model(model)
    if as_json:
        _print_json(info)
    else:
        out.print(render_inspect(info))


def _profile_onnx(model: Path, backend: str, batch: int, as_json: bool) -> int:
    from .onnx.profile import profile_model, render

    _backends(backend)
    res = profile_model(model, backend, batch)
    if as_json:
        _print_json(res)
        return EXIT_OK
    out.print(render(res))
    for b, why in res["skipped"].items():
        out.print(f"[yellow]{term(b)} skipped:[/] {term(why)}")
    return EXIT_OK

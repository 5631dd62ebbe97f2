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
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, AccelbenchError

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
        from .runner import Interrupted

        try:
            return fn(*args, **kwargs)
        except AccelbenchError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except Interrupted as e:
            err.print(f"[yellow]{e}[/]")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


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
                      counters=not no_counters, argv=sys.argv, strict_backend=backend != "all")
    if baseline is not None or interleave:
        raise typer.Exit(_run_with_baseline(s, opts, baseline or "", interleave, rounds, as_json))
    progress = Progress(TextColumn("[bold]{task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True, disable=as_json)
    task = progress.add_task("run", total=None, what="")

    def on_start(i: int, n: int, case: Any, b: str) -> None:
        if i == 0:
            progress.start()  # only once the plan is accepted, so a refused suite prints just its error
        progress.update(task, total=n, completed=i, what=escape(f"{case.name} @{b}"[:70]))

    def on_end(i: int, n: int, rec: Any) -> None:
        progress.update(task, completed=i + 1)

    try:
        res = run_suite(s, opts, on_start, on_end)
    finally:
        progress.stop()
    counts = res.counts
    if as_json:
        _print_json({"run_dir": str(res.run_dir), "counts": counts, "cases": terminal.as_json(res.cases)})
    else:
        terminal.render(res.cases, out, title=s.name)
        out.print(f"[bold]{terminal.summary_line(counts)}[/]; results in {res.run_dir}")
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
        out.print(f"[green]ok[/] {suite}: suite {s.name!r}, {len(s.cases)} cases, {len(pairs)} case-backend runs")


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
    from rich.table import Table

    t = Table(title=f"{s.name}: {len(pairs)} case-backend runs", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("case")
    t.add_column("backend")
    t.add_column("defined at")
    for i, (c, b) in enumerate(pairs, 1):
        t.add_row(str(i), c.name, b, c.location)
    out.print(t)


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
    from rich.table import Table

    t = Table(show_header=False, title="accelbench info", title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", overflow="fold")
    cpu = env["cpu"]
    t.add_row("CPU", f"{cpu['model']} ({cpu['physical_cores']} cores, {cpu['logical_cores']} threads)")
    for b in env["blas"]:
        if "error" in b:
            t.add_row("BLAS", b["error"])
        else:
            t.add_row("BLAS", f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads, "
                              f"{b.get('threading_layer')})")
    t.add_row("memory", f"{env['memory_total_bytes'] / 2**30:.1f} GiB "
                        f"({env['volatile']['memory_available_bytes'] / 2**30:.1f} GiB available)")
    t.add_row("OS", env["platform"])
    t.add_row("Python", f"{env['python']['version']} ({env['python']['executable']})")
    t.add_row("packages", ", ".join(f"{k} {v}" for k, v in env["packages"].items()))
    g = env.get("gpu", {})
    if g.get("available"):
        t.add_row("GPU", f"{g['name']} (cc {g['compute_capability']}, {g['multiprocessors']} SMs, "
                         f"{g['memory_total_bytes'] / 2**30:.1f} GiB)")
        t.add_row("driver / CUDA", f"{g.get('driver_version', '?')} / runtime {g['cuda_runtime_version']}, "
                                   f"driver API {g['cuda_driver_version']}")
        if "uuid" in g:
            t.add_row("GPU UUID", g["uuid"])
    else:
        t.add_row("GPU", f"[yellow]none usable: {g.get('reason')}[/]")
    out.print(t)


@app.command()
def version() -> None:
    """Print accelbench's version."""
    out.print(__version__)


def main() -> None:
    app()


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
    from rich.table import Table

    t = Table(title=f"peaks of this machine (key {res['key']})", title_justify="left")
    t.add_column("backend")
    t.add_column("ceiling")
    t.add_column("value", justify="right")
    for b in ("gpu", "cpu"):
        for k, v in (res.get(b) or {}).items():
            if isinstance(v, float) and (k.endswith("gbps") or k.endswith("gb_per_s") or k.endswith("gflops")):
                unit = "GFLOP/s" if k.endswith("gflops") else "GB/s"
                t.add_row(b, k, f"{v:,.1f} {unit}")
    for k, v in (res.get("theoretical") or {}).items():
        t.add_row("gpu", f"{k} (theoretical)", f"{v:,.1f} GB/s")
    out.print(t)
    if res.get("gpu_skipped"):
        out.print(f"[yellow]gpu skipped:[/] {escape(str(res['gpu_skipped']))}")
    out.print(f"stored in {res['file']}")

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
) -> None:
    """Write one self-contained HTML report (charts, sortable tables, machines) that opens offline.

    Example: accelbench report results/ -o reports/kernels.html
    """
    from .report import html

    path = html.write_report(runs, output, title)
    out.print(f"report written to {path}")

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


def _compare_options(threshold: str, alpha: float, metric: str, ignore: list[str] | None) -> Any:
    from .compare import CompareOptions, parse_fraction

    o = CompareOptions(threshold=parse_fraction(threshold), alpha=alpha, metric=metric,
                       ignore_params=tuple(ignore or ()))
    o.check()
    return o


def _write_markdown(path: Path | None, text: str) -> None:
    from .errors import UsageError

    if path is None:
        return
    try:
        with open(path, "a" if str(path).endswith("GITHUB_STEP_SUMMARY") else "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror}") from None


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
) -> None:
    """Compare two runs case by case (ratio, CI, verdict), or GPU against CPU within one run.

    Example: accelbench compare results/base-run results/new-run --markdown comment.md
    """
    from . import compare as cmp_mod
    from .report import markdown as md

    opts = _compare_options(threshold, alpha, metric, ignore_param)
    if new is None:
        run = cmp_mod.load_side(base)
        rows = cmp_mod.speedups(run, metric=opts.metric)
        if as_json:
            from dataclasses import asdict

            _print_json([asdict(r) for r in rows])
        else:
            sys.stdout.write(md.speedup_text(rows))
        _write_markdown(markdown, md.speedups(rows))
        return
    c = cmp_mod.compare_runs(cmp_mod.load_side(base), cmp_mod.load_side(new), opts)
    if as_json:
        _print_json(c.to_dict())
    else:
        sys.stdout.write(md.text_table(c))
    for d in c.machine:
        err.print(f"[bold yellow]warning:[/] machines differ: {escape(d.key)}: {d.base!r} -> {d.new!r}",
                  soft_wrap=True)
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
) -> None:
    """CI gate: exit 0 when no case regressed, 1 when one did (each named on one line), 2 on bad input.

    A case regresses when it is slower than its threshold AND the slowdown is significant (Mann-Whitney U,
    Holm-corrected); a faster case never fails the gate. Example: accelbench gate base/ new/ --threshold 5%
    """
    from . import compare as cmp_mod
    from .report import markdown as md

    res = cmp_mod.gate(base, new, _compare_options(threshold, alpha, metric, ignore_param),
                       allow_different_machines=allow_different_machines)
    c = res.comparison
    _write_markdown(markdown, md.comparison(c))
    for d in c.machine:
        err.print(f"[bold yellow]warning:[/] machines differ: {escape(d.key)}: {d.base!r} -> {d.new!r}",
                  soft_wrap=True)
    if as_json:
        _print_json(c.to_dict())
    counts = ", ".join(f"{v} {k}" for k, v in c.counts().items() if v)
    for r in c.regressions:
        sys.stdout.write(f"REGRESSION {r.one_line()}\n")
    for r in c.cases:
        if r.verdict == "slower" and r.definition_changed:
            sys.stdout.write(f"not gated (definition changed): {r.one_line()}\n")
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
    from .errors import UsageError

    r = cmp_mod.load_side(run)
    text = json.dumps(exports.export(r.run, r.cases, fmt), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{output}: cannot write: {e.strerror}") from None
    err.print(f"wrote {output}")


def _run_with_baseline(s: Any, opts: Any, baseline: str, interleave: bool, rounds: int, as_json: bool) -> int:
    """`run --baseline [--interleave]`: measure, compare with the baseline, print; returns the exit code
    (1 when a case failed or regressed)."""
    from .errors import UsageError
    from .interleave import run_with_baseline
    from .report import markdown as md

    if not baseline:
        raise UsageError("--interleave needs --baseline BASE_RUN")

    def progress(i: int, n: int, what: str) -> None:
        if not as_json:
            err.print(f"[{i + 1}/{n}] {escape(what)}", highlight=False)

    c, bdir, ndir = run_with_baseline(s, opts, baseline, interleave, rounds, progress=progress)
    if as_json:
        _print_json({"baseline_dir": str(bdir), "run_dir": str(ndir), "comparison": c.to_dict()})
    else:
        sys.stdout.write(md.text_table(c))
        out.print(f"baseline {'re-measured in ' + str(bdir) if interleave else str(bdir)}; results in {ndir}")
    bad = sum(1 for x in c.cases if x.verdict == "failed")
    return EXIT_FAILED if c.regressions or bad else EXIT_OK

# -- profile (accelbench.models.profile) --


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
    from .models.profile import profile_suite_model, render

    res = profile_suite_model(suite, model, backend, batch, dtype)
    if as_json:
        _print_json({k: v for k, v in res.items() if k != "result"})
        return
    out.print(render(res["result"], model, batch))
    for b, why in res["skipped"].items():
        out.print(f"[yellow]{b} skipped:[/] {escape(why)}")

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
        out.print(f"[yellow]{escape(b)} skipped:[/] {escape(why)}")
    return EXIT_OK

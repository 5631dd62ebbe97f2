"""Command-line interface (typer). Parses, calls one function, prints; no logic.

Typed errors (accelbench.errors) become one line on stderr and their exit code here, and only here.
"""

from __future__ import annotations

import functools
import json
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

out = Console()
err = Console(stderr=True, highlight=False)

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

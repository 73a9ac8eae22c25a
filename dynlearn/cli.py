"""Command-line interface: ``dynlearn list | run | show | analyze | browse | verify | reproduce``.

Results go to stdout (``--format json`` where it applies), and nothing else: while a command works, whatever
it or a library it calls prints is sent to stderr (:func:`_results_only`), with progress bars, logs and warnings.
A command that writes files ends with one stderr line ``wrote ...`` saying what it wrote where. Every error
dynlearn raises on purpose is printed as one line ``error: ...`` and exits with status 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from .errors import DynlearnError
from .safety import check_page_target, check_store_target

#: errors printed as one line ``error: ...`` with exit status 2 (bad input, refused paths, file-system refusals)
USER_ERRORS = (DynlearnError, OSError)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.callback()
def _global(threads: int = typer.Option(
        0, min=0, help="torch threads for analyzers; 0: chosen from each problem's size (one for small problems); "
                       "an analyzer's own threads option wins, training uses train.threads")) -> None:
    from .threads import set_analyzer_threads

    set_analyzer_threads(threads)


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _progress(show: Optional[bool]) -> None:
    from .progress import set_progress

    set_progress(show)


def _progress_option(help: str = "progress bars on stderr (default: when stderr is a terminal)"):
    return typer.Option(None, "--progress/--no-progress", help=help, show_default=False)


#: the stdout of the running command, where its results go (stack: commands run inside tests' runners)
_STDOUT: list = []


def _results_only(command):
    """Run ``command`` with ``sys.stdout`` sent to stderr, so that only :func:`_result` writes reach stdout.

    Page writers, plotting libraries and other third-party code print progress and notes on stdout; under
    ``--format json`` that would make the output invalid.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        _STDOUT.append(sys.stdout)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return command(*args, **kwargs)
        finally:
            _STDOUT.pop()

    return wrapper


def _result(text: str) -> None:
    """Write a command's result (a table, JSON) to its stdout."""
    typer.echo(text, file=_STDOUT[-1] if _STDOUT else sys.stdout)


@app.command("list")
@_results_only
def list_cmd(
    kind: Optional[str] = typer.Option(None, help="systems | analyzers | datasets | reproductions"),
    fmt: str = typer.Option("text", "--format", help="text or json"),
) -> None:
    """List every plugin with a one-line description (broken plugins with their error)."""
    from .registry import default_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            infos = default_registry().info(kind)
        except USER_ERRORS as exc:
            _fail(exc)
    if fmt == "json":
        _result(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    current = None
    for i in infos:
        if i.kind != current:
            current = i.kind
            _result(f"{i.kind}:")
        if i.ok:
            _result(f"  {i.name:<24} {i.description}")
        else:
            _result(f"  {i.name:<24} BROKEN ({i.source}): {i.error}")


@app.command()
@_results_only
def run(
    experiment: Path = typer.Argument(..., help="experiment TOML file"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="result store (default dynlearn-results/<name>.zarr)"),
    overwrite: bool = typer.Option(False, help="replace a store holding a different experiment"),
    workers: int = typer.Option(1, help="train seed shards on this many dask.distributed worker processes"),
    repair: bool = typer.Option(False, help="recompute the damaged chunks of the store's run (see dynlearn verify)"),
    progress: Optional[bool] = _progress_option(),
) -> None:
    """Train the experiment (seeds x hyper-parameters as one batch) into a zarr store; resumes if interrupted."""
    from .config import load_experiment
    from .api import run_experiment

    _progress(progress)
    try:
        exp = load_experiment(experiment)
        path = out or Path("dynlearn-results") / f"{exp.config['name']}.zarr"
        if workers > 1:
            from .distributed import run_sharded

            if repair:
                raise DynlearnError("--repair recomputes a store in one process: leave out --workers")

            run_sharded(exp, path, n_workers=workers)
            typer.echo(f"wrote {path} ({workers} workers)", err=True)
            return
        res = run_experiment(exp, path, overwrite=overwrite, repair=repair)
    except USER_ERRORS as exc:
        _fail(exc)
    note = f" (resumed at epoch {res.resumed_from})" if res.resumed_from else ""
    groups = "".join(f", /{a.get('group', a['name'])}" for a in exp.config.get("analyze", []))
    typer.echo(f"wrote {path}: {res.epochs_run} epochs in {res.seconds_total:.1f} s{note}{groups}", err=True)


@app.command()
@_results_only
def show(
    store: Path = typer.Argument(..., help="result store"),
    fmt: str = typer.Option("text", "--format", help="text or json"),
) -> None:
    """Summarise a store: experiment, progress, outcomes, groups, claims."""
    from .summary import summarize, summary_text

    try:
        info = summarize(store)
    except USER_ERRORS as exc:
        _fail(exc)
    _result(json.dumps(info, indent=2) if fmt == "json" else summary_text(info))


@app.command()
@_results_only
def analyze(
    store: Path = typer.Argument(..., help="result store holding a training run"),
    analyzer: str = typer.Argument(..., help="analyzer name (dynlearn list --kind analyzers)"),
    option: list[str] = typer.Option([], "--set", help="analyzer option key=value (value parsed as JSON)"),
    group: Optional[str] = typer.Option(None, help="group name (default: the analyzer name); letters, digits, _ . -"),
    overwrite: bool = typer.Option(False, help="replace an existing analyzer group of that name (atomically)"),
    epochs: Optional[str] = typer.Option(None, help="stored epochs to analyse (default: all): 'last', '0,500,999', "
                                                    "'::100' (every 100th), '100:500'"),
    progress: Optional[bool] = _progress_option(),
) -> None:
    """Run an analyzer on the stored epochs of a run (every one, or --epochs) and write its result as a group.

    The run's own groups (train, params, state, claims) are never a target."""
    from .api import analyze as _analyze

    _progress(progress)
    opts = {}
    for item in option:
        if "=" not in item:
            _fail(DynlearnError(f"--set expects key=value, got {item!r}"))
        k, v = item.split("=", 1)
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    try:
        ds = _analyze(store, analyzer, group=group, overwrite=overwrite, epochs=epochs, **opts)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"wrote /{group or analyzer} to {store}: {dict(ds.sizes)}", err=True)


@app.command()
@_results_only
def browse(
    store: Path = typer.Argument(..., help="result store"),
    html: Optional[Path] = typer.Option(None, help="write a standalone HTML page (JS inlined, no network)"),
    overwrite: bool = typer.Option(False, help="replace an earlier page at the default path STORE.html"),
    serve: bool = typer.Option(False, help="serve the page live instead"),
    port: int = typer.Option(5006, help="port for --serve"),
    host: str = typer.Option("127.0.0.1", help="address --serve listens on (0.0.0.0: every interface)"),
    progress: Optional[bool] = _progress_option("the page's progress (one step per view) on stderr (default: when "
                                                "stderr is a terminal)"),
) -> None:
    """Browse a store: figures of the run, the reproduction and every analyzer, with sliders over sweep dims."""
    from .views import serve as _serve
    from .views import write_html

    _progress(progress)
    try:
        check_store_target(store, must_exist=True)
        if serve:
            _serve(store, port=port, host=host, show=False)
            return
        target = html or store.with_name(store.name + ".html" if store.suffix != ".zarr" else store.stem + ".html")
        write_html(store, target, replace=html is not None or overwrite)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"wrote {target}", err=True)


@app.command()
@_results_only
def verify(
    store: Path = typer.Argument(..., help="result store"),
    fmt: str = typer.Option("text", "--format", help="text or json"),
) -> None:
    """Check a store: every zarr.json parses, every chunk a committed block or an analyzer wrote is there and
    passes its checksum. Names every damaged file; exit status 1 if one is damaged, 0 if the store is intact."""
    from .integrity import verify as _verify

    try:
        report = _verify(store)
    except USER_ERRORS as exc:
        _fail(exc)
    _result(json.dumps(report.to_dict(), indent=2) if fmt == "json" else report.text())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@_results_only
def reproduce(
    name: str = typer.Argument(..., help="reproduction name (dynlearn list --kind reproductions)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="result store (default dynlearn-results/<name>.zarr)"),
    quick: bool = typer.Option(False, help="reduced version (what the test-suite checks)"),
    overwrite: bool = typer.Option(False, help="start again instead of resuming"),
    html: Optional[Path] = typer.Option(None, help="also write the browse page here"),
    progress: Optional[bool] = _progress_option(),
    fmt: str = typer.Option("text", "--format", help="text or json (the claims table)"),
) -> None:
    """Reproduce a paper's claims: runs, stores every number, prints the claims table (exit 1 if one fails)."""
    from .api import run_reproduction
    from .summary import claims_text

    from .registry import get

    _progress(progress)
    try:
        path = out or get("reproductions", name)(quick=quick).default_out()
        if html is not None:
            check_page_target(html)
        tree = run_reproduction(name, path, quick=quick, overwrite=overwrite)
        if html is not None:
            from .views import write_html

            write_html(path, html)
    except USER_ERRORS as exc:
        _fail(exc)
    claims = tree["claims"].to_dataset()
    if fmt == "json":
        _result(json.dumps([{k: _py(claims[k].values[i]) for k in claims.variables}
                            for i in range(claims.sizes["claim"])], indent=2))
    else:
        _result(claims_text(claims))
    passed = int(claims["passed"].sum())
    page = f" and the page {html}" if html is not None else ""
    typer.echo(f"wrote {path}{page}: {passed}/{claims.sizes['claim']} claims reproduced", err=True)
    if passed < claims.sizes["claim"]:
        raise typer.Exit(1)


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def main() -> None:
    warnings.formatwarning = _one_line_warning  # e.g. "warning: dynlearn: systems plugin 'x' ... failed to load: ..."
    try:
        app()
    except USER_ERRORS as exc:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

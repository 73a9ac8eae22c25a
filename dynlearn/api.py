"""The application layer: what ties config, training, stores, plugins and analyzers together.

- :func:`train` / :func:`run_experiment`: train (or resume) an experiment into a store, then its ``[[analyze]]``
  steps;
- :func:`analyze`: an analyzer on a store's run, written as a group;
- :func:`run_analyzer` (behind :meth:`dynlearn.Analyzer.run`): resolve what an analyzer runs on (a System or
  its name, a training run or its store; :func:`resolve_target`), select epochs, compute the analyzers it
  requires, then :meth:`~dynlearn.Analyzer.run_resolved`;
- :func:`run_reproduction`: a paper's claims into a store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .analyzer import Analyzer, set_application_run
from .config import Experiment, resolve_experiment
from .epochs import parse_epochs, select_epochs
from .errors import ConfigError, ParameterError, StoreError
from .integrity import store_lock
from .plugins import get_plugin, make_analyzer, make_system
from .reproduce import claims_dataset
from .safety import check_store_target, remove, scratch_dir
from .store import (ANALYSIS, check_analysis_target, consolidate, looks_like_store, open_store, root_attrs,
                    write_group)
from .system import System, TrainableSystem
from .train import RunResult, _Runner

__all__ = ["analyze", "train", "run_experiment", "run_analyzer", "resolve_target", "trainable_from",
           "run_reproduction"]


def analyze(
    store: str | os.PathLike,
    analyzer: str,
    *,
    group: str | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
    epochs: Any = None,
    **options: Any,
) -> xr.Dataset:
    """Run analyzer ``analyzer`` (with ``options``) on the training run in ``store``; write ``/<group>``.

    ``group`` (default: the analyzer's name) must be a plain name (:func:`dynlearn.safety.check_name`), not one of
    the groups the run owns; an existing analyzer group is replaced (atomically) only with ``overwrite``. These
    checks, the analyzer's name and options and the form of ``epochs`` are checked before any work. Upstream
    analyzers it requires are read from the store when present (e.g. ``bifurcations`` reads ``/fixed_points``)
    and hold every epoch analysed, computed otherwise.

    Parameters
    ----------
    store
        The result store holding a training run.
    analyzer
        The analyzer's registry name (an unknown name suggests the closest).
    group
        The group written (default: ``analyzer``).
    overwrite
        Replace an existing analyzer group of that name.
    show_progress
        Progress bars on stderr (``None``: :func:`dynlearn.progress.progress_enabled`; ``False``: none).
    epochs
        Which stored epochs to analyse (:mod:`dynlearn.epochs`): ``None`` (every stored epoch), ``"last"``, a list
        of epochs, ``"::10"`` or ``{"every": 10}``, ``"100:500"``.
    **options
        The analyzer's options.

    Returns
    -------
    xarray.Dataset
        The result, also written to ``/<group>``.
    """
    check_store_target(store, must_exist=True)
    an = make_analyzer({"name": analyzer, **options})
    epochs = None if epochs is None else parse_epochs(epochs)
    with store_lock(store):  # one writer at a time; the group being replaced may be the damaged part
        target = check_analysis_target(store, group or analyzer, overwrite=overwrite)
        tree = open_store(store, skip=(target,))
        upstream = {}
        for req in an.requires:
            if req in tree.children:
                upstream[req] = tree[req].to_dataset()
        result = an.run(tree, upstream=upstream, show_progress=show_progress, epochs=epochs)
        write_group(store, target, result, overwrite=overwrite, role=ANALYSIS)
    return result


# -- analyzers on what a user has ----------------------------------------------------------------------------
def trainable_from(tree: xr.DataTree | str | os.PathLike) -> System:
    """Rebuild the system whose parameters a run store holds: the trainable (with its task) of a training run, or
    the plain System of a store :class:`dynlearn.recorder.Recorder` wrote (a ``ModuleSystem``: its config without
    the weights, which are in ``/params``)."""
    attrs = root_attrs(tree)
    cfg = attrs.get("config", {})
    if "system" not in cfg:
        raise StoreError("store has no training run (no system in its config)")
    sys_cfg = dict(cfg["system"])
    if cfg.get("task"):
        sys_cfg["task"] = cfg["task"]
    return make_system(sys_cfg)


def resolve_target(source: Any, params: Any = None, epochs: Any = None) -> tuple[System, Any, str]:
    """Normalise an analyzer input to ``(system, params, on_nan)``.

    ``source`` may be a System, a system name or config mapping, a training-run ``xr.DataTree``, or the path of
    a result store. For a run, the system is the trainable's state dynamics (``dynamics_dataset``; for a store a
    Recorder wrote, the recorded System itself) and the parameters are the stored checkpoints (``/params``); NaN
    parameters of diverged networks are masked (``on_nan="mask"``, and other variables the Dataset carries are
    ignored). Parameters the caller gives
    (``on_nan="raise"``) are checked strictly: an unknown name is an error (see :func:`~dynlearn.sweep.flatten`).

    ``epochs`` selects the run's stored epochs to study (:mod:`dynlearn.epochs`; ``None``: all of them). This is
    the one place a selection is applied, whichever way an analyzer runs; it also applies to given parameters
    with an ``epoch`` dim, and is an error for anything else.
    """
    if isinstance(source, System) or (
            isinstance(source, (str, Mapping)) and not isinstance(source, xr.DataTree)
            and not looks_like_store(source)):
        system = source if isinstance(source, System) else make_system(source)
        if epochs is not None:
            if not (isinstance(params, xr.Dataset) and "epoch" in params.dims):
                raise ParameterError(f"epochs={epochs!r} selects epochs of a training run (a store or its tree); "
                                     f"{system.name!r} was given with parameters that have no 'epoch' dim")
            params = _select_epochs(params, epochs)
        return system, params, "raise"
    tree = open_store(source) if not isinstance(source, xr.DataTree) else source
    system = trainable_from(tree)
    run_params = tree["params"].to_dataset() if params is None else params
    if epochs is not None:
        run_params = _select_epochs(run_params, epochs)
    if isinstance(system, TrainableSystem):
        system, run_params = system.dynamics_dataset(run_params)
    return system, run_params, "mask"


def _select_epochs(params: xr.Dataset, epochs: Any) -> xr.Dataset:
    return params.sel(epoch=select_epochs(params["epoch"].values, epochs))


def _align_upstream(upstream: Mapping[str, xr.Dataset], params: Any) -> dict[str, xr.Dataset]:
    """Upstream results at the epochs being analysed; one that lacks some of them is left out (recomputed)."""
    coords = getattr(params, "coords", {})
    if "epoch" not in coords:
        return dict(upstream)
    want = coords["epoch"].values
    out = {}
    for name, ds in upstream.items():
        if "epoch" not in ds.dims:
            out[name] = ds
        elif set(want.tolist()) <= set(ds["epoch"].values.tolist()):
            out[name] = ds if len(want) == ds.sizes["epoch"] and (ds["epoch"].values == want).all() \
                else ds.sel(epoch=want)
    return out


def run_analyzer(analyzer: Analyzer, source: Any, params: Any = None, *,
                 upstream: Mapping[str, xr.Dataset] | None = None, show_progress: bool | None = None,
                 epochs: Any = None) -> xr.Dataset:
    """:meth:`dynlearn.Analyzer.run`: resolve ``source``, select ``epochs``, compute the required analyzers that
    ``upstream`` lacks (or lacks an analysed epoch of), then analyse."""
    system, params, on_nan = resolve_target(source, params, epochs)
    return _run_with_requires(analyzer, system, params, on_nan, _align_upstream(upstream or {}, params),
                              show_progress)


def _run_with_requires(analyzer: Analyzer, system: System, params: Any, on_nan: str,
                       upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
    upstream = dict(upstream)
    for req in analyzer.requires:
        if req not in upstream:
            upstream[req] = _run_with_requires(make_analyzer(req), system, params, on_nan, {}, show_progress)
    return analyzer.run_resolved(system, params, on_nan, upstream, show_progress)


set_application_run(run_analyzer)


# -- training ---------------------------------------------------------------------------------------------------
def train(
    system: TrainableSystem,
    *,
    epochs: int,
    seeds: int | Sequence[int] = 1,
    sweep: Mapping[str, Any] | None = None,
    hyper: Mapping[str, float] | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
    name: str = "train",
    analyze: Sequence[Mapping[str, Any]] = (),
    **train_options: Any,
) -> RunResult:
    """Train ``system`` for every seed and hyper-parameter combination at once (see :func:`run_experiment`).

    ``train_options`` are the other ``[train]`` keys of an experiment file (``optimizer``, ``dtype``,
    ``chunk``, ``checkpoint_every``, ``max_norm``, ``schedule``, ...). With ``out=None`` the run is kept in memory.
    """
    cfg = system.get_params()
    task = cfg.pop("task", {}) or {}
    raw = {
        "name": name,
        "system": {"name": system.name, **cfg},
        "task": task,
        "train": {"epochs": epochs, "seeds": seeds if isinstance(seeds, int) else list(seeds), **train_options},
        "sweep": {k: list(np.atleast_1d(np.asarray(v, dtype=float)).tolist()) for k, v in (sweep or {}).items()},
        "hyper": dict(hyper or {}),
        "analyze": [dict(a) for a in analyze],
    }
    exp = resolve_experiment(raw, source=name)
    return run_experiment(exp, out, overwrite=overwrite, show_progress=show_progress)


def run_experiment(
    exp: Experiment,
    out: str | os.PathLike | None,
    *,
    overwrite: bool = False,
    repair: bool = False,
    show_progress: bool | None = None,
) -> RunResult:
    """Run (or resume) an experiment into the store ``out``; then its ``[[analyze]]`` steps.

    The store is locked while it is written (:func:`dynlearn.integrity.store_lock`): a second writer is refused.
    A resumed run first verifies the run's groups (:func:`dynlearn.integrity.verify`) and refuses a damaged store;
    ``repair=True`` recomputes its damaged committed chunks instead (:mod:`dynlearn.repair`), bitwise as before.

    If ``out`` holds an unfinished run of the same experiment (same config hash) it resumes from its last
    committed chunk; a store of a different experiment is an error unless ``overwrite``. ``out`` is checked
    first (:func:`dynlearn.safety.check_store_target`): a file, a symlink or a directory that is not a dynlearn
    store is refused and left untouched, with or without ``overwrite``.
    """
    temp_dir = None
    if out is None:
        temp_dir = scratch_dir()
        out = temp_dir / "run.zarr"
    path = check_store_target(out, overwrite=overwrite)
    if repair and overwrite:
        raise ConfigError("--repair keeps the store and --overwrite replaces it: give one of them")
    try:
        with store_lock(path):
            runner = _Runner(exp, path, show_progress)
            result = runner.run(overwrite=overwrite, repair=repair)
            if exp.config.get("analyze"):
                for spec in exp.config["analyze"]:
                    spec = dict(spec)
                    aname = spec.pop("name")
                    # the experiment declares these groups: a resumed or repeated run replaces its own results
                    analyze(path, aname, show_progress=show_progress, overwrite=True, **spec)
                result.tree = open_store(path)
        if temp_dir is not None:
            result.tree = result.tree.load()
            result.path = None
        return result
    finally:
        if temp_dir is not None:
            remove(temp_dir)


# -- reproductions ----------------------------------------------------------------------------------------------
def run_reproduction(name: str, out: str | os.PathLike | None = None, *, quick: bool = False,
                     overwrite: bool = False, show_progress: bool | None = None) -> xr.DataTree:
    """Run reproduction ``name`` into ``out`` (default ``dynlearn-results/<name>.zarr``); returns the tree."""
    rep = get_plugin("reproductions", name)(quick=quick)
    path = check_store_target(out if out is not None else rep.default_out(), overwrite=overwrite)
    with store_lock(path):  # one writer at a time (Reproduction.create_store re-takes it on the new store)
        claims = rep.run(path, overwrite=overwrite, show_progress=show_progress)
        ds = claims_dataset(claims)
        ds.attrs["reproduction"] = name
        ds.attrs["paper"] = rep.paper
        ds.attrs["quick"] = json.dumps(quick)
        write_group(path, "claims", ds)
        consolidate(path)
    return open_store(path)

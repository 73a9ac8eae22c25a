"""High-level entry points that tie config, training, stores and analyzers together."""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from .analyzer import make_analyzer
from .integrity import store_lock
from .safety import check_store_target
from .store import ANALYSIS, check_analysis_target, open_store, write_group

__all__ = ["analyze"]


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
    from .epochs import parse_epochs

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

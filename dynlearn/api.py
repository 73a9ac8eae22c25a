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
    **options: Any,
) -> xr.Dataset:
    """Run analyzer ``analyzer`` (with ``options``) on the training run in ``store``; write ``/<group>``.

    ``group`` (default: the analyzer's name) must be a plain name (:func:`dynlearn.safety.check_name`), not one of
    the groups the run owns; an existing analyzer group is replaced (atomically) only with ``overwrite``. These
    checks run before any work. Upstream analyzers it requires are read from the store when present (e.g.
    ``bifurcations`` reads ``/fixed_points``), computed otherwise. Returns the result Dataset.
    """
    check_store_target(store, must_exist=True)
    with store_lock(store):  # one writer at a time; the group being replaced may be the damaged part
        target = check_analysis_target(store, group or analyzer, overwrite=overwrite)
        tree = open_store(store, skip=(target,))
        an = make_analyzer({"name": analyzer, **options})
        upstream = {}
        for req in an.requires:
            if req in tree.children:
                upstream[req] = tree[req].to_dataset()
        result = an.run(tree, upstream=upstream, show_progress=show_progress)
        write_group(store, target, result, overwrite=overwrite, role=ANALYSIS)
    return result

"""``dynlearn run ... --repair``: recompute the damaged part of a training run, bitwise as an undamaged run.

Training is a deterministic function of the resume state, so a damaged committed chunk of epochs ``r`` (a chunk
file missing or corrupt, found by :func:`dynlearn.integrity.verify`) is recomputed by marking chunks ``r, r+1,
...`` uncommitted and resuming from the state at the end of chunk ``r - 1``. The state has two slots, holding the
last two committed chunks; when the one needed is gone (``r`` earlier than the second-to-last committed chunk, or
the slot bookkeeping itself damaged) the run restarts from epoch 0 and rewrites everything. Metadata of the run's
groups (``zarr.json`` files) and the coordinates written when the store was preallocated are restored from a
freshly preallocated copy of the layout, which is what the damaged files held.

Not repaired here: the root ``zarr.json`` (it records which experiment the store holds; restore it from a backup
or start again with ``--overwrite``) and analyzer groups (``dynlearn analyze STORE NAME --overwrite`` recomputes
one). Flags are cleared from the last chunk backwards, so a repair that is itself interrupted leaves a store that
``--repair`` finishes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from .integrity import RUN_DATA, Report, verify
from .safety import remove, rename, scratch_dir
from .store import create_store, unconsolidate

__all__ = ["repair_run"]

#: arrays a commit rewrites whole (not per chunk of epochs): the last committed chunk recomputes them
_PER_NETWORK = ("train/outcome/", "train/outcome_epoch/")


def repair_run(path: str | os.PathLike, layout: Mapping[str, xr.Dataset], attrs: Mapping[str, Any]) -> int | None:
    """Prepare a damaged run store for resumption: restore its layout files, uncommit the damaged chunks.

    Parameters
    ----------
    path : path
        The run store (its root ``zarr.json`` must be intact).
    layout : mapping of str to Dataset
        The preallocation layout of the run (``train``, ``params``, ``state``), as for a new store.
    attrs : mapping
        Root attrs for the scratch copy of the layout.

    Returns
    -------
    int or None
        The first chunk of epochs that will be recomputed (the number of chunks if only layout files were
        damaged); None if nothing was damaged.

    Raises
    ------
    StoreError
        Damage the layout does not restore and no recomputation rewrites (a metadata file of another shape).
    """
    p = Path(path)
    before = verify(p, groups=RUN_DATA)
    if before.ok:
        return None
    unconsolidate(p)
    _restore_layout(p, layout, attrs, {d.path for d in before.damage})
    after = verify(p, groups=RUN_DATA)
    if any(d.path.endswith("zarr.json") for d in after.damage):
        raise after.error()
    root = zarr.open_group(str(p), mode="r")
    flags = np.asarray(root["train/committed"][:], dtype=bool)
    n = len(flags)
    m = int(np.argmin(flags)) if not flags.all() else n
    r = _first_damaged(after, before, m, n)
    slots = np.asarray(root["state/slot_chunk"][:])
    if r > 0 and slots[(r - 1) % 2] != r - 1:
        r = 0  # the state at the end of chunk r - 1 is no longer kept: start again
    committed = zarr.open_array(store=str(p), path="train/committed", mode="r+").with_config(
        {"write_empty_chunks": True})
    for ci in range(n - 1, r - 1, -1):
        if flags[ci]:
            committed[ci] = False
    return r


def _first_damaged(after: Report, before: Report, m: int, n: int) -> int:
    """The first chunk of epochs to recompute so that every damaged file is rewritten."""
    r = n
    for d in after.damage:
        if d.chunk is not None:
            r = min(r, d.chunk)
        elif d.path.startswith(_PER_NETWORK):
            r = min(r, max(m - 1, 0))
        else:
            r = 0
    if any(d.path.startswith("state/slot_chunk/") for d in before.damage):
        r = 0  # which slot holds which chunk is unknown: no resume state can be trusted
    return r


def _restore_layout(p: Path, layout: Mapping[str, xr.Dataset], attrs: Mapping[str, Any], damaged: set[str]) -> None:
    """Copy every file of a fresh preallocation that is missing or damaged in ``p`` (metadata, coordinates)."""
    tmp = scratch_dir()
    try:
        fresh = create_store(tmp / "layout.zarr", dict(layout), dict(attrs))
        for group in RUN_DATA:
            for dirpath, _, filenames in os.walk(fresh / group):
                for name in filenames:
                    rel = (Path(dirpath) / name).relative_to(fresh).as_posix()
                    if rel in damaged or not (p / rel).exists():
                        _copy_into(fresh / rel, p / rel, p)
    finally:
        remove(tmp)


def _copy_into(src: Path, dst: Path, store: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    part.write_bytes(src.read_bytes())
    rename(part, dst, store=store)

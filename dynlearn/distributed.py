"""Sweeps that outgrow one process: shards of seeds trained on dask.distributed workers, merged into one store.

``run_sharded(exp, out, n_workers=4)`` splits the experiment's seeds into shards, trains each shard as an ordinary
(batched, resumable) run in its own store ``<out>.shards/shard-<k>.zarr`` on a dask.distributed worker, then
merges the shards along ``seed`` into ``out`` (written under a temporary name and renamed into place). Networks
are independent, so the merged store holds exactly what a single-process run would. An interrupted sharded run
resumes shard by shard. Pass ``client`` to use an existing cluster (several machines); by default a local
cluster of processes is started. Usage (the same as ``dynlearn run ghost.toml --out ghost.zarr --workers 2``; starting a
cluster takes seconds, so this is shown rather than run here — tests/test_distributed.py runs it)::

    import dynlearn
    from dynlearn.distributed import run_sharded

    exp = dynlearn.load_experiment("datasets/dynlearn_datasets/experiments/ghost.toml")
    run_sharded(exp, "ghost.zarr", n_workers=2)
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .config import Experiment, resolve_experiment
from .errors import ConfigError
from .integrity import relock, store_lock
from .safety import check_store_target, remove, remove_empty_dir, rename
from .store import _set_compressors, consolidate, create_store, open_store, root_attrs

__all__ = ["shard_experiments", "run_sharded"]


def shard_experiments(exp: Experiment, n_shards: int) -> list[Experiment]:
    """The experiment split into ``n_shards`` experiments over disjoint, contiguous sets of seeds."""
    seeds = list(exp.config["train"]["seeds"])
    if n_shards < 1:
        raise ConfigError(f"the number of shards must be >= 1, got {n_shards}")
    parts = [list(p) for p in np.array_split(np.asarray(seeds), min(n_shards, len(seeds))) if len(p)]
    out = []
    for k, part in enumerate(parts):
        raw = copy.deepcopy(exp.config)
        raw["train"]["seeds"] = [int(s) for s in part]
        raw["name"] = f"{exp.config['name']}-shard{k}"
        raw["analyze"] = []
        out.append(resolve_experiment(raw, source=raw["name"]))
    return out


def _train_shard(config: dict[str, Any], path: str) -> str:
    from .api import run_experiment

    run_experiment(resolve_experiment(config, source=config["name"]), path)
    return path


def run_sharded(
    exp: Experiment,
    out: str | os.PathLike,
    *,
    n_workers: int = 2,
    client: Any = None,
    keep_shards: bool = False,
) -> xr.DataTree:
    """Train ``exp`` in seed shards on dask.distributed workers and merge them into the store ``out``."""
    out = check_store_target(out)
    if out.exists():
        attrs = root_attrs(out)
        if attrs.get("config_hash") == exp.hash:
            return open_store(out)
        raise ConfigError(f"{out} holds a different experiment; use another --out")
    shards = shard_experiments(exp, n_workers)
    shard_dir = out.with_name(out.name + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    paths = [str(shard_dir / f"shard-{k}.zarr") for k in range(len(shards))]
    own = client is None
    if own:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=len(shards), threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(_train_shard, [s.config for s in shards], paths, pure=False)
        client.gather(futures)
    finally:
        if own:
            client.close()
            cluster.close()
    with store_lock(out):  # each shard store was locked by its own run; the merged store by this process
        _merge(exp, paths, out)
        relock(out)
        if exp.config.get("analyze"):
            from .api import analyze

            for spec in exp.config["analyze"]:
                spec = dict(spec)
                analyze(out, spec.pop("name"), **spec)
    if not keep_shards:
        for p in paths:
            remove(p)  # each shard is a dynlearn store
        remove_empty_dir(shard_dir)
    return open_store(out)


def _merge(exp: Experiment, paths: list[str], out: Path) -> None:
    trees = [open_store(p, decode_outcome=False) for p in paths]
    groups = {}
    for name in ("train", "params"):
        parts = [t[name].to_dataset() for t in trees]
        if name == "train":
            parts = [p.drop_vars(["committed", "chunk_start"]) for p in parts]
        merged = xr.concat(parts, dim="seed", data_vars="minimal", coords="minimal", compat="override",
                           join="override").load()
        for v in merged.variables.values():
            v.encoding = {}
        groups[name] = merged
    committed = trees[0]["train"].to_dataset()[["committed"]].load()
    groups["train"] = groups["train"].assign(committed=committed["committed"]).assign_coords(
        chunk_start=committed["chunk_start"])
    prov = root_attrs(paths[0]).get("provenance", {})
    attrs = {"version": prov.get("dynlearn"), "config": exp.config, "config_hash": exp.hash,
             "provenance": {**prov, "sharded": len(paths)}}
    tmp = out.with_name(out.name + ".merging")
    remove(tmp)  # a merge left over from a killed run (only ever a dynlearn store)
    create_store(tmp, {}, attrs)
    for name, ds in groups.items():
        _set_compressors(ds)  # checksummed, every chunk written (dynlearn.integrity)
        ds.to_zarr(str(tmp), group=name, mode="w", zarr_format=3, consolidated=False)
    consolidate(tmp)
    rename(tmp, out)

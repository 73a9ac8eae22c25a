"""Seed shards trained on dask.distributed workers merge into exactly the single-process store."""

from __future__ import annotations

import numpy as np
import xarray as xr

import dynlearn
from dynlearn.distributed import run_sharded, shard_experiments
from dynlearn_datasets.packaged import packaged_experiment

OVERRIDES = {"train": {"epochs": 600, "seeds": 5, "chunk": 200}, "sweep": {"lr": [1e-10, 5e-10, 2e-9]}}


def test_shards_partition_the_seeds():
    exp = packaged_experiment("ghost", OVERRIDES)
    shards = shard_experiments(exp, 2)
    assert [s.config["train"]["seeds"] for s in shards] == [[0, 1, 2], [3, 4]]
    assert all(s.config["sweep"] == exp.config["sweep"] for s in shards)


def test_sharded_run_equals_single_process(tmp_path):
    exp = packaged_experiment("ghost", OVERRIDES)
    single = dynlearn.run_experiment(exp, tmp_path / "single.zarr").tree
    merged = run_sharded(exp, tmp_path / "sharded.zarr", n_workers=2)
    for group in ("train", "params"):
        a, b = merged[group].to_dataset(), single[group].to_dataset()
        for name in b.data_vars:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{group}/{name}")
        xr.testing.assert_equal(a.coords.to_dataset(), b.coords.to_dataset())
    assert dynlearn.store.root_attrs(tmp_path / "sharded.zarr")["config_hash"] == exp.hash
    assert not (tmp_path / "sharded.zarr.shards").exists()
    # the merged store is a complete run: running it again does nothing
    assert run_sharded(exp, tmp_path / "sharded.zarr", n_workers=2)["train"].sizes["seed"] == 5

"""Reduced (quick) versions of rnn-s1, rnn-fig4 and rnn-s2: every claim, the labeled groups, the views."""

from __future__ import annotations

import numpy as np
import pytest

import dynlearn
from dynlearn_datasets.packaged import packaged_experiment

pytestmark = pytest.mark.numerics   # training runs over seeds (counts, Wilson intervals): other rounding paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    dynlearn.set_progress(False)
    out = {}
    for name in ("rnn-s1", "rnn-fig4", "rnn-s2"):
        path = tmp_path_factory.mktemp(name) / f"{name}.zarr"
        out[name] = (path, dynlearn.run_reproduction(name, path, quick=True))
    return out


@pytest.mark.parametrize("name", ["rnn-s1", "rnn-fig4", "rnn-s2"])
def test_every_quick_claim_holds(runs, name):
    claims = runs[name][1]["claims"].to_dataset()
    assert claims.attrs["reproduction"] == name and claims.sizes["claim"] >= 2
    failed = [f"{c}: measured {m} ({t})" for c, m, t, ok in zip(claims["claim"].values, claims["measured"].values,
                                                                 claims["tolerance"].values, claims["passed"].values)
              if not ok]
    assert not failed, failed


@pytest.mark.parametrize("name, groups", [
    ("rnn-s1", ("train", "params", "status", "summary", "latent_flow", "claims")),
    ("rnn-fig4", ("train", "params", "status", "summary", "latent_flow", "claims")),
    ("rnn-s2", ("train", "params", "status", "summary", "claims")),
])
def test_groups_are_labeled_data_over_every_sweep_dim(runs, name, groups):
    tree = runs[name][1]
    assert set(groups) <= set(tree.children)
    sweep = [d for d in tree["train"]["loss"].dims if d != "epoch"]
    for g in ("status", "summary"):
        ds = tree[g].to_dataset()
        for var in ds.data_vars:
            assert "long_name" in ds[var].attrs, (g, var)
        for d in sweep:
            if d != "seed":
                assert d in ds.dims, (g, d)
    assert tree["status"]["stuck"].dims == tree["train"]["accuracy"].dims


def test_fig4_counts_match_the_per_network_status(runs):
    tree = runs["rnn-fig4"][1]
    summ = tree["summary"].to_dataset()
    after = int(summ.attrs["after"])
    acc = tree["train"]["accuracy"].isel(epoch=slice(0, after)).values
    learned = (acc == 1).any(0)
    stuck = (acc[-50:] <= 0.5).all(0)
    np.testing.assert_array_equal(summ["n_learned"].values, learned.sum(0))
    np.testing.assert_array_equal(summ["n_stuck"].values, stuck.sum(0))
    assert np.all(summ["n_learned_low"] <= summ["n_learned"]) and np.all(summ["n_learned"] <= summ["n_learned_high"])
    # the schedule lowered c exactly for the networks stuck at the end of phase 1 (c_low = 1 arm)
    cur = tree["train"]["current_c"].sel(c_low=1.0).isel(epoch=after).values
    np.testing.assert_array_equal(cur == 1.0, stuck[:, list(summ["c_low"].values).index(1.0)])


def test_s1_latent_flow_is_the_stored_networks_flow(runs):
    tree = runs["rnn-s1"][1]
    flow = tree["latent_flow"]["f"]
    assert flow.dims[-1] == "kappa" and {"epoch", "seed", "lr"} <= set(flow.dims)
    p = tree["params"].to_dataset().sel(epoch=flow["epoch"].values[-1], seed=flow["seed"].values[0],
                                        lr=flow["lr"].values[1])
    m, n, b = (np.asarray(p[k].values, dtype=float).ravel() for k in ("m", "n", "b"))
    kappa = flow["kappa"].values
    want = -kappa + np.tanh(np.outer(kappa, m) + b) @ n
    got = flow.sel(epoch=flow["epoch"].values[-1], seed=flow["seed"].values[0], lr=flow["lr"].values[1]).values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rnn-s1", "rnn-fig4", "rnn-s2"])
def test_views_are_holoviews_objects(runs, name):
    import holoviews as hv

    rep = dynlearn.registry.get("reproductions", name)(quick=True)
    views = rep.views(runs[name][1])
    assert views and all(isinstance(v, (hv.core.Dimensioned, hv.core.ViewableTree)) for v in views.values())
    if name != "rnn-s2":
        assert isinstance(views["latent flow"], hv.HoloMap)
    for obj in views.values():  # one frame of each HoloMap is enough to check it renders
        hv.render(obj[obj.keys()[0]] if isinstance(obj, hv.HoloMap) else obj, backend="bokeh")


@pytest.mark.parametrize("name", ["rnn-s1", "rnn-fig4", "rnn-s2"])
def test_full_experiment_files_resolve(name):
    exp = packaged_experiment(name)
    cfg = exp.config
    assert cfg["system"]["name"] == "rnn" and cfg["task"]["T"] == 100.0 and cfg["task"]["dt"] == 5.0
    assert cfg["system"]["n_neurons"] == 100
    if name == "rnn-fig4":
        assert cfg["train"]["seeds"] == list(range(100)) and cfg["train"]["epochs"] == 9000
        assert cfg["hyper"]["lr"] == 0.02 and cfg["hyper"]["c"] == 10.0
        assert cfg["train"]["schedule"]["after"] == 6000
    if name == "rnn-s2":
        assert cfg["sweep"]["rank"] == [1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 30.0, 50.0, 100.0]
        assert len(cfg["sweep"]["lr"]) == 3

"""The ghost paper's training run analysed over epochs (DESIGN.md 3.1): gradient descent on the saddle-node toy
model below the critical learning rate learns abruptly with r > 0 at every epoch, i.e. through a ghost at x = 0
(speed r) and without any bifurcation."""

from __future__ import annotations

import numpy as np
import pytest

import dynlearn
from dynlearn import outcome as oc
from dynlearn_builtins.analyzers.fixed_points import TYPES
from dynlearn_builtins.systems.saddle_node import critical_lr, r_star
from problems import ghost_passage_time

T = 100.0
LR = 1e-10


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    assert LR < critical_lr(T)
    path = tmp_path_factory.mktemp("ghost") / "run.zarr"
    sn = dynlearn.get_system("saddle_node")(task={"T": T})
    dynlearn.train(sn, epochs=3000, seeds=2, hyper={"lr": LR}, out=path, checkpoint_every=100, chunk=1000)
    fp = dynlearn.analyze(path, "fixed_points", n_starts=16)
    bif = dynlearn.analyze(path, "bifurcations")
    return dynlearn.open_store(path), fp, bif


def test_loss_drops_abruptly(run):
    tree, _, _ = run
    loss = tree["train"]["loss"].values
    assert np.all(loss[:1000] > 45) and np.all(loss[1600:] < 5)


def test_ghost_at_every_epoch_with_speed_r(run):
    tree, fp, _ = run
    r = tree["params"]["r"].transpose("epoch", "seed").values
    assert np.all(r > 0) and r.min() < 1.5 * r_star(T)
    assert np.all(fp.n_fixed.values == 0) and np.all(fp.n_ghost.values == 1)
    g = fp.isel(point=0).transpose("epoch", "seed", ...)
    assert {TYPES[int(c)] for c in g.point_type.values.ravel()} == {"ghost"}
    np.testing.assert_allclose(g.position.sel(state="x").values, 0.0, atol=1e-12)
    np.testing.assert_allclose(g.speed.values, r, rtol=1e-10)
    np.testing.assert_allclose(g.passage_time_nf.values, ghost_passage_time(1.0) / np.sqrt(r), rtol=1e-10)


def test_no_bifurcation_event(run):
    _, fp, bif = run
    assert bif.sizes["event"] == 0
    assert bif.track.dims == ("epoch", "seed", "point")
    # one ghost track per seed spanning every epoch
    tracks = bif.track.isel(point=0).values
    assert np.all(tracks == tracks[:1]) and len(set(tracks[0])) == 2


def test_diverged_network_is_masked(run):
    """Non-finite parameters (a diverged network) are an entry with outcome "masked" (not analysed), not an error."""
    import xarray as xr

    from dynlearn_builtins.analyzers.fixed_points import FixedPoints

    tree, _, _ = run
    t = tree.load().copy()
    params = t["params"].to_dataset()
    r = params["r"].transpose("epoch", "seed").copy()
    r[5, 0] = np.nan
    params["r"] = r
    t["params"] = xr.DataTree(params)
    out = FixedPoints(n_starts=8).run(t).transpose("epoch", "seed", ...)
    assert int(out.outcome[5, 0]) == oc.MASKED and int(out.n_fixed[5, 0]) == -1 and int(out.n_ghost[5, 0]) == -1
    assert not bool(out.present[5, 0].any()) and np.isnan(out.speed[5, 0]).all()
    assert int(out.n_ghost[5, 1]) == 1 and bool((out.outcome == oc.OK).sum() == out.outcome.size - 1)
    assert out.outcome.attrs["flag_meanings"] == " ".join(oc.NAMES)

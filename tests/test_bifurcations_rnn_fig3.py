"""rnn-fig3 reproduction (quick): the rank-one RNN's latent circuit over training, claim by claim.

The ghost-before-drop claim is not asserted as true: with this repository's RNN the loss drops when the single
fixed point crosses the readout threshold, and ghosts only appear after the drop (see the reproduction's
docstring). What is tested is that the claim is *measured* right: the analyzer's slow points agree with a
brute-force scan of f(kappa) on a fine grid at every checkpoint, and the claim's value follows from them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynlearn

REPRODUCED = ["low_lr_one_fixed_point", "low_lr_abrupt_drop", "low_lr_no_bifurcation", "high_lr_saddle_node",
              "high_lr_zero_gradient"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return dynlearn.run_reproduction("rnn-fig3", tmp_path_factory.mktemp("fig3") / "fig3.zarr", quick=True)


@pytest.fixture(scope="module")
def claims(tree):
    return tree["claims"].to_dataset()


@pytest.mark.parametrize("name", REPRODUCED)
def test_claim(claims, name):
    c = claims.sel(claim=name)
    assert bool(c.passed), f"{name}: measured {float(c.measured)} ({str(c.tolerance.item())})"


def _scan_minima(tree, lr: float, typical: np.ndarray, slow_ratio: float) -> np.ndarray:
    """Per checkpoint: is there a local minimum of |f| in (-15, 15), away from any zero of f, slower than
    slow_ratio x the typical speed? (brute force on a grid of 1501 points)"""
    rnn = dynlearn.get_system("rnn")()
    lat = rnn.latent_system()
    P = tree["params"].to_dataset().isel(seed=0).sel(lr=lr).load()
    k = torch.linspace(-15, 15, 1501, dtype=torch.float64)
    p = {n: torch.as_tensor(P[n].values) for n in ("m", "n", "b")}
    E = p["m"].shape[0]
    f = lat.rhs(k[None, :, None].expand(E, -1, 1), {kk: v[:, None] for kk, v in p.items()})[..., 0]
    a, s = f.abs(), torch.sign(f)
    inner = (a[:, 2:-2] < a[:, 1:-3]) & (a[:, 2:-2] < a[:, 3:-1])
    no_zero = (s[:, :-4] == s[:, 4:]) & (s[:, 1:-3] == s[:, 3:-1]) & (s[:, 2:-2] == s[:, :-4])
    slow = a[:, 2:-2] <= slow_ratio * torch.as_tensor(typical)[:, None]
    return (inner & no_zero & slow).any(1).numpy()


@pytest.mark.parametrize("lr", [0.01, 0.03], ids=["low-lr", "high-lr"])
def test_slow_points_agree_with_a_grid_scan(tree, lr):
    fp = tree["fixed_points"].to_dataset().isel(seed=0).sel(lr=lr)
    found = (fp.n_ghost.values + fp.n_slow.values) > 0
    scanned = _scan_minima(tree, lr, fp.typical_speed.values, 0.5)
    assert np.array_equal(found, scanned), (fp.epoch.values[found != scanned])


def test_ghost_claim_is_measured_from_the_data(tree, claims):
    loss = tree["train"]["loss"].isel(seed=0).sel(lr=0.01).values
    drop = int(np.nonzero(loss < 0.5 * loss[0])[0][0])
    fp = tree["fixed_points"].to_dataset().isel(seed=0).sel(lr=0.01)
    ghosts = fp.epoch.values[fp.n_ghost.values > 0]
    c = claims.sel(claim="low_lr_ghost_before_drop")
    if len(ghosts):
        assert float(c.measured) == float(ghosts.min() - drop)
    else:
        assert np.isnan(float(c.measured))
    assert bool(c.passed) == bool(len(ghosts) and ghosts.min() < drop)


def test_one_fixed_point_in_the_window_at_every_low_lr_epoch(tree):
    fp = tree["fixed_points"].to_dataset().isel(seed=0).sel(lr=0.01)
    assert np.all(fp.n_fixed.values == 1)
    assert np.all(np.abs(fp.position.isel(point=0).values) <= 15)


def test_high_lr_event_is_a_birth(tree):
    bif = tree["bifurcations"].to_dataset()
    sn = bif.isel(event=np.nonzero(bif.event_type.values == "saddle_node")[0])
    assert set(sn.subtype.values.tolist()) == {"birth"} and set(sn.lr_at_event.values.tolist()) == {0.03}
    assert np.all(sn.count_change.values == 2)


@pytest.fixture(scope="module")
def full_claims(tmp_path_factory):
    path = tmp_path_factory.mktemp("fig3full") / "fig3.zarr"
    return dynlearn.run_reproduction("rnn-fig3", path)["claims"].to_dataset()


@pytest.mark.slow
@pytest.mark.parametrize("name", REPRODUCED)
def test_full_claim(full_claims, name):
    c = full_claims.sel(claim=name)
    assert bool(c.passed), f"{name}: measured {float(c.measured)} ({str(c.tolerance.item())})"

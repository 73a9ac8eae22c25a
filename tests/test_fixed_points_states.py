"""fixed_points (issues 13-14): every distinct point, user states, per-point Jacobians, warm start, periodic
coordinates, the PCA basis."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import Param
from dynlearn.system import FlowSystem, MapSystem
from dynlearn_builtins.analyzers.fixed_points import TYPES, FixedPoints


class Cubic3(FlowSystem):
    """``x_i' = x_i - x_i^3``: the 27 fixed points ``{-1, 0, 1}^3``."""

    name = "cubic3_test"
    state_names = ("x", "y", "z")
    parameters = {"c": Param(1.0, description="cubic coefficient")}
    domain_bounds = ([-1.5] * 3, [1.5] * 3)

    def rhs(self, x, p):
        return x - p["c"][..., None] * x**3


class Pendulum(FlowSystem):
    """``theta' = omega, omega' = -0.1 omega + 0.5 - sin theta``: fixed points ``theta = asin 0.5`` (stable focus)
    and ``pi - asin 0.5`` (saddle), once per period of ``theta``."""

    name = "pendulum_test"
    state_names = ("theta", "omega")
    parameters = {"torque": Param(0.5, description="constant torque")}
    periodic = {"theta": (-math.pi, math.pi)}

    def rhs(self, x, p):
        th, om = x[..., 0], x[..., 1]
        return torch.stack([om, -0.1 * om + p["torque"] - torch.sin(th)], -1)


class UnwrappedPendulum(Pendulum):
    name = "pendulum_unwrapped_test"
    periodic = {}


class RNNMap(MapSystem):
    """``x -> x/2 + tanh(W x + b)/2`` in 12-D (random W of gain 1.5): slow points in flat valleys of q."""

    name = "rnn_map_test"
    state_names = tuple(f"x{i}" for i in range(12))
    parameters = {"W": Param(0.0, shape=("neuron", "neuron")), "b": Param(0.0, shape=("neuron",))}
    domain_bounds = ([-1.0] * 12, [1.0] * 12)

    def dim_sizes(self):
        return {"neuron": 12}

    def rhs(self, x, p):
        return 0.5 * x + 0.5 * torch.tanh(torch.einsum("...ij,...j->...i", p["W"], x) + p["b"])


WIDE = [[-10.0, -3.0], [10.0, 3.0]]  # theta over more than three periods


@pytest.fixture(scope="module")
def cubic_all():
    return FixedPoints(n_starts=200, slow_points=False, landscape=False).run(Cubic3(), dynlearn.grid(c=[1.0, 2.0]))


def test_every_distinct_point_by_default(cubic_all):
    assert cubic_all.n_fixed.values.tolist() == [27, 27]
    assert cubic_all.sizes["point"] == 27 and not cubic_all.truncated.any()
    pos = cubic_all.position.sel(c=1.0).values
    assert sorted(map(tuple, pos.round(12).tolist())) == sorted(
        (a, b, c) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0) for c in (-1.0, 0.0, 1.0))


def test_explicit_cap_warns_flags_and_keeps_true_counts(cubic_all):
    with pytest.warns(UserWarning, match=r"max_points=16 dropped 22 points \(the highest-q ones\) in 2 of 2"):
        out = FixedPoints(n_starts=200, slow_points=False, landscape=False, max_points=16).run(
            Cubic3(), dynlearn.grid(c=[1.0, 2.0]))
    assert out.sizes["point"] == 16 and out.present.sum("point").values.tolist() == [16, 16]
    assert out.truncated.values.tolist() == [True, True]
    assert out.n_fixed.values.tolist() == [27, 27]  # the truth, not the cap
    # the kept points are the lowest-q ones
    for c in (1.0, 2.0):
        kept = np.sort(out.q.sel(c=c).values)
        every = np.sort(cubic_all.q.sel(c=c).values)
        np.testing.assert_array_equal(kept, every[:16])


def test_no_warning_when_the_cap_is_not_reached(recwarn):
    out = FixedPoints(n_starts=16, max_points=4).run("saddle_node", dynlearn.grid(r=[-1.0]))
    assert not out.truncated.any() and out.n_fixed.item() == 2
    assert not [w for w in recwarn.list if "max_points" in str(w.message)]


def test_jacobian_and_eigenvectors_per_point():
    out = FixedPoints(n_starts=64, bounds=WIDE).run(Pendulum(), dynlearn.grid(torque=[0.5]))
    system = Pendulum()
    pres = out.present.values.ravel()
    assert pres.sum() == 2
    for k in np.nonzero(pres)[0]:
        pt = out.isel(torque=0, point=k)
        x = torch.as_tensor(pt.position.values)[None]
        J = system.jacobian(x, {"torque": torch.tensor([0.5], dtype=torch.float64)})[0].numpy()
        np.testing.assert_allclose(pt.jacobian.transpose("state", "state_in").values, J, rtol=0, atol=1e-10)
        lam = pt.eig_real.values + 1j * pt.eig_imag.values
        vec = pt.eigvec_real.transpose("eig", "state").values + 1j * pt.eigvec_imag.transpose("eig", "state").values
        for i in range(2):
            np.testing.assert_allclose(J @ vec[i], lam[i] * vec[i], rtol=0, atol=1e-10)
            assert abs(np.linalg.norm(vec[i]) - 1) < 1e-12
    assert out.jacobian.attrs["long_name"] and out.eigvec_real.dims[-3:] == ("point", "eig", "state")


def test_n_reached_counts_the_starts(cubic_all):
    reached = cubic_all.n_reached.where(cubic_all.present)
    assert (reached.min("point") >= 1).all()
    assert (reached.sum("point") <= cubic_all.n_start_states).all()
    # sampled + midpoints: 351 pairs of 27 points, at most as many as the 200 starts of the first pass
    assert (cubic_all.n_start_states == 200 + 200).all()
    out = FixedPoints(n_starts=32).run("saddle_node", dynlearn.grid(r=[-1.0]))
    assert 0 < int(out.n_reached.where(out.present).sum()) <= out.n_start_states.item() <= 32 + 1  # + 1 midpoint


def test_slow_points_are_converged_minima():
    """Every slow point is a minimum of q (grad q = (J - I)^T g = 0), not a state stopped in a flat valley (without
    the convergence test this network showed 26 slow points, 22 of them with |grad q| ~ 2e-4)."""
    rng = np.random.default_rng(0)
    system = RNNMap(W=(rng.standard_normal((12, 12)) * 1.5 / math.sqrt(12)).tolist(),
                    b=(rng.standard_normal(12) * 0.1).tolist())
    out = FixedPoints(n_starts=128).run(system)
    assert 1 <= out.n_slow.item() <= 8
    pres = out.present.values
    x, J = torch.as_tensor(out.position.values[pres]), torch.as_tensor(out.jacobian.values[pres])
    g = system.residual(x, dynlearn.flatten(system, None).params)
    grad_q = ((J - torch.eye(12)).mT @ g.unsqueeze(-1)).squeeze(-1).norm(dim=-1)
    assert float(grad_q.max()) < 1e-12


def test_user_states_only_and_their_count():
    out = FixedPoints(n_starts=0, initial_states=[[-0.9], [-1.1], [1.2]]).run("saddle_node", dynlearn.grid(r=[-1.0]))
    assert out.position.sel(state="x").values[0].round(12)[:2].tolist() == [-1.0, 1.0]
    assert out.n_reached.values[0, :2].tolist() == [2, 1] and out.n_start_states.item() == 3 + 1  # + their midpoint
    assert out.attrs["pca_source"] == "initial_states"


def test_user_states_per_sweep_element():
    r = [-1.0, -4.0]
    states = xr.DataArray([[[-0.9]], [[2.2]]], dims=("r", "sample", "state"), coords={"r": r})
    out = FixedPoints(n_starts=0, initial_states=states).run("saddle_node", dynlearn.grid(r=r[::-1]))
    assert out.n_fixed.sel(r=-1.0).item() == 1 and out.n_fixed.sel(r=-4.0).item() == 1
    assert out.position.sel(r=-1.0, point=0, state="x").item() == pytest.approx(-1.0, abs=1e-12)
    assert out.position.sel(r=-4.0, point=0, state="x").item() == pytest.approx(2.0, abs=1e-12)


def test_initial_noise_is_absolute():
    kw = dict(n_starts=0, initial_states=np.full((50, 1), 0.9))
    quiet = FixedPoints(**kw).run("saddle_node", dynlearn.grid(r=[-1.0]))
    assert quiet.n_fixed.item() == 1 and quiet.n_reached[0, 0].item() == 50  # Newton from 0.9 reaches +1
    noisy = FixedPoints(**kw, initial_noise=2.0).run("saddle_node", dynlearn.grid(r=[-1.0]))
    assert noisy.n_fixed.item() == 2  # noise of 2 state units sends some starts to -1


@pytest.mark.parametrize("states, error, message", [
    (np.zeros((3, 2)), ShapeError, "initial_states: 2 values per state; system 'saddle_node' has 1"),
    (xr.DataArray(np.zeros((2, 1, 1)), dims=("seed", "sample", "state")), ShapeError, "dim 'seed' is neither"),
], ids=["width", "unknown-dim"])
def test_bad_user_states(states, error, message):
    with pytest.raises(error, match=message):
        FixedPoints(n_starts=0, initial_states=states).run("saddle_node", dynlearn.grid(r=[-1.0]))


@pytest.mark.parametrize("options, message", [
    ({"n_starts": 0}, "n_starts=0 needs initial_states"),
    ({"initial_states": [[np.nan]]}, "option 'initial_states' has 1 NaN"),
    ({"warm_start": "epoch"}, "warm_start dim 'epoch' is not a sweep dim; the sweep dims are ['r']"),
], ids=["no-starts", "nan-state", "missing-warm-dim"])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ParameterError) as exc:
        FixedPoints(**options).run("saddle_node", dynlearn.grid(r=[-1.0, -0.5]))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_warm_start_on_a_named_dim_and_auto():
    grid = dynlearn.grid(r=np.linspace(-1, -0.01, 8))
    kw = dict(n_starts=2, slow_points=False, seed=3, landscape=False)
    auto = FixedPoints(**kw).run("saddle_node", grid)
    named = FixedPoints(**kw, warm_start="r").run("saddle_node", grid)
    assert auto.attrs["warm_start"] == "none" and named.attrs["warm_start"] == "r"
    assert (named.n_fixed >= auto.n_fixed).all() and named.n_fixed.sum() > auto.n_fixed.sum()
    assert (named.n_start_states > auto.n_start_states).all()  # the neighbours' points are extra starts


def test_periodic_coordinates_one_point_per_period():
    out = FixedPoints(n_starts=128, bounds=WIDE).run(Pendulum(), dynlearn.grid(torque=[0.5]))
    assert out.n_fixed.item() == 2
    pos = out.position.isel(torque=0).values[out.present.values.ravel()]
    types = [TYPES[c] for c in out.point_type.values.ravel() if c >= 0]
    theta = dict(zip(types, pos[:, 0]))
    assert theta["stable_focus"] == pytest.approx(math.asin(0.5), abs=1e-12)
    assert theta["saddle"] == pytest.approx(math.pi - math.asin(0.5), abs=1e-12)
    assert np.all((pos[:, 0] >= -math.pi) & (pos[:, 0] < math.pi))
    # without the periodic declaration every copy in the box is its own point
    copies = FixedPoints(n_starts=128, bounds=WIDE).run(UnwrappedPendulum(), dynlearn.grid(torque=[0.5]))
    assert copies.n_fixed.item() == 7  # theta = asin 0.5 + 2 pi k (3 in the box), pi - asin 0.5 + 2 pi k (4)


@pytest.mark.parametrize("low, high", [(2.0, 4.0), (-4.5, -3.5)], ids=["across-the-cut", "another-period"])
def test_periodic_box_is_taken_on_the_circle(low, high):
    """A box in theta that crosses the cut at pi, or lies a period away: the saddle pi - asin 0.5 (= -3.665 + 2 pi)
    is inside it, reported wrapped; the focus is not."""
    out = FixedPoints(n_starts=32, bounds=[[low, -1.0], [high, 1.0]]).run(Pendulum(), dynlearn.grid(torque=[0.5]))
    assert out.n_fixed.item() == 1
    assert out.position.isel(torque=0, point=0).sel(state="theta").item() == pytest.approx(
        math.pi - math.asin(0.5), abs=1e-12)


def test_pca_basis_of_user_states_and_view():
    t, s = (a.ravel() for a in np.meshgrid(np.linspace(-2, 2, 21), np.linspace(-1, 1, 11)))  # uncorrelated
    plane = np.outer(t, [1.0, 1.0, 0.0]) / np.sqrt(2) + np.outer(0.3 * s, [0.0, 0.0, 1.0]) + 0.1
    out = FixedPoints(n_starts=64, slow_points=False, initial_states=plane, landscape=False).run(
        Cubic3(), dynlearn.grid(c=[1.0, 2.0]))
    comps = out.pc_components.values
    np.testing.assert_allclose(np.abs(comps[0]), [1 / np.sqrt(2), 1 / np.sqrt(2), 0], atol=1e-12)
    np.testing.assert_allclose(np.abs(comps[1]), [0, 0, 1], atol=1e-12)
    proj = xr.dot(out.position - out.pc_mean, out.pc_components, dim="state")
    xr.testing.assert_allclose(out.pc_position, proj.transpose(*out.pc_position.dims))
    assert out.pc_variance_fraction.values.sum() == pytest.approx(1.0)
    views = FixedPoints().views(out)
    import holoviews as hv

    assert isinstance(views["pca"], hv.HoloMap) and len(views["pca"]) == 2


def test_config_records_the_states_digest():
    states = np.linspace(-1, 1, 10).reshape(10, 1)
    out = FixedPoints(n_starts=4, initial_states=states).run("saddle_node", dynlearn.grid(r=[-1.0]))
    cfg = json.loads(out.attrs["analyzer_config"])["initial_states"]
    assert cfg["shape"] == [10, 1] and len(cfg["sha256"]) == 64


def test_no_warnings_by_default():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        FixedPoints(n_starts=16).run("saddle_node", dynlearn.grid(r=[-1.0, 0.1]))


def test_one_sweep_element_with_several_ghosts():
    """A system run without a grid (one parameter set) whose passage test has several candidates: the shared
    parameters broadcast against the doubled (forward and backward) states."""
    import dynlearn

    fp = dynlearn.make_analyzer({"name": "fixed_points", "n_starts": 32}).run("ghost_chain")
    assert int(fp.n_ghost) == 2 and int(fp.n_fixed) == 0

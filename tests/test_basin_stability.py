"""Basin-stability studies (issue 14): the damped driven pendulum, periodic identity, events, templates,
clustering, user initial states, parameter grids with matched ids, float32 vs float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn import outcome as oc
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.periodic import distance
from dynlearn.simulate import EVENTS, simulate_until
from dynlearn_builtins.analyzers.basins import Basins, BasinStability
from dynlearn_builtins.reproductions.pendulum import BOUNDS, EXPECTED, PSI

NUMERICS = pytest.mark.numerics  # chaotic-free, but a sampled proportion: checked against Wilson intervals

#: short and loose where the test is about naming / bookkeeping, not the basin-stability value
FAST = dict(bounds=BOUNDS, t_end=400.0, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The reproduction at quick size: 2000 states in the issue's setup (dopri5, rtol 1e-8, t <= 1000, float64)."""
    return dynlearn.run_reproduction("pendulum-basin-stability", tmp_path_factory.mktemp("rep") / "p.zarr",
                                     quick=True, show_progress=False)


@pytest.fixture(scope="module")
def auto():
    """256 uniform states, automatic naming (the reference partition of the naming tests)."""
    return BasinStability(n_samples=256, **FAST).run("pendulum", show_progress=False)


def _by_name(ds: xr.Dataset) -> np.ndarray:
    """Each sample's attractor name ('' for none)."""
    names = np.append(ds.attractor_name.values.astype(object), "")
    return names[ds.basin.values]


@NUMERICS
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pendulum_basin_stability_within_wilson(quick, name):
    ds = quick["basin_stability"].to_dataset()
    k = int(np.flatnonzero(ds.attractor_name.values == name)[0])
    lo, hi = float(ds.basin_stability_low[k]), float(ds.basin_stability_high[k])
    assert lo - 0.005 <= EXPECTED[name] <= hi + 0.005, (name, float(ds.basin_stability[k]), lo, hi)


@NUMERICS
def test_reproduction_claims(quick):
    claims = quick["claims"].to_dataset()
    failed = [str(c) for c in claims.claim.values if not bool(claims.passed.sel(claim=c))]
    assert not failed, failed
    assert len(claims.claim) == 10


def test_pendulum_attractors_named_automatically(quick):
    ds = quick["basin_stability"].to_dataset()
    assert sorted(ds.attractor_name.values.tolist()) == ["fixed_point", "rotation"]
    kinds = dict(zip(ds.attractor_name.values, ds.attractor_kind.values))
    assert kinds == {"fixed_point": "fixed_point", "rotation": "periodic"}
    assert float(ds.unresolved_fraction) == 0 and float(ds.diverged_fraction) == 0
    fp = int(np.flatnonzero(ds.attractor_name.values == "fixed_point")[0])
    system = dynlearn.get_system("pendulum")()
    assert float(distance(ds.attractor_state.values[fp], np.array([PSI, 0.0]), system.circle)) < 1e-2
    rot = ds.sel(attractor=1 - fp).attractor_features
    assert abs(float(rot.sel(feature="omega_mean")) - 5.0) < 0.05
    assert abs(float(rot.sel(feature="theta_drift")) - 5.0) < 0.05  # the unwrapped angle winds at <omega>
    # every trajectory stopped by an event long before t_end (what makes the study cheap)
    assert set(np.unique(ds.event.values)) <= {EVENTS.index("converged"), EVENTS.index("settled")}
    assert float(ds.stop_time.max()) < 1000


def test_equilibrium_is_one_attractor_modulo_2pi():
    """User initial states near psi + 2 pi k, k = -3..3: one attractor, wrapped into [-pi, pi)."""
    k = np.arange(-3, 4)
    states = np.stack([PSI + 2 * np.pi * k + 0.3, np.full(len(k), 0.2)], 1)
    ds = BasinStability(initial_states=states, **FAST).run("pendulum", show_progress=False)
    assert int(ds.n_attractors) == 1 and ds.attractor_name.values.tolist() == ["fixed_point"]
    assert (ds.basin.values == 0).all() and ds.attrs["sampling"] == "user"
    assert np.allclose(ds.initial_state.values, states)
    assert abs(float(ds.attractor_state.values[0, 0]) - PSI) < 1e-2
    assert (np.abs(ds.final_state.values[:, 0]) <= np.pi).all()


def test_user_states_with_noise_are_seeded():
    """initial_noise moves the given states by Gaussian noise drawn with seed: same seed, same states."""
    states = np.tile([[PSI + 0.3, 0.2]], (64, 1))
    runs = [BasinStability(initial_states=states, initial_noise=0.05, seed=s, **FAST).run(
        "pendulum", show_progress=False).initial_state.values for s in (0, 0, 1)]
    moved = runs[0] - states
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
    assert 0.03 < moved.std() < 0.07 and abs(moved.mean()) < 0.02


def test_user_states_per_sweep_element():
    """A DataArray of states per torque: each element integrates its own states."""
    per = xr.DataArray([[[PSI, 0.0]], [[0.0, 9.0]]], dims=("torque", "sample", "state"),
                       coords={"torque": [0.5, 0.6]})
    ds = BasinStability(initial_states=per, match_dim="none", **FAST).run(
        "pendulum", dynlearn.grid(torque=[0.5, 0.6]), show_progress=False)
    assert ds.initial_state.sel(torque=0.6).values.tolist() == [[0.0, 9.0]]
    assert _by_name(ds.sel(torque=0.5)).tolist() == ["fixed_point"]
    assert _by_name(ds.sel(torque=0.6)).tolist() == ["rotation"]


@pytest.mark.parametrize("kind", ["states", "features"])
def test_templates_name_the_attractors(auto, kind):
    if kind == "states":
        templates = {"rest": [PSI, 0.0], "spin": [0.0, 5.0]}
    else:  # the automatic run's feature vectors
        by = dict(zip(auto.attractor_name.values, auto.attractor_features.values))
        templates = {"rest": by["fixed_point"].tolist(), "spin": by["rotation"].tolist()}
    ds = BasinStability(n_samples=256, naming="templates", templates=templates, **FAST).run(
        "pendulum", show_progress=False)
    assert ds.attractor_name.values.tolist() == ["rest", "spin"]
    assert ds.attractor_kind.values.tolist() == ["fixed_point", "periodic"]
    renamed = {"fixed_point": "rest", "rotation": "spin"}
    assert [renamed[n] for n in _by_name(auto)] == _by_name(ds).tolist()


def test_template_gate_leaves_far_states_unresolved():
    ds = BasinStability(n_samples=64, naming="templates", templates={"rest": [PSI, 0.0]}, template_gate=0.5,
                        **FAST).run("pendulum", show_progress=False)
    rotating = ds.outcome.values == oc.UNRESOLVED
    assert rotating.any() and (ds.basin.values[rotating] == -1).all()
    assert (ds.basin.values[~rotating] == 0).all()
    assert float(ds.unresolved_fraction) == pytest.approx(rotating.mean())


@pytest.mark.parametrize("clusterer", ["dbscan", "kmeans"])
def test_sklearn_clustering_finds_the_same_partition(auto, clusterer):
    ds = BasinStability(n_samples=256, naming="cluster", clusterer=clusterer, n_clusters=2, min_samples=3,
                        **FAST).run("pendulum", show_progress=False)
    assert sorted(ds.attractor_name.values.tolist()) == ["fixed_point", "rotation"]
    assert (_by_name(ds) == _by_name(auto)).all()


def test_events_are_labeled():
    states = [[PSI + 0.1, 0.0], [0.0, 8.0]]
    ds = BasinStability(initial_states=states, region=[[-4.0, 4.0], [-3.0, 3.0]], converge_tol=1e-3,
                        feature_tol=1e-12, window=5.0, **{**FAST, "t_end": 200.0}).run("pendulum", show_progress=False)
    assert [EVENTS[e] for e in ds.event.values] == ["converged", "left_region"]
    assert ds.outcome.values.tolist() == [oc.OK, oc.DIVERGED]
    assert ds.basin.values.tolist() == [0, -1]
    assert float(ds.diverged_fraction) == 0.5
    assert float(ds.stop_time[1]) == 5.0  # left |omega| <= 3 in the first window


def test_diverged_and_t_end_events():
    # x' = x^2 + 1 from 0: x = tan t leaves any ball at t = pi/2; from -1 with r = -1 it sits on a fixed point
    sn = dynlearn.get_system("saddle_node")
    ds = BasinStability(initial_states=[[0.0]], t_end=4.0, window=1.0, rtol=1e-6, atol=1e-6).run(
        sn(r=1.0), show_progress=False)
    assert EVENTS[int(ds.event[0])] == "diverged" and int(ds.outcome[0]) == oc.DIVERGED
    assert float(ds.stop_time[0]) == 2.0 and float(ds.diverged_fraction) == 1.0
    slow = BasinStability(initial_states=[[0.0, 6.0]], t_end=3.0, window=3.0, feature_tol=1e-12, **{
        k: v for k, v in FAST.items() if k != "t_end"}).run("pendulum", show_progress=False)
    assert EVENTS[int(slow.event[0])] == "t_end" and float(slow.stop_time[0]) == 3.0


def test_parameter_grid_matches_ids_across_torque():
    ds = BasinStability(n_samples=128, **FAST).run("pendulum", dynlearn.grid(torque=[0.3, 0.6, 0.9, 1.1]),
                                                   show_progress=False)
    assert ds.attrs["matched_dim"] == "torque" and ds.basin.dims == ("torque", "sample")
    names = ds.attractor_name.values
    rot = {int(k) for k in np.nonzero(names == "rotation")[1]}
    fp = {int(k) for k in np.nonzero(names == "fixed_point")[1]}
    assert len(rot) == 1 and len(fp) == 1  # one id each across the torque
    assert (names[:, rot.pop()] == "rotation").all()
    fpbs = ds.basin_stability.sel(attractor=fp.pop()).values
    assert np.isnan(fpbs[-1]) and fpbs[0] > fpbs[2] > 0  # no equilibrium for T > 1
    assert (ds.diverged_fraction.values == 0).all()


def test_float32_and_float64_agree_on_the_kinds():
    kw = dict(n_samples=128, bounds=BOUNDS, t_end=400.0, rtol=1e-5, atol=1e-5)
    a = BasinStability(precision="float32", **kw).run("pendulum", show_progress=False)
    b = BasinStability(precision="float64", **kw).run("pendulum", show_progress=False)
    assert a.attractor_kind.values.tolist() == b.attractor_kind.values.tolist()
    assert a.final_state.dtype == np.float64  # labeled output in float64 either way
    assert (_by_name(a) == _by_name(b)).mean() >= 0.97


@pytest.mark.parametrize("options, error, match", [
    (dict(naming="templates"), ParameterError, "needs templates"),
    (dict(naming="templates", templates={"a": [1.0, 2.0, 3.0]}), ShapeError, "initial state"),
    (dict(region=[[0.0, 1.0]]), ShapeError, "region"),
    (dict(precision="float32"), ParameterError, "float32"),
], ids=["no-templates", "template-width", "region-shape", "float32-rtol"])
def test_bad_options_are_one_line_errors(options, error, match):
    with pytest.raises(error, match=match):
        BasinStability(n_samples=4, t_end=1.0, window=1.0, **options).run("pendulum", show_progress=False)


def test_simulate_until_windows_agree_with_the_exact_solution():
    """x' = x^2 - 1 from 0: x = -tanh t; windows of any length give the same trajectory (same torchdiffeq steps
    up to the restarts)."""
    sn = dynlearn.get_system("saddle_node")(r=-1.0)
    x0 = torch.zeros(3, 1, dtype=torch.float64)
    one = simulate_until(sn, x0, t_end=2.0, window=2.0, rtol=1e-10, atol=1e-12)
    many = simulate_until(sn, x0, t_end=2.0, window=0.25, rtol=1e-10, atol=1e-12)
    exact = -math.tanh(2.0)
    assert abs(float(one.final[0, 0]) - exact) < 1e-9 and abs(float(many.final[0, 0]) - exact) < 1e-9
    assert one.outcome.tolist() == [oc.MAX_STEPS] * 3 and one.event.tolist() == [EVENTS.index("t_end")] * 3
    assert many.windows == 8 and one.windows == 1


def test_views(quick):
    pytest.importorskip("holoviews")
    an = BasinStability()
    single = an.views(quick["basin_stability"].to_dataset())
    sweep = an.views(quick["torque_sweep"].to_dataset())
    assert set(single) == set(sweep) == {"stability", "basins"}
    assert "torque" in str(sweep["stability"]) and "Area" in str(sweep["stability"])
    grid = BasinStability(sampling="grid", resolution=6, **FAST).run("pendulum", show_progress=False)
    assert grid.attrs["grid_shape"] == [6, 6] and grid.sizes["sample"] == 36
    assert "Image" in str(an.views(grid)["basins"])


@pytest.mark.slow
def test_pendulum_reproduction_at_100k(tmp_path):
    """The issue's figure: 100,000 initial states (and 9 torques x 2000); every claim holds."""
    tree = dynlearn.run_reproduction("pendulum-basin-stability", tmp_path / "full.zarr", show_progress=False)
    claims = tree["claims"].to_dataset()
    failed = [str(c) for c in claims.claim.values if not bool(claims.passed.sel(claim=c))]
    assert not failed, failed
    assert int(tree["basin_stability"].to_dataset().sizes["sample"]) == 100_000


def test_basins_cell_graph_honours_the_periodic_angle():
    """The `basins` analyzer on the pendulum: the equilibrium is one attractor (not one per psi + 2 pi k) and the
    rotation a periodic orbit (period 2 pi / <omega>, about 1.26), not unresolved."""
    out = Basins(resolution=12, steps=4000, dt=0.05, tail_every=2, max_boundary_points=8, lyapunov_steps=100).run(
        "pendulum", show_progress=False)
    assert sorted(out.attractor_kind.values.tolist()) == ["fixed_point", "periodic"]
    assert float(out.unresolved_fraction) == 0
    fp = int(np.flatnonzero(out.attractor_kind.values == "fixed_point")[0])
    assert abs(float(out.attractor_state[fp, 0]) - PSI) < 1e-3
    period = float(out.attractor_period[1 - fp])
    assert abs(period - 2 * np.pi / 5.0) < 0.02


def test_conformance():
    from dynlearn.testing import check_analyzer

    an = BasinStability(n_samples=16, t_end=40.0, window=10.0, rtol=1e-5, atol=1e-5)
    check_analyzer(an, "pendulum", dynlearn.grid(torque=[0.4, 0.6]))

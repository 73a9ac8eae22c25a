"""koopman_separatrix: learned separatrices against exact ones, the basins analyzer, simulation; API and contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

import dynlearn
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.testing import check_analyzer
from dynlearn_builtins.analyzers.koopman.net import BatchedMLP, jvp_reference
from dynlearn_builtins.analyzers.koopman import KoopmanSeparatrix
from dynlearn import outcome as oc
from dynlearn_builtins.reproductions.koopman import (Bistable100, KoopmanSeparatrices, latent_circuit,
                                                     parabola_distance)
from dynlearn_builtins.systems.two_factor import ellipse_axes, ellipse_distance

NUMERICS = pytest.mark.numerics   # trained networks: rerun under other rounding paths and seeds (tests/conftest.py)

# reduced sizes: small networks, a few hundred steps (the full-size runs are in the slow tests / reproduction)
FAST = dict(width=16, batch_size=256, lr=0.02, steps=400, n_samples=128, n_curves=16, n_perturb=2, n_points=64,
            n_candidates=512, grid_size=0)


def _finite(points: np.ndarray) -> np.ndarray:
    return points[np.isfinite(points).all(-1)]


def distance_to_ellipse(points: np.ndarray, mu: float) -> np.ndarray:
    return ellipse_distance(points, mu)


def distance_to_parabola(points: np.ndarray, a: float) -> np.ndarray:
    return parabola_distance(points, a)


def polished(r, min_count: int) -> np.ndarray:
    """The polished separatrix points of one sweep element, after checking that at least ``min_count`` of psi's
    zero-set points were polished and that every unpolished one is labeled ``nan``."""
    ok = r.polish_outcome.values == oc.OK
    assert ok.sum() >= min_count, (ok.sum(), r.polish_outcome.values)
    assert np.array_equal(np.isfinite(r.separatrix.values).all(-1), ok)
    assert np.all(r.polish_outcome.values[~ok] == oc.NAN)
    return r.separatrix.values[ok]


# -- exact separatrices -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repro(tmp_path_factory, seed_offset):
    """The quick reproduction: every exact case at reduced size, run once (groups checked independently here).

    Seed 0 (``DYNLEARN_TEST_SEED`` unset) runs it as ``dynlearn reproduce koopman --quick`` does; another seed runs
    the same reproduction with that ``seed`` for every analyzer, and writes its claims the same way."""
    path = tmp_path_factory.mktemp("k") / "koopman.zarr"
    if seed_offset == 0:
        return dynlearn.run_reproduction("koopman", path, quick=True)
    from dynlearn.reproduce import claims_dataset
    from dynlearn.store import open_store, write_group

    write_group(path, "claims", claims_dataset(KoopmanSeparatrices(quick=True, seed=seed_offset).run(path)))
    return open_store(path)


def _group(tree, name):
    return tree[name].to_dataset().load()


@pytest.fixture(scope="module")
def bistable(repro):
    return _group(repro, "bistable")


@NUMERICS
def test_reproduction_claims_hold(repro):
    claims = repro["claims"].to_dataset()
    failed = claims["claim"].values[~claims["passed"].values].tolist()
    assert not failed, failed
    assert len(claims["claim"]) == 17  # with polishing, the 100-D rotated bistable is a claim too
    for name, group in repro.children.items():
        for var in group.to_dataset().data_vars.values():
            assert "long_name" in var.attrs, f"{name}/{var.name} has no long_name"


def test_reproduction_views_render(repro):
    import holoviews as hv

    views = dynlearn.registry.get("reproductions", "koopman")(quick=True).views(repro)
    assert set(views) == {"error / bound", "two-factor zero set vs E_mu"}
    for view in views.values():
        hv.render(view if not isinstance(view, hv.HoloMap) else view[view.keys()[0]], backend="bokeh")


@NUMERICS
@pytest.mark.parametrize("a", [0.0, 0.5], ids=["straight", "curved"])
def test_bistable_separatrix_within_one_percent_of_the_domain(bistable, a):
    # separatrix x = a y^2 (exact); domain [-2, 2]^2: 1% of its side is 0.04. The polished points are within a
    # tenth of that (measured: 1e-4, the bracket); psi's own zero set (measured 0.003 / 0.027) is only reported
    r = bistable.sel(a=a)
    assert int(r.outcome) == oc.OK
    assert len(_finite(r.separatrix_psi.values)) == 64
    pts = polished(r, 60)
    err, own = distance_to_parabola(pts, a), distance_to_parabola(_finite(r.separatrix_psi.values), a)
    assert err.max() <= 0.004, (err.max(), own.max())
    assert np.ptp(pts[:, 1]) > 3.0                          # the points cover the separatrix across the domain
    assert float(r.r2) > 0.99
    # polish_shift is psi's own error along its normal: at least psi's distance to the separatrix
    ok = r.polish_outcome.values == oc.OK
    assert np.all(r.polish_shift.values[ok] >= own[ok] - err.max() - 1e-12)


@NUMERICS
@pytest.mark.parametrize("a", [0.0, 0.5], ids=["straight", "curved"])
def test_optimal_perturbations_cross_and_are_minimal(bistable, a):
    # attractors (+-1, 0); the nearest point of x = a y^2 (a <= 1/2) to either is (0, 0): true distance 1
    r = bistable.sel(a=a)
    np.testing.assert_allclose(np.sort(r.perturb_origin.sel(state="x").values), [-1.0, 1.0], atol=1e-4)
    assert r.crossed.values.all() and r.stays.values.all()  # simulated: (1 +- 5%) delta crosses / does not
    np.testing.assert_allclose(r.perturbation_norm.values, 1.0, rtol=0.05)


@pytest.fixture(scope="module")
def two_factor(repro):
    return _group(repro, "two_factor")


@NUMERICS
@pytest.mark.parametrize("mu", [0.8, 1.5])
def test_two_factor_zero_set_is_the_ellipse(two_factor, mu):
    # the finder is not told the ellipse: ground truth from the system module only here.
    # Semi-axes in the (a, b) plane are A / sqrt(2), B / sqrt(2) (s = a + b, d = a - b). The claim is 2% of the
    # minor semi-axis; the polished points are within a tenth of it (measured: 0.004-0.009%, the bracket). psi's own
    # zero set (0.65% / 1.42% here, 2.25% at mu 1.5 on an AVX-512 CPU: training noise) is reported, not asserted
    r = two_factor.sel(mu=mu)
    assert int(r.outcome) == oc.OK
    minor = ellipse_axes(mu)[1] / math.sqrt(2)
    assert len(_finite(r.separatrix_psi.values)) == 64
    pts = polished(r, 60)
    own = distance_to_ellipse(_finite(r.separatrix_psi.values), mu).max() / minor
    assert distance_to_ellipse(pts, mu).max() <= 0.002 * minor, own
    # the points go all around the ellipse
    ang = np.arctan2(pts[:, 0] - pts[:, 1], pts[:, 0] + pts[:, 1])
    assert np.histogram(ang, bins=8, range=(-math.pi, math.pi))[0].min() > 0


@NUMERICS
def test_two_factor_perturbations_cross_in_simulation(two_factor):
    r = two_factor.sel(mu=0.8)
    assert r.crossed.values.all()
    assert (r.perturbation_norm.values > 0).all()


@pytest.fixture(scope="module")
def bistable_3d(repro):
    return _group(repro, "bistable_3d")


@NUMERICS
def test_bistable_3d_separatrix_within_one_percent_of_the_domain(bistable_3d):
    # separatrix: the paraboloid x = a (y^2 + z^2); first-order distance |s| / |grad s| (error O(s^2))
    r = bistable_3d.isel(a=0)
    a = 0.3
    x, y, z = polished(r, 0.9 * r.sizes["point"]).T
    dist = np.abs(x - a * (y**2 + z**2)) / np.sqrt(1 + 4 * a * a * (y**2 + z**2))
    assert dist.max() <= 0.004                                # polished (psi's own: 0.018 measured)
    assert r.crossed.values.all()


# -- 1-D latent circuit of a rank-one RNN, and agreement with the basins analyzer ------------------------------------
def _latent():
    # tau dkappa/dt = -kappa + 1.5 tanh(kappa + 0.3) + 1.5 tanh(kappa + 0.3): two stable fixed points and an
    # unstable one in between, the 1-D separatrix
    return latent_circuit()


@pytest.fixture(scope="module")
def latent(repro):
    return _group(repro, "rnn_latent")


@NUMERICS
def test_rnn_latent_separatrix_is_the_unstable_fixed_point(latent):
    k0 = brentq(lambda k: -k + 3 * np.tanh(k + 0.3), -2.0, 1.0)
    pts = polished(latent, 1)
    assert np.abs(pts - k0).max() <= 0.001 * 30.0            # a tenth of 1% of the domain [-15, 15]
    assert latent.psi.dims == ("grid_kappa",)
    np.testing.assert_allclose(np.sort(latent.attractor.values[:, 0]),
                               [brentq(lambda k: -k + 3 * np.tanh(k + 0.3), lo, hi) for lo, hi in ((-4, -1), (1, 4))],
                               atol=1e-3)


@NUMERICS
def test_agrees_with_the_basins_analyzer(latent, repro):
    basins = _group(repro, "rnn_latent_basins")
    between = basins.boundary_outcome_a == oc.OK  # between two attractors' basins (not the diverged one)
    b_pts = basins.boundary_state.values[between.values]
    assert len(b_pts) >= 1
    k_pts = _finite(latent.separatrix.values)
    # both find the same boundary point (basins to its grid tolerance, psi to 1% of the domain)
    assert np.abs(b_pts[:, 0].mean() - k_pts[:, 0].mean()) <= 0.01 * 30.0


@NUMERICS
def test_optimal_perturbation_of_given_states_in_1d(seed_offset):
    an = KoopmanSeparatrix(**{**FAST, "grid_size": None, "perturb_margin": 0.05, "seed": seed_offset})
    an.fit(_latent())
    k0 = brentq(lambda k: -k + 3 * np.tanh(k + 0.3), -2.0, 1.0)
    out = an.optimal_perturbation([[-3.0], [2.0]])
    assert out.perturbation.dims == ("target", "state")
    np.testing.assert_allclose(out.perturbation_norm.values, [abs(k0 + 3.0), abs(2.0 - k0)], rtol=0.05)
    assert out.crossed.values.all()
    psi = an.transform([[-3.0], [2.0]]).psi.values
    assert psi[0] * psi[1] < 0


# -- 100-D: bistable embedded by a random rotation, with 98 extra stable directions -----------------------------------
@NUMERICS
def test_100d_runs_and_reports_its_accuracy(repro):
    # boundary sampling (auto above 3-D) brings the zero set near u0 = 0, but not to the 1% goal at quick size
    # (docs/koopman.md); the analyzer finds the two attractors u = (+-1, 0, ...), returns labeled zero-set points
    r = _group(repro, "embedded_100d").isel(c=0)
    assert int(r.outcome) == oc.OK and "psi" not in r                       # no grid above 3-D
    assert r.sizes["state"] == 100
    Q = Bistable100.Q.numpy()
    np.testing.assert_allclose(Q.T @ Q, np.eye(100), atol=1e-12)
    u = r.attractor.values @ Q
    np.testing.assert_allclose(np.sort(u[:, 0]), [-1.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(u[:, 1:], 0.0, atol=1e-4)
    assert len(_finite(r.separatrix_psi.values)) == 64
    # validation curves where psi's sign or the simulated class does not change have a NaN crossing_error,
    # labeled nan in crossing_outcome: counted and bounded (measured: 0 of 8), never a silent NaN
    failed = r.crossing_outcome.values == oc.NAN
    assert np.array_equal(failed, ~np.isfinite(r.crossing_error.values))
    assert failed.sum() <= 2, r.crossing_outcome.values
    assert np.isfinite(float(r.r2))
    u0 = np.abs(polished(r, 58) @ Q[:, 0])
    u0_psi = np.abs(_finite(r.separatrix_psi.values) @ Q[:, 0])
    err = _group(repro, "errors").sel(case="embedded_100d")
    assert float(err.error) == pytest.approx(u0.max()) and float(err.error_psi) == pytest.approx(u0_psi.max())
    assert float(err.bound) == 0.02 and "separatrix_embedded_100d" in _group(repro, "claims").claim.values
    assert u0.max() <= 0.002                                  # polished: a tenth of the 1% goal (measured 2.4e-5)
    # psi's own zero set, regression guard of boundary sampling: before it, the median |u0| was ~0.1 (max 0.23
    # quick / 0.63 full); with it max 0.04-0.13 over seeds, median 0.01-0.02
    assert np.median(u0_psi) <= 0.05 and float(r.r2) >= 0.95


@NUMERICS
def test_rnn_100_zero_set_perturbations_attractors(repro):
    # full 100-neuron rank-one rnn (W = m n^T, b = 0): the separatrix is exactly n^T x = 0, the attractors are
    # tanh(+-m kappa*) at distance kappa*/|n| from it (construction checked in tests/test_koopman_highdim.py)
    from dynlearn_builtins.reproductions.koopman import hyperplane_distance, rank_one_fixed_point, rank_one_rnn

    r = _group(repro, "rnn_100")
    net = rank_one_rnn(100)
    n = net.param_tensors()["n"][0].numpy()
    kappa = rank_one_fixed_point(net)
    pts = polished(r, 0.9 * r.sizes["point"])
    err = hyperplane_distance(pts, n)
    own = hyperplane_distance(_finite(r.separatrix_psi.values), n)
    assert err.max() <= 0.002, (err.max(), own.max())          # a tenth of 1% of the box side 2 (psi's own: 0.01)
    np.testing.assert_allclose(r.perturbation_norm.values, kappa / np.linalg.norm(n), rtol=0.05)
    assert r.crossed.values.all() and r.stays.values.all()
    np.testing.assert_allclose(np.sort(r.attractor.values @ n), [-kappa, kappa], rtol=1e-6)


def test_100d_system_is_the_rotated_bistable_flow():
    sys = Bistable100()
    p = sys.expand_params(sys.param_tensors((1,)))
    u = torch.randn(1, 7, 100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = sys.rhs(u @ Bistable100.Q.T, p) @ Bistable100.Q          # the flow in the rotated coordinates
    torch.testing.assert_close(f[..., 0], u[..., 0] - u[..., 0] ** 3)
    torch.testing.assert_close(f[..., 1:], -(1 + torch.arange(1, 100, dtype=torch.float64) / 100) * u[..., 1:])


# -- warm start along an ordered sweep dim ----------------------------------------------------------------------------
@NUMERICS
def test_warm_start_follows_the_separatrix(seed_offset):
    an = KoopmanSeparatrix(**{**FAST, "steps": 800, "warm_steps": 300, "warm_start": "a", "seed": seed_offset})
    out = an.run("bistable", dynlearn.grid(a=[0.0, 0.2, 0.4]))
    for a in (0.0, 0.2, 0.4):
        assert distance_to_parabola(_finite(out.separatrix_psi.sel(a=a).values), a).max() <= 0.04
    # later slices train for warm_steps only (NaN-padded curves), and the sign of psi is kept
    assert np.isfinite(out.train_loss.sel(a=0.0).values).all()
    assert np.isnan(out.train_loss.sel(a=0.4).values).any()
    lab = out.attractor.sel(state="x").values                           # (a, side): class -1 then +1
    assert (np.sign(lab[:, 0]) == np.sign(lab[0, 0])).all()


# -- determinism, contract, errors ------------------------------------------------------------------------------------
def test_same_seed_same_result():
    an = KoopmanSeparatrix(**{**FAST, "steps": 60})
    a = an.run("bistable", dynlearn.grid(a=[0.0]))
    b = KoopmanSeparatrix(**{**FAST, "steps": 60}).run("bistable", dynlearn.grid(a=[0.0]))
    c = KoopmanSeparatrix(**{**FAST, "steps": 60, "seed": 1}).run("bistable", dynlearn.grid(a=[0.0]))
    np.testing.assert_array_equal(a.separatrix.values, b.separatrix.values)
    np.testing.assert_array_equal(a.train_loss.values, b.train_loss.values)
    assert not np.array_equal(a.train_loss.values, c.train_loss.values)


def test_conformance():
    check_analyzer(KoopmanSeparatrix(**{**FAST, "steps": 30, "grid_size": 11}), "bistable",
                   dynlearn.grid(a=[0.0, 0.3]))


def test_single_attractor_is_a_labeled_outcome():
    out = KoopmanSeparatrix(**{**FAST, "steps": 20}).run("hopf", dynlearn.grid(mu=[-0.5]))
    meanings = out.outcome.attrs["flag_meanings"].split()
    assert meanings[int(out.outcome.item())] == "single_attractor"
    assert np.isnan(out.separatrix.values).all()


@pytest.mark.parametrize(
    "options, error",
    [({"steps": 0}, ParameterError), ({"width": 2.5}, ParameterError), ({"eigenvalue": -1.0}, ParameterError),
     ({"eigenvalue": "guess"}, ParameterError), ({"precision": "float16"}, ParameterError),
     ({"lr": float("nan")}, ParameterError), ({"refine_fraction": 1.5}, ParameterError),
     ({"trajectory_fraction": 0.6, "refine_fraction": 0.5}, ParameterError), ({"threads": 0}, ParameterError),
     ({"n_boundary": 0}, ParameterError), ({"boundary_noise": -0.1}, ParameterError),
     ({"active_rounds": -1}, ParameterError), ({"sign_weight": float("nan")}, ParameterError),
     ({"polish": "yes"}, ParameterError), ({"polish_radius": 0.0}, ParameterError)],
    ids=["zero-steps", "float-width", "negative-eigenvalue", "unknown-eigenvalue", "float16", "nan-lr",
         "fraction-above-one", "fractions-sum", "zero-threads", "zero-boundary-curves", "negative-noise",
         "negative-active-rounds", "nan-sign-weight", "polish-not-bool", "zero-polish-radius"],
)
def test_bad_options(options, error):
    with pytest.raises(error):
        KoopmanSeparatrix(**{**FAST, "steps": 5, **options}).run("bistable", dynlearn.grid(a=[0.0]))


def test_map_eigenvalue_must_exceed_one():
    with pytest.raises(ParameterError, match="lambda > 1"):
        KoopmanSeparatrix(**{**FAST, "steps": 5, "eigenvalue": 0.5}).run("two_factor", dynlearn.grid(mu=[0.8]))


def test_bad_states_and_unfitted():
    an = KoopmanSeparatrix(**{**FAST, "steps": 5})
    with pytest.raises(ParameterError, match="fit"):
        an.transform([[0.0, 0.0]])
    an.fit("bistable", dynlearn.grid(a=[0.0]))
    with pytest.raises(ShapeError):
        an.transform([[0.0, 0.0, 0.0]])
    with pytest.raises(ParameterError, match="NaN"):
        an.optimal_perturbation([[np.nan, 0.0]])
    assert an.transform([[0.0, 0.0], [1.0, 0.0]]).psi.dims == ("a", "sample")


def test_forward_mode_equals_torch_func_jvp():
    g = torch.Generator().manual_seed(0)
    net = BatchedMLP.init(3, 4, 8, 2, torch.zeros(4), torch.ones(4), 2.0, g, torch.float64)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    v = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    psi, dpsi = net.dual(x, v)
    ref_psi, ref_dpsi = jvp_reference(net, x, v)
    torch.testing.assert_close(psi, ref_psi, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dpsi, ref_dpsi, rtol=1e-12, atol=1e-12)


def test_views_build(bistable):
    import holoviews as hv

    views = KoopmanSeparatrix().views(bistable)
    assert set(views) == {"separatrix", "training"}
    for view in views.values():
        hv.render(view[view.keys()[0]], backend="bokeh")


# -- full size ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_reproduction(tmp_path):
    tree = dynlearn.run_reproduction("koopman", tmp_path / "full.zarr", quick=False)
    claims = tree["claims"].to_dataset()
    failed = claims["claim"].values[~claims["passed"].values].tolist()
    assert not failed, failed
    two = tree["two_factor"].to_dataset()
    for mu in (0.8, 1.5):
        minor = ellipse_axes(mu)[1] / math.sqrt(2)
        assert distance_to_ellipse(_finite(two.separatrix.sel(mu=mu).values), mu).max() <= 0.002 * minor

"""transverse analyzer: tangential / transverse exponents of invariant manifolds against exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

import dynlearn
from dynlearn import outcome as oc
from dynlearn.sweep import grid
from dynlearn.testing import analyzer_checks
from dynlearn_builtins.analyzers.orbits.kernels import NO_CLASS, PERIODIC
from dynlearn_builtins.analyzers.transverse import STABILITY_NAMES, TransverseStability

ATTRACTING, NEUTRAL, REPELLING, MIXED, NONE = (STABILITY_NAMES.index(n) for n in (
    "attracting", "neutral", "repelling", "mixed", "none"))


@pytest.mark.parametrize("check", list(analyzer_checks(TransverseStability(n_samples=3, transient=20, steps=100),
                                                       "two_factor", grid(mu=[0.3, 0.6, 1.2]))),
                         ids=lambda c: c.__name__)
def test_conformance_all_declared_manifolds(check):
    check()


# -- the Chebyshev ellipse ----------------------------------------------------------------------------------------
def exact_ellipse_exponent(mu: float) -> float:
    """(1/2pi) int ln|det J(theta)| dtheta - ln 3 on E_mu (scipy quadrature, independent of the library)."""
    A, B = math.sqrt(4 * (2 + mu) / mu), math.sqrt(4 * (2 - mu) / mu)

    def logdet(th):
        s, d = A * math.cos(th), B * math.sin(th)
        a, b = (s + d) / 2, (s - d) / 2
        det = (1 - mu * b * b) * (1 - mu * a * a) - mu**2 * (2 * a * b - 1) ** 2
        return math.log(abs(det))

    val, _ = quad(logdet, 0, 2 * math.pi, limit=400)
    return val / (2 * math.pi) - math.log(3)


ELLIPSE_MUS = [0.2, 1.0, 1.5, 1.9]


@pytest.fixture(scope="module")
def ellipse():
    return TransverseStability(manifold="ellipse", n_samples=32, transient=50, steps=1500).run(
        "two_factor", grid(mu=ELLIPSE_MUS + [2.5]))


@pytest.mark.parametrize("mu", ELLIPSE_MUS, ids=lambda m: f"mu={m}")
def test_ellipse_transverse_exponent_matches_quadrature(ellipse, mu):
    exact = exact_ellipse_exponent(mu)
    measured = float(ellipse["transverse_exponent_mean"].sel(mu=mu))
    assert exact > 0 and abs(measured - exact) <= 0.02
    assert int(ellipse["manifold_stability"].sel(mu=mu)) == REPELLING


def test_ellipse_at_1p5_is_ln2(ellipse):
    assert exact_ellipse_exponent(1.5) == pytest.approx(math.log(2), abs=1e-9)
    assert abs(float(ellipse["transverse_exponent_mean"].sel(mu=1.5)) - math.log(2)) <= 0.02


def test_ellipse_tangential_exponent_is_ln3(ellipse):
    tang = ellipse["tangential_exponent"].sel(mu=ELLIPSE_MUS)
    assert abs(float(tang.mean()) - math.log(3)) <= 0.01


def test_ellipse_orbits_stay_on_the_ellipse(ellipse):
    from dynlearn_builtins.systems.two_factor import ellipse_level

    for mu in ELLIPSE_MUS:
        x = torch.tensor(ellipse["final_state"].sel(mu=mu).values)
        assert float((ellipse_level(x, mu) - 1).abs().max()) < 1e-12


def test_ellipse_undefined_beyond_mu_2(ellipse):
    out = ellipse.sel(mu=2.5)
    assert int(out["manifold_outcome"]) == oc.INVALID_PARAMETERS and int(out["manifold_stability"]) == NONE
    assert (out["outcome"] == oc.INVALID_PARAMETERS).all() and (out["stability"] == NONE).all()
    assert (out["orbit"] == NO_CLASS).all() and np.isnan(out["transverse_exponent"].values).all()
    defined = ellipse.sel(mu=ELLIPSE_MUS)
    assert (defined["manifold_outcome"] == oc.OK).all() and (defined["outcome"] == oc.OK).all()
    assert ellipse["manifold_outcome"].attrs["flag_meanings"].split() == list(oc.NAMES)


# -- the hyperbola of minima: fixed points with normal eigenvalue 1 - mu (a^2 + b^2) ------------------------------
@pytest.mark.parametrize("mu", [0.4, 0.9], ids=lambda m: f"mu={m}")
def test_minima_transverse_exponent_is_the_normal_eigenvalue(mu):
    u = np.linspace(-1.0, 1.0, 9)
    states = np.stack([np.exp(u), np.exp(-u)], -1)
    out = TransverseStability(manifold="minima", initial_states=states.tolist(), n_samples=0, transient=5,
                              steps=80).run("two_factor", grid(mu=[mu]))
    x = out["final_state"].isel(mu=0).values
    assert np.allclose(x, states, atol=1e-14)
    sharp = (x**2).sum(-1)
    expected = np.log(np.abs(1 - mu * sharp))
    assert np.allclose(out["transverse_exponent"].isel(mu=0, normal=0).values, expected, rtol=0, atol=1e-10)
    assert np.allclose(out["tangential_exponent"].values, 0.0, atol=1e-12)
    stab = out["stability"].isel(mu=0).values
    assert (stab[sharp < 2 / mu - 0.05] == ATTRACTING).all() and (stab[sharp > 2 / mu + 0.05] == REPELLING).all()


# -- the balanced slice ----------------------------------------------------------------------------------------------
def _two_cycle(mu: float) -> tuple[float, float]:
    """The slice's 2-cycle by Newton on f(f(z)) = z from the iterated orbit (independent of the analyzer)."""
    f = lambda z: z * (1 - mu * (z * z - 1))  # noqa: E731
    df = lambda z: 1 + mu - 3 * mu * z * z  # noqa: E731
    z = 0.1
    for _ in range(3000):
        z = f(z)
    for _ in range(50):
        z -= (f(f(z)) - z) / (df(f(z)) * df(z) - 1)
    return z, f(z)


def test_balanced_two_cycle_transverse_exponent_and_attraction():
    mu = 1.1
    out = TransverseStability(manifold="balanced", initial_states=[[0.1, 0.1], [-0.3, -0.3]], n_samples=0,
                              transient=1000, steps=1000).run("two_factor", grid(mu=[mu]))
    z1, z2 = _two_cycle(mu)
    exact = 0.5 * (math.log(abs(1 + mu * (z1**2 - 1))) + math.log(abs(1 + mu * (z2**2 - 1))))
    measured = out["transverse_exponent"].isel(mu=0, normal=0).values
    assert np.allclose(measured, exact, rtol=0, atol=1e-10) and exact < 0
    assert out["orbit"].isel(mu=0).values.tolist() == [PERIODIC, PERIODIC]
    assert out["period"].isel(mu=0).values.tolist() == [2, 2]
    assert out["stability"].isel(mu=0).values.tolist() == [ATTRACTING, ATTRACTING]
    # the tangential exponent is the cycle's own: (1/2) ln|f'(z1) f'(z2)|
    tang = 0.5 * math.log(abs((1 + mu - 3 * mu * z1**2) * (1 + mu - 3 * mu * z2**2)))
    assert np.allclose(out["tangential_exponent"].values, tang, atol=1e-10)


def test_balanced_minimum_is_transversely_neutral_and_chaos_at_2():
    z = [-1.3, -0.9, -0.6, -0.2, 0.15, 0.45, 0.8, 1.25]
    out = TransverseStability(manifold="balanced", initial_states=[[v, v] for v in z], n_samples=0, transient=300,
                              steps=1500).run(
        "two_factor", grid(mu=[0.5, 2.0]))
    assert (out["stability"].sel(mu=0.5) == NEUTRAL).all()  # multiplier 1 + mu (z^2 - 1) = 1 at z = 1
    # mu = 2: mean ln|1 + 2 cos psi| over the arcsine measure is 0 (Jensen)
    assert abs(float(out["transverse_exponent"].sel(mu=2.0).mean())) < 0.03
    assert abs(float(out["tangential_exponent"].sel(mu=2.0).mean()) - math.log(3)) < 0.03


# -- a user-given manifold on a flow -------------------------------------------------------------------------------
def test_user_manifold_on_a_flow():
    axis = dynlearn.Manifold("x_axis", "the invariant line y = 0", lambda x, p: x[..., 1:])
    out = TransverseStability(manifold=axis, initial_states=[[0.5, 0.3], [-1.7, 0.2]], n_samples=0, transient=20,
                              steps=48,
                              max_period=16).run(
        "bistable", grid(a=[0.0]))
    # attractors s = +-1 on y = 0: along the line s' = s - s^3 (exponent 1 - 3 = -2), across it y' = -y (-1)
    assert np.allclose(out["final_state"].isel(a=0).values, [[1.0, 0.0], [-1.0, 0.0]], atol=1e-9)
    assert np.allclose(out["tangential_exponent"].values, -2.0, atol=1e-3)
    assert np.allclose(out["transverse_exponent"].values, -1.0, atol=1e-3)
    assert int(out["manifold_stability"].isel(a=0)) == ATTRACTING
    assert out.attrs["manifold"] == "x_axis"
    assert TransverseStability(manifold=axis).get_params()["manifold"] == "x_axis"


@pytest.mark.parametrize(
    "system, kwargs, match",
    [("hopf", {}, "declares no invariant manifold"), ("two_factor", {"manifold": "torus"}, "no manifold 'torus'"),
     ("two_factor", {"neutral_tol": -1.0}, "neutral_tol"), ("two_factor", {"steps": 5}, "steps"),
     ("two_factor", {"chunk_size": 0}, "chunk_size")],
    ids=["none-declared", "unknown", "neutral_tol", "steps", "chunk_size"],
)
def test_bad_input(system, kwargs, match):
    with pytest.raises(dynlearn.ParameterError, match=match):
        TransverseStability(**{"transient": 5, "steps": 80, **kwargs}).run(system)


def test_diverged_and_masked_orbits_are_outcomes_not_stabilities():
    import xarray as xr

    from dynlearn.sweep import flatten

    out = TransverseStability(manifold="balanced", initial_states=[[0.1, 0.1], [3.0, 3.0]], n_samples=0, transient=20,
                              steps=100).run(
        "two_factor", grid(mu=[1.1]))
    assert out["outcome"].isel(mu=0).values.tolist() == [oc.OK, oc.DIVERGED]
    assert out["stability"].isel(mu=0).values.tolist() == [ATTRACTING, NONE]
    assert out["orbit"].isel(mu=0).values.tolist() == [PERIODIC, NO_CLASS]
    assert int(out["manifold_outcome"].isel(mu=0)) == oc.OK
    assert int(out["manifold_stability"].isel(mu=0)) == ATTRACTING
    params = xr.Dataset({"mu": ("seed", [1.1, np.nan])}, coords={"seed": [0, 1]})
    batch = flatten(dynlearn.get_system("two_factor")(), params, on_nan="mask")
    out = TransverseStability(manifold="balanced", n_samples=2, transient=20, steps=100).analyze(
        batch, upstream={}, show_progress=False)
    assert out["outcome"].sel(seed=1).values.tolist() == [oc.MASKED, oc.MASKED]
    assert int(out["manifold_outcome"].sel(seed=1)) == oc.MASKED
    assert int(out["manifold_stability"].sel(seed=1)) == NONE and (out["stability"].sel(seed=1) == NONE).all()


def test_views_render_with_bokeh(ellipse):
    import holoviews as hv

    views = TransverseStability().views(ellipse)
    assert set(views) == {"exponents", "stability"}
    for obj in views.values():
        hv.render(obj, backend="bokeh")

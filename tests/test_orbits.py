"""orbits analyzer: classification, Lyapunov exponents and thresholds against exact values, on maps and flows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn import outcome as oc
from dynlearn.errors import UnknownNameError
from dynlearn.sweep import flatten, grid
from dynlearn.testing import analyzer_checks
from dynlearn_builtins.analyzers.orbits.kernels import (
    APERIODIC, CHAOTIC, CLASS_NAMES, CONVERGED, MONOTONE, NO_CLASS, OSCILLATING, PERIODIC, SPIRAL, detect_period,
)
from dynlearn_builtins.analyzers.orbits import Orbits

FAST = {"transient": 300, "steps": 200}


class CubicSlice(dynlearn.MapSystem):
    """The balanced slice as a user's own 1-D map: z -> z (1 - mu (z^2 - 1))."""

    name = "cubic_slice_test"
    description = "balanced slice of the two-factor map"
    state_names = ("z",)
    parameters = {"mu": dynlearn.Param(1.0, low=0)}
    domain_bounds = ([-1.4], [1.4])

    def rhs(self, x, p):
        return x * (1 - p["mu"][..., None] * (x**2 - 1))


class Logistic(dynlearn.MapSystem):
    """x -> r x (1 - x)."""

    name = "logistic_test"
    description = "logistic map"
    parameters = {"r": dynlearn.Param(3.2, low=0, high=4)}
    domain_bounds = ([0.05], [0.95])

    def rhs(self, x, p):
        return p["r"][..., None] * x * (1 - x)


# -- conformance ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("check", list(analyzer_checks(Orbits(n_samples=3, **FAST), "two_factor",
                                                       grid(mu=[0.3, 0.6, 1.2]))), ids=lambda c: c.__name__)
def test_conformance_map(check):
    check()


@pytest.mark.parametrize("check", list(analyzer_checks(Orbits(n_samples=2, transient=30, steps=40, max_period=16),
                                                       "hopf", grid(mu=[-0.5, 0.5], omega=[1.0, 2.0]))),
                         ids=lambda c: c.__name__)
def test_conformance_flow(check):
    check()


@pytest.mark.parametrize("check", list(analyzer_checks(Orbits(n_samples=2, refine_dim="mu", refine_tol=0.05, **FAST),
                                                       "two_factor", grid(mu=[0.3, 0.6, 1.2]))),
                         ids=lambda c: c.__name__)
def test_conformance_with_refinement(check):
    check()


# -- the balanced slice, as a user's 1-D map --------------------------------------------------------------------
SLICE_THRESHOLDS = {  # DESIGN.md §3.3
    "oscillating": 0.5, "period 2": 1.0, "period 4": 1.2361, "period 8": 1.2887, "period 16": 1.2992,
    "accumulation": 1.302, "divergence": 2.0,
}


@pytest.fixture(scope="module")
def slice_phase():
    mu = np.unique(np.round(np.concatenate([np.arange(0.3, 2.1 + 1e-9, 0.1), [0.8, 1.1, 1.25, 1.9, 2.05],
                                            np.arange(1.28, 1.30 + 1e-9, 0.005), np.arange(1.3015, 1.3035 + 1e-9, 1e-4)]),
                            6))
    orb = Orbits(initial_states=[[0.1]], n_samples=0, transient=2000, steps=600, refine_dim="mu", refine_tol=2e-3)
    return orb.run(CubicSlice(), grid(mu=mu))


def _measured(out: xr.Dataset, name: str) -> float:
    at = out["transition_at"].values
    ca, cb = out["class_after"].values, out["class_before"].values
    pa, aa = out["period_after"].values, out["approach_after"].values
    if name == "oscillating":
        sel = aa == OSCILLATING
    elif name.startswith("period"):
        sel = (ca == PERIODIC) & (pa == int(name.split()[1]))
    elif name == "accumulation":
        sel = (cb == PERIODIC) & (out["period_before"].values >= 32) & np.isin(ca, [CHAOTIC, APERIODIC])
    else:
        sel = out["outcome_after"].values == oc.DIVERGED
    return float(at[sel].min())


@pytest.mark.parametrize("name", list(SLICE_THRESHOLDS))
def test_slice_thresholds_within_001(slice_phase, name):
    assert abs(_measured(slice_phase, name) - SLICE_THRESHOLDS[name]) <= 0.01


@pytest.mark.parametrize(
    "mu, outcome, cls, period, approach",
    [(0.3, oc.OK, CONVERGED, 1, MONOTONE), (0.8, oc.OK, CONVERGED, 1, OSCILLATING), (1.1, oc.OK, PERIODIC, 2, 0),
     (1.25, oc.OK, PERIODIC, 4, 0), (1.295, oc.OK, PERIODIC, 8, 0), (1.9, oc.OK, CHAOTIC, 0, 0),
     (2.05, oc.DIVERGED, NO_CLASS, 0, 0)],
    ids=["monotone", "oscillating", "period2", "period4", "period8", "chaos", "diverged"],
)
def test_slice_phases(slice_phase, mu, outcome, cls, period, approach):
    one = slice_phase.sel(mu=mu).isel(sample=0)
    got = (int(one["outcome"]), int(one["orbit"]), int(one["period"]), int(one["approach"]))
    assert got == (outcome, cls, period, approach)


def test_slice_is_bounded_up_to_two_and_diverges_beyond(slice_phase):
    out = slice_phase.isel(sample=0)
    bounded = np.isin(out["outcome"].values, [oc.OK, oc.UNRESOLVED])  # unresolved: a long cycle in a window
    mu = out["mu"].values
    assert bounded[mu <= 2.0].all() and not bounded[mu > 2.0].any()


def test_slice_converges_to_the_minimum(slice_phase):
    final = slice_phase["final_state"].sel(mu=[0.3, 0.8]).values
    assert np.allclose(final, 1.0, atol=1e-7)


def test_chebyshev_lyapunov_exponent_is_ln3():
    out = Orbits(n_samples=64, transient=100, steps=2000).run(CubicSlice(), grid(mu=[2.0]))
    lam = out["lyapunov"].isel(exponent=0)
    assert (out["orbit"] == CHAOTIC).all()
    assert abs(float(lam.mean()) - math.log(3)) < 0.02


def test_two_factor_balanced_manifold_start_and_exponents():
    out = Orbits(manifold="balanced", n_samples=4, **FAST).run("two_factor", grid(mu=[0.3]))
    x0 = out["initial_state"].values
    assert np.array_equal(x0[..., 0], x0[..., 1])
    # at (1, 1): eigenvalues 1 (along the hyperbola of minima) and 1 - 2 mu
    conv = out["orbit"].values == CONVERGED
    lam = out["lyapunov"].values[conv]
    assert np.allclose(lam[:, 1], math.log(1 - 2 * 0.3), atol=1e-3) and np.allclose(lam[:, 0], 0.0, atol=0.02)


# -- the logistic map: another user map ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def logistic():
    orb = Orbits(n_samples=4, transient=1500, steps=200, refine_dim="r", refine_tol=1e-3)
    return orb.run(Logistic(), grid(r=[2.5, 2.9, 3.2, 3.5, 4.0]))


def test_logistic_doublings(logistic):
    at = logistic["transition_at"].values
    pa = logistic["period_after"].values
    assert abs(at[pa == 2].min() - 3.0) <= 0.01
    assert abs(at[pa == 4].min() - (1 + math.sqrt(6))) <= 0.01


def test_logistic_fixed_point_and_chaos(logistic):
    fp = logistic["final_state"].sel(r=2.5).values[:, 0]
    assert np.allclose(fp, 1 - 1 / 2.5, atol=1e-9)
    lam = logistic["lyapunov"].sel(r=2.5).values[:, 0]
    assert np.allclose(lam, math.log(0.5), atol=5e-3)  # multiplier 2 - r
    assert logistic["approach"].sel(r=2.9).values.tolist() == [OSCILLATING] * 4
    assert (logistic["orbit"].sel(r=4.0) == CHAOTIC).all()


def test_logistic_lyapunov_exponent_at_4_is_ln2():
    out = Orbits(n_samples=64, transient=50, steps=500).run(Logistic(), grid(r=[4.0]))
    assert abs(float(out["lyapunov"].mean()) - math.log(2)) < 0.02


# -- flows through the stroboscopic map ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hopf():
    return Orbits(n_samples=3, seed=1).run("hopf", grid(mu=[-0.5, 0.5], omega=[1.0, 2.0]))


def test_hopf_limit_cycle_period_and_exponents(hopf):
    cyc = hopf.sel(mu=0.5)
    assert (cyc["orbit"] == PERIODIC).all()
    period = cyc["period_time"].values
    expected = 2 * math.pi / cyc["omega"].values[:, None]
    assert np.allclose(period, expected, rtol=1e-4)
    lam = cyc["lyapunov"].values
    assert np.allclose(lam[..., 0], 0.0, atol=1e-3) and np.allclose(lam[..., 1], -2 * 0.5, atol=1e-3)
    radius = np.hypot(*np.moveaxis(cyc["final_state"].values, -1, 0))
    assert np.allclose(radius, math.sqrt(0.5), atol=1e-6)
    assert (cyc["n_attractors"] == 1).all()


def test_hopf_focus(hopf):
    foc = hopf.sel(mu=-0.5)
    assert (foc["orbit"] == CONVERGED).all() and (foc["approach"] == SPIRAL).all()
    assert np.allclose(foc["lyapunov"].values, -0.5, atol=1e-3)  # eigenvalues mu +- i omega
    assert np.isnan(foc["period_time"].values).all()


def test_bistable_flow_attractors_are_numbered():
    states = [[-1.5, 0.5], [-0.5, -1.0], [0.7, 0.2], [1.8, -1.5]]
    out = Orbits(initial_states=states, n_samples=0, transient=60, steps=60, max_period=16).run(
        "bistable", grid(a=[0.0, 0.2]))
    assert out["n_attractors"].values.tolist() == [2, 2]
    final = out["final_state"].sel(state="x").values
    assert np.allclose(np.abs(final), 1 + 0.2 * out["final_state"].sel(state="y").values ** 2, atol=1e-6)
    assert out["attractor"].values.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]
    assert (out["approach"].values == MONOTONE).all()
    assert np.allclose(out["lyapunov"].values, [-1.0, -2.0], atol=1e-3)  # y' = -y; s' = s - s^3 at s = +-1


# -- failures are data; bad input is an error ------------------------------------------------------------------------
def test_masked_parameters_give_masked_orbits():
    params = xr.Dataset({"mu": ("seed", [0.4, np.nan, 1.1])}, coords={"seed": [0, 1, 2]})
    system = dynlearn.get_system("two_factor")()
    batch = flatten(system, params, on_nan="mask")
    out = Orbits(n_samples=2, **FAST).analyze(batch, upstream={}, show_progress=False)
    assert out["outcome"].sel(seed=1).values.tolist() == [oc.MASKED, oc.MASKED]
    assert out["orbit"].sel(seed=1).values.tolist() == [NO_CLASS, NO_CLASS]
    assert np.isnan(out["lyapunov"].sel(seed=1).values).all()
    assert float(out["class_fraction"].sel(seed=1, orbit_class="none")) == 1.0
    assert out["orbit"].sel(seed=0).values.tolist() == [CONVERGED, CONVERGED]
    assert out["outcome"].sel(seed=0).values.tolist() == [oc.OK, oc.OK]


def test_nan_parameters_from_a_grid_raise():
    with pytest.raises(dynlearn.ParameterError, match="NaN"):
        Orbits(**FAST).run("two_factor", grid(mu=[0.5, np.nan]))


def test_diverged_orbits_are_frozen_and_labeled():
    out = Orbits(initial_states=[[0.1, 0.1], [5.0, -5.0]], n_samples=0, **FAST).run("two_factor", grid(mu=[0.5]))
    assert oc.labels(out["outcome"].values.ravel()).tolist() == ["ok", "diverged"]
    assert np.isfinite(out["final_state"].values).all()
    assert out["orbit"].values.ravel().tolist() == [CONVERGED, NO_CLASS]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"initial_states": [[0.1, 0.2, 0.3]], "n_samples": 0}, dynlearn.ShapeError, "3 values per state"),
     ({"initial_states": [[0.1, np.nan]], "n_samples": 0}, dynlearn.ParameterError, "NaN"),
     ({"manifold": "torus"}, dynlearn.ParameterError, "no manifold 'torus'"),
     ({"steps": 10}, dynlearn.ParameterError, "steps"),
     ({"period_tol": -1.0}, dynlearn.ParameterError, "period_tol"),
     ({"n_samples": 0}, dynlearn.ParameterError, "n_samples"),
     ({"refine_dim": "lr"}, dynlearn.ParameterError, "refine_dim 'lr'"),
     ({"chunk_size": 0}, dynlearn.ParameterError, "chunk_size"),
     ({"seed": -1}, dynlearn.ParameterError, "seed"),
     ({"n_exponents": 0}, dynlearn.ParameterError, "n_exponents"),
     ({"refine_dim": "mu", "refine_tol": 0.0}, dynlearn.ParameterError, "refine_tol")],
    ids=["states-dim", "states-nan", "manifold", "steps", "period_tol", "n_samples", "refine_dim", "chunk_size",
         "seed", "n_exponents", "refine_tol"],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        Orbits(**{**FAST, **kwargs}).run("two_factor", grid(mu=[0.5]))


@pytest.mark.parametrize("old, new", [("n_states", "n_samples"), ("chunk", "chunk_size"), ("tol", "period_tol"),
                                      ("lyap_tol", "lyapunov_tol"), ("record", "tail"), ("flow_step", "dt")])
def test_renamed_options_are_unknown_and_the_new_name_is_listed(old, new):
    with pytest.raises(UnknownNameError, match=f"no option '{old}'; its options are: .*\\b{new}\\b"):
        Orbits(**{old: 1})


def test_options_are_declared_and_validated_once():
    orb = Orbits(n_samples=3, transient=10)
    assert orb.settings.n_samples == 3 and orb.n_samples == 3 and orb.settings.steps is None
    assert set(orb.get_params()) == set(Orbits.options) | {"threads"}
    assert all(p.description for p in Orbits.options.values())
    with pytest.raises(dynlearn.ParameterError, match="tail"):
        Orbits(tail=0)


def test_outcome_is_the_one_vocabulary(slice_phase):
    assert slice_phase["outcome"].attrs["flag_meanings"].split() == list(oc.NAMES)
    assert slice_phase["outcome_after"].attrs["flag_meanings"].split() == list(oc.NAMES)
    assert CLASS_NAMES == ("converged", "periodic", "chaotic", "aperiodic", "none")
    failed = slice_phase["outcome"].values != oc.OK
    assert failed.any() and (slice_phase["orbit"].values[failed] == NO_CLASS).all()
    assert (slice_phase["orbit"].values[~failed] != NO_CLASS).all()


def test_detect_period_exact():
    # a 3-cycle followed by noise-free repetition: smallest period found, verified on the whole window
    cyc = torch.tensor([[0.1], [0.7], [-0.4]], dtype=torch.float64)
    tail = cyc.repeat(20, 1).reshape(60, 1, 1)
    assert detect_period(tail, 8, 1e-12).item() == 3
    noisy = tail.clone()
    noisy[-5] += 1e-3
    assert detect_period(noisy, 8, 1e-9).item() == 0


def test_views_render_with_bokeh(slice_phase, hopf):
    import holoviews as hv

    views = Orbits().views(slice_phase)
    assert set(views) == {"orbit_diagram", "lyapunov", "phase"}
    for obj in views.values():
        hv.render(obj, backend="bokeh")
    views = Orbits().views(hopf)  # two sweep dims: sliders over omega
    assert all(isinstance(v, hv.HoloMap) and v.kdims[0].name == "omega" for v in views.values())


def test_result_round_trips_through_a_store(slice_phase, tmp_path):
    from dynlearn.store import create_store, write_group

    path = tmp_path / "s.zarr"
    create_store(path, {}, {"config": {}})
    write_group(path, "orbits", slice_phase)
    back = dynlearn.open_store(path)["orbits"].to_dataset()
    xr.testing.assert_allclose(back["transition_at"], slice_phase["transition_at"])
    assert back["orbit"].attrs["flag_meanings"].split() == list(CLASS_NAMES)


class Triangular6(dynlearn.MapSystem):
    """A 6-D linear map with an upper-triangular matrix: exponents ln|diag|."""

    name = "triangular6_test"
    description = "x -> A x, A upper triangular"
    state_names = tuple(f"x{i}" for i in range(6))
    parameters = {"s": dynlearn.Param(1.0)}
    DIAG = (0.9, -0.7, 0.5, 0.4, -0.3, 0.2)

    def rhs(self, x, p):
        a = torch.diag(torch.tensor(self.DIAG, dtype=x.dtype)) + 0.3 * torch.triu(torch.ones(6, 6, dtype=x.dtype), 1)
        return (x @ a.T) * p["s"][..., None]


@pytest.mark.parametrize("k", [None, 2], ids=["all-qr", "top2-mgs"])
def test_exponents_of_a_linear_map(k):
    out = Orbits(n_samples=2, transient=10, steps=400, max_period=4, n_exponents=k).run(Triangular6())
    expected = np.sort(np.log(np.abs(Triangular6.DIAG)))[::-1][: k or 6]
    assert out.sizes["exponent"] == len(expected)
    assert np.allclose(out["lyapunov"].values, expected, atol=0.02)


# -- kinds from converged evidence (issue 14) -----------------------------------------------------------------------
def test_kinds_never_contradict_the_exponents(slice_phase):
    lam = slice_phase["lyapunov"].isel(exponent=0).values
    cls = slice_phase["orbit"].values
    tol = 1e-2  # lyapunov_tol
    assert (np.abs(lam[cls == APERIODIC]) <= tol).all()  # quasi-periodic needs a ~0 leading exponent
    assert (lam[cls == CHAOTIC] > tol).all()
    unresolved = slice_phase["outcome"].values == oc.UNRESOLVED
    assert (cls[unresolved] == NO_CLASS).all()
    assert (slice_phase["integrated_steps"].values[unresolved] > 600).all()  # integrated further first


@pytest.fixture(scope="module")
def duffing():
    """Damped Duffing (delta = 0.3): a run too short for the foci to settle (e^{-0.15 t} at t = 74)."""
    short = {"n_samples": 8, "transient": 10, "steps": 64, "max_period": 16}
    return {prec: Orbits(precision=prec, **short).run("duffing") for prec in ("float64", "float32")}


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_duffing_foci_are_fixed_points_after_a_longer_run(duffing, precision):
    out = duffing[precision]
    assert (out["orbit"] == CONVERGED).all() and (out["approach"] == SPIRAL).all()
    assert (out["integrated_steps"] > 64).all()  # not settled after 64 steps: integrated further, not mislabeled
    assert np.allclose(np.abs(out["final_state"].sel(state="x").values), 1.0, atol=1e-4)
    assert int(out["n_attractors"]) == 2
    assert np.allclose(out["lyapunov"].values, -0.15, atol=0.01)  # eigenvalues -0.15 +- 1.41 i


def test_unsettled_orbits_are_unresolved_when_the_budget_is_spent():
    out = Orbits(n_samples=4, transient=10, steps=64, max_period=16, max_steps=64).run("duffing")
    assert (out["outcome"] == oc.UNRESOLVED).all() and (out["orbit"] == NO_CLASS).all()
    assert np.isfinite(out["lyapunov"].values).all()  # the measured (negative) exponents are kept


def test_float32_gives_the_kinds_of_float64(duffing):
    # two-factor map at mu = 1.5: states inside the ellipse reach its two chaotic attractors
    states = [[0.5, 0.5], [0.9, 0.6], [0.2, 1.2], [-0.8, -0.4], [-0.3, -1.1], [1.3, 0.9]]
    runs = {p: Orbits(initial_states=states, n_samples=0, transient=500, steps=400, precision=p).run(
                "two_factor", grid(mu=[1.5]))
            for p in ("float64", "float32")}
    assert np.array_equal(runs["float64"]["orbit"].values, runs["float32"]["orbit"].values)
    assert np.array_equal(runs["float64"]["outcome"].values, runs["float32"]["outcome"].values)
    assert (runs["float32"]["orbit"].values == CHAOTIC).all()
    assert np.isfinite(runs["float32"]["lyapunov"].values).all()
    lam32, lam64 = (runs[p]["lyapunov"].values.mean((0, 1)) for p in ("float32", "float64"))
    assert np.allclose(lam32, lam64, atol=0.1)
    assert np.array_equal(duffing["float64"]["orbit"].values, duffing["float32"]["orbit"].values)


# -- periodic coordinates -------------------------------------------------------------------------------------------
class Rotation(dynlearn.MapSystem):
    """theta -> theta + w on the circle (never wrapped by the map itself)."""

    name = "rotation_test"
    description = "rigid rotation of the circle"
    state_names = ("theta",)
    parameters = {"w": dynlearn.Param(2 * math.pi / 5)}
    periodic = {"theta": (-math.pi, math.pi)}

    def rhs(self, x, p):
        return x + p["w"][..., None]


class Adler(dynlearn.FlowSystem):
    """theta' = w - sin theta: a fixed point for w < 1, a rotation of period 2 pi / sqrt(w^2 - 1) beyond."""

    name = "adler_test"
    description = "Adler equation on the circle"
    state_names = ("theta",)
    parameters = {"w": dynlearn.Param(1.5)}
    periodic = {"theta": (-math.pi, math.pi)}

    def rhs(self, x, p):
        return p["w"][..., None] - torch.sin(x)


def test_a_rotation_of_an_angle_is_a_periodic_orbit():
    out = Orbits(n_samples=3, transient=100, steps=200).run(Rotation())
    assert (out["orbit"] == PERIODIC).all() and (out["period"] == 5).all()
    assert (np.abs(out["final_state"].values) <= math.pi).all()  # reported on the circle
    # the same map on the line is not periodic (its exponent is 0 and its distances do not shrink: aperiodic)
    line = type("Line", (Rotation,), {"name": "line_test", "periodic": {}})
    assert (Orbits(n_samples=3, transient=100, steps=200).run(line())["orbit"] == APERIODIC).all()


def test_a_rotating_flow_is_a_limit_cycle():
    out = Orbits(n_samples=3).run(Adler(), grid(w=[0.5, 1.5]))
    assert (out["orbit"].sel(w=0.5) == CONVERGED).all()
    assert np.allclose(out["lyapunov"].sel(w=0.5).values, -math.sqrt(1 - 0.25), atol=1e-3)  # -cos(asin w)
    assert (out["orbit"].sel(w=1.5) == PERIODIC).all() and int(out["n_attractors"].sel(w=1.5)) == 1
    assert np.allclose(out["period_time"].sel(w=1.5).values, 2 * math.pi / math.sqrt(1.25), rtol=2e-3)

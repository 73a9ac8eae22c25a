"""Reproductions two-factor-phase and two-factor-transverse: reduced (quick) versions checked claim by claim."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dynlearn
from dynlearn_builtins.reproductions.two_factor import (
    balanced_cycle_exponent,
    ellipse_transverse_reference,
    slice_doubling_points,
)

NUMERICS = pytest.mark.numerics   # chaotic maps (period doubling, Lyapunov exponents): other rounding paths

PHASE_CLAIMS = [
    "oscillating_convergence", "period_2", "period_4", "period_8", "period_16", "period_32", "accumulation",
    "divergence", "chaos", "chebyshev_lyapunov", "chebyshev_conjugacy", "catapult_initial_loss",
    "catapult_peak_loss", "catapult_sharpness", "reduction", "reduction_trajectory",
]
TRANSVERSE_CLAIMS = [
    "ellipse_transverse", "ellipse_positive", "ellipse_repelling", "ellipse_mu_1.5", "ellipse_tangential",
    "balanced_transverse", "balanced_attracting", "balanced_mu_2",
]


@pytest.fixture(scope="module")
def phase(tmp_path_factory):
    return dynlearn.run_reproduction("two-factor-phase", tmp_path_factory.mktemp("p") / "phase.zarr", quick=True)


@pytest.fixture(scope="module")
def transverse(tmp_path_factory):
    return dynlearn.run_reproduction("two-factor-transverse", tmp_path_factory.mktemp("t") / "tr.zarr", quick=True)


def _claim(tree, name):
    claims = tree["claims"].to_dataset()
    assert name in claims["claim"].values, f"claim {name!r} missing"
    return claims.sel(claim=name)


@NUMERICS
@pytest.mark.parametrize("name", PHASE_CLAIMS)
def test_phase_claim(phase, name):
    c = _claim(phase, name)
    assert bool(c["passed"]), f"{name}: expected {float(c['expected'])}, measured {float(c['measured'])}"


@NUMERICS
@pytest.mark.parametrize("name", TRANSVERSE_CLAIMS)
def test_transverse_claim(transverse, name):
    c = _claim(transverse, name)
    assert bool(c["passed"]), f"{name}: expected {float(c['expected'])}, measured {float(c['measured'])}"


def test_claims_are_exactly_the_documented_ones(phase, transverse):
    assert phase["claims"]["claim"].values.tolist() == PHASE_CLAIMS
    assert transverse["claims"]["claim"].values.tolist() == TRANSVERSE_CLAIMS


def test_stores_hold_labeled_groups(phase, transverse):
    assert {"orbits", "chebyshev", "catapult", "reduction", "claims"} <= set(phase.children)
    assert {"ellipse", "balanced", "claims"} <= set(transverse.children)
    for tree in (phase, transverse):
        for name, group in tree.children.items():
            for var in group.to_dataset().data_vars.values():
                assert "long_name" in var.attrs, f"{name}/{var.name} has no long_name"


def test_reproduction_views_render(phase, transverse):
    import holoviews as hv

    for name, tree in (("two-factor-phase", phase), ("two-factor-transverse", transverse)):
        views = dynlearn.registry.get("reproductions", name)(quick=True).views(tree)
        assert any(k.startswith("balanced slice") for k in views)  # the analyzers' views (rendered in their tests)
        for key, obj in views.items():
            assert isinstance(obj, hv.core.Dimensioned)
            if not key.startswith("balanced slice"):
                hv.render(obj, backend="bokeh")


def test_exact_references():
    pts = slice_doubling_points(2)
    assert pts[0] == 1.0 and pts[1] == pytest.approx(math.sqrt(5) - 1, abs=1e-10)
    assert abs(pts[2] - 1.2887) < 1e-3
    assert ellipse_transverse_reference(1.5, n=100_000)[0] == pytest.approx(math.log(2), abs=1e-6)
    # the balanced 2-cycle at mu = 1.1, from a point near it
    assert balanced_cycle_exponent(1.1, 1.2, 2) == pytest.approx(balanced_cycle_exponent(1.1, 0.7, 2), abs=1e-12)
    assert np.isfinite(balanced_cycle_exponent(1.1, 1.2, 2))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two-factor-phase", "two-factor-transverse"])
def test_full_reproduction(name, tmp_path):
    tree = dynlearn.run_reproduction(name, tmp_path / "full.zarr", quick=False)
    claims = tree["claims"].to_dataset()
    failed = claims["claim"].values[~claims["passed"].values].tolist()
    assert not failed


def test_rerun_recomputes_the_same_store_and_refuses_another(tmp_path):
    from dynlearn_builtins.reproductions.two_factor import PhaseDiagram, TransverseStability

    path = tmp_path / "s.zarr"
    TransverseStability(quick=True).create_store(path, {})
    TransverseStability(quick=True).create_store(path, {})  # same reproduction and settings: recomputed
    with pytest.raises(dynlearn.StoreError, match="something else"):
        PhaseDiagram(quick=True).create_store(path, {})
    with pytest.raises(dynlearn.StoreError, match="something else"):
        TransverseStability(quick=True).create_store(path, {"other": 1})  # other settings
    PhaseDiagram(quick=True).create_store(path, {}, overwrite=True)
    assert dynlearn.store.root_attrs(path)["config"]["name"] == "two-factor-phase"

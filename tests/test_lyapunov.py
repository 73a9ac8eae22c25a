"""dynlearn.lyapunov and the lyapunov analyzer: spectra against exact values (linear systems, det J identities) and
reference values (Lorenz, Hénon, the Chebyshev slice of the two-factor map); covariant vectors; float32."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn import outcome as oc
from dynlearn.lyapunov import kaplan_yorke, qr, spectrum
from dynlearn.sweep import grid
from dynlearn.testing import analyzer_checks
from dynlearn_builtins.analyzers.lyapunov import Lyapunov
from dynlearn_builtins.systems.chaos import Henon, Lorenz
from dynlearn_builtins.systems.two_factor import TwoFactorMap

F64 = torch.float64
#: a non-normal basis: eigenvectors that are not orthogonal (the QR method must still give the eigenvalues)
P = torch.tensor([[1.0, 0.6, -0.3], [0.2, 1.0, 0.5], [-0.4, 0.1, 1.0]], dtype=F64)


def _conj(diag) -> torch.Tensor:
    return P @ torch.diag(torch.tensor(diag, dtype=F64)) @ torch.linalg.inv(P)


class LinearMap(dynlearn.MapSystem):
    """x -> A x with A = P diag(2, 0.5, -0.25) P^-1."""

    name = "linear_map_test"
    description = "linear map with known eigenvalues"
    state_names = ("x", "y", "z")
    parameters = {"s": dynlearn.Param(1.0)}
    A = _conj([2.0, 0.5, -0.25])

    def rhs(self, x, p):
        return x @ self.A.to(x.dtype).T


class LinearFlow(dynlearn.FlowSystem):
    """x' = A x with A = P diag(-0.5, -2, -4) P^-1."""

    name = "linear_flow_test"
    description = "linear flow with known eigenvalues"
    state_names = ("x", "y", "z")
    parameters = {"s": dynlearn.Param(1.0)}
    A = _conj([-0.5, -2.0, -4.0])

    def rhs(self, x, p):
        return x @ self.A.to(x.dtype).T

    def jacobian(self, x, p):
        return self.A.to(x.dtype).expand(*x.shape[:-1], 3, 3)


def _run(system, x0, **kw):
    x0 = torch.as_tensor(x0, dtype=F64)
    return spectrum(system, x0, system.param_tensors((x0.shape[0],)), **kw)


# -- exact facts --------------------------------------------------------------------------------------------------
def test_linear_map_exponents_are_log_moduli_of_eigenvalues():
    sp = _run(LinearMap(), torch.zeros(2, 3), steps=200, transient=100)
    assert torch.allclose(sp.exponents, torch.log(torch.tensor([2.0, 0.5, 0.25], dtype=F64)).expand(2, 3), atol=1e-12)


def test_linear_flow_exponents_are_real_parts_of_eigenvalues():
    # the RK4 time-dt map: ln|R4(h lambda)| / h, within 5e-9 of lambda at h = 0.005; the tangent vectors align
    # with the eigenvectors during the warm-up (gap 1.5 per unit time over 14 time units), then exactly
    sp = _run(LinearFlow(), torch.zeros(1, 3), steps=800, dt=0.005, transient=2800, warmup=2800)
    assert torch.allclose(sp.exponents[0], torch.tensor([-0.5, -2.0, -4.0], dtype=F64), atol=1e-8)


def test_leading_exponents_of_a_map():
    sp = _run(LinearMap(), torch.zeros(1, 3), steps=100, transient=100, k=2)
    assert sp.exponents.shape == (1, 2)
    assert torch.allclose(sp.exponents[0], torch.log(torch.tensor([2.0, 0.5], dtype=F64)), atol=1e-12)


def test_covariant_vectors_are_the_eigenvectors_of_a_non_normal_map():
    sp = _run(LinearMap(), torch.zeros(1, 3), steps=120, transient=40, covariant=True)
    v = sp.covariant[0]
    eig = P / P.norm(dim=0)  # columns: eigenvectors for 2, 0.5, -0.25 (the exponents' order)
    cos = (v * eig).sum(0).abs()
    assert torch.allclose(cos, torch.ones(3, dtype=F64), atol=1e-8)
    # Gram-Schmidt vectors would be orthogonal; covariant ones are not
    assert abs(float(v[:, 0] @ v[:, 1])) > 0.1


def test_henon_exponents_sum_to_log_b():
    h = Henon()
    sp = _run(h, [[0.1, 0.1], [0.3, -0.1]], steps=2000, transient=100)
    assert torch.allclose(sp.exponents.sum(-1), torch.full((2,), math.log(0.3), dtype=F64), atol=1e-10)


def test_lorenz_exponents_sum_to_the_divergence():
    # a fact of the QR method whatever the convergence: sum = <ln|det J_rk4|> / dt = -(sigma + 1 + beta) + O(dt^4)
    sp = _run(Lorenz(), [[1.0, 1.0, 20.0], [-5.0, 3.0, 30.0]], steps=400, dt=0.002, transient=20)
    assert torch.allclose(sp.exponents.sum(-1), torch.full((2,), -(10 + 1 + 8 / 3), dtype=F64), atol=1e-6)


def test_finite_time_windows_average_to_the_exponents():
    sp = _run(Henon(), [[0.1, 0.1]], steps=3000, transient=100, window=500)
    assert sp.finite_time.shape == (1, 6, 2)
    assert torch.allclose(sp.finite_time.mean(-2), sp.exponents, atol=1e-12)
    assert sp.finite_time[0, :, 0].std() > 1e-3  # finite-time exponents fluctuate


def test_renormalising_less_often_gives_the_same_spectrum():
    one = _run(Lorenz(), [[1.0, 1.0, 20.0]], steps=300, dt=0.01, transient=100)
    five = _run(Lorenz(), [[1.0, 1.0, 20.0]], steps=300, dt=0.01, transient=100, renorm_every=5)
    assert torch.allclose(one.exponents, five.exponents, atol=1e-9)


def test_float32_states_give_finite_exponents_close_to_float64():
    h = Henon()
    x0 = torch.tensor([[0.1, 0.1], [0.2, 0.0]])
    s32 = spectrum(h, x0, h.param_tensors((2,), dtype=torch.float32), steps=1500, transient=100)
    s64 = spectrum(h, x0.double(), h.param_tensors((2,)), steps=1500, transient=100)
    assert s32.exponents.dtype == F64 and torch.isfinite(s32.exponents).all()
    assert torch.allclose(s32.exponents.mean(0), s64.exponents.mean(0), atol=0.05)


def test_diverging_orbits_are_labeled_with_nan_exponents():
    tf = TwoFactorMap(mu=1.0)
    sp = _run(tf, [[0.5, 0.5], [4.0, -4.0]], steps=100, transient=10, window=50, covariant=True)
    assert oc.labels(sp.outcome).tolist() == ["ok", "diverged"]
    assert torch.isfinite(sp.exponents[0]).all() and torch.isnan(sp.exponents[1]).all()
    assert torch.isnan(sp.finite_time[1]).all() and torch.isnan(sp.covariant[1]).all()


def test_qr_has_a_non_negative_diagonal():
    a = torch.randn(4, 6, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    for m in (3, 5):
        q, r = qr(a[..., :m])
        assert torch.allclose(q @ r, a[..., :m], atol=1e-12)
        assert (r.diagonal(dim1=-2, dim2=-1) >= 0).all() and torch.allclose(r, r.triu())


def test_kaplan_yorke_dimension():
    lam = torch.tensor([[0.4192, -1.6232], [0.9056, 0.0, ], [-0.1, -0.2], [float("nan"), 0.0]], dtype=F64)
    got = kaplan_yorke(lam)
    assert got[0] == pytest.approx(1 + 0.4192 / 1.6232, abs=1e-12)
    assert got[1] == 2.0 and got[2] == 0.0 and torch.isnan(got[3])


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(dynlearn.ParameterError, match="multiples of renorm_every"):
        _run(Henon(), [[0.1, 0.1]], steps=10, renorm_every=3)
    with pytest.raises(dynlearn.ParameterError, match="k <= 2"):
        _run(Henon(), [[0.1, 0.1]], steps=10, k=3)
    with pytest.raises(dynlearn.ShapeError, match="state dim 2"):
        _run(Henon(), [[0.1, 0.1, 0.0]], steps=10)


# -- reference values (chaotic: numerics, margins over seeds) -----------------------------------------------------
@pytest.mark.numerics
def test_henon_spectrum_within_0005(seed_offset):
    x0 = Henon().sample_states(64, generator=torch.Generator().manual_seed(seed_offset)) * 0.3
    sp = _run(Henon(), x0, steps=5000, transient=500)
    assert (sp.outcome == oc.OK).all()
    assert torch.allclose(sp.exponents.mean(0), torch.tensor([0.4192, -1.6232], dtype=F64), atol=0.005)


# -- the analyzer -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("check", list(analyzer_checks(Lyapunov(n_samples=2, steps=200, transient=50, window=100),
                                                       "henon", grid(a=[1.2, 1.4]))), ids=lambda c: c.__name__)
def test_conformance(check):
    check()


def test_analyzer_output_is_labeled_data():
    out = Lyapunov(n_samples=3, steps=300, transient=50, window=100, covariant=True).run("henon")
    assert out["exponents"].dims == ("sample", "exponent") and out["exponents"].attrs["units"] == "1/iteration"
    assert out["finite_time"].dims == ("sample", "window", "exponent")
    assert out["covariant_vectors"].dims == ("sample", "state", "exponent")
    assert np.allclose(np.linalg.norm(out["covariant_vectors"].values, axis=1), 1.0)
    assert out["outcome"].attrs["flag_meanings"].split() == list(oc.NAMES)
    assert np.allclose(out["exponent_sum"].values, math.log(0.3), atol=1e-10)
    assert 1.1 < float(out["kaplan_yorke_dimension"]) < 1.4


def test_float32_and_masked_parameters():
    import xarray as xr

    from dynlearn.sweep import flatten

    params = xr.Dataset({"a": ("seed", [1.4, np.nan])}, coords={"seed": [0, 1]})
    batch = flatten(Henon(), params, on_nan="mask")
    out = Lyapunov(n_samples=2, steps=500, transient=50, precision="float32").analyze(batch, upstream={},
                                                                                    show_progress=False)
    assert out["outcome"].sel(seed=1).values.tolist() == [oc.MASKED] * 2
    assert np.isfinite(out["exponents"].sel(seed=0).values).all()
    assert np.isnan(out["exponents"].sel(seed=1).values).all()


@pytest.mark.parametrize("kwargs, match", [({"k": 3}, "option 'k' must be <= the state dim 2"),
                                           ({"steps": 10, "renorm_every": 3}, "multiple of renorm_every"),
                                           ({"steps": 10, "window": 20}, "option 'window'"),
                                           ({"precision": "float16"}, "precision")],
                         ids=["k", "renorm", "window", "precision"])
def test_bad_options(kwargs, match):
    with pytest.raises(dynlearn.ParameterError, match=match):
        Lyapunov(**kwargs).run("henon")


def test_views_render_with_bokeh():
    import holoviews as hv

    swept = Lyapunov(n_samples=2, steps=100, transient=20, window=50).run("henon", grid(a=[1.2, 1.4]))
    views = Lyapunov().views(swept)
    assert set(views) == {"spectrum", "kaplan_yorke", "finite_time"}
    hv.render(views["spectrum"], backend="bokeh")
    assert all(isinstance(v, (hv.HoloMap, hv.Element, hv.Overlay, hv.NdOverlay)) for v in views.values())
    assert set(Lyapunov().views(swept.isel(a=0, drop=True).drop_vars("finite_time"))) == {"spectrum"}


# -- the reproduction ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    return dynlearn.run_reproduction("lyapunov-spectra", tmp_path_factory.mktemp("l") / "ly.zarr", quick=True)


@pytest.mark.numerics
def test_quick_reproduction_claims(spectra):
    """Lorenz within 0.02 (64 orbits x 40 time units; 0.01 in the full run), Henon within 0.005, the two-factor
    slice ln 3 within 0.01, the exact sums, Duffing's foci fixed points in float64 and float32."""
    claims = spectra["claims"].to_dataset()
    failed = claims["claim"].values[~claims["passed"].values].tolist()
    assert not failed
    assert {"lorenz_1", "lorenz_sum", "henon_1", "henon_sum", "two_factor_ln3", "duffing_float32"} <= set(
        claims["claim"].values.tolist())
    x0 = spectra["two_factor"]["initial_state"].values
    assert np.array_equal(x0[..., 0], x0[..., 1])  # on the balanced slice


def test_reproduction_page_shows_each_spectrum_once(spectra):
    """The page shows every analyzer group's views once (the reproduction adds no copies of them)."""
    import holoviews as hv

    from dynlearn.views import store_views

    views = store_views(spectra)
    assert {"lorenz: spectrum", "henon: spectrum"} <= set(views)
    assert not any(k.startswith("lyapunov-spectra:") for k in views)
    hv.render(views["henon: spectrum"], backend="bokeh")


@pytest.mark.slow
def test_full_reproduction(tmp_path):
    tree = dynlearn.run_reproduction("lyapunov-spectra", tmp_path / "full.zarr", quick=False)
    claims = tree["claims"].to_dataset()
    assert not claims["claim"].values[~claims["passed"].values].tolist()

"""min_action: minimum geometric-action paths (gMAM) against exact quasi-potentials and an independent MAM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn import outcome as oc
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.testing import check_analyzer
from dynlearn_builtins.analyzers.min_action.string import geometric_action, reparametrize
from dynlearn_builtins.analyzers.min_action import MinAction


@pytest.fixture(scope="module")
def double_well():
    return MinAction(n_nodes=61).run("double_well", dynlearn.grid(k=[0.5, 1.0, 2.0]))


@pytest.fixture(scope="module")
def maier_stein():
    return MinAction(n_nodes=101).run("maier_stein", dynlearn.grid(beta=[1.0, 10.0]))


@pytest.mark.parametrize("k", [0.5, 1.0, 2.0], ids=lambda k: f"k={k}")
def test_double_well_action_is_twice_the_barrier(double_well, k):
    # V = (x^2 - 1)^2 + k y^2 / 2: minima (+-1, 0) at V = 0, saddle (0, 0) at V = 1, for every k
    r = double_well.sel(k=k)
    assert int(r.outcome) == oc.OK
    assert float(r.action) == pytest.approx(2.0, abs=1e-6)
    np.testing.assert_allclose(r.saddle.values, [0.0, 0.0], atol=1e-8)
    np.testing.assert_allclose(r.endpoints.values, [[-1.0, 0.0], [1.0, 0.0]], atol=1e-8)
    # the minimum energy path is the x axis; the cumulative action is 2 (V - V_min) uphill, flat downhill
    path = r.path.values
    assert np.abs(path[:, 1]).max() < 1e-6
    V = (path[:, 0] ** 2 - 1) ** 2
    uphill = path[:, 0] <= 0
    np.testing.assert_allclose(r.quasi_potential.values[uphill], 2 * V[uphill], atol=2e-3)
    np.testing.assert_allclose(r.quasi_potential.values[~uphill], 2.0, atol=1e-6)


def test_maier_stein_gradient_case(maier_stein):
    # beta = 1: f = -grad V with V = -x^2/2 + x^4/4 + (1 + x^2) y^2 / 2; dV = V(0,0) - V(+-1,0) = 1/4
    r = maier_stein.sel(beta=1.0)
    assert float(r.action) == pytest.approx(0.5, abs=1e-6)
    assert np.abs(r.path.sel(state="y").values).max() < 1e-6


def test_maier_stein_non_gradient_case_leaves_the_axis(maier_stein):
    # beta = 10: the on-axis path costs 2 * 1/4 = 1/2 (on y = 0 the flow is x' = x - x^3); the true minimiser
    # leaves the axis and costs less
    r = maier_stein.sel(beta=10.0)
    assert int(r.outcome) == oc.OK
    assert float(r.action) < 0.5 - 0.1
    assert np.abs(r.path.sel(state="y").values).max() > 0.2
    np.testing.assert_allclose(r.saddle.values, [0.0, 0.0], atol=1e-8)


def test_maier_stein_beta10_converges_with_resolution():
    coarse = MinAction(n_nodes=51).run("maier_stein", dynlearn.grid(beta=[10.0]))
    fine = MinAction(n_nodes=201).run("maier_stein", dynlearn.grid(beta=[10.0]))
    a, b = float(coarse.action.item()), float(fine.action.item())
    assert abs(a - b) < 5e-4
    assert a >= b - 1e-6                      # a coarser string cannot do better than a finer one here


def _mam_action(beta: float, T: float, n: int) -> float:
    """Independent reference: time-parametrised Freidlin-Wentzell action 1/2 int |x' - f|^2 dt on [0, T],
    minimised over the interior nodes by L-BFGS from a bent initial curve (not gMAM, not geometric)."""
    def f(x):
        X, Y = x[..., 0], x[..., 1]
        return torch.stack([X - X**3 - beta * X * Y**2, -(1 + X**2) * Y], -1)

    t = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    x0 = torch.stack([-1 + 2 * t, 0.3 * torch.sin(math.pi * t)], -1)
    inner = x0[1:-1].clone().requires_grad_(True)
    a, b = x0[:1], x0[-1:]
    dt = T / n
    opt = torch.optim.LBFGS([inner], max_iter=20000, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        x = torch.cat([a, inner, b])
        v, m = (x[1:] - x[:-1]) / dt, 0.5 * (x[1:] + x[:-1])
        S = 0.5 * ((v - f(m)) ** 2).sum() * dt
        S.backward()
        return S

    for _ in range(5):
        opt.step(closure)
    return float(closure().detach())


@pytest.mark.slow
def test_maier_stein_beta10_matches_an_independent_mam():
    fine = MinAction(n_nodes=401, dt=0.005, max_iter=20000).run("maier_stein", dynlearn.grid(beta=[10.0]))
    ref = _mam_action(10.0, T=20.0, n=2000)
    assert float(fine.action.item()) == pytest.approx(ref, abs=2e-4)


def test_geometric_action_quadrature_and_reparametrisation():
    sys = dynlearn.make_system("double_well")
    p = sys.expand_params(sys.param_tensors((1,)))
    # uphill along the x axis from the minimum (-1, 0) to the saddle: S = 2 (V(0) - V(-1)) = 2 exactly
    x = torch.linspace(-1, 0, 401, dtype=torch.float64)
    path = torch.stack([x, torch.zeros_like(x)], -1).unsqueeze(0)
    S, cum = geometric_action(sys, path, p)
    assert float(S) == pytest.approx(2.0, abs=1e-8)
    np.testing.assert_allclose(cum[0].numpy(), 2 * (x.numpy() ** 2 - 1) ** 2,
                               atol=1e-8)
    # downhill (with the flow) costs nothing
    S_down, _ = geometric_action(sys, path.flip(1), p)
    assert float(S_down) == pytest.approx(0.0, abs=1e-10)
    # equal arc length after reparametrisation, end points kept
    bent = torch.stack([x, 0.3 * torch.sin(math.pi * x) * x], -1).unsqueeze(0) ** torch.tensor([1.0, 1.0])
    warped = bent[:, (torch.linspace(0, 1, 401) ** 2 * 400).long().unique()]
    rp = reparametrize(warped)
    seg = (rp[0, 1:] - rp[0, :-1]).norm(dim=-1)
    assert float(seg.max() / seg.min()) < 1.01
    np.testing.assert_array_equal(rp[0, [0, -1]].numpy(), warped[0, [0, -1]].numpy())


def test_explicit_end_points():
    out = MinAction(n_nodes=41, start=[1.0, 0.0], end=[-1.0, 0.0]).run("double_well", dynlearn.grid(k=[1.0]))
    np.testing.assert_allclose(out.path.isel(k=0, node=0).values, [1.0, 0.0])
    assert float(out.action.item()) == pytest.approx(2.0, abs=1e-6)


def test_single_attractor_is_a_labeled_outcome():
    out = MinAction(n_nodes=21, max_iter=50).run("hopf", dynlearn.grid(mu=[-0.5]))
    assert out.outcome.attrs["flag_meanings"].split()[int(out.outcome.item())] == "single_attractor"
    assert np.isnan(float(out.action.item()))


@pytest.mark.parametrize(
    "options, error",
    [({"start": [1.0, 0.0]}, ParameterError), ({"start": [1.0], "end": [0.0]}, ShapeError),
     ({"start": [np.nan, 0.0], "end": [1.0, 0.0]}, ParameterError), ({"n_nodes": 3}, ParameterError),
     ({"dt": -1.0}, ParameterError)],
    ids=["start-without-end", "wrong-shape", "nan-start", "too-few-nodes", "negative-dt"],
)
def test_bad_options(options, error):
    with pytest.raises(error):
        MinAction(**options).run("double_well", dynlearn.grid(k=[1.0]))


def test_maps_are_rejected():
    with pytest.raises(ParameterError, match="flow"):
        MinAction().run("two_factor", dynlearn.grid(mu=[0.5]))


def test_conformance():
    check_analyzer(MinAction(n_nodes=21, max_iter=400), "double_well", dynlearn.grid(k=[1.0, 2.0]))


def test_views_build(double_well):
    import holoviews as hv

    views = MinAction().views(double_well)
    assert set(views) == {"path", "action along path"}
    frame = views["path"][views["path"].keys()[0]]
    hv.render(frame, backend="bokeh")

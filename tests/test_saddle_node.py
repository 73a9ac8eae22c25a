"""Exact facts of the saddle-node toy model (DESIGN.md §3.1), in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn.simulate import simulate
from dynlearn_builtins.systems.saddle_node import (
    SaddleNode,
    analytic_grad,
    analytic_loss,
    critical_lr,
    escape_time,
    exact_trajectory,
    r_star,
)

f64 = torch.float64


@pytest.mark.parametrize("r", [1.0, 0.01, 2.5e-4, 0.0, -0.3], ids=["r=1", "r=1e-2", "r=r*", "r=0", "r=-0.3"])
def test_exact_trajectory_matches_integration(r):
    sn = SaddleNode(r=r)
    tmax = 0.9 * escape_time(r) if r > 0 else 20.0
    t = torch.linspace(0, tmax, 50, dtype=f64)
    tr = simulate(sn, torch.zeros(1, 1, dtype=f64), t=t, method="dopri5", rtol=1e-11, atol=1e-13)
    exact = exact_trajectory(t, torch.tensor(r, dtype=f64))
    np.testing.assert_allclose(tr.x[:, 0, 0].numpy(), exact.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("r", [4.0, 1.0, 0.01, 2.5e-4], ids=["4", "1", "1e-2", "r*"])
def test_escape_time(r):
    """x(t) = sqrt(r) tan(sqrt(r) t) reaches X at atan(X/sqrt r)/sqrt r -> pi/(2 sqrt r) as X -> inf."""
    sqrt_r = math.sqrt(r)
    for X in (1e3, 1e6):
        t_reach = math.atan(X / sqrt_r) / sqrt_r
        assert abs(t_reach - escape_time(r)) < 1.0 / X * 1.0000001
    # integrate to just before t*: the solution is enormous but finite, as the closed form says
    t = torch.tensor([0.0, escape_time(r) * (1 - 1e-3)], dtype=f64)
    tr = simulate(SaddleNode(r=r), torch.zeros(1, 1, dtype=f64), t=t, method="dopri5", rtol=1e-10, atol=1e-12,
                  max_norm=1e30)
    expected = sqrt_r * math.tan(sqrt_r * float(t[1]))
    assert math.isclose(float(tr.final[0, 0]), expected, rel_tol=1e-6)


@pytest.mark.parametrize("r", [1.0, 1e-2, 2.5e-4], ids=["1", "1e-2", "r*"])
def test_ghost_speed_and_passage_time(r):
    sn = SaddleNode(r=r)
    speed = sn.rhs(torch.zeros(1, 1, dtype=f64), sn.param_tensors((1,)))
    assert float(speed) == r  # |dx/dt| = r at the ghost x = 0
    # passage through the bottleneck from -X to X takes 2 atan(X/sqrt r)/sqrt r -> pi/sqrt r
    X = 100 * math.sqrt(r)
    t_pass = 2 * math.atan(X / math.sqrt(r)) / math.sqrt(r)
    t = torch.tensor([0.0, t_pass], dtype=f64)
    tr = simulate(sn, torch.full((1, 1), -X, dtype=f64), t=t, method="dopri5", rtol=1e-10, atol=1e-12)
    assert math.isclose(float(tr.final[0, 0]), X, rel_tol=1e-6)
    assert math.isclose(t_pass, math.pi / math.sqrt(r), rel_tol=7e-3)


RATIOS = [0.05, 0.2, 0.25, 0.3, 0.5, 0.9, 1.0, 1.1, 2.0, 10.0, 1e4]


@pytest.mark.parametrize("T", [10.0, 100.0, 333.0], ids=["T=10", "T=100", "T=333"])
@pytest.mark.parametrize("ratio", RATIOS, ids=[f"r={x}r*" for x in RATIOS])
def test_loss_in_all_three_regimes(T, ratio):
    r = ratio * r_star(T)
    L = float(analytic_loss(torch.tensor(r, dtype=f64), T))
    tstar = math.pi / (2 * math.sqrt(r))
    if ratio < 0.25:
        assert L == T  # no-learning zone: output never switches on in time
    elif ratio <= 1.0:
        assert math.isclose(L, tstar - T, rel_tol=1e-13, abs_tol=1e-12)  # switches on late
    else:
        assert math.isclose(L, T - tstar, rel_tol=1e-13, abs_tol=1e-12)  # switches on early
    # independently: integrate (Heaviside(t - t*) - target)^2 on a fine grid
    dt = T / 20000
    t = (np.arange(int(2 * T / dt)) + 0.5) * dt
    direct = dt * np.sum(((t > tstar).astype(float) - (t > T).astype(float)) ** 2)
    assert abs(direct - L) <= 2 * dt


@pytest.mark.parametrize("T", [10.0, 100.0, 250.0], ids=["T=10", "T=100", "T=250"])
def test_kink_at_r_star(T):
    rs = r_star(T)
    left = float(analytic_grad(torch.tensor(rs * (1 - 1e-12), dtype=f64), T))
    right = float(analytic_grad(torch.tensor(rs, dtype=f64), T))
    jump = 2 * T**3 / math.pi**2
    assert math.isclose(left, -jump, rel_tol=1e-10) and math.isclose(right, jump, rel_tol=1e-13)
    for ratio, sign in ((0.5, -1), (3.0, 1)):  # -pi/(4 r^1.5) on (r*/4, r*), +pi/(4 r^1.5) above
        r = ratio * rs
        g = float(analytic_grad(torch.tensor(r, dtype=f64), T))
        assert math.isclose(g, sign * math.pi / (4 * r**1.5), rel_tol=1e-13)
        h = r * 1e-6
        fd = (float(analytic_loss(torch.tensor(r + h, dtype=f64), T)) -
              float(analytic_loss(torch.tensor(r - h, dtype=f64), T))) / (2 * h)
        assert math.isclose(g, fd, rel_tol=1e-6)
        rt = torch.tensor(r, dtype=f64, requires_grad=True)
        (ga,) = torch.autograd.grad(analytic_loss(rt, T), rt)
        assert math.isclose(float(ga), g, rel_tol=1e-12)


def test_no_learning_zone_has_zero_gradient():
    T = 100.0
    r = torch.linspace(1e-8, 0.249 * r_star(T), 50, dtype=f64)
    assert torch.all(analytic_grad(r, T) == 0) and torch.all(analytic_loss(r, T) == T)
    # the numeric model agrees: at high confidence the gradient there is numerically zero, at low confidence tiny
    T = 20.0
    sn = SaddleNode(form="numeric", task={"T": T, "dt": 0.1})
    rr = torch.tensor([0.1, 0.2], dtype=f64) * r_star(T)
    for c, bound in ((10.0, 1e-30), (1.0, 1e-1)):
        hp = {"lr": torch.ones(2, dtype=f64), "c": torch.full((2,), c, dtype=f64), "x_star": torch.full((2,), 10.0, dtype=f64)}
        loss, grads = sn.loss_and_grad({"r": rr}, hp)
        assert torch.all((loss - T).abs() < 0.06 * T / 100 + 0.05)
        assert torch.all(grads["r"].abs() < bound * (2 * T**3 / math.pi**2))


@pytest.mark.parametrize("T", [1.0, 10.0, 50.0, 100.0, 250.0], ids=["T=1", "T=10", "T=50", "T=100", "T=250"])
def test_critical_lr_throws_r_star_plus_to_the_point_of_no_return(T):
    a = critical_lr(T)
    assert math.isclose(a, 3 * math.pi**4 / 32 * T**-5, rel_tol=1e-15)
    rs = r_star(T)
    landing = rs - a * float(analytic_grad(torch.tensor(rs, dtype=f64), T))
    assert math.isclose(landing, rs / 4, rel_tol=1e-12)
    if T == 100.0:
        assert math.isclose(a, 9.1321e-10, rel_tol=1e-4)


@pytest.mark.parametrize("T", [20.0, 100.0, 400.0], ids=["T=20", "T=100", "T=400"])
def test_gd_learns_below_and_gets_stuck_above_alpha_star(T):
    a = critical_lr(T)
    sn = SaddleNode(task={"T": T})
    run = dynlearn.train(sn, epochs=3000, seeds=4, sweep={"lr": [0.3 * a, 0.95 * a, 1.3 * a, 2.0 * a]})
    loss = run.tree["train"]["loss"]
    below, above = loss.isel(lr=[0, 1]), loss.isel(lr=[2, 3])
    assert bool((below.min("epoch") < T / 10).all())  # learned at some point
    assert bool((below.isel(epoch=-1) < T).all())  # never stuck
    assert bool((above.isel(epoch=-1) == T).all())  # ends in the no-learning zone
    assert bool((run.tree["train"]["grad_norm"].isel(epoch=-1, lr=[2, 3]) == 0).all())
    assert bool((run.tree["params"]["r"].isel(lr=[0, 1]) > 0).all())  # no bifurcation while learning


def test_analytic_vs_numeric_landscape():
    """Finite c, x* (T=100, dt=0.1, x*=10) agrees with the analytic limit within 0.5 (0.5% of T)."""
    from dynlearn_builtins.reproductions.ghost import loss_landscape

    land = loss_landscape(T=100.0, dt=0.1, x_star=10.0, c=(1.0, 10.0), n=161)
    diff = np.abs(land["numeric_loss"] - land["analytic_loss"])
    assert float(diff.max()) < 0.25
    # and the numeric gradient has the analytic sign structure: negative on (r*/4, r*), positive above r*
    x = land["r_over_rstar"].values
    g = land["numeric_grad"].sel(c=10.0).values
    assert np.all(g[(x > 0.3) & (x < 0.95)] < 0) and np.all(g[x > 1.05] > 0)


def test_fixed_points_for_negative_r():
    sn = SaddleNode(r=-0.25)
    p = sn.param_tensors((2,))
    x = torch.tensor([[-0.5], [0.5]], dtype=f64)
    assert torch.equal(sn.rhs(x, p), torch.zeros(2, 1, dtype=f64))
    J = sn.jacobian(x, p)[:, 0, 0]
    assert J[0] < 0 < J[1]  # -sqrt(-r) stable, +sqrt(-r) unstable


def test_saddle_node_conforms():
    from dynlearn.testing import check_system

    check_system(SaddleNode)
    check_system(SaddleNode(form="numeric", task={"T": 10.0, "dt": 0.5}))

"""Two-factor map: the exact facts of DESIGN.md §3.3 (float64, tight tolerances)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn import outcome as oc
from dynlearn.testing import system_checks
from dynlearn_builtins.systems.two_factor import (
    TwoFactorMap,
    ellipse_angle,
    ellipse_axes,
    ellipse_distance,
    ellipse_level,
    ellipse_point,
    slice_map,
    two_factor_jacobian,
    two_factor_map,
)

F64 = torch.float64
MUS = [0.1, 0.5, 1.0, 1.5, 1.9, 1.99]


@pytest.mark.parametrize("check", list(system_checks(TwoFactorMap)), ids=lambda c: c.__name__)
def test_conformance(check):
    check()


def _theta(n=1001):
    return torch.linspace(0, 2 * math.pi, n, dtype=F64)


@pytest.mark.parametrize("mu", MUS, ids=lambda m: f"mu={m}")
def test_ellipse_is_invariant(mu):
    x = ellipse_point(_theta(), mu)
    assert float((ellipse_level(x, mu) - 1).abs().max()) < 1e-14
    residual = (ellipse_level(two_factor_map(x, mu), mu) - 1).abs().max()
    assert float(residual) < 2e-14


@pytest.mark.parametrize("mu", MUS, ids=lambda m: f"mu={m}")
def test_ellipse_map_is_angle_tripling(mu):
    th = _theta()
    image = ellipse_angle(two_factor_map(ellipse_point(th, mu), mu), mu)
    diff = torch.remainder(image - (math.pi - 3 * th) + math.pi, 2 * math.pi) - math.pi
    assert float(diff.abs().max()) < 1e-13


@pytest.mark.parametrize("mu", [0.8, 1.5, 1.99], ids=lambda m: f"mu={m}")
def test_ellipse_distance_is_exact(mu):
    # points at known offsets along the ellipse's normal (offsets below the smallest radius of curvature q^2 / p, so
    # the foot point is the nearest one), and random points against 4e5 sampled angles (spacing < 4e-5)
    th = _theta()
    on = ellipse_point(th, mu).numpy()
    A, B = ellipse_axes(mu)
    p, q = A / math.sqrt(2), B / math.sqrt(2)
    u, v = p * np.cos(th.numpy()), q * np.sin(th.numpy())
    n = np.stack([u / p**2, v / q**2], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    h = 0.5 * q * q / p * np.linspace(-1, 1, len(th))
    rot = np.array([[1, 1], [1, -1]]) / math.sqrt(2)                    # (u, v) -> (a, b), its own inverse
    off = on + (h[:, None] * n) @ rot.T
    np.testing.assert_allclose(ellipse_distance(on, mu), 0.0, atol=1e-12)
    np.testing.assert_allclose(ellipse_distance(off, mu), np.abs(h), rtol=1e-9, atol=1e-12)
    x = np.random.default_rng(0).uniform(-3, 3, (20, 2))
    dense = ellipse_point(torch.linspace(0, 2 * math.pi, 400_001, dtype=torch.float64), mu).numpy()
    brute = np.array([np.sqrt(((dense - xi) ** 2).sum(-1)).min() for xi in x])
    d = ellipse_distance(x, mu)
    assert np.all(d <= brute + 1e-12) and np.all(brute - d <= 2e-5)


@pytest.mark.parametrize("mu", [0.5, 1.0, 1.5, 1.9], ids=lambda m: f"mu={m}")
def test_ellipse_separates_bounded_from_divergent(mu):
    x = ellipse_point(_theta(257), mu)
    inside = dynlearn.simulate(TwoFactorMap(mu=mu), 0.98 * x, steps=400, record=True)
    outside = dynlearn.simulate(TwoFactorMap(mu=mu), 1.02 * x, steps=400, record=False)
    assert (inside.outcome == oc.OK).all()
    assert float(ellipse_level(inside.x, mu).max()) < 1.0
    assert (outside.outcome == oc.DIVERGED).all()


def test_ellipse_axes_formula():
    A, B = ellipse_axes(torch.tensor([0.5, 1.0], dtype=F64))
    assert torch.allclose(A**2, torch.tensor([20.0, 12.0], dtype=F64), rtol=0, atol=1e-13)
    assert torch.allclose(B**2, torch.tensor([12.0, 4.0], dtype=F64), rtol=0, atol=1e-13)


@pytest.mark.parametrize("mu", [0.3, 0.8, 1.2, 1.7], ids=lambda m: f"mu={m}")
def test_hyperbola_fixed_points_and_normal_eigenvalue(mu):
    u = torch.linspace(-1.2, 1.2, 41, dtype=F64)
    x = torch.stack([u.exp(), (-u).exp()], -1)
    x = torch.cat([x, -x])
    assert float((two_factor_map(x, mu) - x).abs().max()) < 1e-14
    ev = torch.linalg.eigvalsh(two_factor_jacobian(x, mu))  # J is symmetric
    normal = 1 - mu * (x**2).sum(-1)
    expected = torch.sort(torch.stack([normal, torch.ones_like(normal)], -1), -1).values
    assert torch.allclose(ev, expected, rtol=0, atol=1e-12)
    # the neutral direction is the hyperbola's tangent (a, -b)
    tangent = torch.stack([x[:, 0], -x[:, 1]], -1)
    image = (two_factor_jacobian(x, mu) @ tangent.unsqueeze(-1))[..., 0]
    assert torch.allclose(image, tangent, rtol=0, atol=1e-13)


def test_edge_of_stability_of_the_balanced_minimum():
    # normal eigenvalue at (1, 1) is 1 - 2 mu: the balanced minimum is stable iff mu < 1
    mu = torch.tensor([0.99, 1.01], dtype=F64)
    x = torch.ones(2, 2, dtype=F64)
    ev = torch.linalg.eigvalsh(two_factor_jacobian(x, mu))
    assert torch.allclose(ev[:, 0], 1 - 2 * mu, rtol=0, atol=1e-14)
    assert bool(ev[0].abs().max() <= 1) and bool(ev[1].abs().max() > 1)


def test_catapult_2d():
    tr = dynlearn.simulate(TwoFactorMap(mu=0.8), torch.tensor([1.6, 0.3], dtype=F64), steps=120)
    a, b = tr.x[:, 0], tr.x[:, 1]
    loss = 0.5 * (a * b - 1) ** 2
    assert float(loss[0]) == pytest.approx(0.5 * 0.52**2, abs=1e-15)
    assert round(float(loss[0]), 3) == 0.135
    assert int(loss.argmax()) == 2 and round(float(loss.max()), 3) == 0.444
    sharp = float(a[-1] ** 2 + b[-1] ** 2)
    assert abs(sharp - 2.09) < 0.01 and sharp < 2 / 0.8
    assert abs(float(a[-1] * b[-1]) - 1) < 1e-12


def test_balanced_slice_is_the_cubic_map():
    z = torch.linspace(-2, 2, 101, dtype=F64)
    mu = torch.linspace(0.1, 2.0, 101, dtype=F64)
    img = two_factor_map(torch.stack([z, z], -1), mu)
    assert torch.equal(img[:, 0], img[:, 1])  # the slice is exactly invariant in floating point
    assert torch.allclose(img[:, 0], slice_map(z, mu), rtol=0, atol=1e-15)


def test_chebyshev_conjugacy_at_mu_2():
    z = torch.linspace(-math.sqrt(2), math.sqrt(2), 2001, dtype=F64)
    u = z / math.sqrt(2)
    chebyshev = 4 * u**3 - 3 * u
    assert float((slice_map(z, 2.0) + math.sqrt(2) * chebyshev).abs().max()) < 1e-14


@pytest.mark.parametrize("name", ["balanced", "ellipse", "minima"])
def test_declared_manifolds_are_invariant(name):
    tf = TwoFactorMap(mu=1.3)
    m = tf.manifolds()[name]
    p = tf.param_tensors()
    pts = m.sample(64, p, torch.Generator().manual_seed(1))
    assert float(m.constraint(pts, p).abs().max()) < 1e-13
    assert float(m.constraint(tf.rhs(pts, p), p).abs().max()) < 1e-12


def test_ellipse_exists_only_for_mu_in_0_2():
    m = TwoFactorMap().manifolds()["ellipse"]
    assert m.valid({"mu": torch.tensor([0.5, 1.99, 2.0, 3.0])}).tolist() == [True, True, False, False]


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf")])
def test_bad_mu_is_a_parameter_error(bad):
    with pytest.raises(dynlearn.ParameterError, match="mu"):
        TwoFactorMap(mu=bad)


def test_divergence_beyond_two_is_a_labeled_outcome():
    tr = dynlearn.simulate(TwoFactorMap(mu=2.2), torch.tensor([[0.1, 0.1]], dtype=F64), steps=2000, record=False)
    assert oc.labels(tr.outcome).tolist() == ["diverged"]
    assert np.isfinite(tr.final.numpy()).all()

"""Two-factor map: gradient descent with step ``mu`` on ``(ab - 1)^2 / 2`` (large-step training of a one-prompt
linear transformer, DESIGN.md §3.3).

``F_mu(a, b) = (a - mu (ab - 1) b,  b - mu (ab - 1) a)``

- fixed points: the hyperbola ``ab = 1``; normal eigenvalue there ``1 - mu (a^2 + b^2)``;
- balanced slice ``a = b = z``: ``z -> z (1 - mu (z^2 - 1))`` (:func:`slice_map`);
- invariant Chebyshev ellipse for ``0 < mu < 2`` (:func:`ellipse_axes`): with ``s = a + b``, ``d = a - b``,
  ``mu s^2 / (4 (2 + mu)) + mu d^2 / (4 (2 - mu)) = 1``; on it ``theta -> pi - 3 theta``; inside bounded,
  outside divergent.

Examples
--------
>>> import torch
>>> tf = TwoFactorMap(mu=0.8)
>>> tf.rhs(torch.tensor([1.6, 0.3], dtype=torch.float64), tf.param_tensors())
tensor([1.7248, 0.9656], dtype=torch.float64)
>>> A, B = ellipse_axes(1.0)
>>> round(A**2, 6), round(B**2, 6)
(12.0, 4.0)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dynlearn.params import Param
from dynlearn.system import Manifold, MapSystem

from ._two_factor_stepper import TwoFactorStepper

__all__ = [
    "TwoFactorMap",
    "two_factor_map",
    "two_factor_jacobian",
    "ellipse_distance",
    "two_factor_manifolds",
    "slice_map",
    "ellipse_axes",
    "ellipse_level",
    "ellipse_point",
    "ellipse_angle",
]

Tensor = torch.Tensor


def two_factor_map(x: Tensor, mu: Tensor | float) -> Tensor:
    """``F_mu(a, b) = (a - mu (ab - 1) b, b - mu (ab - 1) a)`` for states ``x`` of shape ``(..., 2)``; ``mu``
    broadcasts against ``x.shape[:-1]``."""
    a, b = x[..., 0], x[..., 1]
    r = a * b - 1
    return torch.stack([a - mu * r * b, b - mu * r * a], dim=-1)


def two_factor_jacobian(x: Tensor, mu: Tensor | float) -> Tensor:
    """Jacobian ``[[1 - mu b^2, -mu (2ab - 1)], [-mu (2ab - 1), 1 - mu a^2]]``, shape ``(..., 2, 2)``."""
    a, b = x[..., 0], x[..., 1]
    off = -mu * (2 * a * b - 1)
    row0 = torch.stack([1 - mu * b**2, off], dim=-1)
    row1 = torch.stack([off, 1 - mu * a**2], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def slice_map(z: Tensor, mu: Tensor | float) -> Tensor:
    """Balanced-slice map ``z -> z (1 - mu (z^2 - 1))``."""
    return z * (1 - mu * (z**2 - 1))


def ellipse_axes(mu: float | Tensor):
    """Semi-axes ``(A, B)`` of the Chebyshev ellipse in the ``(s, d) = (a + b, a - b)`` plane, ``0 < mu < 2``:
    ``A^2 = 4 (2 + mu) / mu``, ``B^2 = 4 (2 - mu) / mu``."""
    if isinstance(mu, Tensor):
        return (4 * (2 + mu) / mu).sqrt(), (4 * (2 - mu) / mu).sqrt()
    return math.sqrt(4 * (2 + mu) / mu), math.sqrt(4 * (2 - mu) / mu)


def ellipse_level(x: Tensor, mu: Tensor | float) -> Tensor:
    """``mu s^2 / (4 (2 + mu)) + mu d^2 / (4 (2 - mu))``: 1 on the ellipse, < 1 inside."""
    s = x[..., 0] + x[..., 1]
    d = x[..., 0] - x[..., 1]
    return mu * s**2 / (4 * (2 + mu)) + mu * d**2 / (4 * (2 - mu))


def ellipse_point(theta: Tensor, mu: Tensor | float) -> Tensor:
    """Point ``(a, b)`` of the ellipse at angle ``theta`` (``s = A cos theta``, ``d = B sin theta``)."""
    A, B = ellipse_axes(mu)
    s, d = A * torch.cos(theta), B * torch.sin(theta)
    return torch.stack([(s + d) / 2, (s - d) / 2], dim=-1)


def ellipse_distance(x: np.ndarray, mu: float, samples: int = 4001, newton: int = 8) -> np.ndarray:
    """Euclidean distance of points ``x (..., 2)`` in the ``(a, b)`` plane to the ellipse ``E_mu`` (float64).

    In the rotated coordinates ``u = (a + b) / sqrt 2``, ``v = (a - b) / sqrt 2`` the ellipse is axis-aligned with
    semi-axes ``p = A / sqrt 2``, ``q = B / sqrt 2``; the nearest parameter ``theta`` of a point solves
    ``F(theta) = (q^2 - p^2) sin cos + u p sin - v q cos = 0``, found by Newton's method from the best of
    ``samples`` angles (the smaller of the two distances is kept). Exact to rounding, unlike the distance to
    sampled points, whose spacing along the curve (1e-4 to 2e-4 at 40001 samples) limits it.

    >>> A, B = ellipse_axes(1.0)
    >>> float(ellipse_distance(np.array([0.0, 0.0]), 1.0)) == B / 2 ** 0.5    # nearest: the minor vertex
    True
    """
    x = np.asarray(x, dtype=float)
    A, B = ellipse_axes(float(mu))
    p, q = A / math.sqrt(2), B / math.sqrt(2)
    u = ((x[..., 0] + x[..., 1]) / math.sqrt(2))[..., None]
    v = ((x[..., 0] - x[..., 1]) / math.sqrt(2))[..., None]
    th = np.linspace(0, 2 * math.pi, samples)
    d2 = (p * np.cos(th) - u) ** 2 + (q * np.sin(th) - v) ** 2
    t = th[d2.argmin(-1)]
    best = np.sqrt(d2.min(-1))
    u, v = u[..., 0], v[..., 0]
    for _ in range(newton):
        s, c = np.sin(t), np.cos(t)
        f = (q * q - p * p) * s * c + u * p * s - v * q * c
        df = (q * q - p * p) * (c * c - s * s) + u * p * c + v * q * s
        t = t - np.where(df != 0, f / np.where(df != 0, df, 1.0), 0.0)
    refined = np.hypot(p * np.cos(t) - u, q * np.sin(t) - v)
    return np.minimum(best, refined)


def ellipse_angle(x: Tensor, mu: Tensor | float) -> Tensor:
    """Angle ``theta`` of a point in the ellipse's parametrisation (exact on the ellipse)."""
    A, B = ellipse_axes(mu)
    s = x[..., 0] + x[..., 1]
    d = x[..., 0] - x[..., 1]
    return torch.atan2(d / B, s / A)


class TwoFactorMap(MapSystem):
    """``F_mu(a, b) = (a - mu (ab - 1) b, b - mu (ab - 1) a)``: GD with step ``mu`` on ``(ab - 1)^2 / 2``.

    Declares the invariant manifolds ``balanced`` (``a = b``), ``ellipse`` (the Chebyshev ellipse ``E_mu``,
    ``0 < mu < 2``) and ``minima`` (the hyperbola ``ab = 1`` of fixed points).
    """

    name = "two_factor"
    description = "two-factor map F(a,b) = (a - mu(ab-1)b, b - mu(ab-1)a): large-step GD of a linear transformer"
    state_names = ("a", "b")
    parameters = {"mu": Param(0.5, description="effective step size mu", low=0, low_inclusive=False)}
    domain_bounds = ([-3.0, -3.0], [3.0, 3.0])

    def stepper(self, x: Tensor, p, dt: float):
        """The structure-of-arrays kernel (:class:`TwoFactorStepper`), unless a subclass changed ``rhs``."""
        if type(self).rhs is not TwoFactorMap.rhs:
            return super().stepper(x, p, dt)
        return TwoFactorStepper(self, x, p, dt)

    def rhs(self, x: Tensor, p) -> Tensor:
        return two_factor_map(x, p["mu"])

    def jacobian(self, x: Tensor, p) -> Tensor:
        """``[[1 - mu b^2, -mu (2ab - 1)], [-mu (2ab - 1), 1 - mu a^2]]``."""
        return two_factor_jacobian(x, p["mu"])

    def loss(self, x: Tensor) -> Tensor:
        """Training loss ``(ab - 1)^2 / 2`` at the states ``x``."""
        return 0.5 * (x[..., 0] * x[..., 1] - 1) ** 2

    def manifolds(self) -> dict[str, Manifold]:
        return two_factor_manifolds(self.domain()[0][0], self.domain()[1][0])


def two_factor_manifolds(low: float = -3.0, high: float = 3.0, mu_of=None) -> dict[str, Manifold]:
    """The invariant manifolds of the two-factor map: ``balanced`` (a = b), ``ellipse`` (E_mu, 0 < mu < 2) and
    ``minima`` (the hyperbola ab = 1 of fixed points).

    ``mu_of(p)`` gives ``mu`` from a parameter mapping (default ``p["mu"]``): systems that reduce to the
    two-factor map with another parametrisation (``linear_attention``) reuse these declarations.
    """
    if mu_of is None:
        def mu_of(p):
            return p["mu"]

    def balanced_constraint(x, p):
        return (x[..., 0] - x[..., 1]).unsqueeze(-1)

    def balanced_project(x, p):
        z = x.mean(-1, keepdim=True)
        return z.expand_as(x).clone()

    def balanced_sample(n, p, generator=None):
        z = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.stack([z, z], dim=-1)

    def ellipse_constraint(x, p):
        return (ellipse_level(x, mu_of(p)) - 1).unsqueeze(-1)

    def ellipse_project(x, p):
        return x / ellipse_level(x, mu_of(p)).clamp(min=1e-300).sqrt().unsqueeze(-1)

    def ellipse_sample(n, p, generator=None):
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        return ellipse_point(theta, mu_of(p))

    def ellipse_valid(p):
        mu = torch.as_tensor(mu_of(p))
        return (mu > 0) & (mu < 2)

    def minima_constraint(x, p):
        return (x[..., 0] * x[..., 1] - 1).unsqueeze(-1)

    def minima_sample(n, p, generator=None):
        u = 3 * torch.rand(n, generator=generator, dtype=torch.float64) - 1.5
        sign = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
        return torch.stack([sign * u.exp(), sign * (-u).exp()], dim=-1).to(torch.float64)

    return {
        "balanced": Manifold("balanced", "balanced slice a = b", balanced_constraint, balanced_project,
                             balanced_sample),
        "ellipse": Manifold("ellipse", "invariant Chebyshev ellipse E_mu (0 < mu < 2)", ellipse_constraint,
                            ellipse_project, ellipse_sample, ellipse_valid),
        "minima": Manifold("minima", "hyperbola ab = 1 of fixed points (global minima)", minima_constraint,
                           sample=minima_sample),
    }

r"""Reference systems of chaotic and damped dynamics, with closed-form Jacobians.

- :class:`Lorenz` (``lorenz``): :math:`\dot x = \sigma (y - x)`, :math:`\dot y = x (\rho - z) - y`,
  :math:`\dot z = x y - \beta z`. At the classic parameters (10, 28, 8/3) the spectrum is
  ``0.9056, 0, -14.5723`` (per unit time) and the exponents sum to the constant divergence
  :math:`-(\sigma + 1 + \beta)`; Kaplan-Yorke dimension 2.062.
- :class:`Henon` (``henon``): :math:`(x, y) \mapsto (1 - a x^2 + y, b x)`; at (1.4, 0.3) the spectrum is
  ``0.4192, -1.6232`` (per iteration), summing to :math:`\ln b` (:math:`\det J = -b`).
- :class:`Duffing` (``duffing``): the damped double well :math:`\ddot x + \delta \dot x - x + x^3 = 0`
  (no forcing): two stable foci :math:`(\pm 1, 0)` with eigenvalues
  :math:`-\delta/2 \pm i \sqrt{2 - \delta^2/4}` (exponents :math:`-\delta/2`, twice) and a saddle at the origin.

Examples
--------
>>> import torch
>>> lz = Lorenz()
>>> lz.rhs(torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), lz.param_tensors()).tolist()
[0.0, 26.0, -1.6666666666666665]
>>> float(torch.linalg.eigvals(Duffing().jacobian(torch.tensor([1.0, 0.0], dtype=torch.float64),
...                                               Duffing().param_tensors())).real[0])
-0.15
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dynlearn.params import Param
from dynlearn.system import FlowSystem, MapSystem

__all__ = ["Lorenz", "Henon", "Duffing"]

Tensor = torch.Tensor


def _rows(*rows: list[Tensor]) -> Tensor:
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


class Lorenz(FlowSystem):
    """Lorenz-63: ``x' = sigma (y - x)``, ``y' = x (rho - z) - y``, ``z' = x y - beta z``."""

    name = "lorenz"
    description = "Lorenz-63 flow (sigma, rho, beta); chaotic at (10, 28, 8/3): exponents 0.9056, 0, -14.5723"
    state_names = ("x", "y", "z")
    parameters = {
        "sigma": Param(10.0, description="Prandtl number sigma", low=0),
        "rho": Param(28.0, description="Rayleigh number rho", low=0),
        "beta": Param(8.0 / 3.0, description="geometric factor beta", low=0),
    }
    domain_bounds = ([-20.0, -25.0, 5.0], [20.0, 25.0, 45.0])

    def rhs(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        s, r, b = p["sigma"], p["rho"], p["beta"]
        u, v, w = x[..., 0], x[..., 1], x[..., 2]
        return torch.stack([s * (v - u), u * (r - w) - v, u * v - b * w], -1)

    def jacobian(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """``[[-sigma, sigma, 0], [rho - z, -1, -x], [y, x, -beta]]``."""
        s, r, b = (torch.as_tensor(p[n], dtype=x.dtype).expand(x.shape[:-1]) for n in ("sigma", "rho", "beta"))
        u, v, w = x[..., 0], x[..., 1], x[..., 2]
        zero, one = torch.zeros_like(u), torch.ones_like(u)
        return _rows([-s, s, zero], [r - w, -one, -u], [v, u, -b])


class Henon(MapSystem):
    """Hénon map ``(x, y) -> (1 - a x^2 + y, b x)``."""

    name = "henon"
    description = "Henon map (x, y) -> (1 - a x^2 + y, b x); chaotic at (1.4, 0.3): exponents 0.4192, -1.6232"
    state_names = ("x", "y")
    parameters = {
        "a": Param(1.4, description="nonlinearity a"),
        "b": Param(0.3, description="contraction b (det J = -b)"),
    }
    domain_bounds = ([-1.0, -0.3], [1.0, 0.3])

    def rhs(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return torch.stack([1 - p["a"] * u * u + v, p["b"] * u], -1)

    def jacobian(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """``[[-2 a x, 1], [b, 0]]``."""
        u = x[..., 0]
        a, b = (torch.as_tensor(p[n], dtype=x.dtype).expand(u.shape) for n in ("a", "b"))
        zero, one = torch.zeros_like(u), torch.ones_like(u)
        return _rows([-2 * a * u, one], [b, zero])


class Duffing(FlowSystem):
    """Damped unforced Duffing oscillator ``x'' + delta x' - x + x^3 = 0`` as ``(x, v)``: two stable foci."""

    name = "duffing"
    description = "damped Duffing double well x'' + delta x' - x + x^3 = 0: two stable foci (+-1, 0), saddle at 0"
    state_names = ("x", "v")
    parameters = {"delta": Param(0.3, description="damping delta", low=0)}
    domain_bounds = ([-2.0, -2.0], [2.0, 2.0])

    def rhs(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return torch.stack([v, u - u**3 - p["delta"] * v], -1)

    def jacobian(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """``[[0, 1], [1 - 3 x^2, -delta]]``."""
        u = x[..., 0]
        dl = torch.as_tensor(p["delta"], dtype=x.dtype).expand(u.shape)
        zero, one = torch.zeros_like(u), torch.ones_like(u)
        return _rows([zero, one], [1 - 3 * u * u, -dl])

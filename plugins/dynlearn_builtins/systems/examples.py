"""Small flows with known answers: test cases for the analyzers and starting points for users.

=================  ===========================================  ==========================================
system             equations                                    known facts
=================  ===========================================  ==========================================
bistable           s = x - a y^2;  s' = s - s^3,  y' = -y         attractors (a y^2 +- 1, y); separatrix
                   (x' = s - s^3 - 2 a y^2)                      x = a y^2 (x = 0 for the default a = 0)
bistable_3d        s = x - a (y^2 + z^2);  s' = s - s^3,          separatrix: paraboloid x = a (y^2 + z^2)
                   y' = -y,  z' = -2 z
saddle_node_2d     x' = r + x^2,  y' = -y                         r<0: node (-sqrt(-r), 0) stable, saddle
                                                                (+sqrt(-r), 0); r>0: ghost at 0, speed r
hopf               x' = mu x - w y - x (x^2+y^2), y' = w x + ...  mu<0 stable focus; mu>0 unstable focus and
                                                                a limit cycle of radius sqrt(mu)
double_well        f = -grad V,  V = (x^2 - 1)^2 + k y^2 / 2       minima (+-1, 0), saddle (0, 0), dV = 1
maier_stein        x' = x - x^3 - beta x y^2,  y' = -(1+x^2) y    gradient only for beta = 1; the standard
                                                                non-gradient test case at beta = 10
=================  ===========================================  ==========================================

Examples
--------
>>> import torch
>>> sys = Bistable()
>>> sys.rhs(torch.tensor([[0.5, 1.0]], dtype=torch.float64), sys.param_tensors((1,)))
tensor([[ 0.3750, -1.0000]], dtype=torch.float64)
"""

from __future__ import annotations

import torch

from dynlearn.params import Param
from dynlearn.system import FlowSystem

__all__ = ["Bistable", "Bistable3D", "SaddleNode2D", "HopfNormalForm", "DoubleWell", "MaierStein"]


class Bistable(FlowSystem):
    """Bistable flow with a (possibly curved) known separatrix ``x = a y^2``.

    With ``s = x - a y^2``: ``ds/dt = s - s^3``, ``dy/dt = -y``, so ``s`` alone decides the basin and the
    separatrix is ``s = 0``. In the original coordinates ``dx/dt = s - s^3 - 2 a y^2``.
    """

    name = "bistable"
    description = "bistable flow x' = s - s^3 - 2 a y^2, y' = -y (s = x - a y^2); separatrix x = a y^2"
    state_names = ("x", "y")
    parameters = {"a": Param(0.0, description="curvature of the separatrix x = a y^2")}
    domain_bounds = ([-2.0, -2.0], [2.0, 2.0])

    def rhs(self, x, p):
        a = p["a"]
        X, Y = x[..., 0], x[..., 1]
        s = X - a * Y**2
        return torch.stack([s - s**3 - 2 * a * Y**2, -Y], dim=-1)


class Bistable3D(FlowSystem):
    """3-D bistable flow whose separatrix is the paraboloid ``x = a (y^2 + z^2)``.

    ``s = x - a (y^2 + z^2)``: ``ds/dt = s - s^3``, ``dy/dt = -y``, ``dz/dt = -2 z``.
    """

    name = "bistable_3d"
    description = "3-D bistable flow with the separatrix x = a (y^2 + z^2)"
    state_names = ("x", "y", "z")
    parameters = {"a": Param(0.3, description="curvature of the separatrix x = a (y^2 + z^2)")}
    domain_bounds = ([-2.0, -2.0, -2.0], [2.0, 2.0, 2.0])

    def rhs(self, x, p):
        a = p["a"]
        X, Y, Z = x[..., 0], x[..., 1], x[..., 2]
        s = X - a * (Y**2 + Z**2)
        return torch.stack([s - s**3 - a * (2 * Y**2 + 4 * Z**2), -Y, -2 * Z], dim=-1)


class SaddleNode2D(FlowSystem):
    """Saddle-node normal form with a transverse stable direction: ``x' = r + x^2``, ``y' = -y``."""

    name = "saddle_node_2d"
    description = "saddle-node normal form x' = r + x^2 with a stable direction y' = -y"
    state_names = ("x", "y")
    parameters = {"r": Param(-1.0, description="saddle-node parameter r")}
    domain_bounds = ([-2.0, -2.0], [2.0, 2.0])

    def rhs(self, x, p):
        return torch.stack([p["r"] + x[..., 0] ** 2, -x[..., 1]], dim=-1)


class HopfNormalForm(FlowSystem):
    """Supercritical Hopf normal form ``z' = (mu + i w) z - |z|^2 z`` in Cartesian coordinates."""

    name = "hopf"
    description = "supercritical Hopf normal form; limit cycle of radius sqrt(mu) for mu > 0"
    state_names = ("x", "y")
    parameters = {
        "mu": Param(-0.5, description="Hopf parameter mu"),
        "omega": Param(1.0, description="rotation frequency omega", units="rad/time"),
    }
    domain_bounds = ([-2.0, -2.0], [2.0, 2.0])

    def rhs(self, x, p):
        mu, w = p["mu"], p["omega"]
        X, Y = x[..., 0], x[..., 1]
        r2 = X**2 + Y**2
        return torch.stack([mu * X - w * Y - X * r2, w * X + mu * Y - Y * r2], dim=-1)


class DoubleWell(FlowSystem):
    """Gradient flow ``f = -grad V`` of the double well ``V = (x^2 - 1)^2 + k y^2 / 2`` (barrier dV = 1)."""

    name = "double_well"
    description = "gradient flow of V = (x^2-1)^2 + k y^2/2: minima (+-1, 0), saddle (0, 0), barrier 1"
    state_names = ("x", "y")
    parameters = {"k": Param(1.0, description="stiffness of the y direction", low=0, low_inclusive=False)}
    domain_bounds = ([-2.0, -1.5], [2.0, 1.5])

    @staticmethod
    def potential(x: torch.Tensor, k: torch.Tensor | float = 1.0) -> torch.Tensor:
        return (x[..., 0] ** 2 - 1) ** 2 + 0.5 * k * x[..., 1] ** 2

    def rhs(self, x, p):
        X, Y = x[..., 0], x[..., 1]
        return torch.stack([-4 * X * (X**2 - 1), -p["k"] * Y], dim=-1)


class MaierStein(FlowSystem):
    """Maier-Stein system ``x' = x - x^3 - beta x y^2``, ``y' = -(1 + x^2) y`` (non-gradient unless beta = 1)."""

    name = "maier_stein"
    description = "Maier-Stein system, the standard non-gradient test of minimum-action methods"
    state_names = ("x", "y")
    parameters = {"beta": Param(10.0, description="non-gradient coupling beta", low=0)}
    domain_bounds = ([-1.5, -1.0], [1.5, 1.0])

    def rhs(self, x, p):
        X, Y = x[..., 0], x[..., 1]
        return torch.stack([X - X**3 - p["beta"] * X * Y**2, -(1 + X**2) * Y], dim=-1)

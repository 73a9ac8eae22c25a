r"""A chain of two saddle-node ghosts: a flow whose trajectories pass a bottleneck at x = 0, then one at x = 1.

.. math::

    \dot x = \rho(x) + \frac{\sin^2(\pi x)}{\pi^2}, \qquad
    \rho(x) = \frac{r_1 + r_2}{2} + \frac{r_1 - r_2}{2}\cos(\pi x), \qquad
    \dot y = -k\, y .

For :math:`r_1, r_2 > 0` the speed :math:`\dot x` is positive everywhere: no fixed point, but :math:`|f|` has
local minima exactly at :math:`(0, 0)` (speed :math:`r_1`) and :math:`(1, 0)` (speed :math:`r_2`) — two
saddle-node ghosts in a chain (every integer ``x`` is one, alternating :math:`r_1, r_2`; the domain
:math:`x \in [-1/2, 3/2]` holds two). Near them :math:`\dot x \approx r_i + a_i u^2` with the exact curvatures

.. math:: a_1 = 1 - \tfrac{\pi^2}{4}(r_1 - r_2), \qquad a_2 = 1 + \tfrac{\pi^2}{4}(r_1 - r_2),

so each bottleneck takes the normal-form passage time :math:`\pi/\sqrt{r_i a_i}` (``passage_time_nf``). The
Jacobian at a ghost is :math:`\operatorname{diag}(0, -k)`: one neutral direction (ghost dimension 1). The time
from :math:`x_a` to :math:`x_b` is :math:`\int_{x_a}^{x_b} dx / \dot x` (:func:`crossing_time`, by quadrature);
for :math:`r_1 = r_2 = r` one period takes exactly :math:`\pi / \sqrt{r (1 + \pi^2 r)}` (:func:`period_time`).
For :math:`r_i < 0` the ghost :math:`i` becomes a saddle-node pair of fixed points (``|r_1 - r_2| < 4/\pi^2``
keeps both curvatures positive: the declared ranges guarantee it).

Examples
--------
>>> import math, torch
>>> gc = GhostChain(r1=0.01, r2=0.02)
>>> p = gc.param_tensors((2,))
>>> gc.rhs(torch.tensor([[0.0, 0.0], [1.0, 0.5]], dtype=torch.float64), p).tolist()
[[0.01, 0.0], [0.02, -0.5]]
>>> [round(t, 4) for t in passage_times(0.01, 0.02)]
[31.0354, 22.4937]
>>> round(period_time(0.01), 6) == round(crossing_time(-0.5, 0.5, 0.01, 0.01), 6)
True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dynlearn.params import Param
from dynlearn.system import FlowSystem

__all__ = ["GhostChain", "ghost_positions", "curvatures", "passage_times", "speed_x", "crossing_time",
           "period_time"]

Tensor = torch.Tensor

#: |r1 - r2| below 4 / pi^2 keeps both curvatures positive
R_RANGE = 0.2


def ghost_positions() -> np.ndarray:
    """``(2, 2)``: the ghosts' states ``(0, 0)`` and ``(1, 0)`` (exact for every ``r1, r2``)."""
    return np.array([[0.0, 0.0], [1.0, 0.0]])


def curvatures(r1: float, r2: float) -> tuple[float, float]:
    """Normal-form curvatures ``a_i`` of ``x' ~ r_i + a_i u^2`` at the two ghosts."""
    c = math.pi**2 / 4 * (r1 - r2)
    return 1 - c, 1 + c


def passage_times(r1: float, r2: float) -> tuple[float, float]:
    """Normal-form passage times ``pi / sqrt(r_i a_i)`` of the two bottlenecks (``r_i > 0``)."""
    a1, a2 = curvatures(r1, r2)
    return math.pi / math.sqrt(r1 * a1), math.pi / math.sqrt(r2 * a2)


def speed_x(x, r1: float, r2: float):
    """``dx/dt`` at ``x`` (numpy or float)."""
    return (r1 + r2) / 2 + (r1 - r2) / 2 * np.cos(np.pi * x) + np.sin(np.pi * x) ** 2 / np.pi**2


def crossing_time(x_from: float, x_to: float, r1: float, r2: float) -> float:
    """Time for ``x`` to go from ``x_from`` to ``x_to`` (``int dx / x'``, adaptive quadrature to ~1e-12)."""
    from scipy.integrate import quad

    pts = [v for v in range(math.ceil(x_from), math.floor(x_to) + 1)]  # the bottlenecks inside the range
    val, _ = quad(lambda x: 1.0 / speed_x(x, r1, r2), x_from, x_to, points=pts or None, epsabs=0, epsrel=1e-12,
                  limit=200)
    return float(val)


def period_time(r: float) -> float:
    """For ``r1 = r2 = r``: the time of one period of ``x`` (one bottleneck), ``pi / sqrt(r (1 + pi^2 r))``."""
    return math.pi / math.sqrt(r * (1 + math.pi**2 * r))


class GhostChain(FlowSystem):
    """Two saddle-node ghosts in a chain, at ``(0, 0)`` and ``(1, 0)`` (see the module docstring).

    Parameters
    ----------
    r1, r2
        Speeds at the two ghosts (``> 0``: ghosts; ``< 0``: a saddle-node pair of fixed points instead).
    k
        Rate of the transverse contraction ``y' = -k y``.
    """

    name = "ghost_chain"
    description = "chain of two saddle-node ghosts: x' = rho(x) + sin^2(pi x)/pi^2 (ghosts at x=0, 1), y' = -k y"
    state_names = ("x", "y")
    parameters = {
        "r1": Param(0.01, low=-R_RANGE, high=R_RANGE, description="speed at the first ghost (x = 0)",
                    units="1/time"),
        "r2": Param(0.02, low=-R_RANGE, high=R_RANGE, description="speed at the second ghost (x = 1)",
                    units="1/time"),
        "k": Param(1.0, low=0, low_inclusive=False, description="transverse contraction rate of y' = -k y",
                   units="1/time"),
    }
    domain_bounds = ([-0.5, -0.5], [1.5, 0.5])
    time_units = "time"

    def rhs(self, x: Tensor, p) -> Tensor:
        r1, r2, k = p["r1"], p["r2"], p["k"]
        X, Y = x[..., 0], x[..., 1]
        s = torch.sin(math.pi * X)
        dx = (r1 + r2) / 2 + (r1 - r2) / 2 * torch.cos(math.pi * X) + s * s / math.pi**2
        return torch.stack([dx, -k * Y], dim=-1)

    def jacobian(self, x: Tensor, p) -> Tensor:
        r1, r2, k = p["r1"], p["r2"], p["k"]
        X = x[..., 0]
        dxx = -(r1 - r2) / 2 * math.pi * torch.sin(math.pi * X) + torch.sin(2 * math.pi * X) / math.pi
        zero = torch.zeros_like(dxx)
        row0 = torch.stack([dxx, zero], -1)
        row1 = torch.stack([zero, -k * torch.ones_like(dxx)], -1)
        return torch.stack([row0, row1], -2)

"""Closed-form reference problems shared by the tests (torchdiffeq's ``tests/problems.py`` idea).

Each function states an exact fact the analyzers must reproduce; the small systems below are test-only Systems
(not registered as plugins) with known answers.

Saddle-node normal form ``x' = r + a x^2`` (``saddle_node`` has ``a = 1``):

- ``r < 0``: fixed points ``+-sqrt(-r/a)`` with eigenvalues ``+-2 sqrt(-r a)`` (the negative root is stable);
- ``r > 0``: no fixed point; ``x = 0`` is a ghost with speed ``r`` whose bottleneck takes ``pi / sqrt(r a)`` to
  cross; crossing the ball ``|x| <= rho`` takes ``2 atan(rho sqrt(a/r)) / sqrt(r a)``;
- from ``x(0) = 0``: ``x(t) = sqrt(r/a) tan(sqrt(r a) t)``.

Two-factor map ``F(a, b) = (a - mu (ab - 1) b, b - mu (ab - 1) a)``: fixed points are the hyperbola ``ab = 1``
(Jacobian eigenvalues ``1`` along it and ``1 - mu (a^2 + b^2)`` across it) and the origin (``1 +- mu``).

Hopf normal form: the origin has eigenvalues ``mu +- i omega``.

Logistic map ``x -> mu x (1 - x)``: the fixed point ``1 - 1/mu`` has multiplier ``2 - mu`` (flip at ``mu = 3``).
Neimark-Sacker normal form ``z -> (1 + mu) e^{i theta} z - |z|^2 z``: multipliers ``(1 + mu) e^{+-i theta}`` at 0.
Pitchfork ``x' = r x - x^3``: 0 (eigenvalue ``r``) for every ``r``, and ``+-sqrt(r)`` (eigenvalue ``-2r``) for
``r > 0`` (supercritical: the pair is stable; ``x' = r x + x^3`` is the subcritical one, a pair of saddles for
``r < 0``). Transcritical ``x' = r x - x^2``: 0 (eigenvalue ``r``) and ``r`` (eigenvalue ``-r``) exchange stability
at ``r = 0``. Moving saddle-node: ``x' = r + x^2`` turned by ``omega r`` and carried by ``(A r, A r)`` in the
plane (fixed points ``c(r) + R(omega r) (+-sqrt(-r), 0)``, eigenvalues those of ``(r + u^2, -v)``): points that
move far between steps. Turning phase ``theta' = 1/2 - sin(theta - r)`` on the circle: a stable and an unstable
point, ``r + pi/6`` and ``r + 5 pi/6`` (mod 2 pi), that turn with ``r`` across the cut at ``+-pi``.
Local ghost ``x' = (2 - x)((x + 1)^2 + c)``: one fixed point (``x = 2``, stable) for every ``c > 0``; near
``x = -1`` a local minimum of the speed that becomes a ghost as ``c -> 0`` (no bifurcation).

>>> round(ghost_passage_time(0.01), 6), round(ball_passage_time(0.01, 1.0, 1.0), 6)
(31.415927, 29.422553)
"""

from __future__ import annotations

import math

import torch

from dynlearn.params import Param
from dynlearn.system import FlowSystem, MapSystem

__all__ = [
    "saddle_node_roots",
    "saddle_node_eigenvalues",
    "ghost_passage_time",
    "ball_passage_time",
    "tan_solution",
    "two_factor_normal_eigenvalue",
    "two_factor_origin_eigenvalues",
    "hopf_eigenvalues",
    "SaddleNodeMap",
    "CurvedSaddleNode",
    "LogisticMap",
    "NeimarkSackerMap",
    "LocalGhost",
    "Pitchfork",
    "Transcritical",
    "MovingSaddleNode",
    "TurningPhase",
]


def saddle_node_roots(r: float, a: float = 1.0) -> tuple[float, ...]:
    """Fixed points of ``r + a x^2`` in increasing order (none for ``r a > 0``)."""
    if r * a > 0:
        return ()
    s = math.sqrt(-r / a)
    return (-s, s) if s else (0.0,)


def saddle_node_eigenvalues(r: float, a: float = 1.0) -> tuple[float, ...]:
    """``f'(x) = 2 a x`` at :func:`saddle_node_roots`."""
    return tuple(2 * a * x for x in saddle_node_roots(r, a))


def ghost_passage_time(r: float, a: float = 1.0) -> float:
    """Normal-form passage time ``pi / sqrt(r a)`` through the bottleneck of ``x' = r + a x^2``."""
    return math.pi / math.sqrt(r * a)


def ball_passage_time(r: float, a: float, rho: float) -> float:
    """Time to cross ``|x| <= rho`` under ``x' = r + a x^2``: ``2 atan(rho sqrt(a/r)) / sqrt(r a)``."""
    return 2 * math.atan(rho * math.sqrt(a / r)) / math.sqrt(r * a)


def tan_solution(t: float, r: float, a: float = 1.0) -> float:
    """``x(t)`` from ``x(0) = 0`` under ``x' = r + a x^2`` (``r, a > 0``, before the blow-up)."""
    return math.sqrt(r / a) * math.tan(math.sqrt(r * a) * t)


def two_factor_normal_eigenvalue(a: float, b: float, mu: float) -> float:
    """Eigenvalue of the two-factor map's Jacobian across the hyperbola ``ab = 1``: ``1 - mu (a^2 + b^2)``."""
    return 1 - mu * (a * a + b * b)


def two_factor_origin_eigenvalues(mu: float) -> tuple[float, float]:
    """The origin is a fixed point of the two-factor map with eigenvalues ``1 - mu`` and ``1 + mu``."""
    return (1 - mu, 1 + mu)


def hopf_eigenvalues(mu: float, omega: float) -> tuple[complex, complex]:
    """Eigenvalues ``mu +- i omega`` of the Hopf normal form at the origin."""
    return (complex(mu, omega), complex(mu, -omega))


class SaddleNodeMap(MapSystem):
    """Saddle-node normal form of a map: ``x -> x + r + x^2`` (residual ``r + x^2``, ghost at 0 for r > 0)."""

    name = "saddle_node_map_test"
    description = "map x -> x + r + x^2 (test problem)"
    state_names = ("x",)
    parameters = {"r": Param(1e-3, description="saddle-node parameter r")}
    domain_bounds = ([-1.0], [1.0])

    def rhs(self, x, p):
        return x + p["r"][..., None] + x**2


class CurvedSaddleNode(FlowSystem):
    """``x' = r + a x^2``, ``y' = -y``: the 2-D saddle-node normal form with curvature ``a``."""

    name = "curved_saddle_node_test"
    description = "x' = r + a x^2, y' = -y (test problem)"
    state_names = ("x", "y")
    parameters = {"r": Param(0.01, description="saddle-node parameter r"),
                  "a": Param(2.0, description="curvature a", low=0, low_inclusive=False)}
    domain_bounds = ([-2.0, -2.0], [2.0, 2.0])

    def rhs(self, x, p):
        return torch.stack([p["r"] + p["a"] * x[..., 0] ** 2, -x[..., 1]], dim=-1)


class LogisticMap(MapSystem):
    """``x -> mu x (1 - x)``: fixed points 0 and ``1 - 1/mu`` (multiplier ``2 - mu``: flip at ``mu = 3``)."""

    name = "logistic_test"
    description = "logistic map (test problem)"
    state_names = ("x",)
    parameters = {"mu": Param(2.5, description="growth rate mu")}
    domain_bounds = ([-0.5], [1.5])

    def rhs(self, x, p):
        return p["mu"][..., None] * x * (1 - x)


class NeimarkSackerMap(MapSystem):
    """``z -> (1 + mu) e^{i theta} z - |z|^2 z`` in Cartesian coordinates (Neimark-Sacker at ``mu = 0``)."""

    name = "neimark_sacker_test"
    description = "Neimark-Sacker normal form map (test problem)"
    state_names = ("x", "y")
    parameters = {"mu": Param(-0.1, description="mu"), "theta": Param(1.0, description="rotation angle theta")}
    domain_bounds = ([-0.5, -0.5], [0.5, 0.5])

    def rhs(self, x, p):
        mu, th = p["mu"], p["theta"]
        X, Y = x[..., 0], x[..., 1]
        c, s = (1 + mu) * torch.cos(th), (1 + mu) * torch.sin(th)
        r2 = X**2 + Y**2
        return torch.stack([c * X - s * Y - r2 * X, s * X + c * Y - r2 * Y], dim=-1)


class LocalGhost(FlowSystem):
    """``x' = (2 - x)((x + 1)^2 + c)``: one stable fixed point at 2; a local ghost near -1 as ``c -> 0``."""

    name = "local_ghost_test"
    description = "one fixed point and an emerging local ghost (test problem)"
    state_names = ("x",)
    parameters = {"c": Param(1.0, description="depth parameter c", low=0, low_inclusive=False)}
    domain_bounds = ([-3.0], [3.0])

    def rhs(self, x, p):
        return (2 - x) * ((x + 1) ** 2 + p["c"][..., None])


class Pitchfork(FlowSystem):
    """``x' = r x + s x^3`` (``s = -1``: supercritical pitchfork at ``r = 0``; ``s = +1``: subcritical)."""

    name = "pitchfork_test"
    description = "pitchfork normal form (test problem)"
    state_names = ("x",)
    parameters = {"r": Param(-0.5, description="pitchfork parameter r"),
                  "s": Param(-1.0, description="sign of the cubic term")}
    domain_bounds = ([-2.0], [2.0])

    def rhs(self, x, p):
        return p["r"][..., None] * x + p["s"][..., None] * x**3


class Transcritical(FlowSystem):
    """``x' = r x - x^2``: fixed points 0 and ``r`` exchange stability at ``r = 0``."""

    name = "transcritical_test"
    description = "transcritical normal form (test problem)"
    state_names = ("x",)
    parameters = {"r": Param(-0.5, description="transcritical parameter r")}
    domain_bounds = ([-2.0], [2.0])

    def rhs(self, x, p):
        return p["r"][..., None] * x - x**2


class MovingSaddleNode(FlowSystem):
    """The saddle-node ``(u, v)' = (r + u^2, -v)`` turned by ``omega r`` and carried to ``(A r, A r)``."""

    name = "moving_saddle_node_test"
    description = "a saddle-node pair that moves far between parameter steps (test problem)"
    state_names = ("x", "y")
    parameters = {"r": Param(-0.5, description="saddle-node parameter r"),
                  "A": Param(10.0, description="translation per unit of r"),
                  "omega": Param(20.0, description="rotation per unit of r", units="rad")}
    domain_bounds = ([-12.0, -12.0], [12.0, 12.0])

    def rhs(self, x, p):
        r, A, w = p["r"], p["A"], p["omega"]
        c, s = torch.cos(w * r), torch.sin(w * r)
        X, Y = x[..., 0] - A * r, x[..., 1] - A * r
        u, v = c * X + s * Y, -s * X + c * Y          # R(-omega r) (x - centre)
        fu, fv = r + u**2, -v
        return torch.stack([c * fu - s * fv, s * fu + c * fv], dim=-1)


class TurningPhase(FlowSystem):
    """``theta' = 1/2 - sin(theta - r)`` on the circle ``[-pi, pi)``: two fixed points turning with ``r``."""

    name = "turning_phase_test"
    description = "two fixed points on a circle that turn with r (test problem)"
    state_names = ("theta",)
    periodic = {"theta": (-math.pi, math.pi)}
    parameters = {"r": Param(0.0, description="phase shift r", units="rad")}
    domain_bounds = ([-math.pi], [math.pi])

    def rhs(self, x, p):
        return 0.5 - torch.sin(x - p["r"][..., None])

"""The attractors table of the basins analyzer (private): kind, representative state, period, stability,
largest Lyapunov exponent, basin fractions with Wilson confidence intervals.

Kinds
-----
``diverged``        |x| -> infinity (always attractor 0)
``fixed_point``     the orbits' tails have settled (return period 1) onto one point (spread <= 2 cells)
``fixed_set``       settled onto a continuum of fixed points (e.g. the hyperbola ``ab = 1`` of minima)
``periodic``        return period ``p > 1`` (maps: ``p`` iterations; flows: a closed orbit, period in time)
``chaotic``         no return period and a positive largest Lyapunov exponent
``quasi_periodic``  no return period and a largest Lyapunov exponent <= ``lyapunov_tol``

``stable`` is False for a fixed point / cycle whose linearisation is unstable (a saddle reached only from its
stable manifold, e.g. grid points exactly on the separatrix).

    >>> lo, hi = wilson(np.array([50]), 100, 0.95)
    >>> round(float(lo[0]), 4), round(float(hi[0]), 4)
    (0.4038, 0.5962)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.stats import norm

from dynlearn.lyapunov import spectrum
from dynlearn.stepper import step_jacobian

from .attractors import Found

__all__ = ["wilson", "describe", "lyapunov", "stability"]

Tensor = torch.Tensor


def wilson(count: np.ndarray, n: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``count / n`` at the given confidence level."""
    count = np.asarray(count, dtype=float)
    if n <= 0:
        return np.full(count.shape, np.nan), np.full(count.shape, np.nan)
    z = norm.ppf(0.5 + confidence / 2)
    p = count / n
    den = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / den
    half = z / den * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    lo = np.where(count == 0, 0.0, np.clip(centre - half, 0, 1))
    hi = np.where(count == n, 1.0, np.clip(centre + half, 0, 1))
    return lo, hi


def describe(found: Found, finals: np.ndarray, settled: np.ndarray, periods: np.ndarray, width: np.ndarray, *,
             flow: bool, period_unit: float) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """Preliminary kind, representative state and period of attractors ``1..K`` of one sweep element.

    Kinds ``fixed_point`` / ``fixed_set`` / ``periodic`` are decided here by a majority of the member orbits;
    ``None`` marks the aperiodic ones (``chaotic`` or ``quasi_periodic``, decided from the Lyapunov exponent).
    The representative is the member orbit whose final state is nearest the members' coordinate-wise median.
    """
    K, d = found.n_attractors, finals.shape[1]
    kinds: list[str | None] = []
    states = np.full((K, d), np.nan)
    period = np.full(K, np.nan)
    for k in range(1, K + 1):  # loop over the few attractors found, not over orbits
        members = np.flatnonzero(found.labels == k)
        fin = finals[members]
        med = np.median(fin, axis=0)
        states[k - 1] = fin[np.argmin(np.abs(fin - med).max(-1))]
        p = periods[members]
        if settled[members].mean() >= 0.5:
            spread = float(((fin.max(0) - fin.min(0)) / width).max())
            kinds.append("fixed_point" if spread <= 2 else "fixed_set")
            period[k - 1] = 0.0 if flow else 1.0
        elif (p > 0).mean() >= 0.5:
            kinds.append("periodic")
            pp = p[p > 0]
            period[k - 1] = (np.median(pp) if flow else np.bincount(pp.astype(np.int64)).argmax()) * period_unit
        else:
            kinds.append(None)
    return kinds, states, period


def lyapunov(system, x: Tensor, p: Mapping[str, Tensor], *, steps: int, dt: float) -> Tensor:
    """Largest Lyapunov exponent from ``x`` (``(M, d)``, parameters ``(M, ...)``): :func:`dynlearn.lyapunov.spectrum`
    with one tangent vector, aligned during ``steps // 4`` warm-up steps, then measured over ``steps``.

    Per iteration (maps) or per unit time (flows, RK4 steps of ``dt``); the tangent dynamics are float64 whatever
    the states' precision (float32 states give finite exponents); NaN for an orbit that leaves
    ``|x|_inf <= 1e6``.
    """
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.float64)
    return spectrum(system, x, p, steps=steps, dt=dt, transient=steps // 4, k=1).exponents[:, 0]


def stability(system, x: Tensor, p: Mapping[str, Tensor], kinds: list[str], period: np.ndarray,
              tol: float = 1e-6) -> np.ndarray:
    """Linear stability of fixed points / map cycles at ``x`` (``(M, d)``); True for the other kinds.

    Maps: spectral radius of the Jacobian of ``F^p`` (the product of Jacobians along the cycle of period ``p``,
    :func:`dynlearn.stepper.step_jacobian`) ``<= 1 + tol``. Flows: largest real part of the Jacobian's
    eigenvalues ``<= tol`` at a fixed point.
    """
    out = np.ones(len(kinds), dtype=bool)
    is_map = system.kind == "map"
    for i, kind in enumerate(kinds):  # one small d x d problem per attractor found
        if kind not in ("fixed_point", "fixed_set") and not (kind == "periodic" and is_map):
            continue
        xi = x[i : i + 1]
        pi = {k: v[i : i + 1] for k, v in p.items()}
        if not is_map:
            ev = torch.linalg.eigvals(system.jacobian(xi, pi)[0])
            out[i] = bool(ev.real.max() <= tol)
            continue
        _, M = step_jacobian(system, xi, pi, n=int(round(period[i])) if kind == "periodic" else 1)
        out[i] = bool(torch.linalg.eigvals(M[0]).abs().max() <= 1 + tol)
    return out

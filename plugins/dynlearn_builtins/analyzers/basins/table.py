"""The attractors table of the basins analyzer (private): kind, representative state, period, stability,
largest Lyapunov exponent, basin fractions with Wilson confidence intervals.

Kinds
-----
``diverged``        |x| -> infinity (always attractor 0)
``fixed_point``     the orbits' tails have settled (return period 1) onto one point (spread <= 2 cells)
``fixed_set``       settled onto a continuum of fixed points (e.g. the hyperbola ``ab = 1`` of minima)
``periodic``        return period ``p > 1`` (maps: ``p`` iterations; flows: a closed orbit, period in time)
``chaotic``         no return period; largest Lyapunov exponent > ``lyapunov_tol`` over the run and each half
``quasi_periodic``  no return period and ``|largest Lyapunov exponent| <= lyapunov_tol``
``unresolved``      none of these after the longer runs (e.g. a negative exponent without a settled tail: the
                    orbits were still converging when ``max_steps`` ran out)

The aperiodic kinds follow the ``orbits`` analyzer's rule (:func:`dynlearn.lyapunov.aperiodic_verdict`): a kind
is never given against its exponents; an attractor whose tails have not settled is integrated further first.

``stable`` is False for a fixed point / cycle whose linearisation is unstable (a saddle reached only from its
stable manifold, e.g. grid points exactly on the separatrix).

    >>> lo, hi = wilson(np.array([50]), 100, 0.95)
    >>> round(float(lo[0]), 4), round(float(hi[0]), 4)
    (0.4038, 0.5962)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from scipy.stats import norm

from dynlearn.lyapunov import CHAOTIC, FLAT, aperiodic_verdict, spectrum
from dynlearn.stepper import step_jacobian

from .attractors import Found

__all__ = ["wilson", "interval_vars", "judge", "describe", "exponents", "kind_of", "stability"]

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


def interval_vars(make, name: str, value, low, high, long_name: str, conf: str) -> dict:
    """``name``, ``name_low`` and ``name_high``: a fraction and the ends of its interval (:func:`wilson`), each made
    by ``make(data, name, attrs)``; ``conf`` names the interval (e.g. ``"95% Wilson interval"``)."""
    label = name.replace("_", " ")
    return {name: make(value, name, {"long_name": long_name, "units": "1"}),
            f"{name}_low": make(low, f"{name}_low", {"long_name": f"{label}, lower end of the {conf}", "units": "1"}),
            f"{name}_high": make(high, f"{name}_high", {"long_name": f"{label}, upper end of the {conf}",
                                                         "units": "1"})}


def judge(fin: np.ndarray, settled: np.ndarray, periods: np.ndarray, width: np.ndarray, *, flow: bool,
          period_unit: float) -> tuple[str | None, np.ndarray, float]:
    """Preliminary kind, representative state and period of one attractor from its member orbits: final states
    ``fin (n, d)``, whether their tails settled ``(n,)`` and their return periods in tail samples ``(n,)``.

    ``fixed_point`` / ``fixed_set`` / ``periodic`` by a majority of the members; ``None`` when most show no
    return (aperiodic: decided from the exponents, :func:`kind_of`). The representative is the member whose final
    state is nearest the members' coordinate-wise median.
    """
    med = np.median(fin, axis=0)
    state = fin[np.argmin(np.abs(fin - med).max(-1))]
    if settled.mean() >= 0.5:
        spread = float(((fin.max(0) - fin.min(0)) / width).max())
        return ("fixed_point" if spread <= 2 else "fixed_set"), state, (0.0 if flow else 1.0)
    if (periods > 0).mean() >= 0.5:
        pp = periods[periods > 0]
        per = np.median(pp) if flow else np.bincount(pp.astype(np.int64)).argmax()
        return "periodic", state, float(per) * period_unit
    return None, state, math.nan


def describe(found: Found, finals: np.ndarray, settled: np.ndarray, periods: np.ndarray, width: np.ndarray, *,
             flow: bool, period_unit: float) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """:func:`judge` of attractors ``1..K`` of one sweep element: ``(kinds, states (K, d), periods (K,))``."""
    K, d = found.n_attractors, finals.shape[1]
    kinds: list[str | None] = []
    states = np.full((K, d), np.nan)
    period = np.full(K, np.nan)
    for k in range(1, K + 1):  # loop over the few attractors found, not over orbits
        m = found.labels == k
        kind, states[k - 1], period[k - 1] = judge(finals[m], settled[m], periods[m], width, flow=flow,
                                                   period_unit=period_unit)
        kinds.append(kind)
    return kinds, states, period


def exponents(system, x: Tensor, p: Mapping[str, Tensor], *, steps: int, dt: float) -> tuple[Tensor, Tensor]:
    """Full Lyapunov spectra from ``x`` (``(M, d)``, parameters ``(M, ...)``) and the leading finite-time
    exponent over each half of the run: :func:`dynlearn.lyapunov.spectrum` with ``d`` tangent vectors, aligned
    during ``steps // 4`` warm-up steps, then measured over ``steps``: ``((M, d) decreasing, (M, 2))``.

    Per iteration (maps) or per unit time (flows, RK4 steps of ``dt``); the tangent dynamics are float64 whatever
    the states' precision; NaN for an orbit that leaves ``|x|_inf <= 1e6``.
    """
    if x.shape[0] == 0:
        return torch.empty(0, system.state_dim, dtype=torch.float64), torch.empty(0, 2, dtype=torch.float64)
    sp = spectrum(system, x, p, steps=steps, dt=dt, transient=steps // 4, window=max(1, steps // 2))
    return sp.exponents, sp.finite_time[..., 0]


def kind_of(kind: str | None, leading: Tensor, windows: Tensor, tol: float) -> str | None:
    """The kind of an attractor from its preliminary kind (:func:`judge`) and its exponents: an aperiodic one is
    ``chaotic`` or ``quasi_periodic`` by :func:`dynlearn.lyapunov.aperiodic_verdict` (the rule of ``orbits``),
    ``None`` while that evidence has not settled (e.g. a negative leading exponent: still converging)."""
    if kind is not None:
        return kind
    verdict = int(aperiodic_verdict(leading, windows, tol))
    return {CHAOTIC: "chaotic", FLAT: "quasi_periodic"}.get(verdict)


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

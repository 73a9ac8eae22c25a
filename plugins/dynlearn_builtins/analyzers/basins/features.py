r"""Trajectory features of the basin-stability study (private): what identifies an attractor, modulo periods.

Over a window of recorded states :math:`x(t_0), \dots, x(t_K)` each coordinate gives

- a non-periodic coordinate :math:`x_i`: its mean, standard deviation and range (max - min);
- a periodic coordinate of period :math:`P` (integrated unwrapped inside the window): the mean resultant vector
  :math:`\frac{P}{2\pi}(\langle\cos\phi\rangle, \langle\sin\phi\rangle)`, :math:`\phi = 2\pi x_i / P`
  (its direction is the circular mean, its length :math:`\frac{P}{2\pi} R` the concentration: the full radius
  on a fixed point, about 0 on a rotation), and its drift, the mean of :math:`\dot x_i` (from the recorded
  differences: the mean angular velocity, non-zero exactly on rotations).

So :math:`\theta^*` and :math:`\theta^* + 2\pi k` have the same features, and a rotation (unbounded unwrapped
angle) has constant features like any other limit cycle. Features are in state units (per unit time for the
drift), so one distance (``eps``, ``feature_tol``) serves all of them.

    >>> import math, torch
    >>> from dynlearn_builtins.systems.pendulum import DrivenPendulum
    >>> c = DrivenPendulum().circle                                  # theta on [-pi, pi)
    >>> names(("theta", "omega"), c)
    ['theta_cos', 'theta_sin', 'theta_drift', 'omega_mean', 'omega_std', 'omega_range']
    >>> t = torch.linspace(0, 10, 101, dtype=torch.float64)
    >>> rot = torch.stack([5 * t, 5 + 0 * t], -1)[:, None]            # theta = 5 t, omega = 5: a rotation
    >>> [round(v, 3) + 0.0 for v in features(t, rot, c)[0].tolist()]
    [0.0, 0.0, 5.0, 5.0, 0.0, 0.0]
    >>> rest = torch.tensor([0.5, 0.0], dtype=torch.float64).expand(101, 1, 2)
    >>> shifted = rest + torch.tensor([4 * math.pi, 0.0], dtype=torch.float64)   # theta* + 4 pi: the same point
    >>> bool((features(t, rest, c) - features(t, shifted, c)).abs().max() < 1e-12)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dynlearn.periodic import Circle

__all__ = ["names", "features", "settling_columns", "Settling"]

Tensor = torch.Tensor


def names(state_names: Sequence[str], circle: Circle) -> list[str]:
    """Feature names, in the order of :func:`features`."""
    out: list[str] = []
    for name, periodic in zip(state_names, circle.mask):
        out += [f"{name}_cos", f"{name}_sin", f"{name}_drift"] if periodic else \
            [f"{name}_mean", f"{name}_std", f"{name}_range"]
    return out


def features(t: Tensor, xs: Tensor, circle: Circle) -> Tensor:
    """Features ``(n, 3 d)`` of the windows ``xs`` ``(K, n, d)`` recorded at times ``t`` ``(K,)``.

    Means (of the coordinates, their squared deviations, the resultant vector, the drift) are Hann-weighted
    (``w_k ~ sin^2(pi k / (K - 1))``): a window holding a non-integer number of periods of a cycle biases a
    plain mean by ``O(P / W)``, a Hann mean by ``O((P / W)^3)``, so the features of a trajectory on a cycle
    are constant from window to window.
    """
    cols = []

    def mean(v):
        K = v.shape[0]
        w = torch.sin(torch.pi * torch.arange(K, dtype=v.dtype, device=v.device) / (K - 1)) ** 2
        return ((w / w.sum())[:, None] * v).sum(0)

    for i, periodic in enumerate(circle.mask):
        x = xs[..., i]
        if periodic:
            r = float(circle.period[i]) / (2 * math.pi)
            phi = x / r
            rate = torch.diff(x, dim=0) / torch.diff(t.to(x.dtype))[:, None]
            cols += [r * mean(torch.cos(phi)), r * mean(torch.sin(phi)), mean(rate)]
        else:
            m = mean(x)
            cols += [m, mean((x - m) ** 2).sqrt(), x.amax(0) - x.amin(0)]
    return torch.stack(cols, -1)


def settling_columns(circle: Circle) -> list[int]:
    """The features that decide settling: all but the ranges (a sampled cycle's max - min jitters by the
    sampling step; the ranges identify attractors, they do not time them)."""
    return [3 * i + j for i, periodic in enumerate(circle.mask) for j in range(3) if periodic or j < 2]


class Settling:
    """The ``observe`` callback of :func:`dynlearn.simulate.simulate_until`: an element is *settled* when its
    features (:func:`settling_columns`) changed by at most ``tol`` (max over features) from one window to the
    next ``patience`` times in a row. Keeps every element's latest features in ``value`` ``(N, F)``."""

    def __init__(self, n: int, circle: Circle, tol: float, patience: int, dtype: torch.dtype) -> None:
        self.circle = circle
        self.tol = tol
        self.patience = patience
        self.value = torch.full((n, 3 * len(circle.mask)), float("nan"), dtype=dtype)
        self.calm = torch.zeros(n, dtype=torch.int64)
        self.columns = settling_columns(circle)

    def __call__(self, t: Tensor, xs: Tensor, index: Tensor) -> Tensor:
        f = features(t, xs, self.circle).to(self.value.device)
        index = index.to(self.value.device)
        change = (f - self.value[index])[:, self.columns].abs().amax(-1)
        calm = torch.where(change <= self.tol, self.calm[index] + 1, torch.zeros_like(self.calm[index]))
        self.value[index] = f
        self.calm[index] = calm
        return calm >= self.patience

r"""Trajectory features of the basin-stability study (private): what identifies an attractor, modulo periods.

Over a window of recorded states :math:`x(t_0), \dots, x(t_K)` each coordinate gives

- a non-periodic coordinate :math:`x_i`: its mean, standard deviation and range (max - min);
- a periodic coordinate of period :math:`P` (integrated unwrapped inside the window): the mean resultant vector
  :math:`\frac{P}{2\pi}(\langle\cos\phi\rangle, \langle\sin\phi\rangle)`, :math:`\phi = 2\pi (x_i - low) / P`
  (its direction is the circular mean, its length :math:`\frac{P}{2\pi} R` the concentration: the full radius
  on a fixed point, about 0 on a rotation), and its drift :math:`(x_i(t_K) - x_i(t_0)) / (t_K - t_0)` (the mean
  angular velocity: non-zero exactly on rotations).

So :math:`\theta^*` and :math:`\theta^* + 2\pi k` have the same features, and a rotation (unbounded unwrapped
angle) has constant features like any other limit cycle. Features are in state units (per unit time for the
drift), so one distance (``eps``, ``feature_tol``) serves all of them.

    >>> import math, torch
    >>> from dynlearn.periodic import Circle
    >>> c = Circle(low=torch.tensor([-math.pi, float("nan")]).numpy(), period=torch.tensor([2 * math.pi, float("nan")]).numpy())
    >>> names(("theta", "omega"), c)
    ['theta_cos', 'theta_sin', 'theta_drift', 'omega_mean', 'omega_std', 'omega_range']
    >>> t = torch.linspace(0, 10, 101, dtype=torch.float64)
    >>> rot = torch.stack([5 * t, 5 + 0 * t], -1)[:, None]            # theta = 5 t, omega = 5: a rotation
    >>> [round(v, 3) for v in features(t, rot, c)[0].tolist()]
    [0.0, -0.003, 5.0, 5.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from dynlearn.periodic import Circle

__all__ = ["names", "features", "Settling"]

Tensor = torch.Tensor


def names(state_names: Sequence[str], circle: Circle) -> list[str]:
    """Feature names, in the order of :func:`features`."""
    out: list[str] = []
    for name, periodic in zip(state_names, circle.mask):
        out += [f"{name}_cos", f"{name}_sin", f"{name}_drift"] if periodic else \
            [f"{name}_mean", f"{name}_std", f"{name}_range"]
    return out


def features(t: Tensor, xs: Tensor, circle: Circle) -> Tensor:
    """Features ``(n, 3 d)`` of the windows ``xs`` ``(K, n, d)`` recorded at times ``t`` ``(K,)``."""
    cols = []
    span = float(t[-1] - t[0])
    for i, periodic in enumerate(circle.mask):
        x = xs[..., i]
        if periodic:
            r = float(circle.period[i]) / (2 * math.pi)
            phi = (x - float(circle.low[i])) / r
            cols += [r * torch.cos(phi).mean(0), r * torch.sin(phi).mean(0), (x[-1] - x[0]) / span]
        else:
            cols += [x.mean(0), x.std(0, correction=0), x.amax(0) - x.amin(0)]
    return torch.stack(cols, -1)


class Settling:
    """The ``observe`` callback of :func:`dynlearn.simulate.simulate_until`: an element is *settled* when its
    features changed by at most ``tol`` (max over features) from one window to the next ``patience`` times in a
    row. Keeps every element's latest features in ``value`` ``(N, F)``."""

    def __init__(self, n: int, circle: Circle, tol: float, patience: int, dtype: torch.dtype) -> None:
        self.circle = circle
        self.tol = tol
        self.patience = patience
        self.value = torch.full((n, 3 * len(circle.mask)), float("nan"), dtype=dtype)
        self.calm = torch.zeros(n, dtype=torch.int64)

    def __call__(self, t: Tensor, xs: Tensor, index: Tensor) -> Tensor:
        f = features(t, xs, self.circle).to(self.value.device)
        index = index.to(self.value.device)
        change = (f - self.value[index]).abs().amax(-1)
        calm = torch.where(change <= self.tol, self.calm[index] + 1, torch.zeros_like(self.calm[index]))
        self.value[index] = f
        self.calm[index] = calm
        return calm >= self.patience


def to_numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(float)

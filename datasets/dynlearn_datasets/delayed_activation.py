"""Delayed-activation task (ghost-mechanism paper): output 0 on ``[0, T]``, then 1 on ``(T, 2T]``.

    >>> task = DelayedActivation(T=1.0, dt=0.25)
    >>> task.times().tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    >>> task.target().tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

import math

import torch

from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.task import Task

__all__ = ["DelayedActivation"]


class DelayedActivation(Task):
    """Stay silent for a delay ``T``, then activate: target ``o(t) = 0`` for ``t <= T``, ``1`` for ``T < t <= 2T``.

    The loss of a model with output ``o_hat(t)`` is ``L = int_0^{2T} (o_hat(t) - o(t))^2 dt`` (trapezoid rule
    on the grid ``t_k = k dt``, ``k = 0..2T/dt``); ``accuracy`` is the fraction of grid times where the
    thresholded output ``o_hat > 1/2`` equals the target.
    """

    name = "delayed_activation"
    description = "delayed activation: output 0 for a delay T, then 1 until 2T"
    parameters = {
        "T": Param(100.0, description="delay period", units="time", low=0, low_inclusive=False),
        "dt": Param(0.1, description="time step of the loss grid", units="time", low=0, low_inclusive=False),
    }

    def __init__(self, **values) -> None:
        super().__init__(**values)
        n = 2 * self.T / self.dt
        if abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise ParameterError(f"task delayed_activation: 2T / dt must be an integer, got {n:g}")
        self.n_steps = int(round(n))

    def times(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Grid ``t_k = k dt`` for ``k = 0 .. 2T/dt`` (``n_steps + 1`` points)."""
        return torch.arange(self.n_steps + 1, dtype=dtype) * self.dt

    def target(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Target output on :meth:`times`."""
        return (self.times(dtype) > self.T * (1 + 1e-12)).to(dtype)

    def quadrature(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Trapezoid weights on :meth:`times` (they sum to ``2T``)."""
        w = torch.full((self.n_steps + 1,), self.dt, dtype=dtype)
        w[0] = w[-1] = self.dt / 2
        return w

    def loss(self, output: torch.Tensor) -> torch.Tensor:
        """``int (o_hat - o)^2 dt`` for outputs ``(..., n_steps + 1)`` on the grid."""
        err = (output - self.target(output.dtype).to(output.device)) ** 2
        return (err * self.quadrature(output.dtype).to(output.device)).sum(-1)

    def accuracy(self, output: torch.Tensor) -> torch.Tensor:
        """Fraction of grid times where ``o_hat > 1/2`` matches the target."""
        hit = (output > 0.5) == (self.target(output.dtype).to(output.device) > 0.5)
        return hit.to(output.dtype).mean(-1)

    @staticmethod
    def optimal_r(T: float) -> float:
        """``r* = pi^2 / (4 T^2)``: the saddle-node parameter whose escape time is exactly ``T``."""
        return math.pi**2 / (4 * T**2)

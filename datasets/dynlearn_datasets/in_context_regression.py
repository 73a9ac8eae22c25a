"""One-prompt in-context linear regression (the task of the two-factor linear transformer, DESIGN.md §3.3).

A prompt holds ``n`` context pairs ``(x_i, y_i)`` and a query ``(x_q, y_q)`` with ``y = w^T x + noise``:

- ``x_i, x_q ~ N(0, I_dim)``, ``w ~ N(0, I_dim / dim)``, noise ``~ N(0, noise^2)``;
- the sign of the whole prompt (all ``y``) is chosen so that ``y_q > 0`` (the two-factor reduction divides by
  ``y_q``; flipping every ``y`` is a symmetry of the task);
- the context statistic a linear-attention layer reads is ``h = (1/n) sum_i y_i x_i``.

The prompt is a deterministic function of the task parameters (``prompt_seed`` included), so a run can be
resumed bit for bit.

Examples
--------
>>> task = InContextRegression(dim=3, n_context=8, prompt_seed=1)
>>> tuple(task.x.shape), tuple(task.y.shape), tuple(task.h.shape)
((8, 3), (8,), (3,))
>>> bool(task.y_q > 0)
True
>>> import torch
>>> torch.allclose(task.h, (task.y[:, None] * task.x).mean(0))
True
>>> abs(task.mu_for_lr(task.lr_for_mu(1.5)) - 1.5) < 1e-12
True
"""

from __future__ import annotations

import math

import torch

from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.task import Task

__all__ = ["InContextRegression"]


class InContextRegression(Task):
    """One prompt of in-context linear regression: context ``(x_i, y_i)``, query ``(x_q, y_q)``, ``y_q > 0``.

    Parameters
    ----------
    dim
        Input dimension ``d``.
    n_context
        Number of context pairs ``n``.
    prompt_seed
        Seed of the prompt (inputs, teacher ``w``, noise).
    noise
        Standard deviation of the label noise.

    Attributes
    ----------
    x, y
        Context inputs ``(n, d)`` and labels ``(n,)`` (float64).
    x_q, y_q
        Query input ``(d,)`` and label (0-d tensor, ``> 0``).
    w
        Teacher weights ``(d,)`` (sign-adjusted with the prompt).
    h
        Context statistic ``(1/n) sum_i y_i x_i``, ``(d,)``.
    """

    name = "in_context_regression"
    description = "one-prompt in-context linear regression (query label y_q > 0)"
    parameters = {
        "dim": Param(4, description="input dimension d", low=1),
        "n_context": Param(16, description="number of context pairs n", low=1),
        "prompt_seed": Param(0, description="seed of the prompt", low=0),
        "noise": Param(0.0, description="standard deviation of the label noise", low=0),
    }

    def __init__(self, **values) -> None:
        super().__init__(**values)
        for key in ("dim", "n_context", "prompt_seed"):
            v = self.values[key]
            if float(v) != int(v):
                raise ParameterError(f"task in_context_regression: {key} must be an integer, got {v!r}")
            setattr(self, key, int(v))
            self.values[key] = int(v)
        self.noise = float(self.noise)
        g = torch.Generator().manual_seed(self.prompt_seed)
        d, n = self.dim, self.n_context
        f64 = torch.float64
        x = torch.randn(n + 1, d, generator=g, dtype=f64)
        w = torch.randn(d, generator=g, dtype=f64) / math.sqrt(d)
        y = x @ w + self.noise * torch.randn(n + 1, generator=g, dtype=f64)
        if y[-1] == 0:
            raise ParameterError(
                f"task in_context_regression: prompt_seed={self.prompt_seed} gives y_q = 0 (pick another seed)"
            )
        sign = torch.sign(y[-1])
        self.w = sign * w
        self.x, self.y = x[:n], sign * y[:n]
        self.x_q, self.y_q = x[n], sign * y[n]
        self.h = (self.y[:, None] * self.x).mean(0)
        if float(self.h.norm()) == 0.0:
            raise ParameterError(f"task in_context_regression: prompt_seed={self.prompt_seed} gives h = 0")

    @property
    def scale(self) -> float:
        """``|x_q| |h|``: the product of norms the two-factor reduction normalises by."""
        return float(self.x_q.norm() * self.h.norm())

    def mu_for_lr(self, lr):
        """Effective two-factor step ``mu = lr * y_q * |x_q| * |h|`` for learning rate(s) ``lr``."""
        return lr * float(self.y_q) * self.scale

    def lr_for_mu(self, mu):
        """The learning rate whose effective two-factor step is ``mu``."""
        return mu / (float(self.y_q) * self.scale)

"""One-prompt linear attention trained by gradient descent: an exact instance of the two-factor map (§3.3).

The model predicts ``y_hat = v * x_q^T Gamma h`` from a prompt of the ``in_context_regression`` task
(``h = (1/n) sum_i y_i x_i``), with a scalar ``v`` and a matrix ``Gamma``, trained by plain GD with step
``eta`` on ``L = (y_hat - y_q)^2 / 2``. With ``u = x_q^T Gamma h`` and ``r = v u - y_q``::

    v'     = v - eta r u
    Gamma' = Gamma - eta r v x_q h^T        =>   u' = u - eta r v |x_q|^2 |h|^2

so in the reduced coordinates ``a = v k``, ``b = u / (|x_q| |h|) * k``, ``k = sqrt(|x_q| |h| / y_q)`` (``y_q > 0``)
the training trajectory is *exactly* the two-factor map ``F_mu(a, b) = (a - mu (ab-1) b, b - mu (ab-1) a)``
with ``mu = eta y_q |x_q| |h|``, and ``L = y_q^2 (ab - 1)^2 / 2``. Only the component of ``Gamma`` along
``x_q h^T`` ever changes.

For the analyzers, the system's state dynamics are those reduced dynamics: :meth:`LinearAttention.rhs` is the
two-factor map on ``(a, b)`` at ``mu = eta y_q |x_q| |h|`` (``eta`` an option, default the ``lr`` default), and
:meth:`LinearAttention.dynamics_dataset` turns a training run into the two-factor map with ``mu`` per network,
so every analyzer runs on a training run unchanged.

Examples
--------
>>> import torch
>>> la = LinearAttention(task={"dim": 3, "n_context": 8, "prompt_seed": 2})
>>> hp = {"lr": torch.tensor([0.05], dtype=torch.float64)}
>>> theta = la.init(torch.tensor([0]), hp)
>>> loss, grads = la.loss_and_grad(theta, hp)
>>> new = {k: theta[k] - hp["lr"].reshape(-1, *[1] * (v.dim() - 1)) * grads[k] for k, v in theta.items()}
>>> ab = la.reduced_state(theta)
>>> mu = la.mu_for_lr(hp["lr"])
>>> torch.allclose(la.reduced_state(new), two_factor_map(ab, mu), rtol=1e-13, atol=1e-13)
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.system import Manifold, MapSystem, TrainableSystem
from dynlearn_datasets.in_context_regression import InContextRegression

from .two_factor import TwoFactorMap, two_factor_jacobian, two_factor_manifolds, two_factor_map

__all__ = ["LinearAttention", "two_factor_map"]

Tensor = torch.Tensor


class LinearAttention(TrainableSystem, MapSystem):
    """``y_hat = v x_q^T Gamma h`` on one in-context-regression prompt, GD on ``(v, Gamma)``.

    Parameters
    ----------
    init_scale
        Initialisation ``v, Gamma_ij ~ N(0, init_scale^2)`` i.i.d., one draw per seed (so the reduced
        coordinates start at ``a, b ~ N(0, (init_scale k)^2)``).
    eta
        Learning rate at which the system is studied on its own (:meth:`rhs`); default: the ``lr`` default.
    task
        ``in_context_regression`` options (``dim``, ``n_context``, ``prompt_seed``, ``noise``).
    v, Gamma
        Parameter values used when the system is analysed on its own (they do not enter :meth:`rhs`: the
        reduced dynamics do not depend on where training is).

    Notes
    -----
    Recorded per epoch (``metric_attrs``): the reduced coordinates ``a`` and ``b``. The run's
    :meth:`dynamics_dataset` is the two-factor map with ``mu = lr y_q |x_q| |h|`` for every network, plus the
    reduced trajectory ``a``, ``b`` over the stored epochs.
    """

    name = "linear_attention"
    description = "one-prompt linear attention y = v x_q^T Gamma h trained by GD; exactly the two-factor map"
    state_names = ("a", "b")
    parameters = {
        "v": Param(0.0, description="value weight v"),
        "Gamma": Param(0.0, shape=("row", "col"), description="attention matrix Gamma"),
    }
    hyper = {"lr": Param(1.0, description="learning rate eta", low=0, low_inclusive=False)}
    domain_bounds = ([-3.0, -3.0], [3.0, 3.0])
    task_class = InContextRegression
    metric_attrs = {
        "a": {"long_name": "reduced coordinate a = v k, k = sqrt(|x_q||h|/y_q)", "units": "1"},
        "b": {"long_name": "reduced coordinate b = x_q^T Gamma h / (|x_q||h|) k", "units": "1"},
    }

    def __init__(self, init_scale: float = 0.5, eta: float | None = None, task: Any = None, **values: Any) -> None:
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale >= 0):
            raise ParameterError(f"linear_attention: init_scale must be a finite number >= 0, got {init_scale!r}")
        if eta is not None and not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise ParameterError(f"linear_attention: eta must be a finite number > 0, got {eta!r}")
        self.init_scale = float(init_scale)
        self.eta = None if eta is None else float(eta)
        # the parameters' dims (row, col) need the task before the values are checked
        self.task = self._resolve_task(task)
        if self.task is None or self.task.name != "in_context_regression":
            raise ParameterError(
                f"linear_attention trains on in_context_regression, not {getattr(self.task, 'name', None)!r}"
            )
        super().__init__(task=self.task, **values)

    # -- declarations -----------------------------------------------------------------------------------------
    def dim_sizes(self) -> dict[str, int]:
        return {"row": self.task.dim, "col": self.task.dim}

    @property
    def mu(self) -> float:
        """Two-factor step ``mu = eta y_q |x_q| |h|`` of :meth:`rhs`."""
        eta = self.eta if self.eta is not None else float(self.hyper["lr"].default)
        return float(self.mu_for_lr(eta))

    def mu_for_lr(self, lr):
        """``mu = lr y_q |x_q| |h|`` (works on floats, tensors and DataArrays)."""
        return self.task.mu_for_lr(lr)

    def lr_for_mu(self, mu):
        """The learning rate giving the two-factor step ``mu``."""
        return self.task.lr_for_mu(mu)

    @property
    def k(self) -> float:
        """Scale of the reduced coordinates ``k = sqrt(|x_q| |h| / y_q)``."""
        return math.sqrt(self.task.scale / float(self.task.y_q))

    # -- reduced dynamics (the System side) ---------------------------------------------------------------------
    def rhs(self, x: Tensor, p) -> Tensor:
        return two_factor_map(x, self.mu)

    def jacobian(self, x: Tensor, p) -> Tensor:
        return two_factor_jacobian(x, torch.as_tensor(self.mu, dtype=x.dtype)).expand(*x.shape[:-1], 2, 2)

    def manifolds(self) -> dict[str, Manifold]:
        mu = self.mu
        lo, hi = self.domain()
        return two_factor_manifolds(float(lo[0]), float(hi[0]), mu_of=lambda p: mu)

    def reduced_state(self, theta) -> Tensor:
        """Reduced coordinates ``(a, b)`` of parameters ``theta`` (``v (...)``, ``Gamma (..., d, d)``): ``(..., 2)``."""
        v, gamma = theta["v"], theta["Gamma"]
        task = self.task
        u = torch.einsum("...ij,i,j->...", gamma, task.x_q.to(gamma), task.h.to(gamma))
        k = self.k
        return torch.stack([v * k, u / task.scale * k], dim=-1)

    # -- training -----------------------------------------------------------------------------------------------
    def init(self, seed: Tensor, hp) -> dict[str, Tensor]:
        d = self.task.dim
        n = seed.shape[0]
        v = torch.empty(n, dtype=torch.float64)
        gamma = torch.empty(n, d, d, dtype=torch.float64)
        for s in torch.unique(seed).tolist():  # one draw per distinct seed, not per network
            g = torch.Generator().manual_seed(int(s))
            draw = torch.randn(1 + d * d, generator=g, dtype=torch.float64) * self.init_scale
            mask = seed == s
            v[mask] = draw[0]
            gamma[mask] = draw[1:].reshape(d, d)
        return {"v": v, "Gamma": gamma}

    def _forward(self, theta):
        v, gamma = theta["v"], theta["Gamma"]
        xq, h = self.task.x_q.to(gamma), self.task.h.to(gamma)
        u = torch.einsum("bij,i,j->b", gamma, xq, h)
        return v, u, xq, h

    def loss(self, theta, hp) -> Tensor:
        v, u, _, _ = self._forward(theta)
        return 0.5 * (v * u - self.task.y_q.to(u)) ** 2

    def loss_and_grad(self, theta, hp):
        """Closed form: ``dL/dv = r u``, ``dL/dGamma = r v x_q h^T`` with ``r = v u - y_q``."""
        v, u, xq, h = self._forward(theta)
        r = v * u - self.task.y_q.to(u)
        outer = xq[:, None] * h[None, :]
        return 0.5 * r**2, {"v": r * u, "Gamma": (r * v)[:, None, None] * outer}

    def metrics(self, theta, hp, loss) -> dict[str, Tensor]:
        ab = self.reduced_state(theta)
        return {"a": ab[..., 0], "b": ab[..., 1]}

    def dynamics_dataset(self, params: Any) -> tuple[TwoFactorMap, xr.Dataset]:
        """The two-factor map with ``mu = lr y_q |x_q| |h|`` per network (dims of the run but ``epoch``).

        The returned Dataset also holds the reduced trajectory ``a``, ``b`` (all stored epochs).
        """
        if not isinstance(params, xr.Dataset) or "v" not in params or "Gamma" not in params:
            raise ParameterError("linear_attention.dynamics_dataset needs the run's parameter Dataset (v, Gamma)")
        if "lr" not in params.coords:
            raise ParameterError(
                "linear_attention: the run's learning rate is not a coordinate of its parameters "
                "(a scheduled lr?); mu = lr y_q |x_q||h| needs it"
            )
        v = params["v"]
        template = v.isel(epoch=0, drop=True) if "epoch" in v.dims else v
        lr = params.coords["lr"]
        mu = xr.zeros_like(template, dtype=float) + self.mu_for_lr(lr).astype(float)
        mu = mu.drop_vars([c for c in mu.coords if c not in mu.dims and c != "lr"], errors="ignore")
        mu.attrs = {"long_name": "effective two-factor step mu = lr y_q |x_q| |h|", "units": "1"}
        xq = xr.DataArray(self.task.x_q.numpy(), dims=("row",))
        h = xr.DataArray(self.task.h.numpy(), dims=("col",))
        u = (params["Gamma"] * xq * h).sum(("row", "col"))
        ds = xr.Dataset(
            {
                "mu": mu,
                "a": (v * self.k).assign_attrs(self.metric_attrs["a"]),
                "b": (u / self.task.scale * self.k).assign_attrs(self.metric_attrs["b"]),
            }
        )
        return TwoFactorMap(mu=float(np.asarray(mu).ravel()[0])), ds

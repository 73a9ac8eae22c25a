"""Saddle-node toy model of abrupt learning (Dinc et al., "A ghost mechanism").

State ``x``, learnable parameter ``r``: ``dx/dt = x^2 + r``, ``x(0) = 0``, output ``o(x) = sigmoid(c (x - x*))``,
trained on the delayed-activation task (target 0 on ``[0, T]``, 1 on ``(T, 2T]``).

Exact facts (DESIGN.md §3.1), all available here as functions:

- ``r > 0``: ``x(t) = sqrt(r) tan(sqrt(r) t)``, escape time ``t* = pi / (2 sqrt r)`` (:func:`escape_time`);
  no fixed point, but ``x = 0`` is a ghost with speed ``r`` and passage time ``pi / sqrt r``.
- analytic limit ``c, x* -> inf`` (:func:`analytic_loss`): ``L(r) = |T - pi/(2 sqrt r)|`` for ``r >= r*/4``,
  ``T`` otherwise; optimum ``r* = pi^2/(4 T^2)``; point of no return ``r*/4``.
- gradient (:func:`analytic_grad`): ``-pi/(4 r^1.5)`` on ``(r*/4, r*)``, ``+pi/(4 r^1.5)`` above ``r*``,
  0 below ``r*/4``; at ``r*`` it jumps from ``-2T^3/pi^2`` to ``+2T^3/pi^2``.
- critical learning rate (:func:`critical_lr`) ``alpha* = 3 pi^4 / 32 T^-5``.

Examples
--------
>>> import math
>>> T = 100.0
>>> r = r_star(T)
>>> float(analytic_loss(torch.tensor(r), T)), math.isclose(escape_time(r), T)
(0.0, True)
>>> round(critical_lr(100.0) * 1e10, 4)
9.1321
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.system import FlowSystem, TrainableSystem
from dynlearn_datasets.delayed_activation import DelayedActivation

__all__ = [
    "SaddleNode",
    "r_star",
    "critical_lr",
    "escape_time",
    "analytic_loss",
    "analytic_grad",
    "exact_trajectory",
]

Tensor = torch.Tensor


def r_star(T: float) -> float:
    """Optimal parameter ``r* = pi^2 / (4 T^2)`` (escape exactly at ``t = T``)."""
    return math.pi**2 / (4 * T**2)


def critical_lr(T: float) -> float:
    """Critical learning rate ``alpha* = 3 pi^4 / 32 * T^-5`` of plain gradient descent."""
    return 3 * math.pi**4 / 32 * T**-5


def escape_time(r: Any) -> Any:
    """``t* = pi / (2 sqrt r)`` for ``r > 0`` (``inf`` for ``r <= 0``: x settles on a fixed point)."""
    if isinstance(r, Tensor):
        return torch.where(r > 0, math.pi / (2 * r.clamp(min=1e-300).sqrt()), torch.full_like(r, math.inf))
    return math.pi / (2 * math.sqrt(r)) if r > 0 else math.inf


def exact_trajectory(t: Tensor, r: Tensor) -> Tensor:
    """Closed-form ``x(t)`` from ``x(0) = 0``: ``sqrt(r) tan(sqrt(r) t)`` (r>0), ``0`` (r=0),
    ``-sqrt(-r) tanh(sqrt(-r) t)`` (r<0); valid for ``t < t*``."""
    s_pos = r.clamp(min=0).sqrt()
    s_neg = (-r).clamp(min=0).sqrt()
    pos = s_pos * torch.tan(s_pos * t)
    neg = -s_neg * torch.tanh(s_neg * t)
    return torch.where(r > 0, pos, torch.where(r < 0, neg, torch.zeros_like(t * r)))


def analytic_loss(r: Tensor, T: float) -> Tensor:
    """``L(r) = |T - pi/(2 sqrt r)|`` for ``r >= r*/4``, ``T`` otherwise (limit ``c, x* -> inf``)."""
    rs = r_star(T)
    tstar = escape_time(r)
    return torch.where(r >= rs / 4, (T - tstar).abs(), torch.full_like(r, T))


def analytic_grad(r: Tensor, T: float) -> Tensor:
    """``dL/dr``: 0 below ``r*/4``, ``-pi/(4 r^1.5)`` on ``(r*/4, r*)``, ``+pi/(4 r^1.5)`` for ``r >= r*``
    (the right derivative at the kink, as used by gradient descent from above)."""
    rs = r_star(T)
    mag = math.pi / (4 * r.clamp(min=1e-300) ** 1.5)
    return torch.where(r >= rs, mag, torch.where(r > rs / 4, -mag, torch.zeros_like(r)))


class SaddleNode(TrainableSystem, FlowSystem):
    """Saddle-node normal form ``dx/dt = x^2 + r`` trained on the delayed-activation task.

    Parameters
    ----------
    form : {"analytic", "numeric"}
        ``"analytic"``: the closed-form loss and gradient of the limit ``c, x* -> inf``. ``"numeric"``:
        ``x(t)`` integrated with torchdiffeq (``method``) on the task's time grid, output
        ``sigmoid(c (x - x*))``, loss by the trapezoid rule, gradient by autograd through the solver
        (``adjoint=True``: torchdiffeq's adjoint method).
    method
        torchdiffeq fixed-grid method for the numeric form.
    r0_scale, r0_spread
        Initialisation ``r0 ~ N(r0_scale * r*, (r0_spread * r*)^2)``, one draw per seed.
    task
        Delayed-activation options (``T``, ``dt``).
    r
        Parameter value used when the system is analysed on its own (not trained).

    Hyper-parameters: ``lr`` (learning rate), ``c`` (output confidence) and ``x_star`` (output threshold); the
    last two only enter the numeric loss.

    Examples
    --------
    >>> sn = SaddleNode(task={"T": 100.0})
    >>> theta = {"r": torch.tensor([r_star(100.0) * 2], dtype=torch.float64)}
    >>> hp = {"lr": torch.tensor([1e-10]), "c": torch.tensor([1.0]), "x_star": torch.tensor([10.0])}
    >>> loss, grads = sn.loss_and_grad(theta, hp)
    >>> round(float(loss[0]), 4), round(100 - 100 / 2**0.5, 4)
    (29.2893, 29.2893)
    """

    name = "saddle_node"
    description = "saddle-node toy model dx/dt = x^2 + r trained on delayed activation (ghost mechanism)"
    state_names = ("x",)
    parameters = {"r": Param(0.0, description="saddle-node parameter r", units="1/time^2")}
    hyper = {
        "lr": Param(1e-10, description="learning rate", low=0, low_inclusive=False),
        "c": Param(1.0, description="output confidence c (numeric loss)", low=0, low_inclusive=False),
        "x_star": Param(10.0, description="output threshold x* (numeric loss)", low=0, low_inclusive=False),
    }
    domain_bounds = ([-3.0], [3.0])
    task_class = DelayedActivation
    time_units = "time"
    metric_attrs = {
        "escape_time": {"long_name": "escape time pi/(2 sqrt r) of x(t) from x(0)=0", "units": "time"},
    }

    def __init__(
        self,
        form: str = "analytic",
        method: str = "rk4",
        adjoint: bool = False,
        r0_scale: float = 10.0,
        r0_spread: float = 0.1,
        task: Any = None,
        **values: Any,
    ) -> None:
        if form not in ("analytic", "numeric"):
            raise ParameterError(f"saddle_node: form must be 'analytic' or 'numeric', got {form!r}")
        if not (isinstance(r0_scale, (int, float)) and r0_scale > 0):
            raise ParameterError(f"saddle_node: r0_scale must be > 0, got {r0_scale!r}")
        if not (isinstance(r0_spread, (int, float)) and r0_spread >= 0):
            raise ParameterError(f"saddle_node: r0_spread must be >= 0, got {r0_spread!r}")
        self.form = form
        self.method = method
        self.adjoint = bool(adjoint)
        self.r0_scale = float(r0_scale)
        self.r0_spread = float(r0_spread)
        super().__init__(task=task, **values)
        if self.task is not None and self.task.name != "delayed_activation":
            raise ParameterError(f"saddle_node trains on delayed_activation, not {self.task.name!r}")

    # -- dynamics ---------------------------------------------------------------------------------------------
    def rhs(self, x: Tensor, p) -> Tensor:
        return x**2 + p["r"][..., None]

    def jacobian(self, x: Tensor, p) -> Tensor:
        return (2 * x).unsqueeze(-1)

    # -- training ---------------------------------------------------------------------------------------------
    @property
    def T(self) -> float:
        return float(self.task.T)

    def init(self, seed: Tensor, hp) -> dict[str, Tensor]:
        rs = r_star(self.T)
        draws = torch.empty(seed.shape[0], dtype=torch.float64)
        for s in torch.unique(seed).tolist():
            g = torch.Generator().manual_seed(int(s))
            draws[seed == s] = torch.randn((), generator=g, dtype=torch.float64)
        return {"r": self.r0_scale * rs + self.r0_spread * rs * draws}

    def numeric_output(self, r: Tensor, c: Tensor, x_star: Tensor) -> Tensor:
        """``sigmoid(c (x(t) - x*))`` on the task grid, shape ``(B, n_steps + 1)``.

        Once ``x`` passes ``x* + 40/c`` (output saturated at 1) its growth is stopped, so the finite-time
        blow-up of ``x^2 + r`` never produces infinities.
        """
        from torchdiffeq import odeint, odeint_adjoint

        t = self.task.times(r.dtype)
        cap = (x_star + 40.0 / c).unsqueeze(-1)

        class _F(torch.nn.Module):
            def forward(self_inner, _t, x):
                return torch.where(x < cap, x**2 + r.unsqueeze(-1), torch.zeros_like(x))

        x0 = torch.zeros(r.shape[0], 1, dtype=r.dtype, device=r.device)
        solver = odeint_adjoint if self.adjoint else odeint
        kwargs = {"adjoint_params": (r,)} if self.adjoint else {}
        xs = solver(_F(), x0, t.to(r.device), method=self.method, **kwargs)[..., 0].T  # (B, n)
        return torch.sigmoid(c.unsqueeze(-1) * (xs - x_star.unsqueeze(-1)))

    def loss(self, theta, hp) -> Tensor:
        r = theta["r"]
        if self.form == "analytic":
            return analytic_loss(r, self.T)
        return self.task.loss(self.numeric_output(r, hp["c"], hp["x_star"]))

    def loss_and_grad(self, theta, hp):
        if self.form == "analytic":
            r = theta["r"]
            return analytic_loss(r, self.T), {"r": analytic_grad(r, self.T)}
        return super().loss_and_grad(theta, hp)

    def evaluate(self, theta, hp):
        if self.form != "analytic":
            return super().evaluate(theta, hp)
        # the training hot path: one shared escape time, same values as analytic_loss / analytic_grad
        r, T, rs = theta["r"], self.T, r_star(self.T)
        rc = r.clamp(min=1e-300)
        tstar = (math.pi / 2) / rc.sqrt()
        above = r >= rs / 4
        loss = torch.where(above, (T - tstar).abs(), T)
        mag = tstar / (2 * rc)  # pi / (4 r^1.5)
        grad = torch.where(r >= rs, mag, torch.where(above & (r > rs / 4), -mag, 0.0))
        escape = torch.where(r > 0, tstar, math.inf)
        return loss, {"r": grad}, {"escape_time": escape}

    def metrics(self, theta, hp, loss) -> dict[str, Tensor]:
        return {"escape_time": escape_time(theta["r"])}

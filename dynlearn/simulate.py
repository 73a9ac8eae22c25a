"""Batched trajectories of flows (torchdiffeq, fixed-step or adaptive) and maps, with a per-element outcome.

Maps go through the core stepper (:func:`dynlearn.stepper.iterate`); flows through torchdiffeq's ``odeint``
(``rk4`` on the output grid, or ``dopri5`` and the other adaptive solvers with ``rtol``/``atol``).

    >>> import torch, dynlearn
    >>> from dynlearn.simulate import simulate
    >>> sys = dynlearn.get_system("saddle_node")(r=1.0)
    >>> tr = simulate(sys, torch.zeros(1, 1, dtype=torch.float64), t=torch.linspace(0, 0.5, 6), step_size=0.01)
    >>> round(float(tr.final[0, 0]), 6), round(float(torch.tan(torch.tensor(0.5))), 6)   # x(t) = tan t
    (0.546302, 0.546302)
    >>> tr = simulate(sys, torch.zeros(1, 1, dtype=torch.float64), t=torch.linspace(0, 3.0, 31))
    >>> dynlearn.outcome.labels(tr.outcome).tolist()                                     # escapes at t = pi/2
    ['diverged']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from . import outcome as oc
from .errors import ParameterError
from .stepper import iterate
from .system import System

__all__ = ["Trajectory", "simulate"]

Tensor = torch.Tensor


@dataclass
class Trajectory:
    """Result of :func:`simulate`.

    Attributes
    ----------
    t
        Recorded times (flows) or iteration indices (maps), shape ``(T,)``.
    x
        Recorded states ``(T, ..., d)`` (``None`` when ``record=False``).
    final
        Last state ``(..., d)`` (the last finite state for elements that diverged).
    outcome
        ``(...)`` int8 codes of :mod:`dynlearn.outcome` (ok / diverged / nan).
    """

    t: Tensor
    x: Tensor | None
    final: Tensor
    outcome: Tensor


def simulate(
    system: System,
    x0: Tensor,
    p: Mapping[str, Tensor] | None = None,
    *,
    steps: int | None = None,
    t: Tensor | None = None,
    method: str = "rk4",
    step_size: float | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    max_norm: float = 1e6,
    record: bool = True,
    record_every: int = 1,
) -> Trajectory:
    """Integrate a flow over the times ``t`` or iterate a map ``steps`` times, batched over ``x0[..., :]``.

    Elements whose state leaves the ball ``|x|_inf <= max_norm`` (or becomes NaN) are frozen at their last
    state and labeled ``diverged`` (``nan``) instead of poisoning the batch.

    Parameters
    ----------
    system
        A flow or a map.
    x0
        Initial states ``(..., d)``.
    p
        Parameter tensors broadcasting against ``x0.shape[:-1]``; default: the system's own values.
    steps
        Number of iterations (maps).
    t
        Output times (flows). Fixed-grid methods (``rk4``, ``euler``, ``midpoint``) step on the grid (or with
        ``step_size``); adaptive ones (``dopri5``, ...) use ``rtol``/``atol``.
    record, record_every
        Keep the states (every ``record_every`` iterations for maps).
    """
    x0 = system.check_state(x0)
    if p is None:
        p = system.param_tensors(dtype=x0.dtype, device=x0.device)
    if system.kind == "map":
        if steps is None or steps < 0:
            raise ParameterError("simulating a map needs steps >= 0")
        return _iterate(system, x0, p, steps, max_norm, record, record_every)
    if t is None:
        raise ParameterError("simulating a flow needs the output times t")
    return _integrate(system, x0, p, torch.as_tensor(t, dtype=x0.dtype), method, step_size, rtol, atol, max_norm, record)


def _iterate(system, x0, p, steps, max_norm, record, every) -> Trajectory:
    out = iterate(system, x0, p, steps, max_norm=max_norm, record_every=every if record else 0)
    t = out.steps if record else torch.arange(0, steps + 1, every)
    return Trajectory(t, out.states, out.final, out.outcome)


def _integrate(system, x0, p, t, method, step_size, rtol, atol, max_norm, record) -> Trajectory:
    from torchdiffeq import odeint

    def f(_t, x):
        dx = system.rhs(x, p)
        inside = (x.abs() <= max_norm).all(-1, keepdim=True) & torch.isfinite(dx).all(-1, keepdim=True)
        return torch.where(inside, dx, torch.zeros_like(dx))

    options = {}
    if method in ("rk4", "euler", "midpoint", "explicit_adams", "implicit_adams") and step_size is not None:
        options["step_size"] = step_size
    kwargs = {"method": method}
    if options:
        kwargs["options"] = options
    if method not in ("rk4", "euler", "midpoint"):
        kwargs.update(rtol=rtol, atol=atol)
    xs = odeint(f, x0, t.to(x0.device), **kwargs)
    code = oc.classify(xs[-1], max_norm)
    return Trajectory(t, xs if record else None, xs[-1], code)

"""Batched trajectories of flows (torchdiffeq, fixed-step or adaptive) and maps, with a per-element outcome.

Maps go through the core stepper (:func:`dynlearn.stepper.iterate`); flows through torchdiffeq's ``odeint``
(``rk4`` on the output grid, or ``dopri5`` and the other adaptive solvers with ``rtol``/``atol``).

:func:`simulate_until` integrates a flow window by window with stopping events: after every window each element
may stop (``converged``: its state moved less than ``converge_tol`` over the window; ``settled``: the caller's
``observe`` says so, e.g. its trajectory features stopped changing; ``diverged``, ``left_region``, ``nan``) and
leaves the batch, so the cost is proportional to the time each element actually needs. torchdiffeq stays the
engine of every window (its batched ``odeint`` takes one step size for the whole batch; dropping the finished
elements is what gives each trajectory its own length).

    >>> import torch, dynlearn
    >>> from dynlearn.simulate import simulate
    >>> sys = dynlearn.get_system("saddle_node")(r=1.0)
    >>> tr = simulate(sys, torch.zeros(1, 1, dtype=torch.float64), t=torch.linspace(0, 0.5, 6), step_size=0.01)
    >>> round(float(tr.final[0, 0]), 6), round(float(torch.tan(torch.tensor(0.5))), 6)   # x(t) = tan t
    (0.546302, 0.546302)
    >>> tr = simulate(sys, torch.zeros(1, 1, dtype=torch.float64), t=torch.linspace(0, 3.0, 31))
    >>> dynlearn.outcome.labels(tr.outcome).tolist()                                     # escapes at t = pi/2
    ['diverged']
    >>> st = simulate_until(sys, torch.tensor([[0.0]], dtype=torch.float64), t_end=10.0, window=1.0)
    >>> EVENTS[int(st.event[0])], float(st.time[0])                                     # stopped in window 2
    ('diverged', 2.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from . import outcome as oc
from .errors import ParameterError, ShapeError
from .periodic import Circle, wrap
from .stepper import iterate
from .system import System

__all__ = ["Trajectory", "simulate", "Stopped", "simulate_until", "EVENTS", "event_attrs"]

#: stopping events of :func:`simulate_until` (``event`` codes are indices into this tuple)
EVENTS = ("t_end", "converged", "settled", "diverged", "left_region", "nan")
T_END, CONVERGED, SETTLED, DIVERGED_EVENT, LEFT_REGION, NAN_EVENT = range(len(EVENTS))

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


def _integrate(system, x0, p, t, method, step_size, rtol, atol, max_norm, record, wrapper=None) -> Trajectory:
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
    xs = odeint(f if wrapper is None else wrapper(f), x0, t.to(x0.device), **kwargs)
    code = oc.classify(xs[-1], max_norm)
    return Trajectory(t, xs if record else None, xs[-1], code)


@dataclass
class Stopped:
    """Result of :func:`simulate_until` for ``N`` elements.

    Attributes
    ----------
    final
        ``(N, d)``: the state at the stop (periodic coordinates wrapped into their interval).
    time
        ``(N,)``: the time of the stop (the end of the window in which the event was seen).
    outcome
        ``(N,)`` int8 codes of :mod:`dynlearn.outcome`: ``ok`` (converged or settled), ``diverged`` (left the
        ball or the region), ``nan``, ``max_steps`` (reached ``t_end`` without an event).
    event
        ``(N,)`` int8: index into :data:`EVENTS`.
    windows
        Windows integrated (the batch shrinks from one to the next).
    evaluations
        Right-hand-side evaluations summed over the elements evaluated (the work done, in element-evaluations).
    """

    final: Tensor
    time: Tensor
    outcome: Tensor
    event: Tensor
    windows: int
    evaluations: int


def event_attrs(long_name: str = "stopping event") -> dict:
    """CF attrs decoding the :data:`EVENTS` codes."""
    return {"long_name": long_name, "flag_values": list(range(len(EVENTS))), "flag_meanings": " ".join(EVENTS),
            "units": "1"}


def simulate_until(
    system: System,
    x0: Tensor,
    p: Mapping[str, Tensor] | None = None,
    *,
    t_end: float,
    window: float,
    samples: int = 200,
    method: str = "dopri5",
    step_size: float | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    max_norm: float = 1e6,
    region: Tensor | None = None,
    converge_tol: float = 1e-6,
    observe: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
    on_window: Callable[[float, int], None] | None = None,
) -> Stopped:
    """Integrate the flow from ``x0`` ``(N, d)`` up to ``t_end`` in windows of length ``window``, stopping each
    element at its first event.

    Every window is one torchdiffeq ``odeint`` call (``method``, ``rtol``/``atol`` or ``step_size``) over the
    elements still running, recording ``samples + 1`` states. Periodic coordinates (``system.periodic``) are
    integrated unwrapped inside a window (so a rotation's drift shows) and wrapped between windows.

    Parameters
    ----------
    p
        Parameter tensors ``(N, ...)`` (one row per element); default the system's own values.
    region
        ``(d, 2)`` box ``[[lo, hi]]``: an element whose recorded state leaves it stops with ``left_region``
        (outcome ``diverged``); periodic coordinates are never out of the region.
    converge_tol
        An element whose every coordinate varied by at most this over a whole window stops as ``converged``.
    observe
        ``observe(t (K,), xs (K, n, d), index (n,)) -> (n,) bool``: called after each window with the states of
        the running elements (``index`` into ``x0``); True stops an element as ``settled``.
    on_window
        ``on_window(t, n_running)`` after each window (a progress meter).
    """
    x0 = system.check_state(x0)
    if x0.dim() != 2:
        raise ShapeError(f"simulate_until takes initial states (N, d), got shape {tuple(x0.shape)}")
    if system.kind != "flow":
        raise ParameterError("simulate_until integrates flows; iterate a map with dynlearn.stepper.iterate")
    if not (t_end > 0 and window > 0):
        raise ParameterError(f"simulate_until needs t_end > 0 and window > 0, got t_end={t_end}, window={window}")
    N, d = x0.shape
    if p is None:
        p = system.param_tensors(batch_shape=(N,), dtype=x0.dtype, device=x0.device)
    circle = Circle.of(system)
    periodic = torch.as_tensor(circle.mask, device=x0.device)
    final = wrap(x0.clone(), circle)
    time = torch.full((N,), float(t_end), dtype=x0.dtype, device=x0.device)
    outcome = torch.full((N,), oc.MAX_STEPS, dtype=torch.int8, device=x0.device)
    event = torch.full((N,), T_END, dtype=torch.int8, device=x0.device)
    idx = torch.arange(N, device=x0.device)
    x = final.clone()
    t0, windows, evaluations = 0.0, 0, 0
    nfe = [0]

    def count(f):
        def g(t, y):
            nfe[0] += 1
            return f(t, y)
        return g

    while len(idx) and t0 < t_end - 1e-12 * t_end:
        t1 = min(t_end, t0 + window)
        t = torch.linspace(t0, t1, samples + 1, dtype=x0.dtype, device=x0.device)
        nfe[0] = 0
        tr = _integrate(system, x, {k: v[idx] for k, v in p.items()}, t, method, step_size, rtol, atol, max_norm,
                        True, wrapper=count)
        evaluations += nfe[0] * len(idx)
        xs, code = tr.x, tr.outcome
        stop = torch.full((len(idx),), -1, dtype=torch.int8, device=x0.device)
        stop = torch.where(code == oc.NAN, torch.tensor(NAN_EVENT, dtype=torch.int8), stop)
        stop = torch.where(code == oc.DIVERGED, torch.tensor(DIVERGED_EVENT, dtype=torch.int8), stop)
        if region is not None:
            r = torch.as_tensor(region, dtype=x0.dtype, device=x0.device)
            out = ((xs < r[:, 0]) | (xs > r[:, 1])) & ~periodic
            left = out.any(-1).any(0) & (stop < 0)
            stop = torch.where(left, torch.tensor(LEFT_REGION, dtype=torch.int8), stop)
        spread = (xs.amax(0) - xs.amin(0)).amax(-1)
        stop = torch.where((stop < 0) & (spread <= converge_tol), torch.tensor(CONVERGED, dtype=torch.int8), stop)
        if observe is not None:
            settled = observe(t, xs, idx).to(x0.device)
            stop = torch.where((stop < 0) & settled, torch.tensor(SETTLED, dtype=torch.int8), stop)
        x = wrap(xs[-1], circle)
        done = stop >= 0
        di = idx[done]
        final[di] = x[done]
        time[di] = t1
        event[di] = stop[done]
        outcome[di] = torch.where(stop[done] <= SETTLED, torch.tensor(oc.OK, dtype=torch.int8),
                                  torch.where(stop[done] == NAN_EVENT, torch.tensor(oc.NAN, dtype=torch.int8),
                                              torch.tensor(oc.DIVERGED, dtype=torch.int8)))
        idx, x = idx[~done], x[~done]
        t0, windows = t1, windows + 1
        if on_window is not None:
            on_window(t0, len(idx))
    final[idx] = x
    return Stopped(final, time, outcome, event, windows, evaluations)

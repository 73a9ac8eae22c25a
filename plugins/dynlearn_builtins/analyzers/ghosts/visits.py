r"""Ghost visits along trajectories, vectorised over time and trajectories (private).

A trajectory *visits* ghost :math:`g` while it lies in the ball :math:`|x - x_g| \le \rho_g` (distances through
:mod:`dynlearn.periodic`, so an angle and the same angle plus :math:`2\pi` are one point); where balls overlap
the state belongs to the ghost with the smallest :math:`|x - x_g| / \rho_g`. A visit is a run of consecutive
recorded states with the same ghost label; its entry (exit) time is where the trajectory crosses the ball's
sphere between the two recorded states around the crossing (flows: on the cubic Hermite interpolant of the states
and their velocities, bisected, an error :math:`O(\Delta t^4)`; without velocities the scaled distance
:math:`|x - x_g|/\rho_g - 1` is interpolated linearly, :math:`O(\Delta t^2)`), or the first iterate inside and
one past the last (maps: the dwell time is the number of iterates inside). A visit already inside at the first state has no observed entry
(``entered`` False, entry time 0); one still inside at the last state (or when the trajectory diverged) has no
observed exit (``left`` False).

Consecutive visits of one trajectory make a *transition* ``from -> to`` (``to == from`` when it leaves a ball
and comes back without visiting another ghost) with transit time ``entry(to) - exit(from)``.

Every step works on all trajectories at once: labels ``(T, N)``, run starts and ends by comparing neighbours,
``nonzero`` lists them trajectory by trajectory in time order; no Python loop over trajectories or times.

>>> import torch
>>> from dynlearn.periodic import Circle
>>> t = torch.linspace(0, 4, 5)                       # one trajectory moving along x at unit speed
>>> xs = torch.stack([t - 0.5, torch.zeros(5)], -1)[:, None]
>>> v = detect(xs, torch.ones(5, 1, dtype=torch.bool), torch.tensor([1.0]),
...            torch.tensor([[[1.0, 0.0], [3.0, 0.0]]]), torch.tensor([[0.6, 0.6]]),
...            torch.ones(1, 2, dtype=torch.bool), Circle.none(2), flow=True)
>>> v.ghost.tolist(), [round(e, 6) for e in v.entry.tolist()], [round(e, 6) for e in v.exit.tolist()]
([0, 1], [0.9, 2.9], [2.1, 4.0])
>>> v.left.tolist()                                   # still inside the second ball at the end
[True, False]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dynlearn.periodic import Circle, delta, distance

Tensor = torch.Tensor

__all__ = ["Visits", "detect", "padded", "transitions"]


@dataclass
class Visits:
    """All visits of ``N`` trajectories as flat ``(S,)`` tensors, ordered by trajectory then time."""

    trajectory: Tensor  # int64: which trajectory
    ghost: Tensor  # int64: which ghost (slot of the ghost table)
    entry: Tensor  # entry time
    exit: Tensor  # exit time
    entered: Tensor  # bool: the entry was observed (not inside at the first state)
    left: Tensor  # bool: the exit was observed (left before the end, without diverging)

    @property
    def dwell(self) -> Tensor:
        return self.exit - self.entry

    @property
    def complete(self) -> Tensor:
        return self.entered & self.left


def labels(xs: Tensor, alive: Tensor, centers: Tensor, radius: Tensor, present: Tensor,
           circle: Circle) -> tuple[Tensor, Tensor]:
    """Ghost label ``(T, N)`` of every recorded state (``-1``: in no ball) and the scaled distances
    ``|x - x_g| / rho_g`` ``(T, N, G)``.

    ``xs`` ``(T, N, d)``, ``alive`` ``(T, N)`` (the state is a real, finite one), ``centers`` ``(N, G, d)``,
    ``radius``/``present`` ``(N, G)``.
    """
    scaled = distance(xs.unsqueeze(2), centers.unsqueeze(0), circle) / radius.unsqueeze(0)
    scaled = torch.where(present.unsqueeze(0), scaled.nan_to_num(torch.inf), torch.inf)
    best, label = scaled.min(-1)
    label = torch.where((best <= 1) & alive, label, -1)
    return label, scaled


def _crossing(xa: Tensor, xb: Tensor, va: Tensor, vb: Tensor, h: Tensor, center: Tensor, rho: Tensor,
              circle: Circle, entering: bool) -> Tensor:
    """Fraction ``theta in [0, 1]`` of the step ``h`` ``(S,)`` from ``xa`` to ``xb`` ``(S, d)`` (velocities ``va``,
    ``vb``) at which the cubic Hermite interpolant crosses the sphere ``|x - center| = rho`` (inwards when
    ``entering``), by bisection."""
    xb = xa + delta(xb, xa, circle)  # the same branch of every periodic coordinate as xa
    ha, hb = h.unsqueeze(-1) * va, h.unsqueeze(-1) * vb
    lo, hi = torch.zeros_like(rho), torch.ones_like(rho)
    for _ in range(48):
        t = (lo + hi) / 2
        tt = t.unsqueeze(-1)
        x = ((2 * tt**3 - 3 * tt**2 + 1) * xa + (tt**3 - 2 * tt**2 + tt) * ha + (-2 * tt**3 + 3 * tt**2) * xb
             + (tt**3 - tt**2) * hb)
        inside = distance(x, center, circle) <= rho
        before = inside if entering else ~inside  # the crossing lies before t
        hi = torch.where(before, t, hi)
        lo = torch.where(before, lo, t)
    return (lo + hi) / 2


def detect(xs: Tensor, alive: Tensor, dt: Tensor, centers: Tensor, radius: Tensor, present: Tensor,
           circle: Circle, *, flow: bool, velocity: Callable[[Tensor, Tensor], Tensor] | None = None) -> Visits:
    """Visits of the trajectories ``xs`` ``(T, N, d)`` recorded every ``dt`` ``(N,)`` (1 for maps) in the balls
    ``(centers (N, G, d), radius (N, G))`` of the ``present`` ghosts; ``alive`` ``(T, N)`` masks states after a
    divergence. ``velocity(x (S, d), trajectory (S,)) -> dx/dt`` (flows) refines the crossings on the cubic
    Hermite interpolant. See the module docstring."""
    T, N, _ = xs.shape
    label, scaled = labels(xs, alive, centers, radius, present, circle)
    none = torch.full((1, N), -1, dtype=label.dtype, device=label.device)
    prev = torch.cat([none, label[:-1]])
    nxt = torch.cat([label[1:], none])
    inside = label >= 0
    start = (inside & (label != prev)).T  # (N, T)
    end = (inside & (label != nxt)).T
    traj, k0 = start.nonzero(as_tuple=True)  # trajectory-major, time-ordered
    _, k1 = end.nonzero(as_tuple=True)
    ghost = label.T[traj, k0]
    dtn = dt[traj]
    entered = k0 > 0
    left = (k1 < T - 1) & alive.T[traj, (k1 + 1).clamp(max=T - 1)]
    if flow and velocity is not None:
        c, rho = centers[traj, ghost], radius[traj, ghost]

        def cross(ka: Tensor, kb: Tensor, entering: bool) -> Tensor:
            xa, xb = xs[ka, traj], xs[kb, traj]
            return _crossing(xa, xb, velocity(xa, traj), velocity(xb, traj), dtn, c, rho, circle, entering)

        entry = torch.where(entered, (k0 - 1 + cross((k0 - 1).clamp(min=0), k0, True)) * dtn, k0 * dtn)
        exit_ = torch.where(left, (k1 + cross(k1, (k1 + 1).clamp(max=T - 1), False)) * dtn, k1 * dtn)
    elif flow:
        f = scaled[:, traj, ghost].T - 1  # (S, T): scaled distance - 1 along the visit's own ghost
        a = f.gather(1, (k0 - 1).clamp(min=0).unsqueeze(1))[:, 0]
        b = f.gather(1, k0.unsqueeze(1))[:, 0]
        theta_in = (a / (a - b)).nan_to_num(1.0).clamp(0, 1)
        entry = torch.where(entered, (k0 - 1 + theta_in) * dtn, k0 * dtn)
        c = f.gather(1, k1.unsqueeze(1))[:, 0]
        e = f.gather(1, (k1 + 1).clamp(max=T - 1).unsqueeze(1))[:, 0]
        theta_out = (c / (c - e)).nan_to_num(0.0).clamp(0, 1)
        exit_ = torch.where(left, (k1 + theta_out) * dtn, k1 * dtn)
    else:
        entry = k0 * dtn
        exit_ = torch.where(left, (k1 + 1) * dtn, k1 * dtn)
    return Visits(traj, ghost, entry.to(xs.dtype), exit_.to(xs.dtype), entered, left)


def padded(v: Visits, N: int, max_visits: int) -> tuple[Tensor, ...]:
    """The visits as padded ``(N, V)`` arrays (``V = min(most visits of a trajectory, max_visits)``, at least 1):
    ghost (``-1`` pad), entry, exit (NaN pad), entered, left (False pad), and the number of visits ``(N,)``."""
    count = torch.bincount(v.trajectory, minlength=N)
    first = torch.cumsum(count, 0) - count
    rank = torch.arange(v.trajectory.numel(), device=count.device) - first[v.trajectory]
    V = max(1, min(int(count.max()) if N else 0, max_visits))
    keep = rank < V
    i, j = v.trajectory[keep], rank[keep]
    nan = torch.full((N, V), torch.nan, dtype=v.entry.dtype)
    ghost = torch.full((N, V), -1, dtype=torch.int64)
    entry, exit_ = nan.clone(), nan.clone()
    entered = torch.zeros((N, V), dtype=torch.bool)
    left = entered.clone()
    ghost[i, j] = v.ghost[keep]
    entry[i, j] = v.entry[keep]
    exit_[i, j] = v.exit[keep]
    entered[i, j] = v.entered[keep]
    left[i, j] = v.left[keep]
    return ghost, entry, exit_, entered, left, count


def transitions(v: Visits, element: Tensor, B: int, G: int) -> tuple[Tensor, Tensor]:
    """Transition counts ``(B, G, G)`` (``[b, from, to]``) and summed transit times between consecutive visits of
    every trajectory (``element`` ``(N,)``: the sweep element of each trajectory)."""
    same = v.trajectory[1:] == v.trajectory[:-1]
    src, dst = v.ghost[:-1][same], v.ghost[1:][same]
    transit = (v.entry[1:] - v.exit[:-1])[same]
    b = element[v.trajectory[1:][same]]
    flat = (b * G + src) * G + dst
    count = torch.zeros(B * G * G, dtype=torch.int64).index_add_(0, flat, torch.ones_like(flat))
    total = torch.zeros(B * G * G, dtype=v.entry.dtype).index_add_(0, flat, transit)
    return count.reshape(B, G, G), total.reshape(B, G, G)

"""Polishing psi's zero set by simulation: separatrix points accurate whatever psi's training noise.

A point ``x`` of psi's zero set is as close to the separatrix as the network's fit allows (about 1% of the box
for the two-factor ellipse at quick size, and it varies with the seed and the rounding path). The separatrix
itself is the set where the *simulated* class changes, so each point is moved onto it:

1. the segment ``x - r n .. x + r n`` along psi's unit normal ``n = grad psi / |grad psi|`` is simulated at both
   ends; where the two ends have different classes, the crossing is bracketed by the plain bisection of the
   simulated class shared with boundary sampling (:func:`.adapt.bracket_crossing`, a final bracket of
   ``2^-12`` of the segment);
2. points whose ends share a class (psi's zero set farther than ``r`` from the separatrix there, or no crossing
   along that line) are tried once more with ``4 r``; those still unbracketed are NaN with outcome ``nan``.

Any change of the simulated class along a segment lies on the separatrix (to the bracket and the simulation's
accuracy), so a polished point's error is its bracket half-width, not psi's error. The distance a point moved,
``|x_polished - x|``, is psi's own error along its normal, measured by simulation (no exact answer needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynlearn import outcome as oc

from .adapt import BRACKET, bracket_crossing
from .net import BatchedMLP

Tensor = torch.Tensor

__all__ = ["Polished", "polish_zero_set", "WIDEN"]

WIDEN = 4.0          # radius factor of the second (and last) try for unbracketed points


@dataclass
class Polished:
    """Zero-set points moved onto the simulated separatrix (``B`` sweep elements, ``P`` points).

    Attributes
    ----------
    points
        ``(B, P, d)`` polished points (NaN where not bracketed).
    shift
        ``(B, P)`` distance from psi's point to its polished point: psi's own error along its normal.
    tolerance
        ``(B, P)`` half-width of the final bracket (the polished point's accuracy along the segment).
    outcome
        ``(B, P)`` int8 codes of :mod:`dynlearn.outcome`: ``OK`` polished, ``NAN`` not (no psi point, no
        gradient, or the simulated class is the same at both ends of both segments).
    """

    points: Tensor
    shift: Tensor
    tolerance: Tensor
    outcome: Tensor


def _segments(net: BatchedMLP, x: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Ends ``x -+ radius n`` of the segments along psi's unit normal at ``x (B, P, d)``."""
    _, g = net.grad(x)
    n = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    n = torch.nan_to_num(n.detach(), nan=0.0, posinf=0.0, neginf=0.0)
    return x - radius * n, x + radius * n


def polish_zero_set(net: BatchedMLP, label_fn, points: Tensor, radius: float) -> Polished:
    """Move psi's zero-set ``points (B, P, d)`` onto the separatrix found by simulation (see the module docstring).

    Parameters
    ----------
    net
        The fitted eigenfunctions (float64), one per sweep element.
    label_fn
        ``label_fn(x (B, ..., d)) -> (B, ...)``: simulated class of states (:func:`.fit.classifier`).
    points
        psi's zero-set points, NaN rows where there are none.
    radius
        Half-length ``r`` of the first segment (state units); the second try uses ``WIDEN r``.

    Returns
    -------
    Polished
    """
    B, P, d = points.shape
    have = torch.isfinite(points).all(-1)
    out = torch.full_like(points, torch.nan)
    tol = torch.full((B, P), torch.nan, dtype=points.dtype)
    todo = have.clone()
    for r in (radius, WIDEN * radius):
        if not todo.any():
            break
        idx, live = _compact(todo)                                      # only the points still to polish
        x = torch.where(live.unsqueeze(-1), points.gather(1, idx.unsqueeze(-1).expand(-1, -1, d)), 0.0)
        a, b = _segments(net, x, r)
        with torch.no_grad():
            ends = label_fn(torch.stack([a, b], 2))                     # (B, m, 2)
            cross, t = bracket_crossing(label_fn, a, b, 0.5 * (a + b), ends[..., 0])
        done = live & (ends[..., 0] != ends[..., 1]) & torch.isfinite(t)
        out = _put(out, idx, done, cross)
        tol = _put(tol.unsqueeze(-1), idx, done, torch.full_like(cross[..., :1], r * BRACKET)).squeeze(-1)
        todo = todo & ~torch.isfinite(out).all(-1)
    ok = torch.isfinite(out).all(-1)
    shift = torch.where(ok, (out - points).norm(dim=-1), torch.nan)
    code = torch.where(ok, oc.OK, oc.NAN).to(torch.int8)
    return Polished(out, shift, tol, code)


def _put(dst: Tensor, idx: Tensor, done: Tensor, src: Tensor) -> Tensor:
    """``dst (B, P, k)`` with rows ``idx (B, m)`` set to ``src (B, m, k)`` where ``done``."""
    B, P, k = dst.shape
    slot = torch.where(done, idx, P).unsqueeze(-1).expand(-1, -1, k)      # slot P: a dump column, dropped
    return torch.cat([dst, dst[:, :1]], 1).scatter(1, slot, src)[:, :P]


def _compact(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Indices ``(B, m)`` of the True entries of ``mask (B, P)`` first in each row (``m``: the most in a row) and
    which of them are True."""
    count = mask.sum(1)
    m = int(count.max())
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :m]
    live = torch.arange(m).unsqueeze(0) < count.unsqueeze(1)
    return order, live

"""Boundary sampling for ``koopman_separatrix``: labelled states near the true separatrix, found by simulation.

In high dimension, uniform samples of the box rarely come close to the separatrix, and the eigen-residual can be
small on them for a ``psi`` whose zero set is far from the separatrix (many stable directions leave room for
spurious solutions, e.g. ``u_0 + C |u_i|^{-1/c_i}`` for the rotated ``bistable``). The states that pin the zero
set down are those next to it, with their basin labels:

1. random quadratic curves join sampled states of the two classes; along each, the first change of the
   *simulated* class label is bracketed by rounds of grid refinement (:func:`.locate.first_crossing`,
   the same bisection as the validation, on other curves);
2. the two ends of each final bracket, and the crossing point moved by a random offset of norm up to
   ``noise`` times the largest box side, are simulated once more: their initial states and classes feed the
   sign term ``relu(-label psi(x0))^2``, their final states the anchors, their trajectories the residual samples
   (trajectories started next to the separatrix first run along it, toward the saddle, before leaving it);
3. optionally (``active``), during training, states where the current ``psi`` is near zero are simulated and
   labelled the same way, so wrong parts of the zero set get labelled counter-examples (active learning).

Nothing here uses ``psi`` except step 3; the labels come from simulation only (the method is still told no
separatrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._shared.attractors import Settled
from .locate import first_crossing

Tensor = torch.Tensor

__all__ = ["Boundary", "boundary_samples", "label_near_zero", "bracket_crossing", "BRACKET"]

POINTS, ROUNDS = 2, 12          # plain bisection: fewest simulated states for a 2^-12 bracket
BRACKET = POINTS ** (-ROUNDS)   # final bracket width, as a fraction of the curve's parameter range


def bracket_crossing(label_fn, a: Tensor, b: Tensor, c: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
    """First change of the simulated class along quadratic curves ``a -> b`` (control ``c``), from ``start``.

    Plain bisection of ``label_fn`` (2 points per round, ``ROUNDS`` rounds: a final bracket of ``BRACKET`` of the
    curve parameter) with :func:`.locate.first_crossing`; the one bracketing of simulated labels used by
    boundary sampling and by the polishing of the zero set (:mod:`.polish`). Returns the crossing points
    ``(B, C, d)`` (midpoint of the final bracket) and their curve parameter ``(B, C)``, NaN where the label never
    changes.
    """
    return first_crossing(label_fn, a, b, c, start, points=POINTS, rounds=ROUNDS)


@dataclass
class Boundary:
    """Labelled states next to the separatrix (``B`` sweep elements, ``n`` states each)."""

    x0: Tensor        # (B, n, d) initial states
    final: Tensor     # (B, n, d) final states (anchors)
    label: Tensor     # (B, n) in {-1, 0, +1} (0: no crossing on that curve, or unclassified)
    path: Tensor      # (B, P, d) trajectory states (residual samples)


def boundary_samples(system, label_fn, st: Settled, ends: Tensor, p: dict[str, Tensor], *, horizon: float,
                     noise: float, n_noisy: int, lo: Tensor, hi: Tensor, g: torch.Generator,
                     trajectory_labels: bool = False) -> Boundary:
    """Bracket the simulated crossing along the curves ``ends (B, C, 3, d)`` and simulate states around it.

    ``label_fn(x, settled=True) -> (labels, Settled)`` classifies states by simulation. Returns ``C (2 +
    n_noisy)`` labelled states per sweep element, and with ``trajectory_labels`` the states of their simulated
    trajectories, labelled with their start's class.
    """
    B, C, _, d = ends.shape
    a, b, c = ends[:, :, 0], ends[:, :, 1], ends[:, :, 2]
    start = torch.full((B, C), -1, dtype=torch.int64)
    cross, t = bracket_crossing(lambda x: label_fn(x), a, b, c, start)
    found = torch.isfinite(t)
    half = 0.5 * BRACKET
    tt = torch.stack([t - half, t + half], -1).clamp(0, 1).unsqueeze(-1)           # (B, C, 2, 1)
    ends_pts = (1 - tt) ** 2 * a.unsqueeze(2) + 2 * (1 - tt) * tt * c.unsqueeze(2) + tt**2 * b.unsqueeze(2)
    side = (hi - lo).abs().max()
    direction = torch.randn(B, C, n_noisy, d, generator=g, dtype=torch.float64).to(a.dtype)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    radius = noise * side * torch.rand(B, C, n_noisy, 1, generator=g, dtype=torch.float64).to(a.dtype)
    noisy = torch.minimum(torch.maximum(cross.unsqueeze(2) + radius * direction, lo), hi)
    x = torch.cat([ends_pts, noisy], 2)                                                # (B, C, 2 + n_noisy, d)
    x = torch.where(found.view(B, C, 1, 1), x, a.unsqueeze(2))                         # no crossing: a class state
    x = x.reshape(B, -1, d).contiguous()
    lab, s = label_fn(x, settled=True)
    keep = found.unsqueeze(-1).expand(B, C, 2 + n_noisy).reshape(B, -1)
    lab = torch.where(keep, lab, 0).to(torch.int8)
    path = s.path[1:].permute(1, 2, 0, 3)                                              # (B, n, T, d)
    ok = torch.isfinite(path).all(-1) & keep.unsqueeze(-1)
    T = path.shape[2]
    path = torch.where(ok.unsqueeze(-1), path, x.unsqueeze(2)).reshape(B, -1, d)
    final = torch.nan_to_num(s.final, nan=0.0, posinf=1e6, neginf=-1e6)
    if not trajectory_labels:
        return Boundary(x, final, lab, path)
    # basins are invariant: every state of a trajectory has its start's class
    rep = (lambda t: t.unsqueeze(2).expand(*t.shape[:2], T, *t.shape[2:]).reshape(B, -1, *t.shape[2:]))  # noqa: E731
    lab_path = torch.where(ok.reshape(B, -1), rep(lab), 0).to(torch.int8)
    return Boundary(torch.cat([x, path], 1), torch.cat([final, rep(final)], 1), torch.cat([lab, lab_path], 1), path)


def label_near_zero(net, label_fn, n: int, lo: Tensor, hi: Tensor, g: torch.Generator, factor: int = 8):
    """Active learning: ``n`` states per network where ``|psi|`` is smallest among ``factor n`` uniform ones,
    labelled by simulation. Returns ``(x0, final, label)``."""
    B, d = net.n_networks, lo.shape[0]
    with torch.no_grad():
        cand = lo + (hi - lo) * torch.rand(B, factor * n, d, generator=g, dtype=torch.float64).to(lo.dtype)
        idx = net(cand.to(net.dtype)).abs().topk(n, dim=1, largest=False).indices
        x = cand.gather(1, idx.unsqueeze(-1).expand(B, n, d)).contiguous()
    lab, s = label_fn(x, settled=True)
    return x, torch.nan_to_num(s.final, nan=0.0, posinf=1e6, neginf=-1e6), lab.to(torch.int8)


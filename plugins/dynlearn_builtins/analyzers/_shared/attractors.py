"""Attractors by simulation: where do sampled states go? (shared by ``koopman_separatrix`` and ``min_action``).

States are simulated forward (flows over a horizon measured in the system's own time scale, maps for a number of
iterations); final states are grouped into attractors by single-linkage clustering (connected components of the
graph "closer than ``tol``"), batched over networks with min-label propagation. Diverged states (a map escaping
to infinity) form their own class.

The two *classes* a separatrix separates are then:

- bounded vs diverged, when some sampled states diverge (the separatrix of a map like the two-factor map);
- otherwise the two most populated attractors (states going elsewhere get label 0 and are ignored).

Labels are ``+1`` / ``-1``: ``+1`` is the diverged class, or the attractor whose centroid has the larger sum of
coordinates (a deterministic convention; the analyzer may flip it to agree with a warm start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from dynlearn import outcome as oc
from dynlearn.stepper import iterate
from dynlearn.system import System

Tensor = torch.Tensor

__all__ = ["Settled", "time_scale", "settle_steps", "settle", "attractor_classes", "fixed_point_polish",
           "polish_centroids"]


@dataclass
class Settled:
    """Final states of simulated samples and their classes.

    Attributes
    ----------
    x0, final
        Initial and final states ``(B, n, d)``.
    code
        Outcome codes ``(B, n)`` (``dynlearn.outcome``).
    path
        Recorded states ``(T, B, n, d)`` (a few snapshots, for trajectory samples).
    label
        ``(B, n)`` in ``{-1, 0, +1}``: class of each sample (0: neither of the two classes).
    n_attractors
        ``(B,)``: attractors found (the diverged class counts as one).
    centroid
        ``(B, 2, d)``: mean final state of class ``-1`` and ``+1`` (NaN for the diverged class); moved onto the
        fixed point it approximates by :func:`polish_centroids` where there is one.
    """

    x0: Tensor
    final: Tensor
    code: Tensor
    path: Tensor
    label: Tensor | None = None
    n_attractors: Tensor | None = None
    centroid: Tensor | None = None


def time_scale(system: System, x: Tensor, p: Mapping[str, Tensor]) -> tuple[float, float]:
    """``(t_char, t_fast)``: median and 99%-quantile inverse Jacobian norms over the states ``x`` (flows)."""
    J = system.jacobian(x, p)
    norms = torch.linalg.matrix_norm(J, ord="fro").flatten()
    norms = norms[torch.isfinite(norms)]
    if norms.numel() == 0:
        return 1.0, 1.0
    med = float(norms.median().clamp_min(1e-12))
    q99 = float(torch.quantile(norms.to(torch.float64), 0.99).clamp_min(1e-12))
    return 1.0 / med, 1.0 / q99


def settle_steps(system: System, x0: Tensor, p: Mapping[str, Tensor], horizon: float,
                 max_steps: int = 4000) -> tuple[int, float]:
    """``(steps, dt)`` of :func:`settle`: how long, and with which step, states are simulated.

    Maps: ``int(horizon)`` iterations. Flows: ``horizon`` characteristic times (``t_char`` of :func:`time_scale`
    over the states ``x0``) at a step of ``t_fast / 2`` (inside RK4's stability region since the Frobenius norm
    bounds the spectral radius), widened so that there are at most ``max_steps`` steps.
    """
    if system.kind == "map":
        return int(horizon), 1.0
    t_char, t_fast = time_scale(system, x0.reshape(x0.shape[0], -1, x0.shape[-1]), p)
    total = horizon * t_char
    dt = max(t_fast / 2.0, total / max_steps)
    return max(1, int(round(total / dt))), dt


def settle(system: System, x0: Tensor, p: Mapping[str, Tensor], *, horizon: float, max_steps: int = 4000,
           snapshots: int = 8, max_norm: float = 1e6) -> Settled:
    """Simulate ``x0 (B, n, d)`` under parameters ``p`` (batch ``(B, 1)``) until (nearly) settled.

    The states step through the core stepper (:func:`dynlearn.stepper.iterate`: map iterations or RK4 steps)
    for the steps and step size of :func:`settle_steps`, recording about ``snapshots`` states; a state leaving
    the ball ``|x|_inf <= max_norm`` (or turning NaN) is frozen and labeled ``diverged`` (``nan``) by the
    stepper's one divergence rule.
    """
    steps, dt = settle_steps(system, x0, p, horizon, max_steps)
    out = iterate(system, x0, p, steps, dt=dt, max_norm=max_norm, record_every=max(1, steps // snapshots))
    return Settled(x0, out.final, out.outcome, out.states)


def _components(x: Tensor, valid: Tensor, tol: float) -> Tensor:
    """Connected components of "distance < tol" among the rows of ``x (B, n, d)``; returns labels ``(B, n)``.

    A component's label is its smallest member index; invalid rows get label ``n`` (their own bin).
    """
    B, n, _ = x.shape
    adj = (torch.cdist(x, x) < tol) & valid.unsqueeze(1) & valid.unsqueeze(2)
    lab = torch.arange(n, device=x.device).expand(B, n).clone()
    big = torch.full_like(lab, n)
    lab = torch.where(valid, lab, big)
    for _ in range(4 * n):
        m = torch.where(adj, lab.unsqueeze(1).expand(B, n, n), n).min(-1).values
        new = torch.minimum(lab, m)
        new = torch.where(valid, new.gather(1, new.clamp_max(n - 1)), big)  # pointer jumping
        if torch.equal(new, lab):
            break
        lab = new
    return lab


def attractor_classes(st: Settled, *, tol: float, min_fraction: float = 0.02) -> Settled:
    """Fill ``label``, ``n_attractors`` and ``centroid`` of ``st`` (see the module docstring)."""
    final, code = st.final, st.code
    B, n, d = final.shape
    bounded = code == oc.OK
    diverged = ~bounded
    lab = _components(final, bounded, tol)
    counts = torch.zeros(B, n + 1, dtype=torch.long).scatter_add_(1, lab, torch.ones_like(lab))
    counts[:, n] = 0
    min_count = max(1, int(min_fraction * n))
    big_enough = counts >= min_count
    n_bounded = big_enough.sum(1)
    n_div = diverged.sum(1)
    has_div = n_div >= min_count
    n_attr = n_bounded + has_div.long()

    top = counts.topk(2, dim=1)
    c1, c2 = top.indices[:, 0], top.indices[:, 1]
    in1 = lab == c1.unsqueeze(1)
    in2 = (lab == c2.unsqueeze(1)) & (top.values[:, 1] >= min_count).unsqueeze(1)

    def centroid(mask: Tensor) -> Tensor:
        w = mask.to(final.dtype).unsqueeze(-1)
        return (torch.where(mask.unsqueeze(-1), final, 0.0) * w).sum(1) / w.sum(1).clamp_min(1)

    cen1, cen2 = centroid(in1), centroid(in2)
    # without divergence: +1 = the larger coordinate sum among the two most populated attractors
    one_is_plus = (cen1.sum(-1) > cen2.sum(-1)) | ((cen1.sum(-1) == cen2.sum(-1)) & (cen1[:, 0] >= cen2[:, 0]))
    lab_attr = torch.where(in1, torch.where(one_is_plus, 1, -1).unsqueeze(1), 0)
    lab_attr = torch.where(in2, torch.where(one_is_plus, -1, 1).unsqueeze(1), lab_attr)
    cen_minus = torch.where(one_is_plus.unsqueeze(1), cen2, cen1)
    cen_plus = torch.where(one_is_plus.unsqueeze(1), cen1, cen2)
    # with divergence: bounded (-1) vs diverged (+1)
    lab_div = torch.where(diverged, 1, -1)
    cen_bounded = centroid(bounded)
    label = torch.where(has_div.unsqueeze(1), lab_div, lab_attr)
    two = (has_div & (bounded.sum(1) >= min_count)) | (~has_div & (n_bounded >= 2))
    label = torch.where(two.unsqueeze(1), label, 0)
    nan = torch.full_like(cen_plus, float("nan"))
    cm = torch.where(has_div.unsqueeze(1), cen_bounded, cen_minus)
    cp = torch.where(has_div.unsqueeze(1), nan, cen_plus)
    st.label = label.to(torch.int8)
    st.n_attractors = n_attr
    st.centroid = torch.stack([cm, cp], dim=1)
    return st


def fixed_point_polish(system: System, x: Tensor, p: Mapping[str, Tensor], iters: int = 30) -> Tensor:
    """Newton iterations on the fixed-point residual from ``x (..., d)`` (damped; keeps ``x`` where it fails)."""
    for _ in range(iters):
        r = system.residual(x, p)
        J = system.jacobian(x, p)
        if system.kind == "map":
            J = J - torch.eye(x.shape[-1], dtype=x.dtype)
        try:
            step = torch.linalg.solve(J, r.unsqueeze(-1)).squeeze(-1)
        except RuntimeError:
            break
        ok = torch.isfinite(step).all(-1, keepdim=True) & (step.norm(dim=-1, keepdim=True) < 1.0)
        x = torch.where(ok, x - step, x)
    return x


def polish_centroids(system: System, st: Settled, p: Mapping[str, Tensor], tol: float) -> Settled:
    """Move each class centroid of ``st`` onto the fixed point it approximates, where there is one.

    A centroid is the mean final state of a class: samples that started near the separatrix have not quite
    settled after the horizon, so it misses a fixed-point attractor by up to ~1e-3 (depending on the samples, hence
    on the seed). Newton's method (:func:`fixed_point_polish`) from the centroid is kept where it converges
    (residual <= 1e-10 (1 + |x|)) within ``tol`` of it (the clustering distance); elsewhere (a periodic or chaotic
    attractor, a continuum of fixed points, the diverged class) the centroid stays.
    """
    cen = st.centroid
    x = torch.nan_to_num(cen)
    new = fixed_point_polish(system, x, p)
    res = system.residual(new, p).norm(dim=-1)
    good = (torch.isfinite(cen).all(-1) & torch.isfinite(new).all(-1) & (res <= 1e-10 * (1 + new.norm(dim=-1)))
            & ((new - x).norm(dim=-1) <= tol))
    st.centroid = torch.where(good.unsqueeze(-1), new, cen)
    return st

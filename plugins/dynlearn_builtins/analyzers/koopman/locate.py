"""Using a trained eigenfunction ``psi``: its zero set, validation against simulation, optimal perturbations.

- :func:`zero_set`: batched root-finding of ``psi`` along segments joining each sample to its nearest sample of
  opposite sign (bisection), then Newton projection ``x <- x - psi grad psi / |grad psi|^2`` onto ``psi = 0``, and
  farthest-point subsampling so the returned points cover the zero set evenly.
- :func:`first_crossing`: the first point where a class label changes along batched curves, by rounds of grid
  refinement (the same algorithm for the simulated basin label and for the sign of ``psi``, so the two crossings
  are compared like for like).
- :func:`nearest_zero`: for given states ``x0``, the nearest point of ``psi = 0`` (alternating Newton projection
  and tangential steps toward ``x0``; at convergence ``p - x0`` is parallel to ``grad psi``): the smallest
  perturbation ``delta = p - x0`` moving ``x0`` onto the estimated separatrix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .net import BatchedMLP

Tensor = torch.Tensor

__all__ = ["zero_set", "first_crossing", "nearest_zero", "project"]


def project(net: BatchedMLP, x: Tensor, iters: int = 4) -> tuple[Tensor, Tensor]:
    """Newton projection of ``x (B, n, d)`` onto ``psi = 0``; returns the points and ``|psi|`` there."""
    for _ in range(iters):
        val, g = net.grad(x)
        g2 = (g * g).sum(-1, keepdim=True).clamp_min(1e-30)
        x = x - (val.unsqueeze(-1) / g2) * g
    val = net(x).detach()
    return x.detach(), val.abs()


def zero_set(net: BatchedMLP, candidates: Tensor, n_points: int, *, lo: Tensor, hi: Tensor,
             bisect_iters: int = 40, tol: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Points of ``psi = 0`` from samples ``candidates (B, M, d)``.

    Returns ``points (B, n_points, d)`` (NaN-padded where fewer roots exist) and the number of distinct roots
    found per network ``(B,)``.
    """
    B, M, d = candidates.shape
    with torch.no_grad():
        val = net(candidates)
        pos = val > 0
        dist = torch.cdist(candidates, candidates)
        opposite = pos.unsqueeze(2) != pos.unsqueeze(1)
        dist = torch.where(opposite, dist, torch.inf)
        j = dist.argmin(-1)
        has = torch.isfinite(dist.gather(-1, j.unsqueeze(-1)).squeeze(-1))
        a = candidates
        b = candidates.gather(1, j.unsqueeze(-1).expand(B, M, d))
        va = val
        for _ in range(bisect_iters):
            m = 0.5 * (a + b)
            vm = net(m)
            same = (vm > 0) == (va > 0)
            a = torch.where(same.unsqueeze(-1), m, a)
            va = torch.where(same, vm, va)
            b = torch.where(same.unsqueeze(-1), b, m)
        roots = 0.5 * (a + b)
    roots, res = project(net, roots)
    scale = (hi - lo).abs().max()
    inside = ((roots >= lo - 1e-9 * scale) & (roots <= hi + 1e-9 * scale)).all(-1)
    ok = has & inside & (res < tol) & torch.isfinite(roots).all(-1)
    return _farthest(roots, ok, n_points), ok.sum(1)


def _farthest(x: Tensor, ok: Tensor, n: int) -> Tensor:
    """Farthest-point subsample of the rows of ``x (B, M, d)`` where ``ok``; NaN rows when fewer exist."""
    B, M, d = x.shape
    count = ok.sum(1)
    first = torch.where(ok.any(1), ok.to(torch.int8).argmax(1), 0)
    chosen = [first]
    mind = torch.where(ok, torch.cdist(x, x.gather(1, first.view(B, 1, 1).expand(B, 1, d))).squeeze(-1), -1.0)
    for _ in range(1, min(n, M)):
        nxt = mind.argmax(1)
        chosen.append(nxt)
        dn = (x - x.gather(1, nxt.view(B, 1, 1).expand(B, 1, d))).norm(dim=-1)
        mind = torch.where(ok, torch.minimum(mind, dn), -1.0)
    idx = torch.stack(chosen, 1)
    pts = x.gather(1, idx.unsqueeze(-1).expand(B, idx.shape[1], d))
    rank = torch.arange(idx.shape[1]).expand(B, -1)
    pts = torch.where((rank < count.unsqueeze(1)).unsqueeze(-1), pts, torch.nan)
    if pts.shape[1] < n:
        pts = torch.cat([pts, torch.full((B, n - pts.shape[1], d), torch.nan, dtype=x.dtype)], 1)
    return pts


def first_crossing(label_fn: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, c: Tensor, start_label: Tensor,
                   *, points: int = 32, rounds: int = 3) -> tuple[Tensor, Tensor]:
    """First change of ``label_fn`` along quadratic Bezier curves from ``a`` to ``b`` with control points ``c``.

    ``a, b, c`` have shape ``(B, C, d)``; the curve is ``(1-t)^2 a + 2 (1-t) t c + t^2 b``, ``t in [0, 1]``.

    ``label_fn(x (B, C, T, d)) -> (B, C, T)``. The first round evaluates ``points`` parameters in ``(0, 1]`` and
    keeps the first one whose label differs from ``start_label (B, C)``; later rounds evaluate the ``points - 1``
    interior parameters of the bracket only: its upper end is known to differ and is never asked again (a state
    on the separatrix itself may get either label, and a second, different answer there would lose the bracket).
    Returns the crossing points ``(B, C, d)`` (midpoint of the final bracket; NaN where the label never changes)
    and the curve parameter.
    """
    B, C, _ = a.shape
    t_lo = torch.zeros(B, C, dtype=a.dtype)
    t_hi = torch.ones(B, C, dtype=a.dtype)
    found = torch.ones(B, C, dtype=torch.bool)
    s = torch.linspace(0.0, 1.0, points + 1, dtype=a.dtype)[1:]
    for r in range(rounds):
        s_r = s if r == 0 else s[:-1]
        t = t_lo.unsqueeze(-1) + (t_hi - t_lo).unsqueeze(-1) * s_r  # (B, C, T)
        u = t.unsqueeze(-1)
        x = (1 - u) ** 2 * a.unsqueeze(2) + 2 * (1 - u) * u * c.unsqueeze(2) + u**2 * b.unsqueeze(2)
        diff = label_fn(x) != start_label.unsqueeze(-1) if len(s_r) else torch.zeros_like(t, dtype=torch.bool)
        if r > 0:                                                     # the upper end, known to differ
            t = torch.cat([t, t_hi.unsqueeze(-1)], -1)
            diff = torch.cat([diff, torch.ones_like(diff[..., :1])], -1)
        any_diff = diff.any(-1)
        k = diff.to(torch.int8).argmax(-1)
        new_hi = t.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        prev = torch.where(k > 0, t.gather(-1, (k - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1), t_lo)
        if r == 0:
            found &= any_diff
        t_lo = torch.where(any_diff, prev, t_lo)
        t_hi = torch.where(any_diff, new_hi, t_hi)
    tm = 0.5 * (t_lo + t_hi)
    u = tm.unsqueeze(-1)
    pts = (1 - u) ** 2 * a + 2 * (1 - u) * u * c + u**2 * b
    pts = torch.where(found.unsqueeze(-1), pts, torch.nan)
    return pts, torch.where(found, tm, torch.nan)


def nearest_zero(net: BatchedMLP, x0: Tensor, start: Tensor, *, iters: int = 200, step: float = 0.5) -> Tensor:
    """Nearest point of ``psi = 0`` to each ``x0 (B, m, d)``, starting from ``start`` (a nearby zero-set point).

    Alternates a Newton projection onto ``psi = 0`` with a step of the tangential component of ``x0 - p``; at a
    fixed point ``p - x0`` is normal to the zero set (first-order optimality of ``min |p - x0|, psi(p) = 0``).
    """
    p = start.clone()
    for _ in range(iters):
        p, _ = project(net, p, iters=2)
        _, g = net.grad(p)
        n = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        r = x0 - p
        tangential = r - (r * n).sum(-1, keepdim=True) * n
        p = p + step * tangential
    p, _ = project(net, p, iters=3)
    return p

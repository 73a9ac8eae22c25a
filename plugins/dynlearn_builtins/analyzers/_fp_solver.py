"""Batched root / q-minimum finding for the fixed-point analyzer (private).

All functions work on a flat batch of states ``x`` of shape ``(N, d)`` whose parameters ``p`` are gathered to
``(N, *event)`` (see :func:`take`), so one call serves every sweep entry and every starting state at once.

- :func:`solve`: Powell's dogleg trust-region method on ``q(x) = |g(x)|^2 / 2`` (``g`` = the system's residual:
  ``f(x)`` for flows, ``F(x) - x`` for maps). Each step combines the Newton step ``-J^-1 g`` (batched
  ``torch.linalg.solve_ex`` on the system's Jacobian) with the steepest-descent (Cauchy) step of ``q`` inside a
  per-state trust radius, so it converges quadratically to simple roots and still descends into local minima
  of ``q`` that are not roots (ghosts), where ``J`` is singular. States stop on a root (``|g|_inf`` below the
  tolerance and a negligible Newton step), on a negligible trust-scaled change (a stationary point of ``q``),
  or when they leave a box around the search domain (outliers). Converged states leave the active set, so the
  per-iteration cost shrinks as states finish.
- :func:`refine_minima`: Newton's method on ``grad q = J^T g = 0`` with the exact Hessian of ``q`` (autograd),
  for the few candidate minima that are not roots; also tells local minima from saddles of ``q``.
- :func:`dedupe`: batched duplicate removal (connected components of the "closer than tol" graph inside each
  sweep entry, keeping the lowest-``q`` copy), without a Python loop over entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

ROOT, STATIONARY, OUTSIDE, MAX_ITER = 0, 1, 2, 3


def take(p: Mapping[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    """Parameters ``(B, *event)`` gathered at the owner indices ``idx`` ``(N,)`` -> ``(N, *event)``.

    A single parameter set (``B = 1``) is returned as is: it broadcasts against any number of states, and
    large parameters (an RNN's weight matrix) are not copied once per state.
    """
    if all(v.shape[0] == 1 for v in p.values()):
        return dict(p)
    return {k: v.index_select(0, idx) for k, v in p.items()}


def residual_jacobian(system, x: Tensor, p: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Residual ``g`` ``(N, d)`` and its Jacobian ``dg/dx`` ``(N, d, d)`` (``J_F - I`` for maps)."""
    g = system.residual(x, p)
    J = system.jacobian(x, p)
    if system.kind == "map":
        J = J - torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return g, J


@dataclass
class Solution:
    """Result of :func:`solve`: final states, ``q``, ``|g|_inf``, status code and iterations per state."""

    x: Tensor
    q: Tensor
    g_inf: Tensor
    status: Tensor
    n_iter: Tensor


def _dogleg(g: Tensor, J: Tensor, radius: Tensor) -> tuple[Tensor, Tensor]:
    """Dogleg step inside ``radius`` and the Newton step length (inf where J is singular)."""
    newton, info = torch.linalg.solve_ex(J, -g.unsqueeze(-1))
    newton = newton.squeeze(-1)
    n_newton = newton.norm(dim=-1)
    ok_newton = (info == 0) & torch.isfinite(n_newton)
    n_newton = torch.where(ok_newton, n_newton, torch.full_like(n_newton, torch.inf))
    newton = torch.where(ok_newton.unsqueeze(-1), newton, torch.zeros_like(newton))
    grad = (J.transpose(-1, -2) @ g.unsqueeze(-1)).squeeze(-1)  # grad q = J^T g
    jg = (J @ grad.unsqueeze(-1)).squeeze(-1)
    g2 = (grad * grad).sum(-1)
    jg2 = (jg * jg).sum(-1)
    tiny = torch.finfo(g.dtype).tiny
    alpha = g2 / jg2.clamp(min=tiny)
    cauchy = -alpha.unsqueeze(-1) * grad
    n_cauchy = alpha * g2.sqrt()
    n_grad = g2.sqrt().clamp(min=tiny)
    steepest = -(radius / n_grad).unsqueeze(-1) * grad
    # dogleg: the point of the path cauchy -> newton at distance radius
    diff = newton - cauchy
    a = (diff * diff).sum(-1).clamp(min=tiny)
    b = 2 * (cauchy * diff).sum(-1)
    c = n_cauchy**2 - radius**2
    tau = ((-b + (b * b - 4 * a * c).clamp(min=0).sqrt()) / (2 * a)).clamp(0, 1)
    dog = cauchy + tau.unsqueeze(-1) * diff
    use_newton = ok_newton & (n_newton <= radius)
    use_steep = (n_cauchy >= radius) | (jg2 <= tiny)
    use_cauchy = ~ok_newton & ~use_steep
    step = torch.where(use_newton.unsqueeze(-1), newton,
                       torch.where(use_steep.unsqueeze(-1), steepest,
                                   torch.where(use_cauchy.unsqueeze(-1), cauchy, dog)))
    return step, n_newton


def solve(
    system,
    x0: Tensor,
    p: Mapping[str, Tensor],
    owner: Tensor,
    *,
    center: Tensor,
    half_width: Tensor,
    radius0: float,
    root_tol: float = 1e-10,
    xtol: float = 1e-10,
    root_xtol: float = 1e-13,
    max_iter: int = 200,
    far: float = 3.0,
    patience: int = 10,
) -> Solution:
    """Minimise ``q = |g|^2/2`` from every state of ``x0`` ``(N, d)``; ``p[k][owner]`` are the states' parameters.

    A state outside ``center +- far * half_width`` (or with a non-finite residual) stops as ``OUTSIDE``; one whose
    ``q`` did not halve over ``patience`` iterations stops as ``STATIONARY`` (a slow valley or a minimum of q).
    """
    N, d = x0.shape
    x = x0.clone()
    status = torch.full((N,), MAX_ITER, dtype=torch.int8, device=x.device)
    n_iter = torch.zeros(N, dtype=torch.int64, device=x.device)
    radius = torch.full((N,), float(radius0), dtype=x.dtype, device=x.device)
    q_out = torch.full((N,), torch.inf, dtype=x.dtype, device=x.device)
    ginf_out = torch.full((N,), torch.inf, dtype=x.dtype, device=x.device)
    active = torch.arange(N, device=x.device)
    limit = far * half_width
    q_ckpt = torch.full((N,), torch.inf, dtype=x.dtype, device=x.device)
    for it in range(max_iter):
        if active.numel() == 0:
            break
        xa = x.index_select(0, active)
        pa = take(p, owner.index_select(0, active))
        g, J = residual_jacobian(system, xa, pa)
        q = 0.5 * (g * g).sum(-1)
        ginf = g.abs().amax(-1)
        q_out[active] = q
        ginf_out[active] = ginf
        n_iter[active] = it
        scale = 1 + xa.abs().amax(-1)
        outside = ~torch.isfinite(q) | ((xa - center).abs() > limit).any(-1)
        gf = torch.where(outside[:, None], torch.zeros_like(g), g)
        rad = radius.index_select(0, active)
        step, n_newton = _dogleg(gf, J, rad)
        outside |= ~torch.isfinite(step).all(-1)
        root = ~outside & (ginf <= root_tol) & ((n_newton <= root_xtol * scale) | (ginf == 0))
        stalled = ~outside & ~root & (rad <= xtol * scale)
        if it % patience == 0:
            # not making progress: q did not halve over the last `patience` iterations (and is not a root)
            slow = q > 0.5 * q_ckpt.index_select(0, active)
            stalled |= ~outside & ~root & slow & (ginf > root_tol)
            q_ckpt[active] = q
        done = outside | root | stalled
        status[active[outside]] = OUTSIDE
        status[active[root]] = ROOT
        status[active[stalled]] = STATIONARY
        # trial step for the states still running
        keep = ~done
        if not bool(keep.any()):
            active = active[:0]
            break
        idx = active[keep]
        xk, gk, Jk, qk = xa[keep], g[keep], J[keep], q[keep]
        sk, rk = step[keep], rad[keep]
        x_new = xk + sk
        g_new = system.residual(x_new, take(pa, keep.nonzero().squeeze(-1)))
        q_new = 0.5 * (g_new * g_new).sum(-1)
        lin = gk + (Jk @ sk.unsqueeze(-1)).squeeze(-1)
        pred = qk - 0.5 * (lin * lin).sum(-1)
        actual = qk - q_new
        ratio = actual / pred.clamp(min=torch.finfo(x.dtype).tiny)
        accept = torch.isfinite(q_new) & (actual > 0) & (ratio > 1e-4)
        n_step = sk.norm(dim=-1)
        new_rad = torch.where(ratio < 0.25, 0.25 * n_step, rk)
        new_rad = torch.where((ratio > 0.75) & accept, torch.maximum(rk, 2 * n_step), new_rad)
        new_rad = torch.where(torch.isfinite(q_new), new_rad, 0.25 * n_step).clamp(max=4 * radius0)
        radius[idx] = new_rad
        x[idx] = torch.where(accept.unsqueeze(-1), x_new, xk)
        # a negligible accepted change that is not a root: stationary point of q (candidate ghost)
        g_new_inf = g_new.abs().amax(-1)
        tiny_step = accept & (n_step <= xtol * (1 + xk.abs().amax(-1))) & (g_new_inf > root_tol)
        status[idx[tiny_step]] = STATIONARY
        q_out[idx[tiny_step]] = q_new[tiny_step]
        ginf_out[idx[tiny_step]] = g_new_inf[tiny_step]
        n_iter[idx[tiny_step]] = it + 1
        active = idx[~tiny_step]
    if active.numel():
        xa = x.index_select(0, active)
        g = system.residual(xa, take(p, owner.index_select(0, active)))
        q_out[active] = 0.5 * (g * g).sum(-1)
        ginf_out[active] = g.abs().amax(-1)
        n_iter[active] = max_iter
    return Solution(x, q_out, ginf_out, status, n_iter)


def grad_q(system, x: Tensor, p: Mapping[str, Tensor], create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """``q`` and ``grad q`` at ``x`` (``x`` must require grad)."""
    g = system.residual(x, p)
    q = 0.5 * (g * g).sum(-1)
    (gr,) = torch.autograd.grad(q.sum(), x, create_graph=create_graph)
    return q, gr


def hessian_q(system, x: Tensor, p: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``q`` ``(N,)``, ``grad q`` ``(N, d)`` and the exact Hessian of ``q`` ``(N, d, d)`` (one double-backward pass
    on ``d`` copies of each state)."""
    N, d = x.shape
    with torch.enable_grad():
        xe = x.detach().unsqueeze(-2).expand(N, d, d).clone().requires_grad_(True)
        pe = system.expand_params(p)
        q, gr = grad_q(system, xe, pe, create_graph=True)
        (H,) = torch.autograd.grad(gr.diagonal(dim1=-2, dim2=-1).sum(), xe)
    return q[:, 0].detach(), gr[:, 0].detach(), H


def refine_minima(
    system, x: Tensor, p: Mapping[str, Tensor], *, max_iter: int = 30, xtol: float = 1e-13
) -> tuple[Tensor, Tensor, Tensor]:
    """Newton on ``grad q = 0`` from candidate minima ``x`` ``(N, d)``.

    Returns the refined states, ``q`` there and ``is_min`` (the Hessian of ``q`` is positive definite: a local
    minimum, not a saddle of ``q``). Steps that do not reduce ``|grad q|`` are halved (up to 8 times).
    """
    x = x.clone()
    N = x.shape[0]
    if N == 0:
        return x, x.new_zeros(0), torch.zeros(0, dtype=torch.bool, device=x.device)
    active = torch.ones(N, dtype=torch.bool, device=x.device)
    for _ in range(max_iter):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        pa = take(p, idx)
        xa = x[idx]
        _, gr, H = hessian_q(system, xa, pa)
        step, info = torch.linalg.solve_ex(H, -gr.unsqueeze(-1))
        step = step.squeeze(-1)
        bad = (info != 0) | ~torch.isfinite(step).all(-1)
        step = torch.where(bad.unsqueeze(-1), torch.zeros_like(step), step)
        g0 = gr.norm(dim=-1)
        t = torch.ones(idx.numel(), dtype=x.dtype, device=x.device)
        best = xa
        improved = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
        for _half in range(8):
            trial = xa + t.unsqueeze(-1) * step
            with torch.enable_grad():
                tr = trial.detach().requires_grad_(True)
                _, g1 = grad_q(system, tr, pa)
            ok = torch.isfinite(g1).all(-1) & (g1.norm(dim=-1) < g0) & ~improved
            best = torch.where(ok.unsqueeze(-1), trial, best)
            improved |= ok
            if bool(improved.all()):
                break
            t = torch.where(improved, t, t / 2)
        x[idx] = best
        small = (t * step.norm(dim=-1)) <= xtol * (1 + xa.abs().amax(-1))
        active[idx] = improved & ~small & ~bad
    _, gr, H = hessian_q(system, x, p)
    g = system.residual(x, p)
    q = 0.5 * (g * g).sum(-1)
    Hs = 0.5 * (H + H.transpose(-1, -2))
    ev = torch.linalg.eigvalsh(Hs)
    scale = ev.abs().amax(-1).clamp(min=torch.finfo(x.dtype).tiny)
    is_min = (ev[..., 0] > 1e-10 * scale) & torch.isfinite(q)
    return x, q, is_min


def dedupe(x: Tensor, q: Tensor, keep: Tensor, tol: float | Tensor) -> Tensor:
    """Duplicate removal inside each row: ``x`` ``(B, S, d)``, ``q`` ``(B, S)``, ``keep`` ``(B, S)`` candidates.

    Two candidates closer than ``tol`` belong to the same point (connected components of that graph, found by
    min-label propagation with pointer jumping, batched over ``B``); each component keeps its lowest-``q``
    member. Returns the new ``keep`` mask.
    """
    B, S, _ = x.shape
    if S == 0:
        return keep
    tol = torch.as_tensor(tol, dtype=x.dtype, device=x.device)
    tol = tol.reshape(-1, 1, 1) if tol.dim() else tol
    dist = torch.cdist(x, x)
    adj = (dist <= tol) & keep.unsqueeze(1) & keep.unsqueeze(2)
    # order by q so the component label (its smallest index) is its lowest-q member
    qk = torch.where(keep, q, torch.full_like(q, torch.inf))
    order = torch.argsort(qk, dim=1, stable=True)
    rank = torch.argsort(order, dim=1)
    big = torch.full((B, S), S, dtype=torch.int64, device=x.device)
    label = torch.where(keep, rank, big)
    while True:
        nb = torch.where(adj, label.unsqueeze(1), big.unsqueeze(1)).amin(-1)
        new = torch.minimum(label, nb)
        # pointer jumping: label <- label of the member ranked `label`
        by_rank = torch.gather(new, 1, order)  # labels listed by rank
        jumped = torch.gather(by_rank, 1, new.clamp(max=S - 1))
        new = torch.where(keep, torch.minimum(new, jumped), big)
        if torch.equal(new, label):
            break
        label = new
    return keep & (label == rank)

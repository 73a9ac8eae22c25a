"""Refinement of the fixed-point analyzer's candidate slow points: minima of ``q = |g|^2 / 2`` that are not roots.

Newton's method on ``grad q = J^T g = 0`` with the exact Hessian of ``q`` (autograd), batched over candidates;
also tells local minima of ``q`` from its saddles (private).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .solver import take

Tensor = torch.Tensor


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
    system, x: Tensor, p: Mapping[str, Tensor], *, max_iter: int = 30, xtol: float = 1e-13, gtol: float = 1e-8
) -> tuple[Tensor, Tensor, Tensor]:
    """Newton on ``grad q = 0`` from candidate minima ``x`` ``(N, d)``.

    Returns the refined states, ``q`` there and ``is_min``: a converged local minimum, not a saddle of ``q`` (the
    Hessian of ``q`` is positive definite) nor a state still moving along a flat valley (``|grad q|`` at most
    ``gtol`` times ``sqrt(|H|) |g|``, the size of ``J^T g`` for a generic ``g``; converged minima reach ~1e-15
    where the ones stopped in a valley keep 1e-6..1e-2). Steps that do not reduce ``|grad q|`` are halved (up
    to 8 times).
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
    still = gr.norm(dim=-1) > torch.clamp(gtol * scale.sqrt() * g.norm(dim=-1), min=64 * torch.finfo(x.dtype).eps)
    is_min = (ev[..., 0] > 1e-10 * scale) & torch.isfinite(q) & ~still
    return x, q, is_min

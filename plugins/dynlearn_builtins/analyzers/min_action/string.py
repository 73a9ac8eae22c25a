r"""Geometric minimum action method (gMAM) on a discretised string, batched over sweep elements.

For ``dx = f(x) dt + sqrt(eps) dW`` the Freidlin–Wentzell quasi-potential between two states is the minimum over
curves :math:`\varphi` of the geometric action

.. math:: S(\varphi) = \int_0^1 \big(|f(\varphi)|\,|\varphi'| - f(\varphi)\cdot\varphi'\big)\,d\alpha ,

invariant under reparametrisation (Heymann & Vanden-Eijnden 2008). With :math:`\lambda = |f(\varphi)|/|\varphi'|`
and :math:`J = \partial f/\partial x`, the minimiser solves
:math:`\lambda^2\varphi'' + \lambda\lambda'\varphi' - \lambda(J - J^\top)\varphi' - J^\top f = 0`; gMAM runs the
preconditioned descent

.. math:: \dot\varphi = \lambda^2\varphi'' - \lambda(J - J^\top)\varphi' - J^\top f

(the tangential term :math:`\lambda\lambda'\varphi'` is dropped: the reparametrisation takes care of tangential
motion, and its one-sided differences at the end points stall the nodes next to them) semi-implicitly (the :math:`\lambda^2\varphi''` term implicit: one tridiagonal solve per step), with the end points
fixed and the nodes redistributed to equal arc length after every step. For a gradient flow :math:`f = -\nabla V`
the minimiser is the minimum energy path through the saddle and :math:`S = 2\,\Delta V`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dynlearn.progress import Meter

Tensor = torch.Tensor

__all__ = ["geometric_action", "reparametrize", "gmam"]

_GAUSS = (0.5 - 0.5 / 3**0.5, 0.5 + 0.5 / 3**0.5)


def geometric_action(system, path: Tensor, p: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Geometric action of piecewise-linear paths ``(B, n, d)`` (2-point Gauss rule per segment).

    Returns the total ``(B,)`` and the cumulative action at every node ``(B, n)`` (0 at the start).
    """
    seg = path[:, 1:] - path[:, :-1]
    total = torch.zeros(seg.shape[:2], dtype=path.dtype)
    ln = seg.norm(dim=-1)
    for w in _GAUSS:
        f = system.rhs(path[:, :-1] + w * seg, p)
        total = total + 0.5 * (f.norm(dim=-1) * ln - (f * seg).sum(-1))
    cum = torch.cat([torch.zeros_like(total[:, :1]), total.cumsum(1)], dim=1)
    return total.sum(1), cum


def reparametrize(path: Tensor) -> Tensor:
    """Redistribute the nodes of ``(B, n, d)`` paths to equal arc length (linear interpolation)."""
    B, n, d = path.shape
    seg = (path[:, 1:] - path[:, :-1]).norm(dim=-1)
    s = torch.cat([torch.zeros(B, 1, dtype=path.dtype), seg.cumsum(1)], dim=1)
    s = s / s[:, -1:].clamp_min(1e-300)
    target = torch.linspace(0, 1, n, dtype=path.dtype).expand(B, n).contiguous()
    j = torch.searchsorted(s.contiguous(), target, right=True).clamp(1, n - 1)
    s0, s1 = s.gather(1, j - 1), s.gather(1, j)
    w = ((target - s0) / (s1 - s0).clamp_min(1e-300)).unsqueeze(-1)
    p0 = path.gather(1, (j - 1).unsqueeze(-1).expand(B, n, d))
    p1 = path.gather(1, j.unsqueeze(-1).expand(B, n, d))
    out = p0 + w * (p1 - p0)
    out[:, 0], out[:, -1] = path[:, 0], path[:, -1]
    return out


def gmam(system, p: Mapping[str, Tensor], start: Tensor, end: Tensor, init: Tensor, *, max_iter: int, dt: float,
         tol: float, show_progress: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Run gMAM from ``init (B, n, d)`` (end points ``start``/``end`` ``(B, d)``).

    ``p`` has batch shape ``(B, 1)``. Returns the path, the iterations used ``(B,)`` and the last update size
    ``max |phi_new - phi| / dt`` ``(B,)``; an element stops once that falls below ``tol``.
    """
    B, n, d = init.shape
    h = 1.0 / (n - 1)
    phi = reparametrize(init)
    m = n - 2
    eye = torch.eye(m, dtype=phi.dtype)
    off = torch.diag(torch.ones(m - 1, dtype=phi.dtype), 1) + torch.diag(torch.ones(m - 1, dtype=phi.dtype), -1)
    done = torch.zeros(B, dtype=torch.bool)
    used = torch.zeros(B, dtype=torch.long)
    change = torch.full((B,), torch.inf, dtype=phi.dtype)
    with Meter(max_iter, f"min_action ({system.name})", show_progress, unit="iter") as meter:
        for it in range(max_iter):
            x = phi[:, 1:-1]
            f = system.rhs(x, p)
            J = system.jacobian(x, p)
            dphi = (phi[:, 2:] - phi[:, :-2]) / (2 * h)
            lam = f.norm(dim=-1) / dphi.norm(dim=-1).clamp_min(1e-300)
            A = J - J.transpose(-1, -2)
            rest = (-lam.unsqueeze(-1) * (A @ dphi.unsqueeze(-1)).squeeze(-1)
                    - (J.transpose(-1, -2) @ f.unsqueeze(-1)).squeeze(-1))
            c = dt * lam**2 / h**2                                        # (B, m)
            M = eye * (1 + 2 * c).unsqueeze(-1) - off * c.unsqueeze(-1)   # row i: -c_i x_{i-1} + (1+2c_i) x_i - c_i x_{i+1}
            rhs = x + dt * rest
            rhs[:, 0] += c[:, :1] * phi[:, 0]
            rhs[:, -1] += c[:, -1:] * phi[:, -1]
            new_x = torch.linalg.solve(M, rhs)
            new = torch.cat([phi[:, :1], new_x, phi[:, -1:]], dim=1)
            new = reparametrize(new)
            step = (new - phi).abs().amax(dim=(1, 2)) / dt
            ok = torch.isfinite(new).all(-1).all(-1) & ~done
            phi = torch.where(ok.view(B, 1, 1), new, phi)
            change = torch.where(ok, step, change)
            used = torch.where(ok, torch.full_like(used, it + 1), used)
            done = done | (change < tol) | ~torch.isfinite(new).all(-1).all(-1)
            meter.update()
            if bool(done.all()):
                break
    return phi, used, change

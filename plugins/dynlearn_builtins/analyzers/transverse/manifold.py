"""Orbits on an invariant manifold and their tangential / transverse Lyapunov exponents.

On an invariant manifold ``M = {g = 0}`` (codimension ``k``) take at every point an orthonormal basis
``N_x`` of the normal space (``span rows of Dg``) and ``T_x`` of the tangent space. Invariance gives
``J T_x M ⊂ T_{F(x)} M``, so in the bases ``(T, N)`` the Jacobian is block upper-triangular::

    [T'^T J T   T'^T J N]
    [   0       N'^T J N]          (' = at F(x))

and the Lyapunov spectrum of the orbit is the union of the spectra of the two diagonal cocycles:
``A_t = T_{t+1}^T J_t T_t`` (tangential exponents, the dynamics *on* M) and ``B_t = N_{t+1}^T J_t N_t``
(transverse exponents). Their sum is the mean of ``ln |det J|``. Orbits are re-projected onto ``M`` after
every step, so a transversely repelling manifold can still be followed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from dynlearn import outcome as oc
from dynlearn.params import Settings
from dynlearn.progress import Meter
from dynlearn.stepper import freeze
from dynlearn.system import Manifold

from ..orbits.classify import constraint_jacobian, projector
from ..orbits.kernels import ExponentAccumulator, Stepper, advance
from ..orbits.options import tail_len, warmup

Tensor = torch.Tensor


def bases(manifold: Manifold, x: Tensor, p: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Orthonormal tangent ``(..., d, d-k)`` and normal ``(..., d, k)`` bases of ``manifold`` at ``x``."""
    _, dg = constraint_jacobian(manifold, x, p)
    k, d = dg.shape[-2], dg.shape[-1]
    if d == 2 and k == 1:
        n = dg[..., 0, :] / dg[..., 0, :].norm(dim=-1, keepdim=True).clamp_min(1e-300)
        t = torch.stack([-n[..., 1], n[..., 0]], -1)
        return t.unsqueeze(-1), n.unsqueeze(-1)
    q, _ = torch.linalg.qr(dg.transpose(-1, -2), mode="complete")
    return q[..., k:], q[..., :k]


def manifold_run(stepper: Stepper, manifold: Manifold, x: Tensor, settings: Settings,
                 show_progress: bool | None = None, desc: str = "transverse") -> dict[str, Tensor]:
    """Iterate orbits on ``manifold`` (re-projected every step); tangential and transverse exponents.

    Returns ``final``, ``code``, ``tangential (..., d-k)``, ``transverse (..., k)`` (decreasing; NaN for
    orbits that diverged) and ``tail (L, ..., d)`` (the last :func:`~..orbits.options.tail_len` states).
    """
    s = settings
    p = stepper.p
    project = projector(manifold, p)
    max_norm = float(s.max_norm)  # read once: the loop below runs every step
    code = oc.classify(x, max_norm)
    meter = Meter(s.transient + s.steps, desc, show_progress, unit="step")
    try:
        warm = warmup(s)
        x, code = advance(stepper, x, code, s.transient - warm, max_norm, meter, project=project)
        t0, n0 = bases(manifold, x, p)
        k = n0.shape[-1]
        d = x.shape[-1]
        acc_t = ExponentAccumulator(x.shape[:-1], d - k, dtype=x.dtype)
        acc_n = ExponentAccumulator(x.shape[:-1], k, dtype=x.dtype)
        L = tail_len(s)
        tail = torch.empty(L, *x.shape, dtype=x.dtype)
        total = warm + s.steps
        for it in range(total):
            if it == warm:
                acc_t.reset()
                acc_n.reset()
            nxt, jac = stepper.step_jac(x)
            nxt = project(nxt)
            x, code, moved = freeze(x, nxt, code, max_norm)
            jac = torch.nan_to_num(jac)
            t1, n1 = bases(manifold, x, p)
            jt, jn = jac @ t0, jac @ n0
            acc_t.push(torch.nan_to_num(t1.transpose(-1, -2) @ jt), moved)
            acc_n.push(torch.nan_to_num(n1.transpose(-1, -2) @ jn), moved)
            keep = moved.unsqueeze(-1).unsqueeze(-1)
            t0, n0 = torch.where(keep, t1, t0), torch.where(keep, n1, n0)
            if it >= total - L:
                tail[it - (total - L)] = x
            meter.update()
    finally:
        meter.close()
    alive = (code == oc.OK).unsqueeze(-1)
    tang = acc_t.exponents(s.steps, stepper.dt)
    trans = acc_n.exponents(s.steps, stepper.dt)
    nan = math.nan
    return {
        "final": x,
        "code": code,
        "tangential": torch.where(alive, tang, torch.full_like(tang, nan)),
        "transverse": torch.where(alive, trans, torch.full_like(trans, nan)),
        "tail": tail,
    }

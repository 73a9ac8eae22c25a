"""Orbit classification pipeline (transient -> tangent run -> period / exponents / class / attractor labels)
and the initial states shared by the orbit analyzers.

Every function takes the analyzer's :class:`~dynlearn.params.Settings` resolved for the system
(:func:`.options.for_system`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dynlearn import outcome as oc
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import Settings
from dynlearn.progress import Meter
from dynlearn.system import Manifold, System

from .kernels import (
    APERIODIC,
    CHAOTIC,
    CONVERGED,
    NO_CLASS,
    NONE,
    PERIODIC,
    Stepper,
    advance,
    approach_kind,
    canonical_point,
    detect_period,
    label_attractors,
    tangent_run,
)
from .options import tail_len, warmup

Tensor = torch.Tensor


# -- initial states -------------------------------------------------------------------------------------------
def raw_states(system: System, settings: Settings) -> Tensor:
    """The ``(S, d)`` initial states shared by every parameter value: ``settings.states`` as given (checked
    against the system's state dim), or ``n_samples`` uniform draws from the system's domain (``seed``)."""
    states = settings.states
    if states is not None:
        x = torch.as_tensor(np.asarray(states, dtype=float), dtype=torch.float64)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != system.state_dim or x.shape[0] == 0:
            raise ShapeError(
                f"states must be a list of {system.state_dim}-D states ({', '.join(system.state_names)}), "
                f"got shape {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ParameterError("states contain NaN or infinite values")
        return x
    return system.sample_states(int(settings.n_samples), generator=torch.Generator().manual_seed(int(settings.seed)))


def resolve_manifold(system: System, manifold: Any) -> Manifold | None:
    """``None``, a declared manifold's name, or a :class:`Manifold` -> the Manifold."""
    if manifold is None or isinstance(manifold, Manifold):
        return manifold
    declared = system.manifolds()
    if not isinstance(manifold, str) or manifold not in declared:
        avail = ", ".join(declared) or "none"
        raise ParameterError(f"system {system.name!r} declares no manifold {manifold!r} (declared: {avail})")
    return declared[manifold]


def projector(manifold: Manifold, p: Mapping[str, Tensor], iters: int = 8):
    """``x -> point of the manifold``: its ``project`` when declared, else Gauss-Newton on the constraint
    ``x <- x - Dg^T (Dg Dg^T)^-1 g`` (``iters`` steps)."""
    if manifold.project is not None:
        return lambda x: manifold.project(x, p)

    def newton(x: Tensor) -> Tensor:
        for _ in range(iters):
            g, dg = constraint_jacobian(manifold, x, p)
            gram = dg @ dg.transpose(-1, -2)
            step = torch.linalg.solve(gram, g.unsqueeze(-1))
            x = x - (dg.transpose(-1, -2) @ step)[..., 0]
        return x.detach()

    return newton


def constraint_jacobian(manifold: Manifold, x: Tensor, p: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``g(x) (..., k)`` and ``Dg(x) (..., k, d)`` by autograd."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        g = manifold.constraint(xr, p)
        k = g.shape[-1]
        rows = [torch.autograd.grad(g[..., i].sum(), xr, retain_graph=i < k - 1)[0] for i in range(k)]
    return g.detach(), torch.stack(rows, dim=-2)


def start_states(system: System, raw: Tensor, p: Mapping[str, Tensor], manifold: Manifold | None,
                 B: int) -> Tensor:
    """Initial states ``(B, S, d)``: ``raw (S, d)`` for every parameter value, projected onto ``manifold``."""
    x = raw.unsqueeze(0).expand(B, *raw.shape).clone()
    if manifold is not None:
        x = projector(manifold, system.expand_params(p))(x)
    return x


# -- classification -------------------------------------------------------------------------------------------
def classify_orbits(system: System, p: Mapping[str, Tensor], x0: Tensor, settings: Settings, *,
                    show_progress: bool | None = None, desc: str = "orbits") -> dict[str, Tensor]:
    """Iterate the orbits ``x0 (B, S, d)`` (parameters of batch shape ``(B,)``) and classify them.

    Returns tensors: ``final (B,S,d)``, ``code (B,S)`` (outcome: ok / diverged / nan), ``lyapunov (B,S,k)``,
    ``tail (tail,B,S,d)``, ``period (B,S)``, ``cls (B,S)`` (``none`` where the outcome is not ok),
    ``approach (B,S)``, ``attractor (B,S)``, ``n_attractors (B,)`` and, for flows, ``period_time (B,S)``.
    """
    s = settings
    stepper = Stepper(system, system.expand_params(p), s.flow_time, s.dt)
    code = oc.classify(x0, s.max_norm)
    meter = Meter(s.transient + s.steps, desc, show_progress, unit="step")
    try:
        warm = warmup(s)
        x, code = advance(stepper, x0, code, s.transient - warm, s.max_norm, meter)
        x, code, lam, tail = tangent_run(stepper, x, code, s.steps, tail_len(s), s.max_norm, meter, warm,
                                         s.n_exponents)
    finally:
        meter.close()
    ok = code == oc.OK
    period = torch.where(ok, detect_period(tail, s.max_period, s.period_tol),
                         torch.zeros_like(code, dtype=torch.int64))
    scale = 1 + x.abs().amax(-1)
    out: dict[str, Tensor] = {}
    if stepper.is_flow:
        speed = system.rhs(x, stepper.p).abs().amax(-1) * stepper.dt
        still = (period >= 1) & (speed <= 10 * s.period_tol * scale)
        converged = ok & still
        cand = ok & ~converged & (lam[..., 0] <= s.lyapunov_tol)
        ptime, key_cycle = _cycles(stepper, x, cand, s, scale)
        cycle = cand & torch.isfinite(ptime)
        out["period_time"] = ptime
    else:
        converged = ok & (period == 1)
        cycle = ok & (period > 1)
    chaotic = ok & ~converged & ~cycle & (lam[..., 0] > s.lyapunov_tol)
    cls = torch.full(code.shape, APERIODIC, dtype=torch.int8)
    cls = torch.where(chaotic, CHAOTIC, cls)
    cls = torch.where(cycle, PERIODIC, cls)
    cls = torch.where(converged, CONVERGED, cls)
    cls = torch.where(ok, cls, NO_CLASS).to(torch.int8)  # a failure is an outcome, not a class
    approach = torch.where(converged, approach_kind(stepper, x), torch.tensor(NONE, dtype=torch.int8))
    # attractor identity: the fixed point, the canonical cycle point (maps), the cycle's bounding box (flows)
    key = torch.where(converged.unsqueeze(-1), x, canonical_point(tail, period))
    match_tol = max(100 * s.period_tol, 1e-9) * scale
    if stepper.is_flow:
        key = torch.where(cycle.unsqueeze(-1), key_cycle, torch.where(converged.unsqueeze(-1), x, key))
        match_tol = torch.where(cycle, 0.02 * scale, match_tol)
        per = torch.where(cycle, torch.zeros_like(period), period)
    else:
        per = period
    has = converged | cycle
    attractor, n_att = label_attractors(key, torch.where(has, per, torch.zeros_like(per)), has, match_tol)
    out.update(final=x, code=code, lyapunov=lam, tail=tail[-s.tail:], period=period, cls=cls,
               approach=approach, attractor=attractor, n_attractors=n_att)
    return out


def _cycles(stepper: Stepper, x: Tensor, cand: Tensor, settings: Settings, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Limit cycles of a flow by first return: ``(period time, NaN where none; bounding-box low corner)``."""
    ptime = torch.full(cand.shape, math.nan, dtype=x.dtype)
    low = torch.full_like(x, math.nan)
    if not bool(cand.any()):
        return ptime, low
    K = int(settings.max_period) * stepper.n_sub
    path = stepper.fine(x, K)  # (K+1, B, S, d)
    dist = (path[1:] - path[0]).norm(dim=-1)  # k = 1..K
    hop = (path[1:] - path[:-1]).norm(dim=-1).amax(0)
    ret_tol = hop + 10 * settings.period_tol * scale
    dm, d0, dp = dist[:-2], dist[1:-1], dist[2:]  # k - 1, k, k + 1 for k = 2..K-1
    is_min = (dm > d0) & (d0 <= dp) & (d0 <= ret_tol)
    ks = torch.arange(2, K).reshape(-1, *([1] * cand.dim()))
    first = torch.where(is_min, ks, torch.full_like(ks, K + 1)).amin(0)
    found = cand & (first <= K - 1)
    k = first.clamp(2, K - 1)
    Dm = dist.gather(0, (k - 2).unsqueeze(0))[0] ** 2
    D0 = dist.gather(0, (k - 1).unsqueeze(0))[0] ** 2
    Dp = dist.gather(0, k.unsqueeze(0))[0] ** 2
    curv = Dm - 2 * D0 + Dp
    delta = torch.where(curv > 0, (Dm - Dp) / (2 * curv.clamp_min(1e-300)), torch.zeros_like(curv))
    ptime = torch.where(found, (k + delta.clamp(-1, 1)) * stepper.h, ptime)
    idx = torch.arange(K + 1).reshape(-1, *([1] * cand.dim()))
    inside = (idx <= k.unsqueeze(0)).unsqueeze(-1)
    box = torch.where(inside, path, torch.full_like(path, math.inf)).amin(0)
    low = torch.where(found.unsqueeze(-1), box, low)
    return ptime, low


def signature(res: Mapping[str, Tensor]) -> Tensor:
    """One integer per orbit that changes exactly when its (outcome, class, period, approach) changes."""
    return (res["code"].long() * 100_000_000 + res["cls"].long() * 1_000_000 + res["period"].long() * 10
            + res["approach"].long())

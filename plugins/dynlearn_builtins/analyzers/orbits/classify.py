"""Orbit classification pipeline (transient -> tangent run -> period / exponents / class / attractor labels)
and the initial states shared by the orbit analyzers.

Every function takes the analyzer's :class:`~dynlearn.params.Settings` resolved for the system
(:func:`.options.for_system`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from dynlearn import lyapunov as ly
from dynlearn import outcome as oc
from dynlearn.errors import ParameterError
from dynlearn.params import Settings
from dynlearn.periodic import Circle, distance, wrap
from dynlearn.progress import Meter
from dynlearn.sweep import Batch
from dynlearn.system import Manifold, System

from .._shared.states import user_states
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
    shrinking,
    tangent_run,
)
from .options import tail_len, warmup

Tensor = torch.Tensor


# -- initial states -------------------------------------------------------------------------------------------
def initial_states(batch: Batch, settings: Settings, owner: str) -> Tensor:
    """The ``(B, S, d)`` float64 initial states of the orbit analyzers (not yet projected onto a manifold).

    ``n_samples`` uniform draws from the system's domain (``seed``; the same for every sweep element), then the
    user's ``initial_states`` (an array ``(sample, state)`` for every element or a DataArray ``(sweep dims...,
    sample, state)`` per element, see :func:`~dynlearn_builtins.analyzers._shared.states.user_states`) with
    Gaussian noise of standard deviation ``initial_noise``.

    Raises
    ------
    ParameterError
        ``n_samples=0`` without user states.
    ShapeError
        User states of the wrong shape (:func:`user_states`).
    """
    system = batch.system
    user, n = settings.initial_states, int(settings.n_samples)
    if user is None and n == 0:
        raise ParameterError(f"{owner}: n_samples=0 needs initial_states (the starting states to use)")
    g = torch.Generator().manual_seed(int(settings.seed))
    parts = []
    if n:
        drawn = system.sample_states(n, generator=g).to(torch.float64)
        parts.append(drawn.unsqueeze(0).expand(batch.size, n, system.state_dim))
    if user is not None:
        parts.append(user_states(user, batch, system, noise=float(settings.initial_noise), generator=g, name="initial_states"))
    return torch.cat(parts, 1)


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


def start_states(system: System, x: Tensor, p: Mapping[str, Tensor], manifold: Manifold | None) -> Tensor:
    """Initial states ``x (B, S, d)`` of the parameter values ``p``, projected onto ``manifold`` (a copy)."""
    x = x.clone()
    if manifold is not None:
        x = projector(manifold, system.expand_params(p))(x)
    return x


# -- classification -------------------------------------------------------------------------------------------
def classify_orbits(system: System, p: Mapping[str, Tensor], x0: Tensor, settings: Settings, *,
                    show_progress: bool | None = None, desc: str = "orbits") -> dict[str, Tensor]:
    """Iterate the orbits ``x0 (B, S, d)`` (parameters of batch shape ``(B,)``) and classify them.

    An orbit is given a class only from converged evidence (:func:`_judge`); the others are integrated further
    (each round twice as long as the last, continuing from where they are) while the tangent steps stay within
    ``max_steps``, and are otherwise labeled with the outcome ``unresolved`` (class ``none``).

    Returns tensors: ``final (B,S,d)``, ``code (B,S)`` (outcome: ok / diverged / nan / unresolved),
    ``lyapunov (B,S,k)``, ``tail (tail,B,S,d)``, ``period (B,S)``, ``cls (B,S)`` (``none`` where the outcome is
    not ok), ``approach (B,S)``, ``attractor (B,S)``, ``n_attractors (B,)``, ``steps (B,S)`` (steps after the
    transient) and, for flows, ``period_time (B,S)``.
    """
    s = settings
    circle = Circle.of(system)
    stepper = Stepper(system, system.expand_params(p), s.flow_time, s.dt)
    code = oc.classify(x0, s.max_norm)
    meter = Meter(s.transient + s.steps, desc, show_progress, unit="step")
    try:
        warm = warmup(s)
        x, code = advance(stepper, x0, code, s.transient - warm, s.max_norm, meter)
        run = _run(stepper, x, code, s.steps, warm, s, meter)
    finally:
        meter.close()
    run.update(_judge(stepper, run, s, circle))
    run["steps"] = torch.full(code.shape, s.steps, dtype=torch.int64)
    _extend(system, stepper, run, s, circle, show_progress, desc)
    return _labels(stepper, run, s, circle)


def _run(stepper: Stepper, x: Tensor, code: Tensor, steps: int, warm: int, settings: Settings,
         meter: Meter | None) -> dict[str, Tensor]:
    x, code, lam, tail, ft = tangent_run(stepper, x, code, steps, tail_len(settings), settings.max_norm, meter,
                                         warm, settings.n_exponents)
    return {"final": x, "code": code, "lyapunov": lam, "tail": tail, "finite_time": ft}


def _tolerance(settings: Settings, dtype: torch.dtype) -> float:
    """The periodicity / convergence tolerance: ``period_tol``, but never below 64 rounding units of ``dtype``
    (a float32 orbit jitters by a few ulps around its fixed point)."""
    return max(float(settings.period_tol), 64 * torch.finfo(dtype).eps)


def _judge(stepper: Stepper, run: Mapping[str, Tensor], settings: Settings, circle: Circle) -> dict[str, Tensor]:
    """Classes from the evidence of one tangent run, and whether that evidence has converged (``settled``).

    - converged / periodic: the tail repeats (period ``p``; for a flow, a still point, or a first return with a
      leading exponent ~0: the direction along a cycle is neutral, so a slow spiral is never a cycle);
    - chaotic: no period, and the leading exponent is above ``lyapunov_tol`` over the whole run and over each
      half of it, the halves agreeing to ``max(lyapunov_tol, lambda_1 / 2)``;
    - aperiodic (quasi-periodic): no period, ``|lambda_1| <= lyapunov_tol`` and return distances that no longer
      shrink (:func:`~.kernels.shrinking`).

    Anything else has not settled: e.g. a negative leading exponent without a period (still converging to a
    fixed point or cycle, never quasi-periodic), or finite-time exponents that disagree.
    """
    s = settings
    x, code, lam, tail, ft = (run[k] for k in ("final", "code", "lyapunov", "tail", "finite_time"))
    ok = code == oc.OK
    tol = _tolerance(s, x.dtype)
    period = torch.where(ok, detect_period(tail, s.max_period, tol, circle), torch.zeros_like(code, dtype=torch.int64))
    scale = 1 + x.abs().amax(-1)
    out: dict[str, Tensor] = {}
    if stepper.is_flow:
        speed = stepper.system.rhs(x, stepper.p).abs().amax(-1) * stepper.dt
        converged = ok & (period >= 1) & (speed <= 10 * tol * scale)
        cand = ok & ~converged & (lam[..., 0].abs() <= s.lyapunov_tol)  # a flow's cycle has a zero exponent
        ptime, key_cycle = _cycles(stepper, x, cand, s, scale, circle)
        cycle = cand & torch.isfinite(ptime)
        out.update(period_time=ptime, key_cycle=key_cycle)
    else:
        converged = ok & (period == 1)
        cycle = ok & (period > 1)
    rest = ok & ~converged & ~cycle
    verdict = ly.aperiodic_verdict(lam[..., 0], ft[..., 0], s.lyapunov_tol)  # ft[..., 0]: leading, per window
    chaotic = rest & (verdict == ly.CHAOTIC)
    flat = rest & (verdict == ly.FLAT)
    if bool(flat.any()):
        still = torch.zeros_like(flat)
        still[flat] = shrinking(tail[:, flat], s.max_period, circle)
        flat = flat & ~still
    out.update(period=period, converged=converged, cycle=cycle, chaotic=chaotic, aperiodic=flat,
               settled=~ok | converged | cycle | chaotic | flat)
    return out


def _extend(system: System, stepper: Stepper, run: dict[str, Tensor], settings: Settings, circle: Circle,
            show_progress: bool | None, desc: str) -> None:
    """Integrate the orbits that have not settled further, in place: rounds of ``2, 4, 8, ...`` times ``steps``
    while the total stays within ``max_steps`` (each round continues from where the orbit is, as more transient,
    and measures its last ``steps`` steps with the tangent dynamics again, so a round costs little more than
    plain steps); those still unsettled get the outcome ``unresolved``."""
    s = settings
    cap = int(s.max_steps) if s.max_steps is not None else 8 * int(s.steps)
    used, n = int(s.steps), int(s.steps)
    shape = run["code"].shape
    while True:
        pending = (run["code"] == oc.OK) & ~run["settled"]
        if not bool(pending.any()) or used + 2 * n > cap:
            break
        n *= 2
        used += n
        idx = pending.nonzero(as_tuple=True)
        p = {k: v.expand(*shape, *v.shape[len(shape):])[idx] for k, v in stepper.p.items()}
        sub = Stepper(system, p, s.flow_time, s.dt)
        m = int(s.steps)
        meter = Meter(n, f"{desc}: longer run of {len(idx[0])} unsettled", show_progress, unit="step")
        try:
            x, code = advance(sub, run["final"][idx], run["code"][idx], n - m - m // 4, s.max_norm, meter)
            res = _run(sub, x, code, m, m // 4, s, meter)
        finally:
            meter.close()
        res.update(_judge(sub, res, s, circle))
        for k, v in res.items():
            if k in ("tail", "finite_time"):
                continue
            run[k][idx] = v.to(run[k].dtype)
        run["tail"][:, idx[0], idx[1]] = res["tail"]
        run["steps"][idx] = used
    run["code"] = torch.where((run["code"] == oc.OK) & ~run["settled"], torch.tensor(oc.UNRESOLVED, dtype=torch.int8),
                              run["code"])


def _labels(stepper: Stepper, run: Mapping[str, Tensor], settings: Settings, circle: Circle) -> dict[str, Tensor]:
    """Class codes, approach, attractor numbers of a judged run (outputs of :func:`classify_orbits`)."""
    s = settings
    code, period = run["code"], run["period"]
    x = wrap(run["final"], circle)
    tail = wrap(run["tail"], circle)
    ok = code == oc.OK
    converged, cycle = ok & run["converged"], ok & run["cycle"]
    cls = torch.full(code.shape, APERIODIC, dtype=torch.int8)
    cls = torch.where(ok & run["chaotic"], CHAOTIC, cls)
    cls = torch.where(cycle, PERIODIC, cls)
    cls = torch.where(converged, CONVERGED, cls)
    cls = torch.where(ok, cls, NO_CLASS).to(torch.int8)  # a failure or an unresolved orbit has no class
    approach = torch.where(converged, approach_kind(stepper, run["final"]), torch.tensor(NONE, dtype=torch.int8))
    # attractor identity: the fixed point, the canonical cycle point (maps), the cycle's bounding box (flows)
    scale = 1 + x.abs().amax(-1)
    key = torch.where(converged.unsqueeze(-1), x, canonical_point(tail, period))
    match_tol = max(100 * _tolerance(s, x.dtype), 1e-9) * scale
    per = period
    if stepper.is_flow:
        key = torch.where(cycle.unsqueeze(-1), run["key_cycle"], torch.where(converged.unsqueeze(-1), x, key))
        match_tol = torch.where(cycle, 0.02 * scale, match_tol)
        per = torch.where(cycle, torch.zeros_like(period), period)
    has = converged | cycle
    attractor, n_att = label_attractors(key, torch.where(has, per, torch.zeros_like(per)), has, match_tol)
    lam = torch.where(ok.unsqueeze(-1) | (code == oc.UNRESOLVED).unsqueeze(-1), run["lyapunov"],
                      torch.full_like(run["lyapunov"], math.nan))
    out = {"final": x, "code": code, "lyapunov": lam, "tail": tail[-s.tail:], "period": torch.where(ok, period, 0),
           "cls": cls, "approach": approach, "attractor": attractor, "n_attractors": n_att, "steps": run["steps"]}
    if stepper.is_flow:
        out["period_time"] = torch.where(cycle, run["period_time"], torch.full_like(run["period_time"], math.nan))
    return out


def _cycles(stepper: Stepper, x: Tensor, cand: Tensor, settings: Settings, scale: Tensor,
            circle: Circle) -> tuple[Tensor, Tensor]:
    """Limit cycles of a flow by first return (distances modulo periodic coordinates: a rotation of an angle is
    a cycle): ``(period time, NaN where none; bounding-box low corner of the wrapped cycle)``."""
    ptime = torch.full(cand.shape, math.nan, dtype=x.dtype)
    low = torch.full_like(x, math.nan)
    if not bool(cand.any()):
        return ptime, low
    K = int(settings.max_period) * stepper.n_sub
    path = stepper.fine(x, K)  # (K+1, B, S, d)
    dist = distance(path[1:], path[0], circle)  # k = 1..K
    hop = distance(path[1:], path[:-1], circle).amax(0)
    ret_tol = hop + 10 * _tolerance(settings, x.dtype) * scale
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
    box = torch.where(inside, wrap(path, circle), torch.full_like(path, math.inf)).amin(0)
    low = torch.where(found.unsqueeze(-1), box, low)
    return ptime, low


def signature(res: Mapping[str, Tensor]) -> Tensor:
    """One integer per orbit that changes exactly when its (outcome, class, period, approach) changes."""
    return (res["code"].long() * 100_000_000 + res["cls"].long() * 1_000_000 + res["period"].long() * 10
            + res["approach"].long())

"""Orbit classification pipeline (transient -> tangent run -> period / exponents / class / attractor labels)
and the initial states shared by the orbit analyzers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dynlearn import outcome as oc
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.progress import Meter
from dynlearn.system import Manifold, System

from .kernels import (
    APERIODIC,
    CHAOTIC,
    CONVERGED,
    DIVERGED,
    NAN,
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

Tensor = torch.Tensor


@dataclass
class OrbitOptions:
    """Iteration budget and tolerances of :func:`classify_orbits` (see the ``orbits`` analyzer)."""

    transient: int
    steps: int
    max_period: int
    tol: float
    lyap_tol: float
    max_norm: float
    record: int
    flow_time: float
    flow_step: float
    n_exponents: int | None = None

    @classmethod
    def build(cls, budget: tuple[int, int], transient: int | None, steps: int | None, **kw) -> OrbitOptions:
        """Checked options; ``transient`` / ``steps`` left ``None`` take the ``budget`` defaults."""
        opt = cls(transient=budget[0] if transient is None else transient,
                  steps=budget[1] if steps is None else steps, **kw)
        opt.check()
        return opt

    def check(self) -> None:
        for name in ("transient", "max_period", "record"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and v >= (0 if name == "transient" else 1)):
                raise ParameterError(f"{name} must be an integer >= {0 if name == 'transient' else 1}, got {v!r}")
        if not (isinstance(self.steps, (int, np.integer)) and self.steps >= 1
                and self.steps + self.warmup >= self.tail_len):
            raise ParameterError(
                f"steps + min(transient, steps // 4) must be >= max(record, 2 max_period) = {self.tail_len}, "
                f"got steps={self.steps!r}, transient={self.transient!r}"
            )
        for name in ("tol", "max_norm", "flow_time", "flow_step"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ParameterError(f"{name} must be a finite number > 0, got {v!r}")
        if not (isinstance(self.lyap_tol, (int, float)) and math.isfinite(self.lyap_tol) and self.lyap_tol >= 0):
            raise ParameterError(f"lyap_tol must be a finite number >= 0, got {self.lyap_tol!r}")
        if self.n_exponents is not None and not (isinstance(self.n_exponents, (int, np.integer))
                                                 and self.n_exponents >= 1):
            raise ParameterError(f"n_exponents must be an integer >= 1 or None, got {self.n_exponents!r}")

    @property
    def warmup(self) -> int:
        """Tangent warm-up steps taken from the end of the transient."""
        return min(int(self.transient), int(self.steps) // 4)

    @property
    def tail_len(self) -> int:
        return max(int(self.record), 2 * int(self.max_period))


# -- initial states -------------------------------------------------------------------------------------------
def raw_states(system: System, states: Any, n_states: int, seed: int) -> Tensor:
    """The ``(S, d)`` initial states shared by every parameter value: ``states`` as given, or ``n_states``
    uniform draws from the system's domain (seeded)."""
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
    if not (isinstance(n_states, (int, np.integer)) and n_states >= 1):
        raise ParameterError(f"n_states must be an integer >= 1, got {n_states!r}")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        raise ParameterError(f"seed must be an integer >= 0, got {seed!r}")
    return system.sample_states(int(n_states), generator=torch.Generator().manual_seed(int(seed)))


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
def classify_orbits(system: System, p: Mapping[str, Tensor], x0: Tensor, opt: OrbitOptions, *,
                    show_progress: bool | None = None, desc: str = "orbits") -> dict[str, Tensor]:
    """Iterate the orbits ``x0 (B, S, d)`` (parameters of batch shape ``(B,)``) and classify them.

    Returns tensors: ``final (B,S,d)``, ``code (B,S)`` (outcome), ``lyapunov (B,S,k)``, ``tail (record,B,S,d)``,
    ``period (B,S)``, ``cls (B,S)``, ``approach (B,S)``, ``attractor (B,S)``, ``n_attractors (B,)`` and, for
    flows, ``period_time (B,S)``.
    """
    stepper = Stepper(system, system.expand_params(p), opt.flow_time, opt.flow_step)
    code = oc.classify(x0, opt.max_norm)
    meter = Meter(opt.transient + opt.steps, desc, show_progress, unit="step")
    try:
        warmup = opt.warmup
        x, code = advance(stepper, x0, code, opt.transient - warmup, opt.max_norm, meter)
        x, code, lam, tail = tangent_run(stepper, x, code, opt.steps, opt.tail_len, opt.max_norm, meter, warmup,
                                         opt.n_exponents)
    finally:
        meter.close()
    ok = code == oc.OK
    period = torch.where(ok, detect_period(tail, opt.max_period, opt.tol), torch.zeros_like(code, dtype=torch.int64))
    scale = 1 + x.abs().amax(-1)
    out: dict[str, Tensor] = {}
    if stepper.is_flow:
        speed = system.rhs(x, stepper.p).abs().amax(-1) * stepper.dt
        still = (period >= 1) & (speed <= 10 * opt.tol * scale)
        converged = ok & still
        cand = ok & ~converged & (lam[..., 0] <= opt.lyap_tol)
        ptime, key_cycle = _cycles(stepper, x, cand, opt, scale)
        cycle = cand & torch.isfinite(ptime)
        out["period_time"] = ptime
    else:
        converged = ok & (period == 1)
        cycle = ok & (period > 1)
    chaotic = ok & ~converged & ~cycle & (lam[..., 0] > opt.lyap_tol)
    cls = torch.full(code.shape, APERIODIC, dtype=torch.int8)
    cls = torch.where(chaotic, CHAOTIC, cls)
    cls = torch.where(cycle, PERIODIC, cls)
    cls = torch.where(converged, CONVERGED, cls)
    cls = torch.where(code == oc.DIVERGED, DIVERGED, cls)
    cls = torch.where(code == oc.NAN, NAN, cls).to(torch.int8)
    approach = torch.where(converged, approach_kind(stepper, x), torch.tensor(NONE, dtype=torch.int8))
    # attractor identity: the fixed point, the canonical cycle point (maps), the cycle's bounding box (flows)
    key = torch.where(converged.unsqueeze(-1), x, canonical_point(tail, period))
    match_tol = max(100 * opt.tol, 1e-9) * scale
    if stepper.is_flow:
        key = torch.where(cycle.unsqueeze(-1), key_cycle, torch.where(converged.unsqueeze(-1), x, key))
        match_tol = torch.where(cycle, 0.02 * scale, match_tol)
        per = torch.where(cycle, torch.zeros_like(period), period)
    else:
        per = period
    has = converged | cycle
    attractor, n_att = label_attractors(key, torch.where(has, per, torch.zeros_like(per)), has, match_tol)
    out.update(final=x, code=code, lyapunov=lam, tail=tail[-opt.record:], period=period, cls=cls,
               approach=approach, attractor=attractor, n_attractors=n_att)
    return out


def _cycles(stepper: Stepper, x: Tensor, cand: Tensor, opt: OrbitOptions, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Limit cycles of a flow by first return: ``(period time, NaN where none; bounding-box low corner)``."""
    ptime = torch.full(cand.shape, math.nan, dtype=x.dtype)
    low = torch.full_like(x, math.nan)
    if not bool(cand.any()):
        return ptime, low
    K = int(opt.max_period) * stepper.n_sub
    path = stepper.fine(x, K)  # (K+1, B, S, d)
    dist = (path[1:] - path[0]).norm(dim=-1)  # k = 1..K
    hop = (path[1:] - path[:-1]).norm(dim=-1).amax(0)
    ret_tol = hop + 10 * opt.tol * scale
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
    """One integer per orbit that changes exactly when its (class, period, approach) changes."""
    return res["cls"].long() * 1_000_000 + res["period"].long() * 10 + res["approach"].long()

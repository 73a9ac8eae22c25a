"""Batched orbit machinery shared by the ``orbits`` and ``transverse`` analyzers.

Everything here works on states ``x`` of shape ``(B, S, d)`` (``B`` parameter values, ``S`` orbits each) with
parameters of batch shape ``(B, 1)`` (``system.expand_params``): one Python loop over *iterations*, never over
orbits or parameter values.

- :class:`Stepper`: one step of a map, or of the stroboscopic map ``x -> phi_T(x)`` of a flow (``n_sub`` RK4
  steps of size ``h = T / n_sub``), and its Jacobian (the map's ``jacobian``; for a flow autograd through the
  RK4 steps, i.e. the exact Jacobian of the discrete stroboscopic map).
- :func:`advance`: iterate with the core's divergence rule (:func:`dynlearn.stepper.freeze`: an orbit leaving
  ``|x|_inf <= max_norm`` or turning NaN is frozen at its last finite state and labeled with a
  :mod:`dynlearn.outcome` code, the batch goes on).
- :func:`tangent_run`: iterate with the tangent dynamics through :func:`dynlearn.lyapunov.spectrum` (the one
  spectrum implementation: QR every stroboscopic step, float64 logs, finite-time exponents over the halves of
  the run); exponents per iteration for maps, per unit time for flows.
- :func:`detect_period`: smallest ``p <= max_period`` with ``|x_{t+p} - x_t| <= tol (1 + |x|)`` over a window;
  :func:`shrinking`: whether the return distances still shrink (an orbit not settled yet). Both take periodic
  coordinates modulo their period (:mod:`dynlearn.periodic`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dynlearn import outcome as oc
from dynlearn.errors import ParameterError
from dynlearn.periodic import Circle, delta
from dynlearn.progress import Meter
from dynlearn.lyapunov import ExponentAccumulator, spectrum
from dynlearn.stepper import GenericStepper, freeze, iterate, step_jacobian

__all__ = ["CLASS_NAMES", "APPROACH_NAMES", "ExponentAccumulator", "Stepper", "advance", "tangent_run", "detect_period",
           "shrinking", "approach_kind", "canonical_point", "label_attractors", "flag_attrs"]

Tensor = torch.Tensor

#: orbit classes (``orbit`` variable codes): kinds only; an orbit whose outcome is not ``ok`` (diverged, nan,
#: masked: the ``outcome`` variable, :mod:`dynlearn.outcome`) has the class ``none``
CLASS_NAMES = ("converged", "periodic", "chaotic", "aperiodic", "none")
CONVERGED, PERIODIC, CHAOTIC, APERIODIC, NO_CLASS = range(5)
#: how a converged orbit approaches its fixed point (dominant non-neutral multiplier / eigenvalue)
APPROACH_NAMES = ("none", "monotone", "oscillating", "spiral")
NONE, MONOTONE, OSCILLATING, SPIRAL = range(4)



def flag_attrs(long_name: str, names: tuple[str, ...]) -> dict[str, Any]:
    """CF flag attrs for integer codes ``0 .. len(names) - 1`` (classification variables; outcomes use
    :func:`dynlearn.outcome.flag_attrs`)."""
    return {"long_name": long_name, "flag_values": list(range(len(names))), "flag_meanings": " ".join(names),
            "units": "1"}


class Stepper:
    """One step of a map, or of the stroboscopic map of a flow, batched; with its Jacobian (the core stepper's
    :func:`~dynlearn.stepper.rk4_step` / :func:`~dynlearn.stepper.step_jacobian`).

    Parameters
    ----------
    system
        A map or a flow.
    p
        Parameter tensors broadcasting against the states' batch shape.
    flow_time, dt
        Stroboscopic period ``T`` and the largest RK4 step (flows only; both > 0, checked by the options).
    """

    def __init__(self, system, p, flow_time: float = 0.5, dt: float = 0.05) -> None:
        self.system, self.p = system, p
        self.is_flow = system.kind == "flow"
        if self.is_flow:
            self.n_sub = max(1, int(math.ceil(flow_time / dt - 1e-9)))
            self.h = flow_time / self.n_sub
            self.dt = float(flow_time)
        else:
            self.n_sub, self.h, self.dt = 1, 1.0, 1.0
        self._one = GenericStepper(system, None, p, self.h).step

    def step(self, x: Tensor) -> Tensor:
        for _ in range(self.n_sub):
            x = self._one(x)
        return x

    def fine(self, x: Tensor, n: int) -> Tensor:
        """``n`` single RK4 steps of size ``h``, states recorded: ``(n + 1, *x.shape)`` (flows; the core's
        :func:`~dynlearn.stepper.iterate` with no bound on the norm)."""
        return iterate(self.system, x, self.p, n, max_norm=math.inf, record_every=1, step=self._one).states

    def step_jac(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(step(x), J)`` with ``J[..., i, j] = d step_i / d x_j``."""
        return step_jacobian(self.system, x, self.p, dt=self.h, n=self.n_sub)

    def vector_field_jacobian(self, x: Tensor) -> Tensor:
        """Jacobian of the map (maps) or of the vector field ``f`` (flows) at ``x``."""
        return self.system.jacobian(x, self.p)


def advance(stepper: Stepper, x: Tensor, code: Tensor, n: int, max_norm: float, meter: Meter | None = None,
            project=None) -> tuple[Tensor, Tensor]:
    """Iterate ``n`` steps (no tangent dynamics): the core's step and its divergence rule
    (:func:`dynlearn.stepper.freeze`), as :func:`dynlearn.stepper.iterate` does, without its per-step escape
    bookkeeping (10% of the two-factor phase diagram) and with an early exit once every orbit has failed;
    ``project(x)`` is applied after each step when given. Returns ``(x, code)``."""
    for k in range(n):
        nxt = stepper.step(x)
        if project is not None:
            nxt = project(nxt)
        x, code, _ = freeze(x, nxt, code, max_norm)
        if meter is not None:
            meter.update()
        if k % 64 == 63 and not bool((code == oc.OK).any()):
            if meter is not None:
                meter.update(n - k - 1)
            break
    return x, code


def tangent_run(stepper: Stepper, x: Tensor, code: Tensor, n: int, tail_len: int, max_norm: float,
                meter: Meter | None = None, warmup: int = 0, n_exponents: int | None = None,
                windows: int = 2) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Iterate ``warmup + n`` (stroboscopic) steps with tangent dynamics, accumulating exponents over the last
    ``n`` (the warm-up aligns the tangent vectors with the Oseledets directions, removing the O(1/n) bias of the
    start): :func:`dynlearn.lyapunov.spectrum`, with the ``n_sub`` RK4 steps of a flow's stroboscopic step between
    re-orthonormalisations.

    Returns ``(x, code, exponents (..., k), tail (L, ..., d), finite_time (..., windows, k))`` (the
    ``k = n_exponents`` largest, default all; finite-time exponents over ``windows`` equal parts of the run, in
    Gram-Schmidt order); exponents of orbits that diverged are NaN, ``tail`` holds the last ``tail_len`` states.
    """
    if warmup + n < tail_len:
        raise ParameterError(f"steps ({warmup} + {n}) must be at least the recorded tail length ({tail_len})")
    r = stepper.n_sub
    win = n // windows if n >= windows else None
    sp = spectrum(stepper.system, x, stepper.p, steps=n * r, dt=stepper.h, transient=warmup * r,
                  warmup=warmup * r, k=n_exponents, renorm_every=r, window=win and win * r,
                  max_norm=max_norm, tail=tail_len, code=code, meter=meter and _Every(meter, r))
    ft = sp.finite_time if sp.finite_time is not None else sp.exponents.unsqueeze(-2)
    return sp.final, sp.outcome, sp.exponents, sp.tail, ft


class _Every:
    """A meter counting one update per ``r`` RK4 steps (one stroboscopic step)."""

    def __init__(self, meter: Meter, r: int) -> None:
        self.meter, self.r, self.k = meter, r, 0

    def update(self, n: int = 1) -> None:
        self.k += n
        if self.k >= self.r:
            self.meter.update(self.k // self.r)
            self.k %= self.r


def detect_period(tail: Tensor, max_period: int, tol: float, circle: Circle | None = None) -> Tensor:
    """Smallest ``p <= max_period`` with ``|x_{t} - x_{t-p}|_inf <= tol (1 + |x_T|_inf)`` for the last
    ``max_period`` states ``t`` of ``tail (L, ..., d)`` (``L >= 2 max_period``); 0 where none. int64.

    Differences of periodic coordinates are taken modulo their period (``circle``,
    :func:`dynlearn.periodic.delta`): an angle that advances by a whole turn every ``p`` steps has period ``p``.
    """
    circle = circle or Circle.none(tail.shape[-1])
    L = tail.shape[0]
    last = tail[-1]
    scale = tol * (1 + last.abs().amax(-1))
    dist = delta(tail[L - 1 - max_period: L - 1].flip(0), last, circle).abs().amax(-1)  # (P, ...): k = 1..P
    hit = dist <= scale
    ks = torch.arange(1, max_period + 1).reshape(-1, *([1] * (hit.dim() - 1)))
    cand = torch.where(hit, ks, torch.full_like(ks, max_period + 1)).amin(0)
    found = cand <= max_period
    p = torch.where(found, cand, torch.ones_like(cand))
    # verify: the whole window of max_period states repeats with period p
    j = torch.arange(max_period).reshape(-1, *([1] * p.dim()))
    idx_a = (L - 1 - j).expand(max_period, *p.shape)
    idx_b = (L - 1 - j - p.unsqueeze(0)).clamp_min(0)
    d = tail.shape[-1]
    xa = tail.gather(0, idx_a.unsqueeze(-1).expand(*idx_a.shape, d))
    xb = tail.gather(0, idx_b.unsqueeze(-1).expand(*idx_b.shape, d))
    ok = (delta(xa, xb, circle).abs().amax(-1) <= scale).all(0)
    return torch.where(found & ok, p, torch.zeros_like(p))


def shrinking(tail: Tensor, max_period: int, circle: Circle | None = None, ratio: float = 0.5) -> Tensor:
    """Whether the orbits of ``tail (L, ..., d)`` are still approaching a candidate cycle: for the period ``p <=
    max_period`` that repeats best over the last part of the tail, the largest return distance
    ``|x_t - x_{t-p}|_inf`` (modulo periodic coordinates) over the last quarter of the tail is below ``ratio``
    times the one over the quarter before. ``(...)`` bool; a quasi-periodic or chaotic orbit keeps its return
    distances, a slowly converging one shrinks them."""
    circle = circle or Circle.none(tail.shape[-1])
    L = tail.shape[0]
    P = max(1, min(int(max_period), L // 2))
    W = max(1, (L - P) // 2)
    ret = torch.stack([delta(tail[L - 2 * W:], tail[L - 2 * W - p: L - p], circle).abs().amax(-1)
                       for p in range(1, P + 1)])  # (P, 2W, ...)
    early, late = ret[:, :W].amax(1), ret[:, W:].amax(1)
    best = late.argmin(0, keepdim=True)
    return late.gather(0, best)[0] < ratio * early.gather(0, best)[0]


def approach_kind(stepper: Stepper, x: Tensor, neutral: float = 1e-6) -> Tensor:
    """How orbits approach the fixed points ``x``: the dominant non-neutral eigenvalue of the map's Jacobian
    (largest ``|lambda| < 1``; ``> 0`` monotone, ``< 0`` oscillating, complex spiral) or, for a flow, of the
    vector field's (largest ``Re lambda < 0``; real monotone, complex spiral). int8 codes, ``none`` when every
    eigenvalue is neutral."""
    jac = stepper.vector_field_jacobian(x)
    ev = torch.linalg.eigvals(torch.nan_to_num(jac))
    if stepper.is_flow:
        key = ev.real
        ok = key < -neutral
    else:
        key = ev.abs()
        ok = key < 1 - neutral
    key = torch.where(ok, key, torch.full_like(key, -math.inf))
    idx = key.argmax(-1, keepdim=True)
    dom = ev.gather(-1, idx)[..., 0]
    any_ok = ok.any(-1)
    is_complex = dom.imag.abs() > 1e-9 * dom.abs().clamp_min(1.0)
    kind = torch.where(is_complex, SPIRAL, torch.where(dom.real >= 0, MONOTONE, OSCILLATING))
    if stepper.is_flow:
        kind = torch.where(is_complex, SPIRAL, MONOTONE)
    return torch.where(any_ok, kind, NONE).to(torch.int8)


def canonical_point(tail: Tensor, period: Tensor) -> Tensor:
    """For each periodic orbit, its cycle point with the smallest first coordinate (``(..., d)``)."""
    max_p = int(period.max()) if period.numel() else 1
    max_p = max(max_p, 1)
    L, d = tail.shape[0], tail.shape[-1]
    j = torch.arange(max_p).reshape(-1, *([1] * period.dim()))
    pts = tail[L - max_p:].flip(0)  # j = 0 is the last state
    first = torch.where(j < period.clamp_min(1).unsqueeze(0), pts[..., 0], torch.full_like(pts[..., 0], math.inf))
    idx = first.argmin(0, keepdim=True)
    return pts.gather(0, idx.unsqueeze(-1).expand(1, *idx.shape[1:], d))[0]


def label_attractors(key: Tensor, period: Tensor, has: Tensor, tol: Tensor | float) -> tuple[Tensor, Tensor]:
    """Number the distinct attractors per parameter value, in order of first appearance among the samples.

    ``key (B, S, k)``: a canonical description of each orbit's attractor; ``period (B, S)`` must agree too;
    ``has (B, S)``: orbits that have an identified attractor. Orbits are sorted by ``(period, key[..., 0])``
    per parameter value and a new attractor starts where the period changes or consecutive keys differ by more
    than ``tol`` (``O(S log S)``, no ``S x S`` table). Returns ``(labels (B, S) int64, -1 where not has;
    count (B,))``.
    """
    B, S = has.shape
    tol_t = torch.as_tensor(tol, dtype=key.dtype).expand(B, S)
    big = torch.finfo(key.dtype).max
    k0 = torch.where(has, key[..., 0], torch.full_like(key[..., 0], big))
    order = torch.argsort(k0, dim=-1, stable=True)
    per = torch.where(has, period, torch.full_like(period, -1))
    order = order.gather(-1, torch.argsort(per.gather(-1, order), dim=-1, stable=True))
    skey = key.gather(1, order.unsqueeze(-1).expand(B, S, key.shape[-1]))
    sper, shas, stol = per.gather(-1, order), has.gather(-1, order), tol_t.gather(-1, order)
    jump = torch.ones(B, S, dtype=torch.bool)
    if S > 1:
        far = (skey[:, 1:] - skey[:, :-1]).abs().amax(-1) > stol[:, 1:]
        jump[:, 1:] = far | (sper[:, 1:] != sper[:, :-1])
    jump &= shas
    cluster = jump.long().cumsum(-1) - 1  # cluster index in sorted order (valid where shas)
    cluster = torch.where(shas, cluster, torch.full_like(cluster, S))
    # first appearance (original sample index) of every cluster, then rank clusters by it
    first = torch.full((B, S + 1), S, dtype=torch.long)
    first.scatter_reduce_(1, cluster, order, reduce="amin", include_self=True)
    first = first[:, :S]
    rank = torch.argsort(torch.argsort(first, dim=-1, stable=True), dim=-1, stable=True)
    slabel = torch.where(shas, rank.gather(-1, cluster.clamp_max(S - 1)), torch.full_like(cluster, -1))
    labels = torch.empty_like(slabel).scatter_(1, order, slabel)
    return labels, jump.sum(-1)

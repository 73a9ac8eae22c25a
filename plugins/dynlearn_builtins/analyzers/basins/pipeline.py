"""The computation of the basins analyzer for a group of sweep elements (private).

:func:`analyze_group` evolves every sample of every element of the group as one batch (recording the tails),
identifies each element's attractors from its cell graph (:mod:`.attractors`), describes them (:mod:`.table`:
kind, representative state, period, batched Lyapunov spectra, stability; the members of an attractor whose
evidence has not settled are integrated further, :func:`_settle`) and bisects the brackets between
neighbouring samples of two different stable basins of every element together (:mod:`.boundary`). It returns
one :class:`Element` per sweep element.

Internally a sample's *basin index* is ``0`` for the basin of infinity (diverged), ``k >= 1`` for attractor
``k`` of its element (numbered by basin size) and ``-1`` for none (unresolved, nan); the output
(:mod:`.output`) splits it into an attractor id and an outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dynlearn import outcome as oc
from dynlearn.periodic import wrap
from dynlearn.progress import Meter
from dynlearn.stepper import evolve
from dynlearn.sweep import Batch

from .attractors import Found, TailAccumulator, extent, identify, tail_periods
from .boundary import bisect, select_pairs
from .table import describe, exponents, judge, kind_of, stability

__all__ = ["Context", "Element", "analyze_group"]

#: member orbits per undecided attractor integrated further (:func:`_settle`)
_MEMBERS = 256


@dataclass(frozen=True)
class Context:
    """What every group of one run shares: the batch, the box, the tail's cells."""

    batch: Batch
    lo: np.ndarray  # (d,) box corner
    width: np.ndarray  # (d,) cell widths
    every: int  # steps between tail states
    match_dim: str | None = None  # the sweep dim attractor ids are matched along

    @property
    def system(self):
        return self.batch.system

    @property
    def flow(self) -> bool:
        return self.system.kind == "flow"

    @property
    def period_tol(self) -> float:
        """Distance within which two tail states are the same (a thousandth of the smallest cell width)."""
        return 1e-3 * float(self.width.min())


@dataclass
class Element:
    """The result of one sweep element (``K`` attractors, ``P`` boundary points)."""

    labels: np.ndarray  # (S,) basin index: 0 diverged, k >= 1 attractor k, -1 none
    code: np.ndarray  # (S,) evolve's outcome (ok / diverged / nan)
    escape: np.ndarray  # (S,) escape step (steps when it did not leave)
    kinds: list[str]  # (K,)
    states: np.ndarray  # (K, d) representative states
    period: np.ndarray  # (K,)
    exponents: np.ndarray  # (K, d) Lyapunov spectrum, decreasing
    stable: np.ndarray  # (K,)
    extent: np.ndarray  # (K, 3, d) centre, lower and upper corner of the attractor's recurrent cells
    b_state: np.ndarray  # (P, d) boundary points
    b_tol: np.ndarray  # (P,)
    b_mixed: np.ndarray  # (P,)
    b_a: np.ndarray  # (P,) basin index of side a (0 diverged or k >= 1)
    b_b: np.ndarray  # (P,) basin index of the other end at the end of bisection (-1: none)


def _evolve(settings, ctx: Context, x0: torch.Tensor, pidx: torch.Tensor, steps: int | None = None, **kw):
    return evolve(ctx.system, x0, ctx.batch.params, pidx, steps=steps or settings.steps, dt=settings.dt,
                  max_norm=settings.max_norm, chunk_size=settings.chunk_size, kernel=settings.kernel, **kw)


def analyze_group(settings, ctx: Context, Xt: torch.Tensor, pairs: np.ndarray | list[np.ndarray], elems: range,
                  meter: Meter) -> list[Element]:
    """Basins, attractors and boundary points of the sweep elements ``elems``: samples ``Xt`` ``(S, d)`` shared
    by all with neighbour ``pairs`` ``(P, 2)``, or one ``(S, d)`` per element, ``Xt`` ``(n_e, S, d)`` with one
    ``pairs`` array per element (the user's states)."""
    system, batch, every = ctx.system, ctx.batch, ctx.every
    n_e, (S, d) = len(elems), Xt.shape[-2:]
    circle = system.circle
    acc = TailAccumulator(n_e, S, lo=ctx.lo, width=ctx.width, flow=ctx.flow, period_tol=ctx.period_tol,
                          circle=circle)
    record = _record(settings.steps, settings.tail, every)
    pidx = torch.arange(elems.start, elems.stop).repeat_interleave(S)
    x0 = Xt.repeat(n_e, 1) if Xt.dim() == 2 else Xt.reshape(-1, d)
    ev = _evolve(settings, ctx, x0, pidx, record=record, on_record=lambda i, t: acc.add(i, t),
                 meter=meter)
    code = ev.outcome.numpy().reshape(n_e, S)
    escape = ev.escape.numpy().reshape(n_e, S)
    finals = wrap(ev.final.numpy(), circle).reshape(n_e, S, d)  # theta* + 2 pi k: one representative
    found = [identify(acc.graph(e), code[e]) for e in range(n_e)]  # graph analysis is per sweep element
    period_unit = every * settings.dt if ctx.flow else 1.0
    tables = [describe(f, finals[e], acc.settled[e], acc.period[e], ctx.width, flow=ctx.flow, period_unit=period_unit)
              for e, f in enumerate(found)]
    # batched Lyapunov spectra, kinds from converged evidence and stability of every attractor of the group
    which = [(e, k) for e, f in enumerate(found) for k in range(1, f.n_attractors + 1)]
    owner = torch.as_tensor([elems.start + e for e, _ in which], dtype=torch.int64)
    params = {k: v[owner] for k, v in batch.params.items()}
    att = _Attractors([k for t in tables for k in t[0]], np.concatenate([t[1] for t in tables]),
                      np.concatenate([t[2] for t in tables]))
    att.measure(settings, system, params, range(len(which)), Xt.dtype)
    members = [np.flatnonzero(found[e].labels == k) for e, k in which]
    _settle(settings, ctx, att, params, owner, [finals[e][m] for (e, _), m in zip(which, members)], Xt.dtype,
            period_unit)
    kinds = [k or "unresolved" for k in att.kinds]
    lam = att.exponents.numpy()
    states = torch.as_tensor(att.states, dtype=Xt.dtype)
    stable = stability(system, states, params, kinds, att.period)
    br, l0, el = _boundaries(settings, ctx, Xt, pairs, elems, acc, found, stable)
    out, off = [], 0
    for e, f in enumerate(found):
        K = f.n_attractors
        m = el == elems.start + e
        mt = torch.as_tensor(m)
        out.append(Element(
            labels=f.labels, code=code[e], escape=escape[e], kinds=kinds[off : off + K], states=att.states[off : off + K],
            period=att.period[off : off + K], exponents=lam[off : off + K], stable=stable[off : off + K],
            extent=extent(f, ctx.lo, ctx.width),
            b_state=br.point[mt].numpy(), b_tol=br.tolerance[mt].numpy(), b_mixed=br.mixed[m], b_a=l0[m],
            b_b=br.other[m],
        ))
        off += K
    return out


def _record(steps: int, tail: int, every: int) -> tuple[int, ...]:
    """The steps at which the ``tail`` states of an orbit of ``steps`` steps are recorded (every ``every``)."""
    return tuple(steps - (tail - 1 - j) * every for j in range(tail))


class _Attractors:
    """Kinds (``None``: not decided yet), representative states ``(M, d)``, periods and Lyapunov spectra of the
    ``M`` attractors of a group."""

    def __init__(self, kinds: list[str | None], states: np.ndarray, period: np.ndarray) -> None:
        self.prelim = list(kinds)  # from the tails alone (fixed point, fixed set, periodic or None)
        self.kinds = list(kinds)
        self.states = states
        self.period = period
        self.exponents = torch.full(states.shape, math.nan, dtype=torch.float64)

    def measure(self, settings, system, params, idx, dtype: torch.dtype) -> None:
        """Spectra of attractors ``idx`` at their states, and their kinds (:func:`.table.kind_of`)."""
        idx = list(idx)
        if not idx:
            return
        sel = torch.as_tensor(idx, dtype=torch.int64)
        lam, win = exponents(system, torch.as_tensor(self.states[idx], dtype=dtype),
                             {k: v[sel] for k, v in params.items()}, steps=settings.lyapunov_steps, dt=settings.dt)
        self.exponents[sel] = lam
        for j, i in enumerate(idx):
            self.kinds[i] = kind_of(self.prelim[i], lam[j, 0], win[j], settings.lyapunov_tol)


def _settle(settings, ctx: Context, att: _Attractors, params, owner: torch.Tensor, finals: list[np.ndarray],
            dtype: torch.dtype, period_unit: float) -> None:
    """Integrate the attractors whose evidence has not settled (kind ``None``) further, in place: up to
    ``_MEMBERS`` of their member orbits continue from their final states for ``2, 4, 8, ...`` times ``steps``
    while the total stays within ``max_steps``, and are judged again from their new tails and exponents (the
    rule of the ``orbits`` analyzer); those still undecided stay ``None`` (kind ``unresolved``)."""
    cap = int(settings.max_steps) if settings.max_steps is not None else 8 * int(settings.steps)
    used = n = int(settings.steps)
    x = [f[np.linspace(0, len(f) - 1, min(len(f), _MEMBERS)).astype(np.int64)] for f in finals]
    while (pending := [i for i, k in enumerate(att.kinds) if k is None]) and used + 2 * n <= cap:
        n *= 2
        used += n
        sizes = [len(x[i]) for i in pending]
        x0 = torch.as_tensor(np.concatenate([x[i] for i in pending]), dtype=dtype)
        pidx = torch.cat([owner[i].repeat(m) for i, m in zip(pending, sizes)])
        settled, period = np.zeros(len(x0), bool), np.zeros(len(x0))

        def on_record(index, tails):
            i = index.numpy()
            settled[i], period[i] = tail_periods(tails.double().numpy(), ctx.period_tol, float(ctx.width.min()),
                                                 ctx.flow, ctx.system.circle)

        ev = _evolve(settings, ctx, x0, pidx, steps=n, record=_record(n, settings.tail, ctx.every),
                     on_record=on_record)
        ok = ev.outcome.numpy() == oc.OK
        fin = wrap(ev.final.numpy(), ctx.system.circle)
        for i, part in zip(pending, np.split(np.arange(len(x0)), np.cumsum(sizes)[:-1])):
            part = part[ok[part]]
            if len(part) == 0:
                continue
            x[i] = fin[part]
            att.prelim[i], att.states[i], att.period[i] = judge(fin[part], settled[part], period[part], ctx.width,
                                                                flow=ctx.flow, period_unit=period_unit)
        att.measure(settings, ctx.system, params, pending, dtype)


def _boundaries(settings, ctx: Context, Xt: torch.Tensor, pairs: np.ndarray | list[np.ndarray], elems: range,
                acc: TailAccumulator, found: list[Found], stable: np.ndarray):
    """Brackets between neighbouring samples of two different stable basins (or the diverged one) of every
    element, bisected together: ``(Brackets, basin index of side a, element of each bracket)``."""
    x0s, x1s, l0s, l1s, els = [], [], [], [], []
    off = 0
    for e, f in enumerate(found):
        K = f.n_attractors
        eligible = np.concatenate([[True], stable[off : off + K]])  # the diverged basin and the stable ones
        off += K
        shared = Xt.dim() == 2
        sel = select_pairs(pairs if shared else pairs[e], f.labels, eligible, settings.max_boundary_points)
        i0, i1 = sel[:, 0], sel[:, 1]  # labels[i0] < labels[i1]
        x = Xt if shared else Xt[e]
        x0s.append(x[torch.as_tensor(i0)])
        x1s.append(x[torch.as_tensor(i1)])
        l0s.append(f.labels[i0])
        l1s.append(f.labels[i1])
        els.append(np.full(len(sel), elems.start + e, dtype=np.int64))
    el = np.concatenate(els)

    def classify(x: torch.Tensor, elem: torch.Tensor) -> np.ndarray:
        out = _evolve(settings, ctx, x, elem)
        cells = acc.cells(out.final.numpy())
        lab = np.full(len(elem), -1, dtype=np.int64)
        e_np = elem.numpy()
        for e in np.unique(e_np):  # per sweep element lookup (the evolution above is batched)
            m = e_np == e
            lab[m] = found[e - elems.start].classify(cells[m], out.outcome.numpy()[m])
        return lab

    # k-section with 2^m - 1 points per bracket and round: about 4096 states per round and sweep element
    m = int(np.clip(math.floor(math.log2(4096 / settings.max_boundary_points + 1)), 1, 4))
    l0 = np.concatenate(l0s)
    br = bisect(classify, torch.cat(x0s), torch.cat(x1s), l0, np.concatenate(l1s), torch.as_tensor(el),
                settings.tol, bits_per_round=m)
    return br, l0, el

"""The computation of the basins analyzer for a group of sweep elements (private).

:func:`analyze_group` evolves every sample of every element of the group as one batch (recording the tails),
identifies each element's attractors from its cell graph (:mod:`.attractors`), describes them (:mod:`.table`:
kind, representative state, period, batched Lyapunov exponents, stability) and bisects the brackets between
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

from dynlearn.periodic import wrap
from dynlearn.progress import Meter
from dynlearn.stepper import evolve
from dynlearn.sweep import Batch

from .attractors import Found, TailAccumulator, extent, identify
from .boundary import bisect, select_pairs
from .table import describe, lyapunov, stability

__all__ = ["Context", "Element", "analyze_group"]


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


@dataclass
class Element:
    """The result of one sweep element (``K`` attractors, ``P`` boundary points)."""

    labels: np.ndarray  # (S,) basin index: 0 diverged, k >= 1 attractor k, -1 none
    code: np.ndarray  # (S,) evolve's outcome (ok / diverged / nan)
    escape: np.ndarray  # (S,) escape step (steps when it did not leave)
    kinds: list[str]  # (K,)
    states: np.ndarray  # (K, d) representative states
    period: np.ndarray  # (K,)
    lyap: np.ndarray  # (K,)
    stable: np.ndarray  # (K,)
    extent: np.ndarray  # (K, 3, d) centre, lower and upper corner of the attractor's recurrent cells
    b_state: np.ndarray  # (P, d) boundary points
    b_tol: np.ndarray  # (P,)
    b_mixed: np.ndarray  # (P,)
    b_a: np.ndarray  # (P,) basin index of side a (0 diverged or k >= 1)
    b_b: np.ndarray  # (P,) basin index of the other end at the end of bisection (-1: none)


def _evolve(settings, ctx: Context, x0: torch.Tensor, pidx: torch.Tensor, **kw):
    return evolve(ctx.system, x0, ctx.batch.params, pidx, steps=settings.steps, dt=settings.dt,
                  max_norm=settings.max_norm, chunk_size=settings.chunk_size, kernel=settings.kernel, **kw)


def analyze_group(settings, ctx: Context, Xt: torch.Tensor, pairs: np.ndarray, elems: range,
                  meter: Meter) -> list[Element]:
    """Basins, attractors and boundary points of the sweep elements ``elems`` (samples ``Xt``, neighbour
    ``pairs``)."""
    system, batch, every = ctx.system, ctx.batch, ctx.every
    S, n_e, d = Xt.shape[0], len(elems), Xt.shape[1]
    circle = system.circle
    acc = TailAccumulator(n_e, S, lo=ctx.lo, width=ctx.width, flow=ctx.flow, period_tol=1e-3 * float(ctx.width.min()),
                          circle=circle)
    record = tuple(settings.steps - (settings.tail - 1 - j) * every for j in range(settings.tail))
    pidx = torch.arange(elems.start, elems.stop).repeat_interleave(S)
    ev = _evolve(settings, ctx, Xt.repeat(n_e, 1), pidx, record=record, on_record=lambda i, t: acc.add(i, t),
                 meter=meter)
    code = ev.outcome.numpy().reshape(n_e, S)
    escape = ev.escape.numpy().reshape(n_e, S)
    finals = wrap(ev.final.numpy(), circle).reshape(n_e, S, d)  # theta* + 2 pi k: one representative
    found = [identify(acc.graph(e), code[e]) for e in range(n_e)]  # graph analysis is per sweep element
    period_unit = every * settings.dt if ctx.flow else 1.0
    tables = [describe(f, finals[e], acc.settled[e], acc.period[e], ctx.width, flow=ctx.flow, period_unit=period_unit)
              for e, f in enumerate(found)]
    # batched Lyapunov exponents and stability of every attractor of the group
    owner = np.concatenate([np.full(f.n_attractors, elems.start + e, dtype=np.int64) for e, f in enumerate(found)])
    states = torch.as_tensor(np.concatenate([t[1] for t in tables]), dtype=Xt.dtype)
    params = {k: v[torch.as_tensor(owner)] for k, v in batch.params.items()}
    lyap = lyapunov(system, states, params, steps=settings.lyapunov_steps, dt=settings.dt).numpy()
    kinds = [k for t in tables for k in t[0]]
    kinds = [k or ("chaotic" if lam > settings.lyapunov_tol else "quasi_periodic") for k, lam in zip(kinds, lyap)]
    stable = stability(system, states, params, kinds, np.concatenate([t[2] for t in tables]))
    br, l0, el = _boundaries(settings, ctx, Xt, pairs, elems, acc, found, stable)
    out, off = [], 0
    for e, f in enumerate(found):
        K = f.n_attractors
        m = el == elems.start + e
        mt = torch.as_tensor(m)
        out.append(Element(
            labels=f.labels, code=code[e], escape=escape[e], kinds=kinds[off : off + K], states=tables[e][1],
            period=tables[e][2], lyap=lyap[off : off + K], stable=stable[off : off + K],
            extent=extent(f, ctx.lo, ctx.width),
            b_state=br.point[mt].numpy(), b_tol=br.tolerance[mt].numpy(), b_mixed=br.mixed[m], b_a=l0[m],
            b_b=br.other[m],
        ))
        off += K
    return out


def _boundaries(settings, ctx: Context, Xt: torch.Tensor, pairs: np.ndarray, elems: range, acc: TailAccumulator,
                found: list[Found], stable: np.ndarray):
    """Brackets between neighbouring samples of two different stable basins (or the diverged one) of every
    element, bisected together: ``(Brackets, basin index of side a, element of each bracket)``."""
    x0s, x1s, l0s, l1s, els = [], [], [], [], []
    off = 0
    for e, f in enumerate(found):
        K = f.n_attractors
        eligible = np.concatenate([[True], stable[off : off + K]])  # the diverged basin and the stable ones
        off += K
        sel = select_pairs(pairs, f.labels, eligible, settings.max_boundary_points)
        i0, i1 = sel[:, 0], sel[:, 1]  # labels[i0] < labels[i1]
        x0s.append(Xt[torch.as_tensor(i0)])
        x1s.append(Xt[torch.as_tensor(i1)])
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

"""The fixed-point analyzer's pipeline on padded point sets (private).

``search_box`` (the box of the ``bounds`` option, checked against the system), ``find`` (solve from starting
states -> roots and candidate minima of q, refined and deduplicated), ``merge`` (union of two point sets),
``warm_pass`` (the neighbours' points along an ordered sweep dim as starting states), ``midpoint_pass``
(midpoints of pairs of the fixed points found as starting states), ``diagnose``
(eigenvalues, types, ghost passage). Helpers receive the analyzer's validated options
(:class:`~dynlearn.params.Settings`) and the :class:`Box`.
Every step works on all sweep entries of a chunk at once; point sets are padded ``(B, P, ...)`` with a mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch

from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import Settings
from dynlearn.periodic import Circle, delta, wrap

from . import classify as fc
from .sampling import passage
from .minima import refine_minima
from .solver import OUTSIDE, dedupe, solve, take

Tensor = torch.Tensor


@dataclass
class PointSet:
    """Padded points of ``B`` sweep entries: ``x`` ``(B, P, d)``, ``q``/``ginf`` ``(B, P)``, ``root`` (a zero of the
    residual), ``count`` (starting states that reached the point) and ``mask`` (slot holds a point) ``(B, P)``."""

    x: Tensor
    q: Tensor
    ginf: Tensor
    root: Tensor
    count: Tensor
    mask: Tensor

    @property
    def size(self) -> int:
        return self.x.shape[1]

    def select(self, idx: Tensor, valid: Tensor) -> "PointSet":
        """Gather slots ``idx`` ``(B, P')``; ``valid`` ``(B, P')`` masks the result."""
        d = self.x.shape[-1]
        x = self.x.gather(1, idx.unsqueeze(-1).expand(*idx.shape, d))
        out = [x] + [getattr(self, f.name).gather(1, idx) for f in fields(self)[1:]]
        out[-1] = out[-1] & valid
        return PointSet(*out)

    @staticmethod
    def cat(a: "PointSet", b: "PointSet") -> "PointSet":
        return PointSet(*(torch.cat([getattr(a, f.name), getattr(b, f.name)], dim=1) for f in fields(a)))


def _lexsort(primary: Tensor, secondary: Tensor) -> Tensor:
    """Row-wise order by ``primary`` then ``secondary`` (two stable sorts)."""
    first = torch.argsort(secondary, dim=1, stable=True)
    second = torch.argsort(primary.gather(1, first), dim=1, stable=True)
    return first.gather(1, second)


def compact(ps: PointSet, keep: Tensor) -> PointSet:
    """Keep the slots ``keep`` ``(B, S)`` (roots first, then by increasing ``q``): the point dim shrinks to the
    largest number kept in an entry."""
    B, S = keep.shape
    order = _lexsort(torch.where(keep, (~ps.root).to(torch.int64), 2), torch.where(keep, ps.q, torch.inf))
    P = max(1, int(keep.sum(1).max()) if B else 0)
    idx = order[:, :P]
    valid = torch.arange(P, device=keep.device).expand(B, P) < keep.sum(1, keepdim=True).clamp(max=P)
    return ps.select(idx, valid)


@dataclass(frozen=True)
class Box:
    """The search box: ``lo``, ``hi`` ``(d,)`` (float64), and the system's periodic coordinates (positions are
    wrapped and compared on their circle, :mod:`dynlearn.periodic`)."""

    lo: Tensor
    hi: Tensor
    circle: Circle | None = None

    def wrap(self, x: Tensor) -> Tensor:
        """``x`` with its periodic coordinates wrapped into their interval."""
        return x if self.circle is None else wrap(x, self.circle)

    def inside(self, x: Tensor, margin: Tensor) -> Tensor:
        """States ``x`` ``(..., d)`` within ``margin`` ``(d,)`` of the box (periodic coordinates: their shortest
        arc to the box's centre, so every copy ``theta + 2 pi k`` of a state inside is inside)."""
        center = (self.lo + self.hi) / 2
        dx = x - center if self.circle is None else delta(x, center, self.circle)
        return (dx.abs() <= self.width / 2 + margin).all(-1)

    @property
    def width(self) -> Tensor:
        return self.hi - self.lo

    @property
    def scale(self) -> float:
        """Mean width (the unit of ``dedupe_tol`` and of the bifurcation tracker's gates)."""
        return float(self.width.mean())


def search_box(settings: Settings, system) -> Box:
    """The box of ``settings.bounds`` (``[[low...], [high...]]``, each broadcast to the state dim), or the
    system's domain; a :class:`~dynlearn.errors.ShapeError` or :class:`~dynlearn.errors.ParameterError` (one
    line) when it does not fit the system."""
    if settings.bounds is None:
        lo, hi = system.domain()
    else:
        try:
            lo, hi = (np.broadcast_to(np.asarray(b, dtype=float), (system.state_dim,)) for b in settings.bounds)
        except (ValueError, TypeError):
            raise ShapeError(f"fixed_points: bounds must be [low, high] with {system.state_dim} values each, "
                             f"got {settings.bounds!r}") from None
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise ParameterError(f"fixed_points: bounds need finite low < high, got {settings.bounds!r}")
    return Box(torch.as_tensor(np.array(lo, dtype=float), dtype=torch.float64),
               torch.as_tensor(np.array(hi, dtype=float), dtype=torch.float64), Circle.of(system))


def warm_dim(settings: Settings, batch) -> str | None:
    """The sweep dim of the warm start: ``"auto"`` is ``epoch`` where the sweep has it (a training run, a
    recorder's store), ``None`` none; a named dim that is not a sweep dim is a one-line
    :class:`~dynlearn.errors.ParameterError`. ``None`` also where the dim has a single value."""
    name = settings.warm_start
    if name == "auto":
        name = "epoch" if "epoch" in batch.dims else None
    elif name is not None and name not in batch.dims:
        raise ParameterError(f"fixed_points: warm_start dim {name!r} is not a sweep dim; the sweep dims are "
                             f"{list(batch.dims)} (None: no warm start)")
    return name if name is not None and batch.shape[batch.dims.index(name)] > 1 else None


def _tol(settings: Settings, box: Box) -> float:
    """Deduplication distance: ``dedupe_tol`` box widths."""
    return settings.dedupe_tol * box.scale


def find(system, p: Mapping[str, Tensor], starts: Tensor, start_mask: Tensor, typical: Tensor, st: Settings,
         box: Box) -> PointSet:
    """Points reached from ``starts`` ``(B, S, d)`` (where ``start_mask``) for parameters ``p`` ``(B, *event)``
    (options ``margin``, ``max_iter``, ``root_tol``, ``dedupe_tol``, ``slow_points``, ``slow_ratio`` of ``st``),
    every distinct one, periodic coordinates wrapped, with the number of starts that reached each."""
    B, S, d = starts.shape
    flat_idx = start_mask.reshape(-1).nonzero().squeeze(-1)
    owner = torch.arange(B, device=starts.device).repeat_interleave(S)[flat_idx]
    x0 = starts.reshape(-1, d)[flat_idx]
    lo, hi, width, tol = box.lo, box.hi, box.width, _tol(st, box)
    center = (lo + hi) / 2
    # without slow points only roots matter: after 10 iterations, a state whose q does not drop tenfold in 3
    # iterations is not in a root's Newton basin and stops (with slow points it may be descending into a ghost:
    # it runs until q does not halve in 10 iterations)
    sol = solve(system, x0, p, owner, center=center, half_width=width / 2, radius0=0.25 * box.scale,
                root_tol=st.root_tol, max_iter=st.max_iter, patience=10 if st.slow_points else 3,
                stall=0.5 if st.slow_points else 0.1)

    def scatter(v, fill):
        out = torch.full((B * S, *v.shape[1:]), fill, dtype=v.dtype, device=v.device)
        out[flat_idx] = v
        return out.reshape(B, S, *v.shape[1:])

    x = scatter(sol.x, torch.nan)
    q = scatter(sol.q, torch.inf)
    ginf = scatter(sol.g_inf, torch.inf)
    status = scatter(sol.status, OUTSIDE)
    m = st.margin * width
    in_box = box.inside(x, m) & (status != OUTSIDE)
    x = box.wrap(x)
    root = in_box & (ginf <= st.root_tol)
    keep, count = dedupe(x, q, root, tol, circle=box.circle)
    ps = PointSet(x, q, ginf, root, count, root.clone())
    if st.slow_points:
        speed = (2 * q).sqrt()
        cand = in_box & ~root & (speed <= st.slow_ratio * typical.unsqueeze(1))
        # coarse dedupe before the (more expensive) exact-Hessian refinement
        cand, ccount = dedupe(x, q, cand, 1e3 * tol, circle=box.circle)
        cps = compact(PointSet(x, q, ginf, torch.zeros_like(cand), ccount, cand), cand)
        flat = cps.mask.reshape(-1).nonzero().squeeze(-1)
        if flat.numel():
            own = torch.arange(B, device=x.device).repeat_interleave(cps.size)[flat]
            xr, qr, is_min = refine_minima(system, cps.x.reshape(-1, d)[flat], take(p, own))
            gr = system.residual(xr, take(p, own)).abs().amax(-1)
            Pc = cps.size
            cx = cps.x.reshape(-1, d).clone()
            cx[flat] = box.wrap(xr)
            cq = torch.full((B * Pc,), torch.inf, dtype=q.dtype, device=q.device)
            cq[flat] = qr
            cg = torch.full((B * Pc,), torch.inf, dtype=q.dtype, device=q.device)
            cg[flat] = gr
            ok = torch.zeros(B * Pc, dtype=torch.bool, device=q.device)
            in_box_r = box.inside(xr, m)
            ok[flat] = (is_min | (gr <= st.root_tol)) & in_box_r
            cx, cq, cg, ok = cx.reshape(B, Pc, d), cq.reshape(B, Pc), cg.reshape(B, Pc), ok.reshape(B, Pc)
            croot = ok & (cg <= st.root_tol)
            slow_ok = ok & (croot | ((2 * cq).sqrt() <= st.slow_ratio * typical.unsqueeze(1)))
            ps = PointSet.cat(ps, PointSet(cx, cq, cg, croot, cps.count, slow_ok))
            keep = torch.cat([keep, slow_ok], dim=1)
            keep, ps.count = dedupe(ps.x, ps.q, keep, tol, ps.count, box.circle)
    return compact(ps, keep)


def merge(a: PointSet, b: PointSet, st: Settings, box: Box) -> PointSet:
    """Union of two point sets of the same entries (duplicates removed, lowest ``q`` kept, counts summed)."""
    ps = PointSet.cat(a, b)
    keep, ps.count = dedupe(ps.x, ps.q, ps.mask, _tol(st, box), ps.count, box.circle)
    return compact(ps, keep)


def concat(sets: list[PointSet]) -> PointSet:
    """Concatenate chunk point sets along the batch dim, padding the point dim."""
    P = max(s.size for s in sets)
    out = []
    for s in sets:
        pad = P - s.size
        if pad:
            B, _, d = s.x.shape
            s = PointSet(
                torch.cat([s.x, torch.full((B, pad, d), torch.nan, dtype=s.x.dtype)], 1),
                torch.cat([s.q, torch.full((B, pad), torch.inf, dtype=s.q.dtype)], 1),
                torch.cat([s.ginf, torch.full((B, pad), torch.inf, dtype=s.q.dtype)], 1),
                torch.cat([s.root, torch.zeros(B, pad, dtype=torch.bool)], 1),
                torch.cat([s.count, torch.zeros(B, pad, dtype=s.count.dtype)], 1),
                torch.cat([s.mask, torch.zeros(B, pad, dtype=torch.bool)], 1),
            )
        out.append(s)
    return PointSet(*(torch.cat([getattr(s, f.name) for s in out]) for f in fields(PointSet)))


def take_entries(ps: PointSet, sl: slice) -> PointSet:
    """The sweep entries ``sl`` of a point set."""
    return PointSet(*(getattr(ps, f.name)[sl] for f in fields(PointSet)))


def warm_pass(batch, points: PointSet, typical: Tensor, st: Settings, box: Box, chunk: int, meter,
              dim: str) -> tuple[PointSet, Tensor]:
    """Second pass: every entry starts from the points found at its neighbours along the sweep dim ``dim``.
    Returns the merged points and the number of these extra starts per entry ``(B,)``."""
    axis = batch.dims.index(dim)
    shape = batch.shape
    P, d = points.size, points.x.shape[-1]
    x = points.x.reshape(*shape, P, d)
    m = points.mask.reshape(*shape, P)
    n = shape[axis]
    idx = torch.arange(n)
    extra_x, extra_m = [], []
    for shift in (1, -1):
        src = (idx - shift).clamp(0, n - 1)
        ok = ((idx - shift) >= 0) & ((idx - shift) < n)
        xs = x.index_select(axis, src)
        ms = m.index_select(axis, src) & ok.view(*([1] * axis), n, *([1] * (len(shape) - axis)))
        extra_x.append(xs.reshape(batch.size, P, d))
        extra_m.append(ms.reshape(batch.size, P))
    sx = torch.cat(extra_x, 1).nan_to_num(0.0)
    sm = torch.cat(extra_m, 1)
    sets = []
    for sl, p in batch.chunks(chunk):
        sets.append(find(batch.system, p, sx[sl], sm[sl], typical[sl], st, box))
        meter.update()
    return merge(points, concat(sets), st, box), sm.sum(1)


def midpoint_starts(points: PointSet, cap: int, box: Box) -> tuple[Tensor, Tensor]:
    """Midpoints ``(B, K, d)`` and their mask ``(B, K)`` of pairs of the fixed points (roots) of every entry, at most
    ``cap`` per entry: all pairs where there are at most ``cap``, otherwise ``cap`` pairs evenly spaced in the
    order ``(i, j), i < j`` of the points (roots by increasing ``q``). Periodic coordinates take the midpoint of
    the shorter arc."""
    B, P, d = points.x.shape
    i, j = torch.triu_indices(P, P, 1, device=points.x.device)
    root = points.mask & points.root
    valid = root[:, i] & root[:, j]  # (B, M)
    M = valid.shape[1]
    K = min(cap, M)
    if K == 0:
        return points.x.new_zeros(B, 0, d), torch.zeros(B, 0, dtype=torch.bool, device=points.x.device)
    n_valid = valid.sum(1, keepdim=True)
    k = torch.arange(K, device=valid.device).expand(B, K)
    # rank of the chosen pairs among the valid ones: k itself, or evenly spaced when there are more than K
    rank = torch.where(n_valid > K, k * n_valid // K, k)
    pos = torch.searchsorted(valid.cumsum(1).contiguous(), (rank + 1).contiguous()).clamp(max=M - 1)
    a = points.x.gather(1, i[pos].unsqueeze(-1).expand(B, K, d))
    b = points.x.gather(1, j[pos].unsqueeze(-1).expand(B, K, d))
    mid = a + (b - a if box.circle is None else delta(b, a, box.circle)) / 2
    return box.wrap(mid).nan_to_num(0.0), k < n_valid


def midpoint_pass(batch, points: PointSet, typical: Tensor, st: Settings, box: Box, chunk: int, meter,
                  cap: int) -> tuple[PointSet, Tensor]:
    """Another pass from the midpoints of pairs of the fixed points found (:func:`midpoint_starts`, at most
    ``cap`` per entry): saddles lie between the attractors they separate, so a saddle that no start
    of the first pass reached is often found from the midpoint of two points on either side of it. Returns the
    merged points and the number of these extra starts per entry ``(B,)``."""
    sx, sm = midpoint_starts(points, cap, box)
    if not bool(sm.any()):
        meter.update(-(-batch.size // chunk))
        return points, sm.sum(1)
    sets = []
    for sl, p in batch.chunks(chunk):
        sets.append(find(batch.system, p, sx[sl], sm[sl], typical[sl], st, box))
        meter.update()
    return merge(points, concat(sets), st, box), sm.sum(1)


#: the ghost diagnostics of :class:`Diagnosis` taken from the passage test (NaN where not a slow point)
GHOST_FIELDS = ("curvature", "radius", "time", "time_nf", "time_nf_ball", "linger")


@dataclass
class Diagnosis:
    """Per point ``(B, P)`` unless noted: the Jacobian ``(B, P, d, d)`` (of ``f``, or of ``F`` for maps), sorted
    eigenvalues ``(B, P, d)`` and unit eigenvectors ``(B, P, eig, state)`` (complex), type codes, counts, and the
    ghost diagnostics (NaN where not a slow point)."""

    points: PointSet
    jacobian: Tensor
    eig: Tensor
    eigvec: Tensor
    code: Tensor
    n_unstable: Tensor
    n_neutral: Tensor
    curvature: Tensor
    radius: Tensor
    time: Tensor
    time_nf: Tensor
    time_nf_ball: Tensor
    linger: Tensor
    sign_change: Tensor


def diagnose(system, p: Mapping[str, Tensor], ps: PointSet, st: Settings, box: Box) -> Diagnosis:
    """Classify every point; run the passage test on the slow points; order points fixed, ghost, slow (options
    ``neutral_tol``, ``passage_factor``, ``passage_steps``, ``linger_min`` of ``st``)."""
    neutral_tol = st.neutral_tol
    B, P, d = ps.x.shape
    flat = ps.mask.reshape(-1).nonzero().squeeze(-1)
    own = torch.arange(B, device=ps.x.device).repeat_interleave(P)
    dtype = ps.x.dtype
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    eig = torch.full((B * P, d), complex(torch.nan, torch.nan), dtype=cdtype, device=ps.x.device)
    eigvec = torch.full((B * P, d, d), complex(torch.nan, torch.nan), dtype=cdtype, device=ps.x.device)
    jac = torch.full((B * P, d, d), torch.nan, dtype=dtype, device=ps.x.device)
    code = torch.full((B * P,), fc.NONE, dtype=torch.int64, device=ps.x.device)
    n_unst = torch.full((B * P,), -1, dtype=torch.int64, device=ps.x.device)
    n_neut = n_unst.clone()
    nanf = torch.full((B * P,), torch.nan, dtype=dtype, device=ps.x.device)
    diag = {k: nanf.clone() for k in GHOST_FIELDS}
    sign = torch.zeros(B * P, dtype=torch.bool, device=ps.x.device)
    if flat.numel():
        xf = ps.x.reshape(-1, d)[flat]
        pf = take(p, own[flat])
        J = system.jacobian(xf, pf)
        jac[flat] = J
        ev, vec = torch.linalg.eig(J)
        order = fc.eig_order(ev, system.kind)
        ev = ev.gather(-1, order)
        eig[flat] = ev.to(eig.dtype)
        # eigenvector k is column order[k] of vec; stored as rows (eig, state)
        eigvec[flat] = vec.gather(-1, order.unsqueeze(-2).expand_as(vec)).transpose(-1, -2).to(cdtype)
        nu, nn = fc.counts(ev, system.kind, neutral_tol)
        n_unst[flat], n_neut[flat] = nu, nn
        is_root = ps.root.reshape(-1)[flat]
        code[flat] = torch.where(is_root, fc.classify(ev, system.kind, neutral_tol), fc.CODE["slow_point"])
        slow = flat[~is_root]
        if slow.numel():
            rho_max = 0.5 * (box.width / 2).min()
            pas = passage(system, ps.x.reshape(-1, d)[slow], take(p, own[slow]), rho_max=rho_max,
                          factor=st.passage_factor, n_steps=st.passage_steps, max_map_steps=20000)
            for k in diag:
                diag[k][slow] = getattr(pas, k)
            sign[slow] = pas.sign_change
            ghost = pas.passes & pas.sign_change & (pas.linger >= st.linger_min)
            code[slow] = torch.where(ghost, fc.CODE["ghost"], fc.CODE["slow_point"])
    # order: fixed points, then ghosts, then slow points; each by their first coordinate
    x0 = ps.x.reshape(-1, d)[:, 0].nan_to_num(0.0)
    group = torch.where(code < 0, 3, torch.where(code == fc.CODE["ghost"], 1,
                                                 torch.where(code == fc.CODE["slow_point"], 2, 0)))
    order = _lexsort(group.reshape(B, P), x0.reshape(B, P))
    pts = ps.select(order, torch.ones_like(ps.mask))

    def re(t):
        t = t.reshape(B, P, *t.shape[1:])
        return t.gather(1, order.reshape(B, P, *([1] * (t.dim() - 2))).expand_as(t))

    return Diagnosis(pts, re(jac), re(eig), re(eigvec), re(code), re(n_unst), re(n_neut),
                     **{k: re(v) for k, v in diag.items()}, sign_change=re(sign))


def cap(dg: Diagnosis, max_points: int | None) -> tuple[Diagnosis, Tensor]:
    """At most ``max_points`` points per entry, the lowest-``q`` ones, in their order; and whether an entry lost
    points ``(B,)``."""
    B, P = dg.points.mask.shape
    n = dg.points.mask.sum(1)
    if max_points is None or P <= max_points:
        return dg, torch.zeros(B, dtype=torch.bool, device=n.device)
    by_q = torch.argsort(torch.where(dg.points.mask, dg.points.q, torch.inf), dim=1, stable=True)
    idx = by_q[:, :max_points].sort(dim=1).values  # the kept slots, in their order
    valid = torch.arange(max_points, device=n.device).expand(B, max_points) < n.unsqueeze(1)

    def pick(t: Tensor) -> Tensor:
        return t.gather(1, idx.reshape(B, max_points, *([1] * (t.dim() - 2))).expand(B, max_points, *t.shape[2:]))

    # masked slots sort last, so the first min(n, max_points) picked slots are points
    pts = dg.points.select(idx, valid)
    return Diagnosis(pts, **{f.name: pick(getattr(dg, f.name)) for f in fields(Diagnosis)[1:]}), n > max_points

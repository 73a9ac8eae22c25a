"""Batched root / q-minimum finding for the fixed-point analyzer (private).

All functions work on a flat batch of states ``x`` of shape ``(N, d)`` whose parameters ``p`` are gathered to
``(N, *event)`` (see :func:`take`), so one call serves every sweep entry and every starting state at once.

- :func:`solve`: Powell's dogleg trust-region method on ``q(x) = |g(x)|^2 / 2`` (``g`` = the system's residual:
  ``f(x)`` for flows, ``F(x) - x`` for maps). Each step combines the Newton step ``-J^-1 g`` (batched LU of
  the system's Jacobian, where needed) with the steepest-descent (Cauchy) step of ``q`` inside a
  per-state trust radius, so it converges quadratically to simple roots and still descends into local minima
  of ``q`` that are not roots (ghosts), where ``J`` is singular. States stop on a root (``|g|_inf`` below the
  tolerance and a negligible Newton step), on a negligible trust-scaled change (a stationary point of ``q``),
  or when they leave a box around the search domain (outliers). Converged states leave the active set, so the
  per-iteration cost shrinks as states finish.
- :func:`.minima.refine_minima`: Newton's method on ``grad q = J^T g = 0`` with the
  exact Hessian of ``q``, for the few candidate minima that are not roots; tells local minima from saddles of
  ``q``.
- :func:`dedupe` (in :mod:`.dedupe`, re-exported): batched duplicate removal (connected components of the
  "closer than tol" graph inside each sweep entry, keeping the lowest-``q`` copy), without a Python loop over
  entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from dynlearn.system import has_fast_products

from .dedupe import dedupe  # noqa: F401  (re-exported)

Tensor = torch.Tensor

ROOT, STATIONARY, OUTSIDE, MAX_ITER = 0, 1, 2, 3


def take(p: Mapping[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    """Parameters ``(B, *event)`` gathered at the owner indices ``idx`` ``(N,)`` -> ``(N, *event)``.

    A single parameter set (``B = 1``) is returned as is: it broadcasts against any number of states, and
    large parameters (an RNN's weight matrix) are not copied once per state.
    """
    if all(v.shape[0] == 1 for v in p.values()):
        return dict(p)
    return {k: v.index_select(0, idx) for k, v in p.items()}


@dataclass
class Solution:
    """Result of :func:`solve`: final states, ``q``, ``|g|_inf``, status code and iterations per state."""

    x: Tensor
    q: Tensor
    g_inf: Tensor
    status: Tensor
    n_iter: Tensor


#: Jacobian entries per sub-batch of the dense linear algebra (4 MiB in float64): the Jacobians, products and
#: LU factorisations of a sub-batch stay in cache-sized memory however many states run
BLOCK_ENTRIES = 2**19

#: states within this many initial trust radii of a known root try the chord iteration towards it (KnownRoots)
MERGE_RADIUS = 16.0
#: states run first (the first starts of every owner) to find roots the others can merge into
FIRST_BATCH = 128
#: up to this many distinct known roots, chord steps run as one matrix product per root
GROUPS = 64


class KnownRoots:
    """Roots already found by :func:`solve` (position, owner, ``q``, ``|g|_inf`` and the inverse of ``dg/dx``).

    A running state ``x`` whose nearest known root ``r`` (same owner) is within ``try_radius`` is *merged* into
    it when the chord iteration with ``r``'s inverse Jacobian, ``y_{k+1} = y_k - J(r)^-1 g(y_k)`` from ``y_0 = x``,
    contracts towards ``r`` at every step, ``|y_{k+1} - r| <= capture |y_k - r|`` (``capture = 1/2``), and
    reaches ``|y_k - r| <= kappa |x - r|`` (``kappa = 1e-3``) within ``max_chord = 12`` steps. The chord map fixes
    every root and, contracting like this, takes ``x`` to ``r``: ``x`` lies in ``r``'s basin of the chord
    method, a root-finding iteration in its own right. The state then stops as a copy of ``r`` instead of
    repeating the Newton iterations with fresh LU factorisations (the deduplication would drop it anyway); a
    chord step costs a residual and a matrix-vector product. A state that the chord iteration does not capture
    keeps running unchanged. Next to a pair of nearly coincident roots ``r, r'`` (a fold) the chord map with
    ``J(r)`` contracts by ``~2|y - r| / |r' - r|``, so it captures only states within about a third of their
    distance from ``r``, from where Newton's method goes to ``r`` as well. (A looser capture, 0.7 per step over
    25 steps, halved the LU factorisations of the 100-neuron benchmark but lost its rarest root at 1024 and 2048 starts.)
    """

    def __init__(self, d: int, like: Tensor, cap: int = 2**24) -> None:
        self.x = like.new_zeros(0, d)
        self.owner = torch.zeros(0, dtype=torch.int64, device=like.device)
        self.q = like.new_zeros(0)
        self.ginf = like.new_zeros(0)
        self.inv = like.new_zeros(0, d, d)
        self.cap = max(1, cap // (d * d))

    def __len__(self) -> int:
        return self.x.shape[0]

    def _nearest(self, x: Tensor, owner: Tensor) -> tuple[Tensor, Tensor]:
        D = torch.cdist(x, self.x, compute_mode="donot_use_mm_for_euclid_dist")
        D = torch.where(owner.unsqueeze(1) == self.owner.unsqueeze(0), D, torch.inf)
        return D.min(1)

    def add(self, x: Tensor, owner: Tensor, q: Tensor, ginf: Tensor, lu: Tensor, piv: Tensor) -> None:
        """Register new roots (copies of known ones, equal to rounding, are skipped)."""
        if x.shape[0] == 0 or len(self) >= self.cap:
            return
        tol = 1e-8 * (1 + x.abs().amax(-1))
        new = self._nearest(x, owner)[0] > tol if len(self) else torch.ones_like(tol, dtype=torch.bool)
        D = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
        same = (D <= tol.unsqueeze(1)) & (owner.unsqueeze(1) == owner.unsqueeze(0))
        new &= ~torch.tril(same, diagonal=-1).any(1)  # first of each group of coincident new roots
        k = new.nonzero().squeeze(-1)[: self.cap - len(self)]
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        inv = torch.linalg.lu_solve(lu[k], piv[k], eye.expand(k.numel(), -1, -1), adjoint=True)
        for name, v in (("x", x[k]), ("owner", owner[k]), ("q", q[k]), ("ginf", ginf[k]), ("inv", inv)):
            setattr(self, name, torch.cat([getattr(self, name), v]))

    def _solve(self, j: Tensor, v: Tensor) -> Tensor:
        """``J(r_j)^-1 v`` for rows ``v`` ``(n, d)``: one matrix product per distinct root when there are few
        (no copies of the inverses), a batched product of gathered inverses otherwise."""
        roots = torch.unique(j)
        if roots.numel() > GROUPS:
            return (self.inv[j] @ v.unsqueeze(-1)).squeeze(-1)
        out = torch.empty_like(v)
        for r in roots.tolist():
            rows = (j == r).nonzero().squeeze(-1)
            out[rows] = v[rows] @ self.inv[r].T
        return out

    def match(self, system, x: Tensor, g: Tensor, p: Mapping[str, Tensor], owner: Tensor, try_radius: float,
              root_xtol: float, capture: float = 0.5, kappa: float = 1e-3, max_chord: int = 12
              ) -> tuple[Tensor, Tensor]:
        """States ``x`` ``(n, d)`` (residuals ``g``, parameters ``p``) to merge, and the index of their root."""
        merged = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if len(self) == 0 or x.shape[0] == 0:
            return merged, merged.long()
        dist, j = self._nearest(x, owner)
        live = ((dist <= try_radius) & torch.isfinite(g).all(-1)).nonzero().squeeze(-1)
        y, gy, d_prev = x[live], g[live], dist[live]
        for _ in range(max_chord):
            if live.numel() == 0:
                break
            jl = j[live]
            y = y - self._solve(jl, gy)
            d_new = (y - self.x[jl]).norm(dim=-1)
            floor = root_xtol * (1 + y.abs().amax(-1))
            ok = torch.isfinite(d_new) & (d_new <= capture * d_prev + floor)
            done = ok & (d_new <= kappa * dist[live] + floor)
            merged[live[done]] = True
            go = (ok & ~done).nonzero().squeeze(-1)
            live, y, d_prev = live[go], y[go], d_new[go]
            if live.numel():
                gy = system.residual(y, take(p, live))
        return merged, j


@dataclass
class _Step:
    step: Tensor  # (n, d) dogleg step
    j_step: Tensor  # (n, d) J @ step
    n_newton: Tensor  # (n,) Newton step length (inf where not computed or J singular)
    near: Tensor  # states with |g|_inf <= root_tol (candidate roots)
    lu: Tensor  # LU factors and pivots of their (dg/dx)^T (see _lu_transposed)
    piv: Tensor


def _lu_transposed(J: Tensor, rows: Tensor, is_map: bool) -> tuple[Tensor, Tensor, Tensor]:
    """LU factors of ``A^T`` for ``A = J[rows]`` (``J[rows] - I`` for maps), factorised in place in a fresh copy.

    A row-major ``A`` is the column-major ``A^T`` LAPACK works on, so factorising ``A^T`` in place needs neither
    a transposed copy nor a second buffer; solve ``A s = b`` with ``lu_solve(..., adjoint=True)``.
    """
    if is_map and rows.numel() == J.shape[0]:
        A = J - torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    else:
        A = J.index_select(0, rows)  # a copy: the system's Jacobian is never written to
        if is_map:
            A.diagonal(dim1=-2, dim2=-1).sub_(1)
    At = A.mT
    piv = torch.empty(A.shape[:-1], dtype=torch.int32, device=A.device)
    info = torch.empty(A.shape[:-2], dtype=torch.int32, device=A.device)
    return torch.linalg.lu_factor_ex(At, out=(At, piv, info))


def _wants_newton(grad: Tensor, jg: Tensor, radius: Tensor, ginf: Tensor, root_tol: float) -> Tensor:
    """States whose dogleg step needs the Newton step: Cauchy point inside the trust region, or a candidate root."""
    tiny = torch.finfo(grad.dtype).tiny
    g2, jg2 = (grad * grad).sum(-1), (jg * jg).sum(-1)
    steep = (g2 / jg2.clamp(min=tiny) * g2.sqrt() >= radius) | (jg2 <= tiny)
    return ~steep | (ginf <= root_tol)


def _dogleg(system, x: Tensor, p: Mapping[str, Tensor], g: Tensor, radius: Tensor, ginf: Tensor,
            root_tol: float, chunk: int) -> _Step:
    """Dogleg steps inside ``radius`` for states ``x`` ``(n, d)`` with residuals ``g``.

    The Newton step ``-J^-1 g`` (an LU factorisation, the expensive part) is computed only where it can matter:
    where the Cauchy point lies inside the trust region (otherwise the step is steepest descent to the
    boundary; the Cauchy step is never longer than the Newton step) and where ``|g|_inf <= root_tol`` (the
    root test needs the Newton step's length). ``grad q = J^T g`` and ``J grad q`` come from the system's
    closed-form ``vjp``/``jvp`` where it has them (then Jacobians are formed only for the states that take a
    Newton step), otherwise from its Jacobians. Dense linear algebra runs on sub-batches of ``chunk`` states,
    so it stays in cache. ``J s`` is assembled from the vectors of the dogleg path.
    """
    n, d = x.shape
    newton = torch.zeros_like(g)
    n_newton = torch.full((n,), torch.inf, dtype=g.dtype, device=g.device)
    is_map = system.kind == "map"
    near = (ginf <= root_tol).nonzero().squeeze(-1)
    lus, pivs = [g.new_zeros(0, d, d)], [torch.zeros(0, d, dtype=torch.int32, device=g.device)]

    def newton_steps(J: Tensor, rows: Tensor, idx: Tensor) -> None:
        """Newton steps of the states ``idx`` from their Jacobians ``J[rows]`` (``J_F`` for maps)."""
        if rows.numel() == 0:
            return
        lu, piv, info = _lu_transposed(J, rows, is_map)
        s = torch.linalg.lu_solve(lu, piv, -g[idx].unsqueeze(-1), adjoint=True).squeeze(-1)
        ns = s.norm(dim=-1)
        ok = (info == 0) & torch.isfinite(ns)
        newton[idx] = torch.where(ok.unsqueeze(-1), s, torch.zeros_like(s))
        n_newton[idx] = torch.where(ok, ns, torch.full_like(ns, torch.inf))
        keep = (ginf[idx] <= root_tol).nonzero().squeeze(-1)
        if keep.numel():
            lus.append(lu[keep])
            pivs.append(piv[keep])

    if has_fast_products(system):
        # for maps dg/dx = J_F - I is applied as J_F v - v
        grad = system.vjp(x, p, g)
        grad = grad - g if is_map else grad
        jg = system.jvp(x, p, grad)
        jg = jg - grad if is_map else jg
        rows = _wants_newton(grad, jg, radius, ginf, root_tol).nonzero().squeeze(-1)
        for c0 in range(0, rows.numel(), chunk):
            rc = rows[c0:c0 + chunk]
            newton_steps(system.jacobian(x[rc], take(p, rc)), torch.arange(rc.numel(), device=x.device), rc)
    else:
        grad, jg = torch.empty_like(g), torch.empty_like(g)
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            J = system.jacobian(x[c0:c1], take(p, torch.arange(c0, c1, device=x.device)))  # J_F for maps
            gc = g[c0:c1]
            # matrix-vector products as row vector times matrix (much faster than batched J @ v on CPU)
            gr = (gc.unsqueeze(-2) @ J).squeeze(-2)  # grad q = (dg/dx)^T g
            gr = gr - gc if is_map else gr
            jgr = (gr.unsqueeze(-2) @ J.transpose(-1, -2)).squeeze(-2)
            jgr = jgr - gr if is_map else jgr
            grad[c0:c1], jg[c0:c1] = gr, jgr
            rows = _wants_newton(gr, jgr, radius[c0:c1], ginf[c0:c1], root_tol).nonzero().squeeze(-1)
            newton_steps(J, rows, c0 + rows)
    tiny = torch.finfo(g.dtype).tiny
    ok_newton = torch.isfinite(n_newton)
    g2, jg2 = (grad * grad).sum(-1), (jg * jg).sum(-1)
    alpha = g2 / jg2.clamp(min=tiny)
    n_cauchy = alpha * g2.sqrt()
    use_steep = (n_cauchy >= radius) | (jg2 <= tiny)
    n_grad = g2.sqrt().clamp(min=tiny)
    cauchy = -alpha.unsqueeze(-1) * grad
    steepest = -(radius / n_grad).unsqueeze(-1) * grad
    # dogleg: the point of the path cauchy -> newton at distance radius
    diff = newton - cauchy
    a = (diff * diff).sum(-1).clamp(min=tiny)
    b = 2 * (cauchy * diff).sum(-1)
    c = n_cauchy**2 - radius**2
    tau = ((-b + (b * b - 4 * a * c).clamp(min=0).sqrt()) / (2 * a)).clamp(0, 1)
    dog = cauchy + tau.unsqueeze(-1) * diff
    use_newton = ok_newton & (n_newton <= radius)
    use_cauchy = ~ok_newton & ~use_steep
    # J s along the path: J newton = -g, J cauchy = -alpha J grad
    j_cauchy = -alpha.unsqueeze(-1) * jg
    j_dog = j_cauchy + tau.unsqueeze(-1) * (-g - j_cauchy)
    j_steep = -(radius / n_grad).unsqueeze(-1) * jg

    def pick(nw: Tensor, st: Tensor, ca: Tensor, dg: Tensor) -> Tensor:
        return torch.where(use_newton.unsqueeze(-1), nw, torch.where(use_steep.unsqueeze(-1), st,
                           torch.where(use_cauchy.unsqueeze(-1), ca, dg)))

    return _Step(pick(newton, steepest, cauchy, dog), pick(-g, j_steep, j_cauchy, j_dog), n_newton, near,
                 torch.cat(lus), torch.cat(pivs))


def _block_order(owner: Tensor) -> Tensor:
    """Order of the states in which the first ones hold the first starts of every owner."""
    N = owner.numel()
    o_sorted, order = torch.sort(owner, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(N, device=owner.device) - torch.searchsorted(o_sorted, o_sorted, side="left")
    return torch.argsort(rank * (int(owner.max()) + 1) + owner, stable=True)


def solve(
    system,
    x0: Tensor,
    p: Mapping[str, Tensor],
    owner: Tensor,
    *,
    center: Tensor,
    half_width: Tensor,
    radius0: float,
    root_tol: float = 1e-10,
    xtol: float = 1e-10,
    root_xtol: float = 1e-13,
    max_iter: int = 200,
    far: float = 3.0,
    patience: int = 10,
    warmup: int = 10,
    stall: float = 0.5,
    chunk: int | None = None,
    merge: bool = True,
) -> Solution:
    """Minimise ``q = |g|^2/2`` from every state of ``x0`` ``(N, d)``; ``p[k][owner]`` are the states' parameters.

    A state outside ``center +- far * half_width`` (or with a non-finite residual) stops as ``OUTSIDE``; one whose
    ``q`` did not drop below ``stall`` times its value ``patience`` iterations before (checked every ``patience``
    iterations from iteration ``warmup`` on) stops as ``STATIONARY`` (a slow valley or a minimum of q).
    Dense linear algebra runs on sub-batches of ``chunk`` states (default ``BLOCK_ENTRIES / d^2``). With
    ``merge``, a state that the chord iteration of a root already found for its owner captures stops as a
    copy of it (see :class:`KnownRoots`); to find the roots early, when there are more than twice
    ``max(chunk, FIRST_BATCH)`` states, a first batch of that many (the first starts of every owner) runs
    before all the others.
    """
    N, d = x0.shape
    x = x0.clone()
    out = Solution(x, torch.full((N,), torch.inf, dtype=x.dtype, device=x.device),
                   torch.full((N,), torch.inf, dtype=x.dtype, device=x.device),
                   torch.full((N,), MAX_ITER, dtype=torch.int8, device=x.device),
                   torch.zeros(N, dtype=torch.int64, device=x.device))
    known = KnownRoots(d, x) if merge else None
    chunk = chunk or max(1, int(BLOCK_ENTRIES) // (d * d))
    kw = dict(center=center, limit=far * half_width, radius0=radius0, root_tol=root_tol, xtol=xtol,
              root_xtol=root_xtol, max_iter=max_iter, patience=patience, warmup=warmup, stall=stall,
              chunk=chunk)
    first = max(chunk, int(FIRST_BATCH))
    if merge and N > 2 * first:
        order = _block_order(owner)
        _solve_batch(system, out, order[:first], p, owner, known, **kw)
        _solve_batch(system, out, order[first:], p, owner, known, **kw)
    elif N:
        _solve_batch(system, out, torch.arange(N, device=x.device), p, owner, known, **kw)
    return out


def _solve_batch(system, out: Solution, ids: Tensor, p: Mapping[str, Tensor], owner: Tensor,
                 known: KnownRoots | None, *, center: Tensor, limit: Tensor, radius0: float, root_tol: float,
                 xtol: float, root_xtol: float, max_iter: int, patience: int, warmup: int, stall: float,
                 chunk: int) -> None:
    """Run :func:`solve`'s iterations on the states ``ids`` (one batch), writing into ``out``."""
    x, dtype, dev = out.x, out.x.dtype, out.x.device
    n = ids.numel()
    own = owner.index_select(0, ids)
    pb = take(p, own)
    xb = x.index_select(0, ids)
    radius = torch.full((n,), float(radius0), dtype=dtype, device=dev)
    q_ckpt = torch.full((n,), torch.inf, dtype=dtype, device=dev)
    status = torch.full((n,), MAX_ITER, dtype=torch.int8, device=dev)
    q_out = torch.full((n,), torch.inf, dtype=dtype, device=dev)
    ginf_out = q_out.clone()
    n_iter = torch.zeros(n, dtype=torch.int64, device=dev)
    active = torch.arange(n, device=dev)
    tiny = torch.finfo(dtype).tiny
    for it in range(max_iter):
        if active.numel() == 0:
            break
        xa = xb.index_select(0, active)
        pa = take(pb, active)
        g = system.residual(xa, pa)
        q = 0.5 * (g * g).sum(-1)
        ginf = g.abs().amax(-1)
        q_out[active] = q
        ginf_out[active] = ginf
        n_iter[active] = it
        outside = ~torch.isfinite(q) | ((xa - center).abs() > limit).any(-1)
        status[active[outside]] = OUTSIDE
        done = outside
        if known is not None and len(known):
            merged, j = known.match(system, xa, g, pa, own.index_select(0, active), MERGE_RADIUS * radius0,
                                     root_xtol)
            merged &= ~outside
            if bool(merged.any()):
                m, jm = active[merged], j[merged]
                xb[m] = known.x[jm]
                q_out[m], ginf_out[m] = known.q[jm], known.ginf[jm]
                status[m] = ROOT
                done = done | merged
        if bool(done.any()):
            live = (~done).nonzero().squeeze(-1)
            if live.numel() == 0:
                active = active[:0]
                break
            active, xa, g, q, ginf = active[live], xa[live], g[live], q[live], ginf[live]
            pa = take(pb, active)
        rad = radius.index_select(0, active)
        st = _dogleg(system, xa, pa, g, rad, ginf, root_tol, chunk)
        scale = 1 + xa.abs().amax(-1)
        bad = ~torch.isfinite(st.step).all(-1)
        status[active[bad]] = OUTSIDE
        root = ~bad & (ginf <= root_tol) & ((st.n_newton <= root_xtol * scale) | (ginf == 0))
        stalled = ~bad & ~root & (rad <= xtol * scale)
        if (it - warmup) % patience == 0:
            # not making progress: q did not drop `stall`-fold over the last `patience` iterations (not a root)
            slow = (q > stall * q_ckpt.index_select(0, active)) & (it >= warmup)
            stalled |= ~bad & ~root & slow & (ginf > root_tol)
            q_ckpt[active] = q
        status[active[root]] = ROOT
        status[active[stalled]] = STATIONARY
        if known is not None and st.near.numel():
            r = root[st.near] & torch.isfinite(st.n_newton[st.near])  # roots with an LU factorisation
            rn = st.near[r]
            known.add(xa[rn], own[active[rn]], q[rn], ginf[rn], st.lu[r], st.piv[r])
        keep = ~(bad | root | stalled)
        if not bool(keep.any()):
            active = active[:0]
            break
        kidx = keep.nonzero().squeeze(-1)
        idx = active[kidx]
        xk, gk, qk = xa[kidx], g[kidx], q[kidx]
        sk, jsk, rk = st.step[kidx], st.j_step[kidx], rad[kidx]
        x_new = xk + sk
        g_new = system.residual(x_new, take(pa, kidx))
        q_new = 0.5 * (g_new * g_new).sum(-1)
        lin = gk + jsk
        pred = qk - 0.5 * (lin * lin).sum(-1)
        actual = qk - q_new
        ratio = actual / pred.clamp(min=tiny)
        accept = torch.isfinite(q_new) & (actual > 0) & (ratio > 1e-4)
        n_step = sk.norm(dim=-1)
        new_rad = torch.where(ratio < 0.25, 0.25 * n_step, rk)
        new_rad = torch.where((ratio > 0.75) & accept, torch.maximum(rk, 2 * n_step), new_rad)
        new_rad = torch.where(torch.isfinite(q_new), new_rad, 0.25 * n_step).clamp(max=4 * radius0)
        radius[idx] = new_rad
        xb[idx] = torch.where(accept.unsqueeze(-1), x_new, xk)
        # a negligible accepted change that is not a root: stationary point of q (candidate ghost)
        g_new_inf = g_new.abs().amax(-1)
        tiny_step = accept & (n_step <= xtol * (1 + xk.abs().amax(-1))) & (g_new_inf > root_tol)
        status[idx[tiny_step]] = STATIONARY
        q_out[idx[tiny_step]] = q_new[tiny_step]
        ginf_out[idx[tiny_step]] = g_new_inf[tiny_step]
        n_iter[idx[tiny_step]] = it + 1
        active = idx[~tiny_step]
    if active.numel():
        xa = xb.index_select(0, active)
        g = system.residual(xa, take(pb, active))
        q_out[active] = 0.5 * (g * g).sum(-1)
        ginf_out[active] = g.abs().amax(-1)
        n_iter[active] = max_iter
    x[ids] = xb
    out.q[ids], out.g_inf[ids], out.status[ids], out.n_iter[ids] = q_out, ginf_out, status, n_iter

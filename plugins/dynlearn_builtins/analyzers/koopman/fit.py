"""The fitting pipeline of ``koopman_separatrix``, batched over sweep elements (and eigenvalue candidates).

1. simulate sampled states to find the two classes (attractors, or bounded vs diverged) — :mod:`.._shared.attractors`;
2. train one eigenfunction network per (sweep element, eigenvalue candidate) — :mod:`.train`; along an
   ordered sweep dim (``epoch``) each slice starts from the previous slice's trained networks (warm start), so the
   separatrix is followed through training;
3. validate every network on crossing points found by simulation along random curves between the classes, keep
   the best candidate per sweep element — :mod:`.locate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynlearn import outcome as oc
from dynlearn.params import Settings
from dynlearn.progress import Meter
from dynlearn.sweep import Batch

from .._shared.attractors import Settled, attractor_classes, polish_centroids, settle
from .._shared.states import user_states
from . import options as opt
from .adapt import boundary_samples, label_near_zero
from .locate import first_crossing
from .net import BatchedMLP
from .train import Curves, TrainConfig, eigen_lambda, eigen_raw, train_psi

Tensor = torch.Tensor

__all__ = ["Fitted", "fit_batch", "classifier"]


@dataclass
class Fitted:
    """Everything a fit produces (float64 networks of the selected candidates, ``B`` sweep elements)."""

    net: BatchedMLP
    eigenvalue: Tensor            # (B,)
    candidates: Tensor            # (K,) eigenvalue candidates (NaN: learned)
    chosen: Tensor                # (B,) index of the selected candidate
    cand_error: Tensor            # (B, K) validation error (90% quantile of crossing distance) per candidate
    settled: Settled
    active: Tensor                # (B,) two classes found and valid parameters
    curves: Curves                # per selected network (B,)
    crossing_sim: Tensor          # (B, C, d) crossing points by simulation
    crossing_psi: Tensor          # (B, C, d) crossing points of psi along the same curves
    curve_ends: Tensor            # (B, C, 3, d) start, end and control point of each validation curve


def classifier(system, st: Settled, p: dict[str, Tensor], horizon: float):
    """``label(x (B, ..., d)) -> (B, ...)`` in {-1, +1}: simulate, then diverged -> +1 when that class exists,
    else the label of the nearest labelled final state (1-NN). ``label(x, settled=True)`` also returns the
    :class:`Settled` simulation (states flattened to ``(B, n, d)``)."""
    has_div = ((st.label == 1) & (st.code != oc.OK)).any(1)
    ref, ref_lab = st.final, st.label
    ref_ok = (ref_lab != 0) & (st.code == oc.OK)

    def label(x: Tensor, settled: bool = False):
        shape = x.shape[:-1]
        B, d = shape[0], x.shape[-1]
        flat = x.reshape(B, -1, d)
        s = settle(system, flat, p, horizon=horizon)
        dist = torch.cdist(torch.nan_to_num(s.final, nan=0.0, posinf=1e6, neginf=-1e6), ref)
        dist = torch.where(ref_ok.unsqueeze(1), dist, torch.inf)
        nn = ref_lab.gather(1, dist.argmin(-1)).to(torch.int64)
        nn = torch.where(nn == 0, -1, nn)
        lab = torch.where(has_div.unsqueeze(1), torch.where(s.code != oc.OK, 1, -1), nn)
        lab = torch.where(~has_div.unsqueeze(1) & (s.code != oc.OK), 1, lab)
        return (lab.reshape(shape), s) if settled else lab.reshape(shape)

    return label


def _validation_curves(st: Settled, n_curves: int, lo: Tensor, hi: Tensor, g: torch.Generator) -> Tensor:
    """``(B, C, 3, d)``: start (class -1), end (class +1) and control point of random quadratic curves."""
    B, n, d = st.x0.shape
    minus = (st.label == -1).to(torch.float64) + 1e-12
    plus = (st.label == 1).to(torch.float64) + 1e-12
    i = torch.multinomial(minus, n_curves, replacement=True, generator=g)
    j = torch.multinomial(plus, n_curves, replacement=True, generator=g)
    a = st.x0.gather(1, i.unsqueeze(-1).expand(B, n_curves, d))
    b = st.x0.gather(1, j.unsqueeze(-1).expand(B, n_curves, d))
    direction = torch.randn(B, n_curves, d, generator=g, dtype=torch.float64).to(a.dtype)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    bend = 0.25 * (b - a).norm(dim=-1, keepdim=True) * (2 * torch.rand(B, n_curves, 1, generator=g, dtype=torch.float64) - 1)
    c = torch.minimum(torch.maximum(0.5 * (a + b) + bend.to(a.dtype) * direction, lo), hi)
    return torch.stack([a, b, c], dim=2)


def _psi_crossings(net: BatchedMLP, ends: Tensor) -> Tensor:
    """First sign change of each network's psi along the validation curves ``ends (B, C, 3, d)``."""
    B, d = ends.shape[0], ends.shape[-1]
    a, b, c = ends[:, :, 0], ends[:, :, 1], ends[:, :, 2]

    def psi_label(x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.where(net(x.reshape(B, -1, d)) >= 0, 1, -1).reshape(x.shape[:-1])

    start = torch.full(a.shape[:-1], -1, dtype=torch.int64)
    return first_crossing(psi_label, a, b, c, start, points=64, rounds=4)[0]


def _validation_error(cross_psi: Tensor, cross_sim: Tensor) -> Tensor:
    """90% quantile over curves of the distance between psi's and the simulated crossing (inf if psi misses)."""
    e = (cross_psi - cross_sim).norm(dim=-1)
    missed = torch.isnan(e) & ~torch.isnan(cross_sim[..., 0])
    e = torch.where(missed, torch.full_like(e, 1e30), e)
    return torch.nanquantile(e, 0.9, dim=1)


def fit_batch(s: Settings, batch: Batch, show_progress: bool | None) -> Fitted:
    """Fit the eigenfunctions of every sweep element of ``batch`` with the analyzer's settings ``s``.

    With ``K > 1`` eigenvalue candidates, every candidate trains for the first ``select_fraction`` of the steps;
    the candidate with the smallest validation error continues alone (successive halving). Later slices of a
    warm-start dim continue the selected networks.
    """
    system = batch.system
    B, d = batch.size, system.state_dim
    g = torch.Generator().manual_seed(int(s.seed))
    lo64, hi64 = (torch.as_tensor(v, dtype=torch.float64) for v in system.domain())
    p64 = system.expand_params(batch.params, 1)
    horizon = opt.horizon(s, system)
    x0 = (lo64 + (hi64 - lo64) * torch.rand(1, s.n_samples, d, generator=g, dtype=torch.float64)).expand(B, -1, -1)
    if s.initial_states is not None:  # the user's states join the uniform ones
        x0 = torch.cat([x0, user_states(s.initial_states, batch, system, noise=float(s.initial_noise), generator=g)], 1)
    st = settle(system, x0.contiguous(), p64, horizon=horizon)
    tol = s.cluster_tol * float((hi64 - lo64).norm())
    st = polish_centroids(system, attractor_classes(st, tol=tol), p64, tol)
    active = batch.valid & (st.label == 1).any(1) & (st.label == -1).any(1)

    # validation curves and their crossings by simulation (independent of the networks)
    ends = _validation_curves(st, s.n_curves, lo64, hi64, g)
    start_lab = torch.full(ends.shape[:2], -1, dtype=torch.int64)
    label_fn = classifier(system, st, p64, horizon)
    cross_sim, _ = first_crossing(label_fn, ends[:, :, 0], ends[:, :, 1], ends[:, :, 2], start_lab)
    pool, anchors, starts, extra = _training_states(s, system, st, x0, p64, horizon, label_fn, lo64, hi64, g)

    cands = opt.candidates(s, system)
    K = len(cands)
    tdtype = torch.float32 if s.precision == "float32" else torch.float64
    cfg = opt.train_config(s, system)
    center, scale = (lo64 + hi64) / 2, (hi64 - lo64) / 2
    compact = 3.0 if system.kind == "map" else None
    lo, hi = lo64.to(tdtype), hi64.to(tdtype)

    order = opt.warm_order(s, batch) or [torch.arange(B)]
    labels = st.label.clone()
    net_all: BatchedMLP | None = None                    # selected networks, one per sweep element
    raw_all = torch.zeros(B, dtype=tdtype)
    cand_error = torch.full((B, K), torch.nan, dtype=torch.float64)
    chosen = torch.zeros(B, dtype=torch.long)
    curve_parts: list[tuple[Tensor, Curves]] = []
    n_first = int(round(s.select_fraction * cfg.steps)) if K > 1 else cfg.steps
    total = cfg.steps + (len(order) - 1) * opt.warm_steps(s) + (K - 1) * n_first
    with Meter(total, f"koopman_separatrix ({system.name})", show_progress, unit="step") as meter:
        for gi, idx in enumerate(order):
            R = len(idx)
            common = dict(lo=lo, hi=hi, generator=g, meter=meter)

            def data(rep: int, idx=idx):
                r = (lambda t: t[idx].repeat_interleave(rep, dim=0))  # noqa: E731
                return dict(p={k: r(v).to(tdtype) for k, v in p64.items()}, pool=r(pool).to(tdtype),
                            anchors=r(anchors).to(tdtype), labels=torch.cat([labels[idx], flip(idx) * extra[idx]], 1)
                            .repeat_interleave(rep, dim=0),
                            active=r(active), starts=r(starts).to(tdtype))

            def flip(idx: Tensor) -> Tensor:
                """-1 for rows whose labels ``_align`` flipped (the boundary labels follow), else +1."""
                flipped = ((labels[idx].to(torch.int64) * st.label[idx].to(torch.int64)) < 0).any(1, keepdim=True)
                return torch.where(flipped, -1, 1).to(extra.dtype)

            if gi > 0:
                prev = order[gi - 1]
                labels[idx] = _align(net_all.select(prev), st, idx, labels)
                net0 = net_all.select(prev).detach()
                cfg_w = TrainConfig(**{**cfg.__dict__, "steps": opt.warm_steps(s)})
                net, raw, curves, _ = train_psi(system, net=net0, raw_lam=raw_all[prev], cfg=cfg_w, **data(1), **common)
                chosen[idx] = chosen[prev]
                cand_error[idx] = cand_error[prev]
                parts = [curves]
            else:
                net0 = BatchedMLP.init(R * K, d, s.width, s.depth, center, scale, compact, g, tdtype)
                raw0 = torch.tensor([eigen_raw(system.kind, c if c == c else opt.eigenvalue_init(s, system)) for c in cands],
                                    dtype=tdtype).repeat(R)
                net, raw, state, k0, pieces = net0, raw0, None, 0, []
                for k1 in (opt.active_stops(s, system, n_first) if K == 1 else []) + [n_first]:
                    net, raw, piece, state = train_psi(system, net=net, raw_lam=raw, cfg=cfg, start=k0, stop=k1,
                                                       opt_state=state, **data(K), **common)
                    pieces.append(piece)
                    if k1 < n_first:      # active learning: label psi's current zero set by simulation
                        sub = classifier(system, _subset(st, idx), {k: v[idx] for k, v in p64.items()}, horizon)
                        xa, fa, la = label_near_zero(net.to(torch.float64), sub, int(s.n_active), lo64, hi64, g)
                        anchors, starts, extra = _append(anchors, starts, extra, idx, xa, fa, la)
                    k0 = k1
                curves1 = _concat(pieces)
                parts = [curves1]
                if K > 1:
                    err = _validation_error(_psi_crossings(net.to(torch.float64), _rep(ends[idx], K)),
                                            _rep(cross_sim[idx], K)).view(R, K)
                    cand_error[idx] = err
                    best = torch.nan_to_num(err, nan=torch.inf).argmin(1)
                    chosen[idx] = best
                    sel = torch.arange(R) * K + best
                    net, raw = net.select(sel), raw[sel]
                    state = {k: v[sel] for k, v in state.items()}
                    parts = [_pick(curves1, R, K, best)]
                    net, raw, curves2, _ = train_psi(system, net=net, raw_lam=raw, cfg=cfg, start=n_first,
                                                     opt_state=state, **data(1), **common)
                    parts.append(curves2)
            net_all = _scatter(net_all, net, idx, B)
            raw_all[idx] = raw
            curve_parts.append((idx, _concat(parts)))
    st.label = labels
    net64 = net_all.to(torch.float64)
    lam = eigen_lambda(system.kind, raw_all.to(torch.float64))
    cross_psi = _psi_crossings(net64, ends)
    err = _validation_error(cross_psi, cross_sim)
    cand_error = torch.where(torch.isnan(cand_error).all(1, keepdim=True) & (torch.arange(K) == 0), err.unsqueeze(1),
                             cand_error)
    curves = _gather_curves(curve_parts, B)
    return Fitted(net64, lam, torch.tensor(cands, dtype=torch.float64), chosen, cand_error, st, active, curves,
                  cross_sim, cross_psi, ends)


def _training_states(s: Settings, system, st: Settled, x0: Tensor, p64, horizon: float, label_fn, lo64: Tensor,
                     hi64: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Residual pool (trajectory states), anchors (final states), sign-term states and the labels of the extra
    (boundary) states beyond ``st``'s own samples (``(B, 0)`` without boundary sampling)."""
    B, d = x0.shape[0], x0.shape[-1]
    pool = st.path[1:].permute(1, 0, 2, 3).reshape(B, -1, d)
    span = (hi64 - lo64).abs().max()
    good = torch.isfinite(pool).all(-1) & ((pool - (lo64 + hi64) / 2).abs() <= 2 * span).all(-1)
    pool = pool[:, good.all(0)] if system.kind == "map" else torch.where(good.unsqueeze(-1), pool, x0[:, :1])
    anchors = torch.nan_to_num(st.final, nan=0.0, posinf=1e6, neginf=-1e6)
    starts, extra = st.x0, torch.zeros(B, 0, dtype=st.label.dtype)
    if opt.boundary(s, system):
        ends = _validation_curves(st, int(s.n_boundary), lo64, hi64, g)
        bd = boundary_samples(system, label_fn, st, ends, p64, horizon=horizon, noise=float(s.boundary_noise),
                              n_noisy=int(s.boundary_copies), lo=lo64, hi=hi64, g=g,
                              trajectory_labels=bool(s.trajectory_labels))
        good = torch.isfinite(bd.path).all(-1) & ((bd.path - (lo64 + hi64) / 2).abs() <= 2 * span).all(-1)
        path = bd.path[:, good.all(0)] if system.kind == "map" else torch.where(good.unsqueeze(-1), bd.path, x0[:, :1])
        pool = torch.cat([pool, path], 1)
        anchors = torch.cat([anchors, bd.final], 1)
        starts = torch.cat([starts, bd.x0], 1)
        extra = bd.label.to(st.label.dtype)
    return pool, anchors, starts, extra


def _subset(st: Settled, idx: Tensor) -> Settled:
    return Settled(st.x0[idx], st.final[idx], st.code[idx], st.path[:, idx], st.label[idx])


def _append(anchors: Tensor, starts: Tensor, extra: Tensor, idx: Tensor, x0: Tensor, final: Tensor,
            label: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Add labelled states ``x0 (R, n, d)`` (rows ``idx`` of the batch; other rows get label 0)."""
    B, n, d = anchors.shape[0], x0.shape[1], x0.shape[-1]
    new = {}
    for key, v, fill in (("a", final, anchors), ("s", x0, starts)):
        t = fill[:, :1].expand(B, n, d).clone()
        t[idx] = v.to(t.dtype)
        new[key] = torch.cat([fill, t], 1)
    lab = torch.zeros(B, n, dtype=extra.dtype)
    lab[idx] = label.to(extra.dtype)
    return new["a"], new["s"], torch.cat([extra, lab], 1)


def _rep(t: Tensor, K: int) -> Tensor:
    return t.repeat_interleave(K, dim=0)


def _pick(c: Curves, R: int, K: int, best: Tensor) -> Curves:
    """The curves of the selected candidate of each of ``R`` elements (networks ordered ``r * K + k``)."""
    sel = torch.arange(R) * K + best
    return Curves(list(c.step), *[[v[sel] for v in getattr(c, key)] for key in ("loss", "residual", "anchor",
                                                                               "eigenvalue")])


def _concat(parts: list[Curves]) -> Curves:
    out = Curves([], [], [], [], [])
    for c in parts:
        for key in ("step", "loss", "residual", "anchor", "eigenvalue"):
            getattr(out, key).extend(getattr(c, key))
    return out


def _gather_curves(parts: list[tuple[Tensor, Curves]], B: int) -> Curves:
    """Per-element curves ``(B, n_log)`` (NaN-padded: warm-started slices log fewer steps)."""
    n_log = max(len(c.step) for _, c in parts)
    steps = next(c.step for _, c in parts if len(c.step) == n_log)
    out = {}
    for key in ("loss", "residual", "anchor", "eigenvalue"):
        arr = torch.full((B, n_log), torch.nan, dtype=torch.float64)
        for idx, c in parts:
            vals = torch.stack([v.to(torch.float64) for v in getattr(c, key)], 1)
            arr[idx, : vals.shape[1]] = vals
        out[key] = arr
    return Curves(list(steps), out["loss"], out["residual"], out["anchor"], out["eigenvalue"])


def _scatter(nets: BatchedMLP | None, trained: BatchedMLP, idx: Tensor, B: int) -> BatchedMLP:
    """Write the networks ``trained`` at positions ``idx`` of a ``B``-network batch (created on first use)."""
    if nets is None:
        params = {k: torch.zeros(B, *v.shape[1:], dtype=v.dtype) for k, v in trained.params.items()}
        nets = BatchedMLP(params, trained.center, trained.scale, trained.compact_radius)
    params = {k: v.detach().clone() for k, v in nets.params.items()}
    for k in params:
        params[k][idx] = trained.params[k].detach().to(params[k].dtype)
    return BatchedMLP(params, nets.center, nets.scale, nets.compact_radius)


def _align(prev: BatchedMLP, st: Settled, idx: Tensor, labels: Tensor) -> Tensor:
    """Labels of the slice ``idx`` flipped where the previous slice's networks say the opposite at both attractors
    (keeps the sign of psi consistent along the warm-start dim)."""
    lab = labels[idx]
    cen = st.centroid[idx]                                  # (R, 2, d): class -1 and +1
    ok = torch.isfinite(cen).all(-1).all(-1)
    with torch.no_grad():
        v = prev(torch.nan_to_num(cen.to(prev.dtype)))      # (R, 2)
    flip = ok & (v[:, 0] > 0) & (v[:, 1] < 0)
    return torch.where(flip.unsqueeze(1), -lab, lab)

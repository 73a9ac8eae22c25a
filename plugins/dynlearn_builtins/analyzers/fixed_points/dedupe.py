"""Batched duplicate removal for the fixed-point analyzer (private; see :func:`dedupe`)."""

from __future__ import annotations

import torch

from dynlearn.periodic import Circle, delta

Tensor = torch.Tensor


def dedupe(x: Tensor, q: Tensor, keep: Tensor, tol: float | Tensor, count: Tensor | None = None,
           circle: Circle | None = None) -> tuple[Tensor, Tensor]:
    """Duplicate removal inside each row: ``x`` ``(B, S, d)``, ``q`` ``(B, S)``, ``keep`` ``(B, S)`` candidates.

    Two candidates closer than ``tol`` (on the circle of periodic coordinates, :func:`dynlearn.periodic.delta`)
    belong to the same point (connected components of that graph, found by min-label propagation with pointer
    jumping, batched over ``B``); each component keeps its lowest-``q`` member, which sums the ``count`` (starts
    that reached each candidate; 1 each by default) of its members. Exact copies (states merged into the same
    known root) are collapsed to their first member before the pairwise distances, which then cover the
    distinct candidates only. Returns the new ``keep`` mask and the counts (0 where not kept).
    """
    B, S, d = x.shape
    count = keep.to(torch.int64) if count is None else torch.where(keep, count, 0)
    flat = keep.reshape(-1).nonzero().squeeze(-1)
    if flat.numel() < 2:
        return keep, count
    owner = flat // S
    rows = torch.cat([owner.to(x.dtype).unsqueeze(-1), x.reshape(-1, d)[flat]], -1)
    uniq, inv = torch.unique(rows, dim=0, return_inverse=True)
    if uniq.shape[0] == flat.numel():
        rep = _representatives(x, q, keep, tol, circle)
        return _merged(keep, count, rep)
    pos = torch.arange(flat.numel(), device=x.device)
    first = torch.full((uniq.shape[0],), flat.numel(), dtype=pos.dtype, device=x.device)
    first = first.scatter_reduce(0, inv, pos, "amin")
    rep0 = flat[first.sort().values]  # representatives, grouped by owner (flat indices are owner-major)
    b = rep0 // S
    per_b = torch.bincount(b, minlength=B)
    slot = torch.arange(rep0.numel(), device=x.device) - (per_b.cumsum(0) - per_b)[b]
    P = int(per_b.max())
    xs = x.new_zeros(B, P, d)
    qs = torch.full((B, P), torch.inf, dtype=q.dtype, device=q.device)
    ks = torch.zeros(B, P, dtype=torch.bool, device=x.device)
    xs[b, slot], qs[b, slot], ks[b, slot] = x.reshape(-1, d)[rep0], q.reshape(-1)[rep0], True
    rep_slot = _representatives(xs, qs, ks, tol, circle)  # (B, P): slot of each slot's representative
    # every candidate -> its exact-copy representative (flat) -> that one's slot -> the component's slot -> flat
    slot_of = torch.full((B * S,), -1, dtype=torch.int64, device=x.device)
    slot_of[rep0] = slot
    copy_rep = flat[first[inv]]  # (n,) flat index of each candidate's exact-copy representative
    flat_of_slot = torch.full((B, P), -1, dtype=torch.int64, device=x.device)
    flat_of_slot[b, slot] = rep0
    comp_slot = rep_slot[owner, slot_of[copy_rep]]
    rep = torch.full((B * S,), -1, dtype=torch.int64, device=x.device)
    rep[flat] = flat_of_slot[owner, comp_slot] - owner * S
    return _merged(keep, count, rep.reshape(B, S))


def _merged(keep: Tensor, count: Tensor, rep: Tensor) -> tuple[Tensor, Tensor]:
    """``keep`` of the representatives and their summed counts, from the representative index ``rep``."""
    S = keep.shape[1]
    idx = torch.arange(S, device=keep.device)
    kept = keep & (rep == idx)
    total = torch.zeros_like(count).scatter_add_(1, rep.clamp(min=0), torch.where(keep, count, 0))
    return kept, torch.where(kept, total, 0)


def _representatives(x: Tensor, q: Tensor, keep: Tensor, tol: float | Tensor, circle: Circle | None) -> Tensor:
    """Index ``(B, S)`` of each candidate's component representative (its lowest-``q`` member; -1 where not
    kept), on all pairs of candidates."""
    B, S, _ = x.shape
    if S == 0:
        return torch.full((B, S), -1, dtype=torch.int64, device=x.device)
    tol = torch.as_tensor(tol, dtype=x.dtype, device=x.device)
    tol = tol.reshape(-1, 1, 1) if tol.dim() else tol
    if circle is not None and circle.any:
        dist = torch.linalg.vector_norm(delta(x.unsqueeze(2), x.unsqueeze(1), circle), dim=-1)
    else:
        dist = torch.cdist(x, x)
    adj = (dist <= tol) & keep.unsqueeze(1) & keep.unsqueeze(2)
    # order by q so the component label (its smallest index) is its lowest-q member
    qk = torch.where(keep, q, torch.full_like(q, torch.inf))
    order = torch.argsort(qk, dim=1, stable=True)
    rank = torch.argsort(order, dim=1)
    big = torch.full((B, S), S, dtype=torch.int64, device=x.device)
    label = torch.where(keep, rank, big)
    while True:
        nb = torch.where(adj, label.unsqueeze(1), big.unsqueeze(1)).amin(-1)
        new = torch.minimum(label, nb)
        # pointer jumping: label <- label of the member ranked `label`
        by_rank = torch.gather(new, 1, order)  # labels listed by rank
        jumped = torch.gather(by_rank, 1, new.clamp(max=S - 1))
        new = torch.where(keep, torch.minimum(new, jumped), big)
        if torch.equal(new, label):
            break
        label = new
    return torch.where(keep, order.gather(1, label.clamp(max=S - 1)), -1)

"""Batched duplicate removal for the fixed-point analyzer (private; see :func:`dedupe`)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def dedupe(x: Tensor, q: Tensor, keep: Tensor, tol: float | Tensor) -> Tensor:
    """Duplicate removal inside each row: ``x`` ``(B, S, d)``, ``q`` ``(B, S)``, ``keep`` ``(B, S)`` candidates.

    Two candidates closer than ``tol`` belong to the same point (connected components of that graph, found by
    min-label propagation with pointer jumping, batched over ``B``); each component keeps its lowest-``q``
    member. Exact copies (states merged into the same known root) are collapsed to their first member before
    the pairwise distances, which then cover the distinct candidates only. Returns the new ``keep`` mask.
    """
    B, S, d = x.shape
    flat = keep.reshape(-1).nonzero().squeeze(-1)
    if flat.numel() < 2:
        return keep
    owner = flat // S
    rows = torch.cat([owner.to(x.dtype).unsqueeze(-1), x.reshape(-1, d)[flat]], -1)
    uniq, inv = torch.unique(rows, dim=0, return_inverse=True)
    if uniq.shape[0] == flat.numel():
        return _dedupe(x, q, keep, tol)
    pos = torch.arange(flat.numel(), device=x.device)
    first = torch.full((uniq.shape[0],), flat.numel(), dtype=pos.dtype, device=x.device)
    first = first.scatter_reduce(0, inv, pos, "amin")
    rep = flat[first.sort().values]  # representatives, grouped by owner (flat indices are owner-major)
    b = rep // S
    count = torch.bincount(b, minlength=B)
    slot = torch.arange(rep.numel(), device=x.device) - (count.cumsum(0) - count)[b]
    P = int(count.max())
    xs = x.new_zeros(B, P, d)
    qs = torch.full((B, P), torch.inf, dtype=q.dtype, device=q.device)
    ks = torch.zeros(B, P, dtype=torch.bool, device=x.device)
    xs[b, slot], qs[b, slot], ks[b, slot] = x.reshape(-1, d)[rep], q.reshape(-1)[rep], True
    kept = _dedupe(xs, qs, ks, tol)
    out = torch.zeros(B * S, dtype=torch.bool, device=x.device)
    out[rep] = kept[b, slot]
    return out.reshape(B, S)


def _dedupe(x: Tensor, q: Tensor, keep: Tensor, tol: float | Tensor) -> Tensor:
    """:func:`dedupe` on all pairs of candidates."""
    B, S, _ = x.shape
    if S == 0:
        return keep
    tol = torch.as_tensor(tol, dtype=x.dtype, device=x.device)
    tol = tol.reshape(-1, 1, 1) if tol.dim() else tol
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
    return keep & (label == rank)

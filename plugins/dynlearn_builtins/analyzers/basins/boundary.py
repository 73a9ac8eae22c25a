"""Separatrix points of the basins analyzer (private): batched bisection between neighbouring samples.

Neighbouring samples (grid neighbours along each axis, or mutual k-nearest neighbours of quasi-random samples)
whose orbits end in different basins ``a < b`` bracket a point of the boundary of basin ``a`` on the segment
joining them. All brackets of all sweep elements are bisected together: each round evolves every midpoint (one
batched run) and labels it; the midpoint replaces the end in basin ``a`` if it is in basin ``a``, the other end
otherwise. The bracket thus always has one end in basin ``a`` and one outside it, so after
``n = ceil(log2(L0 / (2 tol)))`` rounds its midpoint is within ``tol`` of a point of the boundary of basin ``a``.
When the other end meets a third basin (basins intertwined near the boundary, e.g. the two branches of minima
inside the two-factor ellipse) the point is still on the boundary of ``a``; it is flagged ``mixed`` and the
other side's final basin is reported.

    >>> grid_pairs((2, 3)).tolist()
    [[0, 3], [1, 4], [2, 5], [0, 1], [1, 2], [3, 4], [4, 5]]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["grid_pairs", "knn_pairs", "select_pairs", "Brackets", "bisect"]

Tensor = torch.Tensor


def grid_pairs(shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices ``(P, 2)`` of the pairs of grid points adjacent along one axis (C order)."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    out = []
    for ax, n in enumerate(shape):
        a = np.take(idx, np.arange(n - 1), axis=ax).ravel()
        b = np.take(idx, np.arange(1, n), axis=ax).ravel()
        out.append(np.stack([a, b], axis=1))
    return np.concatenate(out) if out else np.empty((0, 2), np.int64)


def knn_pairs(points: np.ndarray, k: int) -> np.ndarray:
    """Unique pairs ``(i, j)``, ``i < j``, of each point with its ``k`` nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(points) - 1)
    if k < 1:
        return np.empty((0, 2), np.int64)
    _, nb = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    i = np.repeat(np.arange(len(points)), k)
    j = nb[:, 1:].ravel()
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)
    return np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)


def select_pairs(pairs: np.ndarray, labels: np.ndarray, eligible: np.ndarray, max_points: int) -> np.ndarray:
    """Pairs ``(i, j)`` whose ends are in two different eligible basins (``eligible[label]``), ordered so that
    ``labels[i] < labels[j]``; at most ``max_points``, shared evenly between the pairs of basins and evenly
    spread over each one's candidates (deterministic)."""
    la, lb = labels[pairs[:, 0]], labels[pairs[:, 1]]
    ok = (la != lb) & (la >= 0) & (lb >= 0)
    ok[ok] &= eligible[la[ok]] & eligible[lb[ok]]
    cand = pairs[ok]
    swap = labels[cand[:, 0]] > labels[cand[:, 1]]
    cand = np.where(swap[:, None], cand[:, ::-1], cand)
    kind = labels[cand[:, 0]] * (len(eligible) + 1) + labels[cand[:, 1]]
    types, counts = np.unique(kind, return_counts=True)
    quota = np.zeros(len(types), dtype=np.int64)
    left = int(max_points)
    while left > 0 and (quota < counts).any():  # water-filling: equal shares, unused shares passed on
        open_ = np.flatnonzero(quota < counts)
        share = max(1, left // len(open_))
        for t in open_[:left]:
            add = min(share, counts[t] - quota[t], left)
            quota[t] += add
            left -= add
    out = []
    for t, q in zip(types, quota):
        c = cand[kind == t]
        out.append(c[np.unique(np.linspace(0, len(c) - 1, q).round().astype(np.int64))] if q else c[:0])
    return np.concatenate(out) if out else cand


@dataclass
class Brackets:
    """Result of :func:`bisect` for ``P`` brackets."""

    point: Tensor  # (P, d) bracket midpoints
    tolerance: Tensor  # (P,) bracket half-lengths
    other: np.ndarray  # (P,) basin of the end outside basin a, at the end
    mixed: np.ndarray  # (P,) bool: that end met a basin other than its initial one
    rounds: int


def bisect(classify: Callable[[Tensor, Tensor], np.ndarray], x0: Tensor, x1: Tensor, l0: np.ndarray,
           l1: np.ndarray, elem: Tensor, tol: float, *, bits_per_round: int = 1) -> Brackets:
    """Shrink the segments ``[x0, x1]`` (``(P, d)``; ``x0`` in basin ``l0``, ``x1`` outside it) down to
    half-length ``tol``, keeping one end in basin ``l0``.

    Each round labels ``k = 2^m - 1`` equally spaced interior points of every bracket at once
    (``m = bits_per_round``: fewer, larger batched rounds) and keeps the sub-segment ending at the first point
    outside basin ``l0``; ``m = 1`` is plain bisection. Each bracket's result depends only on its own ends.
    ``classify(x (n, d), elem (n,)) -> labels (n,)`` evolves and labels states for their sweep elements.
    """
    x0, x1 = x0.clone(), x1.clone()
    P = x0.shape[0]
    other = np.array(l1, dtype=np.int64, copy=True)
    mixed = np.zeros(P, dtype=bool)
    L0 = float((x1 - x0).norm(dim=-1).max()) if P else 0.0
    bits_needed = max(0, math.ceil(math.log2(L0 / (2 * tol)))) if L0 > 2 * tol else 0
    m = max(1, int(bits_per_round))
    rounds, bits = 0, 0
    rows = np.arange(P)
    while bits < bits_needed:
        mb = min(m, bits_needed - bits)
        k = 2**mb - 1
        frac = torch.arange(1, k + 1, dtype=x0.dtype) / (k + 1)
        pts = x0[:, None, :] + frac[None, :, None] * (x1 - x0)[:, None, :]  # (P, k, d)
        lab = np.asarray(classify(pts.reshape(P * k, -1), elem.repeat_interleave(k))).reshape(P, k)
        out = lab != np.asarray(l0)[:, None]
        j = np.where(out.any(1), out.argmax(1), k)  # first interior point outside basin l0 (k: none)
        new0 = torch.where(torch.as_tensor(j > 0)[:, None], pts[rows, np.maximum(j - 1, 0)], x0)
        new1 = torch.where(torch.as_tensor(j < k)[:, None], pts[rows, np.minimum(j, k - 1)], x1)
        hit = lab[rows, np.minimum(j, k - 1)]
        moved = j < k
        mixed |= moved & (hit != other)
        other = np.where(moved, hit, other)
        x0, x1 = new0, new1
        bits += mb
        rounds += 1
    return Brackets(0.5 * (x0 + x1), 0.5 * (x1 - x0).norm(dim=-1), other, mixed, rounds)

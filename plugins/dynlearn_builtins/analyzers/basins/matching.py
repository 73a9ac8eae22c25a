"""Attractor ids of the basins analyzer, matched across an ordered sweep dim (private).

Each sweep element numbers its own attractors by basin size. Along the matched dim (``match_dim``: a parameter
such as ``mu``, or the epochs of a training run) the attractors of consecutive elements are matched with the
shared matcher :func:`dynlearn.matching.track`, so that the same attractor keeps the same id along the dim; the
lines (every combination of the other sweep dims) are matched independently. An attractor is identified by its
*extent*: the centre and the two corners of the box around its recurrent cells. Two attractors are at distance

``max(|c - c'|, |lo - lo'|, |hi - hi'|)``

(Euclidean, state units), so a fixed point, a cycle or a chaotic set that moves or grows a little with the
parameter continues its track, whichever representative state it has; a different kind costs
``KIND_WEIGHT`` (the gate's share), and pairs further than ``gate`` never match. Ids are numbered per line in
the order the tracks appear: at the first step of the dim by basin size, then each new attractor after the
existing ones. Without a matched dim every element is its own line, and the ids are its basin-size ranks.

    >>> one = np.array([0.5, 0.0, 1.0])                       # 1-D: centre 0.5, cells spanning [0, 1]
    >>> float(set_distance(one, np.array([0.6, 0.0, 1.5])))     # the upper corner moved by 0.5
    0.5
"""

from __future__ import annotations

import numpy as np

from dynlearn.matching import track

__all__ = ["set_distance", "attractor_ids", "KIND_WEIGHT"]

#: cost of continuing a track with an attractor of another kind (the distance term is at most 1)
KIND_WEIGHT = 0.5
_KINDS = ("fixed_point", "fixed_set", "periodic", "chaotic", "quasi_periodic", "aperiodic", "unresolved")


def set_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance between attractor extents flattened to ``(..., 3 d)`` (centre, lower, upper corner):
    the largest of the three Euclidean distances (broadcasting)."""
    diff = a - b
    return np.linalg.norm(diff.reshape(*diff.shape[:-1], 3, -1), axis=-1).max(-1)


def attractor_ids(extents: list[np.ndarray], kinds: list[list[str]], valid: np.ndarray, shape: tuple[int, ...],
                  axis: int | None, gate: float) -> tuple[list[np.ndarray], int]:
    """Id of every attractor of every sweep element, and the number of ids.

    Parameters
    ----------
    extents, kinds
        Per sweep element (flat, C order over ``shape``): its attractors' extents ``(K_e, 3, d)`` and kinds.
    valid
        ``(B,)``: False for elements with invalid parameters, whose attractors get no id (``-1``).
    shape
        The sweep's shape.
    axis
        The matched dim's position in ``shape`` (``None``: no matching).
    gate
        Largest distance (:func:`set_distance`) between consecutive positions of one attractor.

    Returns
    -------
    ids, n_ids
        ``ids[e]`` ``(K_e,)``: the ids (``0 .. n_ids - 1``, or -1) of element ``e``'s attractors, in its order.
    """
    B = len(extents)
    elem = np.arange(B).reshape(shape)
    lines = elem.reshape(B, 1) if axis is None else np.moveaxis(elem, axis, -1).reshape(-1, shape[axis])
    L, steps = lines.shape
    P = max([len(k) for k in kinds] + [1])
    d3 = next((x.shape[1] * x.shape[2] for x in extents if len(x)), 3)
    pos = np.full((L, steps, P, d3), np.nan)
    present = np.zeros((L, steps, P), dtype=bool)
    code = np.zeros((L, steps, P), dtype=np.int64)
    for (li, k), e in np.ndenumerate(lines):  # a few small tables per element, not per sample
        n = len(kinds[e]) if valid[e] else 0
        pos[li, k, :n] = extents[e][:n].reshape(n, d3)
        present[li, k, :n] = True
        code[li, k, :n] = [_KINDS.index(s) for s in kinds[e][:n]]
    tr = track(pos, present, np.zeros_like(code), code, gate=gate, stability_weight=KIND_WEIGHT, max_gap=0,
               distance=set_distance)
    tid = tr.track_of_point
    local = np.full(tid.shape, -1, dtype=np.int64)
    n_ids = 0
    for li in range(L):  # per line, ids in order of appearance (step by step, then by basin size)
        t = tid[li]
        seen, first = np.unique(t[t >= 0], return_index=True)
        rank = np.empty(len(seen), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(seen))
        local[li][t >= 0] = rank[np.searchsorted(seen, t[t >= 0])]
        n_ids = max(n_ids, len(seen))
    ids: list[np.ndarray] = [np.empty(0, np.int64)] * B
    for (li, k), e in np.ndenumerate(lines):
        ids[e] = local[li, k, : len(kinds[e])] if valid[e] else np.full(len(kinds[e]), -1, dtype=np.int64)
    return ids, n_ids

"""Identity matching across an ordered sweep dim (epoch, a parameter): the one matcher of dynlearn.

The bifurcation tracker matches fixed points and slow points from epoch to epoch with it; the basins analyzer
matches attractors across a parameter or epoch with it. It is pluggable: the distance between a track's last
position and a candidate (``distance``, default Euclidean; e.g. modulo a period for angles) and the identity
classes that may never match (``cls``) are the caller's.

Input: arrays reshaped to ``(L, K, P, ...)``: ``L`` lines (every combination of the other sweep dims), ``K``
steps along the ordered dim, ``P`` point slots. All lines advance together, one step at a time (the ordered dim
is sequential by nature):

- every live track (slot) is compared with the points of the next step: cost = distance / gate + a stability
  term (``stability_weight`` when the point types differ); pairs further than ``gate`` or of different class
  (fixed point vs slow point / ghost) are not allowed. The distance is measured from the track's last position,
  or from where ``predict`` says the track is at this step (a predictor-corrector: the bifurcation analyzer
  continues every point with its Jacobian to the next step's parameters), so points that move far between
  steps keep their identity;
- lines where the allowed pairs already form a matching (every track and point has at most one candidate) are
  decided at once for all lines; the others are solved optimally with ``scipy.optimize.linear_sum_assignment``
  (maximum number of matches, then minimum cost);
- unmatched points start new tracks; a track unmatched for up to ``max_gap`` steps keeps its ID and can
  continue (the edge records the gap); after that it ends.

Output: a node table (one node per present point), an edge table (continuations), and the track ID of every
point.

>>> pos = np.array([[[[0.0], [1.0]], [[0.6], [1.6]]]])       # one line, two steps: both points move by 0.6
>>> present, cls = np.ones((1, 2, 2), bool), np.zeros((1, 2, 2), int)
>>> track(pos, present, cls, cls, gate=0.5, stability_weight=0.0, max_gap=0).track_of_point.tolist()
[[[0, 1], [1, 2]]]
>>> shift = lambda k, slots: (slots.position + 0.6, None)       # a predictor that knows how they move
>>> track(pos, present, cls, cls, gate=0.5, stability_weight=0.0, max_gap=0, predict=shift).track_of_point.tolist()
[[[0, 1], [0, 1]]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

BIG = 1e9


@dataclass
class Tracks:
    """Tracking result. Nodes: flat arrays over present points; edges: ``source``/``target`` node indices."""

    node_line: np.ndarray
    node_step: np.ndarray
    node_point: np.ndarray
    node_track: np.ndarray
    edge_source: np.ndarray
    edge_target: np.ndarray
    edge_gap: np.ndarray
    edge_distance: np.ndarray
    edge_predicted_distance: np.ndarray  # from the predicted position (= edge_distance without a predictor)
    track_of_point: np.ndarray  # (L, K, P), -1 where no point


@dataclass
class Slots:
    """The live tracks a predictor sees at a step, per line and slot ``(L, T, ...)``: ``live``; the last
    ``position`` and its ``step``; the ``previous`` position and step of the track (NaN / -1: none); the
    identity class ``cls``; the ``node`` index of the last position."""

    live: np.ndarray
    position: np.ndarray
    step: np.ndarray
    previous: np.ndarray
    previous_step: np.ndarray
    cls: np.ndarray
    node: np.ndarray


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b|`` over the last axis (broadcasting)."""
    return np.linalg.norm(a - b, axis=-1)


def track(pos: np.ndarray, present: np.ndarray, cls: np.ndarray, code: np.ndarray, *, gate: float,
          stability_weight: float, max_gap: int, on_step=None, distance=euclidean,
          predict: Callable[[int, Slots], tuple[np.ndarray, np.ndarray | None]] | None = None) -> Tracks:
    """Track points ``pos`` ``(L, K, P, d)`` (``present``, identity class ``cls`` and type ``code``
    ``(L, K, P)``): a track continues only to a point of the same class within ``gate`` (``distance``), a
    different type costs ``stability_weight``. ``predict(k, slots)`` (optional) returns the positions
    ``(L, T, d)`` the live tracks are expected at at step ``k`` (NaN: no prediction, the last position is used)
    and which of them are exact ``(L, T)`` (or ``None``): an exact prediction is the point itself (a converged
    continuation), so a change of type costs nothing there.
    ``on_step()`` is called after every step (a progress meter)."""
    L, K, P, d = pos.shape
    T = max(1, P * (max_gap + 2))
    slot_id = np.full((L, T), -1, dtype=np.int64)
    slot_pos = np.zeros((L, T, d))
    slot_prev = np.full((L, T, d), np.nan)
    slot_prev_step = np.full((L, T), -1, dtype=np.int64)
    slot_cls = np.zeros((L, T), dtype=np.int64)
    slot_code = np.zeros((L, T), dtype=np.int64)
    slot_last = np.zeros((L, T), dtype=np.int64)
    slot_node = np.zeros((L, T), dtype=np.int64)
    node_index = np.full((L, K, P), -1, dtype=np.int64)
    order = np.nonzero(present.transpose(1, 0, 2))  # nodes numbered step by step
    node_index.transpose(1, 0, 2)[order] = np.arange(order[0].size)
    tid = np.full((L, K, P), -1, dtype=np.int64)
    e_src, e_dst, e_gap, e_dist, e_pdist = [], [], [], [], []
    next_id = 0
    lines = np.arange(L)
    for k in range(K):
        # retire tracks unseen for more than max_gap steps
        stale = (slot_id >= 0) & (k - slot_last > max_gap + 1)
        slot_id[stale] = -1
        live = slot_id >= 0
        pres = present[:, k]
        dist = np.nan_to_num(distance(slot_pos[:, :, None, :], pos[:, k][:, None, :, :]), nan=np.inf)  # (L, T, P)
        pdist, exact = dist, np.zeros((L, T), dtype=bool)
        if predict is not None and k > 0 and live.any():
            pred, ex = predict(k, Slots(live, slot_pos, slot_last, slot_prev, slot_prev_step, slot_cls, slot_node))
            found = np.isfinite(pred).all(-1)
            pred = np.where(found[..., None], pred, slot_pos)
            exact = found & (ex if ex is not None else False)
            pdist = np.nan_to_num(distance(pred[:, :, None, :], pos[:, k][:, None, :, :]), nan=np.inf)
        allowed = live[:, :, None] & pres[:, None, :] & (slot_cls[:, :, None] == cls[:, k][:, None, :]) & (pdist <= gate)
        cost = pdist / gate + stability_weight * ((slot_code[:, :, None] != code[:, k][:, None, :])
                                                  & ~exact[:, :, None])
        match = np.zeros((L, T, P), dtype=bool)
        simple = (allowed.sum(2) <= 1).all(1) & (allowed.sum(1) <= 1).all(1)
        match[simple] = allowed[simple]
        for line in lines[~simple]:
            c = np.where(allowed[line], cost[line], BIG)
            rows, cols = linear_sum_assignment(c)
            ok = allowed[line][rows, cols]
            match[line, rows[ok], cols[ok]] = True
        li, si, pi = np.nonzero(match)
        tid[li, k, pi] = slot_id[li, si]
        e_src.append(slot_node[li, si])
        e_dst.append(node_index[li, k, pi])
        e_gap.append(k - slot_last[li, si] - 1)
        e_dist.append(dist[li, si, pi])
        e_pdist.append(pdist[li, si, pi])
        slot_prev[li, si] = slot_pos[li, si]
        slot_prev_step[li, si] = slot_last[li, si]
        # unmatched points start tracks in free slots (the oldest live slots are reused when none is free)
        new = pres & ~match.any(1)
        n_new = new.sum(1)
        if n_new.any():
            free_key = np.where(slot_id < 0, -1, slot_last)  # free first, then least recently seen
            matched_slot = match.any(2)
            free_key = np.where(matched_slot, np.iinfo(np.int64).max, free_key)
            slot_rank = np.argsort(free_key, axis=1, kind="stable")
            pl, pp = np.nonzero(new)
            rank = (np.cumsum(new, axis=1) - 1)[pl, pp]
            ss = slot_rank[pl, rank]
            ids = next_id + np.arange(pl.size)
            next_id += pl.size
            slot_id[pl, ss] = ids
            slot_cls[pl, ss] = cls[pl, k, pp]
            slot_prev[pl, ss] = np.nan
            slot_prev_step[pl, ss] = -1
            tid[pl, k, pp] = ids
            li = np.concatenate([li, pl])
            si = np.concatenate([si, ss])
            pi = np.concatenate([pi, pp])
        slot_pos[li, si] = pos[li, k, pi]
        slot_code[li, si] = code[li, k, pi]
        slot_last[li, si] = k
        slot_node[li, si] = node_index[li, k, pi]
        if on_step is not None:
            on_step()
    nl, nk, npnt = order[1], order[0], order[2]
    return Tracks(
        node_line=nl, node_step=nk, node_point=npnt, node_track=tid[nl, nk, npnt],
        edge_source=np.concatenate(e_src) if e_src else np.zeros(0, np.int64),
        edge_target=np.concatenate(e_dst) if e_dst else np.zeros(0, np.int64),
        edge_gap=np.concatenate(e_gap) if e_gap else np.zeros(0, np.int64),
        edge_distance=np.concatenate(e_dist) if e_dist else np.zeros(0),
        edge_predicted_distance=np.concatenate(e_pdist) if e_pdist else np.zeros(0),
        track_of_point=tid,
    )

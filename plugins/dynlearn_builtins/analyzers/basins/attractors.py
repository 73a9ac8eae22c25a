"""Attractor identification for the basins analyzer (private): a cell graph of the recorded tails.

Every surviving orbit records its last ``L`` states (its *tail*). The state space is cut into cells of width
``width`` (per coordinate); each tail becomes a walk on cells, and the walks of all orbits of one sweep element
form a directed graph (an edge per observed step ``cell(x_t) -> cell(x_{t+1})``).

- *Recurrent* cells are those on a cycle of the graph: members of a strongly connected component with more than
  one cell, or cells with a self-loop (an orbit that stays in its cell, i.e. has converged to within a cell).
  Transient cells (the way in) are on no cycle and are left out.
- Attractors are the connected components of the recurrent cells, where two recurrent cells are joined when they
  are in the same strongly connected component (the cells of a cycle, possibly far apart) or are neighbours in
  space (Euclidean distance <= 1.5 cells, so that a continuum of fixed points, e.g. the hyperbola of minima, or a
  chaotic set sampled by a finite number of orbits is one attractor).
- An orbit is labelled with the attractor holding the cell of its final state, or the nearest recurrent cell
  within 1.5 cells; otherwise it is *undetermined* (it has not settled: label ``-1``).

The resolution limit is the cell: attractors closer than ~1.5 cells merge. Here a sample's *basin index* is
``0`` for diverged orbits (the basin of infinity, |x| -> infinity), ``k >= 1`` for attractor ``k`` and ``-1``
for none; the analyzer's output reports an attractor id and an outcome instead (:mod:`.output`).

    >>> import numpy as np
    >>> acc = TailAccumulator(1, 3, lo=np.zeros(1), width=np.full(1, 0.1), flow=False, period_tol=1e-6)
    >>> tails = np.array([[[0.5], [0.5]], [[0.52], [0.52]], [[2.0], [3.0]]])   # two settled, one not
    >>> acc.add(np.arange(3), tails.transpose(1, 2, 0))                      # (time, coordinate, orbit)
    >>> g = acc.graph(0)
    >>> found = identify(g, np.array([0, 0, 0], dtype=np.int8))
    >>> found.labels.tolist()
    [1, 1, -1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dynlearn import outcome as oc
from dynlearn.periodic import Circle, delta, wrap

__all__ = ["TailAccumulator", "CellGraph", "Found", "identify", "tail_periods", "wrap_tails", "extent"]

#: spatial merge radius between recurrent cells, in cells
RADIUS = 1.5


def _keys_cm(cols: np.ndarray) -> np.ndarray:
    """Integer cells given coordinate-major, ``(d, *shape)``, as sortable keys of shape ``shape``.

    ``d <= 3``: one int64 per cell (``63 // d`` bits per coordinate; cells farther than ``2^(bits-1)`` cells
    from the box corner, i.e. more than ~5000 box widths in 3-D, are clamped onto the outermost cells);
    ``d > 3``: the raw bytes of the cell's row (void keys; exact, slower to sort).
    """
    d = cols.shape[0]
    if d == 1:
        return np.asarray(cols[0], dtype=np.int64)
    if d <= 3:
        bits = 63 // d
        half = 1 << (bits - 1)
        key = np.zeros(cols.shape[1:], dtype=np.int64)
        for i in range(d):
            key |= (np.clip(cols[i], -half, half - 1) + half) << (bits * (d - 1 - i))
        return key
    rows = np.ascontiguousarray(np.moveaxis(cols, 0, -1), dtype=np.int64)
    return rows.view(np.dtype((np.void, 8 * d)))[..., 0]


def _keys(rows: np.ndarray) -> np.ndarray:
    """Integer cell rows ``(n, d)`` as keys ``(n,)`` (see :func:`_keys_cm`)."""
    return _keys_cm(np.asarray(rows, dtype=np.int64).T)


def _rows(keys: np.ndarray, d: int) -> np.ndarray:
    if d == 1:
        return np.asarray(keys, dtype=np.int64).reshape(-1, 1)
    if d <= 3:
        bits = 63 // d
        half = 1 << (bits - 1)
        mask = (1 << bits) - 1
        return np.stack([((keys >> (bits * (d - 1 - i))) & mask) - half for i in range(d)], axis=1)
    return np.frombuffer(np.ascontiguousarray(keys).tobytes(), dtype=np.int64).reshape(len(keys), d)


def _arc(a: np.ndarray, b: np.ndarray, circle: Circle | None, axis: int) -> np.ndarray:
    """``a - b`` (broadcasting) with the coordinates on ``axis`` of the difference, periodic ones the shortest
    signed arc."""
    diff = a - b
    if circle is None or not circle.any:
        return diff
    return np.moveaxis(delta(np.moveaxis(diff, axis, -1), 0.0, circle), -1, axis)


def wrap_tails(tails: np.ndarray, circle: Circle | None) -> np.ndarray:
    """Tails ``(L, d, n)`` with periodic coordinates wrapped into their interval."""
    if circle is None or not circle.any:
        return tails
    return np.moveaxis(wrap(np.moveaxis(tails, 1, -1), circle), -1, 1)


def tail_periods(tail: np.ndarray, period_tol: float, width: float, flow: bool,
                 circle: Circle | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-orbit ``(settled, period)`` from tails ``(L, d, n)`` (time, coordinate, orbit); ``period`` is in tail
    samples, 0 when none.

    ``settled``: the last two samples agree within ``period_tol`` (converged to a fixed point).
    Maps: ``period`` is the smallest ``p`` with ``|x_T - x_{T-p}|_inf <= period_tol``. Flows (tails sampled every
    few steps): the first return of the orbit to within one sampling step of ``x_T`` after having gone more than
    two sampling steps away, refined by a parabola through the squared (Euclidean) distances around that
    minimum. Periodic coordinates (``circle``) are compared along the shortest arc, so a rotation returns.
    """
    L, _, n = tail.shape
    last = tail[-1]
    dist = np.abs(_arc(tail[-2::-1], last, circle, 1)).max(1)  # (L-1, n): p = 1 .. L-1
    settled = dist[0] <= period_tol
    if not flow:
        hit = dist <= period_tol
        return settled, np.where(hit.any(0), np.argmax(hit, 0) + 1, 0).astype(float)
    step = np.abs(_arc(tail[1:], tail[:-1], circle, 1)).max(1).max(0)  # (n,) largest sampling step
    reach = np.maximum(step, width)
    moved = np.maximum.accumulate(dist, axis=0) > 2 * reach
    hit = (dist <= reach) & np.concatenate([np.zeros((1, n), bool), moved[:-1]], axis=0)
    p = np.argmax(hit, axis=0)  # index into dist (period p + 1 samples)
    # walk to the local minimum of the distance, then refine with a parabola through its neighbours
    idx = np.arange(n)
    for _ in range(3):
        nxt = np.minimum(p + 1, L - 2)
        p = np.where(dist[nxt, idx] < dist[p, idx], nxt, p)
    lo, hi = np.maximum(p - 1, 0), np.minimum(p + 1, L - 2)
    rev = tail[-2::-1]  # squared Euclidean distances are smooth in time: refine on them
    f0, f1, f2 = ((_arc(rev[j, :, idx], last.T, circle, -1) ** 2).sum(-1) for j in (lo, p, hi))
    den = f0 - 2 * f1 + f2
    shift = np.where((den > 0) & (lo < p) & (p < hi), 0.5 * (f0 - f2) / np.where(den > 0, den, 1), 0.0)
    period = np.where(hit.any(0) & ~settled, p + 1 + np.clip(shift, -1, 1), 0.0)
    return settled, period


@dataclass
class CellGraph:
    """The cell graph of one sweep element's tails: unique cell keys, edges, each orbit's final cell."""

    keys: np.ndarray  # (m,) cell keys, sorted
    edges: np.ndarray  # (E, 2) int64 indices into keys
    final_cell: np.ndarray  # (S,) index into keys, -1 for orbits without a tail (diverged / nan)
    settled: np.ndarray  # (S,) per-orbit: converged onto a fixed point
    period: np.ndarray  # (S,) per-orbit return period in tail samples (0: none)
    d: int


class TailAccumulator:
    """Collects the tails of ``n_elem`` sweep elements of ``n_samples`` orbits each, chunk by chunk.

    ``add(index, tails)`` takes global orbit indices ``e * n_samples + s`` and their tails ``(L, d, n)``;
    ``graph(e)`` returns element ``e``'s :class:`CellGraph`. Periodic coordinates (``circle``) are wrapped
    before they are cut into cells: ``theta* + 2 pi k`` is one cell, a rotation a closed walk.
    """

    def __init__(self, n_elem: int, n_samples: int, *, lo, width, flow: bool, period_tol: float,
                 circle: Circle | None = None) -> None:
        self.S = int(n_samples)
        self.lo = np.asarray(lo, dtype=float)
        self.width = np.asarray(width, dtype=float)
        self.flow = flow
        self.period_tol = float(period_tol)
        self.circle = circle
        self.parts: list[list[tuple]] = [[] for _ in range(n_elem)]
        self.settled = np.zeros((n_elem, self.S), dtype=bool)
        self.period = np.zeros((n_elem, self.S), dtype=float)

    def cells(self, x: np.ndarray) -> np.ndarray:
        """Integer cells of states ``(n, d)`` (periodic coordinates wrapped)."""
        if self.circle is not None:
            x = wrap(x, self.circle)
        return np.floor((x - self.lo) / self.width).astype(np.int64)

    def add(self, index, tails) -> None:
        """Orbits ``index`` (global ``e * n_samples + s``) with tails ``(L, d, n)`` (time, coordinate, orbit)."""
        index = np.asarray(index.cpu() if hasattr(index, "cpu") else index, dtype=np.int64)
        tails = np.asarray(tails.cpu() if hasattr(tails, "cpu") else tails, dtype=float)
        if len(index) == 0:
            return
        elem, sample = np.divmod(index, self.S)
        self.settled[elem, sample], self.period[elem, sample] = tail_periods(
            tails, self.period_tol, float(self.width.min()), self.flow, self.circle)
        L, d, _ = tails.shape
        cols = np.floor((wrap_tails(tails, self.circle) - self.lo[:, None]) / self.width[:, None]).astype(np.int64)
        keys = _keys_cm(np.moveaxis(cols, 1, 0))  # (L, n)
        for e in np.unique(elem):
            m = elem == e
            k = keys[:, m]
            uk = np.unique(k)  # hash-based unique; the inverse by binary search is cheaper than argsort
            inv = np.searchsorted(uk, k)
            code = np.unique(inv[:-1] * len(uk) + inv[1:])
            edges = np.stack(np.divmod(code, len(uk)), axis=1)
            self.parts[e].append((uk, edges, sample[m], inv[-1]))

    def graph(self, e: int) -> CellGraph:
        parts = self.parts[e]
        d = len(self.lo)
        final = np.full(self.S, -1, dtype=np.int64)
        if not parts:
            return CellGraph(_keys(np.empty((0, d), np.int64)), np.empty((0, 2), np.int64), final,
                             self.settled[e], self.period[e], d)
        uk, inv = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
        edges, off = [], 0
        for keys, ed, samples, last in parts:
            g = inv[off : off + len(keys)]
            off += len(keys)
            edges.append(g[ed])
            final[samples] = g[last]
        code = np.unique(np.concatenate(edges)[:, 0] * len(uk) + np.concatenate(edges)[:, 1])
        return CellGraph(uk, np.stack(np.divmod(code, len(uk)), axis=1), final, self.settled[e], self.period[e], d)


@dataclass
class Found:
    """Attractors of one sweep element.

    ``labels`` (S,): 0 diverged, ``k >= 1`` attractor ``k`` (numbered by basin size), -1 undetermined.
    ``lookup_keys`` / ``lookup_attr``: recurrent cells (sorted keys) and their attractor, for labelling new
    orbits with :meth:`classify`.
    """

    labels: np.ndarray
    n_attractors: int
    lookup_keys: np.ndarray
    lookup_attr: np.ndarray
    lookup_rows: np.ndarray
    d: int

    def classify(self, final_cells: np.ndarray, outcome: np.ndarray) -> np.ndarray:
        """Labels of orbits from the cells ``(n, d)`` of their final states and their outcomes."""
        out = np.full(len(outcome), -1, dtype=np.int64)
        out[outcome == oc.DIVERGED] = 0
        ok = np.flatnonzero(outcome == oc.OK)
        if len(ok) and len(self.lookup_keys):
            out[ok] = _lookup(self.lookup_keys, self.lookup_attr, self.lookup_rows, final_cells[ok])
        return out


def _lookup(keys: np.ndarray, attr: np.ndarray, rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
    q = _keys(query_rows)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    hit = keys[pos] == q
    out = np.where(hit, attr[pos], -1)
    miss = np.flatnonzero(~hit)
    if len(miss):
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=1).fit(rows.astype(float))
        dist, j = nn.kneighbors(query_rows[miss].astype(float))
        near = dist[:, 0] <= RADIUS
        out[miss[near]] = attr[j[near, 0]]
    return out


def identify(graph: CellGraph, outcome: np.ndarray) -> Found:
    """Attractors and basin labels of one sweep element from its :class:`CellGraph` and orbit outcomes."""
    n, d = len(graph.keys), graph.d
    labels = np.full(len(outcome), -1, dtype=np.int64)
    labels[outcome == oc.DIVERGED] = 0
    empty = Found(labels, 0, graph.keys[:0], np.empty(0, np.int64), np.empty((0, d), np.int64), d)
    if n == 0:
        return empty
    src, dst = graph.edges[:, 0], graph.edges[:, 1]
    G = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)).tocsr()
    _, comp = connected_components(G, directed=True, connection="strong")
    size = np.bincount(comp)
    rec = size[comp] > 1
    rec[src[src == dst]] = True
    rec_idx = np.flatnonzero(rec)
    if len(rec_idx) == 0:
        return empty
    local = np.full(n, -1, dtype=np.int64)
    local[rec_idx] = np.arange(len(rec_idx))
    rows = _rows(graph.keys, d)
    within = rec[src] & rec[dst] & (comp[src] == comp[dst])
    from sklearn.neighbors import radius_neighbors_graph

    near = radius_neighbors_graph(rows[rec_idx].astype(float), radius=RADIUS, include_self=False).tocoo()
    m = len(rec_idx)
    U = coo_matrix(
        (np.ones(within.sum() + near.nnz), (np.concatenate([local[src[within]], near.row]),
                                            np.concatenate([local[dst[within]], near.col]))),
        shape=(m, m),
    )
    n_comp, att = connected_components(U, directed=False)

    ok = np.flatnonzero((outcome == oc.OK) & (graph.final_cell >= 0))
    cell = graph.final_cell[ok]
    lab = np.where(rec[cell], att[np.maximum(local[cell], 0)], -1)
    miss = np.flatnonzero(~rec[cell])
    if len(miss):
        lab[miss] = _lookup(graph.keys[rec_idx], att, rows[rec_idx], rows[cell[miss]])
    # number attractors by basin size (ties: smallest cell), drop those no orbit ends in
    count = np.bincount(lab[lab >= 0], minlength=n_comp)
    first_cell = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(first_cell, att, np.arange(m))
    order = np.lexsort((first_cell, -count))
    order = order[count[order] > 0]
    new_id = np.full(n_comp, -1, dtype=np.int64)
    new_id[order] = np.arange(1, len(order) + 1)
    labels[ok] = np.where(lab >= 0, new_id[np.maximum(lab, 0)], -1)
    cell_attr = new_id[att]
    keep = cell_attr > 0
    return Found(labels, len(order), graph.keys[rec_idx][keep], cell_attr[keep], rows[rec_idx][keep], d)


def extent(found: Found, lo: np.ndarray, width: np.ndarray) -> np.ndarray:
    """``(K, 3, d)``: the centre, lower and upper corner of each attractor's recurrent cells (state units), what
    identifies an attractor across a sweep dim (:mod:`.matching`)."""
    K, d = found.n_attractors, found.d
    centre = lo + (found.lookup_rows + 0.5) * width  # (m, d) cell centres
    k = found.lookup_attr - 1
    out = np.empty((K, 3, d))
    count = np.bincount(k, minlength=K)[:, None]
    out[:, 0] = np.stack([np.bincount(k, weights=centre[:, i], minlength=K) for i in range(d)], 1) / count
    out[:, 1], out[:, 2] = np.inf, -np.inf
    np.minimum.at(out[:, 1], k, centre - width / 2)
    np.maximum.at(out[:, 2], k, centre + width / 2)
    return out

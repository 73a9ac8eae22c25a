"""Attractor naming of the basin-stability study (private): clusters or templates in feature space.

Every trajectory ends with a feature vector (:mod:`.features`). Attractors are named in one of three ways:

- ``auto``: trajectories whose features are within ``eps`` of each other, directly or through a chain of other
  trajectories, share an attractor (single linkage; scikit-learn's ``DBSCAN`` with ``min_samples=1``), and the
  attractor's kind and name come from its features (:func:`describe`);
- ``cluster``: scikit-learn ``DBSCAN`` (``eps``, ``min_samples``; its noise is unresolved) or ``KMeans``
  (``n_clusters``) on the features;
- ``templates``: the user names the attractors by template feature vectors (or template initial states, whose
  trajectories' features are used); each trajectory takes the nearest template (Euclidean in feature space),
  unresolved beyond ``template_gate``.

Features are first rounded to a lattice of spacing ``eps / 4`` and de-duplicated (the clusterer sees each
distinct row once, weighted by its count), so 10^5 trajectories on a few attractors cost a few hundred rows.

Kinds: ``fixed_point`` when some member's spread (its non-periodic coordinates' std and range, its periodic
coordinates' drift and distance of the mean resultant vector from the circle) is within ``eps`` of zero;
``periodic`` (a limit cycle; named ``rotation`` when it drifts around a periodic coordinate) when most members
settled; ``aperiodic`` when most reached the end time with features still changing (chaotic, quasi-periodic or
slow transients).

    >>> F = np.array([[0.0, 5.0], [0.01, 5.0], [3.0, 0.0], [3.02, 0.0], [3.01, 0.01]])
    >>> cluster(F, np.ones(5, bool), method="auto", eps=0.1).tolist()     # numbered by size
    [1, 1, 0, 0, 0]
    >>> nearest(F, np.array([[3.0, 0.0], [0.0, 5.0]]), gate=None).tolist()
    [1, 1, 0, 0, 0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dynlearn.periodic import Circle

__all__ = ["cluster", "nearest", "describe", "spread"]


def _dedup(F: np.ndarray, quantum: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = np.round(F / quantum).astype(np.int64)
    uq, inv, counts = np.unique(q, axis=0, return_inverse=True, return_counts=True)
    return uq * quantum, inv.reshape(-1), counts


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster labels renumbered ``0, 1, ...`` by decreasing size (ties: first appearance); -1 kept."""
    ok = labels >= 0
    if not ok.any():
        return labels
    uniq, first, counts = np.unique(labels[ok], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    new = np.empty(len(uniq), dtype=np.int64)
    new[order] = np.arange(len(uniq))
    out = np.full(len(labels), -1, dtype=np.int64)
    out[ok] = new[np.searchsorted(uniq, labels[ok])]
    return out


def cluster(F: np.ndarray, valid: np.ndarray, *, method: str, eps: float, min_samples: int = 1,
            n_clusters: int = 2, seed: int = 0) -> np.ndarray:
    """Cluster labels ``(n,)`` of the feature rows ``F`` ``(n, f)`` where ``valid`` (-1 elsewhere and for
    DBSCAN's noise), numbered by cluster size. ``method``: ``auto`` (single linkage at ``eps``), ``dbscan``,
    ``kmeans``."""
    out = np.full(len(F), -1, dtype=np.int64)
    idx = np.flatnonzero(valid & np.isfinite(F).all(1))
    if len(idx) == 0:
        return out
    U, inv, w = _dedup(F[idx], eps / 4)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        k = min(n_clusters, len(U))
        lab = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(U, sample_weight=w).labels_
    else:
        from sklearn.cluster import DBSCAN

        m = 1 if method == "auto" else min_samples
        lab = DBSCAN(eps=eps, min_samples=m).fit(U, sample_weight=w).labels_
    out[idx] = lab[inv]
    return _by_size(out)


def nearest(F: np.ndarray, templates: np.ndarray, *, gate: float | None) -> np.ndarray:
    """Index ``(n,)`` of the nearest template ``(K, f)`` of every feature row (Euclidean); -1 for rows that are
    not finite or farther than ``gate`` from every template."""
    dist = np.linalg.norm(F[:, None, :] - templates[None, :, :], axis=-1)
    dist = np.where(np.isfinite(dist), dist, np.inf)
    j = np.argmin(dist, axis=1)
    best = dist[np.arange(len(F)), j]
    far = ~np.isfinite(best) if gate is None else ~(best <= gate)
    return np.where(far, -1, j)


def spread(F: np.ndarray, circle: Circle) -> np.ndarray:
    """``(n,)``: how far each feature row is from a fixed point's (0 exactly on one), see :mod:`.features`."""
    parts = []
    for i, periodic in enumerate(circle.mask):
        a, b, c = F[:, 3 * i], F[:, 3 * i + 1], F[:, 3 * i + 2]
        if periodic:
            r = float(circle.period[i]) / (2 * np.pi)
            parts += [np.abs(c), r - np.hypot(a, b)]
        else:
            parts += [b, c]
    return np.max(np.stack(parts, 1), axis=1)


def describe(F: np.ndarray, labels: np.ndarray, settled: np.ndarray, finals: np.ndarray, circle: Circle,
             eps: float, n: int) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Kinds, automatic names, representative states ``(n, d)`` and centre features ``(n, f)`` of clusters
    ``0 .. n-1`` (a cluster without members gets kind ``''`` and NaNs).

    The representative of a fixed point is its most converged member's final state; of another kind, the
    member nearest the median features. Names: ``fixed_point``, ``rotation`` (a periodic attractor drifting
    around a periodic coordinate), ``limit_cycle``, ``aperiodic``, numbered ``_2, _3, ...`` when repeated.
    """
    d = finals.shape[1]
    kinds, names = [], []
    states = np.full((n, d), np.nan)
    centre = np.full((n, F.shape[1]), np.nan)
    drift_cols = [3 * i + 2 for i in np.flatnonzero(circle.mask)]
    sp = spread(F, circle)
    for k in range(n):  # one small reduction per attractor, not per trajectory
        members = np.flatnonzero(labels == k)
        if len(members) == 0:
            kinds.append("")
            names.append("")
            continue
        med = np.median(F[members], axis=0)
        centre[k] = med
        if sp[members].min() <= eps:
            kind, name = "fixed_point", "fixed_point"
            rep = members[np.argmin(sp[members])]
        else:
            kind = "periodic" if settled[members].mean() >= 0.5 else "aperiodic"
            rotating = bool(drift_cols) and np.abs(med[drift_cols]).max() > eps
            name = {"periodic": "rotation" if rotating else "limit_cycle"}.get(kind, kind)
            rep = members[np.argmin(np.linalg.norm(F[members] - med, axis=1))]
        states[k] = finals[rep]
        kinds.append(kind)
        names.append(name)
    return kinds, _numbered(names), states, centre


def _numbered(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if not n:
            out.append(n)
            continue
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out

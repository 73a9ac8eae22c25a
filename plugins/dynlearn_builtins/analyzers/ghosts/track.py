"""Ghost identity along an ordered sweep dim, with the one matcher :func:`dynlearn.matching.track` (private).

Every combination of the other sweep dims is a *line*; along the ordered dim a ghost continues to the nearest
ghost of the next step within ``gate`` (distances modulo the periods of :mod:`dynlearn.periodic`), optimally
assigned; a ghost that finds no continuation ends its track, a new one starts a track.
"""

from __future__ import annotations

import numpy as np
import torch

from dynlearn.errors import ParameterError
from dynlearn.matching import track
from dynlearn.periodic import Circle, distance
from dynlearn.sweep import Batch

__all__ = ["tracked_dim", "ghost_tracks"]


def tracked_dim(dim: str | None, batch: Batch) -> str | None:
    """The ordered dim: ``dim`` (a sweep dim, else a one-line :class:`ParameterError`), or ``epoch`` if present,
    else the first sweep dim; ``None`` without sweep dims."""
    if dim is not None:
        if dim not in batch.dims:
            raise ParameterError(f"ghost_network: track_dim {dim!r} is not a sweep dim; sweep dims: "
                                 f"{list(batch.dims)}")
        return dim
    if not batch.dims:
        return None
    return "epoch" if "epoch" in batch.dims else batch.dims[0]


def ghost_tracks(batch: Batch, position: torch.Tensor, present: torch.Tensor, dim: str | None,
                 gate: float) -> np.ndarray:
    """Track ID ``(B, G)`` of every ghost (``-1``: none): one number per ghost identity along ``dim`` (``None``: the
    ghost slot)."""
    B, G, d = position.shape
    pres = present.numpy()
    if dim is None:
        return np.where(pres, np.arange(G), -1)
    axis = batch.dims.index(dim)
    shape = batch.shape
    K = shape[axis]
    move = lambda a: np.moveaxis(a.reshape(*shape, *a.shape[1:]), axis, len(shape) - 1)  # noqa: E731
    pos = move(position.numpy()).reshape(-1, K, G, d)
    pr = move(pres).reshape(-1, K, G)
    zeros = np.zeros(pr.shape, dtype=np.int64)
    circle = Circle.of(batch.system)
    tr = track(np.nan_to_num(pos), pr, zeros, zeros, gate=gate, stability_weight=0.0, max_gap=0,
               distance=lambda a, b: distance(a, b, circle))
    ids = tr.track_of_point.reshape(*[s for i, s in enumerate(shape) if i != axis], K, G)
    return np.moveaxis(ids, len(shape) - 1, axis).reshape(B, G)

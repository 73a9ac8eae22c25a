"""View helpers shared by analyzer families: the sweep frames a HoloMap shows."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["sweep_keys", "MAX_FRAMES"]

MAX_FRAMES = 60


def sweep_keys(result: xr.Dataset, own: set[str], per_element: str = "outcome") -> tuple[list[str], list[tuple]]:
    """Sweep dims of ``result`` and up to ``MAX_FRAMES`` of their coordinate tuples.

    Parameters
    ----------
    result
        An analyzer's output.
    own
        The analyzer's own dims (not sweep dims).
    per_element
        A variable with one value per sweep element: its dims not in ``own`` are the sweep dims.

    Returns
    -------
    tuple
        The sweep dims and the keys (coordinate values, or positions where a dim has no coordinate); ``([],
        [()])`` without a sweep.
    """
    dims = [d for d in result[per_element].dims if d not in own] if per_element in result else []
    if not dims:
        return [], [()]
    grids = np.meshgrid(*[np.arange(result.sizes[d]) for d in dims], indexing="ij")
    idx = np.stack([gr.reshape(-1) for gr in grids], 1)
    step = max(1, len(idx) // MAX_FRAMES)
    keys = [tuple(result[d].values[i] if d in result.coords else i for d, i in zip(dims, row)) for row in idx[::step]]
    return dims, keys

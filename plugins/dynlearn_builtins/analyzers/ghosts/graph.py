"""The ghost network of one sweep element as a networkx ``DiGraph``."""

from __future__ import annotations

import networkx as nx
import numpy as np
import xarray as xr

from dynlearn.errors import ShapeError

__all__ = ["ghost_graph", "OWN_DIMS"]

#: the analyzer's own dims (every other dim of a result is a sweep dim)
OWN_DIMS = {"trajectory", "visit", "ghost", "ghost_from", "ghost_to", "state", "sample"}


def ghost_graph(result: xr.Dataset, **sel) -> nx.DiGraph:
    """The ghost network of one sweep element of a ``ghost_network`` result.

    Nodes are the ghost slots with attributes ``position`` (tuple), ``dimension``, ``speed``,
    ``passage_time_nf``, ``track`` (identity across the sweep), ``visit_count`` and ``dwell_time_mean``; an edge
    ``i -> j`` for every observed transition, with ``count`` and ``mean_transit_time``.

    Parameters
    ----------
    result
        The analyzer's output.
    **sel
        Coordinate values selecting one sweep element (``ghost_graph(out, r1=0.01)``); every sweep dim of
        ``result`` must be selected (one-line :class:`~dynlearn.errors.ShapeError` naming those left).
    """
    ds = result.sel(sel) if sel else result
    left = [d for d in ds["outcome"].dims if d not in OWN_DIMS]
    if left:
        raise ShapeError(f"ghost_graph: select one sweep element; dims left: {left} (e.g. ghost_graph(result, "
                         f"{left[0]}=...))")
    g = nx.DiGraph()
    present = ds["ghost_present"].values.astype(bool)
    pos = ds["ghost_position"].values
    for i in np.flatnonzero(present):
        g.add_node(int(i), position=tuple(float(v) for v in pos[i]), dimension=int(ds["ghost_dimension"][i]),
                   speed=float(ds["ghost_speed"][i]), passage_time_nf=float(ds["passage_time_nf"][i]),
                   track=int(ds["ghost_track"][i]), visit_count=int(ds["visit_count"][i]),
                   dwell_time_mean=float(ds["dwell_time_mean"][i]))
    count = ds["transition_count"].values
    transit = ds["transit_time_mean"].values
    for i, j in zip(*np.nonzero(count)):
        g.add_edge(int(i), int(j), count=int(count[i, j]), mean_transit_time=float(transit[i, j]))
    return g

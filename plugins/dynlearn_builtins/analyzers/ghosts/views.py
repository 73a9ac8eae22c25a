"""holoviews views of a ghost-network result (private; bokeh backend, objects only).

- ``ghost_visits``: the first state coordinate of the first trajectories against time, their visits shaded
  (one rectangle per visit, coloured by ghost);
- ``ghost_graph``: the ghost network drawn at the ghosts' positions (first two state coordinates), edges
  labelled with their transition counts;
- ``ghost_tracks``: ghost positions along the tracked dim, coloured by identity (with a sweep only).

Each is a HoloMap over the sweep (at most ``MAX_FRAMES`` elements, :func:`sweep_keys`); every frame has the same
elements, so the browse page replays them with its sliders.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .._shared.views import sweep_keys
from .graph import OWN_DIMS, ghost_graph

#: trajectories drawn per frame
N_SHOW = 4


def _frame(result: xr.Dataset, dims: list[str], key: tuple) -> xr.Dataset:
    sel = {d: v for d, v in zip(dims, key) if d in result.coords}
    isel = {d: v for d, v in zip(dims, key) if d not in result.coords}
    return result.sel(sel).isel(isel)


def _visits(ds: xr.Dataset):
    import holoviews as hv

    first = str(ds["state"].values[0])
    n = min(N_SHOW, ds.sizes["trajectory"])
    t = ds["path_time"].values
    paths = [np.column_stack([t, ds["path"].values[i, :, 0]]) for i in range(n)]
    curves = hv.Path(paths, kdims=["time", first]).opts(color="#333333", line_width=1.5)
    g = ds["visit_ghost"].values[:n].ravel()
    on = g >= 0
    lo, hi = np.nanmin(ds["path"].values[:n, :, 0]), np.nanmax(ds["path"].values[:n, :, 0])
    rects = np.column_stack([ds["entry_time"].values[:n].ravel()[on], np.full(on.sum(), lo),
                             ds["exit_time"].values[:n].ravel()[on], np.full(on.sum(), hi),
                             g[on].astype(float)])
    shade = hv.Rectangles(rects, vdims=["ghost"]).opts(color="ghost", cmap="Category10", alpha=0.25,
                                                        line_alpha=0, tools=["hover"])
    return (shade * curves).opts(width=600, xlabel="time", ylabel=first,
                                 title=f"trajectories and ghost visits (first {n})")


def _graph(ds: xr.Dataset):
    import holoviews as hv

    g = ghost_graph(ds)
    pos = ds["ghost_position"].values
    two = pos.shape[1] > 1
    nodes = [(float(pos[i, 0]), float(pos[i, 1]) if two else 0.0, i, d["dimension"], d["visit_count"])
             for i, d in g.nodes(data=True)]
    edges = [(s, t, d["count"], d["mean_transit_time"]) for s, t, d in g.edges(data=True)]
    node_el = hv.Nodes(nodes or [(np.nan, np.nan, -1, -1, 0)], kdims=["x", "y", "index"],
                       vdims=["dimension", "visits"])
    graph = hv.Graph((edges, node_el), vdims=["count", "transit time"])
    mid = [((pos[s, 0] + pos[t, 0]) / 2, ((pos[s, 1] + pos[t, 1]) / 2 if two else 0.0) + 0.03, str(c))
           for s, t, c, _ in edges]
    labels = hv.Labels(mid or [(np.nan, np.nan, "")], kdims=["x", "y"], vdims=["count"])
    return (graph.opts(directed=True, arrowhead_length=0.03, node_size=14, node_color="dimension",
                       cmap="viridis", edge_line_width=2, tools=["hover"])
            * labels).opts(width=500, title="ghost network (edge labels: transitions)")


def ghost_views(result: xr.Dataset) -> dict[str, Any]:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend's options; renders nothing)

    dims, keys = sweep_keys(result, OWN_DIMS)
    out: dict[str, Any] = {}
    for name, make in (("ghost_visits", _visits), ("ghost_graph", _graph)):
        frames = {key: make(_frame(result, dims, key)) for key in keys}
        out[name] = hv.HoloMap(frames, kdims=dims) if dims else frames[()]
    dim = result.attrs.get("tracked_dim") or None
    if dim and dim in result.dims:
        first = str(result["state"].values[0])
        df = result[["ghost_position", "ghost_track", "ghost_present"]].sel(state=first, drop=True) \
            .to_dataframe().reset_index()
        df = df[df["ghost_present"].astype(bool)].rename(columns={"ghost_position": first})
        others = [d for d in dims if d != dim]
        pts = hv.Dataset(df, kdims=[dim, first, *others], vdims=["ghost_track"])
        el = pts.to(hv.Points, [dim, first], ["ghost_track"], groupby=others, dynamic=False) if others \
            else hv.Points(df, kdims=[dim, first], vdims=["ghost_track"])
        out["ghost_tracks"] = el.opts(color="ghost_track", cmap="Category10", size=6, tools=["hover"], width=600,
                                      title=f"ghost identity along {dim}")
    return out

"""holoviews views of a ``min_action`` result: paths in the plane of the first two states, quasi-potential."""

from __future__ import annotations

from typing import Any

import xarray as xr

from .._shared.views import sweep_keys

__all__ = ["min_action_views"]


def _path(hv, r: xr.Dataset):
    names = [str(s) for s in r["state"].values][:2]
    xy = r["path"].values[:, :2]
    ends = r["endpoints"].values[:, :2]
    sad = r["saddle"].values[:2].reshape(1, -1)
    return hv.Overlay([
        hv.Path([xy], kdims=names, label="min-action path").opts(color="black", line_width=2),
        hv.Points(ends, kdims=names, label="attractors").opts(color="blue", size=8),
        hv.Points(sad, kdims=names, label="saddle").opts(color="red", size=8, marker="x"),
    ]).opts(title=f"min-action path, S* = {float(r['action']):.4g}", width=420, height=380)


def _potential(hv, r: xr.Dataset):
    return hv.Curve((r["arc_length"].values, r["quasi_potential"].values), "arc length",
                    "cumulative action").opts(width=420, height=300, title="action along the path")


def min_action_views(result: xr.Dataset) -> dict[str, Any]:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers bokeh's plot options; nothing is rendered)

    dims, keys = sweep_keys(result, {"node", "state", "endpoint"})
    if not dims:
        return {"path": _path(hv, result), "action along path": _potential(hv, result)}
    kd = [hv.Dimension(d) for d in dims]
    sel = lambda k: result.sel(dict(zip(dims, k)))  # noqa: E731
    return {"path": hv.HoloMap({k: _path(hv, sel(k)) for k in keys}, kdims=kd),
            "action along path": hv.HoloMap({k: _potential(hv, sel(k)) for k in keys}, kdims=kd)}

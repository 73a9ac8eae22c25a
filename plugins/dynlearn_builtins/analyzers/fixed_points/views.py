"""holoviews views of fixed points, ghosts, tracks and events (private; bokeh backend, objects only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from . import classify as fc

#: colours of the point types (stable: blues, unstable: reds, saddle: orange, ghost: green)
COLORS = {"stable_node": "#1f4e9c", "stable_focus": "#4f8fd6", "unstable_node": "#b2182b", "unstable_focus": "#ef6548",
          "saddle": "#f28e2b", "centre": "#7b3294", "non_hyperbolic": "#555555", "ghost": "#1a9850",
          "slow_point": "#a6d96a"}
_OWN = {"point", "state", "state_in", "eig", "pc", "event", "node", "edge"}
MAX_FRAMES = 25


def sweep_dims(ds: xr.Dataset) -> list[str]:
    return [d for d in ds.dims if d not in _OWN and not str(d).startswith("grid_")]


def ordered_dim(ds: xr.Dataset, prefer: str | None = None) -> str | None:
    dims = sweep_dims(ds)
    for cand in (prefer, "epoch"):
        if cand in dims:
            return cand
    return dims[0] if dims else None


def _thin(ds: xr.Dataset, dims: list[str]) -> xr.Dataset:
    """At most ``MAX_FRAMES`` evenly spaced values of each HoloMap dim."""
    sel = {}
    for d in dims:
        n = ds.sizes[d]
        if n > MAX_FRAMES:
            sel[d] = np.unique(np.linspace(0, n - 1, MAX_FRAMES).round().astype(int))
    return ds.isel(sel) if sel else ds


def points_frame(ds: xr.Dataset) -> pd.DataFrame:
    """One row per present point: sweep coords, first state coordinate, type label."""
    first = str(ds["state"].values[0])
    sub = ds[["position", "point_type", "speed", "present"]].sel(state=first, drop=True)
    df = sub.to_dataframe().reset_index()
    df = df[df["present"].astype(bool)]
    df = df.rename(columns={"position": first})
    df["type"] = np.array(("none",) + fc.TYPES, dtype=object)[df["point_type"].astype(int).to_numpy() + 1]
    return df.drop(columns=["present", "point_type"])


def fixed_point_views(ds: xr.Dataset, prefer: str | None = None) -> dict[str, Any]:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend's options; renders nothing)

    out: dict[str, Any] = {}
    if "pc_position" in ds and ds.sizes["state"] > 2:
        out["pca"] = pca_view(ds)
    dim = ordered_dim(ds, prefer)
    first = str(ds["state"].values[0])
    others = [d for d in sweep_dims(ds) if d != dim]
    thin = _thin(ds, others)
    df = points_frame(thin)
    cmap = {k: v for k, v in COLORS.items()}
    if dim is None:
        second = str(ds["state"].values[1]) if ds.sizes["state"] > 1 else None
        if second is not None:
            pos = ds["position"].sel(state=second).values.ravel()
            df[second] = pos[np.asarray(ds["present"].values.ravel(), dtype=bool)]
            out["points"] = hv.Points(df, kdims=[first, second], vdims=["type", "speed"]).opts(
                color="type", cmap=cmap, size=8, tools=["hover"], title="fixed points and ghosts")
        else:
            df["zero"] = 0.0
            out["points"] = hv.Points(df, kdims=[first, "zero"], vdims=["type", "speed"]).opts(
                color="type", cmap=cmap, size=8, tools=["hover"], title="fixed points and ghosts")
        return out
    pts = hv.Dataset(df, kdims=[dim, first, *others], vdims=["type", "speed"])
    out["points"] = grouped(pts, hv.Points, [dim, first], ["type", "speed"], others).opts(
        color="type", cmap=cmap, size=5, tools=["hover"], width=600, title=f"fixed points and ghosts vs {dim}")
    cnt = thin[["n_fixed", "n_ghost"]].to_dataframe().reset_index()
    cds = hv.Dataset(cnt, kdims=[dim, *others], vdims=["n_fixed", "n_ghost"])
    out["counts"] = (grouped(cds, hv.Curve, [dim], ["n_fixed"], others).relabel("fixed points")
                     * grouped(cds, hv.Curve, [dim], ["n_ghost"], others).relabel("ghosts")).opts(
        width=600, title=f"numbers of fixed points and ghosts vs {dim}")
    if "landscape_speed" in ds and ds.sizes["state"] == 1:
        land = thin["landscape_speed"]
        g = f"grid_{first}"

        def image(sel):
            a = land.sel(sel) if sel else land
            z = np.log10(np.maximum(a.transpose(g, dim).values.astype(float), 1e-300))
            return hv.QuadMesh((a[dim].values.astype(float), a[g].values, z), kdims=[dim, first],
                               vdims=["log10 speed"]).opts(cmap="viridis", colorbar=True, width=600,
                                                           title="speed landscape log10 |f|")

        out["speed_landscape"] = _holomap(thin, others, image)
    elif "landscape_speed" in ds and ds.sizes["state"] == 2:
        land = _thin(ds["landscape_speed"].to_dataset(), sweep_dims(ds))["landscape_speed"]
        gx, gy = (f"grid_{s}" for s in ds["state"].values)

        def image2(sel):
            a = land.sel(sel) if sel else land
            z = np.log10(np.maximum(a.transpose(gy, gx).values.astype(float), 1e-300))
            return hv.Image((a[gx].values, a[gy].values, z), kdims=list(ds["state"].values.astype(str)),
                            vdims=["log10 speed"]).opts(cmap="viridis", colorbar=True, title="speed landscape log10 |f|")

        out["speed_landscape"] = _holomap(land.to_dataset(), sweep_dims(ds), image2)
    return out


def pca_view(ds: xr.Dataset) -> Any:
    """The points on the first two principal axes (``pc_position``), coloured by type, one frame per sweep
    element (a slider over epochs), on fixed axis ranges."""
    import holoviews as hv

    dims = sweep_dims(ds)
    thin = _thin(ds[["pc_position", "point_type", "speed", "present", "pc_variance_fraction"]], dims)
    k = thin.sizes["pc"]
    xy = thin["pc_position"].values.reshape(-1, k)
    ok = np.isfinite(xy).all(-1)
    lims = [(float(xy[ok, i].min()), float(xy[ok, i].max())) if ok.any() else (-1.0, 1.0) for i in range(k)]
    lims = [(lo - 0.05 * (hi - lo) - 1e-9, hi + 0.05 * (hi - lo) + 1e-9) for lo, hi in lims] + [(-1.0, 1.0)]
    frac = thin["pc_variance_fraction"].values
    names = [f"PC{i + 1} ({100 * frac[i]:.0f}% var.)" if np.isfinite(frac[i]) else f"PC{i + 1}" for i in range(k)]
    names += ["PC2"] * (2 - k)
    labels = np.array(("none",) + fc.TYPES, dtype=object)

    def frame(sel):
        sub = thin.sel(sel) if sel else thin
        present = sub["present"].values.ravel().astype(bool)
        pos = sub["pc_position"].values.reshape(-1, k)[present]
        df = pd.DataFrame({"pc1": pos[:, 0], "pc2": pos[:, 1] if k > 1 else np.zeros(len(pos)),
                           "type": labels[sub["point_type"].values.ravel()[present].astype(int) + 1],
                           "speed": sub["speed"].values.ravel()[present]})
        return hv.Points(df, kdims=[hv.Dimension("pc1", label=names[0]), hv.Dimension("pc2", label=names[1])],
                         vdims=["type", "speed"]).opts(
            color="type", cmap=COLORS, size=8, tools=["hover"], xlim=lims[0], ylim=lims[1], width=500, height=450,
            title=f"fixed points on the principal axes of {ds.attrs.get('pca_source', 'the states')}")

    return _holomap(thin, dims, frame)


def grouped(ds, element, kdims, vdims, groupby):
    """``ds`` as ``element`` (a HoloMap over ``groupby`` when it is not empty)."""
    if groupby:
        return ds.to(element, kdims, vdims, groupby=groupby, dynamic=False)
    return element(ds.data, kdims=kdims, vdims=vdims)


def _holomap(ds: xr.Dataset, dims: list[str], make) -> Any:
    import holoviews as hv

    if not dims:
        return make({})
    values = [ds[d].values for d in dims]
    frames = {}
    for key in np.array(np.meshgrid(*values, indexing="ij")).reshape(len(dims), -1).T:
        sel = {d: v for d, v in zip(dims, key)}
        frames[tuple(v.item() if hasattr(v, "item") else v for v in key)] = make(sel)
    return hv.HoloMap(frames, kdims=dims)

"""holoviews views of the orbits analyzer, and the helpers the transverse views share (objects only)."""

from __future__ import annotations

from typing import Any

import xarray as xr

SAMPLE_DIMS = ("sample", "state", "exponent", "iterate", "orbit_class", "tangent", "normal", "transition")


def sweep_dims(ds: xr.Dataset, var: str) -> list[str]:
    return [d for d in ds[var].dims if d not in SAMPLE_DIMS]


def curves(da: xr.DataArray, x: str, series: str | None, label: str) -> Any:
    """Curves of ``da`` against ``x``: one per value of ``series`` (overlaid), sliders over the other dims."""
    import holoviews as hv

    da = da.reset_coords(drop=True).rename(label)
    others = [d for d in da.dims if d not in (x, series)]
    data = hv.Dataset(da.to_dataframe().reset_index(), kdims=[x, *([series] if series else []), *others],
                      vdims=[label])
    if series is None:
        return data.to(hv.Curve, x, label, groupby=others) if others else hv.Curve(data, x, label)
    out = data.to(hv.Curve, x, label, groupby=[series, *others])
    return out.overlay(series)


def scatter(df, x: str, y: str, others: list[str]) -> Any:
    import holoviews as hv

    data = hv.Dataset(df, kdims=[x, *others], vdims=[y])
    return data.to(hv.Scatter, x, y, groupby=others) if others else hv.Scatter(data, x, y)


def orbit_views(result: xr.Dataset) -> dict[str, Any]:
    """``orbit_diagram``, ``lyapunov`` and ``phase`` views of an ``orbits`` result."""
    dims = sweep_dims(result, "orbit")
    state0 = str(result["state"].values[0])
    views: dict[str, Any] = {}
    pts = result["orbit_points"].sel(state=state0, drop=True).reset_coords(drop=True).rename(state0)
    df = pts.to_dataframe().reset_index().dropna(subset=[state0])
    if dims:
        x, others = dims[0], dims[1:]
        views["orbit_diagram"] = scatter(df, x, state0, others)
        lam = result["lyapunov"].mean("sample", skipna=True)
        views["lyapunov"] = curves(lam, x, "exponent", "lyapunov")
        views["phase"] = curves(result["class_fraction"], x, "orbit_class", "fraction")
    else:
        if result.sizes["state"] >= 2:
            state1 = str(result["state"].values[1])
            both = result["orbit_points"].reset_coords(drop=True).to_dataset(dim="state").to_dataframe().reset_index()
            views["orbit_diagram"] = scatter(both.dropna(subset=[state0, state1]), state0, state1, [])
        else:
            views["orbit_diagram"] = scatter(df, "iterate", state0, [])
        views["lyapunov"] = curves(result["lyapunov"], "sample", "exponent", "lyapunov")
    return views

"""holoviews views of the lyapunov analyzer (objects only)."""

from __future__ import annotations

from typing import Any

import xarray as xr

from ..orbits.views import curves, scatter, sweep_dims


def lyapunov_views(result: xr.Dataset) -> dict[str, Any]:
    """``spectrum``: mean exponents vs the first sweep dim (sliders over the others), or every sample's spectrum
    when nothing was swept; ``kaplan_yorke`` vs the first sweep dim; ``finite_time``: the leading finite-time
    exponent per window and sample."""
    dims = sweep_dims(result, "exponents")
    views: dict[str, Any] = {}
    if dims:
        views["spectrum"] = curves(result["mean_exponents"], dims[0], "exponent", "exponent_value")
        views["kaplan_yorke"] = curves(result["kaplan_yorke_dimension"], dims[0], None, "kaplan_yorke")
    else:
        df = result["exponents"].reset_coords(drop=True).rename("exponent_value").to_dataframe().reset_index()
        views["spectrum"] = scatter(df.dropna(), "exponent", "exponent_value", [])
    if "finite_time" in result:
        lead = result["finite_time"].isel(exponent=0, drop=True)
        views["finite_time"] = curves(lead, "window", "sample", "leading_exponent")
    return views

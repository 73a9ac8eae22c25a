"""holoviews views of the transverse analyzer (objects only: no extension loading, no show)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..orbits.views import curves, sweep_dims


def transverse_views(result: xr.Dataset) -> dict[str, Any]:
    """``exponents`` (tangential and transverse exponents vs the first sweep dim) and ``stability``."""
    import holoviews as hv

    dims = sweep_dims(result, "stability")
    dims = [d for d in dims if d != "manifold"]
    views: dict[str, Any] = {}
    tang = result["tangential_exponent"].mean("sample", skipna=True).max("tangent", skipna=True)
    trans = result["transverse_exponent"].mean("sample", skipna=True).max("normal", skipna=True)
    both = xr.concat([tang, trans], dim=xr.DataArray(np.array(["tangential", "transverse"], dtype=object),
                                                     dims="direction", name="direction"))
    x = dims[0] if dims else "manifold"
    views["exponents"] = curves(both, x, "direction", "exponent") if x in both.dims else hv.Curve([])
    if dims:
        views["stability"] = curves(result["transverse_exponent_mean"], x, None, "transverse_exponent")
    return views

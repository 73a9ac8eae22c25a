"""holoviews views of a ``koopman_separatrix`` result (built objects only; no extension loaded, nothing shown)."""

from __future__ import annotations

from typing import Any

import xarray as xr

from .._shared.views import sweep_keys

__all__ = ["koopman_views"]


def _sel(result: xr.Dataset, dims: list[str], key: tuple) -> xr.Dataset:
    return result.sel(dict(zip(dims, key))) if dims else result


def _phase(hv, r: xr.Dataset):
    names = [str(s) for s in r["state"].values]
    layers = []
    if "psi" in r:
        psi = r["psi"]
        gd = list(psi.dims)
        if len(gd) == 1:
            layers.append(hv.Curve((psi[gd[0]].values, psi.values), names[0], "psi", label="psi"))
            return hv.Overlay(layers)
        if len(gd) == 3:
            psi = psi.isel({gd[2]: psi.sizes[gd[2]] // 2})
            gd = gd[:2]
        img = hv.Image((psi[gd[0]].values, psi[gd[1]].values, psi.values.T), kdims=names[:2], vdims=["psi"])
        layers.append(img.opts(cmap="RdBu_r", colorbar=True, clim=(-1, 1), width=420, height=380))
        layers.append(hv.operation.contours(img, levels=[0.0]).opts(color="black", line_width=2))
    own = r["separatrix_psi"].values if "separatrix_psi" in r else r["separatrix"].values
    layers.append(hv.Points(own[:, :2], kdims=names[:2], label="psi = 0").opts(color="black", size=3))
    if "polish_outcome" in r:
        sep = r["separatrix"].values
        layers.append(hv.Points(sep[:, :2], kdims=names[:2], label="polished (simulated)").opts(color="green", size=4,
                                                                                              marker="+"))
    cr = r["crossing"].values
    layers.append(hv.Points(cr[:, :2], kdims=names[:2], label="crossing (simulated)").opts(color="orange", size=5,
                                                                                            marker="x"))
    return hv.Overlay(layers).opts(title="psi, its zero set and simulated crossings")


def _training(hv, r: xr.Dataset):
    steps = r["step"].values
    curves = [hv.Curve((steps, r[f"train_{k}"].values), "step", "value", label=k)
              for k in ("loss", "residual", "anchor")]
    return hv.Overlay(curves).opts(logy=True, width=420, height=300, title="training curves")


def koopman_views(result: xr.Dataset) -> dict[str, Any]:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers bokeh's plot options; nothing is rendered)

    own = {"point", "state", "step", "curve", "target", "side", "candidate"} | {
        d for d in result.dims if str(d).startswith("grid_")}
    dims, keys = sweep_keys(result, own)
    if not dims:
        return {"separatrix": _phase(hv, result), "training": _training(hv, result)}
    kd = [hv.Dimension(d) for d in dims]
    return {
        "separatrix": hv.HoloMap({k: _phase(hv, _sel(result, dims, k)) for k in keys}, kdims=kd),
        "training": hv.HoloMap({k: _training(hv, _sel(result, dims, k)) for k in keys}, kdims=kd),
    }

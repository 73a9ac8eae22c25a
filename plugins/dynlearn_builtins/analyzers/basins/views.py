"""holoviews views of the basins analyzer's output (private).

- ``basins``: the basins over the sampled states (an image for 2-D grids, the middle slice of the last axis
  for 3-D grids, a curve for 1-D, a scatter of the first two coordinates for quasi-random samples): the attractor
  id, ``-1`` for diverged orbits and ``-2`` for the others on no attractor (unresolved, nan), with the
  separatrix points and the invariant manifolds the system declares (e.g. the two-factor ellipse ``E_mu``);
- ``fractions``: basin fractions (and the diverged fraction) with their Wilson intervals.

Both are HoloMaps over the sweep dims (at most ``MAX_FRAMES`` frames, evenly spread over each dim).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import xarray as xr

from dynlearn import outcome as oc

MAX_FRAMES = 24


def _sweep_dims(result: xr.Dataset) -> list[str]:
    return [d for d in result["attractor_kind"].dims if d != "attractor"]


def _frames(result: xr.Dataset, dims: list[str]) -> list[dict[str, Any]]:
    if not dims:
        return [{}]
    per = max(1, int(MAX_FRAMES ** (1 / len(dims))))
    axes = []
    for d in dims:
        n = result.sizes[d]
        idx = np.unique(np.linspace(0, n - 1, min(n, per)).round().astype(int))
        axes.append([(d, i) for i in idx])
    return [dict(c) for c in itertools.product(*axes)]


def _system(result: xr.Dataset):
    from dynlearn.plugins import make_system

    try:
        config = json.loads(result.attrs["system_config"])
        config.pop("sweep", None)  # the swept parameters: the frame's coords give their values
        return make_system(config)
    except Exception:  # views never fail on a store written by another version
        return None


def _manifold_points(system, frame: xr.Dataset, n: int = 400) -> dict[str, np.ndarray]:
    """Points sampled on each declared manifold, at the frame's parameter values."""
    if system is None:
        return {}
    import torch

    p = system.param_tensors()
    for name in p:
        if name in frame.coords and frame[name].ndim == 0:
            p[name] = torch.as_tensor(float(frame[name]), dtype=torch.float64)
    out = {}
    for name, m in system.manifolds().items():
        if m.sample is None or (m.valid is not None and not bool(torch.as_tensor(m.valid(p)).all())):
            continue
        try:
            pts = m.sample(n, p, torch.Generator().manual_seed(0))
        except Exception:
            continue
        out[name] = np.asarray(pts, dtype=float)
    return out


def shown(frame: xr.Dataset) -> xr.DataArray:
    """What the basin image shows: the attractor id, -1 diverged, -2 none (unresolved, nan, masked)."""
    lab = frame["basin"].where(frame["basin"] >= 0, -2)
    return lab.where(frame["outcome"] != oc.DIVERGED, -1).rename("basin")


def _basin_frame(hv, frame: xr.Dataset, space: list[str], system, result: xr.Dataset):
    lab = shown(frame)
    K = int(result.sizes["attractor"])
    kinds = [str(k) for k in frame["attractor_kind"].values]
    title = ", ".join(f"{i}: {k}" for i, k in enumerate(kinds) if k) + " (-1: diverged, -2: none)"
    bpts = frame["boundary_state"].values
    bpts = bpts[~np.isnan(bpts[:, 0])]
    names = [str(s) for s in result["state"].values]
    if "sample" in lab.dims:
        xy = frame["sample_state"].values  # per sweep element for user states
        img = hv.Points((xy[:, 0], xy[:, 1], lab.values), [names[0], names[1]], "basin").opts(
            color="basin", cmap="Category10", size=3)
    elif len(space) == 1:
        img = hv.Curve((lab[space[0]].values, lab.values), space[0], "basin")
        return (img * hv.Scatter((bpts[:, 0], np.zeros(len(bpts))), space[0], "basin").opts(
            color="black", size=5)).opts(title=title, width=600, height=300)
    else:
        if len(space) == 3:
            mid = lab.sizes[space[2]] // 2
            zc = lab[space[2]].values
            lab = lab.isel({space[2]: mid})
            spacing = np.diff(zc).mean() if len(zc) > 1 else np.inf
            bpts = bpts[np.abs(bpts[:, 2] - zc[mid]) <= spacing]
            title += f"; slice {space[2]} = {zc[mid]:.3g}"
        xs, ys = lab[space[0]].values, lab[space[1]].values
        img = hv.Image((xs, ys, lab.transpose(space[1], space[0]).values), [space[0], space[1]], "basin").opts(
            cmap="Category10", clim=(-2.5, K - 0.5), color_levels=K + 2, colorbar=True)
    layers = [img, hv.Points(bpts[:, :2], [names[0], names[1]], label="separatrix points").opts(
        color="black", size=3)]
    for name, pts in _manifold_points(system, frame).items():
        layers.append(hv.Points(pts[:, :2], [names[0], names[1]], label=name).opts(size=1.5, color="white"))
    return hv.Overlay(layers).opts(title=title, width=560, height=520, legend_position="bottom_right")


def _fraction_frame(hv, frame: xr.Dataset):
    kinds = [str(k) for k in frame["attractor_kind"].values]
    keep = [i for i, k in enumerate(kinds) if k]
    names = ["diverged"] + [f"{i}: {kinds[i]}" for i in keep]
    f, lo, hi = (np.concatenate([[float(frame[f"diverged_fraction{s}"])], frame[f"basin_fraction{s}"].values[keep]])
                 for s in ("", "_low", "_high"))
    bars = hv.Bars((names, f), "attractor", "basin fraction")
    err = hv.ErrorBars((names, f, f - lo, hi - f), "attractor", ["basin fraction", "minus", "plus"])
    return (bars * err).opts(title="basin fractions (Wilson intervals)", width=560, height=300)


def views(result: xr.Dataset) -> dict[str, Any]:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend's options; renders nothing)

    sweep = _sweep_dims(result)
    space = [d for d in result["basin"].dims if d not in sweep]
    system = _system(result)
    frames = _frames(result, sweep)
    basin, frac = {}, {}
    for sel in frames:
        frame = result.isel(sel) if sel else result
        key = tuple(frame[d].values.item() for d in sweep)
        basin[key] = _basin_frame(hv, frame, space, system, result)
        frac[key] = _fraction_frame(hv, frame)
    if not sweep:
        return {"basins": basin[()], "fractions": frac[()]}
    kd = [hv.Dimension(d, label=str(result[d].attrs.get("long_name", d))) for d in sweep]
    return {"basins": hv.HoloMap(basin, kdims=kd), "fractions": hv.HoloMap(frac, kdims=kd)}


def _stability_image(hv, frame: xr.Dataset, result: xr.Dataset):
    """The initial states coloured by attractor id (-1 diverged / left the region, -2 none): an image on a
    grid (``grid_shape`` attr, 2-D), else a scatter of the first two state coordinates."""
    lab = shown(frame).values
    xy = frame["initial_state"].values
    names = [str(s) for s in result["state"].values]
    labels = [str(n) for n in frame["attractor_name"].values]
    title = ", ".join(f"{i}: {n}" for i, n in enumerate(labels) if n) + " (-1: diverged, -2: none)"
    shape = list(result.attrs.get("grid_shape", []))
    K = int(result.sizes["attractor"])
    if len(shape) == 2 and xy.shape[1] == 2:
        xs, ys = xy[:, 0].reshape(shape)[:, 0], xy[:, 1].reshape(shape)[0]
        img = hv.Image((xs, ys, lab.reshape(shape).T), names[:2], "basin").opts(
            cmap="Category10", clim=(-2.5, K - 0.5), color_levels=K + 2, colorbar=True)
    else:
        img = hv.Points((xy[:, 0], xy[:, 1], lab), names[:2], "basin").opts(
            color="basin", cmap="Category10", size=2, clim=(-2.5, K - 0.5))
    return img.opts(title=title, width=560, height=480)


def _stability_bars(hv, frame: xr.Dataset):
    names = [str(n) for n in frame["attractor_name"].values]
    keep = [i for i, n in enumerate(names) if n]
    f, lo, hi = (frame[f"basin_stability{s}"].values[keep] for s in ("", "_low", "_high"))
    labels = [names[i] for i in keep]
    bars = hv.Bars((labels, f), "attractor", "basin stability")
    err = hv.ErrorBars((labels, f, f - lo, hi - f), "attractor", ["basin stability", "minus", "plus"])
    return (bars * err).opts(title="basin stability (Wilson intervals)", width=560, height=300)


def _stability_curves(hv, result: xr.Dataset, dim: str):
    """Basin stability of each attractor id vs ``dim`` with its Wilson band (other sweep dims at index 0)."""
    others = {d: 0 for d in _sweep_dims(result) if d != dim}
    r = result.isel(others) if others else result
    x = r[dim].values
    layers = []
    for k in r["attractor"].values:
        a = r.sel(attractor=k)
        names = [str(n) for n in a["attractor_name"].values if str(n)]
        if not names:
            continue
        label = f"{int(k)}: {names[0]}"
        y, lo, hi = (a[f"basin_stability{s}"].values for s in ("", "_low", "_high"))
        layers.append(hv.Area((x, lo, hi), dim, ["basin stability", "high"], label=label).opts(alpha=0.25))
        layers.append(hv.Curve((x, y), dim, "basin stability", label=label))
    return hv.Overlay(layers).opts(title=f"basin stability vs {dim} (Wilson bands)", width=620, height=340,
                                   legend_position="right")


def stability_views(result: xr.Dataset) -> dict[str, Any]:
    """Views of the basin-stability study: ``stability`` (vs the matched dim with Wilson bands when the sweep
    has dims, else bars), ``basins`` (initial states coloured by attractor, a HoloMap over the sweep)."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend's options; renders nothing)

    sweep = _sweep_dims(result)
    basin = {}
    for sel in _frames(result, sweep):
        frame = result.isel(sel) if sel else result
        basin[tuple(frame[d].values.item() for d in sweep)] = _stability_image(hv, frame, result)
    if not sweep:
        return {"stability": _stability_bars(hv, result), "basins": basin[()]}
    dim = result.attrs.get("matched_dim") or sweep[0]
    kd = [hv.Dimension(d, label=str(result[d].attrs.get("long_name", d))) for d in sweep]
    return {"stability": _stability_curves(hv, result, dim), "basins": hv.HoloMap(basin, kdims=kd)}

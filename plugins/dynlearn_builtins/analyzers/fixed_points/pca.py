"""Principal components in which the fixed points are shown (private).

The basis comes from the user's ``initial_states`` (hidden states of trials: the plane the dynamics lives in) or,
absent those, from the points found and the sampled starting states. It is one basis for the whole sweep (so a
slider over epochs moves the points, not the axes), stored as labeled data with the points' coordinates in it.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

Tensor = torch.Tensor

#: states the basis is computed from at most (evenly spaced rows of the given ones)
MAX_ROWS = 20000


def basis(states: Tensor, n_pc: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Mean ``(d,)``, the first ``min(n_pc, d)`` principal axes ``(k, d)`` (unit rows, the largest |component| of
    each positive) and their fractions of the variance ``(k,)``, from ``states`` ``(N, d)`` (finite rows only)."""
    x = states[torch.isfinite(states).all(-1)].to(torch.float64)
    if x.shape[0] > MAX_ROWS:
        x = x[torch.linspace(0, x.shape[0] - 1, MAX_ROWS).round().long()]
    d = states.shape[-1]
    k = min(n_pc, d)
    if x.shape[0] == 0:
        return torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)[:k], torch.full((k,), np.nan)
    mean = x.mean(0)
    _, sv, vt = torch.linalg.svd(x - mean, full_matrices=False)
    comps = torch.zeros(k, d, dtype=torch.float64)
    comps[: vt.shape[0]] = vt[:k]
    if vt.shape[0] < k:  # fewer states than components: complete with unit axes (zero variance)
        comps[vt.shape[0]:] = torch.eye(d, dtype=torch.float64)[vt.shape[0]:k]
    big = comps.abs().argmax(-1, keepdim=True)
    comps = comps * torch.sign(comps.gather(-1, big))
    var = torch.zeros(k, dtype=torch.float64)
    var[: min(k, sv.numel())] = (sv**2)[:k]
    total = (sv**2).sum()
    return mean, comps, var / total if total > 0 else torch.full((k,), np.nan, dtype=torch.float64)


def pca_dataset(result: xr.Dataset, mean: Tensor, comps: Tensor, frac: Tensor, source: str) -> xr.Dataset:
    """``pc_mean``, ``pc_components``, ``pc_variance_fraction`` and the points' coordinates ``pc_position``
    ``(..., point, pc)`` (NaN where no point)."""
    k = comps.shape[0]
    units = result["position"].attrs.get("units", "")
    pc = ("pc", np.arange(k), {"long_name": "principal component (largest variance first)"})
    m = xr.DataArray(mean.numpy(), dims=("state",), coords={"state": result["state"]},
                     attrs={"long_name": f"mean of the states the principal components come from ({source})",
                            "units": units})
    c = xr.DataArray(comps.numpy(), dims=("pc", "state"), coords={"pc": pc, "state": result["state"]},
                     attrs={"long_name": f"principal axes (unit vectors) of the states of {source}", "units": "1"})
    proj = xr.dot(result["position"] - m, c, dim="state")
    proj.attrs = {"long_name": "point coordinates on the principal axes", "units": units}
    f = xr.DataArray(frac.numpy(), dims=("pc",), coords={"pc": pc},
                     attrs={"long_name": "fraction of the variance along the axis", "units": "1"})
    return xr.Dataset({"pc_mean": m, "pc_components": c, "pc_variance_fraction": f,
                       "pc_position": proj.transpose(*result["present"].dims, "pc")},
                      attrs={"pca_source": source})

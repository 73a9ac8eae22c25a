"""Transitions of the orbit classification along one sweep dim, located by batched bisection."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.errors import ParameterError
from dynlearn.params import Settings
from dynlearn.sweep import Batch

from .classify import classify_orbits, projector, signature
from .kernels import APPROACH_NAMES, CLASS_NAMES, flag_attrs

Tensor = torch.Tensor

#: interior points per bracket and refinement round
SECTIONS = 7


def decode(sig: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Signature -> ``(outcome, class, period, approach)``."""
    return sig // 100_000_000, (sig // 1_000_000) % 100, (sig % 1_000_000) // 10, sig % 10


def find_transitions(batch: Batch, states: Tensor, manifold, res: Mapping[str, Tensor], settings: Settings,
                     show_progress: bool | None = None) -> xr.Dataset:
    """Where the outcome / class / period / approach of orbit ``s`` changes between neighbours along
    ``settings.refine_dim``, narrow the bracket (all brackets in one batch, ``SECTIONS`` interior points per
    round) to the first point where the state of the lower neighbour ends, until it is narrower than
    ``settings.refine_tol`` (in units of the dim's coordinate). The parameters are interpolated linearly between
    the two neighbours, and a bracket's orbits start from the lower neighbour's initial state ``states (B, S,
    d)`` (not yet projected onto ``manifold``).

    ``*_before`` is the state at the lower neighbour, ``*_after`` the state at the upper one (states met in
    between, e.g. slowly converging orbits right at a bifurcation, are not reported).
    """
    dim, tol = settings.refine_dim, settings.refine_tol
    if dim not in batch.dims:
        raise ParameterError(f"refine_dim {dim!r} is not a sweep dim (sweep dims: {', '.join(batch.dims) or 'none'})")
    system = batch.system
    axis = batch.dims.index(dim)
    n = batch.shape[axis]
    coord = (np.asarray(batch.coords[dim][1], dtype=float) if dim in batch.coords
             else np.arange(n, dtype=float))
    idx = np.arange(batch.size).reshape(batch.shape)
    lo_flat = np.take(idx, np.arange(n - 1), axis=axis).ravel()
    hi_flat = np.take(idx, np.arange(1, n), axis=axis).ravel()
    pos = np.take(np.indices(batch.shape)[axis], np.arange(n - 1), axis=axis).ravel()
    sig = signature(res)
    valid = batch.valid
    lo_t, hi_t = torch.as_tensor(lo_flat), torch.as_tensor(hi_flat)
    differ = (sig[lo_t] != sig[hi_t]) & (valid[lo_t] & valid[hi_t]).unsqueeze(-1)
    pair, sample = (t.numpy() for t in differ.nonzero(as_tuple=True))
    lo_i, hi_i = lo_flat[pair], hi_flat[pair]
    c_lo, c_hi = coord[pos[pair]], coord[pos[pair] + 1]
    m = len(pair)
    t_lo = torch.zeros(m, dtype=torch.float64)
    t_hi = torch.ones(m, dtype=torch.float64)
    sig_lo = sig[lo_i, sample]
    sig_hi = sig[hi_i, sample]
    width = float(np.abs(c_hi - c_lo).max()) if m else 0.0
    # (K+1)-section: K interior points per bracket and round, all brackets in one batch
    n_iter = int(math.ceil(math.log(width / tol) / math.log(SECTIONS + 1))) if width > tol else 0
    p_lo = {k: v[lo_i] for k, v in batch.params.items()}
    p_hi = {k: v[hi_i] for k, v in batch.params.items()}
    x_raw = states[torch.as_tensor(lo_i), torch.as_tensor(sample)] if m else states[0, :0]  # the lower neighbour's
    j = torch.arange(1, SECTIONS + 1, dtype=torch.float64) / (SECTIONS + 1)
    for _ in range(n_iter):
        t = (t_lo[:, None] + j * (t_hi - t_lo)[:, None]).reshape(-1)  # (m * K,)
        rep = torch.arange(m).repeat_interleave(SECTIONS)
        p_mid = {k: v[rep] + t.reshape(-1, *([1] * (v.dim() - 1))) * (p_hi[k][rep] - v[rep]) for k, v in p_lo.items()}
        x0 = x_raw[rep].unsqueeze(1)
        if manifold is not None:
            x0 = projector(manifold, system.expand_params(p_mid))(x0)
        mid = signature(classify_orbits(system, p_mid, x0, settings, show_progress=show_progress,
                                        desc=f"bisect {dim}"))[:, 0].reshape(m, SECTIONS)
        differs = mid != sig_lo[:, None]
        first = torch.where(differs, torch.arange(SECTIONS), SECTIONS).amin(-1)  # first point past the boundary
        tt = t.reshape(m, SECTIONS)
        new_lo = torch.where(first > 0, tt.gather(1, (first - 1).clamp_min(0)[:, None])[:, 0], t_lo)
        new_hi = torch.where(first < SECTIONS, tt.gather(1, first.clamp_max(SECTIONS - 1)[:, None])[:, 0], t_hi)
        t_lo, t_hi = new_lo, new_hi
    frac = ((t_lo + t_hi) / 2).numpy()
    units = {"units": batch.coords[dim][2].get("units")} if dim in batch.coords and batch.coords[dim][2].get("units") else {}
    data = {
        "transition_at": ("transition", c_lo + frac * (c_hi - c_lo),
                          {"long_name": f"{dim} where the orbit's outcome/class/period/approach changes (bisection)",
                           **units}),
        "transition_low": ("transition", c_lo + t_lo.numpy() * (c_hi - c_lo),
                           {"long_name": f"{dim}: last value with the state before", **units}),
        "transition_high": ("transition", c_lo + t_hi.numpy() * (c_hi - c_lo),
                            {"long_name": f"{dim}: first value where the state before has ended", **units}),
        "transition_sample": ("transition", sample.astype(np.int64),
                              {"long_name": "initial state (sample index) whose orbit changes", "units": "1"}),
    }
    for when, s in (("before", sig_lo), ("after", sig_hi)):
        out, cls, per, app = (a.numpy() for a in decode(s))
        data[f"outcome_{when}"] = ("transition", out.astype(np.int8), oc.flag_attrs(f"outcome of the orbit {when}"))
        data[f"class_{when}"] = ("transition", cls.astype(np.int8), flag_attrs(f"orbit class {when}", CLASS_NAMES))
        data[f"period_{when}"] = ("transition", per.astype(np.int64),
                                  {"long_name": f"orbit period {when} (0: not periodic)", "units": "iteration"})
        data[f"approach_{when}"] = ("transition", app.astype(np.int8),
                                    flag_attrs(f"approach to the fixed point {when}", APPROACH_NAMES))
    unravel = np.unravel_index(lo_i, batch.shape) if m else [np.zeros(0, dtype=np.int64)] * len(batch.shape)
    for k, other in enumerate(batch.dims):
        if other == dim:
            continue
        vals = (np.asarray(batch.coords[other][1])[unravel[k]] if other in batch.coords else unravel[k])
        data[f"transition_{other}"] = ("transition", vals, {"long_name": f"{other} of the transition"})
    # order by sample, then position along the dim
    order = np.lexsort((data["transition_at"][1], sample)) if m else np.zeros(0, dtype=np.int64)
    data = {k: (dims, np.asarray(v)[order], attrs) for k, (dims, v, attrs) in data.items()}
    return xr.Dataset(data, coords={"transition": ("transition", np.arange(m, dtype=np.int64))})

"""Labeled output of the fixed-point analyzer (private): padded ``point`` dim plus every sweep dim."""

from __future__ import annotations

import warnings
from dataclasses import fields

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc

from . import classify as fc
from .pipeline import Box, Diagnosis, PointSet, cap
from .solver import take

_GHOST_VARS = {
    "curvature": ("ghost_curvature", "normal-form curvature a of the speed along the slow direction (phi = r + a u^2)"),
    "radius": ("passage_radius", "radius of the ball of the passage test"),
    "time": ("passage_time", "time to cross the ball, measured on a trajectory through the slow point"),
    "time_nf": ("passage_time_nf", "normal-form passage time pi / sqrt(r a) of the bottleneck"),
    "time_nf_ball": ("passage_time_nf_ball", "normal-form time to cross the ball: 2 atan(rho sqrt(a/r)) / sqrt(r a)"),
    "linger": ("linger_ratio", "passage time over the time to cross the ball at the speed on its edge"),
}


def _fill(t: torch.Tensor):
    """Padding value of a tensor: False, -1 (integers), NaN (floats and complex); ``inf`` for ``q``/``ginf``."""
    if t.dtype == torch.bool:
        return False
    if t.is_complex():
        return complex(np.nan, np.nan)
    return np.nan if t.is_floating_point() else -1


def _pad(dg: Diagnosis, P: int) -> Diagnosis:
    pad = P - dg.points.size
    if pad == 0:
        return dg

    def ext(t, fill):
        shape = (t.shape[0], pad, *t.shape[2:])
        return torch.cat([t, torch.full(shape, fill, dtype=t.dtype, device=t.device)], 1)

    pts = dg.points
    fills = {"q": torch.inf, "ginf": torch.inf, "count": 0}
    ps = PointSet(*(ext(getattr(pts, f.name), fills.get(f.name, _fill(getattr(pts, f.name)))) for f in fields(pts)))
    return Diagnosis(ps, **{f.name: ext(getattr(dg, f.name), _fill(getattr(dg, f.name))) for f in fields(dg)[1:]})


def _cat(diags: list[Diagnosis]) -> Diagnosis:
    P = max(dg.points.size for dg in diags)
    diags = [_pad(dg, P) for dg in diags]
    ps = PointSet(*(torch.cat([getattr(dg.points, f.name) for dg in diags]) for f in fields(PointSet)))
    return Diagnosis(ps, **{f.name: torch.cat([getattr(dg, f.name) for dg in diags]) for f in fields(Diagnosis)[1:]})


def to_dataset(batch, diags: list[Diagnosis], typical: torch.Tensor, n_starts: torch.Tensor, *,
               max_points: int | None = None, jacobians: bool = True) -> xr.Dataset:
    """The analyzer's Dataset (see :class:`FixedPoints`); ``outcome`` is ``masked`` for an entry whose parameters
    are not finite (e.g. a network that diverged in training: not analysed), ``ok`` otherwise.

    The counts are those of every distinct point found; with ``max_points`` the ``point`` dim keeps the
    lowest-``q`` points of each entry, ``truncated`` flags the entries that lost some and a ``UserWarning`` says
    how many were dropped.
    """
    system = batch.system
    dg = _cat(diags)
    valid = batch.valid.reshape(-1, 1)
    code_all = torch.where(dg.points.mask & valid, dg.code, fc.NONE)
    dg, truncated = cap(dg, max_points)
    truncated &= batch.valid
    if bool(truncated.any()):
        dropped = int((code_all >= 0).sum() - (dg.points.mask & valid).sum())
        warnings.warn(f"fixed_points: max_points={max_points} dropped {dropped} point{'s' if dropped > 1 else ''} "
                      f"(the highest-q ones) in {int(truncated.sum())} of {batch.size} sweep elements; their counts "
                      f"n_fixed/n_ghost/n_slow still include them (see the variable 'truncated'; max_points=None "
                      f"keeps every point)", UserWarning, stacklevel=4)
    pts = dg.points
    B, P, d = pts.x.shape
    mask = pts.mask & valid
    code = torch.where(mask, dg.code, fc.NONE)
    nan = torch.tensor(np.nan, dtype=pts.x.dtype)
    fnum = lambda t: torch.where(mask, t, nan)  # noqa: E731
    flow = system.kind == "flow"
    tunit = system.time_units if flow else "iteration"
    sunit = system.state_units
    speed_units = f"{sunit}/{tunit}" if flow else f"{sunit} per iteration"
    names = np.array(system.state_names, dtype=object)
    coords = {"point": ("point", np.arange(P), {"long_name": "point slot (padded; see `present`)"}),
              "state": ("state", names, {"long_name": "state coordinate"}),
              "state_in": ("state_in", names, {"long_name": "state coordinate differentiated by (Jacobian column)"}),
              "eig": ("eig", np.arange(d), {"long_name": "eigenvalue rank (most unstable first)"})}
    n = lambda c: torch.where(batch.valid, c, torch.full_like(c, -1))  # noqa: E731
    is_fixed = (code_all >= 0) & (code_all < fc.CODE["ghost"])
    data = {
        "n_fixed": (n(is_fixed.sum(1)), (), {"long_name": "number of fixed points found (all of them, also beyond "
                                             "max_points; -1 where outcome is masked)", "units": "1"}),
        "n_ghost": (n((code_all == fc.CODE["ghost"]).sum(1)), (),
                    {"long_name": "number of ghosts (slow points that pass the passage test; all of them; -1 where "
                                  "outcome is masked)", "units": "1"}),
        "n_slow": (n((code_all == fc.CODE["slow_point"]).sum(1)), (),
                   {"long_name": "number of slow points that are not ghosts (all of them; -1 where outcome is "
                                 "masked)", "units": "1"}),
        "truncated": (truncated, (), {"long_name": "max_points dropped points of this entry (the counts include "
                                                   "them; the point dim does not)"}),
        "n_start_states": (n(n_starts.to(torch.int64)), (),
                           {"long_name": "starting states of the minimiser (sampled, user's initial_states, warm "
                                         "start, midpoints; -1 where outcome is masked)", "units": "1"}),
        "outcome": (torch.where(batch.valid, oc.OK, oc.MASKED).to(torch.int8), (),
                    oc.flag_attrs("outcome of the entry (masked: parameters not finite, not analysed)")),
        "typical_speed": (typical, (), {"long_name": "median speed |g| of the sampled starting states",
                                        "units": speed_units}),
        "present": (mask, ("point",), {"long_name": "the slot holds a point"}),
        "position": (torch.where(mask.unsqueeze(-1), pts.x, nan), ("point", "state"),
                     {"long_name": "state at the point (periodic coordinates wrapped into their interval)",
                      "units": sunit}),
        "q": (fnum(pts.q), ("point",), {"long_name": "q = |g|^2 / 2 at the point (g = f or F(x) - x)",
                                         "units": f"({speed_units})^2"}),
        "speed": (fnum((2 * pts.q).sqrt()), ("point",), {"long_name": "speed |g| at the point", "units": speed_units}),
        "residual_max": (fnum(pts.ginf), ("point",), {"long_name": "max-norm of the residual g at the point",
                                                      "units": speed_units}),
        "n_reached": (torch.where(mask, pts.count, -1).to(torch.int32), ("point",),
                      {"long_name": "starting states whose minimisation ended at the point (before de-duplication; "
                                    "-1 where no point)", "units": "1"}),
        "point_type": (code.to(torch.int8), ("point",), fc.flag_attrs()),
        "n_unstable": (torch.where(mask, dg.n_unstable, -1).to(torch.int16), ("point",),
                       {"long_name": "number of unstable eigenvalues (Re > 0 for flows, |.| > 1 for maps)",
                        "units": "1"}),
        "n_neutral": (torch.where(mask, dg.n_neutral, -1).to(torch.int16), ("point",),
                      {"long_name": "number of eigenvalues on the stability boundary (within neutral_tol)",
                       "units": "1"}),
        "eig_real": (torch.where(mask.unsqueeze(-1), dg.eig.real, nan), ("point", "eig"),
                     {"long_name": "real part of the Jacobian eigenvalues (of f, or of F for maps)",
                      "units": f"1/{tunit}" if flow else "1"}),
        "eig_imag": (torch.where(mask.unsqueeze(-1), dg.eig.imag, nan), ("point", "eig"),
                     {"long_name": "imaginary part of the Jacobian eigenvalues", "units": f"1/{tunit}" if flow else "1"}),
        "sign_change": (mask & dg.sign_change, ("point",),
                        {"long_name": "a Jacobian eigenvalue's real part changes sign along the passage"}),
    }
    if jacobians:
        m3 = mask.reshape(B, P, 1, 1)
        junits = f"1/{tunit}" if flow else "1"
        data["jacobian"] = (torch.where(m3, dg.jacobian, nan), ("point", "state", "state_in"),
                            {"long_name": "Jacobian d g_state / d x_state_in at the point (of f, or of F for maps)",
                             "units": junits})
        data["eigvec_real"] = (torch.where(m3, dg.eigvec.real, nan), ("point", "eig", "state"),
                               {"long_name": "real part of the unit eigenvector of eigenvalue `eig` (J v = lambda v)",
                                "units": "1"})
        data["eigvec_imag"] = (torch.where(m3, dg.eigvec.imag, nan), ("point", "eig", "state"),
                               {"long_name": "imaginary part of the unit eigenvector of eigenvalue `eig`", "units": "1"})
    units = {"curvature": f"1/({sunit} {tunit})" if flow else f"1/{sunit}", "radius": sunit, "time": tunit,
             "time_nf": tunit, "time_nf_ball": tunit, "linger": "1"}
    for key, (name, long_name) in _GHOST_VARS.items():
        data[name] = (fnum(getattr(dg, key)), ("point",), {"long_name": long_name, "units": units[key]})
    ds = xr.Dataset({name: batch.to_xarray(t, dims, name=name, attrs=attrs, coords={k: v for k, v in coords.items()
                                                                                     if k in dims})
                     for name, (t, dims, attrs) in data.items()})
    ds["point_type"].attrs["types"] = " ".join(fc.TYPES)
    return ds


def landscape(batch, box: Box, chunk: int) -> xr.Dataset:
    """Speed ``|g|`` on a grid of the search box (1-D: 201 points; 2-D: 41 x 41), for every sweep entry."""
    system = batch.system
    lo, hi = box.lo, box.hi
    d = system.state_dim
    n = 201 if d == 1 else 41
    axes = [torch.linspace(float(lo[i]), float(hi[i]), n, dtype=torch.float64) for i in range(d)]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    M = mesh.shape[0]
    out = []
    for _, p in batch.chunks(max(1, chunk)):
        b = next(iter(p.values())).shape[0] if p else 1
        own = torch.arange(b).repeat_interleave(M)
        g = system.residual(mesh.repeat(b, 1), take(p, own)) if p else system.residual(mesh.repeat(b, 1), {})
        out.append(g.norm(dim=-1).reshape(b, *([n] * d)))
    speed = torch.cat(out)
    speed = torch.where(batch.valid.reshape(-1, *([1] * d)), speed, torch.tensor(np.nan, dtype=speed.dtype))
    names = [f"grid_{s}" for s in system.state_names]
    coords = {nm: (nm, axes[i].numpy(), {"long_name": f"grid of the state coordinate {system.state_names[i]}",
                                         "units": system.state_units}) for i, nm in enumerate(names)}
    flow = system.kind == "flow"
    units = f"{system.state_units}/{system.time_units}" if flow else f"{system.state_units} per iteration"
    arr = batch.to_xarray(speed, names, name="landscape_speed", coords=coords,
                          attrs={"long_name": "speed |g| on a grid of the search box", "units": units})
    return arr.to_dataset()


def check_upstream(fp: xr.Dataset, batch, needs: tuple[str, ...], owner: str) -> None:
    """Check that ``fp`` is a fixed_points result of ``batch``'s sweep holding the variables ``needs`` (what an
    analyzer consuming it, ``owner``, reads): one-line :class:`~dynlearn.errors.ShapeError` otherwise."""
    from dynlearn.errors import ShapeError

    missing = [v for v in needs if v not in fp]
    if missing:
        raise ShapeError(f"{owner}: the fixed_points input lacks {missing} (not a fixed_points result?)")
    for dim, n in zip(batch.dims, batch.shape):
        if fp.sizes.get(dim) != n:
            raise ShapeError(f"{owner}: the fixed_points input has dim {dim!r} of size {fp.sizes.get(dim)}, "
                             f"the sweep has {n}")
    if fp.sizes.get("state") != batch.system.state_dim:
        raise ShapeError(f"{owner}: the fixed_points input has {fp.sizes.get('state')} state coordinates, "
                         f"system {batch.system.name!r} has {batch.system.state_dim}")

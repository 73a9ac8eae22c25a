"""From a fitted batch of eigenfunctions to labeled data: separatrix points, psi on a grid, validation, optimal
perturbations, training curves (all with every sweep dim kept)."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.params import Settings
from dynlearn.sweep import Batch

from . import options as opt
from .fit import Fitted, classifier
from .locate import nearest_zero, zero_set
from .net import BatchedMLP
from .polish import polish_zero_set

Tensor = torch.Tensor

__all__ = ["build_dataset", "perturbation_dataset", "locate", "perturb"]


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def locate(net: BatchedMLP, n_points: int, n_candidates: int, lo: Tensor, hi: Tensor, extra: Tensor,
           g: torch.Generator, chunk: int = 8) -> tuple[Tensor, Tensor]:
    """Separatrix points ``(B, n_points, d)`` of every network (chunked over networks to bound memory)."""
    B, d = net.n_networks, lo.shape[0]
    cand = lo + (hi - lo) * torch.rand(B, n_candidates, d, generator=g, dtype=torch.float64)
    cand = torch.cat([cand, extra], dim=1)
    pts, counts = [], []
    for sl in _chunks(B, chunk):
        p, c = zero_set(net.select(sl), cand[sl], n_points, lo=lo, hi=hi)
        pts.append(p)
        counts.append(c)
    return torch.cat(pts), torch.cat(counts)


def _origins(fit: Fitted, n: int, lo: Tensor, hi: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """States to perturb: the two attractors (finite centroids inside the box), then sampled states well inside
    each class (``|psi| > 1/2``), alternating between the classes. Returns states ``(B, n, d)`` and classes."""
    st = fit.settled
    B = st.x0.shape[0]
    cen = st.centroid                                              # (B, 2, d)
    cen_ok = torch.isfinite(cen).all(-1) & ((cen >= lo) & (cen <= hi)).all(-1)
    with torch.no_grad():
        deep = fit.net(st.x0).abs() > 0.5
    picks = []
    for cls in (-1, 1):
        w = ((st.label == cls) & deep).to(torch.float64) + 1e-9 * (st.label == cls) + 1e-12
        picks.append(torch.multinomial(w, n, replacement=True, generator=g))
    states, classes = [], []
    for k in range(n):
        side = k % 2
        s = st.x0[torch.arange(B), picks[side][:, k]]
        if k < 2:
            s = torch.where(cen_ok[:, side].unsqueeze(-1), torch.nan_to_num(cen[:, side]), s)
        states.append(s)
        classes.append(torch.full((B,), -1 if side == 0 else 1))
    return torch.stack(states, 1), torch.stack(classes, 1)


def perturb(fit: Fitted, system, p64, horizon: float, origins: Tensor, separatrix: Tensor, margin: float):
    """Smallest perturbations of ``origins (B, m, d)`` onto psi's zero set, checked by simulation.

    Returns ``delta (B, m, d)``, ``crossed (B, m)`` (``x0 + (1 + margin) delta`` ends in the other class) and
    ``stays (B, m)`` (``x0 + (1 - margin) delta`` does not), and the simulated class of the origins.
    """
    B, m, d = origins.shape
    sep = torch.nan_to_num(separatrix, nan=1e30)
    j = torch.cdist(origins, sep).argmin(-1)
    start = separatrix.gather(1, j.unsqueeze(-1).expand(B, m, d))
    target = nearest_zero(fit.net, origins, torch.nan_to_num(start))
    delta = torch.where(torch.isfinite(start).all(-1, keepdim=True), target - origins, torch.nan)
    label = classifier(system, fit.settled, p64, horizon)
    with torch.no_grad():
        both = torch.cat([origins, origins + (1 + margin) * torch.nan_to_num(delta),
                          origins + (1 - margin) * torch.nan_to_num(delta)], dim=1)
        lab = label(both)
    c0, c_after, c_before = lab[:, :m], lab[:, m:2 * m], lab[:, 2 * m:]
    finite = torch.isfinite(delta).all(-1)
    return delta, finite & (c_after != c0), finite & (c_before == c0), c0


def build_dataset(s: Settings, batch: Batch, fit: Fitted, g: torch.Generator) -> xr.Dataset:
    """The result of the analysis: every number a labeled variable with the sweep dims of ``batch``."""
    system = batch.system
    B, d = batch.size, system.state_dim
    names = list(system.state_names)
    lo, hi = (torch.as_tensor(v, dtype=torch.float64) for v in system.domain())
    p64 = system.expand_params(batch.params, 1)
    active = fit.active
    act = lambda t: torch.where(active.view(B, *([1] * (t.dim() - 1))), t, torch.nan)  # noqa: E731

    sep_psi, n_roots = locate(fit.net, s.n_points, s.n_candidates, lo, hi, fit.settled.x0, g)
    sep_psi = act(sep_psi)
    origins, _ = _origins(fit, s.n_perturb, lo, hi, g)
    delta, crossed, stays, c0 = perturb(fit, system, p64, opt.horizon(s, system), origins, sep_psi, s.perturb_margin)
    delta = act(delta)

    outcome = torch.where((fit.settled.n_attractors < 2) | ~active, oc.SINGLE_ATTRACTOR, oc.OK)
    outcome = torch.where(batch.valid, outcome, oc.MASKED)
    outcome = torch.where(~torch.isfinite(fit.curves.loss[:, -1]) & active, oc.NAN, outcome).to(torch.int8)

    cs, cp = act(fit.crossing_sim), act(fit.crossing_psi)
    both = torch.isfinite(cs).all(-1) & torch.isfinite(cp).all(-1)
    err = torch.where(both, (cp - cs).norm(dim=-1), torch.nan)
    ssr = torch.where(both, ((cp - cs) ** 2).sum(-1), 0.0).sum(1)
    mean = torch.where(both.unsqueeze(-1), cs, 0.0).sum(1) / both.sum(1).clamp_min(1).unsqueeze(-1)
    sst = torch.where(both, ((cs - mean.unsqueeze(1)) ** 2).sum(-1), 0.0).sum(1)
    r2 = torch.where(both.sum(1) >= 2, 1 - ssr / sst.clamp_min(1e-300), torch.nan)
    r2 = torch.where(active, r2, torch.nan)

    X = batch.to_xarray
    state_c = {"state": ("state", np.array(names, dtype=object))}
    L = system.state_units
    data = {
        "separatrix_psi": X(sep_psi, ("point", "state"), coords=state_c,
                            attrs={"long_name": "points on psi's zero set (psi's own separatrix estimate, before "
                                                "polishing)", "units": L}),
        "n_roots": X(n_roots, (), attrs={"long_name": "zero-set points found before subsampling", "units": "1"}),
        "eigenvalue": X(act(fit.eigenvalue), (), attrs={"long_name": "Koopman eigenvalue lambda of psi",
                                                       "units": f"1/{system.time_units}" if system.kind == "flow" else "1"}),
        "candidate_error": X(fit.cand_error, ("candidate",), coords={"candidate": ("candidate", fit.candidates.numpy())},
                             attrs={"long_name": "90% quantile of the crossing distance, per eigenvalue candidate "
                                                 "(NaN candidate: learned eigenvalue)", "units": L}),
        "r2": X(r2, (), attrs={"long_name": "R^2 of psi's crossings against crossings found by simulation",
                               "units": "1"}),
        "crossing": X(cs, ("curve", "state"), coords=state_c,
                      attrs={"long_name": "separatrix crossing by simulation (bisection of the basin label along a "
                                          "random curve)", "units": L}),
        "crossing_psi": X(cp, ("curve", "state"), coords=state_c,
                          attrs={"long_name": "first sign change of psi along the same curve", "units": L}),
        "crossing_error": X(err, ("curve",), attrs={"long_name": "distance between psi's and the simulated crossing",
                                                    "units": L}),
        "crossing_outcome": X(torch.where(torch.isfinite(err), oc.OK, oc.NAN).to(torch.int8), ("curve",),
                              attrs={**oc.flag_attrs("outcome of the validation crossing"),
                                     "comment": "nan: crossing_error is NaN (psi's sign or the simulated class does "
                                                "not change along the curve, or the sweep element is inactive)"}),
        "attractor": X(fit.settled.centroid, ("side", "state"),
                       coords={**state_c, "side": ("side", np.array(["minus", "plus"], dtype=object))},
                       attrs={"long_name": "attractor of the class psi -> -1 / +1: mean final state, Newton-polished "
                                          "onto a fixed point where one is within the clustering distance (NaN: "
                                          "diverged)", "units": L}),
        "n_attractors": X(fit.settled.n_attractors, (), attrs={"long_name": "attractors found by simulation "
                                                               "(divergence counts as one)", "units": "1"}),
        "perturb_origin": X(origins, ("target", "state"), coords=state_c,
                            attrs={"long_name": "state to push across the separatrix", "units": L}),
        "perturbation": X(delta, ("target", "state"), coords=state_c,
                          attrs={"long_name": "smallest perturbation onto psi's zero set", "units": L}),
        "perturbation_norm": X(delta.norm(dim=-1), ("target",),
                               attrs={"long_name": "Euclidean norm of the smallest perturbation", "units": L}),
        "perturbation_outcome": X(torch.where(torch.isfinite(delta).all(-1), oc.OK, oc.NAN).to(torch.int8), ("target",),
                                  attrs={**oc.flag_attrs("outcome of the smallest perturbation"),
                                         "comment": "nan: no perturbation (psi has no zero-set point, or the sweep "
                                                    "element is inactive)"}),
        "crossed": X(crossed & active.unsqueeze(1), ("target",),
                     attrs={"long_name": f"origin + (1 + {s.perturb_margin:g}) perturbation ends in the other class "
                                         "(simulated)"}),
        "stays": X(stays & active.unsqueeze(1), ("target",),
                   attrs={"long_name": f"origin + (1 - {s.perturb_margin:g}) perturbation stays in its class "
                                       "(simulated)"}),
        "origin_class": X(c0, ("target",), attrs={"long_name": "simulated class of the origin (-1 / +1)", "units": "1"}),
        "outcome": X(outcome, (), attrs={**oc.flag_attrs("outcome of the fit"),
                                         "comment": "single_attractor: fewer than two classes found by simulation; "
                                                    "masked: parameters not finite, not analysed; nan: the training "
                                                    "loss turned NaN"}),
    }
    steps = np.asarray(fit.curves.step, dtype=np.int64)
    for key, long in (("loss", "training loss"), ("residual", "normalised eigen-equation residual"),
                      ("anchor", "anchor loss (psi = +-1 on the attractors)"), ("eigenvalue", "eigenvalue lambda")):
        data[f"train_{key}"] = X(getattr(fit.curves, key), ("step",), coords={"step": ("step", steps)},
                                 attrs={"long_name": long, "units": "1"})
    data.update(_polished(s, fit, system, p64, sep_psi, lo, hi, X, state_c, L))
    grid = _grid(s, fit.net, lo, hi, names, d)
    if grid is not None:
        vals, coords, gdims = grid
        data["psi"] = X(act(vals), gdims, coords=coords, attrs={"long_name": "Koopman eigenfunction psi", "units": "1"})
    ds = xr.Dataset(data)
    ds.attrs["separatrix_method"] = "zero set of a neural Koopman eigenfunction (Dabholkar & Barak)"
    return ds


def _polished(s: Settings, fit: Fitted, system, p64, sep_psi: Tensor, lo: Tensor, hi: Tensor, X, state_c, L: str) -> dict:
    """``separatrix``: psi's zero set polished by simulation (:mod:`.polish`), with psi's own error along
    its normal, the bracket half-width and a per-point outcome; without polishing, psi's points."""
    if not s.polish:
        return {"separatrix": X(sep_psi, ("point", "state"), coords=state_c,
                                attrs={"long_name": "points on psi's zero set (not polished)", "units": L})}
    radius = float(s.polish_radius) * float((hi - lo).abs().max())
    pol = polish_zero_set(fit.net, classifier(system, fit.settled, p64, opt.horizon(s, system)), sep_psi, radius)
    return {
        "separatrix": X(pol.points, ("point", "state"), coords=state_c,
                        attrs={"long_name": "separatrix points: psi's zero set moved onto the simulated class change "
                                            "along psi's normal (NaN: not bracketed, see polish_outcome)", "units": L}),
        "polish_shift": X(pol.shift, ("point",),
                          attrs={"long_name": "distance from psi's zero-set point to its polished point (psi's own "
                                              "error along its normal, by simulation)", "units": L}),
        "polish_tolerance": X(pol.tolerance, ("point",),
                              attrs={"long_name": "half-width of the simulated bracket of the polished point",
                                     "units": L}),
        "polish_outcome": X(pol.outcome, ("point",),
                            attrs={**oc.flag_attrs("outcome of polishing the zero-set point by simulation"),
                                   "comment": "nan: not polished (no zero-set point, or the simulated class is the "
                                              "same at both ends of the segments along psi's normal)"}),
    }


def _grid(s: Settings, net: BatchedMLP, lo: Tensor, hi: Tensor, names: list[str], d: int):
    n = opt.grid_size(s, d)
    if not n:
        return None
    axes = [torch.linspace(float(lo[i]), float(hi[i]), n, dtype=torch.float64) for i in range(d)]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(1, -1, d)
    B = net.n_networks
    out = []
    with torch.no_grad():
        for sl in _chunks(B, 16):
            out.append(net.select(sl)(mesh.expand(sl.stop - sl.start, -1, -1)))
    vals = torch.cat(out).reshape(B, *([n] * d))
    gdims = tuple(f"grid_{nm}" for nm in names)
    coords = {gd: (gd, ax.numpy(), {"long_name": f"grid coordinate {nm}"}) for gd, ax, nm in zip(gdims, axes, names)}
    return vals, coords, gdims


def perturbation_dataset(s: Settings, states: Tensor, p64, system, fit: Fitted, separatrix: Tensor,
                         batch: Batch) -> xr.Dataset:
    """Optimal perturbations of user-given states ``(m, d)`` for every sweep element."""
    B = batch.size
    origins = states.to(torch.float64).unsqueeze(0).expand(B, -1, -1).contiguous()
    delta, crossed, stays, c0 = perturb(fit, system, p64, opt.horizon(s, system), origins, separatrix, s.perturb_margin)
    X = batch.to_xarray
    state_c = {"state": ("state", np.array(list(system.state_names), dtype=object))}
    L = system.state_units
    return xr.Dataset({
        "perturbation": X(delta, ("target", "state"), coords=state_c,
                          attrs={"long_name": "smallest perturbation onto psi's zero set", "units": L}),
        "perturbation_norm": X(delta.norm(dim=-1), ("target",), attrs={"long_name": "norm of the perturbation",
                                                                       "units": L}),
        "crossed": X(crossed, ("target",), attrs={"long_name": "perturbed state ends in the other class (simulated)"}),
        "stays": X(stays, ("target",), attrs={"long_name": "slightly smaller perturbation does not cross (simulated)"}),
        "origin_class": X(c0, ("target",), attrs={"long_name": "simulated class of the state (-1 / +1)", "units": "1"}),
    })

"""Labeled output of the ghost-network analyzer (private): every sweep dim plus ``trajectory``, ``visit``,
``ghost``, ``ghost_from``/``ghost_to``, ``state``, ``sample``."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.params import Settings
from dynlearn.sweep import Batch

from .table import GhostTable
from .track import ghost_tracks, tracked_dim
from .visits import Visits, padded, transitions

Tensor = torch.Tensor


def _per_ghost(v: Visits, element: Tensor, B: int, G: int, M: int) -> dict[str, Tensor]:
    """Per-ghost visit statistics ``(B, G)``."""
    key = element[v.trajectory] * G + v.ghost
    n = B * G

    def total(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        s = torch.zeros(n, dtype=torch.float64).index_add_(0, key[mask], values[mask].to(torch.float64))
        c = torch.zeros(n, dtype=torch.float64).index_add_(0, key[mask], torch.ones_like(values[mask],
                                                                                        dtype=torch.float64))
        return s.reshape(B, G), c.reshape(B, G)

    def mean(values: Tensor, mask: Tensor) -> Tensor:
        s, c = total(values, mask)
        return torch.where(c > 0, s / c.clamp(min=1), torch.nan)

    complete = v.complete
    dwell = v.dwell
    m1 = mean(dwell, complete)
    m2 = mean(dwell * dwell, complete)
    visited = torch.zeros(B * M * G, dtype=torch.bool)
    visited[v.trajectory * G + v.ghost] = True
    return {
        "visit_count": torch.bincount(key, minlength=n).reshape(B, G),
        "visit_fraction": visited.reshape(B, M, G).to(torch.float64).mean(1),
        "entry_time_mean": mean(v.entry, v.entered),
        "exit_time_mean": mean(v.exit, v.left),
        "dwell_time_mean": m1,
        "dwell_time_std": (m2 - m1 * m1).clamp(min=0).sqrt(),
    }


def to_dataset(batch: Batch, table: GhostTable, v: Visits, x0: Tensor, outcome: Tensor, paths: Tensor,
               keep: Tensor, dt: Tensor, horizon: Tensor, radius: Tensor, st: Settings, n_user: int) -> xr.Dataset:
    """The analyzer's Dataset (see :class:`~dynlearn_builtins.analyzers.ghosts.GhostNetwork`)."""
    system = batch.system
    B, G, d = table.position.shape
    M = x0.shape[1]
    N = B * M
    element = torch.arange(N) // M
    ghost, entry, exit_, entered, left, count = padded(v, N, st.max_visits)
    V = ghost.shape[1]
    trans, transit = transitions(v, element, B, G)
    stats = _per_ghost(v, element, B, G, M)
    dim = tracked_dim(st.track_dim, batch)
    tracks = ghost_tracks(batch, table.position, table.present, dim, st.track_gate * table.box_scale)
    flow = system.kind == "flow"
    tunit = system.time_units if flow else "iteration"
    sunit = system.state_units
    valid = batch.valid
    pres = table.present
    nanf = torch.tensor(np.nan, dtype=torch.float64)
    g = lambda t: torch.where(pres, t, nanf)  # noqa: E731
    source = np.array(["user"] * n_user + ["sampled"] * (M - n_user), dtype=object)
    coords = {
        "trajectory": ("trajectory", np.arange(M), {"long_name": "trajectory (user initial states first)"}),
        "trajectory_source": ("trajectory", source, {"long_name": "where the initial state comes from"}),
        "visit": ("visit", np.arange(V), {"long_name": "visit rank along the trajectory (padded)"}),
        "ghost": ("ghost", np.arange(G), {"long_name": "ghost slot (padded; see ghost_present)"}),
        "ghost_from": ("ghost_from", np.arange(G), {"long_name": "ghost a transition leaves"}),
        "ghost_to": ("ghost_to", np.arange(G), {"long_name": "ghost a transition enters"}),
        "state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"}),
        "sample": ("sample", np.arange(keep.numel()), {"long_name": "recorded sample of the trajectory"}),
    }
    mv = lambda t: t.reshape(B, M, *t.shape[1:])  # noqa: E731
    data = {
        "outcome": (torch.where(valid, oc.OK, oc.MASKED).to(torch.int8), (),
                    oc.flag_attrs("outcome of the entry (masked: parameters not finite, not analysed)")),
        "n_ghost": (torch.where(valid, pres.sum(1), -1), (),
                    {"long_name": "number of ghosts (-1 where outcome is masked)", "units": "1"}),
        "horizon": (torch.where(valid, horizon, nanf), (),
                    {"long_name": "simulated time of the trajectories", "units": tunit}),
        "initial_state": (x0, ("trajectory", "state"), {"long_name": "initial state", "units": sunit}),
        "trajectory_outcome": (outcome.to(torch.int8), ("trajectory",), oc.flag_attrs("outcome of the trajectory")),
        "n_visits": (mv(count), ("trajectory",), {"long_name": "number of ghost visits of the trajectory",
                                                  "units": "1"}),
        "visit_ghost": (mv(ghost), ("trajectory", "visit"),
                        {"long_name": "ghost visited (slot of the ghost dim; -1: padding)", "units": "1"}),
        "entry_time": (mv(entry), ("trajectory", "visit"),
                       {"long_name": "time the trajectory enters the ghost's ball", "units": tunit}),
        "exit_time": (mv(exit_), ("trajectory", "visit"),
                      {"long_name": "time the trajectory leaves the ghost's ball", "units": tunit}),
        "dwell_time": (mv(exit_ - entry), ("trajectory", "visit"),
                       {"long_name": "time spent in the ghost's ball (exit - entry)", "units": tunit}),
        "visit_entered": (mv(entered), ("trajectory", "visit"),
                          {"long_name": "the entry was observed (the trajectory did not start inside)"}),
        "visit_left": (mv(left), ("trajectory", "visit"),
                       {"long_name": "the exit was observed (left before the horizon, did not diverge)"}),
        "ghost_present": (pres, ("ghost",), {"long_name": "the slot holds a ghost"}),
        "ghost_point": (table.point, ("ghost",), {"long_name": "slot of the ghost in the fixed_points result's "
                                                  "point dim (-1: none)", "units": "1"}),
        "ghost_position": (torch.where(pres.unsqueeze(-1), table.position, nanf), ("ghost", "state"),
                           {"long_name": "state at the ghost", "units": sunit}),
        "ghost_speed": (g(table.speed), ("ghost",), {"long_name": "speed |g| at the ghost",
                                                     "units": f"{sunit}/{tunit}"}),
        "passage_time_nf": (g(table.time_nf), ("ghost",),
                            {"long_name": "normal-form passage time pi / sqrt(r a) of the ghost", "units": tunit}),
        "visit_radius": (g(radius), ("ghost",), {"long_name": "radius of the ghost's ball", "units": sunit}),
        "ghost_dimension": (table.dimension.to(torch.int16), ("ghost",),
                            {"long_name": "ghost dimension: near-neutral Jacobian eigenvalues (-1: no ghost)",
                             "units": "1"}),
        "ghost_track": (torch.as_tensor(tracks), ("ghost",),
                        {"long_name": f"ghost identity along {dim} (dynlearn.matching.track; -1: no ghost)"
                         if dim else "ghost identity (the slot: no sweep dim to track along)", "units": "1"}),
        "transition_count": (trans, ("ghost_from", "ghost_to"),
                             {"long_name": "transitions between consecutive visits (from -> to)", "units": "1"}),
        "transit_time_mean": (torch.where(trans > 0, transit / trans.clamp(min=1), nanf), ("ghost_from", "ghost_to"),
                              {"long_name": "mean time from leaving ghost_from to entering ghost_to",
                               "units": tunit}),
        "path": (paths, ("trajectory", "sample", "state"),
                 {"long_name": "recorded trajectory states (NaN after a divergence)", "units": sunit}),
        "path_time": (keep.unsqueeze(0) * dt.unsqueeze(1), ("sample",),
                      {"long_name": "time of the recorded samples", "units": tunit}),
    }
    units = {"visit_count": "1", "visit_fraction": "1", "entry_time_mean": tunit, "exit_time_mean": tunit,
             "dwell_time_mean": tunit, "dwell_time_std": tunit}
    names = {"visit_count": "number of visits of the ghost (all trajectories)",
             "visit_fraction": "fraction of trajectories that visit the ghost",
             "entry_time_mean": "mean entry time (observed entries)",
             "exit_time_mean": "mean exit time (observed exits)",
             "dwell_time_mean": "mean time in the ghost's ball (visits with observed entry and exit)",
             "dwell_time_std": "standard deviation of that time"}
    for k, t in stats.items():
        data[k] = (t if k == "visit_count" else g(t), ("ghost",), {"long_name": names[k], "units": units[k]})
    ds = xr.Dataset({name: batch.to_xarray(t, dims, name=name, attrs=attrs,
                                           coords={k: c for k, c in coords.items() if c[0] in dims})
                     for name, (t, dims, attrs) in data.items()})
    ds.attrs["tracked_dim"] = dim or ""
    return ds

r"""``dynlearn reproduce ghost-network``: a chain of two saddle-node ghosts, visited in order, as a ghost network.

The system is :class:`~dynlearn_builtins.systems.ghost_chain.GhostChain`,
:math:`\dot x = \rho(x) + \sin^2(\pi x)/\pi^2,\ \dot y = -k y`, with ghosts exactly at :math:`(0, 0)` (speed
:math:`r_1`) and :math:`(1, 0)` (speed :math:`r_2`), swept over :math:`r_1` (at :math:`r_1 < 0` the first
bottleneck is a saddle-node pair of fixed points, not a ghost). The ``fixed_points`` analyzer finds the ghosts
(nothing is told to it), the ``ghost_network`` analyzer follows trajectories from :math:`x = -1/2` (and sampled
states) through them. Claims:

- the ghosts sit at :math:`x = 0` and :math:`x = 1` and have dimension 1 (one neutral Jacobian eigenvalue);
- every trajectory from :math:`x = -1/2` visits ghost 0, then ghost 1, and nothing else;
- its entry and exit times equal :math:`\int dx/\dot x` (quadrature) to :math:`10^{-6}`, its dwell times agree
  with the normal form's time to cross the ball, :math:`2\arctan(\rho\sqrt{a/r})/\sqrt{r a}` (within 5%:
  :math:`\dot x` is quadratic only near the ghost), and the normal-form passage times are
  :math:`\pi/\sqrt{r_i a_i}` with the exact curvatures :math:`a_{1,2} = 1 \mp \pi^2 (r_1 - r_2)/4`;
- the ghost network of every sweep element has exactly one edge, ghost 0 → ghost 1;
- ghost identity is kept across :math:`r_1` (``dynlearn.matching.track``): the ghost at :math:`x = 1` is one
  track over the whole sweep, although its slot changes where the first ghost disappears.

Groups: ``/fixed_points``, ``/ghost_network`` (the analyzers' outputs), ``/ghost_times`` (per :math:`r_1` and
ghost: measured entry, exit and dwell times of the trajectory from :math:`(-1/2, 0)` beside their exact values),
``/claims``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dynlearn.reproduce import Claim, Reproduction
from dynlearn.store import write_group
from dynlearn.sweep import grid

from ..analyzers.fixed_points import FixedPoints
from ..analyzers.ghosts import GhostNetwork as GhostNetworkAnalyzer
from ..analyzers.ghosts import ghost_graph
from ..systems.ghost_chain import GhostChain, crossing_time, ghost_positions, passage_times

__all__ = ["GhostNetwork", "ghost_times", "SETTINGS"]

#: the trajectories every claim follows start here (then ``n_trajectories`` sampled ones)
STARTS = [[-0.5, 0.0], [-0.5, 0.3], [-0.5, -0.3]]
SETTINGS = {
    "full": {"r1": [-0.01, -0.005, 0.0025, 0.005, 0.0075, 0.01], "r2": 0.02, "n_starts": 32, "n_trajectories": 32,
             "steps": 4000},
    "quick": {"r1": [-0.01, 0.005, 0.01], "r2": 0.02, "n_starts": 16, "n_trajectories": 5, "steps": 2000},
}
TIME_TOL = 1e-6
NF_TOL = 0.05


def ghost_times(fp: xr.Dataset, gn: xr.Dataset, r2: float) -> xr.Dataset:
    """Per ``r1`` with two ghosts and per ghost: entry/exit/dwell times of the trajectory from ``(-1/2, 0)``
    beside the exact ones (quadrature of ``dx / x'``) and the normal form's (fixed_points)."""
    r1s = gn["r1"].values
    two = gn["n_ghost"].values == 2
    traj = gn.isel(trajectory=0)
    keys = ("entry_time", "entry_time_exact", "exit_time", "exit_time_exact", "dwell_time", "dwell_time_nf",
            "passage_time_nf", "passage_time_nf_exact")
    rec = {k: np.full((len(r1s), 2), np.nan) for k in keys}
    for i in np.flatnonzero(two):
        r1 = float(r1s[i])
        rho = gn["visit_radius"].values[i, :2]
        centres = ghost_positions()[:, 0]
        rec["entry_time"][i] = traj["entry_time"].values[i, :2]
        rec["exit_time"][i] = traj["exit_time"].values[i, :2]
        rec["dwell_time"][i] = traj["dwell_time"].values[i, :2]
        rec["entry_time_exact"][i] = [crossing_time(-0.5, c - r, r1, r2) for c, r in zip(centres, rho)]
        rec["exit_time_exact"][i] = [crossing_time(-0.5, c + r, r1, r2) for c, r in zip(centres, rho)]
        rec["dwell_time_nf"][i] = fp["passage_time_nf_ball"].values[i, gn["ghost_point"].values[i, :2]]
        rec["passage_time_nf"][i] = gn["passage_time_nf"].values[i, :2]
        rec["passage_time_nf_exact"][i] = passage_times(r1, r2)
    names = {
        "entry_time": "entry time into the ghost's ball (trajectory from (-1/2, 0))",
        "entry_time_exact": "exact entry time: int dx / x' from -1/2 to the ball",
        "exit_time": "exit time from the ghost's ball", "exit_time_exact": "exact exit time",
        "dwell_time": "time in the ball (exit - entry)",
        "dwell_time_nf": "normal-form time to cross the ball 2 atan(rho sqrt(a/r)) / sqrt(r a)",
        "passage_time_nf": "normal-form passage time pi / sqrt(r a) (fixed_points)",
        "passage_time_nf_exact": "pi / sqrt(r a) with the exact curvature a = 1 -+ pi^2 (r1 - r2) / 4",
    }
    return xr.Dataset({k: (("r1", "ghost"), v, {"long_name": names[k], "units": "time"}) for k, v in rec.items()},
                      coords={"r1": ("r1", r1s, {"long_name": "speed at the first ghost", "units": "1/time"}),
                              "ghost": ("ghost", [0, 1], {"long_name": "ghost (0: x = 0, 1: x = 1)"})},
                      attrs={"r2": r2})


class GhostNetwork(Reproduction):
    """A chain of two saddle-node ghosts: visit sequence, exact entry/exit times, one-edge ghost network,
    dimension 1, identity across r1 (see the module docstring)."""

    name = "ghost-network"
    description = "ghost chain: trajectories visit ghost 0 then ghost 1 (exact times), one-edge ghost network, " \
                  "ghost dimension 1, identity across r1"
    paper = "dynlearn issue 14 (PyGhostID's ghost sequences, ghost networks and ghost dimension)"

    @property
    def settings(self) -> dict[str, Any]:
        return SETTINGS["quick" if self.quick else "full"]

    def analyzers(self) -> tuple[FixedPoints, GhostNetworkAnalyzer]:
        s = self.settings
        return (FixedPoints(n_starts=s["n_starts"], landscape=False),
                GhostNetworkAnalyzer(initial_states=STARTS, n_trajectories=s["n_trajectories"], steps=s["steps"]))

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        """Recomputes ``out`` if it holds this reproduction with the same settings; another store there is an
        error unless ``overwrite``."""
        fpa, gna = self.analyzers()
        s = self.settings
        out = self.create_store(out, {"settings": s, "fixed_points": fpa.to_config(),
                                      "ghost_network": gna.to_config()}, overwrite=overwrite)
        system = GhostChain(r2=s["r2"])
        sweep = grid(r1=s["r1"])
        fp = fpa.run(system, sweep, show_progress=show_progress)
        gn = gna.run(system, sweep, upstream={"fixed_points": fp}, show_progress=show_progress)
        times = ghost_times(fp, gn, s["r2"])
        write_group(out, "fixed_points", fp, consolidated=False)
        write_group(out, "ghost_network", gn, consolidated=False)
        write_group(out, "ghost_times", times)
        return self.claims(gn, times)

    @staticmethod
    def claims(gn: xr.Dataset, times: xr.Dataset) -> list[Claim]:
        two = gn["n_ghost"].values == 2
        r1 = gn["r1"].values
        g2 = gn.isel(r1=np.flatnonzero(two))
        pos_err = float(np.abs(g2["ghost_position"].values[:, :2] - ghost_positions()).max())
        users = g2.isel(trajectory=slice(0, len(STARTS)))
        seqs = users["visit_ghost"].values  # (r1, trajectory, visit)
        in_order = (seqs[..., 0] == 0) & (seqs[..., 1] == 1) & (users["n_visits"].values == 2)
        edges = [sorted(ghost_graph(gn, r1=v).edges) for v in r1[two]]
        one_edge = float(np.mean([e == [(0, 1)] for e in edges]))
        dims = gn["ghost_dimension"].values[gn["ghost_present"].values]
        rel = lambda a, b: float(np.nanmax(np.abs(a / b - 1)))  # noqa: E731
        t_err = max(rel(times["entry_time"].values, times["entry_time_exact"].values),
                    rel(times["exit_time"].values, times["exit_time_exact"].values))
        nf_err = rel(times["dwell_time"].values, times["dwell_time_nf"].values)
        pnf_err = rel(times["passage_time_nf"].values, times["passage_time_nf_exact"].values)
        # identity: the ghost at x = 1 is one track over the whole sweep, the one at x = 0 one over r1 > 0
        x = gn["ghost_position"].sel(state="x").values
        tr = gn["ghost_track"].values
        pres = gn["ghost_present"].values
        ids_one = {int(tr[i, j]) for i, j in zip(*np.nonzero(pres & (np.abs(x - 1) < 0.1)))}
        ids_zero = {int(tr[i, j]) for i, j in zip(*np.nonzero(pres & (np.abs(x) < 0.1)))}
        n_below = int((gn["n_ghost"].values[r1 < 0] == 1).sum())
        return [
            Claim("ghost_positions", "the ghosts found by fixed_points sit at (0, 0) and (1, 0): max |error|", 0.0,
                  pos_err, pos_err <= 1e-8, "<= 1e-8", "state units"),
            Claim("ghost_dimension_one", "every ghost has dimension 1 (one near-neutral Jacobian eigenvalue): "
                  "fraction of ghosts", 1.0, float(np.mean(dims == 1)), bool(dims.size and (dims == 1).all()),
                  "== 1"),
            Claim("sequence_ghost0_then_ghost1", "every trajectory from x = -1/2 visits ghost 0 (x = 0), then ghost "
                  "1 (x = 1), and nothing else: fraction of trajectories", 1.0, float(in_order.mean()),
                  bool(in_order.all()), "== 1"),
            Claim("entry_exit_times_exact", "entry and exit times equal int dx / x' (quadrature): max relative "
                  "error", 0.0, t_err, t_err <= TIME_TOL, f"<= {TIME_TOL:g}"),
            Claim("dwell_vs_normal_form", "time in each ghost's ball vs the normal form 2 atan(rho sqrt(a/r)) / "
                  "sqrt(r a): max relative difference", 0.0, nf_err, nf_err <= NF_TOL, f"<= {NF_TOL:g}"),
            Claim("passage_time_normal_form", "normal-form passage times pi / sqrt(r a) with a = 1 -+ pi^2 (r1 - "
                  "r2) / 4: max relative error", 0.0, pnf_err, pnf_err <= 1e-9, "<= 1e-9"),
            Claim("graph_one_edge", "the ghost network has exactly one edge, ghost 0 -> ghost 1: fraction of sweep "
                  "elements with two ghosts", 1.0, one_edge, one_edge == 1.0, "== 1"),
            Claim("identity_across_r1", "ghost identity across r1: tracks of the ghost at x = 1 (whole sweep) and of "
                  "the ghost at x = 0 (r1 > 0)", 2.0, float(len(ids_one) + len(ids_zero)),
                  len(ids_one) == 1 and len(ids_zero) == 1 and ids_one != ids_zero, "one track each"),
            Claim("no_ghost_below_zero", "for r1 < 0 the first bottleneck is a pair of fixed points: one ghost "
                  "left (fraction of r1 < 0)", 1.0, n_below / max(1, int((r1 < 0).sum())),
                  n_below == int((r1 < 0).sum()), "== 1"),
        ]

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        import holoviews as hv

        if "ghost_times" not in tree.children:
            return {}
        t = tree["ghost_times"].to_dataset()
        r1 = t["r1"].values
        out = None
        for g, color in ((0, "#1a9850"), (1, "#4f8fd6")):
            el = (hv.Scatter((r1, t["dwell_time"].sel(ghost=g).values), "r1", "time", label=f"ghost {g} measured")
                  .opts(color=color, size=8)
                  * hv.Curve((r1, t["dwell_time_nf"].sel(ghost=g).values), "r1", "time",
                             label=f"ghost {g} normal form").opts(color=color, line_dash="dashed"))
            out = el if out is None else out * el
        return {"dwell times": out.opts(width=600, title="time in the ghost's ball vs r1 (r2 = "
                                        f"{t.attrs.get('r2', math.nan):g})", legend_position="top_left")}

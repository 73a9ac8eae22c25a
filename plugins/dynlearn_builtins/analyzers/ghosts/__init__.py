r"""Ghost networks: which ghosts trajectories visit, in which order, for how long; ghost dimension and identity.

The analyzer consumes the :class:`~dynlearn_builtins.analyzers.fixed_points.FixedPoints` output (its ghosts:
slow points that pass the passage test) and, for every sweep element,

1. simulates trajectories from user initial states (option ``initial_states``, plus ``initial_noise``) and
   ``n_trajectories`` states drawn uniformly in the fixed points' search box — every trajectory of every sweep
   element in one batch, stepped by :func:`dynlearn.stepper.iterate` (flows: RK4 in rescaled time, so each sweep
   element has its own ``horizon``; maps: iterations);
2. finds the *visits* (:mod:`~dynlearn_builtins.analyzers.ghosts.visits`): the runs of states inside a ghost's
   ball :math:`|x - x_g| \le \rho_g` (:mod:`dynlearn.periodic` distances; :math:`\rho_g` is the fixed-point
   analyzer's passage radius, or the option ``radius``), each with its entry and exit time, vectorised over
   times and trajectories;
3. counts the *transitions* between consecutive visits of a trajectory as a ``(ghost_from, ghost_to)`` matrix
   with the mean transit time (:func:`ghost_graph` turns it into a networkx ``DiGraph``: the ghost network);
4. gives every ghost its *dimension* (near-neutral Jacobian eigenvalues; see
   :mod:`~dynlearn_builtins.analyzers.ghosts.table`) and entry/exit/dwell statistics;
5. tracks ghost identity along an ordered sweep dim (``track_dim``: ``epoch`` or a parameter) with the one
   matcher :func:`dynlearn.matching.track` (``ghost_track``: the same number for the same ghost across the
   sweep).

For the ghost chain :math:`\dot x = \rho(x) + \sin^2(\pi x)/\pi^2,\ \dot y = -y` (ghosts at :math:`x = 0` with
speed :math:`r_1` and :math:`x = 1` with :math:`r_2`), a trajectory from :math:`x = -1/2` visits ghost 0 then
ghost 1; the graph has the single edge :math:`0 \to 1`; both ghosts have dimension 1.

Examples
--------
>>> import dynlearn
>>> grid = dynlearn.grid(r1=[0.01, 0.005])                   # two sweep elements, one batch
>>> fp = dynlearn.make_analyzer({"name": "fixed_points", "n_starts": 16}).run("ghost_chain", grid)
>>> gn = GhostNetwork(initial_states=[[-0.5, 0.0]], n_trajectories=0)
>>> out = gn.run("ghost_chain", grid, upstream={"fixed_points": fp})
>>> one = out.sel(r1=0.01, trajectory=0)
>>> one.visit_ghost.values.tolist(), out.ghost_dimension.sel(r1=0.01).values.tolist()
([0, 1], [1, 1])
>>> [round(float(t), 2) for t in one.dwell_time.values]        # inside the balls of radius 0.25
[24.19, 15.44]
>>> list(ghost_graph(out, r1=0.01).edges(data="count"))
[(0, 1, 1)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import xarray as xr

import dynlearn
from dynlearn import outcome as oc
from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.periodic import Circle
from dynlearn.progress import Meter
from dynlearn.stepper import iterate, rk4_step
from dynlearn.sweep import Batch

from .._shared.states import state_options, user_states
from .graph import ghost_graph
from .table import ghost_table
from .visits import Visits, detect

__all__ = ["GhostNetwork", "ghost_graph"]

_POSITIVE = {"low": 0, "low_inclusive": False}
#: numbers of the recorded states and ball distances of one batch of sweep elements (float64: 320 MB)
CHUNK_NUMBERS = 4e7


class GhostNetwork(dynlearn.Analyzer):
    """Ghost visits along trajectories, the ghost-to-ghost transition network, ghost dimension and identity.

    See the module docstring. Options are declared in :attr:`options` and validated once into
    :attr:`settings`.

    Parameters
    ----------
    initial_states
        User initial states: ``(sample, state)`` for every sweep element, or a DataArray with sweep dims (see
        :func:`dynlearn_builtins.analyzers._shared.states.user_states`); ``None``: none.
    initial_noise
        Gaussian noise added to the user states (absolute, the states' units).
    n_trajectories
        States drawn uniformly in the fixed points' search box, after the user states.
    horizon
        Simulated time of flows (``None``: three times the sum of the element's ghosts' normal-form passage
        times ``pi / sqrt(r a)``; without ghosts ten box widths over the typical speed).
    steps
        RK4 steps over the horizon (flows) or iterations (maps).
    radius
        Radius of every ghost's ball (``None``: the fixed points' passage radius of each ghost).
    dimension_tol
        Tolerance of a near-neutral eigenvalue (flows: relative to the spectrum's scale; maps: on ``|lambda|-1``).
    chunk_size
        Sweep elements per batch (``None``: sized so that the recorded states and ball distances of a batch hold
        about ``CHUNK_NUMBERS`` numbers).
    max_visits
        Size cap of the ``visit`` dim (the counts and the transitions use every visit).
    record_points
        Samples of each trajectory kept for the views (``path``).
    track_dim
        Ordered sweep dim along which ghost identity is tracked (``None``: ``epoch`` if present, else the first
        sweep dim; no tracking without a sweep dim).
    track_gate
        Largest distance between a ghost and its continuation at the next step, in box widths.
    max_norm
        Trajectories leaving ``|x|_inf <= max_norm`` are ``diverged``.
    seed
        Seed of the sampled states and of the noise.
    threads
        Torch intra-op threads (every analyzer's option; ``None``: chosen from the problem size).
    """

    name = "ghost_network"
    description = "ghost visits along trajectories (sequence, entry/exit times), ghost-to-ghost transition graph, " \
                  "ghost dimension, ghost identity across a sweep"
    kinds = ("flow", "map")
    requires = ("fixed_points",)
    options = {
        **state_options("simulated in addition to the sampled ones"),
        "n_trajectories": Param(16, kind="int", low=0, description="states drawn uniformly in the search box"),
        "horizon": Param(None, nullable=True, **_POSITIVE, description="simulated time of flows (None: 3 x the "
                         "sum of the ghosts' normal-form passage times)"),
        "steps": Param(4000, kind="int", low=1, description="RK4 steps over the horizon (flows), iterations (maps)"),
        "radius": Param(None, nullable=True, **_POSITIVE, description="radius of the ghosts' balls (None: the "
                        "fixed points' passage radius)", units="state units"),
        "dimension_tol": Param(0.05, low=0, high=1, low_inclusive=False,
                               description="tolerance of a near-neutral eigenvalue (the ghost dimension)"),
        "max_visits": Param(32, kind="int", low=1, description="size cap of the visit dim"),
        "record_points": Param(200, kind="int", low=2, description="samples per trajectory kept for the views"),
        "track_dim": Param(None, kind="str", nullable=True, description="ordered sweep dim of the ghost identity "
                           "(None: epoch if present, else the first sweep dim)"),
        "track_gate": Param(0.1, **_POSITIVE, units="box widths",
                            description="largest distance between a ghost and its continuation"),
        "chunk_size": Param(None, kind="int", low=1, nullable=True, description="sweep elements per batch (None: "
                            "sized so that the recorded states and distances hold about 4e7 numbers)"),
        "max_norm": Param(1e6, **_POSITIVE, description="trajectories leaving |x|_inf <= max_norm are diverged"),
        "seed": Param(0, kind="int", low=0, description="seed of the sampled states and of the noise"),
    }

    def work_size(self, batch: Batch) -> int:
        """Numbers in all trajectory states of one time step (sets the threads)."""
        n = self.settings.n_trajectories + (1 if self.settings.initial_states is not None else 0)
        return max(1, n) * batch.size * batch.system.state_dim

    # -- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        st = self.settings
        system = batch.system
        if st.initial_states is None and st.n_trajectories == 0:
            raise ParameterError("ghost_network: no trajectories: give initial_states or n_trajectories >= 1")
        table = ghost_table(upstream["fixed_points"], batch, st.dimension_tol)
        B, G, d = table.position.shape
        gen = torch.Generator().manual_seed(int(st.seed))
        x0 = self._initial_states(batch, table, gen)
        flow = system.kind == "flow"
        M = x0.shape[1]
        horizon = self._horizon(table, flow)
        dt = horizon / st.steps  # maps: 1 iteration
        radius = self._radius(table)
        circle = Circle.of(system)
        T = st.steps + 1
        chunk = st.chunk_size or max(1, int(CHUNK_NUMBERS // (T * M * (d + G * (d + 1)))))
        sets, outcome, paths = [], [], []
        keep = torch.linspace(0, T - 1, min(T, st.record_points)).round().long()
        with Meter(-(-B // chunk), "ghost_network", show_progress, unit="chunk") as meter:
            for sl, p in batch.chunks(chunk):
                b = sl.stop - sl.start
                xs, alive, code = _trajectories(system, x0[sl], p, horizon[sl], st.steps, st.max_norm)
                n = b * M
                v = detect(xs.reshape(T, n, d), alive.reshape(T, n), dt[sl].repeat_interleave(M),
                           table.position[sl].repeat_interleave(M, 0), radius[sl].repeat_interleave(M, 0),
                           table.present[sl].repeat_interleave(M, 0), circle, flow=flow,
                           velocity=_velocity(system, p, M) if flow else None)
                v.trajectory = v.trajectory + sl.start * M
                sets.append(v)
                outcome.append(code)
                paths.append(torch.where(alive[keep].unsqueeze(-1), xs[keep], torch.nan).permute(1, 2, 0, 3))
                meter.update()
        visits = Visits(*(torch.cat([getattr(s, f) for s in sets]) for f in Visits.__dataclass_fields__))
        from .dataset import to_dataset

        ds = to_dataset(batch, table, visits, x0, torch.cat(outcome), torch.cat(paths), keep.to(torch.float64),
                        dt, horizon, radius, st, n_user=M - st.n_trajectories)
        ds.attrs["description"] = "ghost visits, transitions and dimensions (dynlearn ghost_network analyzer)"
        ds.attrs["system_kind"] = system.kind
        return ds

    def _initial_states(self, batch: Batch, table, gen: torch.Generator) -> torch.Tensor:
        st = self.settings
        parts = []
        if st.initial_states is not None:
            parts.append(user_states(st.initial_states, batch, batch.system, noise=st.initial_noise, generator=gen))
        if st.n_trajectories:
            lo, hi = (torch.as_tensor(v, dtype=torch.float64) for v in (table.lo, table.hi))
            u = torch.rand(batch.size, st.n_trajectories, lo.numel(), generator=gen, dtype=torch.float64)
            parts.append(lo + (hi - lo) * u)
        return torch.cat(parts, 1)

    def _horizon(self, table, flow: bool) -> torch.Tensor:
        """Simulated time per sweep element ``(B,)``: flows, see the ``horizon`` option; maps, ``steps``."""
        B = table.present.shape[0]
        if not flow:
            return torch.full((B,), float(self.settings.steps), dtype=torch.float64)
        if self.settings.horizon is not None:
            return torch.full((B,), float(self.settings.horizon), dtype=torch.float64)
        total = torch.where(table.present, table.time_nf.nan_to_num(0.0), 0.0).sum(1)
        fallback = 10 * table.box_scale / table.typical_speed.clamp(min=1e-300)
        return torch.where(total > 0, 3 * total, fallback).clamp(max=1e12)

    def _radius(self, table) -> torch.Tensor:
        """Ball radius per ghost ``(B, G)``: the option, or the passage radius (0.05 box widths where missing)."""
        if self.settings.radius is not None:
            return torch.full(table.speed.shape, float(self.settings.radius), dtype=torch.float64)
        return table.passage_radius.nan_to_num(0.05 * table.box_scale)

    # -- views ------------------------------------------------------------------------------------------------
    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """holoviews objects: trajectories with their visits shaded, the ghost graph, ghost identity along the
        tracked dim; a HoloMap over the sweep."""
        from .views import ghost_views

        return ghost_views(result)


def _velocity(system, p: Mapping[str, torch.Tensor], M: int):
    """``dx/dt`` of states ``(S, d)`` of the trajectories ``(S,)`` (``M`` per sweep element of the chunk ``p``)."""
    return lambda x, traj: system.rhs(x, {k: v.index_select(0, traj // M) for k, v in p.items()})


def _trajectories(system, x0: torch.Tensor, p: Mapping[str, torch.Tensor], horizon: torch.Tensor, steps: int,
                  max_norm: float) -> tuple[torch.Tensor, ...]:
    """States ``(T, b, M, d)``, ``alive`` ``(T, b, M)`` (a real state, not frozen after a divergence) and outcome
    codes ``(b, M)`` of trajectories from ``x0`` ``(b, M, d)``: flows by RK4 in rescaled time
    ``s in [0, 1]`` (``dx/ds = H f(x)``, so every sweep element has its own horizon ``H``), maps iterated; both
    through :func:`dynlearn.stepper.iterate` (the one divergence rule)."""
    pe = system.expand_params(p, 1)
    code0 = oc.classify(x0, max_norm)
    if system.kind == "flow":
        H = horizon.to(x0.dtype).view(-1, 1, 1)
        h = 1.0 / steps

        def vel(y):
            return H * system.rhs(y, pe)

        out = iterate(system, x0, pe, steps, max_norm=max_norm, record_every=1, code=code0,
                      step=lambda y: rk4_step(vel, y, h))
    else:
        out = iterate(system, x0, pe, steps, max_norm=max_norm, record_every=1, code=code0)
    k = torch.arange(steps + 1).view(-1, 1, 1)
    alive = (code0 == oc.OK) & ((out.outcome == oc.OK) | (k < out.escape))
    return out.states, alive, out.outcome

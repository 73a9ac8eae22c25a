r"""Fixed points, slow points and ghosts of any System, batched over every sweep dim.

For a flow :math:`\dot x = f(x)` (residual :math:`g = f`) or a map :math:`x \mapsto F(x)` (residual
:math:`g = F(x) - x`), the analyzer looks for the zeros and the local minima of the speed

.. math:: q(x) = \tfrac12 \lVert g(x) \rVert^2 .

*Fixed points* are zeros of :math:`q` (:math:`\lVert g\rVert_\infty` below ``root_tol``). *Slow points* are
local minima of :math:`q` that are not zeros and are slow compared with the rest of the search box
(:math:`\lVert g\rVert \le` ``slow_ratio`` times the median speed of the sampled states). A slow point is a
*ghost* when it passes the passage test: a trajectory through it leaves a ball around it on both sides (it is
not trapped), lingers (``linger_ratio >= linger_min``: the crossing takes that many times longer than at the
speed found on the ball's edge), and a Jacobian eigenvalue's real part changes sign between entry and exit.

Algorithm (every sweep entry and every starting state in one batch):

1. starting states: ``n_starts`` per entry, uniform in the search box and taken along short trajectories
   (which linger near slow regions), with noise, plus the user's ``initial_states`` (e.g. hidden states of
   trials; with ``initial_noise``);
2. Powell's dogleg trust-region minimisation of :math:`q` (Newton steps ``-J^{-1} g`` by batched
   ``torch.linalg.solve`` on the system's Jacobian, blended with steepest descent of :math:`q` where ``J`` is
   singular), stopping on a root or on a negligible trust-scaled change; states leaving the box are outliers;
3. roots are Newton-polished to the last bits; candidate minima are refined by Newton's method on
   :math:`\nabla q = J^\top g = 0` with the exact Hessian of :math:`q` (saddles of :math:`q` are dropped);
4. duplicates (closer than ``dedupe_tol`` times the box width, on the circle of periodic coordinates, which are
   reported wrapped) are merged keeping the lowest-:math:`q` copy, which counts the starts that reached it
   (``n_reached``); every distinct point is kept (``max_points`` caps the ``point`` dim explicitly);
5. warm start along an ordered dim (``epoch`` by default, where the sweep has it): the points found at the
   neighbouring entries are used as extra starting states in a second batched pass;
6. midpoint pass: the midpoints of pairs of the fixed points found (at most ``midpoints`` pairs per entry and
   at most as many as the first pass's starts, 64 if fewer; evenly spaced pairs beyond) start another batched pass, merged into the same deduplication. Saddles lie between the
   attractors they separate: the midpoint of two stable points lies near the index-1 saddle between them, that
   of opposite corners near a higher-index saddle, which the starts of the first pass may all miss (the centre
   of a 3-bit flip-flop's cube of 27 fixed points);
7. classification by the Jacobian's eigenvalues: flows by :math:`\operatorname{Re}\lambda` vs 0, maps by
   :math:`|\lambda|` vs 1 (stable/unstable node, saddle, stable/unstable focus, centre, non_hyperbolic when an
   eigenvalue is within ``neutral_tol`` of the boundary).

Ghost diagnostics. Along the direction of motion :math:`v = g/\lVert g\rVert` at the minimum, the speed is
:math:`\varphi(u) = v\cdot g(x_g + u v) \approx r + a u^2` (the saddle-node normal form
:math:`\dot u = r + a u^2`), with :math:`r = \lVert g(x_g)\rVert` (``speed``) and :math:`a` (``curvature``).
Its bottleneck takes :math:`\pi/\sqrt{r a}` to cross (``passage_time_nf``; :math:`\dot x = x^2 + r` gives
:math:`\pi/\sqrt r`); crossing the ball of radius :math:`\rho` takes
:math:`2\arctan(\rho\sqrt{a/r})/\sqrt{r a}` (``passage_time_nf_ball``), next to which ``passage_time`` is the
time measured on the trajectory (iterations for maps). :math:`\rho` = ``passage_factor``
:math:`\sqrt{r/a}`, at most half the box's half-width.

Examples
--------
>>> import dynlearn
>>> fp = FixedPoints(n_starts=16)
>>> out = fp.run("saddle_node", dynlearn.grid(r=[-0.25, 0.01]))
>>> out.n_fixed.values.tolist(), out.n_ghost.values.tolist()
([2, 0], [0, 1])
>>> out.position.sel(r=-0.25, state="x").values[:2].round(12).tolist()
[-0.5, 0.5]
>>> [TYPES[c] for c in out.point_type.sel(r=-0.25).values[:2]]
['stable_node', 'unstable_node']
>>> g = out.sel(r=0.01, point=0)
>>> TYPES[int(g.point_type)], round(float(g.speed), 12), round(float(g.passage_time_nf), 6)
('ghost', 0.01, 31.415927)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

import dynlearn
from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.progress import Meter
from dynlearn.sweep import Batch

from .._shared.states import state_options, user_states
from .classify import TYPES
from .pipeline import concat, diagnose, find, midpoint_pass, search_box, take_entries, warm_dim, warm_pass
from .sampling import starting_states

__all__ = ["FixedPoints", "TYPES"]


def _positive(default: float, description: str, **kw: Any) -> Param:
    """A finite number option > 0."""
    return Param(default, description=description, low=0, low_inclusive=False, **kw)


class FixedPoints(dynlearn.Analyzer):
    """Fixed points and ghosts of a flow or map, for every entry of a sweep (see the module docstring).

    Options are declared in :attr:`options` (each with its default, range and description) and validated once
    into :attr:`settings`; ``bounds`` is checked against the system at the start of :meth:`analyze`.

    Parameters
    ----------
    n_starts
        Sampled starting states per sweep entry (0: only ``initial_states``).
    initial_states, initial_noise
        The user's starting states, used in addition to the ``n_starts`` sampled ones: an array ``(sample,
        state)`` for every sweep entry, or a DataArray ``(sweep dims..., sample, state)`` per entry (see
        :func:`~dynlearn_builtins.analyzers._shared.states.user_states`); Gaussian noise of standard deviation
        ``initial_noise`` (absolute, in state units) is added to them. They also give the principal components
        of the ``pca`` view.
    trajectory_fraction, trajectory_steps, noise
        Fraction of the starts taken along trajectories (RK4 steps over 5 typical time scales for flows,
        iterations for maps) and the Gaussian noise added to them (fraction of the box width).
    bounds
        Search box ``[[low...], [high...]]`` (default: the system's domain).
    margin
        Points further than ``margin`` box widths outside the box are dropped as outliers (0: exactly the box).
    max_iter, root_tol
        Iterations of the minimiser; ``|g|_inf <= root_tol`` makes a fixed point.
    dedupe_tol
        Points closer than ``dedupe_tol`` box widths are the same point.
    neutral_tol
        An eigenvalue within ``neutral_tol`` (relative) of the stability boundary is neutral.
    slow_points, slow_ratio
        Look for slow points (minima of q that are not zeros) with speed at most ``slow_ratio`` times the
        median speed of the sampled states.
    passage_factor, passage_steps, linger_min
        Passage test: ball radius in units of the bottleneck width ``sqrt(r/a)``, RK4 steps per direction, and
        the minimum linger ratio of a ghost.
    warm_start
        Ordered sweep dim along which the neighbours' points seed a second pass: ``"auto"`` (``epoch`` where the
        sweep has it), a sweep dim's name (a one-line error when there is no such dim), ``None``: none.
    midpoints
        Starting states of the midpoint pass per sweep entry: midpoints of pairs of the fixed points found, all
        pairs up to this many and up to the number of starts of the first pass (64 if fewer), evenly spaced
        pairs beyond (0: no midpoint pass).
    max_points
        Size cap of the ``point`` dim (``None``: every distinct point). A cap keeps the lowest-q points, warns
        how many were dropped and sets ``truncated``; ``n_fixed``/``n_ghost``/``n_slow`` count them all.
    jacobians
        Store each point's Jacobian and eigenvectors (``d x d`` numbers each).
    landscape
        Store the speed ``|g|`` on a grid of the box (1-D: 201 points, 2-D: 41 x 41) for the views.
    chunk_size
        Sweep entries per batch (default: sized from ``n_starts`` and the state dimension).
    seed
        Seed of the starting states.
    threads
        Torch intra-op threads (every analyzer's option; ``None``: chosen from the problem size).
    """

    name = "fixed_points"
    description = "fixed points, slow points and ghosts with their stability, batched over every sweep dim"
    kinds = ("flow", "map")
    options = {
        "n_starts": Param(64, kind="int", low=0, description="sampled starting states per sweep entry (0: only "
                          "initial_states)"),
        **state_options("starting states in addition to the sampled ones"),
        "trajectory_fraction": Param(0.5, low=0, high=1,
                                     description="fraction of the starts taken along short trajectories"),
        "trajectory_steps": Param(40, kind="int", low=1, description="RK4 steps (flows) or iterations (maps) of "
                                  "the trajectories the starts are taken from"),
        "noise": Param(0.01, low=0, description="Gaussian noise added to the trajectory starts",
                       units="box widths"),
        "bounds": Param(None, kind="list", nullable=True,
                        description="search box [[low...], [high...]] (None: the system's domain)"),
        "margin": Param(0.1, low=0, description="points further outside the box are outliers",
                        units="box widths"),
        "max_iter": Param(200, kind="int", low=1, description="iterations of the minimiser of q"),
        "root_tol": _positive(1e-10, "a point with |g|_inf <= root_tol is a fixed point"),
        "dedupe_tol": _positive(1e-6, "points closer than this are the same point", units="box widths"),
        "neutral_tol": _positive(1e-7, "an eigenvalue this close (relative) to the stability boundary is neutral"),
        "slow_points": Param(True, kind="bool", description="look for slow points (minima of q that are not zeros)"),
        "slow_ratio": _positive(0.5, "largest speed of a slow point over the median speed of the sampled states"),
        "passage_factor": _positive(10.0, "radius of the passage test's ball", units="bottleneck widths sqrt(r/a)"),
        "passage_steps": Param(2000, kind="int", low=1, description="RK4 steps per direction of the passage test"),
        "linger_min": _positive(2.0, "smallest linger ratio of a ghost"),
        "warm_start": Param("auto", kind="str", nullable=True, description="ordered sweep dim along which the "
                            "neighbours' points seed a second pass ('auto': epoch where the sweep has it; None: none)"),
        "midpoints": Param(1024, kind="int", low=0, description="starts of a second pass at midpoints of pairs "
                           "of the fixed points found, at most this many per sweep entry and at most the first "
                           "pass's starts, 64 if fewer (0: none)"),
        "max_points": Param(None, kind="int", low=1, nullable=True, description="size cap of the point dim, keeping "
                            "the lowest-q points with a warning (None: every distinct point)"),
        "jacobians": Param(True, kind="bool", description="store each point's Jacobian and eigenvectors"),
        "landscape": Param(True, kind="bool", description="store the speed |g| on a grid of the box (1-D and 2-D)"),
        "chunk_size": Param(None, kind="int", low=1, nullable=True,
                            description="sweep entries per batch (None: sized from n_starts and the state dim)"),
        "seed": Param(0, kind="int", low=0, description="seed of the starting states"),
    }

    def work_size(self, batch: Batch) -> int:
        """Numbers in all starting states: starts x sweep elements x state dim (sets the threads)."""
        return self._n_starts(batch) * batch.size * batch.system.state_dim

    def _n_starts(self, batch: Batch) -> int:
        """Starting states per sweep element of the first pass (sampled and the user's)."""
        user = self.settings.initial_states
        n_user = 0 if user is None else (int(user.sizes.get("sample", 1)) if hasattr(user, "sizes")
                                         else (1 if np.ndim(user) == 1 else int(np.shape(user)[0])))
        return int(self.settings.n_starts) + n_user

    # -- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        st = self.settings
        system = batch.system
        box = search_box(st, system)
        warm = warm_dim(st, batch)
        d = system.state_dim
        B = batch.size
        gen = torch.Generator().manual_seed(int(st.seed))
        user = None
        if st.initial_states is not None:
            user = user_states(st.initial_states, batch, system, noise=float(st.initial_noise), generator=gen)
        elif st.n_starts == 0:
            raise ParameterError("fixed_points: n_starts=0 needs initial_states (the starting states to use)")
        S = st.n_starts + (0 if user is None else user.shape[1])
        n_par = sum(int(np.prod(v.shape[1:], dtype=np.int64)) for v in batch.params.values())
        per_start = d * d + 8 * d + n_par
        chunk = st.chunk_size or max(1, int(4e6 // (S * per_start)))
        # midpoints: at most as many as the first pass's starts (64 if fewer), so the pass costs about as much
        n_mid = min(st.midpoints, max(S, 64))
        mid_chunk = st.chunk_size or max(1, min(chunk, int(4e6 // (max(1, n_mid) * per_start))))
        n_chunks = -(-B // chunk) * (3 if warm else 2) + (-(-B // mid_chunk) if n_mid else 0)
        sets, typical, samples = [], [], []
        keep = torch.linspace(0, max(st.n_starts - 1, 0), min(st.n_starts, max(1, -(-4096 // B)))).round().long()
        with Meter(n_chunks, "fixed_points", show_progress, unit="chunk") as meter:
            for sl, p in batch.chunks(chunk):
                starts, typ = starting_states(system, p, st, box, generator=gen)
                samples.append(starts[:, keep].reshape(-1, d))
                if user is not None:
                    starts = torch.cat([starts, user[sl]], 1)
                sets.append(find(system, p, starts, torch.ones(starts.shape[:2], dtype=torch.bool), typ, st, box))
                typical.append(typ)
                meter.update()
            points = concat(sets)
            typical_t = torch.cat(typical)
            n_used = torch.full((B,), S, dtype=torch.int64)
            if warm:
                points, n_warm = warm_pass(batch, points, typical_t, st, box, chunk, meter, warm)
                n_used = n_used + n_warm
            if n_mid:
                points, n_extra = midpoint_pass(batch, points, typical_t, st, box, mid_chunk, meter, n_mid)
                n_used = n_used + n_extra
            diags = []
            for sl, p in batch.chunks(chunk):
                diags.append(diagnose(system, p, take_entries(points, sl), st, box))
                meter.update()
        from .dataset import landscape, to_dataset
        from .pca import basis, pca_dataset

        ds = to_dataset(batch, diags, typical_t, n_used, max_points=st.max_points, jacobians=st.jacobians)
        if user is not None:
            source = "initial_states"
            pool = user_states(st.initial_states, batch, system).reshape(-1, d)  # as given, without noise
        else:
            source = "the points found and the sampled starting states"
            found = ds["position"].values.reshape(-1, d)
            pool = torch.cat([torch.as_tensor(found[np.isfinite(found).all(-1)]), *samples])
        ds = ds.merge(pca_dataset(ds, *basis(pool), source))
        if st.landscape and d <= 2:
            ds = ds.merge(landscape(batch, box, chunk))
        ds.attrs["description"] = "fixed points, slow points and ghosts (dynlearn fixed_points analyzer)"
        ds.attrs["system_kind"] = system.kind
        ds.attrs["bounds_low"] = [float(v) for v in box.lo]
        ds.attrs["bounds_high"] = [float(v) for v in box.hi]
        ds.attrs["pca_source"] = source
        ds.attrs["warm_start"] = warm or "none"
        return ds

    # -- views ------------------------------------------------------------------------------------------------
    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """holoviews objects: points vs the first sweep dim coloured by type, counts, speed landscape."""
        from .views import fixed_point_views

        return fixed_point_views(result)

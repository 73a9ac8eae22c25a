"""Basins of attraction and separatrices of any map or flow, batched over the sweep dims.

For every sweep element (e.g. several ``mu`` at once), :class:`Basins`

1. samples initial states in the domain box: a cell-centred grid for ``d <= 3`` (``resolution`` points per
   axis), a scrambled Sobol sequence beyond (:mod:`.sampling`);
2. iterates the map (or integrates the flow with fixed-step RK4) for ``steps`` steps through the core stepper
   (:func:`dynlearn.stepper.evolve`), all orbits of all sweep elements as one batch, in chunks, dropping orbits
   that leave ``|x|_inf <= max_norm`` (their outcome is ``diverged``);
3. identifies the attractors without being told them, from the orbits' tails: the recurrent cells of the graph of
   observed cell-to-cell steps, joined by dynamics and by adjacency (fixed points, continua of fixed points,
   cycles, chaotic sets), see :mod:`.attractors`;
4. gives each sample the id of the attractor whose basin holds it (``basin``; ``-1`` for none, with the outcome
   saying why: ``diverged``, ``nan``, ``unresolved``), reports basin fractions with Wilson intervals, and matches
   the attractor ids along ``match_dim`` (:mod:`.matching`) so that one attractor keeps its id along it;
5. locates separatrix points by batched bisection between neighbouring samples of two different basins, down to
   the tolerance ``tol`` (:mod:`.boundary`).

Maths
-----
The basin of an attractor ``A`` is ``{x : dist(F^n(x), A) -> 0}``; a sample's id is a Monte-Carlo (Sobol)
or quadrature (grid) estimate of the indicator of its basin, so ``basin_fraction = count / n_samples``
estimates the basin's share of the box. The interval reported is the Wilson score interval
``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``, ``z = Phi^{-1}((1 + confidence)/2)`` (exact
coverage for random sampling; a guide for grids and Sobol points). For two neighbouring samples ``x0, x1`` in
different basins (the basin of infinity included), continuity of the segment ``[x0, x1]`` implies a boundary
point on it; bisection halves the bracket each round, so after ``ceil(log2(|x1 - x0| / 2 tol))`` rounds the
boundary lies within ``tol`` of the reported midpoint (for a boundary crossed once by the segment).

Examples
--------
>>> import dynlearn
>>> out = Basins(resolution=48, steps=300).run("two_factor", dynlearn.grid(mu=[0.5, 1.0]))
>>> out.basin.dims
('mu', 'a', 'b')
>>> out.attractor_kind.sel(mu=0.5).values[:2].tolist()
['fixed_set', 'fixed_set']
>>> from dynlearn import outcome as oc
>>> from dynlearn_builtins.systems.two_factor import ellipse_level
>>> import torch
>>> pts = out.boundary_state.sel(mu=1.0)
>>> on_div = (out.boundary_outcome_a.sel(mu=1.0) == oc.DIVERGED).values   # boundary of the diverged basin
>>> rho = ellipse_level(torch.as_tensor(pts.values[on_div]), 1.0).sqrt()   # normalised radius on E_mu
>>> bool(abs(rho - 1).max() < 1e-5)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynlearn.analyzer import Analyzer
from dynlearn.params import Param
from dynlearn.progress import Meter
from dynlearn.stepper import default_chunk
from dynlearn.sweep import Batch

from .boundary import grid_pairs, knn_pairs
from .._shared.states import state_options, user_states
from .matching import attractor_ids
from .output import assemble
from .pipeline import Context, analyze_group
from .sampling import NO_MATCH, box, check, enlarge, match_dim, n_samples, samples, tail_every
from .stability import BasinStability

__all__ = ["Basins", "BasinStability"]

#: orbits per group of sweep elements processed together (bounds memory)
_GROUP_POINTS = 1 << 20

_POSITIVE = dict(low=0, low_inclusive=False)


class Basins(Analyzer):
    """Basins of attraction, attractors and separatrix points of a map or flow (any dimension).

    Options (``Basins.options``; validated when the analyzer is made):

    Parameters
    ----------
    resolution
        Grid points per axis (``d <= 3``); an int or one per axis. Default ``round(n_samples ** (1/d))``.
    n_samples
        Number of samples when ``resolution`` is not given (Sobol points for ``d > 3``).
    sampling
        ``"auto"`` (grid for ``d <= 3``, Sobol beyond), ``"grid"`` or ``"sobol"``.
    bounds
        ``[[lo_1, hi_1], ..., [lo_d, hi_d]]``: the sampling box; default the system's domain.
    steps, dt
        Iterations of a map / RK4 steps of size ``dt`` of a flow.
    tail, tail_every
        States recorded at the end of each orbit (every ``tail_every`` steps; default 1 for maps and
        ``round(0.5 / dt)`` for flows: the tail should span a period of the slowest cycle) to identify the attractors.
    max_norm
        Orbits leaving ``|x|_inf <= max_norm`` are diverged.
    cells
        Cells per axis of the box used to discretise the tails (attractors closer than ~1.5 cells merge).
    tol
        Bisection tolerance of the separatrix points (state units).
    max_boundary_points
        At most this many boundary points per sweep element (evenly spread over the candidate pairs).
    confidence
        Confidence level of the Wilson intervals on the basin fractions.
    lyapunov_steps, lyapunov_tol
        Steps of the Lyapunov spectrum of each attractor (from its representative state). An attractor whose
        tails show no return is ``chaotic`` when its largest exponent is above ``lyapunov_tol`` over the run and
        each half, ``quasi_periodic`` when it is within ``lyapunov_tol`` of 0 (the rule of ``orbits``,
        :func:`dynlearn.lyapunov.aperiodic_verdict`); otherwise (e.g. a negative exponent: still converging)
        its member orbits are integrated further.
    max_steps
        Cap on the total steps of those longer runs (rounds of 2, 4, ... times ``steps`` on up to 256 member
        orbits per attractor; default ``8 * steps``); an attractor still undecided is ``unresolved``.
    match_dim, match_gate
        The ordered sweep dim along which attractor ids are matched (``None``: ``epoch`` when the sweep has it,
        else no matching; ``"none"``: no matching), and the largest distance between an attractor's extents at
        consecutive steps of that dim for it to keep its id (``None``: a tenth of the box's diagonal).
    initial_states, initial_noise
        The user's states, used as the samples instead of the grid / Sobol points: an array ``(sample, state)``
        for every sweep element or a DataArray ``(sweep dims..., sample, state)`` per element
        (:func:`dynlearn_builtins.analyzers._shared.states.user_states`), plus Gaussian noise of standard
        deviation ``initial_noise`` (absolute, in state units; drawn with ``seed``). They are laid out on a
        ``sample`` dim (``sample_state`` keeps every element's states), basin fractions are fractions of them,
        separatrix points are bisected between nearest-neighbour pairs in different basins, and the box of the
        cells (``bounds`` or the domain) is enlarged to hold them.
    seed
        Seed of the Sobol scrambling and of the noise on ``initial_states``.
    precision
        ``"float64"`` or ``"float32"`` (faster, but a state within ~1e-7 relative of a separatrix may be
        misclassified; the bisection cannot go below that).
    kernel
        ``"auto"`` (a system's registered fast stepper when it has one) or ``"generic"`` (always ``rhs``).
    chunk_size
        Orbits advanced together (default: 65536 on one thread, 32000 per worker thread otherwise).

    Notes
    -----
    Output (``S`` = samples; grid samples have the state coordinates as dims, other samples a ``sample`` dim):
    ``basin`` (attractor id; -1 none), ``outcome`` (ok, diverged, nan, unresolved, masked), ``escape_time``;
    per attractor (dim ``attractor``): ``attractor_kind``, ``attractor_state``, ``attractor_period``,
    ``attractor_lyapunov``, ``attractor_exponents`` (dim ``exponent``: the full spectrum),
    ``attractor_kaplan_yorke``, ``attractor_stable``, ``basin_count``, ``basin_fraction`` (+ ``_low`` / ``_high``);
    per element: ``diverged_fraction`` (+ ``_low`` / ``_high``), ``unresolved_fraction``, ``n_attractors``,
    ``n_boundary_points``; per boundary point (dim ``boundary_point``): ``boundary_state``,
    ``boundary_tolerance``, ``boundary_attractor_a`` / ``_b``, ``boundary_outcome_a`` / ``_b``,
    ``boundary_mixed``. Every variable keeps all sweep dims.
    """

    name = "basins"
    description = "basins of attraction, attractors (fixed points, cycles, chaotic sets) and separatrix points"
    kinds = ("flow", "map")
    options = {
        "resolution": Param(None, kind="any", nullable=True,
                            description="grid points per axis, an int or one per axis (None: from n_samples)"),
        "n_samples": Param(16384, kind="int", low=1, description="samples when resolution is not given"),
        "sampling": Param("auto", kind="str", choices=("auto", "grid", "sobol"),
                          description="grid for d <= 3 and Sobol beyond (auto), grid or sobol"),
        "bounds": Param(None, kind="list", nullable=True,
                        description="sampling box [[lo, hi]] per state coordinate (None: the system's domain)"),
        "steps": Param(1000, kind="int", low=1, description="iterations of a map / RK4 steps of a flow"),
        "dt": Param(0.05, **_POSITIVE, description="RK4 step of a flow"),
        "tail": Param(32, kind="int", low=2, description="tail states recorded per orbit to find the attractors"),
        "tail_every": Param(None, kind="int", low=1, nullable=True,
                            description="steps between tail states (None: 1 for maps, round(0.5 / dt) for flows)"),
        "max_norm": Param(1e6, **_POSITIVE, description="orbits leaving |x|_inf <= max_norm are diverged"),
        "cells": Param(200, kind="int", low=1, description="cells per axis discretising the tails"),
        "tol": Param(1e-6, **_POSITIVE, description="bisection tolerance of the separatrix points"),
        "max_boundary_points": Param(256, kind="int", low=1, description="boundary points per sweep element"),
        "confidence": Param(0.95, low=0, high=1, low_inclusive=False, high_inclusive=False,
                            description="confidence level of the Wilson intervals"),
        "lyapunov_steps": Param(1000, kind="int", low=1, description="steps of the Lyapunov exponent estimate"),
        "lyapunov_tol": Param(0.01, description="largest Lyapunov exponent above which an aperiodic attractor "
                                                "is chaotic"),
        "max_steps": Param(None, kind="int", low=1, nullable=True,
                           description="steps cap of the longer runs of attractors whose evidence has not settled "
                                       "(None: 8 x steps)"),
        "match_dim": Param(None, kind="str", nullable=True,
                           description=f"sweep dim to match attractor ids along (None: epoch if swept; "
                                       f"{NO_MATCH!r}: no matching)"),
        "match_gate": Param(None, **_POSITIVE, nullable=True,
                            description="largest move of a matched attractor between consecutive steps "
                                        "(None: a tenth of the box diagonal)"),
        **state_options("used instead of sampling"),
        "seed": Param(0, kind="int", low=0, description="seed of the Sobol scrambling and of initial_noise"),
        "precision": Param("float64", kind="str", choices=("float64", "float32"), description="float dtype"),
        "kernel": Param("auto", kind="str", choices=("auto", "generic"),
                        description="the system's own stepper (auto) or rhs (generic)"),
        "chunk_size": Param(None, kind="int", low=1, nullable=True,
                            description="orbits advanced together (None: 65536 on one thread, 32000 otherwise)"),
    }

    def dtype(self):
        return torch.float32 if self.precision == "float32" else torch.float64

    def work_size(self, batch: Batch) -> int:
        """Numbers in all orbits' states: samples x sweep elements x state dim (sets the threads)."""
        d = batch.system.state_dim
        if self.settings.initial_states is not None:
            v = self.settings.initial_states
            S = v.sizes.get("sample", 1) if isinstance(v, xr.DataArray) else int(np.prod(np.shape(v)[:-1]))
            return S * batch.size * d
        return n_samples(self.settings, d) * batch.size * d

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        s, system = self.settings, batch.system
        check(s, system)
        dim = match_dim(s, batch.dims)
        lo, hi = box(s, system)
        d, B = system.state_dim, batch.size
        if s.initial_states is None:
            shape, X = samples(s, lo, hi)
            pairs = grid_pairs(shape) if shape else knn_pairs(X, 2 * d)
        else:  # the user's states (B, S, d): per element pairs, the box enlarged to hold them
            gen = torch.Generator().manual_seed(int(s.seed))
            shape, X = None, user_states(s.initial_states, batch, system, noise=float(s.initial_noise),
                                         generator=gen).numpy()
            lo, hi = enlarge(lo, hi, X.reshape(-1, d))
            pairs = [knn_pairs(x, 2 * d) for x in X]
        S = X.shape[-2]
        ctx = Context(batch=batch, lo=lo, width=(hi - lo) / s.cells, every=tail_every(s, system), match_dim=dim)
        Xt = torch.as_tensor(X, dtype=self.dtype())
        G = max(1, _GROUP_POINTS // S)
        rows = []
        n_chunks = sum(math.ceil(min(G, B - g0) * S / default_chunk(s.chunk_size)) for g0 in range(0, B, G))
        with Meter(n_chunks, "basins", show_progress, unit="chunk") as meter:
            for g0 in range(0, B, G):
                group = range(g0, min(B, g0 + G))
                if Xt.dim() == 2:
                    rows += analyze_group(s, ctx, Xt, pairs, group, meter)
                else:
                    rows += analyze_group(s, ctx, Xt[g0 : group.stop], pairs[g0 : group.stop], group, meter)
        gate = s.match_gate if s.match_gate is not None else 0.1 * float(np.linalg.norm(hi - lo))
        ids, n_ids = attractor_ids([r.extent for r in rows], [r.kinds for r in rows], batch.valid.numpy(),
                                   batch.shape, batch.dims.index(dim) if dim else None, gate)
        return assemble(s, ctx, shape, X, rows, ids, n_ids)

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``basins``: basin image (grids; a middle slice in 3-D) with boundary points and declared manifolds;
        ``fractions``: basin fractions with their Wilson intervals."""
        from .views import views

        return views(result)

r"""Minimum-action transition paths between two attractors of a flow under small noise (gMAM).

For :math:`dx = f(x)\,dt + \sqrt{\varepsilon}\,dW`, transitions from attractor :math:`A` to attractor :math:`B`
happen, as :math:`\varepsilon \to 0`, along the curve minimising the geometric (Freidlin–Wentzell) action

.. math:: S(\varphi) = \int_0^1 \big(|f(\varphi)|\,|\varphi'| - f(\varphi)\cdot\varphi'\big)\,d\alpha ,

at a rate :math:`\asymp e^{-S^*/\varepsilon}`; :math:`S^*` is the quasi-potential barrier of :math:`A`. The path
climbs against the flow to a saddle on the separatrix (all the action is spent there), then follows the flow down
to :math:`B` at no cost. For a gradient flow :math:`f = -\nabla V` the path is the minimum energy path and
:math:`S^* = 2\,(V(\text{saddle}) - V(A))`: :math:`S^* = 2` for ``double_well`` and :math:`1/2` for
``maier_stein`` at :math:`\beta = 1` (:math:`V = -x^2/2 + x^4/4 + (1 + x^2) y^2/2`). The non-gradient
``maier_stein`` at :math:`\beta = 10` leaves the x axis (action below the on-axis value 1/2).

The path is a string of ``n_nodes`` nodes, relaxed by the geometric minimum action method (:mod:`.string`),
batched over every sweep element. End points: ``start``/``end`` if given, else the two most populated attractors
found by simulating sampled states and the user's ``initial_states`` (polished by Newton), ordered so that
``start`` has the smaller coordinate sum.

Examples
--------
>>> import dynlearn
>>> out = MinAction(n_nodes=41).run("double_well", dynlearn.grid(k=[1.0]))
>>> round(float(out.action.sel(k=1.0)), 4)                       # 2 (V(saddle) - V(minimum)) = 2
2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.analyzer import Analyzer
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import Param, Settings
from dynlearn.sweep import Batch

from .._shared.attractors import attractor_classes, fixed_point_polish, settle
from .._shared.states import state_options, user_states
from .string import geometric_action, gmam

__all__ = ["MinAction"]

_POSITIVE = dict(low=0, low_inclusive=False)


class MinAction(Analyzer):
    """Minimum geometric-action path and action between two attractors of a flow (gMAM on a string).

    Options (``MinAction.options``; validated when the analyzer is made):

    Parameters
    ----------
    n_nodes
        Nodes of the discretised path.
    max_iter, dt, tol
        Maximum gMAM iterations, pseudo-time step, convergence threshold on ``max |update| / dt``.
    bend
        Initial path: the straight segment plus ``bend * |end - start| * sin(pi alpha)`` along a random
        direction normal to it (breaks the symmetry that would keep e.g. Maier–Stein's path on the x axis).
    start, end
        End points (state vectors), or ``None`` to find the attractors by simulation (give both or neither).
    n_samples, horizon, cluster_tol
        Attractor search: sampled states (uniform in the domain, the same for every sweep entry; 0: only
        ``initial_states``), horizon in characteristic times, clustering tolerance (fraction of the domain
        diagonal).
    initial_states, initial_noise
        The user's states simulated by the attractor search in addition to the ``n_samples`` sampled ones (e.g.
        one state in each basin): an array ``(sample, state)`` for every sweep entry, or a DataArray ``(sweep
        dims..., sample, state)`` per entry (see :func:`~dynlearn_builtins.analyzers._shared.states.user_states`),
        plus Gaussian noise of standard deviation ``initial_noise`` (absolute, in state units). Not used when
        ``start`` and ``end`` are given.
    seed
        Seed of the sampling and of the bend direction.

    Notes
    -----
    ``outcome`` per sweep element (:mod:`dynlearn.outcome`): ``ok``; ``not_converged`` (the last update is still
    above ``tol`` after ``max_iter`` iterations; the path is returned); ``single_attractor`` (fewer than two
    attractors found: no path); ``masked`` (parameters not finite: not analysed).
    """

    name: ClassVar[str] = "min_action"
    description: ClassVar[str] = "minimum geometric-action (Freidlin-Wentzell) transition path between attractors"
    kinds: ClassVar[tuple[str, ...]] = ("flow",)
    options: ClassVar[dict[str, Param]] = {
        "n_nodes": Param(101, kind="int", low=5, description="nodes of the discretised path"),
        "max_iter": Param(10000, kind="int", low=1, description="maximum gMAM iterations"),
        "dt": Param(0.01, **_POSITIVE, description="gMAM pseudo-time step"),
        "tol": Param(1e-8, **_POSITIVE, description="convergence threshold on max |update| / dt"),
        "bend": Param(0.1, description="initial path's bend normal to the chord", units="chord lengths"),
        "start": Param(None, kind="list", nullable=True,
                       description="start state (None: the attractor with the smaller coordinate sum)"),
        "end": Param(None, kind="list", nullable=True,
                     description="end state (None: the attractor with the larger coordinate sum)"),
        "n_samples": Param(256, kind="int", low=0, description="sampled states simulated to find the attractors "
                           "(0: only initial_states)"),
        **state_options("simulated with the sampled ones to find the attractors"),
        "horizon": Param(30.0, **_POSITIVE, description="simulated time of the attractor search",
                         units="characteristic times"),
        "cluster_tol": Param(0.02, **_POSITIVE, description="clustering distance of final states",
                             units="domain diagonals"),
        "seed": Param(0, kind="int", low=0, description="seed of the sampling and of the bend direction"),
    }

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        s, system = self.settings, batch.system
        check(s, system)
        B, d, n = batch.size, system.state_dim, s.n_nodes
        p = system.expand_params(batch.params, 1)
        a, b, two = endpoints(s, batch, p)
        g = torch.Generator().manual_seed(int(s.seed) + 1)
        alpha = torch.linspace(0, 1, n, dtype=torch.float64).view(1, n, 1)
        chord = b - a
        v = torch.randn(B, d, generator=g, dtype=torch.float64)
        v = v - (v * chord).sum(-1, keepdim=True) * chord / (chord * chord).sum(-1, keepdim=True).clamp_min(1e-300)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        init = a.unsqueeze(1) + alpha * chord.unsqueeze(1) + (
            s.bend * chord.norm(dim=-1).view(B, 1, 1) * torch.sin(torch.pi * alpha) * v.unsqueeze(1))
        path, used, change = gmam(system, p, a, b, init, max_iter=int(s.max_iter), dt=float(s.dt),
                                  tol=float(s.tol), show_progress=show_progress)
        action, cum = geometric_action(system, path, p)
        speed = system.rhs(path, p).norm(dim=-1)
        inner = speed[:, 1:-1]
        k = inner.argmin(1) + 1
        saddle = fixed_point_polish(system, path[torch.arange(B), k], batch.params)
        ok = two & batch.valid
        outcome = torch.where(change < s.tol, oc.OK, oc.NOT_CONVERGED)
        outcome = torch.where(two, outcome, oc.SINGLE_ATTRACTOR)
        outcome = torch.where(batch.valid, outcome, oc.MASKED).to(torch.int8)
        nan_if = lambda t: torch.where(ok.view(B, *([1] * (t.dim() - 1))), t, torch.nan)  # noqa: E731

        X = batch.to_xarray
        names = np.array(list(system.state_names), dtype=object)
        sc = {"state": ("state", names)}
        L = system.state_units
        arc = torch.cat([torch.zeros(B, 1, dtype=path.dtype), (path[:, 1:] - path[:, :-1]).norm(dim=-1).cumsum(1)], 1)
        out = xr.Dataset({
            "path": X(nan_if(path), ("node", "state"), coords=sc,
                      attrs={"long_name": "minimum-action path (equal arc-length nodes, start to end)", "units": L}),
            "arc_length": X(nan_if(arc), ("node",), attrs={"long_name": "arc length along the path", "units": L}),
            "action": X(nan_if(action), (), attrs={"long_name": "minimum geometric action S* (quasi-potential "
                                                               "barrier of the start attractor)", "units": "1"}),
            "quasi_potential": X(nan_if(cum), ("node",),
                                 attrs={"long_name": "cumulative geometric action along the path", "units": "1"}),
            "speed": X(nan_if(speed), ("node",), attrs={"long_name": "|f| along the path",
                                                        "units": f"{L}/{system.time_units}"}),
            "saddle": X(nan_if(saddle), ("state",), coords=sc,
                        attrs={"long_name": "saddle crossed by the path (Newton-polished slowest node)", "units": L}),
            "endpoints": X(nan_if(torch.stack([a, b], 1)), ("endpoint", "state"),
                           coords={**sc, "endpoint": ("endpoint", np.array(["start", "end"], dtype=object))},
                           attrs={"long_name": "start and end attractors", "units": L}),
            "iterations": X(used, (), attrs={"long_name": "gMAM iterations", "units": "1"}),
            "last_update": X(change, (), attrs={"long_name": "last gMAM update max|dphi|/dt", "units": L}),
            "outcome": X(outcome, (), attrs={**oc.flag_attrs("outcome of the path"),
                                             "comment": "not_converged: last_update above tol after max_iter "
                                                        "iterations; single_attractor: fewer than two attractors "
                                                        "found (no path); masked: parameters not finite"}),
        })
        return out

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        from .views import min_action_views

        return min_action_views(result)


def check(s: Settings, system) -> None:
    """``start`` and ``end``: both or neither, states of the system's dimension (one-line errors otherwise)."""
    d = system.state_dim
    for key in ("start", "end"):
        v = s[key]
        if v is not None:
            arr = np.asarray(v, dtype=float)
            if arr.shape != (d,):
                raise ShapeError(f"min_action: {key} must be a state of shape ({d},), got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ParameterError(f"min_action: {key} contains NaN or infinite values")
    if (s.start is None) != (s.end is None):
        raise ParameterError("min_action: give both start and end, or neither")


def endpoints(s: Settings, batch: Batch, p) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Start and end states ``(B, d)`` and whether two attractors were found ``(B,)``: the given ``start`` / ``end``,
    else the two most populated attractors of simulated samples (Newton-polished), ordered by coordinate sum."""
    system = batch.system
    B, d = batch.size, system.state_dim
    if s.start is not None:
        a = torch.as_tensor(np.asarray(s.start, float), dtype=torch.float64).expand(B, d).clone()
        b = torch.as_tensor(np.asarray(s.end, float), dtype=torch.float64).expand(B, d).clone()
        return a, b, torch.ones(B, dtype=torch.bool)
    if s.n_samples == 0 and s.initial_states is None:
        raise ParameterError("min_action: n_samples=0 needs initial_states (the states simulated to find the "
                             "attractors), or give start and end")
    g = torch.Generator().manual_seed(int(s.seed))
    lo, hi = (torch.as_tensor(v, dtype=torch.float64) for v in system.domain())
    x0 = (lo + (hi - lo) * torch.rand(1, s.n_samples, d, generator=g, dtype=torch.float64)).expand(B, -1, -1)
    if s.initial_states is not None:
        x0 = torch.cat([x0, user_states(s.initial_states, batch, system, noise=float(s.initial_noise), generator=g)], 1)
    st = attractor_classes(settle(system, x0.contiguous(), p, horizon=float(s.horizon)),
                           tol=s.cluster_tol * float((hi - lo).norm()))
    cen = st.centroid                                        # (B, 2, d): class -1 (smaller sum), +1
    two = torch.isfinite(cen).all(-1).all(-1) & (st.n_attractors >= 2)
    cen = fixed_point_polish(system, torch.nan_to_num(cen), p)
    return cen[:, 0], cen[:, 1], two

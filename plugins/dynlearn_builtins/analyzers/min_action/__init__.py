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
found by simulating sampled states (polished by Newton), ordered so that ``start`` has the smaller coordinate sum.

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

from dynlearn.analyzer import Analyzer
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.sweep import Batch

from .string import geometric_action, gmam
from .._shared.attractors import attractor_classes, fixed_point_polish, settle

__all__ = ["MinAction"]

STATUS = ("ok", "single_attractor", "invalid_parameters", "not_converged")


class MinAction(Analyzer):
    """Minimum geometric-action path and action between two attractors of a flow (gMAM on a string).

    Parameters
    ----------
    n_nodes
        Nodes of the discretised path.
    iters, dt, tol
        Maximum gMAM iterations, pseudo-time step, convergence threshold on ``max |update| / dt``.
    bend
        Initial path: the straight segment plus ``bend * |end - start| * sin(pi alpha)`` along a random
        direction normal to it (breaks the symmetry that would keep e.g. Maier–Stein's path on the x axis).
    start, end
        End points (state vectors), or ``None`` to find the attractors by simulation.
    n_samples, horizon, cluster_tol
        Attractor search: sampled states, horizon in characteristic times, clustering tolerance (fraction of the
        domain diagonal).
    random_state
        Seed of the sampling and of the bend direction.
    """

    name: ClassVar[str] = "min_action"
    description: ClassVar[str] = "minimum geometric-action (Freidlin-Wentzell) transition path between attractors"
    kinds: ClassVar[tuple[str, ...]] = ("flow",)

    def __init__(self, n_nodes: int = 101, iters: int = 10000, dt: float = 0.01, tol: float = 1e-8,
                 bend: float = 0.1, start: list[float] | None = None, end: list[float] | None = None,
                 n_samples: int = 256, horizon: float = 30.0, cluster_tol: float = 0.02,
                 random_state: int = 0) -> None:
        self.n_nodes = n_nodes
        self.iters = iters
        self.dt = dt
        self.tol = tol
        self.bend = bend
        self.start = start
        self.end = end
        self.n_samples = n_samples
        self.horizon = horizon
        self.cluster_tol = cluster_tol
        self.random_state = random_state

    def _check(self, d: int) -> None:
        for key in ("n_nodes", "iters", "n_samples"):
            v = getattr(self, key)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (5 if key == "n_nodes" else 1):
                raise ParameterError(f"min_action: option {key!r} must be an integer >= "
                                     f"{5 if key == 'n_nodes' else 1}, got {v!r}")
        for key in ("dt", "tol", "horizon"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ParameterError(f"min_action: option {key!r} must be a positive number, got {v!r}")
        for key in ("start", "end"):
            v = getattr(self, key)
            if v is not None:
                arr = np.asarray(v, dtype=float)
                if arr.shape != (d,):
                    raise ShapeError(f"min_action: {key} must be a state of shape ({d},), got {arr.shape}")
                if not np.isfinite(arr).all():
                    raise ParameterError(f"min_action: {key} contains NaN or infinite values")
        if (self.start is None) != (self.end is None):
            raise ParameterError("min_action: give both start and end, or neither")

    def _endpoints(self, batch: Batch, p) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        system = batch.system
        B, d = batch.size, system.state_dim
        if self.start is not None:
            a = torch.as_tensor(np.asarray(self.start, float), dtype=torch.float64).expand(B, d).clone()
            b = torch.as_tensor(np.asarray(self.end, float), dtype=torch.float64).expand(B, d).clone()
            return a, b, torch.ones(B, dtype=torch.bool)
        g = torch.Generator().manual_seed(int(self.random_state))
        lo, hi = (torch.as_tensor(v, dtype=torch.float64) for v in system.domain())
        x0 = (lo + (hi - lo) * torch.rand(1, self.n_samples, d, generator=g, dtype=torch.float64)).expand(B, -1, -1)
        st = attractor_classes(settle(system, x0.contiguous(), p, horizon=float(self.horizon)),
                               tol=self.cluster_tol * float((hi - lo).norm()))
        cen = st.centroid                                        # (B, 2, d): class -1 (smaller sum), +1
        two = torch.isfinite(cen).all(-1).all(-1) & (st.n_attractors >= 2)
        cen = fixed_point_polish(system, torch.nan_to_num(cen), p)
        return cen[:, 0], cen[:, 1], two

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        B, d, n = batch.size, system.state_dim, int(self.n_nodes)
        self._check(d)
        p = system.expand_params(batch.params, 1)
        a, b, two = self._endpoints(batch, p)
        g = torch.Generator().manual_seed(int(self.random_state) + 1)
        alpha = torch.linspace(0, 1, n, dtype=torch.float64).view(1, n, 1)
        chord = b - a
        v = torch.randn(B, d, generator=g, dtype=torch.float64)
        v = v - (v * chord).sum(-1, keepdim=True) * chord / (chord * chord).sum(-1, keepdim=True).clamp_min(1e-300)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        init = a.unsqueeze(1) + alpha * chord.unsqueeze(1) + (
            self.bend * chord.norm(dim=-1).view(B, 1, 1) * torch.sin(torch.pi * alpha) * v.unsqueeze(1))
        path, used, change = gmam(system, p, a, b, init, iters=int(self.iters), dt=float(self.dt),
                                  tol=float(self.tol), show_progress=show_progress)
        action, cum = geometric_action(system, path, p)
        speed = system.rhs(path, p).norm(dim=-1)
        inner = speed[:, 1:-1]
        k = inner.argmin(1) + 1
        saddle = fixed_point_polish(system, path[torch.arange(B), k], batch.params)
        ok = two & batch.valid
        converged = change < self.tol
        status = torch.zeros(B, dtype=torch.int8)
        status = torch.where(~converged, torch.tensor(3, dtype=torch.int8), status)
        status = torch.where(~two, torch.tensor(1, dtype=torch.int8), status)
        status = torch.where(~batch.valid, torch.tensor(2, dtype=torch.int8), status)
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
            "status": X(status, (), attrs={"long_name": "path status", "flag_values": list(range(len(STATUS))),
                                           "flag_meanings": " ".join(STATUS), "units": "1"}),
        })
        return out

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        from .views import min_action_views

        return min_action_views(result)

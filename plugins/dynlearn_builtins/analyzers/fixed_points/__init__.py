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
   (which linger near slow regions), with noise;
2. Powell's dogleg trust-region minimisation of :math:`q` (Newton steps ``-J^{-1} g`` by batched
   ``torch.linalg.solve`` on the system's Jacobian, blended with steepest descent of :math:`q` where ``J`` is
   singular), stopping on a root or on a negligible trust-scaled change; states leaving the box are outliers;
3. roots are Newton-polished to the last bits; candidate minima are refined by Newton's method on
   :math:`\nabla q = J^\top g = 0` with the exact Hessian of :math:`q` (saddles of :math:`q` are dropped);
4. duplicates (closer than ``dedupe_tol`` times the box width) are merged keeping the lowest-:math:`q` copy;
5. optional warm start along an ordered dim (``epoch``): the points found at the neighbouring entries are used
   as extra starting states in a second batched pass;
6. classification by the Jacobian's eigenvalues: flows by :math:`\operatorname{Re}\lambda` vs 0, maps by
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
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.progress import Meter
from dynlearn.sweep import Batch

from .classify import TYPES
from .pipeline import PointSet, Settings, diagnose, find, merge
from .sampling import starting_states

__all__ = ["FixedPoints", "TYPES"]


class FixedPoints(dynlearn.Analyzer):
    """Fixed points and ghosts of a flow or map, for every entry of a sweep (see the module docstring).

    Parameters
    ----------
    n_starts
        Starting states per sweep entry.
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
        Ordered sweep dim along which the neighbours' points seed a second pass (ignored when absent).
    max_points
        Size cap of the ``point`` dim (fixed points first, then lowest q).
    landscape
        Store the speed ``|g|`` on a grid of the box (1-D: 201 points, 2-D: 41 x 41) for the views.
    chunk_size
        Sweep entries per batch (default: sized from ``n_starts`` and the state dimension).
    seed
        Seed of the starting states.
    """

    name = "fixed_points"
    description = "fixed points, slow points and ghosts with their stability, batched over every sweep dim"
    kinds = ("flow", "map")

    def __init__(self, n_starts: int = 64, trajectory_fraction: float = 0.5, trajectory_steps: int = 40,
                 noise: float = 0.01, bounds: list | None = None, margin: float = 0.1, max_iter: int = 200,
                 root_tol: float = 1e-10, dedupe_tol: float = 1e-6, neutral_tol: float = 1e-7,
                 slow_points: bool = True, slow_ratio: float = 0.5, passage_factor: float = 10.0,
                 passage_steps: int = 2000, linger_min: float = 2.0, warm_start: str | None = "epoch",
                 max_points: int = 32, landscape: bool = True, chunk_size: int | None = None, seed: int = 0) -> None:
        self.n_starts = n_starts
        self.trajectory_fraction = trajectory_fraction
        self.trajectory_steps = trajectory_steps
        self.noise = noise
        self.bounds = bounds
        self.margin = margin
        self.max_iter = max_iter
        self.root_tol = root_tol
        self.dedupe_tol = dedupe_tol
        self.neutral_tol = neutral_tol
        self.slow_points = slow_points
        self.slow_ratio = slow_ratio
        self.passage_factor = passage_factor
        self.passage_steps = passage_steps
        self.linger_min = linger_min
        self.warm_start = warm_start
        self.max_points = max_points
        self.landscape = landscape
        self.chunk_size = chunk_size
        self.seed = seed

    # -- input checks ---------------------------------------------------------------------------------------
    def _check(self, system) -> tuple[torch.Tensor, torch.Tensor]:
        for name in ("n_starts", "max_iter", "max_points", "passage_steps"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"fixed_points: {name} must be a positive integer, got {v!r}")
        if not 0 <= self.trajectory_fraction <= 1:
            raise ParameterError(f"fixed_points: trajectory_fraction must be in [0, 1], got {self.trajectory_fraction}")
        for name in ("root_tol", "dedupe_tol", "neutral_tol", "slow_ratio", "passage_factor", "linger_min"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ParameterError(f"fixed_points: {name} must be a finite number > 0, got {v!r}")
        if not (np.isfinite(self.margin) and self.margin >= 0) or not (np.isfinite(self.noise) and self.noise >= 0):
            raise ParameterError("fixed_points: margin and noise must be finite and >= 0")
        if self.bounds is None:
            lo, hi = system.domain()
        else:
            try:
                lo, hi = (np.broadcast_to(np.asarray(b, dtype=float), (system.state_dim,)) for b in self.bounds)
            except (ValueError, TypeError):
                raise ShapeError(f"fixed_points: bounds must be [low, high] with {system.state_dim} values each, "
                                 f"got {self.bounds!r}") from None
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
                raise ParameterError(f"fixed_points: bounds need finite low < high, got {self.bounds!r}")
        return (torch.as_tensor(np.array(lo, dtype=float), dtype=torch.float64),
                torch.as_tensor(np.array(hi, dtype=float), dtype=torch.float64))

    def work_size(self, batch: Batch) -> int:
        """Numbers in all starting states: starts x sweep elements x state dim (sets the threads)."""
        n = self.n_starts if isinstance(self.n_starts, (int, np.integer)) else 1
        return int(n) * batch.size * batch.system.state_dim

    def _settings(self, lo, hi) -> Settings:
        return Settings(lo, hi, self.margin, self.max_iter, self.root_tol, self.dedupe_tol, self.slow_points,
                        self.slow_ratio, self.max_points)

    # -- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        lo, hi = self._check(system)
        st = self._settings(lo, hi)
        d = system.state_dim
        B = batch.size
        n_par = sum(int(np.prod(v.shape[1:], dtype=np.int64)) for v in batch.params.values())
        chunk = self.chunk_size or max(1, int(4e6 // (self.n_starts * (d * d + 8 * d + n_par))))
        gen = torch.Generator().manual_seed(int(self.seed))
        warm = self.warm_start if self.warm_start in batch.dims and batch.shape[batch.dims.index(self.warm_start)] > 1 else None
        n_chunks = -(-B // chunk) * (3 if warm else 2)
        sets, typical = [], []
        with Meter(n_chunks, "fixed_points", show_progress, unit="chunk") as meter:
            for sl, p in batch.chunks(chunk):
                starts, typ = starting_states(system, p, self.n_starts, lo=lo, hi=hi,
                                              trajectory_fraction=self.trajectory_fraction,
                                              trajectory_steps=self.trajectory_steps, noise=self.noise, generator=gen)
                sets.append(find(system, p, starts, torch.ones(starts.shape[:2], dtype=torch.bool), typ, st))
                typical.append(typ)
                meter.update()
            points = _concat(sets)
            typical_t = torch.cat(typical)
            if warm:
                points = self._warm_pass(batch, points, typical_t, st, chunk, meter, warm)
            diags = []
            for sl, p in batch.chunks(chunk):
                sub = PointSet(*(getattr(points, f)[sl] for f in ("x", "q", "ginf", "root", "mask")))
                diags.append(diagnose(system, p, sub, st, neutral_tol=self.neutral_tol,
                                      passage_factor=self.passage_factor, passage_steps=self.passage_steps,
                                      linger_min=self.linger_min))
                meter.update()
        from .dataset import to_dataset

        ds = to_dataset(batch, diags, typical_t, st)
        if self.landscape and d <= 2:
            from .dataset import landscape

            ds = ds.merge(landscape(batch, lo, hi, chunk))
        ds.attrs["description"] = "fixed points, slow points and ghosts (dynlearn fixed_points analyzer)"
        ds.attrs["system_kind"] = system.kind
        ds.attrs["bounds_low"] = [float(v) for v in lo]
        ds.attrs["bounds_high"] = [float(v) for v in hi]
        return ds

    def _warm_pass(self, batch, points: PointSet, typical, st, chunk, meter, dim) -> PointSet:
        """Second pass: every entry starts from the points found at its neighbours along ``dim``."""
        axis = batch.dims.index(dim)
        shape = batch.shape
        P, d = points.size, points.x.shape[-1]
        x = points.x.reshape(*shape, P, d)
        m = points.mask.reshape(*shape, P)
        n = shape[axis]
        idx = torch.arange(n)
        extra_x, extra_m = [], []
        for shift in (1, -1):
            src = (idx - shift).clamp(0, n - 1)
            ok = ((idx - shift) >= 0) & ((idx - shift) < n)
            xs = x.index_select(axis, src)
            ms = m.index_select(axis, src) & ok.view(*([1] * axis), n, *([1] * (len(shape) - axis)))
            extra_x.append(xs.reshape(batch.size, P, d))
            extra_m.append(ms.reshape(batch.size, P))
        sx = torch.cat(extra_x, 1).nan_to_num(0.0)
        sm = torch.cat(extra_m, 1)
        sets = []
        for sl, p in batch.chunks(chunk):
            sets.append(find(batch.system, p, sx[sl], sm[sl], typical[sl], st))
            meter.update()
        return merge(points, _concat(sets), st)

    # -- views ------------------------------------------------------------------------------------------------
    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """holoviews objects: points vs the first sweep dim coloured by type, counts, speed landscape."""
        from .views import fixed_point_views

        return fixed_point_views(result)


def _concat(sets: list[PointSet]) -> PointSet:
    """Concatenate chunk point sets along the batch dim, padding the point dim."""
    P = max(s.size for s in sets)
    out = []
    for s in sets:
        pad = P - s.size
        if pad:
            B, _, d = s.x.shape
            s = PointSet(
                torch.cat([s.x, torch.full((B, pad, d), torch.nan, dtype=s.x.dtype)], 1),
                torch.cat([s.q, torch.full((B, pad), torch.inf, dtype=s.q.dtype)], 1),
                torch.cat([s.ginf, torch.full((B, pad), torch.inf, dtype=s.q.dtype)], 1),
                torch.cat([s.root, torch.zeros(B, pad, dtype=torch.bool)], 1),
                torch.cat([s.mask, torch.zeros(B, pad, dtype=torch.bool)], 1),
            )
        out.append(s)
    return PointSet(*(torch.cat([getattr(s, f) for s in out]) for f in ("x", "q", "ginf", "root", "mask")))

"""Basins of attraction and separatrices of any map or flow, batched over the sweep dims.

For every sweep element (e.g. several ``mu`` at once), :class:`Basins`

1. samples initial states in the domain box: a cell-centred grid for ``d <= 3`` (``resolution`` points per
   axis), a scrambled Sobol sequence beyond;
2. iterates the map (or integrates the flow with fixed-step RK4) for ``steps`` steps, all orbits of all sweep
   elements as one batch, in chunks, dropping orbits that leave ``|x|_inf <= max_norm`` (they are *diverged*);
3. identifies the attractors without being told them, from the orbits' tails: the recurrent cells of the graph of
   observed cell-to-cell steps, joined by dynamics and by adjacency (fixed points, continua of fixed points,
   cycles, chaotic sets; divergence to infinity is attractor 0), see ``_basins_attractors``;
4. labels each sample with its attractor (its basin), and reports basin fractions with Wilson intervals;
5. locates separatrix points by batched bisection between neighbouring samples of two different basins, down to
   the tolerance ``tol``.

Maths
-----
The basin of an attractor ``A`` is ``{x : dist(F^n(x), A) -> 0}``; a sample's label is a Monte-Carlo (Sobol)
or quadrature (grid) estimate of the indicator of its basin, so ``basin_fraction = count / n_samples``
estimates the basin's share of the box. The interval reported is the Wilson score interval
``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``, ``z = Phi^{-1}((1 + confidence)/2)`` (exact
coverage for random sampling; a guide for grids and Sobol points). For two neighbouring samples ``x0, x1`` in
basins ``i != j``, continuity of the segment ``[x0, x1]`` implies a boundary point on it; bisection halves the
bracket each round, so after ``ceil(log2(|x1 - x0| / 2 tol))`` rounds the boundary lies within ``tol`` of the
reported midpoint (for a boundary crossed once by the segment).

Examples
--------
>>> import dynlearn
>>> out = Basins(resolution=48, steps=300).run("two_factor", dynlearn.grid(mu=[0.5, 1.0]))
>>> out.label.dims
('mu', 'a', 'b')
>>> out.attractor_kind.sel(mu=0.5).values[:3].tolist()
['diverged', 'fixed_set', 'fixed_set']
>>> from dynlearn_builtins.systems.two_factor import ellipse_level
>>> import torch
>>> pts = out.boundary_state.sel(mu=1.0)
>>> on_div = (out.boundary_basin_a.sel(mu=1.0) == 0).values        # boundary with the diverged basin
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
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.progress import Meter
from dynlearn.sweep import Batch

from .attractors import TailAccumulator, identify
from .boundary import bisect, grid_pairs, knn_pairs, select_pairs
from dynlearn.stepper import default_chunk, evolve
from .table import describe, lyapunov, stability

__all__ = ["Basins"]

#: orbits per group of sweep elements processed together (bounds memory)
_GROUP_POINTS = 1 << 20


class Basins(Analyzer):
    """Basins of attraction, attractors and separatrix points of a map or flow (any dimension).

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
        Orbits leaving ``|x|_inf <= max_norm`` are diverged (attractor 0).
    cells
        Cells per axis of the box used to discretise the tails (attractors closer than ~1.5 cells merge).
    tol
        Bisection tolerance of the separatrix points (state units).
    max_boundary_points
        At most this many boundary points per sweep element (evenly spread over the candidate pairs).
    confidence
        Confidence level of the Wilson intervals on the basin fractions.
    lyapunov_steps, lyapunov_tol
        Steps of the largest-Lyapunov-exponent estimate; aperiodic attractors with an exponent above
        ``lyapunov_tol`` are ``chaotic``, the others ``quasi_periodic``.
    seed
        Seed of the Sobol scrambling.
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
    ``label`` (attractor index; 0 diverged, -1 undetermined), ``outcome``, ``escape_time``; per attractor
    (dim ``attractor``): ``attractor_kind``, ``attractor_state``, ``attractor_period``, ``attractor_lyapunov``,
    ``attractor_stable``, ``basin_count``, ``basin_fraction`` (+ ``_low`` / ``_high``); per boundary point
    (dim ``boundary_point``): ``boundary_state``, ``boundary_tolerance``, ``boundary_basin_a`` / ``_b``,
    ``boundary_mixed``. Every variable keeps all sweep dims.
    """

    name = "basins"
    description = "basins of attraction, attractors (fixed points, cycles, chaotic sets, divergence) and separatrix points"
    kinds = ("flow", "map")

    def __init__(self, resolution: int | list[int] | None = None, n_samples: int = 16384, sampling: str = "auto",
                 bounds: list[list[float]] | None = None, steps: int = 1000, dt: float = 0.05, tail: int = 32,
                 tail_every: int | None = None, max_norm: float = 1e6, cells: int = 200, tol: float = 1e-6,
                 max_boundary_points: int = 256, confidence: float = 0.95, lyapunov_steps: int = 1000,
                 lyapunov_tol: float = 0.01, seed: int = 0, precision: str = "float64", kernel: str = "auto",
                 chunk_size: int | None = None) -> None:
        self.resolution = resolution
        self.n_samples = n_samples
        self.sampling = sampling
        self.bounds = bounds
        self.steps = steps
        self.dt = dt
        self.tail = tail
        self.tail_every = tail_every
        self.max_norm = max_norm
        self.cells = cells
        self.tol = tol
        self.max_boundary_points = max_boundary_points
        self.confidence = confidence
        self.lyapunov_steps = lyapunov_steps
        self.lyapunov_tol = lyapunov_tol
        self.seed = seed
        self.precision = precision
        self.kernel = kernel
        self.chunk_size = chunk_size

    def dtype(self):
        return torch.float32 if self.precision == "float32" else torch.float64

    def work_size(self, batch: Batch) -> int:
        """Numbers in all orbits' states: samples x sweep elements x state dim (sets the threads)."""
        d = batch.system.state_dim
        use_grid = self.sampling == "grid" or (self.sampling == "auto" and d <= 3)
        try:
            if use_grid:
                res = self.resolution if self.resolution is not None else max(2, round(self.n_samples ** (1 / d)))
                n = int(np.prod(np.broadcast_to(np.asarray(res, dtype=np.int64), (d,))))
            else:
                n = int(self.n_samples)
        except (TypeError, ValueError, OverflowError):  # a bad option: analyze reports it
            n = 1
        return n * batch.size * d

    # -- setup -------------------------------------------------------------------------------------------------
    def _check(self, system) -> None:
        def bad(msg: str) -> ParameterError:
            return ParameterError(f"analyzer 'basins': {msg}")

        if self.precision not in ("float64", "float32"):
            raise bad(f"precision must be 'float64' or 'float32', got {self.precision!r}")
        if self.kernel not in ("auto", "generic"):
            raise bad(f"kernel must be 'auto' or 'generic', got {self.kernel!r}")
        if self.sampling not in ("auto", "grid", "sobol"):
            raise bad(f"sampling must be 'auto', 'grid' or 'sobol', got {self.sampling!r}")
        names = ("steps", "tail", "cells", "n_samples", "max_boundary_points", "lyapunov_steps")
        for name in names + (("chunk_size",) if self.chunk_size is not None else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise bad(f"{name} must be a positive integer, got {v!r}")
        for name in ("dt", "tol", "max_norm"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(f"{name} must be a finite number > 0, got {v!r}")
        if not 0 < self.confidence < 1:
            raise bad(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.tail < 2:
            raise bad(f"tail must be >= 2 (the attractors are found from consecutive tail states), got {self.tail}")
        if (self.tail - 1) * self._every(system) >= self.steps:
            raise bad(f"steps ({self.steps}) must exceed (tail - 1) * tail_every = "
                      f"{(self.tail - 1) * self._every(system)}")

    def _every(self, system) -> int:
        if self.tail_every is not None:
            if isinstance(self.tail_every, bool) or int(self.tail_every) != self.tail_every or self.tail_every < 1:
                raise ParameterError(f"analyzer 'basins': tail_every must be a positive integer, got {self.tail_every!r}")
            return int(self.tail_every)
        return max(1, round(0.5 / self.dt)) if system.kind == "flow" else 1

    def _box(self, system) -> tuple[np.ndarray, np.ndarray]:
        if self.bounds is None:
            return system.domain()
        b = np.asarray(self.bounds, dtype=float)
        if b.shape != (system.state_dim, 2):
            raise ShapeError(f"analyzer 'basins': bounds must have shape ({system.state_dim}, 2) "
                             f"([[lo, hi]] per state coordinate), got {b.shape}")
        if not np.isfinite(b).all() or not (b[:, 0] < b[:, 1]).all():
            raise ParameterError(f"analyzer 'basins': bounds must be finite with lo < hi, got {b.tolist()}")
        return b[:, 0].copy(), b[:, 1].copy()

    def _samples(self, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[int, ...] | None, np.ndarray]:
        d = len(lo)
        use_grid = self.sampling == "grid" or (self.sampling == "auto" and d <= 3)
        if not use_grid:
            from scipy.stats import qmc

            u = qmc.Sobol(d, scramble=True, seed=self.seed).random(self.n_samples)
            return None, lo + u * (hi - lo)
        res = self.resolution if self.resolution is not None else max(2, round(self.n_samples ** (1 / d)))
        res = np.broadcast_to(np.asarray(res), (d,))
        if not np.issubdtype(res.dtype, np.integer) or (res < 2).any():
            raise ParameterError(f"analyzer 'basins': resolution must be integers >= 2, got {self.resolution!r}")
        axes = [lo[i] + (np.arange(n) + 0.5) * (hi[i] - lo[i]) / n for i, n in enumerate(res)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
        return tuple(int(n) for n in res), pts

    # -- analysis ------------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        self._check(system)
        lo, hi = self._box(system)
        shape, X = self._samples(lo, hi)
        d, S, B = system.state_dim, len(X), batch.size
        flow = system.kind == "flow"
        every = self._every(system)
        width = (hi - lo) / self.cells
        ctx = dict(system=system, batch=batch, lo=lo, width=width, flow=flow, every=every)
        pairs = grid_pairs(shape) if shape else knn_pairs(X, 2 * d)
        Xt = torch.as_tensor(X, dtype=self.dtype())
        G = max(1, _GROUP_POINTS // S)
        parts = []
        n_chunks = sum(math.ceil(min(G, B - g0) * S / default_chunk(self.chunk_size)) for g0 in range(0, B, G))
        with Meter(n_chunks, "basins", show_progress, unit="chunk") as meter:
            for g0 in range(0, B, G):
                parts.append(self._group(ctx, Xt, pairs, range(g0, min(B, g0 + G)), meter))
        return self._assemble(ctx, shape, X, parts)

    def _evolve(self, ctx, x0, pidx, **kw):
        return evolve(ctx["system"], x0, ctx["batch"].params, pidx, steps=self.steps, dt=self.dt,
                      max_norm=self.max_norm, chunk_size=self.chunk_size, kernel=self.kernel, **kw)

    def _group(self, ctx, Xt: torch.Tensor, pairs: np.ndarray, elems: range, meter: Meter) -> list[dict]:
        system, batch, every = ctx["system"], ctx["batch"], ctx["every"]
        S, n_e, d = Xt.shape[0], len(elems), Xt.shape[1]
        acc = TailAccumulator(n_e, S, lo=ctx["lo"], width=ctx["width"], flow=ctx["flow"],
                              period_tol=1e-3 * float(ctx["width"].min()))
        record = tuple(self.steps - (self.tail - 1 - j) * every for j in range(self.tail))
        pidx = torch.arange(elems.start, elems.stop).repeat_interleave(S)
        ev = self._evolve(ctx, Xt.repeat(n_e, 1), pidx, record=record,
                          on_record=lambda i, t: acc.add(i, t), meter=meter)
        code = ev.outcome.numpy().reshape(n_e, S)
        finals = ev.final.numpy().reshape(n_e, S, d)
        found = [identify(acc.graph(e), code[e]) for e in range(n_e)]  # graph analysis is per sweep element
        period_unit = every * self.dt if ctx["flow"] else 1.0
        tables = [describe(f, finals[e], acc.settled[e], acc.period[e], ctx["width"], flow=ctx["flow"],
                           period_unit=period_unit)
                  for e, f in enumerate(found)]
        # batched Lyapunov exponents and stability of every attractor of the group
        owner = np.concatenate([np.full(f.n_attractors, elems.start + e, dtype=np.int64) for e, f in enumerate(found)])
        states = torch.as_tensor(np.concatenate([t[1] for t in tables]), dtype=Xt.dtype)
        params = {k: v[torch.as_tensor(owner)] for k, v in batch.params.items()}
        lyap = lyapunov(system, states, params, steps=self.lyapunov_steps, dt=self.dt).numpy()
        kinds = [k for t in tables for k in t[0]]
        kinds = [k or ("chaotic" if lam > self.lyapunov_tol else "quasi_periodic") for k, lam in zip(kinds, lyap)]
        stable = stability(system, states, params, kinds, np.concatenate([t[2] for t in tables]))
        # boundary brackets of every element, bisected together
        x0s, x1s, l0s, l1s, els = [], [], [], [], []
        off = 0
        for e, f in enumerate(found):
            K = f.n_attractors
            eligible = np.concatenate([[True], stable[off : off + K]])
            off += K
            sel = select_pairs(pairs, f.labels, eligible, self.max_boundary_points)
            i0, i1 = sel[:, 0], sel[:, 1]  # labels[i0] < labels[i1]
            x0s.append(Xt[torch.as_tensor(i0)])
            x1s.append(Xt[torch.as_tensor(i1)])
            l0s.append(f.labels[i0])
            l1s.append(f.labels[i1])
            els.append(np.full(len(sel), elems.start + e, dtype=np.int64))
        el = np.concatenate(els)

        def classify(x: torch.Tensor, elem: torch.Tensor) -> np.ndarray:
            out = self._evolve(ctx, x, elem)
            cells = acc.cells(out.final.numpy())
            lab = np.full(len(elem), -1, dtype=np.int64)
            e_np = elem.numpy()
            for e in np.unique(e_np):  # per sweep element lookup (the evolution above is batched)
                m = e_np == e
                lab[m] = found[e - elems.start].classify(cells[m], out.outcome.numpy()[m])
            return lab

        # k-section with 2^m - 1 points per bracket and round: about 4096 states per round and sweep element
        m = int(np.clip(math.floor(math.log2(4096 / self.max_boundary_points + 1)), 1, 4))
        br = bisect(classify, torch.cat(x0s), torch.cat(x1s), np.concatenate(l0s), np.concatenate(l1s),
                    torch.as_tensor(el), self.tol, bits_per_round=m)
        out, off = [], 0
        for e, f in enumerate(found):
            K = f.n_attractors
            m = el == elems.start + e
            out.append(dict(
                labels=f.labels, code=code[e], escape=ev.escape.numpy().reshape(n_e, S)[e],
                kinds=["diverged", *kinds[off : off + K]], states=tables[e][1], period=tables[e][2],
                lyap=lyap[off : off + K], stable=np.concatenate([[True], stable[off : off + K]]),
                b_state=br.point[torch.as_tensor(m)].numpy(), b_tol=br.tolerance[torch.as_tensor(m)].numpy(),
                b_mixed=br.mixed[m], b_a=np.concatenate(l0s)[m], b_b=br.other[m],
            ))
            off += K
        return out

    # -- output ---------------------------------------------------------------------------------------------------
    def _assemble(self, ctx, shape, X: np.ndarray, parts: list[list[dict]]) -> xr.Dataset:
        from .output import assemble

        rows = [r for part in parts for r in part]
        return assemble(self, ctx, shape, X, rows)

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``basins``: basin image (grids; a middle slice in 3-D) with boundary points and declared manifolds;
        ``fractions``: basin fractions with their Wilson intervals."""
        from .views import views

        return views(result)


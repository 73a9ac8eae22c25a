r"""Separatrices as zero sets of neural Koopman eigenfunctions (Dabholkar & Barak), and optimal perturbations.

For a flow :math:`\dot x = f(x)` with two attractors, a Koopman eigenfunction with a real eigenvalue
:math:`\lambda > 0`,

.. math:: \nabla\phi(x)\cdot f(x) = \lambda\,\phi(x) \qquad(\text{maps: } \phi(F(x)) = \lambda\,\phi(x),\ \lambda>1),

grows like :math:`e^{\lambda t}` (:math:`\lambda^k`) along every trajectory not on the separatrix, so it must vanish
exactly on the separatrix and change sign across it. The analyzer learns the *squashed* eigenfunction
:math:`\psi = \phi/\sqrt{1+\phi^2} \in (-1, 1)`, which obeys

.. math:: \nabla\psi\cdot f = \lambda(\psi - \psi^3), \qquad
          \psi(F(x)) = g_\lambda(\psi(x)) = \frac{\lambda\psi}{\sqrt{1 + (\lambda^2-1)\psi^2}},

is bounded (the divergence of :math:`\phi` near attractors, or of a map's orbits to infinity, becomes
:math:`\psi\to\pm1`), and equals :math:`\pm 1` on the two attractors. Example: for :math:`x' = x - x^3,\ y'=-y`,
:math:`\psi(x, y) = x` solves the squashed equation with :math:`\lambda = 1` exactly.

Pipeline (batched over every sweep element; see the private ``_koopman_*`` modules):

1. simulate sampled states to find the two classes: two attractors, or bounded vs diverged for maps;
2. train a small tanh MLP per sweep element on the eigen-equation residual normalised by its value against
   shuffled samples (so :math:`\psi \equiv` const cannot win), with :math:`\nabla\psi\cdot f` by forward-mode
   differentiation, maps over ``map_steps`` iterations (:math:`g_\lambda^k = g_{\lambda^k}`), plus anchors
   :math:`\psi = \pm 1` at the attractors; :math:`\lambda` learned (flows) or selected among candidates (maps);
3. validate against simulation: along random curves between the classes, the first crossing of the simulated
   basin label vs the first sign change of :math:`\psi` (R², distances); the best eigenvalue candidate wins;
4. locate the zero set (bisection along segments joining samples of opposite sign, Newton projection), evaluate
   :math:`\psi` on a grid (state dim ≤ 3), and find the smallest perturbation :math:`\delta` moving chosen
   states onto the zero set (:math:`\min|\delta|` s.t. :math:`\psi(x_0+\delta)=0`), checked by simulating
   :math:`x_0 + (1\pm\epsilon)\delta`;
5. polish the zero-set points by simulation (``polish``): along :math:`\psi`'s normal through each point the
   change of the simulated class is bisected, so the returned ``separatrix`` is accurate to the bracket whatever
   :math:`\psi`'s training noise; :math:`\psi`'s own points (``separatrix_psi``) and its error along the normal
   (``polish_shift``) are reported beside it.

Along an ordered sweep dim (``warm_start``, default ``epoch``) each slice starts from the previous slice's
networks, so the separatrix is followed through training.

References
----------
K. V. Dabholkar, O. Barak, *Finding separatrices of dynamical flows with deep Koopman eigenfunctions*,
arXiv:2505.15231 (2025).

Examples
--------
>>> import dynlearn
>>> an = KoopmanSeparatrix(steps=400, lr=0.02, width=16, batch_size=256, n_samples=128, n_curves=16,
...                        n_perturb=2, n_points=64, n_candidates=512, grid_size=0, random_state=0)
>>> out = an.run("bistable", dynlearn.grid(a=[0.0]), show_progress=False)
>>> out.separatrix.dims
('a', 'point', 'state')
>>> bool(abs(out.separatrix.sel(state="x")).max() < 1e-3)    # the separatrix is x = 0 (polished)
True
>>> bool(abs(out.separatrix_psi.sel(state="x")).max() < 0.15)    # psi's own zero set (measured: 0.03)
True
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
from dynlearn.threads import torch_threads

from .fit import Fitted, fit_batch
from .train import TrainConfig

__all__ = ["KoopmanSeparatrix"]


class KoopmanSeparatrix(Analyzer):
    """Separatrix finder: zero set of a learned Koopman eigenfunction; smallest perturbations across it.

    Parameters
    ----------
    width, depth
        Hidden width and number of tanh layers of each network.
    steps, batch_size, lr
        Adam steps, states per step, initial learning rate (cosine decay to 2%).
    eigenvalue
        ``None`` (default: learned for flows; candidates ``[2, 4, 8]`` for maps), a number (fixed), ``"learn"``,
        or a list of fixed candidates trained side by side, the best per sweep element kept by validation.
    eigenvalue_init
        Starting value of a learned eigenvalue.
    map_steps
        Maps: iterations ``k`` in the residual ``psi(F^k x) - g_{lambda^k}(psi(x))``.
    anchor_weight, balance_weight, sign_weight
        Weights of the attractor anchors ``psi = +-1``, of the reference code's balance term, and of the sign
        term ``relu(-label psi(x0))^2`` on the simulated samples (only wrong-side samples count; ``None``: 1 with
        boundary sampling, else 0).
    boundary, n_boundary, boundary_noise, boundary_copies
        Boundary sampling (``None``: on for state dimension > 3, where uniform samples miss the separatrix): along
        ``n_boundary`` random curves between the two classes the simulated class change is bisected (2^-12 of
        the curve); the two bracket ends and ``boundary_copies`` states around each crossing (random offsets up
        to ``boundary_noise`` times the largest box side) are simulated and join the sign term, the anchors
        (their final states) and the residual samples (their trajectories). See :mod:`.adapt`.
    active_rounds, n_active, trajectory_labels
        Active learning (``None``: 2 rounds with boundary sampling, else 0): training pauses ``active_rounds``
        times in its first 60%, and the ``n_active`` states with the smallest ``|psi|`` among uniform candidates
        are labelled by simulation and join the sign term. ``trajectory_labels``: the states along the boundary
        trajectories join the sign term too, labelled with their start's class (off: no gain measured).
    trajectory_fraction, refine_fraction, refine_start
        Fractions of each batch drawn from simulated trajectories and near the current zero set (after
        ``refine_start`` of the steps).
    n_samples, horizon, cluster_tol
        Sampled states simulated to find the attractors; horizon in characteristic times (flows) or iterations
        (maps), ``None``: 30 / 200; clustering distance as a fraction of the domain diagonal.
    n_points, n_candidates, grid_size
        Separatrix points returned, random candidates they are found from, grid points per axis for ``psi``
        (``None``: 201 / 101 / 41 in 1/2/3-D, ``0``: no grid; never above 3-D).
    n_curves
        Random curves used for validation.
    n_perturb, perturb_margin
        States perturbed across the separatrix (the two attractors, then sampled states) and the relative margin
        of the simulated check.
    polish, polish_radius
        Polish psi's zero-set points by simulation (default on): the simulated class change along psi's normal is
        bisected on a segment of half-length ``polish_radius`` times the largest box side (then 4 times that for
        the points not bracketed; see :mod:`.polish`).
    warm_start, warm_steps
        Ordered sweep dim along which networks are warm-started, and the steps for each later slice
        (``None``: ``steps // 3``).
    train_dtype
        ``"float32"`` (training) or ``"float64"``; locating and validation always run in float64.
    threads
        torch intra-op threads while analysing (``None``: leave as is). The networks are small: extra threads gain
        little and lose a lot on a busy machine (default 1).
    random_state
        Seed of every random draw.

    Attributes
    ----------
    result_ : xr.Dataset
        The last result (after :meth:`fit`).
    """

    name: ClassVar[str] = "koopman_separatrix"
    description: ClassVar[str] = "separatrix as the zero set of a neural Koopman eigenfunction; optimal perturbations"
    kinds: ClassVar[tuple[str, ...]] = ("flow", "map")

    def __init__(self, width: int = 32, depth: int = 2, steps: int = 3000, batch_size: int = 512, lr: float = 1e-2,
                 eigenvalue: float | str | list[float] | None = None, eigenvalue_init: float | None = None,
                 map_steps: int = 4, balance_sampling: bool = True, anchor_weight: float = 1.0, balance_weight: float = 0.0,
                 trajectory_fraction: float = 0.2, refine_fraction: float = 0.3, refine_start: float = 0.5,
                 n_samples: int = 512, horizon: float | None = None, cluster_tol: float = 0.02,
                 n_points: int = 256, n_candidates: int = 2048, grid_size: int | None = None, n_curves: int = 64,
                 n_perturb: int = 8, perturb_margin: float = 0.01, warm_start: str | None = "epoch",
                 select_fraction: float = 0.3, warm_steps: int | None = None, train_dtype: str = "float32",
                 threads: int | None = 1, sign_weight: float | None = None, boundary: bool | None = None,
                 n_boundary: int = 32, boundary_noise: float = 0.05, boundary_copies: int = 6,
                 active_rounds: int | None = None, n_active: int = 128, trajectory_labels: bool = False,
                 polish: bool = True, polish_radius: float = 0.05, random_state: int = 0) -> None:
        self.width = width
        self.depth = depth
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.eigenvalue = eigenvalue
        self.eigenvalue_init = eigenvalue_init
        self.map_steps = map_steps
        self.balance_sampling = balance_sampling
        self.anchor_weight = anchor_weight
        self.balance_weight = balance_weight
        self.trajectory_fraction = trajectory_fraction
        self.refine_fraction = refine_fraction
        self.refine_start = refine_start
        self.n_samples = n_samples
        self.horizon = horizon
        self.cluster_tol = cluster_tol
        self.n_points = n_points
        self.n_candidates = n_candidates
        self.grid_size = grid_size
        self.n_curves = n_curves
        self.n_perturb = n_perturb
        self.perturb_margin = perturb_margin
        self.warm_start = warm_start
        self.select_fraction = select_fraction
        self.warm_steps = warm_steps
        self.train_dtype = train_dtype
        self.threads = threads
        self.sign_weight = sign_weight
        self.boundary = boundary
        self.n_boundary = n_boundary
        self.boundary_noise = boundary_noise
        self.boundary_copies = boundary_copies
        self.active_rounds = active_rounds
        self.n_active = n_active
        self.trajectory_labels = trajectory_labels
        self.polish = polish
        self.polish_radius = polish_radius
        self.random_state = random_state

    # -- option resolution --------------------------------------------------------------------------------------
    def _check(self) -> None:
        for key in ("width", "depth", "steps", "batch_size", "n_samples", "n_points", "n_candidates", "n_curves",
                    "map_steps", "n_boundary", "boundary_copies", "n_active"):
            v = getattr(self, key)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"koopman_separatrix: option {key!r} must be a positive integer, got {v!r}")
        for key in ("trajectory_fraction", "refine_fraction", "refine_start", "select_fraction"):
            v = getattr(self, key)
            if not 0 <= v <= 1:
                raise ParameterError(f"koopman_separatrix: option {key!r} must be in [0, 1], got {v!r}")
        if self.trajectory_fraction + self.refine_fraction >= 1:
            raise ParameterError("koopman_separatrix: trajectory_fraction + refine_fraction must be < 1")
        if self.train_dtype not in ("float32", "float64"):
            raise ParameterError(f"koopman_separatrix: train_dtype must be 'float32' or 'float64', got {self.train_dtype!r}")
        if self.threads is not None and (not isinstance(self.threads, (int, np.integer)) or self.threads < 1):
            raise ParameterError(f"koopman_separatrix: threads must be a positive integer or None, got {self.threads!r}")
        if self.sign_weight is not None and not (np.isfinite(self.sign_weight) and self.sign_weight >= 0):
            raise ParameterError(f"koopman_separatrix: sign_weight must be >= 0 or None, got {self.sign_weight!r}")
        r = self.active_rounds
        if r is not None and (not isinstance(r, (int, np.integer)) or isinstance(r, bool) or r < 0):
            raise ParameterError(f"koopman_separatrix: active_rounds must be an integer >= 0 or None, got {r!r}")
        if not (np.isfinite(self.boundary_noise) and self.boundary_noise >= 0):
            raise ParameterError(f"koopman_separatrix: boundary_noise must be >= 0, got {self.boundary_noise!r}")
        if not isinstance(self.polish, (bool, np.bool_)):
            raise ParameterError(f"koopman_separatrix: polish must be True or False, got {self.polish!r}")
        pr = self.polish_radius
        if not (isinstance(pr, (int, float)) and not isinstance(pr, bool) and np.isfinite(pr) and 0 < pr <= 1):
            raise ParameterError(f"koopman_separatrix: polish_radius must be in (0, 1], got {pr!r}")
        if not (isinstance(self.lr, (int, float)) and np.isfinite(self.lr) and self.lr > 0):
            raise ParameterError(f"koopman_separatrix: lr must be a positive number, got {self.lr!r}")

    def dtype_name(self) -> str:
        return self.train_dtype

    def _candidates(self, system) -> list[float]:
        ev = self.eigenvalue
        low = 0.0 if system.kind == "flow" else 1.0
        if ev is None:
            ev = "learn"
        if isinstance(ev, str):
            if ev != "learn":
                raise ParameterError(f"koopman_separatrix: eigenvalue must be a number, a list or 'learn', got {ev!r}")
            if not self._eigenvalue_init(system) > low:
                raise ParameterError(f"koopman_separatrix: eigenvalue_init must be > {low:g} for a {system.kind}")
            return [float("nan")]
        vals = [ev] if np.ndim(ev) == 0 else list(ev)
        for v in vals:
            if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > low):
                kind = "flows need lambda > 0" if system.kind == "flow" else "maps need lambda > 1"
                raise ParameterError(f"koopman_separatrix: eigenvalue {v!r} is invalid ({kind})")
        return [float(v) for v in vals]

    def _eigenvalue_init(self, system) -> float:
        if self.eigenvalue_init is None:
            return 1.0 if system.kind == "flow" else 2.0
        return float(self.eigenvalue_init)

    def _horizon(self, system) -> float:
        if self.horizon is not None:
            if not self.horizon > 0:
                raise ParameterError(f"koopman_separatrix: horizon must be > 0, got {self.horizon!r}")
            return float(self.horizon)
        return 30.0 if system.kind == "flow" else 200.0

    def _grid_size(self, d: int) -> int:
        if d > 3:
            return 0
        if self.grid_size is None:
            return {1: 201, 2: 101, 3: 41}[d]
        return int(self.grid_size)

    def _boundary(self, system) -> bool:
        """Boundary sampling on? (``boundary=None``: for state dimension > 3)."""
        from .adapt import auto_adaptive

        return auto_adaptive(self.boundary, system.state_dim)

    def _sign_weight(self, system) -> float:
        """``sign_weight=None``: 1 with boundary sampling (its labelled states act through the sign term), else 0."""
        if self.sign_weight is not None:
            return float(self.sign_weight)
        return 1.0 if self._boundary(system) else 0.0

    def _active_stops(self, system, steps: int) -> list[int]:
        """Steps after which psi's zero set is labelled by simulation (``active_rounds=None``: 2 with boundary
        sampling, else 0), evenly spaced in the first 60% of the steps."""
        rounds = self.active_rounds if self.active_rounds is not None else (2 if self._boundary(system) else 0)
        stops = sorted({int(round(0.6 * steps * (r + 1) / rounds)) for r in range(rounds)} - {0, steps})
        return stops

    def _warm_steps(self) -> int:
        return int(self.warm_steps) if self.warm_steps is not None else max(1, self.steps // 3)

    def _warm_order(self, batch: Batch) -> list[torch.Tensor] | None:
        """Index groups of the flat batch, one per position along the warm-start dim (in order)."""
        if not self.warm_start or self.warm_start not in batch.dims:
            return None
        axis = batch.dims.index(self.warm_start)
        pos = np.indices(batch.shape)[axis].reshape(-1)
        return [torch.as_tensor(np.nonzero(pos == e)[0]) for e in range(batch.shape[axis])]

    def _train_config(self, system) -> TrainConfig:
        learn = any(np.isnan(c) for c in self._candidates(system))
        return TrainConfig(steps=int(self.steps), batch_size=int(self.batch_size), lr=float(self.lr),
                           learn_eigenvalue=learn, anchor_weight=float(self.anchor_weight),
                           balance_weight=float(self.balance_weight),
                           trajectory_fraction=float(self.trajectory_fraction),
                           refine_fraction=float(self.refine_fraction), refine_start=float(self.refine_start),
                           log_every=max(1, int(self.steps) // 100), map_steps=int(self.map_steps),
                           balance_sampling=bool(self.balance_sampling), sign_weight=self._sign_weight(system),
                           n_anchor=256 if self._boundary(system) else 128)

    # -- scikit-learn style ----------------------------------------------------------------------------------------
    def fit(self, source: Any, params: Any = None, *, show_progress: bool | None = None) -> "KoopmanSeparatrix":
        """Train the eigenfunctions on ``source`` (System / name / run / store) over the sweep ``params``."""
        self.result_ = self.run(source, params, show_progress=show_progress)
        return self

    def transform(self, states: Any) -> xr.Dataset:
        """``psi`` of every fitted sweep element at ``states`` (array ``(m, d)``): Dataset with dims
        ``(*sweep, sample)``."""
        self._check_fitted()
        x = self._states(states)
        batch = self.batch_
        with torch.no_grad():
            vals = self.fitted_.net(x.unsqueeze(0).expand(batch.size, -1, -1).contiguous())
        vals = torch.where(self.fitted_.active.unsqueeze(1), vals, torch.nan)
        psi = batch.to_xarray(vals, ("sample",), attrs={"long_name": "Koopman eigenfunction psi", "units": "1"})
        return xr.Dataset({"psi": psi})

    def optimal_perturbation(self, states: Any) -> xr.Dataset:
        """Smallest perturbations moving ``states`` (``(m, d)``) onto psi's zero set, checked by simulation."""
        from .output import perturbation_dataset

        self._check_fitted()
        x = self._states(states)
        sep = torch.as_tensor(self.result_["separatrix_psi"].values.reshape(self.batch_.size, -1, x.shape[-1]))
        system = self.batch_.system
        p64 = system.expand_params(self.batch_.params, 1)
        return perturbation_dataset(self, x, p64, system, self.fitted_, sep, self.batch_)

    def _states(self, states: Any) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(states, dtype=float), dtype=torch.float64)
        d = self.batch_.system.state_dim
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != d:
            raise ShapeError(f"koopman_separatrix: states must have shape (m, {d}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ParameterError("koopman_separatrix: states contain NaN or infinite values")
        return x

    def _check_fitted(self) -> None:
        if not hasattr(self, "fitted_"):
            raise ParameterError("koopman_separatrix: call fit() (or run()) before transform/optimal_perturbation")

    # -- Analyzer entry -------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        from .output import build_dataset

        self._check()
        with torch_threads(self.threads):
            fitted: Fitted = fit_batch(self, batch, show_progress)
            g = torch.Generator().manual_seed(int(self.random_state) + 1)
            out = build_dataset(self, batch, fitted, g)
        self.fitted_, self.batch_, self.result_ = fitted, batch, out
        return out

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        from .views import koopman_views

        return koopman_views(result)

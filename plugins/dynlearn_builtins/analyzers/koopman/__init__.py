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

Pipeline (batched over every sweep element; see the modules of this folder):

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
...                        n_perturb=2, n_points=64, n_candidates=512, grid_size=0, seed=0)
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
from dynlearn.params import Param
from dynlearn.sweep import Batch

from . import options as opt
from .fit import Fitted, fit_batch
from .options import OPTIONS

__all__ = ["KoopmanSeparatrix"]


class KoopmanSeparatrix(Analyzer):
    """Separatrix finder: zero set of a learned Koopman eigenfunction; smallest perturbations across it.

    Options (``KoopmanSeparatrix.options``, declared in :mod:`.options`; validated when the analyzer is made):

    Parameters
    ----------
    width, depth
        Hidden width and number of tanh layers of each network.
    steps, batch_size, lr
        Adam steps, states per step, initial learning rate (cosine decay to 2%).
    eigenvalue
        ``None`` (default: learned), a number (fixed), ``"learn"``, or a list of fixed candidates trained side by
        side, the best per sweep element kept by validation (flows need ``lambda > 0``, maps ``lambda > 1``).
    eigenvalue_init
        Starting value of a learned eigenvalue (``None``: 1 for flows, 2 for maps).
    map_steps
        Maps: iterations ``k`` in the residual ``psi(F^k x) - g_{lambda^k}(psi(x))``.
    balance_sampling
        Draw the uniform states of each batch so that both signs of ``psi`` are equally represented.
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
        ``refine_start`` of the steps); the two fractions add up to less than 1.
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
    warm_start, select_fraction, warm_steps
        Ordered sweep dim along which networks are warm-started; the fraction of the steps every eigenvalue
        candidate trains before the best one continues alone; the steps of each later slice (``None``:
        ``steps // 3``).
    precision
        ``"float32"`` (training) or ``"float64"``; locating and validation always run in float64.
    threads
        torch intra-op threads while analysing (default 1: the networks are small, extra threads gain little and
        lose a lot on a busy machine; ``None``: chosen from the problem size).
    seed
        Seed of every random draw.

    Attributes
    ----------
    result_ : xr.Dataset
        The last result (after :meth:`fit` or :meth:`run`).
    fitted_, batch_
        The fitted networks and the sweep they were fitted on (used by :meth:`transform` and
        :meth:`optimal_perturbation`).
    """

    name: ClassVar[str] = "koopman_separatrix"
    description: ClassVar[str] = "separatrix as the zero set of a neural Koopman eigenfunction; optimal perturbations"
    kinds: ClassVar[tuple[str, ...]] = ("flow", "map")
    options: ClassVar[dict[str, Param]] = OPTIONS

    # -- scikit-learn style ----------------------------------------------------------------------------------------
    def fit(self, source: Any, params: Any = None, *, show_progress: bool | None = None) -> "KoopmanSeparatrix":
        """Train the eigenfunctions on ``source`` (System / name / run / store) over the sweep ``params``."""
        self.result_ = self.run(source, params, show_progress=show_progress)
        return self

    def transform(self, states: Any) -> xr.Dataset:
        """``psi`` of every fitted sweep element at ``states`` (array ``(m, d)``): Dataset with dims
        ``(*sweep, sample)``."""
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

        x = self._states(states)
        sep = torch.as_tensor(self.result_["separatrix_psi"].values.reshape(self.batch_.size, -1, x.shape[-1]))
        system = self.batch_.system
        p64 = system.expand_params(self.batch_.params, 1)
        return perturbation_dataset(self.settings, x, p64, system, self.fitted_, sep, self.batch_)

    def _states(self, states: Any) -> torch.Tensor:
        """``states`` as a float64 ``(m, d)`` tensor (after checking that the analyzer is fitted)."""
        if "fitted_" not in self.__dict__:
            raise ParameterError("koopman_separatrix: call fit() (or run()) before transform/optimal_perturbation")
        x = torch.as_tensor(np.asarray(states, dtype=float), dtype=torch.float64)
        d = self.batch_.system.state_dim
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != d:
            raise ShapeError(f"koopman_separatrix: states must have shape (m, {d}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ParameterError("koopman_separatrix: states contain NaN or infinite values")
        return x

    # -- Analyzer entry -------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        from .output import build_dataset

        s = self.settings
        opt.check(s, batch.system)
        fitted: Fitted = fit_batch(s, batch, show_progress)
        out = build_dataset(s, batch, fitted, torch.Generator().manual_seed(int(s.seed) + 1))
        self.fitted_, self.batch_, self.result_ = fitted, batch, out
        return out

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        from .views import koopman_views

        return koopman_views(result)

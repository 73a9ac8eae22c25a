"""The options of ``koopman_separatrix`` (declared :class:`~dynlearn.params.Param`) and what follows from them.

:data:`OPTIONS` is validated once into the analyzer's frozen ``settings`` (kind, range, ``None`` where it means
"automatic"). The checks that need the system (the eigenvalue's domain depends on flow vs map) are
:func:`check`, run at the start of ``analyze``; the automatic values (``None``) are resolved by the small functions
below, each a function of the settings and the system.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from dynlearn.analyzer import THREADS
from dynlearn.errors import ParameterError
from dynlearn.params import Param, Settings
from dynlearn.sweep import Batch

from .._shared.states import state_options
from .train import TrainConfig

__all__ = ["OPTIONS", "check", "candidates", "eigenvalue_init", "horizon", "grid_size", "boundary",
           "sign_weight", "active_stops", "warm_steps", "warm_order", "train_config"]

_POS_INT = dict(kind="int", low=1)
_FRACTION = dict(low=0, high=1)
_NONNEG = dict(low=0)

OPTIONS: dict[str, Param] = {
    "width": Param(32, **_POS_INT, description="hidden width of each network"),
    "depth": Param(2, **_POS_INT, description="tanh layers of each network"),
    "steps": Param(3000, **_POS_INT, description="Adam steps"),
    "batch_size": Param(512, **_POS_INT, description="states per Adam step"),
    "lr": Param(1e-2, low=0, low_inclusive=False, description="initial learning rate (cosine decay to 2%)"),
    "eigenvalue": Param(None, kind="any", nullable=True,
                        description="None (learned for flows), a number (fixed), 'learn', or a list of fixed "
                                    "candidates trained side by side"),
    "eigenvalue_init": Param(None, nullable=True,
                             description="starting value of a learned eigenvalue (None: 1 for flows, 2 for maps)"),
    "map_steps": Param(4, **_POS_INT, description="maps: iterations k in the residual psi(F^k x) - g(psi(x))"),
    "balance_sampling": Param(True, kind="bool",
                              description="draw the uniform states so that both signs of psi are equally "
                                          "represented"),
    "anchor_weight": Param(1.0, **_NONNEG, description="weight of the attractor anchors psi = +-1"),
    "balance_weight": Param(0.0, **_NONNEG, description="weight of the reference code's balance term"),
    "trajectory_fraction": Param(0.2, **_FRACTION, description="fraction of each batch drawn from simulated "
                                                               "trajectories"),
    "refine_fraction": Param(0.3, **_FRACTION, description="fraction of each batch drawn near the current zero set"),
    "refine_start": Param(0.5, **_FRACTION, description="fraction of the steps after which refinement starts"),
    "n_samples": Param(512, **_POS_INT, description="sampled states simulated to find the attractors"),
    **state_options("simulated with the n_samples uniform ones (they find the attractors and seed the training "
                    "states)"),
    "horizon": Param(None, low=0, low_inclusive=False, nullable=True,
                     description="simulated time in characteristic times (flows) or iterations (maps) "
                                 "(None: 30 / 200)"),
    "cluster_tol": Param(0.02, low=0, low_inclusive=False,
                         description="clustering distance of final states", units="domain diagonals"),
    "n_points": Param(256, **_POS_INT, description="separatrix points returned"),
    "n_candidates": Param(2048, **_POS_INT, description="random candidates the separatrix points are found from"),
    "grid_size": Param(None, kind="int", low=0, nullable=True,
                       description="grid points per axis for psi (None: 201 / 101 / 41 in 1/2/3-D; 0: no grid; "
                                   "never above 3-D)"),
    "n_curves": Param(64, **_POS_INT, description="random curves of the validation"),
    "n_perturb": Param(8, **_POS_INT, description="states perturbed across the separatrix (the two attractors, "
                                                  "then sampled states)"),
    "perturb_margin": Param(0.01, low=0, high=1, low_inclusive=False, high_inclusive=False,
                            description="relative margin of the simulated check of a perturbation"),
    "warm_start": Param("epoch", kind="str", nullable=True,
                        description="ordered sweep dim along which networks are warm-started (None: none)"),
    "select_fraction": Param(0.3, **_FRACTION, description="fraction of the steps every eigenvalue candidate "
                                                           "trains before the best one continues"),
    "warm_steps": Param(None, **_POS_INT, nullable=True,
                        description="steps of each later slice of the warm-start dim (None: steps // 3)"),
    "precision": Param("float32", kind="str", choices=("float32", "float64"),
                       description="float dtype of the training (locating and validation run in float64)"),
    "sign_weight": Param(None, **_NONNEG, nullable=True,
                         description="weight of the sign term relu(-label psi(x0))^2 (None: 1 with boundary "
                                     "sampling, else 0)"),
    "boundary": Param(None, kind="bool", nullable=True,
                      description="boundary sampling (None: on for state dimension > 3)"),
    "n_boundary": Param(32, **_POS_INT, description="curves along which boundary states are bracketed"),
    "boundary_noise": Param(0.05, **_NONNEG, description="largest offset of the states around each crossing",
                            units="largest box side"),
    "boundary_copies": Param(6, **_POS_INT, description="states simulated around each crossing"),
    "active_rounds": Param(None, kind="int", low=0, nullable=True,
                           description="active-learning rounds (None: 2 with boundary sampling, else 0)"),
    "n_active": Param(128, **_POS_INT, description="states labelled by simulation per active-learning round"),
    "trajectory_labels": Param(False, kind="bool",
                               description="boundary trajectories join the sign term, labelled by their start"),
    "polish": Param(True, kind="bool", description="polish psi's zero-set points by simulation"),
    "polish_radius": Param(0.05, low=0, high=1, low_inclusive=False,
                           description="half-length of the polishing segment", units="largest box side"),
    "seed": Param(0, kind="int", low=0, description="seed of every random draw"),
    # the base option with this analyzer's default: the networks are small, extra threads gain little and lose a
    # lot on a busy machine
    "threads": replace(THREADS, default=1, description="torch intra-op threads while analysing (default 1: the "
                       "networks are small; None: chosen from the problem size)"),
}


def check(s: Settings, system) -> None:
    """The checks that need the system or several options: one-line :class:`ParameterError` otherwise."""
    if s.trajectory_fraction + s.refine_fraction >= 1:
        raise ParameterError("koopman_separatrix: trajectory_fraction + refine_fraction must be < 1")
    candidates(s, system)


def candidates(s: Settings, system) -> list[float]:
    """Eigenvalue candidates (``[nan]``: one learned eigenvalue); flows need ``lambda > 0``, maps ``lambda > 1``."""
    ev = "learn" if s.eigenvalue is None else s.eigenvalue
    low = 0.0 if system.kind == "flow" else 1.0
    if isinstance(ev, str):
        if ev != "learn":
            raise ParameterError(f"koopman_separatrix: eigenvalue must be a number, a list or 'learn', got {ev!r}")
        if not eigenvalue_init(s, system) > low:
            raise ParameterError(f"koopman_separatrix: eigenvalue_init must be > {low:g} for a {system.kind}")
        return [float("nan")]
    vals = [ev] if np.ndim(ev) == 0 else list(ev)
    for v in vals:
        if not (isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and np.isfinite(v) and v > low):
            kind = "flows need lambda > 0" if system.kind == "flow" else "maps need lambda > 1"
            raise ParameterError(f"koopman_separatrix: eigenvalue {v!r} is invalid ({kind})")
    return [float(v) for v in vals]


def eigenvalue_init(s: Settings, system) -> float:
    if s.eigenvalue_init is None:
        return 1.0 if system.kind == "flow" else 2.0
    return float(s.eigenvalue_init)


def horizon(s: Settings, system) -> float:
    """Simulated time: characteristic times (flows) or iterations (maps)."""
    if s.horizon is not None:
        return float(s.horizon)
    return 30.0 if system.kind == "flow" else 200.0


def grid_size(s: Settings, d: int) -> int:
    """Grid points per axis for psi (0: no grid; never above 3-D)."""
    if d > 3:
        return 0
    if s.grid_size is None:
        return {1: 201, 2: 101, 3: 41}[d]
    return int(s.grid_size)


def boundary(s: Settings, system) -> bool:
    """Boundary sampling on? (``boundary=None``: for state dimension > 3, where uniform samples miss the
    separatrix)."""
    return system.state_dim > 3 if s.boundary is None else bool(s.boundary)


def sign_weight(s: Settings, system) -> float:
    """``sign_weight=None``: 1 with boundary sampling (its labelled states act through the sign term), else 0."""
    if s.sign_weight is not None:
        return float(s.sign_weight)
    return 1.0 if boundary(s, system) else 0.0


def active_stops(s: Settings, system, steps: int) -> list[int]:
    """Steps after which psi's zero set is labelled by simulation (``active_rounds=None``: 2 with boundary
    sampling, else 0), evenly spaced in the first 60% of the steps."""
    rounds = s.active_rounds if s.active_rounds is not None else (2 if boundary(s, system) else 0)
    return sorted({int(round(0.6 * steps * (r + 1) / rounds)) for r in range(rounds)} - {0, steps})


def warm_steps(s: Settings) -> int:
    return int(s.warm_steps) if s.warm_steps is not None else max(1, s.steps // 3)


def warm_order(s: Settings, batch: Batch) -> list[torch.Tensor] | None:
    """Index groups of the flat batch, one per position along the warm-start dim (in order)."""
    if not s.warm_start or s.warm_start not in batch.dims:
        return None
    axis = batch.dims.index(s.warm_start)
    pos = np.indices(batch.shape)[axis].reshape(-1)
    return [torch.as_tensor(np.nonzero(pos == e)[0]) for e in range(batch.shape[axis])]


def train_config(s: Settings, system) -> TrainConfig:
    learn = any(np.isnan(c) for c in candidates(s, system))
    return TrainConfig(steps=s.steps, batch_size=s.batch_size, lr=float(s.lr), learn_eigenvalue=learn,
                       anchor_weight=float(s.anchor_weight), balance_weight=float(s.balance_weight),
                       trajectory_fraction=float(s.trajectory_fraction), refine_fraction=float(s.refine_fraction),
                       refine_start=float(s.refine_start), log_every=max(1, s.steps // 100), map_steps=s.map_steps,
                       balance_sampling=s.balance_sampling, sign_weight=sign_weight(s, system),
                       n_anchor=256 if boundary(s, system) else 128)

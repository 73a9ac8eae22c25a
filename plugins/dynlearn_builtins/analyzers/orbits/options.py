"""Options shared by the ``orbits`` and ``transverse`` analyzers (declared once as :class:`~dynlearn.Param`), and the
one check that needs the system: the kind-dependent defaults and the budget of the tangent run.

Helpers receive the validated :class:`~dynlearn.params.Settings` returned by :func:`for_system`, never the
analyzer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dynlearn.errors import ParameterError
from dynlearn.params import Param, Settings
from dynlearn.system import System

from .._shared.states import state_options

__all__ = ["ORBIT_OPTIONS", "for_system", "warmup", "tail_len"]

#: option declarations shared by both analyzers (the ``orbits`` defaults; ``transverse`` replaces some)
ORBIT_OPTIONS: dict[str, Param] = {
    "n_samples": Param(16, kind="int", low=0, description="random initial states drawn from the system's domain "
                       "(the same for every sweep element; 0: only initial_states)"),
    **state_options("in addition to the sampled ones"),
    "seed": Param(0, kind="int", low=0, description="seed of the random initial states"),
    "transient": Param(None, kind="int", low=0, nullable=True,
                       description="iterations discarded before the tangent run (None: 2000 for maps, 100 "
                                   "stroboscopic steps for flows)"),
    "steps": Param(None, kind="int", low=1, nullable=True,
                   description="iterations of the tangent run: Lyapunov exponents, period detection "
                               "(None: 1000 for maps, 100 stroboscopic steps for flows)"),
    "max_period": Param(None, kind="int", low=1, nullable=True,
                        description="largest period detected, in steps of the (stroboscopic) map "
                                    "(None: 64 for maps, 32 for flows)"),
    "period_tol": Param(1e-7, low=0, low_inclusive=False,
                        description="relative tolerance of the periodicity / convergence test"),
    "lyapunov_tol": Param(1e-2, low=0,
                          description="bounded orbits that are not periodic and whose largest exponent exceeds it "
                                      "are chaotic"),
    "max_norm": Param(1e6, low=0, low_inclusive=False,
                      description="orbits leaving |x|_inf <= max_norm are diverged (outcome)"),
    "flow_time": Param(1.0, low=0, low_inclusive=False,
                       description="flows: period T of the stroboscopic map x -> phi_T(x)"),
    "dt": Param(0.1, low=0, low_inclusive=False,
                description="flows: largest RK4 step (T is cut into ceil(T / dt) equal steps)"),
    "max_steps": Param(None, kind="int", low=1, nullable=True,
                       description="steps after the transient an orbit whose evidence has not converged may run "
                                   "in all (rounds of 2, 4, 8, ... times steps) before it is labeled unresolved "
                                   "(None: 8 x steps)"),
    "precision": Param("float64", kind="str", choices=("float64", "float32"),
                       description="float dtype of the states (tangent dynamics and exponents are always float64)"),
    "chunk_size": Param(65536, kind="int", low=1, description="largest number of orbits iterated in one batch"),
}


def warmup(settings: Settings) -> int:
    """Tangent warm-up steps taken from the end of the transient: ``min(transient, steps // 4)``."""
    return min(int(settings.transient), int(settings.steps) // 4)


def tail_len(settings: Settings) -> int:
    """States kept at the end of the tangent run: ``max(tail, 2 max_period)`` (``tail`` is 1 when not an option)."""
    return max(int(settings.get("tail", 1)), 2 * int(settings.max_period))


def for_system(settings: Settings, system: System, defaults: Mapping[str, Mapping[str, Any]]) -> Settings:
    """``settings`` for ``system``: every option left ``None`` that has a kind-dependent default in ``defaults``
    (``{name: {"map": value, "flow": value}}``) filled in, and the tangent run checked to hold the recorded
    tail (``steps + warmup >= tail_len``)."""
    filled = settings.replace(**{name: by_kind[system.kind] for name, by_kind in defaults.items()
                                 if settings[name] is None})
    need = tail_len(filled)
    if filled.steps + warmup(filled) < need:
        raise ParameterError(
            f"steps + min(transient, steps // 4) must be >= max(tail, 2 max_period) = {need}, "
            f"got steps={filled.steps!r}, transient={filled.transient!r}"
        )
    return filled

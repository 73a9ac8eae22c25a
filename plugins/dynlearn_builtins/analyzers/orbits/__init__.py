r"""Orbit / phase-diagram analyzer: classify long-time behaviour and Lyapunov exponents over a parameter sweep.

For every parameter value of the sweep and every initial state (``sample``) the orbit is iterated in one
batch: ``transient`` steps, then ``steps`` steps with the tangent dynamics. For a flow the map is the
stroboscopic map :math:`x \mapsto \varphi_T(x)` (``T = flow_time``). Each orbit is classified as

- **converged**: :math:`|x_{t+1} - x_t|_\infty \le \mathrm{tol}\,(1 + |x_t|_\infty)` over the last
  ``max_period`` steps (``tol = period_tol``; for a flow also :math:`|f(x)|\,T` small); ``final_state`` is the
  fixed point and ``approach`` tells how it is reached, from the dominant non-neutral eigenvalue :math:`\lambda`
  of the Jacobian: *monotone* (:math:`0 \le \lambda < 1`), *oscillating* (:math:`-1 < \lambda < 0`, a catapult
  approach), *spiral* (complex); for a flow *monotone* (node) or *spiral* (focus);
- **periodic** with period :math:`p \le` ``max_period`` (smallest :math:`p` with
  :math:`|x_{t+p} - x_t| \le \mathrm{tol}\,(1 + |x|)` over a window); for a flow a limit cycle found by first
  return with a leading exponent ~0, with its period in time (``period_time``, refined by a parabola through the
  return distances); periodic coordinates (``System.periodic``) are compared modulo their period;
- **chaotic**: bounded, not periodic, leading Lyapunov exponent :math:`> ` ``lyapunov_tol`` over the run and over
  each half of it;
- **aperiodic** (quasi-periodic): bounded, not periodic, :math:`|\lambda_1| \le` ``lyapunov_tol`` and return
  distances that no longer shrink;
- **none**: the orbit has no class; the ``outcome`` variable (:mod:`dynlearn.outcome`) says why: ``diverged`` /
  ``nan`` (it left :math:`|x|_\infty \le` ``max_norm``: labeled data, never an exception), ``masked``
  (parameters not computed, e.g. a network that diverged in training) or ``unresolved``: its evidence had not
  converged (e.g. a negative leading exponent but no period yet) after it was integrated further in rounds of 2,
  4, 8, ... times ``steps``, up to ``max_steps``. Every other orbit's outcome is ``ok``.

Lyapunov exponents (:func:`dynlearn.lyapunov.spectrum`): :math:`Q_{t+1} R_{t+1} = J(x_t) Q_t` (QR),
:math:`\lambda_i = \frac{1}{n\,\Delta} \sum_t \ln |(R_t)_{ii}|` with :math:`\Delta = 1` for maps (per iteration)
and :math:`T` for flows (per unit time), float64 whatever ``precision``. Distinct attractors reached from different samples are numbered per parameter value (``attractor``).

With ``refine_dim``, every change of (outcome, class, period, approach) between neighbours along that sweep dim
is bisected (all brackets in one batch) to ``refine_tol``: the ``transition_*`` variables give the thresholds
(e.g. the period-doubling points of a cascade).

Examples
--------
The balanced slice of the two-factor map, ``z -> z (1 - mu (z^2 - 1))``, from ``z0 = 0.1``:

>>> import dynlearn
>>> orb = Orbits(initial_states=[[0.1, 0.1]], n_samples=0, transient=400, steps=200)
>>> out = orb.run("two_factor", dynlearn.grid(mu=[0.3, 0.8, 1.1, 1.25, 2.0, 2.1]))
>>> [str(c) for c in dynlearn.outcome.labels(out.outcome.isel(sample=0).values)]
['ok', 'ok', 'ok', 'ok', 'ok', 'diverged']
>>> out.orbit.isel(sample=0).values.tolist()            # converged x2, periodic x2, chaotic, none
[0, 0, 1, 1, 2, 4]
>>> out.approach.isel(sample=0).values.tolist()         # none, monotone, oscillating
[1, 2, 0, 0, 0, 0]
>>> out.period.isel(sample=0).values.tolist()
[1, 1, 2, 4, 0, 0]
>>> round(float(out.lyapunov.sel(mu=2.0).isel(sample=0, exponent=0)), 1)   # ln 3 = 1.0986
1.1
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.analyzer import Analyzer
from dynlearn.params import Param, Settings
from dynlearn.sweep import Batch

from .classify import classify_orbits, initial_states, resolve_manifold, start_states
from .kernels import APPROACH_NAMES, CLASS_NAMES, NO_CLASS, NONE, flag_attrs
from .options import ORBIT_OPTIONS, for_system
from .refine import find_transitions

__all__ = ["Orbits"]

#: kind-dependent defaults of the options left None
DEFAULTS = {"transient": {"map": 2000, "flow": 100}, "steps": {"map": 1000, "flow": 100},
            "max_period": {"map": 64, "flow": 32}}


class Orbits(Analyzer):
    """Classify orbits (converged / periodic / chaotic / aperiodic; outcome ok / diverged / nan / unresolved /
    masked) and compute Lyapunov exponents.

    The keyword arguments are the declared :attr:`options` (:class:`~dynlearn.Param`), validated once into
    ``self.settings``; the helpers receive those settings.

    Parameters
    ----------
    n_samples, seed
        Initial states drawn uniformly from the system's domain (``seed``), the same for every sweep entry (0:
        only ``initial_states``).
    initial_states, initial_noise
        The user's initial states, used in addition to the ``n_samples`` sampled ones (after them on the
        ``sample`` dim): an array ``(sample, state)`` for every sweep entry, or a DataArray ``(sweep dims...,
        sample, state)`` per entry (see :func:`~dynlearn_builtins.analyzers._shared.states.user_states`);
        Gaussian noise of standard deviation ``initial_noise`` (absolute, in state units) is added to them.
        ``initial_state`` records the states used. With ``refine_dim`` a bracket's orbits start from the
        lower neighbour's state.
    manifold
        Name of a manifold the system declares (or a :class:`dynlearn.Manifold`): the initial states are
        projected onto it (e.g. ``"balanced"`` for the two-factor map's slice ``a = b``).
    transient, steps
        Iterations discarded, then iterations with the tangent dynamics (Lyapunov exponents, period
        detection); default ``(2000, 1000)`` for maps, ``(100, 100)`` stroboscopic steps for flows. The tangent
        vectors are warmed up during the last ``min(transient, steps // 4)`` transient steps.
    max_period, period_tol
        Largest period detected (default 64 for maps, 32 stroboscopic steps for flows, whose limit cycles are
        searched up to ``max_period * flow_time``); relative tolerance of the periodicity / convergence test.
    lyapunov_tol
        Orbits whose largest exponent exceeds it (and that are not periodic) are chaotic.
    max_norm
        Orbits leaving ``|x|_inf <= max_norm`` are diverged (outcome).
    tail
        Number of final states kept per orbit (``orbit_points``, the orbit diagram).
    flow_time, dt
        Flows: stroboscopic period ``T`` and largest RK4 step.
    refine_dim, refine_tol
        Sweep dim along which changes of the orbits' state are bisected, and the bracket width to stop at.
    n_exponents
        How many (largest) Lyapunov exponents to compute; default all ``d`` (set it for high-dimensional
        systems: the cost of the tangent dynamics grows with it).
    max_steps
        Tangent steps an orbit whose evidence has not converged may run in all before it is ``unresolved``
        (default 8 ``steps``: two more rounds, of 2 and 4 ``steps``).
    precision
        Float dtype of the states (``"float64"`` or ``"float32"``; tangent dynamics and exponents are float64, the
        periodicity tolerance is never below 64 rounding units).
    chunk_size
        Largest number of orbits iterated in one batch.
    """

    name: ClassVar[str] = "orbits"
    description: ClassVar[str] = (
        "orbit classification (converged/periodic/chaotic), Lyapunov exponents, phase diagram"
    )
    kinds: ClassVar[tuple[str, ...]] = ("map", "flow")
    options: ClassVar[dict[str, Param]] = {
        **{k: ORBIT_OPTIONS[k] for k in ("n_samples", "initial_states", "initial_noise", "seed")},
        "manifold": Param(None, kind="any", nullable=True,
                          description="name of a manifold the system declares, or a dynlearn.Manifold: the initial "
                                      "states are projected onto it (None: not projected)"),
        **{k: ORBIT_OPTIONS[k] for k in ("transient", "steps", "max_period", "period_tol", "lyapunov_tol", "max_norm")},
        "tail": Param(32, kind="int", low=1, description="final states kept per orbit (orbit_points)"),
        **{k: ORBIT_OPTIONS[k] for k in ("flow_time", "dt")},
        "refine_dim": Param(None, kind="str", nullable=True,
                            description="sweep dim along which changes of the orbits' state are bisected (None: no "
                                        "refinement)"),
        "refine_tol": Param(1e-4, low=0, low_inclusive=False,
                            description="bracket width (units of refine_dim's coordinate) at which bisection stops"),
        "n_exponents": Param(None, kind="int", low=1, nullable=True,
                             description="number of (largest) Lyapunov exponents computed (None: all)"),
        **{k: ORBIT_OPTIONS[k] for k in ("max_steps", "precision", "chunk_size")},
    }

    # -- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        s = for_system(self.settings, system, DEFAULTS)
        manifold = resolve_manifold(system, s.manifold)
        states = initial_states(batch, s, "orbits")
        S = states.shape[1]
        parts, starts = [], []
        dtype = torch.float32 if s.precision == "float32" else torch.float64
        for sl, p in batch.chunks(max(1, s.chunk_size // S)):
            x0 = start_states(system, states[sl], p, manifold).to(dtype)
            p = {k: v.to(dtype) if v.is_floating_point() else v for k, v in p.items()}
            starts.append(x0)
            parts.append(classify_orbits(system, p, x0, s, show_progress=show_progress))
        res = {k: torch.cat([r[k] for r in parts], dim=1 if k == "tail" else 0) for k in parts[0]}
        x0 = torch.cat(starts)
        ds = orbit_dataset(batch, res, x0, s)
        if s.refine_dim is not None:
            ds = ds.merge(find_transitions(batch, states, manifold, res, s, show_progress))
        return ds

    # -- views ------------------------------------------------------------------------------------------------
    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``orbit_diagram`` (last states vs the first sweep dim), ``lyapunov`` (exponents vs it) and
        ``phase`` (class fractions vs it); other sweep dims become HoloMap sliders."""
        from .views import orbit_views

        return orbit_views(result)


def orbit_dataset(batch: Batch, res: Mapping[str, torch.Tensor], x0: torch.Tensor, settings: Settings) -> xr.Dataset:
    """The labeled result of :func:`~.classify.classify_orbits` on ``batch``; masked parameter values get the
    outcome ``masked``, the class ``none`` and NaN numbers."""
    system = batch.system
    S, d = x0.shape[1], res["lyapunov"].shape[-1]
    bad = ~batch.valid  # masked parameter values (NaN in a training run)
    b2 = bad.unsqueeze(-1)
    fnan = torch.tensor(float("nan"), dtype=torch.float64)

    def f(t):
        return torch.where(bad.reshape(-1, *([1] * (t.dim() - 1))), fnan, t.double())

    def i(t, fill):
        return torch.where(bad.reshape(-1, *([1] * (t.dim() - 1))), torch.tensor(fill, dtype=t.dtype), t)

    su, tu = system.state_units, system.time_units
    lyap_units = "1/iteration" if system.kind == "map" else f"1/{tu}" if tu != "1" else "1/time"
    coords = {
        "sample": ("sample", np.arange(S), {"long_name": "initial state index"}),
        "state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"}),
        "exponent": ("exponent", np.arange(1, d + 1), {"long_name": "Lyapunov exponent index (decreasing)"}),
        "iterate": ("iterate", np.arange(-settings.tail + 1, 1),
                    {"long_name": "iteration relative to the last one", "units": "iteration"}),
        "orbit_class": ("orbit_class", np.array(CLASS_NAMES, dtype=object), {"long_name": "orbit class"}),
    }
    cls = torch.where(b2, torch.tensor(NO_CLASS, dtype=torch.int8), res["cls"])
    code = torch.where(b2, torch.tensor(oc.MASKED, dtype=torch.int8), res["code"])
    frac = torch.stack([(cls == c).double().mean(-1) for c in range(len(CLASS_NAMES))], -1)
    tx = batch.to_xarray
    step_units = "iteration" if system.kind == "map" else f"{settings.flow_time:g} {tu} (stroboscopic step)"
    data = {
        "initial_state": tx(f(x0), ("sample", "state"), attrs={"long_name": "initial state", "units": su}),
        "final_state": tx(f(res["final"]), ("sample", "state"), attrs={
            "long_name": "state after the transient and the tangent run (the fixed point of converged orbits)",
            "units": su}),
        "orbit": tx(cls, ("sample",), attrs=flag_attrs("orbit class (none: the outcome is not ok)", CLASS_NAMES)),
        "period": tx(i(res["period"], 0), ("sample",), attrs={
            "long_name": "period of the orbit in steps of the (stroboscopic) map (1: fixed point, 0: none)",
            "units": step_units}),
        "approach": tx(i(res["approach"], NONE), ("sample",),
                       attrs=flag_attrs("approach to the fixed point (dominant non-neutral eigenvalue)",
                                        APPROACH_NAMES)),
        "attractor": tx(i(res["attractor"], -1), ("sample",), attrs={
            "long_name": "index of the distinct fixed point / cycle reached, per parameter value (-1: none)",
            "units": "1"}),
        "n_attractors": tx(i(res["n_attractors"], 0), attrs={
            "long_name": "number of distinct fixed points / cycles reached", "units": "1"}),
        "lyapunov": tx(f(res["lyapunov"]), ("sample", "exponent"), attrs={
            "long_name": "Lyapunov exponents (decreasing)", "units": lyap_units}),
        "outcome": tx(code, ("sample",), attrs=oc.flag_attrs(
            "outcome of the orbit (unresolved: its evidence had not converged within max_steps)")),
        "integrated_steps": tx(i(res["steps"], 0), ("sample",), attrs={
            "long_name": "steps after the transient: steps, more for orbits integrated further (their evidence is "
                         "from the last steps)", "units": step_units}),
        "orbit_points": tx(f(res["tail"].permute(1, 2, 0, 3)), ("sample", "iterate", "state"), attrs={
            "long_name": "last states of the orbit (orbit diagram)", "units": su}),
        "class_fraction": tx(frac, ("orbit_class",), attrs={
            "long_name": "fraction of the orbits in each class (none: the outcome is not ok)", "units": "1"}),
    }
    if "period_time" in res:
        data["period_time"] = tx(f(res["period_time"]), ("sample",), attrs={
            "long_name": "period of the limit cycle (NaN: not a cycle)", "units": tu})
    ds = xr.Dataset(data)
    ds = ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})
    return ds

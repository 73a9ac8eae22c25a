r"""Orbit / phase-diagram analyzer: classify long-time behaviour and Lyapunov exponents over a parameter sweep.

For every parameter value of the sweep and every initial state (``sample``) the orbit is iterated in one
batch: ``transient`` steps, then ``steps`` steps with the tangent dynamics. For a flow the map is the
stroboscopic map :math:`x \mapsto \varphi_T(x)` (``T = flow_time``). Each orbit is classified as

- **converged**: :math:`|x_{t+1} - x_t|_\infty \le \mathrm{tol}\,(1 + |x_t|_\infty)` over the last
  ``max_period`` steps (for a flow also :math:`|f(x)|\,T` small); ``final_state`` is the fixed point and
  ``approach`` tells how it is reached, from the dominant non-neutral eigenvalue :math:`\lambda` of the
  Jacobian: *monotone* (:math:`0 \le \lambda < 1`), *oscillating* (:math:`-1 < \lambda < 0`, a catapult
  approach), *spiral* (complex); for a flow *monotone* (node) or *spiral* (focus);
- **periodic** with period :math:`p \le` ``max_period`` (smallest :math:`p` with
  :math:`|x_{t+p} - x_t| \le \mathrm{tol}\,(1 + |x|)` over a window); for a flow a limit cycle found by first
  return, with its period in time (``period_time``, refined by a parabola through the return distances);
- **chaotic**: bounded, not periodic, largest Lyapunov exponent :math:`> ` ``lyap_tol``;
- **aperiodic**: bounded, none of the above (quasi-periodic, or not settled within the budget);
- **diverged** / **nan**: left :math:`|x|_\infty \le` ``max_norm`` (labeled outcome, never an exception).

Lyapunov exponents: :math:`Q_{t+1} R_{t+1} = J(x_t) Q_t` (QR), :math:`\lambda_i = \frac{1}{n\,\Delta}
\sum_t \ln |(R_t)_{ii}|` with :math:`\Delta = 1` for maps (per iteration) and :math:`T` for flows (per unit
time). Distinct attractors reached from different samples are numbered per parameter value (``attractor``).

With ``refine_dim``, every change of (class, period, approach) between neighbours along that sweep dim is
bisected (all brackets in one batch) to ``refine_tol``: the ``transition_*`` variables give the thresholds
(e.g. the period-doubling points of a cascade).

Examples
--------
The balanced slice of the two-factor map, ``z -> z (1 - mu (z^2 - 1))``, from ``z0 = 0.1``:

>>> import dynlearn
>>> orb = Orbits(states=[[0.1, 0.1]], transient=400, steps=200)
>>> out = orb.run("two_factor", dynlearn.grid(mu=[0.3, 0.8, 1.1, 1.25, 2.0, 2.1]))
>>> [str(c) for c in dynlearn.outcome.labels(out.outcome.isel(sample=0).values)]
['ok', 'ok', 'ok', 'ok', 'ok', 'diverged']
>>> out.orbit.isel(sample=0).values.tolist()            # converged, converged, periodic x2, chaotic, diverged
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
from dynlearn.errors import ParameterError
from dynlearn.sweep import Batch

from .classify import OrbitOptions, classify_orbits, raw_states, resolve_manifold, start_states
from .kernels import APPROACH_NAMES, CLASS_NAMES, MASKED, NONE, flag_attrs
from .refine import find_transitions

__all__ = ["Orbits"]

#: kind-dependent defaults of (transient, steps)
DEFAULT_BUDGET = {"map": (2000, 1000), "flow": (100, 100)}
#: kind-dependent default of max_period
DEFAULT_MAX_PERIOD = {"map": 64, "flow": 32}


class Orbits(Analyzer):
    """Classify orbits (converged / periodic / chaotic / aperiodic / diverged) and compute Lyapunov exponents.

    Parameters
    ----------
    states
        Initial states ``[[x1, ..., xd], ...]`` shared by every parameter value; default: ``n_states`` uniform
        draws from the system's domain (``seed``).
    n_states, seed
        Number of random initial states and their seed.
    manifold
        Name of a manifold the system declares (or a :class:`dynlearn.Manifold`): the initial states are
        projected onto it (e.g. ``"balanced"`` for the two-factor map's slice ``a = b``).
    transient, steps
        Iterations discarded, then iterations with the tangent dynamics (Lyapunov exponents, period
        detection); default ``(2000, 1000)`` for maps, ``(100, 100)`` stroboscopic steps for flows. The tangent
        vectors are warmed up during the last ``min(transient, steps // 4)`` transient steps.
    max_period, tol
        Largest period detected (default 64 for maps, 32 stroboscopic steps for flows, whose limit cycles are
        searched up to ``max_period * flow_time``); relative tolerance of the periodicity / convergence test.
    lyap_tol
        Orbits whose largest exponent exceeds it (and that are not periodic) are chaotic.
    max_norm
        Orbits leaving ``|x|_inf <= max_norm`` are labeled diverged.
    record
        Number of final states kept per orbit (``orbit_points``, the orbit diagram).
    flow_time, flow_step
        Flows: stroboscopic period ``T`` and largest RK4 step.
    refine_dim, refine_tol
        Sweep dim along which class changes are bisected, and the bracket width to stop at.
    n_exponents
        How many (largest) Lyapunov exponents to compute; default all ``d`` (set it for high-dimensional
        systems: the cost of the tangent dynamics grows with it).
    chunk
        Largest number of orbits iterated in one batch.
    """

    name: ClassVar[str] = "orbits"
    description: ClassVar[str] = (
        "orbit classification (converged/periodic/chaotic/diverged), Lyapunov exponents, phase diagram"
    )
    kinds: ClassVar[tuple[str, ...]] = ("map", "flow")

    def __init__(
        self,
        states: Any = None,
        n_states: int = 16,
        seed: int = 0,
        manifold: Any = None,
        transient: int | None = None,
        steps: int | None = None,
        max_period: int | None = None,
        tol: float = 1e-7,
        lyap_tol: float = 1e-2,
        max_norm: float = 1e6,
        record: int = 32,
        flow_time: float = 1.0,
        flow_step: float = 0.1,
        refine_dim: str | None = None,
        refine_tol: float = 1e-4,
        n_exponents: int | None = None,
        chunk: int = 65536,
    ) -> None:
        self.states = states
        self.n_states = n_states
        self.seed = seed
        self.manifold = manifold
        self.transient = transient
        self.steps = steps
        self.max_period = max_period
        self.tol = tol
        self.lyap_tol = lyap_tol
        self.max_norm = max_norm
        self.record = record
        self.flow_time = flow_time
        self.flow_step = flow_step
        self.refine_dim = refine_dim
        self.refine_tol = refine_tol
        self.n_exponents = n_exponents
        self.chunk = chunk

    def options(self, kind: str) -> OrbitOptions:
        return OrbitOptions.build(
            DEFAULT_BUDGET[kind], self.transient, self.steps,
            max_period=DEFAULT_MAX_PERIOD[kind] if self.max_period is None else self.max_period, tol=self.tol,
            lyap_tol=self.lyap_tol, max_norm=self.max_norm, record=self.record, flow_time=self.flow_time,
            flow_step=self.flow_step, n_exponents=self.n_exponents,
        )

    # -- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        opt = self.options(system.kind)
        if not (isinstance(self.chunk, (int, np.integer)) and self.chunk >= 1):
            raise ParameterError(f"chunk must be an integer >= 1, got {self.chunk!r}")
        manifold = resolve_manifold(system, self.manifold)
        raw = raw_states(system, self.states, self.n_states, self.seed)
        S, d = raw.shape
        parts, starts = [], []
        for sl, p in batch.chunks(max(1, int(self.chunk) // S)):
            x0 = start_states(system, raw, p, manifold, sl.stop - sl.start)
            starts.append(x0)
            parts.append(classify_orbits(system, p, x0, opt, show_progress=show_progress))
        res = {k: torch.cat([r[k] for r in parts], dim=1 if k == "tail" else 0) for k in parts[0]}
        x0 = torch.cat(starts)
        ds = self._dataset(batch, res, x0, opt)
        if self.refine_dim is not None:
            ds = ds.merge(find_transitions(batch, raw, manifold, res, opt, self.refine_dim, self.refine_tol,
                                           show_progress))
        return ds

    def _dataset(self, batch: Batch, res: Mapping[str, torch.Tensor], x0: torch.Tensor, opt: OrbitOptions) -> xr.Dataset:
        system = batch.system
        S, d = x0.shape[1], res["lyapunov"].shape[-1]
        bad = ~batch.valid  # masked parameter values (NaN in a training run)
        b2 = bad.unsqueeze(-1)
        fnan = torch.tensor(float("nan"), dtype=torch.float64)

        def f(t):
            return torch.where(bad.reshape(-1, *([1] * (t.dim() - 1))), fnan, t)

        def i(t, fill):
            return torch.where(bad.reshape(-1, *([1] * (t.dim() - 1))), torch.tensor(fill, dtype=t.dtype), t)

        su, tu = system.state_units, system.time_units
        lyap_units = "1/iteration" if system.kind == "map" else f"1/{tu}" if tu != "1" else "1/time"
        coords = {
            "sample": ("sample", np.arange(S), {"long_name": "initial state index"}),
            "state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"}),
            "exponent": ("exponent", np.arange(1, d + 1), {"long_name": "Lyapunov exponent index (decreasing)"}),
            "iterate": ("iterate", np.arange(-opt.record + 1, 1),
                        {"long_name": "iteration relative to the last one", "units": "iteration"}),
            "orbit_class": ("orbit_class", np.array(CLASS_NAMES, dtype=object), {"long_name": "orbit class"}),
        }
        cls = torch.where(b2, torch.tensor(MASKED, dtype=torch.int8), res["cls"])
        frac = torch.stack([(cls == c).double().mean(-1) for c in range(len(CLASS_NAMES))], -1)
        tx = batch.to_xarray
        step_units = "iteration" if system.kind == "map" else f"{opt.flow_time:g} {tu} (stroboscopic step)"
        data = {
            "initial_state": tx(f(x0), ("sample", "state"), attrs={"long_name": "initial state", "units": su}),
            "final_state": tx(f(res["final"]), ("sample", "state"), attrs={
                "long_name": "state after the transient and the tangent run (the fixed point of converged orbits)",
                "units": su}),
            "orbit": tx(cls, ("sample",), attrs=flag_attrs("orbit class", CLASS_NAMES)),
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
            "outcome": tx(i(res["code"], oc.OK), ("sample",), attrs=oc.flag_attrs("outcome of the orbit")),
            "orbit_points": tx(f(res["tail"].permute(1, 2, 0, 3)), ("sample", "iterate", "state"), attrs={
                "long_name": "last states of the orbit (orbit diagram)", "units": su}),
            "class_fraction": tx(frac, ("orbit_class",), attrs={
                "long_name": "fraction of the orbits in each class", "units": "1"}),
        }
        if "period_time" in res:
            data["period_time"] = tx(f(res["period_time"]), ("sample",), attrs={
                "long_name": "period of the limit cycle (NaN: not a cycle)", "units": tu})
        ds = xr.Dataset(data)
        ds = ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})
        return ds

    # -- views ------------------------------------------------------------------------------------------------
    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``orbit_diagram`` (last states vs the first sweep dim), ``lyapunov`` (exponents vs it) and
        ``phase`` (class fractions vs it); other sweep dims become HoloMap sliders."""
        from .views import orbit_views

        return orbit_views(result)

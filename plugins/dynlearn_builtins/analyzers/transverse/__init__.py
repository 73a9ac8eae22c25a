r"""Transverse stability of invariant manifolds: Lyapunov exponents along and across a manifold.

For an invariant manifold :math:`M = \{g(x) = 0\}` of codimension :math:`k` (declared by the system, see
:class:`dynlearn.Manifold`, or given by the user as a constraint, optionally with a projection), orbits
started on :math:`M` are iterated *on* :math:`M` (re-projected after each step). With orthonormal tangent and
normal bases :math:`T_x, N_x`, invariance makes the Jacobian block-triangular, so the orbit's Lyapunov
spectrum splits into

- tangential exponents: the exponents of the cocycle :math:`T_{t+1}^\top J_t T_t` (dynamics on :math:`M`);
- transverse exponents: those of :math:`N_{t+1}^\top J_t N_t`; their sum with the tangential ones is
  :math:`\langle \ln|\det J| \rangle` (per iteration for maps, per unit time for flows).

An orbit's attractor on :math:`M` is **transversely attracting** when its largest transverse exponent is
:math:`< -` ``tol``, **repelling** when :math:`> ` ``tol``, **neutral** in between. The manifold's verdict per
parameter value (``manifold_stability``) is that of its orbits (``mixed`` when they disagree), and
``transverse_exponent_mean`` averages the largest transverse exponent over the orbits (the natural measure
when the dynamics on :math:`M` are ergodic, e.g. chaotic).

Two-factor map (DESIGN.md §3.3): on the Chebyshev ellipse :math:`E_\mu` the map is :math:`\theta \mapsto \pi
- 3\theta` (tangential exponent :math:`\ln 3`) and the transverse exponent is
:math:`\frac{1}{2\pi}\int_0^{2\pi} \ln|\det J(\theta)|\,d\theta - \ln 3 > 0` (e.g. :math:`\ln 2` at
:math:`\mu = 1.5`); on the balanced slice :math:`a = b = z` the transverse multiplier is
:math:`1 + \mu (z^2 - 1)`.

Examples
--------
>>> import dynlearn
>>> tr = TransverseStability(manifold="ellipse", n_states=4, transient=50, steps=400)
>>> out = tr.run("two_factor", dynlearn.grid(mu=[1.5]))
>>> round(float(out.tangential_exponent.mean()), 1)            # ln 3 = 1.0986
1.1
>>> bool(out.transverse_exponent_mean.sel(mu=1.5) > 0.5)        # ln 2 = 0.693: transversely repelling
True
>>> str(dynlearn.outcome.labels([0])[0]), out.manifold_stability.attrs["flag_meanings"].split()[2]
('ok', 'repelling')
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
from dynlearn.system import Manifold

from ..orbits.classify import OrbitOptions, projector, raw_states, resolve_manifold
from ..orbits.kernels import (
    APERIODIC,
    CHAOTIC,
    CLASS_NAMES,
    CONVERGED,
    DIVERGED,
    MASKED,
    NAN,
    PERIODIC,
    Stepper,
    canonical_point,
    detect_period,
    flag_attrs,
    label_attractors,
)
from .manifold import manifold_run

__all__ = ["TransverseStability", "STABILITY_NAMES"]

STABILITY_NAMES = ("attracting", "neutral", "repelling", "mixed", "diverged", "undefined", "masked")
ATTRACTING, NEUTRAL, REPELLING, MIXED, S_DIVERGED, UNDEFINED, S_MASKED = range(7)
DEFAULT_BUDGET = {"map": (500, 2000), "flow": (50, 100)}


class TransverseStability(Analyzer):
    """Tangential and transverse Lyapunov exponents of orbits on invariant manifolds; transverse stability.

    Parameters
    ----------
    manifold
        A declared manifold's name, a :class:`dynlearn.Manifold` (user-given constraint / projection; recorded
        by name in the provenance), or ``None``: every manifold the system declares (a ``manifold`` dim).
    states, n_states, seed
        Initial states (projected onto the manifold): given, or ``n_states`` uniform draws from the domain.
    transient, steps
        Iterations on the manifold discarded, then used for the exponents; default ``(500, 2000)`` for maps,
        ``(50, 100)`` stroboscopic steps for flows.
    tol
        Neutral band: transverse exponents within ``+-tol`` are neutral.
    max_period, period_tol, lyap_tol
        Classification of the orbit on the manifold (period detection; chaos = largest tangential exponent
        ``> lyap_tol``), as in the ``orbits`` analyzer.
    max_norm
        Orbits leaving ``|x|_inf <= max_norm`` are labeled diverged.
    flow_time, flow_step
        Flows: stroboscopic period and largest RK4 step.
    chunk
        Largest number of orbits iterated in one batch.
    """

    name: ClassVar[str] = "transverse"
    description: ClassVar[str] = "transverse stability of invariant manifolds: tangential and transverse Lyapunov exponents"
    kinds: ClassVar[tuple[str, ...]] = ("map", "flow")

    def __init__(
        self,
        manifold: Any = None,
        states: Any = None,
        n_states: int = 8,
        seed: int = 0,
        transient: int | None = None,
        steps: int | None = None,
        tol: float = 1e-2,
        max_period: int = 32,
        period_tol: float = 1e-7,
        lyap_tol: float = 1e-2,
        max_norm: float = 1e6,
        flow_time: float = 1.0,
        flow_step: float = 0.1,
        chunk: int = 65536,
    ) -> None:
        self.manifold = manifold
        self.states = states
        self.n_states = n_states
        self.seed = seed
        self.transient = transient
        self.steps = steps
        self.tol = tol
        self.max_period = max_period
        self.period_tol = period_tol
        self.lyap_tol = lyap_tol
        self.max_norm = max_norm
        self.flow_time = flow_time
        self.flow_step = flow_step
        self.chunk = chunk

    def options(self, kind: str) -> OrbitOptions:
        opt = OrbitOptions.build(
            DEFAULT_BUDGET[kind], self.transient, self.steps, max_period=self.max_period, tol=self.period_tol,
            lyap_tol=self.lyap_tol, max_norm=self.max_norm, record=1, flow_time=self.flow_time,
            flow_step=self.flow_step,
        )
        if not (isinstance(self.tol, (int, float)) and np.isfinite(self.tol) and self.tol >= 0):
            raise ParameterError(f"tol must be a finite number >= 0, got {self.tol!r}")
        if not (isinstance(self.chunk, (int, np.integer)) and self.chunk >= 1):
            raise ParameterError(f"chunk must be an integer >= 1, got {self.chunk!r}")
        return opt

    # -- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        opt = self.options(system.kind)
        if self.manifold is None:
            manifolds = list(system.manifolds().values())
            if not manifolds:
                raise ParameterError(
                    f"system {system.name!r} declares no invariant manifold; pass manifold=Manifold(...)"
                )
        else:
            manifolds = [resolve_manifold(system, self.manifold)]
        raw = raw_states(system, self.states, self.n_states, self.seed)
        results = [self._one(batch, m, raw, opt, show_progress) for m in manifolds]
        if self.manifold is not None:
            return results[0]
        names = xr.DataArray(np.array([m.name for m in manifolds], dtype=object), dims="manifold",
                             attrs={"long_name": "invariant manifold"})
        return xr.concat(results, dim=names, join="outer", combine_attrs="override")

    def _one(self, batch: Batch, manifold: Manifold, raw: torch.Tensor, opt: OrbitOptions,
             show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        S = raw.shape[0]
        parts = []
        for sl, p in batch.chunks(max(1, int(self.chunk) // S)):
            n = sl.stop - sl.start
            pe = system.expand_params(p)
            defined = torch.ones(n, dtype=torch.bool)
            if manifold.valid is not None:
                defined = torch.as_tensor(manifold.valid(p)).reshape(-1).expand(n).clone()
            x0 = raw.unsqueeze(0).expand(n, *raw.shape).clone()
            x0 = torch.where(defined[:, None, None], projector(manifold, pe)(x0), x0)
            stepper = Stepper(system, pe, opt.flow_time, opt.flow_step)
            res = manifold_run(stepper, manifold, x0, opt, show_progress, desc=f"transverse {manifold.name}")
            res["defined"] = defined
            parts.append(res)
        res = {k: torch.cat([r[k] for r in parts], dim=1 if k == "tail" else 0) for k in parts[0]}
        return self._dataset(batch, manifold, res, opt)

    def _dataset(self, batch: Batch, manifold: Manifold, res: Mapping[str, torch.Tensor], opt: OrbitOptions) -> xr.Dataset:
        system = batch.system
        code, tail = res["code"], res["tail"]
        ok = code == oc.OK
        defined = res["defined"] & batch.valid
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        tang = torch.where(defined[:, None, None], res["tangential"], nan)
        trans = torch.where(defined[:, None, None], res["transverse"], nan)
        period = torch.where(ok & defined[:, None], detect_period(tail, opt.max_period, opt.tol), 0)
        lam1 = tang[..., 0] if tang.shape[-1] else torch.full(code.shape, -np.inf, dtype=torch.float64)
        cls = torch.full(code.shape, APERIODIC, dtype=torch.int8)
        cls = torch.where(ok & (lam1 > opt.lyap_tol), CHAOTIC, cls)
        cls = torch.where(ok & (period > 1), PERIODIC, cls)
        cls = torch.where(ok & (period == 1), CONVERGED, cls)
        cls = torch.where(code == oc.DIVERGED, DIVERGED, cls)
        cls = torch.where(code == oc.NAN, NAN, cls)
        cls = torch.where(defined[:, None], cls, MASKED).to(torch.int8)
        top = trans[..., 0] if trans.shape[-1] else torch.full(code.shape, np.nan, dtype=torch.float64)
        stab = torch.where(top < -self.tol, ATTRACTING, torch.where(top > self.tol, REPELLING, NEUTRAL))
        stab = torch.where(ok, stab, S_DIVERGED)
        stab = torch.where(res["defined"][:, None], stab, UNDEFINED)
        stab = torch.where(batch.valid[:, None], stab, S_MASKED).to(torch.int8)
        has = ok & defined[:, None] & (period >= 1)
        key = canonical_point(tail, period)
        match_tol = max(100 * opt.tol, 1e-9) * (1 + key.abs().amax(-1))
        attractor, n_att = label_attractors(key, torch.where(has, period, 0), has, match_tol)
        # verdict per parameter value: that of its bounded orbits, "mixed" when they disagree
        counted = ok & defined[:, None]
        verdicts = torch.stack([((stab == s) & counted).any(-1) for s in (ATTRACTING, NEUTRAL, REPELLING)], -1)
        n_kinds = verdicts.sum(-1)
        overall = torch.where(n_kinds > 1, MIXED, verdicts.long().argmax(-1))
        overall = torch.where(n_kinds == 0, S_DIVERGED, overall)
        overall = torch.where(res["defined"], overall, UNDEFINED)
        overall = torch.where(batch.valid, overall, S_MASKED).to(torch.int8)
        mean_top = torch.where(counted, top, torch.zeros_like(top)).sum(-1) / counted.sum(-1).clamp_min(1)
        mean_top = torch.where(counted.any(-1), mean_top, nan)

        su = system.state_units
        units = "1/iteration" if system.kind == "map" else f"1/{system.time_units}" if system.time_units != "1" else "1/time"
        d, k = tang.shape[-1] + trans.shape[-1], trans.shape[-1]
        tx = batch.to_xarray
        where = f" on the manifold {manifold.name!r}"
        data = {
            "tangential_exponent": tx(tang, ("sample", "tangent"), attrs={
                "long_name": f"Lyapunov exponents along the manifold (decreasing){where}", "units": units}),
            "transverse_exponent": tx(trans, ("sample", "normal"), attrs={
                "long_name": f"transverse Lyapunov exponents (decreasing){where}", "units": units}),
            "stability": tx(stab, ("sample",), attrs=flag_attrs(
                f"transverse stability of the orbit's attractor{where}", STABILITY_NAMES)),
            "orbit": tx(cls, ("sample",), attrs=flag_attrs(f"class of the orbit{where}", CLASS_NAMES)),
            "period": tx(period, ("sample",), attrs={
                "long_name": f"period of the orbit{where} (1: fixed point, 0: none)", "units": "step"}),
            "attractor": tx(attractor, ("sample",), attrs={
                "long_name": f"index of the distinct fixed point / cycle reached{where} (-1: none)", "units": "1"}),
            "n_attractors": tx(n_att, attrs={"long_name": f"number of distinct fixed points / cycles{where}",
                                             "units": "1"}),
            "outcome": tx(code, ("sample",), attrs=oc.flag_attrs(f"outcome of the orbit{where}")),
            "final_state": tx(torch.where(defined[:, None, None], res["final"], nan), ("sample", "state"), attrs={
                "long_name": f"last state of the orbit{where}", "units": su}),
            "transverse_exponent_mean": tx(mean_top, attrs={
                "long_name": f"largest transverse exponent averaged over the bounded orbits{where}",
                "units": units}),
            "manifold_stability": tx(overall, attrs=flag_attrs(
                f"transverse stability of the manifold {manifold.name!r} (its bounded orbits)", STABILITY_NAMES)),
        }
        ds = xr.Dataset(data)
        coords = {
            "sample": ("sample", np.arange(code.shape[1]), {"long_name": "initial state index"}),
            "state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"}),
            "tangent": ("tangent", np.arange(1, d - k + 1), {"long_name": "tangential exponent index"}),
            "normal": ("normal", np.arange(1, k + 1), {"long_name": "transverse exponent index"}),
        }
        ds = ds.assign_coords(coords)
        ds.attrs["manifold"] = manifold.name
        ds.attrs["manifold_description"] = manifold.description
        return ds

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``exponents`` (mean tangential and transverse exponents vs the first sweep dim) and ``stability``
        (mean largest transverse exponent: > 0 repelling, < 0 attracting)."""
        from .views import transverse_views

        return transverse_views(result)

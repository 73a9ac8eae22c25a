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
:math:`< -` ``neutral_tol``, **repelling** when :math:`> ` ``neutral_tol``, **neutral** in between. The manifold's
verdict per parameter value (``manifold_stability``) is that of its bounded orbits (``mixed`` when they disagree),
and ``transverse_exponent_mean`` averages the largest transverse exponent over them (the natural measure when
the dynamics on :math:`M` are ergodic, e.g. chaotic).

Failures are outcomes (:mod:`dynlearn.outcome`), never stability kinds: per orbit ``outcome`` is ``ok``,
``diverged`` / ``nan`` (the orbit left :math:`|x|_\infty \le` ``max_norm``), ``invalid_parameters`` (the
manifold does not exist at these parameters, e.g. the ellipse for :math:`\mu \ge 2`) or ``masked``; such an
orbit's ``stability`` and class are ``none``. Per parameter value ``manifold_outcome`` is ``ok`` when at least
one orbit stayed bounded, else ``diverged`` (or ``nan`` when every orbit turned NaN), ``invalid_parameters`` or
``masked``, and ``manifold_stability`` is then ``none``.

Two-factor map (DESIGN.md §3.3): on the Chebyshev ellipse :math:`E_\mu` the map is :math:`\theta \mapsto \pi
- 3\theta` (tangential exponent :math:`\ln 3`) and the transverse exponent is
:math:`\frac{1}{2\pi}\int_0^{2\pi} \ln|\det J(\theta)|\,d\theta - \ln 3 > 0` (e.g. :math:`\ln 2` at
:math:`\mu = 1.5`); on the balanced slice :math:`a = b = z` the transverse multiplier is
:math:`1 + \mu (z^2 - 1)`.

Examples
--------
>>> import dynlearn
>>> tr = TransverseStability(manifold="ellipse", n_samples=4, transient=50, steps=400)
>>> out = tr.run("two_factor", dynlearn.grid(mu=[1.5]))
>>> round(float(out.tangential_exponent.mean()), 1)            # ln 3 = 1.0986
1.1
>>> bool(out.transverse_exponent_mean.sel(mu=1.5) > 0.5)        # ln 2 = 0.693: transversely repelling
True
>>> dynlearn.outcome.labels(out.manifold_outcome.values).tolist()     # at least one orbit stayed bounded
['ok']
>>> out.manifold_stability.attrs["flag_meanings"].split()[int(out.manifold_stability.sel(mu=1.5))]
'repelling'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.analyzer import Analyzer
from dynlearn.errors import ParameterError
from dynlearn.params import Param, Settings
from dynlearn.sweep import Batch
from dynlearn.system import Manifold

from ..orbits.classify import initial_states, projector, resolve_manifold
from ..orbits.kernels import (
    APERIODIC,
    CHAOTIC,
    CLASS_NAMES,
    CONVERGED,
    NO_CLASS,
    PERIODIC,
    Stepper,
    canonical_point,
    detect_period,
    flag_attrs,
    label_attractors,
)
from ..orbits.options import ORBIT_OPTIONS, for_system
from .manifold import manifold_run

__all__ = ["TransverseStability", "STABILITY_NAMES"]

#: transverse stability of an orbit / a manifold (``stability``, ``manifold_stability`` codes): kinds only;
#: ``none`` where the outcome is not ok (``mixed`` is a manifold's verdict when its orbits disagree)
STABILITY_NAMES = ("attracting", "neutral", "repelling", "mixed", "none")
ATTRACTING, NEUTRAL, REPELLING, MIXED, NO_STABILITY = range(5)
#: kind-dependent defaults of the options left None
DEFAULTS = {"transient": {"map": 500, "flow": 50}, "steps": {"map": 2000, "flow": 100}}


class TransverseStability(Analyzer):
    """Tangential and transverse Lyapunov exponents of orbits on invariant manifolds; transverse stability.

    The keyword arguments are the declared :attr:`options` (:class:`~dynlearn.Param`), validated once into
    ``self.settings``; the helpers receive those settings.

    Parameters
    ----------
    manifold
        A declared manifold's name, a :class:`dynlearn.Manifold` (user-given constraint / projection; recorded
        by name in the provenance), or ``None``: every manifold the system declares (a ``manifold`` dim).
    n_samples, seed
        Initial states drawn uniformly from the domain (``seed``), the same for every sweep entry (0: only
        ``initial_states``); all initial states are projected onto the manifold.
    initial_states, initial_noise
        The user's initial states, in addition to the ``n_samples`` sampled ones (after them on the ``sample``
        dim): an array ``(sample, state)`` for every sweep entry, or a DataArray ``(sweep dims..., sample,
        state)`` per entry (see :func:`~dynlearn_builtins.analyzers._shared.states.user_states`), plus Gaussian
        noise of standard deviation ``initial_noise`` (absolute, in state units) before the projection.
    transient, steps
        Iterations on the manifold discarded, then used for the exponents; default ``(500, 2000)`` for maps,
        ``(50, 100)`` stroboscopic steps for flows.
    neutral_tol
        Neutral band: transverse exponents within ``+-neutral_tol`` are neutral.
    max_period, period_tol, lyapunov_tol
        Classification of the orbit on the manifold (period detection; chaos = largest tangential exponent
        ``> lyapunov_tol``), as in the ``orbits`` analyzer.
    max_norm
        Orbits leaving ``|x|_inf <= max_norm`` are diverged (outcome).
    flow_time, dt
        Flows: stroboscopic period and largest RK4 step.
    chunk_size
        Largest number of orbits iterated in one batch.
    """

    name: ClassVar[str] = "transverse"
    description: ClassVar[str] = "transverse stability of invariant manifolds: tangential and transverse Lyapunov exponents"
    kinds: ClassVar[tuple[str, ...]] = ("map", "flow")
    options: ClassVar[dict[str, Param]] = {
        "manifold": Param(None, kind="any", nullable=True,
                          description="name of a declared manifold, or a dynlearn.Manifold (None: every manifold "
                                      "the system declares, a manifold dim)"),
        "n_samples": replace(ORBIT_OPTIONS["n_samples"], default=8),
        **{k: ORBIT_OPTIONS[k] for k in ("initial_states", "initial_noise", "seed")},
        "transient": replace(ORBIT_OPTIONS["transient"],
                             description="iterations on the manifold discarded (None: 500 for maps, 50 stroboscopic "
                                         "steps for flows)"),
        "steps": replace(ORBIT_OPTIONS["steps"],
                         description="iterations on the manifold used for the exponents (None: 2000 for maps, 100 "
                                     "stroboscopic steps for flows)"),
        "neutral_tol": Param(1e-2, low=0,
                             description="transverse exponents within +-neutral_tol are neutral"),
        "max_period": replace(ORBIT_OPTIONS["max_period"], default=32, nullable=False,
                              description="largest period detected on the manifold"),
        **{k: ORBIT_OPTIONS[k] for k in ("period_tol", "lyapunov_tol", "max_norm", "flow_time", "dt", "chunk_size")},
    }

    # -- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        s = for_system(self.settings, system, DEFAULTS)
        if s.manifold is None:
            manifolds = list(system.manifolds().values())
            if not manifolds:
                raise ParameterError(
                    f"system {system.name!r} declares no invariant manifold; pass manifold=Manifold(...)"
                )
        else:
            manifolds = [resolve_manifold(system, s.manifold)]
        states = initial_states(batch, s, "transverse")
        results = [_one(batch, m, states, s, show_progress) for m in manifolds]
        if s.manifold is not None:
            return results[0]
        names = xr.DataArray(np.array([m.name for m in manifolds], dtype=object), dims="manifold",
                             attrs={"long_name": "invariant manifold"})
        return xr.concat(results, dim=names, join="outer", combine_attrs="override")

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``exponents`` (mean tangential and transverse exponents vs the first sweep dim) and ``stability``
        (mean largest transverse exponent: > 0 repelling, < 0 attracting)."""
        from .views import transverse_views

        return transverse_views(result)


def _one(batch: Batch, manifold: Manifold, states: torch.Tensor, settings: Settings,
         show_progress: bool | None) -> xr.Dataset:
    """Orbits on one manifold from ``states (B, S, d)``, chunked over the batch, as a labeled Dataset."""
    system = batch.system
    S = states.shape[1]
    parts = []
    for sl, p in batch.chunks(max(1, settings.chunk_size // S)):
        n = sl.stop - sl.start
        pe = system.expand_params(p)
        defined = torch.ones(n, dtype=torch.bool)
        if manifold.valid is not None:
            defined = torch.as_tensor(manifold.valid(p)).reshape(-1).expand(n).clone()
        x0 = states[sl].clone()
        x0 = torch.where(defined[:, None, None], projector(manifold, pe)(x0), x0)
        stepper = Stepper(system, pe, settings.flow_time, settings.dt)
        res = manifold_run(stepper, manifold, x0, settings, show_progress, desc=f"transverse {manifold.name}")
        res["defined"] = defined
        res["initial"] = x0
        parts.append(res)
    res = {k: torch.cat([r[k] for r in parts], dim=1 if k == "tail" else 0) for k in parts[0]}
    return _dataset(batch, manifold, res, settings)


def _dataset(batch: Batch, manifold: Manifold, res: Mapping[str, torch.Tensor], settings: Settings) -> xr.Dataset:
    """Exponents, classes, stability and outcomes of the orbits on one manifold, labeled."""
    s = settings
    system = batch.system
    code, tail = res["code"], res["tail"]
    ok = code == oc.OK
    defined = res["defined"] & batch.valid
    counted = ok & defined[:, None]  # bounded orbits on a manifold that exists, at computed parameters
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    tang = torch.where(defined[:, None, None], res["tangential"], nan)
    trans = torch.where(defined[:, None, None], res["transverse"], nan)
    period = torch.where(counted, detect_period(tail, s.max_period, s.period_tol), 0)
    lam1 = tang[..., 0] if tang.shape[-1] else torch.full(code.shape, -np.inf, dtype=torch.float64)
    cls = torch.full(code.shape, APERIODIC, dtype=torch.int8)
    cls = torch.where(lam1 > s.lyapunov_tol, CHAOTIC, cls)
    cls = torch.where(period > 1, PERIODIC, cls)
    cls = torch.where(period == 1, CONVERGED, cls)
    cls = torch.where(counted, cls, NO_CLASS).to(torch.int8)
    # a failure is an outcome: the manifold does not exist here (invalid_parameters), or not computed (masked)
    outcome = torch.where(res["defined"][:, None], code, oc.INVALID_PARAMETERS)
    outcome = torch.where(batch.valid[:, None], outcome, oc.MASKED).to(torch.int8)
    top = trans[..., 0] if trans.shape[-1] else torch.full(code.shape, np.nan, dtype=torch.float64)
    tol = s.neutral_tol
    stab = torch.where(top < -tol, ATTRACTING, torch.where(top > tol, REPELLING, NEUTRAL))
    stab = torch.where(counted, stab, NO_STABILITY).to(torch.int8)
    has = counted & (period >= 1)
    key = canonical_point(tail, period)
    match_tol = max(100 * s.period_tol, 1e-9) * (1 + key.abs().amax(-1))
    attractor, n_att = label_attractors(key, torch.where(has, period, 0), has, match_tol)
    # verdict per parameter value: that of its bounded orbits, "mixed" when they disagree
    verdicts = torch.stack([((stab == v) & counted).any(-1) for v in (ATTRACTING, NEUTRAL, REPELLING)], -1)
    n_kinds = verdicts.sum(-1)
    overall = torch.where(n_kinds > 1, MIXED, verdicts.long().argmax(-1))
    overall = torch.where(n_kinds == 0, NO_STABILITY, overall).to(torch.int8)
    m_out = torch.where(counted.any(-1), oc.OK, torch.where((code == oc.NAN).all(-1), oc.NAN, oc.DIVERGED))
    m_out = torch.where(res["defined"], m_out, oc.INVALID_PARAMETERS)
    m_out = torch.where(batch.valid, m_out, oc.MASKED).to(torch.int8)
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
            f"transverse stability of the orbit's attractor{where} (none: the outcome is not ok)", STABILITY_NAMES)),
        "orbit": tx(cls, ("sample",), attrs=flag_attrs(f"class of the orbit{where} (none: the outcome is not ok)",
                                                       CLASS_NAMES)),
        "period": tx(period, ("sample",), attrs={
            "long_name": f"period of the orbit{where} (1: fixed point, 0: none)", "units": "step"}),
        "attractor": tx(attractor, ("sample",), attrs={
            "long_name": f"index of the distinct fixed point / cycle reached{where} (-1: none)", "units": "1"}),
        "n_attractors": tx(n_att, attrs={"long_name": f"number of distinct fixed points / cycles{where}",
                                         "units": "1"}),
        "outcome": tx(outcome, ("sample",), attrs=oc.flag_attrs(f"outcome of the orbit{where}")),
        "initial_state": tx(torch.where(defined[:, None, None], res["initial"], nan), ("sample", "state"), attrs={
            "long_name": f"initial state of the orbit, projected{where}", "units": su}),
        "final_state": tx(torch.where(defined[:, None, None], res["final"], nan), ("sample", "state"), attrs={
            "long_name": f"last state of the orbit{where}", "units": su}),
        "transverse_exponent_mean": tx(mean_top, attrs={
            "long_name": f"largest transverse exponent averaged over the bounded orbits{where}",
            "units": units}),
        "manifold_stability": tx(overall, attrs=flag_attrs(
            f"transverse stability of the manifold {manifold.name!r} (its bounded orbits; none: the outcome is "
            "not ok)", STABILITY_NAMES)),
        "manifold_outcome": tx(m_out, attrs=oc.flag_attrs(
            f"outcome of the manifold {manifold.name!r} (ok: at least one orbit stayed bounded)")),
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

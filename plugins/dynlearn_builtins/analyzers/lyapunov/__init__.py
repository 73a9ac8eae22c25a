r"""Lyapunov-spectrum analyzer: the full spectrum (QR / Benettin), finite-time exponents, covariant vectors and the
Kaplan-Yorke dimension of any System, over a parameter sweep.

For every parameter value and every initial state (``sample``) the orbit runs ``transient`` steps (the tangent
vectors are aligned over the last ``min(transient, steps // 4)`` of them), then ``steps`` measured steps of
:func:`dynlearn.lyapunov.spectrum`: all of them one batch (sweep values x samples), one Python loop over steps.
Maps: exponents per iteration. Flows: RK4 steps of size ``dt``; the exponents are those of the RK4 time-``dt`` map
divided by ``dt`` (per unit time), within :math:`O(dt^4)` of the flow's.

Outputs (dims: the sweep dims, then ``sample``, ``exponent``, ``window``, ``state``):
``exponents``, ``exponent_sum``, ``kaplan_yorke`` per orbit; ``mean_exponents`` / ``exponent_sem`` (mean and
standard error over the samples whose outcome is ok) and ``kaplan_yorke_dimension`` (of the mean spectrum);
``finite_time`` (with ``window``), ``covariant_vectors`` at ``measured_from`` (with ``covariant=True``);
``outcome`` (:mod:`dynlearn.outcome`: ok / diverged / nan / masked).

Examples
--------
>>> import math, dynlearn
>>> out = Lyapunov(n_samples=4, steps=2000, transient=200).run("henon")
>>> [round(v, 1) for v in out.mean_exponents.values.tolist()]
[0.4, -1.6]
>>> abs(float(out.exponent_sum.isel(sample=0)) - math.log(0.3)) < 1e-10
True
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
from dynlearn.lyapunov import kaplan_yorke, spectrum
from dynlearn.params import Param, Settings
from dynlearn.sweep import Batch

from ..orbits.classify import initial_states, resolve_manifold, start_states
from ..orbits.options import ORBIT_OPTIONS

__all__ = ["Lyapunov"]

#: kind-dependent defaults of the options left None
DEFAULTS = {"transient": {"map": 1000, "flow": 2000}, "steps": {"map": 10000, "flow": 20000}}


class Lyapunov(Analyzer):
    """Full Lyapunov spectra (or the ``k`` leading exponents) of orbits, batched over the sweep and the samples.

    The keyword arguments are the declared :attr:`options` (:class:`~dynlearn.Param`), validated once into
    ``self.settings``.

    Parameters
    ----------
    n_samples, seed
        Initial states drawn uniformly from the domain (``seed``), the same for every sweep entry (0: only
        ``initial_states``).
    initial_states, initial_noise
        The user's initial states, in addition to the ``n_samples`` sampled ones (after them on the ``sample``
        dim): an array ``(sample, state)`` for every sweep entry, or a DataArray ``(sweep dims..., sample,
        state)`` per entry (see :func:`~dynlearn_builtins.analyzers._shared.states.user_states`), plus Gaussian
        noise of standard deviation ``initial_noise`` (absolute, in state units); ``initial_state`` records them.
    manifold
        The initial states are projected onto a declared manifold when it names one (``"balanced"`` for the
        two-factor map).
    transient, steps, dt
        Steps discarded, steps measured (defaults 1000 / 10000 for maps, 2000 / 20000 RK4 steps for flows) and the
        RK4 step of a flow.
    k, renorm_every
        Number of leading exponents (None: all) and steps between re-orthonormalisations.
    window
        Steps per finite-time window (None: no ``finite_time`` variable).
    covariant
        Also compute covariant Lyapunov vectors (Ginelli) at the first measured state.
    precision, max_norm, chunk_size
        Float dtype of the states (tangent dynamics are float64 anyway); orbits leaving ``|x|_inf <= max_norm``
        are ``diverged``; largest number of orbits in one batch.
    """

    name: ClassVar[str] = "lyapunov"
    description: ClassVar[str] = "Lyapunov spectrum (QR), finite-time exponents, covariant vectors, Kaplan-Yorke dimension"
    kinds: ClassVar[tuple[str, ...]] = ("map", "flow")
    options: ClassVar[dict[str, Param]] = {
        "n_samples": replace(ORBIT_OPTIONS["n_samples"], default=8),
        **{k: ORBIT_OPTIONS[k] for k in ("initial_states", "initial_noise", "seed")},
        "manifold": Param(None, kind="any", nullable=True,
                          description="name of a manifold the system declares, or a dynlearn.Manifold: the initial "
                                      "states are projected onto it (None: not projected)"),
        "transient": Param(None, kind="int", low=0, nullable=True,
                           description="steps discarded before measuring (None: 1000 for maps, 2000 for flows)"),
        "steps": Param(None, kind="int", low=1, nullable=True,
                       description="steps measured (None: 10000 for maps, 20000 RK4 steps for flows)"),
        "dt": Param(0.01, low=0, low_inclusive=False, description="flows: RK4 step (exponents per unit time)"),
        "k": Param(None, kind="int", low=1, nullable=True, description="number of leading exponents (None: all)"),
        "renorm_every": Param(1, kind="int", low=1, description="steps between re-orthonormalisations (QR)"),
        "window": Param(None, kind="int", low=1, nullable=True,
                        description="steps per finite-time window (None: no finite-time exponents)"),
        "covariant": Param(False, kind="bool", description="also compute covariant Lyapunov vectors (Ginelli)"),
        "precision": ORBIT_OPTIONS["precision"],
        "max_norm": ORBIT_OPTIONS["max_norm"],
        "chunk_size": Param(4096, kind="int", low=1, description="largest number of orbits in one batch"),
    }

    def work_size(self, batch: Batch) -> int:
        d = batch.system.state_dim
        s = self.settings
        user = s.initial_states
        n_user = 0 if user is None else (int(user.sizes.get("sample", 1)) if isinstance(user, xr.DataArray)
                                         else (1 if np.ndim(user) == 1 else len(user)))
        return batch.size * (s.n_samples + n_user) * d

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        system = batch.system
        s = self.settings.replace(**{n: by[system.kind] for n, by in DEFAULTS.items() if self.settings[n] is None})
        _check(s, system.state_dim)
        manifold = resolve_manifold(system, s.manifold)
        states = initial_states(batch, s, "lyapunov")
        S = states.shape[1]
        dtype = torch.float32 if s.precision == "float32" else torch.float64
        parts = []
        for sl, p in batch.chunks(max(1, s.chunk_size // S)):
            x0 = start_states(system, states[sl], p, manifold)
            pe = {n: v.to(dtype) if v.is_floating_point() else v for n, v in system.expand_params(p).items()}
            parts.append((x0, spectrum(system, x0.to(dtype), pe, steps=s.steps, dt=s.dt, transient=s.transient,
                                       k=s.k, renorm_every=s.renorm_every, window=s.window, covariant=s.covariant,
                                       max_norm=s.max_norm)))
        return spectrum_dataset(batch, parts, s)

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``spectrum`` (mean exponents vs the first sweep dim, or per sample), ``kaplan_yorke`` and, with
        finite-time exponents, ``finite_time`` (the leading one per window)."""
        from .views import lyapunov_views

        return lyapunov_views(result)


def _check(s: Settings, d: int) -> None:
    """The option checks that need the system (one-line errors)."""
    if s.k is not None and s.k > d:
        raise ParameterError(f"analyzer 'lyapunov': option 'k' must be <= the state dim {d}, got {s.k}")
    if s.steps % s.renorm_every:
        raise ParameterError(f"analyzer 'lyapunov': option 'steps' ({s.steps}) must be a multiple of renorm_every "
                             f"({s.renorm_every})")
    if s.window is not None and (s.window > s.steps or s.window % s.renorm_every):
        raise ParameterError(f"analyzer 'lyapunov': option 'window' ({s.window}) must be <= steps ({s.steps}) and a "
                             f"multiple of renorm_every ({s.renorm_every})")


def spectrum_dataset(batch: Batch, parts: list, s: Settings) -> xr.Dataset:
    """The labeled result: one :class:`~dynlearn.lyapunov.Spectrum` per chunk of the batch, concatenated."""
    system = batch.system

    def cat(name: str) -> torch.Tensor | None:
        vals = [getattr(sp, name) for _, sp in parts]
        return None if vals[0] is None else torch.cat([v.double() if v.is_floating_point() else v for v in vals])

    x0 = torch.cat([x for x, _ in parts]).double()
    lam, code = cat("exponents"), cat("outcome")
    bad = ~batch.valid  # masked parameter values (NaN in a training run)

    def f(t: torch.Tensor) -> torch.Tensor:
        return torch.where(bad.reshape(-1, *([1] * (t.dim() - 1))), torch.tensor(np.nan, dtype=torch.float64), t)

    code = torch.where(bad.unsqueeze(-1), torch.tensor(oc.MASKED, dtype=torch.int8), code)
    ok = code == oc.OK
    n_ok = ok.sum(-1, keepdim=True)
    lam_ok = torch.where(ok.unsqueeze(-1), lam, 0.0)
    mean = torch.where(n_ok > 0, lam_ok.sum(-2) / n_ok.clamp_min(1), torch.nan)
    var = torch.where(ok.unsqueeze(-1), (lam - mean.unsqueeze(-2)) ** 2, 0.0).sum(-2) / (n_ok - 1).clamp_min(1)
    sem = torch.where(n_ok > 1, (var / n_ok).sqrt(), torch.nan)
    flow = system.kind == "flow"
    tu = system.time_units
    units = "1/iteration" if not flow else (f"1/{tu}" if tu != "1" else "1/time")
    step_units = "iteration" if not flow else f"{s.dt:g} {tu} (RK4 step)"
    K = lam.shape[-1]
    tx = batch.to_xarray
    data = {
        "exponents": tx(f(lam), ("sample", "exponent"), attrs={
            "long_name": "Lyapunov exponents (decreasing; QR method)" + (", of the RK4 time-dt map / dt" if flow else ""),
            "units": units}),
        "exponent_sum": tx(f(lam.sum(-1)), ("sample",), attrs={
            "long_name": "sum of the exponents (all d of them: the mean of ln|det J| per unit)", "units": units}),
        "kaplan_yorke": tx(f(kaplan_yorke(lam)), ("sample",), attrs={
            "long_name": "Kaplan-Yorke dimension of the orbit's spectrum", "units": "1"}),
        "mean_exponents": tx(f(mean), ("exponent",), attrs={
            "long_name": "mean Lyapunov exponents over the samples whose outcome is ok", "units": units}),
        "exponent_sem": tx(f(sem), ("exponent",), attrs={
            "long_name": "standard error of the mean exponents over the samples", "units": units}),
        "kaplan_yorke_dimension": tx(f(kaplan_yorke(mean)), attrs={
            "long_name": "Kaplan-Yorke dimension of the mean spectrum", "units": "1"}),
        "initial_state": tx(f(x0), ("sample", "state"), attrs={"long_name": "initial state",
                                                               "units": system.state_units}),
        "measured_from": tx(f(cat("start")), ("sample", "state"), attrs={
            "long_name": "state after the transient (first measured state; the covariant vectors' base point)",
            "units": system.state_units}),
        "final_state": tx(f(cat("final")), ("sample", "state"), attrs={
            "long_name": "last state (the last one inside the ball for failed orbits)", "units": system.state_units}),
        "outcome": tx(code, ("sample",), attrs=oc.flag_attrs("outcome of the orbit")),
    }
    ft = cat("finite_time")
    if ft is not None:
        data["finite_time"] = tx(f(ft), ("sample", "window", "exponent"), attrs={
            "long_name": f"finite-time exponents over windows of {s.window} steps (Gram-Schmidt order)",
            "units": units})
    cov = cat("covariant")
    if cov is not None:
        data["covariant_vectors"] = tx(f(cov), ("sample", "state", "exponent"), attrs={
            "long_name": "covariant Lyapunov vectors at measured_from (unit norm, sign arbitrary; Ginelli)",
            "units": "1"})
    ds = xr.Dataset(data)
    coords = {
        "sample": ("sample", np.arange(x0.shape[1]), {"long_name": "initial state index"}),
        "state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"}),
        "exponent": ("exponent", np.arange(1, K + 1), {"long_name": "Lyapunov exponent index (decreasing)"}),
    }
    if ft is not None:
        coords["window"] = ("window", np.arange(ft.shape[-2]) * s.window,
                            {"long_name": "first measured step of the window", "units": step_units})
    ds = ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})
    ds.attrs.update({"steps": int(s.steps), "transient": int(s.transient), "dt": float(s.dt) if flow else 1.0})
    return ds

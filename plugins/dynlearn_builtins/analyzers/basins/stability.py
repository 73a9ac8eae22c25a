r"""Basin stability of the attractors of a flow: the share of a distribution of initial states each one wins.

For every sweep element (e.g. a grid of torques at once), :class:`BasinStability`

1. takes initial states from a distribution (independent uniform draws in the box), a scrambled Sobol sequence,
   a grid, or the user (``initial_states``: one array for every element or a DataArray per element);
2. integrates all of them (and of all elements) as one batch with torchdiffeq, adaptive (``dopri5`` with
   ``rtol``/``atol``) or fixed-step (``rk4`` with ``dt``), window by window
   (:func:`dynlearn.simulate.simulate_until`): a trajectory stops at its first event — ``converged`` (it moved
   less than ``converge_tol`` over a window), ``settled`` (its features changed by at most ``feature_tol`` from
   window to window ``patience`` times in a row), ``diverged`` (left ``|x|_inf <= max_norm``),
   ``left_region`` (left the box ``region``), ``nan`` — and leaves the batch, or runs to ``t_end``;
3. describes each trajectory by its features over its last window (:mod:`.features`; periodic coordinates
   modulo their period: an equilibrium ``theta* + 2 pi k`` is one attractor, a rotation a limit cycle);
4. names the attractors (:mod:`.naming`): ``auto`` (clusters at distance ``eps``; kinds ``fixed_point``,
   ``periodic`` (named ``rotation`` or ``limit_cycle``), ``aperiodic``), ``templates`` (nearest user template)
   or ``cluster`` (scikit-learn DBSCAN / KMeans);
5. reports each attractor's basin stability with Wilson intervals and matches the attractor ids along an
   ordered sweep dim (``match_dim``; by default the only sweep dim), so that an attractor keeps its id across
   a parameter.

Maths
-----
The basin stability of attractor :math:`A` under the distribution :math:`\rho` of initial states is
:math:`S_B(A) = \int \chi_{B(A)}(x)\,\rho(x)\,dx`. With :math:`n` independent draws, of which :math:`k` end on
:math:`A`, :math:`\hat S_B = k/n` and the Wilson score interval
:math:`(\hat p + z^2/2n \mp z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}) / (1 + z^2/n)`, :math:`z = \Phi^{-1}((1 +
c)/2)`, covers :math:`S_B` with probability about :math:`c` (exactly calibrated for random draws; a guide for
Sobol points and grids).

Examples
--------
>>> import dynlearn
>>> out = BasinStability(n_samples=256, t_end=200.0, rtol=1e-6, atol=1e-6).run("pendulum")
>>> sorted(out.attractor_name.values.tolist())
['fixed_point', 'rotation']
>>> bool(abs(out.basin_stability.sum() + out.diverged_fraction + out.unresolved_fraction - 1) < 1e-12)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.analyzer import Analyzer
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import Param
from dynlearn.progress import Meter
from dynlearn.simulate import EVENTS, event_attrs, simulate_until
from dynlearn.sweep import Batch

from .._shared.states import state_options, user_states
from .features import Settling, names as feature_names
from .matching import attractor_ids
from .naming import cluster, describe, nearest
from .sampling import NO_MATCH, box, match_dim, samples
from .table import interval_vars, wilson

__all__ = ["BasinStability"]

OWNER = "analyzer 'basin_stability'"
_POSITIVE = dict(low=0, low_inclusive=False)


class BasinStability(Analyzer):
    """Basin stability of the attractors of a flow, with events, templates or clustering, over a sweep.

    Options (``BasinStability.options``; validated when the analyzer is made):

    Parameters
    ----------
    sampling, n_samples, resolution, bounds, seed
        Initial states: ``"uniform"`` (``n_samples`` independent draws in the box), ``"sobol"``, ``"grid"``
        (``resolution`` per axis) in ``bounds`` (default: the system's domain; periodic coordinates their
        interval), drawn with ``seed``.
    initial_states, initial_noise
        The user's initial states instead: ``(sample, state)`` for every sweep element, or a DataArray
        ``(sweep dims..., sample, state)`` (:func:`dynlearn_builtins.analyzers._shared.states.user_states`), plus
        Gaussian noise of that standard deviation (state units, drawn with ``seed``).
    method, rtol, atol, dt
        torchdiffeq solver: adaptive (``dopri5``, ``bosh3``, ...) with ``rtol``/``atol``, or fixed-step
        (``rk4``, ``euler``, ``midpoint``) with step ``dt``.
    t_end, window, window_samples
        Longest integration time; events are checked every ``window`` time units on ``window_samples + 1``
        recorded states (the window should span a few periods of the slowest cycle).
    converge_tol, feature_tol, patience
        Stopping events (see the module docstring).
    max_norm, region
        ``diverged`` beyond ``|x|_inf <= max_norm``; ``left_region`` outside the box ``region`` ``[[lo, hi]]``
        per coordinate (periodic coordinates never leave it).
    naming, eps, templates, template_gate, clusterer, min_samples, n_clusters
        Attractor naming: ``"auto"``, ``"templates"`` (``templates = {name: feature vector or initial state}``,
        nearest within ``template_gate``), ``"cluster"`` (``clusterer`` ``"dbscan"`` with ``eps`` /
        ``min_samples``, or ``"kmeans"`` with ``n_clusters``).
    confidence
        Confidence level of the Wilson intervals.
    match_dim, match_gate
        The ordered sweep dim along which attractor ids are matched (``None``: ``epoch`` if swept, else the only
        sweep dim; ``"none"``: no matching) and the largest feature distance between an attractor's positions at
        consecutive steps (``None``: half the span of all attractors' features).
    precision, chunk_size
        ``"float64"`` or ``"float32"``; trajectories integrated together.

    Notes
    -----
    Output: per sample ``initial_state``, ``basin`` (attractor id, -1 none), ``outcome`` (ok, diverged, nan,
    unresolved, masked), ``event`` (:data:`dynlearn.simulate.EVENTS`), ``stop_time``, ``final_state``,
    ``features``; per attractor ``attractor_name``, ``attractor_kind``, ``attractor_state``,
    ``attractor_features``, ``basin_count``, ``basin_stability`` (+ ``_low`` / ``_high``); per element
    ``diverged_fraction`` (+ ``_low`` / ``_high``), ``unresolved_fraction``, ``n_attractors``,
    ``mean_stop_time``. Every variable keeps all sweep dims.
    """

    name = "basin_stability"
    description = "basin stability of a flow's attractors (events, periodic coordinates, templates, clustering)"
    kinds = ("flow",)
    options = {
        "sampling": Param("uniform", kind="str", choices=("uniform", "sobol", "grid"),
                          description="initial states: uniform draws, Sobol points or a grid in the box"),
        "n_samples": Param(10000, kind="int", low=1, description="initial states per sweep element"),
        "resolution": Param(None, kind="any", nullable=True, description="grid points per axis (sampling grid)"),
        "bounds": Param(None, kind="list", nullable=True,
                        description="box [[lo, hi]] per state coordinate (None: the system's domain)"),
        **state_options("used instead of sampling"),
        "seed": Param(0, kind="int", low=0, description="seed of the uniform draws / Sobol scrambling"),
        "method": Param("dopri5", kind="str",
                        choices=("dopri5", "dopri8", "bosh3", "adaptive_heun", "rk4", "euler", "midpoint"),
                        description="torchdiffeq solver"),
        "rtol": Param(1e-8, **_POSITIVE, description="relative tolerance (adaptive solvers)"),
        "atol": Param(1e-6, **_POSITIVE, description="absolute tolerance (adaptive solvers)"),
        "dt": Param(0.01, **_POSITIVE, description="step of the fixed-step solvers"),
        "t_end": Param(1000.0, **_POSITIVE, description="longest integration time"),
        "window": Param(20.0, **_POSITIVE, description="time between event checks"),
        "window_samples": Param(200, kind="int", low=2, description="recorded states per window"),
        "converge_tol": Param(1e-4, **_POSITIVE,
                              description="converged: every coordinate moved at most this over a window"),
        "feature_tol": Param(1e-2, **_POSITIVE, description="settled: features changed at most this per window"),
        "patience": Param(2, kind="int", low=1, description="consecutive calm windows before settled"),
        "max_norm": Param(1e6, **_POSITIVE, description="trajectories leaving |x|_inf <= max_norm are diverged"),
        "region": Param(None, kind="list", nullable=True,
                        description="box [[lo, hi]] per coordinate; leaving it stops a trajectory (left_region)"),
        "naming": Param("auto", kind="str", choices=("auto", "templates", "cluster"),
                        description="automatic, nearest template, or scikit-learn clustering of the features"),
        "eps": Param(0.1, **_POSITIVE, description="feature distance joining trajectories into one attractor"),
        "templates": Param(None, kind="any", nullable=True,
                           description="{name: feature vector or initial state} (naming templates)"),
        "template_gate": Param(None, **_POSITIVE, nullable=True,
                               description="largest feature distance to the nearest template (None: any)"),
        "clusterer": Param("dbscan", kind="str", choices=("dbscan", "kmeans"), description="naming cluster"),
        "min_samples": Param(5, kind="int", low=1, description="DBSCAN's min_samples (naming cluster)"),
        "n_clusters": Param(2, kind="int", low=1, description="KMeans' n_clusters (naming cluster)"),
        "confidence": Param(0.95, low=0, high=1, low_inclusive=False, high_inclusive=False,
                            description="confidence level of the Wilson intervals"),
        "match_dim": Param(None, kind="str", nullable=True,
                           description=f"sweep dim to match attractor ids along (None: epoch or the only dim; "
                                       f"{NO_MATCH!r}: none)"),
        "match_gate": Param(None, **_POSITIVE, nullable=True,
                            description="largest feature move of a matched attractor between consecutive steps"),
        "precision": Param("float64", kind="str", choices=("float64", "float32"), description="float dtype"),
        "chunk_size": Param(131072, kind="int", low=1, description="trajectories integrated together"),
    }

    def dtype(self):
        return torch.float32 if self.precision == "float32" else torch.float64

    def work_size(self, batch: Batch) -> int:
        return batch.size * self.settings.n_samples * batch.system.state_dim

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        s, system = self.settings, batch.system
        _check(s, self.dtype())
        circle = system.circle
        fnames = feature_names(system.state_names, circle)
        x0, shape = self._initial(batch)  # (B, S, d)
        tnames, tstates, tfeats = _templates(s, system, len(fnames))
        B, S, d = x0.shape
        if tstates is not None:
            x0 = torch.cat([x0, tstates.to(x0.dtype).expand(B, -1, -1)], 1)
        M = x0.shape[1]
        run = self._integrate(batch, x0.reshape(B * M, d), M, circle, show_progress)
        F = run["features"].reshape(B, M, -1)
        if tstates is not None:
            tfeats = F[:, S:]  # the templates' own trajectories, per element
        tfeats = None if tfeats is None else np.broadcast_to(tfeats, (B, len(tnames), len(fnames)))
        cut = {k: v.reshape(B, M, *v.shape[1:])[:, :S] for k, v in run.items()}
        valid = batch.valid.numpy()
        code = np.where(valid[:, None], cut["outcome"], oc.MASKED).astype(np.int8)
        elems = [self._name(cut["features"][e], code[e], cut["event"][e], cut["final"][e], circle,
                            None if tfeats is None else tfeats[e], tnames) for e in range(B)]
        ids, K, dim = self._ids(batch, elems, len(fnames))
        out = _assemble(s, batch, x0[:, :S].numpy(), shape, cut, code, elems, ids, K, fnames)
        out.attrs["matched_dim"] = dim or ""  # '' : ids not matched across sweep elements
        return out

    # -- steps -------------------------------------------------------------------------------------------
    def _initial(self, batch: Batch) -> tuple[torch.Tensor, tuple[int, ...] | None]:
        s, system = self.settings, batch.system
        if s.initial_states is not None:
            gen = torch.Generator().manual_seed(int(s.seed))
            return user_states(s.initial_states, batch, system, noise=s.initial_noise, generator=gen,
                               dtype=self.dtype()), None
        lo, hi = box(s, system)
        shape, X = samples(s, lo, hi)
        x = torch.as_tensor(X, dtype=self.dtype())
        return x.expand(batch.size, -1, -1), shape

    def _integrate(self, batch: Batch, x0: torch.Tensor, M: int, circle, show_progress) -> dict[str, np.ndarray]:
        s, system = self.settings, batch.system
        N = len(x0)
        p = {k: v.to(x0.dtype).repeat_interleave(M, 0) for k, v in batch.params.items()}
        region = None if s.region is None else _region(s.region, system.state_dim)
        out = {"final": np.empty((N, system.state_dim)), "time": np.empty(N), "outcome": np.empty(N, np.int8),
               "event": np.empty(N, np.int8), "features": np.empty((N, 3 * system.state_dim))}
        n_windows = int(np.ceil(s.t_end / s.window))
        chunks = range(0, N, s.chunk_size)
        with Meter(len(chunks) * n_windows, "basin stability", show_progress, unit="window") as meter:
            for c0 in chunks:
                c1 = min(N, c0 + s.chunk_size)
                watch = Settling(c1 - c0, circle, s.feature_tol, s.patience, x0.dtype)
                r = simulate_until(system, x0[c0:c1], {k: v[c0:c1] for k, v in p.items()}, t_end=s.t_end,
                                   window=s.window, samples=s.window_samples, method=s.method, step_size=s.dt,
                                   rtol=s.rtol, atol=s.atol, max_norm=s.max_norm, region=region,
                                   converge_tol=s.converge_tol, observe=watch, on_window=lambda t, n: meter.update())
                meter.update(n_windows - r.windows)
                out["final"][c0:c1] = r.final.double().numpy()
                out["time"][c0:c1] = r.time.double().numpy()
                out["outcome"][c0:c1] = r.outcome.numpy()
                out["event"][c0:c1] = r.event.numpy()
                out["features"][c0:c1] = watch.value.double().numpy()
        return out

    def _name(self, F, code, event, final, circle, tfeats, tnames) -> dict[str, Any]:
        """One sweep element's labels ``(S,)`` (cluster index, -1 none) and attractor table."""
        s = self.settings
        bounded = (code == oc.OK) | (code == oc.MAX_STEPS)
        if s.naming == "templates":
            lab = np.where(bounded, nearest(F, np.asarray(tfeats, dtype=float), gate=s.template_gate), -1)
            n = len(tnames)
        else:
            method = "auto" if s.naming == "auto" else s.clusterer
            lab = cluster(F, bounded, method=method, eps=s.eps, min_samples=s.min_samples,
                          n_clusters=s.n_clusters, seed=s.seed)
            n = int(lab.max()) + 1 if (lab >= 0).any() else 0
        settled = np.isin(event, (EVENTS.index("converged"), EVENTS.index("settled")))
        kinds, auto_names, states, centre = describe(F, lab, settled, final, circle, s.eps, n)
        present = np.array([bool(k) for k in kinds], dtype=bool)
        if s.naming == "templates":
            names = list(tnames)
            centre = np.asarray(tfeats, dtype=float)
        else:  # drop empty clusters (DBSCAN noise only); the automatic names
            keep = np.flatnonzero(present)
            remap = np.full(n + 1, -1)
            remap[keep] = np.arange(len(keep))
            lab = remap[lab]
            kinds = [kinds[i] for i in keep]
            names = [auto_names[i] for i in keep]
            states, centre, present = states[keep], centre[keep], present[keep]
        return {"labels": lab, "kinds": kinds, "names": names, "states": states, "centre": centre,
                "present": present}

    def _ids(self, batch: Batch, elems: list[dict], nf: int) -> tuple[list[np.ndarray], int, str | None]:
        """Attractor ids of every element (matched along the returned dim), and their number."""
        s = self.settings
        if s.naming == "templates":  # the templates are the ids
            K = len(elems[0]["names"])
            return [np.arange(K) for _ in elems], K, None
        dim = match_dim(s, batch.dims)
        if dim is None and s.match_dim is None and len(batch.dims) == 1:
            dim = batch.dims[0]
        cen = [e["centre"] for e in elems]
        allc = np.concatenate([c for c in cen if len(c)] or [np.zeros((1, nf))])
        gate = s.match_gate if s.match_gate is not None else max(0.5 * float(np.linalg.norm(np.ptp(allc, 0))), s.eps)
        ids, K = attractor_ids([np.repeat(c[:, None], 3, 1) for c in cen], [e["kinds"] for e in elems],
                               batch.valid.numpy(), batch.shape, batch.dims.index(dim) if dim else None, gate)
        return ids, K, dim

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """``stability``: basin stability per attractor (vs the matched dim, with its Wilson band);
        ``basins``: the initial states coloured by their attractor."""
        from .views import stability_views

        return stability_views(result)


def _check(s, dtype) -> None:
    if s.naming == "templates" and not s.templates:
        raise ParameterError(f"{OWNER}: naming 'templates' needs templates = {{name: feature vector or state}}")
    if dtype == torch.float32 and s.method not in ("rk4", "euler", "midpoint") and s.rtol < 1e-6:
        raise ParameterError(f"{OWNER}: rtol {s.rtol:g} is below float32's resolution; use precision 'float64' "
                             f"or rtol >= 1e-6")


def _region(value, d: int) -> np.ndarray:
    try:
        r = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(f"{OWNER}: region must be numbers [[lo, hi]] per state coordinate, got {value!r}") from None
    if r.shape != (d, 2) or not (r[:, 0] < r[:, 1]).all():
        raise ShapeError(f"{OWNER}: region must be [[lo, hi]] with lo < hi for each of the {d} state coordinates, "
                         f"got {r.tolist()}")
    return r


def _templates(s, system, nf: int):
    """``(names, template states (1, K, d) or None, template features (K, f) or None)``."""
    if s.naming != "templates":
        return [], None, None
    if not isinstance(s.templates, Mapping):
        raise ParameterError(f"{OWNER}: templates must be a mapping {{name: feature vector or state}}, "
                             f"got {s.templates!r}")
    names = [str(k) for k in s.templates]
    rows = [np.asarray(v, dtype=float).ravel() for v in s.templates.values()]
    d = system.state_dim
    widths = {len(r) for r in rows}
    if widths == {d}:
        return names, torch.as_tensor(np.stack(rows))[None], None
    if widths == {nf}:
        return names, None, np.stack(rows)
    raise ShapeError(f"{OWNER}: every template is an initial state ({d} values) or a feature vector ({nf} values: "
                     f"{', '.join(feature_names(system.state_names, system.circle))}), got lengths {sorted(widths)}")


def _assemble(s, batch: Batch, x0: np.ndarray, shape, run, code, elems, ids, K, fnames) -> xr.Dataset:
    system = batch.system
    B, S, d = x0.shape
    Kc = max(1, K)
    tunit = system.time_units
    basin = np.full((B, S), -1, dtype=np.int16)
    for e, el in enumerate(elems):
        lab = el["labels"]
        table = np.append(ids[e], -1)
        basin[e] = np.where(lab >= 0, table[lab], -1)
    code = np.where((code == oc.MAX_STEPS) & (basin >= 0), oc.OK, code)  # on an attractor, without an event
    code = np.where(((code == oc.OK) | (code == oc.MAX_STEPS)) & (basin < 0), oc.UNRESOLVED, code).astype(np.int8)

    def table(key, fill, dtype, tail=()):
        out = np.full((B, Kc, *tail), fill, dtype=dtype)
        for e, el in enumerate(elems):
            i = ids[e]
            ok = (i >= 0) & el["present"]
            out[e, i[ok]] = np.asarray(el[key], dtype=dtype)[ok]
        return out

    counts = np.stack([np.bincount(b[b >= 0], minlength=Kc)[:Kc] for b in basin])
    present = table("present", False, bool)
    low, high = wilson(counts, S, s.confidence)
    n_div = (code == oc.DIVERGED).sum(1)
    d_low, d_high = wilson(n_div, S, s.confidence)
    bad = ~batch.valid.numpy()
    sample = {"sample": ("sample", np.arange(S), {"long_name": "initial state index"})}
    state = {"state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"})}
    feature = {"feature": ("feature", np.array(fnames, dtype=object), {"long_name": "trajectory feature"})}
    att = {"attractor": ("attractor", np.arange(Kc), {"long_name": "attractor id"})}
    conf = f"{s.confidence:g} Wilson interval"

    def v(data, dims, name, attrs, coords):
        return batch.to_xarray(data, dims, name=name, attrs=attrs, coords=coords)

    def per_elem(data, name, attrs):
        return batch.to_xarray(np.where(bad, np.nan, data), (), name=name, attrs=attrs)

    vs = {
        "initial_state": v(x0, ("sample", "state"), "initial_state",
                           {"long_name": "initial state", "units": system.state_units}, {**sample, **state}),
        "basin": v(basin, ("sample",), "basin", {
            "long_name": "attractor id of the initial state's basin (-1: none, the outcome says why)", "units": "1"},
            sample),
        "outcome": v(code, ("sample",), "outcome", oc.flag_attrs(
            "trajectory outcome (unresolved: bounded but on no named attractor; masked: invalid parameters)"),
            sample),
        "event": v(run["event"], ("sample",), "event", event_attrs("event that stopped the trajectory"), sample),
        "stop_time": v(run["time"], ("sample",), "stop_time", {
            "long_name": "time at which the trajectory stopped", "units": tunit}, sample),
        "final_state": v(run["final"], ("sample", "state"), "final_state", {
            "long_name": "state at the stop (periodic coordinates wrapped)", "units": system.state_units},
            {**sample, **state}),
        "features": v(run["features"], ("sample", "feature"), "features", {
            "long_name": "trajectory features over the last window", "units": system.state_units},
            {**sample, **feature}),
        "attractor_name": v(np.where(present, table("names", "", object), ""), ("attractor",), "attractor_name",
                            {"long_name": "attractor name (automatic, template or cluster; '' none)"}, att),
        "attractor_kind": v(np.where(present, table("kinds", "", object), ""), ("attractor",), "attractor_kind",
                            {"long_name": "attractor kind (fixed_point, periodic, aperiodic; '' none)"}, att),
        "attractor_state": v(table("states", np.nan, float, (d,)), ("attractor", "state"), "attractor_state", {
            "long_name": "representative state on the attractor", "units": system.state_units}, {**att, **state}),
        "attractor_features": v(table("centre", np.nan, float, (len(fnames),)), ("attractor", "feature"),
                                "attractor_features", {"long_name": "median features of the attractor's "
                                                       "trajectories (the template's for templates)",
                                                       "units": system.state_units}, {**att, **feature}),
        "basin_count": v(np.where(present, counts, -1), ("attractor",), "basin_count", {
            "long_name": "initial states in the basin (-1: no attractor)", "units": "1"}, att),
        **interval_vars(lambda data, name, attrs: v(data, ("attractor",), name, attrs, att), "basin_stability",
                        np.where(present, counts / S, np.nan), np.where(present, low, np.nan),
                        np.where(present, high, np.nan),
                        "basin stability (fraction of the initial states in the basin)", conf),
        **interval_vars(per_elem, "diverged_fraction", n_div / S, d_low, d_high,
                        "fraction of initial states whose trajectory diverged or left the region", conf),
        "unresolved_fraction": per_elem(np.isin(code, (oc.UNRESOLVED, oc.NAN)).mean(1), "unresolved_fraction", {
            "long_name": "fraction of initial states on no named attractor (outcome unresolved or nan)",
            "units": "1"}),
        "n_attractors": batch.to_xarray(np.where(bad, -1, present.sum(1)), (), name="n_attractors", attrs={
            "long_name": "number of attractors named (-1: invalid parameters)", "units": "1"}),
        "mean_stop_time": per_elem(run["time"].mean(1), "mean_stop_time", {
            "long_name": "mean integration time per trajectory", "units": tunit}),
    }
    ds = xr.Dataset(vs)
    ds.attrs.update({
        "sampling": "user" if s.initial_states is not None else s.sampling,
        "grid_shape": list(shape) if shape else [],
        "n_samples": int(S),
        "naming": s.naming,
        "method": s.method,
    })
    return ds

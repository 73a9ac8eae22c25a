"""Labeled output of the basins analyzer (private): per-element results to one ``xr.Dataset``.

Every sample gets an attractor id (``basin``: the attractor whose basin holds it, ``-1`` for none) and an
outcome (:mod:`dynlearn.outcome`): ``ok`` (its orbit ended on attractor ``basin``), ``diverged``, ``nan``,
``unresolved`` (bounded, but its tail settled on no identified attractor) or ``masked`` (the sweep element's
parameters are invalid, e.g. a network that diverged in training). The attractor dim holds attractors only
(ids matched along ``match_dim``, :mod:`.matching`); the basin of infinity is reported as
``diverged_fraction``.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.lyapunov import kaplan_yorke

from .pipeline import Context, Element
from .table import interval_vars, wilson

__all__ = ["assemble", "state_dims", "NO_ATTRACTOR"]

_OWN_DIMS = ("attractor", "boundary_point", "state", "sample")
#: the attractor id of a sample, or boundary side, on no attractor (its outcome says why)
NO_ATTRACTOR = -1


def state_dims(state_names, taken) -> list[str]:
    """Dim names of the grid axes: the state names, prefixed ``state_`` where they clash with other dims."""
    return [n if n not in taken and n not in _OWN_DIMS else f"state_{n}" for n in state_names]


def _pad(arrays: list[np.ndarray], n: int, fill, dtype=None) -> np.ndarray:
    first = np.asarray(arrays[0])
    out = np.full((len(arrays), n, *first.shape[1:]), fill, dtype=dtype or first.dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _scatter(values: list[np.ndarray], ids: list[np.ndarray], n: int, fill, dtype) -> np.ndarray:
    """``(B, n, ...)``: element ``e``'s per-attractor ``values[e]`` at their ids ``ids[e]`` (those with an id),
    ``fill`` elsewhere."""
    tail = next((np.shape(v)[1:] for v in values if len(v)), ())
    out = np.full((len(values), n, *tail), fill, dtype=dtype)
    for e, (v, i) in enumerate(zip(values, ids)):
        out[e, i[i >= 0]] = np.asarray(v)[i >= 0]
    return out


def _id_of(ids: np.ndarray, basin: np.ndarray) -> np.ndarray:
    """Attractor ids of internal basin indices (0 diverged, k >= 1 attractor k, -1 none)."""
    table = np.concatenate([[NO_ATTRACTOR, NO_ATTRACTOR], ids]).astype(np.int16)
    return table[np.asarray(basin, dtype=np.int64) + 1]


def _side_outcome(basin: np.ndarray) -> np.ndarray:
    return np.where(basin > 0, oc.OK, np.where(basin == 0, oc.DIVERGED, oc.UNRESOLVED)).astype(np.int8)


def assemble(settings, ctx: Context, shape, X: np.ndarray, rows: list[Element], ids: list[np.ndarray],
             n_ids: int) -> xr.Dataset:
    """The labeled dataset of all sweep elements (``rows``, flat) with their attractor ids ``ids``; ``X``: the
    samples ``(S, d)`` shared by all elements, or the user's states ``(B, S, d)``."""
    system, batch = ctx.system, ctx.batch
    S, d = X.shape[-2:]
    tunit = system.time_units if ctx.flow else "iterations"
    valid = batch.valid.numpy()
    bad = ~valid[:, None]
    K = max(1, n_ids)
    P = max(1, max(len(r.b_tol) for r in rows))
    state = {"state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"})}

    labels = np.stack([r.labels for r in rows])
    code = np.stack([r.code for r in rows]).astype(np.int8)
    code = np.where((code == oc.OK) & (labels < 0), np.int8(oc.UNRESOLVED), code)
    code = np.where(bad, np.int8(oc.MASKED), code)
    basin = np.stack([_id_of(i, r.labels) for r, i in zip(rows, ids)])
    esc = np.stack([r.escape for r in rows]).astype(float) * (settings.dt if ctx.flow else 1.0)
    esc = np.where(code == oc.DIVERGED, esc, np.nan)

    if shape is not None:
        names = state_dims(system.state_names, set(batch.dims))
        axes = [np.unique(X[:, i]) for i in range(d)]
        space = {"dims": names, "coords": {
            n: (n, ax, {"long_name": f"initial {s}", "units": system.state_units})
            for n, ax, s in zip(names, axes, system.state_names)}}
        reshape = (len(rows), *shape)
    else:
        space = {"dims": ["sample"], "coords": {"sample": ("sample", np.arange(S), {"long_name": "sample index"})}}
        reshape = (len(rows), S)

    def grid_var(data, name, attrs):
        return batch.to_xarray(data.reshape(reshape), space["dims"], name=name, attrs=attrs, coords=space["coords"])

    vs: dict[str, xr.DataArray] = {}
    vs["basin"] = grid_var(basin, "basin", {
        "long_name": "attractor id of the sample's basin (-1: none, the outcome says why)", "units": "1"})
    vs["outcome"] = grid_var(code, "outcome", oc.flag_attrs(
        "orbit outcome (unresolved: bounded but not settled on an attractor; masked: invalid parameters)"))
    vs["escape_time"] = grid_var(esc, "escape_time", {
        "long_name": "time at which the orbit left |x| <= max_norm (NaN: it did not)", "units": tunit})
    attrs = {"long_name": "initial state of the sample", "units": system.state_units}
    if X.ndim == 3:
        vs["sample_state"] = batch.to_xarray(X, ("sample", "state"), name="sample_state", attrs=attrs,
                                             coords={**space["coords"], **state})
    elif shape is None:
        vs["sample_state"] = xr.DataArray(X, dims=("sample", "state"), coords={**space["coords"], **state},
                                          attrs=attrs)
    vs.update(_attractor_vars(settings, batch, rows, ids, K, basin, code, state, tunit))
    vs.update(_boundary_vars(batch, rows, ids, P, d, valid, state, system.state_units))
    ds = xr.Dataset(vs)  # one merge of all variables
    ds.attrs.update({
        "sampling": "grid" if shape is not None else "user" if X.ndim == 3 else "sobol",
        "n_samples": int(S),
        "bounds": [float(v) for v in np.ravel(np.stack([ctx.lo, ctx.lo + ctx.width * settings.cells], 1))],
        "cell_width": [float(w) for w in ctx.width],
        "tol": float(settings.tol),
        "matched_dim": ctx.match_dim or "",  # '' : ids not matched across sweep elements
    })
    return ds


def _attractor_vars(settings, batch, rows, ids, K, basin, code, state, tunit) -> dict[str, xr.DataArray]:
    S = basin.shape[1]
    bad = ~batch.valid.numpy()[:, None]
    present = _scatter([np.ones(len(r.kinds), bool) for r in rows], ids, K, False, bool)
    counts = np.stack([np.bincount(b[b >= 0], minlength=K)[:K] for b in basin])
    low, high = wilson(counts, S, settings.confidence)
    kinds = _scatter([np.array(r.kinds, dtype=object) for r in rows], ids, K, "", object)
    kinds[~present] = ""

    def table(values, fill, dtype):
        out = _scatter(values, ids, K, fill, dtype)
        out[~present] = fill
        return out

    acoord = {"attractor": ("attractor", np.arange(K), {"long_name": "attractor id"})}
    d = batch.system.state_dim
    spec = table([r.exponents for r in rows], np.nan, float)  # (B, K, d)

    def att_var(data, name, attrs, extra=()):
        return batch.to_xarray(data, ("attractor", *extra), name=name, attrs=attrs,
                               coords={**acoord, **(state if extra else {})})

    conf = f"{settings.confidence:g} Wilson interval"
    n_div = (code == oc.DIVERGED).sum(1)
    d_low, d_high = wilson(n_div, S, settings.confidence)

    def per_elem(data, name, attrs):
        return batch.to_xarray(np.where(bad[:, 0], np.nan, data), (), name=name, attrs=attrs)

    return {
        "attractor_kind": att_var(kinds, "attractor_kind", {
            "long_name": "attractor kind (fixed_point, fixed_set, periodic, chaotic, quasi_periodic, unresolved; "
                         "'' none)"}),
        "attractor_state": att_var(table([r.states for r in rows], np.nan, float), "attractor_state", {
            "long_name": "representative state on the attractor", "units": batch.system.state_units}, ("state",)),
        "attractor_period": att_var(table([r.period for r in rows], np.nan, float), "attractor_period", {
            "long_name": "period of the attractor (1 / 0 for a map's / flow's fixed points; NaN if aperiodic)",
            "units": tunit}),
        "attractor_lyapunov": att_var(spec[..., 0], "attractor_lyapunov", {
            "long_name": "largest Lyapunov exponent on the attractor", "units": f"1/{tunit}"}),
        "attractor_exponents": batch.to_xarray(spec, ("attractor", "exponent"), name="attractor_exponents", attrs={
            "long_name": "Lyapunov spectrum on the attractor (decreasing), from its representative state",
            "units": f"1/{tunit}"}, coords={**acoord, "exponent": ("exponent", np.arange(d), {
                "long_name": "exponent index (0: largest)"})}),
        "attractor_kaplan_yorke": att_var(kaplan_yorke(torch.as_tensor(spec), tol=settings.lyapunov_tol).numpy(),
                                          "attractor_kaplan_yorke", {
            "long_name": "Kaplan-Yorke (Lyapunov) dimension of the attractor", "units": "1"}),
        "attractor_stable": att_var(table([r.stable for r in rows], False, bool), "attractor_stable", {
            "long_name": "linearly stable (False: a saddle reached only from its stable manifold)"}),
        "basin_count": att_var(np.where(present, counts, -1), "basin_count", {
            "long_name": "samples in the basin (-1: no attractor)", "units": "1"}),
        **interval_vars(att_var, "basin_fraction", np.where(present, counts / S, np.nan),
                        np.where(present, low, np.nan), np.where(present, high, np.nan),
                        "fraction of the sampled box in the basin", conf),
        **interval_vars(per_elem, "diverged_fraction", n_div / S, d_low, d_high,
                        "fraction of the sampled box whose orbits diverge", conf),
        "unresolved_fraction": per_elem(((code == oc.UNRESOLVED) | (code == oc.NAN)).mean(1), "unresolved_fraction", {
            "long_name": "fraction of samples whose bounded orbit settled on no identified attractor (outcome "
                         "unresolved or nan)", "units": "1"}),
        "n_attractors": batch.to_xarray(np.where(bad[:, 0], -1, present.sum(1)), (), name="n_attractors", attrs={
            "long_name": "number of attractors found (-1: invalid parameters)", "units": "1"}),
    }


def _boundary_vars(batch, rows, ids, P, d, valid, state, units) -> dict[str, xr.DataArray]:
    nb = np.array([len(r.b_tol) if v else 0 for r, v in zip(rows, valid)])
    keep = np.arange(P)[None, :] < nb[:, None]
    bst = _pad([r.b_state.reshape(-1, d) for r in rows], P, np.nan, float)
    btol = _pad([r.b_tol for r in rows], P, np.nan, float)
    bmix = _pad([r.b_mixed for r in rows], P, False, bool)
    ba = _pad([r.b_a for r in rows], P, -1, np.int64)
    bb = _pad([r.b_b for r in rows], P, -1, np.int64)
    bst[~keep] = np.nan
    btol[~keep] = np.nan
    bmix &= keep
    sides = {}
    for side, b in (("a", ba), ("b", bb)):
        sides[f"attractor_{side}"] = np.where(keep, np.stack([_id_of(i, r) for i, r in zip(ids, b)]),
                                              np.int16(NO_ATTRACTOR))
        sides[f"outcome_{side}"] = np.where(keep, _side_outcome(b), np.int8(oc.MASKED))
    bcoord = {"boundary_point": ("boundary_point", np.arange(P), {"long_name": "boundary point index"})}

    def b_var(data, name, attrs, extra=()):
        return batch.to_xarray(data, ("boundary_point", *extra), name=name, attrs=attrs,
                               coords={**bcoord, **(state if extra else {})})

    return {
        "boundary_state": b_var(bst, "boundary_state", {
            "long_name": "separatrix point between two basins (NaN: padding)", "units": units}, ("state",)),
        "boundary_tolerance": b_var(btol, "boundary_tolerance", {
            "long_name": "half-length of the final bisection bracket", "units": units}),
        "boundary_mixed": b_var(bmix, "boundary_mixed", {
            "long_name": "the bracket's other end met a third basin (intertwined basins near this point)"}),
        "boundary_attractor_a": b_var(sides["attractor_a"], "boundary_attractor_a", {
            "long_name": "attractor whose basin's boundary the point is on (-1: none, boundary_outcome_a says why)",
            "units": "1"}),
        "boundary_outcome_a": b_var(sides["outcome_a"], "boundary_outcome_a", oc.flag_attrs(
            "side a of the point: ok (an attractor's basin) or diverged; masked: padding")),
        "boundary_attractor_b": b_var(sides["attractor_b"], "boundary_attractor_b", {
            "long_name": "attractor of the bracket's other end at the end of bisection (-1: none)", "units": "1"}),
        "boundary_outcome_b": b_var(sides["outcome_b"], "boundary_outcome_b", oc.flag_attrs(
            "the bracket's other end: ok (an attractor), diverged or unresolved; masked: padding")),
        "n_boundary_points": batch.to_xarray(nb, (), name="n_boundary_points", attrs={
            "long_name": "number of separatrix points located", "units": "1"}),
    }

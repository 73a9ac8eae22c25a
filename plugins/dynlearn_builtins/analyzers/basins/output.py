"""Labeled output of the basins analyzer (private): per-element results to one ``xr.Dataset``."""

from __future__ import annotations

import numpy as np
import xarray as xr

from dynlearn import outcome as oc

from .table import wilson

__all__ = ["assemble", "state_dims"]

_OWN_DIMS = ("attractor", "boundary_point", "state", "sample")


def state_dims(state_names, taken) -> list[str]:
    """Dim names of the grid axes: the state names, prefixed ``state_`` where they clash with other dims."""
    return [n if n not in taken and n not in _OWN_DIMS else f"state_{n}" for n in state_names]


def _pad(arrays: list[np.ndarray], n: int, fill, dtype=None) -> np.ndarray:
    first = np.asarray(arrays[0])
    out = np.full((len(arrays), n, *first.shape[1:]), fill, dtype=dtype or first.dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def assemble(an, ctx, shape, X: np.ndarray, rows: list[dict]) -> xr.Dataset:
    system, batch = ctx["system"], ctx["batch"]
    S, d = X.shape
    flow = ctx["flow"]
    tunit = system.time_units if flow else "iterations"
    valid = batch.valid.numpy()
    K = max(len(r["kinds"]) for r in rows)
    P = max(1, max(len(r["b_tol"]) for r in rows))
    state = {"state": ("state", np.array(system.state_names, dtype=object), {"long_name": "state coordinate"})}

    labels = np.stack([r["labels"] for r in rows])
    code = np.stack([r["code"] for r in rows]).astype(np.int8)
    code = np.where((code == oc.OK) & (labels < 0), np.int8(oc.MAX_STEPS), code)
    esc = np.stack([r["escape"] for r in rows]).astype(float) * (an.dt if flow else 1.0)
    esc = np.where(code == oc.DIVERGED, esc, np.nan)
    labels = np.where(valid[:, None], labels, -1).astype(np.int16)
    code = np.where(valid[:, None], code, np.int8(oc.NAN))
    esc = np.where(valid[:, None], esc, np.nan)

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
    vs["label"] = grid_var(labels, "label", {
        "long_name": "basin label: attractor index (0 = diverged, -1 = undetermined)", "units": "1"})
    vs["outcome"] = grid_var(code, "outcome", oc.flag_attrs(
        "orbit outcome (max_steps: bounded but not settled on an attractor)"))
    vs["escape_time"] = grid_var(esc, "escape_time", {
        "long_name": "time at which the orbit left |x| <= max_norm (NaN: it did not)", "units": tunit})
    if shape is None:
        vs["sample_state"] = xr.DataArray(X, dims=("sample", "state"), coords={**space["coords"], **state},
                                          attrs={"long_name": "initial state of the sample",
                                                 "units": system.state_units})

    # attractors table
    counts = np.stack([np.bincount(r["labels"][r["labels"] >= 0], minlength=K)[:K] for r in rows])
    low, high = wilson(counts, S, an.confidence)
    frac = counts / S
    kinds = _pad([np.array(r["kinds"], dtype=object) for r in rows], K, "", object)
    st = _pad([np.concatenate([np.full((1, d), np.nan), r["states"]]) for r in rows], K, np.nan, float)
    per = _pad([np.concatenate([[np.nan], r["period"]]) for r in rows], K, np.nan, float)
    lyap = _pad([np.concatenate([[np.nan], r["lyap"]]) for r in rows], K, np.nan, float)
    stable = _pad([r["stable"] for r in rows], K, False, bool)
    present = kinds != ""
    bad = ~valid[:, None]
    kinds[np.broadcast_to(bad, kinds.shape)] = ""
    for a in (frac, low, high, per, lyap):
        a[np.broadcast_to(bad, a.shape)] = np.nan
    st[np.broadcast_to(bad[..., None], st.shape)] = np.nan
    counts = np.where(bad | ~present, -1, counts)
    acoord = {"attractor": ("attractor", np.arange(K), {"long_name": "attractor index (0 = diverged)"})}

    def att_var(data, name, attrs, extra=()):
        return batch.to_xarray(data, ("attractor", *extra), name=name, attrs=attrs,
                               coords={**acoord, **(state if extra else {})})

    vs["attractor_kind"] = att_var(kinds, "attractor_kind", {
        "long_name": "attractor kind (diverged, fixed_point, fixed_set, periodic, chaotic, quasi_periodic; '' none)"})
    vs["attractor_state"] = att_var(st, "attractor_state", {
        "long_name": "representative state on the attractor", "units": system.state_units}, ("state",))
    vs["attractor_period"] = att_var(per, "attractor_period", {
        "long_name": "period of the attractor (1 / 0 for a map's / flow's fixed points; NaN if aperiodic)",
        "units": tunit})
    vs["attractor_lyapunov"] = att_var(lyap, "attractor_lyapunov", {
        "long_name": "largest Lyapunov exponent on the attractor", "units": f"1/{tunit}"})
    vs["attractor_stable"] = att_var(stable & ~bad, "attractor_stable", {
        "long_name": "linearly stable (False: a saddle reached only from its stable manifold)"})
    vs["basin_count"] = att_var(counts, "basin_count", {"long_name": "samples in the basin (-1: no attractor)",
                                                        "units": "1"})
    conf = f"{an.confidence:g} Wilson interval"
    vs["basin_fraction"] = att_var(np.where(present, frac, np.nan), "basin_fraction", {
        "long_name": "fraction of the sampled box in the basin", "units": "1"})
    vs["basin_fraction_low"] = att_var(np.where(present, low, np.nan), "basin_fraction_low", {
        "long_name": f"basin fraction, lower end of the {conf}", "units": "1"})
    vs["basin_fraction_high"] = att_var(np.where(present, high, np.nan), "basin_fraction_high", {
        "long_name": f"basin fraction, upper end of the {conf}", "units": "1"})
    und = np.where(valid, (labels < 0).mean(axis=1), np.nan)
    vs["undetermined_fraction"] = batch.to_xarray(und, (), name="undetermined_fraction", attrs={
        "long_name": "fraction of samples whose orbit did not settle on an identified attractor", "units": "1"})
    vs["n_attractors"] = batch.to_xarray(np.where(valid, present.sum(1) - 1, -1), (), name="n_attractors", attrs={
        "long_name": "number of attractors found besides divergence (-1: invalid parameters)", "units": "1"})

    # boundary points
    nb = np.array([len(r["b_tol"]) if v else 0 for r, v in zip(rows, valid)])
    keep = np.arange(P)[None, :] < nb[:, None]
    bst = _pad([r["b_state"].reshape(-1, d) for r in rows], P, np.nan, float)
    btol = _pad([r["b_tol"] for r in rows], P, np.nan, float)
    bmix = _pad([r["b_mixed"] for r in rows], P, False, bool)
    ba = _pad([r["b_a"] for r in rows], P, -1, np.int16)
    bb = _pad([r["b_b"] for r in rows], P, -1, np.int16)
    bst[~keep] = np.nan
    btol[~keep] = np.nan
    bmix &= keep
    ba[~keep] = -1
    bb[~keep] = -1
    bcoord = {"boundary_point": ("boundary_point", np.arange(P), {"long_name": "boundary point index"})}

    def b_var(data, name, attrs, extra=()):
        return batch.to_xarray(data, ("boundary_point", *extra), name=name, attrs=attrs,
                               coords={**bcoord, **(state if extra else {})})

    vs["boundary_state"] = b_var(bst, "boundary_state", {
        "long_name": "separatrix point between two basins (NaN: padding)", "units": system.state_units}, ("state",))
    vs["boundary_tolerance"] = b_var(btol, "boundary_tolerance", {
        "long_name": "half-length of the final bisection bracket", "units": system.state_units})
    vs["boundary_mixed"] = b_var(bmix, "boundary_mixed", {
        "long_name": "the bracket's other end met a third basin (intertwined basins near this point)"})
    vs["boundary_basin_a"] = b_var(ba, "boundary_basin_a", {"long_name": "basin whose boundary the point is on",
                                                            "units": "1"})
    vs["boundary_basin_b"] = b_var(bb, "boundary_basin_b", {
        "long_name": "basin of the bracket's other end at the end of bisection (-1: undetermined)", "units": "1"})
    vs["n_boundary_points"] = batch.to_xarray(nb, (), name="n_boundary_points", attrs={
        "long_name": "number of separatrix points located", "units": "1"})
    ds = xr.Dataset(vs)  # one merge of all variables
    ds.attrs.update({
        "sampling": "grid" if shape is not None else "sobol",
        "n_samples": int(S),
        "bounds": [float(v) for v in np.ravel(np.stack([ctx["lo"], ctx["lo"] + ctx["width"] * an.cells], 1))],
        "cell_width": [float(w) for w in ctx["width"]],
        "tol": float(an.tol),
    })
    return ds

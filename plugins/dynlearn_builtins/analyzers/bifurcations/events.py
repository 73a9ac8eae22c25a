"""Event detection on tracks (private helper of the bifurcation analyzer).

Epochs are not a smooth parameter (weights jump between checkpoints), so every event carries its evidence and
a confidence in [0, 1]: 0.5 when the count of fixed points changes as the event requires (0.25 otherwise), plus
0.5 times the fraction of the other evidence items that hold (those that need a smooth sweep: a pair
approaching, eigenvalues shrinking, a ghost nearby):

``saddle_node`` (``annihilation`` / ``birth``)
    two fixed-point tracks of the same line end (start) within one step of each other, close together
    (``pair_distance <= pair_gate``), with indices (numbers of unstable eigenvalues) differing by one or one of
    them non-hyperbolic. Evidence: the fixed-point count changes by 2; the pair approaches (distance one step
    earlier is larger); the eigenvalues closest to the boundary shrink towards it; a slow point/ghost appears
    (disappears) next to them (``q_min_depth``: its speed, the depth of the minimum of q).
``stability_change`` (flows: ``fold`` for a real eigenvalue crossing 0, ``hopf`` for a complex pair; maps:
    ``fold`` (+1), ``flip`` (-1), ``neimark_sacker`` (complex pair))
    the number of unstable eigenvalues changes between consecutive hyperbolic nodes of a fixed-point track.
    Evidence: the count of fixed points is unchanged; the step is a small move (<= gate / 2); the change is
    1 for a real and 2 for a complex crossing; the crossing eigenvalue is close to the boundary on both sides
    (|margin| <= eig_scale).
``ghost_emergence``
    a slow-point track becomes a ghost (passes the passage test) after the first step, not next to a
    saddle-node annihilation. Evidence: the fixed-point count is unchanged; the ghost is slow (speed <= 0.1 of
    the typical speed).

An event is located between ``step_before`` and ``step_after``; ``location`` is the coordinate of a
non-hyperbolic node between them when there is one, else the midpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..fixed_points import classify as fc

COLUMNS = ("line", "event_type", "subtype", "step_before", "step_after", "location", "track_a", "track_b",
           "count_change", "pair_distance", "eig_a", "eig_b", "q_min_depth", "confidence", "x")


def _margin_near_boundary(eig_real: np.ndarray, eig_imag: np.ndarray, kind: str) -> np.ndarray:
    m = eig_real if kind == "flow" else np.hypot(eig_real, eig_imag) - 1
    idx = np.nanargmin(np.where(np.isfinite(m), np.abs(m), np.inf), axis=-1)
    return np.take_along_axis(m, idx[..., None], -1)[..., 0]


def detect(nodes: pd.DataFrame, n_fixed: np.ndarray, coord: np.ndarray, typical: np.ndarray, *, kind: str,
           gate: float, pair_gate: float, eig_scale: float, min_confidence: float) -> pd.DataFrame:
    """Events from the node table.

    ``nodes`` columns: ``node, line, step, track, cls (0 fixed, 1 slow), code, n_unstable, n_neutral, speed,
    x (position array), eig_real, eig_imag (arrays)``; ``n_fixed`` and ``typical`` are ``(L, K)``.
    """
    K = n_fixed.shape[1]
    nodes = nodes.sort_values(["track", "step"])
    nodes["margin"] = [_margin_near_boundary(r, i, kind) for r, i in zip(nodes.eig_real, nodes.eig_imag)]
    events = [_saddle_nodes(nodes, n_fixed, coord, K, pair_gate=pair_gate, which="end"),
              _saddle_nodes(nodes, n_fixed, coord, K, pair_gate=pair_gate, which="start")]
    events.append(_stability_changes(nodes, n_fixed, coord, kind=kind, gate=gate, eig_scale=eig_scale))
    sn = pd.concat([e for e in events[:2] if len(e)]) if any(len(e) for e in events[:2]) else None
    events.append(_ghost_emergence(nodes, n_fixed, coord, typical, sn, pair_gate=pair_gate))
    out = pd.concat([e for e in events if len(e)], ignore_index=True) if any(len(e) for e in events) else \
        pd.DataFrame({c: [] for c in COLUMNS})
    out = out[out.confidence >= min_confidence] if len(out) else out
    return out.sort_values(["line", "step_before", "event_type"], kind="stable").reset_index(drop=True)


def _confidence(count_ok: bool, others: list[bool]) -> float:
    return (0.5 if count_ok else 0.25) + 0.5 * float(np.mean(others))


def _location(nodes: pd.DataFrame, line: int, lo: int, hi: int, coord: np.ndarray) -> float:
    sub = nodes[(nodes.line == line) & (nodes.step > lo) & (nodes.step < hi) & (nodes.n_neutral > 0) & (nodes.cls == 0)]
    if len(sub):
        return float(coord[int(sub.step.iloc[0])])
    return 0.5 * (float(coord[lo]) + float(coord[min(hi, len(coord) - 1)])) if hi < len(coord) else float(coord[lo])


def _saddle_nodes(nodes, n_fixed, coord, K, *, pair_gate: float, which: str) -> pd.DataFrame:
    fixed = nodes[nodes.cls == 0]
    g = fixed.groupby("track")
    ends = (g.tail(1) if which == "end" else g.head(1)).set_index("track")
    if which == "end":
        ends = ends[ends.step < K - 1]
    else:
        ends = ends[ends.step > 0]
    if len(ends) < 2:
        return pd.DataFrame()
    pairs = ends.reset_index().merge(ends.reset_index(), on="line", suffixes=("_a", "_b"))
    pairs = pairs[(pairs.track_a < pairs.track_b) & ((pairs.step_a - pairs.step_b).abs() <= 1)]
    if not len(pairs):
        return pd.DataFrame()
    dist = np.array([np.linalg.norm(a - b) for a, b in zip(pairs.x_a, pairs.x_b)])
    index_ok = ((pairs.n_unstable_a - pairs.n_unstable_b).abs() == 1) | (pairs.n_neutral_a > 0) | (pairs.n_neutral_b > 0)
    pairs = pairs.assign(pair_distance=dist)[index_ok.to_numpy() & (dist <= pair_gate)]
    pairs = pairs.sort_values("pair_distance", kind="stable")
    used, rows = set(), []
    by_track = {t: df for t, df in fixed.groupby("track")}
    for p in pairs.itertuples():
        if p.track_a in used or p.track_b in used:
            continue
        used.update((p.track_a, p.track_b))
        if which == "end":
            before, after = min(p.step_a, p.step_b), max(p.step_a, p.step_b) + 1
            ref = before - 1
        else:
            before, after = min(p.step_a, p.step_b) - 1, max(p.step_a, p.step_b)
            ref = after + 1
        change = int(n_fixed[p.line, after]) - int(n_fixed[p.line, before]) if after < K else 0
        # the pair one step away from the event: farther apart, eigenvalues farther from the boundary
        ta, tb = by_track[p.track_a], by_track[p.track_b]
        ra, rb = ta[ta.step == ref], tb[tb.step == ref]
        approach = bool(len(ra) and len(rb) and np.linalg.norm(ra.x.iloc[0] - rb.x.iloc[0]) > p.pair_distance)
        shrink = bool(len(ra) and len(rb) and abs(ra.margin.iloc[0]) >= abs(p.margin_a)
                      and abs(rb.margin.iloc[0]) >= abs(p.margin_b)
                      and (np.sign(p.margin_a) != np.sign(p.margin_b) or min(abs(p.margin_a), abs(p.margin_b)) == 0))
        mid = 0.5 * (p.x_a + p.x_b)
        step_ghost = after if which == "end" else before
        gh = nodes[(nodes.line == p.line) & (nodes.cls == 1) & ((nodes.step - step_ghost).abs() <= 1)]
        gh = gh[[np.linalg.norm(x - mid) <= pair_gate for x in gh.x]] if len(gh) else gh
        depth = float(gh.speed.min()) if len(gh) else np.nan
        conf = _confidence(change == (-2 if which == "end" else 2), [approach, shrink, bool(len(gh))])
        rows.append(dict(line=p.line, event_type="saddle_node", subtype="annihilation" if which == "end" else "birth",
                         step_before=before, step_after=after, location=_location(nodes, p.line, before, after, coord),
                         track_a=p.track_a, track_b=p.track_b, count_change=change, pair_distance=p.pair_distance,
                         eig_a=p.margin_a, eig_b=p.margin_b, q_min_depth=depth, confidence=conf,
                         x=mid))
    return pd.DataFrame(rows)


def _stability_changes(nodes, n_fixed, coord, *, kind: str, gate: float, eig_scale: float) -> pd.DataFrame:
    hyp = nodes[(nodes.cls == 0) & (nodes.n_neutral == 0)]
    if not len(hyp):
        return pd.DataFrame()
    prev = hyp.groupby("track").shift(1)
    ch = hyp[prev.n_unstable.notna() & (prev.n_unstable != hyp.n_unstable)]
    rows = []
    for idx, cur in ch.iterrows():
        pv = prev.loc[idx]
        nb, na = int(pv.n_unstable), int(cur.n_unstable)
        j = min(nb, na)
        eb = complex(pv.eig_real[j], pv.eig_imag[j])
        ea = complex(cur.eig_real[j], cur.eig_imag[j])
        mb = eb.real if kind == "flow" else abs(eb) - 1
        ma = ea.real if kind == "flow" else abs(ea) - 1
        cplx = abs(eb.imag) > 1e-9 * max(1.0, abs(eb)) or abs(ea.imag) > 1e-9 * max(1.0, abs(ea))
        if kind == "flow":
            sub = "hopf" if cplx else "fold"
        else:
            sub = "neimark_sacker" if cplx else ("flip" if (eb.real + ea.real) < 0 else "fold")
        before, after = int(pv.step), int(cur.step)
        line = int(cur.line)
        change = int(n_fixed[line, after]) - int(n_fixed[line, before])
        moved = float(np.linalg.norm(cur.x - pv.x))
        conf = _confidence(change == 0, [moved <= gate / 2, abs(na - nb) == (2 if cplx else 1),
                                         abs(mb) <= eig_scale and abs(ma) <= eig_scale])
        rows.append(dict(line=line, event_type="stability_change", subtype=sub, step_before=before, step_after=after,
                         location=_location(nodes, line, before, after, coord), track_a=int(cur.track), track_b=-1,
                         count_change=change, pair_distance=np.nan, eig_a=mb, eig_b=ma, q_min_depth=np.nan,
                         confidence=conf, x=0.5 * (cur.x + pv.x)))
    return pd.DataFrame(rows)


def _ghost_emergence(nodes, n_fixed, coord, typical, sn, *, pair_gate: float) -> pd.DataFrame:
    ghosts = nodes[(nodes.cls == 1) & (nodes.code == fc.CODE["ghost"])]
    if not len(ghosts):
        return pd.DataFrame()
    first = ghosts.groupby("track").head(1)
    first = first[first.step > 0]
    rows = []
    for g in first.itertuples():
        # the same track was already a ghost earlier? (head(1) is its first ghost node) -> emergence at g.step
        if sn is not None and len(sn):
            near = sn[(sn.line == g.line) & (sn.subtype == "annihilation") & ((sn.step_after - g.step).abs() <= 1)]
            if len(near) and any(np.linalg.norm(x - g.x) <= pair_gate for x in near.x):
                continue
        change = int(n_fixed[g.line, g.step]) - int(n_fixed[g.line, g.step - 1])
        slow = g.speed <= 0.1 * typical[g.line, g.step]
        rows.append(dict(line=g.line, event_type="ghost_emergence", subtype="", step_before=g.step - 1,
                         step_after=g.step, location=0.5 * (float(coord[g.step - 1]) + float(coord[g.step])),
                         track_a=g.track, track_b=-1, count_change=change, pair_distance=np.nan, eig_a=np.nan,
                         eig_b=np.nan, q_min_depth=g.speed, confidence=_confidence(change == 0, [bool(slow)]),
                         x=g.x))
    return pd.DataFrame(rows)

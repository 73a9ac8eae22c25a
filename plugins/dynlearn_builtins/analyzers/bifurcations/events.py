"""Event detection and count bookkeeping on tracks (private helper of the bifurcation analyzer).

**Bookkeeping.** Between two consecutive steps of a line the number of fixed points changes by the number of
fixed-point tracks that arrive (a track starts, or comes back after a gap) minus those that depart (a track ends,
or goes missing): every arrival and departure is a *record* (``+1`` / ``-1``). Each event *claims* the records it
explains; ``explained_change`` of an interval is the sum of its claimed records, and a record no kept event
claims leaves its interval ``unexplained`` with a reason (:data:`REASONS`): ``missed_point`` (the finder missed a
point: a track missing for a few steps and back, a track whose continuation converged where no point was found,
or a track that starts where such a point was), ``box_edge`` (a point at the edge of the search box, or continued out
of it), ``masked`` (an entry with invalid parameters next to it), ``weak_event`` (claimed by an event below
``min_confidence``), ``unpaired`` (none of these). So ``fixed_change == explained_change`` on every interval
without a reason, by construction, and the event count changes add up.

**Events** (every one with its evidence and a confidence in [0, 1]: 0.5 when the count of fixed points across
the event changes as the event requires (0.25 otherwise), plus 0.5 times the fraction of the other evidence items
that hold):

``saddle_node`` (``annihilation`` / ``birth``), count change -2 / +2
    two fixed-point tracks of a line depart (arrive) within one step of each other, close together
    (``pair_distance <= pair_gate``), with indices (numbers of unstable eigenvalues) differing by one or one of
    them non-hyperbolic. Evidence: the pair approaches (distance one step earlier is larger); the eigenvalues
    closest to the boundary shrink towards it (one -> 0 for flows, -> 1 for maps); the continuation of both
    points was lost (annihilation); a slow point/ghost appears (disappears) next to them (``q_min_depth``).
``pitchfork`` (``annihilation`` / ``birth``), count change -2 / +2
    two tracks of the same index depart (arrive) together, symmetric about a third fixed-point track (within half
    their distance of their midpoint) whose stability changes across the event (``track_c``). Evidence as for
    ``saddle_node``.
``transcritical`` (``exchange``), count change 0
    two fixed-point tracks close together change stability in the same interval in opposite directions (a real
    eigenvalue crossing); the records of a track missing at the crossing (the two points coincide there) are
    claimed. Evidence: the count is unchanged; the crossing eigenvalues are near the boundary.
``hopf`` (flows), ``neimark_sacker``, ``flip`` (maps), ``stability_change`` (``fold``: a real eigenvalue crossing
0 / +1 without a count change); subtypes ``destabilizing`` / ``stabilizing`` (``fold`` for ``stability_change``)
    the number of unstable eigenvalues changes between consecutive hyperbolic nodes of a fixed-point track.
    Evidence: the count is unchanged; the step is a small move (<= gate / 2); the change is 1 for a real and 2
    for a complex crossing; the crossing eigenvalue is close to the boundary on both sides (|margin| <= eig_scale).
``ghost_emergence`` (``after_saddle_node`` / ``from_slow_point`` / ``new``), count change 0
    the first node of a track that passes the fixed-point analyzer's ghost test (``point_type == ghost``), after the
    first step, and only: next to a saddle-node annihilation (the ghost the pair leaves); on a track that was a slow
    point before (the slow point deepened into a ghost); or a new track with no slow point or ghost within
    ``pair_gate`` at the step before that is still a ghost at the next step (confirmed, so a ghost flickering
    through the test or a broken track is not an event). Evidence: the count is unchanged (``after_saddle_node``:
    it fell by 2); the ghost is slow (speed <= 0.1 of the typical speed); it persists.

An event is located between ``step_before`` and ``step_after``; ``location`` is the coordinate of a
non-hyperbolic node of its tracks between them when there is one, else where the continuation of the
annihilated points was lost, else the midpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..fixed_points import classify as fc
from .continuation import STATUS

COLUMNS = ("line", "event_type", "subtype", "step_before", "step_after", "location", "track_a", "track_b",
           "track_c", "count_change", "pair_distance", "eig_a", "eig_b", "q_min_depth", "confidence", "x")

#: event types, in the order of the ``event_type`` variable's documentation
EVENT_TYPES = ("saddle_node", "pitchfork", "transcritical", "hopf", "neimark_sacker", "flip", "stability_change",
               "ghost_emergence")

#: why an interval's count change is not (fully) explained by events; CF flags (0: explained)
REASONS = ("none", "missed_point", "box_edge", "masked", "weak_event", "unpaired")

LOST = (STATUS.index("lost"), STATUS.index("became_fixed"), STATUS.index("collided"))


def _margin_near_boundary(eig_real: np.ndarray, eig_imag: np.ndarray, kind: str) -> np.ndarray:
    m = eig_real if kind == "flow" else np.hypot(eig_real, eig_imag) - 1
    idx = np.nanargmin(np.where(np.isfinite(m), np.abs(m), np.inf), axis=-1)
    return np.take_along_axis(m, idx[..., None], -1)[..., 0]


def records(nodes: pd.DataFrame, K: int) -> pd.DataFrame:
    """Arrivals (+1) and departures (-1) of fixed-point tracks, one row each: ``line, interval`` (the step after
    the change), ``track, node, change, kind`` (``start``/``return``/``end``/``gap``), ``step`` (of the node),
    ``x, n_unstable, n_neutral, status, position_next``."""
    f = nodes[nodes.cls == 0].sort_values(["track", "step"])
    if not len(f):
        return pd.DataFrame(columns=["line", "interval", "track", "node", "change", "kind", "step"])
    g = f.groupby("track").step
    nxt, prv = g.shift(-1), g.shift(1)
    dep = f[(nxt.isna() & (f.step < K - 1)) | (nxt > f.step + 1)].assign(change=-1)
    dep["kind"] = np.where(nxt[dep.index].isna(), "end", "gap")
    dep["interval"] = dep.step + 1
    arr = f[(prv.isna() & (f.step > 0)) | (prv < f.step - 1)].assign(change=1)
    arr["kind"] = np.where(prv[arr.index].isna(), "start", "return")
    arr["interval"] = arr.step
    out = pd.concat([dep, arr], ignore_index=True)
    out["claimed"] = -1
    return out


def detect(nodes: pd.DataFrame, n_fixed: np.ndarray, masked: np.ndarray, coord: np.ndarray, typical: np.ndarray,
           box: tuple[np.ndarray, np.ndarray], *, kind: str, gate: float, pair_gate: float, eig_scale: float,
           min_confidence: float) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Events and the per-interval bookkeeping from the node table.

    ``nodes`` columns: ``node, line, step, track, cls (0 fixed, 1 slow), code, n_unstable, n_neutral, speed,
    status, lost_at, x, x_next (continued position), eig_real, eig_imag (arrays)``; ``n_fixed``, ``masked`` and
    ``typical`` are ``(L, K)``. Returns the event table and ``{fixed_change, explained_change, unexplained}``
    ``(L, K)`` (the interval ending at each step; 0 at the first).
    """
    L, K = n_fixed.shape
    nodes = nodes.sort_values(["track", "step"])
    nodes["margin"] = [_margin_near_boundary(r, i, kind) for r, i in zip(nodes.eig_real, nodes.eig_imag)]
    rec = records(nodes, K)
    ctx = dict(nodes=nodes, n_fixed=n_fixed, coord=coord, K=K, kind=kind, gate=gate, pair_gate=pair_gate,
               eig_scale=eig_scale)
    events = _pairs(rec, ctx, "dep") + _pairs(rec, ctx, "arr")
    changes = _stability_changes(nodes, ctx)
    centres = [(e["line"], e["track_c"], e["step_before"], e["step_after"]) for e in events
               if e["event_type"] == "pitchfork"]
    events += _transcritical_and_others(changes, rec, ctx, centres)
    events += _ghost_emergence(nodes, events, ctx, typical)
    for i, e in enumerate(events):
        rec.loc[list(e.pop("claims")), "claimed"] = i
    kept = np.array([e["confidence"] >= min_confidence for e in events], dtype=bool)
    table = pd.DataFrame(events, columns=COLUMNS) if events else pd.DataFrame({c: [] for c in COLUMNS})
    book = _bookkeeping(rec, kept, n_fixed, masked, box, gate)
    table = table[kept] if len(table) else table
    return table.sort_values(["line", "step_before", "event_type"], kind="stable").reset_index(drop=True), book


def _bookkeeping(rec: pd.DataFrame, kept: np.ndarray, n_fixed: np.ndarray, masked: np.ndarray,
                 box: tuple[np.ndarray, np.ndarray], gate: float) -> dict[str, np.ndarray]:
    L, K = n_fixed.shape
    fixed_change = np.zeros((L, K), dtype=np.int64)
    fixed_change[:, 1:] = np.diff(n_fixed, axis=1)
    explained = np.zeros((L, K), dtype=np.int64)
    reason = np.zeros((L, K), dtype=np.int8)
    if not len(rec):
        return {"fixed_change": fixed_change, "explained_change": explained, "unexplained": reason}
    line, interval = rec.line.to_numpy(int), rec.interval.to_numpy(int)
    by = rec.claimed.to_numpy(int)
    ok = (by >= 0) & kept[np.maximum(by, 0)] if len(kept) else np.zeros(len(rec), bool)
    np.add.at(explained, (line[ok], interval[ok]), rec.change.to_numpy(int)[ok])
    lo, hi = box
    width = hi - lo
    x = np.stack(list(rec.x))
    xn = np.stack(list(rec.x_next))
    edge = (np.minimum(x - lo, hi - x) <= 0.05 * width).any(-1) | ((xn < lo) | (xn > hi)).any(-1)
    why = np.where(by >= 0, REASONS.index("weak_event"), REASONS.index("unpaired"))
    why = np.where(_missed(rec, gate) & (by < 0), REASONS.index("missed_point"), why)
    why = np.where(edge & (by < 0), REASONS.index("box_edge"), why)
    why = np.where(masked[line, interval] | masked[line, interval - 1], REASONS.index("masked"), why)
    np.maximum.at(reason, (line[~ok], interval[~ok]), why[~ok].astype(np.int8))
    return {"fixed_change": fixed_change, "explained_change": explained, "unexplained": reason}


def _missed(rec: pd.DataFrame, gate: float) -> np.ndarray:
    """Records of a point the finder missed: a gap (the track is back within ``max_gap`` steps), a departure whose
    continuation converged (the point was still there), or an arrival within ``gate`` of where such a departure's
    point was."""
    missed = rec.kind.isin(["gap", "return"]).to_numpy().copy()
    still_there = (rec.change < 0).to_numpy() & (rec.status == STATUS.index("converged")).to_numpy()
    missed |= still_there
    for i in np.nonzero((rec.change > 0).to_numpy() & ~missed)[0]:
        r = rec.iloc[i]
        cand = rec[still_there & (rec.line == r.line).to_numpy() & (rec.interval < r.interval).to_numpy()]
        missed[i] = any(min(np.linalg.norm(x - r.x), np.linalg.norm(xn - r.x)) <= gate
                        for x, xn in zip(cand.x, cand.x_next))
    return missed


def _confidence(count_ok: bool, others: list[bool]) -> float:
    return (0.5 if count_ok else 0.25) + 0.5 * float(np.mean(others))


def _location(nodes: pd.DataFrame, line: int, tracks: list[int], lo: int, hi: int, coord: np.ndarray) -> float:
    sub = nodes[(nodes.line == line) & nodes.track.isin(tracks) & (nodes.step >= lo) & (nodes.step <= hi)
                & (nodes.n_neutral > 0) & (nodes.cls == 0)]
    if len(sub):
        return float(coord[int(sub.step.min())])
    return 0.5 * (float(coord[lo]) + float(coord[min(hi, len(coord) - 1)])) if hi < len(coord) else float(coord[lo])


def _node_at(nodes_of_track: pd.DataFrame, step: int):
    row = nodes_of_track[nodes_of_track.step == step]
    return row.iloc[0] if len(row) else None


def _stability_index_change(track_nodes: pd.DataFrame, before: int, after: int) -> tuple[int, int] | None:
    """Numbers of unstable eigenvalues at the last hyperbolic node <= before and the first >= after."""
    hyp = track_nodes[track_nodes.n_neutral == 0]
    b, a = hyp[hyp.step <= before], hyp[hyp.step >= after]
    if not len(b) or not len(a):
        return None
    return int(b.n_unstable.iloc[-1]), int(a.n_unstable.iloc[0])


def _pairs(rec: pd.DataFrame, ctx: dict, which: str) -> list[dict]:
    """Saddle-node and pitchfork events from pairs of departures (``dep``) or arrivals (``arr``)."""
    nodes, n_fixed, coord, K = ctx["nodes"], ctx["n_fixed"], ctx["coord"], ctx["K"]
    pair_gate = ctx["pair_gate"]
    side = rec[rec.change == (-1 if which == "dep" else 1)].reset_index()
    if len(side) < 2:
        return []
    pairs = side.merge(side, on="line", suffixes=("_a", "_b"))
    pairs = pairs[(pairs.index_a < pairs.index_b) & (pairs.track_a != pairs.track_b)
                  & ((pairs.interval_a - pairs.interval_b).abs() <= 1)]
    if not len(pairs):
        return []
    dist = np.array([np.linalg.norm(a - b) for a, b in zip(pairs.x_a, pairs.x_b)])
    pairs = pairs.assign(pair_distance=dist)[dist <= pair_gate].sort_values("pair_distance", kind="stable")
    fixed = nodes[nodes.cls == 0]
    by_track = {t: df for t, df in fixed.groupby("track")}
    used, out = set(), []
    for p in pairs.itertuples():
        if p.index_a in used or p.index_b in used:
            continue
        neutral = p.n_neutral_a > 0 or p.n_neutral_b > 0
        sn = abs(p.n_unstable_a - p.n_unstable_b) == 1 or neutral
        if which == "dep":
            before, after = int(min(p.step_a, p.step_b)), int(max(p.interval_a, p.interval_b))
            ref = before - 1
        else:
            before, after = int(min(p.interval_a, p.interval_b)) - 1, int(max(p.step_a, p.step_b))
            ref = after + 1
        mid = 0.5 * (p.x_a + p.x_b)
        # where the continuation carried the pair (an annihilated pair: where it was lost)
        cmid = 0.5 * (p.x_next_a + p.x_next_b) if which == "dep" else mid
        cmid = cmid if np.isfinite(cmid).all() else mid
        centre = -1
        if not sn:  # pitchfork: a third track continuing through the midpoint, changing stability
            near = fixed[(fixed.line == p.line) & (fixed.step >= before) & (fixed.step <= after)
                         & ~fixed.track.isin([p.track_a, p.track_b])]
            near = near[np.array([np.linalg.norm(x - mid) <= 0.5 * p.pair_distance + 1e-12 for x in near.x], bool)]
            for t in near.track.unique():
                ch = _stability_index_change(by_track[t], before, after)
                if ch is not None and abs(ch[0] - ch[1]) == 1:
                    centre = int(t)
                    break
            if centre < 0:
                continue
        used.update((p.index_a, p.index_b))
        change = int(n_fixed[p.line, min(after, K - 1)]) - int(n_fixed[p.line, before])
        ta, tb = by_track[p.track_a], by_track[p.track_b]
        ra, rb = _node_at(ta, ref), _node_at(tb, ref)
        approach = bool(ra is not None and rb is not None and np.linalg.norm(ra.x - rb.x) > p.pair_distance)
        ma, mb = _node_at(ta, int(p.step_a)).margin, _node_at(tb, int(p.step_b)).margin
        shrink = bool(ra is not None and rb is not None and abs(ra.margin) >= abs(ma) and abs(rb.margin) >= abs(mb)
                      and (np.sign(ma) != np.sign(mb) or min(abs(ma), abs(mb)) == 0 or not sn))
        step_ghost = after if which == "dep" else before
        gh = nodes[(nodes.line == p.line) & (nodes.cls == 1) & ((nodes.step - step_ghost).abs() <= 1)]
        gh = gh[[min(np.linalg.norm(x - mid), np.linalg.norm(x - cmid)) <= pair_gate for x in gh.x]] if len(gh) else gh
        depth = float(gh.speed.min()) if len(gh) else np.nan
        evidence = [approach, shrink]
        if sn:
            evidence.append(bool(len(gh)))
        loc = _location(nodes, p.line, [p.track_a, p.track_b] + ([centre] if centre >= 0 else []), before, after,
                        coord)
        if which == "dep":
            lost = p.status_a in LOST and p.status_b in LOST
            evidence.append(bool(lost))
            lost_at = np.nanmean([p.lost_at_a, p.lost_at_b]) if np.isfinite([p.lost_at_a, p.lost_at_b]).any() \
                else np.nan
            if np.isfinite(lost_at) and not (nodes[(nodes.line == p.line) & (nodes.step >= before)
                                                   & nodes.track.isin([p.track_a, p.track_b, centre])
                                                   & (nodes.step <= after) & (nodes.n_neutral > 0)].shape[0]):
                loc = float(lost_at)
        out.append(dict(line=int(p.line), event_type="saddle_node" if sn else "pitchfork",
                        subtype="annihilation" if which == "dep" else "birth", step_before=before,
                        step_after=after, location=loc, track_a=int(p.track_a), track_b=int(p.track_b),
                        track_c=centre, count_change=int(p.change_a + p.change_b), pair_distance=p.pair_distance,
                        eig_a=ma, eig_b=mb, q_min_depth=depth,
                        confidence=_confidence(change == (-2 if which == "dep" else 2), evidence), x=mid,
                        x_continued=cmid, claims=[int(p.index_a), int(p.index_b)]))
    return out


def _stability_changes(nodes: pd.DataFrame, ctx: dict) -> pd.DataFrame:
    """Changes of the number of unstable eigenvalues between consecutive hyperbolic nodes of fixed-point tracks."""
    kind = ctx["kind"]
    hyp = nodes[(nodes.cls == 0) & (nodes.n_neutral == 0)]
    if not len(hyp):
        return pd.DataFrame()
    prev = hyp.groupby("track").shift(1)
    sel = prev.n_unstable.notna() & (prev.n_unstable != hyp.n_unstable)
    rows = []
    for idx in hyp.index[sel.to_numpy()]:
        cur, pv = hyp.loc[idx], prev.loc[idx]
        nb, na = int(pv.n_unstable), int(cur.n_unstable)
        j = min(nb, na)
        eb = complex(pv.eig_real[j], pv.eig_imag[j])
        ea = complex(cur.eig_real[j], cur.eig_imag[j])
        mb = eb.real if kind == "flow" else abs(eb) - 1
        ma = ea.real if kind == "flow" else abs(ea) - 1
        cplx = abs(eb.imag) > 1e-9 * max(1.0, abs(eb)) or abs(ea.imag) > 1e-9 * max(1.0, abs(ea))
        flip = kind == "map" and not cplx and (eb.real + ea.real) < 0
        rows.append(dict(line=int(cur.line), track=int(cur.track), before=int(pv.step), after=int(cur.step),
                         nb=nb, na=na, mb=mb, ma=ma, cplx=cplx, flip=flip, x=cur.x, x_before=pv.x,
                         moved=float(np.linalg.norm(cur.x - pv.x))))
    return pd.DataFrame(rows)


def _transcritical_and_others(ch: pd.DataFrame, rec: pd.DataFrame, ctx: dict,
                              centres: list[tuple[int, int, int, int]]) -> list[dict]:
    if not len(ch):
        return []
    nodes, n_fixed, coord, kind = ctx["nodes"], ctx["n_fixed"], ctx["coord"], ctx["kind"]
    gate, pair_gate, eig_scale = ctx["gate"], ctx["pair_gate"], ctx["eig_scale"]
    # a pitchfork's centre track changes stability as part of the pitchfork
    skip = np.array([any(r.line == ln and r.track == t and r.before < a and r.after > b for ln, t, b, a in centres)
                     for r in ch.itertuples()], dtype=bool)
    ch = ch[~skip].reset_index(drop=True)
    out, used = [], set()
    real = ch[~ch.cplx & ~ch.flip]
    cand = real.reset_index().merge(real.reset_index(), on="line", suffixes=("_a", "_b"))
    cand = cand[(cand.index_a < cand.index_b) & (cand.track_a != cand.track_b)
                & (np.sign(cand.na_a - cand.nb_a) != np.sign(cand.na_b - cand.nb_b))
                & (cand.before_a < cand.after_b) & (cand.before_b < cand.after_a)]
    if len(cand):
        d = np.array([min(np.linalg.norm(a - b), np.linalg.norm(c - e)) for a, b, c, e in
                      zip(cand.x_a, cand.x_b, cand.x_before_a, cand.x_before_b)])
        cand = cand.assign(pair_distance=d)[d <= pair_gate].sort_values("pair_distance", kind="stable")
    for c in cand.itertuples():
        if c.index_a in used or c.index_b in used:
            continue
        used.update((c.index_a, c.index_b))
        before, after = int(min(c.before_a, c.before_b)), int(max(c.after_a, c.after_b))
        mine = rec[(rec.line == c.line) & rec.track.isin([c.track_a, c.track_b]) & (rec.interval > before)
                   & (rec.interval <= after) & (rec.claimed < 0)]
        change = int(n_fixed[c.line, after]) - int(n_fixed[c.line, before])
        near = all(abs(m) <= eig_scale for m in (c.mb_a, c.ma_a, c.mb_b, c.ma_b))
        out.append(dict(line=int(c.line), event_type="transcritical", subtype="exchange", step_before=before,
                        step_after=after, location=_location(nodes, c.line, [c.track_a, c.track_b], before, after,
                                                             coord),
                        track_a=int(c.track_a), track_b=int(c.track_b), track_c=-1,
                        count_change=int(mine.change.sum()), pair_distance=c.pair_distance, eig_a=c.mb_a,
                        eig_b=c.ma_a, q_min_depth=np.nan, confidence=_confidence(change == 0, [near]),
                        x=0.5 * (c.x_a + c.x_b), claims=[int(i) for i in mine.index]))
    for i, r in ch.iterrows():
        if i in used:
            continue
        if r.cplx:
            etype = "hopf" if kind == "flow" else "neimark_sacker"
        else:
            etype = "flip" if r.flip else "stability_change"
        sub = "fold" if etype == "stability_change" else ("destabilizing" if r.na > r.nb else "stabilizing")
        change = int(n_fixed[r.line, r.after]) - int(n_fixed[r.line, r.before])
        conf = _confidence(change == 0, [r.moved <= gate / 2, abs(r.na - r.nb) == (2 if r.cplx else 1),
                                         abs(r.mb) <= eig_scale and abs(r.ma) <= eig_scale])
        out.append(dict(line=int(r.line), event_type=etype, subtype=sub, step_before=int(r.before),
                        step_after=int(r.after), location=_location(nodes, r.line, [r.track], r.before, r.after,
                                                                    coord),
                        track_a=int(r.track), track_b=-1, track_c=-1, count_change=0, pair_distance=np.nan,
                        eig_a=r.mb, eig_b=r.ma, q_min_depth=np.nan, confidence=conf, x=0.5 * (r.x + r.x_before),
                        claims=[]))
    return out


def _first_emergence(track_ghosts: pd.DataFrame, slow: pd.DataFrame, ann: list[dict], pair_gate: float):
    """The first ghost node of a track that qualifies as an emergence, its subtype and whether it persists."""
    track_nodes = slow[slow.track == track_ghosts.track.iloc[0]]
    for g in track_ghosts.itertuples():
        earlier = track_nodes[track_nodes.step < g.step]
        later = track_nodes[track_nodes.step == g.step + 1]
        persists = bool(len(later) and int(later.code.iloc[0]) == fc.CODE["ghost"])
        if any(e["line"] == g.line and abs(e["step_after"] - g.step) <= 1
               and min(np.linalg.norm(e["x"] - g.x), np.linalg.norm(e["x_continued"] - g.x)) <= pair_gate
               for e in ann):
            return g, "after_saddle_node", persists
        if len(earlier) and (earlier.code == fc.CODE["slow_point"]).any():
            return g, "from_slow_point", persists
        before = slow[(slow.line == g.line) & (slow.step == g.step - 1)]
        if not len(earlier) and persists and not any(np.linalg.norm(x - g.x) <= pair_gate for x in before.x):
            return g, "new", persists
    return None


def _ghost_emergence(nodes: pd.DataFrame, events: list[dict], ctx: dict, typical: np.ndarray) -> list[dict]:
    n_fixed, coord, pair_gate, K = ctx["n_fixed"], ctx["coord"], ctx["pair_gate"], ctx["K"]
    slow = nodes[nodes.cls == 1]
    ghosts = slow[slow.code == fc.CODE["ghost"]]
    if not len(ghosts):
        return []
    ann = [e for e in events if e["event_type"] == "saddle_node" and e["subtype"] == "annihilation"]
    out = []
    for _, track_ghosts in ghosts.groupby("track"):
        if int(track_ghosts.step.iloc[0]) == 0:
            continue  # a ghost from the start did not emerge here
        found = _first_emergence(track_ghosts, slow, ann, pair_gate)
        if found is None:
            continue
        g, sub, persists = found
        change = int(n_fixed[g.line, g.step]) - int(n_fixed[g.line, g.step - 1])
        is_slow = bool(g.speed <= 0.1 * typical[g.line, g.step])
        out.append(dict(line=int(g.line), event_type="ghost_emergence", subtype=sub, step_before=int(g.step) - 1,
                        step_after=int(g.step), location=0.5 * (float(coord[g.step - 1]) + float(coord[g.step])),
                        track_a=int(g.track), track_b=-1, track_c=-1, count_change=0, pair_distance=np.nan,
                        eig_a=np.nan, eig_b=np.nan, q_min_depth=g.speed,
                        confidence=_confidence(sub == "after_saddle_node" or change == 0,
                                               [is_slow, persists or g.step == K - 1]),
                        x=g.x, claims=[]))
    return out

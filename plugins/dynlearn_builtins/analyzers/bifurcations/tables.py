"""The bifurcation analyzer's labeled output (track IDs, events, node/edge tables) and its views (private)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..fixed_points import classify as fc
from .continuation import STATUS
from .events import COLUMNS, EVENT_TYPES, REASONS


def _flags(long_name: str, names: tuple[str, ...]) -> dict:
    return {"long_name": long_name, "flag_values": list(range(len(names))), "flag_meanings": " ".join(names),
            "units": "1"}


def build(batch, fp: xr.Dataset, dim: str, others: list[str], shape: list[int], tr, pos: np.ndarray,
          code: np.ndarray, speed: np.ndarray, events: pd.DataFrame, coord: np.ndarray, book: dict[str, np.ndarray],
          status: np.ndarray, lost_at: np.ndarray) -> xr.Dataset:
    L, K, P, d = pos.shape
    sweep_coords = {k: fp.coords[k] for k in (*others, dim)}
    tid = xr.DataArray(tr.track_of_point.reshape(*shape, K, P), dims=(*others, dim, "point"),
                       coords={**sweep_coords, "point": fp["point"]}, name="track",
                       attrs={"long_name": "track ID of the point (-1: no point)", "units": "1"})
    # events per entry, located at their first step after the event
    n_ev = np.zeros((L, K), dtype=np.int64)
    if len(events):
        np.add.at(n_ev, (events.line.to_numpy(int), np.minimum(events.step_after.to_numpy(int), K - 1)), 1)
    n_events = xr.DataArray(n_ev.reshape(*shape, K), dims=(*others, dim), coords=sweep_coords, name="n_events",
                            attrs={"long_name": f"number of events between the previous {dim} and this one",
                                   "units": "1"})
    unit = fp[dim].attrs.get("units", "1")
    line_idx = np.unravel_index(np.arange(L), shape) if others else ()
    line_vals = {o: np.asarray(fp[o].values)[line_idx[i]] for i, o in enumerate(others)}
    ds = xr.Dataset({"track": tid.transpose(*batch.dims, "point"), "n_events": n_events.transpose(*batch.dims)})
    interval = {
        "fixed_change": ("change of the number of fixed points from the previous step", {"units": "1"}),
        "explained_change": ("the part of fixed_change explained by events (sum of their count changes)",
                             {"units": "1"}),
        "unexplained": ("why fixed_change is not (fully) explained by events (none: it is)", _flags("", REASONS)),
    }
    for name, (long_name, attrs) in interval.items():
        da = xr.DataArray(book[name].reshape(*shape, K), dims=(*others, dim), coords=sweep_coords, name=name,
                          attrs={**attrs, "long_name": f"{long_name} (interval ending at this {dim})"})
        ds[name] = da.transpose(*batch.dims)
    ds = ds.assign_coords(state=fp["state"])
    if not len(events):
        events = pd.DataFrame({c: pd.Series(dtype=object if c in ("event_type", "subtype", "x") else float)
                               for c in COLUMNS})
    ev_line = events.line.to_numpy(dtype=np.int64)
    sb, sa = events.step_before.to_numpy(dtype=np.int64), events.step_after.to_numpy(dtype=np.int64)
    E = len(events)
    xs = np.stack(list(events.x)) if E else np.zeros((0, d))
    ev = {
        "event_type": (np.array(events.event_type, dtype=object),
                       {"long_name": "event: " + ", ".join(EVENT_TYPES)}),
        "subtype": (np.array(events.subtype, dtype=object),
                    {"long_name": "annihilation/birth (saddle_node, pitchfork); exchange (transcritical); "
                                  "destabilizing/stabilizing (hopf, neimark_sacker, flip); fold (stability_change); "
                                  "after_saddle_node/from_slow_point/new (ghost_emergence)"}),
        "step_before": (sb, {"long_name": f"index along {dim} of the last step before the event", "units": "1"}),
        "step_after": (sa, {"long_name": f"index along {dim} of the first step after the event", "units": "1"}),
        f"{dim}_before": (coord[sb] if E else np.zeros(0), {"long_name": f"{dim} before the event", "units": unit}),
        f"{dim}_after": (coord[sa] if E else np.zeros(0), {"long_name": f"{dim} after the event", "units": unit}),
        "location": (events.location.to_numpy(dtype=float),
                     {"long_name": f"estimated {dim} of the event (a non-hyperbolic point's, else the midpoint)",
                      "units": unit}),
        "track_a": (events.track_a.to_numpy(dtype=np.int64), {"long_name": "track involved", "units": "1"}),
        "track_b": (events.track_b.to_numpy(dtype=np.int64),
                    {"long_name": "second track of the pair (saddle_node, pitchfork, transcritical; -1: none)",
                     "units": "1"}),
        "track_c": (events.track_c.to_numpy(dtype=np.int64),
                    {"long_name": "the pitchfork's centre track (-1: none)", "units": "1"}),
        "count_change": (events.count_change.to_numpy(dtype=np.int64),
                         {"long_name": "change of the number of fixed points the event explains (+-2 for a pair "
                                       "born or annihilated, 0 otherwise)", "units": "1"}),
        "pair_distance": (events.pair_distance.to_numpy(dtype=float),
                          {"long_name": "distance between the saddle-node pair next to the event",
                           "units": fp.position.attrs.get("units", "1")}),
        "eig_a": (events.eig_a.to_numpy(dtype=float),
                  {"long_name": "stability margin (Re lambda, or |lambda| - 1 for maps) of the eigenvalue nearest the "
                                "boundary: track a at the event (saddle_node) / crossing eigenvalue before",
                   "units": "1"}),
        "eig_b": (events.eig_b.to_numpy(dtype=float),
                  {"long_name": "the same for track b (saddle_node) / crossing eigenvalue after", "units": "1"}),
        "q_min_depth": (events.q_min_depth.to_numpy(dtype=float),
                        {"long_name": "speed at the minimum of q of the ghost involved (NaN: none)",
                         "units": fp.speed.attrs.get("units", "1")}),
        "confidence": (events.confidence.to_numpy(dtype=float),
                       {"long_name": "confidence: 0.5 for the expected count change (else 0.25) + 0.5 x the "
                                     "fraction of the other evidence items that hold", "units": "1"}),
    }
    for o in others:
        ev[f"{o}_at_event"] = (line_vals[o][ev_line] if E else np.zeros(0),
                               {"long_name": f"{o} of the line where the event happened",
                                "units": fp[o].attrs.get("units", "1")})
    for name, (vals, attrs) in ev.items():
        ds[name] = xr.DataArray(vals, dims=("event",), attrs=attrs)
    ds["event_position"] = xr.DataArray(xs, dims=("event", "state"),
                                        attrs={"long_name": "state where the event happened",
                                               "units": fp.position.attrs.get("units", "1")})
    ln, st, pt = tr.node_line, tr.node_step, tr.node_point
    nodes = {
        "node_track": (tr.node_track, {"long_name": "track ID of the node", "units": "1"}),
        "node_step": (st, {"long_name": f"index along {dim}", "units": "1"}),
        "node_point": (pt, {"long_name": "point slot in the fixed_points result", "units": "1"}),
        "node_type": (code[ln, st, pt].astype(np.int8), fc.flag_attrs("type of the point at the node")),
        "node_speed": (speed[ln, st, pt], {"long_name": "speed |g| at the node",
                                           "units": fp.speed.attrs.get("units", "1")}),
        f"node_{dim}": (coord[st], {"long_name": f"{dim} of the node", "units": unit}),
        "node_continued": (status, _flags("continuation of the node to its track's next step", STATUS)),
        "node_lost_at": (lost_at, {"long_name": f"{dim} where the node's continuation was lost (NaN: it was not)",
                                   "units": unit}),
    }
    for o in others:
        nodes[f"node_{o}"] = (line_vals[o][ln], {"long_name": f"{o} of the node", "units": fp[o].attrs.get("units", "1")})
    for name, (vals, attrs) in nodes.items():
        ds[name] = xr.DataArray(vals, dims=("node",), attrs=attrs)
    ds["node_position"] = xr.DataArray(pos[ln, st, pt], dims=("node", "state"),
                                       attrs={"long_name": "state at the node", "units": fp.position.attrs.get("units", "1")})
    for name, vals, long_name in (("edge_source", tr.edge_source, "node the track continues from"),
                                  ("edge_target", tr.edge_target, "node the track continues to"),
                                  ("edge_gap", tr.edge_gap, f"steps along {dim} the track was missing"),
                                  ("edge_distance", tr.edge_distance, "distance between the two nodes"),
                                  ("edge_predicted_distance", tr.edge_predicted_distance,
                                   "distance between the continued source node and the target")):
        ds[name] = xr.DataArray(np.asarray(vals), dims=("edge",), attrs={"long_name": long_name, "units": "1"})
    for name in ("edge_distance", "edge_predicted_distance"):
        ds[name].attrs["units"] = fp.position.attrs.get("units", "1")
    ds.attrs["description"] = "tracks of fixed points and ghosts, and events (dynlearn bifurcations analyzer)"
    return ds


def views(ds: xr.Dataset) -> dict[str, Any]:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend's options; renders nothing)

    from ..fixed_points.views import COLORS, MAX_FRAMES

    dim = ds.attrs.get("tracked_dim", "epoch")
    first = str(ds["state"].values[0])
    others = [d for d in ds["track"].dims if d not in (dim, "point")]
    types = np.array(("none",) + fc.TYPES, dtype=object)
    df = pd.DataFrame({dim: ds[f"node_{dim}"].values, first: ds["node_position"].values[:, 0],
                       "track": ds["node_track"].values,
                       "type": types[ds["node_type"].values.astype(int) + 1]})
    for o in others:
        df[o] = ds[f"node_{o}"].values
    ev = pd.DataFrame({"location": ds["location"].values, "event": ds["event_type"].values,
                       **{o: ds[f"{o}_at_event"].values for o in others}})

    def frame(sel: dict) -> Any:
        sub, esub = df, ev
        for k, v in sel.items():
            sub, esub = sub[sub[k] == v], esub[esub[k] == v]
        paths = [g[[dim, first]].to_numpy() for _, g in sub.sort_values(dim).groupby("track")]
        layers = [hv.Path(paths, kdims=[dim, first]).opts(color="lightgray", line_width=1)]
        layers.append(hv.Points(sub, kdims=[dim, first], vdims=["type", "track"]).opts(
            color="type", cmap=COLORS, size=5, tools=["hover"]))
        for loc, name in zip(esub.location, esub.event):
            layers.append(hv.VLine(float(loc)).opts(color="black" if name == "saddle_node" else "#1a9850",
                                                    line_dash="dashed"))
        return hv.Overlay(layers).opts(width=650, height=320, title=f"tracks and events along {dim}")

    if not others:
        return {"tracks": frame({})}
    keys = [np.asarray(ds[o].values) for o in others]
    keys = [k[np.unique(np.linspace(0, len(k) - 1, min(len(k), MAX_FRAMES)).round().astype(int))] for k in keys]
    frames = {}
    for combo in np.array(np.meshgrid(*keys, indexing="ij")).reshape(len(others), -1).T:
        sel = dict(zip(others, combo))
        frames[tuple(v.item() for v in combo)] = frame(sel)
    return {"tracks": hv.HoloMap(frames, kdims=others)}

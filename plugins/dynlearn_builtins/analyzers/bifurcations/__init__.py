r"""Bifurcations and ghost emergence along an ordered dim (epochs or a parameter), from tracked fixed points.

The analyzer consumes the :class:`~dynlearn_builtins.analyzers.fixed_points.FixedPoints` output and

1. tracks fixed points and slow points (ghosts) along the ordered dim ``dim`` (default ``epoch`` when present)
   for every combination of the other sweep dims (*lines*: seeds, learning rates, ...), all lines at once, by
   predictor-corrector (:mod:`~dynlearn_builtins.analyzers.bifurcations.continuation`): every point is continued
   with its Jacobian (Newton on the residual; a ghost as the minimum of the speed) along the parameters from
   its step to the next, ``substeps`` substeps, all points in one batch; the continued positions are matched to
   the points found there by optimal assignment (:func:`dynlearn.matching.track`: a distance gate, a stability
   term, a gap of up to ``max_gap`` steps), so points that move far between checkpoints keep their identity; a
   continuation that fails (a singular Jacobian, divergence, a collision with another track) is the evidence of
   a fold;
2. stores the tracks as a graph (networkx: nodes = points at a step, edges = continuations) in two tables,
   ``node`` and ``edge``, rebuilt by :func:`tracks_graph`;
3. detects events, each with its evidence and a confidence (see
   :mod:`dynlearn_builtins.analyzers.bifurcations.events`): ``saddle_node`` and ``pitchfork`` (a pair born or
   annihilated; a pitchfork's pair at a third track that changes stability), ``transcritical`` (two tracks
   exchange stability), ``hopf`` / ``neimark_sacker`` (a complex pair crosses), ``flip`` (a map's eigenvalue
   crosses -1), ``stability_change`` (``fold``: a real eigenvalue crossing without a count change) and
   ``ghost_emergence`` (a point that passed the ghost test appears where a pair vanished, deepens from a slow
   point, or appears and persists: the abrupt-learning mechanism of the ghost paper);
4. keeps the books: for every line and interval between consecutive steps, ``fixed_change`` (the change of the
   number of fixed points) equals ``explained_change`` (the count changes of the events there: +-2 for a pair,
   0 otherwise) unless ``unexplained`` gives the reason (a missed point, the box edge, ...).

For :math:`\dot x = x^2 + r` swept through :math:`r = 0`, the two fixed points :math:`\pm\sqrt{-r}` meet and
disappear: one ``saddle_node`` annihilation at :math:`r = 0`, followed by the ghost at :math:`x = 0`.

Examples
--------
>>> import numpy as np, dynlearn
>>> grid = dynlearn.grid(r=np.linspace(-1, 1, 11))
>>> fp = dynlearn.make_analyzer({"name": "fixed_points", "n_starts": 16}).run("saddle_node", grid)
>>> out = Bifurcations().run("saddle_node", grid, upstream={"fixed_points": fp})
>>> out.event_type.values.tolist(), out.subtype.values.tolist(), float(out.location[0])
(['saddle_node', 'ghost_emergence'], ['annihilation', 'after_saddle_node'], 0.0)
>>> bool(np.isfinite(out.q_min_depth[0]))      # the ghost where the pair vanished is evidence of the fold
True
>>> fp.n_fixed.values.tolist()                                   # the double root at r = 0 counts once
[2, 2, 2, 2, 2, 1, 0, 0, 0, 0, 0]
>>> out.fixed_change.values.tolist() == out.explained_change.values.tolist(), int(out.unexplained.max())
(True, 0)
>>> g = tracks_graph(out)
>>> g.number_of_nodes() == int(fp.present.sum()), sorted({d["track"] for _, d in g.nodes(data=True)})
(True, [0, 1, 2])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import torch
import xarray as xr

import dynlearn
from dynlearn import periodic
from dynlearn.errors import ParameterError
from dynlearn.matching import Slots, track
from dynlearn.params import Param, Settings
from dynlearn.progress import Meter
from dynlearn.sweep import Batch

from ..fixed_points import classify as fc
from ..fixed_points.dataset import check_upstream
from .continuation import STATUS, collisions, continue_points
from .events import detect

__all__ = ["Bifurcations", "tracks_graph"]


#: variables of the fixed_points result the tracker reads
NEEDS = ("position", "present", "point_type", "n_unstable", "n_neutral", "eig_real", "eig_imag", "speed")


def tracked_dim(settings: Settings, batch: Batch, fp: xr.Dataset) -> str:
    """The dim to track along, after checking the upstream ``fp`` against the sweep (one-line
    :class:`~dynlearn.errors.ShapeError` / :class:`~dynlearn.errors.ParameterError`)."""
    check_upstream(fp, batch, NEEDS, "bifurcations")
    if settings.dim is not None:
        if settings.dim not in batch.dims:
            raise ParameterError(f"bifurcations: dim {settings.dim!r} is not a sweep dim; sweep dims: "
                                 f"{list(batch.dims)}")
        return settings.dim
    if not batch.dims:
        raise ParameterError("bifurcations: needs an ordered sweep dim (epoch or a parameter grid) to track along")
    return "epoch" if "epoch" in batch.dims else batch.dims[0]


def _lines(batch: Batch, dim: str, others: list[str]) -> dict[str, torch.Tensor]:
    """The batch's parameters as ``(L, K, *event)`` tensors: lines (the other sweep dims) by steps along ``dim``."""
    order = [batch.dims.index(o) for o in others] + [batch.dims.index(dim)]
    K = batch.shape[batch.dims.index(dim)]
    out = {}
    for name, v in batch.params.items():
        ev = tuple(v.shape[1:])
        v = v.reshape(*batch.shape, *ev).permute(*order, *range(len(order), len(order) + len(ev)))
        out[name] = v.reshape(-1, K, *ev)
    return out


def _predictor(batch: Batch, dim: str, others: list[str], coord: np.ndarray, typical: np.ndarray,
               box: tuple[np.ndarray, np.ndarray], opts: Settings, record: tuple[np.ndarray, ...]):
    """The matcher's ``predict``: every live track continued to the step being matched (all lines and slots in
    one batch); ``record`` (per node: status, lost_at, continued position) gets each node's first continuation."""
    status, lost_at, x_next = record
    circle = periodic.Circle.of(batch.system)
    params = _lines(batch, dim, others)
    t = coord.astype(float) if np.issubdtype(coord.dtype, np.number) else np.arange(len(coord), dtype=float)
    tol = 1e-6 * float(np.mean(box[1] - box[0]))

    def predict(k: int, slots: Slots) -> tuple[np.ndarray, np.ndarray]:
        li, si = np.nonzero(slots.live)
        x0 = slots.position[li, si]
        before = x0 - periodic.delta(x0, slots.previous[li, si], circle)  # unwrapped next to x0 for the secant
        c = continue_points(batch.system, params, t, li, slots.step[li, si], k, x0, before,
                            slots.previous_step[li, si], slots.cls[li, si] == 1, typical,
                            box, substeps=opts.substeps, newton_steps=opts.newton_steps, tol=opts.newton_tol)
        out = np.full(slots.position.shape, np.nan)
        c.position = periodic.wrap(c.position, circle)
        out[li, si] = c.position
        exact = np.zeros(slots.live.shape, dtype=bool)
        exact[li, si] = c.status == STATUS.index("converged")
        moved = np.full(slots.live.shape, np.inf)
        moved[li, si] = periodic.distance(c.position, x0, circle)
        hit = collisions(out, exact, moved, tol)[li, si]
        c.status[hit] = STATUS.index("collided")
        exact[li[hit], si[hit]] = False
        out[li[hit], si[hit]] = np.nan
        node = slots.node[li, si]
        first = status[node] == STATUS.index("not_continued")  # a gap's later tries keep the first
        status[node[first]], lost_at[node[first]], x_next[node[first]] = (
            c.status[first], c.lost_at[first], c.position[first])
        return out, exact

    return predict


class Bifurcations(dynlearn.Analyzer):
    """Tracks of fixed points and ghosts along an ordered dim, with bifurcation and ghost-emergence events.

    Options are declared in :attr:`options` and validated once into :attr:`settings`; ``dim`` and the upstream
    result are checked against the sweep at the start of :meth:`analyze`.

    Parameters
    ----------
    dim
        The ordered sweep dim to track along (default: ``epoch`` if present, else the first sweep dim).
    gate
        Largest distance between matched points, in units of the mean width of the fixed-point search box
        (``bounds`` attrs of the upstream result).
    pair_gate
        Largest distance between the two fixed points of a saddle-node pair (same units; default ``gate``).
    stability_weight
        Cost added to a match whose point types differ (in units of ``gate``).
    max_gap
        Steps a track may miss and keep its ID.
    substeps
        Continuation substeps between consecutive steps (parameters interpolated linearly); 0: no continuation,
        the last positions are matched (plain nearest matching).
    newton_steps
        Newton iterations per substep.
    newton_tol
        A continued point has converged when its residual is below ``newton_tol`` typical speeds.
    eig_scale
        A crossing eigenvalue within ``eig_scale`` of the boundary on both sides counts as evidence.
    min_confidence
        Events with a lower confidence are left out.
    threads
        Torch intra-op threads (every analyzer's option; ``None``: chosen from the problem size).
    """

    name = "bifurcations"
    description = ("predictor-corrector tracks of fixed points and ghosts along epochs or a parameter; saddle-node, "
                   "pitchfork, transcritical, Hopf, flip, Neimark-Sacker and ghost-emergence events; count bookkeeping")
    kinds = ("flow", "map")
    requires = ("fixed_points",)
    options = {
        "dim": Param(None, kind="str", nullable=True,
                     description="ordered sweep dim to track along (None: epoch if present, else the first)"),
        "gate": Param(0.25, low=0, low_inclusive=False, units="box widths",
                      description="largest distance between matched points"),
        "pair_gate": Param(None, low=0, low_inclusive=False, nullable=True, units="box widths",
                           description="largest distance between a saddle-node pair (None: gate)"),
        "stability_weight": Param(0.5, low=0, units="gates", description="cost of a match whose point types differ"),
        "max_gap": Param(2, kind="int", low=0, description="steps a track may miss and keep its ID"),
        "substeps": Param(4, kind="int", low=0, description="continuation substeps between consecutive steps "
                          "(predictor-corrector; 0: match the last positions, no continuation)"),
        "newton_steps": Param(8, kind="int", low=1, description="Newton iterations per continuation substep"),
        "newton_tol": Param(1e-8, low=0, low_inclusive=False, units="typical speeds",
                            description="a continued point converged when its residual is below this"),
        "eig_scale": Param(0.5, low=0, description="a crossing eigenvalue this close to the stability boundary on "
                           "both sides counts as evidence"),
        "min_confidence": Param(0.5, low=0, high=1, description="events with a lower confidence are left out"),
    }

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        opts = self.settings
        fp = upstream["fixed_points"]
        dim = tracked_dim(opts, batch, fp)
        others = [d for d in batch.dims if d != dim]
        lo = np.asarray(fp.attrs.get("bounds_low", batch.system.domain()[0]), dtype=float)
        hi = np.asarray(fp.attrs.get("bounds_high", batch.system.domain()[1]), dtype=float)
        scale = float(np.mean(hi - lo))
        gate = opts.gate * scale
        pair_gate = (opts.pair_gate if opts.pair_gate is not None else opts.gate) * scale
        f = fp.transpose(*others, dim, "point", ...)
        shape = [f.sizes[d] for d in others]
        L, K, P, d = int(np.prod(shape, dtype=np.int64)), f.sizes[dim], f.sizes["point"], f.sizes["state"]
        pos = f.position.transpose(*others, dim, "point", "state").values.reshape(L, K, P, d)
        present = f.present.values.reshape(L, K, P).astype(bool)
        code = f.point_type.values.reshape(L, K, P).astype(np.int64)
        cls = (code >= fc.CODE["ghost"]).astype(np.int64)
        typical = (f.typical_speed.transpose(*others, dim).values.reshape(L, K) if "typical_speed" in f
                   else np.full((L, K), np.inf))
        coord = np.asarray(f[dim].values)
        n_nodes = int(present.sum())
        status = np.full(n_nodes, STATUS.index("not_continued"), dtype=np.int8)
        lost_at = np.full(n_nodes, np.nan)
        x_next = np.full((n_nodes, d), np.nan)
        predict = (_predictor(batch, dim, others, coord, typical, (lo, hi), opts, (status, lost_at, x_next))
                   if opts.substeps > 0 else None)
        with Meter(K, "bifurcations: tracking", show_progress, unit="step") as meter:
            circle = periodic.Circle.of(batch.system)
            tr = track(pos, present, cls, code, gate=gate, stability_weight=opts.stability_weight,
                       max_gap=opts.max_gap, on_step=meter.update, predict=predict,
                       distance=lambda a, b: periodic.distance(a, b, circle))
        ln, st, pt = tr.node_line, tr.node_step, tr.node_point
        eig_r = f.eig_real.transpose(*others, dim, "point", "eig").values.reshape(L, K, P, -1)
        eig_i = f.eig_imag.transpose(*others, dim, "point", "eig").values.reshape(L, K, P, -1)
        n_fixed = ((code >= 0) & (code < fc.CODE["ghost"]) & present).sum(-1)
        masked = (f.n_fixed.transpose(*others, dim).values.reshape(L, K) < 0 if "n_fixed" in f
                  else np.zeros((L, K), dtype=bool))
        nodes = pd.DataFrame({
            "node": np.arange(ln.size), "line": ln, "step": st, "track": tr.node_track, "cls": cls[ln, st, pt],
            "code": code[ln, st, pt], "n_unstable": f.n_unstable.values.reshape(L, K, P)[ln, st, pt],
            "n_neutral": f.n_neutral.values.reshape(L, K, P)[ln, st, pt],
            "speed": f.speed.values.reshape(L, K, P)[ln, st, pt], "status": status, "lost_at": lost_at,
        })
        nodes["x"] = list(pos[ln, st, pt])
        nodes["x_next"] = list(x_next)
        nodes["eig_real"] = list(eig_r[ln, st, pt])
        nodes["eig_imag"] = list(eig_i[ln, st, pt])
        events, book = detect(nodes, n_fixed, masked, coord, typical, (lo, hi), kind=batch.system.kind, gate=gate,
                              pair_gate=pair_gate, eig_scale=opts.eig_scale, min_confidence=opts.min_confidence)
        from .tables import build

        ds = build(batch, fp, dim, others, shape, tr, pos, code, f.speed.values.reshape(L, K, P), events, coord,
                   book, status, lost_at)
        ds.attrs["tracked_dim"] = dim
        ds.attrs["gate"] = gate
        ds.attrs["pair_gate"] = pair_gate
        return ds

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """holoviews objects: tracks along the ordered dim coloured by type, with the events marked."""
        from .tables import views

        return views(result)


def tracks_graph(ds: xr.Dataset) -> nx.DiGraph:
    """The networkx graph of tracks stored in a ``bifurcations`` result (node/edge tables).

    Nodes are the table's node indices with attributes ``track``, ``step``, ``point``, ``type`` (label),
    ``position`` (array) and one attribute per sweep dim (its coordinate value); edges carry ``gap`` and
    ``distance``.
    """
    g = nx.DiGraph()
    names = [v for v in ds.data_vars if ds[v].dims == ("node",) and v.startswith("node_")]
    cols = {v[len("node_"):]: ds[v].values for v in names}
    pos = ds["node_position"].values
    types = np.array(("none",) + fc.TYPES, dtype=object)
    for i in range(ds.sizes["node"]):
        attrs = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}
        attrs["type"] = types[int(attrs.pop("type")) + 1]
        attrs["position"] = pos[i]
        g.add_node(i, **attrs)
    for s, t, gap, dist in zip(ds.edge_source.values, ds.edge_target.values, ds.edge_gap.values,
                               ds.edge_distance.values):
        g.add_edge(int(s), int(t), gap=int(gap), distance=float(dist))
    return g

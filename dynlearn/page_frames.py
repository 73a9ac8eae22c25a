"""Any holoviews view on the browse page: its bokeh figure, and sliders that replay its frames in the browser.

holoviews draws the view (a HoloMap, or a layout or overlay of them) once with the bokeh backend; the plot is then
stepped through every key and each step's *changes* are recorded: the data of each data source and the simple
properties (visibility, text, locations, factors, ...) that differ from the first frame. Distinct values are
stored once. The page holds the figure at its first frame plus that table, and the view's sliders
(:mod:`dynlearn.page_sliders`) put the recorded values back into the figure's models.

Views with many frames are thinned to at most ``MAX_FRAMES`` keys, evenly spread over each dim (the analyzers
already keep their HoloMaps below that; the training curves, whose sweeps can be large, use
:mod:`dynlearn.page_sweep` instead).

The view is drawn and stepped under :func:`dynlearn.page_ranges.ranges_once`: the ranges shared by its frames are
computed once, not again for every frame.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .page_ranges import ranges_once
from .page_sliders import VIEW_TAG, connect, frame_table, make_sliders

__all__ = ["render", "thin", "MAX_FRAMES"]

#: the most frames a generic view keeps (keys beyond are thinned evenly per dim)
MAX_FRAMES = 100

_PRIMITIVE = (type(None), bool, int, float, str)
#: model properties the frames do not record
_SKIP = frozenset({"tags", "name", "js_property_callbacks", "js_event_callbacks", "subscribed_events"})

_APPLY = """
const n = targets.length;
for (let j = 0; j < n; j++) {
  const v = values[j][choice[frame * n + j]];
  if (props[j] === "data") {
    targets[j].data = v instanceof Map ? Object.fromEntries(v) : Object.assign({}, v);
  } else {
    targets[j][props[j]] = v;
  }
}
"""


def thin(obj: Any, max_frames: int = MAX_FRAMES) -> Any:
    """``obj`` with at most ``max_frames`` keys when it is a HoloMap (evenly spread values of each dim).

    Parameters
    ----------
    obj : holoviews object
        Any view; only HoloMaps are thinned.
    max_frames : int
        Largest number of keys kept.

    Returns
    -------
    holoviews object
        ``obj`` itself, or a clone holding the kept keys.
    """
    import holoviews as hv

    if not isinstance(obj, hv.HoloMap) or len(obj) <= max_frames:
        return obj
    keys = list(obj.keys())
    nd = len(obj.kdims)
    per = max(1, int(np.floor(max_frames ** (1.0 / nd) + 1e-9)))
    keep = []
    for i in range(nd):
        vals = list(dict.fromkeys(k[i] for k in keys))
        idx = np.unique(np.linspace(0, len(vals) - 1, min(per, len(vals))).round().astype(int))
        keep.append({vals[j] for j in idx})
    return obj.clone([(k, v) for k, v in obj.items() if all(k[i] in keep[i] for i in range(nd))])


def _primitive(v: Any) -> bool:
    if isinstance(v, _PRIMITIVE):
        return True
    return isinstance(v, (list, tuple)) and len(v) <= 10_000 and all(isinstance(x, _PRIMITIVE) for x in v)


def _copy_data(data: Any) -> dict[str, Any]:
    out = {}
    for k, col in dict(data).items():
        out[str(k)] = [np.array(c) for c in col] if isinstance(col, list) and col and isinstance(
            col[0], np.ndarray) else (np.array(col) if isinstance(col, np.ndarray) else list(col))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@functools.lru_cache(maxsize=None)
def _sent(cls: type) -> tuple[str, ...]:
    """The properties of a bokeh model class the browser gets (no alias or deprecated name), less bookkeeping."""
    return tuple(sorted(p for p in cls.properties(_with_props=True) if cls.lookup(p).serialized and p not in _SKIP))


def _values(m: Any, full: bool) -> dict[str, Any]:
    """``m``'s properties (:func:`_sent`): all of them, or (``full=False``) those set on it.

    A property never set on ``m`` holds its default, the value a full snapshot of an earlier frame recorded (bokeh
    keeps a property's value once set): bokeh's ``properties_with_values(include_defaults=False)``, without
    reading every default first (slow).
    """
    names = _sent(type(m))
    if not full:
        held = getattr(m, "_property_values", None), getattr(m, "_unstable_default_values", None)
        if not all(isinstance(h, dict) for h in held):  # another bokeh: its public (slower) way
            return {p: v for p, v in m.properties_with_values(include_defaults=False).items() if p in names}
        names = tuple(p for p in names if p in held[0] or p in held[1])
    out = {}
    for p in names:
        try:
            out[p] = getattr(m, p)
        except Exception:  # pragma: no cover - a required property left unset
            continue
    return out


def _snapshot(models: list, full: bool = True) -> dict[tuple[int, str], Any]:
    """The data of every data source and the simple properties of every other model of ``models``.

    ``full=False``: only the properties set on the models; one missing there has its default value, the one a
    full snapshot of an earlier frame holds.
    """
    from bokeh.models import ColumnDataSource

    snap: dict[tuple[int, str], Any] = {}
    for i, m in enumerate(models):
        if isinstance(m, ColumnDataSource):
            snap[(i, "data")] = _copy_data(m.data)
            continue
        for p, v in _values(m, full).items():
            if _primitive(v):
                snap[(i, p)] = list(v) if isinstance(v, tuple) else v
    return snap


def _positions(keys: list[tuple]) -> list[list[Any]]:
    """The slider positions of each dim: its distinct key values, sorted when they sort."""
    out = []
    for i in range(len(keys[0])):
        vals = list(dict.fromkeys(k[i] for k in keys))
        try:
            vals = sorted(vals)
        except TypeError:
            pass
        out.append(vals)
    return out


def render(obj: Any, view: str, meter: Any = None) -> Any:
    """The bokeh model of a holoviews view, with sliders over its key dims when it has several frames.

    Parameters
    ----------
    obj : holoviews object
        The view (element, overlay, layout, HoloMap).
    view : str
        Its name on the page (names and tags of the models, see :mod:`dynlearn.page_sliders`).
    meter : dynlearn.progress.Meter, optional
        Told about every frame recorded (``set(frame=...)``).

    Returns
    -------
    bokeh.models.LayoutDOM
        The figure (or a column of the sliders and the figure).
    """
    import holoviews as hv
    from bokeh.layouts import column

    obj = thin(obj)
    with ranges_once():
        plot = hv.renderer("bokeh").get_plot(obj)
        keys = [tuple(k) if isinstance(k, tuple) else (k,) for k in plot.keys]
        dims = list(plot.dimensions)
        if not dims or len(keys) <= 1:
            return plot.state
        plot.update(keys[0])
        models = list(plot.state.references())
        base = _snapshot(models)
        frames = [base]
        for n, key in enumerate(keys[1:], 2):
            plot.update(key)
            frames.append(_snapshot(models, full=False))
            if meter is not None:
                meter.set(view=view, frame=f"{n}/{len(keys)}")
        plot.update(keys[0])
    slots = [s for s in base if any(s in f and not _same(f[s], base[s]) for f in frames[1:])]
    targets, props, values = [], [], []
    choice = np.zeros((len(frames), len(slots)), dtype=np.int32)
    for j, (i, p) in enumerate(slots):
        uniq: list[Any] = []
        for k, f in enumerate(frames):
            v = f.get((i, p), base[(i, p)])
            hit = next((u for u, w in enumerate(uniq) if _same(w, v)), None)
            if hit is None:
                uniq.append(v)
                hit = len(uniq) - 1
            choice[k, j] = hit
        targets.append(models[i])
        props.append(p)
        values.append(uniq)
        if p == "data":
            models[i].tags = [*models[i].tags, f"{VIEW_TAG}{view}"]
    positions = _positions(keys)
    sliders = make_sliders(view, [(d.name, d.pprint_label, v) for d, v in zip(dims, positions)])
    shape = [len(v) for v in positions]
    index_of = {tuple(positions[i].index(k[i]) for i in range(len(k))): n for n, k in enumerate(keys)}
    connect(sliders, frame_table(shape, index_of), _APPLY,
            {"targets": targets, "props": props, "values": values, "choice": choice.ravel()})
    return column(*sliders, plot.state, name=f"{VIEW_TAG}{view}")

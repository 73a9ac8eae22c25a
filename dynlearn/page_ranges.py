"""holoviews' ranges of a HoloMap computed once per view, not again for every frame drawn.

Axis and colour ranges are shared by all the frames of a view (holoviews' default normalization), so holoviews
computes them over every element of every frame -- and does so again for every frame it draws, and for every frame
when it sets up an overlay, traversing the whole HoloMap several times each time: quadratic in the number of frames
(minutes for the 90 frames of a fixed-points view). :func:`ranges_once` keeps, while a view is drawn and stepped
(:mod:`dynlearn.page_frames`), what holoviews computes over a HoloMap and hands it back when asked again: the same
ranges, computed once.

It does so by wrapping three holoviews methods once per process (:data:`_WRAPPED`: the range computation of a
group of elements, the lookup of normalization options, a HoloMap's traversal); outside :func:`ranges_once` they
are holoviews' own. A holoviews whose methods have other parameters keeps its own methods: slower, the same page.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
from typing import Any, Iterator

__all__ = ["ranges_once"]

#: what holoviews computed over a HoloMap while a view is drawn (:func:`ranges_once`); None: not drawing a view
_RANGES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("dynlearn_page_ranges", default=None)
#: the holoviews methods wrapped: (module, class, method) -> the parameters they have in the holoviews versions known
_WRAPPED = {("holoviews.plotting.plot", "DimensionedPlot", "_compute_group_range"): [
                "cls", "group", "elements", "ranges", "framewise", "axiswise", "robust", "top_level", "prev_frame"],
            ("holoviews.plotting.plot", "DimensionedPlot", "_get_norm_opts"): ["self", "obj"],
            ("holoviews.core.spaces", "HoloMap", "traverse"): ["self", "fn", "specs", "full_breadth"]}


def _compute_group_range(original: Any) -> Any:
    """holoviews' ``DimensionedPlot._compute_group_range``, computing the ranges shared by all frames once.

    Called with ``framewise=False`` (ranges over the whole HoloMap: ``elements`` is every element of it), holoviews
    computes the ranges of every dim of ``elements`` and adds those of the dims ``ranges[group]`` lacks (all of
    them when it has none). The ranges of a set of elements are kept while :func:`ranges_once` is active and
    reused; frame-wise calls (one frame's elements) and calls outside it are holoviews' own.
    """

    def compute(cls: Any, group: Any, elements: Any, ranges: dict, framewise: Any, axiswise: Any, robust: Any,
                top_level: Any, prev_frame: Any) -> None:
        cache = _RANGES.get()
        if cache is None or framewise:
            return original(cls, group, elements, ranges, framewise, axiswise, robust, top_level, prev_frame)
        elements = [el for el in elements if el is not None]
        key = ("ranges", cls, group, tuple(id(el) for el in elements), axiswise, robust)
        hit = cache.get(key)
        if hit is None:
            fresh: dict = {}
            original(cls, group, elements, fresh, framewise, axiswise, robust, top_level, prev_frame)
            hit = cache[key] = (elements, fresh.get(group, {}))  # the elements kept alive: their ids stay theirs
        prev = ranges.get(group)
        if not prev:
            ranges[group] = {d: dict(r) for d, r in hit[1].items()}
            return None
        for d, r in hit[1].items():
            if d not in prev:
                prev[d] = dict(r)
        return None

    return classmethod(compute)


def _get_norm_opts(original: Any) -> Any:
    """holoviews' ``DimensionedPlot._get_norm_opts`` (the normalization options of each element spec of ``obj``,
    found by traversing all of it), looked up once per object while :func:`ranges_once` is active."""

    def norm_opts(self: Any, obj: Any) -> dict:
        cache = _RANGES.get()
        if cache is None:
            return original(self, obj)
        key = ("norm", self.renderer.backend, id(obj))
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = (obj, original(self, obj))
        return dict(hit[1])

    return norm_opts


def _traverse(original: Any) -> Any:
    """holoviews' ``traverse`` of a HoloMap (every element of every frame; holoviews traverses the whole HoloMap
    several times per frame drawn), done once per function and specs while :func:`ranges_once` is active.

    Only for functions that are plain code (no closure or defaults: the same code gives the same results) on a
    HoloMap holding its frames (not a DynamicMap).
    """
    from holoviews.core.spaces import DynamicMap

    def traverse(self: Any, fn: Any = None, specs: Any = None, full_breadth: bool = True) -> list:
        cache = _RANGES.get()
        code = getattr(fn, "__code__", None)
        if (cache is None or isinstance(self, DynamicMap) or (fn is not None and code is None)
                or getattr(fn, "__closure__", None) or getattr(fn, "__defaults__", None)):
            return original(self, fn, specs, full_breadth)
        spec = frozenset(specs) if isinstance(specs, set) else tuple(specs) if isinstance(specs, list) else specs
        key = ("traverse", id(self), code, spec, full_breadth)
        try:
            hit = cache.get(key)
        except TypeError:  # unhashable specs
            return original(self, fn, specs, full_breadth)
        if hit is None:
            hit = cache[key] = (self, original(self, fn, specs, full_breadth))
        return list(hit[1])

    return traverse


def _install() -> None:
    """Wrap the methods of :data:`_WRAPPED`, once per process; a method whose parameters are not the ones known
    (another holoviews) is left as it is."""
    wrappers = {"_compute_group_range": _compute_group_range, "_get_norm_opts": _get_norm_opts,
                "traverse": _traverse}
    for (module, cls_name, name), params in _WRAPPED.items():
        cls = getattr(importlib.import_module(module), cls_name)
        attr = inspect.getattr_static(cls, name)
        func = attr.__func__ if isinstance(attr, classmethod) else attr
        if not callable(func) or getattr(func, "_dynlearn_wraps", None) is not None:
            continue
        if list(inspect.signature(func).parameters) != params:
            continue
        wrapped = wrappers[name](func)
        (wrapped.__func__ if isinstance(wrapped, classmethod) else wrapped)._dynlearn_wraps = func
        setattr(cls, name, wrapped)


@contextlib.contextmanager
def ranges_once() -> Iterator[None]:
    """While active (in this thread or task), holoviews computes the ranges over a set of elements once."""
    _install()
    token = _RANGES.set({})
    try:
        yield
    finally:
        _RANGES.reset(token)

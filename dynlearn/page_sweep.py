"""Curves over a sweep, kept as one array: the training curves of the browse page, for sweeps of any size.

A :class:`CurveSweep` holds one curve per series (seed) along a shared x (epoch) at every point of a grid of
swept dims (learning rate, ...). On the page the whole sweep is one float32 array in the page and a slider per
swept dim selects a slice of it in the browser (:mod:`dynlearn.page_sliders`): writing a page of 4,000 slider
positions costs one holoviews figure and one array, not 4,000 rendered frames. Curves longer than the page's
budget are min/max-decimated on a grid of x buckets shared by every curve (:func:`decimate_many`), so abrupt
drops stay visible; the budget (``MAX_NUMBERS`` numbers per view) keeps the page small, and a sweep too large
for 16 points per curve keeps an evenly spread subset of its positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .page_sliders import VIEW_TAG, connect, frame_table, make_sliders

__all__ = ["CurveSweep", "decimate_many", "MAX_NUMBERS", "MAX_POINTS"]

#: the most y values a sweep view stores in the page (float32: about 5.3 MB of base64)
MAX_NUMBERS = 1_000_000
#: the most points of one curve
MAX_POINTS = 1000
#: the fewest points of one curve (sweeps beyond MAX_NUMBERS / MIN_POINTS curves are thinned)
MIN_POINTS = 16

_APPLY = """
const S = sources.length;
for (let s = 0; s < S; s++) {
  const off = (frame * S + s) * npoints;
  const data = Object.assign({}, sources[s].data);
  data[xname] = x;
  data[yname] = new Float32Array(y.buffer, y.byteOffset + 4 * off, npoints);
  sources[s].data = data;
}
"""


def decimate_many(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max decimation of many curves onto one shared x grid.

    The samples are cut into ``max_points // 2`` buckets of consecutive x; each curve keeps, per bucket, its
    smallest and largest value in the order they occur, placed at the bucket's first and last x. NaN are ignored
    (a bucket of NaN stays NaN).

    Parameters
    ----------
    x : numpy.ndarray
        Shape ``(n,)``, increasing.
    y : numpy.ndarray
        Shape ``(..., n)``.
    max_points : int
        Points kept per curve (at least 2); curves of ``n <= max_points`` are returned as they are.

    Returns
    -------
    x, y : numpy.ndarray
        Shapes ``(m,)`` and ``(..., m)``, ``m <= max_points``.

    Examples
    --------
    >>> x = np.arange(8.0); y = np.array([0, 5, 1, 1, 1, -3, 1, 1.0])
    >>> decimate_many(x, y, 4)
    (array([0., 3., 4., 7.]), array([ 0.,  5.,  1., -3.]))
    """
    n = x.shape[0]
    if n <= max_points:
        return x, y
    k = max(1, max_points // 2)
    size = -(-n // k)
    k = -(-n // size)
    pad = k * size - n
    yp = np.concatenate([y, np.full(y.shape[:-1] + (pad,), np.nan)], -1) if pad else y
    b = yp.reshape(y.shape[:-1] + (k, size))
    nan = np.isnan(b)
    allnan = nan.all(-1)
    imin = np.where(nan, np.inf, b).argmin(-1)
    imax = np.where(nan, -np.inf, b).argmax(-1)
    vmin = np.take_along_axis(b, imin[..., None], -1)[..., 0]
    vmax = np.take_along_axis(b, imax[..., None], -1)[..., 0]
    first = np.where(imin <= imax, vmin, vmax)
    second = np.where(imin <= imax, vmax, vmin)
    first[allnan], second[allnan] = np.nan, np.nan
    starts = np.arange(k) * size
    ends = np.minimum(starts + size, n) - 1
    xs = np.stack([x[starts], x[ends]], -1).reshape(-1)
    ys = np.stack([first, second], -1).reshape(y.shape[:-1] + (2 * k,))
    return xs, ys


@dataclass
class CurveSweep:
    """One curve per series along a shared x, at every point of a grid of swept dims.

    Parameters
    ----------
    x : numpy.ndarray
        Shape ``(n,)``: the shared abscissa (epochs).
    y : numpy.ndarray
        Shape ``(*grid, n_series, n)``.
    dims : list of (name, label, values)
        The swept dims of the grid (one slider each), in the order of ``y``'s leading axes.
    series : list of str
        The curves' labels (``seed 0``, ...).
    xdim, ydim : (name, label)
        The axes.
    title : str
        Title of the figure.
    opts : dict
        Extra holoviews options of the overlay.

    Examples
    --------
    >>> sw = CurveSweep(np.arange(3.0), np.ones((2, 1, 3)), [("lr", "learning rate", [0.1, 0.2])], ["seed 0"],
    ...                 ("epoch", "epoch"), ("loss", "loss"), "training loss")
    >>> sw.shape, len(sw.frame((1,)))
    ((2,), 1)
    """

    x: np.ndarray
    y: np.ndarray
    dims: list[tuple[str, str, Any]]
    series: list[str]
    xdim: tuple[str, str]
    ydim: tuple[str, str]
    title: str
    opts: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of positions of each swept dim."""
        return tuple(self.y.shape[: len(self.dims)])

    def frame(self, index: tuple[int, ...], x: np.ndarray | None = None, y: np.ndarray | None = None):
        """The holoviews overlay of the curves at one grid position.

        Parameters
        ----------
        index : tuple of int
            Position along each swept dim.
        x, y : numpy.ndarray, optional
            Data to draw instead of ``self.x`` / ``self.y`` (same layout; the page passes decimated data).

        Returns
        -------
        holoviews.Overlay
            One curve per series.
        """
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend's options; renders nothing)

        x = self.x if x is None else x
        ys = (self.y if y is None else y)[tuple(index)]
        kd, vd = hv.Dimension(self.xdim[0], label=self.xdim[1]), hv.Dimension(self.ydim[0], label=self.ydim[1])
        curves = [hv.Curve((x, ys[s]), kd, vd, label=lab) for s, lab in enumerate(self.series)]
        return hv.Overlay(curves).opts(title=self.title, width=700, height=320, show_legend=len(curves) <= 12,
                                       **self.opts)

    def holomap(self):
        """All frames as a holoviews HoloMap, for a notebook (the page never builds it: see :meth:`render`).

        Returns
        -------
        holoviews.HoloMap or holoviews.Overlay
            A HoloMap over the swept dims, or the single overlay when there are none.
        """
        import holoviews as hv

        if not self.dims:
            return self.frame(())
        frames = {tuple(np.asarray(d[2])[i].item() for d, i in zip(self.dims, idx)): self.frame(idx)
                  for idx in np.ndindex(*self.shape)}
        return hv.HoloMap(frames, kdims=[hv.Dimension(n, label=lab) for n, lab, _ in self.dims])

    def _kept(self, max_numbers: int) -> tuple[list[np.ndarray], int]:
        """Positions kept per dim and points per curve within ``max_numbers`` stored values."""
        n_series = max(1, len(self.series))
        keep = [np.arange(s) for s in self.shape]
        n_keys = int(np.prod(self.shape, dtype=np.int64))
        if n_keys * n_series * MIN_POINTS > max_numbers:
            per = (max_numbers / (n_series * MIN_POINTS)) ** (1.0 / len(self.shape))
            keep = [np.unique(np.linspace(0, s - 1, max(1, min(s, int(per)))).round().astype(int))
                    for s in self.shape]
            n_keys = int(np.prod([len(k) for k in keep], dtype=np.int64))
        points = int(min(MAX_POINTS, max(MIN_POINTS, max_numbers // (n_keys * n_series))))
        return keep, points

    def render(self, view: str, max_numbers: int = MAX_NUMBERS) -> Any:
        """The bokeh figure at the first position, with one slider per swept dim selecting a slice in the page.

        Parameters
        ----------
        view : str
            The view's name on the page (see :mod:`dynlearn.page_sliders`).
        max_numbers : int
            Budget of stored y values (decimation, then thinning of the positions).

        Returns
        -------
        bokeh.models.LayoutDOM
        """
        import holoviews as hv
        from bokeh.layouts import column
        from holoviews.core.util import dimension_sanitizer

        keep, points = self._kept(max_numbers)
        y = self.y[np.ix_(*keep)] if self.dims else self.y
        xs, ys = decimate_many(self.x.astype(float), np.asarray(y, dtype=float), points)
        ys32 = ys.astype(np.float32)
        finite = ys[np.isfinite(ys)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
        overlay = self.frame((0,) * len(self.dims), xs, ys32.astype(float)).opts(
            hv.opts.Curve(ylim=(lo - pad, hi + pad)))
        plot = hv.renderer("bokeh").get_plot(overlay)
        if not self.dims:
            return plot.state
        subplots = list(plot.subplots.values())
        sources = [sp.handles["source"] for sp in subplots if "source" in sp.handles]
        for src in sources:
            src.tags = [*src.tags, f"{VIEW_TAG}{view}"]
        dims = [(n, lab, np.asarray(v)[k]) for (n, lab, v), k in zip(self.dims, keep)]
        sliders = make_sliders(view, dims)
        shape = [len(k) for k in keep]
        table = frame_table(shape, {idx: int(np.ravel_multi_index(idx, shape)) for idx in np.ndindex(*shape)})
        connect(sliders, table, _APPLY, {"sources": sources, "x": xs, "y": ys32.reshape(-1),
                                         "npoints": int(len(xs)), "xname": dimension_sanitizer(self.xdim[0]),
                                         "yname": dimension_sanitizer(self.ydim[0])})
        return column(*sliders, plot.state, name=f"{VIEW_TAG}{view}")

"""Sliders of the browse page: one per swept dim of a view, driving that view only, in the browser.

A view with sliders keeps the data of all its frames once, in the page, and a ``CustomJS`` callback on its sliders
puts the selected frame into the plot's data sources: nothing is embedded per combination of sliders, no Python
runs when a slider moves (the same page works as a file and under ``--serve``), and a slider moves only its own
view. :func:`connect` builds that glue for both kinds of sliced view (:mod:`dynlearn.page_frames`,
:mod:`dynlearn.page_sweep`): it maps the sliders' positions to a frame index and runs the view's ``apply`` code.

Models carry names the browser tests look up: ``view:NAME`` (the view's column), ``slider:NAME:DIM`` (its
sliders) and the tag ``view:NAME`` on every data source its sliders update.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["value_labels", "make_sliders", "connect", "frame_table", "VIEW_TAG"]

#: prefix of the names and tags the page gives the models of a view
VIEW_TAG = "view:"

_SELECT = """
let k = 0;
for (let i = 0; i < sliders.length; i++) {
  const j = sliders[i].categories.indexOf(sliders[i].value);
  if (j < 0) return;
  k += j * strides[i];
}
const frame = frame_of[k];
if (frame < 0) return;
"""


def ensure_bokeh():
    """holoviews with the bokeh backend selected and its option builders loaded (``hv.opts.Curve``): a renderer
    imported elsewhere (e.g. by ``hv.renderer("bokeh")``) does not load those, so they are checked too."""
    import holoviews as hv

    if "bokeh" not in hv.Store.renderers or hv.Store.current_backend != "bokeh" or "Curve" not in dir(hv.opts):
        hv.extension("bokeh", logo=False)
    return hv


def value_labels(values: Sequence[Any]) -> list[str]:
    """Distinct, short text labels of a dim's coordinate values (the slider positions).

    Parameters
    ----------
    values : sequence
        The coordinate values, in slider order.

    Returns
    -------
    list of str
        ``'{:.4g}'`` of numbers (more digits where needed to keep them distinct), ``str`` of anything else.

    Examples
    --------
    >>> value_labels([1e-10, 5e-10, 2e-9])
    ['1e-10', '5e-10', '2e-09']
    >>> value_labels([1.00001, 1.00002])
    ['1.00001', '1.00002']
    """
    vals = list(np.asarray(values).tolist())
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        labels = [str(v) for v in vals]
    else:
        for digits in (4, 6, 8, 10, 12, 17):
            labels = [f"{v:.{digits}g}" for v in vals]
            if len(set(labels)) == len(labels):
                break
    if len(set(labels)) != len(labels):  # equal values: number the duplicates
        labels = [f"{lab} [{i}]" for i, lab in enumerate(labels)]
    return labels


def make_sliders(view: str, dims: Sequence[tuple[str, str, Sequence[Any]]]) -> list:
    """One ``CategoricalSlider`` per dim, at its first value.

    Parameters
    ----------
    view : str
        The view's name (the sliders are named ``slider:VIEW:DIM``).
    dims : sequence of (name, label, values)
        The swept dims of the view, their display labels and coordinate values.

    Returns
    -------
    list of bokeh.models.CategoricalSlider
    """
    from bokeh.models import CategoricalSlider

    out = []
    for name, label, values in dims:
        cats = value_labels(values)
        out.append(CategoricalSlider(categories=cats, value=cats[0], title=label or name, width=420,
                                     name=f"slider:{view}:{name}", tags=[f"{VIEW_TAG}{view}", str(name)]))
    return out


def frame_table(shape: Sequence[int], index_of: dict[tuple[int, ...], int]) -> np.ndarray:
    """The frame index of every combination of slider positions (``-1``: no frame there).

    Parameters
    ----------
    shape : sequence of int
        Number of positions of each slider.
    index_of : dict
        Frame index of each tuple of slider positions that has a frame.

    Returns
    -------
    numpy.ndarray
        int32, C order over ``shape``.
    """
    table = np.full(int(np.prod(shape, dtype=np.int64)), -1, dtype=np.int32)
    for pos, k in index_of.items():
        table[int(np.ravel_multi_index(pos, shape))] = k
    return table


def connect(sliders: list, table: np.ndarray, apply: str, args: dict[str, Any]) -> None:
    """Run ``apply`` (JavaScript, with ``frame`` the selected frame index) whenever one of ``sliders`` moves.

    Parameters
    ----------
    sliders : list of CategoricalSlider
        The view's sliders, in the order of the dims of ``table``.
    table : numpy.ndarray
        :func:`frame_table` of the sliders' positions.
    apply : str
        JavaScript body run with ``frame`` (and every name in ``args``) in scope.
    args : dict
        Models and data the code reads; ``sliders``, ``strides`` and ``frame_of`` are added.
    """
    from bokeh.models import CustomJS

    if not sliders:
        return
    shape = [len(s.categories) for s in sliders]
    strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
    cb = CustomJS(args={**args, "sliders": sliders, "strides": strides, "frame_of": table},
                  code=_SELECT + apply)
    for s in sliders:
        s.js_on_change("value", cb)

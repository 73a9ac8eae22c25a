"""Views: holoviews pictures of a store, assembled into a browsable page.

``dynlearn browse STORE --html page.html`` writes one standalone HTML file (bokeh's JS and every stylesheet
inlined: it makes no request to a network) holding, in order: the claims of a reproduction, the reproduction's own
figures, the training curves (loss and gradient norm per seed, a slider per swept hyper-parameter, final loss vs
each hyper-parameter), and the views every analyzer group provides (``Analyzer.views``). Each view's sliders move
that view only, in the browser (:mod:`dynlearn.page`). ``--serve`` serves the same page live with panel, built
anew for every browser session.

    >>> import dynlearn, holoviews as hv
    >>> run = dynlearn.train(dynlearn.get_system("saddle_node")(), epochs=50, seeds=2, sweep={"lr": [1e-10, 2e-10]})
    >>> sorted(train_views(run.tree))
    ['final loss', 'gradient norm', 'loss']
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .page_sliders import ensure_bokeh
from .page_sweep import CurveSweep

__all__ = ["decimate", "train_views", "store_views", "page", "write_html", "serve"]

MAX_POINTS = 1000


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Min/max decimation to about ``max_points`` points, keeping spikes and abrupt drops visible."""
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    idx = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        seg = y[lo:hi]
        if not len(seg) or not np.isfinite(seg).any():
            idx.append(lo)
            continue
        a, b = lo + int(np.nanargmin(seg)), lo + int(np.nanargmax(seg))
        idx.extend(sorted({a, b}))
    idx = np.asarray(idx)
    return x[idx], y[idx]


_hv = ensure_bokeh


def _label(da: xr.DataArray) -> str:
    name = da.attrs.get("long_name", da.name or "")
    units = da.attrs.get("units", "")
    return f"{name} [{units}]" if units and units != "1" else str(name)


def _curves_by_hyper(var: xr.DataArray, title: str) -> CurveSweep:
    """The per-seed curves of ``var`` along ``epoch`` at every point of its hyper-parameter dims (one slider each)."""
    hyper_dims = [d for d in var.dims if d not in ("epoch", "seed")]
    if "seed" not in var.dims:
        var = var.expand_dims(seed=[None])
    y = var.transpose(*hyper_dims, "seed", "epoch").values.astype(float)
    seeds = var["seed"].values
    return CurveSweep(
        x=var["epoch"].values, y=y, dims=[(d, _label(var[d]) or d, var[d].values) for d in hyper_dims],
        series=[f"seed {s}" if s is not None else "" for s in seeds], xdim=("epoch", "epoch"),
        ydim=(str(var.name), _label(var)), title=title)


def train_views(tree: xr.DataTree) -> dict[str, Any]:
    """Loss and gradient-norm curves (slider per hyper-parameter, one curve per seed); final loss vs hyper."""
    hv = _hv()
    train = tree["train"].to_dataset()
    out: dict[str, Any] = {}
    out["loss"] = _curves_by_hyper(train["loss"].load(), "training loss")
    out["gradient norm"] = _curves_by_hyper(train["grad_norm"].load(), "gradient norm")
    last = train["loss"].isel(epoch=-1).load()
    hyper_dims = [d for d in last.dims if d != "seed"]
    panels = []
    for d in hyper_dims:
        other = [o for o in hyper_dims if o != d]
        red = last.mean(other) if other else last
        mean = red.mean("seed") if "seed" in red.dims else red
        n = red.sizes.get("seed", 1)
        sem = red.std("seed", ddof=1) / np.sqrt(n) if n > 1 else xr.zeros_like(mean)
        x = red[d].values
        logx = bool(np.all(x > 0) and x.max() / x.min() > 50)
        kd = hv.Dimension(d, label=_label(train[d]) or d)
        vd = hv.Dimension("final_loss", label="final loss (mean ± s.e.m. over seeds)")
        curve = hv.Curve((x, mean.values), kd, vd)
        err = hv.ErrorBars((x, mean.values, sem.values), kd, [vd, "sem"])
        panels.append((curve.opts(logx=logx) * err.opts(logx=logx)).opts(title=f"final loss vs {d}", width=700,
                                                                         height=300))
    if panels:
        out["final loss"] = panels[0] if len(panels) == 1 else hv.Layout(panels).cols(1)
    return out


def claims_view(ds: xr.Dataset):
    """The claims table (an HTML table: full text, PASS/FAIL first)."""
    from .page import claims_table

    cols = {
        "": np.where(ds["passed"].values, "PASS", "FAIL"), "claim": ds["claim"].values,
        "expected": [f"{v:.6g}" for v in ds["expected"].values],
        "measured": [f"{v:.6g}" for v in ds["measured"].values],
        "criterion": ds["tolerance"].values, "statement": ds["description"].values,
    }
    return claims_table([{k: str(v[i]) for k, v in cols.items()} for i in range(ds.sizes["claim"])])


def store_views(tree: xr.DataTree) -> dict[str, Any]:
    """Every view a store offers, in page order: claims, reproduction figures, training, analyzers."""
    from .registry import get

    views: dict[str, Any] = {}
    if "claims" in tree.children:
        views["claims"] = claims_view(tree["claims"].to_dataset())
        rep_name = tree["claims"].attrs.get("reproduction")
        if rep_name:
            rep = get("reproductions", rep_name)(quick=json.loads(tree["claims"].attrs.get("quick", "false")))
            for k, v in rep.views(tree).items():
                views[f"{rep_name}: {k}"] = v
    if "train" in tree.children:
        for k, v in train_views(tree).items():
            views[f"train: {k}"] = v
    for name, node in tree.children.items():
        an_name = node.attrs.get("dynlearn_analyzer")
        if not an_name:
            continue
        from .plugins import make_analyzer

        cfg = json.loads(node.attrs.get("analyzer_config", "{}")) or {"name": an_name}
        # array options (user states) are recorded by their digest only: the views do not need them
        arrays = {k for k, d in get("analyzers", an_name).declared_options().items() if d.kind == "array"}
        an = make_analyzer({k: v for k, v in cfg.items() if k not in arrays})
        for k, v in an.views(node.to_dataset().load()).items():
            views[f"{name}: {k}"] = v
    return views


def page(tree: xr.DataTree, title: str = "dynlearn", meter: Any = None):
    """The page as one bokeh column of titled views (:func:`dynlearn.page.layout`).

    Parameters
    ----------
    tree : xarray.DataTree
        The store.
    title : str
        The page's heading.
    meter : dynlearn.progress.Meter, optional
        Progress, one step per view.

    Returns
    -------
    bokeh.models.Column
    """
    from .page import layout

    _hv()
    return layout(store_views(tree), title, meter)


def store_title(store: str | os.PathLike) -> str:
    """The title of ``store``'s page, the same for the HTML file and ``--serve``.

    Parameters
    ----------
    store : str or os.PathLike
        The store's path.

    Returns
    -------
    str
        ``dynlearn — NAME`` (:func:`dynlearn.page.page_title`).
    """
    from .page import page_title
    from .store import root_attrs

    return page_title(root_attrs(store).get("config", {}).get("name"), store)


def write_html(store: str | os.PathLike, html: str | os.PathLike, *, replace: bool = True) -> Path:
    """Write the standalone page of ``store`` (JS and CSS inlined: it makes no request to a network) to ``html``.

    ``html`` must be a file name (:func:`dynlearn.safety.check_page_target`): a directory, a symlink or a file
    dynlearn did not write is refused; an earlier dynlearn page is replaced only with ``replace``. The page is
    written to a scratch file and renamed into place. Progress (``writing page``, one step per view) goes to
    stderr when meters are on.
    """
    from . import page as _page
    from .progress import Meter
    from .safety import PAGE_MARKER, check_page_target, write_text_atomic
    from .store import open_store

    out = check_page_target(html, replace=replace)
    title = store_title(store)
    _hv()
    views = store_views(open_store(store))
    with Meter(len(views) + 1, f"writing page {out.name}", unit="view") as meter:
        text = _page.html(_page.layout(views, title, meter), title)
        meter.set(view="(html)")
        meter.update()
    text = text.replace("<head>", f"<head>\n{PAGE_MARKER}", 1)
    return write_text_atomic(out, text)


def serve(store: str | os.PathLike, port: int = 5006, show: bool = False,
          host: str = "127.0.0.1") -> None:  # pragma: no cover - interactive
    """Serve the page of ``store`` live (panel server), listening on ``host`` (this machine only by default).

    Every browser session gets a page built for it (the same page and title as :func:`write_html`'s).
    """
    import panel as pn

    from .store import open_store

    origin = "*" if host in ("0.0.0.0", "::") else [f"localhost:{port}", f"{host}:{port}"]
    title = store_title(store)

    def session():  # a page of its own per browser session: sliders and data are not shared
        return pn.pane.Bokeh(page(open_store(store), title))

    pn.serve(session, port=port, address=host, show=show, websocket_origin=origin, title=title)

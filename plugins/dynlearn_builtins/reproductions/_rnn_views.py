"""holoviews figures of the RNN reproductions (built only; ``dynlearn browse`` renders them with bokeh)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from dynlearn.views import decimate

__all__ = ["reproduction_views", "latent_flow_view", "curves_view"]


def _group(tree: xr.DataTree, name: str) -> xr.Dataset | None:
    return tree[name].to_dataset() if name in tree.children else None


def latent_flow_view(flow: xr.Dataset, select: dict[str, Any] | None = None, max_seeds: int = 3):
    """HoloMap over ``epoch`` of the latent flow ``f(kappa)`` of the first seeds (one curve each) at one value of
    every other sweep dim (``select``; default the first), with ``f = 0`` (dashed) and ``kappa* = 1`` (dotted)."""
    import holoviews as hv

    f = flow["f"]
    other = {d: f[d].values[0] for d in f.dims if d not in ("kappa", "seed", "epoch")}
    other.update(select or {})
    f = f.sel(other).transpose("epoch", "seed", "kappa")
    vals = np.asarray(f.values)[:, :max_seeds]
    seeds = f["seed"].values[:max_seeds]
    kappa = f["kappa"].values
    kd = hv.Dimension("kappa", label="latent κ")
    vd = hv.Dimension("f", label="f(κ) = τ dκ/dt")
    guides = hv.HLine(0).opts(color="black", line_dash="dashed") * hv.VLine(1.0).opts(color="orange",
                                                                                       line_dash="dotted")
    frames = {int(e): hv.Overlay([hv.Curve((kappa, vals[i, j]), kd, vd, label=f"seed {s}")
                                  for j, s in enumerate(seeds)]) * guides for i, e in enumerate(f["epoch"].values)}
    where = ", ".join(f"{k} = {v:g}" for k, v in other.items())
    return hv.HoloMap(frames, kdims=["epoch"]).opts(
        title=f"latent flow f(κ){' at ' + where if where else ''} (dashed: f = 0; dotted: κ* = 1)", width=650,
        height=320, legend_position="top_right")


def curves_view(var: xr.DataArray, title: str, logy: bool = False, max_seeds: int = 10):
    """HoloMap over the non-(epoch, seed) dims; one decimated curve per seed."""
    import holoviews as hv

    other = [d for d in var.dims if d not in ("epoch", "seed")]
    epochs = var["epoch"].values

    def frame(*key):
        sel = var.sel(dict(zip(other, key))) if other else var
        curves = []
        for s in sel["seed"].values[:max_seeds]:
            y = sel.sel(seed=s).values.astype(float)
            if logy:
                y = np.where(y > 0, y, np.nan)
            xs, ys = decimate(epochs, y)
            curves.append(hv.Curve((xs, ys), "epoch", hv.Dimension(str(var.name), label=var.attrs.get("long_name",
                                                                                                      var.name)),
                                   label=f"seed {s}"))
        return hv.Overlay(curves).opts(title=title, width=700, height=300, logy=logy, show_legend=False)

    if not other:
        return frame()
    keys = [tuple(k) for k in np.array(np.meshgrid(*[var[d].values for d in other], indexing="ij")).reshape(
        len(other), -1).T]
    return hv.HoloMap({k: frame(*k) for k in keys}, kdims=other)


def _s1(tree: xr.DataTree) -> dict[str, Any]:
    import holoviews as hv

    out: dict[str, Any] = {}
    s = _group(tree, "summary")
    if s is not None:
        lr = s["lr"].values
        mean, sem = s["mean_final_loss"].values, s["sem_final_loss"].values
        fig = (hv.Curve((lr, mean), "lr", "final loss") * hv.ErrorBars((lr, mean, sem), "lr", ["final loss", "sem"])
               * hv.Scatter((np.repeat(lr, s.sizes["seed"]), s["final_loss"].transpose("lr", "seed").values.ravel()),
                            "lr", "final loss").opts(alpha=0.4, size=4))
        out["final loss vs learning rate"] = fig.opts(logx=True, width=700, height=320,
                                                      title="Fig. S1 — final loss vs lr (mean ± s.e.m.; dots: seeds)")
        zone = hv.Curve((lr, s["fraction_in_zone"].values), "lr", "fraction") * hv.Curve(
            (lr, s["fraction_learned"].values), "lr", "fraction")
        out["no-learning zone vs learning rate"] = zone.opts(
            logx=True, width=700, height=260, title="fraction ending in the no-learning zone / that learned")
    return out


def _fig4(tree: xr.DataTree) -> dict[str, Any]:
    import holoviews as hv

    out: dict[str, Any] = {}
    s = _group(tree, "summary")
    if s is not None:
        after = int(s.attrs.get("after", 0))
        ep = s["epoch"].values
        panels = []
        for c in s["c_low"].values:
            m = s["mean_accuracy_stuck"].sel(c_low=c).values
            e = s["sem_accuracy_stuck"].sel(c_low=c).values
            xs, ys = decimate(ep, m)
            idx = np.searchsorted(ep, xs)
            panels.append(hv.Spread((xs, ys, e[idx]), "epoch", ["accuracy", "sem"], label=f"c_low = {c:g}").opts(
                alpha=0.3) * hv.Curve((xs, ys), "epoch", "accuracy", label=f"c_low = {c:g}"))
        fig = hv.Overlay(panels) * hv.VLine(after).opts(color="red", line_dash="dashed")
        out["recovery of stuck networks"] = fig.opts(
            width=700, height=320, legend_position="bottom_right",
            title=f"Fig. 4 — accuracy of the networks stuck at epoch {after} (mean ± s.e.m.); c lowered at the red line")
        rows = []
        ctrl = s.sel(c_low=s["c_low"].values.max())
        for key in ("left_plateau", "learned", "stuck", "progress_then_stuck", "learned_then_stuck", "in_zone"):
            rows.append((key, int(ctrl[f"n_{key}"]), float(ctrl[f"n_{key}_low"]), float(ctrl[f"n_{key}_high"])))
        out["counts"] = hv.Table(rows, ["quantity"], ["count", "95% low", "95% high"]).opts(
            width=600, height=160, title=f"phase 1 ({after} epochs), {int(s.attrs.get('n_networks', 0))} networks "
                                         "(paper: 74 learned, 54 stuck)")
    if "train" in tree.children and s is not None:
        gn = tree["train"]["grad_norm"].load()
        lts = s["progress_then_stuck"].sel(c_low=s["c_low"].values.max())
        seeds = gn["seed"].values[lts.values]
        if len(seeds):
            out["gradient norm of learned-then-stuck networks"] = curves_view(
                gn.sel(seed=seeds), "gradient norm of the networks that learned and then got stuck", logy=True)
    return out


def _s2(tree: xr.DataTree) -> dict[str, Any]:
    import holoviews as hv

    out: dict[str, Any] = {}
    s = _group(tree, "summary")
    if s is not None:
        rank = s["rank"].values
        learn = [hv.Curve((rank, s["median_epochs_to_learn"].sel(lr=lr).values), "rank", "epochs to learn",
                          label=f"lr = {lr:g}") for lr in s["lr"].values]
        out["epochs to learn vs rank"] = hv.Overlay(learn).opts(logx=True, width=700, height=300,
                                                                title="Fig. S2 — median epochs to learn vs trainable rank")
        stuck = [hv.Curve((rank, s["fraction_stuck"].sel(lr=lr).values), "rank", "fraction stuck",
                          label=f"lr = {lr:g}") for lr in s["lr"].values]
        out["fraction stuck vs rank"] = hv.Overlay(stuck).opts(logx=True, width=700, height=300,
                                                               title="fraction of networks stuck at the end vs rank")
    return out


def reproduction_views(name: str, tree: xr.DataTree) -> dict[str, Any]:
    import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend's options; renders nothing)

    views = {"rnn-s1": _s1, "rnn-fig4": _fig4, "rnn-s2": _s2}[name](tree)
    flow = _group(tree, "latent_flow")
    if flow is not None:
        select = {}
        summ = _group(tree, "summary")
        if name == "rnn-s1" and summ is not None:  # where learning happens: the lowest mean final loss
            select["lr"] = float(summ["lr"].values[int(np.nanargmin(summ["mean_final_loss"].values))])
        if name == "rnn-fig4" and "c_low" in flow.dims:
            select["c_low"] = float(flow["c_low"].values.min())
        views["latent flow"] = latent_flow_view(flow.load(), select)
    return views

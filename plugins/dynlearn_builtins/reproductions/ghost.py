"""``dynlearn reproduce ghost``: the ghost-mechanism paper's Fig. 2 as labeled data, with its claims checked.

Groups written next to the training run (``/train``, ``/params``):

- ``/landscape``: loss landscape ``L(r)`` — analytic limit vs the numeric model (T=100, Δt=0.1, x*=10, c in
  {1, 10}), and their gradients (closed form / autograd through torchdiffeq);
- ``/lr_summary``: per network and per learning rate — learned at some point, stuck in the no-learning zone,
  epoch of the abrupt drop, minimum of r over training, final loss — plus the critical learning rate bracketed
  from data next to ``alpha* = 3 pi^4 / 32 T^-5``;
- ``/claims``: the paper's statements, expected vs measured.

Definitions (per network): *learned* = the loss fell below ``T/10`` at some epoch; *stuck* = it ends with
``L = T`` and a zero gradient (past the point of no return ``r*/4``); *drop epoch* = first epoch with
``L < T/2``; *final loss* = mean loss over the last 10% of epochs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynlearn.reproduce import Claim, Reproduction
from dynlearn_datasets.packaged import packaged_experiment
from dynlearn.store import open_store, root_attrs, write_group
from dynlearn.api import run_experiment
from dynlearn.views import decimate

from ..systems.saddle_node import SaddleNode, analytic_grad, analytic_loss, critical_lr, r_star

__all__ = ["Ghost", "loss_landscape", "learning_summary"]

QUICK = {
    "train": {"epochs": 4000, "seeds": 4, "chunk": 1000},
    "sweep": {"lr": [1e-10, 3e-10, 6e-10, 8e-10, 1.1e-9, 1.5e-9, 2e-9]},
}


def loss_landscape(T: float = 100.0, dt: float = 0.1, x_star: float = 10.0, c=(1.0, 10.0), n: int = 401) -> xr.Dataset:
    """Analytic vs numeric loss (and gradient) over ``r`` in ``[-r*, 4 r*]``, numeric for each confidence ``c``.

    All ``r`` and ``c`` values are integrated as one batch (one torchdiffeq call).
    """
    rs = r_star(T)
    r = np.concatenate([np.linspace(-rs, 0.0, 20, endpoint=False), np.linspace(0.0, 4 * rs, n)])
    c = np.asarray(c, dtype=float)
    sn = SaddleNode(form="numeric", task={"T": T, "dt": dt})
    rr = torch.tensor(np.repeat(r[None, :], len(c), 0).ravel(), dtype=torch.float64)
    cc = torch.tensor(np.repeat(c[:, None], len(r), 1).ravel(), dtype=torch.float64)
    xs = torch.full_like(rr, x_star)
    hp = {"lr": torch.ones_like(rr), "c": cc, "x_star": xs}
    loss_num, grads = sn.loss_and_grad({"r": rr}, hp)
    rt = torch.tensor(r, dtype=torch.float64)
    ds = xr.Dataset(
        {
            "analytic_loss": ("r", analytic_loss(rt, T).numpy(), {"long_name": "analytic loss (c, x* -> inf)", "units": "time"}),
            "analytic_grad": ("r", analytic_grad(rt, T).numpy(), {"long_name": "analytic dL/dr", "units": "time^3"}),
            "numeric_loss": (("c", "r"), loss_num.reshape(len(c), len(r)).numpy(),
                             {"long_name": f"numeric loss (x*={x_star:g}, dt={dt:g}, rk4)", "units": "time"}),
            "numeric_grad": (("c", "r"), grads["r"].reshape(len(c), len(r)).numpy(),
                             {"long_name": "numeric dL/dr (autograd through torchdiffeq)", "units": "time^3"}),
        },
        coords={
            "r": ("r", r, {"long_name": "saddle-node parameter r", "units": "1/time^2"}),
            "c": ("c", c, {"long_name": "output confidence c"}),
            "r_over_rstar": ("r", r / rs, {"long_name": "r / r*"}),
        },
        attrs={"T": T, "dt": dt, "x_star": x_star, "r_star": rs},
    )
    return ds


def learning_summary(tree: xr.DataTree, T: float) -> xr.Dataset:
    """Per-network learning statistics of a ghost training run, and the critical learning rate from data."""
    train = tree["train"].to_dataset().load()
    r = tree["params"]["r"].load()
    loss = train["loss"]
    E = loss.sizes["epoch"]
    learned = (loss < T / 10).any("epoch")
    stuck = (loss.isel(epoch=-1) >= T * (1 - 1e-12)) & (train["grad_norm"].isel(epoch=-1) == 0)
    below = loss < T / 2
    drop = xr.where(below.any("epoch"), below.argmax("epoch"), -1)
    final = loss.isel(epoch=slice(E - max(1, E // 10), None)).mean("epoch")
    rmin = r.min("epoch")
    lr = train["lr"].values
    any_stuck = stuck.any("seed").values
    none_stuck = ~any_stuck
    lo = float(lr[none_stuck].max()) if none_stuck.any() else float("nan")
    above_lo = lr > lo
    hi = float(lr[above_lo & any_stuck].min()) if (above_lo & any_stuck).any() else float("nan")
    ds = xr.Dataset(
        {
            "learned": (learned.dims, learned.values, {"long_name": "loss fell below T/10 at some epoch"}),
            "stuck": (stuck.dims, stuck.values, {"long_name": "ends in the no-learning zone (L = T, zero gradient)"}),
            "drop_epoch": (drop.dims, drop.values.astype(np.int64),
                           {"long_name": "first epoch with L < T/2 (-1: never)", "units": "epoch"}),
            "final_loss": (final.dims, final.values, {"long_name": "mean loss over the last 10% of epochs", "units": "time"}),
            "r_min": (rmin.dims, rmin.values, {"long_name": "minimum of r over training", "units": "1/time^2"}),
            "fraction_stuck": ("lr", stuck.mean("seed").values, {"long_name": "fraction of seeds stuck"}),
            "fraction_learned": ("lr", learned.mean("seed").values, {"long_name": "fraction of seeds that learned"}),
            "alpha_star_formula": ((), critical_lr(T), {"long_name": "critical learning rate 3 pi^4/32 T^-5"}),
            "alpha_star_low": ((), lo, {"long_name": "largest swept learning rate with no network stuck"}),
            "alpha_star_high": ((), hi, {"long_name": "smallest larger learning rate with a network stuck"}),
        },
        coords={"seed": train["seed"], "lr": train["lr"]},
    )
    return ds


class Ghost(Reproduction):
    """Fig. 2 of the ghost-mechanism paper (saddle-node toy model): landscape, GD sweep, critical learning rate."""

    name = "ghost"
    description = "ghost-mechanism paper Fig. 2: saddle-node loss landscape, GD over learning rates, critical lr"
    paper = "Dinc, Cirakman, Jiang, Yuksekgonul, Schnitzer, Tanaka: A ghost mechanism: an analytical model of abrupt learning"

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        exp = packaged_experiment("ghost", QUICK if self.quick else None)
        run_experiment(exp, out, overwrite=overwrite, show_progress=show_progress)
        tree = open_store(out)
        T = float(exp.config["task"]["T"])
        land = loss_landscape(T=T, dt=float(exp.config["task"]["dt"]))
        summ = learning_summary(tree, T)
        write_group(out, "landscape", land, consolidated=False)
        write_group(out, "lr_summary", summ)
        return self.claims(land, summ, T)

    @staticmethod
    def claims(land: xr.Dataset, summ: xr.Dataset, T: float) -> list[Claim]:
        a_star = critical_lr(T)
        lr = summ["lr"].values
        lo, hi = float(summ["alpha_star_low"]), float(summ["alpha_star_high"])
        below, above = lr < a_star, lr > a_star
        learned_below = float(summ["learned"].values[:, below].mean()) if below.any() else float("nan")
        stuck_below = float(summ["stuck"].values[:, below].mean()) if below.any() else float("nan")
        stuck_above = float(summ["stuck"].values[:, above].mean()) if above.any() else float("nan")
        far = lr >= 1.2 * a_star
        stuck_far = float(summ["stuck"].values[:, far].mean()) if far.any() else float("nan")
        claims = [
            Claim("alpha_star_bracket", "critical learning rate bracketed by the sweep (largest lr never stuck, "
                  "smallest lr with a stuck network) contains 3 pi^4/32 T^-5", a_star,
                  math.sqrt(lo * hi) if lo > 0 and hi > 0 else float("nan"), bool(lo < a_star < hi),
                  f"{lo:.3g} < alpha* < {hi:.3g}", "1/time^5"),
            Claim("no_stuck_below_alpha_star", "no network trained with lr < alpha* enters the no-learning zone",
                  0.0, stuck_below, stuck_below == 0.0, "fraction == 0"),
            Claim("learned_below_alpha_star", "every network with lr < alpha* learns (L < T/10 at some epoch)",
                  1.0, learned_below, learned_below == 1.0, "fraction == 1"),
            Claim("stuck_above_alpha_star", "networks with lr > alpha* end stuck at L = T (eventually: >= 90% "
                  "within the epoch budget)", 1.0, stuck_above, stuck_above >= 0.9, "fraction >= 0.9"),
            Claim("stuck_well_above_alpha_star", "every network with lr >= 1.2 alpha* ends stuck at L = T", 1.0,
                  stuck_far, stuck_far == 1.0, "fraction == 1"),
        ]
        if 1e-10 in set(np.round(lr, 20)):
            drop = summ["drop_epoch"].sel(lr=1e-10)
            med = float(np.median(drop.values))
            claims.append(Claim("drop_epoch_lr_1e-10", "from r0 = 10 r*, lr = 1e-10: the loss drops abruptly "
                                "around epoch 1500 (median over seeds of the first epoch with L < T/2)",
                                1500.0, med, 1000 <= med <= 2000, "1000 <= epoch <= 2000", "epoch"))
        learn_mask = summ["learned"].values.all(0) & ~summ["stuck"].values.any(0)
        if learn_mask.any():
            rmin = float(summ["r_min"].values[:, learn_mask].min())
            claims.append(Claim("no_bifurcation", "r stays positive during learning (no saddle-node bifurcation: "
                                "the drop is a ghost) — min r / r* over learning networks", 0.0,
                                rmin / r_star(T), rmin > 0, "> 0"))
        if learn_mask.sum() >= 3:
            from scipy.stats import spearmanr

            fin = np.median(summ["final_loss"].values[:, learn_mask], axis=0)
            rho = float(spearmanr(lr[learn_mask], fin).statistic)
            claims.append(Claim("final_loss_increases_with_lr", "among learning rates that learn, lower rates reach "
                                "lower final losses (Spearman rho of final loss vs lr)", 1.0, rho, rho >= 0.9,
                                "rho >= 0.9"))
        diff = np.abs(land["numeric_loss"] - land["analytic_loss"]).max().item()
        claims.append(Claim("landscape_numeric_vs_analytic", "numeric loss (T=100, dt=0.1, x*=10, c in {1,10}) "
                            "matches the analytic landscape: max |L_num - L_an|", 0.0, diff, diff <= 0.5, "<= 0.5",
                            "time"))
        rs = land.attrs["r_star"]
        argmin = land["r"].values[np.argmin(land["numeric_loss"].values, axis=1)] / rs
        dev = float(np.abs(argmin - 1).max())
        claims.append(Claim("landscape_minimum_at_r_star", "numeric landscape minimum at r* = pi^2/(4T^2) "
                            "(max relative deviation over c)", 1.0, float(argmin[np.argmax(np.abs(argmin - 1))]),
                            dev <= 0.011, "|r_min/r* - 1| <= 1% (grid step)"))
        zone = land["r"].values < rs / 4 * 0.98
        flat = float(land["numeric_loss"].values[:, zone].min() / T)
        claims.append(Claim("no_learning_zone", "below the point of no return r*/4 the loss is flat at T "
                            "(min numeric L/T there)", 1.0, flat, flat >= 0.99, ">= 0.99"))
        return claims

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        import holoviews as hv

        out: dict[str, Any] = {}
        if "landscape" in tree.children:
            land = tree["landscape"].to_dataset()
            x = land["r_over_rstar"].values
            ov = hv.Curve((x, land["analytic_loss"].values), "r/r*", "loss", label="analytic (c, x* → ∞)").opts(
                color="black", line_width=3)
            for c in land["c"].values:
                ov = ov * hv.Scatter((x, land["numeric_loss"].sel(c=c).values), "r/r*", "loss",
                                     label=f"numeric c={c:g}").opts(size=6 if c == land["c"].values[0] else 3)
            out["loss landscape"] = ov.opts(title="Fig. 2A — loss landscape (T = 100)", width=700, height=350,
                                            legend_position="bottom_right")
        if "lr_summary" in tree.children:
            s = tree["lr_summary"].to_dataset()
            lr = s["lr"].values
            med = np.median(s["final_loss"].values, axis=0)
            sem = s["final_loss"].std("seed").values / np.sqrt(s.sizes["seed"])
            a_star = float(s["alpha_star_formula"])
            vline = hv.VLine(a_star).opts(color="red", line_dash="dashed", logx=True)
            fig = (hv.Curve((lr, med), "lr", "final loss").opts(logx=True)
                   * hv.ErrorBars((lr, med, sem), "lr", ["final loss", "sem"]).opts(logx=True) * vline)
            out["final loss vs learning rate"] = fig.opts(title="Fig. 2D — median final loss vs lr (red: α*)",
                                                          width=700, height=320)
            frac = hv.Curve((lr, s["fraction_stuck"].values), "lr", "fraction stuck").opts(logx=True) * vline
            out["fraction stuck vs learning rate"] = frac.opts(width=700, height=260,
                                                               title="networks in the no-learning zone")
        if "params" in tree.children:
            r = tree["params"]["r"]
            lrs = r["lr"].values
            pick = lrs[np.argmin(np.abs(np.log(lrs / 1e-10)))]
            T = float(root_attrs(tree)["config"]["task"]["T"])
            ep = r["epoch"].values
            curves = []
            for sd in r["seed"].values[:5]:
                xs, ys = decimate(ep, r.sel(lr=pick, seed=sd).values)
                curves.append(hv.Curve((xs, ys / r_star(T)), "epoch", "r / r*", label=f"seed {sd}"))
            out["r during training"] = hv.Overlay(curves).opts(
                title=f"Fig. 2C — r stays positive (lr = {pick:.2g}): no bifurcation", width=700, height=300)
        return out

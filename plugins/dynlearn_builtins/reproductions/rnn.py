"""``dynlearn reproduce rnn-s1 | rnn-fig4 | rnn-s2``: the ghost-mechanism paper's RNN claims as labeled data.

All three train :class:`~dynlearn_builtins.systems.rnn.LowRankRNN` networks (N = 100, tau = 10 ms, dt = 5 ms,
T = 100 ms, x(0) = -0.3, SGD) with one batched run each, then write next to ``/train`` and ``/params``:

- ``/status`` — :func:`~dynlearn_builtins.systems.rnn.learning_status`: learned / stuck per network and epoch;
- ``/summary`` — the reproduction's statistics (below);
- ``/latent_flow`` (rank-one runs) — the latent flow ``f(kappa) = -kappa + n . tanh(m kappa + b)`` at chosen
  epochs for the first seeds (Fig. 3-style pictures);
- ``/claims``.

Definitions. *Learned* (at some point): training accuracy 1 at some epoch. *Stuck*: accuracy <= 0.5 over the last
50 epochs. *No-learning zone*: stuck with a collapsed gradient, ``|grad L| <= 1e-4`` at the last epoch (at
initialisation ``|grad L| ~ 1e-3`` (0.7 - 1.2e-3) and growing slowly; while learning ``~ 1``; past a saddle-node
bifurcation ``1e-5`` or less, often exactly 0 in float32). *Final loss*: mean loss over the last 10% of epochs.
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
from dynlearn.store import open_store, write_group
from dynlearn.api import run_experiment

from ..systems.rnn import LatentCircuit, learning_status, wilson_interval

__all__ = ["LearningRateTrend", "ConfidenceRecovery", "SloppyRanks", "latent_flow", "final_loss",
           "ZONE_GRAD"]

#: gradient norm at or below which a stuck network is in the no-learning zone
ZONE_GRAD = 1e-4

PAPER = "Dinc, Cirakman, Jiang, Yuksekgonul, Schnitzer, Tanaka: A ghost mechanism: an analytical model of abrupt learning"

QUICK_S1 = {
    "train": {"epochs": 5000, "seeds": 6, "chunk": 1000},
    "sweep": {"lr": [0.001, 0.02, 0.3]},
}
QUICK_FIG4 = {
    "train": {"epochs": 3500, "seeds": 24, "chunk": 500, "schedule": {"after": 3000}},
}
QUICK_S2 = {
    "system": {"max_rank": 8},
    "train": {"epochs": 1000, "seeds": 3, "chunk": 500},
    "sweep": {"lr": [0.03], "rank": [1, 8]},
}


def final_loss(train: xr.Dataset, fraction: float = 0.1) -> xr.DataArray:
    """Mean training loss over the last ``fraction`` of the epochs, per network."""
    E = train.sizes["epoch"]
    out = train["loss"].isel(epoch=slice(E - max(1, int(E * fraction)), None)).mean("epoch")
    return out.assign_attrs(long_name=f"mean training loss over the last {fraction:.0%} of epochs", units="1")


def latent_flow(tree: xr.DataTree, *, n_epochs: int = 13, n_seeds: int = 3, n_kappa: int = 301) -> xr.Dataset:
    """``f(kappa) = -kappa + n . tanh(m kappa + b)`` (``tau dkappa/dt``) of rank-one runs at ``n_epochs``
    checkpoints spread over training, for the first ``n_seeds`` seeds and every swept hyper-parameter."""
    params = tree["params"].to_dataset()
    ep = params["epoch"].values
    pick = np.unique(np.round(np.linspace(0, len(ep) - 1, n_epochs)).astype(int))
    sel = params[["m", "n", "b"]].isel(epoch=pick, seed=slice(0, n_seeds)).load()
    system = LatentCircuit(n_neurons=sel.sizes["neuron"], rank=1, form="flow")
    from dynlearn.sweep import flatten

    batch = flatten(system, sel, on_nan="mask")
    kappa = torch.linspace(-15.0, 15.0, n_kappa, dtype=torch.float64)
    p = system.expand_params(batch.params)
    with torch.no_grad():
        f = system.rhs(kappa[None, :, None].expand(batch.size, n_kappa, 1), p)[..., 0] * system.tau
    f = torch.where(batch.valid[:, None], f, torch.full_like(f, math.nan))
    da = batch.to_xarray(f, ("kappa",), name="f", coords={"kappa": ("kappa", kappa.numpy(),
                                                                     {"long_name": "latent variable kappa"})},
                         attrs={"long_name": "latent flow f(kappa) = tau dkappa/dt = -kappa + n.tanh(m kappa + b)",
                                "units": "1"})
    return da.to_dataset()


def _sign_changes(f: np.ndarray) -> np.ndarray:
    s = np.sign(f)
    return (s[..., 1:] * s[..., :-1] < 0).sum(-1)


class _RNNReproduction(Reproduction):
    paper = PAPER
    experiment = ""
    quick_overrides: dict[str, Any] = {}

    #: store the latent flow at a few epochs (the browse page's latent-circuit view)
    store_latent_flow = True

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        """Train (or resume) the experiment, then store /status, /latent_flow and /summary and check the claims."""
        exp = packaged_experiment(self.experiment, self.quick_overrides if self.quick else None)
        run_experiment(exp, out, overwrite=overwrite, show_progress=show_progress)
        tree = open_store(out)
        train = tree["train"].to_dataset().load()
        status = learning_status(train)
        summ = self._summarize(train, status, exp.config)
        write_group(out, "status", status, consolidated=False)
        if self.store_latent_flow:
            write_group(out, "latent_flow", latent_flow(tree), consolidated=False)
        write_group(out, "summary", summ)
        return self._claims(summ)

    def _summarize(self, train: xr.Dataset, status: xr.Dataset, config: dict) -> xr.Dataset:
        return self.summary(train, status)

    def _claims(self, summ: xr.Dataset) -> list[Claim]:
        return self.claims(summ, full=not self.quick)

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        from ._rnn_views import reproduction_views

        return reproduction_views(self.name, tree)


class LearningRateTrend(_RNNReproduction):
    """Fig. S1: final loss vs learning rate for rank-one RNNs — the toy model's trend (Fig. 2D)."""

    name = "rnn-s1"
    description = "ghost paper Fig. S1: rank-one RNNs, final loss vs learning rate (too slow / optimum / fails)"
    experiment = "rnn-s1"
    quick_overrides = QUICK_S1

    def _claims(self, summ: xr.Dataset) -> list[Claim]:
        return self.claims(summ)

    @staticmethod
    def summary(train: xr.Dataset, status: xr.Dataset) -> xr.Dataset:
        fin = final_loss(train)
        gn = train["grad_norm"].isel(epoch=-1, drop=True)
        zone = status["stuck_at_end"] & (gn <= ZONE_GRAD)
        n = train.sizes["seed"]
        ds = xr.Dataset({
            "final_loss": fin,
            "median_final_loss": fin.median("seed").assign_attrs(long_name="median final loss over seeds", units="1"),
            "mean_final_loss": fin.mean("seed").assign_attrs(long_name="mean final loss over seeds", units="1"),
            "sem_final_loss": (fin.std("seed", ddof=1) / np.sqrt(n)).assign_attrs(
                long_name="standard error of the mean final loss", units="1"),
            "initial_loss": train["loss"].isel(epoch=0, drop=True).median("seed").assign_attrs(
                long_name="median loss at epoch 0", units="1"),
            "in_zone": zone.assign_attrs(long_name=f"ends in the no-learning zone (stuck, |grad L| <= {ZONE_GRAD:g})"),
            "fraction_in_zone": zone.mean("seed").assign_attrs(long_name="fraction of seeds in the no-learning zone",
                                                               units="1"),
            "fraction_learned": status["learned_ever"].mean("seed").assign_attrs(
                long_name="fraction of seeds that learned at some epoch", units="1"),
        })
        return ds

    @staticmethod
    def claims(summ: xr.Dataset) -> list[Claim]:
        from scipy.stats import spearmanr

        lr = summ["lr"].values
        med = summ["median_final_loss"].values
        mean = summ["mean_final_loss"].values
        init = float(summ["initial_loss"].values.max())
        best = int(np.argmin(mean))
        claims = [
            Claim("too_slow_at_small_lr", "at the smallest learning rate training is too slow: the median final loss "
                  "is still the loss of the initial network (ratio final / initial)", 1.0,
                  float(med[0]) / init, med[0] >= 0.9 * init, ">= 0.9"),
            Claim("optimum_inside_the_sweep", "lower learning rates reach lower final losses until they get too "
                  "slow: the lowest mean final loss is at an interior learning rate", float("nan"), float(lr[best]),
                  0 < best < len(lr) - 1, "argmin not at either end of the sweep", "1"),
            Claim("fails_above_critical_lr", "above a critical learning rate learning fails: every network at the "
                  "largest learning rate ends in the no-learning zone (stuck, zero gradient)", 1.0,
                  float(summ["fraction_in_zone"].values[-1]), float(summ["fraction_in_zone"].values[-1]) == 1.0,
                  "fraction == 1"),
            Claim("no_zone_at_small_lr", "at the smallest learning rate no network enters the no-learning zone",
                  0.0, float(summ["fraction_in_zone"].values[0]), float(summ["fraction_in_zone"].values[0]) == 0.0,
                  "fraction == 0"),
        ]
        above = np.arange(len(lr)) >= best
        if above.sum() >= 3:
            sem = np.nan_to_num(summ["sem_final_loss"].values)
            steps = np.diff(mean[above])
            worst = float((steps + 2 * (sem[above][1:] + sem[above][:-1])).min())
            rho = float(spearmanr(lr[above], mean[above]).statistic)
            claims.append(Claim("final_loss_rises_above_optimum", "above the optimal learning rate the final loss "
                                "never decreases with the learning rate (smallest step of the mean final loss, plus "
                                f"2 s.e.m.; Spearman rho {rho:.2f} with ties at the constant-output loss)", 0.0, worst,
                                worst >= 0, ">= 0"))
            zone = summ["fraction_in_zone"].values
            full = np.flatnonzero(zone >= 1.0)
            if len(full):
                crit = int(full[0])
                ok = bool(np.all(zone[crit:] >= 1.0) and crit > best)
                lo_lr = float(lr[crit - 1]) if crit > 0 else float("nan")
                claims.append(Claim("critical_lr", "a critical learning rate: from it on every network ends in the "
                                    f"no-learning zone, below it some do not (bracket [{lo_lr:.3g}, {lr[crit]:.3g}])",
                                    float("nan"), float(lr[crit]), ok, "zone fraction 1 for every lr from the "
                                    "bracket on, < 1 below"))
        return claims


class ConfidenceRecovery(_RNNReproduction):
    """Fig. 4: learned / stuck counts of 100 rank-one RNNs; recovery once the confidence is lowered."""

    name = "rnn-fig4"
    description = "ghost paper Fig. 4: 100 RNNs (c=10, lr=0.02) learned / stuck, recovery after lowering c"
    experiment = "rnn-fig4"
    quick_overrides = QUICK_FIG4

    def _summarize(self, train: xr.Dataset, status: xr.Dataset, config: dict) -> xr.Dataset:
        return self.summary(train, int(config["train"]["schedule"]["after"]))

    @staticmethod
    def summary(train: xr.Dataset, after: int) -> xr.Dataset:
        """Phase 1 (epochs < after) counts with Wilson intervals, and phase 2 recovery per ``c_low``."""
        p1 = learning_status(train, epochs=slice(0, after))
        p2 = learning_status(train.isel(epoch=slice(after, None)))
        n = train.sizes["seed"]
        gn = train["grad_norm"].isel(epoch=after - 1, drop=True)
        stuck = p1["stuck_at_end"]
        progress = p1["left_plateau"] & stuck
        zone = stuck & (gn <= ZONE_GRAD)
        rec = p2["learned_ever"]
        ds = xr.Dataset({
            "learned_phase1": p1["learned_ever"].assign_attrs(long_name=f"accuracy 1 at some epoch < {after}"),
            "left_plateau_phase1": p1["left_plateau"].assign_attrs(
                long_name=f"accuracy > 0.5 at some epoch < {after} (left the constant-output plateau)"),
            "stuck_phase1": stuck.assign_attrs(long_name=f"accuracy <= 0.5 over epochs {after - 50} .. {after - 1}"),
            "learned_then_stuck": p1["learned_then_stuck"].assign_attrs(
                long_name=f"accuracy 1 at some epoch, then stuck at epoch {after - 1}"),
            "progress_then_stuck": progress.assign_attrs(
                long_name=f"left the plateau at some epoch, then stuck at epoch {after - 1}"),
            "in_zone_phase1": zone.assign_attrs(long_name=f"stuck with |grad L| <= {ZONE_GRAD:g} at epoch {after - 1} "
                                                          "(no-learning zone)"),
            "grad_norm_phase1_end": gn.assign_attrs(long_name=f"gradient norm at epoch {after - 1}", units="1"),
            "recovered": (stuck & rec).assign_attrs(long_name=f"stuck at epoch {after - 1}, accuracy 1 at some epoch "
                                                              f">= {after}"),
            "recovery_epochs": xr.where(stuck & rec, p2["first_learned_epoch"] - after, -1).assign_attrs(
                long_name="epochs from the end of phase 1 to accuracy 1 (-1: never)", units="epoch"),
        })
        for key, var in (("learned", "learned_phase1"), ("left_plateau", "left_plateau_phase1"),
                         ("stuck", "stuck_phase1"), ("learned_then_stuck", "learned_then_stuck"),
                         ("progress_then_stuck", "progress_then_stuck"), ("in_zone", "in_zone_phase1")):
            k = ds[var].sum("seed")
            lo, hi = wilson_interval(k.values, n)
            ds[f"n_{key}"] = k.assign_attrs(long_name=f"networks: {ds[var].attrs['long_name']}", units="1")
            ds[f"n_{key}_low"] = (k.dims, np.asarray(lo) * n, {"long_name": f"Wilson 95% lower bound of n_{key}",
                                                                "units": "1"})
            ds[f"n_{key}_high"] = (k.dims, np.asarray(hi) * n, {"long_name": f"Wilson 95% upper bound of n_{key}",
                                                                 "units": "1"})
        for key, mask in (("stuck", stuck), ("progress_then_stuck", progress)):
            den = mask.sum("seed")
            ds[f"recovered_fraction_{key}"] = ((rec & mask).sum("seed") / den.where(den > 0)).assign_attrs(
                long_name=f"fraction of the {key.replace('_', ' ')} networks reaching accuracy 1 after epoch {after}",
                units="1")
        acc = train["accuracy"]
        ds["mean_accuracy_stuck"] = acc.where(stuck).mean("seed").assign_attrs(
            long_name=f"training accuracy averaged over the networks stuck at epoch {after - 1}", units="1")
        ds["sem_accuracy_stuck"] = (acc.where(stuck).std("seed", ddof=1) / np.sqrt(stuck.sum("seed"))).assign_attrs(
            long_name="standard error of that mean", units="1")
        ds["mean_loss_stuck"] = train["loss"].where(stuck).mean("seed").assign_attrs(
            long_name=f"training loss averaged over the networks stuck at epoch {after - 1}", units="1")
        ds.attrs.update(after=after, paper_learned=74, paper_stuck=54, n_networks=n)
        return ds

    @staticmethod
    def claims(summ: xr.Dataset, full: bool) -> list[Claim]:
        after = int(summ.attrs["after"])
        c_low = summ["c_low"].values
        ctrl = float(c_low.max())
        low = float(c_low.min())
        s0 = summ.sel(c_low=ctrl)
        n = int(summ.attrs["n_networks"])
        prog = int(s0["n_progress_then_stuck"])
        zone_prog = int((s0["in_zone_phase1"] & s0["progress_then_stuck"]).sum())
        rec_low = float(summ["recovered_fraction_stuck"].sel(c_low=low))
        rec_ctrl = float(summ["recovered_fraction_stuck"].sel(c_low=ctrl))
        rec_p_low = float(summ["recovered_fraction_progress_then_stuck"].sel(c_low=low))
        rec_p_ctrl = float(summ["recovered_fraction_progress_then_stuck"].sel(c_low=ctrl))
        same = bool((summ["left_plateau_phase1"].sel(c_low=low) == s0["left_plateau_phase1"]).all()
                    and (summ["stuck_phase1"].sel(c_low=low) == s0["stuck_phase1"]).all())
        claims = [
            Claim("learned_then_stuck", "networks that had learned (accuracy > 0.5 at some epoch) later got stuck "
                  f"(accuracy <= 0.5 over the 50 epochs before epoch {after})", float("nan"), float(prog),
                  prog >= 1, ">= 1 network"),
            Claim("stuck_after_learning_is_no_learning_zone", "every one of them has a collapsed gradient "
                  f"(|grad L| <= {ZONE_GRAD:g}): the no-learning zone", 1.0, zone_prog / max(prog, 1),
                  prog >= 1 and zone_prog == prog, "fraction == 1"),
            Claim("recovery_after_lowering_c", f"after lowering c to {low:g} they re-learn (accuracy 1)", 1.0,
                  rec_p_low, rec_p_low >= 0.9, ">= 0.9"),
            Claim("no_recovery_without_lowering_c", f"with c kept at {ctrl:g} none of them does", 0.0, rec_p_ctrl,
                  rec_p_ctrl == 0.0, "== 0"),
            Claim("lowering_c_helps_all_stuck", "among all networks stuck at the end of phase 1, lowering c makes more "
                  f"reach accuracy 1 (fraction with c={low:g} minus control)", float("nan"), rec_low - rec_ctrl,
                  rec_low - rec_ctrl >= 0.5, ">= 0.5"),
            Claim("phase1_identical_across_arms", "phase 1 is the same run in every c_low arm (batched training is "
                  "deterministic per network)", 1.0, float(same), same, "identical"),
        ]
        if full:
            for key, paper, what in (
                    ("left_plateau", 74, "learned at some point (accuracy > 0.5 at some epoch) before"),
                    ("progress_then_stuck", 54, "learned, then entered the no-learning zone (stuck) by"),
                    ("learned", 74, "learned at some point, read strictly (accuracy 1 at some epoch) before"),
                    ("stuck", 54, "are stuck (accuracy <= 0.5 over the last 50 epochs, learned or not) at")):
                k = int(s0[f"n_{key}"])
                lo, hi = float(s0[f"n_{key}_low"]), float(s0[f"n_{key}_high"])
                claims.append(Claim(f"paper_count_{key}", f"networks that {what} epoch {after}, out of {n} (paper: "
                                    f"{paper}); 95% Wilson interval [{lo:.1f}, {hi:.1f}]", float(paper), float(k),
                                    lo <= paper <= hi, "paper count inside the 95% interval"))
        return claims


class SloppyRanks(_RNNReproduction):
    """Fig. S2: more trainable ranks -> fewer epochs to learn, fewer networks stuck."""

    name = "rnn-s2"
    description = "ghost paper Fig. S2: RNNs of trainable rank 1..100 at three learning rates (sloppy ranks)"
    experiment = "rnn-s2"
    quick_overrides = QUICK_S2

    store_latent_flow = False

    @staticmethod
    def summary(train: xr.Dataset, status: xr.Dataset) -> xr.Dataset:
        E = train.sizes["epoch"]
        first = status["first_learned_epoch"]
        # networks that never learned count as needing more than the whole run
        to_learn = xr.where(first >= 0, first, E).astype(float)
        gn = train["grad_norm"].isel(epoch=-1, drop=True)
        zone = status["stuck_at_end"] & (gn <= ZONE_GRAD)
        ds = xr.Dataset({
            "epochs_to_learn": to_learn.assign_attrs(long_name="first epoch with training accuracy 1 (epochs of the "
                                                               "run if never)", units="epoch"),
            "median_epochs_to_learn": to_learn.median("seed").assign_attrs(
                long_name="median epochs to learn over seeds", units="epoch"),
            "fraction_learned": status["learned_ever"].mean("seed").assign_attrs(
                long_name="fraction of seeds that learned at some epoch", units="1"),
            "fraction_stuck": status["stuck_at_end"].mean("seed").assign_attrs(
                long_name="fraction of seeds stuck over the last 50 epochs", units="1"),
            "fraction_in_zone": zone.mean("seed").assign_attrs(
                long_name=f"fraction of seeds in the no-learning zone (stuck, |grad L| <= {ZONE_GRAD:g})", units="1"),
            "final_loss": final_loss(train),
        })
        return ds

    @staticmethod
    def claims(summ: xr.Dataset, full: bool = True) -> list[Claim]:
        """Epochs to learn vs rank (every run); stuck vs rank only for the full run — with a few seeds the
        stuck counts per rank are too noisy to compare."""
        from scipy.stats import spearmanr

        rank = summ["rank"].values
        lr = summ["lr"].values
        claims = []
        for rate in (lr.min(), np.sort(lr)[len(lr) // 2]) if full and len(lr) > 1 else (lr.min(),):
            med = summ["median_epochs_to_learn"].sel(lr=rate).values
            rho = float(spearmanr(rank, med).statistic) if np.ptp(med) > 0 else 0.0
            claims.append(Claim(f"more_ranks_learn_faster_lr_{rate:g}", f"at lr = {rate:g} more trainable ranks learn "
                                "in fewer epochs (Spearman rho of median epochs-to-learn vs rank)", -1.0, rho,
                                rho <= -0.8, "rho <= -0.8"))
        frac = float(summ["fraction_learned"].sel(lr=lr.min()).min())
        claims.append(Claim("all_ranks_learn_at_low_lr", f"at lr = {lr.min():g} networks of every rank learn "
                            "(smallest fraction of seeds that learned, over ranks)", 1.0, frac, frac >= 2 / 3,
                            ">= 2/3"))
        if not full:
            return claims
        stuck = summ["fraction_stuck"].sel(lr=lr.max()).values
        order = np.sort(rank)
        third = max(1, len(rank) // 3)
        lo_r, hi_r = rank <= order[third - 1], rank >= order[-third]
        stuck_low, stuck_high = float(stuck[lo_r].mean()), float(stuck[hi_r].mean())
        all_stuck = summ["fraction_stuck"].values.mean(0)  # mean over lr, per rank
        rho_stuck = float(spearmanr(rank, all_stuck).statistic) if np.ptp(all_stuck) > 0 else 0.0
        claims += [
            Claim("more_ranks_get_stuck_less", f"at lr = {lr.max():g} the lowest ranks end stuck more often than the "
                  "highest (fraction stuck, lowest third of ranks minus highest third)", float("nan"),
                  stuck_low - stuck_high, stuck_low - stuck_high > 0, "> 0"),
            Claim("stuck_decreases_with_rank", "fraction stuck (averaged over learning rates) decreases with rank "
                  "(Spearman rho)", -1.0, rho_stuck, rho_stuck < 0, "< 0"),
        ]
        return claims

"""Two-factor linear transformer (DESIGN.md §3.3): phase diagram and transverse stability, as checked claims.

``dynlearn reproduce two-factor-phase`` writes

- ``/orbits``: the ``orbits`` analyzer on the balanced slice ``a = b`` from ``z0 = 0.1`` over a ``mu`` sweep
  (denser through the period-doubling cascade), with every change of outcome / class / period / approach bisected
  along ``mu`` (``transition_*``);
- ``/chebyshev``: Lyapunov exponents at ``mu = 2`` from many initial states on the slice;
- ``/catapult``: the 2-D catapult ``mu = 0.8`` from ``(1.6, 0.3)`` (loss, sharpness ``a^2 + b^2``);
- ``/reduction``: a one-prompt linear-attention model trained by ``dynlearn.train`` vs the two-factor map;

``dynlearn reproduce two-factor-transverse`` writes ``/ellipse`` and ``/balanced`` (the ``transverse`` analyzer)
with their exact references (quadrature over the ellipse's uniform measure; Newton-refined balanced cycles).

Exact references computed here: the doubling points of the slice map ``z -> z (1 - mu (z^2 - 1))`` (the
``2^k``-cycle's multiplier crosses ``-1``; Newton on ``f^(2^k)(z) = z``, Brent in ``mu``): 1, sqrt 5 - 1
= 1.2360680, 1.2880318, 1.2992279, 1.3016289, accumulation 1.30228 (Feigenbaum extrapolation). DESIGN.md
quotes 1.2887 for the period-8 point; the exact value is 1.28803 (both within the 0.01 tolerance).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.optimize import brentq

from dynlearn import outcome as oc
from dynlearn.reproduce import Claim, Reproduction
from dynlearn.simulate import simulate
from dynlearn.store import write_group
from dynlearn.sweep import grid

from ..analyzers.orbits.kernels import APERIODIC, CHAOTIC, OSCILLATING, PERIODIC
from ..analyzers.orbits import Orbits
from ..analyzers.transverse import STABILITY_NAMES
from ..analyzers.transverse import TransverseStability as TransverseAnalyzer
from ..systems.linear_attention import LinearAttention
from ..systems.two_factor import TwoFactorMap, ellipse_point, two_factor_jacobian, two_factor_map

__all__ = ["PhaseDiagram", "TransverseStability", "slice_doubling_points", "ellipse_transverse_reference",
           "balanced_cycle_exponent"]

FEIGENBAUM_DELTA = 4.669201609102990


# -- exact references -------------------------------------------------------------------------------------------
def _slice(z, mu):
    return z * (1 - mu * (z * z - 1))


def _cycle_multiplier(mu: float, p: int, z: float) -> tuple[float, float]:
    """Newton-refine the p-cycle of the slice map through ``z``; ``(multiplier, refined z)``."""
    for _ in range(100):
        w, der = z, 1.0
        for _ in range(p):
            der *= 1 + mu - 3 * mu * w * w
            w = _slice(w, mu)
        step = (w - z) / (der - 1)
        z -= step
        if abs(step) < 1e-15:
            break
    w, der = z, 1.0
    for _ in range(p):
        der *= 1 + mu - 3 * mu * w * w
        w = _slice(w, mu)
    return der, z


def _attractor_point(mu: float, n: int = 4000, z0: float = 0.1) -> float:
    z = z0
    for _ in range(n):
        z = _slice(z, mu)
    return z


def slice_doubling_points(k_max: int = 4) -> list[float]:
    """``mu`` where the attracting ``2^k``-cycle of the slice map (from ``z0 = 0.1``) flips, ``k = 0..k_max``."""
    pts = [1.0]  # fixed point z = 1: multiplier 1 - 2 mu = -1
    gap = 0.236
    for k in range(1, k_max + 1):
        p = 2**k
        lo = pts[-1] + 0.05 * gap
        hi = pts[-1] + 1.15 * gap  # inside the period-2p window (next doubling at ~1.21 gap)

        def g(mu, p=p):
            return _cycle_multiplier(mu, p, _attractor_point(mu))[0] + 1

        pts.append(brentq(g, lo, hi, xtol=1e-13))
        gap = (pts[-1] - pts[-2]) / FEIGENBAUM_DELTA
    return pts


def ellipse_transverse_reference(mu: np.ndarray | float, n: int = 200_000) -> np.ndarray:
    """Transverse exponent of ``E_mu``: mean of ``ln|det J|`` over the uniform measure in theta, minus ln 3
    (midpoint rule with ``n`` nodes; the log singularities are integrable)."""
    mu = np.atleast_1d(np.asarray(mu, dtype=float))
    theta = torch.tensor((np.arange(n) + 0.5) * 2 * np.pi / n, dtype=torch.float64)
    out = []
    for m in mu:
        x = ellipse_point(theta, float(m))
        jac = two_factor_jacobian(x, float(m))
        det = jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
        out.append(float(det.abs().log().mean()) - math.log(3))
    return np.asarray(out)


def balanced_cycle_exponent(mu: float, z: float, p: int) -> float:
    """Exact transverse exponent ``(1/p) sum ln|1 + mu (z_i^2 - 1)|`` of the slice's p-cycle through ``z``."""
    _, z = _cycle_multiplier(mu, p, z)
    total = 0.0
    for _ in range(p):
        total += math.log(abs(1 + mu * (z * z - 1)))
        z = _slice(z, mu)
    return total / p


# -- two-factor-phase -------------------------------------------------------------------------------------------
def _phase_grid(quick: bool) -> np.ndarray:
    step, fine = (0.02, 0.0025) if quick else (0.005, 0.0005)
    parts = [np.arange(0.3, 2.1 + 1e-9, step), np.arange(1.28, 1.305 + 1e-9, fine),
             np.arange(1.3015, 1.3035 + 1e-9, 1e-4)]
    return np.unique(np.round(np.concatenate(parts), 6))


def _first(tr: xr.Dataset, cond: np.ndarray) -> float:
    at = tr["transition_at"].values[cond]
    return float(at.min()) if at.size else math.nan


class PhaseDiagram(Reproduction):
    """Balanced-slice phase diagram, Chebyshev conjugacy at mu = 2, 2-D catapult, exact reduction check."""

    name = "two-factor-phase"
    description = "two-factor map: phase diagram of the balanced slice, period doublings, ln 3 at mu=2, catapult"
    paper = "Large-Step Training Dynamics of a Two-Factor Linear Transformer Model"

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        quick = self.quick
        out = Path(out)
        budget = dict(transient=3000, steps=1000, refine_tol=1e-3) if quick else dict(
            transient=20000, steps=4000, refine_tol=1e-5)
        self.create_store(out, {"orbits": budget}, overwrite=overwrite)
        system = TwoFactorMap()
        orb = Orbits(initial_states=[[0.1, 0.1]], n_samples=0, refine_dim="mu", **budget)
        phase = orb.run(system, grid(mu=_phase_grid(quick)), show_progress=show_progress)
        write_group(out, "orbits", phase, consolidated=False)
        cheb = Orbits(manifold="balanced", n_samples=64 if quick else 256, transient=100,
                      steps=2000 if quick else 20000).run(system, grid(mu=[2.0]), show_progress=show_progress)
        write_group(out, "chebyshev", cheb, consolidated=False)
        cat = catapult()
        write_group(out, "catapult", cat, consolidated=False)
        red = reduction_check(epochs=30 if quick else 200)
        write_group(out, "reduction", red)

        exact = slice_doubling_points(4)
        accumulation = exact[-1] + (exact[-1] - exact[-2]) / (FEIGENBAUM_DELTA - 1)
        tr = phase[[v for v in phase.data_vars if "transition" in phase[v].dims]]
        cb, ca = tr["class_before"].values, tr["class_after"].values
        pa, aa = tr["period_after"].values, tr["approach_after"].values
        claims = [Claim("oscillating_convergence", "converged orbits approach z = 1 oscillating (catapult) "
                        "beyond mu = 1/2 (first transition to an oscillating approach)", 0.5,
                        _first(tr, aa == OSCILLATING), abs(_first(tr, aa == OSCILLATING) - 0.5) <= 0.01, "+-0.01")]
        for k, mu_k in enumerate(exact):
            p = 2 ** (k + 1)
            got = _first(tr, (ca == PERIODIC) & (pa == p))
            claims.append(Claim(f"period_{p}", f"first mu with an attracting period-{p} orbit (doubling point)",
                                mu_k, got, abs(got - mu_k) <= 0.01, "+-0.01"))
        pb = tr["period_before"].values
        got = _first(tr, (cb == PERIODIC) & (pb >= 32) & np.isin(ca, [CHAOTIC, APERIODIC]))
        claims.append(Claim("accumulation", "end of the period-doubling cascade (first non-periodic orbit after "
                            "a period >= 32 orbit); expected: Feigenbaum extrapolation of the exact doubling points",
                            accumulation, got, abs(got - accumulation) <= 0.01, "+-0.01"))
        got = _first(tr, tr["outcome_after"].values == oc.DIVERGED)
        claims.append(Claim("divergence", "bounded up to mu = 2, divergent beyond (first diverged orbit)", 2.0, got,
                            abs(got - 2.0) <= 0.01, "+-0.01"))
        lam = phase["lyapunov"].isel(sample=0, exponent=0)
        band = (phase["mu"] > accumulation + 0.01) & (phase["mu"] < 2.0)
        frac = float((lam.where(band) > 0.01).sum() / band.sum())
        claims.append(Claim("chaos", "fraction of mu in (accumulation, 2) with a positive Lyapunov exponent "
                            "(chaos, with periodic windows)", 0.5, frac, frac >= 0.5, ">= 0.5"))
        lam2 = float(cheb["lyapunov"].isel(exponent=0).mean())
        claims.append(Claim("chebyshev_lyapunov", "Lyapunov exponent at mu = 2 (conjugacy to T3: ln 3)",
                            math.log(3), lam2, abs(lam2 - math.log(3)) <= 0.02, "+-0.02", "1/iteration"))
        z = torch.linspace(-math.sqrt(2), math.sqrt(2), 2001, dtype=torch.float64)
        u = z / math.sqrt(2)
        conj = float((_slice(z, 2.0) + math.sqrt(2) * (4 * u**3 - 3 * u)).abs().max())
        claims.append(Claim("chebyshev_conjugacy", "max |f_2(z) + sqrt2 T3(z / sqrt2)| on [-sqrt2, sqrt2]", 0.0,
                            conj, conj <= 1e-14, "<= 1e-14"))
        loss = cat["loss"].values
        sharp = float(cat["sharpness"].values[-1])
        claims += [
            Claim("catapult_initial_loss", "mu = 0.8 from (1.6, 0.3): initial loss", 0.135, float(loss[0]),
                  abs(loss[0] - 0.135) <= 1e-3, "+-1e-3"),
            Claim("catapult_peak_loss", "the loss rises (catapult) to", 0.444, float(loss.max()),
                  abs(loss.max() - 0.444) <= 1e-3, "+-1e-3"),
            Claim("catapult_sharpness", "then lands on a flatter minimum a^2 + b^2 < 2/mu = 2.5", 2.09, sharp,
                  abs(sharp - 2.09) <= 0.01 and sharp < 2.5 and loss[-1] < 1e-20, "+-0.01, < 2.5, loss -> 0"),
        ]
        err = float(red["one_step_error"].max())
        claims.append(Claim("reduction", "linear attention trained by GD vs the two-factor map: max one-step "
                            "error relative to |(a, b)|", 0.0, err, err <= 1e-12, "<= 1e-12"))
        err = float(red["trajectory_error"].where(red["mu"] < 1).max())
        claims.append(Claim("reduction_trajectory", "whole trajectories (mu < 1) vs iterating the map from the "
                            "same start", 0.0, err, err <= 1e-10, "<= 1e-10"))
        return claims

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        import holoviews as hv

        out: dict[str, Any] = {}
        if "orbits" in tree.children:
            for k, v in Orbits().views(tree["orbits"].to_dataset()).items():
                out[f"balanced slice: {k.replace('_', ' ')}"] = v
        if "catapult" in tree.children:
            cat = tree["catapult"].to_dataset()
            out["catapult: loss"] = hv.Curve((cat["step"].values, cat["loss"].values), "step", "loss")
        return out


def catapult(mu: float = 0.8, start=(1.6, 0.3), steps: int = 120) -> xr.Dataset:
    """The 2-D catapult trajectory: loss and sharpness ``a^2 + b^2`` per step."""
    system = TwoFactorMap(mu=mu)
    traj = simulate(system, torch.tensor(start, dtype=torch.float64), steps=steps)
    x = traj.x.numpy()
    a, b = x[:, 0], x[:, 1]
    return xr.Dataset(
        {
            "a": ("step", a, {"long_name": "a", "units": "1"}),
            "b": ("step", b, {"long_name": "b", "units": "1"}),
            "loss": ("step", 0.5 * (a * b - 1) ** 2, {"long_name": "loss (ab - 1)^2 / 2", "units": "1"}),
            "sharpness": ("step", a**2 + b**2, {"long_name": "sharpness a^2 + b^2 (2/mu: edge of stability)",
                                                "units": "1"}),
        },
        coords={"step": ("step", np.arange(len(a)), {"long_name": "GD step", "units": "iteration"})},
        attrs={"mu": mu},
    )


def reduction_check(epochs: int = 30, mus=(0.3, 0.8, 1.1, 1.5), seeds: int = 3) -> xr.Dataset:
    """Train ``linear_attention`` with ``dynlearn.train`` at learning rates giving ``mus``; compare the recorded
    reduced coordinates with the two-factor map (one step, and whole trajectories from the same start).

    Errors are relative to ``max(1, |(a, b)|_inf)`` and taken over the epochs where the network is ``ok``.
    """
    import dynlearn

    la = LinearAttention(task={"dim": 5, "n_context": 12, "prompt_seed": 3}, init_scale=0.3)
    lrs = [float(la.lr_for_mu(m)) for m in mus]
    run = dynlearn.train(la, epochs=epochs, seeds=seeds, sweep={"lr": lrs})
    tr = run.tree["train"].to_dataset()
    x = torch.tensor(np.stack([tr["a"].values, tr["b"].values], -1))  # (epoch, seed, lr, 2)
    ok = torch.tensor(np.asarray(tr["status"].values) == 0) & torch.isfinite(x).all(-1)
    mu = torch.tensor(la.mu_for_lr(np.asarray(lrs)), dtype=torch.float64)
    step = two_factor_map(x[:-1], mu)
    rel = (step - x[1:]).abs().amax(-1) / x[1:].abs().amax(-1).clamp_min(1)
    one = torch.where(ok[1:] & ok[:-1], rel, torch.zeros_like(rel)).amax(0)
    it = [x[0]]
    for _ in range(epochs - 1):
        it.append(two_factor_map(it[-1], mu))
    rel = (torch.stack(it) - x).abs().amax(-1) / x.abs().amax(-1).clamp_min(1)
    traj = torch.where(ok, rel, torch.zeros_like(rel)).amax(0)
    return xr.Dataset(
        {
            "one_step_error": (("seed", "lr"), one.numpy(), {"long_name": "max one-step |F(a_t, b_t) - (a, b)_{t+1}|"
                                                            " / max(1, |(a, b)|)", "units": "1"}),
            "trajectory_error": (("seed", "lr"), traj.numpy(), {"long_name": "max |F^t(a_0, b_0) - (a, b)_t| / "
                                                               "max(1, |(a, b)|)", "units": "1"}),
            "n_ok": (("seed", "lr"), ok.sum(0).numpy(), {"long_name": "epochs with the network ok", "units": "1"}),
            "mu": ("lr", mu.numpy(), {"long_name": "effective step mu = lr y_q |x_q| |h|", "units": "1"}),
        },
        coords={"seed": tr["seed"].values, "lr": ("lr", np.asarray(lrs), {"long_name": "learning rate"})},
    )


# -- two-factor-transverse --------------------------------------------------------------------------------------
class TransverseStability(Reproduction):
    """Transverse exponents of the Chebyshev ellipse (vs quadrature) and of balanced-slice attractors."""

    name = "two-factor-transverse"
    description = "two-factor map: the ellipse E_mu is transversely repelling, balanced attractors can attract"
    paper = "Large-Step Training Dynamics of a Two-Factor Linear Transformer Model"

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        quick = self.quick
        out = Path(out)
        self.create_store(out, {}, overwrite=overwrite)
        system = TwoFactorMap()
        mus = np.array([0.25, 0.5, 1.0, 1.5, 1.75, 1.95]) if quick else np.round(np.arange(0.05, 1.96, 0.05), 6)
        ell = TransverseAnalyzer(manifold="ellipse", n_samples=32 if quick else 64, transient=50,
                                 steps=2000 if quick else 10000).run(system, grid(mu=mus), show_progress=show_progress)
        ref = ellipse_transverse_reference(mus)
        ell["exact_transverse_exponent"] = ("mu", ref, {
            "long_name": "exact transverse exponent: <ln|det J|>_theta - ln 3 (quadrature)", "units": "1/iteration"})
        write_group(out, "ellipse", ell, consolidated=False)
        bmus = np.array([0.5, 1.1, 1.25, 1.29, 1.5, 1.9, 2.0]) if quick else np.round(np.arange(0.1, 2.001, 0.02), 6)
        z0 = np.array([0.1, 0.5, 1.2])
        bal = TransverseAnalyzer(manifold="balanced", initial_states=np.stack([z0, z0], -1).tolist(), n_samples=0,
                                 transient=2000 if quick else 20000, steps=2000 if quick else 20000
                                 ).run(system, grid(mu=bmus), show_progress=show_progress)
        exact = np.full(bal["period"].shape, np.nan)
        per = bal["period"].values
        for (i, s), p in np.ndenumerate(per):
            if p >= 1:
                z = float(bal["final_state"].values[i, s, 0])
                exact[i, s] = balanced_cycle_exponent(float(bmus[i]), z, int(p))
        bal["exact_transverse_exponent"] = (("mu", "sample"), exact, {
            "long_name": "exact transverse exponent of the balanced cycle (1/p) sum ln|1 + mu (z_i^2 - 1)|",
            "units": "1/iteration"})
        write_group(out, "balanced", bal)

        meas = ell["transverse_exponent_mean"].values
        tang = float(ell["tangential_exponent"].mean())
        err = float(np.max(np.abs(meas - ref)))
        at15 = float(ell["transverse_exponent_mean"].sel(mu=1.5))
        rep = STABILITY_NAMES.index("repelling")
        att = STABILITY_NAMES.index("attracting")
        claims = [
            Claim("ellipse_transverse", "transverse exponent of E_mu vs the exact formula: max error over mu",
                  0.0, err, err <= 0.02, "<= 0.02", "1/iteration"),
            Claim("ellipse_positive", "transverse exponent of E_mu positive for all mu in (0, 2) (min over mu)",
                  float(ref.min()), float(meas.min()), bool(meas.min() > 0), "> 0", "1/iteration"),
            Claim("ellipse_repelling", "E_mu classified transversely repelling at every mu", 1.0,
                  float((ell["manifold_stability"].values == rep).mean()),
                  bool((ell["manifold_stability"].values == rep).all()), "== 1"),
            Claim("ellipse_mu_1.5", "transverse exponent of E_mu at mu = 1.5 (exact: ln 2)", math.log(2), at15,
                  abs(at15 - math.log(2)) <= 0.02, "+-0.02", "1/iteration"),
            Claim("ellipse_tangential", "tangential exponent on E_mu (theta -> pi - 3 theta: ln 3)", math.log(3),
                  tang, abs(tang - math.log(3)) <= 0.02, "+-0.02", "1/iteration"),
        ]
        bt = bal["transverse_exponent"].isel(normal=0).values
        ok = np.isfinite(exact) & np.isfinite(bt)
        err_b = float(np.max(np.abs(bt[ok] - exact[ok]))) if ok.any() else math.nan
        claims.append(Claim("balanced_transverse", "balanced periodic attractors: transverse exponent vs "
                            "(1/p) sum ln|1 + mu (z_i^2 - 1)| on the Newton-refined cycle (max error)", 0.0, err_b,
                            bool(ok.sum() >= 5 and err_b <= 1e-3), "<= 1e-3 (>= 5 attractors)", "1/iteration"))
        n_att = int(((bal["stability"].values == att) & (per >= 2)).sum())
        claims.append(Claim("balanced_attracting", "balanced cycles (p >= 2) that are transversely attracting",
                            1.0, float(n_att), n_att >= 1, ">= 1"))
        at2 = float(bal["transverse_exponent"].sel(mu=2.0).isel(normal=0).mean())
        claims.append(Claim("balanced_mu_2", "transverse exponent of the chaotic balanced attractor at mu = 2 "
                            "(exact 0: mean ln|1 + 2 cos psi| = 0, Jensen)", 0.0, at2, abs(at2) <= 0.03, "+-0.03",
                            "1/iteration"))
        return claims

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        import holoviews as hv

        out: dict[str, Any] = {}
        if "ellipse" in tree.children:
            ell = tree["ellipse"].to_dataset()
            mu = ell["mu"].values
            out["ellipse: transverse exponent vs mu"] = (
                hv.Curve((mu, ell["exact_transverse_exponent"].values), "mu", "transverse exponent", label="exact")
                * hv.Scatter((mu, ell["transverse_exponent_mean"].values), "mu", "transverse exponent",
                             label="measured"))
        if "balanced" in tree.children:
            for k, v in TransverseAnalyzer().views(tree["balanced"].to_dataset()).items():
                out[f"balanced slice: {k}"] = v
        return out


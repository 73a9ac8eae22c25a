"""``dynlearn reproduce koopman``: separatrices as zero sets of neural Koopman eigenfunctions, against exact ones.

The ``koopman_separatrix`` analyzer (Dabholkar & Barak, arXiv:2505.15231) is run, without being told any of the
answers, on systems whose separatrix is known exactly, and its zero set is compared with it:

- ``bistable`` (``a = 0``: the line ``x = 0``; ``a = 0.5``: the parabola ``x = a y^2``) and ``bistable_3d``
  (the paraboloid ``x = a (y^2 + z^2)``, ``a = 0.3``): max distance <= 1% of the domain side (0.04);
- the two-factor map at ``mu in {0.8, 1.5}``: the Chebyshev ellipse ``E_mu`` separates bounded from divergent
  training; max distance <= 2% of its minor semi-axis ``B / sqrt(2)`` (in the ``(a, b)`` plane);
- the 1-D latent circuit of a rank-one RNN (``rnn_latent`` with two neurons, ``tau k' = -k + 3 tanh(k + 0.3)``):
  the separatrix is the unstable fixed point (root by Brent's method); the ``basins`` analyzer's boundary on
  the same system agrees (both within 1% of the domain ``[-15, 15]``);
- optimal perturbations: from the attractors ``(+-1, 0)`` of ``bistable`` the true minimal distance to the
  separatrix is 1 (for ``a <= 1/2``); the found ``|delta|`` is within 5% and ``x0 + 1.05 delta`` crosses in
  simulation while ``x0 + 0.95 delta`` does not;
- a 100-D flow (``bistable`` embedded by a random rotation ``Q``, 98 extra stable directions): separatrix
  ``(Q^T x)_0 = 0``, max ``|(Q^T x)_0|`` <= 1% of the box side (0.02). Uniform samples of a 100-D box rarely come
  near the separatrix and the eigen-residual alone admits spurious near-solutions there; boundary sampling (on by
  default above 3-D: states bracketing the simulated crossing along random curves between the basins, labelled
  by simulation, through the sign term, plus two active-learning rounds labelling psi's current zero set) brings
  psi's own max ``|(Q^T x)_0|`` from 0.23 to 0.04-0.13 (median ~0.01-0.02) at quick size, short of 0.02; the
  polished points meet it;
- the full 100-neuron ``rnn`` map with rank-one ``W = m n^T``, ``b = 0``, ``n = 2 m / |m|^2``
  (:func:`rank_one_rnn`): the latent ``kappa = n^T x`` obeys an odd 1-D map exactly, so the separatrix is the
  hyperplane ``n^T x = 0``; zero set within 1% of the box side (0.02), and the optimal perturbation from each
  attractor ``tanh(+-m kappa*)`` within 5% of the exact distance ``kappa* / |n|``, crossing in simulation.

Every separatrix error is measured on the *polished* points (psi's zero set moved onto the simulated class change
along psi's normal, :mod:`dynlearn_builtins.analyzers.koopman.polish`; a claim also needs 90% of psi's points
polished) and, recorded beside it, on psi's own zero set (``error_psi``: training noise, different on every
seed and rounding path). Distances to the ellipse and the parabola are exact (Newton on the foot point).

Groups: one per case with the analyzer's output (``/bistable``, ``/bistable_3d``, ``/two_factor``,
``/rnn_latent``, ``/rnn_latent_basins``, ``/embedded_100d``, ``/rnn_100``), ``/errors`` (per case: polished
and psi's own error, polished fraction, bound, training time) and ``/claims``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.params import Param
from dynlearn.reproduce import Claim, Reproduction
from dynlearn.store import write_group
from dynlearn.sweep import grid
from dynlearn.system import FlowSystem

from ..analyzers.basins import Basins
from ..analyzers.koopman import KoopmanSeparatrix
from ..systems.rnn import LatentCircuit, LowRankRNN
from ..systems.two_factor import ellipse_axes, ellipse_distance, ellipse_point

__all__ = ["KoopmanSeparatrices", "Bistable100", "latent_circuit", "latent_roots", "rank_one_rnn",
           "rank_one_fixed_point"]

_SMALL = dict(n_samples=128, n_curves=16, n_points=64, n_candidates=512, batch_size=256, lr=0.02)
QUICK: dict[str, dict[str, Any]] = {
    "bistable": dict(_SMALL, width=16, steps=800, grid_size=0, n_perturb=2),
    "bistable_3d": dict(_SMALL, width=32, steps=1000, grid_size=0),
    "two_factor": dict(_SMALL, width=32, depth=3, steps=2000, grid_size=0, n_perturb=4),
    "rnn_latent": dict(_SMALL, width=16, steps=400),
    "embedded_100d": dict(_SMALL, width=32, steps=500, lr=0.01, n_samples=512, horizon=300.0, n_curves=8,
                          n_perturb=2),
    "rnn_100": dict(_SMALL, width=32, steps=1500, lr=0.01, n_samples=512, n_curves=8, n_perturb=2),
}
FULL: dict[str, dict[str, Any]] = {
    "bistable": dict(width=32, steps=3000, n_perturb=2),
    "bistable_3d": dict(width=32, steps=3000),
    "two_factor": dict(width=32, depth=3, steps=3000),
    "rnn_latent": dict(width=32, steps=3000),
    "embedded_100d": dict(width=32, steps=3000, horizon=300.0, lr=0.01, n_samples=4096),
    "rnn_100": dict(width=32, steps=3000, lr=0.01, n_samples=2048, n_perturb=2),
}
BISTABLE_A = (0.0, 0.5)
BISTABLE_3D_A = 0.3
MUS = (0.8, 1.5)
RNN_NEURONS = 100
PERTURB_MARGIN = 0.05
MIN_POLISHED = 0.9          # a separatrix claim needs this fraction of psi's zero-set points polished


class Bistable100(FlowSystem):
    """``bistable`` embedded in 100-D: ``u = Q^T x``, ``u0' = u0 - u0^3``, ``u_i' = -c (1 + i / 100) u_i``.

    ``Q`` is a fixed random rotation (seed 3); the separatrix is the hyperplane ``u0 = 0``.
    """

    name = "bistable_100d"
    description = "bistable flow embedded in 100-D by a random rotation, with 98 extra stable directions"
    state_names = tuple(f"x{i}" for i in range(100))
    parameters = {"c": Param(1.0, description="rate of the stable directions", low=0, low_inclusive=False)}
    domain_bounds = ([-1.0] * 100, [1.0] * 100)
    Q = torch.linalg.qr(torch.randn(100, 100, generator=torch.Generator().manual_seed(3), dtype=torch.float64))[0]

    def rhs(self, x, p):
        Q = self.Q.to(x.dtype)
        u = x @ Q
        rates = p["c"].unsqueeze(-1) * (1 + torch.arange(100, dtype=x.dtype) / 100)
        du = torch.cat([u[..., :1] - u[..., :1] ** 3, -rates[..., 1:] * u[..., 1:]], -1)
        return du @ Q.T


def latent_circuit() -> LatentCircuit:
    """Two-neuron rank-one RNN: ``tau dk/dt = -k + 3 tanh(k + 0.3)`` (two stable fixed points, one unstable)."""
    return LatentCircuit(n_neurons=2, rank=1, m=[[1.0], [1.0]], n=[[1.5, 1.5]], b=[0.3, 0.3])


def latent_roots() -> tuple[float, float, float]:
    """(unstable, lower stable, upper stable) fixed points of ``tau k' = -k + 3 tanh(k + 0.3)`` (Brent's method)."""
    from scipy.optimize import brentq

    g = lambda k: -k + 3 * math.tanh(k + 0.3)  # noqa: E731
    return brentq(g, -2.0, 1.0), brentq(g, -4.0, -1.0), brentq(g, 1.0, 4.0)


def rank_one_rnn(n_neurons: int = 100, gain: float = 2.0, seed: int = 0) -> LowRankRNN:
    """The full ``rnn`` map on ``R^N`` with ``W = m n^T``, ``b = 0``: ``m ~ N(0, 1)`` (seeded), ``n = gain m / |m|^2``.

    The latent ``kappa = n^T x`` obeys ``kappa -> (1 - D) kappa + D n^T tanh(m kappa)`` exactly (DESIGN.md §3.2),
    odd in ``kappa`` with slope ``(1 - D) + D gain > 1`` at 0: bistable for ``gain > 1``, with attractors
    ``x = tanh(+-m kappa*)`` and the separatrix the hyperplane ``n^T x = 0`` exactly (the stable manifold of the
    saddle at the origin: the directions orthogonal to ``n`` contract by ``1 - D``).
    """
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n_neurons, 1, generator=g, dtype=torch.float64)
    n = (gain * m / (m * m).sum()).T
    return LowRankRNN(n_neurons=n_neurons, m=m.tolist(), n=n.tolist(), b=[0.0] * n_neurons)


def rank_one_fixed_point(rnn: LowRankRNN) -> float:
    """``kappa* > 0`` with ``kappa* = n^T tanh(m kappa*)`` (Brent's method; the attractors are ``+-kappa*``)."""
    from scipy.optimize import brentq

    p = rnn.param_tensors()
    m, n = p["m"][:, 0].numpy(), p["n"][0].numpy()
    return brentq(lambda k: float(n @ np.tanh(m * k)) - k, 1e-6, float(np.abs(n).sum()) + 1.0)


def hyperplane_distance(points: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``|normal . x| / |normal|`` for each row of ``points``."""
    return np.abs(points @ normal) / np.linalg.norm(normal)


def _finite(points: np.ndarray) -> np.ndarray:
    return points[np.isfinite(points).all(-1)]


def parabola_distance(points: np.ndarray, a: float, newton: int = 8) -> np.ndarray:
    """Distance of each point ``(n, 2)`` to ``x = a y^2``: the nearest of 60001 samples (``y`` in [-3, 3]), refined
    by Newton's method on the foot point's ``y`` (exact to rounding; the smaller of the two is kept)."""
    p = np.asarray(points, dtype=float)
    y = np.linspace(-3, 3, 60001)
    x0, y0 = p[:, :1], p[:, 1:]
    d2 = (a * y**2 - x0) ** 2 + (y - y0) ** 2
    t, best = y[d2.argmin(-1)], np.sqrt(d2.min(-1))
    x0, y0 = x0[:, 0], y0[:, 0]
    for _ in range(newton):        # d/dy of |(a y^2, y) - (x0, y0)|^2 / 2 and its derivative
        g = 2 * a * t * (a * t * t - x0) + (t - y0)
        h = 2 * a * (3 * a * t * t - x0) + 1
        t = t - np.where(h != 0, g / np.where(h != 0, h, 1.0), 0.0)
    return np.minimum(best, np.hypot(a * t * t - x0, t - y0))


def parabola_error(points: np.ndarray, a: float) -> float:
    """Max distance of ``points`` to ``x = a y^2`` (:func:`parabola_distance`; inf without points)."""
    p = _finite(points)
    return float(parabola_distance(p, a).max()) if len(p) else math.inf


def paraboloid_error(points: np.ndarray, a: float) -> float:
    """Max first-order distance ``|s| / |grad s|`` to ``x = a (y^2 + z^2)`` (exact up to O(s^2))."""
    p = _finite(points)
    if len(p) == 0:
        return math.inf
    x, y, z = p.T
    return float((np.abs(x - a * (y**2 + z**2)) / np.sqrt(1 + 4 * a * a * (y**2 + z**2))).max())


def ellipse_error(points: np.ndarray, mu: float) -> float:
    """Max distance to ``E_mu`` (exact, :func:`~dynlearn_builtins.systems.two_factor.ellipse_distance`) divided by
    its minor semi-axis ``B / sqrt(2)`` in the ``(a, b)`` plane (inf without points)."""
    p = _finite(points)
    if len(p) == 0:
        return math.inf
    return float(ellipse_distance(p, mu).max() / (ellipse_axes(mu)[1] / math.sqrt(2)))


def _max_abs(values: np.ndarray) -> float:
    """``max |values|`` over the finite ones (inf if none)."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    return float(v.max()) if len(v) else math.inf


def polished_fraction(result: xr.Dataset) -> float:
    """Fraction of psi's zero-set points that polishing moved onto the simulated separatrix (outcome ``ok``)."""
    have = np.isfinite(result.separatrix_psi.values).all(-1)
    ok = result.polish_outcome.values == oc.OK
    return float((ok & have).sum() / max(1, have.sum()))


def errors_dataset(rows: list[tuple]) -> xr.Dataset:
    """``/errors``: per case, the polished separatrix's error (the claim), psi's own, the polished fraction, the
    bound and the time."""
    col = lambda i: np.array([r[i] for r in rows])  # noqa: E731
    return xr.Dataset(
        {"error": ("case", col(2), {"long_name": "measured error of the polished separatrix points (see "
                                                 "description)", "units": "state units or 1"}),
         "error_psi": ("case", col(3), {"long_name": "the same error measured on psi's own zero set (before "
                                                     "polishing; recorded, not a claim)", "units": "state units or 1"}),
         "polished_fraction": ("case", col(4), {"long_name": "fraction of psi's zero-set points polished by "
                                                             "simulation", "units": "1"}),
         "bound": ("case", col(5), {"long_name": "must-show bound of the polished error", "units": "same"}),
         "seconds": ("case", col(6), {"long_name": "analysis wall time (all sweep elements of the group together)",
                                      "units": "s"}),
         "description": ("case", np.array([r[1] for r in rows], dtype=object), {"long_name": "what is measured"})},
        coords={"case": ("case", np.array([r[0] for r in rows], dtype=object))},
    )


class KoopmanSeparatrices(Reproduction):
    """Zero sets of neural Koopman eigenfunctions vs exact separatrices (flows, a map, an RNN, 100-D).

    Parameters
    ----------
    quick
        Reduced sizes (:data:`QUICK`) instead of :data:`FULL`.
    seed
        ``seed`` of every analyzer run (samples, network initialisation, batches): the claims must hold
        for any seed (default 0, the one ``dynlearn reproduce koopman`` uses).
    """

    name = "koopman"
    description = "separatrices as zero sets of neural Koopman eigenfunctions, against exact ones"
    paper = "K. V. Dabholkar, O. Barak, Finding separatrices of dynamical flows with deep Koopman eigenfunctions, " \
            "arXiv:2505.15231 (2025)"

    def __init__(self, quick: bool = False, seed: int = 0) -> None:
        super().__init__(quick=quick)
        self.seed = int(seed)

    def settings(self) -> dict[str, dict[str, Any]]:
        return QUICK if self.quick else FULL

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        cfg = self.settings()
        out = self.create_store(out, {"analyzer": cfg, "seed": self.seed}, overwrite=overwrite)
        rows: list[tuple] = []      # case, description, error, psi's error, polished fraction, bound, seconds

        def analyse(key: str, source, params, **extra):
            an = KoopmanSeparatrix(**{**cfg[key], "seed": self.seed, **extra})
            t = time.perf_counter()
            res = an.run(source, params, show_progress=show_progress)
            return res, time.perf_counter() - t

        def row(case: str, description: str, error, result: xr.Dataset, bound: float, seconds: float) -> None:
            """``error(points)`` of the polished separatrix and of psi's own zero set."""
            rows.append((case, description, error(result.separatrix.values), error(result.separatrix_psi.values),
                         polished_fraction(result), bound, seconds))

        bi, t_bi = analyse("bistable", "bistable", grid(a=list(BISTABLE_A)), perturb_margin=PERTURB_MARGIN)
        write_group(out, "bistable", bi)
        for a in BISTABLE_A:
            row(f"bistable_a={a:g}", f"bistable (a={a:g}): max distance to x = a y^2",
                lambda pts, a=a: parabola_error(pts, a), bi.sel(a=a), 0.04, t_bi)
        b3, t_b3 = analyse("bistable_3d", "bistable_3d", grid(a=[BISTABLE_3D_A]), perturb_margin=PERTURB_MARGIN)
        write_group(out, "bistable_3d", b3)
        row("bistable_3d", f"bistable_3d (a={BISTABLE_3D_A:g}): max distance to x = a (y^2 + z^2)",
            lambda pts: paraboloid_error(pts, BISTABLE_3D_A), b3.isel(a=0), 0.04, t_b3)
        tf, t_tf = analyse("two_factor", "two_factor", grid(mu=list(MUS)), perturb_margin=PERTURB_MARGIN)
        write_group(out, "two_factor", tf)
        for mu in MUS:
            row(f"two_factor_mu={mu:g}", f"two-factor map (mu={mu:g}): max distance to E_mu / minor semi-axis",
                lambda pts, mu=mu: ellipse_error(pts, mu), tf.sel(mu=mu), 0.02, t_tf)
        lc = latent_circuit()
        k0 = latent_roots()[0]
        rl, t_rl = analyse("rnn_latent", lc, None, grid_size=None)
        write_group(out, "rnn_latent", rl)
        row("rnn_latent", "rnn_latent (1-D): |zero - unstable fixed point|", lambda pts: _max_abs(pts[:, 0] - k0),
            rl, 0.3, t_rl)
        t = time.perf_counter()
        bas = Basins(resolution=600, steps=400, dt=1.0).run(lc, show_progress=show_progress)
        t_bas = time.perf_counter() - t
        write_group(out, "rnn_latent_basins", bas)
        between = (bas.boundary_outcome_a == oc.OK).values  # boundary points between two attractors' basins
        k_bas = bas.boundary_state.values[between][:, 0]
        row("rnn_latent_basins", "rnn_latent (1-D): |mean zero - mean of the basins analyzer's boundary|",
            lambda pts: abs(float(k_bas.mean()) - float(_finite(pts)[:, 0].mean())) if len(k_bas) and
            len(_finite(pts)) else math.inf, rl, 0.3, t_bas)
        em, t_em = analyse("embedded_100d", Bistable100(), grid(c=[1.0]))
        write_group(out, "embedded_100d", em)
        q0 = Bistable100.Q[:, 0].numpy()
        row("embedded_100d", "bistable embedded in 100-D: max |(Q^T x)_0| (1% of the box side: 0.02)",
            lambda pts: _max_abs(_finite(pts) @ q0), em.isel(c=0), 0.02, t_em)
        net = rank_one_rnn(RNN_NEURONS)
        rn, t_rn = analyse("rnn_100", net, None)
        write_group(out, "rnn_100", rn)
        normal = net.param_tensors()["n"][0].numpy()
        row("rnn_100", f"full {RNN_NEURONS}-neuron rank-one rnn (b = 0): max distance to the hyperplane n^T x = 0",
            lambda pts: _max_abs(hyperplane_distance(_finite(pts), normal)), rn, 0.02, t_rn)
        rnn_distance = rank_one_fixed_point(net) / float(np.linalg.norm(normal))
        write_group(out, "errors", errors_dataset(rows))
        return self.claims(errors_dataset(rows), bi, b3, tf) + self.rnn_claims(rn, rnn_distance)

    @staticmethod
    def claims(errors: xr.Dataset, bi: xr.Dataset, b3: xr.Dataset, tf: xr.Dataset) -> list[Claim]:
        out = []
        for case in errors["case"].values:
            e = errors.sel(case=case)
            if not np.isfinite(float(e["bound"])):
                continue
            err, bound, frac = float(e["error"]), float(e["bound"]), float(e["polished_fraction"])
            out.append(Claim(f"separatrix_{case}", f"{e['description'].values} (polished points; at least "
                             f"{MIN_POLISHED:.0%} of psi's points polished)", 0.0, err,
                             bool(err <= bound and frac >= MIN_POLISHED), f"<= {bound:g}",
                             "1" if case.startswith("two_factor") else "state"))
        for a in BISTABLE_A:
            r = bi.sel(a=a)
            norms = r.perturbation_norm.values
            rel = float(np.abs(norms - 1.0).max())
            out.append(Claim(f"perturbation_minimal_a={a:g}", f"bistable (a={a:g}): smallest perturbation from the "
                             "attractors (+-1, 0) vs the true distance 1: max relative error", 0.0, rel,
                             bool(rel <= PERTURB_MARGIN), f"<= {PERTURB_MARGIN:g}", "1"))
            ok = bool(r.crossed.values.all() and r.stays.values.all())
            out.append(Claim(f"perturbation_crosses_a={a:g}", f"bistable (a={a:g}): x0 + 1.05 delta ends in the other "
                             "basin and x0 + 0.95 delta does not (simulated), all perturbed states", 1.0,
                             float(ok), ok, "all", "1"))
        for name, r in (("bistable_3d", b3), ("two_factor", tf)):
            ok = bool(r.crossed.values.all())
            out.append(Claim(f"perturbation_crosses_{name}", f"{name}: x0 + 1.05 delta ends in the other class "
                             "(simulated), all perturbed states, all sweep elements", 1.0, float(ok), ok, "all", "1"))
        return out

    @staticmethod
    def rnn_claims(r: xr.Dataset, distance: float) -> list[Claim]:
        """Optimal perturbations from the rnn's attractors ``tanh(+-m kappa*)``: true distance ``kappa* / |n|``."""
        rel = float(np.abs(r.perturbation_norm.values / distance - 1).max())
        ok = bool(r.crossed.values.all() and r.stays.values.all())
        return [Claim("perturbation_minimal_rnn_100", f"{RNN_NEURONS}-neuron rnn: smallest perturbation from the "
                      "attractors vs the exact distance kappa*/|n| to n^T x = 0: max relative error", 0.0, rel,
                      bool(rel <= PERTURB_MARGIN), f"<= {PERTURB_MARGIN:g}", "1"),
                Claim("perturbation_crosses_rnn_100", f"{RNN_NEURONS}-neuron rnn: x0 + 1.01 delta ends in the other "
                      "basin and x0 + 0.99 delta does not (simulated)", 1.0, float(ok), ok, "all", "1")]

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401

        out: dict[str, Any] = {}
        if "errors" in tree.children:
            e = tree["errors"].to_dataset().load()
            keep = np.isfinite(e["bound"].values)
            cases = [str(c) for c in e["case"].values[keep]]
            bars = [(c, which, float(e[var].values[keep][i] / e["bound"].values[keep][i]))
                    for i, c in enumerate(cases)
                    for which, var in (("polished", "error"), ("psi", "error_psi")) if var in e]
            out["error / bound"] = (
                hv.Bars(bars, ["case", "points"], "error / bound")
                * hv.HLine(1.0).opts(color="red", line_dash="dashed")
            ).opts(title="separatrix error relative to its must-show bound: polished and psi's own (red: bound)",
                   width=760, height=320, xrotation=30, logy=True)
        if "two_factor" in tree.children:
            tf = tree["two_factor"].to_dataset().load()
            theta = torch.linspace(0, 2 * math.pi, 721, dtype=torch.float64)
            frames = {}
            for mu in tf["mu"].values:
                e = ellipse_point(theta, float(mu)).numpy()
                pts = _finite(tf.separatrix.sel(mu=mu).values)
                own = _finite(tf.separatrix_psi.sel(mu=mu).values) if "separatrix_psi" in tf else pts[:0]
                frames[float(mu)] = (hv.Curve((e[:, 0], e[:, 1]), "a", "b", label="E_mu (exact)")
                                     * hv.Scatter((own[:, 0], own[:, 1]), "a", "b", label="psi = 0").opts(size=4)
                                     * hv.Scatter((pts[:, 0], pts[:, 1]), "a", "b", label="polished").opts(
                                         size=4, marker="x")
                                     ).opts(width=460, height=420, title="psi's zero set, polished, vs the Chebyshev "
                                                                         "ellipse")
            out["two-factor zero set vs E_mu"] = hv.HoloMap(frames, kdims=["mu"])
        return out

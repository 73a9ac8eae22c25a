"""Koopman separatrix of the two-factor map over seeds: polished points vs psi's own zero set.

For each seed (the analyzer's ``seed``: samples, network initialisation, batches) the reproduction's quick
two-factor case (``QUICK["two_factor"]``: width 32, depth 3, 2000 Adam steps, ``mu in {0.8, 1.5}`` as one batch)
is analysed once, and the max distance of the 64 separatrix points to the exact Chebyshev ellipse ``E_mu``
(:func:`~dynlearn_builtins.systems.two_factor.ellipse_distance`) is measured, as a percentage of the minor
semi-axis ``B / sqrt 2`` (the claim's bound is 2%), for

- ``error_polished``: the analyzer's ``separatrix`` (psi's points moved onto the simulated class change along
  psi's normal: :mod:`dynlearn_builtins.analyzers.koopman.polish`);
- ``error_psi``: psi's own zero set (``separatrix_psi``), which carries the network's training noise.

Measured 2026-12-05 (AMD EPYC, 2 shared CPU cores, 1 torch thread, seeds 0-4; ``python
benchmarks/koopman_seeds.py``; 17-29 s per seed for both mu):

=====  =====================  =====================  ================
mu     polished max / median  psi's own max / median points polished
=====  =====================  =====================  ================
0.8    0.0042% / 0.0042%      0.93% / 0.65%          100%
1.5    0.0090% / 0.0089%      2.59% / 1.42%          100%
=====  =====================  =====================  ================

(percent of the minor semi-axis, max and median over the 5 seeds; per seed, psi's own at mu = 1.5: 1.42, 2.59,
1.02, 1.11, 1.60%). psi's own zero set misses the 2% bound on seed 1 (and at seed 0 on an Intel AVX-512 CPU:
2.25%); the polished points are 200x below it on every seed, at the half-width of the final bracket
(``polish_tolerance``: 2^-12 of the 0.6-long segment, 7.3e-5 = 0.0042% / 0.0090% of the minor semi-axis).

Usage::

    python benchmarks/koopman_seeds.py                 # seeds 0-4, table and dataset
    python benchmarks/koopman_seeds.py --seeds 0 1     # other seeds
    python benchmarks/koopman_seeds.py --out s.zarr    # also write the dataset
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import xarray as xr

import dynlearn
from dynlearn import outcome as oc
from dynlearn_builtins.analyzers.koopman import KoopmanSeparatrix
from dynlearn_builtins.reproductions.koopman import MUS, PERTURB_MARGIN, QUICK
from dynlearn_builtins.systems.two_factor import ellipse_axes, ellipse_distance

UNITS = "% of the minor semi-axis"


def _percent(points: np.ndarray, mu: float) -> float:
    """Max distance of the finite ``points`` to ``E_mu``, in % of the minor semi-axis (NaN without points)."""
    p = points[np.isfinite(points).all(-1)]
    if not len(p):
        return math.nan
    return float(100 * ellipse_distance(p, mu).max() / (ellipse_axes(mu)[1] / math.sqrt(2)))


def measure(seeds: list[int]) -> xr.Dataset:
    """Errors per ``(seed, mu)`` as a labeled dataset (see the module docstring)."""
    shape = (len(seeds), len(MUS))
    pol, own, frac, secs = (np.full(shape, np.nan) for _ in range(4))
    for i, seed in enumerate(seeds):
        t = time.perf_counter()
        out = KoopmanSeparatrix(**QUICK["two_factor"], perturb_margin=PERTURB_MARGIN, seed=seed).run(
            "two_factor", dynlearn.grid(mu=list(MUS)), show_progress=False)
        secs[i] = time.perf_counter() - t
        for j, mu in enumerate(MUS):
            r = out.sel(mu=mu)
            pol[i, j] = _percent(r.separatrix.values, mu)
            own[i, j] = _percent(r.separatrix_psi.values, mu)
            have = np.isfinite(r.separatrix_psi.values).all(-1)
            frac[i, j] = 100 * float(((r.polish_outcome.values == oc.OK) & have).sum() / max(1, have.sum()))
    dims = ("seed", "mu")
    return xr.Dataset(
        {"error_polished": (dims, pol, {"long_name": "max distance of the polished separatrix points to E_mu",
                                        "units": UNITS}),
         "error_psi": (dims, own, {"long_name": "max distance of psi's own zero-set points to E_mu", "units": UNITS}),
         "polished": (dims, frac, {"long_name": "psi's zero-set points polished by simulation", "units": "%"}),
         "seconds": (dims, secs, {"long_name": "analysis wall time (both mu in one batch)", "units": "s"})},
        coords={"seed": ("seed", np.asarray(seeds), {"long_name": "analyzer seed"}),
                "mu": ("mu", np.asarray(MUS), {"long_name": "two-factor map step size"})},
        attrs={"settings": "reproduction koopman, QUICK['two_factor']", "bound": "2% of the minor semi-axis"},
    )


def summary(ds: xr.Dataset) -> xr.Dataset:
    """Max and median over seeds of every error (dims ``stat, mu``)."""
    stat = xr.DataArray(["max", "median"], dims="stat", attrs={"long_name": "statistic over seeds"})
    out = {}
    for key in ("error_polished", "error_psi", "polished"):
        v = ds[key]
        out[key] = xr.concat([v.max("seed"), v.median("seed")], dim=stat).assign_attrs(v.attrs)
    return xr.Dataset(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the per-seed dataset to this zarr store")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = measure(args.seeds)
    s = summary(ds)
    print(f"{'mu':>5s} {'polished max / median':>24s} {'psi max / median':>20s} {'polished':>9s}   ({UNITS})")
    for mu in ds["mu"].values:
        p, o = s["error_polished"].sel(mu=mu).values, s["error_psi"].sel(mu=mu).values
        print(f"{mu:5.2g} {p[0]:11.4f} / {p[1]:8.4f} {o[0]:9.3f} / {o[1]:7.3f} "
              f"{float(s['polished'].sel(mu=mu, stat='max')):8.0f}%")
    print(ds)
    if args.out:
        ds.to_zarr(args.out, mode="w")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``dynlearn reproduce lyapunov-spectra``: reference Lyapunov spectra from the QR method, as labeled data.

Groups (each the output of the ``lyapunov`` analyzer, or of ``orbits`` for the Duffing kinds):

- ``/lorenz``: Lorenz-63 (10, 28, 8/3): spectrum ``0.9056, 0, -14.5723`` per unit time (RK4, dt = 0.01, 0.02 in
  the quick run; the exponents of the RK4 time-dt map / dt, O(dt^4) from the flow's), Kaplan-Yorke dimension 2.062;
- ``/lorenz_sum``: a short run at dt = 0.002: the exponents sum to ``-(sigma + 1 + beta)`` (a property of the
  QR method, whatever the convergence; RK4's det error is O(dt^4));
- ``/henon``: Hénon (1.4, 0.3): ``0.4192, -1.6232`` per iteration, summing to ``ln 0.3`` (det J = -b);
- ``/two_factor``: the two-factor map at mu = 2 on the balanced slice: ``ln 3`` (conjugacy to the Chebyshev map
  T3), and a transverse exponent ``<ln|4u^2 - 1|> = 0`` over the arcsine density;
- ``/duffing``, ``/duffing_float32``: the damped Duffing oscillator (delta = 0.3) by the ``orbits`` analyzer at its
  default budget: both foci are fixed points (never quasi-periodic) with exponents -0.15, in float64 and float32.

The quick version (``--quick``) averages fewer and shorter orbits: its tolerances are wider where the statistical
error is (Lorenz 0.02 instead of 0.01), the exact identities keep theirs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.reproduce import Claim, Reproduction
from dynlearn.store import write_group
from dynlearn.sweep import grid

from ..analyzers.lyapunov import Lyapunov
from ..analyzers.orbits import Orbits
from ..analyzers.orbits.kernels import CONVERGED
from ..systems.chaos import Duffing, Henon, Lorenz
from ..systems.two_factor import TwoFactorMap

__all__ = ["LyapunovSpectra", "LORENZ", "HENON"]

#: reference spectra (Sprott, "Chaos and Time-Series Analysis", 2003, table A.1 values)
LORENZ = (0.9056, 0.0, -14.5723)
HENON = (0.4192, -1.6232)

#: (quick, full) budgets
BUDGET = {
    "lorenz": ({"n_samples": 128, "steps": 2000, "transient": 500, "dt": 0.02},
               {"n_samples": 64, "steps": 20000, "transient": 2000, "dt": 0.01}),
    "henon": ({"n_samples": 32, "steps": 5000, "transient": 500}, {"n_samples": 64, "steps": 50000, "transient": 1000}),
    "two_factor": ({"n_samples": 16, "steps": 4000, "transient": 200},
                   {"n_samples": 64, "steps": 20000, "transient": 1000}),
}


class LyapunovSpectra(Reproduction):
    """Reference Lyapunov spectra (Lorenz, Hénon, two-factor Chebyshev slice) and Duffing's kinds, checked."""

    name = "lyapunov-spectra"
    description = "Lyapunov spectra by the QR method: Lorenz-63, Henon, two-factor map at mu = 2; Duffing kinds"
    paper = "Benettin et al. (1980); Sprott (2003) reference exponents; DESIGN.md 3.3 (Chebyshev conjugacy)"

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        b = {k: v[0 if self.quick else 1] for k, v in BUDGET.items()}
        self.create_store(out, {"budget": b}, overwrite=overwrite)
        groups = {
            "lorenz": Lyapunov(renorm_every=5, seed=1, **b["lorenz"]).run(Lorenz(), show_progress=show_progress),
            "lorenz_sum": Lyapunov(n_samples=4, dt=0.002, steps=500, transient=100).run(Lorenz()),
            "henon": Lyapunov(seed=1, **b["henon"]).run(Henon(), show_progress=show_progress),
            "two_factor": Lyapunov(manifold="balanced", seed=1, **b["two_factor"]).run(
                TwoFactorMap(), grid(mu=[2.0]), show_progress=show_progress),
            "duffing": Orbits(n_samples=8).run(Duffing(), show_progress=show_progress),
            "duffing_float32": Orbits(n_samples=8, precision="float32").run(Duffing(), show_progress=show_progress),
        }
        for name, ds in groups.items():
            write_group(out, name, ds, consolidated=False)
        return self.claims(groups, self.quick)

    @staticmethod
    def claims(g: dict[str, xr.Dataset], quick: bool) -> list[Claim]:
        tol_lz = 0.02 if quick else 0.01
        lz = g["lorenz"]["mean_exponents"].values
        claims = [Claim(f"lorenz_{i + 1}", f"Lorenz-63 exponent {i + 1} (mean over orbits)", ref, float(got),
                        abs(got - ref) <= tol_lz, f"+-{tol_lz}", "1/time") for i, (ref, got) in enumerate(zip(LORENZ, lz))]
        ky = float(g["lorenz"]["kaplan_yorke_dimension"])
        ky_ref = 2 + LORENZ[0] / -LORENZ[2]
        claims.append(Claim("lorenz_kaplan_yorke", "Lorenz-63 Kaplan-Yorke dimension", ky_ref, ky,
                            abs(ky - ky_ref) <= tol_lz / 10, f"+-{tol_lz / 10:g}"))
        err = float(np.abs(g["lorenz_sum"]["exponent_sum"].values + (10 + 1 + 8 / 3)).max())
        claims.append(Claim("lorenz_sum", "sum of the Lorenz exponents = -(sigma + 1 + beta) (dt = 0.002; max error)",
                            0.0, err, err <= 1e-6, "<= 1e-6", "1/time"))
        he = g["henon"]["mean_exponents"].values
        claims += [Claim(f"henon_{i + 1}", f"Henon exponent {i + 1} (mean over orbits)", ref, float(got),
                         abs(got - ref) <= 0.005, "+-0.005", "1/iteration") for i, (ref, got) in enumerate(zip(HENON, he))]
        err = float(np.abs(g["henon"]["exponent_sum"].values - math.log(0.3)).max())
        claims.append(Claim("henon_sum", "sum of the Henon exponents = ln b (max error)", 0.0, err, err <= 1e-10,
                            "<= 1e-10", "1/iteration"))
        tf = g["two_factor"]["mean_exponents"].sel(mu=2.0).values
        claims.append(Claim("two_factor_ln3", "two-factor map, mu = 2, balanced slice: leading exponent ln 3",
                            math.log(3), float(tf[0]), abs(tf[0] - math.log(3)) <= 0.01, "+-0.01", "1/iteration"))
        claims.append(Claim("two_factor_transverse", "transverse exponent of the slice at mu = 2: <ln|4u^2-1|> = 0",
                            0.0, float(tf[1]), abs(tf[1]) <= 0.03, "+-0.03", "1/iteration"))
        for name, precision in (("duffing", "float64"), ("duffing_float32", "float32")):
            frac = float((g[name]["orbit"] == CONVERGED).mean())
            claims.append(Claim(f"{name}_fixed_points", f"Duffing (delta = 0.3), {precision}: fraction of orbits "
                                "that are fixed points (the two foci)", 1.0, frac, frac == 1.0, "== 1"))
        lam = g["duffing"]["lyapunov"].values
        claims.append(Claim("duffing_exponents", "Duffing foci: exponents -delta/2 (max deviation)", 0.0,
                            float(np.abs(lam + 0.15).max()), bool(np.abs(lam + 0.15).max() <= 0.01), "<= 0.01",
                            "1/time"))
        same = bool(np.array_equal(g["duffing"]["orbit"].values, g["duffing_float32"]["orbit"].values)
                    and (g["duffing_float32"]["outcome"].values == oc.OK).all())
        claims.append(Claim("duffing_float32", "float32 gives the kinds of float64 (Duffing)", 1.0, float(same), same,
                            "equal"))
        return claims

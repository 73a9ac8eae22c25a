"""``dynlearn reproduce two-factor-ellipse``: the Chebyshev ellipse is the separatrix of large-step training.

For the two-factor map ``F_mu(a, b) = (a - mu (ab - 1) b, b - mu (ab - 1) a)`` (DESIGN.md §3.3) and
``0 < mu < 2``, the ellipse ``E_mu: mu s^2 / (4 (2 + mu)) + mu d^2 / (4 (2 - mu)) = 1`` (``s = a + b``,
``d = a - b``) is invariant, the map acts on it as ``theta -> pi - 3 theta``, points strictly inside stay
bounded and points outside diverge. The ``basins`` analyzer, which is not told any of this, is run on a grid of
initial states for several ``mu`` at once; its separatrix points between the diverged basin and the bounded
ones are compared with ``E_mu`` through the normalised radius ``rho = sqrt(level)`` (``rho = 1`` on ``E_mu``;
``|rho - 1|`` is the relative distance to the ellipse along the ray, i.e. a fraction of the semi-axes).

Groups: ``/basins`` (the analyzer's output), ``/ellipse`` (per ``mu``: boundary-point deviations, coverage of
the ellipse, invariance residuals, bounded fraction vs the exact area, label errors), ``/claims``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynlearn import outcome as oc
from dynlearn.reproduce import Claim, Reproduction
from dynlearn.store import write_group
from dynlearn.sweep import grid

from ..analyzers.basins import Basins
from ..systems.two_factor import TwoFactorMap, ellipse_angle, ellipse_axes, ellipse_level, ellipse_point

__all__ = ["EllipseSeparatrix", "ellipse_comparison", "MUS"]

MUS = (0.5, 0.8, 1.0, 1.5, 1.9)
FULL = {"resolution": 256, "max_boundary_points": 512}
QUICK = {"resolution": 96, "max_boundary_points": 128}
#: the issue's bar: boundary within 0.5% of the semi-axes
MAX_DEVIATION = 0.005
MAX_GAP = 0.5  # largest angular gap (rad) between boundary points along E_mu (1/12 of a turn)


def ellipse_comparison(basins: xr.Dataset, n_theta: int = 4096) -> xr.Dataset:
    """Compare a ``basins`` result of the two-factor map (grid over ``(a, b)``, sweep over ``mu``) with E_mu."""
    mus = basins["mu"].values
    tf = TwoFactorMap()
    a, b = basins["a"].values, basins["b"].values
    A_, B_ = np.meshgrid(a, b, indexing="ij")
    X = torch.as_tensor(np.stack([A_, B_], -1))
    ha, hb = (a[1] - a[0]) / 2, (b[1] - b[0]) / 2
    rec: dict[str, list[float]] = {k: [] for k in (
        "max_dev", "mean_dev", "n_points", "max_gap", "invariance", "angle_map", "bounded_fraction",
        "exact_fraction", "grid_bound", "misclassified")}
    theta = torch.linspace(0, 2 * math.pi, n_theta + 1, dtype=torch.float64)[:-1]
    for mu in mus:
        sel = basins.sel(mu=mu)
        on = (sel["boundary_outcome_a"] == oc.DIVERGED).values & ~np.isnan(sel["boundary_state"].values[:, 0])
        pts = torch.as_tensor(sel["boundary_state"].values[on])
        dev = (ellipse_level(pts, mu).sqrt() - 1).abs()
        rec["max_dev"].append(float(dev.max()) if len(dev) else math.inf)
        rec["mean_dev"].append(float(dev.mean()) if len(dev) else math.inf)
        rec["n_points"].append(int(on.sum()))
        th = np.sort(np.mod(ellipse_angle(pts, mu).numpy(), 2 * math.pi))
        gaps = np.diff(np.concatenate([th, th[:1] + 2 * math.pi])) if len(th) else np.array([2 * math.pi])
        rec["max_gap"].append(float(gaps.max()))
        # invariance of E_mu and the Chebyshev angle map theta -> pi - 3 theta
        on_e = ellipse_point(theta, mu)
        img = tf.rhs(on_e, {"mu": torch.tensor(mu, dtype=torch.float64)})
        rec["invariance"].append(float((ellipse_level(img, mu) - 1).abs().max()))
        diff = torch.remainder(ellipse_angle(img, mu) - (math.pi - 3 * theta) + math.pi, 2 * math.pi) - math.pi
        rec["angle_map"].append(float(diff.abs().max()))
        # labels vs the exact partition; bounded fraction vs the exact area
        level = ellipse_level(X, mu).numpy()
        diverged = sel["outcome"].values == oc.DIVERGED
        clear = np.abs(level - 1) > 1e-9
        rec["misclassified"].append(int((diverged != (level > 1))[clear].sum()))
        corners = [ellipse_level(X + torch.tensor([sa * ha, sb * hb], dtype=torch.float64), mu).numpy()
                   for sa in (-1, 1) for sb in (-1, 1)]
        straddle = (np.min(corners, 0) < 1) & (np.max(corners, 0) > 1)
        rec["grid_bound"].append(float(straddle.mean()))
        Aax, Bax = ellipse_axes(float(mu))
        box = (a[-1] - a[0] + 2 * ha) * (b[-1] - b[0] + 2 * hb)
        rec["exact_fraction"].append(math.pi * Aax * Bax / 2 / box)
        rec["bounded_fraction"].append(1.0 - float(sel["diverged_fraction"]))
    attrs = {
        "max_dev": ("max |rho - 1| of the separatrix points on the diverged basin (rho = normalised radius)", "1"),
        "mean_dev": ("mean |rho - 1| of those points", "1"),
        "n_points": ("separatrix points between the diverged basin and a bounded one", "1"),
        "max_gap": ("largest gap in ellipse angle theta between those points", "rad"),
        "invariance": ("max |level(F(x)) - 1| for x on E_mu (invariance residual)", "1"),
        "angle_map": ("max |theta(F(x)) - (pi - 3 theta(x))| on E_mu (mod 2 pi)", "rad"),
        "bounded_fraction": ("fraction of grid samples whose orbit stays bounded", "1"),
        "exact_fraction": ("area of E_mu's interior / area of the box (pi A B / 2 / box)", "1"),
        "grid_bound": ("fraction of grid cells cut by E_mu (bound on the grid quadrature error)", "1"),
        "misclassified": ("grid samples off E_mu (|level - 1| > 1e-9) labelled against the exact partition", "1"),
    }
    return xr.Dataset(
        {k: ("mu", np.asarray(v), {"long_name": attrs[k][0], "units": attrs[k][1]}) for k, v in rec.items()},
        coords={"mu": ("mu", mus, {"long_name": "effective step size mu"})},
    )


class EllipseSeparatrix(Reproduction):
    """The basins analyzer finds the Chebyshev ellipse E_mu as the bounded/divergent separatrix (several mu)."""

    name = "two-factor-ellipse"
    description = "two-factor map: separatrix between bounded and divergent training = Chebyshev ellipse E_mu"
    paper = "dynlearn DESIGN.md §3.3 (two-factor map of a one-prompt linear transformer)"

    def analyzer(self) -> Basins:
        return Basins(**(QUICK if self.quick else FULL))

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        """Recomputes ``out`` if it holds this reproduction with the same settings; another store there is an
        error unless ``overwrite``."""
        an = self.analyzer()
        out = self.create_store(out, {"mu": list(MUS), "basins": an.to_config()}, overwrite=overwrite)
        basins = an.run("two_factor", grid(mu=list(MUS)), show_progress=show_progress)
        comp = ellipse_comparison(basins)
        write_group(out, "basins", basins, consolidated=False)
        write_group(out, "ellipse", comp)
        return self.claims(comp)

    @staticmethod
    def claims(comp: xr.Dataset) -> list[Claim]:
        out = []
        for mu in comp["mu"].values:
            c = comp.sel(mu=mu)
            out.append(Claim(
                f"boundary_on_ellipse_mu={mu:g}",
                f"separatrix points between bounded and divergent orbits lie on E_mu (mu={mu:g}): max |rho - 1| "
                f"over {int(c['n_points'])} points",
                0.0, float(c["max_dev"]), bool(c["max_dev"] <= MAX_DEVIATION and c["n_points"] >= 16),
                f"<= {MAX_DEVIATION} (0.5% of the semi-axes), >= 16 points", "1"))
            out.append(Claim(
                f"boundary_covers_ellipse_mu={mu:g}", f"the separatrix points go all around E_mu (mu={mu:g}): "
                "largest gap in ellipse angle", 0.0, float(c["max_gap"]), bool(c["max_gap"] <= MAX_GAP),
                f"<= {MAX_GAP} rad", "rad"))
            out.append(Claim(
                f"labels_match_ellipse_mu={mu:g}", f"every grid sample inside E_mu stays bounded and every sample "
                f"outside diverges (mu={mu:g}): samples labelled otherwise", 0.0, float(c["misclassified"]),
                bool(c["misclassified"] == 0), "== 0", "1"))
            err = abs(float(c["bounded_fraction"]) - float(c["exact_fraction"]))
            out.append(Claim(
                f"bounded_fraction_mu={mu:g}", f"fraction of the box whose training stays bounded = area of E_mu / "
                f"area of the box (mu={mu:g}); bound = share of grid cells cut by E_mu",
                float(c["exact_fraction"]), float(c["bounded_fraction"]), bool(err <= float(c["grid_bound"])),
                f"|measured - exact| <= {float(c['grid_bound']):.4f}", "1"))
        inv = float(comp["invariance"].max())
        out.append(Claim("ellipse_invariant", "E_mu is invariant: max |level(F(x)) - 1| over x on E_mu, all mu",
                         0.0, inv, inv <= 1e-12, "<= 1e-12", "1"))
        ang = float(comp["angle_map"].max())
        out.append(Claim("chebyshev_angle_map", "on E_mu the map acts as theta -> pi - 3 theta: max residual",
                         0.0, ang, ang <= 1e-9, "<= 1e-9", "rad"))
        return out

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401

        # the /basins group's own views (basin images with E_mu, fractions) are added by the browse page
        out: dict[str, Any] = {}
        if "ellipse" in tree.children:
            e = tree["ellipse"].to_dataset().load()
            mu = e["mu"].values
            out["boundary vs ellipse"] = (
                hv.Curve((mu, e["max_dev"].values), "mu", "|rho - 1|", label="max").opts(logy=True)
                * hv.Curve((mu, e["mean_dev"].values), "mu", "|rho - 1|", label="mean").opts(logy=True)
                * hv.HLine(MAX_DEVIATION).opts(color="red", line_dash="dashed")
            ).opts(title="separatrix points vs E_mu: deviation of the normalised radius (red: 0.5%)", width=700,
                   height=320, legend_position="bottom_right")
        return out

r"""The ghosts of every sweep element, read from a ``fixed_points`` result (private).

The ghosts (``point_type == ghost``) of each sweep element are gathered, in the fixed-point analyzer's order
(by their first coordinate), into padded ``(B, G, ...)`` tensors: the *ghost table*.

Ghost dimension. At a slow point :math:`x_g` (a minimum of :math:`q = |g|^2/2` with :math:`g \ne 0`),
:math:`\nabla q = J^\top g = 0`, so the Jacobian is singular (for maps :math:`J - I`): every ghost has at least
one eigenvalue :math:`0` (maps: :math:`1`). Its *dimension* counts the near-neutral ones — flows:
:math:`|\operatorname{Re}\lambda| \le \mathrm{tol}\cdot s` with the spectrum's scale
:math:`s = \max(\max_j |\lambda_j|, v/w)` (:math:`v` the typical speed of the box, :math:`w` its mean width:
the rate of the flow where the spectrum itself is tiny); maps: :math:`\bigl||\lambda| - 1\bigr| \le
\mathrm{tol}`. A saddle-node ghost has dimension 1; two bottlenecks passed at once make dimension 2.

>>> import torch
>>> lam = torch.tensor([[[complex(0.0, 0), complex(-1.0, 0)], [complex(1e-12, 0), complex(-2e-13, 0)]]])
>>> dimension(lam, "flow", 0.05, torch.tensor([0.1])).tolist()
[[1, 2]]
>>> dimension(torch.tensor([[[complex(1.0, 0), complex(0.5, 0)]]]), "map", 0.05, torch.tensor([1.0])).tolist()
[[1]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from dynlearn.sweep import Batch

from ..fixed_points.classify import CODE
from ..fixed_points.dataset import check_upstream

Tensor = torch.Tensor

__all__ = ["GhostTable", "ghost_table", "dimension", "NEEDS"]

#: variables of the fixed_points result read here
NEEDS = ("position", "present", "point_type", "speed", "eig_real", "eig_imag", "passage_radius", "passage_time_nf",
         "typical_speed")


@dataclass
class GhostTable:
    """Padded ghosts ``(B, G, ...)`` of ``B`` sweep elements (``present`` marks real ones)."""

    present: Tensor
    point: Tensor  # slot in the fixed_points result's point dim (-1: none)
    position: Tensor  # (B, G, d)
    speed: Tensor
    time_nf: Tensor
    passage_radius: Tensor
    dimension: Tensor  # int64, -1 where absent
    typical_speed: Tensor  # (B,)
    lo: np.ndarray  # search box of the fixed points
    hi: np.ndarray

    @property
    def box_scale(self) -> float:
        return float(np.mean(self.hi - self.lo))


def dimension(eig: Tensor, kind: str, tol: float, rate: Tensor) -> Tensor:
    """Number of near-neutral eigenvalues ``(...)`` of ``eig`` ``(..., d)`` (see the module docstring);
    ``rate`` broadcasts against ``eig.shape[:-1]`` (flows: the floor of the spectrum's scale)."""
    if kind == "flow":
        scale = torch.maximum(eig.abs().nan_to_num(0.0).amax(-1), rate.to(eig.real.dtype))
        near = eig.real.abs() <= tol * scale.unsqueeze(-1)
    else:
        near = (eig.abs() - 1).abs() <= tol
    return near.sum(-1)


def _flat(fp: xr.Dataset, var: str, batch: Batch, own: tuple[str, ...]) -> np.ndarray:
    a = fp[var].transpose(*batch.dims, *own)
    return np.asarray(a.values).reshape(batch.size, *[fp.sizes[d] for d in own])


def ghost_table(fp: xr.Dataset, batch: Batch, tol: float) -> GhostTable:
    """The ghost table of ``fp`` for the sweep elements of ``batch`` (one-line :class:`ShapeError` when ``fp`` is no
    fixed_points result of this sweep)."""
    check_upstream(fp, batch, NEEDS, "ghost_network")
    B = batch.size
    present = _flat(fp, "present", batch, ("point",)).astype(bool)
    code = _flat(fp, "point_type", batch, ("point",)).astype(np.int64)
    is_g = torch.as_tensor(present & (code == CODE["ghost"])) & batch.valid.reshape(B, 1).cpu()
    G = max(1, int(is_g.sum(1).max()) if B else 1)
    order = torch.argsort((~is_g).to(torch.int8), dim=1, stable=True)[:, :G]  # ghosts first, fp order kept
    ok = is_g.gather(1, order)

    def pick(var: str, own: tuple[str, ...] = ("point",), fill=np.nan) -> Tensor:
        t = torch.as_tensor(_flat(fp, var, batch, own))
        idx = order.reshape(B, G, *([1] * (t.dim() - 2))).expand(B, G, *t.shape[2:])
        out = t.gather(1, idx)
        mask = ok.reshape(B, G, *([1] * (t.dim() - 2)))
        return torch.where(mask, out, torch.tensor(fill, dtype=out.dtype))

    eig = torch.complex(pick("eig_real", ("point", "eig")), pick("eig_imag", ("point", "eig")))
    lo = np.asarray(fp.attrs.get("bounds_low", batch.system.domain()[0]), dtype=float)
    hi = np.asarray(fp.attrs.get("bounds_high", batch.system.domain()[1]), dtype=float)
    typical = torch.as_tensor(_flat(fp, "typical_speed", batch, ()), dtype=torch.float64)
    rate = typical.nan_to_num(0.0, posinf=0.0) / float(np.mean(hi - lo))
    dim = torch.where(ok, dimension(eig, batch.system.kind, tol, rate.unsqueeze(-1)), -1)
    return GhostTable(
        present=ok, point=torch.where(ok, order, -1), position=pick("position", ("point", "state")),
        speed=pick("speed"), time_nf=pick("passage_time_nf"), passage_radius=pick("passage_radius"),
        dimension=dim, typical_speed=typical, lo=lo, hi=hi)

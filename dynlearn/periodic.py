r"""Periodic (angle) state coordinates: one rule for wrapping, differences and distances.

A System declares its periodic coordinates as ``periodic = {"theta": (-math.pi, math.pi)}``: the coordinate lives
on the circle :math:`[\mathrm{low}, \mathrm{high})` of period :math:`P = \mathrm{high} - \mathrm{low}`. Every
place that compares states (de-duplication of fixed points, attractor identity, the identity matcher across a
sweep, basin templates, ghost visits) goes through these functions, so :math:`\theta^*` and
:math:`\theta^* + 2\pi k` are one point and a rotation (:math:`\theta` growing without bound) is a closed orbit.

The functions take a :class:`Circle` (``Circle.of(system)``) and work on torch tensors and numpy arrays alike;
non-periodic coordinates pass through unchanged.

Examples
--------
>>> import math, numpy as np
>>> c = Circle(low=np.array([-math.pi, np.nan]), period=np.array([2 * math.pi, np.nan]))
>>> wrap(np.array([[3 * math.pi / 2, 5.0]]), c).round(6).tolist()
[[-1.570796, 5.0]]
>>> delta(np.array([3.1, 1.0]), np.array([-3.1, 0.0]), c).round(6).tolist()   # across the cut at +-pi
[-0.083185, 1.0]
>>> float(distance(np.array([math.pi - 0.1, 0.0]), np.array([-math.pi + 0.1, 0.0]), c).round(6))
0.2
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import ParameterError

__all__ = ["Circle", "wrap", "delta", "distance", "check_periodic"]


@dataclass(frozen=True)
class Circle:
    """Per state coordinate: the low end of its interval and its period (``nan`` where not periodic)."""

    low: np.ndarray
    period: np.ndarray

    @property
    def any(self) -> bool:
        """Whether any coordinate is periodic."""
        return bool(np.isfinite(self.period).any())

    @property
    def mask(self) -> np.ndarray:
        """``(d,)`` bool: which coordinates are periodic."""
        return np.isfinite(self.period)

    @classmethod
    def of(cls, system: Any) -> "Circle":
        """The circle of ``system`` (its ``periodic`` declaration, by state name)."""
        names = tuple(system.state_names)
        return cls.from_spec(getattr(system, "periodic", None) or {}, names)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Sequence[float]], names: Sequence[str]) -> "Circle":
        spec = check_periodic(spec, names)
        low = np.full(len(names), np.nan)
        period = np.full(len(names), np.nan)
        for i, n in enumerate(names):
            if n in spec:
                lo, hi = spec[n]
                low[i], period[i] = lo, hi - lo
        return cls(low, period)

    @classmethod
    def none(cls, d: int) -> "Circle":
        """No periodic coordinate in ``d`` dimensions."""
        return cls(np.full(d, np.nan), np.full(d, np.nan))


def check_periodic(spec: Mapping[str, Sequence[float]], names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``spec`` (state name -> ``(low, high)``) validated: known names, finite ``low < high``; one-line
    :class:`~dynlearn.errors.ParameterError` otherwise."""
    out = {}
    for n, iv in dict(spec).items():
        if n not in names:
            raise ParameterError(f"periodic coordinate {n!r} is not a state name; state names: {list(names)}")
        try:
            lo, hi = (float(v) for v in iv)
        except (TypeError, ValueError):
            raise ParameterError(f"periodic coordinate {n!r}: give its interval as (low, high), got {iv!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ParameterError(f"periodic coordinate {n!r}: needs finite low < high, got ({lo}, {hi})")
        out[n] = (lo, hi)
    return out


def _consts(x: Any, circle: Circle):
    if isinstance(x, torch.Tensor):
        lo = torch.as_tensor(np.nan_to_num(circle.low), dtype=x.dtype, device=x.device)
        per = torch.as_tensor(np.nan_to_num(circle.period, nan=1.0), dtype=x.dtype, device=x.device)
        mask = torch.as_tensor(circle.mask, device=x.device)
        return lo, per, mask, torch.where, torch.floor
    return np.nan_to_num(circle.low), np.nan_to_num(circle.period, nan=1.0), circle.mask, np.where, np.floor


def wrap(x: Any, circle: Circle) -> Any:
    """``x (..., d)`` with every periodic coordinate mapped into ``[low, low + period)``."""
    if not circle.any:
        return x
    lo, per, mask, where, floor = _consts(x, circle)
    wrapped = x - per * floor((x - lo) / per)
    return where(mask, wrapped, x)


def delta(a: Any, b: Any, circle: Circle) -> Any:
    """``a - b`` with every periodic component the shortest signed arc, in ``[-period/2, period/2)``."""
    d = a - b
    if not circle.any:
        return d
    _, per, mask, where, floor = _consts(d, circle)
    return where(mask, d - per * floor(d / per + 0.5), d)


def distance(a: Any, b: Any, circle: Circle) -> Any:
    """Euclidean distance over the last axis on the cylinder/torus (broadcasting)."""
    d = delta(a, b, circle)
    if isinstance(d, torch.Tensor):
        return torch.linalg.vector_norm(d, dim=-1)
    return np.linalg.norm(d, axis=-1)

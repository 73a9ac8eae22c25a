"""The sampling box, the samples and the checks of the basins analyzer that depend on the system (private).

Every function takes the analyzer's validated :class:`~dynlearn.params.Settings`; the option-level checks (kinds,
ranges, choices) were done once when the analyzer was made, so only what needs the system or the sweep is checked
here: the bounds against the state dim, the resolution per axis, the tail against the steps, the matched dim.

    >>> from dynlearn.params import Settings
    >>> s = Settings({"sampling": "auto", "resolution": 3, "n_samples": 16, "seed": 0})
    >>> shape, X = samples(s, np.zeros(2), np.ones(2))
    >>> shape, X[:2].tolist()
    ((3, 3), [[0.16666666666666666, 0.16666666666666666], [0.16666666666666666, 0.5]])
"""

from __future__ import annotations

import numpy as np

from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import check_names

__all__ = ["tail_every", "check", "box", "enlarge", "use_grid", "n_samples", "samples", "match_dim", "NO_MATCH"]

OWNER = "analyzer 'basins'"
#: ``match_dim`` value that turns matching off
NO_MATCH = "none"


def _bad(msg: str) -> ParameterError:
    return ParameterError(f"{OWNER}: {msg}")


def tail_every(settings, system) -> int:
    """Steps between recorded tail states: the option, else 1 for maps and ``round(0.5 / dt)`` for flows."""
    if settings.tail_every is not None:
        return int(settings.tail_every)
    return max(1, round(0.5 / settings.dt)) if system.kind == "flow" else 1


def check(settings, system) -> None:
    """The tail must fit in the steps: ``(tail - 1) * tail_every < steps``."""
    span = (settings.tail - 1) * tail_every(settings, system)
    if span >= settings.steps:
        raise _bad(f"steps ({settings.steps}) must exceed (tail - 1) * tail_every = {span}")


def box(settings, system) -> tuple[np.ndarray, np.ndarray]:
    """The sampling box ``(lo, hi)``: ``bounds``, else the system's domain."""
    if settings.bounds is None:
        return system.domain()
    try:
        b = np.asarray(settings.bounds, dtype=float)
    except (TypeError, ValueError):
        raise _bad(f"bounds must be numbers [[lo, hi]] per state coordinate, got {settings.bounds!r}") from None
    if b.shape != (system.state_dim, 2):
        raise ShapeError(f"{OWNER}: bounds must have shape ({system.state_dim}, 2) "
                         f"([[lo, hi]] per state coordinate), got {b.shape}")
    if not np.isfinite(b).all() or not (b[:, 0] < b[:, 1]).all():
        raise _bad(f"bounds must be finite with lo < hi, got {b.tolist()}")
    return b[:, 0].copy(), b[:, 1].copy()


def enlarge(lo: np.ndarray, hi: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box ``(lo, hi)`` enlarged to hold the states ``X`` ``(n, d)`` (the box of the user's states)."""
    return np.minimum(lo, X.min(0)), np.maximum(hi, X.max(0))


def use_grid(settings, d: int) -> bool:
    """Grid sampling (``d <= 3`` under ``"auto"``) or Sobol points."""
    return settings.sampling == "grid" or (settings.sampling == "auto" and d <= 3)


def _resolution(settings, d: int) -> np.ndarray:
    res = settings.resolution if settings.resolution is not None else max(2, round(settings.n_samples ** (1 / d)))
    try:
        res = np.broadcast_to(np.asarray(res), (d,))
    except ValueError:
        raise _bad(f"resolution must be one integer or {d} (one per axis), got {settings.resolution!r}") from None
    if not np.issubdtype(res.dtype, np.integer) or (res < 2).any():
        raise _bad(f"resolution must be integers >= 2, got {settings.resolution!r}")
    return res


def n_samples(settings, d: int) -> int:
    """Number of samples per sweep element (1 where the resolution is invalid: :func:`samples` reports it)."""
    if not use_grid(settings, d):
        return int(settings.n_samples)
    try:
        return int(np.prod(_resolution(settings, d), dtype=np.int64))
    except ParameterError:
        return 1


def samples(settings, lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[int, ...] | None, np.ndarray]:
    """``(grid shape or None, states (S, d))``: a cell-centred grid, scrambled Sobol points, or (``sampling =
    "uniform"``) independent uniform points drawn with ``seed``."""
    d = len(lo)
    if settings.sampling == "uniform":
        return None, lo + np.random.default_rng(settings.seed).random((settings.n_samples, d)) * (hi - lo)
    if not use_grid(settings, d):
        from scipy.stats import qmc

        u = qmc.Sobol(d, scramble=True, seed=settings.seed).random(settings.n_samples)
        return None, lo + u * (hi - lo)
    res = _resolution(settings, d)
    axes = [lo[i] + (np.arange(n) + 0.5) * (hi[i] - lo[i]) / n for i, n in enumerate(res)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    return tuple(int(n) for n in res), pts


def match_dim(settings, dims) -> str | None:
    """The sweep dim along which attractor ids are matched: the option, else ``epoch`` when the sweep has it;
    ``None`` for no matching."""
    dims = list(dims)
    if settings.match_dim is None:
        return "epoch" if "epoch" in dims else None
    if settings.match_dim == NO_MATCH:
        return None
    check_names([settings.match_dim], dims, owner=f"{OWNER}: match_dim: the sweep", what="dim")
    return settings.match_dim

"""Learned / stuck classification of RNN training runs, per network and epoch (labeled data).

Definitions (ghost-mechanism paper, Fig. 4), from the per-epoch training accuracy ``a[e]`` (fraction of the
``2T/dt`` output steps classified correctly, see :class:`~dynlearn_builtins.systems.rnn.LowRankRNN`):

- **stuck at epoch e**: ``a <= threshold`` (0.5) at each of the epochs ``e - window + 1 .. e`` (window 50) — a
  constant output (the no-learning zone) scores exactly 0.5;
- **learned by epoch e**: ``a >= learned_accuracy`` (1: every output step right) at some epoch ``<= e``;
- **left the plateau**: ``a > threshold`` at some epoch — better than a constant output (a looser reading of
  "learned");
- per network: ``learned`` (at some point), ``stuck`` (at the last epoch), their first epochs, and
  ``learned_then_stuck``.

Counts over seeds come with Wilson score intervals (:func:`wilson_interval`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["learning_status", "wilson_interval"]


def wilson_interval(k: np.ndarray | float, n: np.ndarray | float, z: float = 1.959963984540054):
    """Wilson score interval ``(low, high)`` of a binomial proportion ``k/n`` (default 95%).

    The bounds are the roots ``p`` of ``(k/n - p)^2 = z^2 p (1 - p) / n``. The interval always contains the
    observed proportion: ``low = 0`` exactly at ``k = 0`` and ``high = 1`` exactly at ``k = n`` (in floating point
    the closed form leaves ~1e-17 there, which put a lower bound above an observed count of 0), and
    ``low <= k/n <= high`` for every ``0 <= k <= n``. ``n = 0`` (no observation) gives NaN bounds.

    Parameters
    ----------
    k, n
        Successes and trials (arrays broadcast together), ``0 <= k <= n``.
    z
        Standard normal quantile of the two-sided confidence level (default 95%).

    Returns
    -------
    low, high : np.ndarray
        The interval's bounds, in ``[0, 1]``.

    >>> lo, hi = wilson_interval(74, 100)
    >>> round(float(lo), 3), round(float(hi), 3)
    (0.646, 0.816)
    >>> [float(v) for v in wilson_interval(0, 20)][0], [float(v) for v in wilson_interval(20, 20)][1]
    (0.0, 1.0)
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    some = n > 0
    m = np.where(some, n, 1.0)
    p = np.where(some, k / m, np.nan)
    den = 1 + z * z / m
    centre = (p + z * z / (2 * m)) / den
    half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / den
    low = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, p))
    high = np.where(k >= n, 1.0, np.clip(centre + half, p, 1.0))
    return np.where(some, low, np.nan), np.where(some, high, np.nan)


def _first(flag: np.ndarray) -> np.ndarray:
    """Index of the first True along axis 0, -1 where never."""
    return np.where(flag.any(0), flag.argmax(0), -1).astype(np.int64)


def _epoch_of(ep: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.where(idx >= 0, ep[np.maximum(idx, 0)], -1).astype(np.int64)


def learning_status(train: xr.Dataset | xr.DataTree, *, window: int = 50, threshold: float = 0.5,
                    learned_accuracy: float = 1.0, epochs: slice | None = None) -> xr.Dataset:
    """Per network and epoch: stuck / learned flags, and per-network summaries, from ``/train`` ``accuracy``.

    Parameters
    ----------
    train
        A run's ``/train`` group (or the run's tree), with ``accuracy`` over ``(epoch, seed, ...)``.
    window, threshold
        Stuck = accuracy ``<= threshold`` in each of the last ``window`` epochs.
    learned_accuracy
        Learned = accuracy ``>= learned_accuracy`` at some epoch.
    epochs
        Restrict to these epochs (e.g. ``slice(0, 6000)`` for the first phase of a run).

    Returns
    -------
    xr.Dataset
        ``stuck``, ``learned`` (epoch, seed, ...); ``learned_ever``, ``stuck_at_end``, ``learned_then_stuck``,
        ``first_learned_epoch``, ``first_stuck_epoch``, ``left_plateau``, ``final_accuracy`` (seed, ...); and over
        the non-seed dims ``n_networks``, ``n_learned``, ``n_stuck``, ``n_left_plateau`` with Wilson 95% intervals
        of the fractions.

    Examples
    --------
    >>> acc = xr.DataArray(np.array([[0.5, 0.9], [0.5, 1.0], [0.5, 0.5], [0.5, 0.5]]), dims=("epoch", "seed"),
    ...                    coords={"epoch": np.arange(4), "seed": [0, 1]}, name="accuracy")
    >>> st = learning_status(xr.Dataset({"accuracy": acc}), window=2)
    >>> st["stuck"].values.T.astype(int).tolist(), st["learned_ever"].values.tolist()
    ([[0, 1, 1, 1], [0, 0, 0, 1]], [False, True])
    >>> int(st["n_stuck"]), int(st["n_learned"])
    (2, 1)
    """
    if isinstance(train, xr.DataTree):
        train = train["train"].to_dataset() if "train" in train.children else train.to_dataset()
    if "accuracy" not in train.variables:
        raise KeyError("learning_status needs a per-epoch 'accuracy' record (an rnn training run)")
    acc = train["accuracy"]
    if epochs is not None:
        acc = acc.isel(epoch=epochs)
    acc = acc.transpose("epoch", ...).load()
    a = np.asarray(acc.values, dtype=float)
    E = a.shape[0]
    low = (a <= threshold).astype(np.int64)  # NaN (uncommitted epochs) counts as not low
    csum = np.cumsum(low, axis=0)
    prev = np.concatenate([np.zeros((window,) + a.shape[1:], dtype=np.int64), csum[:-window]], 0)[:E] \
        if window <= E else np.zeros_like(csum)
    stuck = (csum - prev) >= window
    hit = a >= learned_accuracy
    learned = np.maximum.accumulate(hit, axis=0)
    dims = acc.dims
    ep = np.asarray(acc["epoch"].values)
    net_dims = dims[1:]
    coords = {k: v for k, v in acc.coords.items() if "epoch" not in v.dims or k == "epoch"}
    net_coords = {k: v for k, v in acc.coords.items() if "epoch" not in v.dims}
    ds = xr.Dataset(
        {
            "stuck": (dims, stuck, {"long_name": f"stuck: training accuracy <= {threshold:g} in each of the last "
                                                 f"{window} epochs"}),
            "learned": (dims, learned, {"long_name": f"learned by this epoch: training accuracy reached "
                                                     f">= {learned_accuracy:g}"}),
            "learned_ever": (net_dims, learned[-1], {"long_name": "learned the task at some epoch"}),
            "stuck_at_end": (net_dims, stuck[-1], {"long_name": f"stuck over the last {window} epochs"}),
            "learned_then_stuck": (net_dims, learned[-1] & stuck[-1],
                                   {"long_name": "learned at some epoch, then ended stuck"}),
            "first_learned_epoch": (net_dims, _epoch_of(ep, _first(hit)),
                                    {"long_name": f"first epoch with training accuracy >= {learned_accuracy:g} "
                                                  "(-1: never)", "units": "epoch"}),
            "first_stuck_epoch": (net_dims, _epoch_of(ep, _first(stuck)),
                                  {"long_name": "first epoch at which the network was stuck (-1: never)",
                                   "units": "epoch"}),
            "left_plateau": (net_dims, (a > threshold).any(0),
                             {"long_name": f"training accuracy > {threshold:g} at some epoch (better than a constant "
                                           "output)"}),
            "final_accuracy": (net_dims, a[-1], {"long_name": "training accuracy at the last epoch", "units": "1"}),
        },
        coords=coords,
    )
    ds = ds.assign_coords(net_coords)
    if "seed" in net_dims:
        n = ds.sizes["seed"]
        for key, var, what in (("learned", "learned_ever", "learned at some epoch"),
                               ("stuck", "stuck_at_end", "stuck at the end"),
                               ("left_plateau", "left_plateau", "left the constant-output plateau at some epoch")):
            k = ds[var].sum("seed")
            lo, hi = wilson_interval(k.values, n)
            ds[f"n_{key}"] = k.assign_attrs(long_name=f"number of networks that {what}", units="1")
            ds[f"fraction_{key}_low"] = (k.dims, np.asarray(lo), {"long_name": f"Wilson 95% lower bound of the "
                                                                              f"fraction {what}", "units": "1"})
            ds[f"fraction_{key}_high"] = (k.dims, np.asarray(hi), {"long_name": f"Wilson 95% upper bound of the "
                                                                                f"fraction {what}", "units": "1"})
        ds["n_networks"] = ((), n, {"long_name": "networks (seeds) per hyper-parameter combination", "units": "1"})
    ds.attrs.update(window=window, threshold=threshold, learned_accuracy=learned_accuracy)
    return ds

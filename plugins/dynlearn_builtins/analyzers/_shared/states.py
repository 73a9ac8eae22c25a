"""User-given states for the analyzers that sample states (fixed points, basins, separatrices, ghosts).

An analyzer declares an array option (``Param(None, kind="array", nullable=True, ...)``, validated by
:func:`dynlearn.params.check_array`) and turns its value into a batch of states with :func:`user_states`:

- an array of shape ``(sample, state)`` (numpy, torch, nested lists; one state ``(state,)`` is one sample) is used
  for every sweep element;
- an ``xarray.DataArray`` with dims ``(some sweep dims..., "sample", "state")`` gives states per sweep element: its
  sweep dims are matched to the batch's by coordinate values (by position where either has no coordinate) and
  it is broadcast over the sweep dims it lacks; a ``state`` coordinate (state names) is matched to the system's
  state names; without a ``sample`` dim it is one state per element.

Gaussian noise of standard deviation ``noise`` (absolute: the state's own units, the same for every coordinate)
is added to every state, drawn from ``generator``.

Examples
--------
>>> import numpy as np, xarray as xr, dynlearn
>>> from dynlearn.sweep import flatten, grid
>>> system = dynlearn.get_system("two_factor")()
>>> batch = flatten(system, grid(mu=[0.8, 1.2]))
>>> user_states([[0.5, 2.0], [1.0, 1.0], [2.0, 0.5]], batch, system).shape
torch.Size([2, 3, 2])
>>> per_mu = xr.DataArray(np.zeros((2, 1, 2)), dims=("mu", "sample", "state"), coords={"mu": [1.2, 0.8]})
>>> user_states(per_mu + per_mu.mu, batch, system)[:, 0, 0].tolist()   # matched by mu value
[0.8, 1.2]
>>> user_states(np.zeros((3, 5)), batch, system)
Traceback (most recent call last):
...
dynlearn.errors.ShapeError: initial_states: 5 values per state; system 'two_factor' has 2 state coordinates (a, b)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import Param, check_array
from dynlearn.sweep import Batch

__all__ = ["user_states", "state_options"]

SAMPLE, STATE = "sample", "state"


def user_states(value: Any, batch: Batch, system, *, noise: float = 0.0, generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
                name: str = "initial_states") -> torch.Tensor:
    """User states ``(B, S, d)`` for the ``B`` sweep elements of ``batch``, plus Gaussian noise.

    Parameters
    ----------
    value
        ``(S, d)`` array-like used for every sweep element (``(d,)``: one state), or a DataArray with dims
        ``(some sweep dims..., "sample", "state")`` (``sample`` optional) aligned to the batch's sweep elements.
    batch, system
        The flattened sweep and its System (state dim and names).
    noise
        Standard deviation of the Gaussian noise added to every coordinate of every state, in the states' own
        units (absolute, not relative to a box); ``0``: the states as given.
    generator
        Random generator of the noise (reproducible runs pass the analyzer's seeded generator).
    dtype, device
        Of the returned tensor.
    name
        The option's name, used in error messages.

    Returns
    -------
    torch.Tensor
        ``(B, S, d)``.

    Raises
    ------
    ShapeError
        Wrong state dim or names, a DataArray dim that is not a sweep dim / ``sample`` / ``state``, a sweep dim
        whose size or coordinate values do not match the batch's.
    ParameterError
        Non-numeric, NaN or infinite values; a negative or non-finite ``noise``.
    """
    arr = check_array(value, name)
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ParameterError(f"{name}: noise must be a finite number >= 0, got {noise!r}")
    d = system.state_dim
    if isinstance(arr, xr.DataArray):
        states = _aligned(arr, batch, system, name)
    else:
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise ShapeError(f"{name}: an array of shape (sample, state) = (S, {d}) is used for every sweep element, "
                             f"got shape {arr.shape} (give per-element states as a DataArray with dims "
                             f"(sweep dims..., 'sample', 'state'))")
        _check_width(arr.shape[1], system, name)
        states = np.broadcast_to(arr, (batch.size, *arr.shape))
    out = torch.as_tensor(np.array(states, dtype=np.float64), dtype=dtype).to(device)  # a writable copy
    if noise:
        out = out + noise * torch.randn(out.shape, generator=generator, dtype=dtype).to(device)
    return out


def _check_width(width: int, system, name: str) -> None:
    if width != system.state_dim:
        raise ShapeError(f"{name}: {width} values per state; system {system.name!r} has {system.state_dim} state "
                         f"coordinates ({', '.join(system.state_names)})")


def _aligned(arr: xr.DataArray, batch: Batch, system, name: str) -> np.ndarray:
    """A DataArray ``(sweep dims..., sample, state)`` as ``(B, S, d)`` aligned to the batch's sweep elements."""
    dims = [str(dim) for dim in arr.dims]
    if STATE not in dims:
        raise ShapeError(f"{name}: a DataArray of states needs a {STATE!r} dim, its dims are {tuple(dims)}")
    sweep = [dim for dim in dims if dim not in (SAMPLE, STATE)]
    unknown = [dim for dim in sweep if dim not in batch.dims]
    if unknown:
        raise ShapeError(f"{name}: dim {unknown[0]!r} is neither a sweep dim {tuple(batch.dims)} nor "
                         f"{SAMPLE!r} / {STATE!r}")
    _check_width(arr.sizes[STATE], system, name)
    if STATE in arr.coords:
        names = [str(v) for v in arr[STATE].values]
        if sorted(names) != sorted(system.state_names):
            raise ShapeError(f"{name}: state names {names} are not the system's {list(system.state_names)}")
        arr = arr.isel({STATE: [names.index(n) for n in system.state_names]})
    for dim in sweep:
        arr = arr.isel({dim: _positions(arr, dim, batch, name)})
    if SAMPLE not in dims:
        arr = arr.expand_dims(SAMPLE)
    order = [dim for dim in batch.dims if dim in sweep]
    data = arr.transpose(*order, SAMPLE, STATE).values
    S = data.shape[-2]
    shape = [batch.shape[i] if dim in sweep else 1 for i, dim in enumerate(batch.dims)]
    data = np.broadcast_to(data.reshape(*shape, S, system.state_dim), (*batch.shape, S, system.state_dim))
    return data.reshape(batch.size, S, system.state_dim)


def _positions(arr: xr.DataArray, dim: str, batch: Batch, name: str) -> np.ndarray:
    """Index of ``arr`` along ``dim`` for each of the batch's positions on it (by coordinate value if both
    have one, else by position)."""
    n = batch.shape[batch.dims.index(dim)]
    if dim in batch.coords and dim in arr.coords:
        want = np.asarray(batch.coords[dim][1])
        have = np.asarray(arr[dim].values)
        numeric = np.issubdtype(want.dtype, np.number) and np.issubdtype(have.dtype, np.number)
        same = np.isclose(want[:, None], have[None, :], rtol=1e-9, atol=0) if numeric else want[:, None] == have[None, :]
        missing = ~same.any(1)
        if missing.any():
            raise ShapeError(f"{name}: no states for {dim}={want[missing][0].item()!r} (the DataArray's {dim} values: "
                             f"{have.tolist()})")
        return same.argmax(1)
    if arr.sizes[dim] != n:
        raise ShapeError(f"{name}: dim {dim!r} has size {arr.sizes[dim]}, the sweep has {n}")
    return np.arange(n)


def state_options(use: str = "in addition to the sampled ones") -> dict[str, Param]:
    """The two options of every analyzer that takes the user's states: ``initial_states`` (an array option,
    read with :func:`user_states`) and ``initial_noise``; ``use`` says what the analyzer does with them."""
    return {
        "initial_states": Param(None, kind="array", nullable=True,
                                description=f"your states, {use}: (sample, state) for every sweep element, or a "
                                            "DataArray (sweep dims..., sample, state)"),
        "initial_noise": Param(0.0, low=0, description="Gaussian noise added to initial_states (standard deviation)",
                               units="state units"),
    }

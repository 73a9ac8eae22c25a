"""Sweeps: between labeled parameter grids (xarray) and flat torch batches.

Every analyzer is vectorised over the sweep dims it is given (``epoch``, ``seed``, hyper-parameters, a
parameter grid): :func:`flatten` turns a parameter Dataset into one batch dim ``B`` of tensors, and
:meth:`Batch.to_xarray` turns per-batch results back into labeled arrays with every sweep dim restored.

    >>> import numpy as np, dynlearn
    >>> sys = dynlearn.get_system("saddle_node")()
    >>> b = flatten(sys, grid(r=np.linspace(-1, 1, 5)))
    >>> b.size, b.dims, tuple(b.params["r"].shape)
    (5, ('r',), (5,))
    >>> b.to_xarray(b.params["r"] ** 2, name="r2").sel(r=1.0).item()
    1.0
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from .errors import ParameterError, ShapeError
from .params import check_names
from .system import System

__all__ = ["grid", "Batch", "flatten"]


def grid(**axes: Sequence[float] | np.ndarray) -> xr.Dataset:
    """A parameter grid: a coords-only Dataset with one dim per named axis (outer product).

    >>> grid(mu=[0.5, 1.0], r=[0.1]).sizes
    Frozen({'mu': 2, 'r': 1})
    """
    coords = {}
    for name, values in axes.items():
        arr = np.atleast_1d(np.asarray(values, dtype=float))
        if arr.ndim != 1:
            raise ShapeError(f"grid axis {name!r} must be 1-D, got shape {arr.shape}")
        coords[name] = (name, arr)
    return xr.Dataset(coords=coords)


@dataclass
class Batch:
    """A sweep flattened to one batch dim.

    Attributes
    ----------
    system
        The System the parameters belong to.
    dims, shape
        Sweep dims (in order) and their sizes; ``size = prod(shape)``.
    coords
        Coordinates that live on sweep dims only (index coords and e.g. ``lr`` on ``epoch``-less dims).
    params
        Parameter tensors, each ``(B, *event_shape)``.
    valid
        ``(B,)`` bool: False where a parameter was NaN/inf (those entries hold the system's defaults so
        computations stay finite; analyzers mask their results with it).
    given
        The parameters the sweep supplied (the others hold the system's own values), each with the sweep dims
        it varies over (``()``: one value for the whole batch).
    """

    system: System
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    coords: dict[str, xr.DataArray]
    params: dict[str, torch.Tensor]
    valid: torch.Tensor
    given: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def system_config(self, max_values: int = 1000) -> dict[str, Any]:
        """The system's config with the batch's parameter values: what an analyzer result records.

        A parameter the sweep gave one value replaces the system's own; a swept one is taken out of the config
        and listed under ``"sweep"``: ``{"parameters": {name: [sweep dims]}, "dims": {dim: values}}`` (a dim's
        coordinate values, or ``{"size", "min", "max"}`` beyond ``max_values`` values or without numbers).

        >>> import dynlearn
        >>> tf = dynlearn.get_system("two_factor")()
        >>> flatten(tf, grid(mu=[0.8, 1.2])).system_config()
        {'name': 'two_factor', 'sweep': {'parameters': {'mu': ['mu']}, 'dims': {'mu': [0.8, 1.2]}}}
        >>> flatten(tf, {"mu": 1.1}).system_config()
        {'name': 'two_factor', 'mu': 1.1}
        """
        config = self.system.to_config()
        swept = {name: list(dims) for name, dims in self.given.items() if dims}
        for name, dims in self.given.items():
            if dims:
                config.pop(name, None)
            elif self.size:
                config[name] = self.params[name][0].tolist()
        if not swept:
            return config
        used = [d for d in self.dims if any(d in dims for dims in swept.values())]
        config["sweep"] = {"parameters": swept, "dims": {d: self._dim_values(d, max_values) for d in used}}
        return config

    def _dim_values(self, dim: str, max_values: int) -> Any:
        n = self.shape[self.dims.index(dim)]
        values = np.asarray(self.coords[dim][1]) if dim in self.coords else np.arange(n)
        if n <= max_values:
            return values.tolist()
        if not np.issubdtype(values.dtype, np.number):
            return {"size": n}
        return {"size": n, "min": values.min().item(), "max": values.max().item()}

    def chunks(self, max_size: int) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
        """Iterate ``(slice, params)`` over consecutive pieces of at most ``max_size`` batch entries."""
        for start in range(0, self.size, max(1, int(max_size))):
            sl = slice(start, min(start + max_size, self.size))
            yield sl, {k: v[sl] for k, v in self.params.items()}

    def to_xarray(
        self,
        data: torch.Tensor | np.ndarray,
        dims: Sequence[str] = (),
        *,
        name: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        coords: Mapping[str, Any] | None = None,
    ) -> xr.DataArray:
        """Labeled array from per-batch ``data`` of shape ``(B, *rest)``; ``dims`` names the ``rest`` dims."""
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        data = np.asarray(data)
        if data.shape[:1] != (self.size,) or data.ndim != 1 + len(dims):
            raise ShapeError(
                f"result {name or ''} has shape {data.shape}; expected ({self.size}, ...) with dims {tuple(dims)}"
            )
        out = xr.DataArray(
            data.reshape((*self.shape, *data.shape[1:])),
            dims=(*self.dims, *dims),
            coords={**self.coords, **(coords or {})},
            name=name,
            attrs=dict(attrs or {}),
        )
        return out


def flatten(
    system: System,
    params: xr.Dataset | Mapping[str, Any] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    on_nan: str = "raise",
    strict: bool = True,
) -> Batch:
    """Flatten a parameter Dataset for ``system`` into a :class:`Batch`.

    Parameters
    ----------
    system
        Supplies the parameter declarations and the values of parameters the Dataset does not hold.
    params
        A Dataset (or mapping) whose variables/coords named like the system's parameters hold their values over
        sweep dims (and the parameters' own dims). ``None``: a single point, no sweep dims.
    on_nan
        ``"raise"``: a NaN/inf parameter is a :class:`~dynlearn.errors.ParameterError` naming where it is;
        ``"mask"``: such entries get ``valid=False`` (training runs where a network diverged).
    strict
        Every name in ``params`` must be a parameter of ``system`` or a dim a given parameter varies over (or a
        parameter's own dim): any other (a misspelled grid axis) is a :class:`~dynlearn.errors.ParameterError`
        naming the parameters, instead of a sweep dim silently dropped. ``False`` for the parameter Dataset of a
        training run, which may carry other variables (a trainable's ``dynamics_dataset``).
    """
    if params is None:
        params = xr.Dataset()
    if isinstance(params, Mapping) and not isinstance(params, xr.Dataset):
        try:
            params = xr.Dataset({k: xr.DataArray(np.asarray(v)) if np.ndim(v) == 0 else v for k, v in params.items()})
        except ValueError as exc:
            raise ShapeError(f"parameters do not fit together: {exc}") from None
    if not isinstance(params, xr.Dataset):
        raise ShapeError(f"parameters must be an xarray Dataset or a mapping, got {type(params).__name__}")

    event_dims = {d for decl in system.parameters.values() for d in decl.shape}
    sizes = system.dim_sizes()
    arrays: dict[str, xr.DataArray] = {}
    for name in system.parameters:
        if name in params.variables:
            arr = params[name]
            if not np.issubdtype(arr.dtype, np.number):
                raise ParameterError(f"parameter {name!r} must be numeric, got dtype {arr.dtype}")
            for d in system.parameters[name].shape:
                if d in arr.dims and arr.sizes[d] != sizes.get(d):
                    raise ShapeError(f"parameter {name!r}: dim {d!r} has size {arr.sizes[d]}, expected {sizes.get(d)}")
            arrays[name] = arr
    sweep_dims: list[str] = []
    for arr in arrays.values():
        for d in arr.dims:
            if d not in event_dims and d not in sweep_dims:
                sweep_dims.append(d)
    if strict:
        check_names(_names(params, event_dims, sweep_dims), system.parameters,
                    owner=f"system {system.name or type(system).__name__!r}")
    shape = []
    for d in sweep_dims:
        sz = {arr.sizes[d] for arr in arrays.values() if d in arr.dims}
        if len(sz) > 1:
            raise ShapeError(f"sweep dim {d!r} has conflicting sizes {sorted(sz)}")
        shape.append(sz.pop())
    B = int(np.prod(shape, dtype=np.int64))

    defaults = system.param_tensors(dtype=dtype, device=device)
    tensors: dict[str, torch.Tensor] = {}
    valid = torch.ones(B, dtype=torch.bool, device=device)
    for name, decl in system.parameters.items():
        ev = system.event_shape(name)
        if name not in arrays:
            tensors[name] = defaults[name].expand((B, *ev))
            continue
        arr = arrays[name]
        missing = [d for d in (*sweep_dims, *decl.shape) if d not in arr.dims]
        for d in missing:
            n = sizes[d] if d in decl.shape else shape[sweep_dims.index(d)]
            arr = arr.expand_dims({d: n})
        values = np.asarray(arr.transpose(*sweep_dims, *decl.shape).values, dtype=float).reshape(B, *ev)
        if not values.flags.writeable:  # read-only views (broadcast coords, zarr) cannot be shared with torch
            values = values.copy()
        t = torch.as_tensor(values, dtype=dtype, device=device)
        bad = ~torch.isfinite(t).reshape(B, -1).all(dim=1)
        if bad.any():
            if on_nan == "raise":
                where = np.unravel_index(int(bad.nonzero()[0][0]), shape) if shape else ()
                loc = ", ".join(f"{d}={params[d].values[i] if d in params.coords else i}" for d, i in zip(sweep_dims, where))
                raise ParameterError(f"parameter {name!r} is NaN or infinite" + (f" at {loc}" if loc else ""))
            t = torch.where(bad.reshape(B, *([1] * len(ev))), defaults[name].expand(B, *ev), t)
            valid &= ~bad
        tensors[name] = t
    for name, decl in system.parameters.items():
        # range checks on the finite entries (mu out of range, negative T, ...)
        from .params import check_value

        check_value(name, tensors[name][valid], decl)

    coords: dict[str, xr.DataArray] = {}
    for cname, c in params.coords.items():
        if set(c.dims) <= set(sweep_dims) and c.dims:
            coords[cname] = c.variable if cname in sweep_dims else c
    coords = {k: (v.dims, np.asarray(v.values), v.attrs) for k, v in coords.items()}
    given = {name: tuple(d for d in arr.dims if d in sweep_dims) for name, arr in arrays.items()}
    return Batch(system, tuple(sweep_dims), tuple(shape), coords, tensors, valid, given)


def _names(params: xr.Dataset, event_dims: set[str], sweep_dims: list[str]) -> list[str]:
    """The names a sweep gives: its data variables, and its dims that are no parameter's sweep or own dim."""
    return [*params.data_vars, *(d for d in params.dims if d not in event_dims and d not in sweep_dims)]

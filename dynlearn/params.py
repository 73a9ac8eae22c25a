"""Parameter declarations shared by Systems, Tasks and hyper-parameters."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ParameterError, UnknownNameError, did_you_mean

__all__ = ["Param", "Settings", "check_names", "check_value", "resolve_values", "resolve_options", "init_options",
           "check_array", "array_summary"]


@dataclass(frozen=True)
class Param:
    """Declaration of one named parameter.

    Parameters
    ----------
    default
        Default value (a number, or an array of the declared ``shape``); ``None`` means required.
    shape
        Names of the parameter's own dims (``()`` for a scalar, ``("neuron",)`` for a vector, ...). Their
        sizes come from the owner's ``dim_sizes()``.
    description, units
        Become the ``long_name`` / ``units`` attrs of the stored variable.
    low, high, low_inclusive, high_inclusive
        Allowed range; values outside it raise :class:`~dynlearn.errors.ParameterError`.

    Examples
    --------
    >>> mu = Param(0.5, description="effective step size", low=0, low_inclusive=False)
    >>> check_value("mu", 0.5, mu)
    >>> check_value("mu", -1.0, mu)
    Traceback (most recent call last):
    ...
    dynlearn.errors.ParameterError: parameter 'mu' must be > 0, got -1.0
    """

    default: Any = None
    shape: tuple[str, ...] = ()
    description: str = ""
    units: str = ""
    low: float = -math.inf
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True
    #: for options (:func:`resolve_options`): ``"number"``, ``"int"``, ``"bool"``, ``"str"``, ``"list"``, ``"array"``
    #: (a numeric array: see :func:`check_array`) or ``"any"``
    kind: str = "number"
    #: allowed values (options of kind ``"str"``, or any kind)
    choices: tuple[Any, ...] = ()
    #: ``None`` is a valid value of the option (it then means "automatic": see the description)
    nullable: bool = False

    def range_text(self) -> str:
        parts = []
        if self.low > -math.inf:
            parts.append(f"{'>=' if self.low_inclusive else '>'} {self.low:g}")
        if self.high < math.inf:
            parts.append(f"{'<=' if self.high_inclusive else '<'} {self.high:g}")
        return " and ".join(parts) or "finite"

    def attrs(self, name: str = "") -> dict[str, str]:
        """``long_name`` (the description, else ``name``) and ``units`` attrs of the labeled variable."""
        out = {"long_name": self.description or name} if (self.description or name) else {}
        if self.units:
            out["units"] = self.units
        return out


def check_value(name: str, value: Any, decl: Param) -> None:
    """Raise :class:`ParameterError` (one line) if ``value`` is not numeric, NaN, or outside ``decl``'s range."""
    try:
        arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(f"parameter {name!r} must be a number, got {type(value).__name__} {value!r}") from None
    if np.isnan(arr).any():
        raise ParameterError(f"parameter {name!r} is NaN")
    lo_bad = arr < decl.low if decl.low_inclusive else arr <= decl.low
    hi_bad = arr > decl.high if decl.high_inclusive else arr >= decl.high
    bad = lo_bad | hi_bad
    if bad.any():
        shown = arr if arr.ndim == 0 else arr[bad].ravel()[0]
        raise ParameterError(f"parameter {name!r} must be {decl.range_text()}, got {float(shown)!r}")
    if np.isinf(arr).any():
        raise ParameterError(f"parameter {name!r} is infinite")


def check_names(
    given: Iterable[str], valid: Iterable[str], *, owner: str, what: str = "parameter", key: str = ""
) -> None:
    """Raise :class:`~dynlearn.errors.UnknownNameError` if a name in ``given`` is not in ``valid``.

    The one check of every name a user gives (system parameters, sweep and grid axes, hyper-parameters,
    analyzer options): the message names the first unknown name (in the given order), lists the valid ones and suggests
    the closest (:func:`~dynlearn.errors.did_you_mean`).

    Parameters
    ----------
    given, valid
        The names given and the names declared (listed in the message in this order).
    owner
        Who lacks the name, e.g. ``"system 'two_factor'"``.
    what
        What kind of name it is (``"parameter"``, ``"hyper-parameter"``, ``"option"``); the message adds "s".
    key
        Prefix of an experiment-file key (``"sweep"`` gives ``"sweep.m: ..."``).

    Examples
    --------
    >>> check_names(["m"], ["mu"], owner="system 'two_factor'")
    Traceback (most recent call last):
    ...
    dynlearn.errors.UnknownNameError: system 'two_factor' has no parameter 'm'; ...; did you mean 'mu'?
    """
    valid = list(valid)
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    bad = unknown[0]
    where = f"{key}.{bad}: " if key else ""
    names = ", ".join(valid) or "(none)"
    raise UnknownNameError(f"{where}{owner} has no {what} {bad!r}; its {what}s are: {names}{did_you_mean(bad, valid)}")


def resolve_values(owner: str, decls: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, unknown names and missing required values rejected, every value checked."""
    check_names(given, decls, owner=owner)
    out: dict[str, Any] = {}
    for name, decl in decls.items():
        value = given.get(name, decl.default)
        if value is None:
            raise ParameterError(f"{owner} needs a value for parameter {name!r} ({decl.description or 'no default'})")
        if isinstance(value, bool) or (isinstance(value, str)):
            raise ParameterError(f"parameter {name!r} of {owner} must be a number, got {value!r}")
        check_value(name, value, decl)
        out[name] = value
    return out


_KINDS = {
    "number": (int, float, np.integer, np.floating),
    "int": (int, np.integer),
    "bool": (bool, np.bool_),
    "str": (str,),
    "list": (list, tuple, np.ndarray),
}


def check_option(owner: str, name: str, value: Any, decl: Param) -> Any:
    """``value`` of option ``name`` checked against ``decl`` (kind, choices, range); one-line
    :class:`ParameterError` otherwise. Returns the value (a tuple/list kept as a list)."""
    if value is None:
        if decl.nullable:
            return None
        raise ParameterError(f"{owner}: option {name!r} needs a value ({decl.description or decl.kind})")
    if decl.kind == "array":
        return check_array(value, f"{owner}: option {name!r}")
    if decl.choices and value not in decl.choices:
        raise ParameterError(f"{owner}: option {name!r} must be one of {', '.join(map(repr, decl.choices))}, "
                             f"got {value!r}{did_you_mean(str(value), decl.choices)}")
    kinds = _KINDS.get(decl.kind)
    bad_bool = isinstance(value, (bool, np.bool_)) and decl.kind in ("number", "int")
    if kinds is not None and (not isinstance(value, kinds) or bad_bool):
        raise ParameterError(f"{owner}: option {name!r} must be {_KIND_TEXT[decl.kind]}, got {value!r}")
    if decl.kind in ("number", "int"):
        try:
            check_value(name, value, decl)  # NaN, infinite, out of range
        except ParameterError as exc:
            raise ParameterError(f"{owner}: {str(exc).replace('parameter', 'option', 1)}") from None
    if isinstance(value, tuple):
        value = list(value)
    return value


_KIND_TEXT = {"number": "a number", "int": "an integer", "bool": "true or false", "str": "a string",
              "list": "a list"}


def check_array(value: Any, what: str = "array") -> "np.ndarray | Any":
    """A numeric array option checked: finite real numbers, not empty; one-line :class:`ParameterError` otherwise.

    Accepts an ``xarray.DataArray`` (returned as given, integers as float64: its dims and coords say what the
    numbers are), a torch tensor, a numpy array, nested lists or a number (returned as a float64 numpy array).

    Examples
    --------
    >>> check_array([[0.0, 1.0], [2.0, 3.0]]).shape
    (2, 2)
    >>> check_array([[0.0, float("nan")]], "option 'initial_states'")
    Traceback (most recent call last):
    ...
    dynlearn.errors.ParameterError: option 'initial_states' has 1 NaN or infinite value (first at index (0, 1))
    >>> check_array([[0.0], [1.0, 2.0]], "option 'initial_states'")
    Traceback (most recent call last):
    ...
    dynlearn.errors.ParameterError: option 'initial_states' must be a numeric array (array, tensor, nested lists or DataArray), got a ragged or non-numeric list
    """
    import xarray as xr

    data = value.data if isinstance(value, xr.DataArray) else value
    if hasattr(data, "detach"):  # a torch tensor
        data = data.detach().cpu().numpy()
    if isinstance(data, (str, bytes, Mapping)) or isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{what} must be a numeric array (array, tensor, nested lists or DataArray), "
                             f"got {type(value).__name__}")
    try:
        arr = np.asarray(data)
        if arr.dtype.kind not in "iufO":  # not bools, complex numbers or strings
            raise TypeError
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        got = "a ragged or non-numeric list" if isinstance(value, (list, tuple)) else \
            f"{type(value).__name__} of dtype {getattr(data, 'dtype', '?')}"
        raise ParameterError(f"{what} must be a numeric array (array, tensor, nested lists or DataArray), "
                             f"got {got}") from None
    if arr.size == 0:
        raise ParameterError(f"{what} is empty (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        n = int(bad.sum())
        raise ParameterError(f"{what} has {n} NaN or infinite value{'s' if n > 1 else ''} (first at index {where})")
    if isinstance(value, xr.DataArray):
        return value if value.dtype == arr.dtype else value.copy(data=arr)
    return arr


def array_summary(value: Any) -> dict[str, Any] | None:
    """What a config records of an array option: ``{"shape", "dims", "sha256"}`` instead of the numbers.

    The digest covers the float64 values, the shape, and for a DataArray its dims and coordinates, so two
    configs with the same summary were given the same array.

    >>> array_summary(np.zeros((2, 3)))["shape"]
    [2, 3]
    """
    if value is None:
        return None
    import xarray as xr

    arr = check_array(value)
    da = value if isinstance(arr, xr.DataArray) else None
    data = np.ascontiguousarray(np.asarray(arr, dtype=np.float64))
    dims = [str(d) for d in da.dims] if da is not None else None
    h = hashlib.sha256(json.dumps({"shape": list(data.shape), "dims": dims}).encode())
    h.update(data.tobytes())
    if da is not None:
        for name in sorted(map(str, da.coords)):
            c = da.coords[name]
            h.update(json.dumps([name, [str(d) for d in c.dims], np.asarray(c.values).astype(str).tolist()]).encode())
    return {"shape": list(data.shape), "dims": dims, "sha256": h.hexdigest()}


class Settings(Mapping):
    """The validated options of an analyzer: a frozen mapping with attribute access (``s.n_starts``).

    Helpers receive it instead of the analyzer; :meth:`replace` gives a changed copy.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Settings are frozen; use replace(...)")

    def replace(self, **changes: Any) -> "Settings":
        return Settings({**self._values, **changes})

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def resolve_options(owner: str, decls: Mapping[str, Param], given: Mapping[str, Any]) -> Settings:
    """Options validated once: unknown names rejected (with a did-you-mean), defaults filled in, every value
    checked against its :class:`Param` (kind, choices, range, ``nullable``).

    Examples
    --------
    >>> decls = {"n_starts": Param(64, kind="int", low=1, description="starting states"),
    ...          "method": Param("rk4", kind="str", choices=("rk4", "dopri5"))}
    >>> resolve_options("analyzer 'x'", decls, {"n_starts": 8}).n_starts
    8
    >>> resolve_options("analyzer 'x'", decls, {"methd": "rk4"})
    Traceback (most recent call last):
    ...
    dynlearn.errors.UnknownNameError: analyzer 'x' has no option 'methd'; its options are: n_starts, method; did you mean 'method'?
    >>> resolve_options("analyzer 'x'", decls, {"n_starts": 0})
    Traceback (most recent call last):
    ...
    dynlearn.errors.ParameterError: analyzer 'x': option 'n_starts' must be >= 1, got 0.0
    """
    check_names(given, decls, owner=owner, what="option")
    return Settings({name: check_option(owner, name, given.get(name, decl.default), decl)
                     for name, decl in decls.items()})


def init_options(obj: Any, stop: type) -> dict[str, Any]:
    """Constructor arguments of ``obj`` (sklearn's ``get_params`` convention: stored under the same name).

    Walks the MRO up to (not including) ``stop``, collecting named, non-variadic ``__init__`` arguments.
    """
    names: list[str] = []
    for cls in type(obj).__mro__:
        if cls is stop or cls is object:
            break
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.name not in names:
                names.append(p.name)
    return {n: getattr(obj, n) for n in names if hasattr(obj, n)}

"""Exceptions raised by dynlearn.

Every error dynlearn raises on bad input is a :class:`DynlearnError` whose message is one line naming the
problem (the CLI prints exactly that line). They also subclass the matching builtin (``ValueError``,
``KeyError``, ...) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "did_you_mean",
    "DynlearnError",
    "ConfigError",
    "PluginNotFoundError",
    "ParameterError",
    "UnknownNameError",
    "ShapeError",
    "StoreError",
    "PathError",
]


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """The hint ending an unknown-name message: ``"; did you mean 'x'?"``, or ``""`` if nothing is close.

    The one place that picks the closest name (:func:`difflib.get_close_matches`), for parameter and option names
    (:func:`dynlearn.params.check_names`) and plugin names (:meth:`dynlearn.registry.Registry.get`).

    Parameters
    ----------
    name
        The unknown name as given.
    valid
        The names that exist.

    Returns
    -------
    str
        ``"; did you mean 'closest'?"`` or the empty string.

    Examples
    --------
    >>> did_you_mean("sadle_node", ["saddle_node", "hopf"])
    "; did you mean 'saddle_node'?"
    >>> did_you_mean("xyz", ["saddle_node"])
    ''
    >>> did_you_mean("states", ["steps", "initial_states"])     # a whole word of one valid name wins
    "; did you mean 'initial_states'?"
    """
    valid = [str(v) for v in valid]
    words = [v for v in valid if len(str(name)) >= 3 and str(name) in v.split("_")]
    close = words if len(words) == 1 else difflib.get_close_matches(str(name), valid, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class DynlearnError(Exception):
    """Base class of every error dynlearn raises on purpose."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class ConfigError(DynlearnError, ValueError):
    """An experiment file or option is malformed (wrong key, wrong type, out of range)."""


class PluginNotFoundError(DynlearnError, KeyError):
    """No plugin of that name is registered; the message lists the available names."""


class ParameterError(DynlearnError, ValueError):
    """A parameter value is invalid: unknown name, NaN, out of its declared range."""


class UnknownNameError(ParameterError, ConfigError):
    """A name its owner does not declare (a grid or sweep axis, a hyper-parameter, an analyzer option).

    The message lists the valid names and the closest match. It is a :class:`ParameterError` wherever the name
    was given, and a :class:`ConfigError` too, so experiment-file validation reports it like every other key.
    """


class ShapeError(DynlearnError, ValueError):
    """An array has the wrong shape for the system or analyzer it is given to."""


class StoreError(DynlearnError, OSError):
    """A result store is missing, incompatible with the request, or not a dynlearn store."""


class PathError(DynlearnError, ValueError):
    """A name or path a user gave is unsafe or points at something dynlearn must not touch (refused, nothing
    deleted)."""

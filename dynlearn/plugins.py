"""Wiring: plugins from the registry turned into objects. One factory, :func:`make`.

    >>> import dynlearn
    >>> make("systems", {"name": "two_factor", "mu": 1.5}).get_params()
    {'mu': 1.5}
    >>> make("datasets", "delayed_activation").name
    'delayed_activation'

A trainable system's ``task`` given as a mapping with a ``name`` is looked up here (the System contract itself
knows only its default task class). ``make_system``, ``make_task``, ``make_analyzer`` and ``make_schedule`` are
:func:`make` for one kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError, ParameterError
from .registry import get

__all__ = ["get_plugin", "make", "make_system", "make_task", "make_analyzer", "make_schedule"]

#: the plugin class registered under a name (``get_plugin("reproductions", "ghost")``)
get_plugin = get

_SINGULAR = {"systems": "system", "datasets": "task", "analyzers": "analyzer", "schedules": "schedule",
             "reproductions": "reproduction"}


def make(kind: str, config: Mapping[str, Any] | str) -> Any:
    """Build the plugin of ``kind`` named by ``config`` (a name, or ``{"name": ..., **options}``).

    Unknown names are a :class:`~dynlearn.errors.PluginNotFoundError` with a did-you-mean; bad options a
    one-line :class:`~dynlearn.errors.ParameterError` (:class:`~dynlearn.errors.ConfigError` for schedules).
    """
    what = _SINGULAR.get(kind, kind)
    error = ConfigError if kind == "schedules" else ParameterError
    if isinstance(config, str):
        config = {"name": config}
    config = dict(config)
    name = config.pop("name", None)
    if not name:
        raise error(f"a {what} config needs a 'name'")
    cls = get(kind, name)
    task = config.get("task")
    if kind == "systems" and isinstance(task, Mapping) and "name" in task:
        config["task"] = make("datasets", task)
    try:
        return cls(**config)
    except TypeError as exc:
        raise error(f"{what} {name!r}: {exc}") from None


def make_system(config: Mapping[str, Any] | str):
    """Build a System from its registry name or a config mapping ``{"name": ..., **options}``."""
    return make("systems", config)


def make_task(config: Mapping[str, Any] | str):
    """Build a Task (dataset plugin) from its registry name or ``{"name": ..., **parameters}``."""
    return make("datasets", config)


def make_analyzer(config: Mapping[str, Any] | str):
    """Build an Analyzer from its registry name or ``{"name": ..., **options}``."""
    return make("analyzers", config)


def make_schedule(config: Mapping[str, Any] | None):
    """Build a hyper-parameter schedule (entry-point group ``dynlearn.schedules``); ``None`` for no schedule."""
    return make("schedules", config) if config else None

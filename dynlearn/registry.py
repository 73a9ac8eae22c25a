"""Plugin registry: Systems, Analyzers, datasets (tasks) and reproductions.

Plugins are discovered through entry points, the same way for the built-ins (``dynlearn_builtins``) and for
third-party packages::

    [project.entry-points."dynlearn.systems"]
    my_rnn = "my_package.rnn:MyRNN"

or registered in a running session (notebooks) with a decorator::

    >>> import dynlearn
    >>> @dynlearn.register_system
    ... class Decay(dynlearn.FlowSystem):
    ...     '''dx/dt = -k x.'''
    ...     name = "decay_doc"
    ...     description = "linear decay dx/dt = -k x"
    ...     parameters = {"k": dynlearn.Param(1.0)}
    ...     def rhs(self, x, p):
    ...         return -p["k"][..., None] * x
    >>> dynlearn.get_system("decay_doc").description
    'linear decay dx/dt = -k x'
    >>> dynlearn.registry.default_registry().unregister("systems", "decay_doc")

Discovery never crashes: a plugin that fails to import is reported as a :class:`PluginWarning` naming it and
its error, and the others still load. Asking for an unknown name raises :class:`PluginNotFoundError` listing
the available names and suggesting the closest::

    >>> dynlearn.get_system("sadle_node")
    Traceback (most recent call last):
    ...
    dynlearn.errors.PluginNotFoundError: unknown system 'sadle_node'; available: ...; did you mean 'saddle_node'?
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .analyzer import Analyzer
from .errors import PluginNotFoundError, did_you_mean
from .reproduce import Reproduction
from .schedule import Schedule
from .system import System
from .task import Task

__all__ = [
    "KINDS",
    "PluginInfo",
    "PluginWarning",
    "Registry",
    "default_registry",
    "use_registry",
]

#: plugin kind -> entry-point group
KINDS: dict[str, str] = {
    "systems": "dynlearn.systems",
    "analyzers": "dynlearn.analyzers",
    "datasets": "dynlearn.datasets",
    "schedules": "dynlearn.schedules",
    "reproductions": "dynlearn.reproductions",
}


class PluginWarning(UserWarning):
    """A plugin could not be loaded (the others still are)."""


@dataclass(frozen=True)
class PluginInfo:
    """What the registry knows about one plugin."""

    kind: str
    name: str
    description: str
    source: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "error": self.error,
        }


def _base_class(kind: str) -> type:
    """The contract a plugin of ``kind`` implements (the registry sits above the contracts)."""
    return {"systems": System, "analyzers": Analyzer, "datasets": Task, "schedules": Schedule,
            "reproductions": Reproduction}[kind]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PluginNotFoundError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(KINDS)}{did_you_mean(kind, KINDS)}")


def _describe(obj: Any) -> str:
    text = getattr(obj, "description", "") or (obj.__doc__ or "").strip().splitlines()[0:1]
    if isinstance(text, list):
        text = text[0] if text else ""
    return str(text)


class Registry:
    """Discovers plugins from entry points (cached, refreshable) and holds session registrations.

    Parameters
    ----------
    entry_points
        Entry points to use instead of the installed ones (tests build synthetic
        :class:`importlib.metadata.EntryPoint` objects, nothing installed).
    """

    def __init__(self, entry_points: Iterable[EntryPoint] | None = None) -> None:
        self._override = None if entry_points is None else list(entry_points)
        self._session: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        self._loaded: dict[str, dict[str, tuple[Any, str]]] | None = None
        self._broken: dict[str, dict[str, tuple[str, str]]] = {k: {} for k in KINDS}

    # -- discovery -------------------------------------------------------------------------------------------
    def _entry_points(self) -> list[EntryPoint]:
        if self._override is not None:
            return self._override
        eps: list[EntryPoint] = []
        for group in KINDS.values():
            eps.extend(entry_points(group=group))
        return eps

    def _discover(self) -> dict[str, dict[str, tuple[Any, str]]]:
        if self._loaded is not None:
            return self._loaded
        loaded: dict[str, dict[str, tuple[Any, str]]] = {k: {} for k in KINDS}
        self._broken = {k: {} for k in KINDS}
        group_to_kind = {g: k for k, g in KINDS.items()}
        for ep in self._entry_points():
            kind = group_to_kind.get(ep.group)
            if kind is None:
                continue
            dist = getattr(ep, "dist", None)
            source = f"{dist.name} {dist.version}" if dist is not None else ep.value
            if ep.name in loaded[kind]:
                warnings.warn(
                    f"dynlearn: {kind} plugin {ep.name!r} is registered twice ({source} and "
                    f"{loaded[kind][ep.name][1]}); keeping the first",
                    PluginWarning,
                    stacklevel=3,
                )
                continue
            try:
                obj = ep.load()
                base = _base_class(kind)
                if not (isinstance(obj, type) and issubclass(obj, base)):
                    raise TypeError(f"{ep.value} is not a subclass of dynlearn.{base.__name__}")
            except Exception as exc:  # a broken plugin must not break discovery
                msg = f"{type(exc).__name__}: {exc}"
                self._broken[kind][ep.name] = (msg, source)
                warnings.warn(
                    f"dynlearn: {kind} plugin {ep.name!r} ({ep.value}) failed to load: {msg}",
                    PluginWarning,
                    stacklevel=3,
                )
                continue
            loaded[kind][ep.name] = (obj, source)
        self._loaded = loaded
        return loaded

    def refresh(self) -> None:
        """Forget the cached discovery; the next lookup scans the entry points again."""
        self._loaded = None

    # -- lookups ---------------------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Sorted names of the plugins of ``kind`` that loaded."""
        _check_kind(kind)
        return sorted(set(self._discover()[kind]) | set(self._session[kind]))

    def get(self, kind: str, name: str) -> Any:
        """The plugin class registered as ``name``; :class:`PluginNotFoundError` lists the alternatives and
        suggests the closest (:func:`~dynlearn.errors.did_you_mean`)."""
        _check_kind(kind)
        if name in self._session[kind]:
            return self._session[kind][name]
        loaded = self._discover()[kind]
        if name in loaded:
            return loaded[name][0]
        broken = self._broken[kind].get(name)
        if broken is not None:
            raise PluginNotFoundError(f"{kind[:-1]} plugin {name!r} is installed but failed to load: {broken[0]}")
        known = self.names(kind)
        available = ", ".join(known) or "(none)"
        raise PluginNotFoundError(f"unknown {kind[:-1]} {name!r}; available: {available}"
                                  f"{did_you_mean(name, known)}")

    def info(self, kind: str | None = None) -> list[PluginInfo]:
        """One :class:`PluginInfo` per plugin (broken ones included, with their error)."""
        kinds = KINDS if kind is None else [kind]
        out: list[PluginInfo] = []
        for k in kinds:
            _check_kind(k)
            loaded = self._discover()[k]
            for name in self.names(k):
                obj = self._session[k].get(name)
                source = "session"
                if obj is None:
                    obj, source = loaded[name]
                out.append(PluginInfo(k, name, _describe(obj), source))
            for name, (err, source) in sorted(self._broken[k].items()):
                if name not in self._session[k]:
                    out.append(PluginInfo(k, name, "", source, error=err))
        return out

    # -- session registration --------------------------------------------------------------------------------
    def register(self, kind: str, obj: Any = None, *, name: str | None = None, replace: bool = False) -> Any:
        """Register ``obj`` (a class) under ``name`` (default: ``obj.name``); usable as a decorator."""
        _check_kind(kind)

        def deco(cls: Any) -> Any:
            base = _base_class(kind)
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"cannot register {cls!r} as a {kind[:-1]}: not a subclass of {base.__name__}")
            key = name or getattr(cls, "name", "") or cls.__name__
            if not replace and (key in self._session[kind] or key in self._discover()[kind]):
                raise ValueError(f"a {kind[:-1]} named {key!r} is already registered (pass replace=True)")
            self._session[kind][key] = cls
            return cls

        return deco if obj is None else deco(obj)

    def unregister(self, kind: str, name: str) -> None:
        """Remove a session registration."""
        _check_kind(kind)
        self._session[kind].pop(name, None)


_DEFAULT = Registry()


def default_registry() -> Registry:
    """The registry every dynlearn lookup uses (swap it with :func:`use_registry`)."""
    return _DEFAULT


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Temporarily make ``registry`` the default (tests: an isolated registry)."""
    global _DEFAULT
    old, _DEFAULT = _DEFAULT, registry
    try:
        yield registry
    finally:
        _DEFAULT = old


def get(kind: str, name: str) -> Any:
    return _DEFAULT.get(kind, name)


def names(kind: str) -> list[str]:
    return _DEFAULT.names(kind)


def _registrar(kind: str):
    def register(obj: Any = None, *, name: str | None = None, replace: bool = False) -> Any:
        return _DEFAULT.register(kind, obj, name=name, replace=replace)

    register.__doc__ = f"Register a {kind[:-1]} class in this session (decorator; ``name`` defaults to ``cls.name``)."
    return register


register_system = _registrar("systems")
register_analyzer = _registrar("analyzers")
register_dataset = _registrar("datasets")
register_reproduction = _registrar("reproductions")
register_schedule = _registrar("schedules")

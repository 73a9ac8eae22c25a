"""The Analyzer contract (entry-point group ``dynlearn.analyzers``): xarray in, xarray out.

An analyzer takes either a System with a parameter grid, or a training run (then it studies the state dynamics
at every stored epoch), and returns an ``xr.Dataset`` whose dims include every sweep dim it was given plus its
own (``point``, ``sample``, ...)::

    >>> import numpy as np, dynlearn
    >>> fp = dynlearn.get_analyzer("fixed_points")()
    >>> out = fp.run("saddle_node", dynlearn.grid(r=[-1.0, 1.0]))
    >>> out.n_fixed.values
    array([2, 0])

For developers: subclass :class:`Analyzer`, store options in ``__init__`` (no logic there), declare ``kinds``
and ``requires``, implement ``analyze(batch, upstream, progress) -> xr.Dataset`` using
:meth:`dynlearn.sweep.Batch.to_xarray` to label results; optionally ``views(result)`` for holoviews, and
``work_size(batch)`` when one sweep element holds many states. ``run`` resolves the input, picks the torch
threads (:func:`dynlearn.threads.analyzer_threads`), checks the output keeps every sweep dim, and stamps
provenance attrs. Every analyzer also takes the option ``threads`` (``None``: chosen from the problem size), and
a misspelled option is a :class:`~dynlearn.errors.ParameterError` listing the valid ones, however the analyzer
is made::

    >>> fp = dynlearn.get_analyzer("fixed_points")(n_start=8)
    Traceback (most recent call last):
    ...
    dynlearn.errors.UnknownNameError: analyzer 'fixed_points' has no option 'n_start'; its options are: ...
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import xarray as xr

from ._version import __version__
from .errors import ParameterError, ShapeError
from .params import Param, resolve_options
from .sweep import Batch, flatten
from .system import System
from .threads import analyzer_threads, torch_threads

__all__ = ["Analyzer", "set_application_run", "THREADS"]

#: ``run(analyzer, source, params, *, upstream, show_progress, epochs)`` of the application layer
#: (:func:`dynlearn.api.run_analyzer`): resolves a System name, a run or a store, selects epochs, computes the
#: required analyzers, then calls :meth:`Analyzer.run_resolved`
_APPLICATION_RUN: Callable[..., xr.Dataset] | None = None


def set_application_run(run: Callable[..., xr.Dataset]) -> None:
    """Install the application layer's runner behind :meth:`Analyzer.run` (done by :mod:`dynlearn.api`)."""
    global _APPLICATION_RUN
    _APPLICATION_RUN = run


#: the option every analyzer has
THREADS = Param(None, kind="int", low=1, nullable=True,
                description="torch intra-op threads while analysing (None: chosen from the problem size)")


class Analyzer:
    """Base class: options declared as :class:`~dynlearn.params.Param` in ``options``, work in ``analyze``.

    ``Analyzer(**options)`` validates the options once into ``self.settings`` (an unknown name or a value out of
    its declared range is a one-line :class:`~dynlearn.errors.ParameterError` naming it and the valid ones);
    every analyzer has the option ``threads``: torch intra-op threads while analysing (``None``: chosen from the
    problem size by :func:`~dynlearn.threads.analyzer_threads`; a subclass may declare its own default).
    A subclass that needs an ``__init__`` takes ``**options`` and calls ``super().__init__(**options)``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: which system kinds it supports
    kinds: ClassVar[tuple[str, ...]] = ("flow", "map")
    #: analyzers whose output it consumes (passed in ``upstream``; computed with defaults when absent)
    requires: ClassVar[tuple[str, ...]] = ()
    #: declared options (merged along the class hierarchy, the base's ``threads`` first); validated once into
    #: ``self.settings`` (:class:`~dynlearn.params.Settings`), also readable as attributes (``self.n_starts``)
    options: ClassVar[Mapping[str, Param]] = {"threads": THREADS}

    def __init__(self, **options: Any) -> None:
        settings = resolve_options(f"analyzer {self.name or type(self).__name__!r}", self.declared_options(),
                                   options)
        object.__setattr__(self, "settings", settings)

    @classmethod
    def declared_options(cls) -> dict[str, Param]:
        """Every option of this analyzer: its ``options`` and its bases' (``threads`` included)."""
        out: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("options", {}))
        out["threads"] = out.pop("threads")  # listed last
        return out

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings")
        if settings is not None and name in settings:
            return settings[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def get_params(self) -> dict[str, Any]:
        """Constructor options (sklearn convention) as plain data: arrays as lists, a Manifold by its name, an
        option of kind ``"array"`` (user states, ...) by its summary ``{"shape", "dims", "sha256"}``
        (:func:`~dynlearn.params.array_summary`: the config attrs stay small strict JSON; the numbers are not
        recorded, so such an analyzer is rebuilt from its config only with the array given again)."""
        import numpy as np

        from .params import array_summary
        from .system import Manifold

        out = dict(self.settings)
        arrays = {k for k, decl in self.declared_options().items() if decl.kind == "array"}
        for k, v in out.items():
            if k in arrays:
                out[k] = array_summary(v)
            elif isinstance(v, np.ndarray):
                out[k] = v.tolist()
            elif isinstance(v, Manifold):
                out[k] = v.name  # a user Manifold is recorded by name
        return out

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.get_params()}

    def run(
        self,
        source: Any,
        params: Any = None,
        *,
        upstream: Mapping[str, xr.Dataset] | None = None,
        show_progress: bool | None = None,
        epochs: Any = None,
    ) -> xr.Dataset:
        """Analyse ``source`` (System / name / run / store path) over the sweep in ``params``.

        Parameters
        ----------
        source
            A System, a system name or config, a training run (``xr.DataTree``) or the path of its store.
        params
            The parameter sweep (:func:`~dynlearn.sweep.grid`, a mapping or a Dataset); for a run, its stored
            checkpoints by default.
        upstream
            Results of the analyzers this one ``requires`` (computed when absent, or when they lack an epoch
            being analysed).
        show_progress
            Progress bars on stderr (``None``: :func:`dynlearn.progress.progress_enabled`).
        epochs
            Which stored epochs of a run to analyse (:mod:`dynlearn.epochs`): ``None`` (all), ``"last"``, a list,
            ``"::10"``, ``"100:500"``, ``{"every": 10}``.

        Returns
        -------
        xarray.Dataset
            The result, with every sweep dim (``epoch``, ``seed``, ...) and the analyzer's own.
        """
        if _APPLICATION_RUN is None:  # pragma: no cover - ``import dynlearn`` installs it
            raise RuntimeError("import dynlearn first (its api module resolves what an analyzer runs on)")
        return _APPLICATION_RUN(self, source, params, upstream=upstream, show_progress=show_progress,
                                epochs=epochs)

    def run_resolved(self, system: System, params: Any, on_nan: str, upstream: Mapping[str, xr.Dataset],
                     show_progress: bool | None) -> xr.Dataset:
        """Analyse ``system`` over the sweep ``params`` with the results of every required analyzer in
        ``upstream`` (what :meth:`run` calls once :mod:`dynlearn.api` has resolved the input)."""
        if system.kind not in self.kinds:
            raise ParameterError(
                f"analyzer {self.name!r} works on {' and '.join(self.kinds)} systems; {system.name!r} is a {system.kind}"
            )
        batch = flatten(system, params, on_nan=on_nan, strict=on_nan == "raise", dtype=self.dtype())
        missing_req = [r for r in self.requires if r not in upstream]
        if missing_req:
            raise ShapeError(f"analyzer {self.name!r} needs the results of {missing_req} in upstream")
        with torch_threads(analyzer_threads(self.work_size(batch), self.threads)):
            out = self.analyze(batch, upstream=upstream, show_progress=show_progress)
        missing = [d for d in batch.dims if d not in out.dims]
        if missing:
            raise ShapeError(f"analyzer {self.name!r} dropped sweep dims {missing} (a bug in the analyzer)")
        out.attrs.update(provenance(self, batch))
        return out

    __call__ = run

    def dtype(self):
        import torch

        return torch.float64

    def work_size(self, batch: Batch) -> int:
        """Numbers in the batch's state tensor (one state per sweep element by default), which sets the threads.

        Override when one sweep element holds many states (starting states, samples of a box).
        """
        return batch.size * batch.system.state_dim

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement analyze(batch, upstream, show_progress)")

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """holoviews objects showing ``result`` (name -> element/HoloMap); none by default."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def provenance(analyzer: Analyzer, batch: Batch) -> dict[str, str]:
    """Attrs of a result: the analyzer, its config, the system's config with the sweep, the version."""
    return {
        "dynlearn_analyzer": analyzer.name,
        "analyzer_config": json.dumps(_jsonable(analyzer.to_config()), allow_nan=False),
        "system_config": json.dumps(_jsonable(batch.system_config()), allow_nan=False),
        "dynlearn_version": __version__,
    }


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if hasattr(obj, "to_config"):
        return obj.to_config()
    return obj

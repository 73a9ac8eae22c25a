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

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import xarray as xr

from .errors import ParameterError, ShapeError
from .params import Param, Settings, check_names, init_options, resolve_options
from .sweep import Batch, flatten
from .system import System, make_system
from .threads import analyzer_threads, torch_threads

__all__ = ["Analyzer", "resolve_target", "make_analyzer"]


def resolve_target(source: Any, params: Any = None, epochs: Any = None) -> tuple[System, Any, str]:
    """Normalise an analyzer input to ``(system, params, on_nan)``.

    ``source`` may be a System, a system name or config mapping, a training-run ``xr.DataTree``, or the path of
    a result store. For a run, the system is the trainable's state dynamics (``dynamics_dataset``) and the
    parameters are the stored checkpoints (``/params``); NaN parameters of diverged networks are masked
    (``on_nan="mask"``, and other variables the Dataset carries are ignored). Parameters the caller gives
    (``on_nan="raise"``) are checked strictly: an unknown name is an error (see :func:`~dynlearn.sweep.flatten`).

    ``epochs`` selects the run's stored epochs to study (:mod:`dynlearn.epochs`; ``None``: all of them). This is
    the one place a selection is applied, whichever way an analyzer runs; it also applies to given parameters
    with an ``epoch`` dim, and is an error for anything else.
    """
    from . import store as _store
    if isinstance(source, System) or (
            isinstance(source, (str, Mapping)) and not isinstance(source, xr.DataTree)
            and not _store.looks_like_store(source)):
        system = source if isinstance(source, System) else make_system(source)
        if epochs is not None:
            if not (isinstance(params, xr.Dataset) and "epoch" in params.dims):
                raise ParameterError(f"epochs={epochs!r} selects epochs of a training run (a store or its tree); "
                                     f"{system.name!r} was given with parameters that have no 'epoch' dim")
            params = _select_epochs(params, epochs)
        return system, params, "raise"
    tree = _store.open_store(source) if not isinstance(source, xr.DataTree) else source
    trainable = _store.trainable_from(tree)
    run_params = tree["params"].to_dataset() if params is None else params
    if epochs is not None:
        run_params = _select_epochs(run_params, epochs)
    system, dyn_params = trainable.dynamics_dataset(run_params)
    return system, dyn_params, "mask"


def _select_epochs(params: xr.Dataset, epochs: Any) -> xr.Dataset:
    from .epochs import select_epochs

    return params.sel(epoch=select_epochs(params["epoch"].values, epochs))


def _align_upstream(upstream: Mapping[str, xr.Dataset], params: Any) -> dict[str, xr.Dataset]:
    """Upstream results at the epochs being analysed; one that lacks some of them is left out (recomputed)."""
    coords = getattr(params, "coords", {})
    if "epoch" not in coords:
        return dict(upstream)
    want = coords["epoch"].values
    out = {}
    for name, ds in upstream.items():
        if "epoch" not in ds.dims:
            out[name] = ds
        elif set(want.tolist()) <= set(ds["epoch"].values.tolist()):
            out[name] = ds if len(want) == ds.sizes["epoch"] and (ds["epoch"].values == want).all() \
                else ds.sel(epoch=want)
    return out


class Analyzer:
    """Base class: options in ``__init__``, work in ``analyze``.

    Every subclass's ``__init__`` is wrapped so that an unknown option is a
    :class:`~dynlearn.errors.ParameterError` naming it and the valid ones, and so that it takes ``threads``:
    torch intra-op threads while analysing (``None``: chosen from the problem size by
    :func:`~dynlearn.threads.analyzer_threads`), unless the subclass declares ``threads`` itself.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: which system kinds it supports
    kinds: ClassVar[tuple[str, ...]] = ("flow", "map")
    #: analyzers whose output it consumes (passed in ``upstream``; computed with defaults when absent)
    requires: ClassVar[tuple[str, ...]] = ()
    #: declared options (merged along the class hierarchy with the base's ``threads``); validated once into
    #: ``self.settings`` (:class:`~dynlearn.params.Settings`), also readable as attributes (``self.n_starts``)
    options: ClassVar[Mapping[str, Param]] = {}
    #: torch intra-op threads while analysing (``None``: chosen from the problem size)
    threads: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _checked_init(init)  # type: ignore[method-assign]

    def __init__(self, **options: Any) -> None:
        settings = resolve_options(f"analyzer {self.name or type(self).__name__!r}", self.declared_options(),
                                   options)
        object.__setattr__(self, "settings", settings)
        self.threads = settings["threads"]

    @classmethod
    def declared_options(cls) -> dict[str, Param]:
        """Every option of this analyzer: its ``options``, its bases', and ``threads``."""
        out: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("options", {}))
        out["threads"] = THREADS
        return out

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings")
        if settings is not None and name in settings:
            return settings[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def get_params(self) -> dict[str, Any]:
        """Constructor options (sklearn convention) as plain data: arrays as lists, a Manifold by its name."""
        import numpy as np

        from .system import Manifold

        settings = self.__dict__.get("settings")
        out = dict(settings) if settings is not None else init_options(self, Analyzer)
        out.setdefault("threads", self.threads)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
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
        system, params, on_nan = resolve_target(source, params, epochs)
        return self._run_resolved(system, params, on_nan, _align_upstream(upstream or {}, params), show_progress)

    def _run_resolved(self, system: System, params: Any, on_nan: str, upstream: Mapping[str, xr.Dataset] | None,
                      show_progress: bool | None) -> xr.Dataset:
        if system.kind not in self.kinds:
            raise ParameterError(
                f"analyzer {self.name!r} works on {' and '.join(self.kinds)} systems; {system.name!r} is a {system.kind}"
            )
        batch = flatten(system, params, on_nan=on_nan, strict=on_nan == "raise", dtype=self.dtype())
        upstream = dict(upstream or {})
        for req in self.requires:
            if req not in upstream:
                upstream[req] = make_analyzer(req)._run_resolved(system, params, on_nan, None, show_progress)
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


#: the option every analyzer has
THREADS = Param(None, kind="int", low=1, nullable=True,
                description="torch intra-op threads while analysing (None: chosen from the problem size)")


def provenance(analyzer: Analyzer, batch: Batch) -> dict[str, str]:
    """Attrs of a result: the analyzer, its config, the system's config with the sweep, the version."""
    from . import __version__

    return {
        "dynlearn_analyzer": analyzer.name,
        "analyzer_config": json.dumps(_jsonable(analyzer.to_config()), allow_nan=False),
        "system_config": json.dumps(_jsonable(batch.system_config()), allow_nan=False),
        "dynlearn_version": __version__,
    }


def _checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` with its keyword names checked (one clear error) and the base option ``threads`` added."""
    names = [p.name for p in list(inspect.signature(init).parameters.values())[1:]
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
        return init  # forwards options it does not name: its callee checks them
    own_threads = "threads" in names
    valid = names if own_threads else [*names, "threads"]

    @functools.wraps(init)
    def __init__(self: Analyzer, *args: Any, **kwargs: Any) -> None:
        check_names(kwargs, valid, owner=f"analyzer {type(self).name or type(self).__name__!r}", what="option")
        given = not own_threads and "threads" in kwargs
        threads = kwargs.pop("threads", None) if not own_threads else None
        init(self, *args, **kwargs)
        if given:
            self.threads = threads

    return __init__


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


def make_analyzer(config: Mapping[str, Any] | str) -> Analyzer:
    """Build an Analyzer from its registry name or ``{"name": ..., **options}``."""
    from .registry import get

    if isinstance(config, str):
        config = {"name": config}
    config = dict(config)
    name = config.pop("name", None)
    if not name:
        raise ParameterError("an analyzer config needs a 'name'")
    cls = get("analyzers", name)
    try:
        return cls(**config)
    except TypeError as exc:
        raise ParameterError(f"analyzer {name!r}: {exc}") from None

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
:meth:`dynlearn.sweep.Batch.to_xarray` to label results; optionally ``views(result)`` for holoviews. ``run``
resolves the input, checks the output keeps every sweep dim, and stamps provenance attrs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import xarray as xr

from .errors import ParameterError, ShapeError
from .params import init_options
from .sweep import Batch, flatten
from .system import System, make_system

__all__ = ["Analyzer", "resolve_target", "make_analyzer"]


def resolve_target(source: Any, params: Any = None) -> tuple[System, Any, str]:
    """Normalise an analyzer input to ``(system, params, on_nan)``.

    ``source`` may be a System, a system name or config mapping, a training-run ``xr.DataTree``, or the path of
    a result store. For a run, the system is the trainable's state dynamics (``dynamics_dataset``) and the
    parameters are the stored checkpoints (``/params``); NaN parameters of diverged networks are masked.
    """
    from . import store as _store

    if isinstance(source, System):
        return source, params, "raise"
    if isinstance(source, (str, Mapping)) and not isinstance(source, xr.DataTree) and not _store.looks_like_store(source):
        return make_system(source), params, "raise"
    tree = _store.open_store(source) if not isinstance(source, xr.DataTree) else source
    trainable = _store.trainable_from(tree)
    run_params = tree["params"].to_dataset() if params is None else params
    system, dyn_params = trainable.dynamics_dataset(run_params)
    return system, dyn_params, "mask"


class Analyzer:
    """Base class: options in ``__init__``, work in ``analyze``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: which system kinds it supports
    kinds: ClassVar[tuple[str, ...]] = ("flow", "map")
    #: analyzers whose output it consumes (passed in ``upstream``; computed with defaults when absent)
    requires: ClassVar[tuple[str, ...]] = ()

    def get_params(self) -> dict[str, Any]:
        """Constructor options (sklearn convention) as plain data: arrays as lists, a Manifold by its name."""
        import numpy as np

        from .system import Manifold

        out = init_options(self, Analyzer)
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
    ) -> xr.Dataset:
        """Analyse ``source`` (System / name / run / store path) over the sweep in ``params``."""
        system, params, on_nan = resolve_target(source, params)
        if system.kind not in self.kinds:
            raise ParameterError(
                f"analyzer {self.name!r} works on {' and '.join(self.kinds)} systems; {system.name!r} is a {system.kind}"
            )
        batch = flatten(system, params, on_nan=on_nan, dtype=self.dtype())
        upstream = dict(upstream or {})
        for req in self.requires:
            if req not in upstream:
                upstream[req] = make_analyzer(req).run(system, params, show_progress=show_progress)
        out = self.analyze(batch, upstream=upstream, show_progress=show_progress)
        missing = [d for d in batch.dims if d not in out.dims]
        if missing:
            raise ShapeError(f"analyzer {self.name!r} dropped sweep dims {missing} (a bug in the analyzer)")
        out.attrs.update(provenance(self, system))
        return out

    __call__ = run

    def dtype(self):
        import torch

        return torch.float64

    def analyze(self, batch: Batch, *, upstream: Mapping[str, xr.Dataset], show_progress: bool | None) -> xr.Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement analyze(batch, upstream, show_progress)")

    def views(self, result: xr.Dataset) -> dict[str, Any]:
        """holoviews objects showing ``result`` (name -> element/HoloMap); none by default."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def provenance(analyzer: Analyzer, system: System) -> dict[str, str]:
    from . import __version__

    return {
        "dynlearn_analyzer": analyzer.name,
        "analyzer_config": json.dumps(_jsonable(analyzer.to_config()), allow_nan=False),
        "system_config": json.dumps(_jsonable(system.to_config()), allow_nan=False),
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

"""Record your own training loop: a torch module's weights and losses, step by step, into a store that every
analyzer reads as it reads a ``dynlearn run``.

    >>> import pathlib, tempfile, torch, dynlearn
    >>> cell = torch.nn.GRUCell(input_size=1, hidden_size=3)
    >>> opt = torch.optim.SGD(cell.parameters(), lr=0.1)
    >>> x, h0 = torch.ones(8, 1), torch.zeros(8, 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = pathlib.Path(tmp) / "run.zarr"
    ...     with dynlearn.Recorder(out, cell) as rec:            # your loop, unchanged but for one line
    ...         for step in range(6):
    ...             loss = (cell(x, h0) - 0.5).pow(2).mean()
    ...             opt.zero_grad(); loss.backward(); opt.step()
    ...             rec.log(step, cell, loss=loss)
    ...     tree = dynlearn.open_store(out)
    ...     print(tree["params"]["weight_hh"].dims, tree["train"]["loss"].sizes["epoch"])
    ('epoch', 'weight_hh_dim0', 'weight_hh_dim1') 6

Then ``dynlearn.analyze(out, "fixed_points")``, ``FixedPoints().run(out, epochs="::10")``,
``dynlearn analyze|show|verify|browse`` work on it; the System studied is the module itself
(:func:`dynlearn.from_module`) at every stored step. :func:`load_checkpoints` makes the same store from
``torch.save``-d state_dicts.

The store
---------
One zarr v3 store, like a training run's:

- root attrs ``dynlearn``: ``layout = "recorder"``, ``config`` (``name``, ``system``: the module's config, its
  class path and constructor arguments, *without* the weights, which are in ``/params``; ``seeds``),
  ``config_hash``, ``version``, ``provenance`` and ``recorder`` (``every``);
- ``/train`` (dim ``epoch``: every logged step, the user's step numbers as coords; ``seed`` when several models
  are recorded): ``loss``, ``grad_norm`` (of the ``.grad`` the model holds when logged) and every metric given;
- ``/params`` (dim ``epoch``: the steps whose weights were stored, every ``every`` steps; ``seed``; each tensor's
  own dims ``<name>_dim0, ...``): every parameter and floating-point buffer of the module under its System name,
  in the module's dtype (float64 stays float64, other floats are stored as float32).

Crash safety
------------
The number of steps is not known in advance, so the arrays grow, and xarray's ``append_dim`` is not crash-safe
(DESIGN.md). A commit therefore (1) lengthens each array's own metadata to the new number of rows, (2) writes
the new rows with region writes (every chunk file is replaced atomically, with a checksum), and only then
(3) records the new lengths in the store's consolidated metadata (:func:`dynlearn.store.commit_lengths`): one
atomic rewrite of the root ``zarr.json``, the commit point. Readers (:func:`dynlearn.open_store`, xarray's own
``open_datatree``) open the store through that copy, so a process killed at any moment leaves a store that opens,
verifies (:func:`dynlearn.integrity.verify` checks the committed lengths) and holds every committed step; the
next writer first restores the arrays to the committed lengths (:func:`dynlearn.store.restore_committed`).
``log`` commits when ``commit_seconds`` have passed since the last commit (and ``flush``, ``close`` at once), so
a kill loses at most that much of the loop, and the commit's cost (tens of ms) is paid once per interval.

Reopening a store of the same model continues it after its last committed step (:attr:`Recorder.last_step`;
:meth:`Recorder.state_dict` gives the weights stored last, to restart the loop from); a store of another model is
refused; ``overwrite=True`` replaces it (through :mod:`dynlearn.safety`). The store is locked while a Recorder
has it open (:func:`dynlearn.integrity.store_lock`).
"""

from __future__ import annotations

import json
import math
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import zarr

from ._version import __version__
from .errors import ParameterError, ShapeError, StoreError
from .integrity import RECORDED, RECORDER, check_store, relock, store_lock
from .module import from_module
from .provenance import config_hash, provenance
from .safety import check_name, check_store_target
from .store import (commit_lengths, consolidate, create_store, default_compressors, open_store, restore_committed,
                    root_attrs)

__all__ = ["Recorder", "load_checkpoints"]

#: variables of ``/train`` every recorder has (metrics come after them)
_TRAIN = ("loss", "grad_norm")
_TRAIN_ATTRS = {
    "loss": {"long_name": "training loss", "units": "1"},
    "grad_norm": {"long_name": "L2 norm of the loss gradient over all parameters (their .grad when logged)",
                  "units": "1"},
}
#: rows of ``/train`` per chunk; ``/params`` chunks hold at most this many bytes per variable (and 256 rows)
_TRAIN_CHUNK = 1024
_PARAMS_CHUNK_BYTES = 1 << 20
#: recorders open in this process, by store path (two on one store would interleave their commits)
_OPEN: dict[str, weakref.ref] = {}


class Recorder:
    """Records a torch module's weights and losses from your own training loop into a crash-safe store.

    Parameters
    ----------
    path
        The store (a new path, or a store of the same model to continue).
    model
        The ``nn.Module`` being trained (its class and constructor arguments identify the store), or a list of
        modules of one architecture trained side by side (a ``seed`` dim).
    every
        Store the weights when at least ``every`` steps have passed since they were last stored (the loss and
        metrics are stored at every ``log``).
    seeds
        Coordinates of the ``seed`` dim for a list of models (default ``0, 1, ...``).
    kind, input, bounds, module_kwargs, state_dim, input_size
        How the module is a dynamical system (:func:`dynlearn.from_module`): ``"map"`` or ``"flow"``, the
        constant input, the box analyzers sample states from, and what cannot be read from the module.
    metric_attrs
        ``long_name`` / ``units`` of metrics passed to :meth:`log` (``{"acc": {"long_name": "accuracy",
        "units": "1"}}``); a metric without attrs is labeled with its name.
    commit_seconds
        Commit the logged steps to disk when this many seconds have passed since the last commit (0: at every
        ``log``); :meth:`flush` and :meth:`close` commit at once.
    name
        The name of the experiment (root attrs ``config.name``).
    overwrite
        Replace an existing store at ``path``.
    resume
        Continue an existing store of the same model (``False``: an existing store is an error).

    Attributes
    ----------
    system : ModuleSystem
        The System analyzers study (weights: the model's when the recorder was made).
    last_step : int or None
        The last step logged (after reopening a store: its last committed step); ``None`` before any.
    path : Path
    """

    def __init__(self, path: str | os.PathLike, model: Any, *, every: int = 1, seeds: Sequence[int] | None = None,
                 kind: str | None = None, input: Any = None, bounds: Sequence[float] = (-1.0, 1.0),
                 module_kwargs: Mapping[str, Any] | None = None, state_dim: int | None = None,
                 input_size: int | None = None, metric_attrs: Mapping[str, Mapping[str, str]] | None = None,
                 commit_seconds: float = 1.0, name: str = "recorder", overwrite: bool = False,
                 resume: bool = True) -> None:
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        if not models or not all(isinstance(m, torch.nn.Module) for m in models):
            bad = next((m for m in models if not isinstance(m, torch.nn.Module)), None)
            raise ParameterError(f"Recorder records a torch nn.Module (or a list of them), got "
                                 f"{type(bad if models else model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ParameterError(f"Recorder: every must be an integer >= 1, got {every!r}")
        if not (isinstance(commit_seconds, (int, float)) and commit_seconds >= 0):
            raise ParameterError(f"Recorder: commit_seconds must be a number >= 0, got {commit_seconds!r}")
        self.multi = isinstance(model, (list, tuple))
        self.every, self.commit_seconds = every, float(commit_seconds)
        self._template = models[0]
        self.system = from_module(models[0], kind=kind, input=input, bounds=bounds, module_kwargs=module_kwargs,
                                  state_dim=state_dim, input_size=input_size)
        self.seeds = None
        if self.multi:
            self.seeds = np.arange(len(models)) if seeds is None else np.asarray(seeds, dtype=np.int64)
            if self.seeds.shape != (len(models),) or len(set(self.seeds.tolist())) != len(models):
                raise ShapeError(f"Recorder: seeds must be {len(models)} distinct integers, got {seeds!r}")
        elif seeds is not None:
            raise ParameterError("Recorder: seeds label a list of models; one model was given")
        self._metric_attrs = {k: dict(v) for k, v in (metric_attrs or {}).items()}
        # weights: System name -> (torch name, event shape, numpy dtype), from the model itself
        sd = models[0].state_dict()
        self._weights = {safe: (tn, self.system.event_shape(safe),
                                np.dtype(np.float64 if sd[tn].dtype == torch.float64 else np.float32))
                         for safe, tn in self.system.torch_names.items()}
        for m in models[1:]:
            self._weights_of(m)  # a list of models must share one architecture
        sys_cfg = {k: v for k, v in self.system.to_config().items() if k not in self.system.torch_names}
        self.config = {"name": name, "system": sys_cfg,
                       "seeds": None if self.seeds is None else self.seeds.tolist()}
        self.config_hash = config_hash(self.config)
        self.path = check_store_target(path, overwrite=overwrite)
        self.last_step: int | None = None
        self._last_params: int | None = None
        self._n = {"train": 0, "params": 0}
        self._train_vars = list(_TRAIN)
        self._new_vars: set[str] = set()
        self._pending: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {"train": [], "params": []}
        self._arrays: dict[str, Any] = {}
        key = os.path.realpath(self.path)
        other = _OPEN.get(key)
        if other is not None and other() is not None and not other()._closed:
            raise StoreError(f"{self.path} is already open in a Recorder of this process; close that one first")
        self._closed = True
        self._stack = ExitStack()
        self._stack.enter_context(store_lock(self.path))
        try:
            if os.path.lexists(self.path) and not overwrite:
                if not resume:
                    raise StoreError(f"{self.path} exists; pass overwrite=True (--overwrite on the command line) to "
                                     "replace it, or resume=True to continue it")
                self._reopen()
            else:
                self._create(overwrite)
        except BaseException:
            self._stack.close()
            raise
        self._closed = False
        _OPEN[key] = weakref.ref(self)
        self._t_commit = time.monotonic()

    # -- the store ------------------------------------------------------------------------------------------------
    def _dims(self) -> tuple[str, ...]:
        return ("epoch", "seed") if self.multi else ("epoch",)

    def _row_shape(self) -> tuple[int, ...]:
        return (len(self.seeds),) if self.multi else ()

    def _layout(self) -> dict[str, xr.Dataset]:
        """The empty groups (no rows yet: nothing but metadata is written)."""
        lead, row = self._dims(), self._row_shape()
        coords: dict[str, Any] = {}
        if self.multi:
            coords["seed"] = ("seed", self.seeds, {"long_name": "index of the model trained side by side"})
        epoch = {"long_name": "training step (as logged)", "units": "step"}
        train = xr.Dataset(
            {k: (lead, np.zeros((0, *row)), self._attrs(k))
             for k in [*_TRAIN, *self._metric_attrs]},
            coords={**coords, "epoch": ("epoch", np.zeros(0, np.int64), epoch)})
        train.attrs["description"] = "losses and metrics logged by dynlearn.Recorder"
        rows = max(1, min(256, _PARAMS_CHUNK_BYTES // max(
            math.prod((*row, *shape)) * dt.itemsize for _, shape, dt in self._weights.values())))
        pvars = {}
        for safe, (_, shape, dt) in self._weights.items():
            decl = self.system.parameters[safe]
            pvars[safe] = ((*lead, *decl.shape), np.zeros((0, *row, *shape), dtype=dt), decl.attrs(safe))
        pepoch = {"long_name": "training step (stored weights)", "units": "step"}
        params = xr.Dataset(pvars, coords={**coords, "epoch": ("epoch", np.zeros(0, np.int64), pepoch)})
        params.attrs["description"] = "weights of the module at the stored steps (dynlearn.Recorder)"
        for ds, n in ((train, _TRAIN_CHUNK), (params, rows)):
            for k, v in ds.variables.items():
                if "epoch" in v.dims:
                    v.encoding["chunks"] = (n, *v.shape[1:])
        return {"train": train, "params": params}

    def _attrs(self, name: str) -> dict[str, str]:
        return dict(_TRAIN_ATTRS.get(name) or self._metric_attrs.get(name) or {"long_name": name, "units": "1"})

    def _create(self, overwrite: bool) -> None:
        attrs = {"version": __version__, "layout": RECORDER, "config": self.config, "config_hash": self.config_hash,
                 "provenance": provenance(), "recorder": {"every": self.every}}
        create_store(self.path, self._layout(), attrs, overwrite=overwrite)
        relock(self.path)  # the new store has a new lock file
        consolidate(self.path)  # the first commit: no rows

    def _reopen(self) -> None:
        attrs = root_attrs(self.path)
        if attrs.get("layout") != RECORDER:
            raise StoreError(f"{self.path} holds a training run or a reproduction, not a Recorder's store; choose "
                             "another path (or overwrite=True)")
        if attrs.get("config_hash") != self.config_hash:
            old = attrs.get("config", {}).get("system", {})
            raise StoreError(f"{self.path} records another model ({old.get('module')} {old.get('module_kwargs')}, "
                             f"config hash {attrs.get('config_hash')}) than this {self.system.module} "
                             f"{self.system.module_kwargs} (config hash {self.config_hash}); choose another path "
                             "(or overwrite=True)")
        restore_committed(self.path)  # undo what a killed commit had started
        check_store(self.path)
        if "consolidated_metadata" not in _root(self.path):
            consolidate(self.path)
        root = zarr.open_group(str(self.path), mode="r", use_consolidated=True)
        self._n = {g: int(root[f"{g}/epoch"].shape[0]) for g in RECORDED}
        if self._n["train"]:
            self.last_step = int(root["train/epoch"][-1])
        if self._n["params"]:
            self._last_params = int(root["params/epoch"][-1])
        self._train_vars += [k for k in sorted(root["train"].array_keys()) if k not in (*_TRAIN, "epoch", "seed")]

    def _array(self, key: str):
        arr = self._arrays.get(key)
        if arr is None:  # every chunk is written, even one equal to the fill value (a missing one is damage)
            arr = zarr.open_array(store=str(self.path), path=key, mode="r+").with_config({"write_empty_chunks": True})
            self._arrays[key] = arr
        return arr

    def _create_metric(self, name: str) -> None:
        """A metric first logged now: a new array of ``/train`` encoded as ``loss`` is, NaN at earlier steps."""
        if (self.path / "train" / name / "zarr.json").exists():
            return  # made by a flush that failed after it (in this process: a killed one's is removed on reopening)
        loss = self._array("train/loss")
        attrs = {**{k: v for k, v in loss.attrs.items() if k.startswith("_")}, **self._attrs(name)}
        zarr.create_array(store=str(self.path), name=f"train/{name}", shape=loss.shape, chunks=loss.chunks,
                          dtype=np.float64, fill_value=np.nan, compressors=default_compressors(np.float64),
                          dimension_names=self._dims(), attributes=attrs, config={"write_empty_chunks": True})

    # -- logging --------------------------------------------------------------------------------------------------
    def log(self, step: int, model: Any = None, *, loss: Any = None, **metrics: Any) -> None:
        """Record ``step``: its loss and metrics, and the model's weights when ``every`` steps have passed.

        Parameters
        ----------
        step
            The step (an integer greater than the last one logged): the ``epoch`` coordinate.
        model
            The module being trained (the class the recorder was made with), its ``state_dict()``, or for a list
            of models, the list. ``None``: record the loss and metrics only.
        loss, **metrics
            A number (a 0-d tensor) per model: one, or one per model of a list. A metric logged for the first time
            adds a variable to ``/train`` (NaN at earlier steps); a step without it holds NaN.
        """
        self._check_open()
        step = self._check_step(step)
        row = {"loss": self._values("loss", loss), "grad_norm": self._grad_norm(model)}
        for k, v in metrics.items():
            if k not in self._train_vars:
                check_name(k, "metric name")
                if k in ("epoch", "seed"):
                    raise ParameterError(f"Recorder: {k!r} names a dim, not a metric; choose another name")
                self._train_vars.append(k)
                self._new_vars.add(k)
            row[k] = self._values(k, v)
        weights = None
        if model is not None and (self._last_params is None or step - self._last_params >= self.every):
            weights = self._weights_of_all(model)
        self._pending["train"].append((step, row))
        if weights is not None:
            self._pending["params"].append((step, weights))
            self._last_params = step
        self.last_step = step
        if time.monotonic() - self._t_commit >= self.commit_seconds:
            self.flush()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the Recorder of {self.path} is closed")

    def _check_step(self, step: Any) -> int:
        if isinstance(step, torch.Tensor) and step.dim() == 0 and not step.is_floating_point():
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise ParameterError(f"Recorder.log: step must be an integer, got {step!r}")
        step = int(step)
        if self.last_step is not None and step <= self.last_step:
            raise ParameterError(f"Recorder.log: step {step} is not after the last step logged ({self.last_step}); "
                                 "steps must increase")
        return step

    def _values(self, name: str, value: Any) -> np.ndarray:
        """One float per model: ``()`` or ``(n,)`` (NaN where not given)."""
        want = self._row_shape()
        if value is None:
            return np.full(want, np.nan)
        try:
            arr = (value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor)
                   else np.asarray([v.item() if isinstance(v, torch.Tensor) else v for v in value] if
                                   isinstance(value, (list, tuple)) else value, dtype=np.float64))
        except (TypeError, ValueError):
            raise ParameterError(f"Recorder.log: {name} must be a number, got {type(value).__name__}") from None
        if arr.shape != want:
            what = f"one value per model ({want[0]})" if want else "one number"
            raise ShapeError(f"Recorder.log: {name} must be {what}, got shape {arr.shape}")
        return arr.astype(np.float64, copy=True)

    def _grad_norm(self, model: Any) -> np.ndarray:
        models = model if self.multi and isinstance(model, (list, tuple)) else [model]
        out = []
        for m in models:
            grads = [p.grad for p in m.parameters() if p.grad is not None] if isinstance(m, torch.nn.Module) else []
            out.append(math.sqrt(sum(float(g.detach().double().pow(2).sum()) for g in grads)) if grads else math.nan)
        if len(out) != max(1, math.prod(self._row_shape())):
            return np.full(self._row_shape(), np.nan)  # the model count is checked with the weights
        return np.asarray(out if self.multi else out[0], dtype=np.float64)

    def _weights_of_all(self, model: Any) -> dict[str, np.ndarray]:
        if not self.multi:
            return self._weights_of(model)
        if not isinstance(model, (list, tuple)) or len(model) != len(self.seeds):
            raise ShapeError(f"Recorder.log: this recorder records a list of {len(self.seeds)} models, got "
                             f"{len(model) if isinstance(model, (list, tuple)) else type(model).__name__}")
        each = [self._weights_of(m) for m in model]
        return {k: np.stack([w[k] for w in each]) for k in self._weights}

    def _weights_of(self, model: Any) -> dict[str, np.ndarray]:
        """The weights of one model (a module of the recorded class, or its state_dict), copied, by System name."""
        if isinstance(model, torch.nn.Module):
            if type(model) is not type(self._template):
                raise ParameterError(f"Recorder.log: model is a {type(model).__name__}; this recorder records a "
                                     f"{type(self._template).__name__}")
            sd = model.state_dict()
        elif isinstance(model, Mapping):
            sd = model
        else:
            raise ParameterError(f"Recorder.log: model must be an nn.Module or its state_dict, got "
                                 f"{type(model).__name__}")
        out = {}
        for safe, (tn, shape, dt) in self._weights.items():
            if tn not in sd:
                raise ShapeError(f"Recorder.log: the state_dict has no tensor {tn!r} of {self.system.module}")
            t = torch.as_tensor(sd[tn])
            if tuple(t.shape) != shape:
                raise ShapeError(f"Recorder.log: {tn!r} has shape {tuple(t.shape)}, it had {shape} when the recorder "
                                 "was made (a model whose shapes change cannot be recorded in one store)")
            out[safe] = t.detach().to(device="cpu", dtype=torch.float64 if dt == np.float64 else torch.float32,
                                      copy=True).numpy()
        return out

    # -- committing -----------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit every step logged so far (crash-safe: see the module docstring)."""
        self._check_open()
        if not (self._pending["train"] or self._pending["params"]):
            return
        lengths: dict[str, int] = {}
        for g in RECORDED:
            rows = self._pending[g]
            if not rows:
                continue
            n, k = self._n[g], len(rows)
            blocks = {"epoch": np.asarray([s for s, _ in rows], dtype=np.int64)}
            names = self._train_vars if g == "train" else list(self._weights)
            for var in names:
                fill = np.full(self._row_shape(), np.nan)
                blocks[var] = np.stack([r.get(var, fill) for _, r in rows])
            for var, block in blocks.items():
                if g == "train" and var in self._new_vars:
                    self._create_metric(var)
                    block = np.concatenate([np.full((n, *block.shape[1:]), np.nan), block])
                    start = 0
                else:
                    start = n
                arr = self._array(f"{g}/{var}")
                arr.resize((n + k, *arr.shape[1:]))
                arr[start:n + k] = block
                lengths[f"{g}/{var}"] = n + k
        commit_lengths(self.path, lengths)  # the commit point
        for g in RECORDED:
            self._n[g] += len(self._pending[g])
            self._pending[g] = []
        self._new_vars.clear()
        self._t_commit = time.monotonic()

    def close(self) -> None:
        """Commit what is logged and release the store (its lock). Closing twice does nothing."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._arrays.clear()
            self._stack.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reading back ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """The weights stored last (committed or not), as the module's state_dict (a list for a list of models):
        ``model.load_state_dict(rec.state_dict(), strict=False)`` restarts a loop where the store ends."""
        if self._pending["params"]:
            last = self._pending["params"][-1][1]
        elif self._n["params"]:
            root = zarr.open_group(str(self.path), mode="r", use_consolidated=None)
            last = {safe: np.asarray(root[f"params/{safe}"][self._n["params"] - 1]) for safe in self._weights}
        else:
            raise StoreError(f"{self.path} holds no stored weights yet")
        if not self.multi:
            return {tn: torch.as_tensor(last[safe]).clone() for safe, (tn, _, _) in self._weights.items()}
        return [{tn: torch.as_tensor(last[safe][i]).clone() for safe, (tn, _, _) in self._weights.items()}
                for i in range(len(self.seeds))]

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"Recorder({str(self.path)!r}, {self.system.module}, last_step={self.last_step}, "
                f"{self._n['params'] + len(self._pending['params'])} stored weights, {state})")


def _root(path: Path) -> dict[str, Any]:
    return json.loads((path / "zarr.json").read_text())


def load_checkpoints(checkpoints: Sequence[Any], module: torch.nn.Module, out: str | os.PathLike, *,
                     steps: Sequence[int] | None = None, loss: Sequence[float] | None = None,
                     overwrite: bool = False, **system_options: Any) -> xr.DataTree:
    """A store of checkpoints saved during training, as a :class:`Recorder` would have written it.

    Parameters
    ----------
    checkpoints
        ``torch.save``-d state_dict files (read with ``torch.load(..., weights_only=True)``), or state_dicts.
    module
        A module of the trained architecture (its class and constructor arguments; its weights are not used).
    out
        The store to write (a new path; ``overwrite=True`` replaces a store).
    steps
        The step of each checkpoint (default ``0, 1, ...``): the ``epoch`` coordinate.
    loss
        The loss at each checkpoint, if known.
    **system_options
        ``kind``, ``input``, ``bounds``, ... as for :class:`Recorder` (:func:`dynlearn.from_module`).

    Returns
    -------
    xarray.DataTree
        The store, opened (:func:`dynlearn.open_store`).
    """
    items = list(checkpoints)
    steps = list(range(len(items))) if steps is None else list(steps)
    losses = [None] * len(items) if loss is None else list(loss)
    if not items or len(steps) != len(items) or len(losses) != len(items):
        raise ShapeError(f"load_checkpoints: {len(items)} checkpoints, {len(steps)} steps and {len(losses)} losses "
                         "(need at least one checkpoint, and one step and loss per checkpoint)")
    with Recorder(out, module, commit_seconds=math.inf, overwrite=overwrite, resume=False, **system_options) as rec:
        for step, item, value in zip(steps, items, losses):
            rec.log(step, _load_state_dict(item), loss=value)
    return open_store(out)


def _load_state_dict(item: Any) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    if not isinstance(item, (str, os.PathLike)):
        raise ParameterError(f"load_checkpoints: a checkpoint must be a state_dict or a file, got {type(item).__name__}")
    try:
        sd = torch.load(item, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ParameterError(f"load_checkpoints: no checkpoint file {item}") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for files it cannot read safely
        raise ParameterError(f"load_checkpoints: {item} is not a state_dict torch.load(weights_only=True) can read "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:100]})") from None
    if not isinstance(sd, Mapping):
        raise ParameterError(f"load_checkpoints: {item} holds a {type(sd).__name__}, not a state_dict")
    return sd

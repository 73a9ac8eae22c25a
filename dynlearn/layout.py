"""The store layout of a training run (``/train``, ``/params``, ``/state``) and the run's resume I/O.

A run's store is preallocated from :meth:`RunLayout.datasets` (lazy arrays: metadata and coordinates only, see
:func:`dynlearn.store.create_store`); every chunk of epochs then writes the region blocks
:meth:`RunLayout.chunk_blocks` places (records, checkpoints, the resume-state slot, the per-network outcome),
followed by its ``committed`` flag (:class:`dynlearn.store.ChunkWriter`). A resumed run asks
:meth:`RunLayout.resume_chunk` where to start (the experiment checked, the store verified or repaired) and
:meth:`RunLayout.load_state` for the state at the end of the chunk before it.

The resume state of a network is made of sections: ``theta`` (learned parameters), ``opt`` (optimizer state),
``hp`` (scheduled hyper-parameters), ``sched`` (schedule state), each a mapping of name to a per-network array
(leading dim: the flat batch of networks), and the arrays ``status`` and ``outcome_epoch``. In ``/state`` they
are stored as ``<section>__<name>``, ``status`` and ``outcome_epoch``, each with a ``slot`` dim of two: the slot
``chunk % 2`` holds the state at the end of ``chunk`` (``slot_chunk`` says which), so the two slots keep the last
two committed chunks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from . import outcome as oc
from .errors import StoreError
from .integrity import RUN_DATA, check_store
from .store import root_attrs

__all__ = ["RunLayout", "STATE_SECTIONS"]

#: sections of the resume state stored per name (``<section>__<name>``), in this order
STATE_SECTIONS = ("theta", "opt", "hp", "sched")
#: per-network arrays of the resume state stored under their own name, after the sections
_STATE_ARRAYS = ("status", "outcome_epoch")


def _flat_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """``{"theta": {"w": a}, ..., "status": s, "outcome_epoch": e}`` -> ``{"theta__w": a, ..., "status": s, ...}``."""
    flat = {f"{sec}__{n}": v for sec in STATE_SECTIONS for n, v in state[sec].items()}
    flat.update((key, state[key]) for key in _STATE_ARRAYS)
    return flat


def _np_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype of a torch or numpy dtype."""
    if isinstance(dtype, np.dtype):
        return dtype
    import torch

    return np.dtype({torch.float64: np.float64, torch.float32: np.float32, torch.int64: np.int64,
                     torch.int32: np.int32, torch.int8: np.int8, torch.bool: np.bool_}[dtype])


class RunLayout:
    """Where every number of one training run lives in its store.

    Parameters
    ----------
    system : TrainableSystem
        The trained system (parameter declarations and their dims, hyper-parameter and metric attrs).
    seeds : sequence of int
        The seeds (first dim of every per-network array).
    sweep : mapping of str to array
        The swept hyper-parameters and their values (the next dims, in this order).
    fixed : mapping of str to float
        The hyper-parameters held fixed (scalar coordinates unless scheduled).
    scheduled : tuple of str
        Hyper-parameters a schedule changes (recorded per epoch as ``current_<name>``).
    epochs, chunk, checkpoint_every : int
        Epochs of the run, epochs per chunk (one commit each), epochs between parameter checkpoints.
    dtype : numpy dtype
        Dtype of the stored parameters.
    state : mapping
        The resume state of a fresh run (sections and arrays as in the module docstring): only the names, the
        per-network shapes (``v.shape[1:]``) and dtypes (torch or numpy) of its arrays are used.
    """

    def __init__(self, system: Any, *, seeds: Sequence[int], sweep: Mapping[str, np.ndarray],
                 fixed: Mapping[str, float], scheduled: tuple[str, ...], epochs: int, chunk: int,
                 checkpoint_every: int, dtype: Any, state: Mapping[str, Any]) -> None:
        self.system = system
        self.seeds = np.asarray(seeds, dtype=np.int64)
        self.sweep, self.fixed, self.scheduled = dict(sweep), dict(fixed), tuple(scheduled)
        self.E, self.C, self.k = epochs, chunk, checkpoint_every
        self.dtype = np.dtype(dtype)
        self.dims = ("seed", *self.sweep)
        self.shape = (len(self.seeds), *(len(v) for v in self.sweep.values()))
        self.n_chunks = math.ceil(self.E / self.C)
        #: name in ``/state`` -> (per-network shape, numpy dtype)
        self.state_vars = {key: (tuple(v.shape[1:]), _np_dtype(v.dtype)) for key, v in _flat_state(state).items()}

    # -- preallocation ------------------------------------------------------------------------------------------
    def coords(self) -> dict[str, Any]:
        """The coordinates every group shares: ``seed``, the swept and the fixed (unscheduled) hyper-parameters."""
        coords: dict[str, Any] = {"seed": ("seed", self.seeds, {"long_name": "random seed of the initialisation"})}
        for h, v in self.sweep.items():
            coords[h] = (h, v, self.system.hyper[h].attrs(h))
        for h, v in self.fixed.items():
            if h not in self.scheduled:
                coords[h] = ((), float(v), self.system.hyper[h].attrs(h))
        return coords

    def datasets(self) -> dict[str, xr.Dataset]:
        """The preallocation layout: ``train``, ``params`` and ``state`` datasets of lazy (dask) arrays.

        Returns
        -------
        dict of str to Dataset
            The groups of the run, for :func:`dynlearn.store.create_store` (and :func:`dynlearn.repair.repair_run`).
        """
        coords = self.coords()
        return {"train": self._train(coords), "params": self._params(coords), "state": self._state(coords)}

    def _train(self, coords: dict[str, Any]) -> xr.Dataset:
        E, C, sw = self.E, self.C, self.shape
        tdims, tchunks = ("epoch", *self.dims), (C, *sw)
        train = {
            "loss": (tdims, _lazy((E, *sw), tchunks, np.float64), {"long_name": "training loss", "units": "1"}),
            "grad_norm": (tdims, _lazy((E, *sw), tchunks, np.float64),
                          {"long_name": "L2 norm of the loss gradient over all parameters", "units": "1"}),
            "status": (tdims, _lazy((E, *sw), tchunks, np.int8), oc.flag_attrs("network status at this epoch")),
            "outcome": (self.dims, _lazy(sw, sw, np.int8), oc.flag_attrs("outcome of training")),
            "outcome_epoch": (self.dims, _lazy(sw, sw, np.int64),
                              {"long_name": "epoch at which training stopped being ok (-1: never)", "units": "epoch"}),
            "committed": (("chunk",), _lazy((self.n_chunks,), (1,), bool),
                          {"long_name": "chunk fully written (epochs chunk_start .. next chunk_start - 1)"}),
        }
        for m in self.system.metric_attrs:
            train[m] = (tdims, _lazy((E, *sw), tchunks, np.float64), dict(self.system.metric_attrs[m]))
        for h in self.scheduled:
            attrs = dict(self.system.hyper[h].attrs(h))
            attrs["long_name"] = f"{attrs.get('long_name', h)} in effect at this epoch (scheduled)"
            train[f"current_{h}"] = (tdims, _lazy((E, *sw), tchunks, np.float64), attrs)
        train_coords = {
            **coords,
            "epoch": ("epoch", np.arange(E, dtype=np.int64), {"long_name": "training epoch", "units": "epoch"}),
            "chunk_start": ("chunk", np.arange(0, E, C, dtype=np.int64), {"long_name": "first epoch of the chunk"}),
        }
        ds = xr.Dataset(train, coords=train_coords)
        ds["outcome_epoch"].encoding["fill_value"] = -1
        ds["committed"].encoding["fill_value"] = False
        ds["outcome"].encoding["fill_value"] = 0
        return ds

    def _params(self, coords: dict[str, Any]) -> xr.Dataset:
        sw = self.shape
        ck = np.arange(0, self.E, self.k, dtype=np.int64)
        pvars = {}
        for name, decl in self.system.parameters.items():
            edims, eshape = tuple(decl.shape), self.system.event_shape(name)
            pvars[name] = (("epoch", *self.dims, *edims),
                           _lazy((len(ck), *sw, *eshape), (self.C // self.k, *sw, *eshape), self.dtype),
                           decl.attrs(name))
        epoch = ("epoch", ck, {"long_name": "training epoch (parameter checkpoint)", "units": "epoch"})
        return xr.Dataset(pvars, coords={**coords, "epoch": epoch})

    def _state(self, coords: dict[str, Any]) -> xr.Dataset:
        sw = self.shape
        svars = {"slot_chunk": (("slot",), np.full(2, -1, dtype=np.int64),
                                {"long_name": "chunk whose end state the slot holds"})}
        for key, (shape, dtype) in self.state_vars.items():
            extra = () if key in _STATE_ARRAYS else tuple(f"{key}_{i}" for i in range(len(shape)))
            svars[key] = (("slot", *self.dims, *extra), _lazy((2, *sw, *shape), (1, *sw, *shape), dtype), {})
        ds = xr.Dataset(svars, coords={k: v for k, v in coords.items() if k in self.dims})
        ds.attrs["description"] = "resume state (parameters, optimizer and schedule state) at chunk boundaries"
        return ds

    # -- writing ------------------------------------------------------------------------------------------------
    def chunk_epochs(self, ci: int) -> tuple[int, int]:
        """The epochs ``a .. b - 1`` of chunk ``ci``, as ``(a, b)``."""
        return ci * self.C, min((ci + 1) * self.C, self.E)

    @staticmethod
    def commit_flag(ci: int) -> tuple[str, int]:
        """The flag set after every block of chunk ``ci`` is written (the ``commit`` of
        :meth:`dynlearn.store.ChunkWriter.submit`)."""
        return "train/committed", ci

    def chunk_blocks(self, ci: int, records: Mapping[str, np.ndarray], checkpoints: Mapping[str, np.ndarray],
                     state: Mapping[str, Any]) -> dict[str, tuple[Any, np.ndarray]]:
        """The region writes of chunk ``ci``, in the order they are to be written (its commit flag follows).

        Parameters
        ----------
        ci : int
            The chunk of epochs.
        records : mapping of str to ndarray
            Per-epoch records of ``/train`` (``loss``, ``status``, metrics, ...), each ``(epochs of the chunk, B)``.
        checkpoints : mapping of str to ndarray
            Parameters at the chunk's checkpoint epochs, each ``(checkpoints, B, *event shape)``.
        state : mapping
            The resume state at the end of the chunk (sections and arrays as in the module docstring, numpy);
            its ``status`` and ``outcome_epoch`` are also the per-network outcome of ``/train``.

        Returns
        -------
        dict
            ``{"group/var": (region, array)}`` for :meth:`dynlearn.store.ChunkWriter.submit`.
        """
        a, b = self.chunk_epochs(ci)
        sw = self.shape
        full = tuple(slice(None) for _ in sw)
        blocks: dict[str, tuple[Any, np.ndarray]] = {}
        for key, arr in records.items():
            blocks[f"train/{key}"] = ((slice(a, b), *full), arr.reshape(b - a, *sw))
        k0 = -(-a // self.k)
        for name, arr in checkpoints.items():
            blocks[f"params/{name}"] = ((slice(k0, k0 + arr.shape[0]), *full),
                                        arr.reshape(arr.shape[0], *sw, *arr.shape[2:]))
        slot = ci % 2
        for key, arr in _flat_state(state).items():
            blocks[f"state/{key}"] = ((slot, *full), arr.reshape(*sw, *arr.shape[1:]))
        blocks["state/slot_chunk"] = ((slot,), np.asarray(ci, dtype=np.int64))
        blocks["train/outcome"] = (full, state["status"].reshape(sw))
        blocks["train/outcome_epoch"] = (full, state["outcome_epoch"].reshape(sw))
        return blocks

    # -- resuming -----------------------------------------------------------------------------------------------
    def resume_chunk(self, path: str | os.PathLike, config_hash: str, *, repair: bool = False) -> int:
        """The first chunk a run into the existing store ``path`` computes (``n_chunks``: the run is complete).

        The store must hold this experiment (``config_hash``). Its run groups are verified
        (:func:`dynlearn.integrity.check_store`) so a run resumes only from intact committed chunks; with
        ``repair`` its damaged chunks are uncommitted instead (:func:`dynlearn.repair.repair_run`).

        Raises
        ------
        StoreError
            Another experiment's store, or a damaged one (without ``repair``).
        """
        p = Path(path)
        attrs = root_attrs(p)
        if attrs.get("config_hash") != config_hash:
            raise StoreError(
                f"{p} holds a different experiment ({attrs.get('config', {}).get('name')!r}, config hash "
                f"{attrs.get('config_hash')}); use another --out or --overwrite"
            )
        if repair:  # uncommits every damaged chunk: what remains damaged, the run rewrites
            from .repair import repair_run

            repair_run(p, self.datasets(), attrs)
        else:
            check_store(p, groups=RUN_DATA)
        flags = np.asarray(zarr.open_group(str(p), mode="r")["train/committed"][:], dtype=bool)
        return int(np.argmin(flags)) if not flags.all() else len(flags)

    def load_state(self, path: str | os.PathLike, chunk: int) -> dict[str, Any]:
        """The resume state at the end of committed chunk ``chunk``, numpy arrays with the flat batch first.

        Returns
        -------
        dict
            Sections (``theta``, ``opt``, ``hp``, ``sched``: mapping of name to array) and the arrays ``status``
            and ``outcome_epoch``, as in the module docstring.

        Raises
        ------
        StoreError
            The slot of ``chunk`` holds another chunk's state (the store is damaged).
        """
        root = zarr.open_group(str(path), mode="r")
        slot = chunk % 2
        if int(root["state/slot_chunk"][slot]) != chunk:
            raise StoreError(f"{path}: resume state for chunk {chunk} is missing (store damaged)")
        B = int(np.prod(self.shape))
        state: dict[str, Any] = {sec: {} for sec in STATE_SECTIONS}
        for key in self.state_vars:
            arr = np.asarray(root[f"state/{key}"][slot])
            arr = arr.reshape(B, *arr.shape[len(self.shape):])
            sec, _, name = key.partition("__")
            if name:
                state[sec][name] = arr
            else:
                state[key] = arr
        return state


def _lazy(shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any):
    import dask.array as da

    return da.zeros(shape, chunks=chunks, dtype=dtype)

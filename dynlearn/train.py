"""Batched training: seeds x hyper-parameter grid trained as ONE tensor batch, chunked into a result store.

    >>> import dynlearn
    >>> sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    >>> res = dynlearn.train(sn, epochs=200, seeds=2, sweep={"lr": [1e-10, 2e-9]})
    >>> res.tree["train"]["loss"].dims
    ('epoch', 'seed', 'lr')
    >>> res.tree["train"]["outcome"].values.tolist()
    [['ok', 'ok'], ['ok', 'ok']]

Data flows one way: config -> :func:`run_experiment` (batched training) -> store (:mod:`dynlearn.store`). Every
network gets a per-epoch ``status`` and a final ``outcome`` (ok / diverged / nan): a network whose loss or
gradient becomes non-finite, or whose parameters leave ``|theta|_inf <= max_norm``, is frozen and labeled,
the others go on. Interrupted runs resume from the last committed chunk and give the same store contents.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
import zarr

from . import outcome as oc
from .config import Experiment, resolve_experiment
from .errors import ConfigError, StoreError
from .integrity import RUN_DATA, check_store, relock, store_lock
from .optim import make_optimizer
from .progress import Meter
from .safety import check_store_target, remove, scratch_dir
from .schedule import make_schedule
from .store import ChunkWriter, consolidate, create_store, open_store, root_attrs, unconsolidate
from .system import TrainableSystem
from .threads import torch_threads

__all__ = ["train", "run_experiment", "RunResult"]


@dataclass
class RunResult:
    """What :func:`run_experiment` did: the store, its tree (opened lazily), timings (seconds)."""

    path: Path | None
    _tree: xr.DataTree | None
    epochs_run: int
    resumed_from: int
    seconds_total: float = 0.0
    seconds_write_blocked: float = 0.0
    seconds_writing: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def tree(self) -> xr.DataTree:
        """The run's store, opened on first access."""
        if self._tree is None:
            self._tree = open_store(self.path)
        return self._tree

    @tree.setter
    def tree(self, value: xr.DataTree) -> None:
        self._tree = value

    @property
    def write_fraction(self) -> float:
        """Fraction of the run's wall time the training loop spent blocked on store writes."""
        return self.seconds_write_blocked / self.seconds_total if self.seconds_total else 0.0


def train(
    system: TrainableSystem,
    *,
    epochs: int,
    seeds: int | Sequence[int] = 1,
    sweep: Mapping[str, Any] | None = None,
    hyper: Mapping[str, float] | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
    name: str = "train",
    analyze: Sequence[Mapping[str, Any]] = (),
    **train_options: Any,
) -> RunResult:
    """Train ``system`` for every seed and hyper-parameter combination at once (see :func:`run_experiment`).

    ``train_options`` are the other ``[train]`` keys of an experiment file (``optimizer``, ``dtype``,
    ``chunk``, ``checkpoint_every``, ``max_norm``, ``schedule``, ...). With ``out=None`` the run is kept in memory.
    """
    cfg = system.get_params()
    task = cfg.pop("task", {}) or {}
    raw = {
        "name": name,
        "system": {"name": system.name, **cfg},
        "task": task,
        "train": {"epochs": epochs, "seeds": seeds if isinstance(seeds, int) else list(seeds), **train_options},
        "sweep": {k: list(np.atleast_1d(np.asarray(v, dtype=float)).tolist()) for k, v in (sweep or {}).items()},
        "hyper": dict(hyper or {}),
        "analyze": [dict(a) for a in analyze],
    }
    exp = resolve_experiment(raw, source=name)
    return run_experiment(exp, out, overwrite=overwrite, show_progress=show_progress)


def run_experiment(
    exp: Experiment,
    out: str | os.PathLike | None,
    *,
    overwrite: bool = False,
    repair: bool = False,
    show_progress: bool | None = None,
) -> RunResult:
    """Run (or resume) an experiment into the store ``out``; then its ``[[analyze]]`` steps.

    The store is locked while it is written (:func:`dynlearn.integrity.store_lock`): a second writer is refused.
    A resumed run first verifies the run's groups (:func:`dynlearn.integrity.verify`) and refuses a damaged store;
    ``repair=True`` recomputes its damaged committed chunks instead (:mod:`dynlearn.repair`), bitwise as before.

    If ``out`` holds an unfinished run of the same experiment (same config hash) it resumes from its last
    committed chunk; a store of a different experiment is an error unless ``overwrite``. ``out`` is checked
    first (:func:`dynlearn.safety.check_store_target`): a file, a symlink or a directory that is not a dynlearn
    store is refused and left untouched, with or without ``overwrite``.
    """
    temp_dir = None
    if out is None:
        temp_dir = scratch_dir()
        out = temp_dir / "run.zarr"
    path = check_store_target(out, overwrite=overwrite)
    if repair and overwrite:
        raise ConfigError("--repair keeps the store and --overwrite replaces it: give one of them")
    try:
        with store_lock(path):
            runner = _Runner(exp, path, show_progress)
            result = runner.run(overwrite=overwrite, repair=repair)
            if exp.config.get("analyze"):
                from .api import analyze

                for spec in exp.config["analyze"]:
                    spec = dict(spec)
                    aname = spec.pop("name")
                    # the experiment declares these groups: a resumed or repeated run replaces its own results
                    analyze(path, aname, show_progress=show_progress, overwrite=True, **spec)
                result.tree = open_store(path)
        if temp_dir is not None:
            result.tree = result.tree.load()
            result.path = None
        return result
    finally:
        if temp_dir is not None:
            remove(temp_dir)


def _provenance() -> dict[str, Any]:
    import platform
    import sys

    from . import __version__

    return {
        "dynlearn": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "zarr": zarr.__version__,
        "platform": platform.platform(),
        "host": platform.node(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class _Runner:
    """One experiment's training loop and its store layout."""

    def __init__(self, exp: Experiment, path: Path, show_progress: bool | None) -> None:
        self.exp, self.path, self.show = exp, path, show_progress
        cfg = exp.config
        tr = cfg["train"]
        self.system = exp.trainable()
        self.dtype = getattr(torch, tr["dtype"])
        self.device = torch.device(tr["device"])
        self.E, self.C, self.k = tr["epochs"], tr["chunk"], tr["checkpoint_every"]
        self.max_norm = tr["max_norm"]
        self.seeds = np.asarray(tr["seeds"], dtype=np.int64)
        self.sweep = {k: np.asarray(v, dtype=float) for k, v in cfg["sweep"].items()}
        self.fixed = dict(cfg["hyper"])
        self.dims = ("seed", *self.sweep)
        self.shape = (len(self.seeds), *(len(v) for v in self.sweep.values()))
        self.B = int(np.prod(self.shape))
        self.n_chunks = math.ceil(self.E / self.C)
        self.optimizer = make_optimizer(tr["optimizer"], **tr["optimizer_options"])
        self.schedule = make_schedule(tr["schedule"])
        self.scheduled = tuple(self.schedule.changes) if self.schedule else ()
        grids = np.meshgrid(self.seeds, *self.sweep.values(), indexing="ij")
        self.flat_seed = torch.as_tensor(grids[0].ravel(), device=self.device)
        self.hp0 = {}
        for i, h in enumerate(self.sweep, start=1):
            self.hp0[h] = torch.as_tensor(grids[i].ravel(), dtype=self.dtype, device=self.device)
        for h, v in self.fixed.items():
            self.hp0[h] = torch.full((self.B,), float(v), dtype=self.dtype, device=self.device)
        self.metric_names = tuple(self.system.metric_attrs)
        self.param_names = tuple(self.system.parameters)

    # -- layout ---------------------------------------------------------------------------------------------
    def _coords(self) -> dict[str, Any]:
        coords: dict[str, Any] = {"seed": ("seed", self.seeds, {"long_name": "random seed of the initialisation"})}
        for h, v in self.sweep.items():
            coords[h] = (h, v, self.system.hyper[h].attrs(h))
        for h, v in self.fixed.items():
            if h not in self.scheduled:
                coords[h] = ((), float(v), self.system.hyper[h].attrs(h))
        return coords

    def _event(self, name: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return tuple(self.system.parameters[name].shape), self.system.event_shape(name)

    def layout(self, theta: Mapping[str, torch.Tensor], opt_state: Mapping[str, torch.Tensor],
               sched_state: Mapping[str, torch.Tensor]) -> dict[str, xr.Dataset]:
        import dask.array as da

        coords = self._coords()
        E, C, k = self.E, self.C, self.k
        sw = self.shape
        npdt = np.float32 if self.dtype == torch.float32 else np.float64

        def lazy(shape, chunks, dtype):
            return da.zeros(shape, chunks=chunks, dtype=dtype)

        tdims = ("epoch", *self.dims)
        tchunks = (C, *sw)
        train = {
            "loss": (tdims, lazy((E, *sw), tchunks, np.float64), {"long_name": "training loss", "units": "1"}),
            "grad_norm": (tdims, lazy((E, *sw), tchunks, np.float64),
                          {"long_name": "L2 norm of the loss gradient over all parameters", "units": "1"}),
            "status": (tdims, lazy((E, *sw), tchunks, np.int8), oc.flag_attrs("network status at this epoch")),
            "outcome": (self.dims, lazy(sw, sw, np.int8), oc.flag_attrs("outcome of training")),
            "outcome_epoch": (self.dims, lazy(sw, sw, np.int64),
                              {"long_name": "epoch at which training stopped being ok (-1: never)", "units": "epoch"}),
            "committed": (("chunk",), lazy((self.n_chunks,), (1,), bool),
                          {"long_name": "chunk fully written (epochs chunk_start .. next chunk_start - 1)"}),
        }
        for m in self.metric_names:
            train[m] = (tdims, lazy((E, *sw), tchunks, np.float64), dict(self.system.metric_attrs[m]))
        for h in self.scheduled:
            attrs = dict(self.system.hyper[h].attrs(h))
            attrs["long_name"] = f"{attrs.get('long_name', h)} in effect at this epoch (scheduled)"
            train[f"current_{h}"] = (tdims, lazy((E, *sw), tchunks, np.float64), attrs)
        train_coords = {
            **coords,
            "epoch": ("epoch", np.arange(E, dtype=np.int64), {"long_name": "training epoch", "units": "epoch"}),
            "chunk_start": ("chunk", np.arange(0, E, C, dtype=np.int64), {"long_name": "first epoch of the chunk"}),
        }
        train_ds = xr.Dataset(train, coords=train_coords)
        train_ds["outcome_epoch"].encoding["fill_value"] = -1
        train_ds["committed"].encoding["fill_value"] = False
        train_ds["outcome"].encoding["fill_value"] = 0

        ck = np.arange(0, E, k, dtype=np.int64)
        pvars = {}
        for name in self.param_names:
            edims, eshape = self._event(name)
            decl = self.system.parameters[name]
            pvars[name] = (("epoch", *self.dims, *edims), lazy((len(ck), *sw, *eshape), (C // k, *sw, *eshape), npdt),
                           decl.attrs(name))
        params_ds = xr.Dataset(
            pvars,
            coords={**coords, "epoch": ("epoch", ck, {"long_name": "training epoch (parameter checkpoint)",
                                                      "units": "epoch"})},
        )

        svars = {"slot_chunk": (("slot",), np.full(2, -1, dtype=np.int64), {"long_name": "chunk whose end state the slot holds"})}
        state_tensors = {**{f"theta__{n}": v for n, v in theta.items()}, **{f"opt__{n}": v for n, v in opt_state.items()},
                         **{f"hp__{n}": self.hp0[n] for n in self.scheduled},
                         **{f"sched__{n}": v for n, v in sched_state.items()}}
        for key, v in state_tensors.items():
            extra = tuple(f"{key}_{i}" for i in range(v.dim() - 1))
            svars[key] = (("slot", *self.dims, *extra), lazy((2, *sw, *v.shape[1:]), (1, *sw, *v.shape[1:]),
                                                           _np_dtype(v)), {})
        for key, dt in (("status", np.int8), ("outcome_epoch", np.int64)):
            svars[key] = (("slot", *self.dims), lazy((2, *sw), (1, *sw), dt), {})
        state_ds = xr.Dataset(svars, coords={k2: v for k2, v in coords.items() if k2 in self.dims})
        state_ds.attrs["description"] = "resume state (parameters, optimizer and schedule state) at chunk boundaries"
        self.state_keys = tuple(state_tensors)
        return {"train": train_ds, "params": params_ds, "state": state_ds}

    # -- running ----------------------------------------------------------------------------------------------
    def _fresh(self):
        with torch.no_grad():
            theta = self.system.init(self.flat_seed, {k: v.clone() for k, v in self.hp0.items()})
        theta = {k: v.to(self.dtype).to(self.device).contiguous() for k, v in theta.items()}
        missing = set(self.param_names) - set(theta)
        if missing:
            raise StoreError(f"{self.system.name}.init() did not return {sorted(missing)}")
        opt_state = self.optimizer.init(theta)
        sched_state = self.schedule.init(self.hp0) if self.schedule else {}
        return theta, opt_state, sched_state

    def run(self, overwrite: bool = False, repair: bool = False) -> RunResult:
        """Train (or resume, or repair) with torch using ``train.threads`` threads (1 by default: the batch of
        small per-network tensors gains nothing from intra-op threads, and on a busy machine they cost a lot)."""
        with torch_threads(int(self.exp.config["train"].get("threads", 1))):
            return self._run(overwrite, repair)

    def _run(self, overwrite: bool = False, repair: bool = False) -> RunResult:
        t_start = time.perf_counter()
        theta, opt_state, sched_state = self._fresh()
        hp = {k: v.clone() for k, v in self.hp0.items()}
        status = torch.zeros(self.B, dtype=torch.int8, device=self.device)
        out_epoch = torch.full((self.B,), -1, dtype=torch.int64, device=self.device)
        groups = self.layout(theta, opt_state, sched_state)
        start_chunk = 0
        if self.path.exists() and not overwrite:
            attrs = root_attrs(self.path)
            if attrs.get("config_hash") != self.exp.hash:
                raise StoreError(
                    f"{self.path} holds a different experiment ({attrs.get('config', {}).get('name')!r}, config hash "
                    f"{attrs.get('config_hash')}); use another --out or --overwrite"
                )
            if repair:  # uncommits every damaged chunk: what remains damaged, the run below rewrites
                from .repair import repair_run

                repair_run(self.path, groups, attrs)
            else:
                check_store(self.path, groups=RUN_DATA)  # resume only from intact committed chunks
            root = zarr.open_group(str(self.path), mode="r")
            flags = np.asarray(root["train/committed"][:], dtype=bool)
            start_chunk = int(np.argmin(flags)) if not flags.all() else len(flags)
            if start_chunk > 0:
                theta, opt_state, sched_state, hp, status, out_epoch = self._load_state(root, start_chunk - 1)
            if start_chunk == self.n_chunks:
                consolidate(self.path)
                return RunResult(self.path, None, 0, self.E, time.perf_counter() - t_start)
            unconsolidate(self.path)
            setup = None
        else:
            attrs = {"version": _provenance()["dynlearn"], "config": self.exp.config,
                     "config_hash": self.exp.hash, "provenance": _provenance()}

            def setup():
                create_store(self.path, groups, attrs, overwrite=overwrite)
                relock(self.path)  # the new store has a new lock file

        resumed_from = start_chunk * self.C
        writer = ChunkWriter(self.path, setup=setup)
        meter = Meter(self.E, f"train {self.exp.config['name']}", self.show, unit="epoch")
        meter.update(resumed_from)
        prep = 0.0
        delay = float(os.environ.get("DYNLEARN_CHUNK_DELAY", "0") or 0)  # test hook: widen the kill window
        try:
            for ci in range(start_chunk, self.n_chunks):
                a, b = ci * self.C, min((ci + 1) * self.C, self.E)
                recs, ckpts, theta, opt_state, sched_state, hp, status, out_epoch = self._train_chunk(
                    a, b, theta, opt_state, sched_state, hp, status, out_epoch, meter)
                t0 = time.perf_counter()
                blocks = self._blocks(ci, a, b, recs, ckpts, theta, opt_state, sched_state, hp, status, out_epoch)
                prep += time.perf_counter() - t0
                writer.submit(blocks, commit=("train/committed", ci))
                n_ok = int((status == oc.OK).sum())
                meter.set(ok=f"{n_ok}/{self.B}")
                if delay:
                    time.sleep(delay)
        finally:
            meter.close()
            writer.close()
        consolidate(self.path)
        total = time.perf_counter() - t_start
        return RunResult(self.path, None, self.E - resumed_from, resumed_from, total,
                         seconds_write_blocked=writer.wait_seconds + prep, seconds_writing=writer.write_seconds)

    def _train_chunk(self, a, b, theta, opt_state, sched_state, hp, status, out_epoch, meter):
        """Epochs ``a .. b-1``. The common path (every network ok) costs a handful of tensor ops per epoch;
        status bookkeeping runs only on the epochs where some network fails."""
        n = b - a
        B = self.B
        f64 = torch.float64
        recs = {k: torch.empty(n, B, dtype=f64, device=self.device)
                for k in ("loss", "grad_norm", *self.metric_names, *(f"current_{h}" for h in self.scheduled))}
        recs["status"] = torch.empty(n, B, dtype=torch.int8, device=self.device)
        ck_epochs = [e for e in range(a, b) if e % self.k == 0]
        ckpts = {name: torch.empty(len(ck_epochs), *v.shape, dtype=v.dtype, device=self.device)
                 for name, v in theta.items()}
        inf = math.inf
        alive = status == oc.OK
        all_alive = bool(alive.all())
        dead_alive = None if all_alive else alive
        j = 0
        with torch.no_grad():
            for e in range(a, b):
                i = e - a
                if e % self.k == 0:
                    for name, v in theta.items():
                        ckpts[name][j].copy_(v)
                    j += 1
                loss, grads, metrics = self.system.evaluate(theta, hp)
                gsq = None
                for g in grads.values():
                    term = g.square() if g.dim() == 1 else g.reshape(B, -1).square().sum(1)
                    gsq = term if gsq is None else gsq + term
                vmax = None
                for v in theta.values():
                    m = v.abs() if v.dim() == 1 else v.reshape(B, -1).abs().amax(1)
                    vmax = m if vmax is None else torch.maximum(vmax, m)
                nonfinite = ~((loss + gsq).abs() < inf)
                big = vmax > self.max_norm
                failing = (nonfinite | big) & alive
                if bool(failing.any()):
                    code = torch.where(nonfinite, oc.NAN, oc.DIVERGED).to(torch.int8)
                    status = torch.where(failing, code, status)
                    out_epoch = torch.where(failing, e, out_epoch)
                    alive = status == oc.OK
                    all_alive = False
                    dead_alive = alive
                recs["loss"][i].copy_(loss)
                recs["grad_norm"][i].copy_(gsq)
                recs["status"][i].copy_(status)
                for m in self.metric_names:
                    recs[m][i].copy_(metrics[m])
                for h in self.scheduled:
                    recs[f"current_{h}"][i].copy_(hp[h])
                if all_alive:
                    theta, opt_state = self.optimizer.step(theta, grads, hp["lr"], opt_state, None)
                else:
                    theta, opt_state = self.optimizer.step(theta, grads, hp["lr"], opt_state, dead_alive)
                if self.schedule is not None:
                    hp, sched_state = self.schedule.step(e, hp, sched_state, {"loss": loss, **metrics, "status": status})
                meter.update()
        recs["grad_norm"].sqrt_()
        return recs, ckpts, theta, opt_state, sched_state, hp, status, out_epoch

    def _blocks(self, ci, a, b, recs, ckpts, theta, opt_state, sched_state, hp, status, out_epoch):
        sw = self.shape
        full = tuple(slice(None) for _ in sw)
        blocks: dict[str, tuple[Any, np.ndarray]] = {}
        for key, buf in recs.items():
            blocks[f"train/{key}"] = ((slice(a, b), *full), buf.cpu().numpy().reshape(b - a, *sw))
        k0 = -(-a // self.k)
        for name, buf in ckpts.items():
            arr = buf.cpu().numpy()
            blocks[f"params/{name}"] = ((slice(k0, k0 + arr.shape[0]), *full), arr.reshape(arr.shape[0], *sw, *arr.shape[2:]))
        slot = ci % 2
        state = {**{f"theta__{n}": v for n, v in theta.items()}, **{f"opt__{n}": v for n, v in opt_state.items()},
                 **{f"hp__{n}": hp[n] for n in self.scheduled}, **{f"sched__{n}": v for n, v in sched_state.items()},
                 "status": status, "outcome_epoch": out_epoch}
        for key, v in state.items():
            arr = v.detach().cpu().numpy()
            blocks[f"state/{key}"] = ((slot, *full), arr.reshape(*sw, *arr.shape[1:]))
        blocks["state/slot_chunk"] = ((slot,), np.asarray(ci, dtype=np.int64))
        blocks["train/outcome"] = (full, status.cpu().numpy().reshape(sw))
        blocks["train/outcome_epoch"] = (full, out_epoch.cpu().numpy().reshape(sw))
        return blocks

    def _load_state(self, root, chunk: int):
        slot = chunk % 2
        if int(root["state/slot_chunk"][slot]) != chunk:
            raise StoreError(f"{self.path}: resume state for chunk {chunk} is missing (store damaged)")

        def get(key, dtype=None):
            arr = np.asarray(root[f"state/{key}"][slot])
            t = torch.as_tensor(arr.reshape(self.B, *arr.shape[len(self.shape):]), device=self.device)
            return t.to(dtype) if dtype is not None else t

        theta = {n: get(f"theta__{n}", self.dtype) for n in self.param_names}
        opt_keys = [k[5:] for k in self.state_keys if k.startswith("opt__")]
        opt_state = {n: get(f"opt__{n}") for n in opt_keys}
        hp = {n: (get(f"hp__{n}", self.dtype) if n in self.scheduled else v.clone()) for n, v in self.hp0.items()}
        sched = {k[7:]: get(k) for k in self.state_keys if k.startswith("sched__")}
        return theta, opt_state, sched, hp, get("status"), get("outcome_epoch")


def _np_dtype(t: torch.Tensor):
    return {torch.float64: np.float64, torch.float32: np.float32, torch.int64: np.int64, torch.int32: np.int32,
            torch.int8: np.int8, torch.bool: np.bool_}[t.dtype]

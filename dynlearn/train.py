"""Batched training: seeds x hyper-parameter grid trained as ONE tensor batch, chunked into a result store.

    >>> import dynlearn
    >>> sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    >>> res = dynlearn.train(sn, epochs=200, seeds=2, sweep={"lr": [1e-10, 2e-9]})
    >>> res.tree["train"]["loss"].dims
    ('epoch', 'seed', 'lr')
    >>> res.tree["train"]["outcome"].values.tolist()
    [['ok', 'ok'], ['ok', 'ok']]

Data flows one way: config -> :func:`dynlearn.api.run_experiment` (batched training, :class:`_Runner` here) -> store (:mod:`dynlearn.store`). Every
network gets a per-epoch ``status`` and a final ``outcome`` (ok / diverged / nan): a network whose loss or
gradient becomes non-finite, or whose parameters leave ``|theta|_inf <= max_norm``, is frozen and labeled,
the others go on. Interrupted runs resume from the last committed chunk and give the same store contents.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from . import outcome as oc
from .config import Experiment
from .errors import StoreError
from .integrity import relock
from .layout import STATE_SECTIONS, RunLayout
from .optim import make_optimizer
from .progress import Meter
from .provenance import provenance
from .plugins import make_schedule
from .store import ChunkWriter, consolidate, create_store, open_store, unconsolidate
from .threads import torch_threads

__all__ = ["RunResult", "TrainState"]


@dataclass
class RunResult:
    """What :func:`dynlearn.api.run_experiment` did: the store, its tree (opened lazily), timings (seconds)."""

    path: Path | None
    _tree: xr.DataTree | None
    epochs_run: int
    resumed_from: int
    seconds_total: float = 0.0
    seconds_write_blocked: float = 0.0
    seconds_writing: float = 0.0

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


@dataclass
class TrainState:
    """What the training loop carries from epoch to epoch, for the flat batch of ``B`` networks.

    Attributes
    ----------
    theta : dict of str to Tensor
        Learned parameters, each ``(B, *event shape)``.
    opt_state : dict of str to Tensor
        The optimizer's state.
    sched_state : dict of str to Tensor
        The schedule's state (empty without a schedule).
    hp : dict of str to Tensor
        Hyper-parameters in effect, each ``(B,)``.
    status : Tensor
        ``(B,)`` int8 outcome code of every network (``ok`` while it trains).
    out_epoch : Tensor
        ``(B,)`` int64 epoch at which a network stopped being ok (-1: never).
    """

    theta: dict[str, torch.Tensor]
    opt_state: dict[str, torch.Tensor]
    sched_state: dict[str, torch.Tensor]
    hp: dict[str, torch.Tensor]
    status: torch.Tensor
    out_epoch: torch.Tensor

    def slot(self, scheduled: tuple[str, ...]) -> dict[str, Any]:
        """The resume state as :class:`dynlearn.layout.RunLayout` stores it (tensors; ``hp``: the scheduled ones)."""
        return {"theta": self.theta, "opt": self.opt_state, "hp": {n: self.hp[n] for n in scheduled},
                "sched": self.sched_state, "status": self.status, "outcome_epoch": self.out_epoch}


class _Runner:
    """One experiment's training loop (the store layout and resume I/O: :class:`dynlearn.layout.RunLayout`)."""

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
        self.shape = (len(self.seeds), *(len(v) for v in self.sweep.values()))
        self.B = int(np.prod(self.shape))
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

    def _layout(self, state: TrainState) -> RunLayout:
        return RunLayout(self.system, seeds=self.seeds, sweep=self.sweep, fixed=self.fixed, scheduled=self.scheduled,
                         epochs=self.E, chunk=self.C, checkpoint_every=self.k,
                         dtype=np.float32 if self.dtype == torch.float32 else np.float64,
                         state=state.slot(self.scheduled))

    def _fresh(self) -> TrainState:
        """The state at epoch 0: ``system.init`` of every seed, fresh optimizer and schedule state, all ok."""
        with torch.no_grad():
            theta = self.system.init(self.flat_seed, {k: v.clone() for k, v in self.hp0.items()})
        theta = {k: v.to(self.dtype).to(self.device).contiguous() for k, v in theta.items()}
        missing = set(self.param_names) - set(theta)
        if missing:
            raise StoreError(f"{self.system.name}.init() did not return {sorted(missing)}")
        return TrainState(
            theta=theta,
            opt_state=self.optimizer.init(theta),
            sched_state=self.schedule.init(self.hp0) if self.schedule else {},
            hp={k: v.clone() for k, v in self.hp0.items()},
            status=torch.zeros(self.B, dtype=torch.int8, device=self.device),
            out_epoch=torch.full((self.B,), -1, dtype=torch.int64, device=self.device),
        )

    def _restore(self, slot: Mapping[str, Any]) -> TrainState:
        """A :class:`TrainState` from the numpy arrays of a stored slot (:meth:`RunLayout.load_state`)."""

        def tensor(arr, dtype=None):
            t = torch.as_tensor(arr, device=self.device)
            return t.to(dtype) if dtype is not None else t

        return TrainState(
            theta={n: tensor(slot["theta"][n], self.dtype) for n in self.param_names},
            opt_state={n: tensor(v) for n, v in slot["opt"].items()},
            sched_state={n: tensor(v) for n, v in slot["sched"].items()},
            hp={n: (tensor(slot["hp"][n], self.dtype) if n in self.scheduled else v.clone())
                for n, v in self.hp0.items()},
            status=tensor(slot["status"]),
            out_epoch=tensor(slot["outcome_epoch"]),
        )

    def run(self, overwrite: bool = False, repair: bool = False) -> RunResult:
        """Train (or resume, or repair) with torch using ``train.threads`` threads (1 by default: the batch of
        small per-network tensors gains nothing from intra-op threads, and on a busy machine they cost a lot)."""
        with torch_threads(int(self.exp.config["train"].get("threads", 1))):
            return self._run(overwrite, repair)

    def _run(self, overwrite: bool = False, repair: bool = False) -> RunResult:
        t_start = time.perf_counter()
        state = self._fresh()
        layout = self._layout(state)
        start_chunk = 0
        if self.path.exists() and not overwrite:
            start_chunk = layout.resume_chunk(self.path, self.exp.hash, repair=repair)
            if start_chunk > 0:
                state = self._restore(layout.load_state(self.path, start_chunk - 1))
            if start_chunk == layout.n_chunks:
                consolidate(self.path)
                return RunResult(self.path, None, 0, self.E, time.perf_counter() - t_start)
            unconsolidate(self.path)
            setup = None
        else:
            attrs = {"version": provenance()["dynlearn"], "config": self.exp.config,
                     "config_hash": self.exp.hash, "provenance": provenance()}

            def setup():
                create_store(self.path, layout.datasets(), attrs, overwrite=overwrite)
                relock(self.path)  # the new store has a new lock file

        resumed_from = start_chunk * self.C
        writer = ChunkWriter(self.path, setup=setup)
        meter = Meter(self.E, f"train {self.exp.config['name']}", self.show, unit="epoch")
        meter.update(resumed_from)
        prep = 0.0
        try:
            for ci in range(start_chunk, layout.n_chunks):
                a, b = layout.chunk_epochs(ci)
                recs, ckpts, state = self._train_chunk(a, b, state, meter)
                t0 = time.perf_counter()
                blocks = layout.chunk_blocks(ci, *self._block_data(recs, ckpts, state))
                prep += time.perf_counter() - t0
                writer.submit(blocks, commit=layout.commit_flag(ci))
                n_ok = int((state.status == oc.OK).sum())
                meter.set(ok=f"{n_ok}/{self.B}")
        finally:
            meter.close()
            writer.close()
        consolidate(self.path)
        total = time.perf_counter() - t_start
        return RunResult(self.path, None, self.E - resumed_from, resumed_from, total,
                         seconds_write_blocked=writer.wait_seconds + prep, seconds_writing=writer.write_seconds)

    def _train_chunk(self, a: int, b: int, state: TrainState, meter: Meter):
        """Epochs ``a .. b-1`` from ``state``: ``(records, checkpoints, state at the end)``. The common path (every
        network ok) costs a handful of tensor ops per epoch; status bookkeeping runs only on the epochs where some
        network fails."""
        theta, opt_state, sched_state, hp = state.theta, state.opt_state, state.sched_state, state.hp
        status, out_epoch = state.status, state.out_epoch
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
        return recs, ckpts, TrainState(theta, opt_state, sched_state, hp, status, out_epoch)

    def _block_data(self, recs: Mapping[str, torch.Tensor], ckpts: Mapping[str, torch.Tensor], state: TrainState):
        """What a chunk writes, as numpy: its records, its checkpoints and the resume state at its end."""
        slot = state.slot(self.scheduled)
        as_np = {sec: {n: v.detach().cpu().numpy() for n, v in slot[sec].items()} for sec in STATE_SECTIONS}
        as_np.update(status=state.status.cpu().numpy(), outcome_epoch=state.out_epoch.cpu().numpy())
        return ({k: buf.cpu().numpy() for k, buf in recs.items()}, {k: buf.cpu().numpy() for k, buf in ckpts.items()},
                as_np)

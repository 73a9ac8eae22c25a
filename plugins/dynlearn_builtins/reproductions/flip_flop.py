"""``dynlearn reproduce flip-flop``: the 3-bit flip-flop GRU of Sussillo & Barak (2013), opened with dynlearn.

A 16-unit ``nn.GRU`` with a linear readout is trained on the 3-bit flip-flop (:mod:`dynlearn_datasets.flip_flop`,
plain Adam, float32) with its checkpoints recorded by :class:`dynlearn.Recorder` into the reproduction's store;
the analyzers then run on that store as on any training run (the System is the GRU itself through
:func:`dynlearn.from_module`, its zero-input map ``h -> GRU(0, h)``, analysed in float64):

- ``/fixed_points``: every checkpoint, from the hidden states of the evaluation trials at that checkpoint
  (``n_states`` of them at random trials and times, plus Gaussian noise of standard deviation 0.5, as in
  FixedPointFinder's example) and ``n_starts`` states the analyzer samples;
- ``/bifurcations``: the points tracked over the checkpoints (predictor-corrector), with their events;
- ``/reference``: a dense per-start ``scipy.optimize.root`` search (MINPACK ``hybr``, closed-form Jacobian) from
  the same user states at the last checkpoint, deduplicated;
- ``/memories``: at the last checkpoint, each fixed point's readout (the trained ``nn.Linear``), its bit pattern
  (the readout's signs), and for each index-1 saddle the two stable points its unstable manifold ends at;
- ``/readout``: the trained readout's weights (the recorder stores the recurrent layer only);
- ``/lstm``, ``/rate`` (fixed points) and ``/lstm_memories``, ``/rate_memories``: the same analysis of an
  ``nn.LSTM`` (state ``(h, c)``) and of a continuous-time :class:`dynlearn.module.RateNetwork` (a flow) trained
  on the same task.

Claims: 8 stable fixed points with 8 distinct bit patterns (GRU, LSTM, rate network); the GRU's 19 saddles (the
``3^3 - 2^3`` points of the cube structure) and its 12 index-1 saddles, each joining two memories one bit apart;
every fixed point scipy finds in the GRU's invariant box ``[-1, 1]^16`` is among dynlearn's (within 1e-6) and
dynlearn finds no fewer; residuals ``|F(h) - h|_inf <= 1e-10``; the 8 memories are tracked over the last
checkpoints. (Far outside the box, where every gate ``z`` rounds to 1 in float64, ``F(h) = h`` holds for whole
regions: scipy "converges" there from a few noisy starts; those states are no fixed points of the network, which
never leaves the box, and are counted apart.)
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

import dynlearn
from dynlearn.reproduce import Claim, Reproduction
from dynlearn.store import root_attrs, write_group
from dynlearn.stepper import iterate
from dynlearn_datasets.flip_flop import FlipFlop as FlipFlopTask
from dynlearn_datasets.flip_flop import FlipFlopNet

__all__ = ["FlipFlop", "trial_states", "noisy", "gru_residual", "scipy_fixed_points", "covered", "memories",
           "saddle_ends", "residual_max"]

QUICK: dict[str, Any] = {"n_time": 32, "steps": 300, "lr": 0.02, "every": 60, "n_states": 512, "n_starts": 256,
                         "lstm": {"hidden": 8, "steps": 300, "lr": 0.02},
                         "rate": {"hidden": 16, "steps": 300, "lr": 0.02}}
FULL: dict[str, Any] = {"n_time": 64, "steps": 2000, "lr": 0.01, "every": 100, "n_states": 1024, "n_starts": 1024,
                        "lstm": {"hidden": 16, "steps": 2000, "lr": 0.01},
                        "rate": {"hidden": 16, "steps": 2000, "lr": 0.01}}
N_BITS, HIDDEN, SEED = 3, 16, 0
NOISE = 0.5          # standard deviation of the noise on the user states (FixedPointFinder's example)
MATCH_TOL = 1e-6     # two fixed points are the same point when no coordinate differs by more
RESIDUAL_TOL = 1e-10
BOUNDS = {"gru": (-1.0, 1.0), "lstm": (-4.0, 4.0), "rate": (-6.0, 6.0)}


def trial_states(net: FlipFlopNet, task: FlipFlopTask, n: int, seed: int = 0) -> np.ndarray:
    """``n`` states ``(n, d)`` of ``net`` along the task's evaluation trials at random (trial, time) pairs, float64."""
    with torch.no_grad():
        states = copy.deepcopy(net).double().states(task.inputs(torch.float64))
    states = states.reshape(-1, states.shape[-1])
    pick = np.random.default_rng(seed).choice(states.shape[0], size=min(n, states.shape[0]), replace=False)
    return states[np.sort(pick)].numpy()


def gru_residual(rnn: torch.nn.GRU):
    """Closed-form ``g(h) = GRU(0, h) - h`` and its Jacobian for a one-layer GRU, as numpy functions (float64)."""
    w = {k: v.detach().double().numpy() for k, v in rnn.state_dict().items()}
    Wr, Wz, Wn = np.split(w["weight_hh_l0"], 3)
    br, bz, bn = np.split(w["bias_hh_l0"], 3)
    ir, iz, i_n = np.split(w["bias_ih_l0"], 3)

    def parts(h):
        r = 0.5 * (1 + np.tanh(0.5 * (Wr @ h + br + ir)))
        z = 0.5 * (1 + np.tanh(0.5 * (Wz @ h + bz + iz)))
        a = Wn @ h + bn
        return r, z, a, np.tanh(i_n + r * a)

    def fun(h):
        r, z, a, n = parts(h)
        return (1 - z) * n + z * h - h

    def jac(h):
        r, z, a, n = parts(h)
        dn = (1 - n * n)[:, None] * ((r * (1 - r) * a)[:, None] * Wr + r[:, None] * Wn)
        return (1 - z)[:, None] * dn + ((h - n) * z * (1 - z))[:, None] * Wz + np.diag(z - 1)

    return fun, jac


def scipy_fixed_points(fun, jac, starts: np.ndarray, *, root_tol: float = RESIDUAL_TOL,
                       match_tol: float = MATCH_TOL) -> tuple[np.ndarray, int]:
    """Per-start ``scipy.optimize.root`` (``hybr``, the given Jacobian), then deduplication.

    Returns the distinct roots with ``|g|_inf <= root_tol`` (no two within ``match_tol`` in every coordinate)
    and the number of starts that converged to one.
    """
    from scipy.optimize import root

    found = []
    for x0 in starts:
        sol = root(fun, x0, jac=jac, method="hybr", tol=1e-14)
        if np.all(np.isfinite(sol.x)) and np.abs(fun(sol.x)).max() <= root_tol:
            found.append(sol.x)
    unique: list[np.ndarray] = []
    for x in found:
        if not unique or np.abs(np.asarray(unique) - x).max(1).min() > match_tol:
            unique.append(x)
    return np.asarray(unique).reshape(len(unique), starts.shape[1]), len(found)


def covered(points: np.ndarray, by: np.ndarray, tol: float = MATCH_TOL) -> np.ndarray:
    """For each row of ``points``: is there a row of ``by`` within ``tol`` in every coordinate?"""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    if len(by) == 0:
        return np.zeros(len(points), dtype=bool)
    return np.abs(points[:, None] - by[None]).max(-1).min(1) <= tol


def saddle_ends(system, fp: xr.Dataset, *, eps: float = 1e-4, steps: int = 4000, dt: float = 0.1) -> np.ndarray:
    """Where the unstable manifold of every index-1 saddle goes: ``(point, branch)`` index of the fixed point
    reached from ``saddle +- eps v`` (``v`` its unstable eigenvector), ``-1`` when none is reached (or no
    index-1 saddle at that slot). Maps are iterated, flows integrated by RK4 with step ``dt``; a branch has reached
    the fixed point it ends ten times closer to than to any other."""
    P = fp.sizes["point"]
    ends = np.full((P, 2), -1, dtype=np.int64)
    pos = fp.position.values
    idx1 = np.flatnonzero(fp.present.values & (fp.n_unstable.values == 1))
    if len(idx1) == 0:
        return ends
    # eigenvalues are sorted most unstable first: eig 0 is the unstable direction
    v = fp.eigvec_real.values[idx1, 0]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    x0 = torch.as_tensor(np.concatenate([pos[idx1] + eps * v, pos[idx1] - eps * v]))
    out = iterate(system, x0, system.param_tensors(), steps, dt=dt).final.numpy()
    present = np.flatnonzero(fp.present.values)
    dist = np.abs(out[:, None] - pos[present][None]).max(-1)
    nearest = present[dist.argmin(1)]
    # slow memories (|lambda| ~ 0.9995) are approached slowly: reached = ten times closer than to any other point
    two = np.sort(dist, 1)
    near = np.where(two[:, 0] <= 0.1 * two[:, 1], nearest, -1) if len(present) > 1 else nearest
    ends[idx1, 0], ends[idx1, 1] = near[: len(idx1)], near[len(idx1):]
    return ends


def memories(system, fp: xr.Dataset, net: FlipFlopNet, *, saddles: bool = True) -> xr.Dataset:
    """Readout and bit pattern of every fixed point, and (``saddles``) the ends of the index-1 saddles' unstable
    manifolds (:func:`saddle_ends`)."""
    pos = torch.as_tensor(np.nan_to_num(fp.position.values))
    with torch.no_grad():
        out = copy.deepcopy(net).double().output(pos).numpy()
    present = fp.present.values
    out[~present] = np.nan
    bits = np.where(present[:, None], np.sign(out), 0).astype(np.int8)
    ends = saddle_ends(system, fp, dt=0.1 if system.kind == "flow" else 1.0) if saddles \
        else np.full((fp.sizes["point"], 2), -1, dtype=np.int64)
    return xr.Dataset(
        {
            "readout": (("point", "bit"), out, {"long_name": "readout of the fixed point (trained nn.Linear)"}),
            "bits": (("point", "bit"), bits, {"long_name": "bit pattern: sign of the readout (0: no point)"}),
            "stable": ("point", present & (fp.n_unstable.values == 0) & (fp.n_neutral.values == 0),
                       {"long_name": "stable fixed point (a memory)"}),
            "n_unstable": fp.n_unstable.astype(np.int16),
            "saddle_end": (("point", "branch"), ends,
                           {"long_name": "fixed point the index-1 saddle's unstable manifold reaches (-1: none)"}),
        },
        coords={"point": fp.point.values, "bit": np.arange(out.shape[1]), "branch": ["+v", "-v"]},
    )


def residual_max(system, fp: xr.Dataset) -> float:
    """Largest ``|g|_inf`` (``F(h) - h`` or ``f(h)``) over the fixed points, recomputed in float64."""
    pos = torch.as_tensor(fp.position.values[fp.present.values])
    if len(pos) == 0:
        return math.nan
    return float(system.residual(pos, system.param_tensors()).abs().max())


def noisy(states: np.ndarray, seed: int) -> np.ndarray:
    """``states`` plus Gaussian noise of standard deviation :data:`NOISE` (the starting states of every search)."""
    return states + NOISE * np.random.default_rng(seed).standard_normal(states.shape)


def _pattern_claims(prefix: str, what: str, mem: xr.Dataset, res: float) -> list[Claim]:
    stable = mem.stable.values
    patterns = {tuple(b) for b in mem.bits.values[stable]}
    n_bits = mem.sizes["bit"]
    return [
        Claim(f"{prefix}stable_count", f"{what}: stable fixed points (memories)", 2.0**n_bits, int(stable.sum()),
              int(stable.sum()) == 2**n_bits, f"== {2**n_bits}"),
        Claim(f"{prefix}bit_patterns", f"{what}: distinct bit patterns (readout signs) of the stable points",
              2.0**n_bits, len(patterns), len(patterns) == 2**n_bits and int(stable.sum()) == 2**n_bits,
              f"== {2**n_bits}, one per memory"),
        Claim(f"{prefix}max_residual", f"{what}: largest residual |F(h) - h|_inf (flow: |f(h)|_inf) of the fixed "
              "points, float64", 0.0, res, res <= RESIDUAL_TOL, f"<= {RESIDUAL_TOL:g}"),
    ]


class FlipFlop(Reproduction):
    """3-bit flip-flop GRU (Sussillo & Barak 2013): memories, saddles, scipy cross-check, tracks; LSTM and rates."""

    name = "flip-flop"
    description = ("3-bit flip-flop GRU (16 units) trained with checkpoints: 8 memories with distinct bit patterns, "
                   "saddles between them, every fixed point of a dense scipy search, tracked over training; "
                   "the same for an LSTM and a continuous-time rate network")
    paper = ("Sussillo & Barak (2013), Opening the black box: low-dimensional dynamics in high-dimensional "
             "recurrent neural networks, Neural Computation 25(3)")

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        cfg = QUICK if self.quick else FULL
        task = FlipFlopTask(n_bits=N_BITS, n_time=cfg["n_time"])
        gru = FlipFlopNet(cell="gru", hidden=HIDDEN, n_bits=N_BITS, seed=SEED)
        states: dict[int, np.ndarray] = {}
        with dynlearn.Recorder(out, gru.rnn, every=1, name=self.name, overwrite=overwrite or self._ours(out),
                               resume=False, commit_seconds=30.0) as rec:
            def log(step: int, loss: float) -> None:
                rec.log(step, gru.rnn, loss=loss)
                states[step] = noisy(trial_states(gru, task, cfg["n_states"], seed=step), seed=step)

            task.fit(gru, steps=cfg["steps"], lr=cfg["lr"], seed=SEED, callback=log, every=cfg["every"])
        system = dynlearn.from_module(gru.rnn)
        steps = sorted(states)
        user = xr.DataArray(np.stack([states[s] for s in steps]), dims=("epoch", "sample", "state"),
                            coords={"epoch": steps})
        fp_all = dynlearn.analyze(out, "fixed_points", n_starts=cfg["n_starts"], initial_states=user,
                                  slow_points=False, seed=SEED, show_progress=show_progress, overwrite=True)
        bif = dynlearn.analyze(out, "bifurcations", show_progress=show_progress, overwrite=True)
        last = fp_all.isel(epoch=-1)
        last = last.isel(point=np.flatnonzero(last.present.values))
        mem = memories(system, last, gru)

        # the scipy reference from the same user states
        starts = states[steps[-1]]
        ref, n_conv = scipy_fixed_points(*gru_residual(gru.rnn), starts)
        inside = np.abs(ref).max(1) <= 1.0
        ours = last.position.values
        hit = covered(ref[inside], ours)
        reference = xr.Dataset(
            {"position": (("ref_point", "state"), ref, {"long_name": "fixed point found by scipy.optimize.root"}),
             "inside_box": ("ref_point", inside, {"long_name": "in the GRU's invariant box [-1, 1]^d"}),
             "found_by_dynlearn": ("ref_point", covered(ref, ours),
                                   {"long_name": f"among dynlearn's fixed points (within {MATCH_TOL:g})"}),
             "n_converged": ((), n_conv, {"long_name": "starts from which scipy converged to a root"}),
             "n_starts": ((), len(starts), {"long_name": "starting states of the scipy search"})},
            coords={"state": last.state.values})
        readout = xr.Dataset({"weight": (("bit", "hidden"), gru.readout.weight.detach().double().numpy()),
                              "bias": ("bit", gru.readout.bias.detach().double().numpy())})
        write_group(out, "memories", mem, consolidated=False)
        write_group(out, "reference", reference, consolidated=False)
        write_group(out, "readout", readout, consolidated=False)

        claims = _pattern_claims("", "GRU", mem, residual_max(system, last))
        claims += self._saddle_claims(mem)
        n_ref = int(inside.sum())
        claims += [
            Claim("scipy_points_found", f"every fixed point of the per-start scipy search in [-1, 1]^16 "
                  f"({n_ref} from {len(starts)} starts) is among dynlearn's (within {MATCH_TOL:g}): fraction",
                  1.0, float(hit.mean()) if n_ref else math.nan, n_ref > 0 and bool(hit.all()), "== 1"),
            Claim("no_fewer_than_scipy", "fixed points found by dynlearn minus those scipy finds in the box",
                  0.0, int(last.present.sum()) - n_ref, int(last.present.sum()) >= n_ref, ">= 0"),
        ]
        claims.append(self._track_claim(bif, fp_all, mem))
        for cell in ("lstm", "rate"):
            claims += self._other(cell, cfg[cell], task, out)
        return claims

    def _ours(self, out: Path) -> bool:
        """Is ``out`` a store of this reproduction (recomputed by a re-run; any other store needs ``overwrite``)?"""
        try:
            return root_attrs(out).get("config", {}).get("name") == self.name
        except Exception:  # absent, or not a dynlearn store
            return False

    @staticmethod
    def _saddle_claims(mem: xr.Dataset) -> list[Claim]:
        present = mem.n_unstable.values >= 0
        n_saddle = int((present & (mem.n_unstable.values > 0)).sum())
        idx1 = np.flatnonzero(mem.n_unstable.values == 1)
        stable = mem.stable.values
        bits = mem.bits.values
        joined = 0
        for i in idx1:
            a, b = mem.saddle_end.values[i]
            if a >= 0 and b >= 0 and stable[a] and stable[b] and (bits[a] != bits[b]).sum() == 1:
                joined += 1
        return [
            Claim("saddles", "saddles (fixed points with an unstable direction) between the memories: the "
                  "3^3 - 2^3 points of the cube structure", 19.0, n_saddle, n_saddle == 19, "== 19"),
            Claim("index1_saddles_between_memories", "index-1 saddles whose unstable manifold joins two memories "
                  "one bit apart (the cube's 12 edges)", 12.0, joined, joined == 12 and len(idx1) == 12,
                  "== 12 (and no other index-1 saddle)"),
        ]

    @staticmethod
    def _track_claim(bif: xr.Dataset, fp_all: xr.Dataset, mem: xr.Dataset) -> Claim:
        """Each memory at the last checkpoint is one track back to an earlier checkpoint: the shortest such run."""
        K = fp_all.sizes["epoch"]
        step, point, track = bif.node_step.values, bif.node_point.values, bif.node_track.values
        runs = []
        for p in mem.point.values[mem.stable.values]:
            t = track[(step == K - 1) & (point == p)]
            held = set(step[track == t[0]].tolist()) if len(t) else set()
            k = K - 1
            while k in held:
                k -= 1
            runs.append(K - 1 - k)
        shortest = min(runs) if runs else 0
        return Claim("memories_tracked", "each memory at the last checkpoint is one track over the checkpoints "
                     "before it: the shortest run of consecutive checkpoints", 2.0, shortest, shortest >= 2,
                     ">= 2 checkpoints", "checkpoints")

    def _other(self, cell: str, cfg: dict[str, Any], task: FlipFlopTask, out: Path) -> list[Claim]:
        net = task.fit(FlipFlopNet(cell=cell, hidden=cfg["hidden"], n_bits=N_BITS, seed=SEED), steps=cfg["steps"],
                       lr=cfg["lr"], seed=SEED)
        system = dynlearn.from_module(net.rnn, bounds=BOUNDS[cell])
        size = QUICK if self.quick else FULL
        fp = dynlearn.get_analyzer("fixed_points")(
            n_starts=size["n_starts"], initial_states=noisy(trial_states(net, task, size["n_states"]), SEED),
            slow_points=False, seed=SEED).run(system)
        fp = fp.isel(point=np.flatnonzero(fp.present.values))
        mem = memories(system, fp, net, saddles=False)
        write_group(out, cell, fp, consolidated=False)                   # the analyzer's result (its views)
        write_group(out, f"{cell}_memories", mem, consolidated=False)
        what = {"lstm": f"nn.LSTM ({cfg['hidden']} units, state (h, c))",
                "rate": f"RateNetwork flow ({cfg['hidden']} units)"}[cell]
        return _pattern_claims(f"{cell}_", what, mem, residual_max(system, fp))

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        import holoviews as hv

        out: dict[str, Any] = {}
        if "fixed_points" in tree.children:
            fp = tree["fixed_points"].to_dataset()
            ep = fp.epoch.values
            stable = ((fp.n_unstable == 0) & fp.present).sum("point").values
            saddle = ((fp.n_unstable > 0) & fp.present).sum("point").values
            out["fixed points over training"] = (
                hv.Curve((ep, stable), "epoch", "count", label="stable (memories)")
                * hv.Curve((ep, saddle), "epoch", "count", label="saddles")
            ).opts(title="flip-flop GRU: fixed points at each checkpoint", width=700, height=300,
                   legend_position="right")
        if "memories" in tree.children and "fixed_points" in tree.children:
            fp = tree["fixed_points"].to_dataset().isel(epoch=-1)
            if "pc_position" in fp:
                mem = tree["memories"].to_dataset()
                pc = fp.pc_position.sel(point=mem.point.values).values
                kinds = np.where(mem.stable.values, "stable", np.char.add("index-", mem.n_unstable.values.astype(str)))
                pts = hv.Points((pc[:, 0], pc[:, 1], kinds), ["PC 1", "PC 2"], "type")
                out["memories and saddles (PCA)"] = pts.opts(color="type", cmap="Category10", size=9, width=500,
                                                             height=450, title="last checkpoint, PCA of the trial "
                                                             "states")
        return out


"""Benchmark: the ghost paper's Fig. 4 run — 100 rank-one RNNs (N = 100, 40 steps) x 6000 epochs — as one batch.

Measured in one run, on this machine (goal: the full run under 30 s, at least 50x faster than one by one):

1. the full run (100 networks x 6000 epochs, float32, SGD) written to a zarr store — the normal path;
2. the same training loop with store writes disabled;
3. one by one, on shorter runs (``--single-epochs`` and a quarter of it), scaled to 100 networks x 6000 epochs:
   a. dynlearn's own loop with a batch of one network (same hand-written kernel), ``--single-nets`` networks; the
      two run lengths separate the per-run cost (setup) from the per-epoch cost, extrapolated to 6000 epochs;
   b. the paper's way: one PyTorch network at a time, autograd through the 40 steps, ``torch.optim.SGD``
      (the model of the authors' published code: ``m, n ~ N(0, 1/N)``, ``b = 0``, ``x(0) = -0.3``).

Speed-ups are (3) / (2) and (3) / (1). Every timing is the minimum over ``--repeat`` repetitions, interleaved, so
other load on the machine inflates them as little as possible; the CPU time of the process (one thread: about the
wall time of an idle machine) is reported next to the wall time of the full run. Usage:
``python benchmarks/bench_rnn.py [--epochs 6000] [--single-epochs 300] [--threads 1]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import dynlearn  # noqa: F401  (registers the plugins)
from dynlearn_datasets.packaged import packaged_experiment

from _common import loop_seconds
from dynlearn import api

warnings.simplefilter("ignore")


def _experiment(epochs: int, seeds: int | list[int]):
    return packaged_experiment("rnn-fig4", {
        "train": {"epochs": epochs, "seeds": seeds, "chunk": min(1000, epochs),
                  "checkpoint_every": 100 if epochs % 100 == 0 and epochs >= 1000 else min(1000, epochs),
                  "schedule": {"after": epochs}},  # phase 1 only: c is never lowered
        "sweep": {"c_low": [1.0]},
    })


def _paper_style_seconds(n_nets: int, epochs: int, N: int = 100, steps: int = 40, lr: float = 0.02) -> float:
    """One network at a time, autograd through the recurrence (the authors' code, batch of one, float32)."""
    target = torch.cat([torch.zeros(steps // 2), torch.ones(steps - steps // 2)])
    t0 = time.perf_counter()
    for seed in range(n_nets):
        g = torch.Generator().manual_seed(seed)
        m = (torch.randn(N, generator=g) / N**0.5).requires_grad_(True)
        n = (torch.randn(N, generator=g) / N**0.5).requires_grad_(True)
        b = torch.zeros(N, requires_grad=True)
        opt = torch.optim.SGD([m, n, b], lr=lr)
        for _ in range(epochs):
            opt.zero_grad()
            x = torch.full((N,), -0.3)
            outs = []
            for _ in range(steps):
                kappa = torch.dot(n, x)
                x = 0.5 * x + 0.5 * torch.tanh(m * kappa + b)
                outs.append(torch.sigmoid(10 * (torch.dot(n, x) - 1)))
            loss = ((torch.stack(outs) - target) ** 2).sum() / (steps // 2)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6000)
    ap.add_argument("--networks", type=int, default=100)
    ap.add_argument("--single-epochs", type=int, default=400, help="epochs of the one-by-one baselines (a second run "
                    "with a quarter of them separates the per-run cost from the per-epoch cost)")
    ap.add_argument("--single-nets", type=int, default=10, help="networks trained one by one (scaled up)")
    ap.add_argument("--paper-nets", type=int, default=2, help="networks of the autograd baseline (scaled up)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())
    E, B = args.epochs, args.networks
    full = _experiment(E, B)
    api.run_experiment(_experiment(100, 4), tmp / "warm.zarr")  # imports, allocator, kernels

    t_store, t_loop, t_single, t_paper, cpu_store, cpu_loop = [], [], [], [], [], []
    for k in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = api.run_experiment(full, tmp / f"run{k}.zarr")
        t_store.append(time.perf_counter() - t0)
        cpu_store.append(time.process_time() - c0)
        c0 = time.process_time()
        t_loop.append(loop_seconds(full))
        cpu_loop.append(time.process_time() - c0)
        short = max(1, args.single_epochs // 4)
        t_long = sum(loop_seconds(_experiment(args.single_epochs, [s])) for s in range(args.single_nets))
        t_short = sum(loop_seconds(_experiment(short, [s])) for s in range(args.single_nets))
        per_epoch = max(t_long - t_short, 0.0) / (args.single_epochs - short) / args.single_nets
        per_run = max(t_short / args.single_nets - per_epoch * short, 0.0)
        t_single.append((per_epoch, per_run))
        t_paper.append(_paper_style_seconds(args.paper_nets, args.single_epochs) / args.paper_nets / args.single_epochs)
    per_epoch, per_run = min(t_single)
    single_full = B * (per_run + per_epoch * E)  # each network trained alone for E epochs
    paper_full = B * E * min(t_paper)
    loop = min(t_loop)
    status = dynlearn_status(tmp / "run0.zarr")
    out = {
        "networks": B, "epochs": E, "neurons": 100, "steps_per_epoch": 40, "dtype": "float32",
        "threads": args.threads,
        "full_run_seconds": round(min(t_store), 2),
        "full_run_loop_only_seconds": round(loop, 2),
        "full_run_cpu_seconds": round(min(cpu_store), 2),
        "full_run_loop_only_cpu_seconds": round(min(cpu_loop), 2),
        "ms_per_epoch_batched": round(1e3 * loop / E, 3),
        "one_by_one_dynlearn_ms_per_network_epoch": round(1e3 * per_epoch, 3),
        "one_by_one_dynlearn_seconds_per_run_fixed": round(per_run, 3),
        "one_by_one_dynlearn_seconds_scaled": round(single_full, 1),
        "one_by_one_paper_autograd_ms_per_network_epoch": round(1e3 * min(t_paper), 3),
        "one_by_one_paper_autograd_seconds_scaled": round(paper_full, 1),
        "speedup_vs_one_by_one_dynlearn": round(single_full / loop, 1),
        "speedup_vs_one_by_one_paper_autograd": round(paper_full / loop, 1),
        "speedup_vs_one_by_one_paper_autograd_end_to_end": round(paper_full / min(t_store), 1),
        "goal_full_run_under_30s": min(t_store) < 30.0,
        "goal_speedup_at_least_50x": paper_full / min(t_store) >= 50.0,
        "write_fraction": round(res.write_fraction, 4),
        **status,
    }
    print(json.dumps(out, indent=2))


def dynlearn_status(path) -> dict:
    from dynlearn_builtins.systems.rnn import learning_status

    st = learning_status(dynlearn.open_store(path))
    return {"learned_at_some_point": int(st["n_learned"].values.ravel()[0]),
            "stuck_at_end": int(st["n_stuck"].values.ravel()[0]),
            "learned_then_stuck": int(np.asarray(st["learned_then_stuck"].values).sum())}


if __name__ == "__main__":
    main()

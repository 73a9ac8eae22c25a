"""Benchmark: all fixed points of a 100-neuron full-rank RNN map from 4096 starting states.

System: ``x -> (1 - D) x + D tanh(W x + b)`` with ``D = 0.5`` (the ghost paper's Euler step), ``W`` Gaussian with
gain ``g`` (entries ``N(0, g^2 / N)``), ``b ~ N(0, 0.1^2)``. The same 4096 starting states (uniform in
``[-1, 1]^N``) go to

1. the fixed-point analyzer's batched finder (dogleg trust-region minimisation of ``q = |F(x) - x|^2 / 2`` with
   batched Newton steps where the Cauchy point lies inside the trust region, states merged into already found
   roots by a contracting chord iteration, deduplication): one call for all states;
2. ``scipy.optimize.root`` (MINPACK ``hybr`` with the analytic Jacobian), one call per starting state (the
   baseline), in the same run.

Printed: wall times and their ratio, the number of distinct fixed points each finds, the largest residual
``|F(x) - x|_inf`` of the batched finder's fixed points (goal: < 1e-10), whether every fixed point scipy finds
is among them, and the full analyzer run (its own starting states, classification by eigenvalues) for
reference. Usage: ``python benchmarks/bench_fixed_points.py [--starts 4096] [--gain 1.5] [--scipy-starts N]
[--repeat 3]`` (``--scipy-starts`` times the baseline on the first N states and scales it to all of them; the
batched finder's time is the median of ``--repeat`` runs).

Measured here (2 shared CPU cores, idle, one torch thread, g = 1.5, 4096 states, scipy on all of them, after a
warm-up call of each): batched finder 2.02 s (median of 3), scipy loop 40.2 s scaled from 256 states (**19.9x**, goal 20x);
3 distinct fixed points each, every scipy fixed point found, largest residual 5e-16 (scipy's own: 5e-10 at its
default xtol); full analyzer run 3.9 s. History of the finder alone on this problem: an LU factorisation at
every dogleg iteration of every state and no merging, 29 s (1.1x scipy; an earlier session); batched LU only
where the dogleg needs the Newton step plus merging into known roots, 2.9-3.4 s, against 1.6-1.9 s now in one
A/B run (medians of 3, two rounds, warm). Now: the
benchmark system's closed-form ``jvp``/``vjp`` (``J^T g`` and ``J J^T g`` are matrix products with the shared
``W``, so Jacobians are formed only for the Newton steps), a first batch of 128 states. A looser chord capture (0.7 per step over 25 steps) gave 33x with 4972 instead of
10684 LU factorisations but lost the rarest root at 1024 and 2048 starts, so it was reverted. What is left is mostly those 100 x 100 LU factorisations (~90 us each on this CPU).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import scipy.optimize as so
import torch

import dynlearn
from dynlearn.params import Param
from dynlearn.system import MapSystem

warnings.simplefilter("ignore")
N = 100
DELTA = 0.5


class FullRankRNN(MapSystem):
    """``x -> (1 - D) x + D tanh(W x + b)`` on ``R^N`` with a full-rank ``W`` (a benchmark system)."""

    name = "full_rank_rnn_bench"
    description = "full-rank RNN map (benchmark)"
    state_names = tuple(f"x_{i}" for i in range(N))
    parameters = {"W": Param(0.0, shape=("neuron", "neuron"), description="recurrent weights W"),
                  "b": Param(0.0, shape=("neuron",), description="biases b")}
    domain_bounds = ([-1.0] * N, [1.0] * N)

    def dim_sizes(self):
        return {"neuron": N}

    @staticmethod
    def _rates(x, p):
        """``tanh(W x + b)`` (an einsum: one matrix product when ``W`` is shared by all states)."""
        return torch.tanh(torch.einsum("...ij,...j->...i", p["W"], x) + p["b"])

    def rhs(self, x, p):
        return (1 - DELTA) * x + DELTA * self._rates(x, p)

    def jacobian(self, x, p):
        h = self._rates(x, p)
        J = DELTA * (1 - h * h).unsqueeze(-1) * p["W"]
        J.diagonal(dim1=-2, dim2=-1).add_(1 - DELTA)
        return J

    # J = (1 - D) I + D diag(1 - h^2) W: products with vectors are matrix products with the shared W
    def jvp(self, x, p, v):
        h = self._rates(x, p)
        return (1 - DELTA) * v + DELTA * (1 - h * h) * torch.einsum("...ij,...j->...i", p["W"], v)

    def vjp(self, x, p, v):
        h = self._rates(x, p)
        return (1 - DELTA) * v + DELTA * torch.einsum("...ij,...i->...j", p["W"], (1 - h * h) * v)


def scipy_loop(W: np.ndarray, b: np.ndarray, starts: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Per-point ``scipy.optimize.root`` (hybr, analytic Jacobian); returns converged roots and the wall time."""
    eye = np.eye(len(b))

    def fun(x):
        return DELTA * (np.tanh(W @ x + b) - x)

    def jac(x):
        h = np.tanh(W @ x + b)
        return DELTA * ((1 - h * h)[:, None] * W - eye)

    roots = []
    t0 = time.perf_counter()
    for x0 in starts:
        sol = so.root(fun, x0, jac=jac, method="hybr")
        if sol.success:
            roots.append(sol.x)
    return roots, time.perf_counter() - t0


def unique(points: np.ndarray, tol: float) -> np.ndarray:
    out: list[np.ndarray] = []
    for p in points:
        if not any(np.linalg.norm(p - q) <= tol for q in out):
            out.append(p)
    return np.array(out).reshape(len(out), -1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=4096)
    ap.add_argument("--gain", type=float, default=1.5)
    ap.add_argument("--scipy-starts", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the batched finder (the median is reported)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from dynlearn_builtins.analyzers.fixed_points.pipeline import Box, find
    from dynlearn_builtins.analyzers.fixed_points import FixedPoints

    rng = np.random.default_rng(args.seed)
    W = rng.standard_normal((N, N)) * args.gain / math.sqrt(N)
    b = rng.standard_normal(N) * 0.1
    starts = rng.uniform(-1, 1, (args.starts, N))
    system = FullRankRNN(W=W.tolist(), b=b.tolist())
    batch = dynlearn.flatten(system, None)
    lo, hi = (torch.as_tensor(v, dtype=torch.float64) for v in system.domain())
    st, box = FixedPoints(slow_points=False, max_points=args.starts).settings, Box(lo, hi)
    x0 = torch.as_tensor(starts, dtype=torch.float64)[None]
    # warm-up (one-time library initialisation is not timed): both methods on a few states
    find(system, batch.params, x0[:, :32], torch.ones(1, 32, dtype=torch.bool), torch.ones(1), st, box)
    scipy_loop(W, b, starts[:4])
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        pts = find(system, batch.params, x0, torch.ones(1, args.starts, dtype=torch.bool), torch.ones(1), st, box)
        times.append(time.perf_counter() - t0)
    t_batched = float(np.median(times))
    ours = pts.x[0][pts.mask[0] & pts.root[0]].numpy()
    res = np.abs(DELTA * (np.tanh(ours @ W.T + b) - ours)).max(1) if len(ours) else np.zeros(0)

    n_sc = args.scipy_starts or args.starts
    sc_roots, t_sc = scipy_loop(W, b, starts[:n_sc])
    t_scipy = t_sc * args.starts / n_sc
    sc_unique = unique(np.array(sc_roots), 1e-6) if sc_roots else np.zeros((0, N))
    sc_res = np.abs(DELTA * (np.tanh(sc_unique @ W.T + b) - sc_unique)).max(1) if len(sc_unique) else np.zeros(0)
    covered = all(np.min(np.linalg.norm(ours - r, axis=1)) < 1e-6 for r in sc_unique) if len(ours) else not len(sc_unique)

    t0 = time.perf_counter()
    full = FixedPoints(n_starts=args.starts, slow_points=False, max_points=256).run(system)
    t_full = time.perf_counter() - t0

    rows = [
        ("starting states", f"{args.starts}"),
        ("gain g", f"{args.gain}"),
        ("torch threads", f"{args.threads}"),
        ("batched finder (s), median of runs", f"{t_batched:.2f} ({', '.join(f'{t:.2f}' for t in times)})"),
        (f"scipy.optimize.root loop (s){' (scaled from %d)' % n_sc if n_sc != args.starts else ''}", f"{t_scipy:.2f}"),
        ("speed-up (scipy / batched)", f"{t_scipy / t_batched:.1f}x"),
        ("distinct fixed points: batched", f"{len(ours)}"),
        ("distinct fixed points: scipy", f"{len(sc_unique)} (from {len(sc_roots)} converged of {n_sc})"),
        ("max |F(x)-x|_inf, batched", f"{res.max() if len(res) else float('nan'):.2e}"),
        ("max |F(x)-x|_inf, scipy (default xtol)", f"{sc_res.max() if len(sc_res) else float('nan'):.2e}"),
        ("every scipy fixed point found by the batched finder", f"{covered}"),
        ("full analyzer run (own starts, classification) (s)", f"{t_full:.2f}"),
        ("full analyzer: fixed points", f"{int(full.n_fixed)}"),
    ]
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()

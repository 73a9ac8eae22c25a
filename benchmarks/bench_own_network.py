"""Benchmark: fixed points of a trained 3-bit flip-flop GRU (16 units) from 1024 user states, three ways.

The network: :class:`dynlearn_datasets.flip_flop.FlipFlopNet` (``nn.GRU(3, 16)`` + readout) trained with
``FlipFlop().fit(net, steps=1000, lr=0.01, seed=0)`` (float32), analysed in float64 through
:func:`dynlearn.from_module` (its zero-input map ``h -> GRU(0, h)``). The user states: 1024 hidden states of the
evaluation trials at random (trial, time) pairs plus Gaussian noise of standard deviation 0.5 (FixedPointFinder's
flip-flop example: 1024 initial states, noise 0.5). The same 1024 states go, in one run, to

1. ``dynlearn``: the ``fixed_points`` analyzer with ``n_starts=0, initial_states=states, slow_points=False``
   (batched dogleg trust region on ``q``, Newton polishing, deduplication, the midpoint pass from the midpoints
   of pairs of the points found, Jacobians, eigenvectors and classification of every point); also without the
   midpoint pass (``midpoints=0``) and with 1024 sampled starts added (``n_starts=1024``);
2. ``fpf-adam``: FixedPointFinder's published method written out here (Golub & Sussillo 2018, its PyTorch
   version's defaults): Adam (lr 0.05, StepLR every 500 iterations by 0.7) on ``q = mean_b 1/2 |F(h_b) - h_b|^2``
   jointly over all states, ``F`` the ``nn.GRU`` module called as FixedPointFinder calls it, until every state has
   ``q < 1e-12`` or ``dq < 1e-20`` or 5000 iterations; then its post-processing: unique points (``tol_unique =
   1e-3`` in every coordinate, lowest ``q`` kept), distance outliers dropped (more than 10 times the initial
   states' mean distance from their centroid), the ``q <= tol_q`` threshold, Jacobians and their eigen
   decomposition. Run in float32 (FixedPointFinder's default dtype) and in float64;
3. ``scipy``: ``scipy.optimize.root`` (MINPACK ``hybr``, closed-form Jacobian, ``tol=1e-14``) per start, roots
   with ``|g|_inf <= 1e-10`` deduplicated within 1e-6.

Reported per method: wall time (one torch thread; ``OMP_NUM_THREADS=1``), the fixed points it returns, how many
distinct true fixed points those are (a returned point within 1e-3 of a point of the reference set: dynlearn's and
scipy's roots in the GRU's invariant box ``[-1, 1]^16``, all with residual < 1e-13), returned points that are no
fixed point, and the largest residual ``|F(h) - h|_inf`` (float64) and ``q`` over the returned points.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_own_network.py [--states 1024] [--noise 0.5] [--steps 1000]
[--seed 0]``.

Measured on 2 shared CPU cores, one torch thread, two runs on the same network and states (GRU trained in
9-10 s, accuracy 1.0; load ~2.5 on 2 cores). Reference set: 27 fixed points (8 stable, 12 index-1, 6 index-2 and
1 index-3 saddles: the 3^3 points of the cube); scipy converged from 859 of the 1024 starts.

==========================  ========  ========  ==========  ========  ========  =======  ============  =======
method                      A: s      B: s      B: x dynl.  returned  true fps  not fps  max |F(h)-h|  max q
==========================  ========  ========  ==========  ========  ========  =======  ============  =======
dynlearn fixed_points           0.19      0.21         1.0        27        27        0       8.0e-15  5.7e-29
dynlearn, midpoints=0           0.17      0.16         0.8        26        26        0       3.2e-14  1.6e-27
dynlearn + 1024 sampled         0.24      0.26         1.2        27        27        0       2.2e-16  7.8e-32
scipy root per start            2.29      2.24        10.8        27        27        0       3.3e-16  1.2e-31
fpf-adam float32 (5000 it)      3.89      3.81        18.3        27        27        0       1.1e-07  1.1e-14
fpf-adam float64 (5000 it)      5.01      4.98        23.9        27        27        0       6.7e-16  3.0e-31
==========================  ========  ========  ==========  ========  ========  =======  ============  =======

dynlearn is 11-12x faster than the per-start scipy loop and 18-26x faster than the Adam method (on a busier
machine, load ~8, an earlier run without the midpoint pass measured 9-13x and 13-38x: the ratios move with the
load). The Adam method's float32 points reach q ~ 1e-14 (residual 1e-7) where dynlearn's reach q ~ 1e-28
(residual 1e-14; scipy's and float64 Adam's ~5e-16); Adam ran all 5000 iterations (some states never meet
tol_q). Without the midpoint pass dynlearn's dogleg misses one point from the 1024 user states, the index-3
saddle at the centre of the cube: the two starts from which scipy's ``hybr`` reaches it go to other roots in 7
dogleg iterations (no stopping rule loses it: without the stall test and with 2000 iterations no start gets
there). The midpoint pass (the 325 midpoints of the 26 points, +0.02-0.05 s) finds it, as do 1024 sampled
starts added. Every point any method returns is a true fixed point here.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import dynlearn
from dynlearn_builtins.reproductions.flip_flop import covered, gru_residual, scipy_fixed_points, trial_states
from dynlearn_datasets.flip_flop import FlipFlop, FlipFlopNet

warnings.simplefilter("ignore")


# -- FixedPointFinder's method, as published (PyTorch version, default hyper-parameters) ----------------------------
def fpf_adam(rnn: torch.nn.GRU, starts: np.ndarray, *, dtype: torch.dtype = torch.float32, lr: float = 0.05,
             step_size: int = 500, gamma: float = 0.7, tol_q: float = 1e-12, tol_dq: float = 1e-20,
             max_iters: int = 5000, tol_unique: float = 1e-3, outlier_distance_scale: float = 10.0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Joint Adam optimisation of ``q`` over all states, then unique points, distance outliers and ``q`` threshold.

    Returns the kept points, their ``q``, their Jacobians' eigenvalues and the iterations run.
    """
    rnn = rnn.to(dtype)
    for p in rnn.parameters():
        p.requires_grad_(False)
    n, d = starts.shape
    inputs = torch.zeros(n, 1, rnn.input_size, dtype=dtype)
    x = torch.tensor(starts, dtype=dtype)[None].requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    q_prev = torch.full((n,), float("nan"), dtype=dtype)
    it = 1
    while True:
        opt.zero_grad()
        _, fx = rnn(inputs, x)
        q = 0.5 * ((x - fx).squeeze(0) ** 2).sum(1)
        q.mean().backward()
        opt.step()
        sched.step()
        dq = (q - q_prev).abs()
        if it > 1 and bool(((dq < tol_dq) | (q < tol_q)).all()) or it + 1 > max_iters:
            break
        q_prev = q.detach()
        it += 1
    xs, qs = x.detach()[0].double().numpy(), q.detach().double().numpy()
    # unique points: duplicates differ by less than tol_unique in every coordinate; the lowest q is kept
    keep: list[int] = []
    for i in np.argsort(qs):
        if not keep or np.abs(xs[keep] - xs[i]).max(1).min() >= tol_unique:
            keep.append(int(i))
    xs, qs = xs[keep], qs[keep]
    centroid = starts.mean(0)
    scale = np.linalg.norm(starts - centroid, axis=1).mean()
    inside = np.linalg.norm(xs - centroid, axis=1) / scale <= outlier_distance_scale
    ok = inside & (qs <= tol_q)
    xs, qs = xs[ok], qs[ok]
    # Jacobians and their eigen decomposition at the kept points (FixedPointFinder computes both by default)
    h = torch.tensor(xs, dtype=dtype)
    jac = torch.zeros(0, d, d, dtype=dtype)
    if len(h):
        u = inputs[: len(h)]
        jac = torch.autograd.functional.jacobian(lambda s: rnn(u, s[None])[1][0].sum(0), h).permute(1, 0, 2)
    eig = torch.linalg.eigvals(jac).numpy()
    return xs, qs, eig, it


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--states", type=int, default=1024)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    task = FlipFlop()
    net = FlipFlopNet(cell="gru", hidden=16, seed=args.seed)
    t0 = time.perf_counter()
    task.fit(net, steps=args.steps, lr=0.01, seed=args.seed)
    t_train = time.perf_counter() - t0
    with torch.no_grad():
        x, y = task.sample(n_trials=256, seed=10**6)
        acc = float(task.accuracy(net(x), y))
    states = trial_states(net, task, args.states, seed=args.seed)
    starts = states + args.noise * np.random.default_rng(args.seed).standard_normal(states.shape)
    system = dynlearn.from_module(net.rnn)
    p = system.param_tensors()
    fun, jac = gru_residual(net.rnn)

    def residuals(points: np.ndarray) -> np.ndarray:
        return system.residual(torch.as_tensor(points, dtype=torch.float64), p).abs().amax(-1).numpy() \
            if len(points) else np.zeros(0)

    # warm-up of every method on a few states (one-time initialisation is not timed)
    fp_cls = dynlearn.get_analyzer("fixed_points")
    fp_cls(n_starts=0, initial_states=starts[:16], slow_points=False).run(system)
    scipy_fixed_points(fun, jac, starts[:4])
    fpf_adam(FlipFlopNet(cell="gru", hidden=16).rnn, starts[:4], max_iters=10)

    rows = []
    t0 = time.perf_counter()
    fp = fp_cls(n_starts=0, initial_states=starts, slow_points=False).run(system)
    t_dl = time.perf_counter() - t0
    ours = fp.position.values[fp.present.values]
    rows.append(("dynlearn fixed_points", t_dl, ours))
    t0 = time.perf_counter()
    first = fp_cls(n_starts=0, initial_states=starts, slow_points=False, midpoints=0).run(system)
    rows.append(("dynlearn, midpoints=0", time.perf_counter() - t0, first.position.values[first.present.values]))
    t0 = time.perf_counter()
    more = fp_cls(n_starts=args.states, initial_states=starts, slow_points=False).run(system)
    t_more = time.perf_counter() - t0
    rows.append((f"dynlearn + {args.states} sampled", t_more, more.position.values[more.present.values]))

    t0 = time.perf_counter()
    ref, n_conv = scipy_fixed_points(fun, jac, starts)
    t_sc = time.perf_counter() - t0
    rows.append(("scipy root per start", t_sc, ref))

    for dtype, label in ((torch.float32, "fpf-adam float32"), (torch.float64, "fpf-adam float64")):
        rnn = FlipFlopNet(cell="gru", hidden=16).rnn
        rnn.load_state_dict(net.rnn.state_dict())
        t0 = time.perf_counter()
        pts, _, _, iters = fpf_adam(rnn, starts, dtype=dtype)
        rows.append((f"{label} ({iters} it)", time.perf_counter() - t0, pts))

    inside = ref[np.abs(ref).max(1) <= 1.0] if len(ref) else ref
    found = np.concatenate([r[2] for r in rows if r[0].startswith("dynlearn")])
    truth = np.concatenate([found, inside])
    truth = truth[[i for i in range(len(truth)) if not covered(truth[i:i + 1], truth[:i]).any()]]
    print(f"GRU trained in {t_train:.1f} s, accuracy {acc:.5f}; {args.states} user states, noise {args.noise}; "
          f"reference set: {len(truth)} fixed points (dynlearn's and scipy's: scipy {len(inside)} in the box, "
          f"{len(ref) - len(inside)} outside, {n_conv} of {len(starts)} scipy starts converged)")
    head = f"{'method':<30} {'time (s)':>9} {'x dynlearn':>10} {'returned':>8} {'true fps':>8} {'not fps':>7} " \
           f"{'max |F(h)-h|':>12} {'max q':>9}"
    print(head)
    for name, t, pts in rows:
        res = residuals(pts)
        true = covered(truth, pts, 1e-3) if len(pts) else np.zeros(len(truth), dtype=bool)
        bogus = int((~covered(pts, truth, 1e-3)).sum()) if len(pts) else 0
        q64 = 0.5 * (system.residual(torch.as_tensor(pts), p) ** 2).sum(-1).numpy() if len(pts) else np.zeros(1)
        print(f"{name:<30} {t:9.2f} {t / t_dl:10.1f} {len(pts):8d} {int(true.sum()):8d} {bogus:7d} "
              f"{res.max() if len(res) else float('nan'):12.1e} {q64.max():9.1e}")
    missed = truth[~covered(truth, ours, 1e-3)]
    if len(missed):
        eig = np.abs(np.linalg.eigvals(np.stack([jac(m) for m in missed]) + np.eye(missed.shape[1])))
        print(f"missed by dynlearn from the user states alone: {len(missed)} point(s) with "
              f"{(eig > 1).sum(1).tolist()} unstable eigenvalues")


if __name__ == "__main__":
    main()

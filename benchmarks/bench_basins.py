"""Benchmark: basins of the two-factor map on an n x n grid x `steps` iterations (default 1024 x 1024 x 1000).

Every method computes the same thing: for each grid point of [-3, 3]^2, the iteration at which the orbit of
``F_mu(a, b) = (a - mu (ab - 1) b, b - mu (ab - 1) a)`` leaves ``|x|_inf <= 1e6`` (``steps`` if it never
does), i.e. the bounded / divergent partition whose boundary is the ellipse ``E_mu``, plus escape times.

Rows (same run, same machine, interleaved, best of ``--repeats``):

- ``numpy``: the natural baseline, vectorised NumPy over the whole grid with a Python loop over iterations;
- ``numba serial`` / ``numba prange``: a compiled per-point kernel (``@njit`` loop over points with an early
  ``break``; ``parallel=True`` with ``prange`` over points at the same thread count as torch);
- ``dynlearn kernel``: the basins analyzer's own iteration kernel (``dynlearn.stepper.evolve``: chunks of 16384
  points, in-place fused multiply-adds, divergence checks every <= 16 steps with compaction of the chunk);
  float64 (the analyzer's default) and float32; ``generic`` = the same driver stepping through ``rhs``;
- ``dynlearn Basins (full)``: the whole analyzer (plus tails, attractor identification, Lyapunov exponents,
  separatrix bisection, labeled output);
- ``torch.compile`` (``--compile``): the generic ``rhs`` loop compiled by inductor, for reference.

Usage::

    python benchmarks/bench_basins.py                 # 1024 x 1024 x 1000, threads 1 and 2
    python benchmarks/bench_basins.py --n 256 --threads 1 --repeats 1      # quick look
    python benchmarks/bench_basins.py --json          # the table as JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch

MAX_NORM = 1e6


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    g = -3 + (np.arange(n) + 0.5) * 6 / n
    A, B = np.meshgrid(g, g, indexing="ij")
    return A.ravel().copy(), B.ravel().copy()


def numpy_basins(a0: np.ndarray, b0: np.ndarray, mu: float, steps: int) -> np.ndarray:
    """The natural NumPy baseline: whole-grid arrays, a Python loop over iterations."""
    a, b = a0.copy(), b0.copy()
    escape = np.full(a.shape, steps, dtype=np.int64)
    alive = np.ones(a.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, steps + 1):
            r = mu * (a * b - 1)
            a, b = a - r * b, b - r * a
            out = alive & ~((np.abs(a) <= MAX_NORM) & (np.abs(b) <= MAX_NORM))
            escape[out] = k
            alive &= ~out
    return escape


def numba_kernels():
    import numba

    def escape_steps(a0, b0, mu, steps, max_norm, out, i):
        a, b, k = a0[i], b0[i], steps
        for j in range(steps):
            r = mu * (a * b - 1.0)
            a, b = a - r * b, b - r * a
            if not (abs(a) <= max_norm and abs(b) <= max_norm):
                k = j + 1
                break
        out[i] = k

    one = numba.njit(cache=False)(escape_steps)

    @numba.njit(cache=False)
    def serial(a0, b0, mu, steps, max_norm):
        out = np.empty(a0.size, np.int64)
        for i in range(a0.size):
            one(a0, b0, mu, steps, max_norm, out, i)
        return out

    @numba.njit(parallel=True, cache=False)
    def parallel(a0, b0, mu, steps, max_norm):
        out = np.empty(a0.size, np.int64)
        for i in numba.prange(a0.size):
            one(a0, b0, mu, steps, max_norm, out, i)
        return out

    return numba, serial, parallel


def dynlearn_kernel(a0, b0, mu, steps, dtype=torch.float64, kernel="auto"):
    import dynlearn
    from dynlearn.stepper import evolve

    tf = dynlearn.make_system({"name": "two_factor"})
    x0 = torch.as_tensor(np.stack([a0, b0], -1), dtype=dtype)
    p = {"mu": torch.tensor([mu], dtype=dtype)}
    ev = evolve(tf, x0, p, torch.zeros(len(a0), dtype=torch.long), steps=steps, max_norm=MAX_NORM, kernel=kernel)
    return ev.escape.numpy()


def compiled_kernel(mu, steps):
    """torch.compile'd generic loop (16 rhs steps fused per call), compaction between calls."""
    import dynlearn

    tf = dynlearn.make_system({"name": "two_factor"})

    def block(x, m):
        for _ in range(16):
            x = tf.rhs(x, {"mu": m})
        return x, (x.abs() <= MAX_NORM).all(-1)

    fn = torch.compile(block, dynamic=True)

    def run(a0, b0):
        x_all = torch.as_tensor(np.stack([a0, b0], -1))
        escape = torch.full((len(a0),), steps, dtype=torch.int64)
        m = torch.tensor(mu, dtype=torch.float64)
        for s in range(0, len(a0), 65536):
            x = x_all[s : s + 65536]
            idx = torch.arange(s, s + len(x))
            k = 0
            while k < steps and len(idx):
                x, ok = fn(x, m)
                k += 16
                escape[idx[~ok]] = min(k, steps)  # escape step only to within 16 iterations
                x, idx = x[ok], idx[ok]
        return escape.numpy()

    t0 = time.perf_counter()
    a, b = grid(8)
    run(a, b)
    return run, time.perf_counter() - t0


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--mu", type=float, default=1.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-numpy", action="store_true", help="leave out the (slow) NumPy baseline")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor; compiles for ~30 s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import dynlearn
    from dynlearn import outcome as oc
    from dynlearn_builtins.analyzers.basins import Basins
    from dynlearn_builtins.systems.two_factor import ellipse_level

    a0, b0 = grid(args.n)
    mu, steps = args.mu, args.steps
    numba, nb_serial, nb_parallel = numba_kernels()
    nb_serial(a0[:4], b0[:4], mu, 4, MAX_NORM)
    nb_parallel(a0[:4], b0[:4], mu, 4, MAX_NORM)
    level = ellipse_level(torch.as_tensor(np.stack([a0, b0], -1)), mu).numpy()
    aw, bw = grid(32)  # warm-up: imports, plugin discovery, first-call costs
    dynlearn_kernel(aw, bw, mu, 20)
    dynlearn_kernel(aw, bw, mu, 20, torch.float32)
    dynlearn_kernel(aw, bw, mu, 20, kernel="generic")
    Basins(resolution=32, steps=50).run("two_factor", dynlearn.grid(mu=[mu]))
    rows: list[dict] = []
    best: dict[tuple[str, int], float] = {}
    outputs: dict[str, np.ndarray] = {}
    compiled = compile_s = None
    if args.compile:
        torch.set_num_threads(max(args.threads))
        compiled, compile_s = compiled_kernel(mu, steps)

    if not args.skip_numpy:
        t, outputs["numpy"] = timed(numpy_basins, a0, b0, mu, steps)  # single-threaded, one repeat (slow)
        best[("numpy", 1)] = t
    for rep in range(args.repeats):
        for T in args.threads:
            torch.set_num_threads(T)
            numba.set_num_threads(T)
            methods = {
                "numba prange": lambda: nb_parallel(a0, b0, mu, steps, MAX_NORM),
                "dynlearn kernel f64": lambda: dynlearn_kernel(a0, b0, mu, steps),
                "dynlearn kernel f32": lambda: dynlearn_kernel(a0, b0, mu, steps, torch.float32),
            }
            if T == 1:
                methods["numba serial"] = lambda: nb_serial(a0, b0, mu, steps, MAX_NORM)
                if rep == 0:
                    methods["dynlearn kernel generic f64"] = lambda: dynlearn_kernel(a0, b0, mu, steps, kernel="generic")
            methods["dynlearn Basins (full) f64"] = lambda: Basins(resolution=args.n, steps=steps).run(
                "two_factor", dynlearn.grid(mu=[mu])).outcome.values.ravel()
            if compiled is not None:
                methods["torch.compile generic f64"] = lambda: compiled(a0, b0)
            for name, fn in methods.items():
                t, out = timed(fn)
                key = (name, T)
                best[key] = min(best.get(key, math.inf), t)
                outputs.setdefault(name, out)
            print(f"repeat {rep + 1}/{args.repeats}, {T} thread(s) done", file=sys.stderr)

    ref = outputs["numba serial"] if "numba serial" in outputs else outputs["numba prange"]
    bounded_ref = ref == steps
    numpy_t = best.get(("numpy", 1))
    for (name, T), t in sorted(best.items(), key=lambda kv: (kv[0][1], kv[1])):
        out = outputs[name]
        if "Basins" in name:
            bounded = out != oc.DIVERGED
        else:
            bounded = out == steps
        nb_T = best.get(("numba prange", T)) if T > 1 else best.get(("numba serial", 1))
        rows.append({
            "method": name, "threads": T, "seconds": round(t, 3),
            "point_iterations_per_ns": None,
            "vs_numpy": round(numpy_t / t, 2) if numpy_t else None,
            "vs_numba_same_threads": round(t / nb_T, 2) if nb_T else None,
            "escape_steps_equal_numba": bool(np.array_equal(out, ref)) if "Basins" not in name else None,
            "partition_differs_from_numba": int((bounded != bounded_ref).sum()),
            "partition_differs_from_exact_ellipse": int((bounded != (level < 1)).sum()),
        })
    work = float(np.minimum(ref, steps).sum())  # point-iterations actually needed (early exit)
    for r in rows:
        r["point_iterations_per_ns"] = round(work / (r["seconds"] * 1e9), 3)
    meta = {"n": args.n, "steps": steps, "mu": mu, "bounded_fraction": float(bounded_ref.mean()),
            "needed_point_iterations": work, "torch": torch.__version__, "numba": numba.__version__,
            "compile_seconds": compile_s}
    result = {"meta": meta, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"two-factor basins: {args.n}x{args.n} grid x {steps} iterations, mu={mu} "
              f"(bounded fraction {meta['bounded_fraction']:.4f}, {work:.3g} point-iterations needed)")
        if compile_s is not None:
            print(f"torch.compile: {compile_s:.1f} s to compile (not included below)")
        head = f"{'method':30s} {'thr':>3s} {'seconds':>8s} {'it/ns':>6s} {'x numpy':>8s} {'/ numba':>8s} " \
               f"{'same esc':>8s} {'!=numba':>7s} {'!=exact':>7s}"
        print(head)
        print("-" * len(head))
        for r in rows:
            f = lambda v: "-" if v is None else str(v)  # noqa: E731
            print(f"{r['method']:30s} {r['threads']:3d} {r['seconds']:8.3f} {r['point_iterations_per_ns']:6.3f} "
                  f"{f(r['vs_numpy']):>8s} {f(r['vs_numba_same_threads']):>8s} {f(r['escape_steps_equal_numba']):>8s} "
                  f"{r['partition_differs_from_numba']:7d} {r['partition_differs_from_exact_ellipse']:7d}")
    return result


if __name__ == "__main__":
    main()

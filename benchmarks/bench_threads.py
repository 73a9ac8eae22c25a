"""Benchmark: the analyzers' automatic thread count against two torch threads, with and without a competing load.

System: the 100-neuron full-rank RNN map of ``bench_fixed_points.py`` (``x -> (1 - D) x + D tanh(W x + b)``,
gain 1.5). Work: the ``fixed_points`` analyzer with its defaults (64 starting states; thousands of small batched
operations, each ending at an OpenMP barrier when torch runs it on several threads), timed with
``threads=None`` (automatic: :func:`dynlearn.threads.analyzer_threads` gives one thread to this problem) and
``threads=2``, interleaved, under a competing load: a busy-loop subprocess pinned to one core, started and
stopped by the benchmark (``--idle`` also times both without it). Printed: the times (median of ``--repeat``
runs, each listed) and the ratio (2 threads / automatic) measured in the same run.

Usage: ``python benchmarks/bench_threads.py [--repeat 3] [--starts 64] [--idle]``.

Measured here (2 CPU cores shared with other jobs, load average 4-6 before the busy loop was added; medians of
3, two runs of ``--idle --repeat 3``; the automatic choice is one thread; both find the same fixed points):

==========================================  ============  ==========  =============
load                                        auto (1 thr)  2 threads   2 thr / auto
==========================================  ============  ==========  =============
machine's own load only (run 1 / run 2)     1.13 / 0.61   20.3 / 7.3  18.0x / 12.0x
+ busy loop pinned to core 0 (run 1 / 2)    0.76 / 1.85   5.2 / 19.9  6.9x / 10.7x
==========================================  ============  ==========  =============

Single two-thread runs ranged from 4.5 s to 24.5 s, one-thread runs from 0.5 s to 2.2 s: on a shared machine
the two-thread time depends on whether the other core happens to be free, the one-thread time much less.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

import dynlearn
from dynlearn.threads import analyzer_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fixed_points import N, FullRankRNN  # noqa: E402  (the benchmark system, one definition)

warnings.simplefilter("ignore")


def start_load(cpu: int) -> subprocess.Popen:
    """A Python busy loop pinned to core ``cpu`` (stopped by :func:`stop_load`)."""
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def stop_load(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def timed(system, starts: int, threads: int | None) -> tuple[float, int]:
    an = dynlearn.get_analyzer("fixed_points")(n_starts=starts, threads=threads)
    t0 = time.perf_counter()
    out = an.run(system)
    return time.perf_counter() - t0, int(out.n_fixed)


def measure(system, starts: int, repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"auto": [], "2": []}
    found = set()
    for _ in range(repeat):  # interleaved, so a change of the machine's load hits both
        for key, threads in (("auto", None), ("2", 2)):
            t, n = timed(system, starts, threads)
            times[key].append(t)
            found.add(n)
    if len(found) != 1:
        raise RuntimeError(f"the thread count changed the result: fixed points found {sorted(found)}")
    return times


def report(label: str, times: dict[str, list[float]]) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{label} (load average after: {os.getloadavg()[0]:.1f})")
    for key in ("auto", "2"):
        runs = ", ".join(f"{t:.2f}" for t in times[key])
        print(f"  threads={key:<5} {med[key]:8.2f} s  ({runs})")
    print(f"  ratio 2 threads / auto: {med['2'] / med['auto']:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--starts", type=int, default=64)
    ap.add_argument("--gain", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--idle", action="store_true", help="also time both without the competing load")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    W = rng.standard_normal((N, N)) * args.gain / math.sqrt(N)
    b = rng.standard_normal(N) * 0.1
    system = FullRankRNN(W=W.tolist(), b=b.tolist())
    auto = analyzer_threads(args.starts * N)
    print(f"fixed_points, {N}-neuron RNN, {args.starts} starts; cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}; automatic choice: {auto} thread(s)")
    timed(system, 8, None)  # warm-up: one-time library initialisation is not timed
    if args.idle:
        report("without the busy loop (the machine's own load only)", measure(system, args.starts, args.repeat))
    load = start_load(0)
    try:
        time.sleep(0.5)
        report("with a busy loop pinned to core 0", measure(system, args.starts, args.repeat))
    finally:
        stop_load(load)


if __name__ == "__main__":
    main()

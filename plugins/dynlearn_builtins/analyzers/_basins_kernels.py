"""Batched iteration / integration kernels of the basins analyzer (private).

:func:`evolve` advances many states at once: a map is iterated, a flow is integrated with the classic
fixed-step RK4 scheme. States are processed in chunks (to bound memory and keep the working set in cache);
every ``check_every`` steps the chunk is checked for divergence (``|x|_inf > max_norm`` or non-finite) and the
diverged elements are dropped from the chunk (early exit), so the cost is proportional to the number of
*surviving* point-iterations. Elements that went non-finite between two checks are replayed step by step from
the last check to tell ``diverged`` (they first left the ball) from ``nan`` (NaN while bounded) and to record
the exact escape step.

Steppers
--------
The generic stepper calls ``system.rhs`` on ``(n, d)`` states. A system may also have a *fast stepper*: an
equivalent hand-written kernel in structure-of-arrays layout with in-place torch ops (fewer temporaries, no
strided access), registered with :func:`register_fast_stepper` against the exact ``rhs`` function it
reproduces, so a subclass that overrides ``rhs`` falls back to the generic path. The two-factor map has one
(4 in-place ops per iteration instead of ~10 allocating ones).

    >>> import torch, dynlearn
    >>> tf = dynlearn.make_system({"name": "two_factor", "mu": 1.0})
    >>> x0 = torch.tensor([[0.5, 0.5], [3.0, 3.0]], dtype=torch.float64)
    >>> p = tf.param_tensors(batch_shape=(1,))
    >>> out = evolve(tf, x0, p, torch.zeros(2, dtype=torch.long), steps=100)
    >>> out.outcome.tolist(), out.escape.tolist()
    ([0, 1], [100, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from dynlearn import outcome as oc
from dynlearn.progress import Meter

__all__ = ["Evolved", "evolve", "default_chunk", "register_fast_stepper", "make_stepper", "GenericStepper"]

Tensor = torch.Tensor


@dataclass
class Evolved:
    """Result of :func:`evolve` for ``N`` states.

    Attributes
    ----------
    final
        ``(N, d)``: the state after ``steps`` steps; for diverged / nan elements the last state inside the ball.
    outcome
        ``(N,)`` int8 codes of :mod:`dynlearn.outcome` (``ok``, ``diverged``, ``nan``).
    escape
        ``(N,)`` int64: the step at which the element left the ball (``steps`` when it never did).
    """

    final: Tensor
    outcome: Tensor
    escape: Tensor


class GenericStepper:
    """Steps through ``system.rhs``: ``x -> F(x)`` for maps, one classic RK4 step of size ``dt`` for flows."""

    def __init__(self, system, x: Tensor, p: Mapping[str, Tensor], dt: float) -> None:
        self.rhs = system.rhs
        self.flow = system.kind == "flow"
        self.x = x
        self.p = dict(p)
        self.dt = dt

    def advance(self, k: int) -> None:
        x, p, f, h = self.x, self.p, self.rhs, self.dt
        for _ in range(k):
            if self.flow:
                k1 = f(x, p)
                k2 = f(torch.add(x, k1, alpha=0.5 * h), p)
                k3 = f(torch.add(x, k2, alpha=0.5 * h), p)
                k4 = f(torch.add(x, k3, alpha=h), p)
                x = x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
            else:
                x = f(x, p)
        self.x = x

    def state(self) -> Tensor:
        return self.x

    def record(self, out: Tensor) -> None:
        """Copy the states into ``out`` of shape ``(d, n)`` (coordinate-major)."""
        out.copy_(self.x.T)

    def snapshot(self):
        """A copy of the current states, cheap to take (read back with :meth:`rows`)."""
        return self.x  # advance() never writes into an existing state tensor

    @staticmethod
    def rows(snap, mask: Tensor) -> Tensor:
        return snap[mask]

    def inside(self, max_norm: float) -> Tensor:
        """``(n,)`` True where the state is finite and inside ``|x|_inf <= max_norm`` (NaN compares False)."""
        return (self.x.abs() <= max_norm).all(-1)

    def keep(self, mask: Tensor) -> None:
        self.x = self.x[mask]
        self.p = {k: v[mask] for k, v in self.p.items()}


class _TwoFactorStepper:
    """``(a, b) -> (a - r b, b - r a)``, ``r = mu (ab - 1)``, on contiguous columns with in-place ops.

    Three fused multiply-add kernels per iteration when the chunk has one ``mu`` (``r = mu ab - mu``), four
    otherwise; four arrays (``a``, ``b``, ``r`` and a spare for the new ``a``), no allocation inside the loop.
    """

    def __init__(self, system, x: Tensor, p: Mapping[str, Tensor], dt: float) -> None:
        self.a = x[:, 0].contiguous()
        self.b = x[:, 1].contiguous()
        self.mu = p["mu"].expand(x.shape[0]).contiguous()
        self._buffers()

    def _buffers(self) -> None:
        self.r = torch.empty_like(self.a)
        self.a2 = torch.empty_like(self.a)
        mu = self.mu
        self.scalar = len(mu) > 0 and bool((mu == mu[0]).all())
        self.neg_mu = -(mu[0] if self.scalar else mu)

    def advance(self, k: int) -> None:
        a, b, r, a2, mu, neg_mu = self.a, self.b, self.r, self.a2, self.mu, self.neg_mu
        m = float(mu[0]) if self.scalar else None
        for _ in range(k):
            if m is not None:
                torch.addcmul(neg_mu, a, b, value=m, out=r)  # r = mu ab - mu
            else:
                torch.mul(a, mu, out=r)
                torch.addcmul(neg_mu, r, b, out=r)
            torch.addcmul(a, r, b, value=-1.0, out=a2)  # a' = a - r b
            b.addcmul_(r, a, value=-1.0)  # b' = b - r a (a still holds the old a)
            a, a2 = a2, a
        self.a, self.b, self.a2 = a, b, a2

    def state(self) -> Tensor:
        return torch.stack([self.a, self.b], dim=-1)

    def record(self, out: Tensor) -> None:
        out[0].copy_(self.a)
        out[1].copy_(self.b)

    def snapshot(self):
        return self.a.clone(), self.b.clone()

    @staticmethod
    def rows(snap, mask: Tensor) -> Tensor:
        return torch.stack([snap[0][mask], snap[1][mask]], dim=-1)

    def inside(self, max_norm: float) -> Tensor:
        return torch.maximum(self.a.abs(), self.b.abs()) <= max_norm

    def keep(self, mask: Tensor) -> None:
        self.a, self.b, self.mu = self.a[mask], self.b[mask], self.mu[mask]
        self._buffers()


_FAST: dict[Callable, type] = {}


def register_fast_stepper(rhs: Callable, stepper: type) -> None:
    """Use ``stepper`` for systems whose ``rhs`` is exactly the function ``rhs`` (e.g. ``TwoFactorMap.rhs``).

    A stepper is constructed as ``stepper(system, x (n, d), params {name: (n, *event)}, dt)`` and provides
    ``advance(k)``, ``state() -> (n, d)``, ``record(out (d, n))``, ``snapshot()`` / ``rows(snapshot, mask)``
    (a cheap copy of the states, and its rows as ``(k, d)``), ``inside(max_norm) -> (n,) bool`` and
    ``keep(mask)``.
    """
    _FAST[rhs] = stepper


def _register_builtins() -> None:
    from dynlearn_builtins.systems.two_factor import TwoFactorMap

    register_fast_stepper(TwoFactorMap.rhs, _TwoFactorStepper)


_register_builtins()


def make_stepper(system, x: Tensor, p: Mapping[str, Tensor], dt: float, kernel: str = "auto"):
    """The fast stepper registered for ``type(system).rhs`` (``kernel="auto"``), else the generic one."""
    cls = _FAST.get(type(system).rhs) if kernel == "auto" else None
    return (cls or GenericStepper)(system, x, p, dt)


def default_chunk(chunk_size: int | None = None, workers: int | None = None) -> int:
    """``chunk_size``, or the default for ``workers`` threads (see :func:`evolve`)."""
    workers = max(1, int(workers or torch.get_num_threads()))
    return max(1, int(chunk_size or (65536 if workers == 1 else 32000)))


def evolve(
    system,
    x0: Tensor,
    params: Mapping[str, Tensor],
    pidx: Tensor,
    *,
    steps: int,
    dt: float = 0.05,
    max_norm: float = 1e6,
    record: tuple[int, ...] = (),
    on_record: Callable[[Tensor, Tensor], None] | None = None,
    chunk_size: int | None = None,
    check_every: int = 32,
    kernel: str = "auto",
    workers: int | None = None,
    meter: Meter | None = None,
) -> Evolved:
    """Advance the states ``x0`` (``(N, d)``) by ``steps`` steps; element ``i`` uses parameters ``pidx[i]``.

    Parameters
    ----------
    params
        Parameter tensors ``(B, *event)``; ``pidx`` (``(N,)`` long) picks each element's row.
    record, on_record
        Step counts (sorted, in ``1..steps``) at which the surviving states are recorded; after each chunk,
        ``on_record(index (n,), states (len(record), d, n))`` receives the elements of the chunk that are
        still ``ok`` at the end (their global indices), in chunk order.
    chunk_size
        Elements per chunk. Default: 65536 with one worker (per-kernel overhead amortised), 32000 with more
        (below torch's intra-op parallelisation grain of 32768, so each chunk's kernels run on its own thread
        instead of contending for the shared pool).
    check_every
        Largest number of steps between divergence checks (and compactions); checks are denser at the start
        (after 1, 2, 4, ... steps), where most diverging orbits leave.
    kernel
        ``"auto"`` (fast stepper when one is registered) or ``"generic"``.
    workers
        Chunks advanced concurrently on that many threads (default ``torch.get_num_threads()``); torch releases
        the GIL inside its kernels. Results do not depend on it.
    """
    N, d = x0.shape
    final = x0.clone()
    code = torch.full((N,), oc.OK, dtype=torch.int8)
    escape = torch.full((N,), steps, dtype=torch.int64)
    record = tuple(int(r) for r in record)
    workers = max(1, int(workers or torch.get_num_threads()))
    size = default_chunk(chunk_size, workers)
    starts = list(range(0, N, size))
    workers = min(workers, len(starts))

    def run(start: int):
        idx = torch.arange(start, min(N, start + size))
        return _chunk(system, x0[idx], {k: v[pidx[idx]] for k, v in params.items()}, idx, steps=steps, dt=dt,
                      max_norm=max_norm, record=record, check_every=check_every, kernel=kernel)

    def store(res) -> None:
        gone, c, when, last, idx, fin, buf = res
        code[gone], escape[gone], final[gone] = c, when, last
        if len(idx):
            final[idx] = fin
            if on_record is not None and buf is not None:
                on_record(idx, buf)
        if meter is not None:
            meter.update(1)

    if workers == 1:
        for start in starts:
            store(run(start))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:  # a bounded window of chunks in flight, stored in order
            window = 2 * workers
            futures = [ex.submit(run, s) for s in starts[:window]]
            for i in range(len(starts)):
                res = futures[i].result()
                if i + window < len(starts):
                    futures.append(ex.submit(run, starts[i + window]))
                futures[i] = None
                store(res)
    return Evolved(final, code, escape)


def _chunk(system, x: Tensor, p: dict[str, Tensor], idx: Tensor, *, steps, dt, max_norm, record, check_every,
           kernel):
    """Advance one chunk; returns its diverged elements (index, outcome, escape step, last state inside) and
    its surviving elements (index, final state, recorded states)."""
    st = make_stepper(system, x, p, dt, kernel)
    d = x.shape[1]
    buf = torch.empty((len(record), d, len(idx)), dtype=x.dtype) if record else None  # time, coordinate, orbit
    gone, codes, whens, lasts = [], [], [], []
    k, r_i = 0, 0
    while k < steps:
        stop = min(k + min(check_every, max(1, k)), steps)
        if r_i < len(record):
            stop = min(stop, record[r_i])
        before = st.snapshot()
        st.advance(stop - k)
        inside = st.inside(max_norm)
        if not bool(inside.all()):
            bad = ~inside
            c, when, last = _replay(system, st.rows(before, bad), {n: v[bad] for n, v in p.items()}, k, stop,
                                    max_norm, dt)
            gone.append(idx[bad])
            codes.append(c)
            whens.append(when)
            lasts.append(last)
            st.keep(inside)
            idx = idx[inside]
            p = {n: v[inside] for n, v in p.items()}
            if buf is not None:
                buf = buf[:, :, inside]
        k = stop
        if len(idx) == 0:
            break
        while r_i < len(record) and record[r_i] == k:
            st.record(buf[r_i])
            r_i += 1
    fin = st.state() if len(idx) else x[:0]
    cat = (lambda xs, like: torch.cat(xs) if xs else like)
    return (cat(gone, idx[:0]), cat(codes, torch.empty(0, dtype=torch.int8)),
            cat(whens, torch.empty(0, dtype=torch.int64)), cat(lasts, x[:0]), idx, fin, buf)


def _replay(system, x: Tensor, p: Mapping[str, Tensor], k0: int, k1: int, max_norm: float, dt: float):
    """Step ``x`` (inside the ball at step ``k0``) one step at a time up to step ``k1``.

    Returns the outcome (``nan`` when the state turned NaN without first leaving the ball, else ``diverged``),
    the step at which it left the ball, and its last state inside the ball.
    """
    n = x.shape[0]
    st = GenericStepper(system, x, p, dt)
    code = torch.full((n,), oc.DIVERGED, dtype=torch.int8)
    when = torch.full((n,), k1, dtype=torch.int64)
    last = x.clone()
    alive = torch.ones(n, dtype=torch.bool)
    for j in range(k0 + 1, k1 + 1):
        st.advance(1)
        y = st.x
        out = ~(y.abs() <= max_norm).all(-1)
        big = ((y.abs() > max_norm) | torch.isinf(y)).any(-1)
        new = alive & out
        code[new & ~big] = oc.NAN
        when[new] = j
        alive &= ~new
        last[alive] = y[alive]
    return code, when, last

"""The one batched stepper: maps iterated, flows stepped with fixed-step RK4, per-element outcomes.

Every analyzer advances states through this module; adaptive integration (torchdiffeq's ``dopri5`` with
``rtol``/``atol``) is :func:`dynlearn.simulate.simulate` behind the same outcome vocabulary.

- :class:`GenericStepper` holds states ``(n, d)`` and their parameters and advances them ``k`` steps: ``x -> F(x)``
  for a map, one classic RK4 step of size ``dt`` for a flow. A System may return a faster equivalent from
  :meth:`dynlearn.System.stepper` (the two-factor map has a structure-of-arrays kernel); :func:`make_stepper`
  picks it.
- :func:`freeze` is the one divergence rule: an element whose next state leaves ``|x|_inf <= max_norm`` (or a
  region) or is not finite keeps its last state and is labeled ``diverged`` or ``nan``; the batch goes on.
- :func:`iterate` advances a batch of any shape step by step with :func:`freeze`, recording every
  ``record_every``-th state; :func:`evolve` advances many states in chunks with early exit of diverged ones (the
  cost is proportional to the surviving point-iterations) and replays a chunk's failures to tell ``diverged``
  from ``nan``.
- :func:`step_jacobian`: one step and its exact Jacobian (the map's ``jacobian``; for a flow, autograd through
  the RK4 steps, i.e. the Jacobian of the discrete time-``h n`` map).

    >>> import torch, dynlearn
    >>> from dynlearn import outcome as oc
    >>> sn = dynlearn.get_system("saddle_node")(r=1.0)                  # dx/dt = x^2 + 1: x(t) = tan t
    >>> x0 = torch.zeros(2, 1, dtype=torch.float64)
    >>> p = sn.param_tensors(batch_shape=(2,))
    >>> out = iterate(sn, x0, p, 50, dt=0.01)
    >>> round(float(out.final[0, 0]), 6) == round(float(torch.tan(torch.tensor(0.5, dtype=torch.float64))), 6)
    True
    >>> oc.labels(iterate(sn, x0, p, 400, dt=0.01, max_norm=1e3).outcome).tolist()   # escapes at t = pi/2
    ['diverged', 'diverged']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from . import outcome as oc
from .progress import Meter

__all__ = ["GenericStepper", "make_stepper", "freeze", "Iterated", "iterate", "Evolved", "evolve",
           "default_chunk", "step_jacobian", "rk4_step"]

Tensor = torch.Tensor


def rk4_step(f: Callable[[Tensor], Tensor], x: Tensor, h: float) -> Tensor:
    """One classic RK4 step of size ``h`` of ``dx/dt = f(x)``."""
    k1 = f(x)
    k2 = f(torch.add(x, k1, alpha=0.5 * h))
    k3 = f(torch.add(x, k2, alpha=0.5 * h))
    k4 = f(torch.add(x, k3, alpha=h))
    return x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)


class GenericStepper:
    """Steps through ``system.rhs``: ``x -> F(x)`` for maps, one classic RK4 step of size ``dt`` for flows.

    The stepper protocol (what :meth:`dynlearn.System.stepper` returns): constructed on states ``x (n, d)`` and
    parameters ``{name: (n, *event)}``, it provides ``advance(k)``, ``state() -> (n, d)``,
    ``record(out (d, n))``, ``snapshot()`` / ``rows(snapshot, mask)`` (a cheap copy of the states, and its rows as
    ``(k, d)``), ``inside(max_norm) -> (n,) bool`` and ``keep(mask)``.
    """

    def __init__(self, system, x: Tensor, p: Mapping[str, Tensor], dt: float) -> None:
        self.rhs = system.rhs
        self.flow = system.kind == "flow"
        self.x = x
        self.p = dict(p)
        self.dt = dt

    def step(self, x: Tensor) -> Tensor:
        """One step of ``x`` (any batch shape broadcasting against the parameters) without storing it."""
        if self.flow:
            return rk4_step(lambda y: self.rhs(y, self.p), x, self.dt)
        return self.rhs(x, self.p)

    def advance(self, k: int) -> None:
        x = self.x
        for _ in range(k):
            x = self.step(x)
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


def make_stepper(system, x: Tensor, p: Mapping[str, Tensor], dt: float, kernel: str = "auto"):
    """The system's own stepper (``kernel="auto"``: :meth:`dynlearn.System.stepper`) or the generic one."""
    if kernel == "auto" and hasattr(system, "stepper"):
        return system.stepper(x, p, dt)
    return GenericStepper(system, x, p, dt)


def freeze(x: Tensor, nxt: Tensor, code: Tensor, max_norm: float,
           inside: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The one divergence rule. Returns ``(x, code, moved)``.

    Elements still ``ok`` whose ``nxt`` is finite, inside ``|x|_inf <= max_norm`` and (if given) ``inside``
    move to ``nxt``; the others keep ``x`` and become ``diverged`` (a coordinate left the ball, is infinite, or
    the state left the region) or ``nan`` (NaN while every other coordinate stayed bounded).
    """
    good = (nxt.abs() <= max_norm).all(-1)  # False for NaN and inf
    if inside is not None:
        good = good & inside
    alive = code == oc.OK
    moved = alive & good
    died = alive & ~good
    if bool(died.any()):
        big = ((nxt.abs() > max_norm) | torch.isinf(nxt)).any(-1)
        if inside is not None:
            big = big | ~inside
        bad = torch.where(torch.isnan(nxt).any(-1) & ~big, torch.tensor(oc.NAN, dtype=torch.int8),
                          torch.tensor(oc.DIVERGED, dtype=torch.int8))
        code = torch.where(died, bad, code)
    return torch.where(moved.unsqueeze(-1), nxt, x), code, moved


@dataclass
class Iterated:
    """Result of :func:`iterate` on states of batch shape ``S``.

    Attributes
    ----------
    final
        ``(*S, d)``: the last state (the last one inside for elements that failed).
    outcome
        ``(*S)`` int8 codes of :mod:`dynlearn.outcome`.
    escape
        ``(*S)`` int64: the step at which the element failed (``steps`` when it never did).
    states
        ``(R, *S, d)`` recorded states (the initial one first), or ``None``.
    steps
        Recorded step indices ``(R,)`` (or ``None``).
    """

    final: Tensor
    outcome: Tensor
    escape: Tensor
    states: Tensor | None = None
    steps: Tensor | None = None


def iterate(system, x0: Tensor, p: Mapping[str, Tensor], steps: int, *, dt: float = 1.0, max_norm: float = 1e6,
            record_every: int = 0, region: Callable[[Tensor], Tensor] | None = None,
            code: Tensor | None = None, step: Callable[[Tensor], Tensor] | None = None,
            meter: Meter | None = None) -> Iterated:
    """Advance ``x0 (*S, d)`` by ``steps`` steps (map iterations or RK4 steps of size ``dt``) with :func:`freeze`.

    Parameters
    ----------
    region
        Optional ``x -> (*S) bool``: where a state may go (leaving it counts as ``diverged``).
    code
        Outcome codes to start from (elements not ``ok`` do not move); default: classified from ``x0``.
    step
        The step function (default: :class:`GenericStepper`'s); e.g. a rescaled flow.
    record_every
        Record every ``record_every``-th state (0: none).
    """
    step = step or GenericStepper(system, x0, p, dt).step
    x = x0
    code = oc.classify(x0, max_norm) if code is None else code
    escape = torch.full(code.shape, steps, dtype=torch.int64, device=x0.device)
    rec, idx = ([x0], [0]) if record_every else (None, None)
    for k in range(1, steps + 1):
        nxt = step(x)
        alive = code == oc.OK
        x, code, moved = freeze(x, nxt, code, max_norm, region(nxt) if region is not None else None)
        escape = torch.where(alive & ~moved, k, escape)
        if record_every and k % record_every == 0:
            rec.append(x)
            idx.append(k)
        if meter is not None:
            meter.update(1)
    states = torch.stack(rec) if rec is not None else None
    return Iterated(x, code, escape, states, torch.tensor(idx) if idx is not None else None)


def step_jacobian(system, x: Tensor, p: Mapping[str, Tensor], *, dt: float = 1.0, n: int = 1) -> tuple[Tensor, Tensor]:
    """``(y, J)``: ``n`` steps of ``x (..., d)`` and their Jacobian ``J[..., i, j] = dy_i / dx_j``.

    A map's single step uses its ``jacobian``; a flow differentiates through the RK4 steps (autograd, one
    backward pass for all ``d`` columns through a ``d``-fold expanded batch).
    """
    if system.kind == "map" and n == 1:
        return system.rhs(x, p), system.jacobian(x, p)
    d = x.shape[-1]
    pe = system.expand_params(p, 1)
    stepper = GenericStepper(system, x, pe, dt)
    with torch.enable_grad():
        xr = x.detach().unsqueeze(-2).expand(*x.shape[:-1], d, d).clone().requires_grad_(True)
        y = xr
        for _ in range(n):
            y = stepper.step(y)
        (jac,) = torch.autograd.grad(y.diagonal(dim1=-2, dim2=-1).sum(), xr)
    return y[..., 0, :].detach(), jac


# -- many states in chunks, with early exit --------------------------------------------------------------------
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
        ``"auto"`` (the system's own stepper) or ``"generic"``.
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
    """Step ``x`` (inside the ball at step ``k0``) one step at a time up to step ``k1`` with :func:`iterate`.

    Returns the outcome (``nan`` when the state turned NaN without first leaving the ball, else ``diverged``),
    the step at which it left the ball, and its last state inside the ball.
    """
    out = iterate(system, x, p, k1 - k0, dt=dt, max_norm=max_norm,
                  code=torch.full(x.shape[:1], oc.OK, dtype=torch.int8))
    # every replayed element failed by step k1 (it was outside at k1): one still "ok" here left only through
    # round-off differences between the chunked and the single-step paths; count it as diverged at k1
    code = torch.where(out.outcome == oc.OK, torch.tensor(oc.DIVERGED, dtype=torch.int8), out.outcome)
    return code, out.escape + k0, out.final

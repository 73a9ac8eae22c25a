r"""Lyapunov spectra of any System: batched QR (Benettin) method, finite-time exponents, covariant vectors.

The one implementation of Lyapunov exponents: the ``orbits``, ``transverse``, ``basins`` and ``lyapunov`` analyzers
all accumulate through :class:`ExponentAccumulator`, and :func:`spectrum` is the whole computation for states
``x0 (*S, d)`` of any System (batched over states, parameter values and networks alike).

Method
------
States advance with the core stepper: a map's step and its ``jacobian`` (:func:`dynlearn.stepper.step_jacobian`),
or one classic RK4 step of size ``dt`` of a flow together with the exact derivative of that step applied to the
tangent vectors (:func:`tangent_rk4_step`: :func:`~dynlearn.stepper.rk4_step` of the variational system, with the
system's Jacobian products). ``k`` tangent vectors ``Q`` evolve as ``Q <- J Q`` and are re-orthonormalised every
``renorm_every`` steps, ``J Q = Q' R``:

.. math:: \lambda_i = \frac{1}{N \Delta} \sum_{t} \ln |R^{(t)}_{ii}|

over the ``N`` measured steps, with :math:`\Delta = 1` for a map (exponents per iteration) and
:math:`\Delta = dt` for a flow: the exponents of the RK4 time-``dt`` map divided by ``dt`` (per unit time), which
differ from the flow's by :math:`O(dt^4)`. Their sum is exactly :math:`\langle \ln|\det J| \rangle / \Delta`
(all ``d`` of them), whatever ``N``. Tangent dynamics and logs are always float64, also for float32 states.

Finite-time exponents are the same sums over consecutive windows of ``window`` steps. Covariant Lyapunov vectors
(``covariant=True``) follow Ginelli et al. (2007): the ``R`` factors of the forward pass are stored and a random
upper-triangular ``C`` is iterated backward, ``C <- R^{-1} C`` (columns normalised); the vectors
``V = Q C`` at the first measured state converge at the rate of the exponent gaps.

Examples
--------
The Hénon map (a = 1.4, b = 0.3): ``det J = -b``, so the exponents sum to ``ln 0.3`` to rounding:

>>> import math, torch, dynlearn
>>> class Henon(dynlearn.MapSystem):
...     state_names = ("x", "y")
...     parameters = {"a": dynlearn.Param(1.4), "b": dynlearn.Param(0.3)}
...     def rhs(self, x, p):
...         return torch.stack([1 - p["a"] * x[..., 0] ** 2 + x[..., 1], p["b"] * x[..., 0]], -1)
>>> h = Henon()
>>> x0 = 0.1 * torch.rand(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> sp = spectrum(h, x0, h.param_tensors((16,)), steps=3000, transient=200)
>>> [round(v, 2) for v in sp.exponents.mean(0).tolist()]
[0.42, -1.62]
>>> abs(float(sp.exponents.sum(-1)[0]) - math.log(0.3)) < 1e-10
True
>>> round(float(kaplan_yorke(sp.exponents).mean()), 2)
1.26

References
----------
Benettin, Galgani, Giorgilli, Strelcyn (1980), Meccanica 15; Ginelli, Poggi, Turchi, Chaté, Livi, Politi (2007),
PRL 99, 130601; Kaplan & Yorke (1979).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from . import outcome as oc
from .errors import ParameterError, ShapeError
from .progress import Meter
from .stepper import freeze, iterate, rk4_step, step_jacobian
from .system import System, has_fast_products

__all__ = ["Spectrum", "spectrum", "ExponentAccumulator", "qr", "tangent_rk4_step", "kaplan_yorke", "LOG_FLOOR",
           "aperiodic_verdict", "UNSETTLED", "FLAT", "CHAOTIC"]

Tensor = torch.Tensor
F64 = torch.float64

#: ln|R_ii| of a superstable step (an exactly zero stretch) is clamped here instead of -inf
LOG_FLOOR = math.log(torch.finfo(F64).tiny)


def qr(a: Tensor) -> tuple[Tensor, Tensor]:
    """``a (..., d, m) = Q R`` with ``R (..., m, m)`` upper triangular and a non-negative diagonal.

    Modified Gram-Schmidt for large batches of ``m <= 4`` columns (a few batched vector operations: 1.5x faster
    than LAPACK for 65536 2 x 2 matrices), LAPACK otherwise (signs fixed; 4-30x faster for tens of matrices).
    """
    m = a.shape[-1]
    if m == 1:  # one vector: a normalisation
        nrm = a.norm(dim=-2, keepdim=True)
        return a / nrm.clamp_min(1e-300), nrm
    if m > 4 or a[..., 0, 0].numel() < 4096:
        q, r = torch.linalg.qr(a)
        sign = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(a.dtype)
        return q * sign.unsqueeze(-2), r * sign.unsqueeze(-1)
    qs = []
    r = torch.zeros(*a.shape[:-2], m, m, dtype=a.dtype, device=a.device)
    for j in range(m):
        v = a[..., :, j]
        for i, q in enumerate(qs):
            c = (q * v).sum(-1)
            r[..., i, j] = c
            v = v - c.unsqueeze(-1) * q
        nrm = v.norm(dim=-1)
        r[..., j, j] = nrm
        qs.append(v / nrm.clamp_min(1e-300).unsqueeze(-1))
    return torch.stack(qs, -1), r


def _start(m: int, k: int) -> Tensor:
    """Initial tangent vectors: the identity's columns for the full spectrum, else ``k`` fixed generic orthonormal
    vectors (a coordinate axis may be invariant, e.g. for a diagonal map, and would miss the leading direction)."""
    if k == m:
        return torch.eye(m, dtype=F64)
    return qr(torch.randn(m, k, generator=torch.Generator().manual_seed(0), dtype=F64))[0]


def _log(r: Tensor) -> Tensor:
    return torch.log(r).clamp_min(LOG_FLOOR)


class ExponentAccumulator:
    """``k`` tangent vectors of a cocycle ``A_t`` (``(*shape, m, m)``) and the sums of ``ln|R_ii|``, float64.

    ``push(A, moved)`` applies one step to the elements that ``moved`` (``(*shape)`` bool); every
    ``renorm_every``-th push re-orthonormalises (:func:`qr`) and adds the logs. For ``m = k = 2`` with
    ``renorm_every = 1`` and no stored ``R`` one vector is tracked in structure-of-arrays form and the second
    log is ``ln|det A|`` minus the first (the two-factor phase diagrams run through it).

    Parameters
    ----------
    shape
        Batch shape of the cocycle.
    m, k
        Dimension of the cocycle and number of tangent vectors (default ``m``).
    dtype
        Ignored for the accumulation (always float64); kept so callers may pass their state dtype.
    renorm_every
        Pushes between re-orthonormalisations.
    keep_r
        Store every ``R`` factor (and the initial ``Q``) for the backward pass of covariant vectors.
    products
        The caller pushes products ``A Q`` (:meth:`push_product`) instead of matrices.
    """

    def __init__(self, shape: tuple[int, ...], m: int, k: int | None = None, dtype=F64, *, renorm_every: int = 1,
                 keep_r: bool = False, products: bool = False) -> None:
        self.m = m
        self.k = m if k is None else min(int(k), m)
        self.renorm_every = int(renorm_every)
        self.keep_r = keep_r
        self.rs: list[Tensor] = []
        self._pushes = 0
        self.soa = (m, self.k) == (2, 2) and self.renorm_every == 1 and not keep_r and not products
        if self.soa:  # structure of arrays: contiguous components, no strided reductions
            self.q0, self.q1 = torch.ones(shape, dtype=F64), torch.zeros(shape, dtype=F64)
            self.l0, self.l1 = torch.zeros(shape, dtype=F64), torch.zeros(shape, dtype=F64)
        else:
            self.q = _start(m, self.k).expand(*shape, m, self.k).clone()
            self._logsum = torch.zeros(*shape, self.k, dtype=F64)
        self.q_start = None

    @property
    def logsum(self) -> Tensor:
        """``(*shape, k)`` sums of ``ln|R_ii|`` since the last :meth:`reset`, in Gram-Schmidt order."""
        return torch.stack([self.l0, self.l1], -1) if self.soa else self._logsum

    def reset(self) -> None:
        """Forget the accumulated logs (end of the warm-up), keep the tangent vectors."""
        if self.soa:
            self.l0.zero_()
            self.l1.zero_()
        else:
            self._logsum.zero_()
            self.rs = []
            self.q_start = self.q.clone() if self.keep_r else None

    def push(self, a: Tensor, moved: Tensor) -> None:
        """One step of the cocycle ``a (*shape, m, m)`` (any float dtype; NaN entries count as 0)."""
        if self.k == 0:
            return
        a = torch.nan_to_num(a.to(F64))
        if self.soa:
            self._push_soa(a, moved)
        else:
            self.push_product(a @ self.q, moved)

    def push_product(self, aq: Tensor, moved: Tensor) -> None:
        """One step given the product ``A Q`` (``(*shape, m, k)``) of the cocycle with :attr:`q` (e.g. from
        Jacobian-vector products, without forming ``A``); not for the ``m = k = 2`` structure-of-arrays form."""
        aq = torch.nan_to_num(aq.to(F64))
        self._pushes += 1
        if self._pushes % self.renorm_every:
            self.q = torch.where(moved[..., None, None], aq, self.q)
            return
        newq, r = qr(aq)
        if self.keep_r:
            self.rs.append(r)
        self.q = torch.where(moved[..., None, None], newq, self.q)
        logs = _log(r.diagonal(dim1=-2, dim2=-1))
        self._logsum = self._logsum + torch.where(moved.unsqueeze(-1), logs, torch.zeros_like(logs))

    def _push_soa(self, a: Tensor, moved: Tensor) -> None:
        c = a.reshape(*a.shape[:-2], 4).movedim(-1, 0).contiguous()
        a00, a01, a10, a11 = c[0], c[1], c[2], c[3]
        v0 = a00 * self.q0 + a01 * self.q1
        v1 = a10 * self.q0 + a11 * self.q1
        nrm = torch.hypot(v0, v1)
        lg = _log(nrm)
        ld = _log((a00 * a11 - a01 * a10).abs()) - lg
        inv = 1 / nrm.clamp_min(1e-300)
        self.q0 = torch.where(moved, v0 * inv, self.q0)
        self.q1 = torch.where(moved, v1 * inv, self.q1)
        zero = torch.zeros((), dtype=F64)
        self.l0 += torch.where(moved, lg, zero)
        self.l1 += torch.where(moved, ld, zero)

    def exponents(self, n: int, dt: float) -> Tensor:
        """``(*shape, k)`` exponents ``logsum / (n dt)`` sorted in decreasing order."""
        lam = self.logsum / (n * dt)
        return torch.sort(lam, dim=-1, descending=True).values

    def covariant(self, seed: int = 0) -> Tensor:
        """Ginelli's backward pass: ``(*shape, m, k)`` unit covariant vectors at the state of the last
        :meth:`reset` (needs ``keep_r``), in the order of the exponents."""
        if not self.keep_r or self.q_start is None:
            raise ParameterError("covariant vectors need keep_r=True and a reset() at the first measured state")
        k = self.k
        g = torch.Generator().manual_seed(seed)
        c = torch.triu(torch.rand(k, k, generator=g, dtype=F64) + 0.5).expand(*self.q.shape[:-2], k, k).clone()
        for r in reversed(self.rs):
            diag = r.diagonal(dim1=-2, dim2=-1)
            r = r + torch.diag_embed(torch.where(diag == 0, 1e-300, 0.0).to(F64))
            c = torch.linalg.solve_triangular(r, c, upper=True)
            c = c / c.norm(dim=-2, keepdim=True).clamp_min(1e-300)
        v = self.q_start @ c
        return v / v.norm(dim=-2, keepdim=True).clamp_min(1e-300)


@dataclass
class Spectrum:
    """Result of :func:`spectrum` for states of batch shape ``S``.

    Attributes
    ----------
    exponents
        ``(*S, k)`` float64 Lyapunov exponents, decreasing (NaN where the outcome is not ``ok``), per iteration
        (maps) or per unit time (flows).
    outcome
        ``(*S)`` int8 codes of :mod:`dynlearn.outcome` (``ok``, ``diverged``, ``nan``).
    final
        ``(*S, d)`` the last state (the last one inside the ball for failed elements).
    start
        ``(*S, d)`` the first measured state (after the transient): where the covariant vectors are.
    finite_time
        ``(*S, W, k)`` exponents over ``W`` consecutive windows of ``window`` steps, in Gram-Schmidt order
        (not sorted), or ``None``.
    covariant
        ``(*S, d, k)`` unit covariant Lyapunov vectors at ``start`` (column ``i``: exponent ``i``), or ``None``.
    tail
        ``(L, *S, d)`` the states at the last ``L`` re-orthonormalisations (warm-up included), or ``None``.
    steps, dt
        Measured steps and the time per step (1 for maps).
    """

    exponents: Tensor
    outcome: Tensor
    final: Tensor
    start: Tensor
    finite_time: Tensor | None = None
    covariant: Tensor | None = None
    tail: Tensor | None = None
    steps: int = 0
    dt: float = 1.0


def spectrum(system, x0: Tensor, p: Mapping[str, Tensor], *, steps: int, dt: float | None = None,
             transient: int = 0, warmup: int | None = None, k: int | None = None, renorm_every: int = 1,
             window: int | None = None, covariant: bool = False, max_norm: float = 1e6, tail: int = 0,
             code: Tensor | None = None, meter: Meter | None = None) -> Spectrum:
    """Lyapunov spectrum of the orbits from ``x0 (*S, d)`` (parameters ``{name: (*S, *event)}``).

    Parameters
    ----------
    steps
        Measured steps (map iterations or RK4 steps of size ``dt``); a multiple of ``renorm_every``.
    dt
        Flows: the RK4 step (default 0.01); exponents are per unit time. Maps: ignored (1).
    transient
        Steps discarded first; the tangent vectors evolve during the last ``warmup`` of them (default
        ``min(transient, steps // 4)``) so that they are aligned with the Oseledets directions when measuring starts.
    k
        Number of (leading) exponents; default all ``d``.
    renorm_every
        Steps between re-orthonormalisations (the tangent vectors grow like ``exp(lambda_1 dt renorm_every)``).
    window
        Steps per finite-time window (a multiple of ``renorm_every``; ``None``: no finite-time exponents).
    covariant
        Also compute covariant Lyapunov vectors at the first measured state (Ginelli's backward pass; memory
        ``steps / renorm_every * k^2`` floats per state).
    max_norm
        An orbit leaving ``|x|_inf <= max_norm`` (or turning NaN) is frozen and labeled (:func:`~dynlearn.stepper.freeze`);
        its exponents are NaN.
    tail
        States recorded at the last ``tail`` re-orthonormalisations, warm-up included (``Spectrum.tail``).
    code
        Outcome codes to start from (elements not ``ok`` do not move); default: classified from ``x0``.
    """
    x0 = system.check_state(x0)
    d = x0.shape[-1]
    flow = system.kind == "flow"
    h = float(0.01 if dt is None else dt) if flow else 1.0
    k = d if k is None else int(k)
    steps, transient, renorm_every = int(steps), int(transient), int(renorm_every)
    if steps < 1 or transient < 0 or renorm_every < 1 or not 1 <= k <= d or not h > 0:
        raise ParameterError(f"spectrum needs steps >= 1, transient >= 0, renorm_every >= 1, 1 <= k <= {d} and dt > 0; "
                             f"got steps={steps}, transient={transient}, renorm_every={renorm_every}, k={k}, dt={h}")
    if steps % renorm_every or (window is not None and (window < 1 or window % renorm_every or window > steps)):
        raise ParameterError(f"steps ({steps}) and window ({window}) must be multiples of renorm_every "
                             f"({renorm_every}), with 1 <= window <= steps")
    warm = min(transient, steps // 4) if warmup is None else min(int(warmup), transient)
    warm -= warm % renorm_every
    if tail * renorm_every > warm + steps:
        raise ShapeError(f"tail ({tail}) recorded every {renorm_every} steps needs warmup + steps >= "
                         f"{tail * renorm_every}, got {warm} + {steps}")
    S = x0.shape[:-1]
    x = x0
    if transient - warm:
        it = iterate(system, x, p, transient - warm, dt=h, max_norm=max_norm, code=code)
        x, code = it.final, it.outcome
        if meter is not None:
            meter.update(transient - warm)
    code = oc.classify(x, max_norm) if code is None else code
    # flows: tangent RK4 with the system's Jacobian products when it has closed forms; otherwise one autograd pass
    # through the renorm_every RK4 steps between re-orthonormalisations (step_jacobian), as cheap as one step's
    products = flow and _has_products(system)
    stride = renorm_every if flow and not products else 1
    acc = ExponentAccumulator(S, d, k, renorm_every=renorm_every // stride, keep_r=covariant, products=products)
    rec = torch.empty(tail, *x.shape, dtype=x.dtype) if tail else None
    windows = [] if window else None
    last = None
    start = x
    first = (warm + steps) // renorm_every - tail + 1  # the re-orthonormalisation recorded in rec[0]
    for i in range(0, warm + steps, stride):
        if i == warm:
            acc.reset()
            start = x
            last = acc.logsum.clone()
        if products:
            y, aq = tangent_rk4_step(system, x, p, acc.q, h)
            x, code, moved = freeze(x, y, code, max_norm)
            acc.push_product(aq, moved)
        else:
            y, jac = step_jacobian(system, x, p, dt=h, n=stride)
            x, code, moved = freeze(x, y, code, max_norm)
            acc.push(jac, moved)
        done = i + stride  # steps done, warm-up included
        if window and done > warm and (done - warm) % window == 0:
            now = acc.logsum.clone()
            windows.append((now - last) / (window * h))
            last = now
        if rec is not None and done % renorm_every == 0 and (slot := done // renorm_every - first) >= 0:
            rec[slot] = x
        if meter is not None:
            meter.update(stride)
    ok = (code == oc.OK).unsqueeze(-1)
    nan = torch.tensor(math.nan, dtype=F64)
    lam = torch.where(ok, acc.exponents(steps, h), nan)
    ft = torch.where(ok.unsqueeze(-2), torch.stack(windows, -2), nan) if windows else None
    cov = torch.where(ok.unsqueeze(-1), acc.covariant(), nan) if covariant else None
    return Spectrum(lam, code, x, start, ft, cov, rec, steps, h)


def _has_products(system) -> bool:
    """Whether ``system`` gives its Jacobian in closed form (overrides :meth:`System.jacobian`) or Jacobian-vector
    products (:func:`~dynlearn.system.has_fast_products`): then tangent RK4 steps need no autograd."""
    return type(system).jacobian is not System.jacobian or has_fast_products(system)


def tangent_rk4_step(system, x: Tensor, p: Mapping[str, Tensor], q: Tensor, h: float) -> tuple[Tensor, Tensor]:
    """One RK4 step of size ``h`` of a flow from ``x (*S, d)`` and the step's exact Jacobian times ``q (*S, d, k)``.

    :func:`dynlearn.stepper.rk4_step` applied to the variational system ``(x, Q)' = (f(x), Df(x) Q)``: RK4 of
    that system is the RK4 step together with its derivative, so no autograd pass and no ``d x d`` step Jacobian
    (``Df Q`` from the system's closed-form ``jacobian``, else from its ``jvp``). The products are float64; the
    state keeps its dtype (a float32 state is stepped by the stepper in float32).
    """
    p64 = {n: v.to(F64) if v.is_floating_point() else v for n, v in p.items()}

    closed = type(system).jacobian is not System.jacobian

    def variational(z: Tensor) -> Tensor:
        y, v = z[..., 0], z[..., 1:]
        if closed:
            jv = system.jacobian(y, p64) @ v
        else:  # Jacobian-vector products, one per tangent vector
            jv = torch.stack([system.jvp(y, p64, v[..., j]) for j in range(v.shape[-1])], -1)
        return torch.cat([system.rhs(y, p64).unsqueeze(-1), jv], -1)

    z = rk4_step(variational, torch.cat([x.to(F64).unsqueeze(-1), q], -1), h)
    if x.dtype == F64:
        return z[..., 0], z[..., 1:]
    return rk4_step(lambda y: system.rhs(y, p), x, h), z[..., 1:]


def kaplan_yorke(exponents: Tensor, tol: float = 0.0) -> Tensor:
    r"""Kaplan-Yorke (Lyapunov) dimension of spectra ``(..., k)`` (sorted decreasing inside).

    :math:`D = j + \sum_{i \le j} \lambda_i / |\lambda_{j+1}|` with ``j`` the largest index whose partial sum is
    ``>= 0``; ``0`` when :math:`\lambda_1 < 0`; ``k`` when every partial sum is ``>= 0`` (a lower bound unless all
    ``d`` exponents were computed); NaN for NaN spectra. Exponents within ``tol`` of 0 count as 0 (a limit
    cycle's neutral exponent, measured as ``-1e-13``, gives dimension 1, not 0).

    >>> kaplan_yorke(torch.tensor([[0.9056, 0.0, -14.5723], [-0.1, -0.2, -0.3]], dtype=torch.float64)).round(decimals=6)
    tensor([2.0621, 0.0000], dtype=torch.float64)
    >>> kaplan_yorke(torch.tensor([[-1.4e-13, -1.0]], dtype=torch.float64), tol=1e-6)
    tensor([1.], dtype=torch.float64)
    """
    lam = torch.sort(exponents, dim=-1, descending=True).values
    lam = torch.where(lam.abs() <= tol, torch.zeros_like(lam), lam)
    k = lam.shape[-1]
    csum = lam.cumsum(-1)
    j = (csum >= 0).sum(-1)  # partial sums decrease once negative: the count of non-negative ones is j
    jj = j.clamp(1, k - 1) if k > 1 else j.clamp_max(0)
    num = csum.gather(-1, (jj - 1).clamp_min(0).unsqueeze(-1))[..., 0]
    den = lam.gather(-1, jj.clamp_max(k - 1).unsqueeze(-1))[..., 0].abs()
    dim = jj.to(F64) + num / den
    dim = torch.where(j == 0, torch.zeros_like(dim), dim)
    dim = torch.where(j >= k, torch.full_like(dim, float(k)), dim)
    return torch.where(torch.isnan(lam).any(-1), torch.full_like(dim, math.nan), dim)


#: verdicts of :func:`aperiodic_verdict`
UNSETTLED, FLAT, CHAOTIC = 0, 1, 2


def aperiodic_verdict(leading: Tensor, windows: Tensor, tol: float) -> Tensor:
    r"""What the leading exponent says of an orbit that shows no return period: the one rule of the orbit
    analyzers (``orbits``, ``basins``) for calling an aperiodic orbit chaotic or quasi-periodic.

    ``leading (...)``: :math:`\lambda_1` over the whole run; ``windows (..., W)``: the leading finite-time
    exponent over ``W`` consecutive windows of it (e.g. its two halves). Returns int8 codes:

    - ``CHAOTIC``: :math:`\lambda_1 > tol` over the run and in every window, the windows agreeing to within
      ``max(tol, |lambda_1| / 2)``;
    - ``FLAT``: :math:`|\lambda_1| \le tol` (quasi-periodic, if the orbit's returns no longer approach);
    - ``UNSETTLED``: anything else, e.g. :math:`\lambda_1 < -tol` (still converging onto a fixed point or cycle:
      never quasi-periodic), disagreeing windows, NaN. Such an orbit needs a longer run, or is unresolved.

    >>> lam = torch.tensor([0.5, 0.001, -0.15, 0.5], dtype=torch.float64)
    >>> win = torch.tensor([[0.45, 0.55], [0.0, 0.002], [-0.1, -0.2], [0.05, 0.95]], dtype=torch.float64)
    >>> aperiodic_verdict(lam, win, 0.01).tolist()   # CHAOTIC, FLAT, UNSETTLED, UNSETTLED (windows disagree)
    [2, 1, 0, 0]
    """
    lam1, win = leading.double(), windows.double()
    steady = (win.amax(-1) - win.amin(-1)) <= torch.clamp(lam1.abs() / 2, min=tol)
    chaotic = (win.amin(-1) > tol) & (lam1 > tol) & steady
    flat = lam1.abs() <= tol
    out = torch.where(flat, FLAT, UNSETTLED)
    return torch.where(chaotic, CHAOTIC, out).to(torch.int8)

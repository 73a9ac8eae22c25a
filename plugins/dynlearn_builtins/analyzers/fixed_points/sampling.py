"""Starting states and trajectory passages for the fixed-point analyzer (private).

- :func:`starting_states`: for every sweep entry, states drawn uniformly from the search box plus states taken
  at random times along short trajectories (which linger near slow points and ghosts), with Gaussian noise.
- :func:`rk4_path`: fixed-step RK4 of a flow in rescaled time ``s in [0, 1]`` with a per-state horizon ``H``
  (``dx/ds = +-H f(x)``), so states with very different time scales share one batched loop; :func:`map_path`:
  iterates of a map. Both step through :func:`dynlearn.stepper.iterate` (the one RK4 formula, the one
  divergence rule); no loop of their own.
- :func:`passage`: the ghost test: a trajectory through a minimum ``x_g`` of ``q`` must leave the ball of
  radius ``rho`` around it on both sides (it passes, it is not trapped by a fixed point), linger there, and a
  Jacobian eigenvalue's real part must change sign between entry and exit. Flows are integrated both ways
  from the candidate; maps (not invertible) are iterated forward from the entry point until they leave
  (:func:`dynlearn.stepper.iterate` in segments).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from dynlearn import outcome as oc
from dynlearn.params import Settings
from dynlearn.stepper import GenericStepper, iterate, rk4_step

from .solver import take

Tensor = torch.Tensor


def _path(system, x0: Tensor, p: Mapping[str, Tensor], n_steps: int, step, ok0: Tensor,
          limit: Tensor | None, center: Tensor | None) -> tuple[Tensor, Tensor]:
    """States ``(n_steps + 1, N, d)`` and the ``inside`` mask of paths stepped by the core stepper
    (:func:`dynlearn.stepper.iterate`, with ``step``, or the core's own step when ``None``): a state that
    becomes non-finite or leaves ``|x - center| <= limit`` is frozen (``inside`` False from then on)."""
    region = None if limit is None else (lambda y: ((y - center).abs() <= limit).all(-1))
    code = torch.where(ok0, oc.OK, oc.NAN).to(torch.int8)
    out = iterate(system, x0, p, n_steps, max_norm=torch.finfo(x0.dtype).max, record_every=1, region=region,
                  code=code, step=step)
    k = torch.arange(n_steps + 1).view(-1, *([1] * ok0.dim()))
    ins = ok0 & ((out.outcome == oc.OK) | (k < out.escape))
    return out.states, ins


def rk4_path(system, x0: Tensor, p: Mapping[str, Tensor], horizon: Tensor, n_steps: int, sign: float = 1.0,
             limit: Tensor | None = None, center: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """States ``(n_steps + 1, N, d)``, rescaled velocities ``dx/ds`` and an ``inside`` mask along RK4 paths
    in rescaled time ``s in [0, 1]`` (``dx/ds = +-H f(x)``, RK4 steps of ``1 / n_steps``).

    A state that becomes non-finite or leaves ``|x - center| <= limit`` is frozen (``inside`` False from then on).
    """
    h = 1.0 / n_steps
    H = (sign * horizon).unsqueeze(-1)

    def vel(x):
        return H * system.rhs(x, p)

    ok0 = torch.isfinite(vel(x0)).all(-1)
    xs, ins = _path(system, x0, p, n_steps, lambda x: rk4_step(vel, x, h), ok0, limit, center)
    return xs, vel(xs), ins


def map_path(system, x0: Tensor, p: Mapping[str, Tensor], n_steps: int, limit: Tensor | None = None,
             center: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Iterates ``(n_steps + 1, N, d)`` of a map and the ``inside`` mask (frozen when leaving the box)."""
    return _path(system, x0, p, n_steps, None, torch.isfinite(x0).all(-1), limit, center)


def starting_states(system, p: Mapping[str, Tensor], st: Settings, box, *,
                    generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Starting states ``(B, S, d)`` for ``B`` parameter sets ``p`` ``(B, *event)``, and the typical speed ``(B,)``
    (median ``|g|`` over 256 uniform samples of the box: the scale a slow point is compared with).

    ``S`` is the option ``n_starts``; a ``trajectory_fraction`` of them are taken along trajectories: flows are
    integrated for ``5`` typical time scales (box half-width / typical speed), maps iterated ``trajectory_steps``
    times; a trajectory state is taken at a random step where it is still inside the box (a uniform state
    otherwise), plus Gaussian ``noise`` (box widths).
    """
    n_starts, noise = st.n_starts, st.noise
    lo, hi = box.lo, box.hi
    B = next(iter(p.values())).shape[0] if p else 1
    d = lo.numel()
    dtype = lo.dtype
    n_traj = int(round(n_starts * st.trajectory_fraction))
    n_unif = n_starts - n_traj
    width = hi - lo
    u = lo + width * torch.rand(B, n_starts, d, generator=generator, dtype=dtype)
    # typical speed: median over a fixed-size uniform sample (independent of n_starts)
    n_typ = 256
    probe = lo + width * torch.rand(B * n_typ, d, generator=generator, dtype=dtype)
    pf = take(p, torch.arange(B).repeat_interleave(n_typ))
    speed = system.residual(probe, pf).norm(dim=-1).reshape(B, n_typ)
    speed = torch.where(torch.isfinite(speed), speed, torch.full_like(speed, torch.inf))
    typical = speed.median(dim=1).values
    if n_traj == 0:
        return u, typical
    x0 = u[:, n_unif:].reshape(B * n_traj, d)
    ptr = take(p, torch.arange(B).repeat_interleave(n_traj))
    center = (lo + hi) / 2
    if system.kind == "flow":
        tscale = (width.min() / 2) / typical.clamp(min=1e-300)
        horizon = (5 * tscale).clamp(max=1e12).repeat_interleave(n_traj)
        xs, _, ins = rk4_path(system, x0, ptr, horizon, st.trajectory_steps, limit=width / 2, center=center)
    else:
        xs, ins = map_path(system, x0, ptr, st.trajectory_steps, limit=width / 2, center=center)
    keys = torch.rand(ins.shape, generator=generator, dtype=dtype)
    keys = torch.where(ins, keys, torch.full_like(keys, -1.0))
    pick = keys.argmax(0)
    chosen = xs.gather(0, pick.view(1, -1, 1).expand(1, -1, d))[0]
    good = ins.any(0)
    chosen = torch.where(good.unsqueeze(-1), chosen, x0)
    chosen = chosen + noise * width * torch.randn(chosen.shape, generator=generator, dtype=dtype)
    starts = torch.cat([u[:, :n_unif], chosen.reshape(B, n_traj, d)], dim=1)
    return starts, typical


@dataclass
class Passage:
    """Ghost diagnostics for ``K`` candidates (all ``(K,)``)."""

    curvature: Tensor
    radius: Tensor
    time: Tensor
    time_nf: Tensor
    time_nf_ball: Tensor
    linger: Tensor
    sign_change: Tensor
    passes: Tensor


def normal_form(system, x: Tensor, p: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Speed ``r = |g|``, slow direction ``v = g / |g|`` and curvature ``a = phi''(0) / 2`` of
    ``phi(u) = v . g(x + u v)`` at candidate minima: near ``x``, ``phi(u) ~ r + a u^2`` (the 1-D normal form
    ``u' = r + a u^2``)."""
    with torch.enable_grad():
        g0 = system.residual(x, p).detach()
        r = g0.norm(dim=-1)
        v = g0 / r.clamp(min=torch.finfo(x.dtype).tiny).unsqueeze(-1)
        u = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device, requires_grad=True)
        phi = (v * system.residual(x.detach() + u.unsqueeze(-1) * v, p)).sum(-1)
        (d1,) = torch.autograd.grad(phi.sum(), u, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), u, allow_unused=True)
    a = 0.5 * d2 if d2 is not None else torch.zeros_like(r)
    return r, v, a.detach()


def _n_positive(system, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
    J = system.jacobian(x, p)
    if system.kind == "map":
        J = J - torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    ev = torch.linalg.eigvals(J)
    return (ev.real > 0).sum(-1)


def _exit_time(xs: Tensor, vs: Tensor, ins: Tensor, center: Tensor, rho: Tensor) -> tuple[Tensor, Tensor]:
    """First time ``s in [0, 1]`` at which the path leaves the ball (cubic Hermite refinement), and whether it did."""
    n = xs.shape[0] - 1
    dist = (xs - center).norm(dim=-1)
    out = (dist > rho) & ins
    left = out.any(0)
    i1 = out.float().argmax(0).clamp(min=1)
    i0 = i1 - 1
    idx = lambda t, i: t.gather(0, i.view(1, -1, 1).expand(1, -1, t.shape[-1]))[0]  # noqa: E731
    x0, x1, v0, v1 = idx(xs, i0), idx(xs, i1), idx(vs, i0), idx(vs, i1)
    h = 1.0 / n
    lo = torch.zeros_like(rho)
    hi = torch.ones_like(rho)
    for _ in range(50):
        t = (lo + hi) / 2
        tt = t.unsqueeze(-1)
        h00, h10, h01, h11 = 2 * tt**3 - 3 * tt**2 + 1, tt**3 - 2 * tt**2 + tt, -2 * tt**3 + 3 * tt**2, tt**3 - tt**2
        xt = h00 * x0 + h10 * h * v0 + h01 * x1 + h11 * h * v1
        beyond = (xt - center).norm(dim=-1) > rho
        hi = torch.where(beyond, t, hi)
        lo = torch.where(beyond, lo, t)
    s = (i0.to(rho.dtype) + (lo + hi) / 2) * h
    return s, left


def _map_exit(system, x0: Tensor, p: Mapping[str, Tensor], center: Tensor, rho: Tensor,
              steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Iterate a map from ``x0`` ``(K, d)`` with the core stepper (:func:`dynlearn.stepper.iterate`) until each
    orbit leaves the ball ``|y - center| <= rho`` (or turns non-finite), at most ``steps`` iterations.

    Returns whether it left, the iteration at which it did (``steps`` when it did not) and its first iterate
    outside (``x0`` when it did not leave). Iterated in segments of up to 64 steps, stopping once every orbit
    has left.
    """
    region = lambda y: (y - center).norm(dim=-1) <= rho  # noqa: E731
    code = torch.full(x0.shape[:1], oc.OK, dtype=torch.int8, device=x0.device)
    when = torch.full(x0.shape[:1], steps, dtype=torch.int64, device=x0.device)
    y, done = x0, 0
    while done < steps:
        n = min(max(8, done), 64, steps - done)
        out = iterate(system, y, p, n, max_norm=torch.finfo(x0.dtype).max, region=region, code=code)
        when = torch.where((code == oc.OK) & (out.outcome != oc.OK), done + out.escape, when)
        y, code, done = out.final, out.outcome, done + n
        if not bool((code == oc.OK).any()):
            break
    left = code != oc.OK
    exit_pt = torch.where(left.unsqueeze(-1), GenericStepper(system, y, p, 1.0).step(y), x0)
    return left, when.to(x0.dtype), exit_pt


def passage(system, x: Tensor, p: Mapping[str, Tensor], *, rho_max: Tensor, factor: float, n_steps: int,
            max_map_steps: int) -> Passage:
    """Passage test and normal-form diagnostics for candidate ghosts ``x`` ``(K, d)``.

    The ball radius is ``rho = min(factor * sqrt(r / a), rho_max)`` (the bottleneck's own width times
    ``factor``). In the normal form ``u' = r + a u^2`` the time to cross the ball is
    ``2 atan(rho sqrt(a / r)) / sqrt(r a)`` (``time_nf_ball``), tending to ``pi / sqrt(r a)`` (``time_nf``).
    Flows: integrated forward and backward from ``x`` (RK4, ``n_steps`` per direction); maps: iterated from
    the entry point ``x - rho v`` until the orbit leaves the ball (at most ``max_map_steps``).
    """
    K, d = x.shape
    r, v, a = normal_form(system, x, p)
    shaped = a > 0
    ratio = torch.where(shaped, r / a.clamp(min=torch.finfo(x.dtype).tiny), torch.full_like(r, torch.inf))
    rho = torch.minimum(factor * ratio.sqrt(), rho_max.expand_as(r))
    sra = (r * a).clamp(min=torch.finfo(x.dtype).tiny).sqrt()
    t_nf = torch.where(shaped, math.pi / sra, torch.full_like(r, torch.nan))
    t_ball = torch.where(shaped, 2 * torch.atan(rho * (a / r).clamp(min=0).sqrt()) / sra, torch.full_like(r, torch.nan))
    if system.kind == "flow":
        est = torch.where(shaped, t_ball, 20 * rho / r.clamp(min=torch.finfo(x.dtype).tiny))
        H = (1.5 * est).clamp(min=1e-12, max=1e15)
        both = torch.cat([x, x])
        # per-state parameters are doubled with the states; one shared set (take's B = 1) broadcasts as is
        p2 = {k: torch.cat([val, val]) if val.shape[0] == K and K > 1 else val for k, val in p.items()}
        sign = torch.cat([torch.ones(K), -torch.ones(K)]).to(x.dtype)
        xs, vs, ins = rk4_path(system, both, p2, torch.cat([H, H]) * sign, n_steps)
        s, left = _exit_time(xs, vs, ins, torch.cat([x, x]), torch.cat([rho, rho]))
        t_meas = (s[:K] + s[K:]) * H
        passes = left[:K] & left[K:]
        n = xs.shape[0] - 1
        i = (s * n).floor().long().clamp(max=n)
        ends = xs.gather(0, i.view(1, -1, 1).expand(1, -1, d))[0]
        exit_pt, entry_pt = ends[:K], ends[K:]
    else:
        est = torch.where(shaped, t_ball, 20 * rho / r.clamp(min=torch.finfo(x.dtype).tiny))
        steps = int(min(max_map_steps, max(10, float((3 * est).nan_to_num(max_map_steps).max()) + 10)))
        entry_pt = x - rho.unsqueeze(-1) * v
        left, t_meas, exit_pt = _map_exit(system, entry_pt, p, x, rho, steps)
        passes = left & torch.isfinite(exit_pt).all(-1)
    g_in = system.residual(entry_pt, p).norm(dim=-1)
    g_out = system.residual(exit_pt, p).norm(dim=-1)
    linger = t_meas * torch.maximum(g_in, g_out) / (2 * rho)
    sign_change = _n_positive(system, entry_pt, p) != _n_positive(system, exit_pt, p)
    t_meas = torch.where(passes, t_meas, torch.full_like(t_meas, torch.nan))
    return Passage(a, rho, t_meas, t_nf, t_ball, linger, sign_change & passes, passes)

"""Training a batch of neural Koopman eigenfunctions (one per sweep element) as one tensor computation.

Loss of network ``b`` on a batch of states ``x_1..x_N`` (shared sampling box, per-network dynamics):

- flows, squashed eigen-equation ``grad psi . f / lambda = psi - psi^3`` (``lhs = Dpsi(x) f(x) / lambda`` by
  forward-mode propagation, ``rhs = psi - psi^3``);
- maps, its discrete counterpart ``psi(F(x)) = g_lambda(psi(x))`` with ``g_lambda(s) = lambda s / sqrt(1 + (lambda^2
  - 1) s^2)`` (``g_lambda`` is ``s -> lambda s`` conjugated by the squashing ``phi -> phi / sqrt(1 + phi^2)``, so
  ``psi = phi / sqrt(1 + phi^2)`` for an eigenfunction ``phi(F(x)) = lambda phi(x)``; ``|psi| < 1`` and the
  divergence of ``phi`` to infinity becomes ``psi -> +-1``);
- flows: both sides weighted by ``1 / (1 + |f(x) / scale|^2)`` (``scale``: half-widths of the sampling
  box), so the fast regions far from the separatrix do not dominate the slow ones near it; this does not bias the
  solution (an exact eigenfunction has zero residual at every weight) and cut the zero-set error on ``bistable_3d``
  from 0.13 to 0.015 (1000 steps, width 32);
- residual normalised by its value against shuffled samples (the trivial ``psi = const`` cannot win):
  ``mean_i (lhs_i - rhs_i)^2 / mean_i (lhs_i - rhs_{pi(i)})^2``;
- anchors: ``mean (psi(x_attr) - label)^2`` over final states of simulated samples, ``label = +-1`` on the two
  attractors (``psi = +-1`` exactly there for the squashed eigenfunction); selects which separatrix is learned
  when there are several, and excludes ``psi = +-1`` everywhere;
- optional sign term ``mean relu(-label psi(x0))^2`` on the simulated samples ``x0`` (see ``starts``);
- optional balance term ``|mean psi / std psi|`` (the reference code's; off by default: basins need not be equal).

Samples: uniform in the sampling box, points of the simulated trajectories, and (after ``refine_start`` of the
steps) points where ``|psi|`` is smallest among many candidates, so the last steps concentrate on the zero set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from dynlearn import outcome as oc
from dynlearn.optim import Adam
from dynlearn.progress import Meter
from dynlearn.stepper import GenericStepper, freeze

from .net import BatchedMLP

Tensor = torch.Tensor

__all__ = ["TrainConfig", "Curves", "train_psi", "squash_map", "eigen_lambda"]


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    learn_eigenvalue: bool
    anchor_weight: float
    balance_weight: float
    trajectory_fraction: float
    refine_fraction: float
    refine_start: float
    log_every: int
    map_steps: int = 1
    balance_sampling: bool = False
    sign_weight: float = 0.0
    n_anchor: int = 128


@dataclass
class Curves:
    step: list[int]
    loss: list[Tensor]
    residual: list[Tensor]
    anchor: list[Tensor]
    eigenvalue: list[Tensor]


def eigen_lambda(kind: str, raw: Tensor) -> Tensor:
    """Eigenvalue from its unconstrained parameter: ``exp(raw) > 0`` (flows), ``1 + exp(raw) > 1`` (maps)."""
    return raw.exp() if kind == "flow" else 1.0 + raw.exp()


def eigen_raw(kind: str, lam: float) -> float:
    return math.log(lam) if kind == "flow" else math.log(lam - 1.0)


def squash_map(s: Tensor, lam: Tensor) -> Tensor:
    """``g_lambda(s) = lambda s / sqrt(1 + (lambda^2 - 1) s^2)``."""
    return lam * s * torch.rsqrt(1.0 + (lam * lam - 1.0) * s * s)


def _uniform(n_networks: int, n: int, lo: Tensor, hi: Tensor, g: torch.Generator) -> Tensor:
    u = torch.rand(n_networks, n, lo.shape[0], generator=g, dtype=torch.float64).to(lo.dtype)
    return lo + (hi - lo) * u


def residual_terms(system, net: BatchedMLP, x: Tensor, p: Mapping[str, Tensor], lam: Tensor,
                   map_steps: int = 1, max_norm: float = 1e6) -> tuple[Tensor, Tensor, Tensor]:
    """``(lhs, rhs, psi)`` of the squashed eigen-equation at states ``x (B, N, d)``; ``lam (B,)``.

    Flows: ``lhs = Dpsi(x) f(x) / lambda``, ``rhs = psi - psi^3`` (``(B, N)``). Maps: for ``k = 1..map_steps``,
    ``lhs_k = psi(F^k(x))`` and ``rhs_k = g_{lambda^k}(psi(x))`` (``g_lambda`` composes as
    ``g_lambda o g_mu = g_{lambda mu}``), concatenated to ``(B, k N)``; images that left the ball of radius
    ``max_norm`` have diverged and count as ``psi = +1`` (the diverged class is ``+1``).
    """
    lam_ = lam.unsqueeze(-1)
    if system.kind == "flow":
        y = system.rhs(x, p).detach()
        ok = torch.isfinite(y).all(-1)
        y = torch.where(ok.unsqueeze(-1), y, torch.zeros_like(y))
        psi, dpsi = net.dual(x, y)
        lhs, rhs = dpsi / lam_, psi - psi**3
        lhs = torch.where(ok, lhs, rhs.detach())
        # speed weighting: both sides divided by 1 + |f / scale|^2, so fast regions far from the
        # separatrix do not drown the slow ones near it (an exact eigenfunction still has zero residual)
        speed2 = ((y / net.scale) ** 2).sum(-1)
        w = 1.0 / (1.0 + speed2)
        lhs, rhs = lhs * w, rhs * w
        return lhs, rhs, psi
    # maps: F^k(x) by the core stepper's step; an image that escapes stays where it left (the one divergence rule)
    step = GenericStepper(system, x, p, 1.0).step
    code = torch.zeros(x.shape[:-1], dtype=torch.int8, device=x.device)
    ys, escaped, y = [], [], x
    with torch.no_grad():
        for _ in range(map_steps):
            y, code, _ = freeze(y, step(y), code, max_norm)
            ys.append(y)
            escaped.append(code != oc.OK)
    N = x.shape[1]
    out = net(torch.cat([x, *ys], dim=1))
    psi = out[:, :N]
    B = x.shape[0]              # one where over the k images (cheaper than one per image, same values)
    lhs = torch.where(torch.stack(escaped, 1), 1.0, out[:, N:].view(B, map_steps, N)).reshape(B, map_steps * N)
    rhs = torch.cat([squash_map(psi, lam_ ** (k + 1)) for k in range(map_steps)], dim=1)
    return lhs, rhs, psi


def train_psi(system, p: Mapping[str, Tensor], net: BatchedMLP, raw_lam: Tensor, *, lo: Tensor, hi: Tensor,
              pool: Tensor, anchors: Tensor, labels: Tensor, active: Tensor, cfg: TrainConfig,
              generator: torch.Generator, meter: Meter | None = None, start: int = 0, stop: int | None = None,
              opt_state: dict[str, Tensor] | None = None,
              starts: Tensor | None = None) -> tuple[BatchedMLP, Tensor, Curves, dict[str, Tensor]]:
    """Train ``net`` (``B`` networks) in place; returns the trained net, the raw eigenvalue parameter, curves.

    Parameters
    ----------
    p
        Parameters with batch shape ``(B, 1)`` (broadcasting against ``(B, N, d)`` states), in the net's dtype.
    lo, hi
        Sampling box ``(d,)``.
    pool
        ``(B, P, d)`` trajectory states to draw samples from (``P`` may be 0).
    anchors, labels
        ``(B, n, d)`` final states and their labels ``(B, n)`` in ``{-1, 0, 1}``.
    active
        ``(B,)`` bool: networks that have two classes (the others train without anchors; their result is
        reported as ``single_attractor``).
    starts
        ``(B, n, d)`` initial states of the simulated samples (labels ``labels``): with ``cfg.sign_weight > 0``,
        the term ``mean relu(-label psi(x0))^2`` penalises only samples on the wrong side of psi's zero set (zero
        for any eigenfunction whose sign matches the simulated basins: no bias, but it rules out the spurious
        sign-definite solutions that many stable directions allow in high dimension).
    start, stop, opt_state
        Run steps ``start .. stop - 1`` of the ``cfg.steps``-step schedule, continuing from an optimizer state
        (successive halving over eigenvalue candidates trains in two such pieces). Returns the state too.
    """
    B = net.n_networks
    dtype = net.dtype
    N = cfg.batch_size
    n_traj = int(round(cfg.trajectory_fraction * N)) if pool.shape[1] else 0
    n_ref = int(round(cfg.refine_fraction * N))
    learn_lam = cfg.learn_eigenvalue
    theta = {k: v.detach().clone() for k, v in net.params.items()}
    theta["raw_eigenvalue"] = raw_lam.detach().clone().to(dtype)
    opt = Adam()
    state = opt.init(theta) if opt_state is None else opt_state
    stop = cfg.steps if stop is None else stop
    lab_f = labels.to(dtype)
    lab_mask = ((labels != 0) & active.unsqueeze(1)).to(dtype)
    n_anchor = min(anchors.shape[1], cfg.n_anchor)
    refine_from = int(cfg.refine_start * cfg.steps)
    refine: Tensor | None = _near_zero(net, B, n_ref, lo, hi, generator) if n_ref and start > refine_from else None
    curves = Curves([], [], [], [], [])
    for k in range(start, stop):
        leaves = {key: v.detach().requires_grad_(key != "raw_eigenvalue" or learn_lam) for key, v in theta.items()}
        net.params = {key: v for key, v in leaves.items() if key != "raw_eigenvalue"}
        raw = leaves["raw_eigenvalue"]
        n_uni = N - n_traj - (n_ref if refine is not None else 0)
        parts = [_balanced(net, B, n_uni, lo, hi, generator) if cfg.balance_sampling and k > 0
                 else _uniform(B, n_uni, lo, hi, generator)]
        if n_traj:
            idx = torch.randint(pool.shape[1], (B, n_traj), generator=generator)
            parts.append(pool.gather(1, idx.unsqueeze(-1).expand(B, n_traj, pool.shape[-1])))
        if refine is not None:
            parts.append(refine)
        x = torch.cat(parts, dim=1)
        lam = eigen_lambda(system.kind, raw)
        lhs, rhs, psi = residual_terms(system, net, x, p, lam, cfg.map_steps)
        perm = torch.randperm(lhs.shape[1], generator=generator)
        num = ((lhs - rhs) ** 2).mean(1)
        den = ((lhs - rhs[:, perm]) ** 2).mean(1).clamp_min(1e-12)
        res = num / den
        loss = res
        anchor = torch.zeros_like(res)
        if cfg.anchor_weight > 0:
            j = torch.randint(anchors.shape[1], (n_anchor,), generator=generator)
            m = lab_mask[:, j]
            pa = net(anchors[:, j])
            anchor = (m * (pa - lab_f[:, j]) ** 2).sum(1) / m.sum(1).clamp_min(1.0)
            if cfg.sign_weight > 0 and starts is not None:
                wrong = torch.relu(-lab_f[:, j] * net(starts[:, j])) ** 2
                anchor = anchor + cfg.sign_weight * (m * wrong).sum(1) / m.sum(1).clamp_min(1.0)
            loss = loss + cfg.anchor_weight * anchor
        if cfg.balance_weight > 0:
            loss = loss + cfg.balance_weight * (psi.mean(1) / psi.std(1).clamp_min(1e-6)).abs()
        names = [key for key, v in leaves.items() if v.requires_grad]
        grads = torch.autograd.grad(torch.where(torch.isfinite(loss), loss, 0.0).sum(), [leaves[n] for n in names])
        grads = {n: gr.nan_to_num(0.0, 0.0, 0.0) for n, gr in zip(names, grads)}
        if not learn_lam:
            grads["raw_eigenvalue"] = torch.zeros_like(theta["raw_eigenvalue"])
        lr = torch.full((B,), cfg.lr * _cosine(k, cfg.steps), dtype=dtype)
        theta, state = opt.step({key: v.detach() for key, v in leaves.items()}, grads, lr, state, None)
        net.params = {key: v for key, v in theta.items() if key != "raw_eigenvalue"}
        if k >= refine_from and n_ref and (refine is None or k % 25 == 0):
            refine = _near_zero(net, B, n_ref, lo, hi, generator)
        if k % cfg.log_every == 0 or k == cfg.steps - 1:
            curves.step.append(k)
            curves.loss.append(loss.detach().clone())
            curves.residual.append(res.detach().clone())
            curves.anchor.append(anchor.detach().clone())
            curves.eigenvalue.append(eigen_lambda(system.kind, theta["raw_eigenvalue"].detach()).expand(B).clone())
            if meter is not None:
                meter.set(loss=f"{float(loss.detach().mean()):.3g}")
        if meter is not None:
            meter.update()
    net.params = {key: v.detach() for key, v in theta.items() if key != "raw_eigenvalue"}
    return net, theta["raw_eigenvalue"].detach(), curves, state


def _cosine(k: int, steps: int) -> float:
    """Learning-rate factor: cosine decay from 1 to 0.02 over ``steps``."""
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(k, steps) / max(steps, 1)))


def _balanced(net: BatchedMLP, B: int, n: int, lo: Tensor, hi: Tensor, g: torch.Generator, factor: int = 4) -> Tensor:
    """``n`` uniform states per network, drawn so that both signs of ``psi`` are equally represented."""
    with torch.no_grad():
        cand = _uniform(B, factor * n, lo, hi, g)
        pos = net(cand) >= 0
        n_pos = pos.sum(1, keepdim=True).clamp_min(1)
        n_neg = (~pos).sum(1, keepdim=True).clamp_min(1)
        w = torch.where(pos, 1.0 / n_pos, 1.0 / n_neg).to(torch.float64)
        idx = torch.multinomial(w, n, replacement=False, generator=g)
        return cand.gather(1, idx.unsqueeze(-1).expand(B, n, cand.shape[-1]))


def _near_zero(net: BatchedMLP, B: int, n: int, lo: Tensor, hi: Tensor, g: torch.Generator, factor: int = 8) -> Tensor:
    """``n`` states per network with the smallest ``|psi|`` among ``factor * n`` uniform candidates, jittered."""
    with torch.no_grad():
        cand = _uniform(B, factor * n, lo, hi, g)
        val = net(cand).abs()
        idx = val.topk(n, dim=1, largest=False).indices
        pts = cand.gather(1, idx.unsqueeze(-1).expand(B, n, cand.shape[-1]))
        jitter = torch.randn(pts.shape, generator=g, dtype=torch.float64).to(pts.dtype) * (0.01 * (hi - lo))
        return torch.minimum(torch.maximum(pts + jitter, lo), hi)

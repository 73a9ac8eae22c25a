r"""Predictor-corrector continuation of tracked points to the next step (private helper of the bifurcation analyzer).

A point found at step ``k`` (its track's last node) is carried to step ``k'`` (the step being matched) along the
straight path of parameters :math:`p(s) = p_k + s\,(p_{k'} - p_k)`, ``s = 1/n, 2/n, ..., 1`` (``n = substeps``),
all points of all lines at once (one batched solve per Newton iteration; no loop over points):

- predictor: the secant through the track's two last positions (its previous node, then the substeps), in the
  units of the ordered coordinate; the last position alone for a track's first continuation;
- corrector: ``newton_steps`` Newton iterations on the fixed-point residual :math:`g` (``f`` for flows,
  ``F(x) - x`` for maps, Jacobian from ``system.jacobian``), or, for slow points and ghosts, on
  :math:`\nabla q = J^\top g` (Hessian of :math:`q = \lVert g\rVert^2/2` by autograd), so that a ghost is followed
  as the minimum of the speed it is.

A point that one direct Newton continuation (``s = 1``) moves by less than 1% of the box (:data:`SHORT`) is
taken as it is (checkpoints close together); the others go along the substeps.

A substep *converges* when the residual (``|g|``, resp. ``|grad q|``) is below ``tol`` times the step's typical
speed. A point whose Newton iterations do not converge (a singular Jacobian, a step leaving the box by more than a
box width, a slow point that falls onto a fixed point) is *lost* at that substep: the evidence of a fold between
the two steps (``lost_at``: the coordinate halfway between its last converged substep and the failed one). Two
tracks of a line whose continuations converge onto the same point have *collided* (:func:`collisions`): the one
that moved farther jumped onto the other's branch (a pair annihilated into a pitchfork's centre, or the two
branches of a transcritical at their crossing) and is lost too. The matcher compares the continued positions
(the last converged ones for a lost point) with the points found at ``k'``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dynlearn.system import System

#: continuation status of a node (its track's next continuation); CF flags
STATUS = ("not_continued", "converged", "lost", "became_fixed", "collided")

#: a point continued in one step by less than this many box widths needs no substeps
SHORT = 0.01


@dataclass
class Continued:
    """Continuation of ``n`` points: final (last converged) position ``(n, d)``, ``status`` codes (see
    :data:`STATUS`), ``lost_at`` (coordinate, NaN unless lost)."""

    position: np.ndarray
    status: np.ndarray
    lost_at: np.ndarray


def _interp(ends: dict[str, tuple[torch.Tensor, torch.Tensor]], s: float) -> dict[str, torch.Tensor]:
    """Parameters at ``p(s) = a + s (b - a)`` from their end values ``{name: (a, b)}``."""
    return {name: a + s * (b - a) if a.is_floating_point() else (a if s < 1 else b) for name, (a, b) in ends.items()}


def _fixed_step(system: System, x: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Newton step for ``g(x) = 0`` and ``|g|`` (twice: the residual and the speed) at ``x``."""
    g = system.residual(x, p)
    J = system.jacobian(x, p)
    if system.kind == "map":
        J = J - torch.eye(x.shape[-1], dtype=x.dtype)
    dx = torch.linalg.solve_ex(J, -g)[0]
    r = g.norm(dim=-1)
    return dx, r, r


def _slow_step(system: System, x: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton step for ``grad q = 0``, ``|grad q|`` and ``|g|`` at ``x``."""
    d = x.shape[-1]
    with torch.enable_grad():
        rows = x.detach().unsqueeze(-2).expand(*x.shape[:-1], d, d).clone().requires_grad_(True)
        g = system.residual(rows, system.expand_params(p))
        q = 0.5 * (g * g).sum(-1)
        (gq,) = torch.autograd.grad(q.sum(), rows, create_graph=True)
        (H,) = torch.autograd.grad(gq.diagonal(dim1=-2, dim2=-1).sum(), rows)
    grad = gq.detach()[..., 0, :]
    dx = torch.linalg.solve_ex(H, -grad)[0]
    return dx, grad.norm(dim=-1), g.detach()[..., 0, :].norm(dim=-1)


def continue_points(system: System, params: dict[str, torch.Tensor], coord: np.ndarray, line: np.ndarray,
                    k_from: np.ndarray, k_to: int, x: np.ndarray, x_prev: np.ndarray, k_prev: np.ndarray,
                    slow: np.ndarray, typical: np.ndarray, box: tuple[np.ndarray, np.ndarray], *, substeps: int,
                    newton_steps: int, tol: float) -> Continued:
    """Continue points ``x`` ``(n, d)`` of lines ``line`` found at steps ``k_from`` to step ``k_to``.

    ``params``: ``{name: (L, K, *event)}`` tensors; ``x_prev``/``k_prev``: each track's node before (NaN / -1:
    none), for the secant predictor; ``slow``: ``(n,)`` bool, follow a minimum of the speed instead of a root;
    ``typical``: ``(L, K)`` typical speeds (the convergence scale); ``box``: the search box (low, high).
    """
    n = x.shape[0]
    position = np.array(x, dtype=float)
    status = np.full(n, STATUS.index("converged"), dtype=np.int8)
    lost_at = np.full(n, np.nan)
    typ = typical[line, k_to]
    scale = np.where(np.isfinite(typ) & (typ > 0), typ, 1.0)
    width = float(np.mean(np.asarray(box[1]) - np.asarray(box[0])))
    t_prev = np.where(k_prev >= 0, coord[np.maximum(k_prev, 0)], np.nan)
    for is_slow in (False, True):  # the two kinds of points, each one batch
        idx = np.nonzero(slow == is_slow)[0]
        if not len(idx):
            continue
        li, k0 = torch.as_tensor(line[idx]), torch.as_tensor(k_from[idx])
        k1 = torch.full_like(k0, k_to)
        ends = {name: (v[li, k0], v[li, k1]) for name, v in params.items()}
        # |g| for roots; |grad q| = |J^T g| ~ speed^2 / length for minima of the speed
        tol_res = torch.as_tensor(tol * scale[idx] ** 2 / width if is_slow else tol * scale[idx])
        tol_fixed = torch.as_tensor(tol * scale[idx])
        args = (torch.as_tensor(coord[k_from[idx]], dtype=torch.float64), float(coord[k_to]),
                torch.as_tensor(position[idx]), torch.as_tensor(x_prev[idx], dtype=torch.float64),
                torch.as_tensor(t_prev[idx], dtype=torch.float64))
        # one direct step first: a point that converges within SHORT box widths of where it was is taken (close
        # checkpoints: most points of a training run); the others are retried along the substeps
        y, st, la = _continue_batch(system, ends, *args, is_slow, tol_res, tol_fixed, box, substeps=1,
                                    newton_steps=newton_steps)
        short = (st == STATUS.index("converged")) & (np.linalg.norm(y - position[idx], axis=-1) <= SHORT * width)
        if substeps > 1 and not short.all():
            again = torch.as_tensor(np.nonzero(~short)[0])
            sub = {k: (a[again], b[again]) for k, (a, b) in ends.items()}
            y[~short], st[~short], la[~short] = _continue_batch(
                system, sub, *(a[again] for a in args[:1]), args[1], *(a[again] for a in args[2:]), is_slow,
                tol_res[again], tol_fixed[again], box, substeps=substeps, newton_steps=newton_steps)
        position[idx], status[idx], lost_at[idx] = y, st, la
    return Continued(position, status, lost_at)


def _continue_batch(system: System, ends: dict[str, tuple[torch.Tensor, torch.Tensor]], t0: torch.Tensor, t1: float,
                    cur: torch.Tensor, prev: torch.Tensor, tp: torch.Tensor, is_slow: bool, tol_res: torch.Tensor,
                    tol_fixed: torch.Tensor, box: tuple[np.ndarray, np.ndarray], *, substeps: int,
                    newton_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continue one kind of point (roots, or minima of the speed if ``is_slow``) along ``substeps`` substeps:
    final positions, status codes and ``lost_at``."""
    n = cur.shape[0]
    lo, hi = (torch.as_tensor(b, dtype=torch.float64) for b in box)
    width = hi - lo
    t_cur = t0.clone()
    alive = torch.ones(n, dtype=torch.bool)
    status = torch.full((n,), STATUS.index("converged"), dtype=torch.int8)
    lost_at = torch.full((n,), np.nan, dtype=torch.float64)
    step = _slow_step if is_slow else _fixed_step
    for j in range(1, substeps + 1):
        t_new = t0 + (j / substeps) * (t1 - t0)
        p = _interp(ends, j / substeps)
        ratio = (t_new - t_cur) / (t_cur - tp)  # secant predictor, in coordinate units
        secant = torch.isfinite(ratio) & torch.isfinite(prev).all(-1)
        y = torch.where(secant[:, None], cur + (cur - prev) * ratio[:, None], cur)
        todo = alive.clone()
        res = torch.full((n,), torch.inf, dtype=torch.float64)
        speed = res.clone()
        for it in range(newton_steps + 1):
            ids = torch.nonzero(todo)[:, 0]
            dx, r, sp = step(system, y[ids], {k: v[ids] for k, v in p.items()})
            res[ids], speed[ids] = r, sp
            done = r <= tol_res[ids]
            todo[ids] = ~done
            if it == newton_steps or not todo.any():
                break
            move = ids[~done]
            y[move] = y[move] + torch.nan_to_num(dx[~done], nan=torch.inf)
        inside = ((y >= lo - width) & (y <= hi + width)).all(-1)
        ok = (res <= tol_res) & inside
        became_fixed = ok & (speed <= tol_fixed) if is_slow else torch.zeros_like(ok)
        fail = alive & (~ok | became_fixed)
        lost_at = torch.where(fail, 0.5 * (t_cur + t_new), lost_at)
        code = torch.where(became_fixed, STATUS.index("became_fixed"), STATUS.index("lost")).to(torch.int8)
        status = torch.where(fail, code, status)
        alive = alive & ~fail
        prev = torch.where(alive[:, None], cur, prev)
        tp = torch.where(alive, t_cur, tp)
        cur = torch.where(alive[:, None], y, cur)
        t_cur = torch.where(alive, t_new, t_cur)
        if not alive.any():
            break
    return cur.numpy(), status.numpy(), lost_at.numpy()


def collisions(position: np.ndarray, converged: np.ndarray, moved: np.ndarray, tol: float) -> np.ndarray:
    """Which continued points ``(L, T, d)`` (``converged`` ``(L, T)``) landed within ``tol`` of another converged
    point of their line that moved less (``moved`` ``(L, T)``; ties: the lower slot keeps it): ``(L, T)`` bool."""
    x = np.where(converged[..., None], position, 0.0)
    sq = (x * x).sum(-1)
    d2 = sq[:, :, None] + sq[:, None, :] - 2 * np.einsum("ltd,lsd->lts", x, x)  # Gram: candidates only
    both = converged[:, :, None] & converged[:, None, :]
    li, i, j = np.nonzero(both & (d2 <= (100 * tol) ** 2 + 1e-12 * (sq[:, :, None] + sq[:, None, :])))
    keep = (i != j) & (np.linalg.norm(position[li, i] - position[li, j], axis=-1) <= tol)
    li, i, j = li[keep], i[keep], j[keep]
    beaten = (moved[li, j] < moved[li, i]) | ((moved[li, j] == moved[li, i]) & (j < i))
    out = np.zeros(converged.shape, dtype=bool)
    out[li[beaten], i[beaten]] = True
    return out

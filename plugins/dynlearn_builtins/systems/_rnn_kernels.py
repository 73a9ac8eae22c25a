"""Hand-written forward + backward pass of batched low-rank RNNs on the delayed-activation task.

Private helper of :mod:`dynlearn_builtins.systems.rnn`. One call evaluates ``B`` networks at once and returns
their losses, exact gradients (back-propagation through time written out by hand) and training accuracies.

The network (``S`` Euler steps, ``Delta = dt / tau``)::

    x[t+1] = (1 - Delta) x[t] + Delta tanh(W x[t] + b),    W = M Nm   (M: N x K, Nm: K x N)

is never simulated in ``R^N``: every quantity the loss needs is a projection ``z = P x`` with ``P = Nm`` (latent
readout) or ``P = [Nm; w_out]`` (linear readout), and ``z`` obeys the exact recursion

    z[t+1] = (1 - Delta) z[t] + Delta P tanh(M kappa[t] + b),      kappa = first K components of z.

Two rewrites make it cheap on a CPU (measured: torch's float32 ``tanh`` is ~4x slower than ``sigmoid``):

- ``tanh(a) = 2 sigmoid(2a) - 1``, so each step evaluates one ``sigmoid``; ``u = sigmoid(2a)`` is kept for the
  backward pass (``1 - tanh^2 = 4 u (1 - u)``);
- the shifted latent ``zh = z + P 1`` absorbs the ``-1``: ``zh[t+1] = (1 - Delta) zh[t] + 2 Delta P u[t]`` and
  ``2 a[t] = (2 b - 2 M r) + 2 M zh[t]`` with ``r = (P 1)[:K]``; so one step is three tensor operations.

Backward (adjoint ``g[t] = dL/dz[t]``, ``d[t]`` the direct term of the output at step ``t``)::

    g[t] = d[t] + (1 - Delta) g[t+1] + E_K M^T (s[t] * P^T g[t+1]),     s[t] = Delta (1 - h[t]^2)
    dL/dP = Delta sum_t g[t+1] h[t]^T + g[0] x(0)^T,   dL/dM = sum_t da[t] kappa[t]^T,   dL/db = sum_t da[t]

with ``da[t] = s[t] * P^T g[t+1]``. For the rank-one latent readout (the paper's model) the adjoint is a scalar
per network: ``g[t] = d[t] + A[t] g[t+1]`` with ``A[t] = 1 - Delta + sum_n m_n s[t]_n n_n`` computed for all steps
at once, and the time sums become batched matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor

__all__ = ["Spec", "rank_one_latent", "general", "outputs"]


@dataclass(frozen=True)
class Spec:
    """Constants of one evaluation: steps, Euler factor, initial state, readout, loss weights and targets."""

    steps: int
    delta: float
    x0: float
    kappa_star: float
    linear: bool
    norm: float
    weights: Tensor  # (S+1,) quadrature weights / norm applied outside
    target: Tensor  # (S+1,)


def _readout_terms(v: Tensor, c: Tensor | None, b_out: Tensor | None, spec: Spec):
    """Outputs, per-network loss, direct adjoint ``d`` (S+1, B), accuracy, and dL/db_out from readout values
    ``v`` (S+1, B): ``kappa_0`` (latent) or ``w_out . x`` (linear)."""
    if spec.linear:
        o = torch.sigmoid(v + b_out)
        scale = None
    else:
        o = torch.sigmoid((v - spec.kappa_star) * c)
        scale = c
    w = spec.weights[:, None]
    y = spec.target[:, None]
    err = o - y
    werr = w * err
    loss = (werr * err).sum(0) / spec.norm
    d = werr * o * (1 - o) * (2.0 / spec.norm)
    db_out = d.sum(0) if spec.linear else None
    if scale is not None:
        d = d * scale
    # accuracy over the S outputs the network produces (t = dt .. 2T), see LowRankRNN.accuracy
    acc = ((o[1:] > 0.5) == (y[1:] > 0.5)).to(o.dtype).mean(0)
    return o, loss, d, acc, db_out


def rank_one_latent(m: Tensor, n: Tensor, b: Tensor, c: Tensor, spec: Spec, *, grad: bool = True):
    """Rank-one network, latent readout ``sigmoid(c (kappa - kappa*))``. ``m, n, b``: ``(B, N)``; ``c``: ``(B,)``.

    Returns ``(loss, {"m", "n", "b"} or None, accuracy, kappa)`` with ``kappa`` of shape ``(S+1, B)``.
    """
    B, N = m.shape
    S, D = spec.steps, spec.delta
    dt = m.dtype
    r = n.sum(-1)  # n . 1
    m2 = 2.0 * m
    bh = torch.addcmul(2.0 * b, m2, r[:, None], value=-1.0)
    n2 = (2.0 * D) * n
    U = torch.empty(B, S, N, dtype=dt, device=m.device)
    KH = torch.empty(S + 1, B, dtype=dt, device=m.device)
    torch.mul(r, spec.x0 + 1.0, out=KH[0])
    Us, KHs, KHc = U.unbind(1), KH.unbind(0), KH.unsqueeze(-1).unbind(0)
    pre = torch.empty(B, N, dtype=dt, device=m.device)
    tmp = torch.empty(B, dtype=dt, device=m.device)
    keep = 1.0 - D
    for t in range(S):
        torch.addcmul(bh, m2, KHc[t], out=pre)
        torch.sigmoid(pre, out=Us[t])
        torch.linalg.vecdot(n2, Us[t], out=tmp)
        torch.add(tmp, KHs[t], alpha=keep, out=KHs[t + 1])
    kap = KH - r
    _, loss, d, acc, _ = _readout_terms(kap, c, None, spec)
    if not grad:
        return loss, None, acc, kap
    V = torch.addcmul(U, U, U, value=-1.0)  # u (1 - u) = (1 - h^2) / 4
    A = (V * ((4.0 * D) * m * n)[:, None, :]).sum(-1).T.add_(keep)  # (S, B)
    G = torch.empty(S + 1, B, dtype=dt, device=m.device)
    G[S] = d[S]
    Gs, ds, As = G.unbind(0), d.unbind(0), A.unbind(0)
    for t in range(S - 1, -1, -1):
        torch.addcmul(ds[t], As[t], Gs[t + 1], out=Gs[t])
    g1 = G[1:]
    L = torch.stack([g1 * kap[:-1], g1], 0).permute(2, 0, 1).contiguous()  # (B, 2, S)
    R = torch.bmm(L, V)  # (B, 2, N)
    coef = (4.0 * D) * n
    dm = coef * R[:, 0]
    db = coef * R[:, 1]
    dn = torch.bmm(L[:, 1:], U)[:, 0].mul_(2.0 * D)
    dn += (spec.x0 * G[0] - D * g1.sum(0)).unsqueeze(-1)
    return loss, {"m": dm, "n": dn, "b": db}, acc, kap


def _lags(S: int, device) -> Tensor:
    i = torch.arange(S + 1, device=device)
    return i[:, None] - i[None, :]


def _decay(expo: Tensor, keep: float, dtype) -> Tensor:
    """``keep ** expo`` where ``expo >= 0``, 0 elsewhere."""
    return torch.where(expo >= 0, keep ** expo.clamp(min=0).to(dtype), torch.zeros((), dtype=dtype, device=expo.device))


def general(m: Tensor, n: Tensor, b: Tensor, w_out: Tensor | None, b_out: Tensor | None, mask: Tensor,
            c: Tensor, spec: Spec, *, grad: bool = True):
    """Rank-``K`` networks (``K`` = ``m.shape[-1]``), components ``k >= rank`` masked out by ``mask`` ``(B, K)``.

    ``m``: ``(B, N, K)``, ``n``: ``(B, K, N)``, ``b``: ``(B, N)``, ``w_out``: ``(B, N)`` and ``b_out``: ``(B,)``
    for the linear readout. Returns ``(loss, grads or None, accuracy, z)`` with ``z`` of shape ``(S+1, B, K')``
    (``K' = K`` latent, ``K + 1`` linear readout: last component ``y = w_out . x``).

    Vectors are rows ``(B, 1, .)`` and every per-step tensor is a fresh contiguous one, so each matrix-vector
    product is a single batched ``(1 x k) @ (k x n)`` GEMM (strided outputs make torch loop over the batch). The
    readout ``y`` has no feedback: its adjoint is a scalar recursion solved for all steps at once.
    """
    B, N, K = m.shape
    S, D = spec.steps, spec.delta
    dt, dev = m.dtype, m.device
    keep = 1.0 - D
    me = m * mask[:, None, :]  # (B, N, K)
    ne = n * mask[:, :, None]  # (B, K, N)
    rk = ne.sum(-1)  # (B, K) = N 1
    m2T = (2.0 * me).transpose(1, 2).contiguous()  # (B, K, N)
    bh = torch.baddbmm(2.0 * b[:, None, :], rk[:, None, :], m2T, alpha=-1.0)  # 2b - 2 M r: (B, 1, N)
    n2T = ((2.0 * D) * ne).transpose(1, 2).contiguous()  # (B, N, K)
    kh = (rk * (spec.x0 + 1.0))[:, None, :]  # shifted latent kappa + N 1, (B, 1, K)
    khs, us = [kh], []
    for _ in range(S):
        u = torch.sigmoid(torch.baddbmm(bh, kh, m2T))  # (B, 1, N)
        kh = torch.baddbmm(kh, u, n2T, beta=keep)
        us.append(u)
        khs.append(kh)
    U = torch.cat(us, 1)  # (B, S, N)
    kap = torch.cat(khs, 1) - rk[:, None, :]  # (B, S+1, K)
    if spec.linear:
        ry = w_out.sum(-1)  # w_out . 1
        # y[t] = w_out . x[t]: y[t+1] = (1 - D) y[t] + D w_out . (2 u[t] - 1), all steps at once
        drive = torch.bmm(U, (2.0 * D) * w_out[:, :, None])[..., 0] - D * ry[:, None]  # (B, S)
        lag = _lags(S, dev)  # lag[t, s] = t - s
        y0 = spec.x0 * ry
        decay = _decay(lag[1:, :-1] - 1, keep, dt)  # keep^(t-1-s) for s < t: (S, S)
        powers = keep ** torch.arange(S + 1, dtype=dt, device=dev)
        y = torch.cat([y0[:, None], y0[:, None] * powers[None, 1:] + drive @ decay.T], 1)  # (B, S+1)
        v = y
    else:
        v = kap[:, :, 0]
    _, loss, d, acc, db_out = _readout_terms(v.T, c, b_out, spec)
    z = torch.cat([kap, y[:, :, None]], 2) if spec.linear else kap
    zt = z.transpose(0, 1)
    if not grad:
        return loss, None, acc, zt
    S4 = torch.addcmul(U, U, U, value=-1.0).mul_(4.0 * D)  # Delta (1 - h^2), (B, S, N)
    dT = d.T  # (B, S+1)
    if spec.linear:
        # adjoint of y: gy[t] = d[t] + (1 - D) gy[t+1]
        gy = dT @ _decay(lag, keep, dt)  # gy[t] = sum_{s>=t} keep^(s-t) d[s]
        feed = gy[:, 1:, None] * w_out[:, None, :]  # w_out gy[t+1], (B, S, N)
        dk = torch.zeros(B, S + 1, K, dtype=dt, device=dev)
    else:
        feed = None
        dk = torch.zeros(B, S + 1, K, dtype=dt, device=dev)
        dk[:, :, 0] = dT
    g = dk[:, S:S + 1]  # (B, 1, K)
    gs, das = [g], []
    for t in range(S - 1, -1, -1):
        if feed is None:
            vt = torch.bmm(g, ne)
        else:
            vt = torch.baddbmm(feed[:, t:t + 1], g, ne)
        da = S4[:, t:t + 1] * vt  # dL/da[t], (B, 1, N)
        g = torch.baddbmm(torch.add(dk[:, t:t + 1], g, alpha=keep), da, me)
        gs.append(g)
        das.append(da)
    G = torch.cat(gs[::-1], 1)  # (B, S+1, K): dL/dkappa[t]
    DA = torch.cat(das[::-1], 1)  # (B, S, N)
    g1 = G[:, 1:]
    dn = torch.bmm(g1.transpose(1, 2).contiguous(), U).mul_(2.0 * D)  # (B, K, N)
    dn += (spec.x0 * G[:, 0] - D * g1.sum(1)).unsqueeze(-1)
    dmT = torch.bmm(kap[:, :S].transpose(1, 2).contiguous(), DA)  # (B, K, N)
    grads = {"m": dmT.transpose(1, 2) * mask[:, None, :], "n": dn * mask[:, :, None], "b": DA.sum(1)}
    if spec.linear:
        gy1 = gy[:, 1:]
        grads["w_out"] = (torch.bmm(gy1[:, None, :], U)[:, 0].mul_(2.0 * D)
                          + (spec.x0 * gy[:, 0] - D * gy1.sum(1)).unsqueeze(-1))
        grads["b_out"] = db_out
    return loss, grads, acc, zt


def outputs(v: Tensor, c: Tensor | None, b_out: Tensor | None, spec: Spec) -> Tensor:
    """Outputs ``(S+1, B)`` from readout values ``v`` (``kappa_0`` or ``w_out . x``)."""
    return _readout_terms(v, c, b_out, spec)[0]

"""A batch of small tanh MLPs ``psi_b : R^d -> R`` (one per sweep element), trained as one tensor computation.

Weights are stacked along a leading network dim ``B``: layer ``k`` holds ``W_k (B, out, in)`` and
``b_k (B, out)``. States enter through a fixed affine normalisation to the system's sampling box (and, for maps,
a compactification ``z -> z / sqrt(1 + |z|^2 / r^2)`` that sends infinity to the sphere of radius ``r``, so
diverged states keep finite, meaningful inputs).

Besides the plain forward pass, :meth:`BatchedMLP.dual` propagates a tangent vector ``v`` through the network
(forward-mode differentiation by hand: ``da = W dh``, ``dh' = (1 - h'^2) da``), returning ``(psi(x), Dpsi(x) v)``
in one pass. It equals ``torch.func.jvp(psi, (x,), (v,))`` exactly (checked in the tests) and is 1.1-2.7x cheaper
on CPU; :func:`jvp_reference` is the ``torch.func.jvp`` version.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

__all__ = ["BatchedMLP", "jvp_reference"]


class BatchedMLP:
    """``B`` independent MLPs ``d -> width (x depth, tanh) -> 1`` with shared input normalisation.

    Parameters
    ----------
    params
        ``{"W0", "b0", ..., "Wk", "bk"}`` with leading dim ``B`` (the last layer has ``out = 1``).
    center, scale
        Input normalisation ``z = (x - center) / scale`` (shape ``(d,)``).
    compact_radius
        ``None``, or ``r``: compactify ``z -> z / sqrt(1 + |z|^2 / r^2)`` (maps that can diverge).
    """

    def __init__(self, params: dict[str, Tensor], center: Tensor, scale: Tensor, compact_radius: float | None):
        self.params = params
        self.center = center
        self.scale = scale
        self.compact_radius = compact_radius

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def init(cls, n_networks: int, dim: int, width: int, depth: int, center: Tensor, scale: Tensor,
             compact_radius: float | None, generator: torch.Generator, dtype: torch.dtype) -> "BatchedMLP":
        """Random initialisation (normal, variance ``1/fan_in``; small output layer), from ``generator``."""
        sizes = [dim] + [width] * depth + [1]
        params = {}
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            gain = 1.0 if k < depth else 0.5
            w = torch.randn(n_networks, n_out, n_in, generator=generator, dtype=torch.float64) * (gain / math.sqrt(n_in))
            b = torch.randn(n_networks, n_out, generator=generator, dtype=torch.float64) * (0.5 if k == 0 else 0.0)
            params[f"W{k}"] = w.to(dtype)
            params[f"b{k}"] = b.to(dtype)
        return cls(params, center.to(dtype), scale.to(dtype), compact_radius)

    @property
    def n_layers(self) -> int:
        return len(self.params) // 2

    @property
    def n_networks(self) -> int:
        return int(self.params["W0"].shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.params["W0"].dtype

    def to(self, dtype: torch.dtype) -> "BatchedMLP":
        return BatchedMLP({k: v.detach().to(dtype) for k, v in self.params.items()}, self.center.to(dtype),
                          self.scale.to(dtype), self.compact_radius)

    def detach(self) -> "BatchedMLP":
        return BatchedMLP({k: v.detach().clone() for k, v in self.params.items()}, self.center, self.scale,
                          self.compact_radius)

    def select(self, index: Tensor | slice) -> "BatchedMLP":
        """The networks at ``index`` (along the network dim)."""
        return BatchedMLP({k: v[index] for k, v in self.params.items()}, self.center, self.scale, self.compact_radius)

    # -- evaluation --------------------------------------------------------------------------------------------
    def _normalise(self, x: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        z = (x - self.center) / self.scale
        dz = None if v is None else v / self.scale
        if self.compact_radius is None:
            return z, dz
        r2 = self.compact_radius**2
        q = 1.0 + (z * z).sum(-1, keepdim=True) / r2
        s = q.rsqrt()
        zc = z * s
        if dz is None:
            return zc, None
        # d[z q^{-1/2}] = dz q^{-1/2} - z q^{-3/2} (z . dz) / r^2
        dzc = dz * s - zc * (s * s) * (z * dz).sum(-1, keepdim=True) / r2
        return zc, dzc

    def __call__(self, x: Tensor) -> Tensor:
        """``psi(x)`` for states ``x`` of shape ``(B, N, d)``; returns ``(B, N)``."""
        h, _ = self._normalise(x)
        L = self.n_layers
        for k in range(L):
            W, b = self.params[f"W{k}"], self.params[f"b{k}"]
            a = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
            h = torch.tanh(a) if k < L - 1 else a
        return h.squeeze(-1)

    def dual(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(psi(x), grad psi(x) . v)`` by forward-mode propagation; shapes ``(B, N, d) -> (B, N)``."""
        h, dh = self._normalise(x, v)
        L = self.n_layers
        for k in range(L):
            W, b = self.params[f"W{k}"], self.params[f"b{k}"]
            Wt = W.transpose(1, 2)
            a = torch.baddbmm(b.unsqueeze(1), h, Wt)
            da = torch.bmm(dh, Wt)
            if k < L - 1:
                h = torch.tanh(a)
                dh = (1 - h * h) * da
            else:
                h, dh = a, da
        return h.squeeze(-1), dh.squeeze(-1)

    def grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(psi(x), grad_x psi(x))`` with shapes ``(B, N)`` and ``(B, N, d)`` (reverse mode, no graph kept)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            y = self(xg)
            (g,) = torch.autograd.grad(y.sum(), xg)
        return y.detach(), g


def jvp_reference(net: BatchedMLP, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.func.jvp`` of ``net`` at ``x`` along ``v`` (the generic forward-mode path, for checks)."""
    return torch.func.jvp(net, (x,), (v,))

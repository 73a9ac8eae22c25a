"""Batched optimizers: one learning rate (and state) per network, networks updated independently.

Each optimizer is a small object with ``state_names`` (per-parameter state tensors it keeps), ``init`` and
``step``. ``alive`` ``(B,)`` freezes networks whose outcome is no longer ``ok`` (``None``: all alive).

    >>> import torch
    >>> opt = make_optimizer("sgd")
    >>> theta = {"r": torch.tensor([1.0, 1.0])}
    >>> state = opt.init(theta)
    >>> new, state = opt.step(theta, {"r": torch.tensor([2.0, 2.0])}, torch.tensor([0.1, 0.5]), state,
    ...                       torch.tensor([True, False]))
    >>> new["r"]
    tensor([0.8000, 1.0000])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .errors import ConfigError

__all__ = ["SGD", "Momentum", "Adam", "make_optimizer", "OPTIMIZERS"]

Tensor = torch.Tensor


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))


class SGD:
    """Plain gradient descent ``theta <- theta - lr * grad`` (the papers' optimizer)."""

    name = "sgd"
    state_names: tuple[str, ...] = ()

    def get_params(self) -> dict[str, Any]:
        return {}

    def init(self, theta: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {}

    def step(self, theta, grads, lr: Tensor, state, alive: Tensor | None):
        out = {}
        for k, v in theta.items():
            upd = v - (lr if v.dim() == 1 else _bcast(lr, v)) * grads[k]
            out[k] = upd if alive is None else torch.where(_bcast(alive, v), upd, v)
        return out, state


class Momentum(SGD):
    """Heavy-ball momentum: ``v <- beta v + grad``, ``theta <- theta - lr v``."""

    name = "momentum"
    state_names = ("velocity",)

    def __init__(self, beta: float = 0.9) -> None:
        if not 0 <= beta < 1:
            raise ConfigError(f"momentum beta must be in [0, 1), got {beta}")
        self.beta = beta

    def get_params(self):
        return {"beta": self.beta}

    def init(self, theta):
        return {f"velocity__{k}": torch.zeros_like(v) for k, v in theta.items()}

    def step(self, theta, grads, lr, state, alive):
        out, new_state = {}, {}
        if alive is None:
            alive = torch.ones(lr.shape[0], dtype=torch.bool, device=lr.device)
        for k, v in theta.items():
            a = _bcast(alive, v)
            vel = self.beta * state[f"velocity__{k}"] + grads[k]
            new_state[f"velocity__{k}"] = torch.where(a, vel, state[f"velocity__{k}"])
            out[k] = torch.where(a, v - _bcast(lr, v) * vel, v)
        return out, new_state


class Adam(SGD):
    """Adam with per-network step counts (frozen networks do not advance)."""

    name = "adam"
    state_names = ("m", "v", "t")

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def get_params(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def init(self, theta):
        st = {}
        for k, v in theta.items():
            st[f"m__{k}"] = torch.zeros_like(v)
            st[f"v__{k}"] = torch.zeros_like(v)
        some = next(iter(theta.values()))
        st["t"] = torch.zeros(some.shape[0], dtype=some.dtype, device=some.device)
        return st

    def step(self, theta, grads, lr, state, alive):
        if alive is None:
            alive = torch.ones(lr.shape[0], dtype=torch.bool, device=lr.device)
        t = torch.where(alive, state["t"] + 1, state["t"])
        new_state = {"t": t}
        out = {}
        for k, v in theta.items():
            a = _bcast(alive, v)
            m = self.beta1 * state[f"m__{k}"] + (1 - self.beta1) * grads[k]
            s = self.beta2 * state[f"v__{k}"] + (1 - self.beta2) * grads[k] ** 2
            tt = _bcast(t.clamp(min=1), v)
            mhat = m / (1 - self.beta1**tt)
            shat = s / (1 - self.beta2**tt)
            new_state[f"m__{k}"] = torch.where(a, m, state[f"m__{k}"])
            new_state[f"v__{k}"] = torch.where(a, s, state[f"v__{k}"])
            out[k] = torch.where(a, v - _bcast(lr, v) * mhat / (shat.sqrt() + self.eps), v)
        return out, new_state


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(name: str, **options: Any):
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise ConfigError(f"unknown optimizer {name!r}; available: {', '.join(OPTIMIZERS)}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"optimizer {name!r}: {exc}") from None

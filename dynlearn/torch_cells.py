"""torch's recurrent networks as one-step maps, and a continuous-time rate network (for :mod:`dynlearn.module`).

The cells are written out with ATen's own operations in ATen's order, in place where torch works in place, so one
step equals torch's forward bit for bit; they are written out because ``vmap`` has no batching rule for
``aten::gru_cell`` and friends. :data:`TORCH_ADAPTERS` maps each torch class with a built-in adapter to the
adapter's name and the constructor arguments a config records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ParameterError

__all__ = ["RateNetwork", "TORCH_ADAPTERS", "layered_step"]

#: torch classes with a built-in adapter: class -> (adapter, constructor arguments recorded in the config)
TORCH_ADAPTERS: dict[type, tuple[str, tuple[str, ...]]] = {
    nn.RNNCell: ("rnn", ("input_size", "hidden_size", "bias", "nonlinearity")),
    nn.GRUCell: ("gru", ("input_size", "hidden_size", "bias")),
    nn.LSTMCell: ("lstm", ("input_size", "hidden_size", "bias")),
    nn.RNN: ("rnn", ("input_size", "hidden_size", "num_layers", "nonlinearity", "bias")),
    nn.GRU: ("gru", ("input_size", "hidden_size", "num_layers", "bias")),
    nn.LSTM: ("lstm", ("input_size", "hidden_size", "num_layers", "bias")),
}


class RateNetwork(nn.Module):
    """Continuous-time rate network ``tau dh/dt = -h + W tanh(h) + B u + b`` (a flow for :func:`from_module`).

    Parameters
    ----------
    hidden_size
        Number of units ``n``.
    input_size
        Number of input channels (0: no input, ``forward(h)``).
    tau
        Time constant.

    Attributes ``weight_hh`` ``(n, n)`` (``W``), ``weight_ih`` ``(n, input_size)`` (``B``), ``bias`` ``(n,)``;
    initialised ``N(0, 1/n)``, ``N(0, 1/input_size)`` and zeros.
    """

    kind: ClassVar[str] = "flow"

    def __init__(self, hidden_size: int, input_size: int = 0, tau: float = 1.0) -> None:
        super().__init__()
        if hidden_size < 1 or input_size < 0 or not tau > 0:
            raise ParameterError(f"RateNetwork needs hidden_size >= 1, input_size >= 0 and tau > 0, got "
                                 f"{hidden_size}, {input_size}, {tau}")
        self.hidden_size, self.input_size, self.tau = int(hidden_size), int(input_size), float(tau)
        self.weight_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) / math.sqrt(hidden_size))
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(max(input_size, 1)))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        drive = F.linear(torch.tanh(h), self.weight_hh, self.bias)
        if u is not None:
            drive = drive + F.linear(u, self.weight_ih)
        return (drive - h) / self.tau


# -- the cells: ATen's own operations in ATen's order, in place where it works in place (so one step equals torch's
# forward bit for bit); written out because vmap has no batching rule for aten::gru_cell and friends
def _rnn_cell(nonlinearity: str) -> Callable:
    act = torch.tanh if nonlinearity == "tanh" else torch.relu

    def cell(x: Tensor, h: Tensor, w: Mapping[str, Tensor], sfx: str) -> Tensor:
        return act(F.linear(h, w["weight_hh" + sfx], w.get("bias_hh" + sfx)).add_(
            F.linear(x, w["weight_ih" + sfx], w.get("bias_ih" + sfx))))

    return cell


def _gru_cell(x: Tensor, h: Tensor, w: Mapping[str, Tensor], sfx: str) -> Tensor:
    i_r, i_z, i_n = F.linear(x, w["weight_ih" + sfx], w.get("bias_ih" + sfx)).unsafe_chunk(3, -1)
    h_r, h_z, h_n = F.linear(h, w["weight_hh" + sfx], w.get("bias_hh" + sfx)).unsafe_chunk(3, -1)
    r = h_r.add_(i_r).sigmoid_()
    z = h_z.add_(i_z).sigmoid_()
    n = i_n.add(h_n.mul(r)).tanh_()
    return (h - n).mul_(z).add_(n)


def _lstm_cell(x: Tensor, h: Tensor, c: Tensor, w: Mapping[str, Tensor], sfx: str) -> tuple[Tensor, Tensor]:
    gates = F.linear(h, w["weight_hh" + sfx], w.get("bias_hh" + sfx)).add_(
        F.linear(x, w["weight_ih" + sfx], w.get("bias_ih" + sfx)))
    i, f, g, o = gates.unsafe_chunk(4, -1)
    i, f, g, o = i.sigmoid_(), f.sigmoid_(), g.tanh_(), o.sigmoid_()
    c2 = (f * c).add_(i * g)
    return o * c2.tanh(), c2


def layered_step(adapter: str, hidden: int, layers: int, layered: bool, nonlinearity: str) -> Callable:
    """``step(w, h, u)`` of a (multi-layer) torch RNN: the state is every layer's ``h`` (then ``c``)."""
    sfx = [f"_l{k}" if layered else "" for k in range(layers)]
    cell = _rnn_cell(nonlinearity) if adapter == "rnn" else _gru_cell

    def step(w: Mapping[str, Tensor], state: Tensor, u: Tensor) -> Tensor:
        parts = state.split(hidden, -1)
        inp, hs, cs = u, [], []
        for k in range(layers):
            if adapter == "lstm":
                h, c = _lstm_cell(inp, parts[k], parts[layers + k], w, sfx[k])
                cs.append(c)
            else:
                h = cell(inp, parts[k], w, sfx[k])
            hs.append(h)
            inp = h
        return torch.cat(hs + cs, -1)

    return step

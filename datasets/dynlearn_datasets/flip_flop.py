"""N-bit flip-flop task (Sussillo & Barak 2013): remember the sign of the last pulse on each of N input lines.

Each trial has ``n_time`` steps and ``n_bits`` input lines. At step 0 every line carries a pulse; afterwards each
line carries a pulse with probability ``p`` per step. A pulse is ``+1`` or ``-1`` with probability 1/2 each,
otherwise the input is 0. The target of bit ``i`` at step ``t`` is the sign of the last pulse on line ``i`` at or
before ``t`` (so targets are always ``+-1``): a network solving it holds ``2^N`` memories, the stable fixed points
of its dynamics under zero input, with saddles between them.

Trials are deterministic functions of the parameters and a seed: :meth:`FlipFlop.sample` with the same seed
gives the same trials, so a training run repeats bit for bit. :class:`FlipFlopNet` (an ``nn.GRU`` / ``nn.LSTM``
/ ``nn.RNN`` with a linear readout) and :meth:`FlipFlop.fit` (plain Adam on the mean squared error, a fresh
seeded batch every step) train a network on it in seconds on a CPU.

References
----------
Sussillo, D. & Barak, O. (2013). Opening the black box: low-dimensional dynamics in high-dimensional recurrent
neural networks. Neural Computation 25(3), 626-649.

Examples
--------
>>> task = FlipFlop(n_bits=2, n_time=6, p=0.3)
>>> inputs, targets = task.sample(n_trials=1, seed=0)
>>> inputs[0].T.tolist()                       # (bit, time)
[[-1.0, 0.0, 0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, -1.0, 1.0]]
>>> targets[0].T.tolist()
[[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, -1.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.task import Task

__all__ = ["FlipFlop", "FlipFlopNet"]

_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class FlipFlop(Task):
    """N-bit flip-flop: inputs are sparse ``+-1`` pulses per bit, targets the sign of the last pulse per bit.

    Parameters
    ----------
    n_bits
        Number of independent bits (input lines = outputs).
    n_time
        Time steps per trial.
    n_trials
        Trials per sampled batch.
    p
        Probability of a pulse per bit per step (after step 0, where every bit pulses).
    data_seed
        Seed of the task's fixed evaluation batch (:meth:`inputs`, :meth:`targets`).
    """

    name = "flip_flop"
    description = "N-bit flip-flop (Sussillo & Barak 2013): hold the sign of the last pulse on each input line"
    parameters = {
        "n_bits": Param(3, description="number of bits", low=1),
        "n_time": Param(64, description="time steps per trial", low=1),
        "n_trials": Param(64, description="trials per batch", low=1),
        "p": Param(0.05, description="probability of a pulse per bit per step", low=0, high=1),
        "data_seed": Param(0, description="seed of the evaluation batch", low=0),
    }

    def __init__(self, **values) -> None:
        super().__init__(**values)
        for key in ("n_bits", "n_time", "n_trials", "data_seed"):
            v = self.values[key]
            if float(v) != int(v):
                raise ParameterError(f"task flip_flop: {key} must be an integer, got {v!r}")
            setattr(self, key, int(v))

    def sample(self, n_trials: int | None = None, seed: int | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``(n_trials, n_time, n_bits)``: a deterministic function of ``seed``.

        ``seed`` defaults to ``data_seed``; ``n_trials`` to the task's ``n_trials``.
        """
        n = self.n_trials if n_trials is None else int(n_trials)
        gen = torch.Generator().manual_seed(self.data_seed if seed is None else int(seed))
        shape = (n, self.n_time, self.n_bits)
        pulse = torch.rand(shape, generator=gen, dtype=torch.float64) < self.p
        pulse[:, 0] = True
        sign = torch.randint(0, 2, shape, generator=gen).to(dtype) * 2 - 1
        inputs = torch.where(pulse, sign, torch.zeros((), dtype=dtype))
        steps = torch.arange(self.n_time).view(1, -1, 1).expand(shape)
        last = torch.where(pulse, steps, torch.zeros_like(steps)).cummax(1).values
        return inputs, torch.gather(sign, 1, last)

    def inputs(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Inputs of the evaluation batch (seed ``data_seed``), ``(n_trials, n_time, n_bits)``."""
        return self.sample(dtype=dtype)[0]

    def targets(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Targets of the evaluation batch, ``(n_trials, n_time, n_bits)``."""
        return self.sample(dtype=dtype)[1]

    @staticmethod
    def loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error over trials, steps and bits."""
        return ((output - targets) ** 2).mean()

    @staticmethod
    def accuracy(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Fraction of (trial, step, bit) entries where the output's sign is the target's."""
        return (torch.sign(output) == targets).to(output.dtype).mean()

    def fit(self, model: nn.Module, *, steps: int = 1000, lr: float = 0.01, seed: int = 0,
            callback: Callable[[int, float], object] | None = None, every: int = 100) -> nn.Module:
        """Train ``model`` (inputs ``(trials, time, bits)`` -> outputs of the same shape) with Adam on :meth:`loss`.

        Step ``k`` trains on :meth:`sample` with seed ``seed * 1_000_003 + k + 1`` (never the evaluation
        batch), so the run is repeatable. ``callback(step, loss)`` is called with the model after ``step``
        updates and its loss on batch ``step``, at step 0, every ``every`` steps and at the last step (e.g.
        ``lambda step, loss: recorder.log(step, model.rnn, loss=loss)`` records the recurrent layer's checkpoints
        with a :class:`dynlearn.Recorder`).
        """
        if steps < 1 or every < 1:
            raise ParameterError(f"task flip_flop: fit needs steps >= 1 and every >= 1, got {steps}, {every}")
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for k in range(steps + 1):
            x, y = self.sample(seed=seed * 1_000_003 + k + 1)
            loss = self.loss(model(x), y)
            if callback is not None and (k % every == 0 or k == steps):
                callback(k, float(loss.detach()))
            if k == steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model


class FlipFlopNet(nn.Module):
    """A recurrent layer and a linear readout: ``nn.GRU``, ``nn.LSTM``, ``nn.RNN`` (batch first) or a
    :class:`dynlearn.module.RateNetwork` (``tau dh/dt = -h + W tanh(h) + B u + b``, Euler steps of ``dt``, read
    out from the rates ``tanh(h)``).

    ``forward(inputs)`` maps ``(trials, time, bits)`` to outputs of the same shape, starting from the zero state;
    ``net.rnn`` is the recurrent module (what :func:`dynlearn.from_module` analyses), ``net.readout`` the
    ``nn.Linear`` reading the bits out.

    Examples
    --------
    >>> net = FlipFlopNet(cell="gru", hidden=16, n_bits=3, seed=0)
    >>> tuple(net(torch.zeros(2, 5, 3)).shape), type(net.rnn).__name__
    ((2, 5, 3), 'GRU')
    >>> tuple(FlipFlopNet(cell="lstm", hidden=4).states(torch.zeros(2, 5, 3)).shape)    # (h, c): 2 x 4
    (2, 5, 8)
    """

    def __init__(self, cell: str = "gru", hidden: int = 16, n_bits: int = 3, seed: int = 0, dt: float = 0.5) -> None:
        super().__init__()
        if cell not in (*_CELLS, "rate"):
            raise ParameterError(f"FlipFlopNet: cell must be one of {sorted((*_CELLS, 'rate'))}, got {cell!r}")
        self.cell, self.hidden, self.dt = cell, int(hidden), float(dt)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if cell == "rate":
                from dynlearn.module import RateNetwork

                self.rnn = RateNetwork(hidden, n_bits)
            else:
                self.rnn = _CELLS[cell](n_bits, hidden, batch_first=True)
            self.readout = nn.Linear(hidden, n_bits)

    def states(self, inputs: torch.Tensor) -> torch.Tensor:
        """States ``(trials, time, d)`` along the trials, laid out as :func:`dynlearn.from_module` lays them out
        (an LSTM's ``h`` then ``c``; ``d = 2 hidden``)."""
        if self.cell == "gru" or self.cell == "rnn":
            return self.rnn(inputs)[0]
        h = inputs.new_zeros(inputs.shape[0], self.hidden)
        out = []
        if self.cell == "lstm":
            c = h
            for t in range(inputs.shape[1]):
                _, (h, c) = self.rnn(inputs[:, t : t + 1], (h[None], c[None]))
                h, c = h[0], c[0]
                out.append(torch.cat([h, c], -1))
        else:
            for t in range(inputs.shape[1]):
                h = h + self.dt * self.rnn(h, inputs[:, t])
                out.append(h)
        return torch.stack(out, 1)

    def output(self, states: torch.Tensor) -> torch.Tensor:
        """The readout of states laid out as :meth:`states` (e.g. fixed points): ``(..., n_bits)``."""
        h = states[..., : self.hidden]
        return self.readout(torch.tanh(h) if self.cell == "rate" else h)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = self.states(inputs) if self.cell == "rate" else self.rnn(inputs)[0]
        return self.output(h)

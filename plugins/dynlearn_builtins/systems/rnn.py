"""Low-rank RNNs trained on the delayed-activation task, and their exact latent circuits (DESIGN.md §3.2).

Network (``N`` units, Euler step ``Delta = dt / tau`` of ``tau dx/dt = -x + tanh(W x + b)``)::

    x[t+1] = (1 - Delta) x[t] + Delta tanh(W x[t] + b),     W = M Nm,   M in R^{N x K},  Nm in R^{K x N}

started from ``x(0) = x0`` (all units, default -0.3) and run for ``2T/dt`` steps (40 for the paper's T = 100 ms,
dt = 5 ms). Readout: ``sigmoid(c (kappa_0 - kappa*))`` on the first latent ``kappa = Nm x`` (``readout="latent"``,
the paper's rank-one model, kappa* = 1), or ``sigmoid(w_out . x + b_out)`` (``readout="linear"``, paper Fig. S2).

**Latent circuit** (exact, for any ``x(0)``): ``kappa = Nm x`` obeys

    kappa[t+1] = (1 - Delta) kappa[t] + Delta Nm tanh(M kappa[t] + b)

i.e. the Euler map of the K-dimensional flow ``tau dkappa/dt = -kappa + Nm tanh(M kappa + b) = f(kappa)``.
:class:`LatentCircuit` (registered as ``rnn_latent``) is that system, as a map or a flow, so every analyzer runs on
it; :meth:`LowRankRNN.dynamics_dataset` turns a training run's ``/params`` into its parameters.

**Ranks as a tensor dim.** The parametrisation has ``max_rank`` components; the hyper-parameter ``rank`` masks
components ``k >= rank`` (their columns of ``M`` and rows of ``Nm`` are zero from the start and get zero
gradients), so networks of different ranks train in one batch. ``rank = n_neurons`` is a full-rank ``W``.

**Initialisation** (a function of the seed only, the same for every learning rate, confidence and rank):
``M, Nm`` entries ``~ N(0, init_scale^2 / N)``, ``b = 0``; linear readout ``w_out, b_out ~ N(0, 1/N)`` — the scale
of the paper's published PyTorch code (``torch.randn(N) / sqrt(N)``), which keeps ``kappa = O(1)`` at
initialisation. Component ``k`` of ``M`` and ``Nm`` comes from its own random stream, so a rank-``K`` network
shares its first components with the rank-``K'`` network of the same seed.

**Loss and accuracy.** ``L = (1/T) sum_k w_k (o(t_k) - target(t_k))^2`` on the task grid ``t_k = k dt``. With
``loss_rule="steps"`` (default) ``w_k = dt`` on the ``2T/dt`` outputs the network produces (``t = dt .. 2T``;
``x(0)`` is fixed): exactly the paper's code, whose loss is the sum over the 40 steps divided by ``T/dt = 20``, so
learning rates such as 0.02 mean the same; ``"trapezoid"`` uses the task's trapezoid rule (``t = 0`` included)
— ``T L`` then approximates ``int_0^{2T} (o - target)^2 dt``. *Training accuracy* is the fraction of the
``2T/dt`` network outputs whose thresholded value ``o > 1/2`` equals the target: a constant output scores exactly
1/2, which is what the paper's stuck criterion (accuracy <= 0.5 over the last 50 epochs) detects.
:func:`learning_status` labels every network and epoch as learned / stuck.

Gradients are written out by hand (:mod:`._rnn_kernels`) and checked against autograd of :meth:`LowRankRNN.loss`.

Examples
--------
>>> import torch
>>> rnn = LowRankRNN(n_neurons=20)
>>> hp = {"lr": torch.tensor([0.02]), "c": torch.tensor([10.0]), "rank": torch.tensor([1.0]),
...       "c_low": torch.tensor([1.0])}
>>> theta = rnn.init(torch.tensor([0]), hp)
>>> loss, grads, metrics = rnn.evaluate(theta, hp)
>>> tuple(grads["m"].shape), float(metrics["accuracy"][0])
((1, 20, 1), 0.5)
>>> sys, ds = rnn.dynamics_dataset(None)
>>> sys.name, sys.kind, sys.state_names
('rnn_latent', 'flow', ('kappa',))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dynlearn.errors import ParameterError
from dynlearn.params import Param
from dynlearn.system import MapSystem, System, TrainableSystem
from dynlearn_datasets.delayed_activation import DelayedActivation

from . import _rnn_kernels as K
from ._rnn_status import learning_status, wilson_interval

__all__ = ["LowRankRNN", "LatentCircuit", "latent_rhs", "learning_status", "wilson_interval"]

Tensor = torch.Tensor

_LATENT_PARAMS = {
    "m": Param(0.0, shape=("neuron", "latent"), description="left connectivity factor M (W = M N)"),
    "n": Param(0.0, shape=("latent", "neuron"), description="right connectivity factor N (latent kappa = N x)"),
    "b": Param(0.0, shape=("neuron",), description="bias b of the units"),
}
_READOUT_PARAMS = {
    "w_out": Param(0.0, shape=("neuron",), description="readout weights w_out (linear readout)"),
    "b_out": Param(0.0, description="readout bias b_out (linear readout)"),
}


def _check_int(owner: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value):
        raise ParameterError(f"{owner}: {name} must be an integer, got {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ParameterError(f"{owner}: {name} must be {rng}, got {v}")
    return v


def _check_pos(owner: str, name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ParameterError(f"{owner}: {name} must be finite and > 0, got {value!r}")
    return v


def latent_rhs(kappa: Tensor, m: Tensor, n: Tensor, b: Tensor) -> Tensor:
    """``Nm tanh(M kappa + b)`` for ``kappa`` ``(..., K)``, ``m`` ``(..., N, K)``, ``n`` ``(..., K, N)``, ``b``
    ``(..., N)`` (batch dims broadcast)."""
    h = torch.tanh((m @ kappa.unsqueeze(-1)).squeeze(-1) + b)
    return (n @ h.unsqueeze(-1)).squeeze(-1)


class LatentCircuit(System):
    """Exact latent circuit ``kappa = Nm x`` of a rank-``K`` RNN (registered as ``rnn_latent``).

    ``form="flow"``: ``dkappa/dt = (-kappa + Nm tanh(M kappa + b)) / tau`` (time in ms; ``tau dkappa/dt = f``
    is the paper's ``f(kappa; m, n, b)``). ``form="map"``: one Euler step of the network,
    ``kappa -> (1 - Delta) kappa + Delta Nm tanh(M kappa + b)``, exactly ``Nm x[t] -> Nm x[t+1]``.
    Fixed points coincide in both forms. Sampling domain ``kappa in [-15, 15]^K`` (the paper's window).

    Examples
    --------
    >>> import torch
    >>> lc = LatentCircuit(n_neurons=3, rank=1, m=[[1.0], [0.5], [-1.0]], n=[[1.0, 1.0, 0.0]], b=[0.0, 0.1, 0.0])
    >>> k = torch.tensor([[0.2]], dtype=torch.float64)
    >>> round(float(lc.rhs(k, lc.param_tensors())[0, 0]) * 10, 6)   # tau dk/dt = -k + tanh(k) + tanh(k/2 + 0.1)
    0.194751
    """

    name = "rnn_latent"
    description = "latent circuit kappa = N x of a low-rank RNN: tau dkappa/dt = -kappa + N tanh(M kappa + b)"
    parameters = _LATENT_PARAMS
    domain_bounds = ([-15.0], [15.0])
    time_units = "ms"

    def __init__(self, n_neurons: int = 100, rank: int = 1, tau: float = 10.0, dt: float = 5.0, form: str = "flow",
                 **values: Any) -> None:
        owner = "rnn_latent"
        self.n_neurons = _check_int(owner, "n_neurons", n_neurons, 1)
        self.rank = _check_int(owner, "rank", rank, 1, self.n_neurons)
        self.tau = _check_pos(owner, "tau", tau)
        self.dt = _check_pos(owner, "dt", dt)
        if form not in ("flow", "map"):
            raise ParameterError(f"{owner}: form must be 'flow' or 'map', got {form!r}")
        self.form = form
        super().__init__(**values)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.form

    @property
    def delta(self) -> float:
        return self.dt / self.tau

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("kappa",) if self.rank == 1 else tuple(f"kappa_{k}" for k in range(self.rank))

    def dim_sizes(self) -> dict[str, int]:
        return {"neuron": self.n_neurons, "latent": self.rank}

    def rhs(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        drive = latent_rhs(x, p["m"], p["n"], p["b"])
        if self.form == "flow":
            return (drive - x) / self.tau
        return (1 - self.delta) * x + self.delta * drive

    def jacobian(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        m, n = p["m"], p["n"]
        h = torch.tanh((m @ x.unsqueeze(-1)).squeeze(-1) + p["b"])
        J = (n * (1 - h * h).unsqueeze(-2)) @ m
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        if self.form == "flow":
            return (J - eye) / self.tau
        return (1 - self.delta) * eye + self.delta * J


class LowRankRNN(TrainableSystem, MapSystem):
    """Rank-``K`` RNN trained on delayed activation (registered as ``rnn``); see the module docstring.

    Parameters
    ----------
    n_neurons
        Number of units ``N`` (paper: 100).
    max_rank
        Components ``K`` of the ``M Nm`` parametrisation (1 .. N); the ``rank`` hyper-parameter masks them.
    readout : {"latent", "linear"}
        ``sigmoid(c (kappa_0 - kappa_star))`` or ``sigmoid(w_out . x + b_out)`` (trainable ``w_out, b_out``; the
        confidence ``c`` is then not used).
    tau, dt
        Unit time constant and Euler step (ms); ``Delta = dt/tau`` must be in ``(0, 1]``. The task's grid step
        must equal ``dt`` (the default task is delayed activation with ``T = 100``, ``dt = dt``).
    x0, kappa_star
        Initial state of every unit; readout threshold of the latent readout.
    init_scale
        Standard deviation of the entries of ``M`` and ``Nm`` in units of ``1/sqrt(N)``.
    latent_form : {"flow", "map"}
        Form of the latent circuit :meth:`dynamics_dataset` hands to analyzers.
    loss_rule : {"steps", "trapezoid"}
        Quadrature of the loss (see the module docstring); ``"steps"`` is the paper's.

    Hyper-parameters (sweepable as tensor dims): ``lr``; ``c`` (confidence of the latent readout); ``rank``
    (1 .. max_rank); ``c_low`` (the confidence a schedule such as ``lower_when_stuck`` may switch to).
    """

    name = "rnn"
    description = "low-rank RNN x -> (1-D) x + D tanh(M N x + b) on delayed activation, with its latent circuit"
    task_class = DelayedActivation
    domain_bounds = ([-1.0], [1.0])
    time_units = "ms"
    metric_attrs = {
        "accuracy": {"long_name": "training accuracy: fraction of the 2T/dt output steps whose thresholded output "
                                  "(o > 1/2) matches the target", "units": "1"},
    }

    def __init__(self, n_neurons: int = 100, max_rank: int = 1, readout: str = "latent", tau: float = 10.0,
                 dt: float = 5.0, x0: float = -0.3, kappa_star: float = 1.0, init_scale: float = 1.0,
                 latent_form: str = "flow", loss_rule: str = "steps", task: Any = None, **values: Any) -> None:
        owner = "rnn"
        self.n_neurons = _check_int(owner, "n_neurons", n_neurons, 1)
        self.max_rank = _check_int(owner, "max_rank (K)", max_rank, 1, self.n_neurons)
        if readout not in ("latent", "linear"):
            raise ParameterError(f"{owner}: readout must be 'latent' or 'linear', got {readout!r}")
        self.readout = readout
        self.tau = _check_pos(owner, "tau", tau)
        self.dt = _check_pos(owner, "dt", dt)
        if self.dt > self.tau:
            raise ParameterError(f"{owner}: dt/tau must be <= 1 (Euler step), got dt={self.dt:g}, tau={self.tau:g}")
        for nm, v in (("x0", x0), ("kappa_star", kappa_star)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ParameterError(f"{owner}: {nm} must be a finite number, got {v!r}")
        self.x0, self.kappa_star = float(x0), float(kappa_star)
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not init_scale >= 0:
            raise ParameterError(f"{owner}: init_scale must be a number >= 0, got {init_scale!r}")
        self.init_scale = float(init_scale)
        if latent_form not in ("flow", "map"):
            raise ParameterError(f"{owner}: latent_form must be 'flow' or 'map', got {latent_form!r}")
        self.latent_form = latent_form
        if loss_rule not in ("steps", "trapezoid"):
            raise ParameterError(f"{owner}: loss_rule must be 'steps' or 'trapezoid', got {loss_rule!r}")
        self.loss_rule = loss_rule
        if task is None:
            task = {"T": 100.0, "dt": self.dt}
        elif isinstance(task, Mapping) and "dt" not in task:
            task = {**task, "dt": self.dt}
        super().__init__(task=task, **values)
        if self.task.name != "delayed_activation":
            raise ParameterError(f"{owner} trains on delayed_activation, not {self.task.name!r}")
        if abs(float(self.task.dt) - self.dt) > 1e-12 * self.dt:
            raise ParameterError(f"{owner}: the task's dt ({self.task.dt:g}) must equal the Euler step dt ({self.dt:g})")
        self._specs: dict[tuple, K.Spec] = {}

    # -- declarations -----------------------------------------------------------------------------------------
    @property
    def parameters(self) -> dict[str, Param]:  # type: ignore[override]
        return {**_LATENT_PARAMS, **(_READOUT_PARAMS if self.readout == "linear" else {})}

    @property
    def hyper(self) -> dict[str, Param]:  # type: ignore[override]
        return {
            "lr": Param(0.02, description="learning rate", low=0, low_inclusive=False),
            "c": Param(10.0, description="output confidence c of the latent readout", low=0, low_inclusive=False),
            "rank": Param(float(self.max_rank), description="trainable rank K of W = M N (components >= K masked)",
                          low=1, high=self.max_rank),
            "c_low": Param(1.0, description="confidence a schedule (lower_when_stuck) may switch to",
                           low=0, low_inclusive=False),
        }

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"x_{i}" for i in range(self.n_neurons))

    def dim_sizes(self) -> dict[str, int]:
        return {"neuron": self.n_neurons, "latent": self.max_rank}

    @property
    def delta(self) -> float:
        return self.dt / self.tau

    @property
    def steps(self) -> int:
        return int(self.task.n_steps)

    # -- dynamics of the full network (a map on R^N) -----------------------------------------------------------
    def rhs(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        return (1 - self.delta) * x + self.delta * self._rates(x, p)

    @staticmethod
    def _rates(x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """``tanh(M Nm x + b)``; through the rank-K factors (an einsum: one matrix product when the weights are
        shared by all states, where ``@`` would multiply state by state)."""
        kappa = torch.einsum("...kn,...n->...k", p["n"], x)
        return torch.tanh(torch.einsum("...nk,...k->...n", p["m"], kappa) + p["b"])

    # J = (1 - D) I + D diag(1 - h^2) M Nm: products with vectors through the rank-K factors
    def jvp(self, x: Tensor, p: Mapping[str, Tensor], v: Tensor) -> Tensor:
        h = self._rates(x, p)
        mv = torch.einsum("...nk,...k->...n", p["m"], torch.einsum("...kn,...n->...k", p["n"], v))
        return (1 - self.delta) * v + self.delta * (1 - h * h) * mv

    def vjp(self, x: Tensor, p: Mapping[str, Tensor], v: Tensor) -> Tensor:
        h = self._rates(x, p)
        u = torch.einsum("...nk,...n->...k", p["m"], (1 - h * h) * v)
        return (1 - self.delta) * v + self.delta * torch.einsum("...kn,...k->...n", p["n"], u)

    def jacobian(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        W = p["m"] @ p["n"]
        h = torch.tanh((W @ x.unsqueeze(-1)).squeeze(-1) + p["b"])
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return (1 - self.delta) * eye + self.delta * (1 - h * h).unsqueeze(-1) * W

    # -- training ---------------------------------------------------------------------------------------------
    def _rank_of(self, hp: Mapping[str, Tensor], B: int, device=None) -> Tensor:
        rank = hp.get("rank")
        if rank is None:
            return torch.full((B,), float(self.max_rank), device=device)
        return torch.as_tensor(rank).expand(B)

    def mask(self, hp: Mapping[str, Tensor], B: int, dtype=torch.float64, device=None) -> Tensor:
        """``(B, max_rank)``: 1 for the components ``k < rank`` of each network, 0 beyond."""
        rank = self._rank_of(hp, B, device)
        k = torch.arange(self.max_rank, device=rank.device)
        return (k < rank.reshape(B, 1)).to(dtype)

    def init(self, seed: Tensor, hp: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Parameters of each network from its seed alone (see the module docstring); masked components zero."""
        B, N, Kmax = int(seed.shape[0]), self.n_neurons, self.max_rank
        rank = self._rank_of(hp, B).to(torch.float64)
        if not torch.isfinite(rank).all() or (rank != rank.round()).any() or (rank < 1).any() or (rank > Kmax).any():
            bad = rank[~torch.isfinite(rank) | (rank != rank.round()) | (rank < 1) | (rank > Kmax)][0].item()
            raise ParameterError(f"rnn: hyper-parameter rank must be an integer in [1, max_rank={Kmax}], got {bad!r}")
        m = torch.zeros(B, N, Kmax, dtype=torch.float64)
        n = torch.zeros(B, Kmax, N, dtype=torch.float64)
        w_out = torch.zeros(B, N, dtype=torch.float64)
        b_out = torch.zeros(B, dtype=torch.float64)
        scale = self.init_scale / np.sqrt(N)
        for s in torch.unique(seed).tolist():
            rows = seed == s
            mk = np.stack([np.random.default_rng([int(s), 0, k]).standard_normal(N) for k in range(Kmax)], 1)
            nk = np.stack([np.random.default_rng([int(s), 1, k]).standard_normal(N) for k in range(Kmax)], 0)
            m[rows] = torch.as_tensor(mk * scale)
            n[rows] = torch.as_tensor(nk * scale)
            if self.readout == "linear":
                ro = np.random.default_rng([int(s), 2]).standard_normal(N + 1) / np.sqrt(N)
                w_out[rows] = torch.as_tensor(ro[:N])
                b_out[rows] = float(ro[N])
        mask = self.mask({"rank": rank}, B)
        out = {"m": m * mask[:, None, :], "n": n * mask[:, :, None], "b": torch.zeros(B, N, dtype=torch.float64)}
        if self.readout == "linear":
            out.update(w_out=w_out, b_out=b_out)
        return out

    def _spec(self, dtype: torch.dtype, device: torch.device) -> K.Spec:
        key = (dtype, str(device))
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = K.Spec(
                steps=self.steps, delta=self.delta, x0=self.x0, kappa_star=self.kappa_star,
                linear=self.readout == "linear", norm=float(self.task.T),
                weights=self.loss_weights(dtype).to(device), target=self.task.target(dtype).to(device))
        return spec

    def loss_weights(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """Quadrature weights on the task grid ``t = 0, dt, .., 2T`` (``loss_rule``): ``"steps"`` weighs the
        network's outputs ``t = dt .. 2T`` by ``dt`` each (the paper), ``"trapezoid"`` is the task's rule."""
        if self.loss_rule == "trapezoid":
            return self.task.quadrature(dtype)
        w = torch.full((self.steps + 1,), float(self.task.dt), dtype=dtype)
        w[0] = 0.0
        return w

    def _kernel(self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor], grad: bool):
        m = theta["m"]
        B = m.shape[0]
        spec = self._spec(m.dtype, m.device)
        c = torch.as_tensor(hp["c"], dtype=m.dtype, device=m.device).expand(B)
        if self.max_rank == 1 and self.readout == "latent":
            loss, g, acc, kap = K.rank_one_latent(m[:, :, 0], theta["n"][:, 0], theta["b"], c, spec, grad=grad)
            if g is not None:
                g = {"m": g["m"].unsqueeze(-1), "n": g["n"].unsqueeze(1), "b": g["b"]}
            return loss, g, acc, kap.unsqueeze(-1)
        mask = self.mask(hp, B, m.dtype, m.device)
        return K.general(m, theta["n"], theta["b"], theta.get("w_out"), theta.get("b_out"), mask, c, spec, grad=grad)

    def evaluate(self, theta, hp):
        """Loss, exact gradients and training accuracy from one forward and one backward pass."""
        loss, grads, acc, _ = self._kernel(theta, hp, grad=True)
        return loss, grads, {"accuracy": acc}

    def loss_and_grad(self, theta, hp):
        loss, grads, _, _ = self._kernel(theta, hp, grad=True)
        return loss, grads

    def metrics(self, theta, hp, loss):
        return {"accuracy": self._kernel(theta, hp, grad=False)[2]}

    def latent_trajectory(self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor]) -> Tensor:
        """``z[t]`` for ``t = 0 .. 2T/dt``, shape ``(S+1, B, K')``: the latents ``kappa = Nm x`` (and, linear
        readout, ``w_out . x`` as a last component)."""
        return self._kernel(theta, hp, grad=False)[3]

    def outputs(self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor]) -> Tensor:
        """Network outputs ``o(t)`` on the task grid, shape ``(B, S+1)``."""
        z = self.latent_trajectory(theta, hp)
        m = theta["m"]
        spec = self._spec(m.dtype, m.device)
        c = torch.as_tensor(hp["c"], dtype=m.dtype, device=m.device).expand(m.shape[0])
        v = z[:, :, -1] if self.readout == "linear" else z[:, :, 0]
        return K.outputs(v, c, theta.get("b_out"), spec).T

    # -- reference implementation (autograd), used by the tests --------------------------------------------------
    def simulate_network(self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Full network in ``R^N`` (no latent shortcut): states ``(S+1, B, N)`` and outputs ``(B, S+1)``."""
        m, n = theta["m"], theta["n"]
        B = m.shape[0]
        mask = self.mask(hp, B, m.dtype, m.device)
        W = (m * mask[:, None, :]) @ (n * mask[:, :, None])
        x = torch.full((B, self.n_neurons), self.x0, dtype=m.dtype, device=m.device)
        xs = [x]
        for _ in range(self.steps):
            x = (1 - self.delta) * x + self.delta * torch.tanh((W @ x.unsqueeze(-1)).squeeze(-1) + theta["b"])
            xs.append(x)
        X = torch.stack(xs)
        if self.readout == "linear":
            o = torch.sigmoid((X * theta["w_out"]).sum(-1) + theta["b_out"])
        else:
            kappa0 = (X * (n[:, 0] * mask[:, :1])).sum(-1)
            o = torch.sigmoid(torch.as_tensor(hp["c"], dtype=m.dtype) * (kappa0 - self.kappa_star))
        return X, o.T

    def loss(self, theta, hp) -> Tensor:
        """``(1/T) sum_k w_k (o(t_k) - target(t_k))^2`` computed on the full network (differentiable by autograd)."""
        o = self.simulate_network(theta, hp)[1]
        err = o - self.task.target(o.dtype).to(o.device)
        return (err * err * self.loss_weights(o.dtype).to(o.device)).sum(-1) / float(self.task.T)

    # -- analysis ---------------------------------------------------------------------------------------------
    def latent_system(self, form: str | None = None) -> LatentCircuit:
        return LatentCircuit(n_neurons=self.n_neurons, rank=self.max_rank, tau=self.tau, dt=self.dt,
                             form=form or self.latent_form)

    def dynamics_dataset(self, params: Any) -> tuple[System, Any]:
        """The latent circuit (``latent_form``) and the ``m, n, b`` of ``params`` (a run's ``/params``)."""
        if params is not None and hasattr(params, "data_vars"):
            params = params[[k for k in _LATENT_PARAMS if k in params.data_vars]]
        return self.latent_system(), params

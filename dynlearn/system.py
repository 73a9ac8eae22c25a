"""The System contract: parametrised families of flows and maps, batched and differentiable.

A System is a few declarations and one function::

    >>> import torch, dynlearn
    >>> class Logistic(dynlearn.MapSystem):
    ...     '''x -> a x (1 - x).'''
    ...     name = "logistic_doc"
    ...     description = "logistic map x -> a x (1 - x)"
    ...     parameters = {"a": dynlearn.Param(3.2, low=0, high=4)}
    ...     domain_bounds = ([0.0], [1.0])
    ...     def rhs(self, x, p):
    ...         return p["a"][..., None] * x * (1 - x)
    >>> sys = Logistic()
    >>> p = sys.param_tensors(batch_shape=(3,))
    >>> sys.rhs(torch.full((3, 1), 0.5, dtype=torch.float64), p)[:, 0]
    tensor([0.8000, 0.8000, 0.8000], dtype=torch.float64)

For developers: implement ``rhs`` (and declare ``kind`` by subclassing :class:`FlowSystem` or
:class:`MapSystem`, ``state_names``, ``parameters``, ``domain_bounds``); every analyzer then works on it.
Override ``jacobian`` when a closed form is cheaper than autograd, ``jvp`` and ``vjp`` (both) when the products of
the Jacobian with vectors are much cheaper than the Jacobian itself (a network: one matrix product with shared
weights; the fixed-point finder then forms Jacobians only where it factorises them), ``dim_sizes`` when parameters
have their own dims, and ``manifolds`` to declare invariant manifolds.

Batching convention
-------------------
``rhs(x, p)`` takes states ``x`` of shape ``(..., d)`` and a mapping of parameter tensors, each of shape
``(..., *event_shape)`` whose leading dims broadcast against ``x.shape[:-1]`` (scalar parameters have shape
``(...)``). It returns ``(..., d)``: ``f(x; p)`` for a flow ``dx/dt = f``, ``F(x; p)`` for a map
``x_{k+1} = F(x_k)``. It must be written with torch operations so it is differentiable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from .errors import ParameterError, PluginNotFoundError, ShapeError
from .params import Param, init_options, resolve_values
from .periodic import Circle
from .stepper import GenericStepper
from .task import Task

__all__ = ["System", "FlowSystem", "MapSystem", "TrainableSystem", "Manifold", "Param"]

Tensor = torch.Tensor


@dataclass(frozen=True)
class Manifold:
    """An invariant manifold a System declares (used by the transverse-stability analyzer, views, tests).

    Parameters
    ----------
    name, description
        Identify the manifold (``"balanced"``, ``"ellipse"``).
    constraint
        ``g(x, p) -> (..., k)``: zero exactly on the manifold (k = codimension).
    project
        Optional ``(x, p) -> x_on_manifold``: the nearest (or a canonical) point on it.
    sample
        Optional ``(n, p, generator) -> (n, d)`` points on the manifold (for a given, unbatched ``p``).
    valid
        Optional ``p -> bool tensor``: where the manifold exists (e.g. the ellipse needs 0 < mu < 2).
    """

    name: str
    description: str
    constraint: Callable[[Tensor, Mapping[str, Tensor]], Tensor]
    project: Callable[[Tensor, Mapping[str, Tensor]], Tensor] | None = None
    sample: Callable[..., Tensor] | None = None
    valid: Callable[[Mapping[str, Tensor]], Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class System:
    """A parametrised family of dynamical systems (flow or map), batched over leading dims.

    Constructor arguments are parameter values (defaults from ``parameters``) plus, for subclasses, structural
    options stored under their own name (scikit-learn convention); :meth:`get_params` returns both and
    ``type(sys)(**sys.get_params())`` rebuilds the system.
    """

    #: registry name and one-line description (``dynlearn list`` shows them)
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: "flow" (dx/dt = f(x)) or "map" (x -> F(x))
    kind: ClassVar[str] = "flow"
    #: names of the state coordinates (overridable by a property when it depends on options)
    state_names: ClassVar[tuple[str, ...]] = ("x",)
    #: declared parameters
    parameters: ClassVar[Mapping[str, Param]] = {}
    #: sampling box (low, high), one value per state coordinate
    domain_bounds: ClassVar[tuple[Any, Any] | None] = None
    #: periodic (angle) coordinates: state name -> ``(low, high)``, the coordinate lives on ``[low, high)``
    #: (see :mod:`dynlearn.periodic`; distances, de-duplication and attractor identity are taken modulo the period)
    periodic: ClassVar[Mapping[str, tuple[float, float]]] = {}
    #: units of time (flows) or of one iteration (maps) and of the state
    time_units: ClassVar[str] = "1"
    state_units: ClassVar[str] = "1"

    def __init__(self, **values: Any) -> None:
        self.values = resolve_values(f"system {self.name or type(self).__name__!r}", self.parameters, values)
        for name, decl in self.parameters.items():
            if decl.shape:
                want = self.event_shape(name)
                got = tuple(np.shape(self.values[name]))
                if got not in ((), want):
                    raise ShapeError(f"parameter {name!r} must have shape {want} ({', '.join(decl.shape)}), got {got}")

    # -- declarations ---------------------------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    def dim_sizes(self) -> dict[str, int]:
        """Sizes of the parameters' own dims (e.g. ``{"neuron": 100, "rank": 1}``)."""
        return {}

    def event_shape(self, name: str) -> tuple[int, ...]:
        sizes = self.dim_sizes()
        try:
            return tuple(sizes[d] for d in self.parameters[name].shape)
        except KeyError as exc:
            raise ShapeError(f"system {self.name!r}: dim {exc.args[0]!r} of parameter {name!r} has no size") from None

    def get_params(self) -> dict[str, Any]:
        """Options and parameter values as plain Python (JSON-able) objects."""
        out = {k: _plain(v) for k, v in init_options(self, System).items()}
        out.update({k: _plain(v) for k, v in self.values.items()})
        return out

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.get_params()}

    def domain(self) -> tuple[np.ndarray, np.ndarray]:
        """Sampling box ``(low, high)`` as float arrays of shape ``(state_dim,)``."""
        if self.domain_bounds is None:
            lo, hi = -np.ones(self.state_dim), np.ones(self.state_dim)
        else:
            lo, hi = (np.broadcast_to(np.asarray(b, dtype=float), (self.state_dim,)) for b in self.domain_bounds)
        lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
        if self.domain_bounds is None and self.periodic:
            c = self.circle
            lo = np.where(c.mask, c.low, lo)
            hi = np.where(c.mask, c.low + np.nan_to_num(c.period), hi)
        return lo, hi

    @property
    def circle(self) -> Circle:
        """The periodic coordinates as a :class:`dynlearn.periodic.Circle` (``nan`` where not periodic)."""
        return Circle.of(self)

    def manifolds(self) -> dict[str, Manifold]:
        """Invariant manifolds this system declares (name -> :class:`Manifold`)."""
        return {}

    # -- dynamics --------------------------------------------------------------------------------------------
    def rhs(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """``f(x; p)`` for a flow, ``F(x; p)`` for a map. Shapes: see the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} must implement rhs(x, p)")

    def residual(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """Zero exactly at fixed points: ``f(x)`` for flows, ``F(x) - x`` for maps."""
        out = self.rhs(x, p)
        return out if self.kind == "flow" else out - x

    def jacobian(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """Jacobian of :meth:`rhs` w.r.t. the state, shape ``(..., d, d)`` with ``J[..., i, j] = d rhs_i / d x_j``.

        Generic autograd implementation (one backward pass for all ``d`` rows); override with a closed form
        when it is cheaper.
        """
        d = x.shape[-1]
        with torch.enable_grad():
            xr = x.detach().unsqueeze(-2).expand(*x.shape[:-1], d, d).clone().requires_grad_(True)
            pe = {k: self._unsqueeze_param(k, v, -1) for k, v in p.items()}
            y = self.rhs(xr, pe)
            (jac,) = torch.autograd.grad(y.diagonal(dim1=-2, dim2=-1).sum(), xr, create_graph=x.requires_grad)
        return jac

    def jvp(self, x: Tensor, p: Mapping[str, Tensor], v: Tensor) -> Tensor:
        """``J v``: the Jacobian of :meth:`rhs` at ``x`` times ``v`` ``(..., d)``, shape ``(..., d)``.

        The default multiplies by :meth:`jacobian`; override it together with :meth:`vjp` when a closed form
        avoids forming the ``d x d`` matrix (see :func:`has_fast_products`).
        """
        return (self.jacobian(x, p) @ v.unsqueeze(-1)).squeeze(-1)

    def vjp(self, x: Tensor, p: Mapping[str, Tensor], v: Tensor) -> Tensor:
        """``v^T J`` (= ``J^T v``): ``v`` ``(..., d)`` times the Jacobian of :meth:`rhs` at ``x``, shape ``(..., d)``."""
        return (v.unsqueeze(-2) @ self.jacobian(x, p)).squeeze(-2)

    def stepper(self, x: Tensor, p: Mapping[str, Tensor], dt: float):
        """An object advancing the states ``x (n, d)`` with parameters ``p`` (``{name: (n, *event)}``) by whole
        steps (map iterations, or RK4 steps of size ``dt`` for a flow): the :class:`dynlearn.stepper.GenericStepper`
        protocol. Override with a faster equivalent kernel where one exists (it must give the same states)."""
        return GenericStepper(self, x, p, dt)

    def _unsqueeze_param(self, name: str, value: Tensor, batch_pos: int) -> Tensor:
        """Insert a singleton batch dim just before the parameter's own dims (``batch_pos=-1``)."""
        if not isinstance(value, Tensor):
            return value
        n_event = len(self.parameters[name].shape) if name in self.parameters else 0
        if value.dim() <= n_event:
            return value
        return value.unsqueeze(value.dim() - n_event + batch_pos + 1)

    def expand_params(self, p: Mapping[str, Tensor], n: int = 1) -> dict[str, Tensor]:
        """Add ``n`` singleton batch dims after the existing batch dims of every parameter.

        With params of batch shape ``(B,)`` and states of shape ``(B, S, d)``, ``expand_params(p)`` gives
        params of batch shape ``(B, 1)`` that broadcast against the states.
        """
        out = dict(p)
        for _ in range(n):
            out = {k: self._unsqueeze_param(k, v, -1) for k, v in out.items()}
        return out

    def param_tensors(
        self,
        batch_shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> dict[str, Tensor]:
        """This system's own parameter values as tensors of shape ``(*batch_shape, *event_shape)``."""
        out = {}
        for name in self.parameters:
            v = torch.as_tensor(np.asarray(self.values[name], dtype=float), dtype=dtype, device=device)
            ev = self.event_shape(name)
            out[name] = v.expand((*batch_shape, *ev)) if v.dim() == 0 or v.shape == ev else v
        return out

    def sample_states(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """``n`` states drawn uniformly from the domain box, shape ``(n, d)``."""
        lo, hi = (torch.as_tensor(b, dtype=dtype) for b in self.domain())
        u = torch.rand(n, self.state_dim, generator=generator, dtype=dtype)
        return lo + (hi - lo) * u

    def check_state(self, x: Tensor) -> Tensor:
        """Validate a state tensor (last dim must be ``state_dim``); returns it as a tensor."""
        x = torch.as_tensor(x)
        if x.dim() == 0 or x.shape[-1] != self.state_dim:
            raise ShapeError(
                f"system {self.name!r} has state dim {self.state_dim} ({', '.join(self.state_names)}), "
                f"got an array of shape {tuple(x.shape)}"
            )
        return x

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if not isinstance(v, list))
        return f"{type(self).__name__}({args})"


def has_fast_products(system: System) -> bool:
    """Whether ``system``'s class overrides both :meth:`System.jvp` and :meth:`System.vjp` (closed forms that do
    not form the Jacobian), so algorithms may prefer Jacobian-vector products to Jacobians."""
    cls = type(system)
    return cls.jvp is not System.jvp and cls.vjp is not System.vjp


class FlowSystem(System):
    """A flow ``dx/dt = f(x; p)`` (integrated with torchdiffeq)."""

    kind: ClassVar[str] = "flow"


class MapSystem(System):
    """A map ``x_{k+1} = F(x_k; p)``."""

    kind: ClassVar[str] = "map"


class TrainableSystem(System):
    """A System whose parameters are learned on a task, trained many copies at once.

    For developers: declare ``parameters`` (the learned ones), ``hyper`` (sweepable hyper-parameters; ``lr`` is
    always there), ``task`` (default dataset plugin name), and implement

    - ``init(seed, hp) -> {name: (B, *event)}``: initial parameters, a function of the seed only;
    - ``loss(theta, hp) -> (B,)``: per-network loss (summing over networks keeps them independent);

    optionally ``loss_and_grad`` (closed-form gradients), ``metrics`` (extra per-epoch records),
    ``dynamics_dataset`` (the state dynamics analyzers should study, e.g. an RNN's latent circuit).
    ``hp`` maps every hyper-parameter name to a ``(B,)`` tensor.
    """

    hyper: ClassVar[Mapping[str, Param]] = {
        "lr": Param(1e-2, description="learning rate", low=0, low_inclusive=False),
    }
    #: the default dataset (a :class:`~dynlearn.task.Task` subclass); ``task={...}`` options build it
    task_class: ClassVar[type | None] = None
    #: attrs of the extra per-epoch records returned by :meth:`metrics`
    metric_attrs: ClassVar[Mapping[str, Mapping[str, str]]] = {}

    def __init__(self, task: Any = None, **values: Any) -> None:
        super().__init__(**values)
        self.task = self._resolve_task(task)

    @property
    def task_name(self) -> str | None:
        """Registry name of the default task."""
        return self.task_class.name if self.task_class is not None else None

    def _resolve_task(self, task: Any) -> Any:
        if task is None:
            return self.task_class() if self.task_class is not None else None
        if isinstance(task, Task):
            return task
        if isinstance(task, Mapping):
            options = dict(task)
            name = options.pop("name", self.task_name)
            if self.task_class is None or name != self.task_name:
                raise ParameterError(
                    f"system {self.name!r}: task {name!r} is not its default task {self.task_name!r}; pass a Task "
                    "object, or build the system with dynlearn.make_system (which looks task names up)")
            return self.task_class(**options)
        raise ParameterError(f"task must be a Task or a mapping of its options, got {type(task).__name__}")

    # -- what implementers provide ----------------------------------------------------------------------------
    def init(self, seed: Tensor, hp: Mapping[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def loss(self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def loss_and_grad(
        self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-network loss ``(B,)`` and gradients (same shapes as ``theta``); autograd by default."""
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
            loss = self.loss(leaves, hp)
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True)
        grads_d = {k: (torch.zeros_like(v) if g is None else g) for (k, v), g in zip(leaves.items(), grads)}
        return loss.detach(), grads_d

    def metrics(
        self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor], loss: Tensor
    ) -> dict[str, Tensor]:
        """Extra per-network records for this epoch (name -> ``(B,)``); attrs in ``metric_attrs``."""
        return {}

    def evaluate(
        self, theta: Mapping[str, Tensor], hp: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """One training epoch's evaluation: ``(loss, grads, metrics)``.

        The training loop calls only this; override it to share one forward pass between the gradient and
        the metrics.
        """
        loss, grads = self.loss_and_grad(theta, hp)
        return loss, grads, self.metrics(theta, hp, loss)

    def dynamics_dataset(self, params: Any) -> tuple[System, Any]:
        """The System analyzers study at given learned parameters, and its parameter Dataset.

        Default: the trainable itself with ``params`` unchanged. An RNN returns its latent circuit.
        """
        return self, params


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "to_config"):
        return v.to_config()
    return v


__all__ += ["PluginNotFoundError"]

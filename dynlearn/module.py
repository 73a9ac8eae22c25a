"""Bring your own model: a trained torch network (or a function) as a System.

A few lines turn a trained ``nn.GRUCell`` into a map every analyzer works on; its weights become the System's
parameters, so a batch of checkpoints (state_dicts) is a sweep:

    >>> import torch, dynlearn
    >>> cell = torch.nn.GRUCell(input_size=1, hidden_size=3)          # trained elsewhere
    >>> sys = dynlearn.from_module(cell)
    >>> sys.kind, sys.state_names, sys.input_size
    ('map', ('h0', 'h1', 'h2'), 1)
    >>> sorted(sys.parameters)
    ['bias_hh', 'bias_ih', 'input', 'weight_hh', 'weight_ih']
    >>> h = torch.zeros(1024, 3, dtype=torch.float64)
    >>> sys.rhs(h, sys.param_tensors()).shape                        # one cell call for 1024 states
    torch.Size([1024, 3])
    >>> ds = dynlearn.params_from_state_dicts(sys, [cell.state_dict(), cell.state_dict()], dim="epoch",
    ...                                       coords=[0, 100])
    >>> ds["weight_hh"].dims
    ('epoch', 'weight_hh_dim0', 'weight_hh_dim1')
    >>> fp = dynlearn.get_analyzer("fixed_points")(n_starts=8).run(sys, ds)    # every checkpoint at once
    >>> dynlearn.make_system(sys.to_config()).rhs(h, sys.param_tensors()).equal(sys.rhs(h, sys.param_tensors()))
    True

What is accepted (:func:`from_module`):

- ``nn.RNNCell``, ``nn.GRUCell``, ``nn.LSTMCell`` and ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` of any ``num_layers``:
  one time step is the map ``h -> h'`` (eval mode: no dropout). The state of a multi-layer network is every
  layer's ``h`` concatenated (``l0_h0, ..., l1_h0, ...``); an LSTM's is ``(h, c)`` concatenated (all layers' ``h``,
  then all layers' ``c``). Bidirectional networks and ``proj_size`` are refused.
- :class:`RateNetwork`, the continuous-time rate network ``tau dh/dt = -h + W tanh(h) + B u + b`` (a flow).
- Any ``nn.Module`` whose ``forward(h, u)`` (or ``forward(h)`` without input) returns the next state (``kind="map"``)
  or ``dh/dt`` (``kind="flow"``); ``h`` is ``(n, d)`` and ``u`` ``(n, input_size)``.
- A function ``f(h, u, params)`` with a dict of tensors ``params`` (``state_dim``, ``input_size`` and ``kind``
  given).

The System's parameters are the module's parameters and floating-point buffers (each a shaped :class:`Param`
with its own dims ``<name>_dim0, ...``; dots in names become ``__``, see :attr:`ModuleSystem.torch_names`) and the
constant input ``input`` (dim ``input_channel``, default zeros): sweep it with a Dataset to condition fixed points
on the input. ``rhs`` evaluates the module through ``torch.func.functional_call`` (the built-in cells through the
same ATen operations as torch's own): with weights shared by every state it is one call on all the states, and
weights that vary along batch dims are one ``torch.func.vmap`` over those dims, the other dims staying the
module's own batch. A user's module runs in the mode it is in (call ``.eval()`` first if it has dropout). The
Jacobian (one forward and one batched backward pass), ``jvp`` and ``vjp`` come from autograd through the module,
so the fixed-point finder uses products and forms Jacobians only for its Newton steps.

The config (:meth:`System.to_config`) is JSON: the importable class path, the constructor arguments (torch's own
for its classes; for a user's class the scikit-learn convention, same-named attributes, else ``module_kwargs``),
``kind``, ``adapter``, ``input`` and the weights as exact lists, so ``dynlearn.make_system(config)`` rebuilds
the system bit for bit. A function is rebuilt from its import path: a lambda or a nested function cannot be.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .errors import ParameterError, ShapeError
from .params import Param
from .system import System
from .torch_cells import TORCH_ADAPTERS, RateNetwork, layered_step

__all__ = ["ModuleSystem", "RateNetwork", "from_module", "params_from_state_dicts"]

#: what ``ModuleSystem()`` (``dynlearn.make_system("module")``) builds: a GRU cell of 2 units, torch's init from seed 0
DEFAULT_MODULE = ("torch.nn.modules.rnn:GRUCell", {"input_size": 1, "hidden_size": 2})
INPUT = "input"
INPUT_DIM = "input_channel"


# -- names ---------------------------------------------------------------------------------------------------
def _sanitise(name: str) -> str:
    """A module's tensor name as a System parameter name: dots become ``__`` (``0.weight`` -> ``p0__weight``)."""
    out = re.sub(r"\W", "_", name.replace(".", "__"))
    return out if out[:1].isalpha() else "p" + out


def _class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) or inspect.isfunction(obj) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(path: str) -> Any:
    mod, _, qual = path.partition(":")
    try:
        obj = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        raise ParameterError(f"system 'module': cannot import {path!r} to rebuild it (a lambda, a nested function or "
                             "a class defined in another script cannot be rebuilt from a config; define it at module "
                             "level in an importable file)") from None
    return obj


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _torch_kwargs(module: nn.Module, names: tuple[str, ...]) -> dict[str, Any]:
    if getattr(module, "bidirectional", False):
        raise ParameterError(f"from_module: a bidirectional {type(module).__name__} is no dynamical system (its "
                             "backward direction runs in reverse time); pass a unidirectional one")
    if getattr(module, "proj_size", 0):
        raise ParameterError(f"from_module: an {type(module).__name__} with proj_size > 0 is not supported (its "
                             "state is not (h, c) of the hidden size); pass one with proj_size=0")
    return {n: getattr(module, n) for n in names if hasattr(module, n)}


def _user_kwargs(module: nn.Module, given: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of a user's module: same-named attributes (scikit-learn convention), else ``given``."""
    cls = type(module)
    out: dict[str, Any] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.name in given:
            out[p.name] = given[p.name]
        elif hasattr(module, p.name) and _jsonable(getattr(module, p.name)):
            out[p.name] = getattr(module, p.name)
        elif p.default is p.empty:
            raise ParameterError(f"from_module: cannot record how to rebuild {cls.__name__}: its constructor argument "
                                 f"{p.name!r} is no JSON attribute of the module; pass module_kwargs={{{p.name!r}: ...}}")
    bad = [k for k, v in out.items() if not _jsonable(v)]
    if bad:
        raise ParameterError(f"from_module: module_kwargs[{bad[0]!r}] of {cls.__name__} is not JSON")
    return out


def _forward_arity(module: nn.Module) -> int:
    """Number of positional arguments ``forward`` needs (1: ``forward(h)``, 2: ``forward(h, u)``)."""
    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return sum(p.default is p.empty for p in params)


class _Adapted(NamedTuple):
    adapter: str
    kwargs: dict[str, Any]
    state: int | None
    inputs: int | None
    kind: str | None
    step: Callable[[Mapping[str, Tensor], Tensor, Tensor | None], Tensor]   # (weights by torch name, h, u) -> out
    rnn: tuple[str, int, int] | None   # torch RNNs: (adapter, hidden size, layers), for the state names
    tensors: Mapping[str, Any]         # the tensors that become parameters (torch names)


def _adapt(module: Any, kwargs: Mapping[str, Any], state_dim: int | None, input_size: int | None, kind: str | None,
           values: Mapping[str, Any]) -> _Adapted:
    """How to call ``module``: a torch RNN through the cells above, another module through ``functional_call``, a
    function directly; sizes, kind and constructor arguments read where they can be."""
    if callable(module) and not isinstance(module, nn.Module):
        tensors = {k: v for k, v in values.items() if k != INPUT}  # a function's parameter shapes: the values given
        return _Adapted("function", {}, state_dim, input_size, kind, lambda w, h, u: module(h, u, w), None, tensors)
    if not isinstance(module, nn.Module):
        raise ParameterError(f"from_module needs an nn.Module, a function f(h, u, params) or an import path, "
                             f"got {type(module).__name__}")
    tensors = {n: t.detach() for n, t in module.named_parameters()}
    tensors.update({n: t.detach() for n, t in module.named_buffers() if t.is_floating_point()})
    found = next((t for t in TORCH_ADAPTERS if isinstance(module, t)), None)
    if found is None:
        state = state_dim if state_dim is not None else getattr(module, "hidden_size", None)
        inputs = input_size if input_size is not None else getattr(module, "input_size", None)
        if inputs is None and _forward_arity(module) <= 1:
            inputs = 0

        def step(w: Mapping[str, Tensor], h: Tensor, u: Tensor | None) -> Tensor:
            return functional_call(module, dict(w), (h,) if u is None else (h, u))

        return _Adapted("module", _user_kwargs(module, kwargs), state, inputs, kind or getattr(module, "kind", None),
                        step, None, tensors)
    adapter, names = TORCH_ADAPTERS[found]
    hidden, layers = int(module.hidden_size), int(getattr(module, "num_layers", 1))
    state, inputs = hidden * layers * (2 if adapter == "lstm" else 1), int(module.input_size)
    for given, have, what in ((state_dim, state, "state_dim"), (input_size, inputs, "input_size")):
        if given is not None and given != have:
            raise ParameterError(f"from_module: {what}={given} does not match the {type(module).__name__} ({have})")
    step = layered_step(adapter, hidden, layers, found not in (nn.RNNCell, nn.GRUCell, nn.LSTMCell),
                         getattr(module, "nonlinearity", "tanh"))
    return _Adapted(adapter, _torch_kwargs(module, names), state, inputs, kind or "map", step,
                    (adapter, hidden, layers), tensors)


class ModuleSystem(System):
    """A torch ``nn.Module`` (or a function ``f(h, u, params)``) as a map or a flow; build it with
    :func:`from_module` (see the module docstring).

    Parameters
    ----------
    module
        An ``nn.Module``, a function ``f(h, u, params)``, or the import path (``"torch.nn.modules.rnn:GRU"``) of
        either (then ``module_kwargs`` builds the class, its initial weights from seed 0). Default:
        :data:`DEFAULT_MODULE`, a ``GRUCell(1, 2)``.
    module_kwargs
        Constructor arguments of the module's class (read from the module when it is given).
    kind
        ``"map"`` (the module returns the next state) or ``"flow"`` (it returns ``dh/dt``); default: the module's
        ``kind`` attribute, ``"map"`` for torch's RNNs.
    adapter
        ``"rnn"``, ``"gru"``, ``"lstm"`` (torch's classes), ``"module"`` or ``"function"``; derived.
    state_dim, input_size
        State and input sizes; derived from torch's classes and from ``hidden_size`` / ``input_size`` attributes
        (``input_size=0`` when ``forward`` takes only ``h``).
    bounds
        ``(low, high)`` of every state coordinate: the box analyzers sample states from.
    **values
        Parameter values (the module's tensors by their System names, and ``input``); default: the module's own.
    """

    name: ClassVar[str] = "module"
    description: ClassVar[str] = "a torch nn.Module or a function f(h, u, params) as a map or a flow (from_module)"

    def __init__(
        self,
        module: nn.Module | Callable | str | None = None,
        module_kwargs: Mapping[str, Any] | None = None,
        kind: str | None = None,
        adapter: str | None = None,
        state_dim: int | None = None,
        input_size: int | None = None,
        bounds: Sequence[float] = (-1.0, 1.0),
        **values: Any,
    ) -> None:
        if module is None:
            module, module_kwargs = DEFAULT_MODULE
        given_kwargs = dict(module_kwargs or {})
        if isinstance(module, str):
            obj = _import(module)
            if isinstance(obj, type):
                with torch.random.fork_rng(devices=[]):  # the same initial weights, the global RNG left alone
                    torch.manual_seed(0)
                    try:
                        module = obj(**given_kwargs)
                    except TypeError as exc:
                        raise ParameterError(f"system 'module': cannot build {obj.__name__}: {exc}") from None
            else:
                module = obj
        self.module_ = module
        self.module = _class_path(module)
        owner = f"system 'module' ({self.module})"
        ad = _adapt(module, given_kwargs, state_dim, input_size, kind, values)
        self.module_kwargs, self._step, self._rnn = ad.kwargs, ad.step, ad.rnn
        derived, state, inputs, kind, tensors = ad.adapter, ad.state, ad.inputs, ad.kind, ad.tensors
        if adapter is not None and adapter != derived:
            raise ParameterError(f"{owner}: adapter {adapter!r} does not match the module (its adapter is {derived!r})")
        if state is None or inputs is None:
            what = "state_dim" if state is None else "input_size"
            raise ParameterError(f"{owner}: cannot infer {what}; pass {what}=... to from_module")
        if kind not in ("map", "flow"):
            raise ParameterError(f"{owner}: kind must be 'map' (the module returns the next state) or 'flow' (it "
                                 f"returns dh/dt), got {kind!r}; pass kind=...")
        if len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
            raise ParameterError(f"{owner}: bounds must be (low, high) with low < high, got {bounds!r}")
        self.adapter, self.kind, self.input_size = derived, kind, int(inputs)
        self.state_dim_ = int(state)
        self.bounds = [float(bounds[0]), float(bounds[1])]
        self.torch_names = self._names(owner, tensors)
        self._params, self._sizes = self._declare(tensors)
        self._event = {k: len(d.shape) for k, d in self._params.items()}
        super().__init__(**values)

    # -- declarations -----------------------------------------------------------------------------------------
    def _names(self, owner: str, tensors: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in tensors:
            safe = name if self.adapter == "function" else _sanitise(name)
            if safe in out or safe == INPUT:
                raise ParameterError(f"{owner}: tensor {name!r} clashes with another parameter name ({safe!r})")
            out[safe] = name
        return out

    def _declare(self, tensors: Mapping[str, Any]) -> tuple[dict[str, Param], dict[str, int]]:
        params: dict[str, Param] = {}
        sizes: dict[str, int] = {}
        for safe, name in self.torch_names.items():
            value = tensors[name]
            arr = value.detach().cpu().double().numpy() if isinstance(value, Tensor) else np.asarray(value, float)
            dims = tuple(f"{safe}_dim{i}" for i in range(arr.ndim))
            sizes.update(zip(dims, arr.shape))
            default = arr if self.adapter != "function" else None
            params[safe] = Param(default, shape=dims, description=f"{name} of {self.module.split(':')[-1]}")
        if self.input_size:
            sizes[INPUT_DIM] = self.input_size
            params[INPUT] = Param(np.zeros(self.input_size), shape=(INPUT_DIM,), description="constant input u")
        return params, sizes

    @property
    def parameters(self) -> dict[str, Param]:  # type: ignore[override]
        return self._params

    def dim_sizes(self) -> dict[str, int]:
        return dict(self._sizes)

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._rnn is None:
            return tuple(f"h{i}" for i in range(self.state_dim_))
        adapter, hidden, layers = self._rnn
        kinds = ("h", "c") if adapter == "lstm" else ("h",)
        if layers == 1:
            return tuple(f"{k}{i}" for k in kinds for i in range(hidden))
        return tuple(f"l{layer}_{k}{i}" for k in kinds for layer in range(layers) for i in range(hidden))

    @property
    def domain_bounds(self) -> tuple[float, float]:  # type: ignore[override]
        return self.bounds[0], self.bounds[1]

    # -- dynamics ---------------------------------------------------------------------------------------------
    def _call(self, w: Mapping[str, Tensor], h: Tensor) -> Tensor:
        """The module on states ``h`` ``(n, d)`` with unbatched parameters ``w`` (System names)."""
        u = w.get(INPUT)
        if u is not None:
            u = u.expand(h.shape[0], self.input_size)
        out = self._step({self.torch_names[k]: v for k, v in w.items() if k != INPUT}, h, u)
        if out.shape != h.shape:
            raise ShapeError(f"system 'module' ({self.module}): the module maps states {tuple(h.shape)} to "
                             f"{tuple(out.shape)}; it must return the next state (map) or dh/dt (flow) of the "
                             "same shape")
        return out

    def _layout_of(self, x: Tensor, p: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], tuple[int, ...], list[int]]:
        """Parameters with the batch dims they were only expanded along (stride 0) cut to one value, the broadcast
        batch shape of states and parameters, and the batch dims along which a parameter varies."""
        if x.shape[-1] != self.state_dim_:
            raise ShapeError(f"system 'module' ({self.module}) has state dim {self.state_dim_}, got states of shape "
                             f"{tuple(x.shape)}")
        w = {}
        for k in self._params:
            v, n = p[k], p[k].dim() - self._event[k]
            for i in range(n):
                if v.stride(i) == 0 and v.shape[i] > 1:
                    v = v.narrow(i, 0, 1)
            w[k] = v
        pb = [tuple(v.shape[: v.dim() - self._event[k]]) for k, v in w.items()]
        full = tuple(np.broadcast_shapes(tuple(x.shape[:-1]), *pb))
        vary = [i for i in range(len(full)) if any(len(s) >= len(full) - i and s[i - len(full)] != 1 for s in pb)]
        return w, full, vary

    def rhs(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """The module on states ``x`` ``(..., d)``: one call on every state when the parameters are shared; else one
        ``vmap`` over the batch dims along which a parameter varies, the other dims staying the module's own batch."""
        d = x.shape[-1]
        w, full, vary = self._layout_of(x, p)
        nb = len(full)
        xs = x.expand(*full, d)
        if 0 in full:  # no state at all
            return xs * 0
        if not vary:
            out = self._call({k: v.reshape(v.shape[v.dim() - self._event[k]:]) for k, v in w.items()}, xs.reshape(-1, d))
            return out.reshape(*full, d)
        rest = [i for i in range(nb) if i not in vary]
        perm = vary + rest
        P = math.prod(full[i] for i in vary)
        xs = xs.permute(*perm, nb).reshape(P, -1, d)
        batched, in_dims = {}, {}
        for k, v in w.items():
            ev = v.shape[v.dim() - self._event[k]:]
            v = v.reshape(*(1,) * (nb + len(ev) - v.dim()), *v.shape)
            if all(v.shape[i] == 1 for i in vary):
                batched[k], in_dims[k] = v.reshape(ev), None
                continue
            v = v.expand(*(full[i] if i in vary else 1 for i in range(nb)), *ev)
            batched[k] = v.permute(*perm, *range(nb, nb + len(ev))).reshape(P, *ev)
            in_dims[k] = 0
        out = vmap(self._call, in_dims=(in_dims, 0))(batched, xs)
        inv = [perm.index(i) for i in range(nb)]
        return out.reshape(*(full[i] for i in perm), d).permute(*inv, nb)

    # Derivatives by torch.autograd: torch.func's jvp/vjp would import torch._dynamo on first use (seconds), and
    # forward-mode AD through the cells' in-place operations too.
    def jacobian(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """``J[..., i, j] = d rhs_i / d x_j``. Shared parameters: one forward pass and one backward pass batched
        over the ``d`` basis vectors (the states are independent, so ``e_i`` at every state gives row ``i`` of
        every state's Jacobian); parameters that vary per state: the generic replicated-state pass (the batched
        backward would copy the weights once per basis vector)."""
        _, full, vary = self._layout_of(x, p)
        if vary:
            return super().jacobian(x, p)
        d = x.shape[-1]
        with torch.enable_grad():
            xr = x.detach().expand(*full, d).requires_grad_(True)
            y = self.rhs(xr, p)
            basis = torch.eye(d, dtype=y.dtype, device=y.device).reshape(d, *([1] * (y.dim() - 1)), d).expand(d, *y.shape)
            (jac,) = torch.autograd.grad(y, xr, basis, is_grads_batched=True, create_graph=x.requires_grad)
        return jac.movedim(0, -2)

    def vjp(self, x: Tensor, p: Mapping[str, Tensor], v: Tensor) -> Tensor:
        """``v^T J``: one backward pass through the module, without forming ``J``."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (out,) = torch.autograd.grad(self.rhs(xr, p), xr, v, create_graph=x.requires_grad or v.requires_grad)
        return out

    def jvp(self, x: Tensor, p: Mapping[str, Tensor], v: Tensor) -> Tensor:
        """``J v`` by double backward (``J v`` is the gradient of ``(J^T w) . v`` with respect to ``w``), without
        forming ``J``."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            y = self.rhs(xr, p)
            w = torch.zeros_like(y, requires_grad=True)
            (g,) = torch.autograd.grad(y, xr, w, create_graph=True)
            (out,) = torch.autograd.grad(g, w, v, create_graph=x.requires_grad or v.requires_grad)
        return out


def from_module(
    module: nn.Module | Callable,
    *,
    kind: str | None = None,
    input: Any = None,
    params: Mapping[str, Any] | None = None,
    state_dim: int | None = None,
    input_size: int | None = None,
    module_kwargs: Mapping[str, Any] | None = None,
    bounds: Sequence[float] = (-1.0, 1.0),
) -> ModuleSystem:
    """A torch network (or a function) as a System; see the module docstring for what is accepted.

    Parameters
    ----------
    module
        A (trained) ``nn.Module``, or a function ``f(h, u, params)`` returning the next state or ``dh/dt``.
    kind
        ``"map"`` or ``"flow"``; default: torch's RNNs are maps, a module's ``kind`` attribute otherwise.
    input
        The constant input ``u`` (``input_size`` values; default zeros): a parameter, so a sweep can vary it.
    params
        A function's parameters ``{name: tensor}`` (a module's are its own).
    state_dim, input_size
        Needed where they cannot be read from the module (``hidden_size`` / ``input_size`` attributes).
    module_kwargs
        Constructor arguments of a user's class that are not same-named attributes (recorded in the config).
    bounds
        ``(low, high)`` box of every state coordinate, where analyzers sample states.

    Returns
    -------
    ModuleSystem

    Raises
    ------
    ParameterError
        A bidirectional RNN or ``proj_size``, an unknown object, a size that cannot be inferred, a kind missing.
    """
    values = {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in (params or {}).items()}
    if input is not None:
        values[INPUT] = input.detach() if isinstance(input, Tensor) else input
    values = {k: (v.cpu().double().numpy() if isinstance(v, Tensor) else v) for k, v in values.items()}
    return ModuleSystem(module, module_kwargs=module_kwargs, kind=kind, state_dim=state_dim,
                        input_size=input_size, bounds=bounds, **values)


def params_from_state_dicts(
    system: ModuleSystem,
    state_dicts: Sequence[Mapping[str, Any] | nn.Module] | Mapping[str, Any],
    dim: str = "checkpoint",
    coords: Sequence[Any] | np.ndarray | None = None,
) -> xr.Dataset:
    """A parameter Dataset sweeping ``system``'s weights over checkpoints: one analyzer run studies them all.

    Parameters
    ----------
    system
        The :class:`ModuleSystem` of one of the networks (same architecture).
    state_dicts
        A list of state_dicts (or modules), or one mapping of stacked tensors whose leading dim is the sweep.
    dim
        Name of the sweep dim (``"checkpoint"``, ``"epoch"``, ``"seed"``).
    coords
        Its coordinate values (default ``0, 1, ...``).

    Returns
    -------
    xr.Dataset
        One variable per weight of the module (System names), dims ``(dim, *own dims)``.
    """
    if isinstance(state_dicts, Mapping):
        stacked = {k: torch.as_tensor(v) for k, v in state_dicts.items()}
    else:
        dicts = [sd.state_dict() if isinstance(sd, nn.Module) else sd for sd in state_dicts]
        if not dicts:
            raise ShapeError("params_from_state_dicts needs at least one state_dict")
        missing = [n for n in system.torch_names.values() if any(n not in sd for sd in dicts)]
        if missing:
            raise ShapeError(f"a state_dict has no tensor {missing[0]!r} of {system.module}")
        stacked = {n: torch.stack([torch.as_tensor(sd[n]).detach() for sd in dicts]) for n in system.torch_names.values()}
    n = None
    data = {}
    for safe, name in system.torch_names.items():
        if name not in stacked:
            raise ShapeError(f"the stacked state_dict has no tensor {name!r} of {system.module}")
        t = stacked[name].detach().cpu().double()
        want = system.event_shape(safe)
        if tuple(t.shape[1:]) != want or (n is not None and t.shape[0] != n):
            raise ShapeError(f"tensor {name!r} has shape {tuple(t.shape)}; expected ({n or 'n'}, "
                             f"{', '.join(map(str, want))}) for {system.module}")
        n = t.shape[0]
        decl = system.parameters[safe]
        data[safe] = ((dim, *decl.shape), t.numpy(), decl.attrs(safe))
    values = np.arange(n) if coords is None else np.asarray(coords)
    if values.shape != (n,):
        raise ShapeError(f"coords of {dim!r} must have {n} values, got shape {values.shape}")
    return xr.Dataset(data, coords={dim: values})

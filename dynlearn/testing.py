"""Conformance kit for plugin authors: does a System / Analyzer honour the contracts?

One line in a pytest file checks a plugin::

    from dynlearn.testing import check_system
    def test_my_system():
        check_system(MySystem)

or, one test per check (a failure names its check)::

    @pytest.mark.parametrize("check", system_checks(MySystem), ids=lambda c: c.__name__)
    def test_my_system(check):
        check()

Every check raises ``AssertionError`` with a message naming the plugin and the broken rule.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from .analyzer import Analyzer
from .errors import ParameterError, ShapeError
from .system import System, TrainableSystem

__all__ = ["check_system", "system_checks", "check_analyzer", "analyzer_checks"]


def _instance(system: System | type[System] | str) -> System:
    if isinstance(system, System):
        return system
    if isinstance(system, str):
        from .plugins import make_system

        return make_system(system)
    return system()


def _fail(sys: Any, msg: str) -> AssertionError:
    return AssertionError(f"{getattr(sys, 'name', '') or type(sys).__name__}: {msg}")


def _states(sys: System, shape: tuple[int, ...], dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    n = int(np.prod(shape)) if shape else 1
    x = sys.sample_states(n, generator=g, dtype=dtype) * 0.8
    return x.reshape(*shape, sys.state_dim)


# -- System checks --------------------------------------------------------------------------------------------
def _check_metadata(sys: System) -> None:
    if not sys.name:
        raise _fail(sys, "class attribute `name` is empty")
    if not sys.description:
        raise _fail(sys, "class attribute `description` is empty (dynlearn list shows it)")
    if sys.kind not in ("flow", "map"):
        raise _fail(sys, f"kind must be 'flow' or 'map', got {sys.kind!r}")
    if sys.state_dim < 1 or len(sys.state_names) != sys.state_dim:
        raise _fail(sys, "state_names must name every state coordinate")
    lo, hi = sys.domain()
    if lo.shape != (sys.state_dim,) or not np.all(lo < hi):
        raise _fail(sys, f"domain() must give low < high of shape ({sys.state_dim},)")


def _check_params_roundtrip(sys: System) -> None:
    params = sys.get_params()
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _fail(sys, f"get_params() is not strict JSON ({exc})") from None
    rebuilt = type(sys)(**params)
    if rebuilt.get_params() != params:
        raise _fail(sys, "type(sys)(**sys.get_params()) does not rebuild the same system")


def _check_bad_params(sys: System) -> None:
    try:
        type(sys)(**{**sys.get_params(), "no_such_parameter_xyz": 1.0})
    except (ParameterError, TypeError):
        pass
    else:
        raise _fail(sys, "an unknown parameter name was accepted silently")
    for name, decl in sys.parameters.items():
        if decl.shape:
            continue
        try:
            type(sys)(**{**sys.get_params(), name: float("nan")})
        except ParameterError:
            continue
        raise _fail(sys, f"a NaN value of parameter {name!r} was accepted")


def _check_rhs_shapes(sys: System) -> None:
    for shape in [(1,), (5,), (2, 3)]:
        x = _states(sys, shape)
        p = sys.param_tensors(batch_shape=shape)
        y = sys.rhs(x, p)
        if y.shape != x.shape or y.dtype != x.dtype:
            raise _fail(sys, f"rhs maps states {tuple(x.shape)} to {tuple(y.shape)} {y.dtype}; expected same shape/dtype")
        if not torch.isfinite(y).all():
            raise _fail(sys, "rhs is not finite inside its domain")
    # parameters batched (2, 1) broadcast against states (2, 3, d)
    x = _states(sys, (2, 3))
    p = sys.expand_params(sys.param_tensors(batch_shape=(2,)))
    y = sys.rhs(x, p)
    if y.shape != x.shape:
        raise _fail(sys, "rhs does not broadcast parameters of batch shape (2, 1) against states (2, 3, d)")
    # unbatched parameters broadcast too
    y0 = sys.rhs(x, sys.param_tensors())
    if not torch.allclose(y, y0):
        raise _fail(sys, "rhs gives different results for broadcast and expanded parameters")


def _check_batch_independence(sys: System) -> None:
    x = _states(sys, (4,))
    p = sys.param_tensors(batch_shape=(4,))
    y = sys.rhs(x, p)
    for i in range(4):
        yi = sys.rhs(x[i : i + 1], {k: v[i : i + 1] for k, v in p.items()})
        if not torch.allclose(yi[0], y[i], rtol=1e-12, atol=1e-12):
            raise _fail(sys, "rhs of a batch differs from rhs of its elements (elements must be independent)")


def _check_differentiable(sys: System) -> None:
    x = _states(sys, (3,)).requires_grad_(True)
    p = {k: v.clone().requires_grad_(True) for k, v in sys.param_tensors(batch_shape=(3,)).items()}
    y = sys.rhs(x, p)
    grads = torch.autograd.grad(y.sum(), [x, *p.values()], allow_unused=True)
    if grads[0] is None or not torch.isfinite(grads[0]).all():
        raise _fail(sys, "rhs is not differentiable w.r.t. the state")


def _check_jacobian(sys: System) -> None:
    x = _states(sys, (3,))
    p = sys.param_tensors(batch_shape=(3,))
    J = sys.jacobian(x, p)
    d = sys.state_dim
    if J.shape != (3, d, d):
        raise _fail(sys, f"jacobian has shape {tuple(J.shape)}, expected (3, {d}, {d})")
    J_auto = System.jacobian(sys, x, p)
    if not torch.allclose(J, J_auto, rtol=1e-8, atol=1e-8):
        raise _fail(sys, "jacobian() disagrees with autograd of rhs()")
    h = 1e-6
    eye = torch.eye(d, dtype=x.dtype)
    fd = torch.stack([(sys.rhs(x + h * eye[j], p) - sys.rhs(x - h * eye[j], p)) / (2 * h) for j in range(d)], dim=-1)
    if not torch.allclose(J, fd, rtol=1e-5, atol=1e-5):
        raise _fail(sys, "jacobian() disagrees with central finite differences")
    v = torch.randn(3, d, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    for name, got, want in (("jvp", sys.jvp(x, p, v), (J @ v.unsqueeze(-1)).squeeze(-1)),
                            ("vjp", sys.vjp(x, p, v), (v.unsqueeze(-2) @ J).squeeze(-2))):
        if got.shape != (3, d):
            raise _fail(sys, f"{name} has shape {tuple(got.shape)}, expected (3, {d})")
        if not torch.allclose(got, want, rtol=1e-8, atol=1e-8):
            raise _fail(sys, f"{name}() disagrees with jacobian()")


def _check_state_errors(sys: System) -> None:
    try:
        sys.check_state(torch.zeros(2, sys.state_dim + 1))
    except ShapeError:
        return
    raise _fail(sys, "a state of the wrong dimension was accepted")


def _check_manifolds(sys: System) -> None:
    p = sys.param_tensors()
    for name, m in sys.manifolds().items():
        if m.valid is not None and not bool(torch.as_tensor(m.valid(p)).all()):
            continue
        x = _states(sys, (4,))
        g = m.constraint(x, p)
        if g.shape[:-1] != (4,):
            raise _fail(sys, f"manifold {name!r}: constraint must return (..., k), got {tuple(g.shape)}")
        if m.sample is not None:
            pts = m.sample(16, p, torch.Generator().manual_seed(0))
            if m.constraint(pts, p).abs().max() > 1e-9:
                raise _fail(sys, f"manifold {name!r}: sampled points do not satisfy its constraint")
            img = sys.rhs(pts, p) if sys.kind == "map" else None
            if img is not None and torch.isfinite(img).all():
                res = m.constraint(img, p).abs().max()
                if res > 1e-8:
                    raise _fail(sys, f"manifold {name!r} is not invariant under the map (residual {float(res):.2e})")


def _check_trainable(sys: System) -> None:
    if not isinstance(sys, TrainableSystem):
        return
    seeds = torch.tensor([0, 1, 0])
    hp = {k: torch.full((3,), float(d.default), dtype=torch.float64) for k, d in sys.hyper.items()}
    theta = sys.init(seeds, hp)
    for name in sys.parameters:
        if name not in theta:
            raise _fail(sys, f"init() does not return parameter {name!r}")
        want = (3, *sys.event_shape(name))
        if tuple(theta[name].shape) != want:
            raise _fail(sys, f"init()[{name!r}] has shape {tuple(theta[name].shape)}, expected {want}")
    for name, v in theta.items():
        if not torch.equal(v[0], v[2]):
            raise _fail(sys, f"init() is not a function of the seed alone ({name!r} differs for equal seeds)")
    theta = {k: v.to(torch.float64) for k, v in theta.items()}
    loss, grads, metrics = sys.evaluate(theta, hp)
    if loss.shape != (3,):
        raise _fail(sys, f"loss must have shape (B,) = (3,), got {tuple(loss.shape)}")
    for name, g in grads.items():
        if g.shape != theta[name].shape:
            raise _fail(sys, f"gradient of {name!r} has shape {tuple(g.shape)}, expected {tuple(theta[name].shape)}")
    for m in sys.metric_attrs:
        if m not in metrics or metrics[m].shape != (3,):
            raise _fail(sys, f"metric {m!r} declared in metric_attrs but not returned with shape (B,)")
    loss1, grads1, _ = sys.evaluate({k: v[1:2] for k, v in theta.items()}, {k: v[1:2] for k, v in hp.items()})
    if not torch.allclose(loss1[0], loss[1], rtol=1e-10, atol=1e-12, equal_nan=True):
        raise _fail(sys, "the loss of one network depends on the other networks of the batch")
    for name in grads:
        if not torch.allclose(grads1[name][0], grads[name][1], rtol=1e-8, atol=1e-10, equal_nan=True):
            raise _fail(sys, f"the gradient of {name!r} of one network depends on the other networks of the batch")


SYSTEM_CHECKS: tuple[Callable[[System], None], ...] = (
    _check_metadata,
    _check_params_roundtrip,
    _check_bad_params,
    _check_rhs_shapes,
    _check_batch_independence,
    _check_differentiable,
    _check_jacobian,
    _check_state_errors,
    _check_manifolds,
    _check_trainable,
)


def _named_checks(checks, args) -> list[Callable[[], None]]:
    """Zero-argument callables ``check(*args())``, each named after its check (for ``pytest.mark.parametrize``)."""
    out = []
    for chk in checks:
        fn = functools.partial(lambda c: c(*args()), chk)
        fn.__name__ = chk.__name__.lstrip("_")  # type: ignore[attr-defined]
        out.append(fn)
    return out


def system_checks(system: System | type[System] | str) -> list[Callable[[], None]]:
    """One zero-argument callable per check (for ``pytest.mark.parametrize``), named after the check."""
    return _named_checks(SYSTEM_CHECKS, lambda: (_instance(system),))


def check_system(system: System | type[System] | str) -> None:
    """Run every System check; raises ``AssertionError`` naming the first broken rule."""
    sys = _instance(system)
    for chk in SYSTEM_CHECKS:
        chk(sys)


# -- Analyzer checks ------------------------------------------------------------------------------------------
def _default_target(an: Analyzer) -> tuple[System, xr.Dataset]:
    from .sweep import grid
    from .plugins import make_system

    if "flow" in an.kinds:
        sys = make_system({"name": "hopf"})
        return sys, grid(mu=[-0.5, -0.3], omega=[1.0, 1.5, 2.0])
    sys = make_system({"name": "two_factor"})
    return sys, grid(mu=[0.3, 0.6, 1.2])


def _check_analyzer_metadata(an: Analyzer, target) -> None:
    if not an.name or not an.description:
        raise _fail(an, "class attributes `name` and `description` must be set")
    params = an.get_params()
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _fail(an, f"get_params() is not strict JSON ({exc})") from None
    if type(an)(**params).get_params() != params:
        raise _fail(an, "type(a)(**a.get_params()) does not rebuild the same analyzer")


def _check_analyzer_output(an: Analyzer, target) -> None:
    system, params = target
    out = an.run(system, params)
    if not isinstance(out, xr.Dataset):
        raise _fail(an, f"run() must return an xr.Dataset, got {type(out).__name__}")
    from .sweep import flatten

    dims = flatten(system, params).dims
    for d in dims:
        if d not in out.dims:
            raise _fail(an, f"output lost the sweep dim {d!r}")
        if d in params.coords and not np.array_equal(out[d].values, params[d].values):
            raise _fail(an, f"output coordinate {d!r} differs from the input's")
    for name, var in out.data_vars.items():
        if "long_name" not in var.attrs:
            raise _fail(an, f"output variable {name!r} has no long_name attr (every number is labeled data)")
    for key in ("dynlearn_analyzer", "analyzer_config", "system_config"):
        if key not in out.attrs:
            raise _fail(an, f"output is missing the provenance attr {key!r}")


def _check_analyzer_deterministic(an: Analyzer, target) -> None:
    system, params = target
    a = an.run(system, params)
    b = an.run(system, params)
    try:
        xr.testing.assert_identical(a, b)
    except AssertionError:
        raise _fail(an, "two runs on the same input give different results (seed your randomness)") from None


def _check_analyzer_store(an: Analyzer, target) -> None:
    from .store import create_store, open_store, write_group

    system, params = target
    out = an.run(system, params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        create_store(path, {}, {"config": {}})
        write_group(path, an.name, out)
        back = open_store(path)[an.name].to_dataset()
        for name in out.data_vars:
            if name not in back.data_vars:
                raise _fail(an, f"variable {name!r} did not survive a store round trip")


ANALYZER_CHECKS = (_check_analyzer_metadata, _check_analyzer_output, _check_analyzer_deterministic, _check_analyzer_store)


def analyzer_checks(
    analyzer: Analyzer | type[Analyzer] | str,
    system: System | str | Mapping[str, Any] | None = None,
    params: xr.Dataset | None = None,
) -> list[Callable[[], None]]:
    """One zero-argument callable per analyzer check (for ``pytest.mark.parametrize``)."""
    return _named_checks(ANALYZER_CHECKS, lambda: _analyzer_args(analyzer, system, params))


def _analyzer_args(analyzer, system, params):
    from .plugins import make_analyzer
    from .plugins import make_system

    an = analyzer if isinstance(analyzer, Analyzer) else make_analyzer(analyzer) if isinstance(analyzer, str) else analyzer()
    if system is None:
        target = _default_target(an)
    else:
        sys = system if isinstance(system, System) else make_system(system)
        target = (sys, params)
    return an, target


def check_analyzer(
    analyzer: Analyzer | type[Analyzer] | str,
    system: System | str | Mapping[str, Any] | None = None,
    params: xr.Dataset | None = None,
) -> None:
    """Run every Analyzer check on ``system`` over the sweep ``params`` (default: a small 2-D sweep).

    Checks: metadata and ``get_params`` round trip; the output keeps every sweep dim with its coordinates,
    labels every variable (``long_name``) and carries provenance; two runs agree exactly; the result survives
    a zarr store round trip.
    """
    an, target = _analyzer_args(analyzer, system, params)
    for chk in ANALYZER_CHECKS:
        chk(an, target)

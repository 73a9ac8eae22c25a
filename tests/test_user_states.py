"""Array options (``Param(kind="array")``) and user states (``_shared.states.user_states``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn.errors import ParameterError, ShapeError, UnknownNameError
from dynlearn.params import Param, array_summary, resolve_options
from dynlearn.sweep import flatten, grid
from dynlearn_builtins.analyzers._shared.states import user_states

DECLS = {"states": Param(None, kind="array", nullable=True, description="user states")}


@pytest.mark.parametrize("value", [np.ones((3, 2)), torch.ones(3, 2, dtype=torch.float64), [[1, 1], [1, 1.0], [1, 1]]],
                         ids=["numpy", "torch", "lists"])
def test_array_option_accepts_array_likes(value):
    got = resolve_options("analyzer 'x'", DECLS, {"states": value}).states
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (3, 2)
    np.testing.assert_array_equal(got, np.ones((3, 2)))


def test_array_option_keeps_dataarray_and_default_none():
    da = xr.DataArray(np.arange(6).reshape(3, 2), dims=("sample", "state"))
    got = resolve_options("analyzer 'x'", DECLS, {"states": da}).states
    assert isinstance(got, xr.DataArray) and got.dims == ("sample", "state") and got.dtype == np.float64
    assert resolve_options("analyzer 'x'", DECLS, {}).states is None


@pytest.mark.parametrize("value, message", [
    ([[0.0, np.nan]], "has 1 NaN or infinite value (first at index (0, 1))"),
    (xr.DataArray([[0.0, np.inf]], dims=("sample", "state")), "NaN or infinite"),
    ("abc", "must be a numeric array"),
    ([[1.0], [1.0, 2.0]], "ragged or non-numeric"),
    (np.array([1 + 1j]), "dtype complex128"),
    (True, "got bool"),
    ([], "is empty"),
], ids=["nan", "inf-dataarray", "string", "ragged", "complex", "bool", "empty"])
def test_array_option_bad_values(value, message):
    with pytest.raises(ParameterError, match="option 'states'") as exc:
        resolve_options("analyzer 'x'", DECLS, {"states": value})
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_config_records_digest_not_numbers():
    states = np.random.default_rng(0).normal(size=(50, 2))
    class WithStates(dynlearn.Analyzer):
        name = "with_states"
        options = DECLS

    fp = WithStates(states=states)
    cfg = fp.to_config()["states"]
    assert cfg["shape"] == [50, 2] and cfg["dims"] is None and len(cfg["sha256"]) == 64
    json.dumps(fp.to_config(), allow_nan=False)  # strict JSON
    assert array_summary(states + 1e-12)["sha256"] != cfg["sha256"]
    assert array_summary(states.tolist()) == cfg
    da = xr.DataArray(states, dims=("sample", "state"))
    assert array_summary(da)["dims"] == ["sample", "state"]
    assert array_summary(da.assign_coords(state=["x", "y"]))["sha256"] != array_summary(da)["sha256"]


@pytest.fixture
def batch():
    system = dynlearn.get_system("two_factor")()
    return flatten(system, grid(mu=[0.8, 1.0, 1.2]))


def test_same_states_for_every_element(batch):
    states = np.array([[0.5, 2.0], [1.0, 1.0]])
    out = user_states(states, batch, batch.system)
    assert out.shape == (3, 2, 2) and out.dtype == torch.float64
    for b in range(3):
        np.testing.assert_array_equal(out[b].numpy(), states)
    assert user_states([0.5, 2.0], batch, batch.system).shape == (3, 1, 2)  # one state


def test_dataarray_per_element_matched_by_coordinate(batch):
    mu = np.array([1.2, 0.8, 1.0])  # another order than the batch's
    data = np.stack([np.full((4, 2), m) for m in mu])
    da = xr.DataArray(data, dims=("mu", "sample", "state"), coords={"mu": mu, "state": ["a", "b"]})
    out = user_states(da, batch, batch.system)
    assert out.shape == (3, 4, 2)
    np.testing.assert_array_equal(out[:, 0, 0].numpy(), [0.8, 1.0, 1.2])
    # state names reordered to the system's order
    swapped = da.isel(state=[1, 0]).copy(data=np.stack([np.stack([np.full(4, 9.0), np.full(4, m)], 1) for m in mu]))
    out = user_states(swapped, batch, batch.system)
    np.testing.assert_array_equal(out[:, 0].numpy(), [[0.8, 9.0], [1.0, 9.0], [1.2, 9.0]])


def test_dataarray_broadcast_over_missing_sweep_dims():
    system = dynlearn.get_system("two_factor")()
    batch = flatten(system, xr.Dataset(coords={"mu": [0.8, 1.2], "seed": [0, 1, 2]}).assign(
        mu=lambda ds: ds.mu * xr.ones_like(ds.seed)), strict=False)
    assert batch.dims == ("mu", "seed")
    da = xr.DataArray(np.arange(3 * 2.0).reshape(3, 2), dims=("seed", "state"))  # one state per seed
    out = user_states(da, batch, system)
    assert out.shape == (6, 1, 2)
    np.testing.assert_array_equal(out.reshape(2, 3, 2)[1].numpy(), da.values)
    np.testing.assert_array_equal(out.reshape(2, 3, 2)[0].numpy(), da.values)


def test_noise_is_absolute_and_reproducible(batch):
    states = np.zeros((2000, 2))
    a = user_states(states, batch, batch.system, noise=0.3, generator=torch.Generator().manual_seed(1))
    b = user_states(states, batch, batch.system, noise=0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 0.3) < 0.01 and abs(float(a.mean())) < 0.01


@pytest.mark.parametrize("value, error, message", [
    (np.zeros((3, 5)), ShapeError, "5 values per state; system 'two_factor' has 2 state coordinates (a, b)"),
    (np.zeros((2, 3, 2)), ShapeError, "give per-element states as a DataArray"),
    (xr.DataArray(np.zeros((3, 2)), dims=("trial", "state")), ShapeError, "dim 'trial' is neither a sweep dim"),
    (xr.DataArray(np.zeros((3, 2)), dims=("sample", "coord")), ShapeError, "needs a 'state' dim"),
    (xr.DataArray(np.zeros((2, 1, 2)), dims=("mu", "sample", "state")), ShapeError,
     "dim 'mu' has size 2, the sweep has 3"),
    (xr.DataArray(np.zeros((3, 1, 2)), dims=("mu", "sample", "state"), coords={"mu": [0.8, 1.0, 1.3]}), ShapeError,
     "no states for mu=1.2"),
    (xr.DataArray(np.zeros((1, 2)), dims=("sample", "state"), coords={"state": ["a", "c"]}), ShapeError,
     "state names ['a', 'c'] are not the system's ['a', 'b']"),
    (np.array([[0.0, np.nan]]), ParameterError, "initial_states has 1 NaN"),
], ids=["width", "3d-array", "unknown-dim", "no-state-dim", "size", "coord-value", "state-names", "nan"])
def test_bad_states(batch, value, error, message):
    with pytest.raises(error) as exc:
        user_states(value, batch, batch.system)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_bad_noise(batch):
    with pytest.raises(ParameterError, match="noise must be a finite number >= 0"):
        user_states(np.zeros((1, 2)), batch, batch.system, noise=-1.0)


def test_koopman_samples_the_user_states():
    """With one uniform sample there is one attractor; the user's states in both basins give the two classes."""
    from dynlearn import outcome as oc
    from dynlearn_builtins.analyzers.koopman import KoopmanSeparatrix

    kw = dict(steps=50, width=8, batch_size=64, n_samples=1, n_curves=4, n_perturb=2, n_points=8, n_candidates=64,
              grid_size=0, polish=False)
    alone = KoopmanSeparatrix(**kw).run("bistable", dynlearn.grid(a=[0.0]), show_progress=False)
    assert alone.outcome.values.tolist() == [oc.SINGLE_ATTRACTOR]
    states = np.array([[-0.5, 0.0], [0.5, 0.0]])
    both = KoopmanSeparatrix(**kw, initial_states=states, initial_noise=0.01).run(
        "bistable", dynlearn.grid(a=[0.0]), show_progress=False)
    assert both.outcome.values.tolist() == [oc.OK]
    assert json.loads(both.attrs["analyzer_config"])["initial_states"]["shape"] == [2, 2]


# -- the orbit analyzers (orbits, lyapunov, transverse) and min_action ------------------------------------------
def _orbit_case(name):
    """(analyzer class, system, sweep dim, its values, fast options) of an orbit analyzer."""
    from dynlearn_builtins.analyzers.lyapunov import Lyapunov
    from dynlearn_builtins.analyzers.orbits import Orbits
    from dynlearn_builtins.analyzers.transverse import TransverseStability

    return {"orbits": (Orbits, "two_factor", "mu", [0.5, 0.8], dict(transient=40, steps=200)),
            "lyapunov": (Lyapunov, "henon", "a", [1.2, 1.4], dict(transient=20, steps=100)),
            "transverse": (TransverseStability, "two_factor", "mu", [0.5, 0.8],
                           dict(manifold="balanced", transient=20, steps=100))}[name]


ORBIT_ANALYZERS = ["orbits", "lyapunov", "transverse"]
ON_SLICE = np.array([[0.1, 0.1], [0.3, 0.3]])  # on the balanced slice a = b: the projection keeps them


@pytest.mark.parametrize("name", ORBIT_ANALYZERS)
def test_orbit_analyzers_start_from_the_user_states(name):
    cls, system, dim, values, fast = _orbit_case(name)
    out = cls(**fast, n_samples=2, initial_states=ON_SLICE).run(system, grid(**{dim: values}))
    x0 = out.initial_state.transpose(dim, "sample", "state").values
    assert x0.shape == (2, 4, 2)  # the sampled states, then the user's
    for b in range(2):
        np.testing.assert_array_equal(x0[b, 2:], ON_SLICE)
    np.testing.assert_array_equal(x0[0, :2], x0[1, :2])  # sampled: the same for every sweep element
    assert json.loads(out.attrs["analyzer_config"])["initial_states"]["shape"] == [2, 2]


@pytest.mark.parametrize("name", ORBIT_ANALYZERS)
def test_orbit_analyzers_per_element_states_and_noise(name):
    cls, system, dim, values, fast = _orbit_case(name)
    per = np.stack([ON_SLICE + 0.1, ON_SLICE - 0.1])[::-1]  # given in the reverse order of the sweep
    da = xr.DataArray(per, dims=(dim, "sample", "state"), coords={dim: values[::-1]})
    out = cls(**fast, n_samples=0, initial_states=da).run(system, grid(**{dim: values}))
    for v in values:
        np.testing.assert_array_equal(out.initial_state.sel({dim: v}).values, da.sel({dim: v}).values)
    noisy = cls(**fast, n_samples=0, initial_states=ON_SLICE, initial_noise=0.05, seed=3).run(
        system, grid(**{dim: values}))
    batch = flatten(dynlearn.get_system(system)(), grid(**{dim: values}))
    want = user_states(ON_SLICE, batch, batch.system, noise=0.05, generator=torch.Generator().manual_seed(3))
    if name == "transverse":  # projected onto the slice a = b
        want = want.mean(-1, keepdim=True).expand_as(want)
    got = noisy.initial_state.transpose(dim, "sample", "state").values
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-15)
    assert 0 < np.abs(got - ON_SLICE).max() < 0.5


@pytest.mark.parametrize("name", ORBIT_ANALYZERS + ["min_action"])
def test_user_states_bad_shape_and_none(name):
    if name == "min_action":
        from dynlearn_builtins.analyzers.min_action import MinAction
        cls, system, dim, values, fast = MinAction, "double_well", "k", [1.0], dict(n_nodes=21, max_iter=10)
    else:
        cls, system, dim, values, fast = _orbit_case(name)
    with pytest.raises(ShapeError) as exc:
        cls(**fast, initial_states=np.zeros((3, 5))).run(system, grid(**{dim: values}))
    assert "initial_states: 5 values per state" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ParameterError, match="n_samples=0 needs initial_states"):
        cls(**fast, n_samples=0).run(system, grid(**{dim: values}))


@pytest.mark.parametrize("name", ORBIT_ANALYZERS)
def test_orbit_analyzers_have_no_states_option(name):
    """The removed alias ``states`` is an unknown option whose message lists ``initial_states``."""
    cls = _orbit_case(name)[0]
    with pytest.raises(UnknownNameError, match=f"analyzer '{name}' has no option 'states'") as exc:
        cls(states=ON_SLICE)
    assert str(exc.value).endswith("did you mean 'initial_states'?") and "\n" not in str(exc.value)


def test_orbits_refinement_starts_from_the_lower_neighbours_state():
    """mu = 0.3 from z = 0.1 converges, mu = 0.4 from z = 5 diverges: the bracket's orbits start from the lower
    neighbour's state (0.1) and all converge, so the transition is at the upper end (from 5: at the lower end)."""
    from dynlearn_builtins.analyzers.orbits import Orbits

    da = xr.DataArray([[[0.1, 0.1]], [[5.0, 5.0]]], dims=("mu", "sample", "state"), coords={"mu": [0.3, 0.4]})
    out = Orbits(n_samples=0, initial_states=da, transient=40, steps=200, refine_dim="mu", refine_tol=1e-3).run(
        "two_factor", grid(mu=[0.3, 0.4]))
    assert out.transition_sample.values.tolist() == [0]
    assert 0.4 - 1e-3 <= float(out.transition_low[0]) < float(out.transition_high[0]) <= 0.4


def test_min_action_searches_attractors_from_the_user_states():
    """n_samples=0: one state in each well -> a path between them; both states in one well -> single_attractor."""
    from dynlearn import outcome as oc
    from dynlearn_builtins.analyzers.min_action import MinAction

    kw = dict(n_nodes=21, max_iter=2000, n_samples=0)
    wells = np.array([[-1.1, 0.1], [0.9, -0.1]])
    out = MinAction(**kw, initial_states=wells, initial_noise=0.05).run("double_well", grid(k=[1.0]))
    assert out.outcome.values.tolist() == [oc.OK]
    np.testing.assert_allclose(out.endpoints.sel(k=1.0).values, [[-1.0, 0.0], [1.0, 0.0]], atol=1e-8)
    per = xr.DataArray(np.stack([wells, np.abs(wells)]), dims=("k", "sample", "state"), coords={"k": [1.0, 2.0]})
    out = MinAction(**kw, initial_states=per).run("double_well", grid(k=[1.0, 2.0]))
    assert out.outcome.values.tolist() == [oc.OK, oc.SINGLE_ATTRACTOR]

"""Core contracts: parameters, sweeps (flatten / to_xarray), simulation outcomes, jacobians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn import outcome as oc
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.simulate import simulate
from dynlearn.sweep import flatten, grid

f64 = torch.float64


class Ring(dynlearn.MapSystem):
    """A map with a vector parameter (own dim ``unit``) to exercise event dims."""

    name = "ring_test"
    description = "x -> tanh(w x + b) elementwise (test)"
    state_names = ("u0", "u1", "u2")
    parameters = {"w": dynlearn.Param(0.5, shape=("unit",)), "b": dynlearn.Param(0.0)}

    def dim_sizes(self):
        return {"unit": 3}

    def rhs(self, x, p):
        return torch.tanh(p["w"] * x + p["b"][..., None])


@pytest.mark.parametrize("values,pattern", [
    ({"mu": float("nan")}, "parameter 'mu' is NaN"),
    ({"mu": -1.0}, "parameter 'mu' must be > 0, got -1.0"),
    ({"mu": 0.0}, "parameter 'mu' must be > 0, got 0.0"),
    ({"nu": 1.0}, "has no parameter 'nu'; its parameters are: mu"),
    ({"mu": "big"}, "must be a number"),
], ids=["nan", "negative", "zero", "unknown", "string"])
def test_bad_parameters_are_one_line_errors(values, pattern):
    with pytest.raises(ParameterError, match=pattern):
        dynlearn.get_system("two_factor")(**values)


def test_grid_and_flatten_roundtrip():
    tf = dynlearn.get_system("hopf")()
    b = flatten(tf, grid(mu=[-1.0, 0.0, 1.0], omega=[1.0, 2.0]))
    assert b.dims == ("mu", "omega") and b.shape == (3, 2) and b.size == 6
    assert torch.equal(b.params["mu"], torch.tensor([-1.0, -1, 0, 0, 1, 1], dtype=f64))
    da = b.to_xarray(b.params["mu"] * b.params["omega"], name="prod", attrs={"long_name": "mu * omega"})
    xr.testing.assert_equal(da, (da["mu"] * da["omega"]).rename("prod"))
    assert [sl for sl, _ in b.chunks(4)] == [slice(0, 4), slice(4, 6)]


def test_flatten_event_dims_and_defaults():
    ring = Ring()
    ds = xr.Dataset({"w": (("epoch", "unit"), np.arange(6.0).reshape(2, 3))}, coords={"epoch": [10, 20]})
    b = flatten(ring, ds)
    assert b.dims == ("epoch",) and b.params["w"].shape == (2, 3) and b.params["b"].shape == (2,)
    x = torch.ones(2, 3, dtype=f64)
    out = b.to_xarray(ring.rhs(x, b.params), dims=("state",))
    assert out.dims == ("epoch", "state") and out["epoch"].values.tolist() == [10, 20]
    with pytest.raises(ShapeError, match="dim 'unit' has size 2, expected 3"):
        flatten(ring, xr.Dataset({"w": (("unit",), [1.0, 2.0])}))


def test_flatten_nan_raise_names_location_and_mask_labels_it():
    sys = dynlearn.get_system("saddle_node")()
    ds = xr.Dataset({"r": (("epoch", "seed"), [[0.1, 0.2], [np.nan, 0.3]])}, coords={"epoch": [0, 5], "seed": [7, 8]})
    with pytest.raises(ParameterError, match=r"parameter 'r' is NaN or infinite at epoch=5, seed=7"):
        flatten(sys, ds)
    b = flatten(sys, ds, on_nan="mask")
    assert b.valid.tolist() == [True, True, False, True]
    assert torch.isfinite(b.params["r"]).all()


def test_flatten_rejects_conflicting_sizes():
    sys = dynlearn.get_system("hopf")()
    params = {"mu": xr.DataArray([1.0, 2.0], dims="k"), "omega": xr.DataArray([1.0, 2.0, 3.0], dims="k")}
    with pytest.raises(ShapeError, match="parameters do not fit together: .*dimension 'k'"):
        flatten(sys, params)


def test_map_divergence_is_a_labeled_outcome():
    tf = dynlearn.get_system("two_factor")(mu=1.0)
    x0 = torch.tensor([[0.5, 0.5], [3.0, 3.0], [np.nan, 0.0]], dtype=f64)
    tr = simulate(tf, x0, steps=50)
    assert oc.labels(tr.outcome).tolist() == ["ok", "diverged", "nan"]
    assert torch.isfinite(tr.final[:2]).all()  # frozen at the last finite state
    assert tr.x.shape == (51, 3, 2)


def test_flow_blowup_is_a_labeled_outcome():
    sn = dynlearn.get_system("saddle_node")()
    p = {"r": torch.tensor([1.0, -1.0], dtype=f64)}
    tr = simulate(sn, torch.zeros(2, 1, dtype=f64), p, t=torch.linspace(0, 3, 301))
    assert oc.labels(tr.outcome).tolist() == ["diverged", "ok"]
    assert abs(float(tr.final[1, 0]) + np.tanh(3.0)) < 1e-6  # x = -tanh t -> the stable node -sqrt(-r)


def test_simulate_input_errors():
    tf = dynlearn.get_system("two_factor")()
    with pytest.raises(ShapeError, match="state dim 2"):
        simulate(tf, torch.zeros(4, 3), steps=1)
    with pytest.raises(ParameterError, match="needs steps"):
        simulate(tf, torch.zeros(4, 2))
    with pytest.raises(ParameterError, match="needs the output times"):
        simulate(dynlearn.get_system("hopf")(), torch.zeros(4, 2))


def test_generic_jacobian_matches_closed_form():
    tf = dynlearn.get_system("two_factor")(mu=0.7)
    x = torch.randn(5, 4, 2, dtype=f64)
    p = tf.param_tensors((5, 4))
    torch.testing.assert_close(dynlearn.System.jacobian(tf, x, p), tf.jacobian(x, p), rtol=1e-14, atol=1e-14)


def test_expand_params_broadcasts_states_per_sweep_entry():
    ring = Ring()
    p = ring.param_tensors((4,))
    pe = ring.expand_params(p, 1)
    assert pe["w"].shape == (4, 1, 3) and pe["b"].shape == (4, 1)
    assert ring.rhs(torch.zeros(4, 7, 3, dtype=f64), pe).shape == (4, 7, 3)


def test_get_params_roundtrip_rebuilds():
    sn = dynlearn.get_system("saddle_node")(form="numeric", r=0.5, task={"T": 10.0})
    again = dynlearn.make_system(sn.to_config())
    assert again.get_params() == sn.get_params() and again.task.T == 10.0

"""Low-rank RNN system (``rnn``) and its latent circuit (``rnn_latent``): conformance, exact facts, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn.errors import ConfigError, ParameterError
from dynlearn.testing import check_system
from dynlearn_builtins.systems.rnn import LatentCircuit, LowRankRNN

F64 = torch.float64


def hp_for(rnn: LowRankRNN, ranks, c=10.0, lr=0.02) -> dict[str, torch.Tensor]:
    rank = torch.as_tensor(ranks, dtype=F64).reshape(-1)
    B = rank.shape[0]
    return {"lr": torch.full((B,), lr, dtype=F64), "c": torch.full((B,), c, dtype=F64), "rank": rank,
            "c_low": torch.ones(B, dtype=F64)}


def perturbed(rnn: LowRankRNN, seeds, hp, b_scale=0.3) -> dict[str, torch.Tensor]:
    """Initial parameters with a random bias, so every term of the gradient is exercised."""
    theta = rnn.init(torch.as_tensor(seeds), hp)
    g = torch.Generator().manual_seed(1)
    theta["b"] = b_scale * torch.randn(theta["b"].shape, generator=g, dtype=F64)
    return theta


# -- conformance ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("system", [
    LowRankRNN(n_neurons=12),
    LowRankRNN(n_neurons=12, max_rank=3, readout="linear", loss_rule="trapezoid"),
    LatentCircuit(n_neurons=8, rank=1),
    LatentCircuit(n_neurons=8, rank=3, form="map"),
], ids=["rnn-rank1-latent", "rnn-rank3-linear", "latent-flow-K1", "latent-map-K3"])
def test_conformance(system):
    check_system(system)


def test_registered_under_entry_point_names():
    assert dynlearn.get_system("rnn") is LowRankRNN
    assert dynlearn.get_system("rnn_latent") is LatentCircuit


# -- exact gradients ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, ranks", [
    ({}, [1, 1, 1]),
    ({"loss_rule": "trapezoid"}, [1, 1]),
    ({"max_rank": 3}, [1, 2, 3]),
    ({"max_rank": 1, "readout": "linear"}, [1, 1]),
    ({"max_rank": 4, "readout": "linear"}, [4, 1, 2]),
    ({"max_rank": 20, "readout": "linear", "init_scale": 0.5}, [20, 5]),
], ids=["rank1-latent", "rank1-trapezoid", "masked-rank3-latent", "rank1-linear", "masked-rank4-linear", "full-rank"])
def test_handwritten_gradient_equals_autograd_of_full_network(kwargs, ranks):
    """The kernels' BPTT through the latent recursion equals autograd through the N-dimensional network."""
    rnn = LowRankRNN(n_neurons=20, **kwargs)
    hp = hp_for(rnn, ranks)
    theta = perturbed(rnn, list(range(len(ranks))), hp)
    loss, grads, metrics = rnn.evaluate(theta, hp)
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    ref = rnn.loss(leaves, hp)
    ref_grads = torch.autograd.grad(ref.sum(), list(leaves.values()))
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-14)
    for (name, _), g in zip(leaves.items(), ref_grads):
        torch.testing.assert_close(grads[name], g, rtol=1e-9, atol=1e-12 * float(g.abs().max()))
    # accuracy: fraction of the 2T/dt output steps right
    _, out = rnn.simulate_network(theta, hp)
    want = ((out[:, 1:] > 0.5) == (rnn.task.target(F64)[1:] > 0.5)).to(F64).mean(-1)
    torch.testing.assert_close(metrics["accuracy"], want, rtol=0, atol=0)


def test_masked_components_get_zero_gradient():
    rnn = LowRankRNN(n_neurons=15, max_rank=4)
    hp = hp_for(rnn, [2, 4])
    theta = perturbed(rnn, [0, 1], hp)
    _, grads, _ = rnn.evaluate(theta, hp)
    assert torch.all(grads["m"][0, :, 2:] == 0) and torch.all(grads["n"][0, 2:] == 0)
    assert torch.all(theta["m"][0, :, 2:] == 0) and torch.all(theta["n"][0, 2:] == 0)
    assert grads["m"][1, :, 2:].abs().max() > 0


# -- latent circuit = projection of the network (DESIGN.md §3.2) --------------------------------------------------
@pytest.mark.parametrize("rank", [1, 3], ids=["K1", "K3"])
def test_latent_trajectory_equals_projection_of_full_network(rank):
    """kappa[t] iterated by rnn_latent (map form) equals N x[t] of the full network, for an arbitrary x(0)."""
    N, steps = 30, 40
    rnn = LowRankRNN(n_neurons=N, max_rank=rank)
    hp = hp_for(rnn, [rank] * 3)
    theta = perturbed(rnn, [0, 1, 2], hp)
    theta["m"] = 2.0 * theta["m"]  # a strongly nonlinear regime
    p_full = {k: theta[k] for k in ("m", "n", "b")}
    g = torch.Generator().manual_seed(7)
    x = torch.rand(3, N, generator=g, dtype=F64) * 2 - 1  # not in the span of anything
    latent = LatentCircuit(n_neurons=N, rank=rank, form="map")
    kappa = (theta["n"] @ x.unsqueeze(-1)).squeeze(-1)
    err = 0.0
    for _ in range(steps):
        x = rnn.rhs(x, p_full)
        kappa = latent.rhs(kappa, p_full)
        err = max(err, float((kappa - (theta["n"] @ x.unsqueeze(-1)).squeeze(-1)).abs().max()))
    assert err < 1e-13
    assert float(kappa.abs().max()) > 0.1  # a non-trivial trajectory


def test_training_kernel_latents_equal_projection():
    """The latents the training kernel computes (sigmoid rewrite, shifted variable) equal N x(t) of the network."""
    rnn = LowRankRNN(n_neurons=25, max_rank=2, readout="linear")
    hp = hp_for(rnn, [2, 1])
    theta = perturbed(rnn, [3, 4], hp)
    z = rnn.latent_trajectory(theta, hp)  # (S+1, B, K+1)
    X, out = rnn.simulate_network(theta, hp)
    proj = torch.einsum("bkn,tbn->tbk", theta["n"], X)
    torch.testing.assert_close(z[..., :2], proj, rtol=0, atol=1e-13)
    torch.testing.assert_close(z[..., 2], (X * theta["w_out"]).sum(-1), rtol=0, atol=1e-13)
    torch.testing.assert_close(rnn.outputs(theta, hp), out, rtol=0, atol=1e-14)


def test_latent_flow_and_map_forms_agree():
    """map(kappa) = kappa + dt * flow(kappa): the map is the Euler step of tau dkappa/dt = -kappa + N tanh(M kappa + b)."""
    flow = LatentCircuit(n_neurons=10, rank=2, form="flow")
    step = LatentCircuit(n_neurons=10, rank=2, form="map")
    g = torch.Generator().manual_seed(3)
    p = {"m": torch.randn(4, 10, 2, generator=g, dtype=F64), "n": torch.randn(4, 2, 10, generator=g, dtype=F64),
         "b": torch.randn(4, 10, generator=g, dtype=F64)}
    k = torch.rand(4, 2, generator=g, dtype=F64) * 30 - 15
    torch.testing.assert_close(step.rhs(k, p), k + flow.dt * flow.rhs(k, p), rtol=1e-14, atol=1e-13)
    assert flow.kind == "flow" and step.kind == "map"
    assert flow.domain()[0].tolist() == [-15.0, -15.0]


# -- initialisation ------------------------------------------------------------------------------------------------
def test_init_is_a_function_of_the_seed_only():
    rnn = LowRankRNN(n_neurons=40, max_rank=5)
    seeds = torch.tensor([3, 3, 3, 4])
    hp = hp_for(rnn, [5, 5, 2, 5], lr=0.5)
    hp["lr"] = torch.tensor([0.001, 0.5, 0.01, 0.001], dtype=F64)
    th = rnn.init(seeds, hp)
    assert torch.equal(th["m"][0], th["m"][1]) and torch.equal(th["n"][0], th["n"][1])
    # the rank-2 network of seed 3 is the first two components of the rank-5 one
    assert torch.equal(th["m"][2, :, :2], th["m"][0, :, :2]) and torch.all(th["m"][2, :, 2:] == 0)
    assert not torch.equal(th["m"][0], th["m"][3])
    # independent of max_rank, and of the paper's scale N(0, 1/N), b = 0
    th1 = LowRankRNN(n_neurons=40, max_rank=1).init(torch.tensor([3]), {"rank": torch.ones(1)})
    assert torch.equal(th1["m"][0, :, 0], th["m"][0, :, 0]) and torch.equal(th1["n"][0, 0], th["n"][0, 0])
    assert torch.all(th["b"] == 0)
    big = LowRankRNN(n_neurons=400).init(torch.arange(5), {"rank": torch.ones(5)})
    std = float(big["m"].std() * np.sqrt(400))
    assert 0.95 < std < 1.05


# -- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"n_neurons": 10, "max_rank": 11}, r"max_rank \(K\) must be in \[1, 10\]"),
    ({"max_rank": 0}, r"max_rank \(K\) must be in"),
    ({"n_neurons": 2.5}, "n_neurons must be an integer"),
    ({"readout": "softmax"}, "readout must be"),
    ({"dt": 20.0}, "dt/tau must be <= 1"),
    ({"task": {"T": 100.0, "dt": 1.0}}, "must equal the Euler step"),
    ({"x0": float("nan")}, "x0 must be a finite number"),
    ({"loss_rule": "simpson"}, "loss_rule"),
], ids=["K>N", "K<1", "N-float", "readout", "dt>tau", "task-dt", "x0-nan", "loss-rule"])
def test_invalid_options_raise_one_line_errors(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        LowRankRNN(**kwargs)


def test_invalid_rank_hyper_is_a_config_error():
    rnn = LowRankRNN(n_neurons=10, max_rank=3)
    with pytest.raises(ConfigError, match="rank"):
        dynlearn.train(rnn, epochs=2, sweep={"rank": [1, 4]})
    with pytest.raises(ParameterError, match="rank must be an integer"):
        dynlearn.train(rnn, epochs=2, sweep={"rank": [1.5]})


# -- failures are labeled data -----------------------------------------------------------------------------------------
def test_nan_weights_stay_in_their_network():
    rnn = LowRankRNN(n_neurons=20)
    hp = hp_for(rnn, [1, 1, 1])
    theta = perturbed(rnn, [0, 1, 2], hp)
    theta["n"][1, 0, 3] = float("nan")
    loss, grads, metrics = rnn.evaluate(theta, hp)
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2]]).all()
    alone, _, _ = rnn.evaluate({k: v[[0, 2]] for k, v in theta.items()}, {k: v[[0, 2]] for k, v in hp.items()})
    torch.testing.assert_close(loss[[0, 2]], alone, rtol=0, atol=0)


def test_diverging_and_nan_networks_are_labeled_outcomes():
    """Weights pushed past max_norm are 'diverged'; the other networks of the batch train on unaffected."""
    rnn = LowRankRNN(n_neurons=20, max_rank=2, readout="linear")
    run = dynlearn.train(rnn, epochs=60, seeds=2, sweep={"lr": [0.02, 1e4]}, max_norm=50.0)
    outcome = run.tree["train"]["outcome"]
    assert outcome.sel(lr=0.02).values.tolist() == ["ok", "ok"]
    assert set(outcome.sel(lr=1e4).values.tolist()) == {"diverged"}
    assert (run.tree["train"]["outcome_epoch"].sel(lr=1e4) >= 0).all()
    ok = run.tree["train"]["loss"].sel(lr=0.02)
    assert np.isfinite(ok.values).all()


# -- batching ------------------------------------------------------------------------------------------------------------
BATCH_KW = dict(epochs=40, dtype="float64", checkpoint_every=10)


@pytest.fixture(scope="module")
def batched_run():
    rnn = LowRankRNN(n_neurons=16, max_rank=3, readout="linear")
    return rnn, dynlearn.train(rnn, seeds=[0, 5], sweep={"lr": [0.05, 0.3], "rank": [1, 3]}, **BATCH_KW)


@pytest.mark.parametrize("seed, lr, rank", [(0, 0.05, 1), (5, 0.3, 3), (5, 0.05, 3)],
                         ids=["seed0-lr0.05-rank1", "seed5-lr0.3-rank3", "seed5-lr0.05-rank3"])
def test_batched_training_equals_each_network_alone(batched_run, seed, lr, rank):
    """float64: seeds x lr x rank trained as one batch give, per network, the run of that network alone."""
    rnn, run = batched_run
    loss = run.tree["train"]["loss"].sel(seed=seed, lr=lr, rank=rank)
    alone = dynlearn.train(rnn, seeds=[seed], hyper={"lr": lr, "rank": rank}, **BATCH_KW)
    np.testing.assert_allclose(alone.tree["train"]["loss"].values[:, 0], loss.values, rtol=1e-10, atol=0)
    # batched GEMMs may block differently for 1 and for 8 networks: agreement to rounding, not bitwise
    np.testing.assert_allclose(alone.tree["params"]["m"].values[:, 0],
                               run.tree["params"]["m"].sel(seed=seed, lr=lr, rank=rank).values, rtol=1e-10,
                               atol=1e-13)
    assert float(loss.isel(epoch=-1)) < float(loss.isel(epoch=0))  # it trains


def test_dynamics_dataset_maps_a_run_to_its_latent_circuit():
    rnn = LowRankRNN(n_neurons=20, max_rank=2, readout="linear", latent_form="map")
    run = dynlearn.train(rnn, epochs=20, seeds=2, sweep={"rank": [1, 2]}, checkpoint_every=10, dtype="float64")
    from dynlearn.api import resolve_target
    from dynlearn.sweep import flatten

    system, params, on_nan = resolve_target(run.tree)
    assert isinstance(system, LatentCircuit) and system.kind == "map" and on_nan == "mask"
    assert set(params.data_vars) == {"m", "n", "b"}
    batch = flatten(system, params, on_nan=on_nan)
    assert batch.dims == ("epoch", "seed", "rank") and system.state_dim == 2
    # one latent step of every stored network = its projected network step
    x = torch.full((batch.size, 20), -0.3, dtype=F64)
    p = batch.params
    kappa = (p["n"] @ x.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(system.rhs(kappa, p), (p["n"] @ rnn.rhs(x, p).unsqueeze(-1)).squeeze(-1),
                               rtol=1e-14, atol=1e-14)


def test_run_records_accuracy_and_labels():
    rnn = LowRankRNN(n_neurons=20)
    run = dynlearn.train(rnn, epochs=5, seeds=2)
    acc = run.tree["train"]["accuracy"]
    assert acc.dims == ("epoch", "seed") and "long_name" in acc.attrs
    assert np.all((acc.values >= 0) & (acc.values <= 1))
    params = run.tree["params"]
    assert params["m"].dims == ("epoch", "seed", "neuron", "latent")
    assert params["n"].dims == ("epoch", "seed", "latent", "neuron")
    assert all("long_name" in params[v].attrs for v in params.data_vars)


def test_an_analyzer_runs_unchanged_on_the_latent_circuit_of_a_run():
    """The fixed-point analyzer on a training run sees rnn_latent at every stored epoch. Exact fact: with
    sum|n| < 15, f(-15) > 0 > f(15), so the flow has a fixed point in the paper's window [-15, 15]."""
    rnn = LowRankRNN(n_neurons=30)
    run = dynlearn.train(rnn, epochs=20, seeds=2, sweep={"lr": [0.02, 0.5]}, checkpoint_every=10, dtype="float64")
    n = run.tree["params"]["n"]
    assert float(abs(n).sum("neuron").max()) < 15
    out = dynlearn.get_analyzer("fixed_points")(n_starts=16).run(run.tree)
    assert {"epoch", "seed", "lr"} <= set(out.dims)
    assert (out["n_fixed"] >= 1).all()
    pos = out["position"].isel(point=0).sel(state="kappa")
    p = run.tree["params"].to_dataset()
    f = -pos + (np.tanh(pos * p["m"].isel(latent=0) + p["b"]) * p["n"].isel(latent=0)).sum("neuron")
    assert float(abs(f).max()) < 1e-8

"""One-prompt linear attention: exact reduction of GD on (v, Gamma) to the two-factor map (DESIGN.md §3.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn.testing import system_checks
from dynlearn_builtins.analyzers.orbits import Orbits
from dynlearn_builtins.analyzers.transverse import STABILITY_NAMES
from dynlearn_builtins.systems.linear_attention import LinearAttention
from dynlearn_builtins.systems.two_factor import two_factor_map
from dynlearn_datasets.in_context_regression import InContextRegression

F64 = torch.float64


@pytest.mark.parametrize("check", list(system_checks(LinearAttention)), ids=lambda c: c.__name__)
def test_conformance(check):
    check()


def _reduced(task, v, gamma):
    """(a, b) straight from the definition (independent of LinearAttention.reduced_state)."""
    nx, nh = task.x_q.norm(), task.h.norm()
    k = torch.sqrt(nx * nh / task.y_q)
    return torch.stack([v * k, (task.x_q @ gamma @ task.h) / (nx * nh) * k])


@pytest.mark.parametrize("mu", [0.3, 0.9, 1.5, 1.95], ids=lambda m: f"mu={m}")
@pytest.mark.parametrize("prompt_seed", [0, 1, 7], ids=lambda s: f"prompt{s}")
def test_autograd_gd_is_the_two_factor_map(prompt_seed, mu):
    task = InContextRegression(dim=4, n_context=10, prompt_seed=prompt_seed)
    eta = mu / float(task.y_q * task.x_q.norm() * task.h.norm())
    la = LinearAttention(task=task.get_params())
    assert la.mu_for_lr(eta) == pytest.approx(mu, rel=1e-14)
    g = torch.Generator().manual_seed(100 + prompt_seed)
    v = (0.15 * torch.randn((), generator=g, dtype=F64)).requires_grad_(True)
    gamma = (0.15 * torch.randn(4, 4, generator=g, dtype=F64)).requires_grad_(True)
    states = []
    for _ in range(40):
        states.append(_reduced(task, v.detach(), gamma.detach()))
        loss = 0.5 * (v * (task.x_q @ gamma @ task.h) - task.y_q) ** 2
        gv, gg = torch.autograd.grad(loss, [v, gamma])
        with torch.no_grad():
            v = (v - eta * gv).requires_grad_(True)
            gamma = (gamma - eta * gg).requires_grad_(True)
    ab = torch.stack(states)
    bounded = ab.abs().amax(-1) < 1e3
    scale = ab.abs().amax(-1).clamp_min(1)
    one_step = (two_factor_map(ab[:-1], mu) - ab[1:]).abs().amax(-1) / scale[1:]
    assert int(bounded.sum()) >= 10
    assert float(one_step[bounded[1:]].max()) < 1e-12
    if mu < 1:  # no chaos: whole trajectories agree
        it = [ab[0]]
        for _ in range(len(ab) - 1):
            it.append(two_factor_map(it[-1], mu))
        assert float(((torch.stack(it) - ab).abs().amax(-1) / scale).max()) < 1e-12


def test_closed_form_gradient_matches_autograd():
    la = LinearAttention(task={"dim": 3, "n_context": 5, "prompt_seed": 4}, init_scale=0.7)
    hp = {"lr": torch.full((3,), 0.1, dtype=F64)}
    theta = la.init(torch.tensor([0, 1, 2]), hp)
    loss, grads = la.loss_and_grad(theta, hp)
    loss_a, grads_a = dynlearn.TrainableSystem.loss_and_grad(la, theta, hp)
    assert torch.allclose(loss, loss_a, rtol=1e-14, atol=0)
    for k in grads:
        assert torch.allclose(grads[k], grads_a[k], rtol=1e-12, atol=1e-15)
    ab = la.reduced_state(theta)
    assert torch.allclose(loss, 0.5 * la.task.y_q**2 * (ab[:, 0] * ab[:, 1] - 1) ** 2, rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    la = LinearAttention(task={"dim": 3, "n_context": 8, "prompt_seed": 5}, init_scale=0.3)
    lrs = [la.lr_for_mu(0.4), la.lr_for_mu(1.1)]
    path = tmp_path_factory.mktemp("la") / "run.zarr"
    dynlearn.train(la, epochs=25, seeds=2, sweep={"lr": lrs}, out=path)
    return la, lrs, path


def test_training_records_the_two_factor_trajectory(run):
    la, lrs, path = run
    tree = dynlearn.open_store(path)
    tr = tree["train"].to_dataset()
    x = torch.tensor(np.stack([tr["a"].values, tr["b"].values], -1))
    mu = torch.tensor([la.mu_for_lr(lr) for lr in lrs], dtype=F64)
    ok = torch.tensor(tr["status"].values == 0)  # a network that diverges is frozen and labeled
    assert bool(ok[:, :, 0].all()) and int(ok.sum()) > ok.numel() // 2
    err = (two_factor_map(x[:-1], mu) - x[1:]).abs().amax(-1) / x[1:].abs().amax(-1).clamp_min(1)
    assert float(err[ok[1:]].max()) < 1e-12
    loss = 0.5 * float(la.task.y_q) ** 2 * (x[..., 0] * x[..., 1] - 1) ** 2
    assert np.allclose(tr["loss"].values[ok.numpy()], loss.numpy()[ok.numpy()], rtol=1e-12, atol=1e-15)
    assert tr["a"].attrs["long_name"].startswith("reduced coordinate a")


def test_dynamics_dataset_gives_mu_per_network(run):
    la, lrs, path = run
    params = dynlearn.open_store(path)["params"].to_dataset()
    system, ds = la.dynamics_dataset(params)
    assert system.name == "two_factor"
    assert ds["mu"].dims == ("seed", "lr")
    assert np.allclose(ds["mu"].sel(seed=0).values, [0.4, 1.1], rtol=1e-13)
    assert ds["a"].dims == ("epoch", "seed", "lr")


def test_analyzers_run_on_a_training_run_unchanged(run):
    la, lrs, path = run
    orb = Orbits(n_samples=3, transient=200, steps=200)
    on_run = orb.run(path)
    assert on_run["orbit"].dims == ("seed", "lr", "sample")
    direct = orb.run("two_factor", dynlearn.grid(mu=[0.4, 1.1]))
    assert np.array_equal(on_run["orbit"].sel(seed=1).values, direct["orbit"].values)
    assert np.allclose(on_run["lyapunov"].sel(seed=1).values, direct["lyapunov"].values, rtol=1e-12, equal_nan=True)


def test_dynamics_dataset_needs_the_learning_rate():
    la = LinearAttention(task={"dim": 2})
    params = xr.Dataset({"v": (("epoch", "seed"), np.zeros((2, 1))),
                         "Gamma": (("epoch", "seed", "row", "col"), np.zeros((2, 1, 2, 2)))})
    with pytest.raises(dynlearn.ParameterError, match="learning rate"):
        la.dynamics_dataset(params)


def test_rhs_is_the_two_factor_map_at_eta():
    la = LinearAttention(eta=0.7)
    x = torch.tensor([[0.3, -0.2], [1.2, 0.9]], dtype=F64)
    assert la.mu == pytest.approx(0.7 * float(la.task.y_q) * la.task.scale, rel=1e-14)
    assert torch.equal(la.rhs(x, la.param_tensors((2,))), two_factor_map(x, la.mu))


@pytest.mark.parametrize("seed", range(12))
def test_task_query_label_is_positive_and_h_is_the_context_mean(seed):
    t = InContextRegression(dim=3, n_context=6, prompt_seed=seed, noise=0.1)
    assert float(t.y_q) > 0
    assert torch.allclose(t.h, (t.y[:, None] * t.x).mean(0), rtol=0, atol=1e-15)
    assert torch.equal(InContextRegression(dim=3, n_context=6, prompt_seed=seed, noise=0.1).x, t.x)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"dim": 0}, "dim"), ({"dim": 2.5}, "dim"), ({"n_context": 0}, "n_context"), ({"noise": -1.0}, "noise"),
     ({"nope": 1}, "nope")],
    ids=["dim0", "dim-fraction", "n0", "noise", "unknown"],
)
def test_task_bad_parameters(kwargs, match):
    with pytest.raises(dynlearn.ParameterError, match=match):
        InContextRegression(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"init_scale": -1.0}, "init_scale"), ({"eta": 0.0}, "eta"), ({"eta": math.nan}, "eta"),
     ({"task": {"name": "delayed_activation"}}, "in_context_regression")],
    ids=["init_scale", "eta0", "eta-nan", "wrong-task"],
)
def test_bad_options(kwargs, match):
    with pytest.raises(dynlearn.ParameterError, match=match):
        LinearAttention(**kwargs)


def test_transverse_analysis_of_a_run_is_written_to_its_store(run):
    la, lrs, path = run
    res = dynlearn.analyze(path, "transverse", manifold="ellipse", n_samples=2, transient=5, steps=64)
    assert res["transverse_exponent"].dims == ("seed", "lr", "sample", "normal")
    back = dynlearn.open_store(path)["transverse"].to_dataset()
    repelling = STABILITY_NAMES.index("repelling")
    assert (back["manifold_stability"].values == repelling).all()  # E_mu is transversely repelling (mu 0.4, 1.1)
    assert back.attrs["manifold"] == "ellipse"

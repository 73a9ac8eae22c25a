"""Batched training: one tensor batch over seeds x hyper-parameters, outcomes, optimizers, schedules, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn import outcome as oc


class Quadratic(dynlearn.TrainableSystem, dynlearn.FlowSystem):
    """Loss h (theta + shift)^2 / 2 (GD diverges for lr * h > 2); ``shift < -5`` makes the loss NaN."""

    name = "quadratic_test"
    description = "quadratic loss h theta^2 / 2 (test system)"
    state_names = ("x",)
    parameters = {"theta": dynlearn.Param(1.0)}
    hyper = {"lr": dynlearn.Param(0.1, description="learning rate", low=0, low_inclusive=False), "h": dynlearn.Param(1.0),
             "shift": dynlearn.Param(0.0)}
    metric_attrs = {"theta_sq": {"long_name": "theta squared", "units": "1"}}

    def rhs(self, x, p):
        return -p["theta"][..., None] * x

    def init(self, seed, hp):
        return {"theta": 1.0 + 0.1 * seed.to(torch.float64)}

    def loss(self, theta, hp):
        t = theta["theta"] + hp["shift"]
        return 0.5 * hp["h"] * t**2 + torch.where(hp["shift"] < -5, torch.nan, 0.0)

    def metrics(self, theta, hp, loss):
        return {"theta_sq": theta["theta"] ** 2}


@pytest.fixture
def quad(isolated_registry):
    dynlearn.register_system(Quadratic)
    return Quadratic()


def test_batched_equals_one_by_one(quad):
    run = dynlearn.train(quad, epochs=30, seeds=[0, 3], sweep={"lr": [0.1, 0.5], "h": [1.0, 1.5]})
    loss = run.tree["train"]["loss"]
    assert loss.dims == ("epoch", "seed", "lr", "h")
    for s in (0, 3):
        for lr in (0.1, 0.5):
            for h in (1.0, 1.5):
                alone = dynlearn.train(quad, epochs=30, seeds=[s], sweep={"lr": [lr]}, hyper={"h": h})
                np.testing.assert_array_equal(alone.tree["train"]["loss"].values[:, 0, 0],
                                              loss.sel(seed=s, lr=lr, h=h).values)


def test_gd_matches_closed_form(quad):
    run = dynlearn.train(quad, epochs=20, seeds=[0], sweep={"lr": [0.3]}, hyper={"h": 2.0})
    theta = run.tree["params"]["theta"].values[:, 0, 0]
    np.testing.assert_allclose(theta, (1 - 0.3 * 2.0) ** np.arange(20), rtol=1e-14)
    loss = run.tree["train"]["loss"].values[:, 0, 0]
    np.testing.assert_allclose(loss, theta**2, rtol=1e-14)
    gn = run.tree["train"]["grad_norm"].values[:, 0, 0]
    np.testing.assert_allclose(gn, 2 * np.abs(theta), rtol=1e-14)
    np.testing.assert_allclose(run.tree["train"]["theta_sq"].values[:, 0, 0], theta**2, rtol=1e-14)


def test_divergence_and_nan_are_labeled_outcomes(quad):
    # h = 30: lr*h = 3 > 2 diverges; shift = -10: the loss is NaN from the start; the others are fine
    run = dynlearn.train(quad, epochs=40, seeds=[0], sweep={"h": [1.0, 30.0], "shift": [0.0, -10.0]},
                         hyper={"lr": 0.1}, max_norm=1e6)
    tr = run.tree["train"]
    out = tr["outcome"].sel(seed=0)
    assert out.sel(h=1.0, shift=0.0).item() == "ok"
    assert out.sel(h=30.0, shift=0.0).item() == "diverged"
    assert out.sel(h=1.0, shift=-10.0).item() == "nan"
    ep = tr["outcome_epoch"].sel(seed=0, h=30.0, shift=0.0).item()
    assert ep > 0 and tr["status"].sel(seed=0, h=30.0, shift=0.0).values[ep] == oc.DIVERGED
    # a failed network is frozen at its last state; the healthy one trained normally
    theta = run.tree["params"]["theta"].sel(seed=0)
    assert np.all(np.isfinite(theta.sel(h=30.0, shift=0.0).values))
    np.testing.assert_allclose(theta.sel(h=1.0, shift=0.0).values, 0.9 ** np.arange(40), rtol=1e-13)
    assert tr["status"].attrs["flag_meanings"].split()[:4] == ["ok", "diverged", "nan", "max_steps"]


@pytest.mark.parametrize("optimizer,options", [("momentum", {"beta": 0.5}), ("adam", {})], ids=["momentum", "adam"])
def test_other_optimizers_converge_and_stay_batched(quad, optimizer, options):
    run = dynlearn.train(quad, epochs=200, seeds=[0, 1], sweep={"lr": [0.05, 0.1]}, optimizer=optimizer,
                         optimizer_options=options)
    assert float(run.tree["train"]["loss"].isel(epoch=-1).max()) < 1e-2
    single = dynlearn.train(quad, epochs=200, seeds=[1], sweep={"lr": [0.1]}, optimizer=optimizer,
                            optimizer_options=options)
    np.testing.assert_array_equal(single.tree["params"]["theta"].values[:, 0, 0],
                                  run.tree["params"]["theta"].sel(seed=1, lr=0.1).values)


def test_step_schedule_changes_hyper_and_records_it(quad):
    run = dynlearn.train(quad, epochs=10, seeds=[0], sweep={"lr": [0.1]},
                         schedule={"name": "step", "hyper": "h", "epoch": 5, "value": 0.0})
    cur = run.tree["train"]["current_h"].values[:, 0, 0]
    np.testing.assert_array_equal(cur, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    theta = run.tree["params"]["theta"].values[:, 0, 0]
    assert np.all(theta[6:] == theta[5])  # no gradient once h = 0


def test_checkpoints_every_k(quad):
    run = dynlearn.train(quad, epochs=12, seeds=[0], chunk=6, checkpoint_every=3)
    assert run.tree["params"]["epoch"].values.tolist() == [0, 3, 6, 9]
    assert run.tree["train"]["loss"].sizes["epoch"] == 12


def test_interrupted_run_resumes_to_identical_contents(quad, tmp_path, interrupt_training):
    """An exception mid-run leaves a consistent store; running again resumes from the last committed chunk."""
    kwargs = dict(epochs=50, seeds=[0, 1], sweep={"lr": [0.1, 0.2]}, chunk=10,
                  schedule={"name": "step", "hyper": "h", "epoch": 25, "value": 0.5})
    ref = dynlearn.train(quad, out=tmp_path / "ref.zarr", **kwargs)
    interrupt_training(Quadratic, 33, lambda: dynlearn.train(quad, out=tmp_path / "run.zarr", **kwargs))
    partial = dynlearn.open_store(tmp_path / "run.zarr")
    assert dynlearn.store.committed_epochs(partial) == 30
    assert np.isnan(partial["train"]["loss"].values[30:]).all()
    res = dynlearn.train(quad, out=tmp_path / "run.zarr", **kwargs)
    assert res.resumed_from == 30 and res.epochs_run == 20
    for group in ("train", "params"):
        xr.testing.assert_identical(res.tree[group].to_dataset(), ref.tree[group].to_dataset())


def test_store_of_another_experiment_is_refused(quad, tmp_path):
    dynlearn.train(quad, out=tmp_path / "s.zarr", epochs=5)
    with pytest.raises(dynlearn.StoreError, match="holds a different experiment"):
        dynlearn.train(quad, out=tmp_path / "s.zarr", epochs=6)
    res = dynlearn.train(quad, out=tmp_path / "s.zarr", epochs=6, overwrite=True)
    assert res.tree["train"].sizes["epoch"] == 6


def test_completed_run_is_not_redone(quad, tmp_path):
    dynlearn.train(quad, out=tmp_path / "s.zarr", epochs=5)
    again = dynlearn.train(quad, out=tmp_path / "s.zarr", epochs=5)
    assert again.epochs_run == 0


def test_store_layout_labels_everything(quad, tmp_path):
    run = dynlearn.train(quad, out=tmp_path / "s.zarr", epochs=4, seeds=2, sweep={"lr": [0.1, 0.2]})
    tree = dynlearn.open_store(tmp_path / "s.zarr")
    for group in ("train", "params"):
        ds = tree[group].to_dataset()
        for name, var in ds.data_vars.items():
            if name != "committed":
                assert "long_name" in var.attrs, (group, name)
    assert tree["train"]["lr"].attrs["long_name"] == "learning rate"
    attrs = dynlearn.store.root_attrs(tmp_path / "s.zarr")
    assert attrs["config"]["train"]["epochs"] == 4 and attrs["provenance"]["torch"] == torch.__version__
    assert run.path == tmp_path / "s.zarr"

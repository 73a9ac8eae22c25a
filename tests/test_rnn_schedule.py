"""The lower_when_stuck schedule and the learned / stuck classification of RNN runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import dynlearn
from dynlearn.errors import ConfigError
from dynlearn.plugins import make_schedule
from dynlearn_builtins.schedules import LowerWhenStuck
from dynlearn_builtins.systems.rnn import LowRankRNN, learning_status, wilson_interval


def _drive(schedule, accuracies, hp):
    state = schedule.init(hp)
    trace = []
    for e, acc in enumerate(accuracies):
        hp, state = schedule.step(e, hp, state, {"accuracy": torch.tensor(acc), "status": torch.zeros(len(acc))})
        trace.append(hp["c"].clone())
    return torch.stack(trace), state


@pytest.mark.parametrize("window, after, want_epoch", [(3, 0, 4), (3, 5, 5), (1, 0, 2)],
                         ids=["window3", "after5", "window1"])
def test_lowers_once_after_window_low_epochs(window, after, want_epoch):
    s = LowerWhenStuck(value=2.0, window=window, after=after)
    accs = [[0.9, 1.0]] + [[0.5, 1.0]] * 8  # network 0 low from epoch 1 on; network 1 never
    trace, state = _drive(s, accs, {"c": torch.tensor([10.0, 10.0])})
    assert state["lowered_epoch"].tolist() == [want_epoch, -1]
    # c in effect at epoch e is trace[e - 1]; lowered from want_epoch on, never for network 1
    assert trace[want_epoch - 1, 0] == 2.0 and trace[want_epoch - 2, 0] == 10.0
    assert torch.all(trace[:, 1] == 10.0)


def test_value_from_a_hyper_parameter_per_network():
    s = LowerWhenStuck(value="c_low", window=2)
    hp = {"c": torch.tensor([10.0, 10.0, 10.0]), "c_low": torch.tensor([1.0, 3.0, 10.0])}
    trace, _ = _drive(s, [[0.5, 0.5, 0.5]] * 3, hp)
    assert trace[-1].tolist() == [1.0, 3.0, 10.0]


def test_interrupted_low_run_restarts_the_count():
    s = LowerWhenStuck(value=1.0, window=3)
    _, state = _drive(s, [[0.5], [0.5], [0.75], [0.5], [0.5]], {"c": torch.tensor([10.0])})
    assert state["run"].tolist() == [2] and state["lowered_epoch"].tolist() == [-1]


@pytest.mark.parametrize("config, match", [
    ({"name": "lower_when_stuck", "window": 0}, "window must be an integer >= 1"),
    ({"name": "lower_when_stuck", "value": True}, "value must be a number"),
    ({"name": "lower_when_stuck", "metric": ""}, "metric must be a name"),
    ({"name": "lower_when_stuck", "nonsense": 1}, "unexpected keyword"),
], ids=["window0", "value-bool", "metric-empty", "unknown-option"])
def test_bad_options_are_config_errors(config, match):
    with pytest.raises(ConfigError, match=match):
        make_schedule(config)


def test_unknown_hyper_names_are_rejected_by_the_experiment():
    rnn = LowRankRNN(n_neurons=10)
    with pytest.raises(ConfigError, match="'c_lower' is not a hyper-parameter"):
        dynlearn.train(rnn, epochs=2, schedule={"name": "lower_when_stuck", "value": "c_lower"})
    with pytest.raises(ConfigError, match="changes 'conf'"):
        dynlearn.train(rnn, epochs=2, schedule={"name": "lower_when_stuck", "hyper": "conf"})


def test_a_missing_metric_is_named():
    s = LowerWhenStuck(metric="escape_time")
    with pytest.raises(ConfigError, match="watches 'escape_time'"):
        s.step(0, {"c": torch.ones(1)}, s.init({"c": torch.ones(1)}), {"loss": torch.ones(1)})


def test_schedule_in_training_records_c_and_lowers_stuck_networks():
    """Never-learned networks (constant output: accuracy 0.5) are stuck after 50 epochs; c drops from `after` on."""
    rnn = LowRankRNN(n_neurons=20)
    run = dynlearn.train(rnn, epochs=80, seeds=2, sweep={"c_low": [10.0, 2.0]}, hyper={"c": 10.0},
                         schedule={"name": "lower_when_stuck", "value": "c_low", "after": 60})
    cur = run.tree["train"]["current_c"]
    assert cur.dims == ("epoch", "seed", "c_low")
    np.testing.assert_array_equal(cur.sel(c_low=2.0).isel(epoch=slice(0, 60)).values, 10.0)
    np.testing.assert_array_equal(cur.sel(c_low=2.0).isel(epoch=slice(60, None)).values, 2.0)
    np.testing.assert_array_equal(cur.sel(c_low=10.0).values, 10.0)
    assert "c" not in run.tree["train"].coords  # scheduled: recorded per epoch instead of as a fixed coord


def test_interrupted_run_with_schedule_resumes_identically(tmp_path, interrupt_training):
    rnn = LowRankRNN(n_neurons=16)
    kw = dict(epochs=90, seeds=2, sweep={"c_low": [1.0]}, chunk=30, checkpoint_every=10, dtype="float64",
              schedule={"name": "lower_when_stuck", "value": "c_low", "after": 55, "window": 20})
    ref = dynlearn.train(rnn, out=tmp_path / "ref.zarr", **kw)
    # stopped inside the third chunk (75th evaluation), after the lowering at epoch 55
    interrupt_training(LowRankRNN, 75, lambda: dynlearn.train(rnn, out=tmp_path / "run.zarr", **kw))
    res = dynlearn.train(rnn, out=tmp_path / "run.zarr", **kw)
    assert res.resumed_from == 60
    for group in ("train", "params"):
        xr.testing.assert_identical(res.tree[group].to_dataset(), ref.tree[group].to_dataset())
    assert float(ref.tree["train"]["current_c"].isel(epoch=-1).min()) == 1.0


# -- learned / stuck ------------------------------------------------------------------------------------------------
def test_learning_status_flags_per_network_and_epoch():
    acc = np.full((120, 3), 0.5)
    acc[10:20, 1] = 1.0  # learned, then stuck
    acc[:, 2] = 0.75  # never stuck, never learned
    acc[100:, 2] = 1.0
    ds = learning_status(xr.Dataset({"accuracy": (("epoch", "seed"), acc)},
                                    coords={"epoch": np.arange(120), "seed": [0, 1, 2]}))
    assert ds["stuck"].dims == ("epoch", "seed")
    assert ds["first_stuck_epoch"].values.tolist() == [49, 69, -1]
    assert ds["first_learned_epoch"].values.tolist() == [-1, 10, 100]
    assert ds["learned_then_stuck"].values.tolist() == [False, True, False]
    assert int(ds["n_stuck"]) == 2 and int(ds["n_learned"]) == 2
    assert all("long_name" in ds[v].attrs for v in ds.data_vars)


@pytest.mark.parametrize("k, n", [(74, 100), (0, 20), (20, 20), (3, 7)], ids=["74/100", "0/20", "20/20", "3/7"])
def test_wilson_interval_endpoints_solve_the_score_equation(k, n):
    """Wilson bounds are the roots p of (k/n - p)^2 = z^2 p (1 - p) / n."""
    z = 1.959963984540054
    lo, hi = (float(v) for v in wilson_interval(k, n, z))
    for p in (lo, hi):
        assert abs((k / n - p) ** 2 - z * z * p * (1 - p) / n) < 1e-12
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_interval_contains_the_observed_proportion_for_every_count():
    """Exhaustive over n = 1..200, k = 0..n: low <= k/n <= high in [0, 1], also as counts (low n <= k <= high n, the
    form of rnn-fig4's ``n_*_low``/``n_*_high``), with low = 0 exactly at k = 0 and high = 1 exactly at k = n."""
    n = np.concatenate([np.full(m + 1, m) for m in range(1, 201)])
    k = np.concatenate([np.arange(m + 1) for m in range(1, 201)])
    lo, hi = wilson_interval(k, n)
    p = k / n
    assert np.all((0 <= lo) & (lo <= p) & (p <= hi) & (hi <= 1))
    assert np.all((lo * n <= k) & (k <= hi * n))
    assert np.all(lo[k == 0] == 0.0) and np.all(hi[k == n] == 1.0)
    inner = (k > 0) & (k < n)
    assert np.all((lo[inner] > 0) & (lo[inner] < p[inner]) & (hi[inner] < 1) & (hi[inner] > p[inner]))
    nan_lo, nan_hi = wilson_interval(0, 0)                   # no observation: no interval
    assert np.isnan(nan_lo) and np.isnan(nan_hi)

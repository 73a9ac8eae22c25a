"""The flip-flop task, its networks as Systems, the scipy reference, and the flip-flop reproduction's claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn.errors import ParameterError
from dynlearn_builtins.reproductions.flip_flop import covered, gru_residual, scipy_fixed_points
from dynlearn_datasets.flip_flop import FlipFlop, FlipFlopNet


def _last_pulse(inputs: np.ndarray) -> np.ndarray:
    """Targets by a plain loop: the sign of the last non-zero input of each bit."""
    out = np.zeros_like(inputs)
    for n in range(inputs.shape[0]):
        for b in range(inputs.shape[2]):
            last = 0.0
            for t in range(inputs.shape[1]):
                last = inputs[n, t, b] if inputs[n, t, b] != 0 else last
                out[n, t, b] = last
    return out


def test_task_targets_are_the_last_pulse_and_deterministic():
    task = FlipFlop(n_bits=3, n_time=40, p=0.1)
    x, y = task.sample(n_trials=8, seed=5)
    np.testing.assert_array_equal(y.numpy(), _last_pulse(x.numpy()))
    assert set(np.unique(x.numpy())) <= {-1.0, 0.0, 1.0} and (x[:, 0] != 0).all()
    x2, y2 = task.sample(n_trials=8, seed=5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, task.sample(n_trials=8, seed=6)[0])
    assert torch.equal(task.inputs(), task.sample(seed=task.data_seed)[0])


def test_task_pulse_rate_is_p():
    x, _ = FlipFlop(n_bits=4, n_time=201, n_trials=200, p=0.05).sample()
    rate = float((x[:, 1:] != 0).float().mean())       # 40000 Bernoulli(0.05) draws: sd 0.0011
    assert abs(rate - 0.05) < 0.005


@pytest.mark.parametrize("values", [{"n_bits": 1.5}, {"p": 1.5}, {"n_time": 0}], ids=["bits", "p", "time"])
def test_task_bad_parameters(values):
    with pytest.raises(ParameterError):
        FlipFlop(**values)


def test_net_bad_cell():
    with pytest.raises(ParameterError, match="cell must be one of"):
        FlipFlopNet(cell="transformer")


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn", "rate"])
def test_net_states_follow_the_from_module_system(cell):
    """The states FlipFlopNet reports step by step are the System's orbit (the input as the System's `input`)."""
    net = FlipFlopNet(cell=cell, hidden=5, seed=1).double()
    x, _ = FlipFlop(n_time=12, n_trials=4).sample(dtype=torch.float64)
    with torch.no_grad():
        s = net.states(x)
    system = dynlearn.from_module(net.rnn)
    p = {**system.param_tensors(), "input": x[:, 1:]}
    step = system.rhs(s[:, :-1], p)
    nxt = s[:, :-1] + net.dt * step if cell == "rate" else step
    torch.testing.assert_close(nxt, s[:, 1:], rtol=0, atol=1e-14)
    assert s.shape[-1] == system.state_dim == (10 if cell == "lstm" else 5)


def test_gru_closed_form_is_the_module_map():
    rnn = FlipFlopNet(cell="gru", hidden=6, seed=2).rnn
    system = dynlearn.from_module(rnn)
    fun, jac = gru_residual(rnn)
    h = torch.rand(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    p = system.param_tensors()
    np.testing.assert_allclose(np.stack([fun(v) for v in h.numpy()]), system.residual(h, p).numpy(), atol=1e-15)
    J = system.jacobian(h, p).numpy() - np.eye(6)
    np.testing.assert_allclose(np.stack([jac(v) for v in h.numpy()]), J, atol=1e-14)


def test_scipy_reference_finds_and_dedupes_roots():
    """g(x) = x^3 - x per coordinate: roots -1, 0, 1 in each of 2 coordinates (9)."""
    fun = lambda x: x**3 - x                       # noqa: E731
    jac = lambda x: np.diag(3 * x**2 - 1)          # noqa: E731
    starts = np.random.default_rng(0).uniform(-1.5, 1.5, (200, 2))
    roots, n_conv = scipy_fixed_points(fun, jac, starts)
    assert n_conv == 200 and len(roots) == 9
    grid = np.array([[a, b] for a in (-1, 0, 1) for b in (-1, 0, 1)], dtype=float)
    assert covered(grid, roots).all() and covered(roots, grid).all()
    assert not covered(grid + 1e-5, roots).any()


@pytest.fixture(scope="module")
def quick_claims(tmp_path_factory):
    tree = dynlearn.api.run_reproduction("flip-flop", tmp_path_factory.mktemp("ff") / "ff.zarr", quick=True,
                                         show_progress=False)
    return tree


@pytest.mark.numerics
def test_quick_reproduction_claims(quick_claims):
    """GRU: 8 memories with 8 bit patterns, 19 saddles (12 index-1 joining memories one bit apart), every scipy
    fixed point found, residuals <= 1e-10, memories tracked; LSTM and rate network: 8 memories, 8 patterns."""
    c = quick_claims["claims"].to_dataset()
    failed = {str(n): float(m) for n, m, ok in zip(c.claim.values, c.measured.values, c.passed.values) if not ok}
    assert not failed
    names = set(c.claim.values.tolist())
    assert {"stable_count", "bit_patterns", "saddles", "index1_saddles_between_memories", "scipy_points_found",
            "no_fewer_than_scipy", "max_residual", "memories_tracked", "lstm_stable_count", "lstm_bit_patterns",
            "rate_stable_count", "rate_bit_patterns"} <= names


@pytest.mark.numerics
def test_quick_reproduction_store(quick_claims):
    """The Recorder's checkpoints, the analyzer groups on them, and labeled bit patterns of the memories."""
    tree = quick_claims
    assert {"train", "params", "fixed_points", "bifurcations", "memories", "reference", "lstm", "rate",
            "lstm_memories", "rate_memories"} <= set(
        tree.children)
    fp = tree["fixed_points"].to_dataset()
    assert fp.sizes["epoch"] == tree["params"].sizes["epoch"] >= 5
    mem = tree["memories"].to_dataset()
    patterns = {tuple(b) for b in mem.bits.values[mem.stable.values]}
    assert patterns == {(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)}
    assert mem.bits.attrs["long_name"] and mem.readout.dims == ("point", "bit")
    assert bool(tree["reference"]["found_by_dynlearn"].values[tree["reference"]["inside_box"].values].all())


@pytest.mark.slow
def test_full_reproduction_claims(tmp_path):
    tree = dynlearn.api.run_reproduction("flip-flop", tmp_path / "ff.zarr", show_progress=False)
    c = tree["claims"].to_dataset()
    assert bool(c.passed.all()), {str(n): float(m) for n, m, ok in zip(c.claim.values, c.measured.values,
                                                                       c.passed.values) if not ok}

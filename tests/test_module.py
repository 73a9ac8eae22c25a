"""Bring your own model (issue 13): torch networks and functions as Systems through ``dynlearn.from_module``.

One step of the System is torch's own forward bit for bit; weights that vary along batch dims are one vmapped call
equal to per-network calls; the config rebuilds the system exactly; the conformance kit passes; fixed points of a
GRU cell, and of three checkpoints as one sweep, are fixed points of the torch cells.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import dynlearn
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.module import ModuleSystem, RateNetwork, from_module, params_from_state_dicts
from dynlearn.system import has_fast_products
from dynlearn.testing import system_checks

D = torch.float64


def _net(cls, *args, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(*args, **kwargs)


def _states(n, d, seed=1, scale=0.8):
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D)


class Affine(nn.Module):
    """A user's map ``h -> tanh(A h + c u)`` (constructor arguments stored under their own names)."""

    def __init__(self, hidden_size: int, input_size: int = 1, gain: float = 1.0) -> None:
        super().__init__()
        self.hidden_size, self.input_size, self.gain = hidden_size, input_size, gain
        self.lin = nn.Linear(hidden_size, hidden_size)
        self.inp = nn.Linear(input_size, hidden_size, bias=False)

    def forward(self, h, u):
        return torch.tanh(self.gain * self.lin(h) + self.inp(u))


class Hidden(nn.Module):
    """A user's module whose constructor argument ``n`` is no attribute."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, n))

    def forward(self, h):
        return h @ self.w.T


def decay(h, u, params):
    """A function system: ``dh/dt = -k h + u``."""
    return -params["k"] * h + u


# -- one step is torch's own forward -------------------------------------------------------------------------
CELLS = {
    "RNNCell-tanh": lambda: nn.RNNCell(2, 5),
    "RNNCell-relu": lambda: nn.RNNCell(2, 5, nonlinearity="relu"),
    "GRUCell": lambda: nn.GRUCell(2, 5),
    "GRUCell-nobias": lambda: nn.GRUCell(2, 5, bias=False),
    "LSTMCell": lambda: nn.LSTMCell(2, 5),
}


@pytest.mark.parametrize("make", CELLS.values(), ids=CELLS.keys())
def test_a_cell_step_is_torchs_forward_bit_for_bit(make):
    torch.manual_seed(0)
    cell = make().double()
    u = torch.tensor([0.7, -0.3], dtype=D)
    sys = from_module(cell, input=u)
    h = _states(64, sys.state_dim)
    with torch.no_grad():
        if isinstance(cell, nn.LSTMCell):
            ref = torch.cat(cell(u.expand(64, 2), (h[:, :5], h[:, 5:])), -1)
        else:
            ref = cell(u.expand(64, 2), h)
    assert sys.kind == "map" and torch.equal(sys.rhs(h, sys.param_tensors()), ref)


RNNS = {
    "RNN-1": lambda: nn.RNN(2, 4),
    "RNN-3-relu": lambda: nn.RNN(2, 4, num_layers=3, nonlinearity="relu"),
    "GRU-2": lambda: nn.GRU(2, 4, num_layers=2),
    "GRU-2-nobias": lambda: nn.GRU(2, 4, num_layers=2, bias=False),
    "LSTM-1": lambda: nn.LSTM(2, 4),
    "LSTM-2": lambda: nn.LSTM(2, 4, num_layers=2, batch_first=True),
}


@pytest.mark.parametrize("make", RNNS.values(), ids=RNNS.keys())
def test_a_multilayer_step_is_torchs_forward_bit_for_bit(make):
    torch.manual_seed(0)
    rnn = make().double()
    L, H = rnn.num_layers, rnn.hidden_size
    u = torch.tensor([0.7, -0.3], dtype=D)
    sys = from_module(rnn, input=u)
    x = _states(6, sys.state_dim)
    # the state is every layer's h (then every layer's c): (n, L*H) <-> torch's (L, n, H)
    layers = lambda t: t.reshape(6, L, H).transpose(0, 1).contiguous()  # noqa: E731
    flat = lambda t: t.transpose(0, 1).reshape(6, L * H)  # noqa: E731
    # a contiguous input (torch's linear itself rounds differently on a broadcast 3-D input: matmul, then the bias)
    inp = (u.expand(6, 1, 2) if rnn.batch_first else u.expand(1, 6, 2)).contiguous()
    with torch.no_grad():
        if isinstance(rnn, nn.LSTM):
            _, (hn, cn) = rnn(inp, (layers(x[:, :L * H]), layers(x[:, L * H:])))
            ref = torch.cat([flat(hn), flat(cn)], -1)
        else:
            ref = flat(rnn(inp, layers(x))[1])
    assert torch.equal(sys.rhs(x, sys.param_tensors()), ref)


def test_state_names_say_layer_and_h_or_c():
    assert from_module(nn.GRUCell(1, 3)).state_names == ("h0", "h1", "h2")
    assert from_module(nn.LSTMCell(1, 2)).state_names == ("h0", "h1", "c0", "c1")
    assert from_module(nn.GRU(1, 2, num_layers=2)).state_names == ("l0_h0", "l0_h1", "l1_h0", "l1_h1")
    assert from_module(nn.LSTM(1, 1, num_layers=2)).state_names == ("l0_h0", "l1_h0", "l0_c0", "l1_c0")


def test_parameters_are_the_modules_tensors_with_their_own_dims():
    sys = from_module(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), kind="map", state_dim=3)
    assert sys.torch_names == {"p0__weight": "0.weight", "p0__bias": "0.bias"}
    assert sys.parameters["p0__weight"].shape == ("p0__weight_dim0", "p0__weight_dim1")
    assert sys.event_shape("p0__weight") == (3, 3) and "input" not in sys.parameters
    gru = from_module(nn.GRUCell(2, 3))
    assert gru.event_shape("input") == (2,) and np.array_equal(gru.values["input"], np.zeros(2))


# -- batching: one call, one vmap -------------------------------------------------------------------------------
def _three_cells():
    return [_net(nn.GRUCell, 2, 4, seed=s).double() for s in range(3)]


def test_networks_batched_by_vmap_equal_each_networks_own_forward():
    cells = _three_cells()
    sys = from_module(cells[0])
    batch = dynlearn.flatten(sys, params_from_state_dicts(sys, cells, dim="seed"))
    u = torch.tensor([0.4, -0.2], dtype=D)
    p = {**batch.params, "input": u.expand(3, 2)}
    x = _states(12, 4).reshape(3, 4, 4)
    y = sys.rhs(x, sys.expand_params(p))
    with torch.no_grad():
        want = torch.stack([c(u.expand(4, 2), x[i]) for i, c in enumerate(cells)])
    assert torch.allclose(y, want, rtol=0, atol=1e-15)
    # per-state parameters (what the fixed-point solver passes), states (3, d)
    assert torch.allclose(sys.rhs(x[:, 0], p), want[:, 0], rtol=0, atol=1e-15)


def test_no_state_is_no_call():
    sys = from_module(nn.GRUCell(1, 2))
    p = {k: v + torch.zeros(3, *v.shape, dtype=D) for k, v in sys.param_tensors().items()}
    assert sys.rhs(torch.zeros(0, 2, dtype=D), {k: v[:0] for k, v in p.items()}).shape == (0, 2)
    assert sys.rhs(torch.zeros(3, 0, 2, dtype=D), sys.expand_params(p)).shape == (3, 0, 2)


def test_an_input_sweep_shares_the_weights():
    cell = _three_cells()[0]
    sys = from_module(cell)
    u = torch.tensor([[0.5, 0.0], [-1.0, 2.0]], dtype=D)
    p = {**sys.param_tensors(), "input": u[:, None, :]}       # inputs (2, 1): states (2, 5, d)
    x = _states(10, 4).reshape(2, 5, 4)
    with torch.no_grad():
        want = torch.stack([cell(u[i].expand(5, 2), x[i]) for i in range(2)])
    assert torch.allclose(sys.rhs(x, p), want, rtol=0, atol=1e-15)


def test_a_users_module_is_vmapped_through_functional_call():
    nets = [_net(Affine, 3, gain=0.5, seed=s).double() for s in range(2)]
    sys = from_module(nets[0], kind="map", input=[0.5])
    stacked = {k: torch.stack([n.state_dict()[k] for n in nets]) for k in nets[0].state_dict()}
    batch = dynlearn.flatten(sys, params_from_state_dicts(sys, stacked, dim="net"))
    x = _states(8, 3).reshape(2, 4, 3)
    y = sys.rhs(x, sys.expand_params(batch.params))
    with torch.no_grad():
        want = torch.stack([n(x[i], torch.full((4, 1), 0.5, dtype=D)) for i, n in enumerate(nets)])
    assert sys.adapter == "module" and torch.allclose(y, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n_nets", [1, 8])
def test_all_states_and_networks_are_one_cell_call(n_nets, monkeypatch):
    sys = from_module(nn.GRUCell(3, 16).double())
    shapes = []
    step = sys._step

    def counting(w, h, u):
        shapes.append(tuple(h.shape))
        return step(w, h, u)

    monkeypatch.setattr(sys, "_step", counting)
    p = {k: v + torch.zeros(n_nets, *v.shape, dtype=D) for k, v in sys.param_tensors().items()}
    sys.rhs(_states(n_nets * 1024, 16).reshape(n_nets, 1024, 16), sys.expand_params(p))
    assert shapes == [(1024, 16)]      # one call (under vmap when the 8 networks differ)


# -- the conformance kit ------------------------------------------------------------------------------------
def _trained_gru_cell() -> nn.GRUCell:
    """A GRU cell trained (40 Adam steps) to remember the sign of the last input pulse: a 1-bit flip-flop."""
    cell, readout = _net(nn.GRUCell, 1, 4), nn.Linear(4, 1)
    g = torch.Generator().manual_seed(0)
    pulses = torch.randint(-1, 2, (20, 32, 1), generator=g).float() * (torch.rand(20, 32, 1, generator=g) < 0.2)
    target = torch.cummax((pulses != 0).float() * torch.arange(1, 21).reshape(20, 1, 1), 0).indices
    target = pulses.gather(0, target)
    opt = torch.optim.Adam([*cell.parameters(), *readout.parameters()], lr=0.05)
    for _ in range(40):
        h, loss = torch.zeros(32, 4), 0.0
        for t in range(20):
            h = cell(pulses[t], h)
            loss = loss + ((readout(h) - target[t]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cell


CONFORMING = {
    "GRUCell-trained": lambda: from_module(_trained_gru_cell()),
    "GRUCell": lambda: from_module(_net(nn.GRUCell, 2, 3), input=[0.5, -0.5]),
    "LSTM-2": lambda: from_module(_net(nn.LSTM, 1, 2, num_layers=2)),
    "RateNetwork": lambda: from_module(_net(RateNetwork, 3, input_size=1, tau=2.0)),
}
CHECKS = [(name, chk) for name, make in CONFORMING.items() for chk in system_checks(make())]


@pytest.mark.parametrize("check", [c for _, c in CHECKS], ids=[f"{n}-{c.__name__}" for n, c in CHECKS])
def test_module_systems_pass_the_conformance_kit(check):
    check()


def test_derivatives_are_closed_form_products():
    sys = CONFORMING["GRUCell"]()
    assert has_fast_products(sys)
    x, v = _states(5, 3), _states(5, 3, seed=2)
    p = sys.param_tensors()
    J = torch.stack([torch.autograd.functional.jacobian(lambda y: sys.rhs(y, p), xi) for xi in x])
    assert torch.allclose(sys.jacobian(x, p), J, rtol=0, atol=1e-14)
    assert torch.allclose(sys.jvp(x, p, v), (J @ v[..., None])[..., 0], rtol=0, atol=1e-14)
    assert torch.allclose(sys.vjp(x, p, v), (v[:, None] @ J)[:, 0], rtol=0, atol=1e-14)


# -- config: JSON, rebuilds bit for bit ------------------------------------------------------------------------
REBUILT = {
    "GRU-2": lambda: from_module(_net(nn.GRU, 2, 3, num_layers=2), input=[0.25, -1.0]),
    "LSTMCell": lambda: from_module(_net(nn.LSTMCell, 1, 2)),
    "RNNCell-relu": lambda: from_module(_net(nn.RNNCell, 1, 3, nonlinearity="relu", bias=False)),
    "RateNetwork": lambda: from_module(_net(RateNetwork, 3, input_size=2, tau=0.5)),
    "user-module": lambda: from_module(_net(Affine, 3, gain=0.5), kind="map", bounds=(-2, 2)),
    "function": lambda: from_module(decay, kind="flow", params={"k": torch.tensor([0.5, 2.0])}, state_dim=2,
                                    input_size=2, input=[1.0, 0.0]),
}


@pytest.mark.parametrize("make", REBUILT.values(), ids=REBUILT.keys())
def test_the_config_is_json_and_rebuilds_the_system_bit_for_bit(make):
    sys = make()
    config = json.loads(json.dumps(sys.to_config(), allow_nan=False))
    assert config["name"] == "module" and ":" in config["module"]
    rng = torch.random.get_rng_state()
    rebuilt = dynlearn.make_system(config)
    assert torch.equal(torch.random.get_rng_state(), rng)       # rebuilding draws no random numbers
    assert rebuilt.get_params() == sys.get_params()
    x = _states(9, sys.state_dim)
    assert torch.equal(rebuilt.rhs(x, rebuilt.param_tensors()), sys.rhs(x, sys.param_tensors()))


def test_the_config_names_torchs_class_and_its_arguments():
    config = from_module(nn.GRU(2, 3, num_layers=2)).to_config()
    assert config["module"] == "torch.nn.modules.rnn:GRU" and config["adapter"] == "gru"
    assert config["module_kwargs"] == {"input_size": 2, "hidden_size": 3, "num_layers": 2, "bias": True}
    assert config["kind"] == "map" and config["input"] == [0.0, 0.0]
    assert len(config["weight_hh_l1"]) == 9 and len(config["weight_hh_l1"][0]) == 3


def test_the_default_module_system_is_a_small_gru_cell():
    sys = dynlearn.make_system("module")
    assert sys.module == "torch.nn.modules.rnn:GRUCell" and sys.state_dim == 2
    assert dynlearn.make_system("module").get_params() == sys.get_params()


# -- clear errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, error, text", [
    (lambda: from_module(nn.GRU(2, 3, bidirectional=True)), ParameterError, "bidirectional"),
    (lambda: from_module(nn.LSTM(2, 3, proj_size=2)), ParameterError, "proj_size"),
    (lambda: from_module(42), ParameterError, "needs an nn.Module"),
    (lambda: from_module(Affine(2)), ParameterError, "kind must be 'map'"),
    (lambda: from_module(decay, kind="flow", params={"k": 1.0}), ParameterError, "state_dim"),
    (lambda: from_module(Hidden(2), kind="map"), ParameterError, "module_kwargs={'n': ...}"),
    (lambda: from_module(nn.GRUCell(1, 2), bounds=(1, 0)), ParameterError, "low < high"),
    (lambda: from_module(nn.GRUCell(1, 2), state_dim=3), ParameterError, "state_dim=3 does not match the GRUCell (2)"),
    (lambda: dynlearn.make_system({"name": "module", "module": "torch.nn:NoSuchCell"}), ParameterError,
     "cannot import 'torch.nn:NoSuchCell'"),
    (lambda: ModuleSystem(nn.GRUCell(1, 2), adapter="lstm"), ParameterError, "adapter 'lstm'"),
    (lambda: from_module(nn.GRUCell(1, 2), input=[1.0, 2.0]), ShapeError, "'input' must have shape (1,)"),
])
def test_bad_input_is_one_clear_error(build, error, text):
    with pytest.raises(error, match=None) as info:
        build()
    assert text in str(info.value) and "\n" not in str(info.value)


def test_a_function_that_cannot_be_imported_says_so_when_rebuilt():
    sys = from_module(lambda h, u, p: -h, kind="flow", state_dim=2, input_size=0)
    config = sys.to_config()             # analyzers store it: it must not fail
    json.dumps(config)
    with pytest.raises(ParameterError, match="lambda"):
        dynlearn.make_system(config)


def test_wrong_states_and_wrong_outputs_are_shape_errors():
    sys = from_module(nn.GRUCell(1, 3))
    with pytest.raises(ShapeError, match="state dim 3"):
        sys.rhs(torch.zeros(4, 2, dtype=D), sys.param_tensors())
    bad = from_module(nn.Linear(3, 2), kind="map", state_dim=3, input_size=0)
    with pytest.raises(ShapeError, match="maps states"):
        bad.rhs(torch.zeros(4, 3, dtype=D), bad.param_tensors())


def test_state_dicts_must_match_the_architecture():
    sys = from_module(nn.GRUCell(1, 3))
    with pytest.raises(ShapeError, match=r"'weight_ih' has shape \(1, 12, 1\); expected \(n, 9, 1\)"):
        params_from_state_dicts(sys, [nn.GRUCell(1, 4).state_dict()])
    with pytest.raises(ShapeError, match="no tensor 'bias_hh'"):
        params_from_state_dicts(sys, [{k: v for k, v in nn.GRUCell(1, 3).state_dict().items() if k != "bias_hh"}])


# -- analyzers on a ModuleSystem ------------------------------------------------------------------------------
def _fixed_points(ds):
    """Fixed points (rows of ``position`` of present points with tiny residual) per sweep entry."""
    ok = ds["present"] & (ds["residual_max"] < 1e-10)
    return ds["position"].where(ok)


def test_fixed_points_of_a_gru_cell_are_fixed_points_of_the_torch_cell():
    cell = _net(nn.GRUCell, 1, 3).double()
    sys = from_module(cell, input=[0.3])
    out = dynlearn.get_analyzer("fixed_points")(n_starts=16).run(sys)
    pts = torch.as_tensor(_fixed_points(out).values).reshape(-1, 3)
    pts = pts[~pts.isnan().any(-1)]
    assert int(out["n_fixed"]) >= 1 and len(pts) >= 1
    with torch.no_grad():
        assert (cell(torch.full((len(pts), 1), 0.3, dtype=D), pts) - pts).abs().max() < 1e-9
    assert json.loads(out.attrs["system_config"])["module"] == "torch.nn.modules.rnn:GRUCell"


def test_three_checkpoints_are_one_fixed_point_sweep():
    cells = _three_cells()
    sys = from_module(cells[0])
    ds = params_from_state_dicts(sys, [c.state_dict() for c in cells], dim="epoch", coords=[0, 10, 20])
    assert ds["weight_ih"].dims == ("epoch", "weight_ih_dim0", "weight_ih_dim1")
    out = dynlearn.get_analyzer("fixed_points")(n_starts=16).run(sys, ds)
    assert out["epoch"].values.tolist() == [0, 10, 20] and (out["n_fixed"] >= 1).all()
    config = json.loads(out.attrs["system_config"])
    assert config["sweep"]["dims"] == {"epoch": [0, 10, 20]} and "weight_hh" not in config
    pts = _fixed_points(out)
    for i, cell in enumerate(cells):
        x = torch.as_tensor(pts.isel(epoch=i).values)
        x = x[~x.isnan().any(-1)]
        with torch.no_grad():
            assert len(x) >= 1 and (cell(torch.zeros(len(x), 2, dtype=D), x) - x).abs().max() < 1e-9


def test_a_rate_network_flow_has_fixed_points_conditioned_on_its_input():
    net = _net(RateNetwork, 3, input_size=1, tau=2.0).double()
    sys = from_module(net, bounds=(-4, 4))
    assert sys.kind == "flow" and sys.state_names == ("h0", "h1", "h2")
    out = dynlearn.get_analyzer("fixed_points")(n_starts=16).run(sys, dynlearn.grid(input=[-1.0, 0.0, 1.0]))
    pts = _fixed_points(out)
    for u in (-1.0, 0.0, 1.0):
        x = torch.as_tensor(pts.sel(input=u).values)
        x = x[~x.isnan().any(-1)]
        with torch.no_grad():
            assert len(x) >= 1 and net(x, torch.full((len(x), 1), u, dtype=D)).abs().max() < 1e-9

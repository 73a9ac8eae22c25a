"""Building blocks of the basins analyzer: kernels, attractor graph, bisection, Wilson intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn import outcome as oc
from dynlearn.params import Param
from dynlearn.system import MapSystem
from dynlearn_builtins.analyzers.basins.attractors import TailAccumulator, identify, tail_periods
from dynlearn_builtins.analyzers.basins.boundary import bisect, grid_pairs, knn_pairs, select_pairs
from dynlearn.stepper import GenericStepper, evolve, make_stepper
from dynlearn_builtins.analyzers.basins.table import exponents, wilson


class Doubling(MapSystem):
    """x -> c x: leaves |x| <= M at the first k with |c|^k |x0| > M."""

    name = "doubling_test"
    description = "linear map x -> c x (test only)"
    parameters = {"c": Param(2.0)}

    def rhs(self, x, p):
        return torch.as_tensor(p["c"]).unsqueeze(-1) * x


class LogMap(MapSystem):
    """x -> log(x): from 0.5 the orbit turns NaN at step 2 while bounded; from 1e-300 it leaves the ball."""

    name = "log_test"
    description = "x -> log x (test only)"
    parameters = {"c": Param(1.0)}

    def rhs(self, x, p):
        return torch.log(x) * torch.as_tensor(p["c"]).unsqueeze(-1)


@pytest.mark.parametrize("check_every", [1, 3, 16], ids=lambda c: f"check_every={c}")
def test_escape_step_is_exact(check_every):
    x0 = torch.tensor([[1.0], [3.0], [-7.0], [0.0]], dtype=torch.float64)
    params = {"c": torch.tensor([2.0, 10.0], dtype=torch.float64)}
    pidx = torch.tensor([0, 0, 1, 1])
    ev = evolve(Doubling(), x0, params, pidx, steps=50, max_norm=1e6, check_every=check_every, chunk_size=3)
    # 2^20 > 1e6 >= 2^19;  3 * 2^19 > 1e6 >= 3 * 2^18;  7 * 10^6 > 1e6 >= 7 * 10^5
    assert ev.escape.tolist() == [20, 19, 6, 50]
    assert ev.outcome.tolist() == [oc.DIVERGED, oc.DIVERGED, oc.DIVERGED, oc.OK]
    assert ev.final[:, 0].tolist() == [2.0**19, 3 * 2.0**18, -7e5, 0.0]  # last state inside the ball


def test_nan_while_bounded_is_a_nan_outcome():
    x0 = torch.tensor([[0.5], [1e-300], [2.0]], dtype=torch.float64)
    ev = evolve(LogMap(), x0, {"c": torch.ones(1, dtype=torch.float64)}, torch.zeros(3, dtype=torch.long), steps=40,
                max_norm=500.0)
    # log 0.5 < 0, log of it is NaN; log 1e-300 = -690.8 leaves |x| <= 500; log 2 > 0, log of it < 0, then NaN
    assert ev.outcome.tolist() == [oc.NAN, oc.DIVERGED, oc.NAN]
    assert ev.escape.tolist() == [2, 1, 3]


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_fast_two_factor_kernel_matches_rhs(workers):
    tf = dynlearn.make_system("two_factor")
    g = torch.Generator().manual_seed(1)
    x0 = 6 * torch.rand(3000, 2, generator=g, dtype=torch.float64) - 3
    params = {"mu": torch.tensor([0.5, 1.5], dtype=torch.float64)}
    pidx = (torch.arange(3000) % 2).long()  # mixed mu inside chunks: the vector-mu path
    kw = dict(steps=12, max_norm=1e6, record=(10, 12), chunk_size=700, workers=workers)
    rec_fast, rec_gen = {}, {}
    fast = evolve(tf, x0, params, pidx, kernel="auto",
                  on_record=lambda i, t: rec_fast.update(zip(i.tolist(), t.permute(2, 0, 1))), **kw)
    gen = evolve(tf, x0, params, pidx, kernel="generic",
                 on_record=lambda i, t: rec_gen.update(zip(i.tolist(), t.permute(2, 0, 1))), **kw)
    assert torch.equal(fast.outcome, gen.outcome) and torch.equal(fast.escape, gen.escape)
    ok = fast.outcome == oc.OK
    assert torch.allclose(fast.final[ok], gen.final[ok], rtol=1e-9, atol=1e-9)
    assert set(rec_fast) == set(rec_gen) == set(torch.nonzero(ok).flatten().tolist())
    assert all(torch.allclose(rec_fast[i], rec_gen[i], rtol=1e-9, atol=1e-9) for i in rec_fast)


def test_subclass_overriding_rhs_gets_the_generic_stepper():
    from dynlearn_builtins.systems.two_factor import TwoFactorMap

    class Shifted(TwoFactorMap):
        name = "shifted_test"

        def rhs(self, x, p):
            return super().rhs(x, p) + 1.0

    x = torch.zeros(2, 2, dtype=torch.float64)
    assert isinstance(make_stepper(Shifted(), x, {"mu": torch.ones(2, dtype=torch.float64)}, 0.1), GenericStepper)
    assert not isinstance(make_stepper(TwoFactorMap(), x, {"mu": torch.ones(2, dtype=torch.float64)}, 0.1),
                          GenericStepper)


def test_rk4_step_is_fourth_order():
    sys = dynlearn.make_system("saddle_node_2d")  # x' = r + x^2, y' = -y: y(t) = y0 exp(-t)
    errs = []
    for dt in (0.1, 0.05):
        st = GenericStepper(sys, torch.tensor([[0.0, 1.0]], dtype=torch.float64),
                            {"r": torch.tensor([-1.0], dtype=torch.float64)}, dt)
        st.advance(round(1 / dt))
        errs.append(abs(float(st.x[0, 1]) - math.exp(-1)))
    assert 14 < errs[0] / errs[1] < 18


def test_tail_periods():
    t = np.arange(12.0)
    cycle3 = np.stack([np.cos(2 * np.pi * t / 3), np.sin(2 * np.pi * t / 3)], -1)
    fixed = np.ones((12, 2))
    drift = np.stack([t, t], -1)
    settled, period = tail_periods(np.stack([cycle3, fixed, drift]).transpose(1, 2, 0), 1e-9, 0.01, flow=False)
    assert settled.tolist() == [False, True, False] and period.tolist() == [3, 1, 0]
    # a flow sampled 0.5 apart on a circle of period 2 pi: the parabola refines the return to ~0.01
    ts = 0.5 * np.arange(40)
    circ = np.stack([np.cos(ts), np.sin(ts)], -1)[:, :, None]  # (time, coordinate, orbit)
    _, p = tail_periods(circ, 1e-9, 0.01, flow=True)
    assert abs(p[0] * 0.5 - 2 * np.pi) < 0.02


def test_cell_graph_separates_recurrent_from_transient():
    """Two fixed points, a 2-cycle whose cells are far apart, and a transient passing between them."""
    acc = TailAccumulator(1, 5, lo=np.zeros(2), width=np.full(2, 0.1), flow=False, period_tol=1e-9)
    L = 6
    tails = np.zeros((5, L, 2))
    tails[0] = [0.05, 0.05]  # fixed point A
    tails[1] = [0.06, 0.04]  # same cell: same attractor
    tails[2] = [[0.95, 0.95] if i % 2 else [0.55, 0.55] for i in range(L)]  # 2-cycle, cells 0.4 apart
    tails[3] = [[0.35, 0.05 + 0.2 * i] for i in range(L)]  # transient marching away: not settled
    tails[4, :, 0], tails[4, :, 1] = [0.95, 0.55, 0.95, 0.55, 0.95, 0.55], 0.15  # another 2-cycle, other cells
    acc.add(np.arange(5), tails.transpose(1, 2, 0))
    found = identify(acc.graph(0), np.zeros(5, dtype=np.int8))
    lab = found.labels
    assert lab[0] == lab[1] and lab[3] == -1 and len({lab[0], lab[2], lab[4]}) == 3
    assert found.n_attractors == 3
    # new orbits are labelled through the recurrent cells (or the nearest within 1.5 cells)
    cells = np.array([[0, 0], [1, 1], [5, 5], [50, 50]])
    out = found.classify(cells, np.full(4, oc.OK, dtype=np.int8))
    assert out.tolist() == [lab[0], lab[0], lab[2], -1]
    assert found.classify(cells[:2], np.array([oc.DIVERGED, oc.NAN], dtype=np.int8)).tolist() == [0, -1]


def test_pairs_and_selection():
    assert grid_pairs((3,)).tolist() == [[0, 1], [1, 2]]
    assert len(grid_pairs((4, 5, 6))) == 3 * 5 * 6 + 4 * 4 * 6 + 4 * 5 * 5
    pts = np.array([[0.0], [1.0], [2.5], [10.0]])
    assert knn_pairs(pts, 1).tolist() == [[0, 1], [1, 2], [2, 3]]
    pairs = grid_pairs((40,))
    labels = np.where(np.arange(40) < 10, 0, np.where(np.arange(40) < 20, 1, 2))
    labels[30] = 3  # an unstable attractor's basin: not bisected
    sel = select_pairs(pairs, labels, np.array([True, True, True, False]), max_points=10)
    assert sorted(map(tuple, sel.tolist())) == [(9, 10), (19, 20)]
    many = np.repeat(np.arange(2), 50)[np.random.default_rng(0).permutation(100)]
    sel = select_pairs(grid_pairs((100,)), many, np.array([True, True]), max_points=7)
    assert len(sel) == 7 and (many[sel[:, 0]] < many[sel[:, 1]]).all()


@pytest.mark.parametrize("bits", [1, 3], ids=["bisection", "7-section"])
def test_bisection_converges_to_the_boundary_of_basin_a(bits):
    """Basin 0 is x < 0.3; on the other side basins 1 and 2 alternate in stripes of width 0.01."""

    def classify(x, elem):
        v = x[:, 0].numpy()
        return np.where(v < 0.3, 0, 1 + (np.floor(v / 0.01).astype(int) % 2))

    x0 = torch.tensor([[0.0], [0.25]], dtype=torch.float64)
    x1 = torch.tensor([[1.0], [0.95]], dtype=torch.float64)
    br = bisect(classify, x0, x1, np.array([0, 0]), np.array([1, 2]), torch.zeros(2, dtype=torch.long), 1e-9,
                bits_per_round=bits)
    assert torch.allclose(br.point[:, 0], torch.full((2,), 0.3, dtype=torch.float64), atol=1e-9)
    assert (br.tolerance <= 1e-9).all()
    assert br.mixed.tolist() == [True, True] and set(br.other.tolist()) <= {1, 2}


def test_wilson_interval():
    lo, hi = wilson(np.array([0, 10, 100]), 100, 0.95)
    z = 1.959963984540054
    centre = (0.1 + z**2 / 200) / (1 + z**2 / 100)
    half = z / (1 + z**2 / 100) * math.sqrt(0.1 * 0.9 / 100 + z**2 / 40000)
    assert lo[1] == pytest.approx(centre - half, rel=1e-12) and hi[1] == pytest.approx(centre + half, rel=1e-12)
    assert lo[0] == 0 and hi[2] == 1 and 0 < hi[0] < 0.05


def test_lyapunov_of_linear_maps():
    x = torch.zeros(2, 2, dtype=torch.float64)

    class Diag(MapSystem):
        name = "diag_test"
        description = "diagonal linear map (test only)"
        state_names = ("u", "v")
        parameters = {"s": Param(1.0)}

        def rhs(self, x, p):
            s = torch.as_tensor(p["s"]).unsqueeze(-1)
            return x * torch.cat([s, 0.5 * torch.ones_like(s)], -1)

    lam = exponents(Diag(), x, {"s": torch.tensor([3.0, 0.25], dtype=torch.float64)}, steps=1000, dt=1.0)[0][:, 0]
    # the offset direction aligns with the leading one within a few steps: O(1/steps) bias
    assert lam[0] == pytest.approx(math.log(3), abs=1e-3)
    assert lam[1] == pytest.approx(math.log(0.5), abs=1e-3)

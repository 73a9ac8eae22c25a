"""ghost_network analyzer and ghost_chain system: visit sequences with exact entry/exit times, the ghost graph,
ghost dimension (1 and 2), identity across a parameter, map visits, vectorised visits against a plain loop, the
ghost-network reproduction's claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn import outcome as oc
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.params import Param
from dynlearn.periodic import Circle
from dynlearn.system import FlowSystem
from dynlearn.testing import analyzer_checks, check_system
from dynlearn_builtins.analyzers.fixed_points import FixedPoints
from dynlearn_builtins.analyzers.ghosts import GhostNetwork, ghost_graph
from dynlearn_builtins.analyzers.ghosts.table import dimension
from dynlearn_builtins.analyzers.ghosts.visits import detect, padded
from dynlearn_builtins.reproductions.ghost_network import SETTINGS
from dynlearn_builtins.systems.ghost_chain import (GhostChain, crossing_time, curvatures, passage_times,
                                                   period_time, speed_x)
from problems import SaddleNodeMap

QUICK = SETTINGS["quick"]
R1 = QUICK["r1"]  # r1 < 0: the first ghost is a saddle-node pair of fixed points instead
R2 = QUICK["r2"]
CLAIMS = ["ghost_positions", "ghost_dimension_one", "sequence_ghost0_then_ghost1", "entry_exit_times_exact",
          "dwell_vs_normal_form", "passage_time_normal_form", "graph_one_edge", "identity_across_r1",
          "no_ghost_below_zero"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The quick reproduction: fixed_points and ghost_network on the ghost chain over r1 (trajectories from
    (-1/2, 0), (-1/2, +-0.3) and 5 sampled ones)."""
    return dynlearn.run_reproduction("ghost-network", tmp_path_factory.mktemp("g") / "gn.zarr", quick=True)


@pytest.fixture(scope="module")
def chain(store):
    return store["fixed_points"].to_dataset().load(), store["ghost_network"].to_dataset().load()


@pytest.mark.parametrize("name", CLAIMS)
def test_reproduction_claims(store, name):
    claims = store["claims"].to_dataset()
    assert sorted(claims.claim.values.tolist()) == sorted(CLAIMS)
    c = claims.sel(claim=name)
    assert bool(c.passed), (name, float(c.measured), str(c.tolerance.values))


class TwoBottlenecks(FlowSystem):
    """x' = r + sin^2(pi x)/pi^2, y' = r + sin^2(pi y)/pi^2: both bottlenecks at once, a 2-D ghost at (0, 0)."""

    name = "two_bottlenecks_test"
    description = "two uncoupled saddle-node bottlenecks passed at once"
    state_names = ("x", "y")
    parameters = {"r": Param(0.01, low=0, low_inclusive=False)}
    domain_bounds = ([-0.5, -0.5], [0.5, 0.5])

    def rhs(self, x, p):
        return p["r"][..., None] + torch.sin(math.pi * x) ** 2 / math.pi**2


# -- the system --------------------------------------------------------------------------------------------------
def test_ghost_chain_conforms():
    check_system(GhostChain())


@pytest.mark.parametrize("r1,r2", [(0.01, 0.02), (0.02, 0.005), (-0.05, 0.1)])
def test_ghost_chain_exact_facts(r1, r2):
    gc = GhostChain(r1=r1, r2=r2)
    p = gc.param_tensors((2,))
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert gc.rhs(x, p)[:, 0].tolist() == pytest.approx([r1, r2], abs=1e-15)
    J = gc.jacobian(x, p)
    assert J[:, 0, 0].abs().max() < 1e-15                                   # df/dx = 0 at both ghosts
    assert torch.allclose(J, torch.autograd.functional.jacobian(lambda y: gc.rhs(y, p), x).diagonal(0, 0, 2)
                          .permute(2, 0, 1))
    u = 1e-4                                                                 # x' = r_i + a_i u^2 + O(u^4)
    for x0, r, a in zip((0.0, 1.0), (r1, r2), curvatures(r1, r2)):
        second = (speed_x(x0 + u, r1, r2) + speed_x(x0 - u, r1, r2) - 2 * r) / (2 * u * u)
        assert second == pytest.approx(a, rel=1e-6)


def test_period_time_closed_form():
    assert crossing_time(-0.5, 0.5, 0.01, 0.01) == pytest.approx(period_time(0.01), rel=1e-10)
    assert period_time(1e-6) == pytest.approx(math.pi / 1e-3, rel=1e-5)    # -> pi / sqrt(r)


# -- visits of the chain ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("r1", [0.005, 0.01])
def test_chain_visits_ghost_0_then_1_at_exact_times(chain, r1):
    fp, out = chain
    o = out.sel(r1=r1)
    np.testing.assert_allclose(o.ghost_position.values, [[0.0, 0.0], [1.0, 0.0]], atol=1e-9)
    assert o.visit_ghost.sel(trajectory=0).values[:2].tolist() == [0, 1]
    assert int(o.n_visits.sel(trajectory=0)) == 2
    rho = o.visit_radius.values
    assert rho.tolist() == pytest.approx(fp.sel(r1=r1).passage_radius.values[:2].tolist())
    exact_in = [crossing_time(-0.5, -rho[0], r1, R2), crossing_time(-0.5, 1 - rho[1], r1, R2)]
    exact_out = [crossing_time(-0.5, rho[0], r1, R2), crossing_time(-0.5, 1 + rho[1], r1, R2)]
    v = o.sel(trajectory=0)
    assert v.entry_time.values[:2] == pytest.approx(exact_in, rel=1e-6)
    assert v.exit_time.values[:2] == pytest.approx(exact_out, rel=1e-6)
    assert v.visit_entered.values[:2].all() and v.visit_left.values[:2].all()
    # sampled starts: the ghosts ahead of x0, in order (a start inside a ball: that visit has no entry)
    for i in range(3, o.sizes["trajectory"]):
        t = o.isel(trajectory=i)
        x0 = t.initial_state.values
        ahead = [g for g, c in enumerate((0.0, 1.0)) if x0[0] <= c + rho[g]]
        assert int(t.n_visits) == len(ahead) and t.visit_ghost.values[:len(ahead)].tolist() == ahead
        if ahead:
            inside = np.hypot(x0[0] - ahead[0], x0[1]) <= rho[ahead[0]]
            assert bool(t.visit_entered[0]) == (not inside)


@pytest.mark.parametrize("r1", [0.005, 0.01])
def test_chain_dwell_vs_normal_form(chain, r1):
    fp, out = chain
    o = out.sel(r1=r1)
    nf = fp.sel(r1=r1).passage_time_nf_ball.values[:2]
    assert o.passage_time_nf.values == pytest.approx(passage_times(r1, R2), rel=1e-9)
    assert o.dwell_time.sel(trajectory=0).values[:2] == pytest.approx(nf, rel=0.05)


@pytest.mark.parametrize("r1", [0.005, 0.01])
def test_chain_graph_has_one_edge_and_dimension_one(chain, r1):
    _, out = chain
    g = ghost_graph(out, r1=r1)
    assert sorted(g.nodes) == [0, 1]
    assert list(g.edges) == [(0, 1)]
    assert [g.nodes[i]["dimension"] for i in (0, 1)] == [1, 1]
    assert g.nodes[1]["position"] == pytest.approx((1.0, 0.0), abs=1e-9)
    o = out.sel(r1=r1)
    both = ((o.visit_ghost.isel(visit=0) == 0) & (o.visit_ghost.isel(visit=1) == 1)).sum()
    assert g.edges[0, 1]["count"] == int(both) == int(o.transition_count.sel(ghost_from=0, ghost_to=1)) >= 2
    assert int(o.transition_count.sum()) == int(both)


def test_chain_transverse_starts_same_sequence(chain):
    _, out = chain
    assert out.sel(r1=0.01, trajectory=[1, 2]).visit_ghost.values[:, :2].tolist() == [[0, 1], [0, 1]]


def test_ghost_identity_across_r1(chain):
    """At r1 < 0 the first ghost is gone (the ghost at x = 1 moves to slot 0): its identity stays."""
    _, out = chain
    assert out.n_ghost.values.tolist() == [1, 2, 2]
    assert out.attrs["tracked_dim"] == "r1"
    pos = out.ghost_position.sel(state="x").values
    ids = out.ghost_track.values
    at_one = [ids[i][np.nanargmin(np.abs(pos[i] - 1))] for i in range(3)]
    at_zero = [ids[i][np.nanargmin(np.abs(pos[i]))] for i in (1, 2)]
    assert len(set(at_one)) == 1 and len(set(at_zero)) == 1 and at_one[0] != at_zero[0]
    assert list(ghost_graph(out, r1=-0.01).edges) == []           # one ghost, no transition


def test_masked_and_diverged_are_labeled(chain):
    fp, _ = chain
    grid = dynlearn.grid(r1=R1)
    out = GhostNetwork(initial_states=[[-0.5, 0.0]], n_trajectories=0, steps=1000, max_norm=1.1).run(
        "ghost_chain", grid, upstream={"fixed_points": fp})
    o = out.sel(r1=0.01, trajectory=0)
    assert oc.labels(o.trajectory_outcome.values[None]).tolist() == ["diverged"]
    assert o.visit_ghost.values[:2].tolist() == [0, 1]
    assert bool(o.visit_left[0]) and not bool(o.visit_left[1])              # diverged inside the second ball


# -- ghost dimension -----------------------------------------------------------------------------------------
def test_two_bottlenecks_at_once_dimension_two():
    sys = TwoBottlenecks()
    grid = dynlearn.grid(r=[0.005, 0.01])
    fp = FixedPoints(n_starts=16, landscape=False).run(sys, grid)
    out = GhostNetwork(initial_states=[[-0.5, -0.5]], n_trajectories=0, steps=1000).run(
        sys, grid, upstream={"fixed_points": fp})
    assert out.n_ghost.values.tolist() == [1, 1]
    assert out.ghost_dimension.isel(ghost=0).values.tolist() == [2, 2]
    np.testing.assert_allclose(out.ghost_position.isel(ghost=0).values, 0.0, atol=1e-8)
    v = out.isel(trajectory=0)
    assert v.visit_ghost.values[:, 0].tolist() == [0, 0]
    # along the diagonal both coordinates cross the ball |x| <= rho at once: x(t) on [-rho/sqrt2, rho/sqrt2]
    for i, r in enumerate((0.005, 0.01)):
        h = float(out.visit_radius.values[i, 0]) / math.sqrt(2)
        assert float(v.dwell_time.values[i, 0]) == pytest.approx(crossing_time(-h, h, r, r), rel=1e-6)


def test_dimension_of_maps_and_tiny_spectra():
    one = torch.tensor([[complex(1.0, 0), complex(0.3, 0)], [complex(0.99, 0.1), complex(1.0, 0)]])
    assert dimension(one, "map", 0.05, torch.tensor(1.0)).tolist() == [1, 2]
    tiny = torch.tensor([[complex(1e-13, 0), complex(-3e-12, 0)]])
    assert dimension(tiny, "flow", 0.05, torch.tensor([0.01])).tolist() == [2]


# -- vectorised visits against a plain loop ------------------------------------------------------------------
def loop_visits(xs, centers, radius, circle):
    """Reference: per trajectory, per time, the ghost label and its runs (no interpolation)."""
    T, N, _ = xs.shape
    out = []
    for n in range(N):
        runs, cur = [], -1
        for t in range(T):
            d = [float(dynlearn.periodic.distance(xs[t, n], centers[n, g], circle)) / float(radius[n, g])
                 for g in range(centers.shape[1])]
            lab = int(np.argmin(d)) if min(d) <= 1 else -1
            if lab != cur and lab >= 0:
                runs.append([lab, t, t])
            elif lab == cur and lab >= 0:
                runs[-1][2] = t
            cur = lab
        out.append(runs)
    return out


@pytest.mark.parametrize("periodic", [False, True], ids=["line", "circle"])
def test_detect_matches_loop(periodic):
    gen = torch.Generator().manual_seed(3)
    T, N, G = 60, 7, 3
    steps = 0.3 * torch.randn(T, N, 2, generator=gen, dtype=torch.float64)
    xs = steps.cumsum(0)
    circle = Circle(low=np.array([-math.pi, np.nan]), period=np.array([2 * math.pi, np.nan])) if periodic \
        else Circle.none(2)
    if periodic:
        xs = dynlearn.periodic.wrap(xs, circle)
    centers = torch.randn(N, G, 2, generator=gen, dtype=torch.float64)
    radius = 0.4 + torch.rand(N, G, generator=gen, dtype=torch.float64)
    v = detect(xs, torch.ones(T, N, dtype=torch.bool), torch.ones(N, dtype=torch.float64), centers, radius,
               torch.ones(N, G, dtype=torch.bool), circle, flow=False)
    ref = loop_visits(xs.numpy(), centers.numpy(), radius.numpy(), circle)
    got = [[] for _ in range(N)]
    for n, g, e, x in zip(v.trajectory.tolist(), v.ghost.tolist(), v.entry.tolist(), v.exit.tolist()):
        got[n].append([g, int(e), int(x) - 1 if x < T - 1 or x != T - 1 else int(x)])
    flat_ref = [[g, a, b] for runs in ref for g, a, b in runs]
    assert sum(len(r) for r in ref) == v.ghost.numel() > 10
    assert [[g, a] for g, a, _ in flat_ref] == [[g, int(e)] for g, e in zip(v.ghost.tolist(), v.entry.tolist())]
    ends = [b for _, _, b in flat_ref]
    dwell = (v.exit - v.entry).tolist()
    lefts = v.left.tolist()
    assert [b - a + 1 if left else b - a for (_, a, b), left in zip(flat_ref, lefts)] == [int(d) for d in dwell]
    assert ends == [int(x) - 1 if left else int(x) for x, left in zip(v.exit.tolist(), lefts)]
    ghost, *_, count = padded(v, N, 4)
    assert count.tolist() == [len(r) for r in ref]
    assert ghost.shape == (N, min(4, max(len(r) for r in ref)))


def test_detect_across_the_cut():
    """A visit of a ghost at theta = pi - 0.05 continues across the cut at +-pi (one visit, not two)."""
    circle = Circle(low=np.array([-math.pi]), period=np.array([2 * math.pi]))
    th = dynlearn.periodic.wrap(torch.linspace(2.5, 4.0, 31, dtype=torch.float64), circle)[:, None, None]
    v = detect(th, torch.ones(31, 1, dtype=torch.bool), torch.tensor([0.05], dtype=torch.float64),
               torch.tensor([[[math.pi - 0.05]]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64),
               torch.ones(1, 1, dtype=torch.bool), circle, flow=True)
    assert v.ghost.tolist() == [0]
    assert [v.entry.item(), v.exit.item()] == pytest.approx([(math.pi - 0.35 - 2.5), (math.pi + 0.25 - 2.5)],
                                                            abs=1e-9)


# -- errors, conformance, views --------------------------------------------------------------------------------
def test_bad_input(chain):
    fp, out = chain
    grid = dynlearn.grid(r1=R1)
    with pytest.raises(ParameterError, match="no trajectories"):
        GhostNetwork(n_trajectories=0).run("ghost_chain", grid, upstream={"fixed_points": fp})
    with pytest.raises(ShapeError, match="dim 'r1' of size 3"):
        GhostNetwork(n_trajectories=1).run("ghost_chain", dynlearn.grid(r1=[0.01, 0.02]),
                                           upstream={"fixed_points": fp})
    with pytest.raises(ParameterError, match="track_dim 'epoch' is not a sweep dim"):
        GhostNetwork(n_trajectories=1, steps=10, track_dim="epoch").run("ghost_chain", grid,
                                                                        upstream={"fixed_points": fp})
    with pytest.raises(ShapeError, match=r"select one sweep element; dims left: \['r1'\]"):
        ghost_graph(out)
    with pytest.raises(ShapeError, match="initial_states: 3 values per state"):
        GhostNetwork(initial_states=[[0.0, 0.0, 0.0]]).run("ghost_chain", grid, upstream={"fixed_points": fp})


@pytest.mark.parametrize("check", list(analyzer_checks(GhostNetwork(n_trajectories=3, steps=200), "saddle_node",
                                                       dynlearn.grid(r=[0.01, 0.04]))), ids=lambda c: c.__name__)
def test_conformance(check):
    check()


def test_views(chain):
    import holoviews as hv

    from dynlearn.page import render_view

    _, out = chain
    views = GhostNetwork().views(out)
    assert sorted(views) == ["ghost_graph", "ghost_tracks", "ghost_visits"]
    assert isinstance(views["ghost_graph"], hv.HoloMap) and len(views["ghost_graph"]) == 3
    render_view("ghost_graph", views["ghost_graph"])          # the browse page's path; one frame has no edge


def test_map_ghost_visit_counts_iterates():
    """x -> x + r + x^2: the visit of the ghost at 0 lasts the number of iterates inside its ball (counted by a
    plain loop), from the first iterate inside; the orbit then diverges (a labeled outcome)."""
    grid = dynlearn.grid(r=[0.0025, 0.01])
    fp = FixedPoints(n_starts=16, landscape=False).run(SaddleNodeMap(), grid)
    out = GhostNetwork(initial_states=[[-0.8]], n_trajectories=0, steps=300, max_norm=10.0).run(
        SaddleNodeMap(), grid, upstream={"fixed_points": fp})
    assert out.ghost_dimension.isel(ghost=0).values.tolist() == [1, 1]
    for i, r in enumerate((0.0025, 0.01)):
        rho = float(out.visit_radius.values[i, 0])
        x, xs = -0.8, []
        for _ in range(301):
            xs.append(x)
            x = x + r + x * x
        inside = np.flatnonzero(np.abs(np.array(xs) - float(out.ghost_position.values[i, 0, 0])) <= rho)
        v = out.isel(r=i, trajectory=0)
        assert v.visit_ghost.values.tolist()[:1] == [0] and int(v.n_visits) == 1
        assert float(v.entry_time[0]) == inside[0] and float(v.dwell_time[0]) == inside.size
        assert oc.labels(v.trajectory_outcome.values[None]).tolist() == ["diverged"]


def test_per_element_states_and_radius_option(chain):
    """Initial states per sweep element (a DataArray over r1) and a fixed ball radius: exact entry times."""
    import xarray as xr

    fp, _ = chain
    starts = xr.DataArray([[[-0.5, 0.0]], [[-0.4, 0.0]], [[-0.3, 0.0]]], dims=("r1", "sample", "state"),
                          coords={"r1": R1})
    out = GhostNetwork(initial_states=starts, n_trajectories=0, steps=1000, radius=0.1).run(
        "ghost_chain", dynlearn.grid(r1=R1), upstream={"fixed_points": fp})
    assert out.initial_state.sel(state="x", trajectory=0).values.tolist() == [-0.5, -0.4, -0.3]
    assert out.trajectory_source.values.tolist() == ["user"]
    for x0, r1 in ((-0.4, 0.005), (-0.3, 0.01)):
        v = out.sel(r1=r1, trajectory=0)
        assert v.visit_radius.values.tolist() == [0.1, 0.1]
        assert v.entry_time.values[:2] == pytest.approx([crossing_time(x0, -0.1, r1, R2),
                                                         crossing_time(x0, 0.9, r1, R2)], rel=1e-6)

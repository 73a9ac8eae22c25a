"""bifurcations analyzer: predictor-corrector tracks, events on normal forms swept through their bifurcations
(saddle-node, pitchfork, transcritical, Hopf, flip, Neimark-Sacker, ghost emergence), the count bookkeeping, and
points that move far between steps."""

from __future__ import annotations

import numpy as np
import pytest

import dynlearn
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.store import create_store, open_store, write_group
from dynlearn.testing import analyzer_checks
from dynlearn_builtins.analyzers.bifurcations import Bifurcations, tracks_graph
from dynlearn_builtins.analyzers.bifurcations.events import REASONS
from dynlearn_builtins.analyzers.fixed_points import TYPES, FixedPoints
from problems import (LocalGhost, LogisticMap, MovingSaddleNode, NeimarkSackerMap, Pitchfork, SaddleNodeMap,
                      Transcritical, TurningPhase)


def run(system, grid, n_starts=16, **options):
    fp = FixedPoints(n_starts=n_starts).run(system, grid)
    return fp, Bifurcations(**options).run(system, grid, upstream={"fixed_points": fp})


def bifurcations(out):
    """The events other than ghost emergence, as (event_type, subtype) pairs."""
    return [(str(t), str(s)) for t, s in zip(out.event_type.values, out.subtype.values) if t != "ghost_emergence"]


def assert_books_balance(fp, out, dim):
    """Every change of the fixed-point count is explained by events, and the events' count changes add up."""
    n = fp.n_fixed.transpose(..., dim)
    change = out.fixed_change.transpose(..., dim)
    np.testing.assert_array_equal(change.isel({dim: slice(1, None)}).values, n.diff(dim).values)
    np.testing.assert_array_equal(out.unexplained.values, 0)
    np.testing.assert_array_equal(out.fixed_change.values, out.explained_change.values)
    total = n.isel({dim: -1}) - n.isel({dim: 0})
    assert int(out.count_change.sum()) == int(total.sum())


@pytest.fixture(scope="module")
def sweep():
    """x' = x^2 + r, r from -1 to 1 (r = 0 on the grid)."""
    return run("saddle_node", dynlearn.grid(r=np.linspace(-1, 1, 21)))


@pytest.mark.parametrize("check", list(analyzer_checks(Bifurcations())), ids=lambda c: c.__name__)
def test_conformance(check):
    check()


def test_saddle_node_sweep_one_event_at_zero(sweep):
    fp, out = sweep
    assert bifurcations(out) == [("saddle_node", "annihilation")]
    ev = out.isel(event=int(np.nonzero(out.event_type.values == "saddle_node")[0][0]))
    assert (str(ev.event_type.item()), str(ev.subtype.item())) == ("saddle_node", "annihilation")
    assert float(ev.location) == 0.0  # the double root at r = 0 is on the grid
    assert int(ev.count_change) == -2 and float(ev.confidence) == 1.0
    assert float(ev.r_before) == pytest.approx(-0.1) and float(ev.r_after) == pytest.approx(0.1)
    assert_books_balance(fp, out, "r")
    # the double root at r = 0 counts once: the pair's -2 is split over the two intervals around it
    assert out.fixed_change.values.tolist()[10:12] == [-1, -1]


def test_saddle_node_sweep_ghost_after(sweep):
    fp, out = sweep
    r = fp.r.values
    assert np.all(fp.n_ghost.values[r > 0] == 1) and np.all(fp.n_ghost.values[r <= 0] == 0)
    assert np.all(fp.n_fixed.values[r < 0] == 2) and np.all(fp.n_fixed.values[r > 0] == 0)
    # the ghost appearing where the pair vanished: evidence of the saddle-node, and a ghost emergence after it
    sn = out.isel(event=np.nonzero(out.event_type.values == "saddle_node")[0])
    np.testing.assert_allclose(float(sn.q_min_depth[0]), 0.1, rtol=1e-9)
    ghost = out.isel(event=np.nonzero(out.event_type.values == "ghost_emergence")[0])
    assert ghost.subtype.values.tolist() == ["after_saddle_node"] and int(ghost.count_change[0]) == 0
    assert float(ghost.r_after[0]) == pytest.approx(0.1)
    # the ghost is one track from r = 0.1 to r = 1 (continued as the minimum of the speed)
    ghost_tracks = out.track.values[fp.point_type.values == TYPES.index("ghost")]
    assert len(ghost_tracks) == 10 and len(set(ghost_tracks)) == 1


@pytest.mark.parametrize("n", [20, 40], ids=["n=20", "n=40"])
def test_saddle_node_between_grid_points(n):
    grid = dynlearn.grid(r=np.linspace(-1, 1, n))
    fp, out = run("saddle_node", grid)
    assert bifurcations(out) == [("saddle_node", "annihilation")]
    sn = out.isel(event=int(np.nonzero(out.event_type.values == "saddle_node")[0][0]))
    assert abs(float(sn.location)) <= (2 / (n - 1)) / 2 + 1e-12
    assert int(sn.node_continued[int(np.nonzero(out.node_track.values == int(sn.track_a))[0][-1])]) == 2  # lost
    assert_books_balance(fp, out, "r")


def test_reversed_sweep_is_a_birth():
    _, out = run("saddle_node", dynlearn.grid(r=np.linspace(1, -1, 21)))
    assert out.subtype.values.tolist() == ["birth"] and int(out.count_change[0]) == 2
    assert float(out.location[0]) == 0.0


def test_hopf_keeps_other_sweep_dims():
    grid = dynlearn.grid(mu=np.linspace(-0.5, 0.5, 11), omega=[1.0, 2.0])
    fp, out = run("hopf", grid, dim="mu")
    assert out.track.dims == ("mu", "omega", "point") and out.n_events.dims == ("mu", "omega")
    assert out.fixed_change.dims == ("mu", "omega")
    assert bifurcations(out) == [("hopf", "destabilizing")] * 2
    assert sorted(out.omega_at_event.values.tolist()) == [1.0, 2.0]
    np.testing.assert_allclose(out.location.values, 0.0, atol=1e-15)
    np.testing.assert_allclose(out.eig_a.values, -0.1, atol=1e-12)  # Re lambda = mu on both sides
    np.testing.assert_allclose(out.eig_b.values, 0.1, atol=1e-12)


@pytest.mark.parametrize(
    "system, grid, event, location",
    [(LogisticMap(), dynlearn.grid(mu=np.linspace(2.5, 3.5, 11)), "flip", 3.0),
     (NeimarkSackerMap(), dynlearn.grid(mu=np.linspace(-0.1, 0.1, 11)), "neimark_sacker", 0.0)],
    ids=["flip", "neimark-sacker"],
)
def test_map_stability_changes(system, grid, event, location):
    fp, out = run(system, grid)
    assert bifurcations(out) == [(event, "destabilizing")]
    assert float(out.location[0]) == pytest.approx(location, abs=1e-12)
    assert_books_balance(fp, out, "mu")


R_ON = np.linspace(-1, 1, 21)    # r = 0 on the grid: the bifurcation point is a (non-hyperbolic) node
R_OFF = np.linspace(-1, 1, 20)   # r = 0 halfway between two grid points


@pytest.mark.parametrize(
    "system, r, events",
    [("saddle_node", R_OFF[::-1], [("saddle_node", "birth")]),
     (SaddleNodeMap(), R_OFF / 5, [("saddle_node", "annihilation")]),
     (Pitchfork(), R_ON, [("pitchfork", "birth")]),
     (Pitchfork(), R_OFF, [("pitchfork", "birth")]),
     (Pitchfork(), R_OFF[::-1], [("pitchfork", "annihilation")]),
     (Pitchfork(s=1.0), R_ON, [("pitchfork", "annihilation")]),
     (Transcritical(), R_ON, [("transcritical", "exchange")]),
     (Transcritical(), R_OFF, [("transcritical", "exchange")]),
     ("hopf", R_OFF / 2, [("hopf", "destabilizing")]),
     (LogisticMap(), 3 + R_OFF / 2, [("flip", "destabilizing")])],
    ids=["saddle-node-birth", "saddle-node-map", "pitchfork-on-grid", "pitchfork", "pitchfork-reversed", "subcritical-pitchfork",
         "transcritical-on-grid", "transcritical", "hopf", "flip"],
)
def test_normal_forms(system, r, events):
    """Each normal form swept through its bifurcation (float64): the event types exactly, the location within
    one grid step of the exact value, and every count change explained."""
    name = "mu" if system == "hopf" or isinstance(system, LogisticMap) else "r"
    exact = 3.0 if isinstance(system, LogisticMap) else 0.0
    fp, out = run(system, dynlearn.grid(**{name: r}), n_starts=64)
    assert bifurcations(out) == events
    ev = out.isel(event=np.nonzero(out.event_type.values != "ghost_emergence")[0])
    assert abs(float(ev.location[0]) - exact) <= abs(r[1] - r[0]) + 1e-12
    assert_books_balance(fp, out, name)
    expected = {"birth": 2, "annihilation": -2}.get(events[0][1], 0)
    assert int(ev.count_change[0]) == expected
    if events[0][0] == "pitchfork":  # the centre track keeps its identity and changes stability
        centre = out.track.values[np.abs(fp.position.values[..., 0]) < 1e-9]
        assert len(set(centre)) == 1 and int(ev.track_c[0]) == int(centre[0])


def test_transcritical_tracks_follow_the_branches():
    """Off the grid the two branches x = 0 and x = r cross between two steps: the secant predictor follows each
    branch through the crossing (a matching by type would swap them to keep their stability)."""
    fp, out = run(Transcritical(), dynlearn.grid(r=R_OFF), n_starts=64)
    x = fp.position.values[..., 0]
    on_zero = out.track.values[np.abs(x) < 1e-9]
    on_r = out.track.values[np.abs(x - R_OFF[:, None]) < 1e-9]
    assert len(set(on_zero)) == 1 and len(set(on_r)) == 1 and set(on_zero) != set(on_r)


def test_points_moving_far_keep_their_tracks():
    """The saddle-node pair turned by 120 degrees and carried 1.5 box-gates per step: plain matching of the last
    positions breaks the tracks at every step; the predictor-corrector keeps one track per point (and the ghost's)."""
    grid = dynlearn.grid(r=R_OFF)
    fp = FixedPoints(n_starts=64).run(MovingSaddleNode(), grid)
    fixed = (fp.point_type.values >= 0) & (fp.point_type.values < TYPES.index("ghost"))
    ghost = fp.point_type.values == TYPES.index("ghost")
    plain = Bifurcations(gate=0.05, substeps=0).run(MovingSaddleNode(), grid, upstream={"fixed_points": fp})
    assert len(set(plain.track.values[fixed])) > 2 and len(set(plain.track.values[ghost])) > 1
    assert (plain.unexplained.values > 0).any()
    out = Bifurcations(gate=0.05).run(MovingSaddleNode(), grid, upstream={"fixed_points": fp})
    assert len(set(out.track.values[fixed])) == 2 and len(set(out.track.values[ghost])) == 1
    assert bifurcations(out) == [("saddle_node", "annihilation")]
    assert abs(float(out.location.values[out.event_type.values == "saddle_node"][0])) <= R_OFF[1] - R_OFF[0]
    assert out.subtype.values[out.event_type.values == "ghost_emergence"].tolist() == ["after_saddle_node"]
    assert_books_balance(fp, out, "r")


def test_tracks_cross_the_cut_of_a_periodic_coordinate():
    """Two fixed points turning once around the circle keep one track each across the cut at +-pi."""
    fp, out = run(TurningPhase(), dynlearn.grid(r=np.linspace(0, 2 * np.pi, 13)))
    assert np.all(fp.n_fixed.values == 2) and out.sizes["event"] == 0
    stable = fp.point_type.values == TYPES.index("stable_node")
    assert len(set(out.track.values[stable])) == 1 and len(set(out.track.values[~stable & fp.present.values])) == 1
    assert_books_balance(fp, out, "r")


def test_a_point_leaving_the_box_is_unexplained():
    """x = r leaves the box [-2, 2] at r = 2: the count falls by one, explained by no event, labeled box_edge."""
    r = np.linspace(1.0, 3.0, 11)
    fp, out = run(Transcritical(), dynlearn.grid(r=r), n_starts=64)
    assert out.sizes["event"] == 0
    change = out.fixed_change.values
    assert change.tolist().count(-1) == 1 and change.sum() == -1
    k = int(np.argmin(change))
    assert out.unexplained.values.tolist() == [0] * k + [REASONS.index("box_edge")] + [0] * (len(r) - k - 1)
    assert out.explained_change.values.tolist() == [0] * len(r)


def test_ghost_emergence_without_bifurcation():
    grid = dynlearn.grid(c=[2.0, 1.5, 1.0, 0.5, 0.2, 0.05, 0.01])
    fp, out = run(LocalGhost(), grid)
    assert np.all(fp.n_fixed.values == 1)
    np.testing.assert_allclose(fp.position.values[:, 0, 0], 2.0, atol=1e-12)
    assert out.event_type.values.tolist() == ["ghost_emergence"] and out.subtype.values.tolist() == ["new"]
    assert int(out.count_change[0]) == 0
    first = int(out.step_after[0])
    assert np.all(fp.n_ghost.values[first:] == 1) and np.all(fp.n_ghost.values[:first] == 0)


@pytest.fixture(scope="module")
def local_ghost():
    grid = dynlearn.grid(c=[2.0, 1.5, 1.0, 0.5, 0.2, 0.05, 0.01])
    return grid, FixedPoints(n_starts=16).run(LocalGhost(), grid)   # the ghost near -1 from c = 0.5 on


@pytest.mark.parametrize(
    "types, expected",
    [({3: "slow_point"}, [("from_slow_point", 4)]),           # a slow point deepens into a ghost
     ({4: "slow_point"}, [("from_slow_point", 5)]),           # flickers through the ghost test: one event
     ({4: None, 5: None, 6: None}, []),                       # a ghost seen once is not confirmed
     ({3: None, 4: None, 5: None}, [])],                      # ... nor one that appears at the last step
    ids=["from-slow-point", "flicker", "unconfirmed", "last-step"],
)
def test_ghost_emergence_rules(local_ghost, types, expected):
    grid, fp = local_ghost
    fp = fp.copy(deep=True)
    for step, t in types.items():
        fp["point_type"][dict(c=step, point=1)] = TYPES.index(t) if t else -1
        fp["present"][dict(c=step, point=1)] = t is not None
    out = Bifurcations().run(LocalGhost(), grid, upstream={"fixed_points": fp})
    assert [(str(s), int(k)) for s, k in zip(out.subtype.values, out.step_after.values)] == expected


def test_graph_tables_rebuild(sweep):
    fp, out = sweep
    g = tracks_graph(out)
    assert g.number_of_nodes() == int(fp.present.sum()) == out.sizes["node"]
    assert g.number_of_edges() == out.sizes["edge"]
    # every node's track equals the track variable at its (r, point)
    for i, attrs in g.nodes(data=True):
        assert int(out.track.sel(r=attrs["r"], point=attrs["point"])) == attrs["track"]
        assert attrs["type"] == TYPES[int(fp.point_type.sel(r=attrs["r"], point=attrs["point"]))]
    # edges continue a track
    for s, t in g.edges:
        assert g.nodes[s]["track"] == g.nodes[t]["track"] and g.nodes[s]["step"] < g.nodes[t]["step"]


def test_tracks_survive_short_gaps():
    fp, _ = run("saddle_node", dynlearn.grid(r=np.linspace(-1, -0.5, 6)))
    gappy = fp.copy(deep=True)
    gappy["present"][dict(r=2, point=1)] = False  # the unstable root is missed once
    gappy["point_type"][dict(r=2, point=1)] = -1
    out = Bifurcations().run("saddle_node", dynlearn.grid(r=fp.r.values), upstream={"fixed_points": gappy})
    tracks = out.track.values
    assert len(set(tracks[:, 1]) - {-1}) == 1  # same ID after the gap
    assert int(out.edge_gap.max()) == 1 and out.sizes["event"] == 0
    # the count dips and comes back: not explained by an event, labeled as a point the finder missed
    assert out.fixed_change.values.tolist() == [0, 0, -1, 1, 0, 0]
    missed = REASONS.index("missed_point")
    assert out.unexplained.values.tolist() == [0, 0, missed, missed, 0, 0]


def test_empty_events_survive_the_store(tmp_path, sweep):
    fp, _ = sweep
    grid = dynlearn.grid(r=np.linspace(-1, -0.5, 4))
    _, out = run("saddle_node", grid)
    assert out.sizes["event"] == 0
    create_store(tmp_path / "s.zarr", {}, {"config": {}})
    write_group(tmp_path / "s.zarr", "bifurcations", out)
    back = open_store(tmp_path / "s.zarr")["bifurcations"].to_dataset()
    assert back.sizes["event"] == 0 and back.sizes["node"] == out.sizes["node"]


@pytest.mark.parametrize("options, error", [({"gate": 0.0}, ParameterError), ({"dim": "nope"}, ParameterError),
                                            ({"max_gap": -1}, ParameterError), ({"substeps": -1}, ParameterError),
                                            ({"min_confidence": 2.0}, ParameterError)],
                         ids=["gate", "dim", "max_gap", "substeps", "min_confidence"])
def test_bad_options(sweep, options, error):
    fp, _ = sweep
    with pytest.raises(error):
        Bifurcations(**options).run("saddle_node", dynlearn.grid(r=fp.r.values), upstream={"fixed_points": fp})


def test_mismatched_upstream_is_an_error(sweep):
    fp, _ = sweep
    with pytest.raises(ShapeError, match="size"):
        Bifurcations().run("saddle_node", dynlearn.grid(r=[0.0, 1.0]), upstream={"fixed_points": fp})


def test_views_build(sweep):
    import holoviews as hv

    views = Bifurcations().views(sweep[1])
    assert isinstance(views["tracks"], hv.core.Dimensioned)

"""bifurcations analyzer: tracks, saddle-node / stability-change / ghost-emergence events, graph tables."""

from __future__ import annotations

import numpy as np
import pytest

import dynlearn
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.store import create_store, open_store, write_group
from dynlearn.testing import analyzer_checks
from dynlearn_builtins.analyzers.bifurcations import Bifurcations, tracks_graph
from dynlearn_builtins.analyzers.fixed_points import TYPES, FixedPoints
from problems import LocalGhost, LogisticMap, NeimarkSackerMap


def run(system, grid, **options):
    fp = FixedPoints(n_starts=16).run(system, grid)
    return fp, Bifurcations(**options).run(system, grid, upstream={"fixed_points": fp})


@pytest.fixture(scope="module")
def sweep():
    """x' = x^2 + r, r from -1 to 1 (r = 0 on the grid)."""
    return run("saddle_node", dynlearn.grid(r=np.linspace(-1, 1, 21)))


@pytest.mark.parametrize("check", list(analyzer_checks(Bifurcations())), ids=lambda c: c.__name__)
def test_conformance(check):
    check()


def test_saddle_node_sweep_one_event_at_zero(sweep):
    fp, out = sweep
    assert out.sizes["event"] == 1
    ev = out.isel(event=0)
    assert (str(ev.event_type.item()), str(ev.subtype.item())) == ("saddle_node", "annihilation")
    assert float(ev.location) == 0.0  # the double root at r = 0 is on the grid
    assert int(ev.count_change) == -2 and float(ev.confidence) == 1.0
    assert float(ev.r_before) == pytest.approx(-0.1) and float(ev.r_after) == pytest.approx(0.1)


def test_saddle_node_sweep_ghost_after(sweep):
    fp, out = sweep
    r = fp.r.values
    assert np.all(fp.n_ghost.values[r > 0] == 1) and np.all(fp.n_ghost.values[r <= 0] == 0)
    assert np.all(fp.n_fixed.values[r < 0] == 2) and np.all(fp.n_fixed.values[r > 0] == 0)
    # the ghost appearing where the pair vanished is evidence of the saddle-node, not a ghost emergence
    np.testing.assert_allclose(float(out.q_min_depth[0]), 0.1, rtol=1e-9)
    assert "ghost_emergence" not in out.event_type.values


@pytest.mark.parametrize("n", [20, 40], ids=["n=20", "n=40"])
def test_saddle_node_between_grid_points(n):
    grid = dynlearn.grid(r=np.linspace(-1, 1, n))
    _, out = run("saddle_node", grid)
    assert out.event_type.values.tolist() == ["saddle_node"]
    assert abs(float(out.location[0])) <= (2 / (n - 1)) / 2 + 1e-12


def test_reversed_sweep_is_a_birth():
    _, out = run("saddle_node", dynlearn.grid(r=np.linspace(1, -1, 21)))
    assert out.subtype.values.tolist() == ["birth"] and int(out.count_change[0]) == 2
    assert float(out.location[0]) == 0.0


def test_hopf_keeps_other_sweep_dims():
    grid = dynlearn.grid(mu=np.linspace(-0.5, 0.5, 11), omega=[1.0, 2.0])
    fp, out = run("hopf", grid, dim="mu")
    assert out.track.dims == ("mu", "omega", "point") and out.n_events.dims == ("mu", "omega")
    assert out.subtype.values.tolist() == ["hopf", "hopf"]
    assert sorted(out.omega_at_event.values.tolist()) == [1.0, 2.0]
    np.testing.assert_allclose(out.location.values, 0.0, atol=1e-15)
    np.testing.assert_allclose(out.eig_a.values, -0.1, atol=1e-12)  # Re lambda = mu on both sides
    np.testing.assert_allclose(out.eig_b.values, 0.1, atol=1e-12)


@pytest.mark.parametrize(
    "system, grid, subtype, location",
    [(LogisticMap(), dynlearn.grid(mu=np.linspace(2.5, 3.5, 11)), "flip", 3.0),
     (NeimarkSackerMap(), dynlearn.grid(mu=np.linspace(-0.1, 0.1, 11)), "neimark_sacker", 0.0)],
    ids=["flip", "neimark-sacker"],
)
def test_map_stability_changes(system, grid, subtype, location):
    _, out = run(system, grid)
    assert out.event_type.values.tolist() == ["stability_change"]
    assert out.subtype.values.tolist() == [subtype]
    assert float(out.location[0]) == pytest.approx(location, abs=1e-12)


def test_ghost_emergence_without_bifurcation():
    grid = dynlearn.grid(c=[2.0, 1.5, 1.0, 0.5, 0.2, 0.05, 0.01])
    fp, out = run(LocalGhost(), grid)
    assert np.all(fp.n_fixed.values == 1)
    np.testing.assert_allclose(fp.position.values[:, 0, 0], 2.0, atol=1e-12)
    assert out.event_type.values.tolist() == ["ghost_emergence"]
    assert int(out.count_change[0]) == 0
    first = int(out.step_after[0])
    assert np.all(fp.n_ghost.values[first:] == 1) and np.all(fp.n_ghost.values[:first] == 0)


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
                                            ({"max_gap": -1}, ParameterError),
                                            ({"min_confidence": 2.0}, ParameterError)],
                         ids=["gate", "dim", "max_gap", "min_confidence"])
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

"""fixed_points analyzer: exact fixed points, stability, ghosts and passage times (DESIGN.md 3.1, 3.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dynlearn
from dynlearn.errors import ParameterError, ShapeError
from dynlearn.testing import analyzer_checks
from dynlearn_builtins.analyzers.fixed_points import TYPES, FixedPoints
from problems import (
    CurvedSaddleNode,
    SaddleNodeMap,
    ball_passage_time,
    ghost_passage_time,
    hopf_eigenvalues,
    saddle_node_eigenvalues,
    saddle_node_roots,
    two_factor_normal_eigenvalue,
    two_factor_origin_eigenvalues,
)

R_NEG = [-1.0, -0.25, -0.01]
R_POS = [0.0025, 0.01, 0.3]


def types(ds) -> list[str]:
    return [TYPES[int(c)] for c in np.asarray(ds.point_type.values).ravel() if c >= 0]


@pytest.fixture(scope="module")
def saddle_node():
    return FixedPoints(n_starts=24).run("saddle_node", dynlearn.grid(r=R_NEG + R_POS))


@pytest.mark.parametrize("check", list(analyzer_checks(FixedPoints(n_starts=8, landscape=False))),
                         ids=lambda c: c.__name__)
def test_conformance(check):
    check()


@pytest.mark.parametrize("r", R_NEG, ids=lambda r: f"r={r}")
def test_saddle_node_two_fixed_points(saddle_node, r):
    out = saddle_node.sel(r=r)
    assert int(out.n_fixed) == 2 and int(out.n_ghost) == 0
    roots = out.position.sel(state="x").values[:2]
    np.testing.assert_allclose(roots, saddle_node_roots(r), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.eig_real.values[:2, 0], saddle_node_eigenvalues(r), rtol=0, atol=1e-11)
    assert types(out) == ["stable_node", "unstable_node"]
    assert float(out.residual_max.max()) < 1e-10


@pytest.mark.parametrize("r", R_POS, ids=lambda r: f"r={r}")
def test_saddle_node_ghost(saddle_node, r):
    out = saddle_node.sel(r=r)
    assert int(out.n_fixed) == 0 and int(out.n_ghost) == 1
    g = out.sel(point=0)
    assert TYPES[int(g.point_type)] == "ghost"
    assert abs(float(g.position.sel(state="x"))) < 1e-12
    np.testing.assert_allclose(float(g.speed), r, rtol=1e-12)
    np.testing.assert_allclose(float(g.ghost_curvature), 1.0, rtol=1e-9)
    np.testing.assert_allclose(float(g.passage_time_nf), ghost_passage_time(r), rtol=1e-12)
    rho = float(g.passage_radius)
    np.testing.assert_allclose(float(g.passage_time_nf_ball), ball_passage_time(r, 1.0, rho), rtol=1e-12)
    # measured on a trajectory x(t) = sqrt(r) tan(sqrt(r) t) through the ball
    np.testing.assert_allclose(float(g.passage_time), ball_passage_time(r, 1.0, rho), rtol=1e-6)
    assert bool(g.sign_change) and float(g.linger_ratio) >= 2.0


def test_saddle_node_double_root_at_r0():
    out = FixedPoints(n_starts=16).run("saddle_node", dynlearn.grid(r=[0.0]))
    assert out.n_fixed.values.tolist() == [1]
    assert types(out) == ["non_hyperbolic"]
    assert abs(float(out.position.isel(r=0, point=0, state=0))) < 1e-9


@pytest.fixture(scope="module")
def saddle_node_2d():
    return FixedPoints(n_starts=24).run("saddle_node_2d", dynlearn.grid(r=[-0.5, 0.04]))


def test_saddle_node_2d_node_and_saddle(saddle_node_2d):
    out = saddle_node_2d.sel(r=-0.5)
    assert int(out.n_fixed) == 2
    s = math.sqrt(0.5)
    np.testing.assert_allclose(out.position.values[:2], [[-s, 0.0], [s, 0.0]], atol=1e-12)
    assert types(out) == ["stable_node", "saddle"]
    np.testing.assert_allclose(out.eig_real.values[0], [-1.0, -2 * s], atol=1e-12)  # sorted, leading first
    np.testing.assert_allclose(out.eig_real.values[1], [2 * s, -1.0], atol=1e-12)
    assert out.n_unstable.values[:2].tolist() == [0, 1]


def test_saddle_node_2d_ghost(saddle_node_2d):
    out = saddle_node_2d.sel(r=0.04)
    assert int(out.n_fixed) == 0 and int(out.n_ghost) == 1
    g = out.sel(point=0)
    np.testing.assert_allclose(g.position.values, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(float(g.speed), 0.04, rtol=1e-12)
    np.testing.assert_allclose(float(g.passage_time_nf), ghost_passage_time(0.04), rtol=1e-12)
    np.testing.assert_allclose(float(g.passage_time), float(g.passage_time_nf_ball), rtol=1e-6)


def test_curved_ghost_normal_form():
    """x' = r + a x^2: speed r, curvature a, passage pi / sqrt(r a)."""
    out = FixedPoints(n_starts=16).run(CurvedSaddleNode(), dynlearn.grid(r=[0.01], a=[2.0, 5.0]))
    for a in (2.0, 5.0):
        g = out.sel(r=0.01, a=a, point=0)
        assert TYPES[int(g.point_type)] == "ghost"
        np.testing.assert_allclose(float(g.ghost_curvature), a, rtol=1e-9)
        np.testing.assert_allclose(float(g.passage_time_nf), ghost_passage_time(0.01, a), rtol=1e-12)
        np.testing.assert_allclose(float(g.passage_time), ball_passage_time(0.01, a, float(g.passage_radius)),
                                   rtol=1e-6)


@pytest.mark.parametrize("mu, expected", [(-0.5, "stable_focus"), (0.3, "unstable_focus")], ids=["mu<0", "mu>0"])
def test_hopf_focus(mu, expected):
    out = FixedPoints(n_starts=16).run("hopf", dynlearn.grid(mu=[mu], omega=[1.5]))
    o = out.isel(mu=0, omega=0)
    assert int(o.n_fixed) == 1 and types(o) == [expected]
    np.testing.assert_allclose(o.position.values[0], [0.0, 0.0], atol=1e-12)
    ev = o.eig_real.values[0] + 1j * o.eig_imag.values[0]
    np.testing.assert_allclose(ev, hopf_eigenvalues(mu, 1.5), atol=1e-12)


@pytest.mark.parametrize("mu", [0.3, 0.8, 1.2], ids=lambda m: f"mu={m}")
def test_two_factor_hyperbola(mu):
    out = FixedPoints(n_starts=32).run("two_factor", dynlearn.grid(mu=[mu])).isel(mu=0)
    pts = out.position.values[out.present.values]
    ev = (out.eig_real.values + 1j * out.eig_imag.values)[out.present.values]
    a, b = pts[:, 0], pts[:, 1]
    origin = np.all(np.abs(pts) < 1e-12, axis=1)
    on_hyperbola = ~origin
    assert on_hyperbola.sum() >= 8 and origin.sum() <= 1
    np.testing.assert_allclose(a[on_hyperbola] * b[on_hyperbola], 1.0, rtol=0, atol=1e-10)
    expected = np.stack([np.ones(on_hyperbola.sum()), two_factor_normal_eigenvalue(a, b, mu)[on_hyperbola]], 1)
    np.testing.assert_allclose(np.sort(ev[on_hyperbola].real, 1), np.sort(expected, 1), atol=1e-9)
    np.testing.assert_allclose(ev[on_hyperbola].imag, 0.0, atol=1e-9)
    if origin.any():
        np.testing.assert_allclose(np.sort(ev[origin].real, 1)[0], two_factor_origin_eigenvalues(mu), atol=1e-12)
    assert set(types(out)) <= {"non_hyperbolic", "saddle"}


def test_map_ghost_passage_in_iterations():
    out = FixedPoints(n_starts=16).run(SaddleNodeMap(), dynlearn.grid(r=[1e-3])).isel(r=0, point=0)
    assert TYPES[int(out.point_type)] == "ghost"
    np.testing.assert_allclose(float(out.speed), 1e-3, rtol=1e-12)
    np.testing.assert_allclose(float(out.passage_time_nf), ghost_passage_time(1e-3), rtol=1e-12)
    # the map takes unit steps: within two iterations of the continuum crossing time
    assert abs(float(out.passage_time) - float(out.passage_time_nf_ball)) <= 2.0


def test_warm_start_adds_neighbours_points():
    grid = dynlearn.grid(r=np.linspace(-1.0, -0.5, 9))
    kw = dict(n_starts=1, trajectory_fraction=0.0, slow_points=False)
    cold = FixedPoints(**kw, warm_start=None).run("saddle_node", grid)
    warm = FixedPoints(**kw, warm_start="r").run("saddle_node", grid)
    assert np.all(warm.n_fixed.values >= cold.n_fixed.values)
    assert warm.n_fixed.values.sum() > cold.n_fixed.values.sum()
    r = warm.r.values[warm.n_fixed.values == 2]
    np.testing.assert_allclose(warm.position.sel(r=r, state="x").values[:, :2],
                               np.stack([-np.sqrt(-r), np.sqrt(-r)], 1), atol=1e-12)


def test_bounds_restrict_the_search():
    out = FixedPoints(n_starts=16, bounds=[[0.0], [3.0]], margin=0.0).run("saddle_node", dynlearn.grid(r=[-1.0]))
    assert out.n_fixed.values.tolist() == [1]
    np.testing.assert_allclose(out.position.values[0, 0, 0], 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "options, error",
    [({"n_starts": 0}, ParameterError), ({"bounds": [[0.0, 1.0, 2.0], [1.0, 2.0]]}, ShapeError),
     ({"bounds": [[1.0], [0.0]]}, ParameterError), ({"root_tol": float("nan")}, ParameterError),
     ({"trajectory_fraction": 2.0}, ParameterError)],
    ids=["n_starts", "bounds-shape", "bounds-order", "root_tol-nan", "trajectory_fraction"],
)
def test_bad_options(options, error):
    with pytest.raises(error):
        FixedPoints(**options).run("saddle_node", dynlearn.grid(r=[-1.0]))


def test_nan_parameter_is_an_error():
    with pytest.raises(ParameterError, match="'r' is NaN"):
        FixedPoints().run("saddle_node", dynlearn.grid(r=[float("nan")]))


def test_views_build(saddle_node):
    import holoviews as hv

    views = FixedPoints().views(saddle_node)
    assert {"points", "counts", "speed_landscape"} <= set(views)
    for v in views.values():
        assert isinstance(v, (hv.core.Dimensioned,))

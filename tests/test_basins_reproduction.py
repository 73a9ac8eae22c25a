"""``dynlearn reproduce two-factor-ellipse --quick``: every claim holds, and the store holds labeled groups."""

from __future__ import annotations

import pytest

import dynlearn
from dynlearn_builtins.reproductions.two_factor_ellipse import MUS

NUMERICS = pytest.mark.numerics   # the chaotic map on the ellipse: rerun under other rounding paths

CLAIMS = [f"{kind}_mu={mu:g}" for mu in MUS for kind in
          ("boundary_on_ellipse", "boundary_covers_ellipse", "labels_match_ellipse", "bounded_fraction")]
CLAIMS += ["ellipse_invariant", "chebyshev_angle_map"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return dynlearn.run_reproduction("two-factor-ellipse", tmp_path_factory.mktemp("rep") / "ellipse.zarr", quick=True)


@NUMERICS
@pytest.mark.parametrize("claim", CLAIMS)
def test_claim(tree, claim):
    claims = tree["claims"].to_dataset()
    assert claim in claims.claim.values.tolist()
    row = claims.sel(claim=claim)
    assert bool(row.passed), f"{claim}: measured {float(row.measured)}, expected {float(row.expected)} " \
                             f"({str(row.tolerance.values)})"


def test_claims_are_exactly_these(tree):
    assert sorted(tree["claims"].to_dataset().claim.values.tolist()) == sorted(CLAIMS)


def test_store_groups(tree):
    basins = tree["basins"].to_dataset()
    assert basins.attrs["dynlearn_analyzer"] == "basins" and basins.basin.dims == ("mu", "a", "b")
    ell = tree["ellipse"].to_dataset()
    assert list(ell.mu.values) == list(MUS)
    assert all("long_name" in ell[v].attrs for v in ell.data_vars)
    assert float(ell.max_dev.max()) < 1e-5  # far below the 0.5 % bar: bisection tolerance 1e-6


def test_store_attrs_and_other_store(tree, tmp_path):
    from dynlearn.errors import StoreError
    from dynlearn.store import create_store, root_attrs

    rep = dynlearn.registry.get("reproductions", "two-factor-ellipse")(quick=True)
    attrs = root_attrs(tree)
    assert attrs["config"]["name"] == "two-factor-ellipse" and attrs["config"]["quick"] is True
    assert attrs["config"]["basins"] == rep.analyzer().to_config()
    other = tmp_path / "other.zarr"
    create_store(other, {}, {"config": {"name": "something else"}})
    with pytest.raises(StoreError, match="overwrite"):
        rep.run(other)


def test_views(tree):
    import holoviews as hv

    rep = dynlearn.registry.get("reproductions", "two-factor-ellipse")(quick=True)
    views = rep.views(tree)
    assert set(views) == {"boundary vs ellipse"}
    hv.render(views["boundary vs ellipse"], backend="bokeh")
    from dynlearn.views import store_views

    page = store_views(tree)  # what `dynlearn browse` shows: claims, this figure, the basins analyzer's views
    assert {"claims", "two-factor-ellipse: boundary vs ellipse", "basins: basins", "basins: fractions"} <= set(page)


@pytest.mark.slow
def test_full_reproduction(tmp_path):
    tree = dynlearn.run_reproduction("two-factor-ellipse", tmp_path / "ellipse.zarr")
    claims = tree["claims"].to_dataset()
    failed = [str(c) for c in claims.claim.values if not bool(claims.sel(claim=c).passed)]
    assert not failed
    assert sorted(claims.claim.values.tolist()) == sorted(CLAIMS)

"""The browse page in a real browser (headless chromium through Playwright), offline.

Every request that is not to a local file or to 127.0.0.1 is aborted and counted. Three pages: the ghost
reproduction's (``dynlearn reproduce ghost --quick --html``), a saddle-node sweep with training and two analyzer
groups (``fixed_points``, ``bifurcations``), and a sweep of 4,000 learning rates; then the second store under
``dynlearn browse --serve`` in two browser contexts. On each: no console error, no blocked request; every slider
is moved with the keyboard and the plotted data -- read from the Bokeh document's data sources, not from pixels --
must be the store's data at the sliders' new values, while every other slider of the page stays where it was.

Not part of the default run (about two minutes): ``pytest -m browser``, which ``.ci/run`` runs after the README's
command. Skipped only when chromium is absent outside CI (``CI=true`` makes a missing chromium a failure).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import numpy as np
import pytest
from typer.testing import CliRunner

import dynlearn
from dynlearn.api import analyze
from dynlearn.cli import app
from dynlearn.page_sliders import value_labels
from dynlearn.store import open_store

pytestmark = pytest.mark.browser

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

SLIDERS_JS = """() => {
  const out = [];
  for (const m of Bokeh.documents[0].all_models)
    if (m.name && m.name.startsWith("slider:")) out.push([m.name, m.value, m.categories]);
  return out.sort();
}"""

DATA_JS = """(view) => {
  const out = [];
  const plain = (c) => Array.from(c, (x) => (ArrayBuffer.isView(x) || Array.isArray(x)) ? Array.from(x) : x);
  for (const m of Bokeh.documents[0].all_models)
    if (m.data !== undefined && m.tags && m.tags.includes("view:" + view))
      out.push(Object.fromEntries(Object.entries(m.data).map(([k, c]) => [k, plain(c)])));
  return out;
}"""

FOCUS_JS = """(name) => {
  const m = Bokeh.documents[0].get_model_by_name(name);
  Bokeh.index.find_one(m).shadow_el.querySelector(".noUi-handle").focus();
}"""


def _chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed: CI runs the browser tests (.ci/run installs Debian's chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs these tests")


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


class Page:
    """One browser context on one page, blocking and counting every non-local request."""

    def __init__(self, browser, url: str) -> None:
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1300, "height": 900})
        self.page = self.context.new_page()
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle",
                                    timeout=120_000)

    def _route(self, route) -> None:
        u = urlparse(route.request.url)
        if u.scheme == "file" or (u.scheme in ("http", "ws") and u.hostname == "127.0.0.1"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def sliders(self) -> dict[str, tuple[str, list[str]]]:
        return {name: (value, cats) for name, value, cats in self.page.evaluate(SLIDERS_JS)}

    def data(self, view: str) -> list[dict[str, list]]:
        return self.page.evaluate(DATA_JS, view)

    def press(self, slider: str, key: str) -> None:
        self.page.evaluate(FOCUS_JS, slider)
        self.page.keyboard.press(key)

    def close(self) -> None:
        self.context.close()


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=float).astype(np.float32)


def _curve_of(xs, ys, epochs, y) -> bool:
    """Are the plotted points those of the stored curve ``y`` (float32, min/max-decimated)?"""
    xs, ys, y = np.asarray(xs, float), _f32(np.asarray(ys, dtype=float)), _f32(y)
    if not np.isin(xs, epochs).all():
        return False
    ok = np.isfinite(ys)
    if not np.isin(ys[ok], y).all():
        return False
    return bool(np.nanmax(ys) == np.nanmax(y) and np.nanmin(ys) == np.nanmin(y))


def _check_train(tree, var: str, data, at: dict) -> None:
    da = tree["train"][var].sel(at)
    epochs = da["epoch"].values
    curves = {int(s): da.sel(seed=s).values for s in da["seed"].values}
    ycol = {"loss": "loss", "grad_norm": "grad_norm"}[var]
    left = set(curves)
    for src in data:
        match = [s for s in sorted(left) if _curve_of(src["epoch"], src[ycol], epochs, curves[s])]
        assert match, f"{var} at {at}: a plotted curve is no seed's curve there"
        left.discard(match[0])
    assert not left, f"{var} at {at}: seeds {sorted(left)} not plotted"


def _check_fixed_points(tree, view: str, data, at: dict) -> None:
    fp = tree["fixed_points"].to_dataset().sel(at)
    if view.endswith("points"):
        pres = fp["present"].transpose("epoch", "point").values.astype(bool)
        pos = fp["position"].isel(state=0).transpose("epoch", "point").values
        ep = np.broadcast_to(fp["epoch"].values[:, None], pres.shape)
        want = sorted(zip(ep[pres].tolist(), pos[pres].tolist()))
        (src,) = data
        assert sorted(zip(src["epoch"], src["x"])) == want, f"{view} at {at}"
    elif view.endswith("counts"):
        for src in data:
            col = "n_fixed" if "n_fixed" in src else "n_ghost"
            assert src["epoch"] == fp["epoch"].values.tolist()
            assert src[col] == fp[col].values.astype(float).tolist(), f"{view} {col} at {at}"
    elif view.endswith("speed_landscape"):
        (src,) = data
        want = np.log10(np.maximum(fp["landscape_speed"].values.astype(float), 1e-300))
        np.testing.assert_allclose(np.sort(src["log10_speed"]), np.sort(want.ravel()), rtol=1e-12)


def _check_tracks(tree, data, at: dict) -> None:
    b = tree["bifurcations"].to_dataset()
    rows = np.ones(b.sizes["node"], dtype=bool)
    for d, v in at.items():
        rows &= b[f"node_{d}"].values == v
    want = sorted(zip(b["node_epoch"].values[rows].tolist(), b["node_position"].values[rows, 0].tolist()))
    pts = [s for s in data if "epoch" in s]
    assert len(pts) == 1 and sorted(zip(pts[0]["epoch"], pts[0]["x"])) == want, f"tracks at {at}"


def _check_view(tree, view: str, data, at: dict) -> None:
    """The plotted data of ``view`` is the store's at the coordinates ``at``."""
    if view in ("train: loss", "train: gradient norm"):
        _check_train(tree, "loss" if view.endswith("loss") else "grad_norm", data, at)
    elif view.startswith("fixed_points: "):
        _check_fixed_points(tree, view, data, at)
    elif view == "bifurcations: tracks":
        _check_tracks(tree, data, at)
    else:
        raise AssertionError(f"no check for the sliced view {view!r}")


def _split(name: str) -> tuple[str, str]:
    """``slider:VIEW:DIM`` -> (VIEW, DIM)."""
    view, dim = name[len("slider:"):].rsplit(":", 1)
    return view, dim


def _coords(tree, view: str, sliders: dict) -> dict:
    """The store coordinates the sliders of ``view`` point at."""
    group = view.split(": ")[0]
    at = {}
    for name, (value, cats) in sliders.items():
        v, dim = _split(name)
        if v != view:
            continue
        coords = tree[group][dim].values
        assert cats == value_labels(coords), f"{name}: positions are not the store's {dim} values"
        at[dim] = coords[cats.index(value)]
    return at


def store_check(pg: Page, tree):
    """Check that a view shows the store's data at the values its sliders point at."""
    return lambda view, sliders: _check_view(tree, view, pg.data(view), _coords(tree, view, sliders))


def exercise(pg: Page, check, moves: tuple[str, ...] = ("ArrowRight", "End", "ArrowLeft", "Home")) -> int:
    """Move every slider of the page through ``moves``; ``check(view, sliders)`` the data and that no other slider
    moved, each time. Returns the number of moves."""
    before = pg.sliders()
    assert before, "the page has no slider"
    for view in sorted({_split(name)[0] for name in before}):
        check(view, before)
    n = 0
    for name, (value, cats) in sorted(before.items()):
        view = _split(name)[0]
        pos = cats.index(value)
        for key in moves:
            pos = {"ArrowRight": min(pos + 1, len(cats) - 1), "ArrowLeft": max(pos - 1, 0), "End": len(cats) - 1,
                   "Home": 0, "PageUp": min(pos + 5, len(cats) - 1)}[key]
            old = pg.sliders()
            pg.press(name, key)
            pg.page.wait_for_function("([n, v]) => Bokeh.documents[0].get_model_by_name(n).value === v",
                                      arg=[name, cats[pos]], timeout=10_000)
            now = pg.sliders()
            moved = {k for k in now if now[k][0] != old[k][0]}
            assert moved <= {name}, f"moving {name} moved {sorted(moved - {name})}"
            check(view, now)
            n += 1
    return n


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A saddle-node sweep whose learning rates give learners (1e-10) and stuck networks (2e-9), analysed."""
    path = tmp_path_factory.mktemp("browse") / "sn.zarr"
    sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    dynlearn.train(sn, epochs=2000, seeds=3, sweep={"lr": [1e-10, 5e-10, 2e-9]}, out=path, checkpoint_every=100,
                   name="saddle-sweep")
    analyze(path, "fixed_points")
    analyze(path, "bifurcations")
    return path


def _page(tmp_path, store, name="page.html") -> str:
    html = tmp_path / name
    res = CliRunner().invoke(app, ["browse", str(store), "--html", str(html)])
    assert res.exit_code == 0, res.output
    return html


def test_ghost_page(browser, tmp_path):
    html = tmp_path / "ghost.html"
    res = CliRunner().invoke(app, ["reproduce", "ghost", "--quick", "--out", str(tmp_path / "ghost.zarr"),
                                   "--html", str(html), "--no-progress"])
    assert res.exit_code == 0, res.output
    pg = Page(browser, html.as_uri())
    assert exercise(pg, store_check(pg, open_store(tmp_path / "ghost.zarr"))) == 2 * 4
    assert pg.page.title() == "dynlearn — ghost"
    assert pg.errors == [] and pg.blocked == []
    pg.close()


def test_store_with_analyzer_groups(browser, sweep_store, tmp_path):
    html = _page(tmp_path, sweep_store)
    pg = Page(browser, html.as_uri())
    tree = open_store(sweep_store)
    names = set(pg.sliders())
    assert {"slider:train: loss:lr", "slider:fixed_points: points:seed", "slider:bifurcations: tracks:lr"} <= names
    exercise(pg, store_check(pg, tree))
    pg.page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert pg.errors == [] and pg.blocked == []
    pg.close()


def test_page_of_4000_positions(browser, tmp_path):
    store = tmp_path / "big.zarr"
    sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    dynlearn.train(sn, epochs=200, seeds=2, sweep={"lr": np.logspace(-11, -8.5, 4000)}, out=store)
    html = _page(tmp_path, store)
    assert html.stat().st_size < 20e6
    pg = Page(browser, html.as_uri())
    assert {len(c) for _, c in pg.sliders().values()} == {4000}
    exercise(pg, store_check(pg, open_store(store)), moves=("End", "ArrowLeft", "Home", "PageUp", "ArrowRight"))
    assert pg.errors == [] and pg.blocked == []
    pg.close()


def test_grid_of_40_by_100_positions(browser, tmp_path):
    """Two sliders over one array: each position's curves are found where the sliders point."""
    from dynlearn.page import html, layout
    from dynlearn.page_sweep import CurveSweep

    a, b, seeds, n = 40, 100, 3, 50
    code = (np.arange(a)[:, None, None] * 1e4 + np.arange(b)[None, :, None] * 10 + np.arange(seeds))
    y = code[..., None] + np.linspace(0, 1, n)  # curve (i, j, s): i*1e4 + j*10 + s, rising by 1
    sweep = CurveSweep(np.arange(n), y, [("a", "a", np.arange(a) * 0.5), ("b", "b", np.arange(b) + 100.0)],
                       [f"seed {s}" for s in range(seeds)], ("epoch", "epoch"), ("value", "value"), "grid")
    page = tmp_path / "grid.html"
    page.write_text(html(layout({"grid": sweep}, "grid"), "grid"))
    pg = Page(browser, page.as_uri())

    def check(view, sliders):
        i = sliders["slider:grid:a"][1].index(sliders["slider:grid:a"][0])
        j = sliders["slider:grid:b"][1].index(sliders["slider:grid:b"][0])
        got = sorted(round(float(np.min(src["value"]))) for src in pg.data(view))
        assert got == [i * 10_000 + j * 10 + s for s in range(seeds)], (i, j)

    assert exercise(pg, check, moves=("End", "ArrowLeft", "Home", "PageUp")) == 2 * 4
    assert pg.errors == [] and pg.blocked == []
    pg.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(sweep_store, tmp_path):
    """``dynlearn browse STORE --serve`` on a free port of 127.0.0.1, stopped after the test."""
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from dynlearn.cli import main; main()", "browse",
                             str(sweep_store), "--serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "dynlearn browse --serve did not listen"
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_serve_sessions_are_independent(browser, sweep_store, served):
    tree = open_store(sweep_store)
    a = Page(browser, served)
    b = Page(browser, served)
    assert a.page.title() == b.page.title() == "dynlearn — saddle-sweep"
    start = b.sliders()
    start_data = b.data("train: loss")
    exercise(a, store_check(a, tree), moves=("End",))
    assert b.sliders() == start and b.data("train: loss") == start_data, "session b followed session a"
    b.press("slider:train: loss:lr", "ArrowRight")
    b.page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('slider:train: loss:lr').value === '5e-10'")
    assert a.sliders()["slider:train: loss:lr"][0] == "2e-09"
    for pg in (a, b):
        assert pg.errors == [] and pg.blocked == []
        pg.close()

"""The browse page without a browser: sizes, offline document, decimation, thinning, stylesheet inlining.

What the page does in a browser (sliders, data, sessions) is tested by tests/test_browser.py (``-m browser``).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import dynlearn
from dynlearn.page import inline_stylesheets
from dynlearn.page_frames import MAX_FRAMES, thin
from dynlearn.page_sliders import value_labels
from dynlearn.page_sweep import decimate_many
from dynlearn.safety import PAGE_MARKER
from dynlearn.views import write_html


def _document(text: str) -> str:
    return re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1)


def test_page_of_4000_positions_is_small_and_needs_no_network(tmp_path):
    store = tmp_path / "big.zarr"
    sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    dynlearn.train(sn, epochs=300, seeds=3, sweep={"lr": np.logspace(-11, -8.5, 4000)}, out=store)
    page = write_html(store, tmp_path / "big.html")
    text = page.read_text(encoding="utf-8")
    assert page.stat().st_size < 20e6
    assert PAGE_MARKER in text.split("</head>")[0]
    markup = re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", text, flags=re.S)  # the tags, not the inlined JS
    assert not re.search(r"<[^>]+(?:src|href)=", markup)
    doc = _document(text)
    assert "://" not in doc and '"ImportedStyleSheet"' not in doc
    sliders = re.findall(r'"name":"slider:([^"]+)"', doc)
    assert sorted(sliders) == ["train: gradient norm:lr", "train: loss:lr"]


def test_decimate_many_keeps_each_curves_extremes_on_one_x():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 3, 5000))
    y[1, 2, 1234] = 50.0
    y[2, 0, 10:20] = np.nan
    x = np.arange(5000.0)
    xs, ys = decimate_many(x, y, 200)
    assert xs.shape == (200,) and ys.shape == (4, 3, 200)
    assert np.isin(xs, x).all() and np.all(np.diff(xs) > 0)
    np.testing.assert_array_equal(np.nanmax(ys, -1), np.nanmax(y, -1))
    np.testing.assert_array_equal(np.nanmin(ys, -1), np.nanmin(y, -1))
    assert decimate_many(x[:100], y[..., :100], 200)[1] is not None


def test_holomaps_are_thinned_evenly():
    import holoviews as hv

    hm = hv.HoloMap({(i, j): hv.Curve([0, i, j]) for i in range(30) for j in range(7)}, kdims=["i", "j"])
    th = thin(hm)
    keys = list(th.keys())
    assert len(keys) <= MAX_FRAMES
    assert {k[0] for k in keys} >= {0, 29} and {k[1] for k in keys} >= {0, 6}
    small = hv.HoloMap({i: hv.Curve([0, i]) for i in range(5)}, kdims=["i"])
    assert thin(small) is small


def test_value_labels_are_distinct():
    lr = np.logspace(-11, -8.5, 4000)
    labels = value_labels(lr)
    assert len(set(labels)) == 4000 and labels[0] == "1e-11"
    assert value_labels(["a", "a"]) == ["a [0]", "a [1]"]


def test_stylesheets_imported_from_panels_cdn_are_inlined():
    import panel
    from bokeh.models import Column, Div, ImportedStyleSheet, InlineStyleSheet

    url = f"https://cdn.holoviz.org/panel/{panel.__version__}/dist/css/loading.css"
    div = Div(text="x", stylesheets=[ImportedStyleSheet(url=url), ":host { color: red; }"])
    assert inline_stylesheets(Column(div)) == 1
    sheet = div.stylesheets[0]
    assert isinstance(sheet, InlineStyleSheet) and "loading" in sheet.css
    assert div.stylesheets[1] == ":host { color: red; }"


@pytest.mark.parametrize("n", [1, 3])
def test_claims_table_is_html_with_the_full_text(n):
    from dynlearn.page import claims_table

    rows = [{"": "PASS" if i % 2 else "FAIL", "statement": "a < b & " + "long " * 40} for i in range(n)]
    div = claims_table(rows)
    assert div.text.count("<tr>") == n + 1 and "&lt; b &amp;" in div.text
    assert json.dumps(div.text).count("long") == 40 * n


def _frames_view(n: int):
    """A HoloMap of ``n`` frames (points coloured by a category, with hover, under a curve), and its frames."""
    import holoviews as hv

    rng = np.random.default_rng(n)
    frames = {}
    for i in range(n):
        x = rng.normal(size=12) * (1 + i)
        pts = hv.Points((x, x ** 2 + i, np.where(x > 0, "up", "down")), ["x", "y"], ["kind"]).opts(
            color="kind", cmap={"up": "red", "down": "blue"}, tools=["hover"])
        frames[i] = pts * hv.Curve((np.sort(x), np.sort(x) * i), "x", "y")
    return hv.HoloMap(frames, kdims=["i"])


def _ranges_at_each_frame(obj) -> list:
    """The figure's axis ranges at each frame, as holoviews draws them."""
    import holoviews as hv

    plot = hv.renderer("bokeh").get_plot(obj)
    out = []
    for key in plot.keys:
        plot.update(key)
        out.append((plot.state.x_range.start, plot.state.x_range.end, plot.state.y_range.start,
                    plot.state.y_range.end))
    return out


@pytest.mark.parametrize("framewise", [False, True])
def test_ranges_once_gives_holoviews_own_ranges(framewise):
    from dynlearn.page_ranges import ranges_once
    from dynlearn.views import _hv

    hv = _hv()
    view = _frames_view(6)
    if framewise:
        view = view.opts(hv.opts.Points(framewise=True), hv.opts.Curve(framewise=True))
    own = _ranges_at_each_frame(view)
    with ranges_once():
        once = _ranges_at_each_frame(view)
    assert once == own
    assert (len(set(own)) > 1) == framewise  # shared ranges: the same at every frame


def test_frames_cost_grows_linearly_with_their_number(monkeypatch):
    """Shared ranges are computed once per view, not again at every frame (quadratic: minutes for 90 frames)."""
    import holoviews as hv

    from dynlearn.page_frames import render
    from dynlearn.views import _hv

    _hv()
    calls = {"n": 0}
    original = hv.Points.range

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(hv.Points, "range", counted)
    counts = []
    for n in (5, 20):
        calls["n"] = 0
        render(_frames_view(n), f"v{n}")
        counts.append(calls["n"])
    assert counts[1] <= 4 * counts[0] + 20, counts  # 4 times the frames; quadratic would be 16 times the work


def test_frames_read_no_deprecated_property(recwarn):
    """Recording a frame reads every property the browser gets, not bokeh's deprecated aliases (``toggleable``
    of a hover tool: a BokehDeprecationWarning per frame)."""
    from bokeh.util.warnings import BokehDeprecationWarning

    from dynlearn.page_frames import render
    from dynlearn.views import _hv

    _hv()
    col = render(_frames_view(4), "hover")
    assert any(type(m).__name__ == "HoverTool" for m in col.references())
    assert not [w for w in recwarn if issubclass(w.category, BokehDeprecationWarning)]


def test_analyzer_given_user_states_browses(tmp_path):
    """An array option is recorded by its digest only; the page rebuilds the analyzer for its views without it."""
    from dynlearn.store import create_store, write_group

    fp = dynlearn.make_analyzer({"name": "fixed_points", "n_starts": 4, "initial_states": [[-0.6], [0.4]]})
    result = fp.run("saddle_node", dynlearn.grid(r=[-0.25, -0.16]))
    cfg = json.loads(result.attrs["analyzer_config"])
    assert set(cfg["initial_states"]) == {"shape", "dims", "sha256"}
    store = tmp_path / "s.zarr"
    create_store(store, {}, {"dynlearn": json.dumps({"config": {}})})
    write_group(store, "fixed_points", result)
    page = tmp_path / "p.html"
    write_html(store, page)
    assert "fixed_points" in page.read_text()

"""The browse page as one bokeh document: headings, the views in page order, their sliders.

:func:`layout` turns the views of a store (:func:`dynlearn.views.store_views`) into one bokeh column; the same
function builds the standalone HTML (:func:`html`, bokeh's JavaScript inlined) and each ``--serve`` session, so
both show the same page under the same title (:func:`page_title`). A view is a :class:`~dynlearn.page_sweep.CurveSweep`
(training curves: one array sliced in the browser), a holoviews object (drawn once, its frames replayed by its
sliders: :mod:`dynlearn.page_frames`) or a ready bokeh model (the claims table).

The page needs no network: every script is inlined, and :func:`inline_stylesheets` turns any stylesheet a model
imports from a URL (panel's, on its CDN) into an inline one holding the file's CSS from the installed package.
"""

from __future__ import annotations

import html as _html
import re
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

__all__ = ["page_title", "layout", "html", "inline_stylesheets", "claims_table"]

_TABLE_CSS = """
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.pass { color: #1a7f37; font-weight: bold; }
td.fail { color: #b2182b; font-weight: bold; }
"""


def page_title(name: str | None, store: str | Path) -> str:
    """The page's title: ``dynlearn — NAME`` (the experiment's name, else the store's stem).

    Parameters
    ----------
    name : str or None
        The experiment's name (``config.name`` of the store's root attrs).
    store : str or Path
        The store's path.

    Returns
    -------
    str

    Examples
    --------
    >>> page_title(None, "runs/sn.zarr")
    'dynlearn — sn'
    """
    return f"dynlearn — {name or Path(store).stem}"


def claims_table(rows: list[dict[str, str]], width: int = 1200) -> Any:
    """A bokeh ``Div`` holding the claims as an HTML table (full text; the first column PASS/FAIL, coloured).

    Parameters
    ----------
    rows : list of dict
        One dict per claim, same keys in each (the columns, in order).
    width : int
        Width in pixels.

    Returns
    -------
    bokeh.models.Div
    """
    from bokeh.models import Div, InlineStyleSheet

    cols = list(rows[0]) if rows else []
    head = "".join(f"<th>{_html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = str(r[c])
            cls = f' class="{v.lower()}"' if v in ("PASS", "FAIL") else ""
            cells.append(f"<td{cls}>{_html.escape(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    text = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return Div(text=text, width=width, stylesheets=[InlineStyleSheet(css=_TABLE_CSS)], name="claims")


def render_view(name: str, view: Any, meter: Any = None) -> Any:
    """The bokeh model of one view (see the module docstring for the kinds of view).

    Parameters
    ----------
    name : str
        The view's title on the page.
    view : CurveSweep, holoviews object or bokeh model
    meter : dynlearn.progress.Meter, optional
        Progress of the frames recorded.

    Returns
    -------
    bokeh.models.LayoutDOM
    """
    from bokeh.model import Model

    from .page_frames import render
    from .page_sweep import CurveSweep

    if isinstance(view, CurveSweep):
        return view.render(name)
    if isinstance(view, Model):
        return view
    return render(view, name, meter)


def layout(views: Mapping[str, Any], title: str, meter: Any = None) -> Any:
    """One bokeh column: the title, then each view under its name, in order.

    Parameters
    ----------
    views : mapping
        Name -> view, in page order.
    title : str
        The page's heading.
    meter : dynlearn.progress.Meter, optional
        Advanced once per view, its name shown.

    Returns
    -------
    bokeh.models.Column
    """
    from bokeh.layouts import column
    from bokeh.models import Div

    from .page_sliders import ensure_bokeh

    ensure_bokeh()
    items = [Div(text=f"<h1>{_html.escape(title)}</h1>")]
    for name, view in views.items():
        if meter is not None:
            meter.set(view=name)
        items.append(Div(text=f"<h2>{_html.escape(name)}</h2>"))
        items.append(render_view(name, view, meter))
        if meter is not None:
            meter.update()
    root = column(*items, name="dynlearn-page")
    inline_stylesheets(root)
    return root


def _local_css(url: str) -> str | None:
    """The CSS of a panel or bokeh stylesheet URL from the installed package (None: not one of theirs)."""
    path = urlparse(url).path
    for pkg in ("panel", "bokeh"):
        m = re.search(rf"/{pkg}/[^/]+/dist/(.+)$", path) or re.search(rf"/static/extensions/{pkg}/(.+)$", path)
        if not m:
            continue
        mod = __import__(pkg)
        base = Path(mod.__file__).parent / ("dist" if pkg == "panel" else "server/static")
        f = base / m.group(1)
        if f.is_file():
            return f.read_text(encoding="utf-8")
    return None


def inline_stylesheets(root: Any) -> int:
    """Replace every stylesheet imported from a URL under ``root`` by an inline one; return how many.

    Panel's models import their CSS from its CDN; the same files ship in panel's ``dist`` folder. A URL no
    installed package holds is left as it is (the browser tests then fail on the request it makes).

    Parameters
    ----------
    root : bokeh.model.Model
        The page's root model.

    Returns
    -------
    int
        The number of stylesheets inlined.
    """
    from bokeh.models import ImportedStyleSheet, InlineStyleSheet

    n = 0
    for m in root.references():
        sheets = getattr(m, "stylesheets", None)
        if not sheets:
            continue
        new = []
        for s in sheets:
            url = s.url if isinstance(s, ImportedStyleSheet) else (s if isinstance(s, str) and "://" in s else None)
            css = _local_css(url) if url else None
            if css is None:
                new.append(s)
            else:
                new.append(InlineStyleSheet(css=css))
                n += 1
        m.stylesheets = new
    return n


def _resources(root: Any) -> Any:
    """bokeh's inline resources, with the external files of only the model classes the page uses.

    bokeh lists the ``__javascript__`` / ``__css__`` files of every model class *registered* in the process;
    importing holoviews registers panel's, whose ES-module shim is a relative URL a standalone file cannot load.
    """
    from bokeh.resources import Resources

    used = {type(m) for m in root.references()}

    class PageResources(Resources):
        def clone(self, *, components: list | None = None) -> "PageResources":
            return PageResources(mode="inline", components=components if components is not None
                                 else list(self.components))

        def _collect_external_resources(self, resource_attr: str) -> list[str]:
            out: list[str] = []
            for cls in sorted(used, key=lambda c: c.__name__):
                ext = getattr(cls, resource_attr, None)
                for e in [ext] if isinstance(ext, str) else list(ext or []):
                    if e not in out:
                        out.append(e)
            return out

    return PageResources(mode="inline")


def html(root: Any, title: str) -> str:
    """The standalone page of ``root``: bokeh's JavaScript inlined, no favicon or other link to a network.

    Parameters
    ----------
    root : bokeh.models.LayoutDOM
        :func:`layout`'s column.
    title : str
        The page's ``<title>``.

    Returns
    -------
    str
        The HTML text.
    """
    from bokeh.embed import file_html

    text = file_html(root, resources=_resources(root), title=title)
    return re.sub(r"<link[^>]+rel=\"(?:apple-touch-icon|icon)\"[^>]*>\s*", "", text)

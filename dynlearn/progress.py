"""Progress meters, injected rather than hard-wired.

Long loops (training epochs, analyzer batches, writing a page) report through :class:`Meter` and
:func:`progress`. Meters go to stderr (stdout stays clean for ``--format json``). The Python API and the CLI
follow one rule, :func:`progress_enabled`; the first of these that is set decides:

1. the call's own ``show_progress`` argument (``dynlearn.train(..., show_progress=False)``, ``Analyzer.run``,
   ``dynlearn.analyze``, ``run_experiment``, ``run_reproduction``);
2. the session setting :func:`set_progress` (``dynlearn.set_progress(False)``; the CLI's ``--progress`` /
   ``--no-progress`` set it for the command);
3. the environment variable ``DYNLEARN_PROGRESS`` (``1`` on, ``0`` off);
4. otherwise bars are shown when stderr is a terminal or a Jupyter kernel's output stream, and not when it is
   redirected to a file or a pipe (logs and captured test output stay clean).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["progress", "set_progress", "progress_enabled", "Meter"]

_ENABLED: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Turn progress bars on or off for this session (``None``: back to the default rule).

    Parameters
    ----------
    enabled
        ``True``: bars on stderr; ``False``: none; ``None``: ``DYNLEARN_PROGRESS``, else on when stderr is a
        terminal (:func:`progress_enabled`).
    """
    global _ENABLED
    _ENABLED = enabled


def progress_enabled(show: bool | None = None) -> bool:
    """Whether a loop shows a progress bar: ``show`` if given, else :func:`set_progress`'s setting, else
    ``DYNLEARN_PROGRESS`` (``0``/``false``/``off``/``no``: off, anything else: on), else whether stderr is a
    terminal or a notebook's output.

    Parameters
    ----------
    show
        The caller's own ``show_progress`` argument (``None``: not given).

    Returns
    -------
    bool
        Whether to show the bar.
    """
    if show is not None:
        return show
    if _ENABLED is not None:
        return _ENABLED
    env = os.environ.get("DYNLEARN_PROGRESS", "").strip().lower()
    if env:
        return env not in ("0", "false", "off", "no")
    return _interactive(sys.stderr)


def _interactive(stream: Any) -> bool:
    if stream is None:
        return False
    if type(stream).__module__.startswith("ipykernel"):  # a notebook: tqdm.auto draws a widget
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class Meter:
    """A counter with an optional tqdm bar: ``update(n)``, ``set(**fields)``, ``close()``."""

    def __init__(self, total: int | None, desc: str, show: bool | None = None, unit: str = "it") -> None:
        self._bar = None
        if progress_enabled(show):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set(self, **fields: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix(fields, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[Any], desc: str = "", total: int | None = None, show: bool | None = None) -> Iterator[Any]:
    """Iterate ``iterable`` with a progress bar when meters are enabled."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Meter(total, desc, show) as m:
        for item in iterable:
            yield item
            m.update()


@contextmanager
def meter(total: int | None, desc: str, show: bool | None = None, unit: str = "it") -> Iterator[Meter]:
    m = Meter(total, desc, show, unit)
    try:
        yield m
    finally:
        m.close()

"""Progress meters, injected rather than hard-wired.

Long loops (training epochs, analyzer batches) report through :func:`progress`. Meters go to stderr (stdout
stays clean for ``--format json``). The CLI turns them on; the library default is off unless
:func:`set_progress` says otherwise or ``DYNLEARN_PROGRESS=1`` is set.
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
    """Turn progress meters on/off globally (``None``: back to the environment default)."""
    global _ENABLED
    _ENABLED = enabled


def progress_enabled(show: bool | None = None) -> bool:
    if show is not None:
        return show
    if _ENABLED is not None:
        return _ENABLED
    return os.environ.get("DYNLEARN_PROGRESS", "0") not in ("0", "", "false")


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

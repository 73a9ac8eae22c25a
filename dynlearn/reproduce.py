"""Reproductions (entry-point group ``dynlearn.reproductions``): a paper's claims, run and checked as data.

A reproduction runs one or more packaged experiments and analyzers into a single store and writes a
``/claims`` group: one row per claim of the paper with the value the paper states, the value measured here,
the tolerance and whether it holds. ``dynlearn reproduce NAME`` prints that table; tests run reduced versions
(``quick=True``) and check it.

For developers: subclass :class:`Reproduction`, implement ``run(out, *, overwrite, show_progress) -> list[Claim]``
writing groups into the store and returning its claims (written for you as ``/claims``).
Stores that hold no training run are made with :meth:`Reproduction.create_store` first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from ._version import __version__
from .errors import StoreError
from .integrity import relock
from .provenance import config_hash, provenance
from .safety import check_name
from .store import create_store, root_attrs

__all__ = ["Reproduction", "Claim", "claims_dataset"]


@dataclass
class Claim:
    """One checked statement: ``measured`` vs ``expected`` (the paper's value or an exact formula)."""

    name: str
    description: str
    expected: float
    measured: float
    passed: bool
    tolerance: str = ""
    units: str = "1"


def claims_dataset(claims: list[Claim]) -> xr.Dataset:
    """Claims as labeled data (dim ``claim``)."""
    names = np.array([c.name for c in claims], dtype=object)
    ds = xr.Dataset(
        {
            "description": ("claim", np.array([c.description for c in claims], dtype=object), {"long_name": "claim"}),
            "expected": ("claim", np.array([c.expected for c in claims], dtype=float),
                         {"long_name": "value stated by the paper / exact formula"}),
            "measured": ("claim", np.array([c.measured for c in claims], dtype=float),
                         {"long_name": "value measured by this run"}),
            "tolerance": ("claim", np.array([c.tolerance for c in claims], dtype=object),
                          {"long_name": "acceptance criterion"}),
            "units": ("claim", np.array([c.units for c in claims], dtype=object), {"long_name": "units"}),
            "passed": ("claim", np.array([bool(c.passed) for c in claims]), {"long_name": "claim reproduced"}),
        },
        coords={"claim": ("claim", names)},
    )
    return ds


class Reproduction:
    """Base class of reproductions. ``quick=True`` runs the reduced version the test-suite checks."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def __init__(self, quick: bool = False) -> None:
        self.quick = quick

    def run(self, out: Path, *, overwrite: bool = False, show_progress: bool | None = None) -> list[Claim]:
        """Write the reproduction's groups into the store ``out``; return its claims."""
        raise NotImplementedError

    def create_store(self, out: str | os.PathLike, settings: Mapping[str, Any], *, overwrite: bool = False) -> Path:
        """Create the store of a reproduction that trains nothing (analyses only), with a training run's root attrs.

        The root attrs (``config`` = name, description, ``quick`` and ``settings``; its hash; version;
        provenance) are what ``dynlearn show`` reads. An existing store of this reproduction with the same settings
        is recomputed (nothing of an analysis can be resumed); any other store there is a
        :class:`~dynlearn.errors.StoreError` unless ``overwrite``.
        """
        out = Path(out)
        config = {"name": self.name, "description": self.description, "quick": self.quick, **settings}
        attrs = {"version": __version__, "config": config, "config_hash": config_hash(config),
                 "provenance": provenance()}
        if out.exists() and not overwrite:
            try:
                same = root_attrs(out).get("config_hash") == attrs["config_hash"]
            except Exception:  # not a dynlearn store
                same = False
            if not same:
                raise StoreError(f"{out} holds something else; use another --out or --overwrite")
        create_store(out, {}, attrs, overwrite=True)
        relock(out)  # the new store has a new lock file
        return out

    def views(self, tree: xr.DataTree) -> dict[str, Any]:
        """holoviews figures of this reproduction's groups (shown by ``dynlearn browse``); none by default."""
        return {}

    def default_out(self) -> Path:
        return Path("dynlearn-results") / f"{check_name(self.name, 'reproduction name')}{'-quick' if self.quick else ''}.zarr"

"""Shared benchmark helpers: time the training loop alone, with the store writes replaced by a null writer."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import dynlearn  # noqa: F401  (loads the package and its plugins)

dtrain = sys.modules["dynlearn.train"]  # the module (``dynlearn.train`` is also the function)


class NullWriter:
    """Stands in for :class:`dynlearn.store.ChunkWriter`: accepts every chunk, writes nothing."""

    def __init__(self, *args, **kwargs):
        self.wait_seconds = self.write_seconds = 0.0

    def submit(self, blocks, commit):
        pass

    def close(self):
        pass


def loop_seconds(exp, clock=time.perf_counter) -> float:
    """Wall (or ``clock``) time of ``exp``'s training loop alone: no store is created, written or opened."""
    saved = dtrain.ChunkWriter, dtrain.create_store, dtrain.consolidate, dtrain.open_store
    dtrain.ChunkWriter = NullWriter
    dtrain.create_store = dtrain.consolidate = dtrain.open_store = lambda *a, **k: None
    try:
        t0 = clock()
        dtrain._Runner(exp, Path(tempfile.mkdtemp()) / "null.zarr", None).run()
        return clock() - t0
    finally:
        dtrain.ChunkWriter, dtrain.create_store, dtrain.consolidate, dtrain.open_store = saved

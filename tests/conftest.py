"""Shared fixtures: deterministic seeding, torch global-state guard, isolated plugin registry."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn.registry import Registry, use_registry

torch.set_num_threads(1)  # CI has 2 cores; pytest-xdist-free runs stay predictable


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _torch_global_state_unchanged():
    """Fail a test that leaves torch's global state (default dtype, grad mode) modified."""
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    yield
    assert torch.get_default_dtype() == dtype, "test changed torch's default dtype"
    assert torch.is_grad_enabled() == grad, "test changed torch's grad mode"


@pytest.fixture
def isolated_registry():
    """A registry with no entry points at all: session registrations only."""
    reg = Registry(entry_points=[])
    with use_registry(reg):
        yield reg


@pytest.fixture
def tmp_store(tmp_path):
    return tmp_path / "run.zarr"


@pytest.fixture
def interrupt_training(monkeypatch):
    """``interrupt_training(cls, n, run)``: call ``run()`` with ``cls.evaluate`` raising ``KeyboardInterrupt`` at its
    ``n``-th call (a run stopped mid-chunk), check that it was stopped, then restore ``cls.evaluate``."""

    def go(cls, n: int, run) -> None:
        orig = cls.evaluate
        calls = {"n": 0}

        def flaky(self, theta, hp):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return orig(self, theta, hp)

        monkeypatch.setattr(cls, "evaluate", flaky)
        try:
            with pytest.raises(KeyboardInterrupt):
                run()
        finally:
            monkeypatch.setattr(cls, "evaluate", orig)

    return go


@pytest.fixture(autouse=True)
def _no_progress():
    dynlearn.set_progress(False)
    yield
    dynlearn.set_progress(None)


def pytest_configure(config):
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")

"""Shared fixtures: deterministic seeding, torch global-state guard, isolated plugin registry.

Seeds. Every test starts from the global seed ``DYNLEARN_TEST_SEED`` (an integer, default 0) for ``random``,
NumPy and torch, and the tests of stochastic claims (trained Koopman eigenfunctions) take their own seeds from the
session fixture ``seed_offset`` (the same integer), so the suite can be run under other seeds::

    DYNLEARN_TEST_SEED=1 .venv/bin/python -m pytest -m numerics

Markers. ``numerics`` marks the tests whose claims come from stochastic or chaotic computation (trained
networks, chaotic maps, training runs over thousands of epochs), the ones to rerun under other rounding paths
(``MKL_CBWR=COMPATIBLE``, ``ATEN_CPU_CAPABILITY=default``) and seeds; ``.ci/run`` runs them again under
``MKL_CBWR=COMPATIBLE``. Since ``-m numerics`` replaces the default ``-m 'not slow and not benchmark and not
browser'``, a test may not be both ``numerics`` and one of those (collection fails).
"""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn.registry import Registry, use_registry

torch.set_num_threads(1)  # CI has 2 cores; pytest-xdist-free runs stay predictable


def _seed_from_env() -> int:
    raw = os.environ.get("DYNLEARN_TEST_SEED", "0").strip() or "0"
    try:
        seed = int(raw)
    except ValueError:
        raise pytest.UsageError(f"DYNLEARN_TEST_SEED must be a non-negative integer, got {raw!r}") from None
    if seed < 0:
        raise pytest.UsageError(f"DYNLEARN_TEST_SEED must be a non-negative integer, got {raw!r}")
    return seed


SEED = 0      # set from DYNLEARN_TEST_SEED in pytest_configure


@pytest.fixture(scope="session")
def seed_offset() -> int:
    """``DYNLEARN_TEST_SEED`` (default 0): added to the seeds of stochastic claims."""
    return SEED


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
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
    """A registry with no entry points at all: session registrations only (and the core's own ``step``
    schedule, which the core ships as a plugin)."""
    from dynlearn.schedule import StepSchedule

    reg = Registry(entry_points=[])
    reg.register("schedules", StepSchedule)
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


_EXAMPLE_TIMES = pytest.StashKey[list]()


@pytest.fixture
def record_example_time(request):
    """``record_example_time(name, seconds)``: the run time of a documented example, listed at the end of the run
    (section "documented examples: run time"; tests/test_doc_examples.py, tests/test_cli_output.py)."""
    times = request.config.stash.setdefault(_EXAMPLE_TIMES, [])

    def record(name: str, seconds: float) -> None:
        times.append((name, seconds))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    times = config.stash.get(_EXAMPLE_TIMES, [])
    if times:
        terminalreporter.section("documented examples: run time")
        for name, seconds in times:
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}")


def pytest_configure(config):
    global SEED
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    SEED = _seed_from_env()


def pytest_report_header(config):
    return f"dynlearn test seed (DYNLEARN_TEST_SEED): {SEED}"


def pytest_collection_modifyitems(config, items):
    off = ("slow", "benchmark", "browser")          # deselected by default (pyproject addopts)
    both = [item.nodeid for item in items if item.get_closest_marker("numerics")
            and any(item.get_closest_marker(m) for m in off)]
    if both:
        raise pytest.UsageError(f"tests marked numerics and {'/'.join(off)} (-m numerics would run them): {both}")

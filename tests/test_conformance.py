"""Every built-in System passes the conformance kit (analyzers run it in their own test modules)."""

from __future__ import annotations

import warnings

import pytest

import dynlearn
from dynlearn.testing import system_checks

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    SYSTEMS = dynlearn.registry.names("systems")

CASES = [(name, chk) for name in SYSTEMS for chk in system_checks(name)]


@pytest.mark.parametrize("check", [c for _, c in CASES], ids=[f"{n}-{c.__name__}" for n, c in CASES])
def test_builtin_system_conforms(check):
    check()


def test_every_declared_builtin_plugin_loads():
    broken = [i for i in dynlearn.registry.default_registry().info() if not i.ok]
    assert not broken, "; ".join(f"{i.kind}:{i.name}: {i.error}" for i in broken)

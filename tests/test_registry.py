"""Plugin registry: discovery from entry points, broken plugins, unknown names, session registration, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import dynlearn
from dynlearn.errors import PluginNotFoundError
from dynlearn.registry import PluginWarning, Registry

HERE = Path(__file__).parent


def ep(name: str, value: str, group: str = "dynlearn.systems") -> EntryPoint:
    return EntryPoint(name=name, value=value, group=group)


def test_synthetic_entry_points_load():
    reg = Registry([ep("sn", "dynlearn_builtins.systems.saddle_node:SaddleNode"),
                    ep("da", "dynlearn_datasets.delayed_activation:DelayedActivation", "dynlearn.datasets")])
    assert reg.names("systems") == ["sn"]
    assert reg.get("datasets", "da").name == "delayed_activation"


def test_broken_plugin_is_a_warning_naming_it_and_others_still_load():
    reg = Registry([ep("good", "dynlearn_builtins.systems.examples:Bistable"),
                    ep("bad", "no_such_package.mod:Thing"),
                    ep("wrongtype", "dynlearn.errors:DynlearnError")])
    with pytest.warns(PluginWarning) as rec:
        names = reg.names("systems")
    assert names == ["good"]
    text = " ".join(str(w.message) for w in rec)
    assert "'bad'" in text and "no_such_package" in text
    assert "'wrongtype'" in text and "not a subclass" in text
    broken = {i.name: i for i in reg.info("systems") if not i.ok}
    assert set(broken) == {"bad", "wrongtype"}
    with pytest.raises(PluginNotFoundError, match="installed but failed to load"):
        reg.get("systems", "bad")


def test_unknown_name_lists_available():
    reg = Registry([ep("alpha", "dynlearn_builtins.systems.examples:Bistable"),
                    ep("beta", "dynlearn_builtins.systems.examples:HopfNormalForm")])
    with pytest.raises(PluginNotFoundError) as exc:
        reg.get("systems", "gamma")
    assert str(exc.value) == "unknown system 'gamma'; available: alpha, beta"


def test_unknown_kind():
    with pytest.raises(PluginNotFoundError, match="unknown plugin kind 'widgets'"):
        Registry([]).names("widgets")


def test_session_registration_decorator(isolated_registry):
    @dynlearn.register_system
    class Decay(dynlearn.FlowSystem):
        name = "decay_test"
        description = "dx/dt = -k x"
        parameters = {"k": dynlearn.Param(1.0)}

        def rhs(self, x, p):
            return -p["k"][..., None] * x

    assert dynlearn.get_system("decay_test") is Decay
    assert isolated_registry.info("systems")[0].source == "session"
    with pytest.raises(ValueError, match="already registered"):
        dynlearn.register_system(Decay)
    dynlearn.register_system(Decay, replace=True)
    with pytest.raises(TypeError, match="not a subclass of System"):
        dynlearn.register_system(int, name="int")


def test_discovery_is_cached_and_refreshable():
    eps = [ep("a", "dynlearn_builtins.systems.examples:Bistable")]
    reg = Registry(eps)
    assert reg.names("systems") == ["a"]
    eps.append(ep("b", "dynlearn_builtins.systems.examples:HopfNormalForm"))
    reg._override = list(eps)
    assert reg.names("systems") == ["a"]
    reg.refresh()
    assert reg.names("systems") == ["a", "b"]


def test_builtins_use_the_public_entry_points():
    infos = {(i.kind, i.name): i for i in dynlearn.registry.default_registry().info()}
    assert infos[("systems", "saddle_node")].source.startswith("dynlearn ")
    assert infos[("datasets", "delayed_activation")].ok


def test_external_plugin_package_installed_appears(tmp_path):
    """pip-install tests/plugin_pkg into a temporary target and see its plugin in `dynlearn list`."""
    target = tmp_path / "site"
    # built from a copy: an in-tree build would leave an egg-info in tests/ whose broken entry point every later
    # session would discover (the doctest collection puts tests/plugin_pkg on sys.path)
    src = shutil.copytree(HERE / "plugin_pkg", tmp_path / "plugin_pkg",
                          ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-m", "dynlearn.cli", "list", "--kind", "systems", "--format", "json"],
                         check=True, capture_output=True, text=True, env=env)
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["pitchfork"]["error"] is None
    assert "pitchfork" in plugins["pitchfork"]["description"]
    assert plugins["pitchfork"]["source"] == "dynlearn-example-plugin 0.0.1"
    # its broken sibling is reported with its error, and everything else still loads
    assert "missing_module" in plugins["broken_example"]["error"]
    assert plugins["saddle_node"]["error"] is None
    # the installed plugin passes the conformance kit, from another process
    code = "from dynlearn.testing import check_system; check_system('pitchfork'); print('conforms')"
    chk = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert chk.stdout.strip() == "conforms", chk.stderr


def test_cli_list_text_shows_descriptions():
    from typer.testing import CliRunner

    from dynlearn.cli import app

    res = CliRunner().invoke(app, ["list", "--kind", "systems"])
    assert res.exit_code == 0
    line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("saddle_node"))
    assert "x^2 + r" in line

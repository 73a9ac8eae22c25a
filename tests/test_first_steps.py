"""A new user's first steps (issue 11): unknown names suggest the closest, analyzers take an epoch selection, the
Python API and the CLI show progress by one rule, and the CLI writes results (only) to stdout."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import dynlearn
from dynlearn.cli import app
from dynlearn.errors import PluginNotFoundError, did_you_mean


# -- did you mean ----------------------------------------------------------------------------------------------------
def test_unknown_plugin_names_suggest_the_closest():
    with pytest.raises(PluginNotFoundError, match=r"^unknown system 'sadle_node'; available: .*; "
                                                  r"did you mean 'saddle_node'\?$"):
        dynlearn.get_system("sadle_node")
    with pytest.raises(PluginNotFoundError, match=r"did you mean 'fixed_points'\?$"):
        dynlearn.get_analyzer("fixed_point")
    with pytest.raises(PluginNotFoundError, match=r"^unknown plugin kind 'system'; .*did you mean 'systems'\?$"):
        dynlearn.registry.names("system")
    # nothing close: no suggestion
    with pytest.raises(PluginNotFoundError) as info:
        dynlearn.get_system("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_one_helper_for_every_suggestion():
    assert did_you_mean("gost", ["ghost", "koopman"]) == "; did you mean 'ghost'?"
    assert did_you_mean("n_start", ["n_starts", "seed"]) == "; did you mean 'n_starts'?"
    assert did_you_mean("q", []) == ""


@pytest.mark.parametrize("args,pattern", [
    (["reproduce", "gost"], r"error: unknown reproduction 'gost'; available: .*; did you mean 'ghost'\?"),
    (["list", "--kind", "system"], r"error: unknown plugin kind 'system'; .*; did you mean 'systems'\?"),
], ids=["reproduce", "list-kind"])
def test_cli_unknown_names_suggest_the_closest(args, pattern):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert re.fullmatch(pattern + r"\n", res.stderr), res.stderr
    assert res.stdout == ""


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A saddle-node run storing every 5th of 500 epochs, 3 seeds x 2 learning rates (about a second)."""
    path = tmp_path_factory.mktemp("small") / "sn.zarr"
    sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    dynlearn.train(sn, epochs=500, seeds=3, sweep={"lr": [1e-10, 5e-10]}, out=path, checkpoint_every=5, chunk=100,
                   show_progress=False)
    return path


def test_cli_analyze_unknown_analyzer_and_option(small_run):
    res = CliRunner().invoke(app, ["analyze", str(small_run), "fixed_point"])
    assert res.exit_code == 2
    assert re.fullmatch(r"error: unknown analyzer 'fixed_point'; available: .*; did you mean 'fixed_points'\?\n",
                        res.stderr), res.stderr
    res = CliRunner().invoke(app, ["analyze", str(small_run), "fixed_points", "--set", "n_start=8"])
    assert res.exit_code == 2
    assert re.fullmatch(r"error: analyzer 'fixed_points' has no option 'n_start'; its options are: n_starts, .*"
                        r"threads; did you mean 'n_starts'\?\n", res.stderr), res.stderr
    assert "fixed_points" not in dynlearn.open_store(small_run).children  # refused before any work

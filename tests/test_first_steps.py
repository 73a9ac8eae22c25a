"""A new user's first steps (issue 11): unknown names suggest the closest, analyzers take an epoch selection, the
Python API and the CLI show progress by one rule, and the CLI writes results (only) to stdout."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import dynlearn
from dynlearn.cli import app
from dynlearn.epochs import parse_epochs, select_epochs
from dynlearn.errors import ConfigError, ParameterError, PluginNotFoundError, UnknownNameError, did_you_mean


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


# -- epoch selection -------------------------------------------------------------------------------------------------
STORED = np.arange(0, 500, 5)  # the small run's checkpoints


@pytest.mark.parametrize("spec,expected", [
    (None, STORED),
    ("all", STORED),
    ("last", [495]),
    (495, [495]),
    ([0, 250, 495], [0, 250, 495]),
    ("0,250,495", [0, 250, 495]),
    ("[0, 250]", [0, 250]),
    ("::100", [0, 100, 200, 300, 400]),
    ({"every": 100}, [0, 100, 200, 300, 400]),
    ({"every": 100, "start": 50, "stop": 300}, [50, 150, 250]),
    ("100:120", [100, 105, 110, 115]),
    ("480:", [480, 485, 490, 495]),
    ("0:300:100", [0, 100, 200]),
    (slice(0, 300, 100), [0, 100, 200]),
    (range(100, 120, 10), [100, 110]),
], ids=repr)
def test_epoch_selection_forms(spec, expected):
    assert select_epochs(STORED, spec).tolist() == list(expected)


@pytest.mark.parametrize("spec,message", [
    ([0, 12], "epochs: epoch 12 is not stored; the run stores epochs 0, 5, ..., 495 (every 5)"),
    (7, "epochs: epoch 7 is not stored; the run stores epochs 0, 5, ..., 495 (every 5)"),
    ("600:", "epochs: '600:' selects no stored epoch; the run stores epochs 0, 5, ..., 495 (every 5)"),
    ("::0", "epochs: a step must be >= 1, got 0"),
    (-1, "epochs: an epoch must be a non-negative integer (use 'last' for the last epoch), got -1"),
    ([], "epochs: the list of epochs is empty"),
    ("every 10", "epochs: expected 'all', 'last', an epoch, a list of epochs, a slice 'start:stop:step' such as "
                 "'::10' or '100:500', or {\"every\": k}; got 'every 10'"),
], ids=repr)
def test_epoch_selection_errors_are_one_line(spec, message):
    with pytest.raises(ParameterError) as info:
        select_epochs(STORED, spec)
    assert str(info.value) == message


def test_epoch_selection_mapping_keys_are_checked():
    with pytest.raises(UnknownNameError, match=r"^epochs.evry: an epoch selection has no key 'evry'; its keys are: "
                                               r"every, start, stop; did you mean 'every'\?$"):
        parse_epochs({"evry": 10})


def test_analyzer_run_and_api_analyze_take_epochs(small_run):
    tree = dynlearn.open_store(small_run)
    fp = dynlearn.get_analyzer("fixed_points")(n_starts=4)
    out = fp.run(tree, epochs="::100")
    assert out["epoch"].values.tolist() == [0, 100, 200, 300, 400]
    assert set(out.n_fixed.dims) >= {"epoch", "seed", "lr"}
    # the same numbers as analysing every stored epoch and selecting afterwards
    every = fp.run(tree, epochs="400:")
    np.testing.assert_array_equal(every.n_fixed.sel(epoch=400).values, out.n_fixed.sel(epoch=400).values)
    with pytest.raises(ParameterError, match="epoch 3 is not stored"):
        fp.run(tree, epochs=[3])
    ds = dynlearn.analyze(small_run, "fixed_points", epochs="last", n_starts=4)
    assert ds["epoch"].values.tolist() == [495]
    assert dynlearn.open_store(small_run)["fixed_points"]["epoch"].values.tolist() == [495]


def test_epochs_of_a_system_need_parameters_with_an_epoch_dim():
    fp = dynlearn.get_analyzer("fixed_points")(n_starts=4)
    with pytest.raises(ParameterError, match="selects epochs of a training run"):
        fp.run("saddle_node", dynlearn.grid(r=[-1.0]), epochs="last")


def test_upstream_from_the_store_is_reused_only_when_it_holds_the_epochs(small_run, monkeypatch):
    dynlearn.analyze(small_run, "fixed_points", group="fixed_points", epochs="::100", n_starts=4, overwrite=True)
    from dynlearn import api as an_mod  # where required analyzers are made

    computed = []
    real = an_mod.make_analyzer

    def spy(config):
        if isinstance(config, str):  # a required analyzer (analyze() itself builds from a config mapping)
            computed.append(config)
        return real(config)

    monkeypatch.setattr(an_mod, "make_analyzer", spy)
    bif = dynlearn.analyze(small_run, "bifurcations", epochs="::200", show_progress=False)
    assert bif["epoch"].values.tolist() == [0, 200, 400]
    assert computed == []                        # /fixed_points holds 0, 200, 400: read, not recomputed
    bif = dynlearn.analyze(small_run, "bifurcations", epochs="450:", overwrite=True)
    assert bif["epoch"].values.tolist() == [450, 455, 460, 465, 470, 475, 480, 485, 490, 495]
    assert computed == ["fixed_points"]          # it lacks them: computed for these epochs


def test_cli_analyze_epochs(small_run):
    res = CliRunner().invoke(app, ["analyze", str(small_run), "fixed_points", "--group", "fp_cli", "--epochs",
                                   "0,250", "--set", "n_starts=4"])
    assert res.exit_code == 0, res.output
    assert dynlearn.open_store(small_run)["fp_cli"]["epoch"].values.tolist() == [0, 250]
    assert res.stdout == "" and res.stderr.splitlines()[-1].startswith(f"wrote /fp_cli to {small_run}")
    res = CliRunner().invoke(app, ["analyze", str(small_run), "fixed_points", "--group", "fp_bad", "--epochs", "12"])
    assert res.exit_code == 2
    assert res.stderr == "error: epochs: epoch 12 is not stored; the run stores epochs 0, 5, ..., 495 (every 5)\n"


EXPERIMENT = """
name = "epochs-step"
[system]
name = "saddle_node"
[task]
T = 100.0
[train]
epochs = 300
seeds = 2
chunk = 100
checkpoint_every = 10
[sweep]
lr = [1e-10, 5e-10]
[[analyze]]
name = "fixed_points"
n_starts = 4
epochs = {epochs}
"""


def test_analyze_step_of_an_experiment_takes_epochs(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(EXPERIMENT.format(epochs='"::100"'))
    res = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path / "run.zarr")])
    assert res.exit_code == 0, res.output
    assert dynlearn.open_store(tmp_path / "run.zarr")["fixed_points"]["epoch"].values.tolist() == [0, 100, 200]
    assert res.stderr.splitlines()[-1].endswith(", /fixed_points")
    exp.write_text(EXPERIMENT.format(epochs="{ every = 150 }"))
    assert dynlearn.load_experiment(exp).config["analyze"][0]["epochs"] == {"every": 150}


def test_analyze_step_epochs_checked_before_training(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(EXPERIMENT.format(epochs="[0, 15]"))
    with pytest.raises(ConfigError) as info:
        dynlearn.load_experiment(exp)
    assert str(info.value) == ("analyze[0].epochs: epoch 15 is not stored; the run stores epochs 0, 10, ..., 290 "
                               "(every 10)")

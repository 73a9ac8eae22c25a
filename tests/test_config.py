"""Experiment files: every malformed input is one clear error line (API and CLI)."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from dynlearn.cli import app
from dynlearn.config import load_experiment, resolve_experiment
from dynlearn.errors import ConfigError

GOOD = """
name = "t"
[system]
name = "saddle_node"
[task]
T = 100.0
[train]
epochs = 10
seeds = 2
[sweep]
lr = [1e-10, 2e-10]
"""


def write(tmp_path, text: str):
    p = tmp_path / "exp.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_experiment_resolves_with_defaults(tmp_path):
    exp = load_experiment(write(tmp_path, GOOD))
    cfg = exp.config
    assert cfg["train"]["seeds"] == [0, 1]
    assert cfg["train"]["optimizer"] == "sgd" and cfg["train"]["chunk"] == 10
    assert cfg["system"]["form"] == "analytic" and cfg["task"]["name"] == "delayed_activation"
    assert cfg["hyper"] == {"c": 1.0, "x_star": 10.0}
    assert len(exp.hash) == 16 and exp.hash == load_experiment(write(tmp_path, GOOD)).hash


BAD = {
    "malformed_toml": ("[system\nname = 1", r"malformed TOML"),
    "unknown_system": (GOOD.replace('name = "saddle_node"', 'name = "no_such"'),
                       r"unknown system 'no_such'; available: .*saddle_node"),
    "unknown_top_key": (GOOD + "\n[extra]\na = 1\n", r"unknown top-level key 'extra'"),
    "epochs_str": (GOOD.replace("epochs = 10", 'epochs = "10"'), r"train.epochs must be an integer, got '10' \(str\)"),
    "epochs_float": (GOOD.replace("epochs = 10", "epochs = 10.5"), r"train.epochs must be an integer"),
    "epochs_zero": (GOOD.replace("epochs = 10", "epochs = 0"), r"train.epochs must be >= 1"),
    "negative_T": (GOOD.replace("T = 100.0", "T = -5.0"), r"parameter 'T' must be > 0, got -5.0"),
    "nan_T": (GOOD.replace("T = 100.0", "T = nan"), r"parameter 'T' is NaN"),
    "nan_lr": (GOOD.replace("lr = [1e-10, 2e-10]", "lr = [1e-10, nan]"), r"sweep.lr contains a non-finite value"),
    "negative_lr": (GOOD.replace("lr = [1e-10, 2e-10]", "lr = [-1e-10]"), r"sweep.lr: parameter 'lr' must be > 0"),
    "unknown_hyper": (GOOD.replace("[sweep]", "[sweep]\nmomentum = [0.9]"), r"no hyper-parameter 'momentum'"),
    "bad_option": (GOOD.replace('name = "saddle_node"', 'name = "saddle_node"\nform = "exact"'),
                   r"form must be 'analytic' or 'numeric'"),
    "bad_system_param": (GOOD.replace('name = "saddle_node"', 'name = "saddle_node"\nr = nan'),
                         r"parameter 'r' is NaN"),
    "unknown_optimizer": (GOOD.replace("seeds = 2", 'seeds = 2\noptimizer = "lbfgs"'), r"unknown optimizer 'lbfgs'"),
    "duplicate_seeds": (GOOD.replace("seeds = 2", "seeds = [1, 1]"), r"train.seeds must be distinct"),
    "checkpoint": (GOOD.replace("seeds = 2", "seeds = 2\ncheckpoint_every = 3"), r"checkpoint_every must .* divide"),
    "no_train": ('[system]\nname = "saddle_node"\n', r"missing \[train\] table"),
    "unknown_analyzer": (GOOD + '\n[[analyze]]\nname = "nope"\n', r"analyze\[0\]: unknown analyzer 'nope'"),
    "not_trainable": (GOOD.replace('name = "saddle_node"', 'name = "hopf"'), r"'hopf' is not trainable"),
}


@pytest.mark.parametrize("text,pattern", list(BAD.values()), ids=list(BAD))
def test_bad_experiment_one_clear_error(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_experiment(write(tmp_path, text))


@pytest.mark.parametrize("text,pattern", [BAD["malformed_toml"], BAD["negative_T"], BAD["unknown_system"]],
                         ids=["malformed", "negative_T", "unknown_system"])
def test_cli_prints_one_error_line(tmp_path, text, pattern):
    res = CliRunner().invoke(app, ["run", str(write(tmp_path, text)), "--out", str(tmp_path / "s.zarr"),
                                   "--no-progress"])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.toml")


def test_resolve_rejects_hyper_twice():
    raw = {"system": {"name": "saddle_node"}, "train": {"epochs": 1}, "sweep": {"c": [1.0]}, "hyper": {"c": 2.0}}
    with pytest.raises(ConfigError, match="also swept"):
        resolve_experiment(raw)

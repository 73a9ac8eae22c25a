"""Input faults a new user meets (issue 10): misspelled sweep names and analyzer options are one clear
:class:`ParameterError` whichever way they enter; the sweep is recorded in ``system_config``; the analyzers'
thread policy."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

import dynlearn
from dynlearn.cli import app
from dynlearn.errors import ConfigError, ParameterError, UnknownNameError
from dynlearn.sweep import flatten, grid
from dynlearn.threads import NUMBERS_PER_THREAD, analyzer_threads, set_analyzer_threads, torch_threads

TWO_FACTOR = "system 'two_factor' has no parameter 'm'; its parameters are: mu; did you mean 'mu'?"
SADDLE_HYPER = "its hyper-parameters are: lr, c, x_star; did you mean 'lr'?"
FP_OPTION = "analyzer 'fixed_points' has no option 'n_start'; its options are: n_starts, "


# -- 1. unknown sweep names ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    grid(m=[1.13]),
    grid(mu=[0.5, 1.0], m=[1.13]),
    {"m": 1.13},
    xr.Dataset({"m": ("k", [1.0, 1.2])}),
], ids=["grid-axis", "extra-grid-axis", "mapping-key", "dataset-variable"])
def test_unknown_grid_name_is_one_parameter_error(params):
    tf = dynlearn.get_system("two_factor")()
    with pytest.raises(ParameterError) as info:
        flatten(tf, params)
    assert type(info.value) is UnknownNameError and str(info.value) == TWO_FACTOR


def test_analyzer_run_on_a_misspelled_grid_raises_before_computing():
    fp = dynlearn.get_analyzer("fixed_points")()
    with pytest.raises(ParameterError) as info:
        fp.run("two_factor", dynlearn.grid(m=[1.13]))
    assert str(info.value) == TWO_FACTOR


def test_a_dim_no_parameter_varies_over_is_an_error_not_a_dropped_dim():
    ds = xr.Dataset({"mu": ("seed", [0.5, 0.7])}, coords={"seed": [0, 1], "epoch": [0, 1, 2]})
    with pytest.raises(ParameterError, match=r"^system 'two_factor' has no parameter 'epoch'; its parameters are: mu$"):
        flatten(dynlearn.get_system("two_factor")(), ds)
    assert flatten(dynlearn.get_system("two_factor")(), ds, strict=False).dims == ("seed",)


def test_train_sweep_and_hyper_names_use_the_same_check():
    sn = dynlearn.get_system("saddle_node")()
    with pytest.raises(ParameterError) as info:
        dynlearn.train(sn, epochs=1, sweep={"lrr": [1e-10]})
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == f"sweep.lrr: system 'saddle_node' has no hyper-parameter 'lrr'; {SADDLE_HYPER}"
    with pytest.raises(ParameterError) as info:
        dynlearn.train(sn, epochs=1, hyper={"x_start": 5.0})
    assert str(info.value) == ("hyper.x_start: system 'saddle_node' has no hyper-parameter 'x_start'; "
                               "its hyper-parameters are: lr, c, x_star; did you mean 'x_star'?")


def test_experiment_file_sweep_name(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text(textwrap.dedent("""
        [system]
        name = "saddle_node"
        [train]
        epochs = 1
        [sweep]
        lrr = [1e-10]
    """))
    with pytest.raises(ParameterError) as info:
        dynlearn.load_experiment(p)
    assert isinstance(info.value, ConfigError) and str(info.value).startswith("sweep.lrr: system 'saddle_node' has no")
    assert str(info.value).endswith(SADDLE_HYPER)


# -- 2. the sweep in system_config --------------------------------------------------------------------------------
def test_system_config_records_the_swept_parameters():
    out = dynlearn.get_analyzer("fixed_points")(landscape=False).run("two_factor", grid(mu=[0.5, 1.13]))
    cfg = json.loads(out.attrs["system_config"])
    assert cfg == {"name": "two_factor", "sweep": {"parameters": {"mu": ["mu"]}, "dims": {"mu": [0.5, 1.13]}}}


def test_system_config_holds_a_single_given_value_and_summarises_long_dims():
    tf = dynlearn.get_system("two_factor")()
    assert flatten(tf, {"mu": 1.13}).system_config() == {"name": "two_factor", "mu": 1.13}
    b = flatten(tf, xr.Dataset({"mu": ("epoch", np.linspace(0.5, 1.5, 5))}, coords={"epoch": [0, 10, 20, 30, 40]}))
    assert b.system_config(max_values=3)["sweep"] == {"parameters": {"mu": ["epoch"]},
                                                      "dims": {"epoch": {"size": 5, "min": 0, "max": 40}}}
    assert b.system_config()["sweep"]["dims"] == {"epoch": [0, 10, 20, 30, 40]}


def test_basins_views_rebuild_the_system_from_a_swept_config():
    from dynlearn_builtins.analyzers.basins.views import _system

    attrs = {"system_config": json.dumps({"name": "two_factor", "sweep": {"parameters": {"mu": ["mu"]},
                                                                          "dims": {"mu": [0.5]}}})}
    system = _system(xr.Dataset(attrs=attrs))
    assert system is not None and system.name == "two_factor"


# -- 3. misspelled analyzer options -------------------------------------------------------------------------------
def test_analyzer_option_typo_same_error_from_constructor_and_make_analyzer():
    errors = []
    for make in (lambda: dynlearn.get_analyzer("fixed_points")(n_start=8),
                 lambda: dynlearn.make_analyzer({"name": "fixed_points", "n_start": 8})):
        with pytest.raises(ParameterError) as info:
            make()
        errors.append(info.value)
    assert type(errors[0]) is type(errors[1]) is UnknownNameError
    assert str(errors[0]) == str(errors[1])
    assert str(errors[0]).startswith(FP_OPTION) and str(errors[0]).endswith(", threads; did you mean 'n_starts'?")


def test_analyzer_option_typo_from_the_cli(tmp_path):
    store = tmp_path / "run.zarr"
    dynlearn.train(dynlearn.get_system("saddle_node")(), epochs=2, out=store, show_progress=False)
    res = CliRunner().invoke(app, ["analyze", str(store), "fixed_points", "--set", "n_start=8", "--no-progress"])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {FP_OPTION}")
    assert lines[0].endswith("did you mean 'n_starts'?")


def test_every_analyzer_takes_threads_and_round_trips_it():
    for name in ("fixed_points", "basins", "bifurcations", "orbits"):
        cls = dynlearn.get_analyzer(name)
        assert cls().threads is None and cls().get_params()["threads"] is None
        an = cls(threads=2)
        assert an.threads == 2 and type(an)(**an.get_params()).get_params() == an.get_params()


def test_koopman_keeps_its_own_threads_default():
    an = dynlearn.get_analyzer("koopman_separatrix")()
    assert an.threads == 1 and list(an.get_params()).count("threads") == 1


# -- 4. thread policy -------------------------------------------------------------------------------------------
def test_thread_policy_small_problems_get_one_thread():
    with torch_threads(2):
        assert analyzer_threads(100 * 64) == 1  # 64 states of a 100-neuron network
        assert analyzer_threads(2 * 10_000) == 1  # 10k states of a 2-D flow
        assert analyzer_threads(NUMBERS_PER_THREAD - 1) == 1
        assert analyzer_threads(2 * NUMBERS_PER_THREAD) == 2
        assert analyzer_threads(100 * NUMBERS_PER_THREAD) == 2  # never more than torch's setting


def test_thread_policy_honours_explicit_settings():
    with torch_threads(1):
        assert analyzer_threads(100, requested=3) == 3
        assert analyzer_threads(100, requested=0) == 1  # 0: automatic
    set_analyzer_threads(2)
    try:
        assert analyzer_threads(100) == 2
        assert analyzer_threads(100, requested=3) == 3  # the analyzer's option wins
    finally:
        set_analyzer_threads(None)
    assert analyzer_threads(100) == 1
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ParameterError, match=r"^threads must be a positive integer or None \(automatic\), got "):
            analyzer_threads(100, requested=bad)


def test_analyzer_run_uses_the_policy_and_restores_the_setting(monkeypatch):
    seen = []
    fp = dynlearn.get_analyzer("fixed_points")
    monkeypatch.setattr(fp, "analyze", lambda self, batch, **kw: seen.append(torch.get_num_threads())
                        or xr.Dataset(coords={"mu": batch.coords["mu"][1]}))
    with torch_threads(2):
        fp(landscape=False).run("two_factor", grid(mu=[0.5]))
        fp(threads=3).run("two_factor", grid(mu=[0.5]))
        assert torch.get_num_threads() == 2
    assert seen == [1, 3]


def test_cli_threads_option_passes_through():
    try:
        res = CliRunner().invoke(app, ["--threads", "3", "list", "--kind", "analyzers"])
        assert res.exit_code == 0 and analyzer_threads(100) == 3
        res = CliRunner().invoke(app, ["list", "--kind", "analyzers"])
        assert res.exit_code == 0 and analyzer_threads(100) == 1  # default: automatic
    finally:
        set_analyzer_threads(None)

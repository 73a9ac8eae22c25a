"""Fuzzed names and experiment files (hypothesis): refused cleanly or used safely, never anything touched outside.

Each example runs in its own directory surrounded by sentinel files, under the deletion/rename guard of
tests/fs_guard.py (a target outside that directory is refused and recorded, and the test fails on it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import dynlearn
import fs_guard
from dynlearn.cli import app
from dynlearn.errors import ConfigError, DynlearnError, PathError
from dynlearn.safety import NAME_PATTERN, RUN_GROUPS, check_name
from dynlearn.store import ANALYSIS, write_group
from test_safety import TINY, _snapshot

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
names = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="./\\~ -_a\x00", max_size=12),
    st.sampled_from(["/", "..", ".", "../x", "a/b", "/etc", "~", "", " ", "train", "params", "fixed_points",
                     "ok_name", "a.b-c", "x" * 129]),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-template")
    sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    dynlearn.train(sn, epochs=4, seeds=1, sweep={"lr": [1e-10, 2e-9]}, out=root / "run.zarr")
    return root


@contextmanager
def guarded_world(template: Path):
    """A fresh directory (sentinels + a copy of the store), the guard installed, checked on exit."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        work = root / "work"
        work.mkdir()
        (root / "sentinel.txt").write_text("keep")
        (work / "notes.txt").write_text("keep too")
        shutil.copytree(template / "run.zarr", work / "run.zarr")
        (root / "tmp").mkdir()
        violations: list[str] = []
        old_tmp = tempfile.tempdir
        tempfile.tempdir = str(root / "tmp")
        restore = fs_guard.install(root, violations)
        try:
            yield root, work
        finally:
            restore()
            tempfile.tempdir = old_tmp
        assert not violations, violations


@FUZZ
@given(name=names)
def test_check_name_accepts_exactly_single_safe_components(name):
    try:
        out = check_name(name)
    except PathError as exc:
        assert "\n" not in str(exc)
        assert not (isinstance(name, str) and NAME_PATTERN.match(name) and ".." not in name)
        return
    assert out == name and NAME_PATTERN.match(name)
    base = Path("/store")
    assert (base / name).parent == base and (base / name).name == name


@FUZZ
@given(name=names)
def test_fuzzed_group_names_are_refused_or_land_inside_the_store(template, name):
    ds = xr.Dataset({"x": ("i", np.arange(3.0))})
    with guarded_world(template) as (root, work):
        store = work / "run.zarr"
        outside = {k: v for k, v in _snapshot(root).items() if not k.startswith("work/run.zarr/")}
        try:
            write_group(store, name, ds, role=ANALYSIS)
        except DynlearnError as exc:
            assert "\n" not in str(exc)
        else:
            assert name not in RUN_GROUPS and NAME_PATTERN.match(name)
            assert (store / name / "zarr.json").exists() and (store / name).resolve().parent == store.resolve()
        after = {k: v for k, v in _snapshot(root).items() if not k.startswith("work/run.zarr/")}
        assert after == outside


def _toml_string(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


experiments = st.fixed_dictionaries({
    "name": names,
    "group": names,
    "sweep_key": st.sampled_from(["lr", "lr ", "m", "", "../lr", "c"]),
    "epochs": st.sampled_from([2, 0, -1, 3]),
    "analyze": st.booleans(),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(spec=experiments)
def test_fuzzed_experiment_files_are_refused_cleanly_or_run_safely(template, spec):
    text = (f"name = {_toml_string(spec['name'])}\n[system]\nname = \"saddle_node\"\n[task]\nT = 100.0\n"
            f"[train]\nepochs = {spec['epochs']}\nchunk = 2\n[sweep]\n{_toml_string(spec['sweep_key'])} = [1e-10]\n")
    if spec["analyze"]:
        text += f"[[analyze]]\nname = \"fixed_points\"\ngroup = {_toml_string(spec['group'])}\n"
    with guarded_world(template) as (root, work):
        (work / "exp.toml").write_text(text)
        before = _snapshot(root)
        try:
            dynlearn.load_experiment(work / "exp.toml")
            valid = True
        except DynlearnError as exc:
            assert "\n" not in str(exc)
            valid = False
        cwd = os.getcwd()
        os.chdir(work)
        try:
            res = CliRunner().invoke(app, ["run", "exp.toml", "--no-progress"])
        finally:
            os.chdir(cwd)
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        assert "Traceback" not in res.output
        if valid:
            assert res.exit_code == 0, res.output
            out = work / "dynlearn-results" / f"{spec['name']}.zarr"
            assert out.resolve().parent == (work / "dynlearn-results").resolve() and out.exists()
        else:
            assert res.exit_code == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
            assert _snapshot(root) == before


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=300))
def test_arbitrary_toml_text_is_a_config_error_or_an_experiment(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("toml") / "x.toml"
    p.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        dynlearn.load_experiment(p)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    except DynlearnError as exc:
        assert "\n" not in str(exc)

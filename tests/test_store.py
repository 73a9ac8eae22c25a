"""Result stores: preallocated layout, region writes, commit flags; a killed run is openable and resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import dynlearn
from dynlearn.errors import StoreError
from dynlearn.store import committed_epochs, create_store, open_store, root_attrs, write_group

SLOW_CLI = Path(__file__).with_name("slow_cli.py")

EXPERIMENT = """
name = "kill-test"
[system]
name = "saddle_node"
[task]
T = 100.0
[train]
epochs = {epochs}
seeds = 3
chunk = {chunk}
[sweep]
lr = [1e-10, 5e-10, 2e-9]
"""


def _run_cli(args, chunk_delay=None, **kw):
    """``dynlearn ARGS`` in a subprocess; ``chunk_delay``: every chunk of epochs takes at least that many seconds
    (tests/slow_cli.py)."""
    cmd = ["-m", "dynlearn.cli"] if chunk_delay is None else [str(SLOW_CLI), str(chunk_delay)]
    return subprocess.Popen([sys.executable, *cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _committed(path) -> int:
    try:
        flags = zarr.open_group(str(path), mode="r")["train/committed"][:]
    except Exception:
        return 0
    return int(np.asarray(flags).sum())


def test_killed_run_is_openable_and_resumes_to_identical_contents(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(EXPERIMENT.format(epochs=600, chunk=50))
    ref, run = tmp_path / "ref.zarr", tmp_path / "run.zarr"
    assert _run_cli(["run", str(exp), "--out", str(ref), "--no-progress"]).wait(timeout=300) == 0

    # each chunk takes >= 0.4 s (tests/slow_cli.py), so the kill lands mid-run, after at least two commits
    proc = _run_cli(["run", str(exp), "--out", str(run), "--no-progress"], chunk_delay=0.4)
    deadline = time.time() + 240
    while _committed(run) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n = _committed(run)
    assert 2 <= n < 12, f"kill did not land mid-run ({n} of 12 chunks committed)"

    tree = open_store(run)  # always openable
    done = committed_epochs(tree)
    assert done == 50 * n
    assert np.isnan(tree["train"]["loss"].values[done + 50 :]).all()
    info = subprocess.run([sys.executable, "-m", "dynlearn.cli", "show", str(run), "--format", "json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["training"]["complete"] is False

    res = _run_cli(["run", str(exp), "--out", str(run), "--no-progress"])
    _, err = res.communicate(timeout=300)
    assert res.returncode == 0, err
    assert b"resumed at epoch" in err
    a, b = open_store(run), open_store(ref)
    for group in ("train", "params"):
        xr.testing.assert_identical(a[group].to_dataset(), b[group].to_dataset())


def test_create_store_is_atomic_and_refuses_overwrite(tmp_path):
    path = tmp_path / "s.zarr"
    ds = xr.Dataset({"x": ("i", np.arange(3.0), {"long_name": "x"})})
    create_store(path, {"g": ds}, {"config": {"name": "n"}, "value": float("nan")})
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]  # no temporary left behind
    assert root_attrs(path)["value"] == "nan"  # strict JSON
    json.loads((path / "zarr.json").read_text())
    with pytest.raises(StoreError, match="already exists"):
        create_store(path, {}, {})


def test_write_group_replaces_and_marks_complete(tmp_path):
    path = tmp_path / "s.zarr"
    create_store(path, {}, {"config": {}})
    write_group(path, "fixed", xr.Dataset({"a": ("p", [1.0, 2.0])}, attrs={"meta": {"k": [1, "x"]}}))
    write_group(path, "fixed", xr.Dataset({"b": ("p", [3.0])}))
    tree = open_store(path)
    assert list(tree["fixed"].data_vars) == ["b"] and tree["fixed"].attrs["complete"] is True


def test_incomplete_group_is_hidden(tmp_path):
    path = tmp_path / "s.zarr"
    create_store(path, {}, {"config": {}})
    write_group(path, "good", xr.Dataset({"a": ("p", [1.0])}))
    xr.Dataset({"a": ("p", [1.0])}, attrs={"complete": False}).to_zarr(str(path), group="half", mode="w")
    assert set(open_store(path).children) == {"good"}


@pytest.mark.parametrize("make,pattern", [
    (lambda p: None, "no result store at"),
    (lambda p: p.mkdir(), "is not a zarr v3 store"),
    (lambda p: zarr.open_group(str(p), mode="w"), "not a dynlearn result store"),
], ids=["missing", "plain_dir", "foreign_zarr"])
def test_bad_stores_give_clear_errors(tmp_path, make, pattern):
    path = tmp_path / "x.zarr"
    make(path)
    with pytest.raises(StoreError, match=pattern):
        root_attrs(path)


def test_consolidated_at_end_and_dropped_before_writing(tmp_path):
    path = tmp_path / "s.zarr"
    dynlearn.train(dynlearn.get_system("saddle_node")(), epochs=5, out=path)
    assert "consolidated_metadata" in json.loads((path / "zarr.json").read_text())
    xr.open_datatree(path, engine="zarr", consolidated=True)  # readers using the consolidated copy work
    dynlearn.store.unconsolidate(path)
    assert "consolidated_metadata" not in json.loads((path / "zarr.json").read_text())

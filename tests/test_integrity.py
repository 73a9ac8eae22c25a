"""A damaged or shared store says so: checksums, ``dynlearn verify``, one-line errors, ``--repair``, the writer lock.

Every test damages its own copy of a small run store inside its pytest ``tmp_path``; nothing else is touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dynlearn.cli import app
from dynlearn.errors import StoreError
from dynlearn.integrity import LOCK_NAME, store_lock, verify
from dynlearn.store import ANALYSIS, open_store, write_group

EXPERIMENT = """
name = "integrity"
[system]
name = "saddle_node"
[task]
T = 100.0
[train]
epochs = {epochs}
seeds = 2
chunk = 50
[sweep]
lr = [1e-10, 2e-9]
"""


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An undamaged run (6 chunks of 50 epochs) with an analyzer group ``extra``; never modified."""
    base = tmp_path_factory.mktemp("reference")
    exp = base / "exp.toml"
    exp.write_text(EXPERIMENT.format(epochs=300))
    store = base / "ref.zarr"
    res = cli("run", exp, "--out", store, "--no-progress")
    assert res.exit_code == 0, res.output
    extra = open_store(store)["train"]["loss"].isel(epoch=-1).to_dataset().drop_vars("epoch")
    write_group(store, "extra", extra.assign(n=("seed", np.arange(2))), role=ANALYSIS)
    return exp, store


@pytest.fixture
def store(reference, tmp_path):
    """A private copy of the reference store, in this test's tmp_path."""
    _, ref = reference
    return Path(shutil.copytree(ref, tmp_path / "run.zarr"))


def files(path: Path) -> dict[str, bytes]:
    """Every file of a store by its relative path (the lock file, removed after each writer, excluded)."""
    return {f.relative_to(path).as_posix(): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file() and f.name != LOCK_NAME}


def _delete(rel):
    def go(p: Path):
        target = p / rel
        assert p in target.parents and target.is_file()
        target.unlink()
    return go


def _overwrite(rel, data):
    def go(p: Path):
        target = p / rel
        assert p in target.parents and target.is_file()
        target.write_bytes(data(target.read_bytes()))
    return go


RANDOM = _overwrite  # random bytes of the same length
DAMAGE = {
    "chunk_deleted": ("train/loss/c/5/0/0", _delete("train/loss/c/5/0/0")),
    "chunk_corrupted": ("params/r/c/2/0/0", RANDOM("params/r/c/2/0/0", lambda b: os.urandom(len(b)))),
    "root_json_truncated": ("zarr.json", _overwrite("zarr.json", lambda b: b[: len(b) // 3])),
    "group_json_truncated": ("train/zarr.json", _overwrite("train/zarr.json", lambda b: b[: len(b) // 2])),
    "array_json_truncated": ("train/loss/zarr.json", _overwrite("train/loss/zarr.json", lambda b: b[:40])),
    "analyzer_chunk_deleted": ("extra/loss/c/0/0", _delete("extra/loss/c/0/0")),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_one_line_naming_the_file(reference, store, tmp_path, case):
    exp, _ = reference
    rel, damage = DAMAGE[case]
    damage(store)
    expected = f"error: {store}/{rel}: "
    commands = {
        "show": ["show", store],
        "browse": ["browse", store, "--html", tmp_path / "page.html"],
        "analyze": ["analyze", store, "fixed_points", "--group", "fp", "--no-progress"],
        "run": ["run", exp, "--out", store, "--no-progress"],
    }
    if case == "analyzer_chunk_deleted":
        del commands["run"]  # the run resumes from /train, /params, /state only: intact here
    for name, args in commands.items():
        res = cli(*args)
        assert res.exit_code == 2, (name, res.output)
        assert res.stderr.startswith(expected) and res.stderr.endswith(f"(run 'dynlearn verify {store}')\n"), \
            (name, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.output, (name, res.output)
    res = cli("verify", store)
    assert res.exit_code == 1 and f"  {rel}: " in res.stdout, res.output
    report = json.loads(cli("verify", store, "--format", "json").stdout)
    assert not report["ok"] and [d["path"] for d in report["damaged"]] == [rel]


def test_intact_store_verifies_and_a_missing_chunk_never_reads_as_nan(store):
    res = cli("verify", store)
    assert res.exit_code == 0 and res.stdout.startswith(f"{store}: ok"), res.output
    assert json.loads(cli("verify", store, "--format", "json").stdout)["ok"] is True
    _delete("train/status/c/0/0/0")(store)  # all "ok": equal to the fill value, yet written and required
    with pytest.raises(StoreError, match=r"train/status/c/0/0/0: missing \(written by the commit of epochs 0-49\)"):
        open_store(store)


@pytest.mark.parametrize("case", ["chunk_deleted", "chunk_corrupted", "group_json_truncated",
                                  "array_json_truncated", "state_slot_corrupted", "outcome_deleted",
                                  "commit_flag_deleted", "coordinate_deleted", "early_chunk_deleted"])
def test_repair_restores_the_store_bitwise(reference, store, case):
    exp, ref = reference
    extra = {
        "state_slot_corrupted": _overwrite("state/theta__r/c/1/0/0", lambda b: os.urandom(len(b))),
        "outcome_deleted": _delete("train/outcome/c/0/0"),
        "commit_flag_deleted": _delete("train/committed/c/2"),
        "coordinate_deleted": _delete("train/epoch/c/0"),
        "early_chunk_deleted": _delete("train/grad_norm/c/1/0/0"),
    }
    damage = DAMAGE[case][1] if case in DAMAGE else extra[case]
    damage(store)
    assert not verify(store).ok
    res = cli("run", exp, "--out", store, "--repair", "--no-progress")
    assert res.exit_code == 0, res.output
    assert verify(store).ok
    assert files(store) == files(ref)


def test_repair_refuses_a_damaged_root(reference, store):
    exp, _ = reference
    DAMAGE["root_json_truncated"][1](store)
    res = cli("run", exp, "--out", store, "--repair", "--no-progress")
    assert res.exit_code == 2 and res.stderr.startswith(f"error: {store}/zarr.json: not valid JSON"), res.output
    assert "restore it from a backup" in cli("verify", store).stdout


def test_damaged_analyzer_group_is_recomputed_by_analyze_overwrite(store):
    DAMAGE["analyzer_chunk_deleted"][1](store)
    res = cli("analyze", store, "fixed_points", "--group", "extra", "--overwrite", "--no-progress")
    assert res.exit_code == 0, res.output
    assert verify(store).ok and open_store(store)["extra"].attrs["dynlearn_analyzer"] == "fixed_points"


def _hold_lock(store: Path):
    """Take the store's lock the way another process would (a separate open file description)."""
    fd = os.open(store / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    return fd


def test_second_writer_is_refused_readers_are_not(reference, store, tmp_path):
    exp, _ = reference
    fd = _hold_lock(store)
    try:
        for args in (["run", exp, "--out", store, "--no-progress"],
                     ["run", exp, "--out", store, "--repair", "--no-progress"],
                     ["analyze", store, "fixed_points", "--group", "fp", "--no-progress"]):
            res = cli(*args)
            assert res.exit_code == 2, res.output
            assert res.stderr == (f"error: {store} is being written by another process (pid 4242); wait for it to "
                                  "finish (readers such as 'dynlearn show' are not blocked)\n")
        assert cli("show", store).exit_code == 0
        assert cli("verify", store).exit_code == 0
        assert cli("browse", store, "--html", tmp_path / "page.html").exit_code == 0
    finally:
        os.close(fd)
    with store_lock(store):  # free again; re-entrant within a process
        with store_lock(store):
            assert (store / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (store / LOCK_NAME).exists()


def _dynlearn(*args, chunk_delay=None):
    """``dynlearn ARGS`` in a subprocess; ``chunk_delay``: every chunk of epochs takes at least that many seconds
    (tests/slow_cli.py)."""
    cmd = ["-m", "dynlearn.cli"] if chunk_delay is None else [str(Path(__file__).with_name("slow_cli.py")),
                                                               str(chunk_delay)]
    return subprocess.Popen([sys.executable, *cmd, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_cli_runs_on_one_store_the_lock_dies_with_its_process(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(EXPERIMENT.format(epochs=1000))
    out = tmp_path / "run.zarr"
    first = _dynlearn("run", exp, "--out", out, "--no-progress", chunk_delay=0.5)
    deadline = time.time() + 120
    while not (out / LOCK_NAME).is_file() or not (out / LOCK_NAME).read_text().strip():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    second = _dynlearn("run", exp, "--out", out, "--no-progress")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and err == (
        f"error: {out} is being written by another process (pid {first.pid}); wait for it to finish "
        "(readers such as 'dynlearn show' are not blocked)\n"), err
    first.send_signal(signal.SIGKILL)  # the kernel releases its lock
    first.wait()
    third = _dynlearn("run", exp, "--out", out, "--no-progress")
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0 and "resumed at epoch" in err, err
    assert verify(out).ok


def test_damage_through_a_subprocess_is_one_line(store):
    _delete("train/loss/c/5/0/0")(store)
    proc = _dynlearn("show", store)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == ""
    assert err == (f"error: {store}/train/loss/c/5/0/0: missing (written by the commit of epochs 250-299) "
                   f"(run 'dynlearn verify {store}')\n")


def test_browse_serve_listens_on_localhost_unless_told(store, monkeypatch):
    import panel as pn

    calls = []
    monkeypatch.setattr(pn, "serve", lambda *a, **kw: calls.append(kw))
    assert cli("browse", store, "--serve").exit_code == 0
    assert cli("browse", store, "--serve", "--host", "0.0.0.0", "--port", "8000").exit_code == 0
    assert calls[0]["address"] == "127.0.0.1" and calls[0]["port"] == 5006
    assert calls[1]["address"] == "0.0.0.0" and calls[1]["port"] == 8000

"""Hostile names and paths: refused with one line and exit status 2, nothing touched outside the store.

Every case runs in a temporary directory surrounded by sentinel files, with every deletion and rename function
intercepted (tests/fs_guard.py): a target outside the test's directory is refused and fails the test, so a
regression can never delete files on the machine running the suite. After each case every sentinel file and every
byte of the store is compared with its state before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from typer.testing import CliRunner

import dynlearn
import fs_guard
from dynlearn import safety
from dynlearn.api import analyze
from dynlearn.cli import app
from dynlearn.errors import DynlearnError, PathError
from dynlearn.store import ANALYSIS, create_store, open_store, write_group

TINY = """
name = "tiny"
[system]
name = "saddle_node"
[task]
T = 100.0
[train]
epochs = 6
chunk = 3
seeds = 1
[sweep]
lr = [1e-10, 2e-9]
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A small training run with one analyzer group, copied into every test's directory."""
    root = tmp_path_factory.mktemp("template")
    (root / "exp.toml").write_text(TINY)
    exp = dynlearn.load_experiment(root / "exp.toml")
    from dynlearn.api import run_experiment

    run_experiment(exp, root / "run.zarr")
    analyze(root / "run.zarr", "fixed_points")
    return root


@pytest.fixture
def fs_guard_fixture(tmp_path, monkeypatch):
    """Deletions/renames only inside ``tmp_path`` (temporary files too); any other target fails the test."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))
    violations: list[str] = []
    restore = fs_guard.install(tmp_path, violations)
    try:
        yield violations
    finally:
        restore()
    assert not violations, violations


@pytest.fixture
def world(tmp_path, template, monkeypatch):
    """``tmp_path`` laid out as a user's machine: sentinel files all around, a store in ``work/`` (the cwd)."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(template / "run.zarr", work / "run.zarr")
    shutil.copy(template / "exp.toml", work / "exp.toml")
    (tmp_path / "sentinel.txt").write_text("outside the work directory")
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".bashrc").write_text("export PATH")
    (home / ".config" / "settings").write_text("keep me")
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("x = 1\n")
    (work / "notes.txt").write_text("a user's file")
    (work / "page.html").write_text("<html>a page dynlearn did not write</html>")
    zarr.open_group(str(work / "foreign.zarr"), mode="w", zarr_format=3).attrs["owner"] = "someone else"
    zarr.open_group(str(tmp_path / "outside_group"), mode="w", zarr_format=3).attrs["group_role"] = ANALYSIS
    (work / "run.zarr" / "evil").symlink_to(tmp_path / "outside_group", target_is_directory=True)
    (work / "link.zarr").symlink_to(work / "run.zarr", target_is_directory=True)
    (work / "out_link").symlink_to(home, target_is_directory=True)
    monkeypatch.chdir(work)
    return tmp_path


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed, the scratch dir left out) with its content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == "tmp" or rel.startswith("tmp" + os.sep):
            continue
        for f in filenames:
            p = os.path.join(dirpath, f)
            key = os.path.relpath(p, root)
            out[key] = "link" if os.path.islink(p) else hashlib.sha256(Path(p).read_bytes()).hexdigest()
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if os.path.islink(p):
                out[os.path.relpath(p, root)] = "link->" + os.readlink(p)
    return out


def _cli(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=True)


def _assert_refused(res, snapshot_before, root):
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, (res.exit_code, res.output)
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    assert _snapshot(root) == snapshot_before


BAD_GROUPS = ["/", "..", ".", "../x", "a/b", "/etc", "/tmp/x", "~", "~/x", "", " ", "a b", "x\x00y", "a\\b",
              "train", "params", "state", "claims", "_partial_fixed_points", ".hidden", "-", "é", "x" * 200,
              "a..b", "evil", "fixed_points"]


@pytest.mark.parametrize("group", BAD_GROUPS, ids=[repr(g)[:20] for g in BAD_GROUPS])
def test_analyze_refuses_bad_group_names(world, fs_guard_fixture, group):
    before = _snapshot(world)
    res = _cli(["analyze", "run.zarr", "fixed_points", "--group", group, "--no-progress"])
    _assert_refused(res, before, world)


BAD_STORES = ["/", "..", ".", "", "~", "notes.txt", "foreign.zarr", "link.zarr", "out_link", "../home",
              "../src", "missing.zarr"]


@pytest.mark.parametrize("store", BAD_STORES)
def test_analyze_refuses_bad_store_paths(world, fs_guard_fixture, store):
    before = _snapshot(world)
    _assert_refused(_cli(["analyze", store, "fixed_points", "--no-progress"]), before, world)


BAD_OUTS = ["/", "..", ".", "", "~", "~/run.zarr", "notes.txt", "foreign.zarr", "out_link", "../home", "../src",
            "page.html"]


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("out", BAD_OUTS)
def test_run_refuses_bad_out_paths(world, fs_guard_fixture, out, overwrite):
    before = _snapshot(world)
    args = ["run", "exp.toml", "--out", out, "--no-progress"] + (["--overwrite"] if overwrite else [])
    _assert_refused(_cli(args), before, world)


@pytest.mark.parametrize("out", ["/", "..", "../home", "foreign.zarr", "notes.txt"])
def test_reproduce_refuses_bad_out_paths_before_any_work(world, fs_guard_fixture, out):
    before = _snapshot(world)
    _assert_refused(_cli(["reproduce", "ghost", "--quick", "--out", out, "--overwrite", "--no-progress"]),
                    before, world)


@pytest.mark.parametrize("html", ["/", ".", "..", "../home", "page.html", "notes.txt", "out_link", "../sentinel.txt"])
def test_html_targets_that_are_not_pages_are_refused(world, fs_guard_fixture, html):
    before = _snapshot(world)
    _assert_refused(_cli(["browse", "run.zarr", "--html", html]), before, world)
    _assert_refused(_cli(["reproduce", "ghost", "--quick", "--out", "g.zarr", "--html", html, "--no-progress"]),
                    before, world)


def test_browse_never_replaces_the_default_page_silently(world, fs_guard_fixture):
    res = _cli(["browse", "run.zarr"])
    assert res.exit_code == 0, res.output
    page = Path("run.html")
    text = page.read_text()
    assert safety.PAGE_MARKER in text
    before = _snapshot(world)
    _assert_refused(_cli(["browse", "run.zarr"]), before, world)  # exists: needs --overwrite
    assert _cli(["browse", "run.zarr", "--overwrite"]).exit_code == 0
    assert _cli(["browse", "run.zarr", "--html", "run.html"]).exit_code == 0  # explicitly named: replaced


@pytest.mark.parametrize("name", ["../../escape", "/", "a/b", "..", "", "x y", "~"])
def test_experiment_names_that_would_become_paths_are_refused(world, fs_guard_fixture, name):
    Path("bad.toml").write_text(TINY.replace('name = "tiny"', f"name = {name!r}".replace("'", '"')))
    before = _snapshot(world)
    _assert_refused(_cli(["run", "bad.toml", "--no-progress"]), before, world)


@pytest.mark.parametrize("group", ["/", "..", "train", "a/b"])
def test_experiment_analyze_groups_are_checked_when_the_file_is_read(world, fs_guard_fixture, group):
    Path("bad.toml").write_text(TINY + f'\n[[analyze]]\nname = "fixed_points"\ngroup = "{group}"\n')
    before = _snapshot(world)
    _assert_refused(_cli(["run", "bad.toml", "--out", "new.zarr", "--no-progress"]), before, world)
    assert not Path("new.zarr").exists()


def test_existing_analyzer_group_is_replaced_only_with_overwrite_and_atomically(world, fs_guard_fixture):
    store = Path("run.zarr")
    old = open_store(store)["fixed_points"].to_dataset().load()
    # a failure while writing the replacement leaves the old group intact
    import dynlearn.store as st

    def boom(*a, **k):
        raise RuntimeError("disk full")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xr.Dataset, "to_zarr", boom)
        with pytest.raises(RuntimeError):
            write_group(store, "fixed_points", old, role=ANALYSIS, overwrite=True)
    after = open_store(store)["fixed_points"].to_dataset().load()
    xr.testing.assert_identical(old, after)
    assert not any(p.name.startswith("_") for p in store.iterdir())
    res = _cli(["analyze", "run.zarr", "fixed_points", "--overwrite", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "fixed_points" in open_store(store).children
    assert st.RUN_GROUPS >= {"train", "params"}


def test_symlinked_group_pointing_out_of_the_store_is_never_replaced(world, fs_guard_fixture):
    before = _snapshot(world)
    ds = xr.Dataset({"x": ("i", np.arange(3.0))})
    with pytest.raises(PathError):
        write_group("run.zarr", "evil", ds, role=ANALYSIS, overwrite=True)
    with pytest.raises(PathError):
        write_group("run.zarr", "evil", ds, overwrite=True)
    assert _snapshot(world) == before
    assert (world / "outside_group" / "zarr.json").exists()


# -- the Python API -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["/", "..", "../x", "train", "params", "a/b", ""])
def test_api_analyze_refuses_bad_groups_before_any_work(world, fs_guard_fixture, group, monkeypatch):
    from dynlearn import analyzer as an_mod

    monkeypatch.setattr(an_mod.Analyzer, "run", lambda *a, **k: pytest.fail("the analyzer ran"))
    before = _snapshot(world)
    with pytest.raises(PathError):
        analyze("run.zarr", "fixed_points", group=group)
    assert _snapshot(world) == before


@pytest.mark.parametrize("out", ["/", "..", "../home", "../src", "notes.txt", "foreign.zarr", "out_link"])
def test_api_train_refuses_bad_out_paths(world, fs_guard_fixture, out):
    before = _snapshot(world)
    sn = dynlearn.get_system("saddle_node")(task={"T": 100.0})
    with pytest.raises(PathError):
        dynlearn.train(sn, epochs=3, out=out, overwrite=True)
    assert _snapshot(world) == before


def test_create_store_never_empties_a_directory_that_is_not_a_store(world, fs_guard_fixture):
    before = _snapshot(world)
    for target in (world / "home", world / "src", world / "work" / "foreign.zarr", Path("/")):
        with pytest.raises(PathError):
            create_store(target, {}, {"config": {}}, overwrite=True)
    assert _snapshot(world) == before


@pytest.mark.parametrize("target", ["/", "/etc", "..", "../sentinel.txt", "run.zarr/evil", "notes.txt", "link.zarr"])
def test_the_guarded_remove_refuses_everything_outside_a_store(world, fs_guard_fixture, target):
    before = _snapshot(world)
    with pytest.raises(PathError):
        safety.remove(target, store="run.zarr")
    with pytest.raises(PathError):
        safety.remove(target)
    with pytest.raises(PathError):
        safety.rename("run.zarr/train", target, store="run.zarr")
    assert _snapshot(world) == before


def test_the_guarded_remove_deletes_inside_a_store_and_store_roots_only(world, fs_guard_fixture):
    safety.remove("run.zarr/fixed_points", store="run.zarr")
    assert not Path("run.zarr/fixed_points").exists()
    with pytest.raises(PathError):
        safety.remove("run.zarr", store="run.zarr")  # the root is not strictly inside itself
    safety.remove("run.zarr")  # a store root, as for --overwrite
    assert not Path("run.zarr").exists() and Path("notes.txt").exists()


# -- the CLI as a subprocess, under the same guard --------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["analyze", "run.zarr", "fixed_points", "--group", "/"],
    ["analyze", "run.zarr", "fixed_points", "--group", ".."],
    ["analyze", "run.zarr", "fixed_points", "--group", "params"],
    ["run", "exp.toml", "--out", "..", "--overwrite"],
    ["browse", "run.zarr", "--html", "."],
], ids=["root", "dotdot", "params", "out-dotdot", "html-dir"])
def test_cli_subprocess_refuses_cleanly(world, args):
    before = _snapshot(world)
    guard = Path(fs_guard.__file__)
    env = {**os.environ, "TMPDIR": str(world / "tmp")}
    (world / "tmp").mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(guard), str(world), "--", *args, "--no-progress"]
                          if args[0] != "browse" else [sys.executable, str(guard), str(world), "--", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert _snapshot(world) == before


def test_read_only_directory_is_handled_cleanly(world, fs_guard_fixture):
    ro = world / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = _cli(["run", "exp.toml", "--out", str(ro / "r.zarr"), "--no-progress"])
        assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
        if os.geteuid() == 0:  # root writes anyway: the run must then be a complete store
            assert res.exit_code == 0 and safety.is_store(ro / "r.zarr"), res.output
        else:
            assert res.exit_code == 2 and res.stderr.startswith("error: "), res.output
    finally:
        ro.chmod(0o755)


def test_errors_are_dynlearn_errors():
    assert issubclass(PathError, DynlearnError) and issubclass(PathError, ValueError)


DELETERS = {"rmtree", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "move"}
MODULES = {"os", "shutil", "Path", "pathlib"}


def test_every_deletion_and_rename_in_the_package_goes_through_the_guarded_helper():
    """No ``os.*``/``shutil.*`` deletion or rename call, nor a ``.unlink()``/``.rmdir()`` call, outside
    dynlearn/safety.py (the check reads every module of the package, the built-in plugins and the datasets)."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("dynlearn", "plugins", "datasets"):
        for path in (repo / folder).rglob("*.py"):
            if path.name == "safety.py" and path.parent.name == "dynlearn":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                attr, owner = node.func.attr, node.func.value
                module_call = isinstance(owner, ast.Name) and owner.id in MODULES and attr in DELETERS
                path_call = attr in {"unlink", "rmdir"}  # Path methods (rename/replace are xarray/str words too)
                if module_call or path_call:
                    offenders.append(f"{path.relative_to(repo)}:{node.lineno} {attr}")
    assert not offenders, offenders

"""Every documented example runs, in seconds on two cores (issue 11).

The README's and the docs' fenced ``python`` blocks that are not doctests (those run through pytest's
``--doctest-glob``), the README's "Using it" commands with the example experiment of docs/cli.md, and the
plugin tutorial's experiment file with its plugin package installed: each runs in a fresh temporary directory,
in a subprocess, the way a reader would run it. Their run times are listed at the end of the test run (section
"documented examples: run time"); nothing here asserts on them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dynlearn

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def fenced(path: Path, lang: str) -> list[tuple[int, str]]:
    """``(line, body)`` of every fenced block of ``lang`` in ``path``."""
    text = path.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == lang]


def block(path: Path, lang: str, marker: str) -> str:
    """The one ``lang`` block of ``path`` that contains ``marker``."""
    found = [body for _, body in fenced(path, lang) if marker in body]
    assert len(found) == 1, f"{path.name}: {len(found)} {lang} blocks contain {marker!r}"
    return found[0]


PYTHON_BLOCKS = [pytest.param(body, id=f"{p.relative_to(ROOT)}:{line}")
                 for p in DOCS for line, body in fenced(p, "python") if ">>>" not in body]


def commands(body: str) -> list[str]:
    """The commands of a shell block (comments dropped; ``source`` lines are the activation below)."""
    lines = [ln.split("#", 1)[0].strip() for ln in body.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("source ")]


def shell(cmd: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` with the project's virtual environment active (as after ``source .venv/bin/activate``)."""
    venv = Path(sys.prefix)
    if (venv / "bin" / "activate").exists():
        if not (cwd / ".venv").exists():
            (cwd / ".venv").symlink_to(venv)
        script = f"source .venv/bin/activate && {cmd}"
    else:  # not run from a virtual environment: its interpreter's scripts first on PATH
        script = f'export PATH="{Path(sys.executable).parent}:$PATH" && {cmd}'
    start = time.perf_counter()
    res = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return res, time.perf_counter() - start


@pytest.mark.parametrize("code", PYTHON_BLOCKS)
def test_python_block_runs(code, tmp_path, request, record_example_time):
    (tmp_path / "example.py").write_text(code)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    record_example_time(f"{request.node.callspec.id} (python)", time.perf_counter() - start)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.fixture(scope="module")
def using_it(tmp_path_factory):
    """The README's "Using it" commands, in order, in one directory holding docs/cli.md's experiment.toml."""
    tmp = tmp_path_factory.mktemp("using_it")
    (tmp / "experiment.toml").write_text(block(ROOT / "docs" / "cli.md", "toml", "[[analyze]]"))
    body = block(ROOT / "README.md", "bash", "dynlearn list")
    assert "source .venv/bin/activate" in body
    return tmp, [(cmd, *shell(cmd, tmp)) for cmd in commands(body)]


def test_readme_using_it_commands_run(using_it, record_example_time):
    _, runs = using_it
    assert len(runs) >= 8
    for cmd, res, seconds in runs:
        record_example_time(f"README.md 'Using it': {cmd}", seconds)
    for cmd, res, _ in runs:
        assert res.returncode == 0, f"{cmd}\n{res.stderr[-3000:]}"


def test_cli_md_experiment_trains_and_analyses_the_selected_epochs(using_it):
    tmp, runs = using_it
    res = next(r for cmd, r, _ in runs if cmd.startswith("dynlearn run experiment.toml --out run.zarr") and
               "--repair" not in cmd)
    assert res.stdout == ""
    assert re.fullmatch(r"wrote run\.zarr: 5000 epochs in [0-9.]+ s, /fixed_points", res.stderr.splitlines()[-1])
    tree = dynlearn.open_store(tmp / "run.zarr")
    assert tree["fixed_points"]["epoch"].values.tolist() == list(range(0, 5000, 500))
    assert dict(tree["fixed_points"].sizes)["seed"] == 10 and dict(tree["fixed_points"].sizes)["lr"] == 9
    assert tree["bifurcations"]["epoch"].values.tolist() == list(range(0, 5000, 500))


def test_plugin_tutorial_experiment_runs_with_the_installed_plugin(tmp_path, record_example_time):
    """docs/plugins.md section 5: the package's entry points, then relax.toml run by `dynlearn run`."""
    doc = ROOT / "docs" / "plugins.md"
    entry_points = block(doc, "toml", "dynlearn.systems")
    pkg = (ROOT / "tests" / "plugin_pkg" / "pyproject.toml").read_text()
    for name in re.findall(r"^(\w+) = ", entry_points, re.M):
        assert f"\n{name} = " in pkg, f"tests/plugin_pkg declares no {name!r} entry point"
    src = shutil.copytree(ROOT / "tests" / "plugin_pkg", tmp_path / "plugin_pkg",
                          ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(tmp_path / "site"), str(src)], check=True, capture_output=True)
    (tmp_path / "relax.toml").write_text(block(doc, "toml", "[[analyze]]"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    runs = [(cmd, *shell(cmd, tmp_path, env)) for cmd in commands(block(doc, "bash", "relax.toml"))]
    for cmd, res, seconds in runs:
        record_example_time(f"docs/plugins.md: {cmd}", seconds)
        assert res.returncode == 0, f"{cmd}\n{res.stderr[-3000:]}"
    tree = dynlearn.open_store(tmp_path / "relax.zarr")
    k = tree["params"]["k"].isel(epoch=-1).values
    assert np.abs(k - np.log(2)).max() < 1e-6  # every network learned k = ln 2
    fp = tree["fixed_points"]
    assert fp["epoch"].values.tolist() == [0, 100, 200]
    assert (fp["n_fixed"].values == 1).all()  # dx/dt = -k x: the origin, for every network and epoch

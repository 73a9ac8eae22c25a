"""Results on stdout and nothing else; progress bars, logs and warnings on stderr, ending with one line naming what
was written where (issue 11). Progress bars follow one rule in the CLI and the Python API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dynlearn
from dynlearn.cli import app
from dynlearn.progress import Meter, progress_enabled, set_progress

ROOT = Path(__file__).resolve().parents[1]


def dynlearn_command() -> list[str]:
    """The installed ``dynlearn`` script next to this interpreter, else ``python -m dynlearn.cli``."""
    script = Path(sys.executable).with_name("dynlearn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dynlearn.cli"]


@pytest.fixture(scope="module")
def ghost_json(tmp_path_factory):
    """``dynlearn reproduce ghost --quick --format json --html X --out Y`` in a subprocess, progress bars forced on."""
    tmp = tmp_path_factory.mktemp("ghost_json")
    page, store = tmp / "page.html", tmp / "ghost.zarr"
    start = time.perf_counter()
    res = subprocess.run([*dynlearn_command(), "reproduce", "ghost", "--quick", "--format", "json", "--html",
                          str(page), "--out", str(store), "--progress"],
                         capture_output=True, text=True, cwd=tmp, timeout=900)
    return res, page, store, time.perf_counter() - start


def test_reproduce_json_with_a_page_is_valid_json(ghost_json, record_example_time):
    res, page, store, seconds = ghost_json
    assert res.returncode == 0, res.stderr[-3000:]
    claims = json.loads(res.stdout)  # the whole of stdout: nothing but the claims
    assert [c["claim"] for c in claims][:2] == ["alpha_star_bracket", "no_stuck_below_alpha_star"]
    assert all(c["passed"] is True for c in claims)
    assert set(claims[0]) == {"claim", "description", "expected", "measured", "tolerance", "units", "passed"}
    assert page.exists() and (store / "claims").is_dir()
    # the last stderr line says what was written where
    assert res.stderr.rstrip("\n").splitlines()[-1] == \
        f"wrote {store} and the page {page}: {len(claims)}/{len(claims)} claims reproduced"
    record_example_time("dynlearn reproduce ghost --quick --format json --html page.html (stdout parsed: "
                        f"{len(claims)} claims, all passed)", seconds)


def test_whatever_a_command_prints_goes_to_stderr(ghost_json, monkeypatch):
    """A page writer or library that prints on stdout (as panel's embed progress bar did) reaches stderr only."""
    _, _, store, _ = ghost_json
    from tqdm import tqdm

    from dynlearn import views

    def noisy_write_html(path, out, **kw):
        print("a library's note on stdout")
        for _ in tqdm(range(3), file=sys.stdout, desc="embedding"):
            pass
        Path(out).write_text("<html></html>")

    monkeypatch.setattr(views, "write_html", noisy_write_html)
    page = store.parent / "noisy.html"
    res = CliRunner().invoke(app, ["reproduce", "ghost", "--quick", "--format", "json", "--html", str(page),
                                   "--out", str(store), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) >= 10
    assert "a library's note on stdout" in res.stderr and "embedding" in res.stderr


@pytest.mark.parametrize("args", [["list", "--format", "json"], ["list", "--kind", "reproductions", "--format", "json"]])
def test_list_json_is_valid(args):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0
    assert json.loads(res.stdout)


def test_run_progress_and_last_line_on_stderr(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text('name = "tiny"\n[system]\nname = "saddle_node"\n[train]\nepochs = 200\nseeds = 2\nchunk = 100\n'
                   '[sweep]\nlr = [1e-10]\n')
    res = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path / "run.zarr"), "--progress"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert "train tiny" in res.stderr  # the bar, forced on although stderr is not a terminal
    assert res.stderr.rstrip("\n").splitlines()[-1].startswith(f"wrote {tmp_path / 'run.zarr'}: 200 epochs in ")


# -- one progress rule for the API and the CLI ----------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def default_rule(monkeypatch):
    """Progress at its default rule: no session setting, no environment variable."""
    set_progress(None)
    monkeypatch.delenv("DYNLEARN_PROGRESS", raising=False)
    yield
    set_progress(False)


def test_progress_default_follows_stderr(default_rule, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_enabled() is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled() is False


def test_progress_flags_win_in_order(default_rule, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setenv("DYNLEARN_PROGRESS", "0")
    assert progress_enabled() is False
    monkeypatch.setenv("DYNLEARN_PROGRESS", "1")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled() is True
    dynlearn.set_progress(False)
    assert progress_enabled() is False
    assert progress_enabled(True) is True  # a call's own show_progress


def test_python_api_shows_the_cli_bars_on_a_terminal(default_rule, monkeypatch, tmp_path):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    sn = dynlearn.get_system("saddle_node")()
    dynlearn.train(sn, epochs=100, seeds=1, sweep={"lr": [1e-10]}, chunk=50)
    assert "train train" in term.getvalue()
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    dynlearn.train(sn, epochs=100, seeds=1, sweep={"lr": [1e-10]}, chunk=50, show_progress=False)
    dynlearn.set_progress(False)
    dynlearn.train(sn, epochs=100, seeds=1, sweep={"lr": [1e-10]}, chunk=50)
    assert quiet.getvalue() == ""


def test_meter_writes_to_stderr_only(default_rule, capsys):
    with Meter(3, "counting", show=True) as m:
        m.update(3)
    out, err = capsys.readouterr()
    assert out == "" and "counting" in err


def test_subprocess_default_has_no_bars_when_stderr_is_a_pipe(tmp_path):
    code = ("import dynlearn; sn = dynlearn.get_system('saddle_node')(); "
            "dynlearn.train(sn, epochs=100, seeds=1, sweep={'lr': [1e-10]}, chunk=50)")
    env = {k: v for k, v in os.environ.items() if k != "DYNLEARN_PROGRESS"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "train train" not in res.stderr

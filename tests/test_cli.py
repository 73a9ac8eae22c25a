"""CLI: reproduce, show, browse (standalone page, no network), analyze errors."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from dynlearn.cli import app


@pytest.fixture(scope="module")
def ghost_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ghost") / "ghost.zarr"
    res = CliRunner().invoke(app, ["reproduce", "ghost", "--quick", "--out", str(path), "--no-progress"])
    assert res.exit_code == 0, res.output
    return path, res.stdout


def test_reproduce_ghost_quick_all_claims_pass(ghost_store):
    _, out = ghost_store
    lines = [ln for ln in out.splitlines()[1:] if ln.strip()]
    assert len(lines) >= 10 and all(ln.startswith("PASS") for ln in lines), out
    assert any("alpha_star_bracket" in ln for ln in lines)


def test_reproduce_json_format(ghost_store):
    path, _ = ghost_store
    res = CliRunner().invoke(app, ["reproduce", "ghost", "--quick", "--out", str(path), "--no-progress",
                                   "--format", "json"])
    claims = json.loads(res.stdout)
    byname = {c["claim"]: c for c in claims}
    assert byname["alpha_star_bracket"]["passed"] is True
    assert abs(byname["alpha_star_bracket"]["expected"] - 9.1321e-10) < 1e-13


def test_show_text_and_json(ghost_store):
    path, _ = ghost_store
    res = CliRunner().invoke(app, ["show", str(path)])
    assert res.exit_code == 0
    assert "4000/4000 epochs committed, complete" in res.stdout
    assert "/landscape" in res.stdout and "claims: 11/11 reproduced" in res.stdout
    info = json.loads(CliRunner().invoke(app, ["show", str(path), "--format", "json"]).stdout)
    assert info["training"]["outcomes"] == {"ok": 28}
    assert info["groups"]["train"]["dims"]["lr"] == 7


def test_browse_writes_a_standalone_page(ghost_store, tmp_path):
    path, _ = ghost_store
    html = tmp_path / "page.html"
    res = CliRunner().invoke(app, ["browse", str(path), "--html", str(html)])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    # every script and stylesheet is inlined: nothing to fetch from a network
    assert not re.search(r"<script[^>]+src=[\"']https?://", text)
    assert not re.search(r"<link[^>]+href=[\"']https?://", text)
    for title in ("claims", "loss landscape", "final loss vs learning rate", "train: loss"):
        assert title in text, title


@pytest.mark.parametrize("args,pattern", [
    (["show", "nowhere.zarr"], r"error: no result store at nowhere.zarr"),
    (["reproduce", "nope"], r"error: unknown reproduction 'nope'; available: .*ghost.*"),
    (["analyze", "nowhere.zarr", "fixed_points"], r"error: no result store at nowhere.zarr"),
], ids=["show_missing", "unknown_reproduction", "analyze_missing"])
def test_errors_are_one_line(args, pattern):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert re.fullmatch(pattern + r"\n", res.stderr), res.stderr

"""dynlearn.Recorder and load_checkpoints: a user's own torch loop recorded into a crash-safe, resumable store that
every analyzer, ``show``, ``verify``, ``analyze`` and ``browse`` read as a training run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from typer.testing import CliRunner

import dynlearn
from dynlearn import store as store_mod
from dynlearn.cli import app
from dynlearn.errors import ParameterError, ShapeError, StoreError
from dynlearn.integrity import verify

HIDDEN, STEPS, EVERY = 4, 24, 8
#: cheap fixed-point settings (a 4-unit GRU has few fixed points; the analyzer's own tests check its accuracy)
FP = {"n_starts": 8, "max_iter": 60, "passage_steps": 50, "landscape": False, "show_progress": False}


def _task(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, 1, generator=g)
    return x, x.cumsum(1).tanh()


def _loss(cell: torch.nn.GRUCell, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    h, total = torch.zeros(x.shape[0], cell.hidden_size), 0.0
    for t in range(x.shape[1]):
        h = cell(x[:, t], h)
        total = total + (h[:, 0] - y[:, t, 0]).pow(2).mean()
    return total


def _train(path, *, seed: int = 0, steps=range(STEPS), cell=None, **options):
    """A plain torch loop with one line added; returns the cell and what the loop saw (weights, losses, grads)."""
    torch.manual_seed(seed)
    cell = cell or torch.nn.GRUCell(1, HIDDEN)
    x, y = _task(seed)
    seen = {"weights": {}, "loss": {}, "grad_norm": {}}
    with dynlearn.Recorder(path, cell, **{"every": EVERY, **options}) as rec:
        for step in steps:
            loss = _loss(cell, x, y)
            cell.zero_grad()
            loss.backward()
            seen["grad_norm"][step] = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in cell.parameters()))
            with torch.no_grad():  # SGD (torch.optim's first import alone takes seconds)
                for p in cell.parameters():
                    p -= 0.2 * p.grad
            seen["weights"][step] = {k: v.clone() for k, v in cell.state_dict().items()}  # what log records
            seen["loss"][step] = float(loss.detach())
            rec.log(step, cell, loss=loss, lr=0.2)
    return cell, seen


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "run.zarr"
    cell, seen = _train(path)
    return path, cell, seen


def test_the_store_holds_every_step_labeled(run):
    path, cell, seen = run
    tree = dynlearn.open_store(path)
    train, params = tree["train"].to_dataset(), tree["params"].to_dataset()
    assert train["epoch"].values.tolist() == list(range(STEPS))
    assert params["epoch"].values.tolist() == list(range(0, STEPS, EVERY))
    np.testing.assert_array_equal(train["loss"].values, [seen["loss"][s] for s in range(STEPS)])
    np.testing.assert_allclose(train["grad_norm"].values, [seen["grad_norm"][s] for s in range(STEPS)], rtol=1e-12)
    np.testing.assert_array_equal(train["lr"].values, 0.2)
    for s in params["epoch"].values:  # the weights the loop had when it logged, bit for bit, in its dtype
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            got = params[name].sel(epoch=s).values
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, seen["weights"][int(s)][name].numpy())
    assert params["weight_hh"].dims == ("epoch", "weight_hh_dim0", "weight_hh_dim1")
    for ds in (train, params):
        for name, var in ds.variables.items():
            if name != "epoch" and "epoch" not in var.dims:
                continue  # the weights' own dims carry no coordinate
            assert var.attrs.get("long_name"), name
            assert "units" in var.attrs or name in params.data_vars, name
    attrs = dynlearn.store.root_attrs(path)
    assert attrs["layout"] == "recorder" and attrs["config"]["system"]["module"] == "torch.nn.modules.rnn:GRUCell"
    assert not set(attrs["config"]["system"]) & {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}  # in /params only
    assert attrs["config_hash"] == dynlearn.provenance.config_hash(attrs["config"])
    plain = xr.open_datatree(path, engine="zarr")  # xarray alone reads the committed steps too
    assert plain["train"].sizes["epoch"] == STEPS


def test_every_analyzer_runs_on_it_as_on_a_training_run(run, tmp_path):
    path, cell, _ = run
    fps = dynlearn.get_analyzer("fixed_points")
    direct = fps(**{k: v for k, v in FP.items() if k != "show_progress"}).run(path, epochs="last", show_progress=False)
    assert direct["epoch"].values.tolist() == [16]
    # the dynamics studied: the GRU cell itself with the weights stored at step 16 (input 0), h -> cell(0, h)
    stored = torch.nn.GRUCell(1, HIDDEN).double()
    weights = dynlearn.open_store(path)["params"].to_dataset().sel(epoch=16)
    stored.load_state_dict({k: torch.as_tensor(weights[k].values).double() for k in stored.state_dict()})
    present = direct["present"].values[0]
    assert present.any()
    h = torch.as_tensor(direct["position"].values[0][present])
    speed = (stored(torch.zeros(len(h), 1, dtype=torch.float64), h) - h).norm(dim=1).detach().numpy()
    np.testing.assert_allclose(speed, direct["speed"].values[0][present], atol=1e-12)
    copy = path  # the analyzer groups written next to the recorded run
    res = CliRunner().invoke(app, ["analyze", str(copy), "fixed_points", "--no-progress"] +
                             [a for k, v in FP.items() if k != "show_progress" for a in ("--set", f"{k}={json.dumps(v)}")])
    assert res.exit_code == 0, res.output
    bif = dynlearn.analyze(copy, "bifurcations", show_progress=False)  # tracks /fixed_points along the steps
    assert bif.attrs["tracked_dim"] == "epoch" and bif["track"]["epoch"].values.tolist() == [0, 8, 16]
    tree = dynlearn.open_store(copy)
    assert {"fixed_points", "bifurcations"} <= set(tree.children)
    assert tree["fixed_points"]["epoch"].values.tolist() == [0, 8, 16]
    assert tree["fixed_points"].attrs["warm_start"] == "epoch"  # each step starts from the one before
    show = CliRunner().invoke(app, ["show", str(copy)])
    assert show.exit_code == 0 and "recorded (dynlearn.Recorder): 24 steps (steps 0 .. 23)" in show.stdout
    ver = CliRunner().invoke(app, ["verify", str(copy)])
    assert ver.exit_code == 0 and ": ok (" in ver.stdout
    html = tmp_path / "page.html"
    page = CliRunner().invoke(app, ["browse", str(copy), "--html", str(html)])
    assert page.exit_code == 0, page.output
    text = html.read_text()
    assert "training loss" in text and "fixed_points" in text


def test_reopening_continues_after_the_last_committed_step(tmp_path):
    path = tmp_path / "run.zarr"
    cell, first = _train(path, steps=range(10))
    with dynlearn.Recorder(path, cell, every=EVERY) as rec:
        assert rec.last_step == 9
        restart = rec.state_dict()  # the weights stored last: step 8
        torch.testing.assert_close(restart["weight_hh"], first["weights"][8]["weight_hh"], rtol=0, atol=0)
        with pytest.raises(ParameterError, match=r"step 9 is not after the last step logged \(9\)"):
            rec.log(9, cell, loss=0.0)
        rec.log(10, cell, loss=1.5, val=3.0)  # a new metric: NaN at the earlier steps
    tree = dynlearn.open_store(path)
    assert tree["train"]["epoch"].values.tolist() == list(range(11))
    assert tree["train"]["loss"].values[-1] == 1.5
    assert np.isnan(tree["train"]["val"].values[:10]).all() and tree["train"]["val"].values[10] == 3.0
    assert tree["train"]["val"].attrs["long_name"] == "val"
    assert tree["params"]["epoch"].values.tolist() == [0, 8]  # 10 - 8 < every
    assert verify(path).ok


def test_another_model_is_refused_and_overwrite_replaces(tmp_path):
    path = tmp_path / "run.zarr"
    _train(path, steps=range(3))
    other = torch.nn.GRUCell(1, HIDDEN + 1)
    with pytest.raises(StoreError, match="records another model") as err:
        dynlearn.Recorder(path, other)
    assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="exists; pass overwrite=True"):
        dynlearn.Recorder(path, torch.nn.GRUCell(1, HIDDEN), resume=False)
    with dynlearn.Recorder(path, other, overwrite=True) as rec:
        rec.log(5, other, loss=1.0)
    tree = dynlearn.open_store(path)
    assert tree["params"]["weight_hh"].shape == (1, 15, 5) and tree["train"]["epoch"].values.tolist() == [5]
    run_store = tmp_path / "trained.zarr"
    dynlearn.train(dynlearn.get_system("saddle_node")(), epochs=4, chunk=2, out=run_store, show_progress=False)
    with pytest.raises(StoreError, match="not a Recorder's store"):
        dynlearn.Recorder(run_store, other)


@pytest.mark.parametrize("bad, error, match", [
    (lambda rec, cell: rec.log(0.5, cell), ParameterError, "step must be an integer"),
    (lambda rec, cell: rec.log(0, {**cell.state_dict(), "weight_hh": torch.zeros(3, 3)}), ShapeError,
     r"'weight_hh' has shape \(3, 3\), it had \(12, 4\)"),
    (lambda rec, cell: rec.log(0, {"weight_ih": torch.zeros(12, 1)}), ShapeError, "no tensor 'weight_hh'"),
    (lambda rec, cell: rec.log(0, torch.nn.RNNCell(1, HIDDEN)), ParameterError, "model is a RNNCell"),
    (lambda rec, cell: rec.log(0, cell, loss="high"), ParameterError, "loss must be a number"),
    (lambda rec, cell: rec.log(0, cell, loss=[1.0, 2.0]), ShapeError, "loss must be one number"),
    (lambda rec, cell: rec.log(0, cell, **{"bad name": 1.0}), Exception, "metric name 'bad name' is not allowed"),
])
def test_bad_input_is_one_line(tmp_path, bad, error, match):
    cell = torch.nn.GRUCell(1, HIDDEN)
    with dynlearn.Recorder(tmp_path / "run.zarr", cell) as rec:
        with pytest.raises(error, match=match) as err:
            bad(rec, cell)
        assert "\n" not in str(err.value)


def test_a_non_module_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="records a torch nn.Module .* got function"):
        dynlearn.Recorder(tmp_path / "run.zarr", lambda h: h)
    assert not (tmp_path / "run.zarr").exists()


def test_several_models_side_by_side_have_a_seed_dim(tmp_path):
    cells = [torch.nn.GRUCell(1, 3) for _ in range(2)]
    with dynlearn.Recorder(tmp_path / "seeds.zarr", cells, seeds=[7, 9]) as rec:
        for step in range(2):
            rec.log(step, cells, loss=torch.tensor([1.0, 2.0]) * step)
    tree = dynlearn.open_store(tmp_path / "seeds.zarr")
    assert tree["params"]["weight_hh"].dims == ("epoch", "seed", "weight_hh_dim0", "weight_hh_dim1")
    assert tree["train"]["seed"].values.tolist() == [7, 9]
    np.testing.assert_array_equal(tree["params"]["bias_hh"].values[1, 1], cells[1].bias_hh.detach().numpy())
    np.testing.assert_array_equal(tree["train"]["loss"].values, [[0, 0], [1, 2]])


def test_load_checkpoints_from_files_and_state_dicts(tmp_path):
    cells = [torch.nn.GRUCell(1, HIDDEN) for _ in range(3)]
    files = []
    for i, c in enumerate(cells[:2]):
        files.append(tmp_path / f"ckpt{i}.pt")
        torch.save(c.state_dict(), files[-1])
    tree = dynlearn.load_checkpoints([*files, cells[2].state_dict()], cells[0], tmp_path / "ck.zarr",
                                     steps=[100, 200, 300], loss=[3.0, 2.0, 1.0])
    assert tree["params"]["epoch"].values.tolist() == [100, 200, 300]
    for i, c in enumerate(cells):
        np.testing.assert_array_equal(tree["params"]["weight_ih"].values[i], c.weight_ih.detach().numpy())
    assert tree["train"]["loss"].values.tolist() == [3.0, 2.0, 1.0]
    assert np.isnan(tree["train"]["grad_norm"].values).all()
    fp = dynlearn.analyze(tmp_path / "ck.zarr", "fixed_points", epochs=[300], **FP)
    assert fp["epoch"].values.tolist() == [300]
    torch.save(cells[0], tmp_path / "module.pt")  # a pickled module, not a state_dict
    with pytest.raises(ParameterError, match="not a state_dict torch.load"):
        dynlearn.load_checkpoints([tmp_path / "module.pt"], cells[0], tmp_path / "bad.zarr")


def test_a_commit_killed_midway_leaves_the_committed_steps(tmp_path, monkeypatch):
    """Rows and lengths written, the commit record not: readers, verify and the next writer see the last commit."""
    path = tmp_path / "run.zarr"
    cell = torch.nn.GRUCell(1, HIDDEN)
    rec = dynlearn.Recorder(path, cell, commit_seconds=0)
    for step in range(3):
        rec.log(step, cell, loss=float(step))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(dynlearn.recorder, "commit_lengths", killed)
    with pytest.raises(KeyboardInterrupt):
        rec.log(3, cell, loss=3.0, extra=1.0)  # grows every array and adds /train/extra, then dies
    rec._closed = True
    rec._stack.close()  # what the kernel does for a dead process
    monkeypatch.undo()
    assert json.loads((path / "train" / "loss" / "zarr.json").read_text())["shape"] == [4]
    assert (path / "train" / "extra").exists()
    assert verify(path).ok
    tree = dynlearn.open_store(path)
    assert tree["train"]["epoch"].values.tolist() == [0, 1, 2] and "extra" not in tree["train"]
    with dynlearn.Recorder(path, cell) as again:  # restores the committed lengths, drops the half-made array
        assert again.last_step == 2
        assert json.loads((path / "train" / "loss" / "zarr.json").read_text())["shape"] == [3]
        assert not (path / "train" / "extra").exists()
        again.log(3, cell, loss=30.0)
    assert dynlearn.open_store(path)["train"]["loss"].values.tolist() == [0.0, 1.0, 2.0, 30.0]
    assert verify(path).ok


def test_an_analyzer_write_after_a_killed_commit_keeps_the_committed_steps(tmp_path, monkeypatch):
    path = tmp_path / "run.zarr"
    cell = torch.nn.GRUCell(1, HIDDEN)
    rec = dynlearn.Recorder(path, cell, commit_seconds=0)
    rec.log(0, cell, loss=0.0)
    monkeypatch.setattr(dynlearn.recorder, "commit_lengths", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        rec.log(1, cell, loss=1.0)
    rec._closed = True
    rec._stack.close()
    store_mod.write_group(path, "notes", xr.Dataset({"a": ("i", np.arange(2.0), {"long_name": "a"})}),
                          role=store_mod.ANALYSIS)
    tree = dynlearn.open_store(path)
    assert tree["train"]["epoch"].values.tolist() == [0] and "notes" in tree.children
    assert verify(path).ok
    assert zarr.open_array(store=str(path), path="params/weight_hh", mode="r").shape[0] == 1


CHILD = """
import sys, torch, dynlearn
torch.manual_seed(0)
cell = torch.nn.GRUCell(1, 4)
rec = dynlearn.Recorder(sys.argv[1], cell, every=3, commit_seconds=0)
for step in range(100000):
    loss = cell(torch.ones(2, 1), torch.zeros(2, 4)).pow(2).sum()
    cell.zero_grad()
    loss.backward()
    with torch.no_grad():  # plain SGD (torch.optim's first import takes seconds)
        for p in cell.parameters():
            p -= 0.1 * p.grad
    rec.log(step, cell, loss=loss)
    print(step, flush=True)  # committed: commit_seconds=0 commits inside log
"""


def test_a_process_killed_mid_logging_leaves_a_store_that_opens_verifies_and_resumes(tmp_path):
    path = tmp_path / "run.zarr"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env)
    printed = []
    for line in child.stdout:
        printed.append(int(line))
        if len(printed) >= 12:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert verify(path).ok
    steps = dynlearn.open_store(path)["train"]["epoch"].values.tolist()
    assert steps[:len(printed)] == printed and steps == list(range(len(steps)))  # every committed step, in order
    res = CliRunner().invoke(app, ["verify", str(path)])
    assert res.exit_code == 0, res.output
    with dynlearn.Recorder(path, torch.nn.GRUCell(1, 4), every=3) as rec:  # continues after the last commit
        assert rec.last_step == steps[-1]
        rec.log(rec.last_step + 1, loss=0.0)
    assert dynlearn.open_store(path)["train"]["epoch"].values.tolist() == list(range(len(steps) + 1))


def test_a_damaged_committed_chunk_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "run.zarr"
    cell = torch.nn.GRUCell(1, HIDDEN)
    with dynlearn.Recorder(path, cell) as rec:
        rec.log(0, cell, loss=1.0)
    chunk = path / "params" / "weight_hh" / "c" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\x00")
    report = verify(path)
    assert [d.path for d in report.damage] == ["params/weight_hh/c/0/0/0"]
    assert "written by your own training loop" in report.text()
    with pytest.raises(StoreError, match=r"params/weight_hh/c/0/0/0: checksum mismatch"):
        dynlearn.open_store(path)

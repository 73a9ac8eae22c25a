"""The fixed-point analyzer's batched root finder (fixed_points.solver.solve) on small full-rank RNN maps.

Checked against a per-state ``scipy.optimize.root`` loop: every root scipy finds is among the batched finder's,
whose residuals are below 1e-10; merging states into known roots (chord iteration with stored inverse
Jacobians, both the per-root and the gathered product) finds the same roots as running every state to the end,
with fewer LU factorisations; closed-form Jacobian-vector products (``System.jvp``/``vjp``) give the same roots
while forming Jacobians only for the Newton steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import torch

from dynlearn.params import Param
from dynlearn.system import MapSystem
from dynlearn_builtins.analyzers.fixed_points import solver as _fp_solver

D = 8
DELTA = 0.5
N_STARTS = 320  # per parameter set: 640 states, more than two first batches, so merging runs


class SmallRNN(MapSystem):
    """``x -> (1 - D) x + D tanh(W x + b)`` on ``R^8`` (Jacobian by the core's autograd)."""

    name = "small_rnn_fp_test"
    description = "small full-rank RNN map (test)"
    state_names = tuple(f"x_{i}" for i in range(D))
    parameters = {"W": Param(0.0, shape=("neuron", "neuron"), description="recurrent weights"),
                  "b": Param(0.0, shape=("neuron",), description="biases")}
    domain_bounds = ([-1.0] * D, [1.0] * D)

    def dim_sizes(self):
        return {"neuron": D}

    def rhs(self, x, p):
        return (1 - DELTA) * x + DELTA * torch.tanh(torch.einsum("...ij,...j->...i", p["W"], x) + p["b"])


class FastSmallRNN(SmallRNN):
    """The same map with closed-form products ``J v`` and ``v^T J`` (``J = (1 - D) I + D diag(1 - h^2) W``)."""

    name = "small_rnn_fast_fp_test"

    def _slope(self, x, p):
        h = torch.tanh(torch.einsum("...ij,...j->...i", p["W"], x) + p["b"])
        return 1 - h * h

    def jvp(self, x, p, v):
        return (1 - DELTA) * v + DELTA * self._slope(x, p) * torch.einsum("...ij,...j->...i", p["W"], v)

    def vjp(self, x, p, v):
        return (1 - DELTA) * v + DELTA * torch.einsum("...ij,...i->...j", p["W"], self._slope(x, p) * v)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((2, D, D)) * 2.0 / np.sqrt(D)
    b = rng.standard_normal((2, D)) * 0.1
    starts = rng.uniform(-1, 1, (2, N_STARTS, D))
    return W, b, starts


def run(problem, monkeypatch, *, merge: bool, groups: int = 64, system=None, jacobians: list | None = None):
    """Solve from every start; returns the solution, the owners and the number of LU factorisations (the rows of
    the Jacobians formed are appended to ``jacobians``)."""
    W, b, starts = problem
    system = system or SmallRNN()
    if jacobians is not None:
        jac = system.jacobian
        monkeypatch.setattr(system, "jacobian", lambda x, p: (jacobians.append(x.shape[0]), jac(x, p))[1])
    monkeypatch.setattr(_fp_solver, "GROUPS", groups)
    factorised = []
    lu = _fp_solver._lu_transposed

    def counting_lu(J, rows, is_map):
        factorised.append(rows.numel())
        return lu(J, rows, is_map)

    monkeypatch.setattr(_fp_solver, "_lu_transposed", counting_lu)
    p = {"W": torch.as_tensor(W), "b": torch.as_tensor(b)}
    owner = torch.arange(2).repeat_interleave(N_STARTS)
    sol = _fp_solver.solve(system, torch.as_tensor(starts).reshape(-1, D), p, owner,
                           center=torch.zeros(D, dtype=torch.float64), half_width=torch.ones(D, dtype=torch.float64),
                           radius0=0.5, merge=merge, chunk=16)
    return sol, owner, sum(factorised)


def distinct_roots(sol, owner, k: int) -> np.ndarray:
    sel = (sol.status == _fp_solver.ROOT) & (owner == k)
    out: list[np.ndarray] = []
    for x in sol.x[sel].numpy():
        if not any(np.linalg.norm(x - y) < 1e-7 for y in out):
            out.append(x)
    return np.array(out).reshape(-1, D)


def residual(W, b, x):
    return DELTA * (np.tanh(x @ W.T + b) - x)


@pytest.fixture(scope="module")
def unmerged(problem):
    with pytest.MonkeyPatch.context() as mp:
        return run(problem, mp, merge=False)


@pytest.mark.parametrize("groups", [64, 0], ids=["per-root-products", "gathered-inverses"])
@pytest.mark.parametrize("k", [0, 1], ids=["params0", "params1"])
def test_merging_finds_the_same_roots(problem, unmerged, monkeypatch, groups, k):
    W, b, _ = problem
    sol, owner, n_lu = run(problem, monkeypatch, merge=True, groups=groups)
    ref, ref_owner, ref_lu = unmerged
    ours, theirs = distinct_roots(sol, owner, k), distinct_roots(ref, ref_owner, k)
    assert len(ours) == len(theirs) >= 1
    assert all(np.min(np.linalg.norm(ours - r, axis=1)) < 1e-9 for r in theirs)
    roots = (sol.status == _fp_solver.ROOT) & (owner == k)
    assert np.abs(residual(W[k], b[k], sol.x[roots].numpy())).max() < 1e-10
    assert n_lu < ref_lu


@pytest.mark.parametrize("k", [0, 1], ids=["params0", "params1"])
def test_every_scipy_root_is_found(problem, monkeypatch, k):
    W, b, starts = problem
    sol, owner, _ = run(problem, monkeypatch, merge=True)
    ours = distinct_roots(sol, owner, k)
    assert np.abs(residual(W[k], b[k], ours)).max() < 1e-10

    def jac(x):
        h = np.tanh(W[k] @ x + b[k])
        return DELTA * ((1 - h * h)[:, None] * W[k] - np.eye(D))

    found = 0
    for x0 in starts[k][:64]:
        r = so.root(lambda x: residual(W[k], b[k], x), x0, jac=jac, method="hybr")
        if r.success and np.abs(residual(W[k], b[k], r.x)).max() < 1e-9:
            found += 1
            assert np.min(np.linalg.norm(ours - r.x, axis=1)) < 1e-7
    assert found >= 1


def test_closed_form_products_find_the_same_roots(problem, monkeypatch):
    """With ``jvp``/``vjp`` the dogleg's ``J^T g`` and ``J J^T g`` skip the Jacobians: same roots, fewer Jacobians."""
    W, b, _ = problem
    rows_jac, rows_fast = [], []
    ref, owner, _ = run(problem, monkeypatch, merge=True, jacobians=rows_jac)
    sol, _, _ = run(problem, monkeypatch, merge=True, system=FastSmallRNN(), jacobians=rows_fast)
    for k in (0, 1):
        ours, theirs = distinct_roots(sol, owner, k), distinct_roots(ref, owner, k)
        assert len(ours) == len(theirs) >= 1
        assert all(np.min(np.linalg.norm(ours - r, axis=1)) < 1e-9 for r in theirs)
        assert np.abs(residual(W[k], b[k], ours)).max() < 1e-10
    assert (sol.status == ref.status).float().mean() > 0.95
    assert 0 < sum(rows_fast) < sum(rows_jac)

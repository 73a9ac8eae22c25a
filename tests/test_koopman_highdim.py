"""koopman_separatrix on a full 100-neuron RNN (the ``rnn`` map on R^100) with an exact hyperplane separatrix.

``W = m n^T``, ``b = 0``, ``n = 2 m / |m|^2``: the latent ``kappa = n^T x`` obeys the odd 1-D map
``kappa -> (1 - D) kappa + D n^T tanh(m kappa)`` exactly, with slope 1.5 at 0, so the separatrix is the hyperplane
``n^T x = 0`` and the smallest perturbation from an attractor ``tanh(+-m kappa*)`` across it has norm
``kappa* / |n|``. The analyzer is told none of this.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynlearn.testing import check_system
from dynlearn_builtins.analyzers.koopman import KoopmanSeparatrix
from dynlearn_builtins.reproductions.koopman import FULL, hyperplane_distance, rank_one_fixed_point, rank_one_rnn

NUMERICS = pytest.mark.numerics   # simulated labels next to the separatrix

N = 100
SIDE = 2.0                   # the rnn's sampling box is [-1, 1]^N
BOUND = 0.01 * SIDE          # 1% of the domain size


def exact_rnn(rnn) -> dict:
    """``m``, ``n``, ``kappa*`` and the exact distance ``kappa* / |n|`` of an attractor to ``n^T x = 0``."""
    p = rnn.param_tensors()
    m, n = p["m"][:, 0], p["n"][0]
    k = rank_one_fixed_point(rnn)
    return dict(m=m, n=n, kappa=k, distance=k / float(n.norm()))


@pytest.fixture(scope="module")
def rnn():
    return rank_one_rnn(N)


@pytest.fixture(scope="module")
def exact(rnn):
    return exact_rnn(rnn)


# -- the construction (exact facts, float64) ---------------------------------------------------------------------------
def test_rnn_system_conforms(rnn):
    check_system(rnn)


def test_latent_is_an_exact_autonomous_map(rnn, exact):
    x = 2 * torch.rand(64, N, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1
    p = rnn.param_tensors()
    kappa = x @ exact["n"]
    d = rnn.delta
    latent_next = (1 - d) * kappa + d * (torch.tanh(kappa.unsqueeze(-1) * exact["m"]) @ exact["n"])
    torch.testing.assert_close(rnn.rhs(x, p) @ exact["n"], latent_next, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(rnn.rhs(-x, p), -rnn.rhs(x, p), rtol=0, atol=0)    # odd: n^T x = 0 is invariant


def test_attractors_and_the_hyperplane_separatrix_by_simulation(rnn, exact):
    # states at n^T x = +-eps (eps = 1e-3 |n| ... projected from random states) end at tanh(+-m kappa*)
    g = torch.Generator().manual_seed(2)
    n = exact["n"]
    x = 2 * torch.rand(32, N, generator=g, dtype=torch.float64) - 1
    x = x - ((x @ n) / (n @ n)).unsqueeze(-1) * n                                  # onto the hyperplane
    side = torch.where(torch.arange(32) % 2 == 0, 1.0, -1.0).to(torch.float64)
    x = x + (1e-3 * side).unsqueeze(-1) * n / n.norm()
    p = rnn.param_tensors()
    for _ in range(200):
        x = rnn.rhs(x, p)
    target = torch.tanh(side.unsqueeze(-1) * exact["kappa"] * exact["m"])
    torch.testing.assert_close(x, target, rtol=0, atol=1e-10)


# -- the analyzer, not told the answer --------------------------------------------------------------------------------
# quick size: the reproduction's group /rnn_100 (tests/test_koopman.py::test_rnn_100_zero_set_perturbations_attractors,
# so the default suite trains it once); full size here
def check_rnn_result(result, exact) -> None:
    """Zero set within 1% of the box side of ``n^T x = 0``; perturbations from the attractors ``tanh(+-m kappa*)``
    within 5% of ``kappa* / |n|`` and crossing in simulation; attractors at ``n^T x = +-kappa*``."""
    pts = result.separatrix.values
    pts = pts[np.isfinite(pts).all(-1)]
    assert len(pts) == result.sizes["point"]
    err = hyperplane_distance(pts, exact["n"].numpy())
    assert err.max() <= BOUND, (err.max(), np.median(err))
    np.testing.assert_allclose(result.perturbation_norm.values, exact["distance"], rtol=0.05)
    assert result.crossed.values.all() and result.stays.values.all()
    a = result.attractor.values @ exact["n"].numpy()
    np.testing.assert_allclose(np.sort(a), [-exact["kappa"], exact["kappa"]], rtol=1e-6)


@pytest.mark.slow
def test_full_size(rnn, exact):
    check_rnn_result(KoopmanSeparatrix(**FULL["rnn_100"]).run(rnn, None, show_progress=False), exact)


# -- boundary sampling: states next to the separatrix, labelled by simulation ------------------------------------------
@NUMERICS
@pytest.mark.parametrize("trajectory_labels", [False, True], ids=["states", "with-trajectories"])
def test_boundary_samples_bracket_the_separatrix_with_exact_labels(trajectory_labels):
    # bistable a = 0: basin of x is sign(x) exactly; the bracket ends lie within 2^-12 of a curve's length of x = 0
    import dynlearn
    from dynlearn_builtins.analyzers.koopman.adapt import boundary_samples
    from dynlearn_builtins.analyzers._shared.attractors import attractor_classes, settle
    from dynlearn_builtins.analyzers.koopman.fit import _validation_curves, classifier

    sys = dynlearn.registry.get("systems", "bistable")()
    g = torch.Generator().manual_seed(0)
    lo, hi = (torch.as_tensor(v, dtype=torch.float64) for v in sys.domain())
    p = sys.expand_params(sys.param_tensors((1,)), 1)
    x0 = lo + (hi - lo) * torch.rand(1, 64, 2, generator=g, dtype=torch.float64)
    st = attractor_classes(settle(sys, x0, p, horizon=30.0), tol=0.02 * float((hi - lo).norm()))
    ends = _validation_curves(st, 16, lo, hi, g)
    bd = boundary_samples(sys, classifier(sys, st, p, 30.0), st, ends, p, horizon=30.0, noise=0.05, n_noisy=4,
                          lo=lo, hi=hi, g=g, trajectory_labels=trajectory_labels)
    lab, x = bd.label[0].numpy(), bd.x0[0].numpy()
    assert (lab != 0).sum() == 16 * 6 * (9 if trajectory_labels else 1)      # 8 snapshots per trajectory
    plus = st.centroid[0, 1, 0] > 0                       # +1 is the attractor (1, 0) by the coordinate-sum rule
    assert bool(plus)
    np.testing.assert_array_equal(lab[lab != 0], np.sign(x[lab != 0, 0]))
    length = (ends[0, :, 1] - ends[0, :, 0]).norm(dim=-1).numpy() * 1.5
    brackets = np.abs(x[: 16 * 6].reshape(16, 6, 2)[:, :2, 0])
    assert (brackets <= (length * 2.0**-12)[:, None]).all()

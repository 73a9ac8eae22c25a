"""Polishing psi's zero set by simulation (:mod:`dynlearn_builtins.analyzers.koopman.polish`): exact answers with a
deliberately wrong psi.

``bistable`` with ``a = 0`` (``x' = x - x^3``, ``y' = -y``): the basin of a state is the sign of ``x``, so the
separatrix is ``x = 0`` exactly. A hand-made "eigenfunction" ``psi = tanh(x - c)`` has its zero set at ``x = c``
(off by ``c``) and its normal along ``x``: polishing must move its points to ``x = 0`` within the bracket and
report ``c`` as psi's own error, or label the points it cannot bracket.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynlearn
from dynlearn import outcome as oc
from dynlearn_builtins.analyzers.koopman.adapt import BRACKET
from dynlearn_builtins.analyzers._shared.attractors import attractor_classes, settle
from dynlearn_builtins.analyzers.koopman.fit import classifier
from dynlearn_builtins.analyzers.koopman.net import BatchedMLP
from dynlearn_builtins.analyzers.koopman.polish import WIDEN, polish_zero_set

pytestmark = pytest.mark.numerics   # simulated labels next to the separatrix: other rounding paths and seeds

RADIUS = 0.2          # the analyzer's default: 0.05 of the largest side of bistable's box [-2, 2]^2


def shifted_psi(offsets: list[float]) -> BatchedMLP:
    """One network per offset ``c``: ``psi(x, y) = tanh(x - c)`` (one tanh unit, identity read-out)."""
    B = len(offsets)
    params = {"W0": torch.tensor([[[1.0, 0.0]]] * B, dtype=torch.float64),
              "b0": -torch.tensor(offsets, dtype=torch.float64).view(B, 1),
              "W1": torch.ones(B, 1, 1, dtype=torch.float64), "b1": torch.zeros(B, 1, dtype=torch.float64)}
    return BatchedMLP(params, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), None)


@pytest.fixture(scope="module")
def label_fn(seed_offset):
    """Simulated class of states of ``bistable`` (a = 0), for 3 sweep elements (the same system each)."""
    sys = dynlearn.registry.get("systems", "bistable")()
    lo, hi = (torch.as_tensor(v, dtype=torch.float64) for v in sys.domain())
    p = sys.expand_params(sys.param_tensors((3,)), 1)
    g = torch.Generator().manual_seed(seed_offset)
    x0 = (lo + (hi - lo) * torch.rand(1, 64, 2, generator=g, dtype=torch.float64)).expand(3, -1, -1).contiguous()
    st = attractor_classes(settle(sys, x0, p, horizon=30.0), tol=0.02 * float((hi - lo).norm()))
    return classifier(sys, st, p, 30.0)


def test_points_move_onto_the_separatrix_and_report_psis_error(label_fn):
    # c = 0.1: bracketed by the first segment (|c| < r); c = -0.5: only by the second (r < |c| < 4 r);
    # c = 1.5: by neither (|c| > 4 r = 0.8): labeled nan, NaN point
    offsets = [0.1, -0.5, 1.5]
    y = torch.linspace(-1.8, 1.8, 9, dtype=torch.float64)
    pts = torch.stack([torch.stack([torch.full_like(y, c), y], -1) for c in offsets])     # psi's zero sets
    pts[0, 3] = torch.nan                                                                 # a missing point
    pol = polish_zero_set(shifted_psi(offsets), label_fn, pts, RADIUS)
    ok = pol.outcome == oc.OK
    assert ok[0].tolist() == [True] * 3 + [False] + [True] * 5 and ok[1].all() and not ok[2].any()
    assert (pol.outcome[~ok] == oc.NAN).all() and torch.isnan(pol.points[~ok]).all()
    assert torch.isnan(pol.shift[~ok]).all() and torch.isnan(pol.tolerance[~ok]).all()
    tol = torch.tensor([RADIUS, WIDEN * RADIUS], dtype=torch.float64) * BRACKET   # half of the final bracket
    torch.testing.assert_close(pol.tolerance[:2][ok[:2]], tol.repeat_interleave(ok[:2].sum(1)), rtol=0, atol=0)
    x = pol.points[..., 0]
    assert (x[:2][ok[:2]].abs() <= pol.tolerance[:2][ok[:2]] * (1 + 1e-9)).all()        # on x = 0, to the bracket
    torch.testing.assert_close(pol.points[..., 1][ok], pts[..., 1][ok], rtol=0, atol=1e-15)  # moved along x only
    np.testing.assert_allclose(pol.shift[0][ok[0]].numpy(), 0.1, atol=float(tol[0]) * (1 + 1e-9))
    np.testing.assert_allclose(pol.shift[1][ok[1]].numpy(), 0.5, atol=float(tol[1]) * (1 + 1e-9))


def test_exact_zero_set_stays_put(label_fn):
    # psi = tanh(x): already the separatrix; polishing moves it by at most the bracket
    y = torch.linspace(-1.5, 1.5, 5, dtype=torch.float64)
    pts = torch.stack([torch.zeros_like(y), y], -1).expand(3, -1, -1).contiguous()
    pol = polish_zero_set(shifted_psi([0.0, 0.0, 0.0]), label_fn, pts, RADIUS)
    assert (pol.outcome == oc.OK).all()
    assert (pol.shift <= RADIUS * BRACKET * (1 + 1e-9)).all()


def test_bisection_never_asks_a_known_bracket_end_again():
    # a labeller that answers differently each time it is asked about a state exactly on the separatrix x = 0 (as a
    # simulation may: such a state never leaves the saddle): the bracket found in the first round must survive.
    # Curve x = -1 .. 1 (a straight one: control point at the midpoint); the first round asks t = 1/2 (x = 0) and 1
    from dynlearn_builtins.analyzers.koopman.locate import first_crossing

    asked = {"zero": 0}

    def label(x):
        on = x[..., 0] == 0
        asked["zero"] += int(on.sum())
        flip = 1 if asked["zero"] % 2 else -1                   # +1 the first time, -1 the second, ...
        return torch.where(on, flip, torch.where(x[..., 0] > 0, 1, -1))

    a = torch.tensor([[[-1.0]]], dtype=torch.float64)
    b = -a
    pts, t = first_crossing(label, a, b, torch.zeros_like(a), torch.full((1, 1), -1), points=2, rounds=12)
    assert asked["zero"] == 1                                    # x = 0 asked once, in the first round
    assert 0.5 - 2.0**-12 <= float(t) <= 0.5 and abs(float(pts[0, 0, 0])) <= 2.0**-11

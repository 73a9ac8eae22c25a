"""fixed_points: the midpoint pass finds the saddles between the points the first pass found."""

from __future__ import annotations

import numpy as np
import torch

from dynlearn.system import FlowSystem
from dynlearn_builtins.analyzers.fixed_points import FixedPoints
from dynlearn_builtins.analyzers.fixed_points.pipeline import Box, PointSet, midpoint_starts


class Cube(FlowSystem):
    """``x_i' = x_i - x_i^3`` (i < 3), ``w' = -w``: 27 fixed points ``{-1, 0, 1}^3 x {0}``, the 8 corners stable,
    the centre an index-3 saddle (like a 3-bit flip-flop's cube of fixed points)."""

    name = "cube_midpoint_test"
    state_names = ("x", "y", "z", "w")
    parameters = {}
    domain_bounds = ([-1.5] * 4, [1.5] * 4)

    def rhs(self, x, p):
        return torch.cat([x[..., :3] - x[..., :3] ** 3, -x[..., 3:]], -1)


def _corner_states() -> np.ndarray:
    """Two states near every corner: each of x, y, z at +-0.9 +- 0.05, far outside the Newton basins of the points
    with a zero coordinate, so no start reaches the centre."""
    rng = np.random.default_rng(0)
    corners = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)
    xyz = np.repeat(corners, 2, 0) * (0.9 + 0.05 * rng.uniform(-1, 1, (16, 3)))
    return np.concatenate([xyz, 0.3 * rng.standard_normal((16, 1))], 1)


def _run(**kw):
    return FixedPoints(n_starts=0, initial_states=_corner_states(), slow_points=False, landscape=False, **kw).run(
        Cube())


def test_midpoints_find_the_centre_saddle_the_starts_miss():
    off = _run(midpoints=0)
    on = _run()
    pos_off = off.position.values[off.present.values]
    assert len(pos_off) == 8 and np.all(np.abs(pos_off[:, :3]).round(12) == 1.0)  # only the corners
    assert int(off.n_start_states) == 16
    pos = on.position.values[on.present.values]
    expected = sorted((a, b, c, 0.0) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0) for c in (-1.0, 0.0, 1.0))
    assert sorted(map(tuple, (pos.round(12) + 0.0).tolist())) == expected
    centre = int(np.flatnonzero(np.abs(pos).max(1) < 1e-12)[0])
    assert int(on.n_unstable.values[on.present.values][centre]) == 3
    # the midpoints of the 28 pairs of corners are starting states, counted like the others
    assert int(on.n_start_states) == 16 + 28
    reached = on.n_reached.values[on.present.values]
    assert reached.min() >= 1 and reached.sum() <= int(on.n_start_states)


def test_midpoints_cap_and_pair_rule():
    out = _run(midpoints=5)
    assert int(out.n_start_states) == 16 + 5
    # pairs of the fixed points, evenly spaced among the valid ones when capped; masked slots and non-roots skipped
    x = torch.tensor([[[0.0], [2.0], [4.0], [6.0]], [[0.0], [10.0], [np.nan], [8.0]]], dtype=torch.float64)
    q = torch.zeros(2, 4, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True], [True, True, False, True]])
    root = torch.tensor([[True, True, True, True], [True, False, True, True]])
    ps = PointSet(x, q, q, root, mask.long(), mask)
    box = Box(torch.tensor([-10.0], dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64))
    mid, ok = midpoint_starts(ps, 3, box)
    # entry 0: 6 valid pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3), ranks 0, 2, 4 -> 1, 3, 4; entry 1: only (0, 3)
    assert mid[0, :, 0].tolist() == [1.0, 3.0, 4.0] and ok[0].tolist() == [True, True, True]
    assert mid[1, 0, 0].item() == 4.0 and ok[1].tolist() == [True, False, False]
    big, ok_big = midpoint_starts(ps, 100, box)
    assert ok_big.sum(1).tolist() == [6, 1]

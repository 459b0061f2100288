"""The ENGD/SPRING grid line search stops once the rest of the grid cannot
win, and picks the step size the exhaustive grid picks."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import from_numpy

from natgrad.adapters.callables import CallableModel
from natgrad.optim import _common

GRID = _common.LINE_SEARCH_GRID


def _problem(seed, n=40, p=12):
    """Residuals ``tanh(A θ) − y`` and a Gauss–Newton direction scaled by
    ``2^s``: the best step size lands anywhere on the grid."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, p)) / np.sqrt(p)
    y = rng.uniform(-0.9, 0.9, n)
    theta = rng.standard_normal(p)
    r = np.tanh(A @ theta) - y
    J = (1.0 - np.tanh(A @ theta) ** 2)[:, None] * A
    d = np.linalg.lstsq(J, r, rcond=None)[0] * 2.0 ** rng.integers(0, 16)
    return A, y, theta, d


def _exhaustive(A, y, theta, d):
    """The float64 NumPy reference: every loss of the grid."""
    return [0.5 * float(np.sum((np.tanh(A @ (theta - eta * d)) - y) ** 2)) for eta in GRID]


class _Along:
    """A model with ``losses_along``, recording the step sizes of each call."""

    loss = "squared"

    def __init__(self, xp, A, y):
        self.xp, self.A, self.y, self.calls = xp, from_numpy(xp, A), from_numpy(xp, y), []

    def losses_along(self, params, direction, etas, batch):
        self.calls.append(list(etas))
        xp = self.xp
        return [0.5 * xp.sum((xp.tanh(self.A @ (params - eta * direction)) - self.y) ** 2) for eta in etas]


@pytest.mark.parametrize("seed", range(8))
def test_stops_early_and_picks_the_exhaustive_grids_step(xp, seed):
    A, y, theta, d = _problem(seed)
    losses = _exhaustive(A, y, theta, d)
    loss0 = 0.5 * float(np.sum((np.tanh(A @ theta) - y) ** 2))
    best = int(np.argmin(losses))
    assert losses[best] < loss0
    evaluated = []

    def residuals(p, _):
        evaluated.append(1)
        return xp.tanh(from_numpy(xp, A) @ p) - from_numpy(xp, y)

    model = CallableModel(residuals=residuals, params=from_numpy(xp, theta))
    eta, loss, evals = _common.grid_line_search(model, from_numpy(xp, theta), from_numpy(xp, d), None,
                                                loss0, "squared")
    assert eta == GRID[best]
    assert loss == pytest.approx(losses[best], rel=1e-12)
    # the Gauss-Newton direction reaches the linear regime well before 2^-30
    assert evals == len(evaluated) <= best + 6 < len(GRID)

    along = _Along(xp, A, y)
    eta2, loss2, evals2 = _common.grid_line_search(along, from_numpy(xp, theta), from_numpy(xp, d), None,
                                                   loss0, "squared")
    assert (eta2, evals2 <= best + 6 + _common.LINE_SEARCH_CHUNK) == (GRID[best], True)
    assert loss2 == pytest.approx(losses[best], rel=1e-12)
    # one length for every call (the JAX adapter compiles once), the grid in order
    assert {len(c) for c in along.calls} == {_common.LINE_SEARCH_CHUNK}
    asked = [eta for c in along.calls for eta in c]
    assert asked[:evals2] == list(GRID[:evals2])


def test_without_a_decrease_the_whole_grid_is_tried(xp):
    A, y, theta, d = _problem(3)
    loss0 = 0.5 * float(np.sum((np.tanh(A @ theta) - y) ** 2))
    along = _Along(xp, A, y)
    # uphill: every step size increases the loss
    eta, loss, evals = _common.grid_line_search(along, from_numpy(xp, theta), from_numpy(xp, -d), None,
                                                loss0, "squared")
    assert (eta, loss, evals) == (None, loss0, len(GRID))
    assert [eta for c in along.calls for eta in c][:len(GRID)] == list(GRID)


def test_a_non_finite_loss_does_not_stop_the_search(xp):
    """NaN at the large step sizes (an overflowing model) is skipped, the
    smaller ones are still searched."""
    A, y, theta, d = _problem(5)
    losses = _exhaustive(A, y, theta, d)
    loss0 = 0.5 * float(np.sum((np.tanh(A @ theta) - y) ** 2))

    class Overflowing(_Along):
        def losses_along(self, params, direction, etas, batch):
            out = super().losses_along(params, direction, etas, batch)
            return [v if eta < 0.1 else self.xp.asarray(float("nan")) for v, eta in zip(out, etas)]

    eta, loss, _ = _common.grid_line_search(Overflowing(xp, A, y), from_numpy(xp, theta),
                                            from_numpy(xp, d), None, loss0, "squared")
    finite = [(v, i) for i, v in enumerate(losses) if GRID[i] < 0.1]
    assert eta == GRID[min(finite)[1]]


class _TwoDips:
    """A loss along the direction with a shallow dip at ``η ≈ 2⁻¹`` and a
    deeper one at ``2⁻¹⁰``: between them the decrease falls off fast (the
    first dip's tail), which must not pass for the linear regime."""

    loss = "squared"

    def __init__(self, xp):
        self.xp = xp

    def losses_along(self, params, direction, etas, batch):
        out = []
        for eta in etas:
            t = np.log2(eta)
            out.append(1.0 - 1e-3 * eta - 0.3 * np.exp(-(((t + 1) / 0.8) ** 2)) - 0.6 * np.exp(-((t + 10) ** 2)))
        return out


def test_a_far_dip_is_not_taken_for_the_linear_regime(xp):
    x = from_numpy(xp, np.ones(3))
    eta, loss, evals = _common.grid_line_search(_TwoDips(xp), x, x, None, 1.0, "squared")
    assert eta == GRID[10] and loss == pytest.approx(0.4, abs=1e-3)
    # ... and below the deeper dip the search stops once the decrease halves
    assert evals < len(GRID)

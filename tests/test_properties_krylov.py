"""Property tests for cg and minres (issue 18), with hypothesis, on every backend.

Over random SPD, indefinite (minres), low-rank + damping and ill-conditioned
operators (condition number up to 1e8), float32 and float64, right-hand
sides of shape (n,), (n, 1) and (n, k), n from 1 to 200:

* a result that says converged has a true residual (float64, against the
  operator and right-hand side as the solver saw them) within the bound
  :func:`attainable_bound` below;
* otherwise its status is a failure status, ``info`` says why and ``x`` is
  finite -- and no RuntimeWarning escapes;
* the inputs are never mutated;
* ``x`` is in ``b``'s namespace, on its device, in its dtype and shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import from_numpy, symmetric_matrix, to_numpy
from natgrad import backend
from natgrad.linalg import SolveStatus, cg, minres
from tests.faults import FAILED, outcome

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def gamma(m: int, dtype: str) -> float:
    """Higham's γₘ = m·u / (1 − m·u), u the unit roundoff of ``dtype``."""
    u = float(np.finfo(dtype).eps) / 2
    return m * u / (1 - m * u)


def attainable_bound(A: np.ndarray, x: np.ndarray, b: np.ndarray, rtol: float, dtype: str) -> np.ndarray:
    """The largest true relative residual (per column) a verified "converged" may have.

    The solvers verify convergence on the residual ``r̂ = fl(b − A x)`` computed
    in the working precision: ``‖r̂‖ ≤ rtol·‖b‖`` up to the rounding of the two
    norms, a factor ``(1 + γₙ)²``.  The exact residual of the same ``x``
    differs from ``r̂`` componentwise by at most ``γₙ₊₁ (|b| + |A||x|)``
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.5:
    a matrix-vector product and a subtraction, in any summation order).  So::

        ‖b − A x‖ / ‖b‖ ≤ rtol (1 + γₙ)² + γₙ₊₁ ‖ |b| + |A||x| ‖ / ‖b‖

    This is rtol plus the accuracy attainable for *this* x in this dtype:
    about n·eps·cond for an ill-conditioned system, close to rtol for a
    well-conditioned one -- never vacuous, since |A||x| is the computed x's.
    """
    n = A.shape[0]
    xb = x.reshape(n, -1)
    bb = b.reshape(n, -1)
    slack = gamma(n + 1, dtype) * np.linalg.norm(np.abs(bb) + np.abs(A) @ np.abs(xb), axis=0)
    return rtol * (1 + gamma(n, dtype)) ** 2 + slack / np.linalg.norm(bb, axis=0)


@st.composite
def systems(draw, kinds):
    # a few sizes from 1 to 200 rather than every integer: JAX compiles each
    # operation once per shape, and the sizes cover the same code paths
    n = draw(st.sampled_from([1, 2, 3, 8, 17, 50, 120, 200]))
    kind = draw(st.sampled_from(kinds))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    log_cond = draw(st.floats(0.0, 8.0))
    if kind == "spd":
        eigs = np.logspace(-log_cond, 0, n)
    elif kind == "indefinite":
        # both signs, |λ| in [10^-log_cond, 1]
        eigs = np.logspace(-log_cond, 0, n) * rng.choice([-1.0, 1.0], n)
    elif kind == "lowrank":
        # V Vᵀ + damping·I: rank r, damping 10^-log_cond relative to the top
        r = draw(st.integers(0, max(0, min(n, 10))))
        eigs = np.full(n, 10.0**-log_cond)
        eigs[:r] += np.sort(rng.uniform(0.1, 1.0, r))[::-1]
    else:  # "clustered": ill-conditioned, two clusters (CG's hardest common case)
        eigs = np.where(rng.random(n) < 0.5, 1.0, 10.0**-log_cond) * rng.uniform(1.0, 2.0, n)
    A = symmetric_matrix(eigs, seed=seed % 1000)
    shape = draw(st.sampled_from(["vector", "one column", "block"]))
    if shape == "vector":
        b = rng.standard_normal(n)
    elif shape == "one column":
        b = rng.standard_normal((n, 1))
    else:
        b = rng.standard_normal((n, draw(st.integers(2, 3))))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    rtol = draw(st.sampled_from([1e-3, 1e-5, 1e-8] if dtype == "float64" else [1e-3, 1e-5]))
    with_x0 = draw(st.booleans())
    return A, b, dtype, rtol, with_x0


def check_property(xp, solver, A, b, dtype, rtol, with_x0):
    n = A.shape[0]
    Ax, bx = from_numpy(xp, A, dtype), from_numpy(xp, b, dtype)
    x0x = from_numpy(xp, 0.01 * np.ones_like(b), dtype) if with_x0 else None
    copies = [to_numpy(a).copy() for a in (Ax, bx) + ((x0x,) if with_x0 else ())]
    # maxiter bounds the time of the slowest (ill-conditioned) examples; the
    # properties hold for any maxiter.  JAX runs each small operation eagerly
    # at ~10x NumPy's cost: fewer iterations there (the same code path).
    maxiter = min(2 * n, 25 if backend.is_jax(xp) else 100)
    res = outcome(lambda: solver(Ax, bx, x0=x0x, rtol=rtol, maxiter=maxiter)).value
    # inputs never mutated
    for before, after in zip(copies, (Ax, bx) + ((x0x,) if with_x0 else ())):
        np.testing.assert_array_equal(to_numpy(after), before)
    # output in b's namespace, device, dtype and shape
    assert backend.namespace(res.x) is backend.namespace(bx)
    assert backend.device(res.x) == backend.device(bx)
    assert res.x.dtype == bx.dtype and tuple(res.x.shape) == b.shape
    x = to_numpy(res.x).astype(np.float64)
    assert np.all(np.isfinite(x)), res.info
    # the system as the solver saw it: the inputs rounded to the working dtype
    A_seen = to_numpy(Ax).astype(np.float64)
    b_seen = to_numpy(bx).astype(np.float64)
    if res.converged:
        assert res.status is SolveStatus.CONVERGED
        true = np.linalg.norm((b_seen - A_seen @ x).reshape(n, -1), axis=0)
        true = true / np.linalg.norm(b_seen.reshape(n, -1), axis=0)
        bound = attainable_bound(A_seen, x, b_seen, rtol, dtype)
        assert np.all(true <= bound), (true, bound, res.info)
    else:
        assert res.status in FAILED and res.info
    return res


#: eager JAX compiles each new shape of each small operation (about 3 s an
#: example on two cores): the same properties on fewer examples there
JAX_SETTINGS = settings(SETTINGS, max_examples=6)


def _not_jax(xp):
    if backend.is_jax(xp):
        pytest.skip("JAX: the same properties on fewer examples in the *_on_jax test")


@SETTINGS
@given(system=systems(["spd", "lowrank", "clustered"]))
def test_cg_converged_means_attainably_converged(xp, system):
    _not_jax(xp)
    check_property(xp, cg, *system)


@SETTINGS
@given(system=systems(["spd", "indefinite", "lowrank"]))
def test_minres_converged_means_attainably_converged(xp, system):
    _not_jax(xp)
    check_property(xp, minres, *system)


@JAX_SETTINGS
@given(system=systems(["spd", "lowrank", "clustered"]))
def test_cg_converged_means_attainably_converged_on_jax(system):
    check_property(pytest.importorskip("jax.numpy"), cg, *system)


@JAX_SETTINGS
@given(system=systems(["spd", "indefinite", "lowrank"]))
def test_minres_converged_means_attainably_converged_on_jax(system):
    check_property(pytest.importorskip("jax.numpy"), minres, *system)


def test_bound_is_not_vacuous():
    # The bound is close to rtol for a well-conditioned system and grows with
    # the conditioning: it separates a converged x from a poor one.
    rng = np.random.default_rng(0)
    A = symmetric_matrix(np.linspace(1.0, 2.0, 100), seed=1)
    b = rng.standard_normal(100)
    x = np.linalg.solve(A, b)
    for dtype, rtol, most in (("float64", 1e-8, 1.001e-8), ("float32", 1e-5, 1e-4)):
        bound = attainable_bound(A, x, b, rtol, dtype)
        assert rtol < bound[0] < most, bound
    poor = x + 1e-4 * rng.standard_normal(100)
    rel = np.linalg.norm(b - A @ poor) / np.linalg.norm(b)
    assert rel > attainable_bound(A, poor, b, 1e-8, "float64")[0]

"""Low-rank block compression: ACA, recompression, truncated and randomized SVD."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import from_numpy, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from natgrad.hmatrix import aca, randomized_svd, recompress, truncated_svd, truncation_rank
from natgrad.hmatrix.lowrank import sketch_svd


def _separated_block(m=60, n=45, dim=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((m, dim))
    Y = rng.random((n, dim)) + 3.0
    r = np.linalg.norm(X[:, None, :] - Y[None, :, :], axis=-1)
    return np.exp(-r) / (1.0 + r)


def _decaying(m, n, seed, decay=0.5):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    V, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    s = decay ** np.arange(min(m, n))
    return (U * s) @ V.T


def test_truncation_rank():
    assert truncation_rank([3.0, 2.0, 0.1, 0.01], 0.2) == 2
    assert truncation_rank([3.0, 2.0, 0.1, 0.01], 0.0) == 4
    assert truncation_rank([3.0, 2.0], 10.0) == 0
    assert truncation_rank([], 1.0) == 0


@pytest.mark.parametrize("rel", [1e-1, 1e-4, 1e-8])
def test_truncated_svd_error_is_exact(xp, rel):
    A = _decaying(40, 30, 0)
    tol = rel * np.linalg.norm(A)
    Ax = from_numpy(xp, A)
    lr = truncated_svd(Ax, tol)
    approx = to_numpy(lr.U) @ to_numpy(lr.V).T
    err = np.linalg.norm(A - approx)
    assert err <= tol
    assert abs(err - lr.error) <= 1e-12 * np.linalg.norm(A)
    # optimal: one rank less would miss the tolerance
    s = np.linalg.svd(A, compute_uv=False)
    k = lr.U.shape[1]
    assert np.sqrt(np.sum(s[k - 1:] ** 2)) > tol
    np.testing.assert_array_equal(to_numpy(Ax), A)  # input not mutated


def test_recompress(xp):
    rng = np.random.default_rng(0)
    core_u, core_v = rng.standard_normal((50, 3)), rng.standard_normal((40, 3))
    U = np.hstack([core_u, core_u @ rng.standard_normal((3, 5))])  # rank 3 in 8 columns
    V = np.hstack([core_v, rng.standard_normal((40, 5))])
    V[:, 3:] *= 1e-9
    A = U @ V.T
    lr = recompress(from_numpy(xp, U), from_numpy(xp, V), 1e-6 * np.linalg.norm(A))
    approx = to_numpy(lr.U) @ to_numpy(lr.V).T
    err = np.linalg.norm(A - approx)
    assert lr.U.shape[1] == 3
    assert err <= 1e-6 * np.linalg.norm(A)
    assert abs(err - lr.error) <= 1e-10 * np.linalg.norm(A)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-10])
def test_aca_on_kernel_block(xp, tol):
    A = _separated_block()
    Ax = from_numpy(xp, A)
    calls = []

    def row(i):
        calls.append(("r", i))
        return Ax[i, :]

    def col(j):
        calls.append(("c", j))
        return Ax[:, j]

    res = aca(row, col, A.shape, tol=tol)
    assert res.converged
    approx = to_numpy(res.U) @ to_numpy(res.V).T
    err = np.linalg.norm(A - approx)
    assert err <= 10 * tol * np.linalg.norm(A)
    assert abs(res.norm - np.linalg.norm(approx)) <= 1e-8 * res.norm
    assert len(calls) < A.shape[0] + A.shape[1]  # never the whole block
    assert res.U.shape[1] < 30


def test_aca_exact_rank(xp):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((30, 4)) @ rng.standard_normal((4, 25))
    Ax = from_numpy(xp, A)
    res = aca(lambda i: Ax[i, :], lambda j: Ax[:, j], A.shape, tol=1e-10)
    assert res.converged and res.U.shape[1] in (4, 5)
    np.testing.assert_allclose(to_numpy(res.U) @ to_numpy(res.V).T, A, atol=1e-9)


def test_aca_zero_rows_and_zero_block(xp):
    Z = from_numpy(xp, np.zeros((10, 8)))
    res = aca(lambda i: Z[i, :], lambda j: Z[:, j], (10, 8), tol=1e-6)
    assert res.U.shape == (10, 0) and res.converged and res.norm == 0.0
    # nonzero rows only at the end: ACA must look past the zero first rows
    A = np.zeros((12, 9))
    A[9:, :] = np.random.default_rng(0).standard_normal((3, 9))
    Ax = from_numpy(xp, A)
    res = aca(lambda i: Ax[i, :], lambda j: Ax[:, j], A.shape, tol=1e-8)
    approx = to_numpy(res.U) @ to_numpy(res.V).T
    assert np.linalg.norm(A - approx) <= 1e-6 * np.linalg.norm(A)


def test_aca_stops_only_after_two_small_crosses(xp):
    # three terms of sizes 1, 1e-8 and 1e-2; the first on the top rows, the
    # last on the bottom rows and right columns.  The second cross meets the
    # 1e-8 term and is small; the third, from a bottom row, is not.  ACA
    # stops after two small crosses in a row: stopping after one (the rule
    # with _CONFIRM = 1) returned rank 2 with a relative error of 8e-3
    # here.  (A fixed draw of this family: the rule is a heuristic, and on
    # 30 % of the family's draws two small crosses in a row still miss the
    # third term, against 62 % with one.)
    rng = np.random.default_rng(8)
    m, n = 60, 50
    a1 = np.zeros(m)
    a1[:30] = rng.random(30) + 0.5
    b1 = rng.random(n) + 0.5
    a2 = np.zeros(m)
    a2[rng.choice(m, 20, replace=False)] = rng.standard_normal(20)
    b2 = np.zeros(n)
    b2[:25] = rng.standard_normal(25)
    a3 = np.zeros(m)
    a3[30:] = rng.standard_normal(30)
    b3 = np.zeros(n)
    b3[25:] = rng.standard_normal(25)
    A = np.outer(a1, b1) + 1e-8 * np.outer(a2, b2) + 1e-2 * np.outer(a3, b3)
    Ax = from_numpy(xp, A)
    res = aca(lambda i: Ax[i, :], lambda j: Ax[:, j], A.shape, tol=1e-6)
    assert res.converged and res.U.shape[1] == 3
    approx = to_numpy(res.U) @ to_numpy(res.V).T
    assert np.linalg.norm(A - approx) <= 1e-6 * np.linalg.norm(A)


def _aca_reference(A, k):
    """Partial-pivot ACA written plainly (NumPy, factors rebuilt each step), ``k`` crosses."""
    m, n = A.shape
    U, V = np.zeros((m, 0)), np.zeros((n, 0))
    used_r, used_c, i = np.zeros(m, bool), np.zeros(n, bool), 0
    for _ in range(k):
        r = A[i] - V @ U[i]
        used_r[i] = True
        j = int(np.argmax(np.where(used_c, -1.0, np.abs(r))))
        v = r / r[j]
        u = A[:, j] - U @ V[j]
        used_c[j] = True
        U, V = np.column_stack([U, u]), np.column_stack([V, v])
        i = int(np.argmax(np.where(used_r, -1.0, np.abs(u))))
    return U, V


def test_aca_factors_grow_past_their_buffers(xp):
    # 70 crosses: the factor buffers (32 rows at first) double twice; every
    # cross must be the one the plain algorithm makes
    # (singular values 0.9^l: the 70th cross is still far above rounding)
    A = _decaying(140, 120, 2, decay=0.9)
    Ax = from_numpy(xp, A)
    res = aca(lambda i: Ax[i, :], lambda j: Ax[:, j], A.shape, tol=1e-12, max_rank=70)
    U, V = to_numpy(res.U), to_numpy(res.V)
    assert U.shape == (140, 70) and V.shape == (120, 70) and not res.converged
    U_ref, V_ref = _aca_reference(A, 70)
    scale = np.linalg.norm(A)
    np.testing.assert_allclose(U, U_ref, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(V, V_ref, rtol=0, atol=1e-9)
    assert abs(res.norm - np.linalg.norm(U @ V.T)) <= 1e-8 * res.norm


def test_aca_max_rank_on_random_block(xp):
    A = np.random.default_rng(0).standard_normal((20, 20))
    Ax = from_numpy(xp, A)
    res = aca(lambda i: Ax[i, :], lambda j: Ax[:, j], A.shape, tol=1e-6, max_rank=5)
    assert res.U.shape[1] == 5 and not res.converged


@pytest.mark.parametrize("rel", [1e-2, 1e-6, 1e-10])
def test_randomized_svd(xp, rel):
    A = _decaying(80, 60, 1, decay=0.6)
    tol = rel * np.linalg.norm(A)
    lr = randomized_svd(from_numpy(xp, A), tol, block_size=4, seed=1)
    err = np.linalg.norm(A - to_numpy(lr.U) @ to_numpy(lr.V).T)
    assert err <= tol
    assert abs(err - lr.error) <= 1e-8 * np.linalg.norm(A) + 1e-3 * err
    s = np.linalg.svd(A, compute_uv=False)
    assert lr.U.shape[1] <= truncation_rank(s.tolist(), tol) + 4


def test_randomized_svd_rank_limit(xp):
    A = np.random.default_rng(0).standard_normal((30, 30))
    lr = randomized_svd(from_numpy(xp, A), 1e-8, max_rank=6)
    assert lr.U.shape[1] <= 6 and lr.error > 1e-8  # the error says it missed


@pytest.mark.parametrize("width", [6, 20])
def test_sketch_svd_residual_is_exact(xp, width):
    # one sketch Y = A Ω: whatever Ω, the residual is computed, so that a
    # rank-k truncation errs by exactly sqrt(resid² + tail²); a sketch a few
    # wider than the rank needed finds the leading singular values
    A = _decaying(70, 50, 2, decay=0.7)
    omega = np.random.default_rng(3).standard_normal((50, width))
    Ax = from_numpy(xp, A)
    U, s, Vh, resid = sketch_svd(Ax, from_numpy(xp, omega))
    U, s, Vh = to_numpy(U), to_numpy(s), to_numpy(Vh)
    norm = np.linalg.norm(A)
    assert U.shape == (70, width) and s.shape == (width,) and Vh.shape == (width, 50)
    np.testing.assert_allclose(U.T @ U, np.eye(width), atol=1e-12)
    Q, _ = np.linalg.qr(A @ omega)
    exact = np.linalg.norm(A - Q @ (Q.T @ A))
    assert abs(resid - exact) <= 1e-13 * norm
    for k in (0, width // 2, width):
        err = np.linalg.norm(A - (U[:, :k] * s[:k]) @ Vh[:k])
        assert abs(err - np.sqrt(resid**2 + np.sum(s[k:] ** 2))) <= 1e-12 * norm
    sv = np.linalg.svd(A, compute_uv=False)
    assert np.all(s <= sv[:width] * (1 + 1e-12))  # a projection cannot add
    # Halko, Martinsson & Tropp (2011), Thm. 10.5: with k = width - 5 and
    # oversampling 5, E resid <= sqrt(1 + k/4) times the best rank-k error
    # (a factor 3 of slack for one fixed draw)
    k = width - 5
    assert resid <= 3.0 * np.sqrt(1 + k / 4) * np.sqrt(np.sum(sv[k:] ** 2))
    if width == 20:  # the leading singular values, to about (σ_21/σ_5)² = 0.7³² ≈ 1e-5
        np.testing.assert_allclose(s[:5], sv[:5], rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(Ax), A)  # input not mutated


@pytest.mark.parametrize("bad", [0.0, 1.0, -1e-3, "x"])
def test_aca_bad_tol(bad):
    A = np.ones((3, 3))
    with pytest.raises(ValueError, match="tol must be a number in"):
        aca(lambda i: A[i], lambda j: A[:, j], A.shape, tol=bad)


def test_bad_input(xp):
    with pytest.raises(ValueError, match="shape must be two positive ints"):
        aca(lambda i: None, lambda j: None, (0, 3), tol=1e-3)
    with pytest.raises(ValueError, match="A must be a 2-D array"):
        truncated_svd(from_numpy(xp, np.ones(3)), 1e-3)
    with pytest.raises(ValueError, match="A contains NaN"):
        randomized_svd(from_numpy(xp, np.full((3, 3), np.nan)), 1e-3)
    with pytest.raises(ValueError, match="tol must be a finite non-negative"):
        truncated_svd(from_numpy(xp, np.ones((3, 3))), -1.0)
    with pytest.raises(ValueError, match="block_size must be positive"):
        randomized_svd(from_numpy(xp, np.ones((3, 3))), 1e-3, block_size=0)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 40), rel=st.floats(1e-10, 0.5),
       decay=st.floats(0.05, 0.99), seed=st.integers(0, 1000))
def test_svd_bounds_property(m, n, rel, decay, seed):
    import array_api_compat.numpy as xp_np

    A = _decaying(m, n, seed, decay)
    tol = rel * np.linalg.norm(A)
    for lr in (truncated_svd(xp_np.asarray(A), tol), randomized_svd(xp_np.asarray(A), tol, seed=seed)):
        assert np.linalg.norm(A - lr.U @ lr.V.T) <= tol * (1 + 1e-9) + 1e-14

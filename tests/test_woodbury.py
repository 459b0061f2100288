"""Tests for natgrad.linalg.woodbury (and backend.gram) on every backend,
against float64 NumPy references.

Tolerances are stated as multiples of ``κ·eps``: the forward error any
backward-stable solver can reach on a problem of condition number ``κ``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import natgrad.linalg.woodbury as woodbury
from helpers import from_numpy, to_numpy
from natgrad import backend
from natgrad.linalg.woodbury import FactorizationWarning, Woodbury, woodbury_solve

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps


def make_U(N: int, P: int, singular_values, seed: int) -> np.ndarray:
    """``U = Q1 diag(σ) Q2ᵀ`` with the given singular values (zeros appended)."""
    rng = np.random.default_rng(seed)
    Q1 = np.linalg.qr(rng.standard_normal((N, N)))[0]
    Q2 = np.linalg.qr(rng.standard_normal((P, N)))[0]
    sig = np.zeros(N)
    sig[: len(singular_values)] = singular_values
    return (Q1 * sig) @ Q2.T


def ref_solve(U, b, lam):
    """(λI_P + UᵀU)⁻¹ b in float64 through the SVD of U (exact in the null space)."""
    _, s, Vt = np.linalg.svd(U, full_matrices=False)
    c = Vt @ b
    w = 1.0 / (s**2 + lam) - 1.0 / lam
    return b / lam + Vt.T @ (w[:, None] * c if b.ndim == 2 else w * c)


def ref_solve_sample(U, r, lam):
    """Uᵀ(λI + UUᵀ)⁻¹ r = argmin ‖Ux − r‖² + λ‖x‖², by a backward-stable lstsq."""
    N, P = U.shape
    aug = np.vstack([U, np.sqrt(lam) * np.eye(P)])
    rhs = np.concatenate([r, np.zeros((P,) + r.shape[1:])])
    return np.linalg.lstsq(aug, rhs, rcond=None)[0]


def ref_coefficients(U, r, lam):
    return np.linalg.solve(lam * np.eye(U.shape[0]) + U @ U.T, r)


def rel_err(x, ref):
    return np.linalg.norm(to_numpy(x) - ref) / np.linalg.norm(ref)


def kappa(U, lam):
    return (np.linalg.norm(U, 2) ** 2 + lam) / lam


# ---------------------------------------------------------------------------
# accuracy on every backend
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, lam",
    [("well", 1e-1), ("ill", 1e-6), ("rank-deficient", 1e-8)],
)
def test_woodbury_matches_dense_reference(xp, case, lam):
    N, P = 12, 40
    sig = {
        "well": np.linspace(1.0, 3.0, N),
        "ill": np.logspace(0, -6, N),  # singular values down to 1e-6
        "rank-deficient": np.logspace(0, -1, 5),  # rank 5 < N
    }[case]
    U = make_U(N, P, sig, seed=1)
    rng = np.random.default_rng(2)
    b, r = rng.standard_normal(P), rng.standard_normal(N)
    W = Woodbury(from_numpy(xp, U), lam)
    assert W.side == "sample" and W.method == "cholesky" and not W.refine
    tol = 50 * kappa(U, lam) * EPS64

    x = W.solve(from_numpy(xp, b))
    assert x.dtype == xp.float64 and tuple(x.shape) == (P,)
    assert rel_err(x, ref_solve(U, b, lam)) <= tol

    xs = W.solve_sample(from_numpy(xp, r))
    assert tuple(xs.shape) == (P,)
    assert rel_err(xs, ref_solve_sample(U, r, lam)) <= tol

    alpha = W.coefficients(from_numpy(xp, r))
    K = lam * np.eye(N) + U @ U.T
    tol_K = 50 * np.linalg.cond(K) * EPS64
    assert rel_err(alpha, ref_coefficients(U, r, lam)) <= tol_K
    # the FNGD reuse: Uᵀα is the sample-space step
    np.testing.assert_allclose(U.T @ to_numpy(alpha), to_numpy(xs), rtol=tol, atol=tol * np.abs(to_numpy(xs)).max())


def test_block_right_hand_sides(xp):
    N, P, k = 10, 30, 3
    U = make_U(N, P, np.logspace(0, -3, N), seed=3)
    lam = 1e-3
    rng = np.random.default_rng(4)
    B, R = rng.standard_normal((P, k)), rng.standard_normal((N, k))
    W = Woodbury(from_numpy(xp, U), lam)
    tol = 50 * kappa(U, lam) * EPS64
    X = W.solve(from_numpy(xp, B))
    assert tuple(X.shape) == (P, k)
    assert rel_err(X, ref_solve(U, B, lam)) <= tol
    XS = W.solve_sample(from_numpy(xp, R))
    assert tuple(XS.shape) == (P, k)
    assert rel_err(XS, ref_solve_sample(U, R, lam)) <= tol
    A = W.coefficients(from_numpy(xp, R))
    assert tuple(A.shape) == (N, k)
    for j in range(k):  # columns agree with single solves
        np.testing.assert_allclose(to_numpy(X)[:, j], to_numpy(W.solve(from_numpy(xp, B[:, j]))), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(woodbury_solve(from_numpy(xp, U), from_numpy(xp, B), lam)), to_numpy(X), rtol=1e-12)


@pytest.mark.parametrize("side", ["sample", "parameter"])
@pytest.mark.parametrize("shape", [(8, 25), (25, 8)])
def test_both_sides_agree(xp, side, shape):
    N, P = shape
    rng = np.random.default_rng(5)
    U = rng.standard_normal((N, P))
    lam = 1e-2
    b, r = rng.standard_normal(P), rng.standard_normal(N)
    W = Woodbury(from_numpy(xp, U), lam, side=side)
    assert W.side == side
    tol = 50 * kappa(U, lam) * EPS64
    assert rel_err(W.solve(from_numpy(xp, b)), ref_solve(U, b, lam)) <= tol
    assert rel_err(W.solve_sample(from_numpy(xp, r)), ref_solve_sample(U, r, lam)) <= tol
    assert rel_err(W.coefficients(from_numpy(xp, r)), ref_coefficients(U, r, lam)) <= tol


def test_auto_side_picks_smaller_gram(xp):
    rng = np.random.default_rng(6)
    assert Woodbury(from_numpy(xp, rng.standard_normal((5, 9))), 1.0).side == "sample"
    assert Woodbury(from_numpy(xp, rng.standard_normal((9, 5))), 1.0).side == "parameter"


# ---------------------------------------------------------------------------
# float32
# ---------------------------------------------------------------------------


def test_float32_stays_float32_and_is_accurate(xp):
    N, P, lam = 12, 40, 1e-2
    U = make_U(N, P, np.logspace(0, -3, N), seed=7)
    rng = np.random.default_rng(8)
    b, r = rng.standard_normal(P), rng.standard_normal(N)
    W = Woodbury(from_numpy(xp, U, "float32"), lam)
    assert W.dtype == xp.float32 and W.refine  # eps32·trace(UUᵀ) ≪ λ: refinement on
    x = W.solve(from_numpy(xp, b, "float32"))
    xs = W.solve_sample(from_numpy(xp, r, "float32"))
    assert x.dtype == xp.float32 and xs.dtype == xp.float32
    tol = 10 * kappa(U, lam) * EPS32  # ≈ 1.2e-4
    assert rel_err(x, ref_solve(U, b, lam)) <= tol
    assert rel_err(xs, ref_solve_sample(U, r, lam)) <= tol


def test_float32_refinement_reduces_the_error(xp):
    # κ·eps32 ≈ 0.1: the unrefined Woodbury formula loses ~κ·eps32/… digits,
    # one refinement step recovers most of them (measured: ~20× on NumPy).
    N, P, lam = 12, 40, 1e-6
    U = make_U(N, P, np.logspace(0, -6, N), seed=1)
    b = np.random.default_rng(2).standard_normal(P)
    ref = ref_solve(U, b, lam)
    U32, b32 = from_numpy(xp, U, "float32"), from_numpy(xp, b, "float32")
    err_plain = rel_err(Woodbury(U32, lam, refine=False).solve(b32), ref)
    err_refined = rel_err(Woodbury(U32, lam, refine=True).solve(b32), ref)
    assert err_refined < err_plain / 3
    assert err_refined <= 10 * kappa(U, lam) * EPS32 / 100


def test_refinement_off_by_default_beyond_working_precision(xp):
    # eps32·trace(UUᵀ) > λ: a refinement step would amplify rounding noise.
    U = make_U(6, 20, np.linspace(1.0, 2.0, 6), seed=9)
    assert not Woodbury(from_numpy(xp, U, "float32"), 1e-8).refine
    assert not Woodbury(from_numpy(xp, U), 1e-8).refine  # float64: off


# ---------------------------------------------------------------------------
# Cholesky fallbacks
# ---------------------------------------------------------------------------


def _failing_cholesky(fail_times):
    calls = {"n": 0}
    real = backend.cholesky

    def fake(A, **kw):
        calls["n"] += 1
        if calls["n"] <= fail_times:
            raise backend.CholeskyError("simulated breakdown")
        return real(A, **kw)

    return fake


def test_jitter_fallback_warns_once_and_stays_accurate(xp, monkeypatch):
    N, P, lam = 10, 30, 1e-3
    U = make_U(N, P, np.logspace(0, -2, N), seed=10)
    r = np.random.default_rng(11).standard_normal(N)
    monkeypatch.setattr(woodbury.backend, "cholesky", _failing_cholesky(2))
    with pytest.warns(FactorizationWarning, match="jitter") as record:
        W = Woodbury(from_numpy(xp, U), lam, refine=True)
    assert len(record) == 1
    assert W.method == "cholesky+jitter" and W.jitter > 0
    # jitter δ = 10·eps·trace/N is tiny, and refinement removes its effect
    assert rel_err(W.solve_sample(from_numpy(xp, r)), ref_solve_sample(U, r, lam)) <= 50 * kappa(U, lam) * EPS64


def test_eigh_fallback(xp, monkeypatch):
    N, P, lam = 10, 30, 1e-3
    U = make_U(N, P, np.logspace(0, -1, 4), seed=12)  # rank 4
    b, r = np.random.default_rng(13).standard_normal(P), np.random.default_rng(14).standard_normal(N)
    monkeypatch.setattr(woodbury.backend, "cholesky", _failing_cholesky(100))
    with pytest.warns(FactorizationWarning, match="eigendecomposition"):
        W = Woodbury(from_numpy(xp, U), lam)
    assert W.method == "eigh"
    tol = 50 * kappa(U, lam) * EPS64
    assert rel_err(W.solve(from_numpy(xp, b)), ref_solve(U, b, lam)) <= tol
    assert rel_err(W.solve_sample(from_numpy(xp, r)), ref_solve_sample(U, r, lam)) <= tol
    B = np.random.default_rng(15).standard_normal((N, 2))
    assert rel_err(W.coefficients(from_numpy(xp, B)), ref_coefficients(U, B, lam)) <= 1e-6


def test_tiny_damping_on_rank_deficient_float32_never_returns_nan(xp):
    # damping far below the float32 rounding of UUᵀ: Cholesky may break
    # down; whatever path is taken the result must be finite and, for r in
    # the range of U, close to the minimum-norm solution U⁺r.
    N, P = 16, 40
    U = make_U(N, P, np.logspace(0, -1, 6), seed=16)  # rank 6
    x_true = np.linalg.pinv(U) @ np.random.default_rng(17).standard_normal(N)
    r = U @ x_true
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FactorizationWarning)
        W = Woodbury(from_numpy(xp, U, "float32"), 1e-12)
    xs = to_numpy(W.solve_sample(from_numpy(xp, r, "float32")))
    assert np.all(np.isfinite(xs))
    assert rel_err(xs, x_true) <= 1e-4  # measured 1.2e-5 (jitter path)


def test_no_warning_on_healthy_problem(xp):
    U = make_U(8, 20, np.linspace(1, 2, 8), seed=18)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        W = Woodbury(from_numpy(xp, U), 1e-4)
    assert W.method == "cholesky" and W.jitter == 0.0


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    N=st.integers(1, 9),
    P=st.integers(1, 14),
    log_lam=st.floats(-6, 1),
    log_spread=st.floats(0, 4),
    seed=st.integers(0, 10_000),
)
def test_property_matches_dense(N, P, log_lam, log_spread, seed):
    rng = np.random.default_rng(seed)
    k = min(N, P)
    Q1 = np.linalg.qr(rng.standard_normal((N, k)))[0]
    Q2 = np.linalg.qr(rng.standard_normal((P, k)))[0]
    U = (Q1 * np.logspace(0, -log_spread, k)) @ Q2.T
    lam = 10.0**log_lam
    b, r = rng.standard_normal(P), rng.standard_normal(N)
    W = Woodbury(U, lam)
    tol = 100 * kappa(U, lam) * EPS64
    assert rel_err(W.solve(b), ref_solve(U, b, lam)) <= tol
    xs = W.solve_sample(r)
    if np.linalg.norm(U.T @ r) > 0:
        assert rel_err(xs, ref_solve_sample(U, r, lam)) <= tol
    np.testing.assert_allclose(woodbury_solve(U, b, lam), W.solve(b), rtol=1e-12, atol=0)


@settings(max_examples=15, deadline=None)
@given(N=st.integers(2, 30), P=st.integers(1, 60), order=st.sampled_from(["C", "F", "strided"]),
       dtype=st.sampled_from(["float32", "float64"]), block=st.integers(1, 7))
def test_gram_any_layout(N, P, order, dtype, block):
    rng = np.random.default_rng(N * 100 + P)
    base = rng.standard_normal((N, 2 * P)).astype(dtype)
    U = {"C": np.ascontiguousarray(base[:, :P]), "F": np.asfortranarray(base[:, :P]), "strided": base[:, ::2]}[order]
    G = backend.gram(U, block_size=block)
    ref = U.astype(np.float64) @ U.T.astype(np.float64)
    eps = np.finfo(dtype).eps
    assert G.dtype == np.dtype(dtype) and np.array_equal(G, G.T)
    np.testing.assert_allclose(G, ref, atol=10 * P * eps * np.abs(U).max() ** 2)


def test_gram_chunked_other_backends(xp):
    U = np.random.default_rng(19).standard_normal((7, 13))
    G = to_numpy(backend.gram(from_numpy(xp, U)))
    np.testing.assert_allclose(G, U @ U.T, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(G, G.T)


# ---------------------------------------------------------------------------
# inputs are not mutated; bad input
# ---------------------------------------------------------------------------


def test_inputs_not_mutated(xp):
    rng = np.random.default_rng(20)
    U_np, b_np, r_np = rng.standard_normal((6, 15)), rng.standard_normal(15), rng.standard_normal(6)
    U, b, r = from_numpy(xp, U_np), from_numpy(xp, b_np), from_numpy(xp, r_np)
    W = Woodbury(U, 0.1, refine=True)
    W.solve(b), W.solve_sample(r), W.coefficients(r)
    woodbury_solve(U, b, 0.1)
    np.testing.assert_array_equal(to_numpy(U), U_np)
    np.testing.assert_array_equal(to_numpy(b), b_np)
    np.testing.assert_array_equal(to_numpy(r), r_np)


@pytest.mark.parametrize("damping", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_damping_value(damping):
    with pytest.raises(ValueError, match="damping"):
        Woodbury(np.ones((2, 3)), damping)


@pytest.mark.parametrize("damping", ["1", None, True, np.ones(1)])
def test_bad_damping_type(damping):
    with pytest.raises(TypeError, match="damping"):
        Woodbury(np.ones((2, 3)), damping)


def test_bad_U(xp):
    with pytest.raises(ValueError, match="U must be a 2-D"):
        Woodbury(from_numpy(xp, np.ones(3)), 1.0)
    with pytest.raises(ValueError, match="U must be a 2-D"):
        Woodbury(from_numpy(xp, np.ones((2, 2, 2))), 1.0)
    with pytest.raises(ValueError, match="at least one row"):
        Woodbury(from_numpy(xp, np.ones((0, 3))), 1.0)
    for bad in (np.nan, np.inf, -np.inf):
        U = np.random.default_rng(21).standard_normal((4, 6))
        U[2, 3] = bad
        with pytest.raises(ValueError, match="U contains NaN or Inf"):
            Woodbury(from_numpy(xp, U), 1.0)
    with pytest.raises(TypeError, match="U must be an array"):
        Woodbury([[1.0, 2.0]], 1.0)


def test_overflowing_U_is_reported():
    U = np.full((3, 4), 1e200)
    with pytest.raises(ValueError, match="overflows"):
        Woodbury(U, 1.0)


def test_complex_U_rejected():
    with pytest.raises(TypeError, match="U must be real"):
        Woodbury(np.ones((2, 3), dtype=complex), 1.0)


def test_bad_right_hand_sides(xp):
    W = Woodbury(from_numpy(xp, np.random.default_rng(22).standard_normal((4, 7))), 1.0)
    with pytest.raises(ValueError, match=r"b must have shape \(7,\)"):
        W.solve(from_numpy(xp, np.ones(4)))
    with pytest.raises(ValueError, match=r"b must have shape"):
        W.solve(from_numpy(xp, np.ones((7, 2, 1))))
    with pytest.raises(ValueError, match=r"r must have shape \(4,\)"):
        W.solve_sample(from_numpy(xp, np.ones(7)))
    with pytest.raises(ValueError, match=r"r must have shape \(4,\)"):
        W.coefficients(from_numpy(xp, np.ones(5)))
    with pytest.raises(ValueError, match="b contains NaN or Inf"):
        W.solve(from_numpy(xp, np.full(7, np.nan)))
    with pytest.raises(ValueError, match="r contains NaN or Inf"):
        W.coefficients(from_numpy(xp, np.array([1.0, np.inf, 0.0, 0.0])))
    with pytest.raises(ValueError, match=r"b must have shape \(7,\)"):
        woodbury_solve(from_numpy(xp, np.ones((4, 7))), from_numpy(xp, np.ones(3)), 1.0)


def test_mixed_libraries_rejected():
    torch = pytest.importorskip("torch")
    W = Woodbury(np.ones((2, 3)) + np.eye(2, 3), 1.0)
    with pytest.raises(TypeError, match="b is a PyTorch array but U is a NumPy array"):
        W.solve(torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="PyTorch"):
        woodbury_solve(np.ones((2, 3)), torch.ones(3, dtype=torch.float64), 1.0)


def test_bad_options():
    with pytest.raises(ValueError, match="side"):
        Woodbury(np.ones((2, 3)), 1.0, side="both")
    with pytest.raises(TypeError, match="refine"):
        Woodbury(np.ones((2, 3)), 1.0, refine="yes")


def test_integer_U_is_promoted():
    U = np.array([[1, 2, 0], [0, 1, 1]])
    W = Woodbury(U, 0.5)
    assert W.dtype == np.float64
    x = W.solve(np.ones(3))
    np.testing.assert_allclose((0.5 * np.eye(3) + U.T @ U) @ x, np.ones(3), rtol=1e-13)

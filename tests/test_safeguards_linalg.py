"""Tests that pin the safeguards of natgrad.linalg (woodbury, nystrom, series,
operators, _checks, krylov): each one failed with the safeguard removed
(measured on NumPy, the mutation named in its comment) and passes with it on
every backend.  References are float64 NumPy/SciPy computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import natgrad.linalg.woodbury as woodbury
from faults import write_into
from helpers import from_numpy, symmetric_matrix, to_numpy
from test_woodbury import make_U

from natgrad import backend
from natgrad.linalg import SolveStatus, cg, from_matvec, minres, neumann_solve, saddle_free_solve
from natgrad.linalg.nystrom import LowRankPSD, NystromPreconditioner, nystrom, nystrom_pcg, nystrom_solve
from natgrad.linalg.woodbury import FactorizationWarning, Woodbury

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps


def _orthogonal(n: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))[0]


# ---------------------------------------------------------------------------
# woodbury.py
# ---------------------------------------------------------------------------


def test_eigh_fallback_clamps_negative_rounding_eigenvalues(xp, monkeypatch):
    # Safeguard: woodbury.py SPDFactor, eigh fallback `xp.clip(w, min=0.0)`:
    # eigenvalues of the computed Gram matrix that rounding made negative are
    # clamped at 0, so K⁻¹ = Q diag(1/(w⁺ + λ)) Qᵀ is positive definite with
    # ‖K⁻¹‖ ≤ 1/λ.  A rank-4 float32 U of size 1e3 has Gram rounding ~1e-2 ≫ λ.
    # Without the clamp (w + λ) the fallback's K⁻¹ had eigenvalues down to
    # -237 (numpy; -138 to -237 on the other backends): an indefinite
    # "inverse" of an SPD matrix, returned without error.
    lam = 1e-3
    U = 1e3 * make_U(10, 30, np.logspace(0, -1, 4), seed=12)
    real = backend.cholesky

    def failing(A, **kw):
        raise backend.CholeskyError("simulated breakdown")

    monkeypatch.setattr(woodbury.backend, "cholesky", failing)
    with pytest.warns(FactorizationWarning, match="eigendecomposition"):
        W = Woodbury(from_numpy(xp, U, "float32"), lam, refine=False)
    monkeypatch.setattr(woodbury.backend, "cholesky", real)
    assert W.method == "eigh"
    Kinv = to_numpy(W.coefficients(from_numpy(xp, np.eye(10), "float32"))).astype(np.float64)
    ev = np.linalg.eigvalsh(0.5 * (Kinv + Kinv.T))
    # float32 rounding of a matrix of norm 1/λ: |error| ≤ 1e3·eps32/λ ≈ 0.1
    # (measured: min eigenvalue ≥ -2.5e-5, max ≤ 1000.0003)
    assert ev.min() >= -1e3 * EPS32 / lam
    assert ev.max() <= (1 + 1e3 * EPS32) / lam


def test_complex_right_hand_side_rejected(xp):
    # Safeguard: woodbury.py Woodbury._prepare, complex b/r → TypeError.
    # Without it numpy cast the complex b to float64 (dropping the imaginary
    # part, a ComplexWarning only) and returned a real x for a complex system.
    U = from_numpy(xp, np.random.default_rng(40).standard_normal((3, 6)))
    W = Woodbury(U, 0.5)
    b = xp.asarray(np.random.default_rng(41).standard_normal(6) * (1 + 2j))
    r = xp.asarray(np.random.default_rng(42).standard_normal(3) * (1 - 1j))
    with pytest.raises(TypeError, match="b must be real"):
        W.solve(b)
    with pytest.raises(TypeError, match="r must be real"):
        W.solve_sample(r)
    with pytest.raises(TypeError, match="r must be real"):
        W.coefficients(r)


# ---------------------------------------------------------------------------
# nystrom.py: LowRankPSD
# ---------------------------------------------------------------------------


def test_from_factor_rejects_nonfinite(xp):
    # Safeguard: nystrom.py LowRankPSD.from_factor, `backend.all_finite(B)`.
    # Without it a factor with NaN was accepted and its solve returned NaN.
    B = np.random.default_rng(43).standard_normal((6, 2))
    B[3, 1] = np.nan
    with pytest.raises(ValueError, match="B contains NaN or Inf"):
        LowRankPSD.from_factor(from_numpy(xp, B))
    B[3, 1] = np.inf
    with pytest.raises(ValueError, match="B contains NaN or Inf"):
        LowRankPSD.from_factor(from_numpy(xp, B))


def test_factor_solve_with_a_second_damping(xp):
    # Safeguard: nystrom.py LowRankPSD.solve keeps its Woodbury factor keyed
    # by the damping (`self._solvers.get(damping)`), so a new damping is a new
    # factorisation.  Reusing the cached factor regardless of damping returned
    # the solve for the first damping: relative error 3.0 at the second (numpy).
    rng = np.random.default_rng(44)
    B = rng.standard_normal((12, 3))
    b = rng.standard_normal(12)
    F = LowRankPSD.from_factor(from_numpy(xp, B))
    for lam in (0.5, 2.0, 0.5):
        ref = np.linalg.solve(B @ B.T + lam * np.eye(12), b)
        x = to_numpy(F.solve(from_numpy(xp, b), lam))
        # κ ≤ (‖B‖² + λ)/λ ≈ 60: 100·κ·eps
        assert np.linalg.norm(x - ref) <= 100 * 60 * EPS64 * np.linalg.norm(ref)


def test_full_rank_eigen_form_solve_at_tiny_damping(xp):
    # Safeguard: nystrom.py LowRankPSD.solve drops (b − VVᵀb)/λ when ℓ = n
    # (that term is 0 in exact arithmetic; computed it is eps·‖b‖).  Without
    # the drop, at λ = 1e-10 the rounding of b − VVᵀb divided by λ gave a
    # relative error of 1.1e-5 (numpy); the solve is accurate to κ·eps, κ ≈ 4.
    n, lam = 10, 1e-10
    V = _orthogonal(n, seed=45)
    s = np.linspace(1.0, 4.0, n)[::-1].copy()
    b = np.random.default_rng(46).standard_normal(n)
    L = LowRankPSD(from_numpy(xp, V), from_numpy(xp, s))
    ref = V @ ((V.T @ b) / (s + lam))
    x = to_numpy(L.solve(from_numpy(xp, b), lam))
    assert np.linalg.norm(x - ref) <= 100 * 4 * EPS64 * np.linalg.norm(ref)


def test_full_rank_factor_form_solve_at_tiny_damping(xp):
    # Safeguard: nystrom.py LowRankPSD.solve on a factor form with ℓ = n uses
    # Woodbury(side="parameter") (factor BBᵀ + λI itself) instead of the
    # push-through formula (b − B K⁻¹ Bᵀ b)/λ, which cancels for λ ≪ ‖B‖².
    # With side="sample" forced the relative error at λ = 1e-10 was 3.6e-6
    # (numpy), against a bound of 100·κ·eps ≈ 9e-14.
    n, lam = 10, 1e-10
    Q1, Q2 = _orthogonal(n, seed=47), _orthogonal(n, seed=48)
    B = (Q1 * np.linspace(1.0, 2.0, n)) @ Q2.T  # κ(BBᵀ + λI) ≈ 4
    b = np.random.default_rng(49).standard_normal(n)
    F = LowRankPSD.from_factor(from_numpy(xp, B))
    ref = np.linalg.solve(B @ B.T + lam * np.eye(n), b)
    x = to_numpy(F.solve(from_numpy(xp, b), lam))
    assert np.linalg.norm(x - ref) <= 100 * 4 * EPS64 * np.linalg.norm(ref)


# ---------------------------------------------------------------------------
# nystrom.py: the stable Nyström core
# ---------------------------------------------------------------------------


def test_nystrom_grows_jitter_for_rounding_level_negative_eigenvalues(xp):
    # Safeguard: nystrom.py _core, the jitter ν grows by 10 when the Cholesky
    # of ΩᵀY_ν breaks down (up to √eps·‖Y‖): a matrix that is PSD up to
    # rounding (eigenvalues −1e-13 and −3e-14 next to 1, as an assembled
    # kernel matrix has) must be approximated, not refused.  With _NotPSD
    # raised at the first breakdown (no growth) nystrom raised "A is not
    # positive semidefinite" on this matrix.
    n = 12
    Q = _orthogonal(n, seed=50)
    w = np.concatenate([np.logspace(0, -6, n - 2), [-1e-13, -3e-14]])
    A = (Q * w) @ Q.T
    A = 0.5 * (A + A.T)
    A_psd = (Q * np.maximum(w, 0.0)) @ Q.T
    approx = nystrom(from_numpy(xp, A), n, seed=3)
    # the first jitter eps·‖Y‖_F ≈ 4e-16 was too small; measured ν = 2.3e-13
    assert approx.jitter > 1e-13
    # ν is removed again (s = max(0, σ² − ν)): the approximation is A with its
    # negative part clamped, to rounding (measured 3e-16).  Safeguard too:
    # with s = σ² (ν not removed) the two clamped eigenvalues came out as
    # 2.0e-13 and 1.3e-13 instead of 0.
    np.testing.assert_allclose(np.sort(to_numpy(approx.s)), np.sort(np.maximum(w, 0.0)), rtol=0, atol=50 * EPS64)
    assert np.abs(to_numpy(approx.to_dense()) - A_psd).max() <= 100 * EPS64


@pytest.mark.parametrize("method", ["svd", "cholesky"])
def test_nystrom_near_overflow_commutes_with_scaling(xp, method):
    # Safeguard: nystrom.py _core works on Y/2ᵏ (k from max|Y|) and scales
    # the result back, so that ‖Y‖_F and ΩᵀY cannot overflow.  For A of size
    # 2^1000 ≈ 1e301 with scale = 1 (no rescaling) ‖Y‖_F overflowed to Inf:
    # numpy raised "SVD did not converge" (method="svd") and "B contains NaN or
    # Inf" (method="cholesky").  Nyström commutes with scaling, so Â(cA) = c·Â(A).
    rng = np.random.default_rng(51)
    G = rng.standard_normal((30, 4)) * np.array([1.0, 0.5, 0.2, 0.1])
    A = G @ G.T  # rank 4 < ℓ: recovered exactly
    c = 2.0**1000
    approx = nystrom(from_numpy(xp, c * A), 6, seed=4, method=method)
    D = to_numpy(approx.to_dense()) / c
    # measured 2.1e-14 on every backend
    assert np.abs(D - A).max() <= 1e3 * EPS64 * np.abs(A).max()


# ---------------------------------------------------------------------------
# nystrom.py / woodbury.py: arguments refused before any work is done
# ---------------------------------------------------------------------------


class _CountingMatvec:
    """``x ↦ A x`` counting its calls (a user's operator)."""

    def __init__(self, A):
        self.A, self.calls = A, 0

    def __call__(self, x):
        self.calls += 1
        return self.A @ x


def test_nystrom_solvers_refuse_bad_damping_and_b_before_sketching(xp):
    # Safeguards: nystrom.py nystrom_pcg validates `damping ≥ 0`, and
    # nystrom_solve `damping > 0`, and _prepare_system validates b, before the
    # sketch calls A.  Removed (each of the three, measured on numpy), the
    # sketch called A 8 times before the same ValueError came from a later
    # check (NystromPreconditioner, LowRankPSD.solve, cg).
    A = np.random.default_rng(52).standard_normal((20, 5))
    A = from_numpy(xp, A @ A.T)
    b = from_numpy(xp, np.random.default_rng(53).standard_normal(20))
    user = _CountingMatvec(A)
    op = from_matvec(user, (20, 20), A.dtype)
    with pytest.raises(ValueError, match="damping must be a finite non-negative"):
        nystrom_pcg(op, b, 8, damping=-1.0, seed=0)
    assert user.calls == 0
    with pytest.raises(ValueError, match="damping must be a finite positive"):
        nystrom_solve(op, b, 8, damping=0.0, seed=0)
    assert user.calls == 0
    bad_b = from_numpy(xp, np.array([np.nan] + [1.0] * 19))
    for solve in (nystrom_pcg, nystrom_solve):
        with pytest.raises(ValueError, match="b contains NaN or Inf"):
            solve(op, bad_b, 8, damping=0.5, seed=0)
        assert user.calls == 0


def test_woodbury_solve_checks_b_before_factoring(xp, monkeypatch):
    # Safeguard: woodbury.py woodbury_solve validates b's shape before the
    # O(N²P) Gram matrix and factorisation.  Removed, a b of the wrong shape
    # was found only after the Gram matrix had been formed and factored.
    U = from_numpy(xp, np.random.default_rng(54).standard_normal((4, 9)))
    formed = []
    real_gram = woodbury.backend.gram
    monkeypatch.setattr(woodbury.backend, "gram", lambda M: formed.append(1) or real_gram(M))
    with pytest.raises(ValueError, match=r"b must have shape \(9,\)"):
        woodbury.woodbury_solve(U, from_numpy(xp, np.ones(4)), 0.5)
    assert formed == []


def test_preconditioner_from_an_empty_approximation_is_the_identity(xp):
    # Safeguard: nystrom.py NystromPreconditioner, `s.shape[0] == 0` → the
    # identity.  An approximation of A = 0 with damping 0 keeps no
    # eigenpair (all s ≤ n·eps·s_1 = 0), as does a rank-0 LowRankPSD.
    # Removed, building the preconditioner raised IndexError (s[-1] of an
    # empty array).
    n = 7
    x = np.random.default_rng(56).standard_normal((n, 2))
    zero = nystrom(from_numpy(xp, np.zeros((n, n))), 3, seed=0)
    empty = LowRankPSD(from_numpy(xp, np.zeros((n, 0))), from_numpy(xp, np.zeros(0)))
    for approx, damping in ((zero, 0.0), (empty, 0.0), (empty, 0.3)):
        P = NystromPreconditioner(approx, damping)
        np.testing.assert_array_equal(to_numpy(P @ from_numpy(xp, x)), x)


# ---------------------------------------------------------------------------
# series.py: an hvp that uses its argument as scratch space
# ---------------------------------------------------------------------------

_N_SERIES = 8
_H_SPD = symmetric_matrix(np.linspace(0.5, 2.0, _N_SERIES), seed=57)
_H_INDEF = symmetric_matrix(np.array([-2.0, -1.2, -0.6, 0.4, 0.8, 1.1, 1.6, 2.5]), seed=58)
_G = np.random.default_rng(59).standard_normal(_N_SERIES)

_SERIES_RUNS = {
    # neumann with rtol: the true-residual verification calls hvp on x
    "neumann": (lambda h, g: neumann_solve(h, g, alpha=0.5, damping=0.1, terms=200, rtol=1e-10), _H_SPD),
    # without rtol: no verification, the series' own terms are all there is
    "neumann-terms": (lambda h, g: neumann_solve(h, g, alpha=0.5, damping=0.1, terms=100), _H_SPD),
    "sfn-series": (lambda h, g: saddle_free_solve(h, g, damping=0.5, scale=4.0, terms=20), _H_INDEF),
    "sfn-lanczos": (lambda h, g: saddle_free_solve(h, g, damping=0.5, terms=6, method="lanczos"), _H_INDEF),
}


@pytest.mark.parametrize("name", list(_SERIES_RUNS))
def test_series_hvp_writing_into_its_argument_after_the_product(xp, name):
    # Safeguards: series.py gives hvp a fresh copy (_copy) of x in the final
    # verification product (_neumann_result: `A(_copy(xp, run.x))`,
    # _sfn_verified: `H(_copy(xp, x))`), and krylov.lanczos (used by
    # method="lanczos") a copy of its basis vector.  This hvp computes H v
    # correctly and then zeroes v (scratch space), so the result must equal a
    # well-behaved hvp's, bit for bit.  Copies removed (measured on numpy):
    # without the copy in _neumann_result the returned x was zeroed (MAXITER,
    # true residual 0.21); without the one in _sfn_verified x was zeroed
    # (MAXITER, residual lower bound 0.23); without lanczos's copy
    # (`apply(q)`) saddle_free_solve(method="lanczos") was MAXITER with lower
    # bound 0.71.
    # The series' own vectors (t in the Neumann sum, u and w in the
    # saddle-free one) are copied too: before they were, this hvp made
    # neumann_solve without rtol return CONVERGED with a relative error of
    # 0.70, and the runs with a verification end in MAXITER.
    if "jax" in xp.__name__:
        pytest.skip("JAX arrays cannot be written into: the two runs are the same computation")
    solve, H = _SERIES_RUNS[name]
    Hx = from_numpy(xp, H)
    g = from_numpy(xp, _G)
    clean = solve(lambda v: Hx @ v, g)
    assert clean.converged, clean.info
    last = clean.stats["hvps"]
    calls = []

    def scratch(v):
        calls.append(1)
        y = Hx @ v
        write_into(v)
        return y

    res = solve(scratch, g)
    assert len(calls) == last
    np.testing.assert_array_equal(to_numpy(g), _G)
    assert res.status is clean.status and res.iterations == clean.iterations, res.info
    np.testing.assert_array_equal(to_numpy(res.x), to_numpy(clean.x))


def test_automatic_step_and_scale_for_a_zero_hessian(xp):
    # Safeguards: series.py _ritz_extremes returns (0, 0) when the Lanczos
    # tridiagonal is zero (`c == 0.0`, instead of eigh(T / 0)), and
    # _sfn_series falls back to scale V = 1 when the estimate gives V = 0
    # (`if not scale > 0.0`).  H = 0 (a flat region): (H + λI)⁻¹ v = v/λ.
    # Without the c == 0 guard neumann_solve returned NONFINITE ("hvp
    # returned NaN or Inf while estimating the spectrum"); without the V
    # fallback saddle_free_solve raised ZeroDivisionError.
    lam = 0.5
    v = np.random.default_rng(60).standard_normal(_N_SERIES)
    zero_hvp = lambda u: 0.0 * u  # noqa: E731
    res = neumann_solve(zero_hvp, from_numpy(xp, v), alpha="auto", damping=lam, terms=100, rtol=1e-12)
    assert res.converged and res.status is SolveStatus.CONVERGED, res.info
    np.testing.assert_allclose(to_numpy(res.x), v / lam, rtol=1e-12)
    # (|H| + λI)⁻¹ g = g/λ by the series Σ c_k g (X = I): it converges like
    # k^(-1/2), so 40 terms do not reach 1% and the result says so (MAXITER);
    # its residual lower bound is a proven bound on the true residual.
    res = saddle_free_solve(zero_hvp, from_numpy(xp, v), damping=lam, terms=40)
    assert res.status is SolveStatus.MAXITER, res.info
    x = to_numpy(res.x)
    true_rel = np.linalg.norm(lam * x - v) / np.linalg.norm(v)
    assert res.stats["residual_lower_bound"] <= true_rel * (1 + 1e-12)
    assert np.linalg.norm(x - v / lam) <= 0.1 * np.linalg.norm(v / lam)  # measured 0.066


def _nan_from_call(H, at):
    """``u ↦ H u``, NaN from call ``at`` on, and its call counter."""
    calls = []

    def hvp(u):
        calls.append(1)
        y = H @ u
        return y * float("nan") if len(calls) >= at else y

    return hvp, calls


def test_neumann_zero_rhs_and_early_failures(xp):
    # Safeguards of series.py neumann_solve (each removed alone, numpy):
    # * `norm_v == 0.0` → x = 0, CONVERGED, no product.  Removed: v/‖v‖ = NaN
    #   and a zero v was reported NONFINITE.
    # * alpha="auto": `lo + damping <= 0` stops before summing (INDEFINITE,
    #   x zero, only the estimate's products).  Removed: the sum ran on and
    #   stopped INDEFINITE after 12 products with a non-zero partial sum.
    # * NaN at the first check: the best partial sum has an infinite residual
    #   (`not math.isfinite(res_norm)`) → x = 0 with residual ‖v‖.  Removed:
    #   x was the first partial sum α·v (iterations 1) with residual Inf.
    # * NaN in the verification product (`not math.isfinite(true)`) →
    #   NONFINITE.  Removed: MAXITER with true residual NaN.
    Hx = from_numpy(xp, _H_SPD)
    v = from_numpy(xp, _G)
    norm_v = np.linalg.norm(_G)
    calls = []

    def counted(u):
        calls.append(1)
        return Hx @ u

    res = neumann_solve(counted, v * 0.0, alpha=0.5, damping=0.1)
    assert res.converged and res.status is SolveStatus.CONVERGED and calls == []
    np.testing.assert_array_equal(to_numpy(res.x), np.zeros(_N_SERIES))

    Hneg = from_numpy(xp, _H_INDEF)
    res = neumann_solve(lambda u: Hneg @ u, v, alpha="auto", damping=0.1)
    assert res.status is SolveStatus.INDEFINITE, res.info
    assert res.stats["hvps"] == 8 and res.iterations == 0  # Lanczos stops at n = 8 steps
    np.testing.assert_array_equal(to_numpy(res.x), np.zeros(_N_SERIES))

    hvp, calls = _nan_from_call(Hx, 1)
    res = neumann_solve(hvp, v, alpha=0.5, damping=0.1, terms=50)
    assert res.status is SolveStatus.NONFINITE and res.iterations == 0
    assert res.residual_norm == pytest.approx(norm_v, rel=1e-14)
    np.testing.assert_array_equal(to_numpy(res.x), np.zeros(_N_SERIES))

    clean = neumann_solve(lambda u: Hx @ u, v, alpha=0.5, damping=0.1, terms=200, rtol=1e-10)
    hvp, calls = _nan_from_call(Hx, clean.stats["hvps"])  # NaN at the verification only
    res = neumann_solve(hvp, v, alpha=0.5, damping=0.1, terms=200, rtol=1e-10)
    assert res.status is SolveStatus.NONFINITE and not res.converged, res.info


@pytest.mark.parametrize("method", ["series", "lanczos"])
def test_saddle_free_nan_in_the_verification_product(xp, method):
    # Safeguard: series.py _sfn_verified, `not math.isfinite(lb)` → NONFINITE
    # when the one extra product that checks x returns NaN.  Removed, the NaN
    # lower bound passed both comparisons (`lb > 0.01` is False for NaN) and
    # the result was reported CONVERGED, with residual_lower_bound = nan.
    Hx = from_numpy(xp, _H_INDEF)
    g = from_numpy(xp, _G)
    run = lambda h: saddle_free_solve(h, g, damping=0.5, scale=4.0, terms=40, method=method)  # noqa: E731
    clean = run(lambda u: Hx @ u)
    assert clean.converged, clean.info
    hvp, calls = _nan_from_call(Hx, clean.stats["hvps"])  # NaN at the verification only
    res = run(hvp)
    assert len(calls) == clean.stats["hvps"]
    assert res.status is SolveStatus.NONFINITE and not res.converged, res.info


# ---------------------------------------------------------------------------
# krylov.py: an operator that uses its argument as scratch space
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["cg", "minres"])
@pytest.mark.parametrize("when", ["first", "last"])
def test_krylov_operator_writing_into_x_at_start_and_verification(xp, solver, when):
    # Safeguards: krylov.py hands the operator a copy of x where the solver
    # keeps x: the start residual `b − A(copy of x0)` (_Problem.start) and the
    # true-residual verification `b − A(copy of x)` (_restarted).  This
    # operator computes A v correctly and then zeroes v, at the first call
    # (the start, x0 given) or at the last (the verification); the result
    # must equal a well-behaved operator's bit for bit.  (Other calls are
    # left alone: cg and minres pass their live direction vectors, which the
    # docs do not promise to protect.)  Removed (numpy, cg and minres alike):
    # without the verification copy x came back all zeros, reported
    # CONVERGED with the residual of the true x; without the start copy the
    # zeroed x was caught by the verification and fixed by a restart, at 27
    # products instead of 14.
    n = 12
    rng = np.random.default_rng(61)
    A = symmetric_matrix(np.linspace(1.0, 10.0, n), seed=62)
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    Ax = from_numpy(xp, A)
    solve = cg if solver == "cg" else minres
    run = lambda fn: solve(from_matvec(fn, (n, n), Ax.dtype), from_numpy(xp, b), x0=from_numpy(xp, x0), rtol=1e-10)  # noqa: E731
    clean = run(lambda v: Ax @ v)
    assert clean.converged, clean.info
    at = 1 if when == "first" else clean.stats["matvecs"]
    calls = []

    def scratch(v):
        calls.append(1)
        y = Ax @ v
        if len(calls) == at:
            write_into(v)
        return y

    res = run(scratch)
    assert res.status is clean.status and res.stats["matvecs"] == clean.stats["matvecs"], res.info
    np.testing.assert_array_equal(to_numpy(res.x), to_numpy(clean.x))
    ref = np.linalg.solve(A, b)
    assert np.linalg.norm(to_numpy(res.x) - ref) <= 1e-8 * np.linalg.norm(ref)

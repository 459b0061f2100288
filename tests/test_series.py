"""Tests of natgrad.linalg.series: Neumann series, saddle-free Newton (series
and Lanczos) and Wynn's ε-algorithm, on every backend, against float64
eigendecomposition references."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import from_numpy, symmetric_matrix, to_numpy
from natgrad import backend
from natgrad.linalg import SolveStatus, series
from natgrad.linalg.series import neumann_solve, saddle_free_solve, wynn_epsilon


# ---------------------------------------------------------------------------
# problems and references
# ---------------------------------------------------------------------------


def indefinite_spectrum(n: int, lo: float, hi: float, seed: int) -> np.ndarray:
    """|eigenvalues| log-spaced in [lo, hi] with random signs (both present)."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], n)
    signs[0], signs[1] = -1.0, 1.0
    return np.logspace(np.log10(lo), np.log10(hi), n) * signs


def problem(n: int, eigs: np.ndarray, seed: int):
    H = symmetric_matrix(eigs, seed)
    g = np.random.default_rng(seed + 100).standard_normal(n)
    return H, g


def sfn_reference(H: np.ndarray, g: np.ndarray, lam: float, variant: str = "damped") -> np.ndarray:
    w, U = np.linalg.eigh(H)
    f = 1.0 / (np.abs(w) + lam) if variant == "damped" else 1.0 / np.sqrt(w**2 + lam)
    return U @ (f * (U.T @ g))


def rel_err(x, ref) -> float:
    return float(np.linalg.norm(to_numpy(x) - ref) / np.linalg.norm(ref))


def best_krylov_error(H: np.ndarray, g: np.ndarray, ref: np.ndarray, k: int) -> float:
    """Smallest relative error of any vector in span{g, Hg, …, H^(k−1) g}: a
    lower bound for every method that uses k − 1 products with H."""
    Q = np.zeros((len(g), 0))
    q = g / np.linalg.norm(g)
    for _ in range(k):
        Q = np.column_stack([Q, q])
        w = H @ q
        for _ in range(2):
            w = w - Q @ (Q.T @ w)
        q = w / np.linalg.norm(w)
    return float(np.linalg.norm(Q @ (Q.T @ ref) - ref) / np.linalg.norm(ref))


class Counting:
    """hvp from a dense matrix, counting its calls."""

    def __init__(self, xp, H):
        self.H = from_numpy(xp, H)
        self.calls = 0

    def __call__(self, v):
        self.calls += 1
        return self.H @ v


# ---------------------------------------------------------------------------
# coefficients
# ---------------------------------------------------------------------------


def paper_recursion_exact(terms: int, mu: Fraction) -> list[Fraction]:
    """c_0 = 1/(1+μ), c_k = (c_{k−1} + (−1)^k binom(1/2, k)) / (1 − μ²), in
    exact rational arithmetic (the paper's recursion, no rounding)."""
    c = [1 / (1 + mu)]
    b = Fraction(1)
    for k in range(1, terms):
        b = b * (Fraction(1, 2) - (k - 1)) / k  # binom(1/2, k)
        c.append((c[-1] + (-1) ** k * b) / (1 - mu * mu))
    return c


@pytest.mark.parametrize("mu", [Fraction(0), Fraction(1, 10), Fraction(1, 2), Fraction(9, 10)])
def test_damped_coefficients_match_paper_recursion(mu):
    # 60 terms: the paper's recursion in floating point would lose
    # (1/(1 − 0.81))^60 ≈ 1e43 in relative accuracy at μ = 0.9.
    exact = paper_recursion_exact(60, mu)
    got = series._damped_coefficients(60, float(mu))
    for k, (a, b) in enumerate(zip(got, exact)):
        assert abs(a - float(b)) <= 1e-14 * abs(float(b)) + 1e-300, (k, a, float(b))


@pytest.mark.parametrize("mu", [0.0, 0.3, 1.0, 2.5])
def test_damped_coefficients_generate_the_function(mu):
    x = 0.5
    c = series._damped_coefficients(200, mu)
    value = math.fsum(ck * x**k for k, ck in enumerate(c))
    assert value == pytest.approx(1.0 / (math.sqrt(1 - x) + mu), rel=1e-13)


def test_quasi_coefficients():
    d = series._quasi_coefficients(8)
    assert d == [math.comb(2 * k, k) / 4**k for k in range(8)]
    x = 0.3
    d = series._quasi_coefficients(200)
    assert math.fsum(dk * x**k for k, dk in enumerate(d)) == pytest.approx((1 - x) ** -0.5, rel=1e-13)


# ---------------------------------------------------------------------------
# saddle-free series
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("variant", ["damped", "quasi"])
def test_saddle_free_series_matches_eigendecomposition(xp, lam, variant):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=1), seed=1)
    if variant == "quasi" and lam == 0.0:
        lam = 0.05
    ref = sfn_reference(H, g, lam, variant)
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=lam, terms=40, variant=variant)
    assert res.converged, res.info
    assert res.iterations == 40
    assert math.isnan(res.residual_norm)
    assert rel_err(res.x, ref) <= 1e-6
    assert res.x.dtype == from_numpy(xp, g).dtype


def test_series_error_decreases_with_terms_and_acceleration_helps(xp):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.1, 1.0, seed=2), seed=2)
    lam = 0.05
    ref = sfn_reference(H, g, lam)
    hv = Counting(xp, H)
    gx = from_numpy(xp, g)
    scale = 0.6  # λ_max(H²)/2 = 0.5
    plain = [rel_err(saddle_free_solve(hv, gx, damping=lam, scale=scale, terms=K, accelerate=False).x, ref)
             for K in (10, 20, 40, 80)]
    # Monotone decrease; the rate is set by the smallest |h| = 0.1:
    # (1 − 0.01/0.6)^K, so each doubling of K must gain at least a factor 1.15.
    for a, b in zip(plain, plain[1:]):
        assert b < a / 1.15, plain
    acc = [rel_err(saddle_free_solve(hv, gx, damping=lam, scale=scale, terms=K).x, ref)
           for K in (10, 20, 40, 80)]
    for p, a in zip(plain[1:], acc[1:]):
        assert a < p / 5, (plain, acc)
    # measured: 5e-5 against 2.5e-2 for the plain sum at K = 80
    assert acc[-1] < plain[-1] / 100
    # the accelerated sum of K terms beats the plain sum of 2K terms
    for p2, a in zip(plain[1:], acc[:-1]):
        assert a < p2, (plain, acc)


def test_series_hvp_count_and_info(xp):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=3), seed=3)
    hv = Counting(xp, H)
    res = saddle_free_solve(hv, from_numpy(xp, g), damping=0.1, scale=0.7, terms=12)
    # 2 per term after the first, and one that verifies the result
    assert hv.calls == 2 * 11 + 1 == res.stats["hvps"]
    assert "23 Hessian-vector products" in res.info
    assert res.status is SolveStatus.CONVERGED and res.stats["restarts"] == 0
    hv.calls = 0
    res = saddle_free_solve(hv, from_numpy(xp, g), damping=0.1, terms=12)
    assert hv.calls == 2 * 11 + series._ESTIMATE_STEPS + 1 == res.stats["hvps"]
    assert f"{hv.calls} Hessian-vector products" in res.info
    hv.calls = 0
    res = saddle_free_solve(hv, from_numpy(xp, g), damping=0.1, terms=12, method="lanczos")
    assert hv.calls == 13 + 1 == res.stats["hvps"] and "restarts" not in res.stats


@pytest.mark.parametrize("method, terms", [("series", 10), ("series", 40), ("lanczos", 5), ("lanczos", 15)])
def test_error_estimate_in_stats(xp, method, terms):
    n = 40
    H, g = problem(n, indefinite_spectrum(n, 0.05, 1.0, seed=8), seed=8)
    ref = sfn_reference(H, g, 0.1)
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=0.1, terms=terms, method=method)
    assert math.isnan(res.residual_norm)
    est, err = res.stats["error_estimate"], rel_err(res.x, ref)
    assert isinstance(est, float) and 0 < est < 1
    # not called converged with an estimate above 10% (5 Lanczos steps: ~0.2) or
    # a relative residual provably above 1% (10 series terms: ≥ 6.7e-2)
    lb = res.stats["residual_lower_bound"]
    assert res.converged == (est <= series._MAX_ESTIMATE and lb <= series._CONSISTENCY), res.info
    assert res.converged == ((method, terms) in (("series", 40), ("lanczos", 15)))
    assert res.status is (SolveStatus.CONVERGED if res.converged else SolveStatus.MAXITER)
    assert f"{est:.3e}" in res.info
    # a heuristic, not a bound: of the right size for Lanczos, an underestimate for the series
    if method == "lanczos":
        assert est <= err <= 10 * est
    else:
        assert est <= err <= 100 * est


@pytest.mark.parametrize("variant", ["damped", "quasi"])
def test_too_small_scale_is_detected(xp, variant):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.2, 1.0, seed=4), seed=4)
    lam = 0.1
    # λ_max(H²) = 1: the series needs scale > 0.5 (+ λ/2 for "quasi").
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=lam, scale=0.3,
                            terms=60, variant=variant)
    assert res.status is SolveStatus.DIVERGED and not res.converged
    assert math.isnan(res.stats["error_estimate"])
    assert "scale" in res.info and "diverges" in res.info
    x = to_numpy(res.x)
    assert np.all(np.isfinite(x))
    # the returned partial sum is not garbage: no larger than the exact answer allows
    assert np.linalg.norm(x) <= 2 * np.linalg.norm(sfn_reference(H, g, lam, variant))


def test_scale_just_above_threshold_converges(xp):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=5), seed=5)
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=0.2, scale=0.51, terms=60)
    assert res.converged, res.info
    assert rel_err(res.x, sfn_reference(H, g, 0.2)) <= 1e-6


def test_automatic_scale_restarts_after_an_underestimate(xp, monkeypatch):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=6), seed=6)
    # Pretend the Lanczos estimate saw only |λ| ≤ 0.4 (true: 1).
    monkeypatch.setattr(series, "_ritz_extremes", lambda *a: (-0.4, 0.4))
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=0.1, terms=60)
    assert res.converged, res.info
    assert "restarting" in res.info and res.stats["restarts"] >= 1
    assert rel_err(res.x, sfn_reference(H, g, 0.1)) <= 1e-5


def test_nonfinite_hvp_is_reported(xp):
    n = 10
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=7), seed=7)
    Hx = from_numpy(xp, H)
    calls = []

    def bad(v):
        calls.append(1)
        y = Hx @ v
        return y * xp.nan if len(calls) > 3 else y

    res = saddle_free_solve(bad, from_numpy(xp, g), damping=0.1, scale=1.0, terms=10)
    assert res.status is SolveStatus.NONFINITE and "NaN" in res.info
    assert res.stats["hvps"] == len(calls)
    x = to_numpy(res.x)
    assert np.all(np.isfinite(x)) and np.any(x != 0)  # the last finite partial sum
    calls.clear()
    res = saddle_free_solve(bad, from_numpy(xp, g), damping=0.1, terms=10, method="lanczos")
    assert res.status is SolveStatus.NONFINITE and "NaN" in res.info
    assert res.stats["hvps"] == len(calls) and bool(xp.all(xp.isfinite(res.x)))
    calls.clear()
    res = saddle_free_solve(bad, from_numpy(xp, g), damping=0.1, terms=10)  # while estimating the scale
    assert res.status is SolveStatus.NONFINITE and res.stats["hvps"] == len(calls)


def test_zero_gradient(xp):
    g = from_numpy(xp, np.zeros(5))
    res = saddle_free_solve(Counting(xp, np.eye(5)), g, damping=0.1)
    assert res.converged and float(xp.max(xp.abs(res.x))) == 0.0


def test_float32(xp):
    # Small n (Lanczos reaches the invariant space) keeps JAX's float32
    # compilations few; the check is dtype preservation and float32 accuracy.
    n = 8
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=8), seed=8)
    Hx = from_numpy(xp, H, "float32")
    g32 = from_numpy(xp, g, "float32")
    ref = sfn_reference(H, g, 0.1)
    for method, terms in (("series", 40), ("lanczos", n)):
        res = saddle_free_solve(lambda v: Hx @ v, g32, damping=0.1, scale=0.6, terms=terms,
                                method=method)
        assert res.converged, res.info
        assert res.x.dtype == g32.dtype
        assert rel_err(res.x, ref) <= 1e-5  # ~100 float32 eps


# ---------------------------------------------------------------------------
# saddle-free Lanczos
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["damped", "quasi"])
@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_lanczos_matches_eigendecomposition(xp, variant, lam):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=9), seed=9)
    if variant == "quasi" and lam == 0.0:
        lam = 0.01
    ref = sfn_reference(H, g, lam, variant)
    hv = Counting(xp, H)
    res = saddle_free_solve(hv, from_numpy(xp, g), damping=lam, terms=20, method="lanczos",
                            variant=variant)
    assert res.converged, res.info
    assert hv.calls == 21 + 1 and "22 Hessian-vector products" in res.info  # + the verification
    # Within a factor 3 of the best vector of the 20-dim Krylov space (the
    # ratio measured is ≤ 1.03), and small in absolute terms (measured ≤ 5.5e-5).
    err = rel_err(res.x, ref)
    assert err <= 3 * best_krylov_error(H, g, ref, 20)
    assert err <= 1e-4


def test_lanczos_beats_series_per_hvp(xp):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.05, 1.0, seed=10), seed=10)
    ref = sfn_reference(H, g, 0.05)
    gx = from_numpy(xp, g)
    series_err = rel_err(saddle_free_solve(Counting(xp, H), gx, damping=0.05, scale=0.6, terms=21).x, ref)
    lanczos_err = rel_err(saddle_free_solve(Counting(xp, H), gx, damping=0.05, terms=39,
                                            method="lanczos").x, ref)
    assert lanczos_err < series_err / 10  # both: 40 products


def test_lanczos_exact_when_krylov_space_is_full(xp):
    n = 12
    H, g = problem(n, indefinite_spectrum(n, 1e-3, 1.0, seed=11), seed=11)
    ref = sfn_reference(H, g, 1e-2)
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=1e-2, terms=50, method="lanczos")
    assert res.converged and "exact" in res.info
    assert rel_err(res.x, ref) <= 1e-9


def test_lanczos_error_decreases(xp):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.02, 1.0, seed=12), seed=12)
    ref = sfn_reference(H, g, 0.02)
    errs = [rel_err(saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=0.02, terms=k,
                                      method="lanczos").x, ref) for k in (6, 12, 24)]
    assert errs[0] > errs[1] > errs[2]
    for k, err in zip((6, 12, 24), errs):
        assert err <= 3 * best_krylov_error(H, g, ref, k), (k, errs)


@pytest.mark.parametrize("variant", ["damped", "quasi"])
def test_lanczos_singular_without_damping(xp, variant):
    H = symmetric_matrix(np.array([1.0, -2.0, 0.0, 0.5]), seed=13)
    g = np.array([1.0, 1.0, 1.0, -1.0])
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=0.0, terms=5,
                            method="lanczos", variant=variant)
    assert res.status is SolveStatus.SINGULAR and not res.converged and "damping" in res.info
    assert bool(xp.all(xp.isfinite(res.x)))
    # the same problem with damping is fine
    res = saddle_free_solve(Counting(xp, H), from_numpy(xp, g), damping=0.1, terms=5,
                            method="lanczos", variant=variant)
    assert res.converged and rel_err(res.x, sfn_reference(H, g, 0.1, variant)) <= 1e-10


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8), lam=st.sampled_from([0.0, 0.05, 0.3]))
def test_property_small_indefinite(seed, n, lam):
    import array_api_compat.numpy as xp

    eigs = np.random.default_rng(seed).uniform(0.3, 1.0, n) * np.random.default_rng(seed + 1).choice([-1, 1], n)
    H, g = problem(n, eigs, seed)
    ref = sfn_reference(H, g, lam)
    res = saddle_free_solve(Counting(xp, H), g, damping=lam, terms=n, method="lanczos")
    assert res.converged and rel_err(res.x, ref) <= 1e-9
    res = saddle_free_solve(Counting(xp, H), g, damping=lam, terms=40)
    assert res.converged and rel_err(res.x, ref) <= 1e-6


# ---------------------------------------------------------------------------
# Neumann series
# ---------------------------------------------------------------------------


def spd(n: int, lo: float, hi: float, seed: int):
    eigs = np.logspace(np.log10(lo), np.log10(hi), n)
    return problem(n, eigs, seed)


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_neumann_matches_solve(xp, lam):
    n = 30
    A, v = spd(n, 0.2, 1.0, seed=20)
    ref = np.linalg.solve(A + lam * np.eye(n), v)
    hv = Counting(xp, A)
    res = neumann_solve(hv, from_numpy(xp, v), alpha=1.0, damping=lam, terms=120)
    assert res.converged and res.status is SolveStatus.CONVERGED, res.info
    assert rel_err(res.x, ref) <= 1e-9
    assert hv.calls == 120 == res.stats["hvps"] and "120 Hessian-vector products" in res.info
    true_res = np.linalg.norm(v - (A + lam * np.eye(n)) @ to_numpy(res.x))
    assert res.residual_norm == pytest.approx(true_res, rel=1e-4, abs=1e-13)


def test_neumann_auto_alpha_and_rtol(xp):
    n = 30
    A, v = spd(n, 0.5, 20.0, seed=21)  # alpha = 1 would diverge (λ_max = 20)
    ref = np.linalg.solve(A + 0.5 * np.eye(n), v)
    hv = Counting(xp, A)
    res = neumann_solve(hv, from_numpy(xp, v), alpha="auto", damping=0.5, terms=2000, rtol=1e-8)
    assert res.converged, res.info
    assert res.residual_norm <= 1e-8 * np.linalg.norm(v)
    assert rel_err(res.x, ref) <= 1e-7
    assert res.iterations < 2000
    # + one product verifying the true residual
    assert hv.calls == res.iterations + series._ESTIMATE_STEPS + 1 == res.stats["hvps"]


def test_neumann_rtol_not_met(xp):
    A, v = spd(30, 0.01, 1.0, seed=22)
    res = neumann_solve(Counting(xp, A), from_numpy(xp, v), alpha=1.0, terms=10, rtol=1e-8)
    assert res.status is SolveStatus.MAXITER and not res.converged and "increase terms" in res.info
    assert res.iterations == 10


def test_neumann_error_decreases_with_terms(xp):
    A, v = spd(30, 0.05, 1.0, seed=23)
    ref = np.linalg.solve(A, v)
    errs = [rel_err(neumann_solve(Counting(xp, A), from_numpy(xp, v), alpha=1.0, terms=K).x, ref)
            for K in (10, 40, 160)]
    assert errs[0] > 1.5 * errs[1] > 2.25 * errs[2]


def test_neumann_alpha_too_large(xp):
    A, v = spd(30, 0.1, 1.0, seed=24)
    res = neumann_solve(Counting(xp, A), from_numpy(xp, v), alpha=2.5, terms=200)
    assert res.status is SolveStatus.DIVERGED and not res.converged
    assert "alpha" in res.info and "too large" in res.info
    assert bool(xp.all(xp.isfinite(res.x)))
    assert res.residual_norm <= np.linalg.norm(v)


@pytest.mark.parametrize("alpha", [0.5, "auto"])
def test_neumann_negative_curvature_reported(xp, alpha):
    n = 30
    H, v = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=25), seed=25)
    res = neumann_solve(Counting(xp, H), from_numpy(xp, v), alpha=alpha, damping=0.1, terms=300)
    assert res.status is SolveStatus.INDEFINITE and not res.converged
    assert "damping" in res.info
    assert bool(xp.all(xp.isfinite(res.x)))


def test_neumann_enough_damping_makes_indefinite_work(xp):
    n = 30
    H, v = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=26), seed=26)
    ref = np.linalg.solve(H + 1.5 * np.eye(n), v)
    res = neumann_solve(Counting(xp, H), from_numpy(xp, v), alpha="auto", damping=1.5, terms=300, rtol=1e-10)
    assert res.converged, res.info
    assert rel_err(res.x, ref) <= 1e-9


def test_neumann_auto_restarts_after_an_underestimate(xp, monkeypatch):
    A, v = spd(30, 0.2, 1.0, seed=27)
    monkeypatch.setattr(series, "_ritz_extremes", lambda *a: (0.05, 0.2))
    res = neumann_solve(Counting(xp, A), from_numpy(xp, v), alpha="auto", terms=500, rtol=1e-10)
    assert res.converged, res.info
    assert res.stats["restarts"] >= 1
    assert "reduced" in res.info
    assert rel_err(res.x, np.linalg.solve(A, v)) <= 1e-8


def test_neumann_nonfinite_hvp_mid_sum(xp):
    A, v = spd(20, 0.2, 1.0, seed=28)
    ref = np.linalg.solve(A, v)
    Ax = from_numpy(xp, A)
    calls = []
    # The sum is tested every `interval` terms (1 on the CPU, 10 on a GPU:
    # backend.sync_interval), one HVP per term.  The NaN comes from the HVP
    # after the first test (6 on the CPU, 15 on a GPU), so that a partial sum
    # was verified before it.
    interval = backend.sync_interval(from_numpy(xp, v))
    fault = 5 + interval

    def bad(u):
        calls.append(1)
        return Ax @ u * (xp.nan if len(calls) == fault else 1.0)

    res = neumann_solve(bad, from_numpy(xp, v), alpha=1.0, terms=50)
    assert res.status is SolveStatus.NONFINITE and not res.converged
    # found at the first test at or after the faulty term: no later HVP
    assert res.stats["hvps"] == len(calls) == -(-fault // interval) * interval
    x = to_numpy(res.x)
    assert np.all(np.isfinite(x))
    # the tested partial sum with the smallest residual before the NaN (the
    # residual falls monotonically here: eigenvalues of I − A in [0, 0.8]):
    # the last test before the fault, 5 terms on the CPU, 10 on a GPU
    assert res.iterations == (fault - 1) // interval * interval
    assert res.residual_norm == pytest.approx(np.linalg.norm(v - A @ x), rel=1e-8)
    assert rel_err(res.x, ref) < 1.0


# ---------------------------------------------------------------------------
# Wynn epsilon
# ---------------------------------------------------------------------------


def test_wynn_exact_for_geometric_modes(xp):
    # S_j = S + a r^j + b s^j: ε_4 is exact for two modes (Shanks e_2).
    S = np.array([1.0, -2.0, 0.5])
    a = np.array([1.0, 0.3, -0.2])
    b = np.array([-0.5, 1.0, 0.7])
    seq = [from_numpy(xp, S + a * 0.9**j + b * (-0.7) ** j) for j in range(7)]
    r = wynn_epsilon(seq, order=2)
    assert r.order == 2
    np.testing.assert_allclose(to_numpy(r.x), S, rtol=0, atol=1e-9)
    r1 = wynn_epsilon(seq, order=1)
    assert np.linalg.norm(to_numpy(r1.x) - S) > 1e-4  # one order is not enough for two modes


def test_wynn_converged_sequence_no_division_by_zero(xp):
    S = from_numpy(xp, np.array([1.0, 2.0]))
    seq = [S + 0.5, S + 0.25, S, S, S]
    r = wynn_epsilon(seq)
    assert r.error == 0.0
    np.testing.assert_allclose(to_numpy(r.x), [1.0, 2.0])


def test_wynn_improves_a_slow_sequence(xp):
    s = np.cumsum([(-1) ** k / (k + 1) for k in range(12)])  # → ln 2
    seq = xp.stack([from_numpy(xp, np.array([v, -v])) for v in s])
    r = wynn_epsilon(seq)
    assert abs(float(to_numpy(r.x)[0]) - math.log(2)) < 1e-8 < abs(s[-1] - math.log(2))
    assert 0 < r.error < 1e-5


def test_wynn_bad_input(xp):
    v = from_numpy(xp, np.ones(3))
    with pytest.raises(ValueError, match="at least 3"):
        wynn_epsilon([v, v])
    with pytest.raises(ValueError, match="shape"):
        wynn_epsilon([v, v, from_numpy(xp, np.ones(4))])
    with pytest.raises(ValueError, match="NaN"):
        wynn_epsilon([v, v, v * xp.nan])
    with pytest.raises(ValueError, match="order"):
        wynn_epsilon([v, v, v], order=2)
    with pytest.raises(TypeError, match="sequence"):
        wynn_epsilon([1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------
# inputs are not mutated
# ---------------------------------------------------------------------------


def test_inputs_not_mutated(xp):
    n = 30
    H, g = problem(n, indefinite_spectrum(n, 0.3, 1.0, seed=30), seed=30)
    gx = from_numpy(xp, g)
    Hx = from_numpy(xp, H)
    for method in ("series", "lanczos"):
        saddle_free_solve(lambda v: Hx @ v, gx, damping=0.1, terms=10, method=method)
    neumann_solve(lambda v: Hx @ v, gx, alpha=0.5, damping=1.5, terms=10)
    seq = [gx, 0.5 * gx, 0.25 * gx + 1.0]
    wynn_epsilon(seq)
    np.testing.assert_array_equal(to_numpy(gx), g)
    np.testing.assert_array_equal(to_numpy(Hx), H)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("solve", ["sfn", "neumann"])
def test_bad_input(xp, solve):
    n = 6
    H = from_numpy(xp, np.diag(np.arange(1.0, n + 1)))
    g = from_numpy(xp, np.ones(n))

    def call(hvp=lambda v: H @ v, v=g, **kw):
        if solve == "sfn":
            kw.setdefault("damping", 0.1)
            return saddle_free_solve(hvp, v, **kw)
        kw.setdefault("alpha", 0.1)
        return neumann_solve(hvp, v, **kw)

    with pytest.raises(TypeError, match="hvp must be callable"):
        call(hvp=H)
    with pytest.raises(ValueError, match=r"hvp \(call 1\) returned shape \(5,\)"):
        call(hvp=lambda v: (H @ v)[:5])
    with pytest.raises(TypeError, match=r"hvp \(call 1\) returned dtype"):
        call(hvp=lambda v: xp.astype(H @ v, xp.float32))
    with pytest.raises(TypeError, match=r"hvp \(call 1\) must return an array"):
        call(hvp=lambda v: [0.0] * n)
    with pytest.raises(ValueError, match="damping"):
        call(damping=-0.1)
    with pytest.raises(ValueError, match="terms"):
        call(terms=0)
    with pytest.raises(TypeError, match="terms"):
        call(terms=2.5)
    name = "g" if solve == "sfn" else "v"
    with pytest.raises(ValueError, match=f"{name} contains NaN"):
        call(v=g * xp.nan)
    with pytest.raises(ValueError, match=f"{name} must be a vector"):
        call(v=xp.reshape(g, (n, 1)))
    with pytest.raises(TypeError, match=f"{name} must be an array"):
        call(v=[1.0] * n)
    if solve == "sfn":
        with pytest.raises(ValueError, match="scale"):
            call(scale=0.0)
        with pytest.raises(ValueError, match="variant"):
            call(variant="exact")
        with pytest.raises(ValueError, match="method"):
            call(method="cg")
        with pytest.raises(TypeError, match="accelerate"):
            call(accelerate="yes")
        with pytest.raises(ValueError, match="accelerate"):
            call(accelerate=-1)
        with pytest.raises(ValueError, match="accelerate=5"):
            call(accelerate=5, terms=6)
        with pytest.raises(TypeError, match="damping"):
            saddle_free_solve(lambda v: H @ v, g, damping=None)
    else:
        with pytest.raises(ValueError, match="alpha"):
            call(alpha=0.0)
        with pytest.raises(ValueError, match="alpha"):
            call(alpha="fast")
        with pytest.raises(ValueError, match="rtol"):
            call(rtol=-1.0)

"""Faults in the low-rank solvers (issue 18), on every backend.

* ``nystrom``, ``nystrom_pcg`` and ``nystrom_solve`` with the operator given
  as a user's matvec (``from_matvec``, applied column by column to the
  sketch): NaN, Inf, the user's exception, a wrong shape, ×1e±150 or a
  matvec writing into its argument, from call 1, 2 or a late call.
* ``Woodbury`` / ``woodbury_solve`` and the methods ``solve``,
  ``coefficients``, ``solve_sample``, where the faults are in the data:
  NaN/Inf in ``U`` or the right-hand side, a singular ``UUᵀ`` with zero or
  rounding-level damping, scales of 1e±150, float32.

Each ends in a natgrad error naming the argument (and the call, for the
operator), the user's exception unchanged, or a finite answer; a solver
result says ``converged=True`` only when it is true of the operator as it
behaves at the end.  Never a foreign exception or an overflow/invalid-value
warning (``tests.faults.outcome``); inputs never change.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from helpers import from_numpy, to_numpy
from natgrad import backend
from natgrad.linalg import FactorizationWarning, Woodbury, from_matvec, woodbury_solve
from natgrad.linalg.nystrom import LowRankPSD, nystrom, nystrom_pcg, nystrom_solve
from natgrad.validation import CallableOutputError, NonFiniteOutputError
from tests.faults import (
    BREAKING,
    FAILED,
    KINDS,
    Fault,
    InjectedFault,
    assert_honest_solve,
    outcome,
    writable,
)

N, RANK, DAMPING, RTOL = 40, 8, 1e-2, 1e-8
#: a call inside CG, after the RANK column products of the sketch
LATE = 14

_rng = np.random.default_rng(0)
_X = _rng.standard_normal((N, 2))
_K = np.exp(-0.5 * ((_X[:, None] - _X[None]) ** 2).sum(-1))  # PSD RBF kernel
_B = _rng.standard_normal(N)

CALLS = {
    "nystrom": lambda A, b: nystrom(A, RANK, seed=0, like=b),
    "nystrom_pcg": lambda A, b: nystrom_pcg(A, b, RANK, damping=DAMPING, seed=0, rtol=RTOL, maxiter=200),
    "nystrom_solve": lambda A, b: nystrom_solve(A, b, RANK, damping=DAMPING, seed=0),
}


@pytest.mark.parametrize("at", [1, 2, LATE])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(CALLS))
def test_nystrom_operator_fault(xp, name, kind, at):
    Kx = from_numpy(xp, _K)
    fault = Fault(lambda v: Kx @ v, kind, at)
    A = from_matvec(fault, (N, N), Kx.dtype)
    b = from_numpy(xp, _B)
    out = outcome(lambda: CALLS[name](A, b), "A")
    np.testing.assert_array_equal(to_numpy(b), _B)
    if out.raised:
        assert fault.fired, repr(out.error)
        if kind == "raise":
            assert isinstance(out.error, InjectedFault)
        elif kind == "shape":
            assert isinstance(out.error, CallableOutputError)
            assert f"A (call {fault.calls})" in str(out.error)
        elif kind in ("nan", "inf"):
            assert isinstance(out.error, NonFiniteOutputError) and "A (call" in str(out.error)
        else:
            # a scaled or zeroed operator mid-sketch: the sketch is not PSD
            assert isinstance(out.error, ValueError) and "positive semidefinite" in str(out.error)
        return
    value = out.value
    if name == "nystrom":
        assert isinstance(value, LowRankPSD)
        assert np.all(np.isfinite(to_numpy(value.V))) and np.all(np.isfinite(to_numpy(value.s)))
        assert not (kind in BREAKING and fault.fired and fault.calls <= RANK)
        return
    if name == "nystrom_solve":
        assert np.all(np.isfinite(to_numpy(value)))
        assert backend.namespace(x=value) is backend.namespace(b=b) and value.dtype == b.dtype
        assert not (kind in BREAKING and fault.fired)
        return
    res = value
    assert backend.namespace(x=res.x) is backend.namespace(b=b) and res.x.dtype == b.dtype
    if kind in BREAKING and fault.fired:
        assert not res.converged and res.status in FAILED, res.info
    assert_honest_solve(res, fault.final(_K, b) + DAMPING * np.eye(N), _B, RTOL)


def test_nystrom_pcg_shape_fault_in_cg_names_the_call(xp):
    """Issue 18: a wrong shape at a later call of a column-wise matvec raised
    NumPy's bare "all input arrays must have the same shape"."""
    Kx = from_numpy(xp, _K)
    for at in (2, 7, LATE):
        fault = Fault(lambda v: Kx @ v, "shape", at)
        with pytest.raises(CallableOutputError, match=rf"A \(call {at}\)"):
            nystrom_pcg(from_matvec(fault, (N, N), Kx.dtype), from_numpy(xp, _B), RANK, damping=DAMPING, seed=0)


def test_nystrom_pcg_matvec_writing_into_its_argument(xp):
    """A matvec that zeroes its argument changes a copy, never the sketch or
    CG's vectors: the operator it implements is zero, and A + λI = λI is solved."""
    if not writable(from_numpy(xp, _B)):
        pytest.skip("JAX arrays cannot be written into")
    Kx = from_numpy(xp, _K)
    fault = Fault(lambda v: Kx @ v, "write", 1)
    res = nystrom_pcg(from_matvec(fault, (N, N), Kx.dtype), from_numpy(xp, _B), RANK, damping=DAMPING,
                      seed=0, rtol=RTOL)
    assert res.converged, res.info
    np.testing.assert_allclose(to_numpy(res.x), _B / DAMPING, rtol=1e-10)


def test_nystrom_solve_rank_deficient_without_damping(xp):
    """Damping 0 with a rank-deficient operator: (Â + 0·I)⁻¹ does not exist;
    a clear error names the damping (nystrom_pcg: a failure status)."""
    G = np.random.default_rng(1).standard_normal((N, 3))
    A = from_numpy(xp, G @ G.T)
    b = from_numpy(xp, _B)
    with pytest.raises(ValueError, match="damping"):
        nystrom_solve(A, b, RANK, damping=0.0, seed=0)
    res = outcome(lambda: nystrom_pcg(A, b, RANK, damping=0.0, seed=0, rtol=RTOL, maxiter=200), "A").value
    assert_honest_solve(res, G @ G.T, _B, RTOL)
    assert not res.converged  # b is not in the range of a rank-3 A


@pytest.mark.parametrize("scale", [1e150, 1e-150])
def test_nystrom_extreme_scale_from_the_start(xp, scale):
    """An operator scaled by 1e±150 from the start (damping and b with it):
    the same solution in float64."""
    A = from_numpy(xp, _K * scale)
    b = from_numpy(xp, _B * scale)
    ref = np.linalg.solve(_K + DAMPING * np.eye(N), _B)
    res = outcome(lambda: nystrom_pcg(A, b, RANK, damping=DAMPING * scale, seed=0, rtol=RTOL), "A").value
    assert res.converged, res.info
    assert np.linalg.norm(to_numpy(res.x) - ref) <= 1e-6 * np.linalg.norm(ref)
    G = np.random.default_rng(2).standard_normal((N, 5))  # rank 5 ≤ RANK: sketch-and-solve is exact
    A5 = from_numpy(xp, (G @ G.T) * scale)
    x = outcome(lambda: nystrom_solve(A5, b, RANK, damping=DAMPING * scale, seed=0), "A").value
    ref5 = np.linalg.solve(G @ G.T + DAMPING * np.eye(N), _B)
    assert np.linalg.norm(to_numpy(x) - ref5) <= 1e-6 * np.linalg.norm(ref5)


# ---------------------------------------------------------------------------
# Woodbury: faults in the data
# ---------------------------------------------------------------------------

NW, PW = 12, 30


def _U(seed: int = 3, rank: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if rank is None:
        return rng.standard_normal((NW, PW))
    return rng.standard_normal((NW, rank)) @ rng.standard_normal((rank, PW))


def _poison(a: np.ndarray, kind: str) -> np.ndarray:
    a = a.copy()
    a.reshape(-1)[a.size // 2] = np.nan if kind == "nan" else np.inf
    return a


METHODS = {
    "woodbury_solve": lambda U, lam, b, r: woodbury_solve(U, b, lam),
    "solve": lambda U, lam, b, r: Woodbury(U, lam).solve(b),
    "coefficients": lambda U, lam, b, r: Woodbury(U, lam).coefficients(r),
    "solve_sample": lambda U, lam, b, r: Woodbury(U, lam).solve_sample(r),
}


def _reference(method: str, U: np.ndarray, lam: float, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    if method in ("woodbury_solve", "solve"):
        return np.linalg.solve(lam * np.eye(PW) + U.T @ U, b)
    alpha = np.linalg.solve(lam * np.eye(NW) + U @ U.T, r)
    return alpha if method == "coefficients" else U.T @ alpha


@pytest.mark.parametrize("where", ["U", "rhs"])
@pytest.mark.parametrize("kind", ["nan", "inf"])
@pytest.mark.parametrize("method", list(METHODS))
def test_woodbury_nonfinite_data_names_the_argument(xp, method, kind, where):
    U, b, r = _U(), np.ones(PW), np.ones(NW)
    rhs_name = "b" if method in ("woodbury_solve", "solve") else "r"
    if where == "U":
        U = _poison(U, kind)
    elif rhs_name == "b":
        b = _poison(b, kind)
    else:
        r = _poison(r, kind)
    Ux, bx, rx = from_numpy(xp, U), from_numpy(xp, b), from_numpy(xp, r)
    out = outcome(lambda: METHODS[method](Ux, 0.1, bx, rx), where if where == "U" else rhs_name)
    assert out.raised and isinstance(out.error, ValueError), out
    assert "NaN" in str(out.error)


def _exact_sample_direction(U: np.ndarray, lam: float, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``α = (λI + UUᵀ)⁻¹ r`` and ``Uᵀα`` for the float64 data as given,
    in exact rational arithmetic (Gaussian elimination on Fractions; 12×12),
    rounded to float64 at the end: a reference without rounding error."""
    Uq = [[Fraction(float(v)) for v in row] for row in U]
    n, p = U.shape
    rows = [[Fraction(float(lam)) * (i == j) + sum(Uq[i][k] * Uq[j][k] for k in range(p))
             for j in range(n)] + [Fraction(float(r[i]))] for i in range(n)]
    for k in range(n):
        pivot = max(range(k, n), key=lambda i: abs(rows[i][k]))
        rows[k], rows[pivot] = rows[pivot], rows[k]
        for i in range(k + 1, n):
            f = rows[i][k] / rows[k][k]
            rows[i] = [a - f * c for a, c in zip(rows[i], rows[k])]
    alpha = [Fraction(0)] * n
    for i in reversed(range(n)):
        alpha[i] = (rows[i][n] - sum(rows[i][j] * alpha[j] for j in range(i + 1, n))) / rows[i][i]
    x = [sum(Uq[i][j] * alpha[i] for i in range(n)) for j in range(p)]
    return np.array([float(a) for a in alpha]), np.array([float(v) for v in x])


@pytest.mark.parametrize("method", list(METHODS))
def test_woodbury_singular_gram_zero_damping(xp, method):
    """UUᵀ singular (rank 3 < N): damping 0 is refused naming the damping;
    a damping far below rounding takes the documented fallback
    (FactorizationWarning) or succeeds, and the answer is finite and solves
    the damped system as well as its conditioning allows."""
    U = _U(rank=3)
    b, r = np.random.default_rng(4).standard_normal(PW), np.random.default_rng(5).standard_normal(NW)
    Ux, bx, rx = from_numpy(xp, U), from_numpy(xp, b), from_numpy(xp, r)
    out = outcome(lambda: METHODS[method](Ux, 0.0, bx, rx), "damping")
    assert out.raised and isinstance(out.error, ValueError)
    lam = 1e-12 * np.linalg.norm(U, 2) ** 2
    x = outcome(lambda: METHODS[method](Ux, lam, bx, rx), "U").value
    x = to_numpy(x)
    assert np.all(np.isfinite(x))
    if method in ("solve_sample",):
        # The minimum-norm least-squares direction Uᵀ(λI + UUᵀ)⁻¹r: well
        # conditioned in λ, but not in rounding: α = (λI + UUᵀ)⁻¹r is of size
        # ‖r‖/λ along null(Uᵀ), which Uᵀ cancels, so a backward-stable solve
        # ((M + δM)α̂ = r, ‖δM‖ ≈ eps·‖M‖, M = λI + UUᵀ) and the product Uᵀα̂
        # (rounding eps·‖U‖·‖α‖) leave, to first order,
        #   ‖x̂ − x‖ ≤ eps·(‖UᵀM⁻¹‖·‖M‖ + ‖U‖)·‖α‖,
        # here 5.9·cond(M)·eps ≈ 1.3e-3 relative (cond(M) ≈ 1e12).  Against
        # the exact answer (rational arithmetic) NumPy's x is off by 1.0e-4;
        # the first GPU run's CuPy x was 1.5e-4 from a float64 reference that
        # is itself 5e-5 off: a fixed 1e-4 sat at the rounding level.
        alpha, ref = _exact_sample_direction(U, lam, r)
        sv = np.linalg.svd(U, compute_uv=False)  # ‖UᵀM⁻¹‖ = max σ/(σ² + λ), ‖M‖ = σ₁² + λ
        eps = np.finfo(np.float64).eps
        bound = eps * (np.max(sv / (sv**2 + lam)) * (sv[0] ** 2 + lam) + sv[0]) * np.linalg.norm(alpha)
        assert np.linalg.norm(x - ref) <= bound
    else:
        M = lam * np.eye(PW) + U.T @ U if method in ("woodbury_solve", "solve") else lam * np.eye(NW) + U @ U.T
        rhs = b if method in ("woodbury_solve", "solve") else r
        # backward error at the rounding level of ‖M‖·‖x‖
        assert np.linalg.norm(M @ x - rhs) <= 1e-9 * np.linalg.norm(M, 2) * np.linalg.norm(x)


@pytest.mark.parametrize("scale", [1e150, 1e-150])
@pytest.mark.parametrize("method", list(METHODS))
def test_woodbury_extreme_scales_consistent_from_the_start(xp, method, scale):
    """U·s with damping·s² (and b·s, r·s, the units of Uᵀr and r): the
    answer of the unscaled problem, rescaled, in float64 (no overflow in
    UUᵀ, no warning)."""
    U, lam = _U(), 0.1
    b, r = np.random.default_rng(6).standard_normal(PW), np.random.default_rng(7).standard_normal(NW)
    ref = _reference(method, U, lam, b, r)
    Ux = from_numpy(xp, U * scale)
    x = outcome(lambda: METHODS[method](Ux, lam * scale**2, from_numpy(xp, b * scale),
                                        from_numpy(xp, r * scale)), "U").value
    # (s²λ + s²UᵀU)⁻¹ (s b) = x/s, (s²λ + s²UUᵀ)⁻¹ (s r) = α/s; solve_sample is scale-free
    got = to_numpy(x) * (1.0 if method == "solve_sample" else scale)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.linalg.norm(ref))


@pytest.mark.parametrize("method", list(METHODS))
def test_woodbury_float32_faults(xp, method):
    """float32: NaN in the data is an error naming it; a tiny damping on a
    singular Gram gives a finite float32 answer (fallback allowed)."""
    U = _U(rank=3).astype(np.float32)
    b, r = np.ones(PW, np.float32), np.ones(NW, np.float32)
    Ux = from_numpy(xp, U, "float32")
    bx, rx = from_numpy(xp, b, "float32"), from_numpy(xp, r, "float32")
    out = outcome(lambda: METHODS[method](from_numpy(xp, _poison(U, "nan"), "float32"), 0.1, bx, rx), "U")
    assert out.raised and "U" in str(out.error)
    x = outcome(lambda: METHODS[method](Ux, 1e-30, bx, rx), "U").value
    assert x.dtype == Ux.dtype and np.all(np.isfinite(to_numpy(x)))
    np.testing.assert_array_equal(to_numpy(Ux), U)


def test_factorization_warning_is_the_documented_fallback(xp):
    U = from_numpy(xp, np.ones((3, 4)))
    with pytest.warns(FactorizationWarning):
        W = Woodbury(U, 1e-20)
    assert W.method in ("cholesky+jitter", "eigh")


# ---------------------------------------------------------------------------
# tracked input
# ---------------------------------------------------------------------------

_LOWRANK = {
    "woodbury_solve": (lambda U, b: woodbury_solve(U, b, 0.1), "U"),
    "nystrom": (lambda A, b: nystrom(A, 4, seed=0), "A"),
}


@pytest.mark.parametrize("name", list(_LOWRANK))
def test_torch_requires_grad_is_refused(name):
    torch = pytest.importorskip("torch")
    call, arg = _LOWRANK[name]
    M = _U() if name == "woodbury_solve" else _K
    A = torch.as_tensor(M).requires_grad_(True)
    b = torch.ones(PW if name == "woodbury_solve" else N, dtype=torch.float64)
    with pytest.raises(backend.TracedArrayError, match=rf"\b{arg}\b"):
        call(A, b)


@pytest.mark.parametrize("name", list(_LOWRANK))
def test_jax_tracer_is_refused(name):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    call, arg = _LOWRANK[name]
    M = jnp.asarray(_U() if name == "woodbury_solve" else _K)
    b = jnp.ones(PW if name == "woodbury_solve" else N)
    with pytest.raises(backend.TracedArrayError, match=rf"\b{arg}\b"):
        jax.jit(lambda A: call(A, b) if name == "woodbury_solve" else call(A, b).s)(M)

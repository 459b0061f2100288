"""Fault injection for the Krylov solvers (issue 18): ``cg`` (with and
without a preconditioner), ``minres`` and ``lanczos`` on every backend.

A user's operator goes wrong at call k (1, 2 and a late call) in each way
:class:`tests.faults.Fault` knows.  Each solve must raise a natgrad error
naming ``A`` and the call (or let the user's own exception through), or
return an honest result: finite ``x``, ``converged=True`` only when the true
residual against the operator *as it behaves at the end* meets the
tolerance, a failure status and an ``info`` otherwise -- and never a
RuntimeWarning (``outcome`` turns one into a failure).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import from_numpy, to_numpy
from natgrad import backend
from natgrad.linalg import SolveStatus, cg, from_matvec, lanczos, minres
from natgrad.validation import CallableOutputError, NonFiniteOutputError
from tests.faults import BREAKING, SCALE, Fault, InjectedFault, assert_finite, assert_honest_solve, outcome, writable

N = 24
LATE = 7  # a call well inside the solve: these systems take ~15-25 iterations


def kernel_system(n: int = N, damping: float = 0.1, k: int | None = None, seed: int = 0):
    """An RBF kernel matrix plus damping (SPD, cond ~ 1e2) and a right-hand side."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    D = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
    K = np.exp(-D / 2.0) + damping * np.eye(n)
    b = rng.standard_normal(n if k is None else (n, k))
    return K, b


def matvec_of(xp, K, dtype):
    Kx = from_numpy(xp, K, dtype)
    return lambda v: Kx @ v


def tolerance(dtype: str, K: np.ndarray) -> tuple[float, float]:
    """(rtol given to the solver, bound on the true residual of a converged x).

    A converged solve has a recursive/verified residual below rtol computed in
    the working precision; the float64 reference residual of the same x can
    differ by the rounding of ``b − A x``: at most ~n·eps·(‖A‖‖x‖ + ‖b‖)/‖b‖
    ≤ n·eps·(cond + 1) (Higham, Accuracy and Stability, §3.5).
    """
    eps = float(np.finfo(dtype).eps)
    rtol = 1e-8 if dtype == "float64" else 1e-4
    return rtol, rtol + K.shape[0] * eps * (np.linalg.cond(K) + 1)


SOLVERS = {
    "cg": lambda A, b, rtol, M=None: cg(A, b, rtol=rtol, M=M),
    "pcg": None,  # cg with a Jacobi preconditioner: built per test
    "minres": lambda A, b, rtol, M=None: minres(A, b, rtol=rtol, M=M),
}


def run_faulty_solve(xp, solver, kind, at, dtype, k, fault_on="A"):
    K, b = kernel_system(k=k, seed=at)
    if kind in SCALE and dtype == "float32":
        pytest.skip("1e±150 is not a float32 number (the fault itself would overflow)")
    rtol, bound = tolerance(dtype, K)
    healthy_A, healthy_M = matvec_of(xp, K, dtype), matvec_of(xp, np.diag(1.0 / np.diag(K)), dtype)
    fault = Fault(healthy_A if fault_on == "A" else healthy_M, kind, at)
    A_fn = fault if fault_on == "A" else healthy_A
    A = from_matvec(A_fn, K.shape, getattr(xp, dtype), matmat=A_fn)
    M = None
    if solver == "pcg" or fault_on == "M":
        M_fn = fault if fault_on == "M" else healthy_M
        M = from_matvec(M_fn, K.shape, getattr(xp, dtype), matmat=M_fn)
    bx = from_numpy(xp, b, dtype)
    b_before = to_numpy(bx).copy()
    call = cg if solver in ("cg", "pcg") else minres
    out = outcome(lambda: call(A, bx, rtol=rtol, M=M), f"{fault_on} (call")
    np.testing.assert_array_equal(to_numpy(bx), b_before)  # b never changes
    return fault, out, K, b, bound


def check_solve(xp, fault, out, K, b, bound, dtype, fault_on="A"):
    if out.raised:
        err = out.error
        assert fault.fired, f"raised before the fault: {err!r}"
        if isinstance(err, InjectedFault):
            assert fault.kind == "raise"
            notes = " ".join(getattr(err, "__notes__", []))
            assert f"{fault_on} (call {fault.at})" in notes, notes
        else:
            assert isinstance(err, CallableOutputError), repr(err)
            assert f"{fault_on} (call {fault.at})" in str(err), str(err)
        return
    res = out.value
    assert res.x.dtype == getattr(xp, dtype) and tuple(res.x.shape) == b.shape
    if fault.fired and fault.kind in BREAKING:
        assert not res.converged, res.info
    A_end = fault.final(K, res.x) if fault_on == "A" else K
    x = assert_finite(res.x, "result.x")
    if fault.kind in ("nan", "inf") and fault.fired:
        assert res.status is SolveStatus.NONFINITE, (res.status, res.info)
        assert "NaN or Inf" in res.info
    assert_honest_solve(res, A_end, b, bound)
    # the reported residual is that of the returned x, against the operator at the end
    if np.all(np.isfinite(A_end @ x.astype(np.float64))) and fault.kind not in BREAKING:
        true = np.max(np.linalg.norm(b - A_end @ x.astype(np.float64), axis=0))
        scale = np.linalg.norm(A_end, 2) * np.max(np.abs(x)) * N * float(np.finfo(dtype).eps)
        assert abs(res.residual_norm - true) <= 1e-3 * true + 10 * scale + 1e-300


KINDS = ("nan", "inf", "raise", "shape", "huge", "tiny", "write")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("at", [1, 2, LATE])
@pytest.mark.parametrize("solver", ["cg", "minres"])
def test_operator_fault_float64_vector(xp, solver, kind, at):
    fault, out, K, b, bound = run_faulty_solve(xp, solver, kind, at, "float64", None)
    check_solve(xp, fault, out, K, b, bound, "float64")
    if kind in SCALE and at == 1 and not out.raised:
        # applied consistently from the start: a well-posed system at another scale
        assert out.value.converged, out.value.info


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", ["cg", "pcg", "minres"])
@pytest.mark.parametrize("dtype,k", [("float32", None), ("float64", 3)])
def test_operator_fault_float32_and_blocks(xp, solver, kind, dtype, k):
    # one fault position per combination: the late call, where the solve is
    # well under way (call 1 and 2 are covered by the float64 vector test)
    fault, out, K, b, bound = run_faulty_solve(xp, solver, kind, LATE, dtype, k)
    check_solve(xp, fault, out, K, b, bound, dtype)


@pytest.mark.parametrize("kind", ["nan", "inf", "raise", "shape", "write"])
@pytest.mark.parametrize("at", [1, LATE])
@pytest.mark.parametrize("solver", ["pcg", "minres"])
def test_preconditioner_fault(xp, solver, kind, at):
    fault, out, K, b, bound = run_faulty_solve(xp, solver, kind, at, "float64", None, fault_on="M")
    check_solve(xp, fault, out, K, b, bound, "float64", fault_on="M")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("at", [1, 2, LATE])
def test_lanczos_fault(xp, kind, at):
    # Lanczos has no residual to verify: NaN/Inf raise NonFiniteOutputError
    # naming A and the call (documented); other faults give finite coefficients.
    K, b = kernel_system(seed=at)
    fault = Fault(matvec_of(xp, K, "float64"), kind, at)
    A = from_matvec(fault, K.shape, xp.float64)
    v0 = from_numpy(xp, b)
    before = to_numpy(v0).copy()
    out = outcome(lambda: lanczos(A, v0, LATE + 1), "A (call")
    np.testing.assert_array_equal(to_numpy(v0), before)
    if out.raised:
        assert fault.fired
        if kind == "raise":
            assert isinstance(out.error, InjectedFault)
        else:
            assert kind in ("nan", "inf", "shape"), repr(out.error)
            assert isinstance(out.error, CallableOutputError)
            assert f"A (call {at})" in str(out.error)
            if kind != "shape":
                assert isinstance(out.error, NonFiniteOutputError) and out.error.call == at
        return
    assert kind not in BREAKING, "lanczos returned coefficients from a NaN/Inf/wrong-shape operator"
    alpha, beta, Q = out.value
    for name, arr in (("alpha", alpha), ("beta", beta), ("Q", Q)):
        assert_finite(arr, name)
    # whatever the operator did, the basis stays orthonormal: an operator that
    # writes into its argument gets a copy, never a column of Q
    Qn = to_numpy(Q)
    np.testing.assert_allclose(Qn.T @ Qn, np.eye(Qn.shape[1]), atol=1e-10)
    if not fault.fired or kind in SCALE and at == 1:
        # healthy or consistently scaled: T is Qᵀ A Q for the operator used
        A_used = fault.final(K, v0)
        Qn = to_numpy(Q)
        T = np.diag(to_numpy(alpha)) + np.diag(to_numpy(beta), 1) + np.diag(to_numpy(beta), -1)
        np.testing.assert_allclose(Qn.T @ A_used @ Qn, T, atol=1e-10 * np.linalg.norm(A_used, 2))


# ---------------------------------------------------------------------------
# extreme scales applied consistently, singular systems, aliasing, tracked input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("a_scale,b_scale", [(1.0, 1e150), (1.0, 1e-150), (1e150, 1.0), (1e-150, 1.0),
                                             (1e150, 1e150), (1e-150, 1e-150), (1e150, 1e-150)])
@pytest.mark.parametrize("solver", ["cg", "pcg", "minres"])
def test_extreme_scales_converge_in_float64(xp, solver, a_scale, b_scale):
    K, b = kernel_system(k=2)
    A, bs = a_scale * K, b_scale * b
    M = from_numpy(xp, np.diag(1.0 / np.diag(A))) if solver == "pcg" else None
    call = minres if solver == "minres" else cg
    res = outcome(lambda: call(from_numpy(xp, A), from_numpy(xp, bs), rtol=1e-8, M=M)).value
    assert res.converged, res.info
    x = to_numpy(res.x)
    assert np.all(np.isfinite(x))
    # relative residual in float64, computed on the unscaled system
    rel = np.linalg.norm(b - K @ (x * (a_scale / b_scale)), axis=0) / np.linalg.norm(b, axis=0)
    assert np.all(rel <= 1e-8 * (1 + 1e-6)), rel
    assert res.residual_norm == pytest.approx(np.max(np.linalg.norm(bs - A @ x, axis=0)), rel=1e-5)


def test_lanczos_extreme_scales(xp):
    K, b = kernel_system()
    ref = np.linalg.eigvalsh(K)
    for a_scale, v_scale in ((1e150, 1.0), (1e-150, 1.0), (1.0, 1e-170), (1.0, 1e170)):
        alpha, beta, Q = outcome(lambda: lanczos(from_numpy(xp, a_scale * K), from_numpy(xp, v_scale * b), N)).value
        T = np.diag(to_numpy(alpha)) + np.diag(to_numpy(beta), 1) + np.diag(to_numpy(beta), -1)
        np.testing.assert_allclose(np.linalg.eigvalsh(T) / a_scale, ref, rtol=1e-8, atol=1e-10)


def low_rank_psd(n=30, rank=5, seed=3):
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, rank))
    return V @ V.T, rng.standard_normal(n)


def test_singular_operator_without_damping_fails_honestly(xp):
    # rank 5 of 30, no damping: b is not in the range, there is no solution
    A, b = low_rank_psd()
    for call, kwargs in ((cg, {}), (minres, {}), (minres, {"shift": 0.0})):
        res = outcome(lambda: call(from_numpy(xp, A), from_numpy(xp, b), rtol=1e-8, **kwargs)).value
        assert not res.converged and res.status is not SolveStatus.CONVERGED
        assert res.info
        x = assert_finite(res.x)
        # never worse than garbage: the residual is at most that of x = 0 (up to rounding growth)
        assert np.linalg.norm(b - A @ x) <= 10 * np.linalg.norm(b)
    # MINRES recognises it: a least-squares solution
    res = minres(from_numpy(xp, A), from_numpy(xp, b), rtol=1e-8)
    assert res.status is SolveStatus.SINGULAR
    # a shift equal to an eigenvalue of a nonsingular matrix: singular again
    K, _ = kernel_system()
    lam = np.linalg.eigvalsh(K)[3]
    res = outcome(lambda: minres(from_numpy(xp, K), from_numpy(xp, b[:N]), shift=float(lam), rtol=1e-10)).value
    assert not res.converged or np.linalg.norm(b[:N] - (K - lam * np.eye(N)) @ to_numpy(res.x)) <= 1e-9 * np.linalg.norm(b[:N])
    assert_finite(res.x)


def test_cg_rtol_zero_ends_in_a_failure_status(xp):
    K, b = kernel_system()
    res = outcome(lambda: cg(from_numpy(xp, K), from_numpy(xp, b), rtol=0.0)).value
    assert not res.converged and res.status in (SolveStatus.MAXITER, SolveStatus.STAGNATION)
    x = assert_finite(res.x)
    assert np.linalg.norm(b - K @ x) <= 1e-12 * np.linalg.norm(b)


@pytest.mark.parametrize("interval", [1, 10])
def test_cg_rtol_zero_underflow_is_not_indefinite(xp, monkeypatch, interval):
    # With rtol = 0 the recursive residual of this SPD system (eigenvalues
    # 0.1..17) falls into the subnormals, where pᵀAp rounds to 0 at iteration
    # 309 before rᵀr does (the first GPU run met this on CuPy; on NumPy this
    # seed shows it).  That is underflow, not an indefinite A: the solve
    # must end as any unreachable tolerance does, on both paths (interval 1:
    # one column tested per step; 10, as on a GPU: the masked step).  Fails
    # without the floor in _cg_cycle on NumPy and array-api-strict.
    monkeypatch.setattr(backend, "sync_interval", lambda x, **kw: interval)
    K, b = kernel_system(n=40, seed=5)
    res = outcome(lambda: cg(from_numpy(xp, K), from_numpy(xp, b), rtol=0.0)).value
    assert res.status in (SolveStatus.MAXITER, SolveStatus.STAGNATION), res.info
    x = assert_finite(res.x)
    assert np.linalg.norm(b - K @ x) <= 1e-12 * np.linalg.norm(b)


@pytest.mark.parametrize("solver", ["cg", "minres"])
def test_writing_operator_never_changes_b_or_x0(xp, solver):
    # The user's operator and preconditioner zero their argument in place
    # (from their first call on): the caller's b and x0 must not change.
    K, b = kernel_system(k=2)
    x0 = 0.1 * np.ones_like(b)
    bx, x0x = from_numpy(xp, b), from_numpy(xp, x0)
    A = from_matvec(Fault(matvec_of(xp, K, "float64"), "write", 1), K.shape, xp.float64)
    M = from_matvec(Fault(lambda v: v, "write", 1), K.shape, xp.float64)
    call = cg if solver == "cg" else minres
    for kwargs in ({"x0": x0x}, {"x0": x0x, "M": M}, {"M": M}):
        res = outcome(lambda: call(A, bx, rtol=1e-8, **kwargs)).value
        np.testing.assert_array_equal(to_numpy(bx), b)
        np.testing.assert_array_equal(to_numpy(x0x), x0)
        assert_finite(res.x)
        assert not res.converged or not writable(bx)
        assert res.x is not x0x


def test_writing_operator_never_changes_lanczos_input(xp):
    K, b = kernel_system()
    v0 = from_numpy(xp, b)
    A = from_matvec(Fault(matvec_of(xp, K, "float64"), "write", 3), K.shape, xp.float64)
    outcome(lambda: lanczos(A, v0, 8))
    np.testing.assert_array_equal(to_numpy(v0), b)


@pytest.mark.parametrize("what", ["A", "b", "x0", "v0"])
def test_tracked_input_is_refused_naming_the_argument(backend_name, xp, what):
    if backend_name not in ("torch", "jax"):
        pytest.skip("only PyTorch and JAX track arrays")
    K, b = kernel_system()
    if backend_name == "torch":
        import torch

        def make(a, tracked):
            t = torch.tensor(a)
            return t.requires_grad_(True) if tracked else t

        def run(f, *args):
            return f(*args)
    else:
        import jax
        import jax.numpy as jnp

        def make(a, tracked):
            return jnp.asarray(a)

        def run(f, *args):
            # every argument marked tracked is traced by jax.jit
            traced = [i for i, (name, _) in enumerate(args) if name == what]
            vals = [a for _, a in args]

            def g(*tr):
                full = list(vals)
                for i, t in zip(traced, tr):
                    full[i] = t
                return f(*[(n, v) for (n, _), v in zip(args, full)])

            return jax.jit(g)(*[vals[i] for i in traced])

    calls = {
        "cg": lambda A, bb, x0: cg(A, bb, x0=x0),
        "minres": lambda A, bb, x0: minres(A, bb, x0=x0),
    }
    if what == "v0":
        args = [("A", make(K, False)), ("v0", make(b, True))]
        fns = {"lanczos": lambda *a: lanczos(a[0][1], a[1][1], 4)}
    else:
        args = [("A", make(K, what == "A")), ("b", make(b, what == "b")), ("x0", make(0 * b, what == "x0"))]
        fns = {name: (lambda *a, _f=f: _f(*[v for _, v in a])) for name, f in calls.items()}
        if what == "A":
            fns["lanczos"] = lambda *a: lanczos(a[0][1], a[1][1], 4)
    for name, f in fns.items():
        with pytest.raises(backend.TracedArrayError, match=what):
            run(f, *args)

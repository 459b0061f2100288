"""Fault injection into the Hessian-vector products of the series solvers
(issue 18): ``neumann_solve`` (given ``alpha`` and ``alpha="auto"``, whose
Lanczos estimate sees the first products) and ``saddle_free_solve`` (the
series with the automatic scale and with a given scale, the ``"quasi"``
variant, and ``method="lanczos"``), on every backend.

Each fault (NaN, Inf, the user's own exception, a wrong shape, ×1e±150, an
``hvp`` writing into its argument) starts at call 1, 2 or a late call.  The
outcome must be a natgrad error naming ``hvp`` and the call, the user's
exception unchanged, or a result with a finite ``x`` that says
``converged=True`` only when it is true of the operator as it behaves at the
end (``tests.faults.assert_honest_solve``); never a foreign exception or an
overflow/invalid-value warning (``tests.faults.outcome``), and the caller's
right-hand side is never changed.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import from_numpy, symmetric_matrix, to_numpy
from natgrad import backend
from natgrad.linalg import SolveStatus
from natgrad.linalg.series import neumann_solve, saddle_free_solve
from natgrad.validation import CallableOutputError
from tests.faults import BREAKING, FAILED, KINDS, SCALE, Fault, InjectedFault, assert_honest_solve, outcome

#: a call inside every solver's run (all of them make more than 20 products)
LATE = 20
N = 40
DAMPING = 0.1

# The Neumann problem: SPD, spectrum in [0.2, 1]; alpha = 1 converges.
_A = symmetric_matrix(np.linspace(0.2, 1.0, N), seed=1)
# The saddle-free problem: indefinite, |eigenvalues| in [0.3, 1].
_signs = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
_H = symmetric_matrix(np.linspace(0.3, 1.0, N) * _signs, seed=2)
_B = np.random.default_rng(3).standard_normal(N)
#: the relative residual a saddle-free result claiming convergence must meet
#: (healthy runs of these configurations reach ≤ 1e-4; see
#: test_healthy_runs_are_accurate); the solver refuses "converged" when
#: one more product proves the residual above 0.1.
SFN_TOL = 0.1
RTOL = {"float64": 1e-8, "float32": 1e-4}


def _neumann(alpha):
    def solve(hvp, b, dtype):
        return neumann_solve(hvp, b, alpha=alpha, damping=DAMPING, terms=400, rtol=RTOL[dtype])

    return solve


def _sfn(**kw):
    def solve(hvp, b, dtype):
        return saddle_free_solve(hvp, b, damping=DAMPING, **kw)

    return solve


#: name -> (solver, matrix, "neumann" | "damped" | "quasi")
SOLVERS = {
    "neumann": (_neumann(1.0), _A, "neumann"),
    "neumann-auto": (_neumann("auto"), _A, "neumann"),
    "sfn-series": (_sfn(terms=30), _H, "damped"),
    "sfn-series-scale": (_sfn(terms=30, scale=0.7), _H, "damped"),
    "sfn-quasi": (_sfn(terms=30, variant="quasi"), _H, "quasi"),
    "sfn-lanczos": (_sfn(terms=30, method="lanczos"), _H, "damped"),
}


def _system(M: np.ndarray, how: str) -> np.ndarray:
    """The matrix whose equation the solver solves, for ``M`` as it is."""
    if how == "neumann":
        return M + DAMPING * np.eye(N)
    w, Q = np.linalg.eigh(M)
    f = np.abs(w) + DAMPING if how == "damped" else np.sqrt(w * w + DAMPING)
    return (Q * f) @ Q.T


def _run(xp, name, kind, at, dtype="float64"):
    solve, M, how = SOLVERS[name]
    Mx = from_numpy(xp, M, dtype)
    fault = Fault(lambda v: Mx @ v, kind, at)
    b = from_numpy(xp, _B, dtype)
    before = to_numpy(b).copy()
    out = outcome(lambda: solve(fault, b, dtype), "hvp")
    np.testing.assert_array_equal(to_numpy(b), before, err_msg="the caller's right-hand side changed")
    if out.raised:
        assert fault.fired, f"raised without a fault: {out.error!r}"
        if kind == "raise":
            assert isinstance(out.error, InjectedFault)
        elif kind == "shape":
            assert isinstance(out.error, CallableOutputError)
            assert f"hvp (call {fault.calls})" in str(out.error)
        else:
            pytest.fail(f"{kind} at call {at} should give a result, not {out.error!r}")
        return None
    res = out.value
    x = res.x
    assert backend.namespace(x=x) is backend.namespace(b=b) and x.dtype == b.dtype
    assert tuple(x.shape) == (N,)
    if kind in BREAKING and fault.fired:
        assert not res.converged and res.status in FAILED, res.info
    tol = RTOL[dtype] if how == "neumann" else SFN_TOL
    assert_honest_solve(res, _system(fault.final(M, b), how), _B, tol)
    return res


@pytest.mark.parametrize("at", [1, 2, LATE])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(SOLVERS))
def test_series_fault_float64(xp, name, kind, at):
    _run(xp, name, kind, at)


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in SCALE])  # 1e±150 is outside float32
@pytest.mark.parametrize("name", ["neumann", "neumann-auto", "sfn-series", "sfn-lanczos"])
def test_series_fault_float32(xp, name, kind):
    _run(xp, name, kind, 2, "float32")


@pytest.mark.parametrize("name", list(SOLVERS))
def test_healthy_runs_are_accurate(xp, name):
    """Without a fault every configuration converges, to well inside the
    tolerances above: the fault tests are not vacuous."""
    res = _run(xp, name, "nan", 10**9)
    assert res.converged and res.status is SolveStatus.CONVERGED, res.info
    _, M, how = SOLVERS[name]
    r = np.linalg.norm(_B - _system(M, how) @ to_numpy(res.x)) / np.linalg.norm(_B)
    assert r <= (1e-8 if how == "neumann" else 1e-4), r


def test_nan_in_the_automatic_estimate_is_a_result_not_linalgerror(xp):
    """Issue 18: NaN (or Inf) from the hvp during alpha='auto' / scale=None
    surfaced as NumPy's "Eigenvalues did not converge"."""
    for kind in ("nan", "inf"):
        for solve in (_neumann("auto"), _sfn(terms=30)):
            _, M, _ = SOLVERS["neumann"]
            Mx = from_numpy(xp, M)
            fault = Fault(lambda v: Mx @ v, kind, 5)
            res = outcome(lambda: solve(fault, from_numpy(xp, _B), "float64"), "hvp").value
            assert res.status is SolveStatus.NONFINITE and "estimat" in res.info
            assert np.all(to_numpy(res.x) == 0.0) and res.stats["hvps"] == 5


def test_a_changed_operator_is_not_called_converged(xp):
    """×1e150 from call 2 on: the recursion's residual no longer is the true
    residual; one more product finds it (before: converged=True)."""
    res = _run(xp, "neumann", "huge", 2)
    assert not res.converged
    res = _run(xp, "sfn-series-scale", "tiny", 2)
    assert not res.converged and res.status is SolveStatus.MAXITER
    assert res.stats["residual_lower_bound"] > SFN_TOL


@pytest.mark.parametrize("scale", [1e150, 1e-150])
@pytest.mark.parametrize("name", ["neumann-auto", "sfn-series", "sfn-lanczos"])
def test_extreme_scale_from_the_start(xp, name, scale):
    """An operator scaled by 1e±150 from the first call (damping scaled with
    it, the right-hand side too): the same answer, scaled, in float64."""
    _, M, how = SOLVERS[name]
    Mx = from_numpy(xp, M * scale)
    b = from_numpy(xp, _B * scale)
    if how == "neumann":
        res = outcome(lambda: neumann_solve(lambda v: Mx @ v, b, alpha="auto", damping=DAMPING * scale,
                                            terms=400, rtol=1e-8), "hvp").value
    else:
        kw = {"method": "lanczos"} if name == "sfn-lanczos" else {}
        res = outcome(lambda: saddle_free_solve(lambda v: Mx @ v, b, damping=DAMPING * scale, terms=30, **kw),
                      "hvp").value
    assert res.converged, res.info
    ref = np.linalg.solve(_system(M, how), _B)
    err = np.linalg.norm(to_numpy(res.x) - ref) / np.linalg.norm(ref)
    assert err <= (1e-7 if how == "neumann" else 1e-4), err


def test_singular_operator_without_damping(xp):
    """H singular and damping 0: (|H| + 0)⁻¹ g does not exist when g has a
    component in the null space.  Lanczos says SINGULAR; the series must not
    call a partial sum converged."""
    w = np.linspace(0.3, 1.0, N) * _signs
    w[:4] = 0.0
    H = symmetric_matrix(w, seed=5)
    Hx = from_numpy(xp, H)
    g = from_numpy(xp, _B)
    for kw in ({"method": "lanczos"}, {}, {"scale": 0.7}):
        res = outcome(lambda: saddle_free_solve(lambda v: Hx @ v, g, damping=0.0, terms=30, **kw), "hvp").value
        assert not res.converged and res.status in FAILED, (kw, res.info)
        assert np.all(np.isfinite(to_numpy(res.x)))
    H0 = symmetric_matrix(np.concatenate([np.zeros(4), np.linspace(0.2, 1.0, N - 4)]), seed=6)
    A0 = from_numpy(xp, H0)
    res = outcome(lambda: neumann_solve(lambda v: A0 @ v, g, alpha="auto", terms=200, rtol=1e-8), "hvp").value
    assert not res.converged and res.status in FAILED, res.info


# ---------------------------------------------------------------------------
# tracked input
# ---------------------------------------------------------------------------

_SOLVES = {
    "neumann_solve": lambda hvp, v: neumann_solve(hvp, v, alpha=0.5, terms=5),
    "saddle_free_solve": lambda hvp, v: saddle_free_solve(hvp, v, damping=0.1, scale=1.0, terms=5),
}


@pytest.mark.parametrize("solver", list(_SOLVES))
def test_torch_requires_grad_is_refused_naming_the_argument(solver):
    torch = pytest.importorskip("torch")
    A = torch.as_tensor(_A)
    v = torch.as_tensor(_B, dtype=torch.float64).requires_grad_(True)
    with pytest.raises(backend.TracedArrayError) as err:
        _SOLVES[solver](lambda u: A @ u, v)
    assert "v" in str(err.value) or "g" in str(err.value)
    assert "detach" in str(err.value)


@pytest.mark.parametrize("solver", list(_SOLVES))
def test_jax_tracer_is_refused_naming_the_argument(solver):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    A = jnp.asarray(_A)
    name = "v" if solver == "neumann_solve" else "g"
    with pytest.raises(backend.TracedArrayError, match=rf"\b{name}\b"):
        jax.jit(lambda v: _SOLVES[solver](lambda u: A @ u, v).x)(jnp.asarray(_B))

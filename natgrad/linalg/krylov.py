r"""Krylov solvers on any array backend: conjugate gradients, MINRES, Lanczos.

One implementation serves NumPy, CuPy, PyTorch, JAX and any other array-API
library: the solvers use only the namespace of their inputs.  On the CPU they
test convergence every iteration (a free check), so they stop at exactly the
iteration SciPy stops at; on a GPU they test every few iterations (each test
makes the host wait for the device) and keep converged columns frozen on the
device in between.

Examples
--------
>>> import numpy as np
>>> from natgrad.linalg import cg
>>> rng = np.random.default_rng(0)
>>> G = rng.standard_normal((50, 50))
>>> A = G @ G.T + 50 * np.eye(50)
>>> b = rng.standard_normal(50)
>>> res = cg(A, b, rtol=1e-10)
>>> res.converged, bool(np.linalg.norm(A @ res.x - b) <= 1e-10 * np.linalg.norm(b))
(True, True)
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from .. import backend, validation
from . import _checks
from .operators import DenseOperator, LinearOperator
from .result import SolveResult, SolveStatus

__all__ = ["cg", "minres", "lanczos", "LanczosResult"]

#: failed true-residual verifications before a solver declares stagnation
_MAX_VERIFY_FAILURES = 4

_CONVERGED = SolveStatus.CONVERGED
_NONFINITE_MESSAGE = (
    "non-finite values at iteration {it}: the operator or the preconditioner produced NaN "
    "or Inf; x is the last finite iterate"
)


def _dot(xp: Any, a: Any, b: Any) -> Any:
    """Column-wise inner products: 0-d for vectors, ``(k,)`` for blocks."""
    # Negative axes: the standard only guarantees those for vecdot.
    return xp.vecdot(a, b, axis=-1 if a.ndim == 1 else -2)


class _Problem:
    """Validated operator, right-hand side and preconditioner of one solve.

    ``A`` and ``M`` are the products as counted callables; a user's
    operator has its output checked at every call (shape, dtype, library;
    not finiteness, which the solvers test on their residual at their sync
    points — see ``_checks.operator_calls``).
    """

    def __init__(self, A: Any, b: Any, x0: Any, M: Any, name_b: str = "b") -> None:
        op = _checks.square_operator(A, "A")
        n = op.shape[0]
        Mop = _checks.preconditioner(M, n, "M")
        self.xp = xp = backend.namespace(
            A=_checks.dense_array(op), b=b, x0=x0, M=_checks.dense_array(Mop)
        )
        validation.rhs(b, n, name_b)
        if x0 is not None:
            validation.same_shape(x0, b, "x0", name_b)
        dense_dtypes = [d for d in (_checks.dense_array(op), _checks.dense_array(Mop)) if d is not None]
        self.dtype = dtype = backend.float_dtype(xp, b, *dense_dtypes)
        self.A = _checks.operator_calls(_cast_dense(op, dtype, xp), "A")
        self.M = None if Mop is None else _checks.operator_calls(_cast_dense(Mop, dtype, xp), "M")
        self.b = xp.astype(b, dtype) if b.dtype != dtype else b
        # The solvers never write into x, so x0 needs no defensive copy.
        if x0 is not None and x0.dtype != dtype:
            x0 = xp.astype(x0, dtype)
        self.x0 = x0
        self.n = n

    def precondition(self, r: Any) -> Any:
        return r if self.M is None else self.M(r)

    def stats(self, history: list[Any] | None, **extra: Any) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "matvecs": self.A.calls,
            "preconditioner_applications": 0 if self.M is None else self.M.calls,
            **extra,
        }
        if history is not None:
            # The norms stayed on the device during the solve: read them now,
            # in one transfer.
            stats["residual_history"] = backend.to_list(self.xp.stack(history))
        return stats


def _cast_dense(op: LinearOperator, dtype: Any, xp: Any) -> LinearOperator:
    if isinstance(op, DenseOperator) and op.array.dtype != dtype:
        # Mixed precision: cast the matrix once (a documented copy).
        return DenseOperator(xp.astype(op.array, dtype))
    return op


def _check_common(
    rtol: Any, atol: Any, maxiter: Any, callback: Any, record_history: Any
) -> tuple[float, float]:
    rtol = validation.nonnegative(rtol, "rtol")
    atol = validation.nonnegative(atol, "atol")
    validation.optional_positive_int(maxiter, "maxiter")
    validation.callable_arg(callback, "callback", optional=True)
    if not isinstance(record_history, bool):
        raise TypeError(f"record_history must be a bool, got {type(record_history).__name__}")
    return rtol, atol


def _tolerance(xp: Any, norm_b: Any, rtol: float, atol: float) -> Any:
    return xp.clip(rtol * norm_b, min=atol)


def _fmt(values: Any, xp: Any) -> float:
    return backend.to_float(xp.max(values))


def cg(
    A: Any,
    b: Any,
    *,
    x0: Any = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Any = None,
    callback: Callable[[Any], Any] | None = None,
    record_history: bool = False,
) -> SolveResult:
    r"""Preconditioned conjugate gradients for ``A x = b``, ``A`` symmetric positive definite.

    Parameters
    ----------
    A : array, LinearOperator or scipy operator, shape (n, n)
        Symmetric positive definite.
    b : array, shape (n,) or (n, k)
        Right-hand side(s).  With ``k`` columns the ``k`` systems are solved
        at once, each with its own step lengths; a column that has converged
        stops changing while the others continue.
    x0 : array, optional
        Starting guess, shaped like ``b`` (zero by default).  Not modified.
    rtol, atol : float
        Stop when ``‖b − A x‖₂ ≤ max(rtol·‖b‖₂, atol)`` (SciPy's rule, per column).
    maxiter : int, optional
        Iteration limit, ``10 n`` by default (as SciPy).
    M : array, LinearOperator or callable, optional
        Preconditioner approximating ``A⁻¹`` (symmetric positive definite).
    callback : callable, optional
        ``callback(xk)`` after every iteration.
    record_history : bool
        Record the residual norm at each convergence check in
        ``stats["residual_history"]`` (off by default).

    Returns
    -------
    SolveResult
        ``x`` in ``b``'s namespace, device and dtype (promoted with a dense
        ``A``'s dtype), ``converged``, ``iterations``, the true residual norm
        (recomputed from ``x``), ``status``, ``stats`` and ``info``.
        ``status`` is one of ``CONVERGED``, ``MAXITER``, ``INDEFINITE``
        (``pᵀAp ≤ 0``: ``A`` is not positive definite, or ``rᵀMr ≤ 0``:
        ``M`` is not; ``info`` says which), ``STAGNATION`` (the true residual
        does not follow the recursive one below the tolerance) or
        ``NONFINITE`` (NaN or Inf from ``A`` or ``M``; ``x`` is the last
        finite iterate).  ``stats``: ``"matvecs"`` (calls of ``A``, each on
        all of ``b``'s columns, including the true-residual checks),
        ``"preconditioner_applications"``, ``"restarts"`` (after a failed
        true-residual check, see Notes) and, with ``record_history``,
        ``"residual_history"``.

    Raises
    ------
    ValueError
        Non-square ``A``, ``b``/``x0``/``M`` of the wrong shape, NaN or Inf in
        a dense ``A``, ``b`` or ``x0``, negative tolerances, ``maxiter ≤ 0``;
        an operator returning the wrong shape
        (:class:`natgrad.validation.CallableOutputError`, naming the call).
    TypeError
        Arrays from two libraries or devices (an operator's output
        included); non-callable ``callback``; non-bool ``record_history``.

    Notes
    -----
    Hestenes–Stiefel CG with preconditioning (Saad, *Iterative Methods for
    Sparse Linear Systems*, 2nd ed., Alg. 9.1)::

        r₀ = b − A x₀,  z₀ = M r₀,  p₀ = z₀
        αⱼ = rⱼᵀzⱼ / pⱼᵀA pⱼ,  xⱼ₊₁ = xⱼ + αⱼ pⱼ,  rⱼ₊₁ = rⱼ − αⱼ A pⱼ
        zⱼ₊₁ = M rⱼ₊₁,  βⱼ = rⱼ₊₁ᵀzⱼ₊₁ / rⱼᵀzⱼ,  pⱼ₊₁ = zⱼ₊₁ + βⱼ pⱼ

    Safeguards beyond the textbook loop:

    * when the recursive residual meets the tolerance, the true residual
      ``b − A x`` is computed; if it does not meet it CG restarts from ``x``
      with the true residual (``p = M r``), so a drifting recursion
      (float32, very ill-conditioned ``A``; cf. CuPy issue 7512) never
      reports false convergence; after five failed checks the tolerance is
      out of reach in this precision: ``STAGNATION``
      (``stats["restarts"]`` counts the restarts).  The residual is not
      replaced at other times: a replacement that keeps the old direction
      ``p`` derails the recursion once the residual is at the attainable
      accuracy (float32 solves then drifted to residuals of 1e10).
    * ``pᵀAp ≤ 0`` or ``rᵀz ≤ 0`` stop the solve before the step is taken
      (``INDEFINITE``).
    * NaN or Inf from ``A`` or ``M`` reaches the residual norm, which is
      tested at every convergence check (``NONFINITE``).  Products are not
      tested one by one: on a GPU each test would be a host
      synchronisation per iteration.

    Host synchronisations: on the CPU every iteration is a convergence check
    (it costs nothing there), so the solve stops where SciPy's does; on an
    accelerator only every ``natgrad.backend.sync_interval(b)`` iterations,
    with converged columns frozen on the device in between.  The residual
    history holds the recursive residual norm (the largest over the
    columns) at those checks, the initial residual first; it is read from
    the device only after the solve.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> res = cg(A, np.array([1.0, 2.0]), rtol=1e-12)
    >>> np.round(res.x, 6)
    array([0.090909, 0.636364])

    Several right-hand sides at once:

    >>> B = np.array([[1.0, 0.0], [2.0, 1.0]])
    >>> bool(np.allclose(A @ cg(A, B, rtol=1e-12).x, B))
    True

    The residual history, and a failure a program can read:

    >>> res = cg(np.diag([1.0, 10.0, 100.0]), np.ones(3), rtol=1e-12, record_history=True)
    >>> len(res.stats["residual_history"]) == res.iterations + 1
    True
    >>> cg(np.diag([1.0, -1.0]), np.ones(2)).status
    <SolveStatus.INDEFINITE: 'indefinite'>
    """
    rtol, atol = _check_common(rtol, atol, maxiter, callback, record_history)
    prob = _Problem(A, b, x0, M)
    xp, b = prob.xp, prob.b
    maxiter = 10 * prob.n if maxiter is None else int(maxiter)
    tol = _tolerance(xp, xp.linalg.vector_norm(b, axis=0), rtol, atol)
    history: list[Any] | None = [] if record_history else None

    if prob.x0 is None:
        x, r = xp.zeros_like(b), xp.asarray(b, copy=True)
    else:
        x = xp.asarray(prob.x0, copy=True)  # updated in place below
        r = b - prob.A(x)
    rnorm2 = _dot(xp, r, r)
    if history is not None:
        history.append(xp.sqrt(xp.max(rnorm2)))
    if backend.to_bool(xp.all(rnorm2 <= tol * tol)):
        return SolveResult(x, True, 0, _fmt(xp.sqrt(rnorm2), xp), _CONVERGED, prob.stats(history, restarts=0),
                           "converged: initial residual meets the tolerance")

    restarts, it, x, r_true, status, message = _cg_iterate(
        prob, x, r, rnorm2, tol * tol, maxiter, callback, history
    )
    return _result(prob, prob.A, x, r_true, it, status, message, maxiter, history, restarts, tol)


def _result(
    prob: _Problem, apply: Callable[[Any], Any], x: Any, r: Any, it: int, status: SolveStatus,
    message: str, maxiter: int, history: list[Any] | None, restarts: int, tol: Any = None,
) -> SolveResult:
    """The :class:`SolveResult` of a Krylov solve; ``r`` is the true residual
    of ``x`` when the solver has it (else one more product computes it)."""
    xp = prob.xp
    if r is None:
        r = prob.b - apply(x)
    rn = _fmt(xp.linalg.vector_norm(r, axis=0), xp)
    if status is _CONVERGED:
        message = f"converged in {it} iterations"
    elif status is SolveStatus.MAXITER:
        message = f"not converged: maxiter={maxiter} reached with residual {rn:.3e}" + (
            f" > tolerance {_fmt(tol, xp):.3e}" if tol is not None else ""
        )
    stats = prob.stats(history, restarts=restarts)
    return SolveResult(x, status is _CONVERGED, it, rn, status, stats, message)


def _cg_iterate(
    prob: _Problem, x: Any, r: Any, rnorm2: Any, tol2: Any, maxiter: int,
    callback: Callable[[Any], Any] | None, history: list[Any] | None,
) -> tuple[int, int, Any, Any, SolveStatus, str]:
    """The CG loop from ``x`` with residual ``r``.

    Returns ``(restarts, iterations, x, true residual of x or None, status,
    message)``.
    The loop is one function, longer than most, because splitting it would
    put a Python call and its argument passing into every iteration.
    """
    xp, b = prob.xp, prob.b
    interval = backend.sync_interval(b)
    # Masked: step lengths chosen per column with xp.where and every test
    # deferred to the sync points (several columns, or an accelerator).
    masked = b.ndim == 2 or interval > 1
    preconditioned = prob.M is not None
    z = prob.precondition(r)
    rho = rnorm2 if not preconditioned else _dot(xp, r, z)
    p = xp.asarray(z, copy=True)
    active = rnorm2 > tol2
    broken = xp.zeros_like(active)  # columns where pᵀAp ≤ 0 or rᵀz ≤ 0 was met
    # The iterate at the last passed check (finite), kept where NaN can reach
    # x between checks (masked); one copy per check, as x is updated in place.
    x_good = xp.asarray(x, copy=True) if masked else None
    restarts = 0  # after failed true-residual checks
    restart = False
    it = 0
    while it < maxiter:
        it += 1
        q = prob.A(p)
        pq = _dot(xp, p, q)
        if masked:
            ok = (pq > 0) & (rho > 0)
            alpha = rho / xp.where(ok, pq, 1.0)
            good = active & ok & xp.isfinite(alpha)
            broken = broken | (active & ~good)
            alpha = xp.where(good, alpha, 0.0)
        else:
            # One column on the CPU: test before the step, so that x never
            # takes a step from a broken or non-finite recurrence.
            pq_f, rho_f = backend.to_float(pq), backend.to_float(rho)
            if not (math.isfinite(pq_f) and math.isfinite(rho_f)):
                return restarts, it, x, None, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
            if not (pq_f > 0 and rho_f > 0):
                return restarts, it, x, None, SolveStatus.INDEFINITE, _breakdown_message(
                    it, preconditioned, not rho_f > 0, pq_f, rho_f
                )
            alpha = rho / pq
        x += alpha * p
        r -= alpha * q
        rnorm2 = _dot(xp, r, r)
        if callback is not None:
            callback(x)
        if masked:
            active = active & ~broken & (rnorm2 > tol2)

        if it % interval == 0 or it == maxiter:
            if history is not None:
                history.append(xp.sqrt(xp.max(rnorm2)))
            # Host synchronisations: non-finite values, breakdown, convergence.
            if not backend.to_bool(xp.all(xp.isfinite(rnorm2))):
                # Unmasked, every step taken was tested finite before.
                x_last = x_good if masked else x
                return restarts, it, x_last, None, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
            if masked and backend.to_bool(xp.any(broken)):
                # A frozen column keeps its r, so rᵀz ≤ 0 persists if M caused it.
                m_side = preconditioned and backend.to_bool(xp.any(broken & (rho <= 0)))
                return restarts, it, x, None, SolveStatus.INDEFINITE, _breakdown_message(
                    it, preconditioned, m_side
                )
            done = not backend.to_bool(xp.any(active)) if masked else backend.to_bool(rnorm2 <= tol2)
            if done:
                r = b - prob.A(x)
                rnorm2 = _dot(xp, r, r)
                if backend.to_bool(xp.all(rnorm2 <= tol2)):
                    return restarts, it, x, r, _CONVERGED, ""
                if restarts == _MAX_VERIFY_FAILURES:
                    return restarts, it, x, r, SolveStatus.STAGNATION, (
                        "stagnated: the recursive residual meets the tolerance but the "
                        "true residual does not; the tolerance is below the accuracy "
                        "attainable in this precision for this operator"
                    )
                restarts += 1
                restart = True
                if masked:
                    active = rnorm2 > tol2
            if masked:
                x_good = xp.asarray(x, copy=True)

        z = prob.precondition(r)
        rho_new = rnorm2 if not preconditioned else _dot(xp, r, z)
        if restart:
            # r is now the true residual, far from the recursion's: p from the
            # old recursion would be a meaningless direction (β = ρ_true/ρ_rec
            # is huge), so restart CG from the current iterate.
            p = xp.asarray(z, copy=True)
            restart = False
        else:
            if masked:
                beta = xp.where(active, rho_new / xp.where(active, rho, 1.0), 0.0)
            else:
                beta = rho_new / rho
            p *= beta
            p += z
        rho = rho_new
    return restarts, it, x, None, SolveStatus.MAXITER, ""


def _breakdown_message(
    it: int, preconditioned: bool, m_side: bool, pq: float | None = None, rho: float | None = None
) -> str:
    if m_side:
        detail = f" = {rho:.3e}" if rho is not None else ""
        return (
            f"breakdown at iteration {it}: rᵀMr{detail} ≤ 0, the preconditioner M "
            "is not positive definite"
        )
    detail = f" = {pq:.3e}" if pq is not None else ""
    return (
        f"breakdown at iteration {it}: pᵀAp{detail} ≤ 0, A is not positive definite "
        "(use minres for symmetric indefinite systems)"
    )


def minres(
    A: Any,
    b: Any,
    *,
    shift: float = 0.0,
    x0: Any = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Any = None,
    callback: Callable[[Any], Any] | None = None,
    record_history: bool = False,
) -> SolveResult:
    r"""MINRES for symmetric (possibly indefinite) systems ``(A − shift·I) x = b``.

    Parameters
    ----------
    A : array, LinearOperator or scipy operator, shape (n, n)
        Symmetric; may be indefinite or singular.
    b : array, shape (n,) or (n, k)
        Right-hand side(s); columns are solved together, each with its own
        recurrence, and a converged column stops changing.
    shift : float
        Solve with ``A − shift·I`` (SciPy's convention, and the one place in
        natgrad where a multiple of the identity is not called ``damping``).
    x0 : array, optional
        Starting guess shaped like ``b``.
    rtol, atol : float
        Stop when ``‖r‖ ≤ max(rtol·‖b‖, atol)``.  Without a preconditioner the
        norm is the 2-norm; with one it is the ``M``-norm ``√(rᵀMr)`` that
        preconditioned MINRES minimises (both ``r`` and ``b`` measured so).
    maxiter : int, optional
        Iteration limit, ``5 n`` by default (as SciPy).
    M : array, LinearOperator or callable, optional
        Symmetric positive definite preconditioner approximating ``(A − shift I)⁻¹``.
    callback : callable, optional
        ``callback(xk)`` after every iteration.
    record_history : bool
        Record the recursive residual estimate (``M``-norm when
        preconditioned) at each convergence check in
        ``stats["residual_history"]``.

    Returns
    -------
    SolveResult
        ``residual_norm`` is the true 2-norm residual recomputed from ``x``.
        ``status``: ``CONVERGED``, ``MAXITER``, ``SINGULAR`` (``A − shift·I``
        singular and ``b`` not in its range; ``x`` is a least-squares
        solution), ``INDEFINITE`` (the preconditioner is not positive
        definite), ``STAGNATION`` (the true residual stayed above the
        tolerance after four restarts) or ``NONFINITE`` (``x`` is the last
        finite iterate).  ``stats``: ``"matvecs"``,
        ``"preconditioner_applications"``, ``"restarts"`` and, with
        ``record_history``, ``"residual_history"``.

    Raises
    ------
    ValueError, TypeError
        As :func:`cg`.

    Notes
    -----
    Paige & Saunders, "Solution of sparse indefinite systems of linear
    equations", SIAM J. Numer. Anal. 12 (1975): the Lanczos process on
    ``A − shift·I`` with a QR factorisation of the tridiagonal by Givens
    rotations, so that ``x_j`` minimises ``‖b − (A − σI)x‖`` over the Krylov
    space.  The recursively updated residual norm is verified against the true
    residual when it meets the tolerance; if the two disagree (rounding in
    long runs or low precision) the method restarts from the current iterate,
    at most four times (``stats["restarts"]``).  A singular, inconsistent
    system (``b`` not in the range) is detected by ``‖(A − σI) r‖ ≤ √eps
    ‖A − σI‖ ‖r‖`` (SciPy's test with ``√eps`` in place of ``rtol``; a
    matrix with condition number beyond ``1/√eps`` counts as numerically
    singular).  Host synchronisations and NaN detection follow :func:`cg`:
    tests at the sync points only.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([-2.0, -1.0, 1.0, 3.0])
    >>> res = minres(A, np.ones(4), rtol=1e-12)
    >>> np.round(res.x, 6)
    array([-0.5     , -1.      ,  1.      ,  0.333333])
    >>> minres(np.diag([0.0, 1.0]), np.ones(2)).status      # b not in range(A)
    <SolveStatus.SINGULAR: 'singular'>
    """
    rtol, atol = _check_common(rtol, atol, maxiter, callback, record_history)
    shift = validation.finite_real(shift, "shift")
    prob = _Problem(A, b, x0, M)
    xp, b = prob.xp, prob.b
    maxiter = 5 * prob.n if maxiter is None else int(maxiter)
    history: list[Any] | None = [] if record_history else None
    solver = _Minres(prob, shift, maxiter, callback, history)
    tol = solver.tol = _tolerance(xp, solver.m_norm(b), rtol, atol)
    x = xp.zeros_like(b) if prob.x0 is None else prob.x0
    r = b if prob.x0 is None else None  # the cycles only read r
    it, restarts = 0, 0
    if not backend.all_finite(tol):
        status, message = SolveStatus.NONFINITE, "the preconditioner M returned NaN or Inf for b"
    else:
        it, x, r, restarts, status, message = _minres_restarts(solver, x, r)
    return _result(prob, solver.apply, x, r, it, status, message, maxiter, history, restarts)


def _minres_restarts(solver: "_Minres", x: Any, r: Any) -> tuple[int, Any, Any, int, SolveStatus, str]:
    """MINRES cycles from ``x``, each verified against the true residual.

    Returns ``(iterations, x, its true residual or None, restarts, status,
    message)``.
    """
    xp, b, it = solver.xp, solver.prob.b, 0
    status, message, restarts = SolveStatus.MAXITER, "", 0
    for restarts in range(_MAX_VERIFY_FAILURES + 1):
        it, x, status, message = solver.cycle(x, r, it)
        r = None
        if status is not _CONVERGED:
            break
        r = b - solver.apply(x)
        if backend.to_bool(xp.all(solver.m_norm(r) <= solver.tol)):
            break
        # The recursion drifted from the true residual: restart from x and r.
        status, message = SolveStatus.STAGNATION, (
            "stagnated: the recursive residual meets the tolerance but the true residual does not"
        )
    return it, x, r, restarts, status, message


class _Minres:
    """The MINRES recurrences for one validated problem (restartable)."""

    def __init__(self, prob: _Problem, shift: float, maxiter: int,
                 callback: Callable[[Any], Any] | None, history: list[Any] | None) -> None:
        self.prob, self.xp, self.shift = prob, prob.xp, shift
        self.maxiter, self.callback, self.history = maxiter, callback, history
        self.interval = backend.sync_interval(prob.b)
        self.machine_eps = backend.eps(prob.dtype, prob.xp)
        # ‖(A−σI) r‖ / (‖A−σI‖ ‖r‖) ≥ 1/cond for a nonsingular matrix.  SciPy
        # tests it against rtol; a tolerance tied to rtol detects singularity too
        # late when rtol is tiny (the iterate then grows without bound), so natgrad
        # uses √eps: systems with cond ≳ 1/√eps count as numerically singular.
        self.singular_tol = self.machine_eps**0.5
        self.tol: Any = None

    def apply(self, v: Any) -> Any:
        y = self.prob.A(v)
        return y - self.shift * v if self.shift != 0.0 else y

    def m_norm(self, r: Any) -> Any:
        xp = self.xp
        return xp.sqrt(xp.clip(_dot(xp, r, self.prob.precondition(r)), min=0.0))

    def cycle(self, x: Any, r1: Any, it: int) -> tuple[int, Any, SolveStatus, str]:
        """One MINRES run from ``x`` (residual ``r1``, computed when None).

        Returns ``(iterations, x, status, message)``; the recurrences are one
        loop, longer than most, for the reason given in ``_cg_iterate``.
        """
        xp, b, tol, precondition = self.xp, self.prob.b, self.tol, self.prob.precondition
        if r1 is None:
            r1 = b - self.apply(x)
        y = precondition(r1)
        beta1_sq = _dot(xp, r1, y)
        if backend.to_bool(xp.any(beta1_sq < 0)):
            return it, x, SolveStatus.INDEFINITE, (
                "the preconditioner M is not positive definite (rᵀMr < 0)"
            )
        beta = xp.sqrt(beta1_sq)
        if self.history is not None:
            self.history.append(xp.max(beta))
        if backend.to_bool(xp.all(beta <= tol)):
            return it, x, _CONVERGED, ""
        zero = xp.zeros_like(beta)
        oldb, dbar, epsln = zero, zero, zero
        phibar = beta
        cs, sn = zero - 1.0, zero
        tnorm2 = zero
        w = xp.zeros_like(b)
        w2 = xp.zeros_like(b)
        r2 = r1
        active = beta > tol
        first = True
        x_good = x  # the iterate at the last passed check: finite
        while it < self.maxiter:
            it += 1
            safe_beta = xp.where(beta > 0, beta, 1.0)
            v = y / safe_beta
            y = self.apply(v)
            if not first:
                y = y - (beta / xp.where(oldb > 0, oldb, 1.0)) * r1
            first = False
            alfa = _dot(xp, v, y)
            y = y - (alfa / safe_beta) * r2
            r1, r2 = r2, y
            y = precondition(r2)
            oldb = beta
            beta_sq = _dot(xp, r2, y)
            beta = xp.sqrt(xp.clip(beta_sq, min=0.0))
            tnorm2 = tnorm2 + alfa * alfa + oldb * oldb + beta * beta
            # Apply the previous rotation, then form the new one (Paige–Saunders).
            oldeps = epsln
            delta = cs * dbar + sn * alfa
            gbar = sn * dbar - cs * alfa
            epsln = sn * beta
            dbar = -cs * beta
            root = xp.sqrt(gbar * gbar + dbar * dbar)
            gamma = xp.clip(xp.sqrt(gbar * gbar + beta * beta), min=self.machine_eps)
            cs = gbar / gamma
            sn = beta / gamma
            phi = cs * phibar
            phibar = sn * phibar
            w1, w2 = w2, w
            w = (v - oldeps * w1 - delta * w2) / gamma
            step = xp.where(active, phi, 0.0)
            x = x + step * w
            if self.callback is not None:
                self.callback(x)
            # ‖(A − σI) r‖ = phibar·root.  Relative to ‖A‖‖r‖ it is at least
            # 1/cond(A − σI) for a nonsingular matrix; below singular_tol the residual
            # lies in the (numerical) null space: singular and inconsistent.
            anorm = xp.sqrt(tnorm2)
            singular = active & (root <= self.singular_tol * anorm) & (phibar > tol)
            active = active & (phibar > tol) & ~singular
            if it % self.interval == 0 or it == self.maxiter:
                if self.history is not None:
                    self.history.append(xp.max(phibar))
                if backend.to_bool(xp.any(beta_sq < 0)):
                    return it, x_good, SolveStatus.INDEFINITE, (
                        f"breakdown at iteration {it}: the preconditioner M is not positive "
                        "definite; x is the iterate before it"
                    )
                if not backend.to_bool(xp.all(xp.isfinite(phibar))):
                    return it, x_good, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
                if not backend.to_bool(xp.any(active)):
                    if backend.to_bool(xp.any(singular)):
                        return it, x, SolveStatus.SINGULAR, (
                            f"A − shift·I is singular and b is not in its range (detected at "
                            f"iteration {it}): x is a least-squares solution"
                        )
                    return it, x, _CONVERGED, ""
                x_good = x
        return it, x, SolveStatus.MAXITER, ""


class LanczosResult(NamedTuple):
    """Lanczos tridiagonalisation ``Qᵀ A Q = T``, as returned by :func:`lanczos`.

    A named tuple: unpack it as ``alpha, beta, Q = lanczos(...)`` or read the
    fields by name.

    Parameters
    ----------
    alpha : array, shape (m,)
        Diagonal of ``T`` (``αⱼ = qⱼᵀ A qⱼ``).
    beta : array, shape (m - 1,)
        Off-diagonal of ``T`` (``βⱼ = ‖wⱼ‖ > 0``); empty when ``m = 1``.
    Q : array, shape (n, m)
        Orthonormal basis of the Krylov space
        ``span{v0, A v0, …, A^{m−1} v0}``; ``Q[:, 0]`` is ``v0/‖v0‖``.

    Raises
    ------
    AttributeError
        On assignment to a field (named tuples are immutable).

    Notes
    -----
    ``m`` is the number of steps done: the requested ``k``, or fewer when
    the Krylov space became invariant (``βₘ`` at rounding level), in which
    case the eigenvalues of ``T`` are exact eigenvalues of ``A``.  The
    arrays are in ``v0``'s namespace and on its device, in the floating
    dtype of ``v0`` (promoted with a dense ``A``'s dtype).  The final
    ``βₘ`` and ``qₘ₊₁`` of ``A Q = Q T + βₘ qₘ₊₁ eₘᵀ`` are not returned.

    Build ``T = tridiag(beta, alpha, beta)`` to use it: its eigenvalues (Ritz
    values) approximate the extreme eigenvalues of ``A``, and with ``T = S Θ
    Sᵀ`` the columns of ``Q S`` approximate eigenvectors.  Orthonormality of
    ``Q`` holds to rounding with ``reorthogonalize=True`` (the default) and
    may be lost without it.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import lanczos
    >>> rng = np.random.default_rng(0)
    >>> B = rng.standard_normal((6, 6))
    >>> A = B + B.T
    >>> res = lanczos(A, np.ones(6), 4)
    >>> res.alpha.shape, res.beta.shape, res.Q.shape
    ((4,), (3,), (6, 4))
    >>> T = np.diag(res.alpha) + np.diag(res.beta, 1) + np.diag(res.beta, -1)
    >>> bool(np.allclose(res.Q.T @ A @ res.Q, T))
    True
    >>> bool(np.allclose(res.Q.T @ res.Q, np.eye(4)))
    True

    A starting vector in a 2-dimensional invariant subspace stops early,
    with exact eigenvalues:

    >>> alpha, beta, Q = lanczos(np.diag(np.arange(1.0, 6.0)),
    ...                          np.array([1.0, 1.0, 0.0, 0.0, 0.0]), 4)
    >>> Q.shape
    (5, 2)
    >>> T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    >>> bool(np.allclose(np.linalg.eigvalsh(T), [1.0, 2.0]))
    True
    """

    alpha: Any
    beta: Any
    Q: Any


def lanczos(A: Any, v0: Any, k: int, *, reorthogonalize: bool = True) -> LanczosResult:
    r"""``k`` steps of the symmetric Lanczos process.

    Parameters
    ----------
    A : array, LinearOperator or scipy operator, shape (n, n)
        Symmetric.
    v0 : array, shape (n,)
        Starting vector (any non-zero vector; normalised internally).
    k : int
        Number of steps, ``1 ≤ k ≤ n``.
    reorthogonalize : bool
        Full reorthogonalisation (two classical Gram–Schmidt passes against
        all previous vectors, ``O(n k²)``).  Without it the basis loses
        orthogonality once Ritz values converge (Paige 1971) and ``T`` gains
        spurious copies of eigenvalues.

    Returns
    -------
    LanczosResult
        ``(alpha, beta, Q)`` with ``Qᵀ A Q = tridiag(beta, alpha, beta)``.  If
        the Krylov space is invariant after ``m < k`` steps (``β_m ≈ 0``) the
        process stops early and ``Q`` has ``m`` columns: the eigenvalues of
        ``T`` are then exact eigenvalues of ``A``.

    Raises
    ------
    ValueError
        Non-square ``A``, ``v0`` not of shape ``(n,)``, zero or non-finite
        ``v0``, ``k`` outside ``[1, n]``; ``A`` returning the wrong shape
        (:class:`~natgrad.validation.CallableOutputError`).
    natgrad.validation.NonFiniteOutputError
        ``A`` produced NaN or Inf (a ``ValueError``; the coefficients would
        be meaningless).
    TypeError
        ``A`` returning an array of another library, device or dtype.

    Notes
    -----
    Lanczos (1950); Golub & Van Loan, *Matrix Computations*, 4th ed., Alg. 10.1.1::

        q₁ = v₀/‖v₀‖,  w = A qⱼ − βⱼ₋₁ qⱼ₋₁,  αⱼ = qⱼᵀw,  w ← w − αⱼ qⱼ,
        βⱼ = ‖w‖,  qⱼ₊₁ = w/βⱼ

    ``A`` is applied once per step: ``m`` products for ``m`` returned
    columns.  Each step reads ``βⱼ`` on the host (the early-stop test),
    and one final test checks the coefficients for NaN/Inf.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag(np.arange(1.0, 6.0))
    >>> alpha, beta, Q = lanczos(A, np.ones(5), 5)
    >>> T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    >>> np.round(np.linalg.eigvalsh(T), 8)
    array([1., 2., 3., 4., 5.])
    """
    op = _checks.square_operator(A, "A")
    n = op.shape[0]
    xp = backend.namespace(A=_checks.dense_array(op), v0=v0)
    validation.rhs(v0, n, "v0", allow_block=False)
    k = validation.positive_int(k, "k")
    if k > n:
        raise ValueError(f"k must be at most n={n}, got {k}")
    dtype = backend.float_dtype(xp, v0, *([op.array] if hasattr(op, "array") else []))
    apply = _checks.operator_calls(_cast_dense(op, dtype, xp), "A")
    v0 = xp.astype(v0, dtype) if v0.dtype != dtype else v0
    norm0 = xp.linalg.vector_norm(v0)
    if not backend.to_float(norm0) > 0:
        raise ValueError("v0 must be non-zero")
    machine_eps = backend.eps(dtype, xp)

    q = v0 / norm0
    basis = [q]
    alphas, betas = [], []
    scale = 0.0
    q_prev, beta_prev = None, None
    for j in range(k):
        w = apply(q)
        if q_prev is not None:
            w = w - beta_prev * q_prev
        alpha = _dot(xp, q, w)
        w = w - alpha * q
        if reorthogonalize:
            Q = xp.stack(basis, axis=1)
            for _ in range(2):
                w = w - Q @ (xp.matrix_transpose(Q) @ w)
        alphas.append(alpha)
        if j == k - 1:
            break
        beta = xp.linalg.vector_norm(w)
        beta_f = backend.to_float(beta)
        scale = max(scale, abs(backend.to_float(alpha)) + beta_f)
        if not beta_f > n * machine_eps * scale:
            break  # invariant subspace: T's eigenvalues are exact
        betas.append(beta)
        q_prev, beta_prev = q, beta
        q = w / beta
        basis.append(q)
    alpha_arr = xp.stack(alphas)
    beta_arr = xp.stack(betas) if betas else xp.zeros((0,), dtype=dtype)
    if not backend.all_finite(alpha_arr):
        # NaN in w also stops the loop above (NaN > tol is False): report it.
        raise validation.NonFiniteOutputError(
            f"A produced NaN or Inf during Lanczos ({apply.calls} products)", "A", apply.calls
        )
    return LanczosResult(alpha_arr, beta_arr, xp.stack(basis, axis=1))

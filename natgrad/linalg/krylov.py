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

from typing import Any, Callable, NamedTuple

from .. import backend
from . import _checks
from .operators import LinearOperator
from .result import SolveResult

__all__ = ["cg", "minres", "lanczos", "LanczosResult"]

#: iterations between true-residual replacements in low precision (float32)
_REPLACE_EVERY = 50
#: failed true-residual verifications before a solver declares stagnation
_MAX_VERIFY_FAILURES = 4


def _dot(xp: Any, a: Any, b: Any) -> Any:
    """Column-wise inner products: 0-d for vectors, ``(k,)`` for blocks."""
    # Negative axes: the standard only guarantees those for vecdot.
    return xp.vecdot(a, b, axis=-1 if a.ndim == 1 else -2)


class _Problem:
    """Validated operator, right-hand side and preconditioner of one solve."""

    def __init__(self, A: Any, b: Any, x0: Any, M: Any, name_b: str = "b") -> None:
        op = _checks.square_operator(A, "A")
        n = op.shape[0]
        Mop = _checks.preconditioner(M, n, "M")
        self.xp = xp = backend.namespace(
            A=_checks.dense_array(op), b=b, x0=x0, M=_checks.dense_array(Mop)
        )
        _checks.rhs(b, n, name_b)
        if x0 is not None:
            _checks.same_shape(x0, b, "x0", name_b)
        dense_dtypes = [d for d in (_checks.dense_array(op), _checks.dense_array(Mop)) if d is not None]
        self.dtype = dtype = backend.float_dtype(xp, b, *dense_dtypes)
        self.op = _cast_dense(op, dtype, xp)
        self.M = _cast_dense(Mop, dtype, xp) if Mop is not None else None
        self.b = xp.astype(b, dtype) if b.dtype != dtype else b
        self.x0 = None if x0 is None else xp.astype(x0, dtype, copy=True)
        self.n = n
        self._checked = set()

    def apply(self, op: LinearOperator, x: Any, name: str) -> Any:
        y = op.matvec(x)
        if name not in self._checked:  # validate a user operator's output once
            self._checked.add(name)
            if tuple(getattr(y, "shape", ())) != tuple(x.shape):
                raise ValueError(
                    f"{name} returned shape {tuple(getattr(y, 'shape', ()))} for an "
                    f"input of shape {tuple(x.shape)}"
                )
            backend.namespace(**{"input of " + name: x, "output of " + name: y})
            if y.dtype != x.dtype:
                raise TypeError(
                    f"{name} returned dtype {y.dtype} for an input of dtype {x.dtype}"
                )
        return y


def _cast_dense(op: LinearOperator, dtype: Any, xp: Any) -> LinearOperator:
    from .operators import DenseOperator

    if isinstance(op, DenseOperator) and op.array.dtype != dtype:
        # Mixed precision: cast the matrix once (a documented copy).
        return DenseOperator(xp.astype(op.array, dtype))
    return op


def _check_common(rtol: Any, atol: Any, maxiter: Any, callback: Any) -> tuple[float, float]:
    rtol = _checks.nonnegative(rtol, "rtol")
    atol = _checks.nonnegative(atol, "atol")
    if maxiter is not None:
        _checks.positive_int(maxiter, "maxiter")
    _checks.callback(callback)
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

    Returns
    -------
    SolveResult
        ``x`` in ``b``'s namespace, device and dtype (promoted with a dense
        ``A``'s dtype), ``converged``, ``iterations``, the true residual norm
        (recomputed from ``x``) and ``info``.

    Raises
    ------
    ValueError
        Non-square ``A``, ``b``/``x0``/``M`` of the wrong shape, NaN or Inf in
        a dense ``A``, ``b`` or ``x0``, negative tolerances, ``maxiter ≤ 0``.
    TypeError
        Arrays from two libraries or devices; non-callable ``callback``.

    Notes
    -----
    Hestenes–Stiefel CG with preconditioning (Saad, *Iterative Methods for
    Sparse Linear Systems*, 2nd ed., Alg. 9.1)::

        r₀ = b − A x₀,  z₀ = M r₀,  p₀ = z₀
        αⱼ = rⱼᵀzⱼ / pⱼᵀA pⱼ,  xⱼ₊₁ = xⱼ + αⱼ pⱼ,  rⱼ₊₁ = rⱼ − αⱼ A pⱼ
        zⱼ₊₁ = M rⱼ₊₁,  βⱼ = rⱼ₊₁ᵀzⱼ₊₁ / rⱼᵀzⱼ,  pⱼ₊₁ = zⱼ₊₁ + βⱼ pⱼ

    Safeguards beyond the textbook loop:

    * when the recursive residual meets the tolerance, the true residual
      ``b − A x`` is computed; if it does not meet it the recursion continues
      from the true residual, so a drifting recursion (float32, very
      ill-conditioned ``A``; cf. CuPy issue 7512) never reports false
      convergence.  In float32 the residual is also replaced every 50
      iterations.
    * ``pᵀAp ≤ 0`` (``A`` not positive definite) or ``rᵀz ≤ 0`` (``M`` not
      positive definite) stop the solve with ``converged=False`` and an
      ``info`` that says so.

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
    """
    rtol, atol = _check_common(rtol, atol, maxiter, callback)
    prob = _Problem(A, b, x0, M)
    xp, op, Mop, b = prob.xp, prob.op, prob.M, prob.b
    n = prob.n
    maxiter = 10 * n if maxiter is None else int(maxiter)
    multi = b.ndim == 2
    interval = backend.sync_interval(b)
    masked = multi or interval > 1
    low_precision = backend.is_low_precision(prob.dtype, xp)

    tol = _tolerance(xp, xp.linalg.vector_norm(b, axis=0), rtol, atol)
    tol2 = tol * tol

    def true_residual(x: Any) -> Any:
        return b - prob.apply(op, x, "A")

    def precondition(r: Any) -> Any:
        return r if Mop is None else prob.apply(Mop, r, "M")

    if prob.x0 is None:
        x = xp.zeros_like(b)
        r = xp.asarray(b, copy=True)
    else:
        x = prob.x0
        r = true_residual(x)
    rnorm2 = _dot(xp, r, r)
    if bool(xp.all(rnorm2 <= tol2)):
        return SolveResult(x, True, 0, _fmt(xp.sqrt(rnorm2), xp), "converged: initial residual meets the tolerance")

    z = precondition(r)
    rho = _dot(xp, r, z)
    p = xp.asarray(z, copy=True)
    active = rnorm2 > tol2
    broken = xp.zeros_like(active)  # columns where pᵀAp ≤ 0 or rᵀz ≤ 0 was met
    verify_failures = 0
    status = ""
    converged = False
    it = 0
    while it < maxiter:
        it += 1
        q = prob.apply(op, p, "A")
        pq = _dot(xp, p, q)
        if masked:
            good = active & (pq > 0) & (rho > 0)
            broken = broken | (active & ~good)
            alpha = xp.where(good, rho / xp.where(good, pq, 1.0), 0.0)
        else:
            alpha = rho / pq
        x += alpha * p
        r -= alpha * q
        if low_precision and it % _REPLACE_EVERY == 0:
            r = true_residual(x)
        rnorm2 = _dot(xp, r, r)
        if callback is not None:
            callback(x)
        if masked:
            active = active & ~broken & (rnorm2 > tol2)

        if it % interval == 0 or it == maxiter:
            # One host synchronisation: breakdown, non-finite values, convergence.
            if masked:
                if bool(xp.any(broken)):
                    status = _breakdown_message(it, Mop is not None)
                    break
                done = not bool(xp.any(active))
            else:
                pq_f, rho_f = backend.to_float(pq), backend.to_float(rho)
                if not (pq_f > 0 and rho_f > 0):
                    status = _breakdown_message(it, Mop is not None, pq_f, rho_f)
                    break
                done = bool(rnorm2 <= tol2)
            if not bool(xp.all(xp.isfinite(rnorm2))):
                status = (
                    f"non-finite residual at iteration {it}: the operator or the "
                    "preconditioner produced NaN or Inf"
                )
                break
            if done:
                r = true_residual(x)
                rnorm2 = _dot(xp, r, r)
                if bool(xp.all(rnorm2 <= tol2)):
                    converged = True
                    break
                verify_failures += 1
                if verify_failures > _MAX_VERIFY_FAILURES:
                    status = (
                        "stagnated: the recursive residual meets the tolerance but the "
                        "true residual does not; the tolerance is below the accuracy "
                        "attainable in this precision for this operator"
                    )
                    break
                if masked:
                    active = rnorm2 > tol2

        z = precondition(r)
        rho_new = rnorm2 if Mop is None else _dot(xp, r, z)
        if masked:
            beta = xp.where(active, rho_new / xp.where(active, rho, 1.0), 0.0)
        else:
            beta = rho_new / rho
        p *= beta
        p += z
        rho = rho_new

    res_norm = xp.linalg.vector_norm(true_residual(x), axis=0)
    rn = _fmt(res_norm, xp)
    if converged:
        info = f"converged in {it} iterations"
    elif status:
        info = status
    else:
        info = (
            f"not converged: maxiter={maxiter} reached with residual {rn:.3e} "
            f"> tolerance {_fmt(tol, xp):.3e}"
        )
    return SolveResult(x, converged, it, rn, info)


def _breakdown_message(it: int, preconditioned: bool, pq: float | None = None, rho: float | None = None) -> str:
    if rho is not None and not rho > 0 and preconditioned:
        return (
            f"breakdown at iteration {it}: rᵀMr = {rho:.3e} ≤ 0, the preconditioner M "
            "is not positive definite"
        )
    detail = f" = {pq:.3e}" if pq is not None else ""
    return (
        f"breakdown at iteration {it}: pᵀAp{detail} ≤ 0, A is not positive definite "
        "(use minres for symmetric indefinite systems)"
        + (" or M is not positive definite" if preconditioned and pq is None else "")
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
        Solve with ``A − shift·I`` (SciPy's convention).
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

    Returns
    -------
    SolveResult
        ``residual_norm`` is the true 2-norm residual recomputed from ``x``.

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
    at most four times.  A singular, inconsistent system (``b`` not in the
    range) is detected by ``‖(A − σI) r‖ ≤ √eps ‖A − σI‖ ‖r‖`` (SciPy's test
    with ``√eps`` in place of ``rtol``; a matrix with condition number beyond
    ``1/√eps`` counts as numerically singular) and reported with
    ``converged=False``: ``x`` is then a least-squares solution.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([-2.0, -1.0, 1.0, 3.0])
    >>> res = minres(A, np.ones(4), rtol=1e-12)
    >>> np.round(res.x, 6)
    array([-0.5     , -1.      ,  1.      ,  0.333333])
    """
    rtol, atol = _check_common(rtol, atol, maxiter, callback)
    shift = _checks.finite_real(shift, "shift")
    prob = _Problem(A, b, x0, M)
    xp, b = prob.xp, prob.b
    maxiter = 5 * prob.n if maxiter is None else int(maxiter)
    interval = backend.sync_interval(b)
    machine_eps = backend.eps(prob.dtype, xp)
    # ‖(A−σI) r‖ / (‖A−σI‖ ‖r‖) ≥ 1/cond for a nonsingular matrix.  SciPy
    # tests it against rtol; a tolerance tied to rtol detects singularity too
    # late when rtol is tiny (the iterate then grows without bound), so natgrad
    # uses √eps: systems with cond ≳ 1/√eps count as numerically singular.
    singular_tol = machine_eps**0.5

    def apply_shifted(v: Any) -> Any:
        y = prob.apply(prob.op, v, "A")
        return y - shift * v if shift != 0.0 else y

    def precondition(r: Any) -> Any:
        return r if prob.M is None else prob.apply(prob.M, r, "M")

    def m_norm(r: Any) -> Any:
        return xp.sqrt(xp.clip(_dot(xp, r, precondition(r)), min=0.0))

    tol = _tolerance(xp, m_norm(b), rtol, atol)
    x = xp.zeros_like(b) if prob.x0 is None else prob.x0
    it = 0
    info = ""
    converged = False
    for _restart in range(_MAX_VERIFY_FAILURES + 1):
        it, x, state, info = _minres_cycle(
            xp, apply_shifted, precondition, b, x, tol, it, maxiter, interval,
            machine_eps, singular_tol, callback,
        )
        if state != "converged":
            break
        r = b - apply_shifted(x)
        if bool(xp.all(m_norm(r) <= tol)):
            converged = True
            break
        info = "stagnated: the recursive residual meets the tolerance but the true residual does not"
    true_norm = _fmt(xp.linalg.vector_norm(b - apply_shifted(x), axis=0), xp)
    if converged:
        info = f"converged in {it} iterations"
    elif not info:
        info = (
            f"not converged: maxiter={maxiter} reached with residual {true_norm:.3e}"
        )
    return SolveResult(x, converged, it, true_norm, info)


def _minres_cycle(
    xp: Any,
    apply_shifted: Callable[[Any], Any],
    precondition: Callable[[Any], Any],
    b: Any,
    x: Any,
    tol: Any,
    it: int,
    maxiter: int,
    interval: int,
    machine_eps: float,
    singular_tol: float,
    callback: Callable[[Any], Any] | None,
) -> tuple[int, Any, str, str]:
    """One MINRES run from ``x``; returns (iterations, x, state, info)."""
    r1 = b - apply_shifted(x) if it > 0 or bool(xp.any(x != 0)) else xp.asarray(b, copy=True)
    y = precondition(r1)
    beta1_sq = _dot(xp, r1, y)
    if bool(xp.any(beta1_sq < 0)):
        return it, x, "error", "the preconditioner M is not positive definite (rᵀMr < 0)"
    beta = xp.sqrt(beta1_sq)
    if bool(xp.all(beta <= tol)):
        return it, x, "converged", ""
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
    while it < maxiter:
        it += 1
        safe_beta = xp.where(beta > 0, beta, 1.0)
        v = y / safe_beta
        y = apply_shifted(v)
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
        gamma = xp.clip(xp.sqrt(gbar * gbar + beta * beta), min=machine_eps)
        cs = gbar / gamma
        sn = beta / gamma
        phi = cs * phibar
        phibar = sn * phibar
        w1, w2 = w2, w
        w = (v - oldeps * w1 - delta * w2) / gamma
        step = xp.where(active, phi, 0.0)
        x = x + step * w
        if callback is not None:
            callback(x)
        # ‖(A − σI) r‖ = phibar·root.  Relative to ‖A‖‖r‖ it is at least
        # 1/cond(A − σI) for a nonsingular matrix; below singular_tol the residual
        # lies in the (numerical) null space: singular and inconsistent.
        anorm = xp.sqrt(tnorm2)
        singular = active & (root <= singular_tol * anorm) & (phibar > tol)
        active = active & (phibar > tol) & ~singular
        if it % interval == 0 or it == maxiter:
            if bool(xp.any(beta_sq < 0)):
                return it, x, "error", (
                    f"breakdown at iteration {it}: the preconditioner M is not positive definite"
                )
            if not bool(xp.all(xp.isfinite(phibar))):
                return it, x, "error", (
                    f"non-finite values at iteration {it}: the operator or "
                    "preconditioner produced NaN or Inf"
                )
            if not bool(xp.any(active)):
                if bool(xp.any(singular)):
                    return it, x, "singular", (
                        f"A − shift·I is singular and b is not in its range (detected at "
                        f"iteration {it}): x is a least-squares solution"
                    )
                return it, x, "converged", ""
    return it, x, "maxiter", ""


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
        ``v0``, ``k`` outside ``[1, n]``.

    Notes
    -----
    Lanczos (1950); Golub & Van Loan, *Matrix Computations*, 4th ed., Alg. 10.1.1::

        q₁ = v₀/‖v₀‖,  w = A qⱼ − βⱼ₋₁ qⱼ₋₁,  αⱼ = qⱼᵀw,  w ← w − αⱼ qⱼ,
        βⱼ = ‖w‖,  qⱼ₊₁ = w/βⱼ

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
    _checks.rhs(v0, n, "v0", allow_block=False)
    k = _checks.positive_int(k, "k")
    if k > n:
        raise ValueError(f"k must be at most n={n}, got {k}")
    dtype = backend.float_dtype(xp, v0, *([op.array] if hasattr(op, "array") else []))
    op = _cast_dense(op, dtype, xp)
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
        w = op.matvec(q)
        if j == 0 and tuple(w.shape) != (n,):
            raise ValueError(f"A returned shape {tuple(w.shape)} for a vector of shape ({n},)")
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
    return LanczosResult(alpha_arr, beta_arr, xp.stack(basis, axis=1))

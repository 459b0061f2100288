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

import functools
import math
from typing import Any, Callable, NamedTuple

from .. import backend, validation
from . import _checks
from .operators import DenseOperator, LinearOperator
from .result import SolveResult, SolveStatus

__all__ = ["cg", "minres", "lanczos", "LanczosResult"]

#: restarts after failed true-residual verifications before a solver declares stagnation
_MAX_VERIFY_FAILURES = 4
#: a restart must reduce the true residual of a failing column below this
#: fraction of its value at the previous verification, or the solve stops
#: with STAGNATION at once (it is at the attainable accuracy)
_PROGRESS = 0.5

_CONVERGED = SolveStatus.CONVERGED
_NONFINITE_MESSAGE = (
    "non-finite values at iteration {it}: the operator or the preconditioner produced NaN "
    "or Inf; x is the best finite iterate"
)


def _dot(xp: Any, a: Any, b: Any) -> Any:
    """Column-wise inner products: 0-d for vectors, ``(k,)`` for blocks."""
    # Negative axes: the standard only guarantees those for vecdot.
    return backend.vecdot(xp, a, b, axis=-1 if a.ndim == 1 else -2)


class _Problem:
    """Validated operator, right-hand side and preconditioner of one solve.

    ``A`` and ``M`` are the products as counted callables; a user's
    operator has its output checked at every call (shape, dtype, library;
    not finiteness, which the solvers test on their residual at their sync
    points — see ``_checks.operator_calls``).
    """

    def __init__(self, A: Any, b: Any, x0: Any, M: Any, name_b: str = "b") -> None:
        op = _checks.square_operator(A, "A", check_finite=False)
        n = op.shape[0]
        Mop = _checks.preconditioner(M, n, "M")
        # First the namespace: it refuses tracked arrays (a JAX tracer, a
        # tensor that requires grad) naming the argument, before any
        # computation on them (under jax.jit every result is a tracer).
        self.xp = xp = backend.namespace(
            A=_checks.dense_array(op), b=b, x0=x0, M=_checks.dense_array(Mop)
        )
        if isinstance(op, DenseOperator):
            validation.finite(op.array, "A")
        validation.rhs(b, n, name_b)
        if x0 is not None:
            validation.same_shape(x0, b, "x0", name_b)
        dense_dtypes = [d for d in (_checks.dense_array(op), _checks.dense_array(Mop)) if d is not None]
        self.dtype = dtype = backend.float_dtype(xp, b, *dense_dtypes)
        self.A = _checks.operator_calls(_cast_dense(op, dtype, xp), "A")
        self.M = None if Mop is None else _checks.operator_calls(_cast_dense(Mop, dtype, xp), "M")
        # b is never handed to a user's callable (the cycles work on scaled
        # copies), so neither its values nor the caller's array can change.
        # A lazy (dask) b, e.g. Jᵀy, is computed once rather than at each use.
        self.b = backend.persist(xp.astype(b, dtype) if b.dtype != dtype else b)
        self.x0 = x0
        self.n = n

    def start(self, apply: Callable[[Any], Any]) -> tuple[Any, Any]:
        """The first iterate (zero, or a copy of ``x0``) and its residual."""
        xp, b = self.xp, self.b
        if self.x0 is None:
            return xp.zeros_like(b), b
        x = xp.astype(self.x0, self.dtype, copy=True)
        # A copy again: a user's operator that writes into its argument
        # must change neither the caller's x0 nor x.
        return x, b - apply(xp.asarray(x, copy=True))

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


def _read_flags(xp: Any, *flags: Any) -> list[bool]:
    """Several 0-d boolean arrays read on the host together: one
    synchronisation (one round trip to the workers on dask, one wait for
    the device on a GPU) instead of one each."""
    return [bool(f) for f in backend.to_list(xp.stack(flags))]


def _tolerance(xp: Any, norm_b: Any, rtol: float, atol: float) -> Any:
    # persisted (dask): read at every check and in the result
    return backend.persist(xp.clip(rtol * norm_b, min=atol))


def _fmt(values: Any, xp: Any) -> float:
    return backend.to_float(xp.max(values))


@backend.quiet_floating_point
@_checks.scipy_tol
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
        does not follow the recursive one below the tolerance: the
        tolerance is below the accuracy attainable in this precision) or
        ``NONFINITE`` (NaN or Inf from ``A`` or ``M``).  On failure ``x`` is
        the best finite iterate (see Notes).  ``stats``: ``"matvecs"`` (calls of ``A``, each on
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

    Safeguards beyond the textbook loop (shared with :func:`minres`):

    * the loop runs on ``b / s`` with ``s`` a power of two near ``max|b|``
      (per column) and ``x = s·y``: exact, so the steps are SciPy's bit for
      bit, while no inner product overflows or underflows at any scale of
      ``b`` or ``A`` (1e±150 in float64);
    * when the recursive residual meets the tolerance, the true residual
      ``b − A x`` is computed; if it does not meet it CG restarts from ``x``
      with the true residual (``p = M r``), so a drifting recursion
      (float32, very ill-conditioned ``A``; cf. CuPy issue 7512) never
      reports false convergence.  When a restart does not halve the true
      residual, or after four restarts, the tolerance is out of reach in
      this precision: ``STAGNATION`` (``stats["restarts"]`` counts the
      restarts).  The residual is not replaced at other times: a
      replacement that keeps the old direction ``p`` derails the recursion
      once the residual is at the attainable accuracy (float32 solves then
      drifted to residuals of 1e10);
    * a failed solve returns the best of the start and the ends of its
      restart cycles (smallest true residual, per column); within a cycle
      the last finite iterate;
    * ``pᵀAp ≤ 0`` or ``rᵀz ≤ 0`` stop the solve before the step is taken
      (``INDEFINITE``), unless the recursive ``rᵀr`` of the (scaled) cycle is
      below ``smallest_normal/eps`` (1e-292 in float64): there the products
      underflow and ``pᵀAp`` can be 0 for an SPD ``A`` (``rtol = 0``), so
      the recursion ends and the true residual decides, as at convergence;
    * NaN or Inf from ``A`` or ``M`` is found before it reaches an update on
      the CPU (the step's scalars are tested every iteration there), and at
      the convergence checks on an accelerator (``NONFINITE``).  Products
      are not tested one by one: on a GPU each test would be a host
      synchronisation per iteration.
    * ``A`` and ``M`` never receive the caller's ``b`` or ``x0``, and the
      true residual is computed from a copy of ``x``: an operator that
      writes into its argument can change neither.

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
    xp = prob.xp
    maxiter = 10 * prob.n if maxiter is None else int(maxiter)
    tol = _tolerance(xp, _safe_norm(xp, prob.b), rtol, atol)
    history: list[Any] | None = [] if record_history else None
    x, r = prob.start(prob.A)
    cycle = functools.partial(_cg_cycle, prob, maxiter, callback, history)
    it, x, r, restarts, status, message = _restarted(prob, prob.A, None, cycle, x, r, tol)
    return _result(prob, x, r, it, status, message, maxiter, history, restarts, tol)


def _scale(xp: Any, r: Any) -> Any:
    """Per column, the power of two nearest ``max|r|`` (1 for a zero or non-finite column).

    Dividing by a power of two is exact in binary floating point: a Krylov
    cycle run on ``r / s`` takes bit for bit the steps it would take on ``r``
    (barring overflow and underflow, which is the point), while its inner
    products ``rᵀr``, ``pᵀAp`` stay near ``1·‖A‖``: with ``max|r/s|`` in
    ``[1/√2, √2]`` no square of an entry overflows or underflows, whatever the
    scale of ``b`` (1e±150 in float64, 1e±20 in float32).
    """
    m = xp.max(xp.abs(r), axis=0)
    m = xp.where((m > 0) & (m < math.inf), m, 1.0)
    return 2.0 ** xp.round(xp.log2(m))


def _safe_norm(xp: Any, r: Any, norm: Callable[[Any], Any] | None = None) -> Any:
    """Column norms of ``r`` (``norm``, the 2-norm by default) computed on
    ``r / s`` (see :func:`_scale`), so that no square overflows or underflows;
    NaN or Inf in ``r`` give a NaN or Inf norm, without a warning."""
    s = _scale(xp, r)
    rs = r / s
    return s * (xp.linalg.vector_norm(rs, axis=0) if norm is None else norm(rs))


def _restarted(
    prob: _Problem, apply: Callable[[Any], Any], norm: Callable[[Any], Any] | None,
    cycle: Callable[..., tuple[int, Any, SolveStatus, str]], x: Any, r: Any, tol: Any,
) -> tuple[int, Any, Any, int, SolveStatus, str]:
    """Run a Krylov method in verified cycles from ``x`` (true residual ``r``).

    The shared safeguard of CG, PCG and MINRES against rounding (float32,
    ill-conditioned ``A``) and operators that change during a solve:

    * each cycle solves ``A d = r / s`` from ``d = 0`` with ``s`` a power of
      two near ``max|r|`` (:func:`_scale`: exact, and no overflow or
      underflow in the cycle's inner products at any scale of ``b`` or
      ``r``), and ``x ← x + s d``;
    * a cycle that claims convergence is verified with the true residual
      ``b − A x`` (``A`` applied to a copy of ``x``, so that a user's
      operator that writes into its argument cannot change ``x``); if it
      does not meet ``tol`` (in ``norm``), the next cycle starts from ``x``
      with it (a restart); when a restart has not halved the true residual
      of any failing column (``_PROGRESS``), or after
      ``_MAX_VERIFY_FAILURES`` restarts, the tolerance is out of reach in
      this precision: ``STAGNATION``;
    * the best iterate wins: the start and the end of every cycle are
      compared (true residual, 2-norm, per column) and a failed solve
      returns the best of them, so a drifting recursion, a breakdown on a
      singular operator or an operator gone wrong never leave ``x`` worse
      than the start.  Within a cycle the last finite iterate stands for
      the cycle (testing every iterate would cost a copy per iteration).

    ``cycle(r, tol, s, x, it) -> (it, d or None, status, message)`` runs one
    cycle (``d`` is None when it took no step).  Returns ``(iterations, x,
    true residual of x, restarts, status, message)``.
    """
    xp, b, it = prob.xp, prob.b, 0
    eps = backend.eps(prob.dtype, xp)
    # Lazy (dask) arrays: x and r are read by every cycle and check; computed
    # once here and after each update below, never resubmitted.
    x, r = backend.persist(x, r)
    best_x, best_r, best_norm = x, r, _safe_norm(xp, r)
    status, message = SolveStatus.MAXITER, ""
    last_verified, restarts_left = None, True
    for restarts in range(_MAX_VERIFY_FAILURES + 1):
        if restarts and backend.to_bool(
            xp.all((rn <= tol) | (rn - _safe_norm(xp, b) > tol / eps))
        ):
            # x + d is rounded at eps·‖x‖, which moves A x by eps·‖A x‖ ≥
            # eps·(‖r‖ − ‖b‖): a residual far above ‖b‖ (an operator that
            # changed during the solve) cannot be brought below tol.
            message += "; the residual exceeds ‖b‖ by more than tol/eps, out of reach"
            restarts -= 1  # this restart is not done
            break
        s = _scale(xp, r)
        # Lazy (dask) arrays: the cycle reads these at every check; computed
        # once here, they are not re-submitted with every check's graph.
        r_s, tol_s, s = backend.persist(r / s, tol / s, s)
        it, d, status, message = cycle(r_s, tol_s, s, x, it)
        if d is None:
            # No step: r is still x's true residual (tested by the cycle).
            if status is _CONVERGED:
                return it, x, r, restarts, status, message
            break
        x = x + s * d
        r = b - apply(xp.asarray(x, copy=True))
        x, r = backend.persist(x, r)
        rn = _safe_norm(xp, r)
        if status is _CONVERGED:
            mn = rn if norm is None else _safe_norm(xp, r, norm)
            if norm is not None and backend.to_bool(xp.any((mn <= 0) & (rn > 0))):
                # rᵀMr = 0 for r ≠ 0: the M-norm test is vacuous.
                status, message = SolveStatus.INDEFINITE, (
                    "the preconditioner M is not positive definite (rᵀMr = 0 for a non-zero "
                    "residual); x is the best iterate"
                )
            elif backend.to_bool(xp.all(mn <= tol)):
                return it, x, r, restarts, status, message
            else:
                if last_verified is not None and backend.to_bool(
                    xp.all((mn <= tol) | (mn > _PROGRESS * last_verified))
                ):
                    # The restart improved no failing column: the true
                    # residual is at the attainable accuracy.  Stop now.
                    restarts_left = False
                last_verified = mn
                status, message = SolveStatus.STAGNATION, (
                    "stagnated: the recursive residual met the tolerance but the true residual "
                    f"did not ({restarts + 1} verifications): the tolerance is below the accuracy "
                    "attainable in this precision for this operator (or the operator changed "
                    "during the solve); x is the best iterate"
                )
        better = rn < best_norm  # False for NaN: a non-finite residual never wins
        best_x, best_r = xp.where(better, x, best_x), xp.where(better, r, best_r)
        best_norm = xp.where(better, rn, best_norm)
        if status is not SolveStatus.STAGNATION or not restarts_left:
            break
    return it, best_x, best_r, restarts, status, message


def _result(
    prob: _Problem, x: Any, r: Any, it: int, status: SolveStatus, message: str, maxiter: int,
    history: list[Any] | None, restarts: int, tol: Any = None,
) -> SolveResult:
    """The :class:`SolveResult` of a Krylov solve; ``r`` is the true residual of ``x``."""
    xp = prob.xp
    rn = _fmt(_safe_norm(xp, r), xp)
    if status is _CONVERGED:
        message = f"converged in {it} iterations"
    elif status is SolveStatus.MAXITER:
        message = f"not converged: maxiter={maxiter} reached with residual {rn:.3e}" + (
            f" > tolerance {_fmt(tol, xp):.3e}" if tol is not None else ""
        )
    stats = prob.stats(history, restarts=restarts)
    return SolveResult(x, status is _CONVERGED, it, rn, status, stats, message)


def _cg_cycle(
    prob: _Problem, maxiter: int, callback: Callable[[Any], Any] | None, history: list[Any] | None,
    r: Any, tol: Any, scale: Any, x0: Any, it: int,
) -> tuple[int, Any, SolveStatus, str]:
    """One CG run for ``A d = r`` from ``d = 0`` (``r`` scaled by ``1/scale``,
    see :func:`_restarted`; ``x0 + scale·d`` is the iterate).

    Returns ``(iterations, d or None, status, message)``.  The loop is one
    function, longer than most, because splitting it would put a Python call
    and its argument passing into every iteration.
    """
    xp = prob.xp
    interval = backend.sync_interval(r)
    # On the CPU (interval 1) a test costs nothing: the scalars of the step are
    # tested before the step, so that NaN or Inf from A or M never reaches an
    # update (NumPy would warn there) and x keeps the last finite iterate.
    cpu = interval == 1
    # Masked: step lengths chosen per column with xp.where and every test
    # deferred to the sync points (several columns, or an accelerator).
    masked = r.ndim == 2 or not cpu
    preconditioned = prob.M is not None
    tol2 = backend.persist(tol * tol)  # read at every check: computed once (dask)
    rnorm2 = _dot(xp, r, r)
    if history is not None:
        history.append(xp.max(scale * xp.sqrt(rnorm2)))
    active = rnorm2 > tol2
    if not backend.to_bool(xp.any(active)):
        return it, None, _CONVERGED, ""
    z = prob.precondition(r)
    rho = rnorm2 if not preconditioned else _dot(xp, r, z)
    if preconditioned and cpu and not backend.all_finite(rho):
        # NaN or Inf from M, found before it reaches A's product (and p).
        return it, None, SolveStatus.NONFINITE, "the preconditioner M returned NaN or Inf"
    p = xp.asarray(z, copy=True)
    broken = xp.zeros_like(active)  # columns where pᵀAp ≤ 0 or rᵀz ≤ 0 was met
    # The underflow floor of rᵀr: the cycle starts at max|r| ≈ 1 (r is scaled,
    # see _scale), and once rᵀr is below smallest_normal/eps (1e-292 in
    # float64, ‖r‖ ≈ 1e-146) the entries' squares and A's products are
    # subnormal or zero.  There pᵀAp can round to 0 for an SPD A (it did on a
    # GPU with rtol = 0, and on NumPy for kernel_system(40, seed=5)), so a
    # breakdown below the floor says nothing about A or M: the column's
    # recursion has ended, 130 orders of magnitude below the attainable
    # accuracy, and the true-residual verification decides (CONVERGED, or a
    # restart and STAGNATION).
    floor = float(xp.finfo(prob.dtype).smallest_normal) / backend.eps(prob.dtype, xp)
    d = xp.zeros_like(r)  # updated in place
    # The iterate at the last passed check (finite), kept where NaN can reach
    # d between checks (an accelerator); one copy per check, as d is updated
    # in place.  On the CPU every step is tested before it is taken.
    keep_good = not cpu
    d_good = xp.zeros_like(r) if keep_good else None
    while it < maxiter:
        it += 1
        q = prob.A(p)
        pq = _dot(xp, p, q)
        if masked:
            if cpu and not backend.all_finite(pq):
                return it, d, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
            ok = (pq > 0) & (rho > 0)
            alpha = rho / xp.where(ok, pq, 1.0)
            good = active & ok & xp.isfinite(alpha)
            # A finite breakdown below the underflow floor ends the column's
            # recursion (it leaves active below, not broken): see floor.
            bad = active & ~good
            broken = broken | (bad & ((rnorm2 > floor) | ~xp.isfinite(pq)))
            alpha = xp.where(good, alpha, 0.0)
        else:
            # One column on the CPU: test before the step, so that d never
            # takes a step from a broken or non-finite recurrence.
            pq_f, rho_f = backend.to_float(pq), backend.to_float(rho)
            if not (math.isfinite(pq_f) and math.isfinite(rho_f)):
                return it, d, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
            if not (pq_f > 0 and rho_f > 0):
                if backend.to_float(rnorm2) <= floor:
                    # Underflow, not a property of A or M (see floor): the
                    # recursion has ended; the true residual decides.
                    return it, d, _CONVERGED, ""
                return it, d, SolveStatus.INDEFINITE, _breakdown_message(
                    it, preconditioned, not rho_f > 0, pq_f, rho_f
                )
            alpha = rho / pq
        d += alpha * p
        r -= alpha * q
        rnorm2 = _dot(xp, r, r)
        if callback is not None:
            callback(x0 + scale * d)
        if masked:
            # = active & ~broken & (rnorm2 > tol2): good ⊆ active, and active
            # never meets the old broken (both by induction), so
            # active & ~broken = good; two graph layers fewer on dask.
            active = good & (rnorm2 > tol2)

        if it % interval == 0 or it == maxiter:
            # Lazy (dask) arrays: compute the state once here, so the checks
            # below and the next iterations start from values, not from the
            # whole graph since iteration 1.  A no-op for eager arrays.
            d, r, p, rho, rnorm2, active, broken = backend.persist(
                d, r, p, rho, rnorm2, active, broken
            )
            if history is not None:
                history.append(xp.max(scale * xp.sqrt(rnorm2)))
            # Host synchronisation (one): non-finite values, breakdown, convergence.
            if masked:
                finite, any_broken, any_active = _read_flags(
                    xp, xp.all(xp.isfinite(rnorm2)), xp.any(broken), xp.any(active)
                )
                done = not any_active
            else:
                finite, any_broken = backend.all_finite(rnorm2), False
                done = finite and backend.to_bool(rnorm2 <= tol2)
            if not finite:
                # On the CPU every step taken was tested finite before.
                return it, d_good if keep_good else d, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
            if any_broken:
                # A frozen column keeps its r, so rᵀz ≤ 0 persists if M caused it.
                m_side = preconditioned and backend.to_bool(xp.any(broken & (rho <= 0)))
                return it, d, SolveStatus.INDEFINITE, _breakdown_message(it, preconditioned, m_side)
            if done:
                return it, d, _CONVERGED, ""
            if keep_good:
                d_good = xp.asarray(d, copy=True)

        z = prob.precondition(r)
        if preconditioned:
            rho_new = _dot(xp, r, z)
            if cpu and not backend.all_finite(rho_new):
                # NaN or Inf from M: found before it reaches p (and d).
                return it, d, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
        else:
            rho_new = rnorm2
        if masked:
            beta = xp.where(active, rho_new / xp.where(active, rho, 1.0), 0.0)
        else:
            beta = rho_new / rho
        p *= beta
        p += z
        rho = rho_new
    return it, d, SolveStatus.MAXITER, ""


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


@backend.quiet_floating_point
@_checks.scipy_tol
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
        tolerance, see :func:`cg`), or ``NONFINITE`` (``x`` is the best
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
    and stops with ``STAGNATION`` as :func:`cg` does (same code: scaling of
    ``b``, verification, restarts, best iterate).  A singular, inconsistent
    system (``b`` not in the range) is detected by ``‖(A − σI) r‖ ≤ √eps
    ‖A − σI‖ ‖r‖`` (SciPy's test with ``√eps`` in place of ``rtol``; a
    matrix with condition number beyond ``1/√eps`` counts as numerically
    singular) or by an invariant Krylov space (``βⱼ₊₁ ≤ n·eps·‖T‖``) that
    leaves a residual.  ``‖A − σI‖`` is estimated by the largest row sum of
    the Lanczos tridiagonal (within a factor 3 of ``‖T‖₂``, and free of
    overflow where SciPy's sum of squares overflows for ``‖A‖ ≳ 1e154``).
    Host synchronisations and NaN detection follow :func:`cg`.

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
    xp = prob.xp
    maxiter = 5 * prob.n if maxiter is None else int(maxiter)
    history: list[Any] | None = [] if record_history else None
    solver = _Minres(prob, shift, maxiter, callback, history)
    tol = _tolerance(xp, _safe_norm(xp, prob.b, solver.m_norm), rtol, atol)
    if not backend.all_finite(tol):
        x = xp.zeros_like(prob.b)
        return _result(prob, x, prob.b, 0, SolveStatus.NONFINITE,
                       "the preconditioner M returned NaN or Inf for b", maxiter, history, 0)
    x, r = prob.start(solver.apply)
    it, x, r, restarts, status, message = _restarted(prob, solver.apply, solver.m_norm, solver.cycle, x, r, tol)
    return _result(prob, x, r, it, status, message, maxiter, history, restarts)


class _Minres:
    """The MINRES recurrences for one validated problem (restartable)."""

    def __init__(self, prob: _Problem, shift: float, maxiter: int,
                 callback: Callable[[Any], Any] | None, history: list[Any] | None) -> None:
        self.prob, self.xp, self.shift = prob, prob.xp, shift
        self.maxiter, self.callback, self.history = maxiter, callback, history
        self.interval = backend.sync_interval(prob.b)
        self.machine_eps = backend.eps(prob.dtype, prob.xp)
        self.tiny = prob.xp.finfo(prob.dtype).smallest_normal
        # ‖(A−σI) r‖ / (‖A−σI‖ ‖r‖) ≥ 1/cond for a nonsingular matrix.  SciPy
        # tests it against rtol; a tolerance tied to rtol detects singularity too
        # late when rtol is tiny (the iterate then grows without bound), so natgrad
        # uses √eps: systems with cond ≳ 1/√eps count as numerically singular.
        self.singular_tol = self.machine_eps**0.5
        # As lanczos: βⱼ₊₁ ≤ n·eps·‖T‖ is an invariant subspace.
        self.invariant_tol = prob.n * self.machine_eps

    def apply(self, v: Any) -> Any:
        y = self.prob.A(v)
        return y - self.shift * v if self.shift != 0.0 else y

    def m_norm(self, r: Any) -> Any:
        xp = self.xp
        return xp.sqrt(xp.clip(_dot(xp, r, self.prob.precondition(r)), min=0.0))

    def cycle(self, r1: Any, tol: Any, scale: Any, x0: Any, it: int) -> tuple[int, Any, SolveStatus, str]:
        """One MINRES run for ``(A − σI) d = r1`` from ``d = 0`` (``r1`` scaled
        by ``1/scale``, see :func:`_restarted`; ``x0 + scale·d`` is the iterate).

        Returns ``(iterations, d or None, status, message)``; the recurrences
        are one loop, longer than most, for the reason given in ``_cg_cycle``.
        """
        xp, precondition = self.xp, self.prob.precondition
        # rᵀMr must be positive for r ≠ 0 (max|r1| is about 1 unless r1 = 0;
        # read before M, which might write into its argument)
        zero_r = xp.max(xp.abs(r1), axis=0) == 0
        y = precondition(r1)
        beta1_sq = _dot(xp, r1, y)
        ok = (beta1_sq > 0) | zero_r
        if not backend.to_bool(xp.all(ok)):
            if not backend.all_finite(beta1_sq):
                return it, None, SolveStatus.NONFINITE, "the preconditioner M returned NaN or Inf"
            return it, None, SolveStatus.INDEFINITE, (
                "the preconditioner M is not positive definite (rᵀMr ≤ 0 for r ≠ 0)"
            )
        beta = xp.sqrt(beta1_sq)
        if self.history is not None:
            self.history.append(xp.max(scale * beta))
        if backend.to_bool(xp.all(beta <= tol)):
            return it, None, _CONVERGED, ""
        # On the CPU (interval 1) tests are free: NaN or Inf from A or M is
        # found before it reaches an update (NumPy would warn there).
        cpu = self.interval == 1
        check_m = cpu and self.prob.M is not None
        zero = xp.zeros_like(beta)
        oldb, dbar, epsln = zero, zero, zero
        phibar = beta
        cs, sn = zero - 1.0, zero
        # ‖T‖ estimate: the largest row sum |βⱼ| + |αⱼ| + |βⱼ₊₁| of the Lanczos
        # tridiagonal, within a factor 3 of ‖T‖₂ (SciPy sums the squares of all
        # entries, which overflows for ‖A‖ ≳ 1e150 and overestimates ‖T‖₂ by
        # up to √iterations).
        anorm = zero
        w = xp.zeros_like(r1)
        w2 = xp.zeros_like(r1)
        r2 = r1
        active = beta > tol
        # Columns found singular and inconsistent.  Kept once set: a column
        # leaves `active` in the iteration that finds it singular, and on an
        # accelerator the next check may come several iterations later.
        singular = xp.zeros_like(active)
        first = True
        d = xp.zeros_like(r1)
        d_good = d  # the iterate at the last passed check: finite
        while it < self.maxiter:
            it += 1
            safe_beta = xp.where(beta > 0, beta, 1.0)
            v = y / safe_beta
            y = self.apply(v)
            if not first:
                y = y - (beta / xp.where(oldb > 0, oldb, 1.0)) * r1
            alfa = _dot(xp, v, y)
            if cpu and not backend.all_finite(alfa):
                return it, d, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
            y = y - (alfa / safe_beta) * r2
            r1, r2 = r2, y
            y = precondition(r2)
            oldb = beta
            beta_sq = _dot(xp, r2, y)
            if check_m and not backend.all_finite(beta_sq):
                return it, d, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
            beta = xp.sqrt(xp.clip(beta_sq, min=0.0))
            row = xp.abs(alfa) + beta if first else xp.abs(alfa) + beta + oldb
            anorm = xp.maximum(anorm, row)
            first = False
            # Apply the previous rotation, then form the new one (Paige–Saunders).
            oldeps = epsln
            delta = cs * dbar + sn * alfa
            gbar = sn * dbar - cs * alfa
            epsln = sn * beta
            dbar = -cs * beta
            root = xp.hypot(gbar, dbar)
            # The floor (SciPy: eps) is relative to ‖T‖, so that it means the
            # same at every scale of A.
            gamma = xp.maximum(xp.hypot(gbar, beta), xp.clip(self.machine_eps * anorm, min=self.tiny))
            cs = gbar / gamma
            sn = beta / gamma
            phi = cs * phibar
            phibar = sn * phibar
            w1, w2 = w2, w
            w = (v - oldeps * w1 - delta * w2) / gamma
            step = xp.where(active, phi, 0.0)
            d = d + step * w
            if self.callback is not None:
                self.callback(x0 + scale * d)
            # ‖(A − σI) r‖ = phibar·root.  Relative to ‖A‖‖r‖ it is at least
            # 1/cond(A − σI) for a nonsingular matrix; below singular_tol the residual
            # lies in the (numerical) null space: singular and inconsistent.
            # β ≈ 0: the Krylov space is invariant, the next step would divide by
            # rounding noise; with phibar > tol the system is then singular too.
            exhausted = beta <= self.invariant_tol * anorm
            singular = singular | (active & ((root <= self.singular_tol * anorm) | exhausted) & (phibar > tol))
            active = active & (phibar > tol) & ~singular
            if it % self.interval == 0 or it == self.maxiter:
                # Lazy (dask) arrays: compute the recurrence's state once, as in cg.
                (y, r1, r2, oldb, beta, beta_sq, anorm, epsln, dbar, cs, sn, phibar, w, w2, d,
                 active, singular) = backend.persist(
                    y, r1, r2, oldb, beta, beta_sq, anorm, epsln, dbar, cs, sn, phibar, w, w2, d,
                    active, singular,
                )
                if self.history is not None:
                    self.history.append(xp.max(scale * phibar))
                # Host synchronisation (one): breakdown, non-finite values, convergence.
                m_broken, finite, any_active, any_singular = _read_flags(
                    xp, xp.any(beta_sq < 0), xp.all(xp.isfinite(phibar)), xp.any(active),
                    xp.any(singular),
                )
                if m_broken:
                    return it, d_good, SolveStatus.INDEFINITE, (
                        f"breakdown at iteration {it}: the preconditioner M is not positive "
                        "definite; x is the iterate before it"
                    )
                if not finite:
                    return it, d_good, SolveStatus.NONFINITE, _NONFINITE_MESSAGE.format(it=it)
                if not any_active:
                    if any_singular:
                        return it, d, SolveStatus.SINGULAR, (
                            f"A − shift·I is singular and b is not in its range (detected at "
                            f"iteration {it}): x is a least-squares solution"
                        )
                    return it, d, _CONVERGED, ""
                d_good = d
        return it, d, SolveStatus.MAXITER, ""


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


@backend.quiet_floating_point
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
    op = _checks.square_operator(A, "A", check_finite=False)
    n = op.shape[0]
    xp = backend.namespace(A=_checks.dense_array(op), v0=v0)  # refuses tracked input first
    if isinstance(op, DenseOperator):
        validation.finite(op.array, "A")
    validation.rhs(v0, n, "v0", allow_block=False)
    k = validation.positive_int(k, "k")
    if k > n:
        raise ValueError(f"k must be at most n={n}, got {k}")
    dtype = backend.float_dtype(xp, v0, *([op.array] if hasattr(op, "array") else []))
    apply = _checks.operator_calls(_cast_dense(op, dtype, xp), "A")
    v0 = xp.astype(v0, dtype) if v0.dtype != dtype else v0
    norm0 = _safe_norm(xp, v0)
    if not backend.to_float(norm0) > 0:
        raise ValueError("v0 must be non-zero")
    machine_eps = backend.eps(dtype, xp)

    q = v0 / norm0
    basis = [q]
    alphas, betas = [], []
    scale = 0.0
    q_prev, beta_prev = None, None
    for j in range(k):
        # A copy: a user's operator that writes into its argument must not
        # change the basis.
        w = apply(xp.asarray(q, copy=True))
        # dask: w and α are read here and again below; persisting them (and
        # w, β further down) keeps every step's graph one step long.
        w, alpha = backend.persist(w, _dot(xp, q, w))
        alpha_f = backend.to_float(alpha)
        if not math.isfinite(alpha_f):
            # Tested before α is used: NaN or Inf would make every later
            # coefficient meaningless (and NumPy warn).  Earlier products
            # were finite (their coefficients were), so this call is the culprit.
            raise validation.NonFiniteOutputError(
                f"A (call {apply.calls}) returned NaN or Inf during Lanczos: the coefficients "
                f"would be meaningless (αⱼ = {alpha_f} at step {j + 1})", "A", apply.calls
            )
        if q_prev is not None:
            w = w - beta_prev * q_prev
        w = w - alpha * q
        if reorthogonalize:
            Q = xp.stack(basis, axis=1)
            for _ in range(2):
                w = w - Q @ (xp.matrix_transpose(Q) @ w)
        alphas.append(alpha_f)
        if j == k - 1:
            break
        w, beta = backend.persist(w, _safe_norm(xp, w))
        beta_f = backend.to_float(beta)
        scale = max(scale, abs(alpha_f) + beta_f)
        if not beta_f > n * machine_eps * scale:
            break  # invariant subspace: T's eigenvalues are exact
        betas.append(beta_f)
        q_prev, beta_prev = q, beta
        q = w / beta
        basis.append(q)
    # From the values already read on the host (the same numbers): one small
    # array rather than a stack of k device scalars (k chunks on dask).
    dev = backend.device(v0)
    alpha_arr = xp.asarray(alphas, dtype=dtype, device=dev)
    beta_arr = xp.asarray(betas, dtype=dtype, device=dev)
    return LanczosResult(alpha_arr, beta_arr, xp.stack(basis, axis=1))

r"""Solvers that need only Hessian-vector products: series and Lanczos.

Many users can multiply by a Hessian (``hvp(v) = H v``, one reverse-over-forward
pass) but can never form it.  This module turns such products into
curvature-aware steps:

* :func:`neumann_solve` — ``(A + λI)⁻¹ v`` for a positive definite ``A`` by the
  Neumann series ``α Σ_k (I − α(A + λI))^k v`` (LiSSA, influence functions,
  implicit differentiation), with an automatic step ``α``, an early stop on the
  residual and divergence detection;
* :func:`saddle_free_solve` — the saddle-free Newton direction
  ``(|H| + λI)⁻¹ g`` (or ``(H² + λI)^(-1/2) g``) for an *indefinite* ``H``, by
  the binomial series of Oldewage, Clarke & Hernández-Lobato (TMLR 2024) with
  Wynn's ε-algorithm, or by Lanczos (``method="lanczos"``), usually far more
  accurate for the same number of products;
* :func:`wynn_epsilon` — the vector ε-algorithm (Shanks transformation) on any
  sequence of arrays.

Every solver checks what ``hvp`` returns at every call (an array of the
input's library, shape and dtype; errors name the call), never mutates its
inputs, and reports divergence (a scale that is too small, a step that is
too large, negative curvature the damping does not cover, non-finite
products) as ``converged=False`` with a ``status`` a program can act on and
an ``info`` that says what to change, instead of returning garbage.  The
number of Hessian-vector products used is ``stats["hvps"]``.

Examples
--------
>>> import numpy as np
>>> from natgrad.linalg.series import saddle_free_solve
>>> H = np.diag([-2.0, -0.5, 1.0, 3.0])
>>> res = saddle_free_solve(lambda v: H @ v, np.ones(4), damping=0.5, method="lanczos")
>>> np.round(res.x, 6)   # 1 / (|h| + 0.5)
array([0.4     , 1.      , 0.666667, 0.285714])
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

from .. import backend, validation
from . import _checks
from .krylov import lanczos
from .operators import from_matvec
from .result import SolveResult, SolveStatus

__all__ = ["neumann_solve", "saddle_free_solve", "wynn_epsilon", "WynnResult"]

#: Lanczos steps used to estimate extreme eigenvalues (``alpha="auto"``, ``scale=None``)
_ESTIMATE_STEPS = 16
#: safety factor on the estimated largest |eigenvalue|: a Lanczos Ritz value
#: from a few steps is a lower bound and may fall a few percent short
_MARGIN = 1.2
#: restarts with a larger scale / smaller step when an automatic choice turns
#: out to diverge (detected during the sum)
_MAX_RESTARTS = 3
#: a term norm this many times its running minimum signals divergence (the
#: terms of a convergent series of a symmetric operator never grow)
_GROWTH = 2.0
#: highest ε-table order picked automatically (vector ε is exact for ``m``
#: exponential modes; beyond ~8 the table gains little and loses digits)
_MAX_ORDER = 8


# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------


_Hvp = validation.CheckedCallable


def _prepare(hvp: Any, v: Any, name: str) -> tuple[Any, Any, _Hvp]:
    """Validated ``(xp, v as float vector, checked and counted hvp)``.

    The HVP's output is checked at every call for shape, dtype, library and
    device (metadata, no host synchronisation), not for finiteness: that
    would be a synchronisation per product on an accelerator, and the series
    test their term norms at their sync points anyway, where NaN or Inf from
    any product shows up (and the last finite partial sum is returned).
    """
    validation.callable_arg(hvp, "hvp")
    validation.array(v, name)
    xp = backend.namespace(**{name: v})
    validation.vector(v, name)
    dtype = backend.float_dtype(xp, v)
    if v.dtype != dtype:
        v = xp.astype(v, dtype)
    return xp, v, validation.CheckedCallable(hvp, "hvp", check_finite=False)


def _copy(xp: Any, x: Any) -> Any:
    """A fresh copy of ``x``: what a user's ``hvp`` receives instead of an array
    the solver keeps (an ``hvp`` that writes into its argument must change
    neither the caller's arrays nor the solver's)."""
    return xp.asarray(x, copy=True)


def _norm(xp: Any, x: Any) -> float:
    return backend.to_float(backend.scaled_norm(xp, x))


def _rayleigh(xp: Any, u: Any, Au: Any) -> float:
    """``uᵀAu / uᵀu`` from normalised vectors (no overflow for any scale);
    0 for ``u = 0``.  One host synchronisation."""
    nu, na = backend.scaled_norm(xp, u), backend.scaled_norm(xp, Au)
    one = xp.ones_like(nu)
    nu_s, na_s = xp.where(nu > 0, nu, one), xp.where(na > 0, na, one)
    return backend.to_float(backend.vecdot(xp, u / nu_s, Au / na_s) * (na / nu_s))


def _norm_ratio(xp: Any, a: Any, b: Any) -> float:
    """``‖a‖/‖b‖`` without overflow (0 for ``b = 0``).  One host synchronisation."""
    nb = backend.scaled_norm(xp, b)
    return backend.to_float(backend.scaled_norm(xp, a) / xp.where(nb > 0, nb, xp.ones_like(nb)))


def _finite_products(H: _Hvp) -> Callable[[Any], Any]:
    """``H`` whose every output is checked for NaN/Inf (raising ``_NonFinite``
    before the value enters any arithmetic): for Lanczos, which synchronises
    at every step anyway, so the check costs no extra round trip's worth."""

    def apply(u: Any) -> Any:
        y = H(u)
        if not backend.all_finite(y):
            raise _NonFinite()
        return y

    return apply


def _tridiagonal(xp: Any, alpha: Any, beta: Any) -> Any:
    """The symmetric tridiagonal matrix with diagonal ``alpha`` and off-diagonal
    ``beta``, built without item assignment (JAX)."""
    m = alpha.shape[0]
    T = alpha[:, None] * xp.eye(m, dtype=alpha.dtype, device=backend.device(alpha))
    if m > 1:
        b = xp.concat([beta, xp.zeros((1,), dtype=alpha.dtype, device=backend.device(alpha))])
        upper = b[:, None] * xp.eye(m, k=1, dtype=alpha.dtype, device=backend.device(alpha))
        T = T + upper + xp.matrix_transpose(upper)
    return T


def _ritz_extremes(H: _Hvp, xp: Any, n: int, dtype: Any, dev: Any) -> tuple[float, float]:
    """Smallest and largest Ritz values of ``H`` after a few Lanczos steps from
    a fixed random start (every eigenvector is present in it, unlike in ``g``)."""
    v0 = backend.normal(xp, (n,), dtype=dtype, device=dev, seed=0)
    try:
        # NaN or Inf from hvp is caught at the product that made it, before
        # Lanczos computes with it (Inf − Inf warnings, or an eigensolver
        # that does not converge on NaN coefficients).
        res = lanczos(from_matvec(_finite_products(H), (n, n), dtype), v0, min(_ESTIMATE_STEPS, n))
    except validation.NonFiniteOutputError:
        raise _NonFinite() from None
    T = _tridiagonal(xp, res.alpha, res.beta)
    # Normalised, so that coefficients near the dtype's limits (an hvp scaled
    # by 1e±150) stay in range inside the eigensolver.
    c = backend.to_float(xp.max(xp.abs(T)))
    if not math.isfinite(c):
        raise _NonFinite()
    if c == 0.0:
        return 0.0, 0.0
    theta, _ = backend.eigh(T / c)
    lo, hi = backend.to_float(theta[0]) * c, backend.to_float(theta[-1]) * c
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise _NonFinite()
    return lo, hi


class _NonFinite(Exception):
    """hvp produced NaN or Inf while estimating the spectrum."""


def _hvps(H: _Hvp) -> str:
    return f"{H.calls} Hessian-vector products"


# ---------------------------------------------------------------------------
# Neumann series
# ---------------------------------------------------------------------------


@backend.quiet_floating_point
@_checks.scipy_tol
def neumann_solve(
    hvp: Callable[[Any], Any],
    v: Any,
    *,
    alpha: float | str,
    damping: float = 0.0,
    terms: int = 100,
    rtol: float | None = None,
) -> SolveResult:
    r"""``(A + damping·I)⁻¹ v`` by the Neumann series, from products with ``A``.

    Parameters
    ----------
    hvp : callable
        ``hvp(u) -> A u`` for ``u`` of shape ``(n,)``, in ``v``'s array library
        (a Hessian-vector product, a Gauss-Newton product, ...).  ``A`` must be
        symmetric, and ``A + damping·I`` positive definite for the series to
        converge.  Checked at every call: it must return an array of
        ``v``'s library, device, shape and dtype (NaN/Inf is reported as
        ``NONFINITE``, not raised).
    v : array, shape (n,)
        Right-hand side (finite).  Not modified.
    alpha : float or "auto"
        Step of the Richardson iteration behind the series; it converges iff
        ``0 < alpha·λ < 2`` for every eigenvalue ``λ`` of ``A + damping·I``.
        ``"auto"`` runs 16 Lanczos steps from a fixed random vector to estimate
        the extreme eigenvalues ``θ_min ≤ θ_max`` and uses
        ``alpha = 2 / (1.2 (θ_max + damping) + (θ_min + damping))`` (the
        optimal step with a 20% margin on the top of the spectrum); if the
        estimate shows ``θ_min + damping ≤ 0`` the solve stops at once.
    damping : float
        ``λ ≥ 0`` added to the diagonal.
    terms : int
        Maximum number of terms ``K`` summed (each costs one product).
    rtol : float, optional
        Stop as soon as ``‖v − (A + λI) x‖ ≤ rtol·‖v‖``.  Without it all
        ``terms`` are summed.

    Returns
    -------
    SolveResult
        ``x`` (``v``'s namespace, device and dtype), ``converged``,
        ``iterations`` (terms summed), ``residual_norm`` (``‖v − (A + λI)x‖``:
        the next term of the series, equal to it in exact arithmetic; when
        ``rtol`` is met, the true residual computed by one more product),
        ``status``, ``stats`` (``"hvps"``: products, those of
        ``alpha="auto"`` and of the verification included; ``"restarts"``:
        restarts with a smaller ``alpha``) and ``info`` (why it stopped, in
        words).  ``status``: ``CONVERGED`` (with ``rtol=None``: all terms
        summed and none grew, no tolerance certified; with ``rtol``: the
        tolerance met by the true residual), ``MAXITER`` (``rtol`` not met
        within ``terms``, or met by the series' residual but not by the true
        one: ``hvp`` did not act as one linear operator at every call, or
        rounding at the dtype's attainable accuracy), ``DIVERGED`` (``alpha`` too large),
        ``INDEFINITE`` (``A + damping·I`` has a non-positive eigenvalue:
        increase ``damping``; when ``alpha="auto"`` finds it before summing,
        ``x`` is zero) or ``NONFINITE`` (NaN or Inf from ``hvp``).  On
        failure ``x`` is the partial sum with the smallest residual seen.

    Raises
    ------
    TypeError
        ``hvp`` not callable or returning a non-array or another dtype;
        ``v`` not an array; non-numeric ``alpha``, ``damping``, ``rtol``;
        non-integer ``terms``.
    ValueError
        ``v`` not a vector or containing NaN/Inf; ``hvp`` returning another
        shape; ``alpha ≤ 0``; ``damping < 0``; ``terms ≤ 0``; ``rtol < 0``.

    Notes
    -----
    With ``B = A + λI`` and ``t_k = (I − αB)^k v``,

    .. math::  x_K = α \sum_{k<K} t_k,\qquad v − B x_K = t_K,

    so the next term is the residual (Agarwal, Bullins & Hazan, "Second-order
    stochastic optimization for machine learning in linear time" (LiSSA),
    JMLR 2017; Koh & Liang, "Understanding black-box predictions via
    influence functions", ICML 2017).  For a symmetric ``B`` with
    ``|1 − αμ| ≤ 1`` on its spectrum ``‖t_k‖`` never increases, so a term
    twice its running minimum (above rounding level) proves divergence.  The
    Rayleigh quotient ``ρ = t_kᵀ A t_k / ‖t_k‖²`` (free: ``A t_k`` is needed
    for the next term) tells why: ``ρ + λ ≤ 0`` certifies an eigenvalue
    ``≤ −λ`` (raise ``damping`` above ``−ρ``), ``α(ρ + λ) ≥ 2`` certifies that
    ``α`` is too large.  With ``alpha="auto"`` the latter case restarts the
    sum with a step computed from ``ρ`` (at most three times).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[2.0, 0.5], [0.5, 1.0]])
    >>> res = neumann_solve(lambda u: A @ u, np.array([1.0, 1.0]), alpha="auto",
    ...                     damping=0.1, terms=200, rtol=1e-10)
    >>> res.converged, np.round(res.x, 6)
    (True, array([0.291262, 0.776699]))
    >>> np.round(np.linalg.solve(A + 0.1 * np.eye(2), [1.0, 1.0]), 6)
    array([0.291262, 0.776699])

    A negative eigenvalue that the damping does not cover is reported:

    >>> H = np.diag([1.0, -0.5])
    >>> res = neumann_solve(lambda u: H @ u, np.ones(2), alpha=0.5, damping=0.1)
    >>> res.converged, "damping" in res.info
    (False, True)
    """
    xp, v, A = _prepare(hvp, v, "v")
    damping = validation.nonnegative(damping, "damping")
    terms = validation.positive_int(terms, "terms")
    if rtol is not None:
        rtol = validation.nonnegative(rtol, "rtol")
    auto = isinstance(alpha, str)
    if auto:
        if alpha != "auto":
            raise ValueError(f"alpha must be a positive number or 'auto', got {alpha!r}")
    else:
        alpha = validation.positive(alpha, "alpha")

    norm_v = _norm(xp, v)
    if norm_v == 0.0:
        return SolveResult(xp.zeros_like(v), True, 0, 0.0, SolveStatus.CONVERGED,
                           {"hvps": 0, "restarts": 0}, "v is zero: x = 0 (0 Hessian-vector products)")

    extra = ""
    if auto:
        try:
            lo, hi = _ritz_extremes(A, xp, v.shape[0], v.dtype, backend.device(v))
        except _NonFinite:
            return SolveResult(
                xp.zeros_like(v), False, 0, norm_v, SolveStatus.NONFINITE, {"hvps": A.calls, "restarts": 0},
                f"hvp returned NaN or Inf while estimating the spectrum ({_hvps(A)})",
            )
        if lo + damping <= 0.0:
            # A Ritz value is a Rayleigh quotient: λ_min(A) ≤ θ_min certifies it.
            return SolveResult(
                xp.zeros_like(v), False, 0, norm_v, SolveStatus.INDEFINITE, {"hvps": A.calls, "restarts": 0},
                f"A + damping·I is not positive definite: A has an eigenvalue ≤ {lo:.3e} "
                f"(Lanczos estimate), so the Neumann series diverges; increase damping "
                f"above {-lo:.3e} or use saddle_free_solve ({_hvps(A)})",
            )
        alpha = 2.0 / (_MARGIN * (hi + damping) + (lo + damping))
        extra = f", alpha='auto' = {alpha:.3e}"

    # The solution is linear in v: sum the series for v/‖v‖ and scale back, so
    # that the products of an operator near the dtype's limits (1e±150) with
    # the shrinking residual neither overflow nor fall into the subnormals
    # (which XLA flushes to zero).
    unit = v / norm_v
    restarts = 0
    while True:
        run = _neumann_sum(xp, A, unit, 1.0, alpha, damping, terms, rtol)
        run = run._replace(x=run.x * norm_v, residual=run.residual * norm_v,
                           best=(run.best[0] * norm_v, run.best[1] * norm_v, run.best[2]))
        if run.status in ("alpha", "growth") and auto and restarts < _MAX_RESTARTS:
            # The estimate missed the top of the spectrum: restart with a step
            # from the Rayleigh quotient that proved it (a lower bound on λ_max).
            top = max(run.rho, 0.0) + damping
            alpha = min(alpha / 2.0, 2.0 / (_MARGIN * 1.5 * top)) if top > 0 else alpha / 2.0
            extra = f", alpha='auto' reduced to {alpha:.3e} after divergence"
            restarts += 1
            continue
        break
    return _neumann_result(xp, run, A, v, norm_v, alpha, damping, rtol,
                           {"hvps": A.calls, "restarts": restarts}, extra)


class _NeumannRun(NamedTuple):
    """One pass of the Neumann sum (see ``_neumann_sum``)."""

    status: str  # "", "nonfinite", "negative", "alpha", "growth" or "tolerance"
    x: Any  # the last partial sum
    k: int  # terms summed
    residual: float  # ‖t_k‖ at the last check
    best: tuple[float, Any, int]  # (residual, partial sum, terms) with the smallest residual
    rho: float  # the last Rayleigh quotient of A


def _neumann_sum(xp: Any, A: _Hvp, v: Any, norm_v: float, a: float, damping: float,
                 terms: int, rtol: float | None) -> _NeumannRun:
    """Sum the series with step ``a``, testing for divergence at the sync points."""
    machine_eps = backend.eps(v.dtype, xp)
    interval = backend.sync_interval(v)
    t = _copy(xp, v)  # t_k = (I − αB)^k v, the residual of x_k; never the caller's v
    x = a * v  # x_k: the partial sum of k terms
    k = 1
    best = (math.inf, x, 1)
    min_norm, rho, tn = norm_v, 0.0, norm_v
    while True:
        At = A(_copy(xp, t))  # t is the next term's start: an hvp writing into it must not change it
        t_prev, t = t, t - a * (At + damping * t)
        if k % interval == 0 or k == terms:
            # dask: the checks below and the next terms start from values,
            # not from the graph since the first term (a no-op when eager).
            t, t_prev, At, x = backend.persist(t, t_prev, At, x)
            tn = _norm(xp, t)
            if not math.isfinite(tn):
                return _NeumannRun("nonfinite", x, k, tn, best, rho)
            # Rayleigh quotient of A on t_{k−1} (its product is at hand).
            rho = _rayleigh(xp, t_prev, At)
            if rho + damping <= 0.0:
                return _NeumannRun("negative", x, k, tn, best, rho)
            if a * (rho + damping) >= 2.0 * (1.0 + 100 * machine_eps):
                return _NeumannRun("alpha", x, k, tn, best, rho)
            if tn > _GROWTH * min_norm + 1e3 * machine_eps * norm_v:
                return _NeumannRun("growth", x, k, tn, best, rho)
            min_norm = min(min_norm, tn)
            if tn < best[0]:
                best = (tn, x, k)
            if rtol is not None and tn <= rtol * norm_v:
                return _NeumannRun("tolerance", x, k, tn, best, rho)
        if k == terms:
            return _NeumannRun("", x, k, tn, best, rho)
        x = x + a * t
        k += 1


def _neumann_result(xp: Any, run: _NeumannRun, A: _Hvp, v: Any, norm_v: float, alpha: float,
                    damping: float, rtol: float | None, stats: dict[str, Any], extra: str) -> SolveResult:
    """The :class:`SolveResult` of a finished Neumann sum: status and sentence."""
    k, rho = run.k, run.rho
    if run.status == "tolerance":
        # The recursive residual t_k equals v − (A + λI)x_k only if hvp is one
        # linear operator at every call (and up to rounding): one more product
        # verifies the claim against the operator as it is now.
        true = _norm(xp, v - (A(_copy(xp, run.x)) + damping * run.x))
        stats = {**stats, "hvps": A.calls}
        if not math.isfinite(true):
            return SolveResult(
                run.x, False, k, norm_v, SolveStatus.NONFINITE, stats,
                f"non-finite values: hvp returned NaN or Inf when the result was verified; "
                f"x is the partial sum of {k} terms ({_hvps(A)}{extra})",
            )
        if not true <= rtol * norm_v:
            return SolveResult(
                run.x, False, k, true, SolveStatus.MAXITER, stats,
                f"not converged: the summed residual {run.residual:.3e} met rtol·‖v‖ = "
                f"{rtol * norm_v:.3e} after {k} terms, but the true residual ‖v − (A + damping·I)x‖ "
                f"is {true:.3e} (hvp did not act as the same linear operator at every call, or "
                f"rounding at the dtype's attainable accuracy) ({_hvps(A)}{extra})",
            )
        run = run._replace(residual=true)
    if run.status in ("", "tolerance"):
        if rtol is not None and run.status != "tolerance":
            return SolveResult(
                run.x, False, k, run.residual, SolveStatus.MAXITER, stats,
                f"not converged: {k} terms summed, residual {run.residual:.3e} > rtol·‖v‖ = "
                f"{rtol * norm_v:.3e}; increase terms or damping ({_hvps(A)}{extra})",
            )
        how = f"converged: residual {run.residual:.3e} ≤ rtol·‖v‖" if run.status else "summed"
        return SolveResult(run.x, True, k, run.residual, SolveStatus.CONVERGED, stats,
                           f"{how} after {k} terms ({_hvps(A)}{extra})")
    res_norm, x_best, k_best = run.best
    if not math.isfinite(res_norm):
        res_norm, x_best, k_best = norm_v, xp.zeros_like(v), 0
    if run.status == "nonfinite":
        status, why = SolveStatus.NONFINITE, (
            f"non-finite values after {k} terms: hvp returned NaN or Inf (or the series overflowed)"
        )
    elif run.status == "negative":
        status, why = SolveStatus.INDEFINITE, (
            f"the series diverges: A has negative curvature not covered by the "
            f"damping (Rayleigh quotient {rho:.3e} ≤ −damping = {-damping:.3e}); "
            f"increase damping above {-rho:.3e} or use saddle_free_solve"
        )
    elif run.status == "alpha":
        status, why = SolveStatus.DIVERGED, (
            f"the series diverges: alpha = {alpha:.3e} is too large (A + damping·I has "
            f"an eigenvalue ≥ {rho + damping:.3e} and alpha·λ must stay below 2); "
            f"use alpha < {2.0 / (rho + damping):.3e} or alpha='auto'"
        )
    else:
        status, why = SolveStatus.DIVERGED, (
            f"the series diverges: the terms grew after {k} terms; alpha is too "
            "large or A + damping·I has eigenvalues ≤ 0 (use a smaller alpha or "
            "alpha='auto', or increase damping)"
        )
    return SolveResult(
        x_best, False, k_best, res_norm, status, stats,
        f"{why}; x is the partial sum of {k_best} terms with the smallest residual "
        f"({_hvps(A)}{extra})",
    )


# ---------------------------------------------------------------------------
# Wynn's epsilon algorithm
# ---------------------------------------------------------------------------


class WynnResult(NamedTuple):
    """Outcome of :func:`wynn_epsilon`.

    A named tuple: unpack it as ``x, error, order = wynn_epsilon(...)`` or
    read the fields by name.

    Parameters
    ----------
    x : array, shape (n,)
        The accelerated limit: the last entry of the chosen even column, in
        the sequence's namespace and device and its floating dtype (integer
        input is promoted).
    error : float
        Error estimate: the 2-norm of the difference between the last two
        entries of that column, or between its only entry and the last entry
        of the previous even column (0 when the sequence had converged
        exactly).
    order : int
        ``m`` of the column ``ε_{2m}`` used (lower than requested when the
        table stopped early because consecutive entries coincided).  ``0``
        means no acceleration: ``x`` is the last entry of the sequence.

    Raises
    ------
    AttributeError
        On assignment to a field (named tuples are immutable).

    Notes
    -----
    ``error`` is a heuristic, not a bound: it is the last correction the
    table made, which tracks the true error when the sequence is in the
    regime where the ε-algorithm converges (e.g. alternating or
    geometrically converging partial sums) and can underestimate it
    otherwise.  Compare ``order`` with the order asked for to see whether the
    table was cut short.  ``error`` is a Python float: reading it is one
    host synchronisation on a GPU.

    Examples
    --------
    Partial sums of ``1 − 1/2 + 1/3 − …`` (limit ``ln 2``), as a ``(7, 1)``
    array:

    >>> import numpy as np
    >>> from natgrad.linalg import wynn_epsilon
    >>> s = np.cumsum([(-1.0) ** k / (k + 1) for k in range(7)])
    >>> res = wynn_epsilon(s[:, None])
    >>> res.order, res.x.shape
    (3, (1,))
    >>> bool(abs(res.x[0] - np.log(2)) < 1e-5 < abs(s[-1] - np.log(2)))
    True
    >>> bool(res.error < 1e-4)
    True

    A sequence that has already converged is returned unaccelerated:

    >>> wynn_epsilon(np.ones((5, 2)))
    WynnResult(x=array([1., 1.]), error=0.0, order=0)
    """

    x: Any
    error: float
    order: int


def wynn_epsilon(sequence: Any, *, order: int | None = None) -> WynnResult:
    r"""Accelerate a vector sequence by Wynn's ε-algorithm (Samelson inverse).

    Parameters
    ----------
    sequence : sequence of arrays, or array of shape (L, n)
        ``S_0, …, S_{L−1}``, typically the last partial sums of a series,
        all of one namespace, shape ``(n,)`` and dtype.  Not modified.
    order : int, optional
        Return the last entry of column ``ε_{2·order}`` (needs
        ``L ≥ 2·order + 1``).  By default the highest even column,
        ``order = ⌊(L − 1)/2⌋``: on the series of this module higher columns
        were consistently more accurate than lower ones, whereas choosing the
        column whose last two entries agree best (QUADPACK's rule) often
        picked the unaccelerated sequence, whose slow convergence hides
        behind small differences.

    Returns
    -------
    WynnResult
        ``(x, error, order)``.

    Raises
    ------
    ValueError
        Fewer than 3 entries (nothing to extrapolate), entries of different
        shapes, NaN/Inf, or an ``order`` needing more entries than given.
    TypeError
        Entries from different libraries or devices; non-integer ``order``.

    Notes
    -----
    Wynn, "On a device for computing the e_m(S_n) transformation" (Math.
    Tables Aids Comput. 10, 1956); vector form with the Samelson inverse
    ``y⁻¹ = y / ‖y‖²`` (Wynn, "Acceleration techniques for iterated vector
    and matrix problems", Math. Comp. 16, 1962)::

        ε_{−1}^{(j)} = 0,   ε_0^{(j)} = S_j,
        ε_{k+1}^{(j)} = ε_{k−1}^{(j+1)} + (ε_k^{(j+1)} − ε_k^{(j)})⁻¹.

    Even columns ``ε_{2m}`` are the estimates (for scalars,
    ``ε_2 = `` Aitken's Δ², ``ε_{2m}`` the Shanks transformation ``e_m``);
    odd columns are intermediate.  A column whose consecutive entries agree to
    rounding has converged: its last entry is returned (if even) instead of
    dividing by a zero difference.  The work is one pass over a table of
    ``L·(L+1)/2`` vectors held as ``(L−k, n)`` blocks, one column at a time.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.cumsum([(-0.5) ** k for k in range(6)])   # → 2/3
    >>> seq = [np.array([v, 2 * v]) for v in s]
    >>> r = wynn_epsilon(seq)
    >>> np.round(r.x, 12), r.order
    (array([0.666667, 1.333333]), 1)
    """
    if backend.is_array(sequence):
        if sequence.ndim != 2:
            raise ValueError(f"sequence must have shape (L, n), got {tuple(sequence.shape)}")
        xp = backend.namespace(sequence=sequence)
        E = sequence
    else:
        items = list(sequence)
        if not items or not all(backend.is_array(s) for s in items):
            raise TypeError("sequence must be a sequence of arrays or an (L, n) array")
        xp = backend.namespace(**{f"sequence[{i}]": s for i, s in enumerate(items)})
        shape = tuple(items[0].shape)
        for i, s in enumerate(items):
            if tuple(s.shape) != shape or len(shape) != 1:
                raise ValueError(
                    f"sequence entries must be vectors of one shape; sequence[{i}] has "
                    f"shape {tuple(s.shape)}, sequence[0] {shape}"
                )
        E = xp.stack(items, axis=0)
    L = E.shape[0]
    if L < 3:
        raise ValueError(f"sequence needs at least 3 entries to extrapolate, got {L}")
    if not backend.all_finite(E):
        raise ValueError("sequence contains NaN or Inf")
    if order is not None:
        order = validation.positive_int(order, "order")
        if 2 * order + 1 > L:
            raise ValueError(
                f"order={order} needs at least {2 * order + 1} entries, got {L}"
            )
    dtype = backend.float_dtype(xp, E)
    if E.dtype != dtype:
        E = xp.astype(E, dtype)
    return _wynn(xp, E, order)


def _wynn(xp: Any, E: Any, order: int | None) -> WynnResult:
    """The ε-table on ``E`` of shape ``(L, n)`` (validated), up to column
    ``2·order`` (the highest even column when ``order`` is None)."""
    L = E.shape[0]
    top = 2 * ((L - 1) // 2) if order is None else 2 * order
    tiny = 8 * backend.eps(E.dtype, xp)
    prev = xp.zeros((L + 1, E.shape[1]), dtype=E.dtype, device=backend.device(E))
    cur = E
    last_even, before = (cur, 0), E[-1, :]
    k = 0
    while k < top:
        D = cur[1:, :] - cur[:-1, :]
        d2 = xp.sum(D * D, axis=1)
        scale2 = xp.maximum(xp.sum(cur[1:, :] ** 2, axis=1), xp.sum(cur[:-1, :] ** 2, axis=1))
        if backend.to_bool(xp.any(d2 <= tiny * tiny * scale2)):
            # Consecutive entries coincide: an even column has converged (its
            # last entry is the limit); in an odd one the next column would
            # divide by zero, so the last even column is the answer.
            if k % 2 == 0:
                return WynnResult(cur[-1, :], 0.0, k // 2)
            break
        # dask: each column is read at the next test; persisted, the table's
        # graph stays one column deep (a no-op when eager).
        prev, cur = cur, backend.persist(prev[1:-1, :] + D / d2[:, None])
        k += 1
        if k % 2 == 0:
            before = last_even[0][-1, :]
            last_even = (cur, k)
    col, k = last_even
    if col.shape[0] >= 2:
        err = _norm(xp, col[-1, :] - col[-2, :])
    else:
        # A single entry: compare with the previous even column's last entry.
        err = _norm(xp, col[-1, :] - before)
    return WynnResult(col[-1, :], err, k // 2)


# ---------------------------------------------------------------------------
# saddle-free Newton
# ---------------------------------------------------------------------------


def _damped_coefficients(terms: int, damping: float) -> list[float]:
    """Taylor coefficients ``c_k`` of ``1/(√(1 − x) + μ)``, ``μ = damping``
    (the damping in units of ``√V``, as the paper writes it).

    The paper's recursion ``c_k = (c_{k−1} + (−1)^k binom(1/2, k)) / (1 − μ²)``
    subtracts nearly equal numbers and multiplies the rounding error by
    ``1/(1 − μ²)`` per step (``(4/3)^100 ≈ 3e12`` for ``μ = 1/2``; undefined at
    ``μ = 1``).  The same coefficients follow from inverting the power series
    ``√(1 − x) + μ = (1 + μ) − Σ_{j≥1} a_j x^j`` with ``a_j > 0``:
    ``c_k = Σ_{j=1}^{k} a_j c_{k−j} / (1 + μ)``, a sum of positive terms, exact
    to a few ulps for every ``μ ≥ 0``.
    """
    a = [1.0]  # a_j = −(−1)^j binom(1/2, j) > 0 for j ≥ 1 (a_0 unused)
    for j in range(1, terms):
        a.append(a[-1] * (j - 1.5) / j if j > 1 else 0.5)
    c = [1.0 / (1.0 + damping)]
    for k in range(1, terms):
        c.append(math.fsum(a[j] * c[k - j] for j in range(1, k + 1)) / (1.0 + damping))
    return c


def _quasi_coefficients(terms: int) -> list[float]:
    """``C(2k, k)/4^k``: the Taylor coefficients of ``(1 − x)^(−1/2)``."""
    d = [1.0]
    for k in range(1, terms):
        d.append(d[-1] * (2 * k - 1) / (2 * k))
    return d


_VARIANTS = ("damped", "quasi")
_METHODS = ("series", "lanczos")


@backend.quiet_floating_point
def saddle_free_solve(
    hvp: Callable[[Any], Any],
    g: Any,
    *,
    damping: float,
    scale: float | None = None,
    terms: int = 20,
    accelerate: bool | int = True,
    variant: str = "damped",
    method: str = "series",
) -> SolveResult:
    r"""Saddle-free Newton direction ``(|H| + damping·I)⁻¹ g`` from Hessian-vector products.

    Parameters
    ----------
    hvp : callable
        ``hvp(v) -> H v`` for ``v`` of shape ``(n,)`` in ``g``'s array library;
        ``H`` symmetric, possibly indefinite.  Checked at every call
        (array of ``g``'s library, device, shape and dtype).
    g : array, shape (n,)
        The gradient (finite).  Not modified.
    damping : float
        ``λ ≥ 0``.  ``variant="damped"``: added to ``|H|`` (units of ``H``);
        ``variant="quasi"``: added to ``H²`` (units of ``H²``).
    scale : float, optional
        The series scale ``V`` (units of ``H²``); the series converges iff
        ``V > λ_max(H²)/2`` (``"damped"``) or ``V > (λ_max(H²) + λ)/2``
        (``"quasi"``).  By default 16 Lanczos steps on ``H`` from a fixed
        random vector estimate ``λ_max(|H|)`` by the largest ``|θ|`` and
        ``V = (1.2 θ)²/2`` (``+ λ/2`` for ``"quasi"``); if the sum then
        proves the estimate short, it restarts with a larger ``V``.  A
        given ``scale`` that is too small is reported, never summed into
        garbage.  Ignored by ``method="lanczos"``.
    terms : int
        ``"series"``: number of terms ``K`` (``2(K − 1)`` products).
        ``"lanczos"``: number of Lanczos steps ``k`` (``k + 1`` products).
    accelerate : bool or int
        Apply Wynn's ε-algorithm to the last partial sums: ``True`` chooses
        the order ``m = min(8, ⌊(K − 2)/2⌋)`` (keeping the last ``2m + 2``
        partial sums in memory and returning the last entry of ``ε_{2m}``),
        an int fixes ``m``, ``False`` returns the plain partial sum.  Ignored by ``method="lanczos"``.
    variant : {"damped", "quasi"}
        ``"damped"``: ``(|H| + λI)⁻¹ g``; ``"quasi"``: ``(H² + λI)^(-1/2) g``.
    method : {"series", "lanczos"}
        ``"series"``: the binomial series of the paper; ``"lanczos"``: a
        Rayleigh–Ritz approximation in the Krylov space of ``H`` (below).

    Returns
    -------
    SolveResult
        ``x`` (``g``'s namespace, device and dtype), ``converged``,
        ``iterations`` (terms summed, or Lanczos steps), ``residual_norm``,
        ``status``, ``stats`` and ``info``.  The residual ``(|H| + λI)x − g``
        cannot be formed from products with ``H`` (``|H|`` is a matrix
        function; neither it nor any power of it is available), and no
        cheaper quantity bounds the error, so ``residual_norm`` is ``nan``.
        ``stats["error_estimate"]`` estimates the relative error
        ``‖x − x*‖/‖x‖`` instead: the last correction (the last term, the
        ε-table's last change, or the change from ``k − 1`` to ``k``
        Lanczos steps); ``0.0`` when the Krylov space was invariant (exact)
        and ``nan`` on failure.  It is a heuristic, not a bound: on slowly
        converging series it can underestimate by more than ten times (the
        tests find Lanczos within a factor 10).  One more product checks
        the result: ``(|H| + λI)x = g`` implies ``‖Hx‖ = ‖g − λx‖``
        (``‖Hx‖² + λ‖x‖² = ‖g‖²`` for ``"quasi"``), and the mismatch gives
        ``stats["residual_lower_bound"]``, a proven lower bound on the
        relative residual ``‖(|H| + λI)x − g‖/‖g‖``.  ``stats["hvps"]``
        counts the products (those of ``scale=None`` and the check included)
        and ``stats["restarts"]`` the series restarts with a larger scale.
        ``status``: ``CONVERGED`` (the method ran to its end without
        divergence or non-finite values, its error estimate is at most 0.1
        and the residual's lower bound at most 0.01; it certifies no
        tolerance), ``MAXITER`` (the error estimate or the lower bound says
        otherwise: too few terms, ``H`` singular without damping, or an
        ``hvp`` that changed between calls; ``x`` is the method's result),
        ``DIVERGED`` (the scale is too small: ``x`` is the partial sum at
        the smallest term seen and ``info`` names the scale to use),
        ``NONFINITE`` (NaN or Inf from ``hvp``: the last finite partial sum,
        or zero when it happened while estimating the scale) or
        ``SINGULAR`` (Lanczos, ``|H| + λI`` singular to rounding on the
        Krylov space: ``x`` is zero; use a damping).

    Raises
    ------
    TypeError
        ``hvp`` not callable or returning a non-array or another dtype;
        ``g`` not an array; non-numeric ``damping``/``scale``; non-integer
        ``terms``; ``accelerate`` neither bool nor int.
    ValueError
        ``g`` not a vector or containing NaN/Inf; ``hvp`` returning another
        shape; ``damping < 0``; ``scale ≤ 0``; ``terms ≤ 0``;
        ``accelerate < 0``; unknown ``variant`` or ``method``.

    Notes
    -----
    Oldewage, Clarke & Hernández-Lobato, "Series of Hessian-vector products
    for tractable saddle-free Newton optimisation of neural networks", TMLR
    2024 (arXiv 2310.14901).  With ``X = I − H²/V`` and ``μ = λ/√V``,
    ``|H| = √V (I − X)^{1/2}``, so

    .. math::
        (|H| + λI)^{-1} g = V^{-1/2} \sum_k c_k X^k g,\qquad
        \sum_k c_k x^k = \frac{1}{\sqrt{1 − x} + μ},

    ``c_0 = 1/(1 + μ)``, ``c_k = (c_{k−1} + (−1)^k \binom{1/2}{k})/(1 − μ²)``
    (the paper's recursion; computed here by an equivalent positive-term
    recursion that does not amplify rounding, see ``_damped_coefficients``).
    ``"quasi"``: ``X = I − (H² + λI)/V`` and ``c_k = \binom{2k}{k}/4^k``
    (the series of ``(1 − x)^{-1/2}``).  Each term costs two products
    (``H(H u)``).  The coefficients decay like ``k^{-3/2}``, so the series
    converges iff the spectrum of ``X`` lies in ``[−1, 1]``, i.e.
    ``V ≥ λ_max(H²)/2``; for eigenvalues ``h`` with ``h² ≪ V`` the error
    decays only like ``(1 − h²/V)^K``, which is what ε-acceleration (paper,
    Sec. 3.3) and Lanczos improve on.  Divergence is proved during the sum by
    the Rayleigh quotient ``ρ = ‖H u_k‖²/‖u_k‖² > 2V`` (a lower bound on
    ``λ_max(H²)``, free from the products), or by a term twice its running
    minimum (the terms of a convergent series never grow).

    ``method="lanczos"`` (beyond the paper): ``k + 1`` Lanczos steps on ``H``
    from ``g`` give ``H Q_k = Q_{k+1} \underline{T}_k``, hence the exact
    projection ``M = Q_kᵀ H² Q_k = \underline{T}_kᵀ \underline{T}_k =
    T_k² + β_k² e_k e_kᵀ`` and ``x = ‖g‖ Q_k f(M) e_1`` with
    ``f(s) = 1/(√s + λ)`` (or ``(s + λ)^{-1/2}``), evaluated through the SVD
    ``\underline{T}_k = U Σ Wᵀ`` as ``f(M) = W f(Σ²) Wᵀ`` (``σ`` is accurate to
    ``eps·‖H‖`` where forming ``M`` would only give ``√eps·‖H‖``).  Using ``H²`` rather than
    ``f(T) = 1/(|T| + λ)`` matters: ``f`` is smooth on the spectrum of the
    positive semidefinite ``M`` (``λ_min(H²) ≤ θ ≤ λ_max(H²)``), whereas
    Ritz values of an indefinite ``H`` can fall near 0, where ``|t|`` has its
    kink, and spoil ``f(T)``; and projecting ``H²`` onto the Krylov space of
    ``H`` (dimension ``k``) uses twice the space that Lanczos on ``H²`` gets
    for the same products.  The result is exact for even polynomials of
    degree ``< k`` and, ``f`` being a Stieltjes function, close to the best
    approximation from the Krylov space.  If the Krylov space becomes
    invariant the result is exact.

    Examples
    --------
    >>> import numpy as np
    >>> H = np.array([[1.0, 2.0], [2.0, -2.0]])   # eigenvalues −3 and 2
    >>> g = np.array([1.0, 0.0])
    >>> w, U = np.linalg.eigh(H)
    >>> exact = U @ ((U.T @ g) / (np.abs(w) + 0.5))
    >>> res = saddle_free_solve(lambda v: H @ v, g, damping=0.5, terms=30)
    >>> res.converged, bool(np.allclose(res.x, exact, atol=1e-6))
    (True, True)
    >>> res = saddle_free_solve(lambda v: H @ v, g, damping=0.5, terms=30, accelerate=False)
    >>> bool(np.allclose(res.x, exact, atol=1e-3))
    True

    A scale below ``λ_max(H²)/2 = 4.5`` is detected:

    >>> res = saddle_free_solve(lambda v: H @ v, g, damping=0.5, scale=3.0)
    >>> res.converged, "scale" in res.info
    (False, True)
    """
    xp, g, H = _prepare(hvp, g, "g")
    damping = validation.nonnegative(damping, "damping")
    terms = validation.positive_int(terms, "terms")
    validation.choice(variant, _VARIANTS, "variant")
    validation.choice(method, _METHODS, "method")
    if scale is not None:
        scale = validation.positive(scale, "scale")
    if isinstance(accelerate, bool):
        order = None if accelerate else 0
    elif isinstance(accelerate, int):
        if accelerate < 0:
            raise ValueError(f"accelerate must be a bool or an order ≥ 0, got {accelerate}")
        order = int(accelerate)
    else:
        raise TypeError(f"accelerate must be a bool or an int, got {type(accelerate).__name__}")

    norm_g = _norm(xp, g)
    if norm_g == 0.0:
        return SolveResult(
            xp.zeros_like(g), True, 0, math.nan, SolveStatus.CONVERGED,
            {"hvps": 0, "error_estimate": 0.0}, "g is zero: x = 0 (0 Hessian-vector products)"
        )
    # The direction is linear in g: work with g/‖g‖ and scale x back, so that
    # the products H(H u) of a g near the dtype's limits (1e±150) stay in range.
    unit = g / norm_g
    if method == "lanczos":
        res = _sfn_lanczos(xp, H, unit, 1.0, damping, terms, variant)
    else:
        res = _sfn_series(xp, H, unit, 1.0, damping, scale, terms, order, variant)
    return dataclasses.replace(res, x=res.x * norm_g)


def _sfn_failure(g: Any, k: int, status: SolveStatus, stats: dict[str, Any], info: str,
                 x: Any = None) -> SolveResult:
    """A failed saddle-free result: no error estimate (``nan``); ``x`` zero unless given."""
    x = g * 0.0 if x is None else x
    return SolveResult(x, False, k, math.nan, status, {**stats, "error_estimate": math.nan}, info)


class _SeriesRun(NamedTuple):
    """One pass of the saddle-free series (see ``_sfn_sum``)."""

    status: str  # "", "nonfinite", "scale" or "growth"
    S: Any  # the last partial sum
    k: int  # terms summed
    sums: list[Any]  # the last partial sums, for the ε-algorithm
    best: tuple[float, Any, int]  # (term norm, partial sum, terms) at the smallest term
    rho_max: float  # the largest Rayleigh quotient of H² seen
    last: float  # the size of the last term (the plain series' error estimate)


def _sfn_sum(xp: Any, H: _Hvp, g: Any, norm_g: float, V: float, coef: list[float],
             h2_damping: float, terms: int, keep: int) -> _SeriesRun:
    """Sum ``Σ c_k X^k g`` with ``X = I − (H² + h2_damping)/V``, testing for
    divergence at the sync points."""
    machine_eps = backend.eps(g.dtype, xp)
    interval = backend.sync_interval(g)
    decay = 1.0 - h2_damping / V
    u = _copy(xp, g)  # hvp never receives the caller's g
    S = coef[0] * g
    sums = [S] if keep else []
    best = (norm_g, S, 1)
    min_norm, rho_max, last = norm_g, 0.0, coef[0] * norm_g
    k = 1
    while k < terms:
        # copies: u and w are the series' own vectors (an hvp may write into its argument)
        w = H(_copy(xp, u))
        z = H(_copy(xp, w))
        u_next = (u - z / V) if decay == 1.0 else (decay * u - z / V)
        S = S + coef[k] * u_next
        k += 1
        if keep:
            sums.append(S)
            if len(sums) > keep:
                sums.pop(0)
        if k % interval == 0 or k == terms:
            # dask: as in _neumann_sum, cut the graph at the sync point.
            u_next, S, w, u = backend.persist(u_next, S, w, u)
            if keep:
                sums[-1] = S
            un = _norm(xp, u_next)
            if not math.isfinite(un) or not math.isfinite(_norm(xp, S)):
                return _SeriesRun("nonfinite", S, k, sums, best, rho_max, last)
            # ‖w‖²/‖u‖² from the ratio of norms: no overflow at any scale
            ratio = _norm_ratio(xp, w, u)
            rho = ratio * ratio
            rho_max = max(rho_max, rho)
            # ρ ≤ λ_max(H²) on the Krylov space of g: a proof of divergence.
            if rho + h2_damping > 2.0 * V * (1.0 + 100 * machine_eps):
                return _SeriesRun("scale", S, k, sums, best, rho_max, last)
            if un > _GROWTH * min_norm + 1e3 * machine_eps * norm_g:
                return _SeriesRun("growth", S, k, sums, best, rho_max, last)
            min_norm = min(min_norm, un)
            last = abs(coef[k - 1]) * un
            if un <= best[0]:
                best = (un, S, k)
        u = u_next
    return _SeriesRun("", S, k, sums, best, rho_max, last)


def _sfn_series(
    xp: Any, H: _Hvp, g: Any, norm_g: float, damping: float, scale: float | None,
    terms: int, order: int | None, variant: str,
) -> SolveResult:
    auto = scale is None
    h2_damping = damping if variant == "quasi" else 0.0  # X = I − (H² + h2_damping)/V
    extra = ""
    if auto:
        try:
            lo, hi = _ritz_extremes(H, xp, g.shape[0], g.dtype, backend.device(g))
        except _NonFinite:
            return _sfn_failure(g, 0, SolveStatus.NONFINITE, {"hvps": H.calls, "restarts": 0},
                                f"hvp returned NaN or Inf while estimating the scale ({_hvps(H)})")
        top = max(abs(lo), abs(hi))
        scale = (_MARGIN * top) ** 2 / 2.0 + h2_damping / 2.0
        if not scale > 0.0:  # H = 0 on the sampled space; any scale works
            scale = 1.0
        extra = f", scale=None → V = {scale:.3e}"

    if order is None:
        m = max(0, min(_MAX_ORDER, (terms - 2) // 2))
    else:
        m = order
        if m > 0 and 2 * m + 1 > terms:
            raise ValueError(
                f"accelerate={m} needs terms ≥ {2 * m + 1} partial sums, got terms={terms}"
            )
    keep = 0 if m == 0 else min(terms, 2 * m + 2)

    restarts = 0
    while True:
        V = scale
        if variant == "damped":
            coef = _damped_coefficients(terms, damping / math.sqrt(V))
        else:
            coef = _quasi_coefficients(terms)
        run = _sfn_sum(xp, H, g, norm_g, V, coef, h2_damping, terms, keep)
        if run.status in ("scale", "growth") and auto and restarts < _MAX_RESTARTS:
            scale = max(2.0 * V, (_MARGIN**2 * run.rho_max + h2_damping) / 2.0)
            extra = f", scale=None → V = {scale:.3e} after restarting on divergence"
            restarts += 1
            continue
        break
    return _sfn_series_result(xp, run, H, V, h2_damping, m, keep, restarts, extra, g, norm_g, damping, variant)


def _sfn_series_result(xp: Any, run: _SeriesRun, H: _Hvp, V: float, h2_damping: float, m: int,
                       keep: int, restarts: int, extra: str, g: Any, norm_g: float, damping: float,
                       variant: str) -> SolveResult:
    """The :class:`SolveResult` of a finished series: status, estimate, sentence."""
    root = math.sqrt(V)
    stats: dict[str, Any] = {"hvps": H.calls, "restarts": restarts}
    if run.status:
        _, S_best, k_best = run.best
        if run.status == "nonfinite":
            status, why = SolveStatus.NONFINITE, (
                f"non-finite values after {run.k} terms: hvp returned NaN or Inf (or the "
                "series overflowed)"
            )
        else:
            need = (run.rho_max + h2_damping) / 2.0
            status, why = SolveStatus.DIVERGED, (
                f"the series diverges: scale V = {V:.3e} is too small "
                + (f"(λ_max(H²) ≥ {run.rho_max:.3e} needs V > {need:.3e}); "
                   if run.rho_max + h2_damping > 2 * V else "(the terms grew); ")
                + f"use scale ≥ {max(_MARGIN**2 * need, 2 * V):.3e} or scale=None"
            )
        return _sfn_failure(
            None, k_best, status, stats,
            f"{why}; x is the partial sum of {k_best} terms at the smallest term "
            f"({_hvps(H)}{extra})",
            x=S_best / root,
        )
    x, err, how = run.S, run.last, "plain series"
    if keep and len(run.sums) >= 3:
        acc = _wynn(xp, xp.stack(run.sums, axis=0), m)
        if backend.all_finite(acc.x):
            x, err = acc.x, acc.error
            how = f"Wynn ε of order {acc.order} on the last {len(run.sums)} partial sums"
        else:
            how = "plain series (the ε-table was not finite)"
    rel = err / max(_norm(xp, x), 1e-300)
    return _sfn_verified(xp, H, g, norm_g, x / root, damping, variant, run.k, {**stats, "error_estimate": rel},
                         f"summed {run.k} terms, {how}; estimated relative error {rel:.3e}", extra)


#: largest lower bound on the relative residual (see ``_sfn_verified``) with
#: which a saddle-free result may still be called converged
_CONSISTENCY = 1e-2
#: largest estimated relative error with which it may be called converged
_MAX_ESTIMATE = 0.1


def _sfn_verified(xp: Any, H: _Hvp, g: Any, norm_g: float, x: Any, damping: float, variant: str,
                  k: int, stats: dict[str, Any], how: str, extra: str = "") -> SolveResult:
    """The result ``x`` of a finished saddle-free solve, checked by one more product.

    ``(|H| + λI)x = g`` implies ``‖Hx‖ = ‖|H|x‖ = ‖g − λx‖``, and for any ``x``
    ``|‖Hx‖ − ‖g − λx‖| ≤ ‖|H|δ‖ + λ‖δ‖ ≤ √2 ‖(|H| + λI)x − g‖`` (``δ = x − x*``;
    ``|H|`` and ``λI`` commute), so ``|‖Hx‖ − ‖g − λx‖| / (√2‖g‖)`` is a lower bound
    on the relative residual.  For ``"quasi"``, ``‖(H² + λI)^{1/2}x‖² = ‖Hx‖² +
    λ‖x‖²`` gives ``|√(‖Hx‖² + λ‖x‖²) − ‖g‖| / ‖g‖``.  A bound above
    ``_CONSISTENCY`` (1%) proves the result inaccurate (the series was far from
    its limit, ``H`` is singular with no damping, or ``hvp`` changed between
    calls), and so does the method's own error estimate above
    ``_MAX_ESTIMATE`` (10%): ``MAXITER`` instead of ``CONVERGED``.
    """
    Hx = H(_copy(xp, x))
    if variant == "damped":
        lb = abs(_norm(xp, Hx) - _norm(xp, g - damping * x)) / (math.sqrt(2.0) * norm_g)
    else:
        lb = abs(math.hypot(_norm(xp, Hx), math.sqrt(damping) * _norm(xp, x)) - norm_g) / norm_g
    stats = {**stats, "hvps": H.calls, "residual_lower_bound": lb}
    if not math.isfinite(lb):
        return _sfn_failure(None, k, SolveStatus.NONFINITE, stats,
                            f"{how}; hvp returned NaN or Inf when the result was verified ({_hvps(H)}{extra})",
                            x=x)
    if lb > _CONSISTENCY or not stats["error_estimate"] <= _MAX_ESTIMATE:
        return SolveResult(
            x, False, k, math.nan, SolveStatus.MAXITER, stats,
            f"{how}, but the result is not accurate: its estimated relative error is "
            f"{stats['error_estimate']:.1e} and its relative residual at least {lb:.3e} "
            f"(from ‖Hx‖ against ‖g − damping·x‖, one more product); more terms, a larger "
            f"damping or method='lanczos' may help, or hvp did not act as the same linear "
            f"operator at every call ({_hvps(H)}{extra})",
        )
    return SolveResult(x, True, k, math.nan, SolveStatus.CONVERGED, stats,
                       f"{how}; relative residual ≥ {lb:.1e} ({_hvps(H)}{extra})")


def _sfn_lanczos(
    xp: Any, H: _Hvp, g: Any, norm_g: float, damping: float, terms: int, variant: str
) -> SolveResult:
    n, dtype = g.shape[0], g.dtype
    try:
        res = lanczos(from_matvec(_finite_products(H), (n, n), dtype), g, min(terms + 1, n))
    except (validation.NonFiniteOutputError, _NonFinite):
        return _sfn_failure(g, 0, SolveStatus.NONFINITE, {"hvps": H.calls},
                            f"hvp returned NaN or Inf during Lanczos ({_hvps(H)})")
    T = _tridiagonal(xp, res.alpha, res.beta)
    m = res.Q.shape[1]
    if m == terms + 1:
        # H Q_k = Q_{k+1} T̲_k with T̲_k the first k columns of T_{k+1}.
        k, exact = terms, False
    else:
        # Invariant subspace (or k = n): H Q_m = Q_m T_m and the result is exact.
        k, exact = m, True
    machine_eps = backend.eps(dtype, xp)

    def coefficients(Tk: Any) -> tuple[Any, float, float]:
        # Q_kᵀ H² Q_k = T̲ᵀT̲: its eigenpairs are the squared singular values and
        # right singular vectors of T̲, which the SVD gets to eps·‖H‖ absolute
        # accuracy (forming T̲ᵀT̲ would lose half the digits near h = 0).
        _, sig, Vh = backend.svd(Tk)
        f = 1.0 / (sig + damping) if variant == "damped" else 1.0 / xp.sqrt(sig * sig + damping)
        return xp.matrix_transpose(Vh) @ (f * Vh[:, 0]), backend.to_float(xp.min(sig)), backend.to_float(xp.max(sig))

    y, s_min, s_max = coefficients(T[:, :k])
    # Singular values carry absolute errors ~eps·‖H‖: a denominator below that
    # is rounding noise, not curvature.
    if variant == "damped":
        floor, denom = 10.0 * machine_eps * s_max, s_min + damping
    else:
        floor, denom = (10.0 * machine_eps * s_max) ** 2, s_min * s_min + damping
    if not denom > floor or not backend.all_finite(y):
        return _sfn_failure(
            g, k, SolveStatus.SINGULAR, {"hvps": H.calls},
            f"{'|H|' if variant == 'damped' else 'H²'} + damping·I is numerically singular on "
            "the Krylov space of g (H has an eigenvalue within rounding of 0), so the "
            f"result would be noise; use damping ≥ {max(10 * floor, 1e-300):.1e} ({_hvps(H)})",
        )
    x = norm_g * (res.Q[:, :k] @ y)
    if exact:
        err = 0.0
    elif k > 1:
        y_prev = coefficients(T[:k, : k - 1])[0]
        zero = xp.zeros((1,), dtype=dtype, device=backend.device(g))
        err = norm_g * _norm(xp, y - xp.concat([y_prev, zero]))
    else:
        err = math.inf
    norm_x = _norm(xp, x)
    rel = err / norm_x if norm_x > 0 else err
    how = "exact (invariant Krylov space)" if exact else f"estimated relative error {rel:.3e}"
    return _sfn_verified(xp, H, g, norm_g, x, damping, variant, k, {"hvps": H.calls, "error_estimate": rel},
                         f"{k} Lanczos steps, {how}")

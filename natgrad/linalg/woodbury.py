r"""Damped least-squares solves through the Woodbury (push-through) identity.

Natural-gradient and Gauss–Newton steps need ``(λI_P + UᵀU)⁻¹ b`` where ``U``
is an ``(N, P)`` Jacobian or matrix of per-sample gradients, usually with
``P ≫ N``.  Solving in parameter space costs ``O(P³)``; the identities

.. math::

    (λI_P + UᵀU)^{-1} = \frac{1}{λ}\bigl(I_P − Uᵀ (λI_N + UUᵀ)^{-1} U\bigr),
    \qquad
    (λI_P + UᵀU)^{-1} Uᵀ = Uᵀ (λI_N + UUᵀ)^{-1}

move the work to the ``N × N`` sample-space kernel ``K = λI_N + UUᵀ``:
``O(N²P)`` to form it (half of that with a symmetric rank-k product) and
``O(N³)`` to factor it, once; every later solve costs ``O(NP)``.

Examples
--------
>>> import numpy as np
>>> from natgrad.linalg.woodbury import Woodbury
>>> rng = np.random.default_rng(0)
>>> U = rng.standard_normal((3, 8))
>>> W = Woodbury(U, 0.1)
>>> b = rng.standard_normal(8)
>>> bool(np.allclose((0.1 * np.eye(8) + U.T @ U) @ W.solve(b), b))
True
"""

from __future__ import annotations

import warnings
from typing import Any

from .. import backend, validation

__all__ = ["Woodbury", "woodbury_solve", "FactorizationWarning"]

#: jitter tries (factor 10 apart) before the eigendecomposition fallback
_JITTER_TRIES = 4


class FactorizationWarning(RuntimeWarning):
    """A Cholesky factorisation broke down and a documented fallback was used
    (diagonal jitter or a clamped eigendecomposition).

    A subclass of ``RuntimeWarning``, issued at most once per factorisation
    by :class:`Woodbury` (and so :func:`woodbury_solve`) when the damped
    kernel ``λI + UUᵀ`` (or ``λI + UᵀU``) is not numerically positive
    definite.  The message names the kernel, the damping and the jitter
    used.

    Notes
    -----
    In exact arithmetic the kernel is ``⪰ λI``; the Cholesky breaks down only
    when ``λ`` is below the rounding error of the computed Gram matrix (tiny
    damping, float32, a rank-deficient ``U``).  The fallbacks, in order: the
    diagonal jitter ``δ = 10^k·eps·trace(K)/n`` (``K`` of size ``n``),
    ``k = 0..3`` (the solve
    then uses damping ``λ + δ``; ``Woodbury.method`` is
    ``"cholesky+jitter"`` and ``Woodbury.jitter`` is ``δ``), then an
    eigendecomposition of the Gram matrix with eigenvalues clamped at 0
    (``method == "eigh"``).  The result is still usable, but the damping is
    at the limit of the working precision: raise it, or use float64.

    It is a warning rather than an error because the fallback still returns
    the solution of a nearby (slightly more damped) system, so an optimiser
    can keep going.  Filter it with the
    ``warnings`` module: ``"error"`` turns it into an exception (to stop on
    it), ``"ignore"`` silences it.

    Examples
    --------
    A rank-one ``U`` with damping far below float64 rounding (all values
    exact, so the breakdown is deterministic):

    >>> import warnings
    >>> import numpy as np
    >>> from natgrad.linalg import FactorizationWarning, Woodbury
    >>> U = np.ones((3, 4))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", FactorizationWarning)
    ...     W = Woodbury(U, 1e-20)
    >>> [w.category.__name__ for w in caught]
    ['FactorizationWarning']
    >>> W.method in ("cholesky+jitter", "eigh")
    True

    Turned into an error, then back to the default:

    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", FactorizationWarning)
    ...     try:
    ...         Woodbury(U, 1e-20)
    ...     except FactorizationWarning:
    ...         print("raised")
    raised
    >>> issubclass(FactorizationWarning, RuntimeWarning)
    True
    """


# ---------------------------------------------------------------------------
# robust factorisation of G + damping·I, G symmetric positive semidefinite
# ---------------------------------------------------------------------------


class SPDFactor:
    """Factor ``K = G + damping·I`` for a symmetric PSD ``G`` and ``damping > 0``.

    Tries, in order: Cholesky of ``K``; Cholesky of ``K + δI`` with ``δ``
    growing by 10 from ``eps·trace(K)/n`` (four tries); the eigendecomposition
    ``G = Q diag(w) Qᵀ`` with ``w`` clamped at 0, so that ``K⁻¹ = Q diag(1/(w⁺ +
    damping)) Qᵀ`` (exact for the PSD matrix nearest to the computed ``G``).  A
    fallback issues one :class:`FactorizationWarning`.
    """

    def __init__(self, G: Any, damping: float, what: str, stacklevel: int = 4) -> None:
        xp = backend.namespace(G=G)
        n = G.shape[0]
        K = backend.add_identity(G, damping)
        self.method, self.jitter = "cholesky", 0.0
        self._L = self._Q = self._w = None
        try:
            self._L = backend.cholesky(K)
            return
        except backend.CholeskyError:
            pass
        machine_eps = backend.eps(G.dtype, xp)
        start = machine_eps * backend.to_float(xp.sum(xp.linalg.diagonal(K))) / n
        for k in range(_JITTER_TRIES):
            delta = start * 10.0**k
            try:
                self._L = backend.cholesky(backend.add_identity(G, damping + delta))
            except backend.CholeskyError:
                continue
            self.method, self.jitter = "cholesky+jitter", delta
            warnings.warn(
                f"Cholesky of {what} failed (damping {damping:.3g} is at the rounding level "
                f"of the {G.dtype} kernel); factored it with diagonal jitter {delta:.3g}",
                FactorizationWarning,
                stacklevel=stacklevel,
            )
            return
        w, Q = backend.eigh(G)
        self._w = xp.clip(w, min=0.0) + damping
        self._Q = Q
        self.method = "eigh"
        warnings.warn(
            f"Cholesky of {what} failed even with jitter; fell back to an "
            "eigendecomposition with eigenvalues clamped at 0",
            FactorizationWarning,
            stacklevel=stacklevel,
        )

    def solve(self, b: Any) -> Any:
        if self._L is not None:
            return backend.cho_solve(self._L, b)
        xp = backend.namespace(Q=self._Q, b=b)
        c = xp.matrix_transpose(self._Q) @ b
        c = c / (self._w if b.ndim == 1 else self._w[:, None])
        return self._Q @ c


# ---------------------------------------------------------------------------
# Woodbury
# ---------------------------------------------------------------------------


def _check_U(U: Any) -> Any:
    xp = backend.namespace(U=U)
    if U.ndim != 2:
        raise ValueError(f"U must be a 2-D (N, P) array, got shape {tuple(U.shape)}")
    if U.shape[0] == 0 or U.shape[1] == 0:
        raise ValueError(f"U must have at least one row and one column, got shape {tuple(U.shape)}")
    if xp.isdtype(U.dtype, "complex floating"):
        raise TypeError(f"U must be real, got dtype {U.dtype}")
    return xp


class Woodbury:
    r"""Factor ``λI_N + UUᵀ`` once; solve damped normal equations in sample space.

    Parameters
    ----------
    U : array, shape (N, P)
        Jacobian or per-sample-gradient matrix, real, any backend.  Integer
        arrays are promoted to the default floating dtype; float32 stays
        float32.  Not modified and not copied (it is kept by reference).
    damping : float
        ``λ > 0``.
    side : {"auto", "sample", "parameter"}
        Which Gram matrix to factor: ``"sample"`` factors ``λI_N + UUᵀ``
        (``N × N``, the Woodbury route), ``"parameter"`` factors
        ``λI_P + UᵀU`` (``P × P``).  ``"auto"`` (default) picks the smaller,
        i.e. the sample side whenever ``N ≤ P``.  All methods work with either.
    refine : bool, optional
        Do one step of iterative refinement in every solve, with the residual
        computed from ``U`` itself (``4NP`` extra flops).  Default: on for
        low-precision dtypes (float32) when ``eps·trace(UUᵀ) < λ`` (see
        Notes), off otherwise.

    Attributes
    ----------
    U, damping, side, refine
        As given (``side`` resolved).
    method : str
        ``"cholesky"``, ``"cholesky+jitter"`` or ``"eigh"``: how the kernel
        was factored (see Notes).
    jitter : float
        Diagonal jitter added for ``"cholesky+jitter"``, else 0.
    shape : (int, int)
        ``(N, P)``.
    dtype
        Working dtype (the dtype of every result).

    Raises
    ------
    ValueError
        ``U`` not 2-D or empty, ``U`` containing NaN or Inf (or so large that
        ``UUᵀ`` overflows), ``damping ≤ 0`` or not finite, unknown ``side``.
    TypeError
        ``U`` not an array, complex ``U``, non-real ``damping``.

    Notes
    -----
    With ``K = λI_N + UUᵀ = LLᵀ`` (push-through identity; Guzmán-Cordero et
    al., arXiv 2505.12149, eq. (5); Ou et al., arXiv 2403.03473)::

        solve(b)          = (λI_P + UᵀU)⁻¹ b  = (b − Uᵀ K⁻¹ U b) / λ
        solve_sample(r)   = Uᵀ K⁻¹ r          = (λI_P + UᵀU)⁻¹ Uᵀ r
        coefficients(r)   = K⁻¹ r

    ``UUᵀ`` is formed by a symmetric rank-k update (BLAS ``syrk`` on NumPy,
    half the flops of ``U @ U.T``) without copying ``U``
    (:func:`natgrad.backend.gram`), so peak memory is ``U`` plus a few
    ``N × N`` arrays.  Whether ``U`` is finite is read off the diagonal of
    ``UUᵀ`` (a sum of squares of each row, NaN or Inf exactly when the row
    is), which avoids another pass over ``U``.

    Cholesky fallback: in exact arithmetic ``K ⪰ λI``, but when ``λ`` is below
    the rounding error of the computed ``UUᵀ`` (tiny damping, float32, a
    rank-deficient ``U``) the Cholesky can break down.  Then the diagonal
    gets jitter ``δ = 10^k·eps·trace(K)/N``, ``k = 0..3``; if that fails too,
    ``UUᵀ = Q diag(w) Qᵀ`` is used with ``w`` clamped at 0.  Either fallback
    emits one :class:`FactorizationWarning` per factorisation.  The jittered
    factor solves the system with damping ``λ + δ``; ``refine=True`` corrects
    that where the working precision allows.

    Refinement (Higham, *Accuracy and Stability of Numerical Algorithms*,
    2nd ed., ch. 12): ``x ← x + solve(b − (λx + Uᵀ(Ux)))``.  One step in the
    working precision reduces the error of the (not backward stable)
    Woodbury formula towards that of a backward-stable solve, but only while
    ``κ·eps < 1`` with ``κ ≤ (trace(UUᵀ) + λ)/λ``; beyond that the residual
    is rounding noise amplified by ``1/λ`` and a step would make ``x``
    worse, hence the default.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> U = rng.standard_normal((4, 50))
    >>> r = rng.standard_normal(4)
    >>> W = Woodbury(U, 1e-2)
    >>> x = W.solve_sample(r)       # the ENGD-Woodbury step direction
    >>> ref = np.linalg.solve(1e-2 * np.eye(50) + U.T @ U, U.T @ r)
    >>> bool(np.allclose(x, ref))
    True
    >>> alpha = W.coefficients(r)   # FNGD weights: x = Uᵀ α
    >>> bool(np.allclose(U.T @ alpha, x))
    True
    """

    def __init__(
        self,
        U: Any,
        damping: float,
        *,
        side: str = "auto",
        refine: bool | None = None,
    ) -> None:
        xp = _check_U(U)
        self.damping = validation.positive(damping, "damping")
        if side not in ("auto", "sample", "parameter"):
            raise ValueError(f"side must be 'auto', 'sample' or 'parameter', got {side!r}")
        if refine is not None and not isinstance(refine, bool):
            raise TypeError(f"refine must be a bool or None, got {type(refine).__name__}")
        self.xp = xp
        self.dtype = backend.float_dtype(xp, U)
        self.U = U if U.dtype == self.dtype else xp.astype(U, self.dtype)
        N, P = self.shape = tuple(int(s) for s in U.shape)
        self.side = ("sample" if N <= P else "parameter") if side == "auto" else side

        Ut = xp.matrix_transpose(self.U)
        G = backend.gram(self.U if self.side == "sample" else Ut)
        diag = xp.linalg.diagonal(G)
        if not backend.all_finite(diag):
            if not backend.all_finite(self.U):
                raise ValueError("U contains NaN or Inf")
            raise ValueError(
                f"U U^T overflows in {self.dtype}: scale U down (and the damping by the "
                "square of the same factor)"
            )
        what = "λI_N + UUᵀ" if self.side == "sample" else "λI_P + UᵀU"
        self._factor = SPDFactor(G, self.damping, what)
        self.method, self.jitter = self._factor.method, self._factor.jitter
        if refine is None:
            # Fixed-precision refinement converges only while κ·eps < 1, and
            # κ ≤ (trace(UUᵀ) + λ)/λ: beyond that its residual is noise.
            trace = backend.to_float(xp.sum(diag))
            refine = (
                backend.is_low_precision(self.dtype, xp)
                and backend.eps(self.dtype, xp) * trace < self.damping
            )
        self.refine = refine

    # -- products with the two damped Gram matrices --------------------------
    def _apply_parameter(self, x: Any) -> Any:
        """``(λI_P + UᵀU) x``."""
        xp = self.xp
        return self.damping * x + xp.matrix_transpose(self.U) @ (self.U @ x)

    def _apply_sample(self, a: Any) -> Any:
        """``(λI_N + UUᵀ) a``."""
        xp = self.xp
        return self.damping * a + self.U @ (xp.matrix_transpose(self.U) @ a)

    # -- one unrefined solve on each side -----------------------------------
    def _raw_parameter(self, b: Any) -> Any:
        if self.side == "parameter":
            return self._factor.solve(b)
        xp = self.xp
        Ut = xp.matrix_transpose(self.U)
        return (b - Ut @ self._factor.solve(self.U @ b)) / self.damping

    def _raw_sample(self, r: Any) -> Any:
        if self.side == "sample":
            return self._factor.solve(r)
        xp = self.xp
        Ut = xp.matrix_transpose(self.U)
        return (r - self.U @ self._factor.solve(Ut @ r)) / self.damping

    def _solve(self, b: Any, raw: Any, apply: Any) -> Any:
        x = raw(b)
        if self.refine:
            x = x + raw(b - apply(x))
        return x

    def _prepare(self, b: Any, n: int, name: str) -> Any:
        xp = backend.namespace(U=self.U, **{name: b})
        validation.rhs(b, n, name)
        if xp.isdtype(b.dtype, "complex floating"):
            raise TypeError(f"{name} must be real, got dtype {b.dtype}")
        return b if b.dtype == self.dtype else xp.astype(b, self.dtype)

    # -- public solves --------------------------------------------------------
    def solve(self, b: Any) -> Any:
        """``x = (λI_P + UᵀU)⁻¹ b``.

        Parameters
        ----------
        b : array, shape (P,) or (P, k)

        Returns
        -------
        x : array, shape of ``b``, the working dtype.

        Raises
        ------
        ValueError
            Wrong shape, NaN or Inf in ``b``.
        TypeError
            ``b`` from another library or device, complex ``b``.
        """
        b = self._prepare(b, self.shape[1], "b")
        return self._solve(b, self._raw_parameter, self._apply_parameter)

    def coefficients(self, r: Any) -> Any:
        """``α = (λI_N + UUᵀ)⁻¹ r``: the sample-space weights (FNGD's ``α`` for
        ``r = 1``), reusable as ``Uᵀ α`` with a later ``U``.

        Parameters
        ----------
        r : array, shape (N,) or (N, k)

        Returns
        -------
        alpha : array, shape of ``r``.

        Raises
        ------
        ValueError, TypeError
            As :meth:`solve`.
        """
        r = self._prepare(r, self.shape[0], "r")
        return self._solve(r, self._raw_sample, self._apply_sample)

    def solve_sample(self, r: Any) -> Any:
        """``x = Uᵀ (λI_N + UUᵀ)⁻¹ r = (λI_P + UᵀU)⁻¹ Uᵀ r``: the damped
        Gauss–Newton / ENGD step for residuals ``r``.

        Parameters
        ----------
        r : array, shape (N,) or (N, k)

        Returns
        -------
        x : array, shape (P,) or (P, k).

        Raises
        ------
        ValueError, TypeError
            As :meth:`solve`.
        """
        r = self._prepare(r, self.shape[0], "r")
        Ut = self.xp.matrix_transpose(self.U)
        if self.side == "parameter":
            return self._solve(Ut @ r, self._raw_parameter, self._apply_parameter)
        return Ut @ self._solve(r, self._raw_sample, self._apply_sample)

    def __repr__(self) -> str:
        return (
            f"Woodbury(shape={self.shape}, damping={self.damping:.3g}, side={self.side!r}, "
            f"method={self.method!r}, dtype={self.dtype})"
        )


def woodbury_solve(
    U: Any,
    b: Any,
    damping: float,
    *,
    side: str = "auto",
    refine: bool | None = None,
) -> Any:
    r"""``x = (λI_P + UᵀU)⁻¹ b`` in one call (see :class:`Woodbury`).

    Parameters
    ----------
    U : array, shape (N, P)
    b : array, shape (P,) or (P, k)
    damping : float
        ``λ > 0``.
    side, refine
        As for :class:`Woodbury`.

    Returns
    -------
    x : array, shape of ``b``.

    Raises
    ------
    ValueError, TypeError
        As :class:`Woodbury` and :meth:`Woodbury.solve`.

    Notes
    -----
    ``(λI_P + UᵀU)⁻¹ b = (b − Uᵀ(λI_N + UUᵀ)⁻¹ U b)/λ`` (Woodbury identity),
    ``O(N²P + N³)`` instead of ``O(P³)``.  Build a :class:`Woodbury` instead
    to reuse the factorisation for several right-hand sides.

    Examples
    --------
    >>> import numpy as np
    >>> U = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    >>> x = woodbury_solve(U, np.ones(3), 0.5)
    >>> bool(np.allclose((0.5 * np.eye(3) + U.T @ U) @ x, np.ones(3)))
    True
    """
    # Validate b's shape before the O(N²P) factorisation.
    backend.namespace(U=U, b=b)
    _check_U(U)
    validation.rhs(b, U.shape[1], "b")
    return Woodbury(U, damping, side=side, refine=refine).solve(b)

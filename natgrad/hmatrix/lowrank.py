r"""Low-rank approximation of matrix blocks with a Frobenius error budget.

* :func:`aca` -- adaptive cross approximation with partial pivoting
  (Bebendorf 2000): builds ``A ≈ U Vᵀ`` from a few rows and columns of the
  block, never forming it; for kernel blocks.
* :func:`recompress` -- QR of both factors and an SVD of the small core,
  truncated to a tolerance: removes the redundancy ACA leaves in its factors.
* :func:`truncated_svd` -- the best approximation of a formed block whose
  discarded tail ``Σ_{i>k} σ_i²`` stays within the budget (exact error).
* :func:`randomized_svd` -- adaptive randomized range finder plus a small SVD,
  with the error computed, not estimated.

Every function returns a :class:`LowRank` ``(U, V, error)`` with
``A ≈ U @ V.T`` (``U`` carries the singular values).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from .. import backend, validation
from .cluster import _host_floats

__all__ = [
    "LowRank",
    "ACAResult",
    "aca",
    "recompress",
    "truncated_svd",
    "randomized_svd",
    "truncation_rank",
    "range_svd",
]

#: consecutive small crosses needed before ACA stops (one is Bebendorf's
#: rule; two guards against a single unlucky pivot row)
_CONFIRM = 2
#: rows tried when a residual row is (numerically) zero before ACA gives up
_ZERO_ROW_TRIES = 3
#: columns of ACA's factor buffers at the start (they double when full)
_FIRST_CAPACITY = 32
#: the factors' rows in ACA's products grow in steps of this many (see aca)
_ROW_STEP = 16


class LowRank(NamedTuple):
    """A factorisation ``A ≈ U @ V.T`` and its Frobenius error (exact or estimated).

    Returned by :func:`truncated_svd`, :func:`randomized_svd` and
    :func:`recompress`; a named tuple, so ``U, V, error = lr`` works.

    Parameters
    ----------
    U : array, shape (m, k)
        Left factor; carries the singular values (``U = U_k diag(σ_k)``).
    V : array, shape (n, k)
        Right factor with orthonormal columns (for the three functions above).
    error : float
        Frobenius error ``‖A − U Vᵀ‖_F`` (for :func:`recompress`: of the
        change ``‖U₀V₀ᵀ − U Vᵀ‖_F``).

    Notes
    -----
    Storing the factors takes ``k (m + n)`` entries instead of ``m n``, a
    saving when ``k < mn / (m + n)``.  ``error`` is exact for
    :func:`truncated_svd` and :func:`recompress` (the discarded singular
    value tail, Eckart–Young) and for :func:`randomized_svd` (the residual
    is computed, not estimated), up to rounding.  A rank-0 result
    (``k = 0``) stands for the zero block.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.hmatrix import LowRank, truncated_svd
    >>> A = np.outer(np.arange(1.0, 5.0), np.arange(1.0, 4.0))
    >>> U, V, error = truncated_svd(A, 1e-10)
    >>> U.shape, V.shape, error < 1e-10
    ((4, 1), (3, 1), True)
    >>> bool(np.allclose(U @ V.T, A)), isinstance(truncated_svd(A, 0.0), LowRank)
    (True, True)
    """

    U: Any
    V: Any
    error: float


class ACAResult(NamedTuple):
    """Result of :func:`aca`.

    ``norm`` estimates ``‖A‖_F`` by ``‖U Vᵀ‖_F``; ``error`` estimates
    ``‖A − U Vᵀ‖_F`` by the norm of the last cross; ``converged`` is False
    when ACA stopped at ``max_rank`` before meeting the tolerance.

    Parameters
    ----------
    U : array, shape (m, k)
        Left factor: the ``k`` residual columns ``u_l`` of the crosses.
    V : array, shape (n, k)
        Right factor: the residual rows ``v_l`` scaled by their pivots, so
        ``A ≈ U @ V.T``.
    norm : float
        ``‖U Vᵀ‖_F``, the estimate of ``‖A‖_F``.
    error : float
        ``‖u_k‖ ‖v_k‖`` of the last cross, the estimate of
        ``‖A − U Vᵀ‖_F`` (when ACA ended on rows with zero residual: a
        crude estimate from the largest residual entry seen in them).
    converged : bool
        True when the stopping rule held, the tried rows had zero residual,
        the crosses used every row or column, or ``k = min(m, n)``; False
        when ACA stopped at ``max_rank``.

    Notes
    -----
    ``norm`` and ``error`` are estimates, not bounds: ACA's stopping rule
    ``‖u_k‖ ‖v_k‖ ≤ ε ‖S_k‖_F`` assumes the residual decays geometrically
    (Bebendorf 2000).  Unlike :class:`LowRank`, neither factor is
    orthonormal; :func:`recompress` makes them so and removes redundant rank.
    A zero block gives ``k = 0`` with ``norm = error = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.hmatrix import ACAResult, aca
    >>> A = np.outer(np.arange(1.0, 7.0), np.arange(1.0, 5.0))
    >>> res = aca(lambda i: A[i], lambda j: A[:, j], A.shape, tol=1e-6)
    >>> isinstance(res, ACAResult), res.U.shape, res.V.shape, res.converged
    (True, (6, 1), (4, 1), True)
    >>> bool(np.allclose(res.U @ res.V.T, A)), bool(np.isclose(res.norm, np.linalg.norm(A)))
    (True, True)
    """

    U: Any
    V: Any
    norm: float
    error: float
    converged: bool


def truncation_rank(s: Any, tol: float) -> int:
    """Smallest ``k`` with ``Σ_{i≥k} s_i² ≤ tol²`` for descending ``s``.

    Parameters
    ----------
    s : sequence of float or 1-D array
        Singular values in descending order.
    tol : float
        Absolute Frobenius tolerance (≥ 0).

    Returns
    -------
    int
        The number of leading values to keep, ``0 ≤ k ≤ len(s)``.

    Raises
    ------
    TypeError
        If ``tol`` or an entry of ``s`` is not a number (from the
        arithmetic; the arguments are not validated otherwise: a negative
        ``tol`` acts as ``|tol|``, and ``s`` is assumed descending).
    AttributeError
        If ``s`` is neither a list, a tuple nor an array (e.g. a generator).

    Notes
    -----
    Drops the smallest values while the dropped tail stays within the
    budget: ``k`` is the smallest index with ``Σ_{i≥k} s_i² ≤ tol²``
    (0-based).  For singular values this is the smallest rank whose
    truncated SVD has Frobenius error ``sqrt(Σ_{i≥k} s_i²) ≤ tol``
    (Eckart–Young–Mirsky), so the error is exact, not an estimate.  An
    array ``s`` is copied to the host once (a device synchronisation); the
    loop is plain Python, ``O(len(s))``.

    Examples
    --------
    >>> truncation_rank([3.0, 2.0, 0.1, 0.01], 0.2)
    2
    >>> truncation_rank([3.0, 2.0], 0.0), truncation_rank([3.0, 2.0], 10.0)
    (2, 0)
    """
    vals = s if isinstance(s, (list, tuple)) else _host_floats(s)
    tail, k = 0.0, len(vals)
    tol2 = tol * tol
    while k > 0 and tail + vals[k - 1] ** 2 <= tol2:
        tail += vals[k - 1] ** 2
        k -= 1
    return k


def _tail(vals: list[float], k: int) -> float:
    return math.sqrt(sum(v * v for v in vals[k:]))


def truncated_svd(A: Any, tol: float) -> LowRank:
    """Best low-rank approximation of a formed block within an absolute
    Frobenius tolerance.

    Parameters
    ----------
    A : array, shape (m, n)
    tol : float
        Absolute tolerance: ``‖A − U Vᵀ‖_F ≤ tol``.

    Returns
    -------
    LowRank
        ``U = U_k diag(σ_k)``, ``V = V_k``; ``error`` is the exact tail
        ``sqrt(Σ_{i>k} σ_i²)``.

    Raises
    ------
    ValueError
        If ``A`` is not 2-D or ``tol`` is negative.

    Notes
    -----
    Eckart–Young–Mirsky: the truncated SVD is the best rank-``k``
    approximation in the Frobenius norm and its error is the discarded tail.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.outer(np.arange(4.0), np.ones(3)) + 1e-8 * np.eye(4, 3)
    >>> lr = truncated_svd(A, 1e-6)
    >>> lr.U.shape[1], lr.error <= 1e-6
    (1, True)
    """
    xp = backend.namespace(A=A)
    _check_matrix(A, "A")
    tol = validation.nonnegative(tol, "tol")
    U, s, Vh = backend.svd(A)
    vals = _host_floats(s)
    k = truncation_rank(vals, tol)
    return LowRank(U[:, :k] * s[:k], xp.matrix_transpose(Vh[:k, :]), _tail(vals, k))


def recompress(U: Any, V: Any, tol: float) -> LowRank:
    """Recompress ``U Vᵀ`` to the smallest rank within an absolute tolerance.

    Parameters
    ----------
    U : array, shape (m, k)
    V : array, shape (n, k)
    tol : float
        Absolute Frobenius tolerance on the change ``‖U Vᵀ − U' V'ᵀ‖_F``.

    Returns
    -------
    LowRank
        ``error`` is the exact Frobenius norm of the change.

    Raises
    ------
    ValueError
        If ``tol`` is negative, NaN or infinite.
    TypeError
        If ``tol`` is not a real number, or ``U``/``V`` are not arrays of
        one supported library on one device.

    Notes
    -----
    ``U = Q_U R_U``, ``V = Q_V R_V`` (thin QR), ``R_U R_Vᵀ = W Σ Zᵀ`` (a
    ``k × k`` SVD), keep the leading ``r`` triplets:
    ``U' = Q_U W_r Σ_r``, ``V' = Q_V Z_r``.  Cost ``O((m + n) k²)``
    (Bebendorf, *Hierarchical Matrices*, Springer 2008, §1.1.4).

    Examples
    --------
    >>> import numpy as np
    >>> u = np.arange(5.0)[:, None]
    >>> lr = recompress(np.hstack([u, 2 * u]), np.ones((4, 2)), 1e-12)
    >>> lr.U.shape[1]
    1
    """
    xp = backend.namespace(U=U, V=V)
    tol = validation.nonnegative(tol, "tol")
    if U.shape[1] == 0:
        return LowRank(U, V, 0.0)
    Qu, Ru = backend.qr(U)
    Qv, Rv = backend.qr(V)
    W, s, Zh = backend.svd(Ru @ xp.matrix_transpose(Rv))
    vals = _host_floats(s)
    r = truncation_rank(vals, tol)
    return LowRank(Qu @ (W[:, :r] * s[:r]), Qv @ xp.matrix_transpose(Zh[:r, :]), _tail(vals, r))


def aca(
    row: Callable[[int], Any],
    col: Callable[[int], Any],
    shape: tuple[int, int],
    *,
    tol: float,
    max_rank: int | None = None,
) -> ACAResult:
    """Adaptive cross approximation with partial pivoting.

    Parameters
    ----------
    row : callable
        ``row(i)`` returns row ``i`` of the block, shape ``(n,)``.
    col : callable
        ``col(j)`` returns column ``j``, shape ``(m,)``.
    shape : (int, int)
        ``(m, n)``.
    tol : float
        Relative tolerance ``ε`` of the stopping rule, in (0, 1).
    max_rank : int, optional
        Largest rank; by default the largest rank at which low rank still
        saves storage, ``⌊mn / (m + n)⌋``.

    Returns
    -------
    ACAResult

    Raises
    ------
    ValueError
        If ``tol`` is not in (0, 1) or ``shape`` is not two positive ints.

    Notes
    -----
    Step ``k`` takes the residual of row ``i_k``,
    ``r = A[i_k, :] − Σ_l u_l[i_k] v_l``, picks the column pivot
    ``j_k = argmax |r_j|`` among unused columns, sets ``v_k = r / r[j_k]``
    and ``u_k = A[:, j_k] − Σ_l v_l[j_k] u_l``; the next row pivot is
    ``argmax |u_k|`` among unused rows.  ``‖S_k‖_F²`` of ``S_k = Σ u_l v_lᵀ``
    is updated in ``O(k(m + n))``:
    ``‖S_k‖² = ‖S_{k−1}‖² + 2 Σ_{l<k} (u_lᵀu_k)(v_lᵀv_k) + ‖u_k‖²‖v_k‖²``.
    It stops when ``‖u_k‖ ‖v_k‖ ≤ ε ‖S_k‖_F`` holds for two consecutive
    steps (Bebendorf, Numer. Math. 86, 2000; Bebendorf & Rjasanow,
    Computing 70, 2003).  A row whose residual is zero is replaced by
    another unused row.  The stopping rule is a heuristic: use a safety
    factor on ``ε`` or check the block a posteriori where it matters.
    Until the first nonzero row is found every row is tried, so a block that
    is zero except in its last rows is still found.

    Examples
    --------
    >>> import numpy as np
    >>> x, y = np.linspace(0, 1, 30), np.linspace(3, 4, 20)
    >>> A = 1.0 / (1.0 + (x[:, None] - y[None, :]) ** 2)
    >>> res = aca(lambda i: A[i], lambda j: A[:, j], A.shape, tol=1e-8)
    >>> bool(np.linalg.norm(A - res.U @ res.V.T) <= 1e-6 * np.linalg.norm(A)), res.converged
    (True, True)
    """
    if not (isinstance(tol, (int, float)) and 0.0 < tol < 1.0):
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    m, n = (int(shape[0]), int(shape[1]))
    if m < 1 or n < 1:
        raise ValueError(f"shape must be two positive ints, got {shape!r}")
    if max_rank is None:
        max_rank = max(1, (m * n) // (m + n))
    max_rank = min(max_rank, m, n)

    r0 = row(0)
    xp = backend.namespace(row=r0)
    dev, dtype = backend.device(r0), r0.dtype
    ar_m, ar_n = xp.arange(m, device=dev), xp.arange(n, device=dev)
    used_r = ar_m < 0
    used_c = ar_n < 0
    # the rows and columns used so far, counted on the host (no sync to ask
    # whether all are used)
    seen_r: set[int] = set()
    seen_c: set[int] = set()
    # the crosses are the rows of Ut (cap, m) and Vt (cap, n), buffers
    # that double when full (rebuilding the factors by concatenation would
    # copy O(m k) per cross); rows, so that the leading k are contiguous.
    # Products take the leading kk ≥ k rows, kk a multiple of _ROW_STEP: the
    # rows not yet written are zero and add exact zeros, and the shapes
    # change every _ROW_STEP crosses, not at each (JAX compiles each eager
    # operation once per shape)
    cap = min(max_rank, _FIRST_CAPACITY)
    Ut, Vt = xp.zeros((cap, m), dtype=dtype, device=dev), xp.zeros((cap, n), dtype=dtype, device=dev)
    k = 0
    norm2, err, small, zero_tries, zero_err = 0.0, math.inf, 0, 0, 0.0
    converged = False
    i, r = 0, r0
    while k < max_rank:
        kk = min(cap, -(-k // _ROW_STEP) * _ROW_STEP)
        if r is None:
            r = row(i)
        if k:
            r = r - Ut[:kk, i] @ Vt[:kk, :]
        used_r = used_r | (ar_m == i)
        seen_r.add(i)
        j = backend.to_int(xp.argmax(xp.where(used_c, -1.0, xp.abs(r))))
        piv = backend.to_float(r[j])
        # a (numerically) zero residual row says nothing about the rest of
        # the block: try another unused row before trusting it
        if abs(piv) == 0.0 or abs(piv) * math.sqrt(n) <= 1e-3 * tol * math.sqrt(norm2):
            zero_tries += 1
            # crude bound of the residual from the largest entry seen in the
            # tried rows, spread over the whole block
            zero_err = max(zero_err, abs(piv) * math.sqrt(m * n))
            # before the first cross nothing is known about the block, so
            # every row is tried (a zero block costs one full evaluation)
            if (k and zero_tries > _ZERO_ROW_TRIES) or len(seen_r) == m:
                converged = True
                err = zero_err
                break
            i = backend.to_int(
                xp.argmin(xp.astype(used_r, xp.int32) * m + ar_m)
                if not k
                else xp.argmax(xp.where(used_r, -1.0, xp.abs(Ut[k - 1, :])))
            )
            r = None
            continue
        v = r / piv
        c = col(j)
        u = c - Vt[:kk, j] @ Ut[:kk, :] if k else c
        used_c = used_c | (ar_n == j)
        seen_c.add(j)
        if not k:
            vals = _host_floats(xp.stack([xp.sum(u * u), xp.sum(v * v)]))
            cross = 0.0
        else:
            cross_v = xp.sum((Ut[:kk, :] @ u) * (Vt[:kk, :] @ v))
            vals = _host_floats(xp.stack([xp.sum(u * u), xp.sum(v * v), cross_v]))
            cross = vals[2]
        norm2 = max(norm2 + 2.0 * cross + vals[0] * vals[1], 0.0)
        if k == cap:
            cap = min(2 * cap, max_rank)
            Ut = xp.concat([Ut, xp.zeros((cap - k, m), dtype=dtype, device=dev)], axis=0)
            Vt = xp.concat([Vt, xp.zeros((cap - k, n), dtype=dtype, device=dev)], axis=0)
        Ut = backend.assign(Ut, (k, slice(None)), u)
        Vt = backend.assign(Vt, (k, slice(None)), v)
        k += 1
        err = math.sqrt(vals[0] * vals[1])
        small = small + 1 if err <= tol * math.sqrt(norm2) else 0
        if small >= _CONFIRM or len(seen_r) == m or len(seen_c) == n:
            converged = True  # the cross interpolates every row or column: exact
            break
        i = backend.to_int(xp.argmax(xp.where(used_r, -1.0, xp.abs(u))))
        r = None
    if not k:  # every tried row was zero
        z = xp.zeros((m, 0), dtype=dtype, device=dev)
        return ACAResult(z, xp.zeros((n, 0), dtype=dtype, device=dev), 0.0, 0.0, True)
    converged = converged or k == min(m, n)
    # copies: the slices would keep the whole buffers alive
    U = xp.asarray(xp.matrix_transpose(Ut[:k, :]), copy=True)
    V = xp.asarray(xp.matrix_transpose(Vt[:k, :]), copy=True)
    return ACAResult(U, V, math.sqrt(norm2), err, converged)


def randomized_svd(
    A: Any, tol: float, *, block_size: int = 8, max_rank: int | None = None, seed: int = 0
) -> LowRank:
    """Low-rank approximation by an adaptive randomized range finder.

    Parameters
    ----------
    A : array, shape (m, n)
    tol : float
        Absolute Frobenius tolerance.
    block_size : int
        Random vectors drawn per step.
    max_rank : int, optional
        Stop growing the range at this rank (default ``min(m, n)``); the
        returned ``error`` then may exceed ``tol``.
    seed : int

    Returns
    -------
    LowRank
        ``error`` is computed exactly as ``sqrt(‖A − QQᵀA‖_F² + tail²)``.

    Raises
    ------
    ValueError
        If ``A`` is not 2-D or finite, or ``tol`` < 0.

    Notes
    -----
    Blocked randomized range finder with explicit deflation of the residual
    ``R ← R − Q_new Q_newᵀ R`` (Halko, Martinsson & Tropp, SIAM Rev. 53,
    2011, Alg. 4.2; Martinsson & Voronin, SISC 38, 2016), stopping once
    ``‖R‖_F ≤ tol/√2``; then an SVD of ``QᵀA`` truncated within the rest of
    the budget.  The two errors add in squares because ``R ⟂ range(Q)``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> A = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 40))
    >>> lr = randomized_svd(A, 1e-8 * np.linalg.norm(A))
    >>> lr.U.shape[1], bool(np.linalg.norm(A - lr.U @ lr.V.T) <= 1e-8 * np.linalg.norm(A))
    (5, True)
    """
    xp = backend.namespace(A=A)
    _check_matrix(A, "A")
    tol = validation.nonnegative(tol, "tol")
    block_size = validation.positive_int(block_size, "block_size")
    Uo, s, Vh, resid = range_svd(A, tol / math.sqrt(2.0), block_size=block_size,
                                 max_rank=max_rank, seed=seed)
    vals = _host_floats(s)
    k = truncation_rank(vals, math.sqrt(max(tol * tol - resid * resid, 0.0)))
    tail = _tail(vals, k)
    return LowRank(Uo[:, :k] * s[:k], xp.matrix_transpose(Vh[:k, :]), math.sqrt(resid**2 + tail**2))


def range_svd(
    A: Any, tol: float, *, block_size: int = 8, max_rank: int | None = None, seed: int = 0
) -> tuple[Any, Any, Any, float]:
    """Adaptive randomized range finder followed by an SVD of ``QᵀA``.

    Returns ``(U, s, Vh, resid)`` with ``U`` orthonormal, ``QᵀA = W diag(s) Vh``,
    ``U = Q W``, and ``resid = ‖A − Q QᵀA‖_F`` computed exactly; the range
    grows by ``block_size`` random directions until ``resid ≤ tol`` or its
    rank reaches ``max_rank``.  Internal helper of :func:`randomized_svd`.
    """
    xp = backend.namespace(A=A)
    m, n = A.shape
    limit = min(m, n) if max_rank is None else max(0, min(max_rank, m, n))
    dtype, dev = A.dtype, backend.device(A)
    R = A
    Q = xp.zeros((m, 0), dtype=dtype, device=dev)
    step = 0
    while Q.shape[1] < limit:
        if backend.to_float(xp.linalg.vector_norm(R)) <= tol:
            break
        b = min(block_size, limit - Q.shape[1])
        omega = backend.normal(xp, (n, b), dtype=dtype, device=dev, seed=seed + step)
        step += 1
        Y = R @ omega
        for _ in range(2):  # re-orthogonalise: deflation relies on Q ⟂ Q_new
            Y = Y - Q @ (xp.matrix_transpose(Q) @ Y)
            Y, _ = backend.qr(Y)
        Q = xp.concat([Q, Y], axis=1)
        R = R - Y @ (xp.matrix_transpose(Y) @ R)
    return _svd_on_range(A, Q)


def sketch_svd(A: Any, omega: Any) -> tuple[Any, Any, Any, float]:
    """SVD of ``A`` projected on the range of one sketch ``Y = A Ω``.

    Returns ``(U, s, Vh, resid)`` like :func:`range_svd`: ``Q`` orthonormal
    with ``range(Q) = range(A Ω)``, ``QᵀA = W diag(s) Vh``, ``U = Q W`` and
    ``resid = ‖A − Q QᵀA‖_F`` computed, not estimated, so that truncating
    ``U diag(s) Vh`` to rank ``k`` errs by exactly
    ``√(resid² + Σ_{i>k} s_i²)`` whatever ``Ω`` was.  One sketch of width
    ``ℓ`` costs ``O(mnℓ)`` in three matrix products, against ``O(mn·min(m,
    n))`` for the SVD of ``A``: with ``ℓ`` a few above the rank the block
    needs, the range is found at once (Halko, Martinsson & Tropp, SIAM Rev.
    53, 2011, §4 and Thm. 10.5).  Internal helper of the H-matrix build,
    which picks ``ℓ`` from the ranks of earlier blocks of the same size.
    """
    xp = backend.namespace(A=A, omega=omega)  # one library and device
    return _sketch_svd(xp, A, omega)


def _sketch_svd(xp: Any, A: Any, omega: Any) -> tuple[Any, Any, Any, float]:
    """:func:`sketch_svd` for arrays of namespace ``xp`` on one device (not
    checked again: the H-matrix build calls it once per small block, where
    the checks cost a tenth of the work)."""
    Q, _ = backend.qr(A @ omega)
    return _svd_on_range(A, Q, xp)


def _svd_on_range(A: Any, Q: Any, xp: Any = None) -> tuple[Any, Any, Any, float]:
    """``(Q W, s, Vh, ‖A − Q QᵀA‖_F)`` with ``QᵀA = W diag(s) Vh``, for ``Q``
    with orthonormal columns (none: empty factors, the residual is ``‖A‖_F``)."""
    if xp is None:
        xp = backend.namespace(A=A)
    B = xp.matrix_transpose(Q) @ A
    R = A - Q @ B
    resid = math.sqrt(backend.to_float(xp.sum(R * R)))
    if Q.shape[1] == 0:
        dtype, dev = A.dtype, backend.device(A)
        return Q, xp.zeros((0,), dtype=dtype, device=dev), xp.zeros((0, A.shape[1]), dtype=dtype, device=dev), resid
    W, s, Vh = backend.svd(B)
    return Q @ W, s, Vh, resid


def _check_matrix(A: Any, name: str) -> None:
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {tuple(A.shape)}")
    if not backend.all_finite(A):
        raise ValueError(f"{name} contains NaN or Inf")

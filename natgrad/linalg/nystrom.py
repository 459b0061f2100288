r"""Randomized Nyström approximation of PSD operators: preconditioner and
sketch-and-solve.

For a symmetric positive semidefinite ``A`` (dense or an operator) and a test
matrix ``Ω`` with ``ℓ`` orthonormal columns, the Nyström approximation is

.. math::

    \hat A = (AΩ)\,(Ωᵀ A Ω)^{+}\,(AΩ)ᵀ \approx A,

computed from ``ℓ`` products with ``A`` (one ``(n, ℓ)`` block).  It serves
two purposes:

* a preconditioner for ``(A + damping·I) x = b`` (Frangella, Tropp & Udell,
  "Randomized Nyström preconditioning", SIAM J. Matrix Anal. Appl. 44, 2023),
  used by :func:`nystrom_pcg`;
* an approximate direct solve ``(Â + damping·I)⁻¹ b`` ("sketch-and-solve",
  :func:`nystrom_solve`, :meth:`LowRankPSD.solve`), as in the randomized
  ENGD of Guzmán-Cordero et al., arXiv 2505.12149.

Examples
--------
>>> import numpy as np
>>> from natgrad.linalg.nystrom import nystrom
>>> rng = np.random.default_rng(0)
>>> G = rng.standard_normal((30, 5))
>>> A = G @ G.T                       # rank 5
>>> approx = nystrom(A, 8, seed=0)
>>> bool(np.allclose(approx.to_dense(), A))
True
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend, validation
from . import _checks
from .krylov import cg
from .operators import DenseOperator, LinearOperator, MatvecOperator, shifted
from .result import SolveResult, SolveStatus
from .woodbury import Woodbury

__all__ = [
    "LowRankPSD",
    "nystrom",
    "NystromPreconditioner",
    "nystrom_pcg",
    "nystrom_solve",
]

#: sketch size of the first step of ``rank="auto"`` (Frangella et al. §5.4)
_AUTO_INITIAL_RANK = 10
#: default budget of ``rank="auto"``
_AUTO_MAX_RANK = 512
_METHODS = ("svd", "cholesky")


def _column_scale(xp: Any, values: Any, X: Any) -> Any:
    """``diag(values) X`` for ``X`` of shape (ℓ,) or (ℓ, k)."""
    return values * X if X.ndim == 1 else values[:, None] * X


class LowRankPSD(LinearOperator):
    r"""A symmetric PSD low-rank operator ``V diag(s) Vᵀ`` (or ``B Bᵀ``).

    Parameters
    ----------
    V : array, shape (n, ℓ)
        Orthonormal columns (not checked: an ``O(nℓ²)`` test).
    s : array, shape (ℓ,)
        Non-negative eigenvalues, conventionally in descending order.

    Attributes
    ----------
    V, s : arrays
        The eigen-factorisation.  For an operator made by
        :meth:`from_factor` they are computed on first use by a thin SVD of
        ``B`` (``B = V diag(√s) Wᵀ``) and cached.
    factor : array or None
        ``B`` of :meth:`from_factor`, else None.
    rank : int
        ``ℓ``.
    jitter : float
        The stabilising ``ν`` of the stable Nyström algorithm that built it
        (0 when built directly): ``νI`` was added to ``A`` on the sketched
        range so that the ``ℓ × ℓ`` Cholesky exists, and removed again from
        the eigenvalues (``s = max(0, σ² − ν)``).  A rounding-level
        quantity, like ``Woodbury.jitter``; not a
        damping.

    Raises
    ------
    ValueError
        Wrong shapes, ``ℓ > n``, NaN/Inf, negative ``s``.
    TypeError
        Arrays from two libraries or devices.

    Notes
    -----
    ``solve(b, λ) = (V S Vᵀ + λI)⁻¹ b = V (S + λI)⁻¹ Vᵀ b + (b − V Vᵀ b)/λ``
    (``λ`` the damping) for orthonormal ``V`` (the second term vanishes when
    ``ℓ = n``); for the factor form ``(BBᵀ + λI)⁻¹ b`` is computed by the
    Woodbury identity with a Cholesky of the ``ℓ × ℓ`` matrix ``BᵀB + λI``
    (no SVD), see :class:`natgrad.linalg.woodbury.Woodbury`.

    Examples
    --------
    >>> import numpy as np
    >>> V = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 2)))[0]
    >>> L = LowRankPSD(V, np.array([3.0, 1.0]))
    >>> b = np.arange(6.0)
    >>> x = L.solve(b, 0.5)
    >>> bool(np.allclose((L.to_dense() + 0.5 * np.eye(6)) @ x, b))
    True
    """

    _native = True

    def __init__(self, V: Any, s: Any, *, jitter: float = 0.0) -> None:
        xp = backend.namespace(V=V, s=s)
        if V.ndim != 2:
            raise ValueError(f"V must be 2-D (n, ℓ), got shape {tuple(V.shape)}")
        n, ell = (int(d) for d in V.shape)
        if s.ndim != 1 or s.shape[0] != ell:
            raise ValueError(f"s must have shape ({ell},) to match V, got {tuple(s.shape)}")
        if ell > n:
            raise ValueError(f"V has more columns ({ell}) than rows ({n})")
        for name, arr in (("V", V), ("s", s)):
            if not backend.all_finite(arr):
                raise ValueError(f"{name} contains NaN or Inf")
        if ell and backend.to_float(xp.min(s)) < 0:
            raise ValueError("s must be non-negative (a PSD approximation)")
        dtype = backend.float_dtype(xp, V, s)
        super().__init__((n, n), dtype)
        self.xp = xp
        self._V = xp.astype(V, dtype) if V.dtype != dtype else V
        self._s = xp.astype(s, dtype) if s.dtype != dtype else s
        self.factor = None
        self.jitter = validation.nonnegative(jitter, "jitter")
        self._solvers: dict[float, Woodbury] = {}

    @classmethod
    def from_factor(cls, B: Any, *, jitter: float = 0.0) -> "LowRankPSD":
        """The operator ``B Bᵀ`` for ``B`` of shape ``(n, ℓ)``, ``ℓ ≤ n``, kept in
        factored form (no SVD unless ``.V`` or ``.s`` is asked for)."""
        xp = backend.namespace(B=B)
        if B.ndim != 2 or B.shape[1] > B.shape[0]:
            raise ValueError(f"B must be 2-D (n, ℓ) with ℓ ≤ n, got shape {tuple(B.shape)}")
        if not backend.all_finite(B):
            raise ValueError("B contains NaN or Inf")
        self = cls.__new__(cls)
        dtype = backend.float_dtype(xp, B)
        LinearOperator.__init__(self, (B.shape[0], B.shape[0]), dtype)
        self.xp = xp
        self.factor = xp.astype(B, dtype) if B.dtype != dtype else B
        self._V = self._s = None
        self.jitter = validation.nonnegative(jitter, "jitter")
        self._solvers = {}
        return self

    # -- eigen-form, lazily for the factor form -------------------------------
    def _eig(self) -> None:
        if self._V is None:
            Q, sig, _ = backend.svd(self.factor)
            self._V, self._s = Q, sig * sig

    @property
    def V(self) -> Any:
        self._eig()
        return self._V

    @property
    def s(self) -> Any:
        self._eig()
        return self._s

    @property
    def rank(self) -> int:
        return int((self.factor if self.factor is not None else self._V).shape[1])

    # -- products and solves ---------------------------------------------------
    def _matvec(self, x: Any) -> Any:
        xp = self.xp
        if self.factor is not None:
            B = self.factor
            return B @ (xp.matrix_transpose(B) @ x)
        return self._V @ _column_scale(xp, self._s, xp.matrix_transpose(self._V) @ x)

    _rmatvec = _matvec

    def to_dense(self, xp: Any = None) -> Any:
        xp = self.xp
        if self.factor is not None:
            return backend.gram(self.factor)
        W = self._V * self._s
        return W @ xp.matrix_transpose(self._V)

    def solve(self, b: Any, damping: float) -> Any:
        """``x = (Â + damping·I)⁻¹ b`` with ``Â`` this operator.

        Parameters
        ----------
        b : array, shape (n,) or (n, k)
        damping : float
            ``> 0``.

        Returns
        -------
        x : array, shape of ``b``, this operator's dtype.

        Raises
        ------
        ValueError
            ``damping ≤ 0``; ``b`` of the wrong shape or with NaN/Inf.
        TypeError
            ``b`` from another library or device.
        """
        damping = validation.positive(damping, "damping")
        xp = backend.namespace(approximation=self._V if self.factor is None else self.factor, b=b)
        validation.rhs(b, self.shape[0], "b")
        if b.dtype != self.dtype:
            b = xp.astype(b, self.dtype)
        if self.factor is not None:
            solver = self._solvers.get(damping)
            if solver is None:
                # Factor form: (BBᵀ + λI)⁻¹ by Woodbury on the ℓ × ℓ side; at
                # ℓ = n factor BBᵀ + λI itself, which avoids the cancellation
                # in (b − B K⁻¹ Bᵀ b)/λ for λ ≪ ‖B‖².
                side = "parameter" if self.rank == self.shape[0] else "sample"
                solver = Woodbury(xp.matrix_transpose(self.factor), damping, side=side)
                self._solvers = {damping: solver}  # keep one: the optimisers reuse a damping
            return solver.solve(b)
        V = self._V
        c = xp.matrix_transpose(V) @ b
        y = V @ _column_scale(xp, 1.0 / (self._s + damping), c)
        if self.rank == self.shape[0]:
            # I − VVᵀ = 0: dropping the term avoids amplifying its rounding by 1/λ
            return y
        return y + (b - V @ c) / damping


# ---------------------------------------------------------------------------
# the sketch
# ---------------------------------------------------------------------------


def _orthonormal_block(xp: Any, n: int, k: int, dtype: Any, dev: Any, seed: Any, basis: Any) -> Any:
    """``k`` random orthonormal columns, orthogonal to ``basis`` when given."""
    G = backend.normal(xp, (n, k), dtype=dtype, device=dev, seed=seed)
    if basis is not None:
        # Block Gram–Schmidt, twice ("twice is enough", Giraud et al. 2005).
        for _ in range(2):
            G = G - basis @ (xp.matrix_transpose(basis) @ G)
    Q, _ = backend.qr(G)
    return Q


def _sketch_products(op: LinearOperator, dtype: Any) -> validation.CheckedCallable:
    """``X ↦ A X`` for the sketch blocks: every output checked, finiteness
    included (one host synchronisation per block, not per column), and cast
    to the sketch's dtype."""
    return validation.CheckedCallable(op.matvec, "A", dtype=dtype, check_finite=True)


class _NotPSD(ValueError):
    """The sketch proved ``A`` not positive semidefinite."""


def _core(Y: Any, Omega: Any, method: str, xp: Any) -> LowRankPSD:
    """Stable Nyström from ``Y = AΩ`` (Tropp et al. 2017, Alg. 3; Frangella et
    al. 2023, Alg. 2.1); ``method="cholesky"`` stops before the SVD."""
    n, ell = Y.shape
    machine_eps = backend.eps(Y.dtype, xp)
    top = backend.to_float(xp.max(xp.abs(Y)))
    if top == 0.0:  # A Ω = 0: the approximation is zero
        zeros = xp.zeros((ell,), dtype=Y.dtype, device=backend.device(Y))
        if method == "cholesky":
            return LowRankPSD.from_factor(xp.zeros_like(Y))
        return LowRankPSD(Omega, zeros)
    # Nyström commutes with scaling (Â(cA) = c Â(A)): work on Y/2ᵏ ≈ unit size
    # (exact, a power of two), so that norms and ΩᵀY cannot overflow for an A
    # near the end of the exponent range, and scale the result back.
    scale = 2.0 ** math.frexp(top)[1]
    Y = Y / scale
    norm_y = backend.to_float(xp.linalg.vector_norm(Y))
    jitter = machine_eps * norm_y
    limit = math.sqrt(machine_eps) * norm_y
    while True:
        Y_nu = Y + jitter * Omega
        core = xp.matrix_transpose(Omega) @ Y_nu
        core = 0.5 * (core + xp.matrix_transpose(core))
        try:
            L = backend.cholesky(core)  # ΩᵀY_ν = L Lᵀ
            break
        except backend.CholeskyError:
            # Rounding in ΩᵀAΩ exceeded the jitter: grow it; beyond √eps·‖Y‖
            # the negative curvature is real.
            jitter *= 10.0
            if jitter > limit:
                raise _NotPSD(
                    "A is not positive semidefinite: ΩᵀAΩ has a negative eigenvalue "
                    "beyond the rounding level (Nyström needs a PSD A)"
                ) from None
    # B = Y_ν L⁻ᵀ, so that B Bᵀ = Y_ν (ΩᵀY_ν)⁻¹ Y_νᵀ.
    B = xp.matrix_transpose(backend.solve_triangular(L, xp.matrix_transpose(Y_nu), lower=True))
    # Lazy (dask) factors are computed once here, not at every product with
    # the approximation (a preconditioner is applied at every iteration).
    if method == "cholesky":
        return LowRankPSD.from_factor(backend.persist(B * math.sqrt(scale)), jitter=jitter * scale)
    V, sig, _ = backend.svd(B)
    V, s = backend.persist(V, xp.clip(sig * sig - jitter, min=0.0) * scale)
    return LowRankPSD(V, s, jitter=jitter * scale)


def _check_seed(seed: Any) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not (isinstance(seed, int) or hasattr(seed, "standard_normal")):
        raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")


def _block_seed(seed: Any, i: int) -> Any:
    """Seed of the ``i``-th block of an adaptive sketch: reproducible for an
    int seed, a continuing stream for a Generator."""
    if seed is None or not isinstance(seed, int) or i == 0:
        return seed
    return (seed + i * 0x9E3779B1) % (1 << 63)


@backend.quiet_floating_point
def nystrom(
    A: Any,
    rank: int | str,
    *,
    seed: Any = None,
    method: str = "svd",
    damping: float | None = None,
    max_rank: int | None = None,
    like: Any = None,
) -> LowRankPSD:
    r"""Randomized Nyström approximation ``A ≈ V diag(s) Vᵀ`` of a PSD ``A``.

    Parameters
    ----------
    A : array, LinearOperator or scipy operator, shape (n, n)
        Symmetric positive semidefinite.  Only products with ``(n, ℓ)``
        blocks are used.
    rank : int or "auto"
        Sketch size ``ℓ``, ``1 ≤ ℓ ≤ n``.  ``"auto"``: start at 10 and double
        the sketch (reusing it) until the smallest eigenvalue of the
        approximation is ``≤ damping`` or ``max_rank`` is reached.
    seed : int, numpy.random.Generator or None
        An int gives the same sketch on every CPU backend.
    method : {"svd", "cholesky"}
        ``"svd"`` (default): the numerically stable algorithm, eigen-form
        result.  ``"cholesky"``: the same up to the final SVD, returned in
        factor form ``B Bᵀ`` (GPU-friendly: only GEMM, Cholesky and
        triangular solves); ``.V``/``.s`` are computed lazily if asked for.
    damping : float, optional
        The damping ``λ > 0`` the approximation will be used with (in
        ``(Â + λI)⁻¹`` or a preconditioner for ``A + λI``); required with
        ``rank="auto"``, whose stopping rule it sets: eigenvalues below
        ``λ`` need not be captured.
    max_rank : int, optional
        Budget for ``rank="auto"`` (default ``min(n, 512)``).
    like : array, optional
        An array whose namespace and device the sketch uses; needed only
        when ``A`` is an operator defined by a Python callable.

    Returns
    -------
    LowRankPSD

    Raises
    ------
    ValueError
        ``rank`` not in ``[1, n]`` (or not ``"auto"``), unknown ``method``,
        ``rank="auto"`` without a positive ``damping``, non-square ``A``, NaN/Inf
        in ``A`` or in its products
        (:class:`~natgrad.validation.NonFiniteOutputError`, naming the call),
        ``A`` not PSD.
    TypeError
        Wrong types; ``A`` a callable operator without ``like``.

    Notes
    -----
    Stable Nyström (Tropp, Yurtsever, Udell & Cevher, "Fixed-rank
    approximation of a positive-semidefinite matrix from streaming data",
    NeurIPS 2017, Alg. 3; Frangella, Tropp & Udell 2023, Alg. 2.1)::

        Ω = qr(randn(n, ℓ)),  Y = AΩ,  ν = eps·‖Y‖_F,  Y_ν = Y + νΩ
        L = chol(ΩᵀY_ν),      B = Y_ν L⁻ᵀ
        V, Σ = svd(B),        s = max(0, Σ² − ν)

    The jitter ``ν`` (the papers' "shift"; :attr:`LowRankPSD.jitter`) keeps
    the Cholesky of the ``ℓ × ℓ`` core well defined when ``A`` has
    (numerical) rank below ``ℓ``; if rounding still breaks it, ``ν`` grows
    by 10 up to ``√eps·‖Y‖_F``, beyond which ``A`` is reported as not PSD.
    ``method="cholesky"`` returns ``B Bᵀ`` (Guzmán-Cordero et al., arXiv
    2505.12149, Alg. 2), which approximates ``A`` up to the jitter ``ν`` on
    the sketched range (``ν`` is at the rounding level).

    Adaptive rank (Frangella et al. §5.4): ``Ω`` grows by random columns made
    orthogonal to the previous ones, so earlier products ``AΩ`` are reused;
    the stopping rule ``ŝ_ℓ ≤ λ`` targets a preconditioned condition number
    ``≲ (ŝ_ℓ + λ + ‖A − Â‖)/λ`` for ``A + λI``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Q = np.linalg.qr(rng.standard_normal((40, 40)))[0]
    >>> A = (Q * np.logspace(0, -8, 40)) @ Q.T
    >>> approx = nystrom(A, "auto", damping=1e-3, seed=0)
    >>> approx.rank, bool(approx.s[-1] <= 1e-3)
    (20, True)
    """
    if backend.is_array(A):
        backend.namespace(A=A)  # a tracked array (JAX tracer, torch requires_grad) is refused, named
    return _nystrom(_checks.square_operator(A, "A"), rank, seed, method, damping, max_rank, like)


def _nystrom(op: LinearOperator, rank: Any, seed: Any, method: str, damping: Any, max_rank: Any,
             like: Any) -> LowRankPSD:
    """:func:`nystrom` on an operator already checked by ``square_operator``."""
    op = _checked(op)
    n = op.shape[0]
    if method not in _METHODS:
        raise ValueError(f"method must be 'svd' or 'cholesky', got {method!r}")
    _check_seed(seed)
    dense = _checks.dense_array(op)
    if like is not None and not backend.is_array(like):
        raise TypeError(f"like must be an array, got {type(like).__name__}")
    if dense is None and like is None and op.xp is None:
        raise TypeError(
            "A is an operator without an array namespace (from_matvec); pass like= "
            "an array of the library and device the sketch should use"
        )
    xp = backend.namespace(A=dense, like=like) if (dense is not None or like is not None) else op.xp
    dtype = backend.float_dtype(xp, *(a for a in (dense, like) if a is not None)) if (
        dense is not None or like is not None
    ) else backend.float_dtype(xp, op.dtype)
    dev = backend.device(dense if dense is not None else like) if (dense is not None or like is not None) else None
    if dense is not None and dense.dtype != dtype:
        op = DenseOperator(xp.astype(dense, dtype))

    products = _sketch_products(op, dtype)
    if rank == "auto":
        if damping is None or (isinstance(damping, (int, float)) and not damping > 0):
            raise ValueError(
                f"rank='auto' needs damping > 0 (the eigenvalue level to capture), got {damping}"
            )
        damping = validation.positive(damping, "damping")
        budget = min(n, _AUTO_MAX_RANK) if max_rank is None else validation.positive_int(max_rank, "max_rank")
        if budget > n:
            raise ValueError(f"max_rank must be at most n = {n}, got {budget}")
        return _adaptive(products, xp, n, dtype, dev, seed, method, damping, budget)
    if isinstance(rank, str):
        raise ValueError(f"rank must be a positive int or 'auto', got {rank!r}")
    ell = validation.positive_int(rank, "rank")
    if ell > n:
        raise ValueError(f"rank must be at most n = {n}, got {ell}")
    if damping is not None:
        validation.positive(damping, "damping")
    validation.optional_positive_int(max_rank, "max_rank")
    Omega = _orthonormal_block(xp, n, ell, dtype, dev, seed, None)
    return _core(products(Omega), Omega, method, xp)


def _smallest_eigenvalue(approx: LowRankPSD, xp: Any) -> float:
    if approx.factor is None:
        return backend.to_float(approx.s[-1])
    # σ_min(B)² from the ℓ × ℓ Gram matrix: no SVD of the tall B.
    B = approx.factor
    return max(backend.to_float(xp.linalg.eigvalsh(xp.matrix_transpose(B) @ B)[0]), 0.0)


def _adaptive(products: validation.CheckedCallable, xp: Any, n: int, dtype: Any, dev: Any,
              seed: Any, method: str, damping: float, budget: int) -> LowRankPSD:
    ell = min(_AUTO_INITIAL_RANK, budget)
    Omega = _orthonormal_block(xp, n, ell, dtype, dev, _block_seed(seed, 0), None)
    Y = products(Omega)
    step = 0
    while True:
        approx = _core(Y, Omega, method, xp)
        # One host sync per doubling: the stopping decision needs a scalar.
        if ell >= budget or _smallest_eigenvalue(approx, xp) <= damping:
            return approx
        step += 1
        k = min(ell, budget - ell)
        Q = _orthonormal_block(xp, n, k, dtype, dev, _block_seed(seed, step), Omega)
        Omega = xp.concat([Omega, Q], axis=1)
        Y = xp.concat([Y, products(Q)], axis=1)
        ell += k


# ---------------------------------------------------------------------------
# preconditioner and solvers
# ---------------------------------------------------------------------------


class NystromPreconditioner(LinearOperator):
    r"""The Nyström preconditioner for ``A + damping·I`` as a :class:`LinearOperator`.

    Applies ``P⁻¹ = (ŝ_ℓ + λ) V (diag(s) + λI)⁻¹ Vᵀ + (I − V Vᵀ)`` (``λ`` the
    damping); pass it as ``cg(A + λI, b, M=P)``.

    Parameters
    ----------
    approx : LowRankPSD
        A Nyström approximation of ``A`` (from :func:`nystrom`).  A factor-form
        approximation is converted to eigen-form once (one thin SVD).
    damping : float
        ``λ ≥ 0``, the damping of the system being solved.  With ``λ = 0``
        eigenpairs with ``s_j ≤ n·eps·s_1`` are dropped, so that ``ŝ_ℓ > 0``.

    Attributes
    ----------
    approx : LowRankPSD
        The approximation it was built from.
    damping : float
        ``λ``.

    Raises
    ------
    TypeError
        ``approx`` not a :class:`LowRankPSD`, non-real ``damping``.
    ValueError
        ``damping < 0`` or not finite.

    Notes
    -----
    Frangella, Tropp & Udell, SIAM J. Matrix Anal. Appl. 44 (2023), eq. (5.3).
    With ``A = Â + E``, ``E ⪰ 0`` (true of the Nyström approximation), the
    preconditioned matrix ``P^{-1/2}(A + λI)P^{-1/2}`` has its eigenvalues in
    ``[λ, ŝ_ℓ + λ + ‖E‖]``, so ``κ ≤ (ŝ_ℓ + λ + ‖E‖)/λ``: ``P^{-1/2}(Â + λI)
    P^{-1/2}`` equals ``ŝ_ℓ + λ`` on range(V) and ``λ`` on its complement,
    and ``‖P⁻¹‖ ≤ 1``.  Applying it costs ``4nℓ`` flops.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import cg
    >>> rng = np.random.default_rng(0)
    >>> Q = np.linalg.qr(rng.standard_normal((60, 60)))[0]
    >>> A = (Q * np.logspace(2, -6, 60)) @ Q.T
    >>> P = NystromPreconditioner(nystrom(A, 30, seed=0), 1e-3)
    >>> b = rng.standard_normal(60)
    >>> plain = cg(A + 1e-3 * np.eye(60), b, rtol=1e-10)
    >>> pre = cg(A + 1e-3 * np.eye(60), b, rtol=1e-10, M=P)
    >>> pre.converged, pre.iterations < plain.iterations / 3
    (True, True)
    """

    _native = True

    def __init__(self, approx: LowRankPSD, damping: float) -> None:
        if not isinstance(approx, LowRankPSD):
            raise TypeError(f"approx must be a LowRankPSD (from nystrom), got {type(approx).__name__}")
        damping = validation.nonnegative(damping, "damping")
        super().__init__(approx.shape, approx.dtype)
        xp = self.xp = approx.xp
        V, s = approx.V, approx.s
        n = approx.shape[0]
        if damping == 0.0 and s.shape[0] > 0:
            s_max = backend.to_float(s[0])
            keep = backend.to_int(xp.sum(xp.astype(s > n * backend.eps(s.dtype, xp) * s_max, s.dtype)))
            V, s = V[:, :keep], s[:keep]
        self.approx, self.damping = approx, damping
        self._V = V
        if s.shape[0] == 0:
            self._weights = None  # nothing captured: the identity
        else:
            # P⁻¹x = x + V ((ŝ_ℓ + λ)/(s + λ) − 1) Vᵀx
            self._weights = backend.persist((s[-1] + damping) / (s + damping) - 1.0)

    def _matvec(self, x: Any) -> Any:
        if self._weights is None:
            return x
        xp = self.xp
        c = xp.matrix_transpose(self._V) @ x
        return x + self._V @ _column_scale(xp, self._weights, c)

    _rmatvec = _matvec


def _prepare_system(A: Any, b: Any) -> tuple[LinearOperator, Any, Any]:
    """Validated operator and right-hand side with a common dtype."""
    if backend.is_array(A):
        backend.namespace(A=A)  # a tracked array is refused with its own error, named
    op = _checks.square_operator(A, "A")
    dense = _checks.dense_array(op)
    xp = backend.namespace(A=dense, b=b)
    validation.rhs(b, op.shape[0], "b")
    dtype = backend.float_dtype(xp, b, *([dense] if dense is not None else []))
    if dense is not None and dense.dtype != dtype:
        op = DenseOperator(xp.astype(dense, dtype))
    if b.dtype != dtype:
        b = xp.astype(b, dtype)
    return op, b, xp


class _CheckedOperator(LinearOperator):
    """A user's operator whose every product is checked (shape, library,
    device: array metadata, no host synchronisation), errors naming ``A`` and
    the call.  A matvec-only operator is checked column by column, at each of
    the user's calls: a wrong shape at call 7 is reported there instead of
    surfacing from stacking the columns as a bare error of the array library.
    The user's function receives a copy of the solver's array (the sketch
    ``Ω``, CG's search direction), so one that writes into its argument
    changes only that copy."""

    def __init__(self, base: LinearOperator) -> None:
        super().__init__(base.shape, base.dtype)
        self.base, self.xp = base, base.xp
        self._xp_in = base.xp
        if isinstance(base, MatvecOperator) and base._fn_mat is None:
            checked = validation.CheckedCallable(base._fn, "A", dtype=None, check_finite=False)
            self._apply = MatvecOperator(checked, base.shape, base.dtype, xp=base.xp)._matvec
        else:
            self._apply = validation.CheckedCallable(base._matvec, "A", dtype=None, check_finite=False)

    def _matvec(self, x: Any) -> Any:
        if self._xp_in is None:
            self._xp_in = backend.namespace(x=x)
        return self._apply(self._xp_in.asarray(x, copy=True))


def _checked(op: LinearOperator) -> LinearOperator:
    """``op`` itself when natgrad built it from validated arrays, else checked."""
    return op if op._native or isinstance(op, (_CheckedOperator, _CountedOperator)) else _CheckedOperator(op)


class _CountedOperator(LinearOperator):
    """``A`` counting its products, so that the sketch's and CG's add up."""

    def __init__(self, base: LinearOperator) -> None:
        super().__init__(base.shape, base.dtype)
        self.base, self.xp, self._native, self.calls = base, base.xp, base._native, 0

    def _matvec(self, x: Any) -> Any:
        self.calls += 1
        return self.base._matvec(x)


@backend.quiet_floating_point
@_checks.scipy_tol
def nystrom_pcg(
    A: Any,
    b: Any,
    rank: int | str,
    *,
    damping: float = 0.0,
    seed: Any = None,
    method: str = "svd",
    max_rank: int | None = None,
    **cg_kwargs: Any,
) -> SolveResult:
    r"""Solve ``(A + damping·I) x = b`` by CG preconditioned with a Nyström sketch of ``A``.

    Parameters
    ----------
    A : array, LinearOperator or scipy operator, shape (n, n)
        Symmetric positive semidefinite (definite when ``damping = 0``).
    b : array, shape (n,) or (n, k)
    rank : int or "auto"
        Sketch size, see :func:`nystrom` (``"auto"`` needs ``damping > 0``).
    damping : float
        ``λ ≥ 0``.  CG iterates on ``A + λI`` itself.
    seed, method, max_rank
        As for :func:`nystrom`.
    **cg_kwargs
        ``x0``, ``rtol``, ``atol``, ``maxiter``, ``callback``,
        ``record_history`` of :func:`natgrad.linalg.cg` (not ``M``).

    Returns
    -------
    SolveResult
        From :func:`~natgrad.linalg.cg`, with its statuses; ``info`` begins
        with the sketch rank.  ``stats``: ``"matvecs"`` (every call of ``A``:
        the sketch's block products, one per doubling with ``rank="auto"``,
        and CG's), ``"preconditioner_applications"``, ``"rank"`` (the sketch
        rank ``ℓ`` used) and CG's ``"residual_history"`` when asked for.
        When the sketch itself fails the solve stops before CG, with ``x``
        zero: ``NONFINITE`` for NaN or Inf in ``A``'s products,
        ``INDEFINITE`` when the sketch proves ``A`` not positive
        semidefinite.

    Raises
    ------
    ValueError, TypeError
        As :func:`nystrom` and :func:`~natgrad.linalg.cg` for bad arguments;
        ``M`` in ``cg_kwargs`` is a TypeError.

    Notes
    -----
    Nyström PCG (Frangella, Tropp & Udell 2023, Alg. 5.1): with
    ``ℓ ≥ 2⌈1.5 d_eff(λ)⌉ + 1`` the expected condition number of the
    preconditioned system is below 28, ``d_eff(λ) = tr(A(A + λI)⁻¹)``.
    The operator CG sees is ``A + λI``, never ``A`` alone (the damped
    system is the one the preconditioner was built for).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 3))
    >>> K = np.exp(-0.5 * ((X[:, None] - X[None]) ** 2).sum(-1))
    >>> b = rng.standard_normal(200)
    >>> res = nystrom_pcg(K, b, 100, damping=1e-2, seed=0, rtol=1e-8)
    >>> res.converged, res.iterations < 20      # plain CG: 186 iterations
    (True, True)
    >>> bool(np.linalg.norm((K + 1e-2 * np.eye(200)) @ res.x - b) <= 1e-8 * np.linalg.norm(b))
    True
    >>> res.stats["rank"], res.stats["matvecs"] == res.iterations + 2   # sketch + verification
    (100, True)
    """
    if "M" in cg_kwargs:
        raise TypeError("nystrom_pcg builds its own preconditioner; do not pass M")
    op, b, xp = _prepare_system(A, b)
    damping = validation.nonnegative(damping, "damping")
    counted = _CountedOperator(_checked(op))
    try:
        approx = _nystrom(counted, rank, seed, method, damping if rank == "auto" else None, max_rank, b)
    except (validation.NonFiniteOutputError, _NotPSD) as err:
        # A numerical failure of the sketch, not a bad argument: a result.
        nonfinite = isinstance(err, validation.NonFiniteOutputError)
        status = SolveStatus.NONFINITE if nonfinite else SolveStatus.INDEFINITE
        norm_b = backend.to_float(xp.max(xp.linalg.vector_norm(b, axis=0)))
        stats = {"matvecs": counted.calls, "preconditioner_applications": 0, "rank": 0}
        return SolveResult(xp.zeros_like(b), False, 0, norm_b, status, stats,
                           f"Nyström-PCG: the sketch failed before CG ({err}); x is zero")
    P = NystromPreconditioner(approx, damping)
    system = shifted(counted, damping) if damping > 0 else counted
    res = cg(system, b, M=P, **cg_kwargs)
    stats = {**res.stats, "matvecs": counted.calls, "rank": approx.rank}
    return SolveResult(res.x, res.converged, res.iterations, res.residual_norm, res.status, stats,
                       f"Nyström-PCG (rank {approx.rank}, {method}): {res.info}")


@backend.quiet_floating_point
def nystrom_solve(
    A: Any,
    b: Any,
    rank: int | str,
    *,
    damping: float,
    seed: Any = None,
    method: str = "svd",
    max_rank: int | None = None,
) -> Any:
    r"""Sketch-and-solve: ``x = (Â + damping·I)⁻¹ b`` with ``Â`` a Nyström sketch of ``A``.

    Parameters
    ----------
    A : array, LinearOperator or scipy operator, shape (n, n)
        Symmetric positive semidefinite.
    b : array, shape (n,) or (n, k)
    rank : int or "auto"
    damping : float
        ``λ > 0``.
    seed, method, max_rank
        As for :func:`nystrom`; ``method="cholesky"`` never computes an SVD.

    Returns
    -------
    x : array, shape of ``b``.

    Raises
    ------
    ValueError, TypeError
        As :func:`nystrom`; ``damping ≤ 0``.

    Notes
    -----
    An approximate solve, exact when ``rank(A) ≤ ℓ``: the error is
    ``(Â + λI)⁻¹ − (A + λI)⁻¹ = (Â + λI)⁻¹ E (A + λI)⁻¹`` with ``E = A − Â``,
    so ``‖x − x*‖ ≤ ‖E‖/λ · ‖x*‖``.  This is the randomized ENGD step of
    Guzmán-Cordero et al. (arXiv 2505.12149, §3.3) when ``A = JJᵀ``.  Use
    :func:`nystrom_pcg` for a solve to a tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> J = rng.standard_normal((50, 8))
    >>> A = J @ J.T                                  # rank 8
    >>> b = rng.standard_normal(50)
    >>> x = nystrom_solve(A, b, 10, damping=1e-3, seed=0)
    >>> bool(np.allclose((A + 1e-3 * np.eye(50)) @ x, b))
    True
    """
    op, b, _ = _prepare_system(A, b)
    damping = validation.positive(damping, "damping")
    approx = _nystrom(op, rank, seed, method, damping if rank == "auto" else None, max_rank, b)
    return approx.solve(b, damping)

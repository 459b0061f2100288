r"""Linear operators: anything that can multiply a vector or a block of vectors.

Solvers in :mod:`natgrad.linalg` accept a dense array of any backend, a SciPy
``LinearOperator`` or sparse matrix, or a natgrad :class:`LinearOperator`, and
turn it into the latter with :func:`aslinearoperator`.  An operator knows its
``shape`` and ``dtype`` and applies itself to ``x`` of shape ``(n,)`` or
``(n, k)`` with ``A.matvec(x)`` or ``A @ x``.

Operators combine lazily: ``A + B``, ``A - B``, ``c * A``, ``A @ B`` and the
damped ``A + damping * identity(n)`` (or :func:`shifted`) build new operators
without forming any matrix.

Examples
--------
>>> import numpy as np
>>> from natgrad.linalg import aslinearoperator, from_matvec, identity
>>> A = aslinearoperator(np.array([[2.0, 1.0], [1.0, 3.0]]))
>>> B = A + 0.5 * identity(2)
>>> B @ np.array([1.0, 1.0])
array([3.5, 4.5])
>>> D = from_matvec(lambda x: 2.0 * x, (2, 2), np.float64)
>>> (A @ D) @ np.array([1.0, 0.0])
array([4., 2.])
"""

from __future__ import annotations

from numbers import Number
from typing import Any, Callable

from .. import backend

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "MatvecOperator",
    "IdentityOperator",
    "aslinearoperator",
    "from_matvec",
    "identity",
    "shifted",
]


class LinearOperator:
    """An ``(m, n)`` linear map applied through :meth:`matvec`.

    The base class of every natgrad operator.  Subclasses implement
    ``_matvec(x)`` for ``x`` of shape ``(n,)`` or ``(n, k)`` (already
    validated) and may override ``_rmatvec`` (the transpose product) and
    ``to_dense``.

    Parameters
    ----------
    shape : (int, int)
        ``(m, n)``: the operator maps vectors of length ``n`` to vectors of
        length ``m``.  Each entry is converted with ``int``.
    dtype : dtype or None
        The dtype of the operator's entries, in the operator's namespace;
        ``None`` when unknown (an :func:`identity` without a dtype).

    Attributes
    ----------
    shape : tuple of int
        ``(m, n)``.
    dtype : dtype or None
        The dtype of the operator's entries (in the operator's namespace).
    xp : module or None
        Array-API namespace of the operator's data (a class attribute,
        ``None`` by default): set by dense and SciPy operators, ``None`` for
        operators defined by a Python callable, which adapt to their input.
    T : LinearOperator
        The transposed operator, applied through :meth:`rmatvec`.

    Raises
    ------
    ValueError
        If ``shape`` is not a pair of non-negative ints.  Later, applying the
        operator (``matvec``, ``rmatvec``, ``A @ x``) to ``x`` that is not
        1-D or 2-D with first dimension ``n`` (``m`` for the transpose);
        adding or multiplying operators of incompatible shapes, or damping a
        non-square one; ``to_dense()`` without ``xp`` when ``self.xp`` is
        ``None``.
    TypeError
        From ``matvec``/``rmatvec`` when ``x`` has no ``shape`` (not an array).
    NotImplementedError
        From ``rmatvec`` (and so ``A.T @ x``) when the operator has no
        transpose product, e.g. :func:`from_matvec` without ``rmatvec``.

    Notes
    -----
    Operators combine lazily, without forming a matrix: ``A + B``, ``A - B``,
    ``-A``, ``c * A`` (``c`` a ``numbers.Number``; arrays, 0-d ones
    included, are not accepted), ``A @ B`` (composition) and ``A.T``; ``A @ x`` with
    an array ``x`` is ``A.matvec(x)``.  ``A + identity(n)`` and
    ``A + c * identity(n)`` become the damped operator :func:`shifted`
    ``(A, c)``, and dampings of dampings fold into one.  A composite takes the dtype and
    namespace of its first operand, or of the second when the first does not
    know them.

    Validation reads only ``x.shape``; it neither copies nor synchronises
    with a device, so the product runs wherever the data live.  Unlike
    SciPy's ``LinearOperator`` the same ``matvec`` takes a vector ``(n,)`` or
    a block ``(n, k)``, and the arrays may come from any array-API library.

    Examples
    --------
    A diagonal operator written as a subclass:

    >>> import numpy as np
    >>> from natgrad.linalg import LinearOperator
    >>> class Diagonal(LinearOperator):
    ...     def __init__(self, d):
    ...         super().__init__((d.shape[0], d.shape[0]), d.dtype)
    ...         self.d = d
    ...     def _matvec(self, x):
    ...         return self.d * x if x.ndim == 1 else self.d[:, None] * x
    ...     _rmatvec = _matvec
    >>> D = Diagonal(np.array([1.0, 2.0, 3.0]))
    >>> D
    <3x3 Diagonal dtype=float64>
    >>> D @ np.ones(3)
    array([1., 2., 3.])
    >>> (D.T @ np.ones((3, 2))).shape
    (3, 2)
    >>> (3 * D - D) @ np.ones(3)
    array([2., 4., 6.])
    >>> D.to_dense(np)
    array([[1., 0., 0.],
           [0., 2., 0.],
           [0., 0., 3.]])
    >>> D @ np.ones(4)
    Traceback (most recent call last):
        ...
    ValueError: x must have shape (3,) or (3, k) to match the operator, got (4,)
    """

    #: array-API namespace of the operator's data, or ``None`` when unknown
    #: (operators defined by a Python callable adapt to their input).
    xp: Any = None
    #: True for operators natgrad builds from arrays it has validated: their
    #: products need no output check in the solvers (a user's operator gets
    #: one at every call, see ``natgrad.linalg._checks.operator_calls``).
    _native: bool = False

    def __init__(self, shape: tuple[int, int], dtype: Any) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 0:
            raise ValueError(f"shape must be a pair of non-negative ints, got {shape}")
        self.shape = shape
        self.dtype = dtype

    # -- application ------------------------------------------------------
    def matvec(self, x: Any) -> Any:
        """Apply the operator: ``A x`` for ``x`` of shape ``(n,)`` or ``(n, k)``.

        Raises
        ------
        ValueError
            If ``x`` is not 1-D or 2-D or its first dimension is not ``n``.
        """
        _check_operand(x, self.shape[1], "x")
        return self._matvec(x)

    def rmatvec(self, x: Any) -> Any:
        """Apply the transpose: ``Aᵀ x`` for ``x`` of shape ``(m,)`` or ``(m, k)``."""
        _check_operand(x, self.shape[0], "x")
        return self._rmatvec(x)

    def _matvec(self, x: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rmatvec(self, x: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement the transpose product")

    @property
    def T(self) -> "LinearOperator":
        """The transposed operator (uses :meth:`rmatvec`)."""
        return _TransposedOperator(self)

    def to_dense(self, xp: Any = None) -> Any:
        """The operator as a dense ``(m, n)`` array, by applying it to the identity.

        Parameters
        ----------
        xp : module, optional
            Namespace to build the identity in, needed when the operator does
            not know its own (``from_matvec`` operators).
        """
        xp = xp if xp is not None else self.xp
        if xp is None:
            raise ValueError("this operator does not know its array namespace; pass xp")
        return self.matvec(xp.eye(self.shape[1], dtype=self.dtype))

    # -- algebra ------------------------------------------------------------
    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return _ProductOperator(self, other)
        return self.matvec(other)

    #: NumPy defers to the operator instead of broadcasting over it: without
    #: this ``A * np.array([2., 3.])`` was an object array of operators
    __array_ufunc__ = None

    def __mul__(self, scalar: Any) -> "LinearOperator":
        if backend.is_array(scalar):
            raise TypeError(
                f"an operator can be scaled only by a number (numbers.Number), got an array of "
                f"shape {tuple(scalar.shape)}; for a 0-d array c use float(c)"
            )
        if not isinstance(scalar, Number):
            return NotImplemented
        return _ScaledOperator(self, scalar)

    __rmul__ = __mul__

    def __neg__(self) -> "LinearOperator":
        return _ScaledOperator(self, -1.0)

    def __add__(self, other: Any) -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        if tuple(other.shape) != tuple(self.shape):
            raise ValueError(f"cannot add operators of shapes {self.shape} and {other.shape}")
        if isinstance(other, _ScaledOperator) and isinstance(other.base, IdentityOperator):
            return shifted(self, other.scale)
        if isinstance(other, IdentityOperator):
            return shifted(self, 1.0)
        return _SumOperator(self, other)

    def __sub__(self, other: Any) -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return self + (-other)

    def __repr__(self) -> str:
        return f"<{self.shape[0]}x{self.shape[1]} {type(self).__name__} dtype={self.dtype}>"


def _check_operand(x: Any, n: int, name: str) -> None:
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if len(shape) not in (1, 2) or shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},) or ({n}, k) to match the operator, "
            f"got {tuple(shape)}"
        )


class DenseOperator(LinearOperator):
    """A dense ``(m, n)`` array of any backend seen as an operator.

    Usually made by :func:`aslinearoperator` from an array.

    Parameters
    ----------
    A : array, shape (m, n)
        A 2-D array of an array-API library (NumPy, CuPy, PyTorch, JAX, ...).
        Kept by reference: neither copied nor converted.

    Attributes
    ----------
    array : array
        ``A`` itself.
    xp : module
        ``A``'s array-API namespace.
    shape : tuple of int
        ``A.shape``.
    dtype : dtype
        ``A.dtype``.

    Raises
    ------
    TypeError
        If ``A`` is not an array of a supported library.
    ValueError
        If ``A`` is not 2-D.

    Notes
    -----
    ``matvec(x)`` is ``A @ x`` and ``rmatvec(x)`` is
    ``xp.matrix_transpose(A) @ x``, both in ``A``'s namespace (one matrix
    product for a block ``x``); ``to_dense()`` returns ``A`` itself, not a
    copy.  Solvers read :attr:`array` to check a dense matrix for NaN/Inf and
    to promote dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import DenseOperator
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> op = DenseOperator(A)
    >>> op @ np.array([1.0, 1.0])
    array([3., 7.])
    >>> op.T @ np.array([1.0, 1.0])
    array([4., 6.])
    >>> op.to_dense() is A
    True
    """

    _native = True

    def __init__(self, A: Any) -> None:
        self.xp = backend.namespace(A=A)
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D array, got shape {tuple(A.shape)}")
        super().__init__(tuple(A.shape), A.dtype)
        self.array = A

    def _matvec(self, x: Any) -> Any:
        return self.array @ x

    def _rmatvec(self, x: Any) -> Any:
        return self.xp.matrix_transpose(self.array) @ x

    def to_dense(self, xp: Any = None) -> Any:
        return self.array


class MatvecOperator(LinearOperator):
    """An operator defined by a Python callable (see :func:`from_matvec`).

    Parameters
    ----------
    matvec : callable
        ``matvec(x) -> A x`` for ``x`` of shape ``(n,)``, returning shape
        ``(m,)`` in the caller's array library.
    shape : (int, int)
        ``(m, n)``.
    dtype : dtype or None
        The dtype of the operator's entries.
    matmat : callable, optional
        ``matmat(X) -> A X`` for ``X`` of shape ``(n, k)``.  Without it,
        blocks are applied one column at a time.
    rmatvec : callable, optional
        ``rmatvec(y) -> Aᵀ y`` for ``y`` of shape ``(m,)``; without it the
        transpose product raises ``NotImplementedError``.
    xp : module, optional
        The array-API namespace of the callable's arrays, if known (used by
        ``to_dense``); ``None`` by default.

    Raises
    ------
    TypeError
        If ``matvec`` is not callable.
    ValueError
        If ``shape`` is not a pair of non-negative ints.

    Notes
    -----
    Without ``matmat`` a block ``X`` is applied as
    ``xp.stack([matvec(X[:, j]) for j in range(k)], axis=1)``, ``k`` Python
    calls; the transpose of a block always goes column by column through
    ``rmatvec``.  The callable's output is not checked here: the solvers
    check it at every application (shape, library, device, dtype; see
    :class:`natgrad.validation.CheckedCallable`).
    Such an operator does not know its namespace unless ``xp`` is given, so
    solvers take it from the right-hand side and ``to_dense`` needs ``xp``.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import MatvecOperator
    >>> op = MatvecOperator(lambda x: 2.0 * x, (3, 3), np.float64,
    ...                     rmatvec=lambda y: 2.0 * y)
    >>> op @ np.ones(3)
    array([2., 2., 2.])
    >>> (op @ np.ones((3, 2))).shape          # column by column
    (3, 2)
    >>> op.T @ np.array([1.0, 0.0, 0.0])
    array([2., 0., 0.])
    """

    def __init__(
        self,
        matvec: Callable[[Any], Any],
        shape: tuple[int, int],
        dtype: Any,
        *,
        matmat: Callable[[Any], Any] | None = None,
        rmatvec: Callable[[Any], Any] | None = None,
        xp: Any = None,
    ) -> None:
        if not callable(matvec):
            raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
        super().__init__(shape, dtype)
        self._fn = matvec
        self._fn_mat = matmat
        self._fn_t = rmatvec
        self.xp = xp

    def _matvec(self, x: Any) -> Any:
        if x.ndim == 1:
            return self._fn(x)
        if self._fn_mat is not None:
            return self._fn_mat(x)
        return _columnwise(self._fn, x)

    def _rmatvec(self, x: Any) -> Any:
        if self._fn_t is None:
            return super()._rmatvec(x)
        return self._fn_t(x) if x.ndim == 1 else _columnwise(self._fn_t, x)


def _columnwise(fn: Callable[[Any], Any], X: Any) -> Any:
    xp = backend.namespace(X=X)
    return xp.stack([fn(X[:, j]) for j in range(X.shape[1])], axis=1)


class _ScipyOperator(LinearOperator):
    """A SciPy ``LinearOperator`` or sparse matrix; NumPy arrays in and out."""

    def __init__(self, op: Any) -> None:
        super().__init__(tuple(op.shape), op.dtype)
        self.op = op
        self.xp = backend.numpy_namespace()

    def _matvec(self, x: Any) -> Any:
        return self.op @ x

    def _rmatvec(self, x: Any) -> Any:
        return self.op.T @ x


class IdentityOperator(LinearOperator):
    """The ``n × n`` identity (see :func:`identity`).

    Parameters
    ----------
    n : int
        Size.
    dtype : dtype, optional
        Recorded as the operator's dtype; ``None`` (default) leaves it
        unknown, and sums with it take the other operand's dtype.

    Raises
    ------
    ValueError
        If ``n`` is negative.

    Notes
    -----
    ``matvec(x)`` and ``rmatvec(x)`` return ``x`` itself (no copy, any
    namespace).  The identity has no namespace of its own (``xp`` is
    ``None``), so ``to_dense`` needs ``xp``.  ``A + identity(n)`` and
    ``A + c * identity(n)`` are turned into the damped :func:`shifted`.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import IdentityOperator
    >>> I = IdentityOperator(3)
    >>> x = np.arange(3.0)
    >>> (I @ x) is x
    True
    >>> I.to_dense(np)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """

    _native = True

    def __init__(self, n: int, dtype: Any = None) -> None:
        super().__init__((n, n), dtype)

    def _matvec(self, x: Any) -> Any:
        return x

    _rmatvec = _matvec


class _ScaledOperator(LinearOperator):
    def __init__(self, base: LinearOperator, scale: Any) -> None:
        super().__init__(base.shape, base.dtype)
        self.base, self.scale, self.xp = base, scale, base.xp
        self._native = base._native

    def _matvec(self, x: Any) -> Any:
        return self.scale * self.base._matvec(x)

    def _rmatvec(self, x: Any) -> Any:
        return self.scale * self.base._rmatvec(x)


class _ShiftedOperator(LinearOperator):
    """``A + damping·I`` for a square ``A``."""

    def __init__(self, base: LinearOperator, damping: Any) -> None:
        if base.shape[0] != base.shape[1]:
            raise ValueError(f"A + damping·I needs a square A, got shape {base.shape}")
        super().__init__(base.shape, base.dtype)
        self.base, self.damping, self.xp = base, damping, base.xp
        self._native = base._native

    def _matvec(self, x: Any) -> Any:
        return self.base._matvec(x) + self.damping * x

    def _rmatvec(self, x: Any) -> Any:
        return self.base._rmatvec(x) + self.damping * x


class _SumOperator(LinearOperator):
    def __init__(self, a: LinearOperator, b: LinearOperator) -> None:
        if a.shape != b.shape:
            raise ValueError(f"cannot add operators of shapes {a.shape} and {b.shape}")
        super().__init__(a.shape, a.dtype if a.dtype is not None else b.dtype)
        self.a, self.b, self.xp = a, b, a.xp if a.xp is not None else b.xp
        self._native = a._native and b._native

    def _matvec(self, x: Any) -> Any:
        return self.a._matvec(x) + self.b._matvec(x)

    def _rmatvec(self, x: Any) -> Any:
        return self.a._rmatvec(x) + self.b._rmatvec(x)


class _ProductOperator(LinearOperator):
    def __init__(self, a: LinearOperator, b: LinearOperator) -> None:
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"cannot multiply operators of shapes {a.shape} and {b.shape}")
        super().__init__((a.shape[0], b.shape[1]), a.dtype if a.dtype is not None else b.dtype)
        self.a, self.b, self.xp = a, b, a.xp if a.xp is not None else b.xp
        self._native = a._native and b._native

    def _matvec(self, x: Any) -> Any:
        return self.a._matvec(self.b._matvec(x))

    def _rmatvec(self, x: Any) -> Any:
        return self.b._rmatvec(self.a._rmatvec(x))


class _TransposedOperator(LinearOperator):
    def __init__(self, base: LinearOperator) -> None:
        super().__init__((base.shape[1], base.shape[0]), base.dtype)
        self.base, self.xp = base, base.xp
        self._native = base._native

    def _matvec(self, x: Any) -> Any:
        return self.base._rmatvec(x)

    def _rmatvec(self, x: Any) -> Any:
        return self.base._matvec(x)


def aslinearoperator(A: Any) -> LinearOperator:
    """View ``A`` as a natgrad :class:`LinearOperator`.

    Parameters
    ----------
    A : array, scipy.sparse.linalg.LinearOperator, scipy sparse matrix or LinearOperator
        A dense 2-D array of any supported backend, a SciPy operator or sparse
        matrix (NumPy arrays in and out), or a natgrad operator (returned as is).

    Returns
    -------
    LinearOperator

    Raises
    ------
    TypeError
        If ``A`` is none of the above (a Python callable included: wrap it
        with :func:`from_matvec`).
    ValueError
        If a dense ``A`` is not 2-D.

    Notes
    -----
    Nothing is copied or converted: a natgrad operator is returned as is, an
    array is wrapped in a :class:`DenseOperator` (kept by reference, applied
    in its own namespace and on its own device), and a SciPy operator or
    sparse matrix is wrapped so that ``A @ x`` and ``A.T @ x`` call SciPy;
    its namespace is NumPy's (``array_api_compat.numpy``), so it works with
    NumPy right-hand sides only.  Arrays are recognised by the array API
    (``array_api_compat.is_array_api_obj``) before SciPy types are tried.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from natgrad.linalg import aslinearoperator
    >>> A = aslinearoperator(np.array([[2.0, 0.0], [1.0, 1.0]]))
    >>> A
    <2x2 DenseOperator dtype=float64>
    >>> aslinearoperator(A) is A
    True
    >>> S = aslinearoperator(sp.eye(2, format="csr"))
    >>> S @ np.array([1.0, 2.0])
    array([1., 2.])
    >>> aslinearoperator(lambda x: x)
    Traceback (most recent call last):
        ...
    TypeError: A must be a 2-D array, a scipy LinearOperator or sparse matrix, or a natgrad LinearOperator; got function (wrap callables with from_matvec)
    """
    if isinstance(A, LinearOperator):
        return A
    if backend.is_array(A):
        return DenseOperator(A)
    if backend.is_scipy_operator(A):
        return _ScipyOperator(A)
    raise TypeError(
        "A must be a 2-D array, a scipy LinearOperator or sparse matrix, or a "
        f"natgrad LinearOperator; got {type(A).__name__} (wrap callables with from_matvec)"
    )


def from_matvec(
    matvec: Callable[[Any], Any],
    shape: tuple[int, int],
    dtype: Any,
    *,
    matmat: Callable[[Any], Any] | None = None,
    rmatvec: Callable[[Any], Any] | None = None,
) -> LinearOperator:
    """An operator from a function that multiplies a vector.

    Parameters
    ----------
    matvec : callable
        ``matvec(x) -> A x`` for ``x`` of shape ``(n,)``, in the caller's array
        library.
    shape : (int, int)
    dtype : dtype
    matmat : callable, optional
        ``matmat(X) -> A X`` for ``X`` of shape ``(n, k)``.  Without it, blocks
        are applied one column at a time.
    rmatvec : callable, optional
        ``rmatvec(y) -> Aᵀ y``, needed only by algorithms that use the transpose.

    Returns
    -------
    LinearOperator
        A :class:`MatvecOperator` of the given ``shape`` and ``dtype`` whose
        namespace (``xp``) is unknown.

    Raises
    ------
    TypeError
        If ``matvec`` is not callable.
    ValueError
        If ``shape`` is not a pair of non-negative ints.

    Notes
    -----
    The callables are stored, not called: nothing is checked until the
    operator is applied, and the solvers check the output of the first
    application (shape, library, device, dtype).  Because the operator does
    not know its array library, solvers take it from the right-hand side,
    :func:`natgrad.linalg.nystrom` needs ``like=``, and ``to_dense`` needs
    ``xp``.  Give ``matmat`` when a block product is cheaper than ``k``
    separate calls (it usually is on a GPU).

    Examples
    --------
    >>> import numpy as np
    >>> op = from_matvec(lambda x: np.cumsum(x, axis=0), (3, 3), np.float64)
    >>> op @ np.ones(3)
    array([1., 2., 3.])
    """
    return MatvecOperator(matvec, shape, dtype, matmat=matmat, rmatvec=rmatvec)


def identity(n: int, dtype: Any = None) -> LinearOperator:
    """The ``n × n`` identity operator; ``A + damping * identity(n)`` is :func:`shifted`.

    Parameters
    ----------
    n : int
        Size.
    dtype : dtype, optional
        The operator's dtype; ``None`` (default) leaves it unknown.

    Returns
    -------
    LinearOperator
        An :class:`IdentityOperator`.

    Raises
    ------
    ValueError
        If ``n`` is negative.

    Notes
    -----
    ``A + identity(n)`` and ``A + damping * identity(n)`` (``damping`` a
    Python number) build :func:`shifted` ``(A, damping)``, applied as
    ``A x + damping x`` without a separate identity product; ``A`` must be
    square and of size ``n`` (a different size raises ``ValueError``).

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import aslinearoperator, identity
    >>> A = aslinearoperator(np.array([[2.0, 1.0], [1.0, 3.0]]))
    >>> B = A + 0.5 * identity(2)
    >>> bool(np.allclose(B.to_dense(), [[2.5, 1.0], [1.0, 3.5]]))
    True
    >>> identity(3) @ np.ones(3)
    array([1., 1., 1.])
    """
    return IdentityOperator(n, dtype)


def shifted(A: Any, damping: Any) -> LinearOperator:
    """The damped operator ``A + damping·I`` (``A`` square), applied as ``A x + damping·x``.

    Parameters
    ----------
    A : array, scipy operator or LinearOperator, shape (n, n)
        Anything :func:`aslinearoperator` accepts; square.
    damping : scalar
        The multiple of the identity added (a Python number or a 0-d array
        of ``A``'s library); any sign is accepted here, the solvers that
        need ``A + damping·I`` positive definite check that themselves.

    Returns
    -------
    LinearOperator
        ``A + damping·I``, with ``A``'s shape, dtype and namespace; its
        transpose is ``Aᵀ + damping·I``.

    Raises
    ------
    TypeError
        If ``A`` is not accepted by :func:`aslinearoperator`.
    ValueError
        If ``A`` is not square (or a dense ``A`` not 2-D).

    Notes
    -----
    No matrix is formed and ``A`` is not copied: each product costs one
    product with ``A`` and one scaled addition.  Damping a damped operator
    adds the dampings (``shifted(shifted(A, s), t)`` is ``A`` damped by
    ``s + t``), so repeated damping updates do not nest.  ``A + damping *
    identity(n)`` builds the same operator.  ("Damping" is natgrad's word for
    every ``+λI``; only :func:`~natgrad.linalg.minres` keeps SciPy's
    ``shift``, with the opposite sign.)

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.linalg import shifted
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> S = shifted(shifted(A, 0.25), 0.25)     # damped by 0.5
    >>> bool(np.allclose(S @ np.eye(2), A + 0.5 * np.eye(2)))
    True
    >>> shifted(np.ones((2, 3)), 1.0)
    Traceback (most recent call last):
        ...
    ValueError: A + damping·I needs a square A, got shape (2, 3)
    """
    A = aslinearoperator(A)
    if isinstance(A, _ShiftedOperator):
        return _ShiftedOperator(A.base, A.damping + damping)
    return _ShiftedOperator(A, damping)

"""Layer 0: array namespaces, devices, dtypes, random numbers and the linear
algebra the array API standard lacks.

This is the only module of the core that may name NumPy, SciPy, CuPy, PyTorch
or JAX.  Everything above it receives arrays, asks :func:`namespace` for their
array-API namespace ``xp`` and computes with ``xp`` alone; where the standard
has no function (Cholesky solves, triangular solves, a symmetric rank-k
product) it calls the dispatcher here, which uses the native library of the
arrays it is given:

=================  ===============================================
arrays             native library used
=================  ===============================================
NumPy              :mod:`scipy.linalg` (LAPACK / BLAS)
CuPy               :mod:`cupyx.scipy.linalg` (cuSOLVER / cuBLAS)
PyTorch            :mod:`torch.linalg`
JAX                :mod:`jax.scipy.linalg`
anything else      a generic fallback built on ``xp.linalg``
=================  ===============================================

Optional libraries are imported lazily, only when arrays of that library are
seen, so ``import natgrad`` never imports PyTorch, JAX or CuPy.

Examples
--------
>>> import numpy as np
>>> from natgrad import backend
>>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
>>> xp = backend.namespace(A)
>>> L = backend.cholesky(A)
>>> x = backend.cho_solve(L, np.array([1.0, 2.0]))
>>> bool(np.allclose(A @ x, [1.0, 2.0]))
True
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import array_api_compat
import numpy
import scipy.linalg

__all__ = [
    "CholeskyError",
    "namespace",
    "device",
    "is_array",
    "is_numpy",
    "is_cupy",
    "is_torch",
    "is_jax",
    "library_name",
    "float_dtype",
    "eps",
    "is_low_precision",
    "sync_interval",
    "to_float",
    "all_finite",
    "cholesky",
    "cho_solve",
    "solve_triangular",
    "eigh",
    "qr",
    "svd",
    "gram",
    "normal",
    "to_namespace",
    "is_scipy_operator",
]


class CholeskyError(ValueError):
    """A Cholesky factorisation broke down: the matrix is not (numerically)
    positive definite.  Raised by :func:`cholesky` on every backend, including
    those (JAX, CuPy) whose native routine silently returns NaN."""


# ---------------------------------------------------------------------------
# namespaces and devices
# ---------------------------------------------------------------------------

_SCALARS = (bool, int, float, complex)


def is_array(x: Any) -> bool:
    """True when ``x`` is an array of a library with an array-API namespace."""
    if x is None or isinstance(x, _SCALARS):
        return False
    return bool(array_api_compat.is_array_api_obj(x))


def namespace(*arrays: Any, **named_arrays: Any) -> ModuleType:
    """The array-API namespace shared by the given arrays.

    Parameters
    ----------
    *arrays, **named_arrays
        Arrays, Python scalars or ``None``.  Scalars and ``None`` are ignored.
        Pass arrays by keyword (``namespace(A=A, b=b)``) so that errors name
        them the way the caller's own arguments are named.

    Returns
    -------
    xp : module
        The array-API compatible namespace (``array_api_compat.numpy`` for
        NumPy arrays, ``jax.numpy`` for JAX, ...).

    Raises
    ------
    TypeError
        If no array is given, an argument is not an array of a supported
        library, or the arrays come from two libraries or live on two devices.
        Data are never moved between devices silently.

    Examples
    --------
    >>> import numpy as np
    >>> namespace(np.ones(3), 2.0).__name__
    'array_api_compat.numpy'
    """
    items = [(f"argument {i}", a) for i, a in enumerate(arrays)]
    items += list(named_arrays.items())
    seen = []
    for name, value in items:
        if value is None or isinstance(value, _SCALARS):
            continue
        try:
            xp = array_api_compat.array_namespace(value)
        except TypeError:
            raise TypeError(
                f"{name} must be an array (NumPy, CuPy, PyTorch, JAX or another "
                f"array-API library), got {type(value).__name__}"
            ) from None
        seen.append((name, value, xp))
    if not seen:
        raise TypeError("namespace() needs at least one array argument")
    name0, value0, xp0 = seen[0]
    dev0 = device(value0)
    for name, value, xp in seen[1:]:
        if xp is not xp0:
            raise TypeError(
                f"{name} is a {library_name(xp)} array but {name0} is a "
                f"{library_name(xp0)} array; natgrad never converts between "
                "libraries silently (use natgrad.backend.to_namespace)"
            )
        dev = device(value)
        if dev != dev0:
            raise TypeError(
                f"{name} is on device {dev} but {name0} is on device {dev0}; "
                "natgrad never moves data between devices silently"
            )
    return xp0


def device(x: Any) -> Any:
    """The device an array lives on (the array-API ``device`` attribute)."""
    return array_api_compat.device(x)


def is_numpy(xp: ModuleType) -> bool:
    """True for the NumPy namespace."""
    return bool(array_api_compat.is_numpy_namespace(xp))


def is_cupy(xp: ModuleType) -> bool:
    """True for the CuPy namespace."""
    return bool(array_api_compat.is_cupy_namespace(xp))


def is_torch(xp: ModuleType) -> bool:
    """True for the PyTorch namespace."""
    return bool(array_api_compat.is_torch_namespace(xp))


def is_jax(xp: ModuleType) -> bool:
    """True for the JAX namespace."""
    return bool(array_api_compat.is_jax_namespace(xp))


def library_name(xp: ModuleType) -> str:
    """A short human name for a namespace, used in error messages."""
    for test, name in (
        (is_numpy, "NumPy"),
        (is_cupy, "CuPy"),
        (is_torch, "PyTorch"),
        (is_jax, "JAX"),
    ):
        if test(xp):
            return name
    return getattr(xp, "__name__", str(xp))


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------


def _default_float(xp: ModuleType) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes()["real floating"]
        except Exception:  # pragma: no cover - non-conforming info object
            pass
    if is_jax(xp):
        import jax

        return xp.float64 if jax.config.jax_enable_x64 else xp.float32
    return xp.float64


def float_dtype(xp: ModuleType, *arrays_or_dtypes: Any) -> Any:
    """The floating dtype a computation on these arrays should use.

    Floating inputs keep their (promoted) dtype, so float32 stays float32;
    integer or boolean inputs are promoted to the library's default floating
    dtype.  Python scalars are ignored.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> float_dtype(xp, np.ones(2, dtype=np.float32))
    dtype('float32')
    >>> float_dtype(xp, np.arange(3))
    dtype('float64')
    """
    dtypes = []
    for a in arrays_or_dtypes:
        if a is None or isinstance(a, _SCALARS):
            continue
        dtypes.append(getattr(a, "dtype", a))
    if not dtypes:
        return _default_float(xp)
    dt = xp.result_type(*dtypes)
    if xp.isdtype(dt, ("real floating", "complex floating")):
        return dt
    return _default_float(xp)


def eps(dtype: Any, xp: ModuleType) -> float:
    """Machine epsilon of a floating dtype of namespace ``xp``."""
    return float(xp.finfo(dtype).eps)


def is_low_precision(dtype: Any, xp: ModuleType) -> bool:
    """True for dtypes with fewer than float64's 53 mantissa bits."""
    return eps(dtype, xp) > 1e-10


# ---------------------------------------------------------------------------
# host synchronisation
# ---------------------------------------------------------------------------


def _on_accelerator(x: Any) -> bool:
    xp = array_api_compat.array_namespace(x)
    if is_cupy(xp):
        return True
    if is_torch(xp):
        return x.device.type != "cpu"
    if is_jax(xp):
        try:
            return any(d.platform != "cpu" for d in x.devices())
        except Exception:  # pragma: no cover - tracers
            return False
    return False


def sync_interval(x: Any, *, accelerator_interval: int = 10) -> int:
    """How many iterations an iterative solver should run between host
    synchronisations (convergence checks) for arrays like ``x``.

    On the CPU a convergence check costs nothing, so solvers check every
    iteration and stop exactly when the tolerance is met.  On a GPU each check
    forces the host to wait for the device, so solvers check every
    ``accelerator_interval`` iterations and keep converged columns frozen on
    the device in between.
    """
    return accelerator_interval if _on_accelerator(x) else 1


def to_float(x: Any) -> float:
    """A 0-d array as a Python float (a host synchronisation on GPUs)."""
    return float(x)


def all_finite(x: Any) -> bool:
    """True when every entry of ``x`` is finite (one host synchronisation)."""
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return True
    return bool(xp.all(xp.isfinite(x)))


# ---------------------------------------------------------------------------
# linear algebra the standard lacks
# ---------------------------------------------------------------------------


def _torch_rhs(b: Any) -> tuple[Any, bool]:
    return (b[:, None], True) if b.ndim == 1 else (b, False)


def cholesky(A: Any, *, lower: bool = True) -> Any:
    """Cholesky factor of a symmetric positive definite matrix.

    Parameters
    ----------
    A : array, shape (n, n)
        Symmetric positive definite; only its lower (or upper) triangle is read.
    lower : bool
        Return ``L`` with ``A = L Lᵀ`` (default) or ``U`` with ``A = Uᵀ U``.

    Returns
    -------
    L : array, shape (n, n)

    Raises
    ------
    CholeskyError
        When the factorisation breaks down.  JAX and CuPy return NaN instead
        of raising; this function checks for that (one host synchronisation),
        so every backend behaves alike.
    """
    xp = namespace(A=A)
    if is_numpy(xp):
        # NumPy's own LAPACK, not SciPy's: it runs in the same BLAS thread
        # pool as the matrix products around it (see :func:`gram`).
        try:
            L = numpy.linalg.cholesky(A if lower else A.T)
        except numpy.linalg.LinAlgError as err:
            raise CholeskyError(f"Cholesky factorisation failed: {err}") from None
        return L if lower else L.T
    if is_torch(xp):
        import torch

        L, info = torch.linalg.cholesky_ex(A, upper=not lower)
        if int(info) != 0:
            raise CholeskyError(
                f"Cholesky factorisation failed: leading minor of order {int(info)} "
                "is not positive"
            )
        return L
    try:
        L = xp.linalg.cholesky(A, upper=not lower)
    except Exception as err:  # array_api_strict / numpy-like raise
        raise CholeskyError(f"Cholesky factorisation failed: {err}") from None
    if not all_finite(L):
        raise CholeskyError(
            "Cholesky factorisation failed: the matrix is not numerically "
            "positive definite"
        )
    return L


def solve_triangular(
    T: Any, b: Any, *, lower: bool = True, trans: bool = False
) -> Any:
    """Solve ``T x = b`` (or ``Tᵀ x = b`` with ``trans=True``) for triangular ``T``.

    ``b`` may be a vector ``(n,)`` or a block ``(n, k)``.  The generic fallback
    (for namespaces without a native triangular solver) uses ``xp.linalg.solve``.
    """
    xp = namespace(T=T, b=b)
    if is_numpy(xp):
        return scipy.linalg.solve_triangular(
            T, b, lower=lower, trans=1 if trans else 0, check_finite=False
        )
    if is_jax(xp):
        import jax.scipy.linalg as jsl

        return jsl.solve_triangular(T, b, lower=lower, trans=1 if trans else 0)
    if is_cupy(xp):
        import cupyx.scipy.linalg as csl

        return csl.solve_triangular(T, b, lower=lower, trans=1 if trans else 0)
    if trans:
        T = xp.matrix_transpose(T)
        lower = not lower
    if is_torch(xp):
        import torch

        B, squeeze = _torch_rhs(b)
        x = torch.linalg.solve_triangular(T, B, upper=not lower)
        return x[:, 0] if squeeze else x
    return xp.linalg.solve(T, b) if b.ndim == 2 else xp.linalg.solve(T, b[:, None])[:, 0]


def cho_solve(L: Any, b: Any, *, lower: bool = True) -> Any:
    """Solve ``A x = b`` given the Cholesky factor of ``A`` from :func:`cholesky`.

    Parameters
    ----------
    L : array, shape (n, n)
        ``A = L Lᵀ`` (``lower=True``) or ``A = Lᵀ L`` (``lower=False``).
    b : array, shape (n,) or (n, k)
    """
    xp = namespace(L=L, b=b)
    if is_numpy(xp):
        return scipy.linalg.cho_solve((L, lower), b, check_finite=False)
    if is_jax(xp):
        import jax.scipy.linalg as jsl

        return jsl.cho_solve((L, lower), b)
    if is_torch(xp):
        import torch

        B, squeeze = _torch_rhs(b)
        x = torch.cholesky_solve(B, L, upper=not lower)
        return x[:, 0] if squeeze else x
    # CuPy and generic namespaces: two triangular solves.
    y = solve_triangular(L, b, lower=lower, trans=not lower)
    return solve_triangular(L, y, lower=lower, trans=lower)


def eigh(A: Any) -> tuple[Any, Any]:
    """Eigenvalues (ascending) and orthonormal eigenvectors of a symmetric matrix."""
    xp = namespace(A=A)
    w, V = xp.linalg.eigh(A)
    return w, V


def qr(A: Any) -> tuple[Any, Any]:
    """Thin QR factorisation ``A = Q R`` of an ``(m, n)`` matrix."""
    xp = namespace(A=A)
    Q, R = xp.linalg.qr(A, mode="reduced")
    return Q, R


def svd(A: Any) -> tuple[Any, Any, Any]:
    """Thin SVD ``A = U diag(s) Vh`` with singular values in descending order."""
    xp = namespace(A=A)
    U, s, Vh = xp.linalg.svd(A, full_matrices=False)
    return U, s, Vh


# ---------------------------------------------------------------------------
# random numbers
# ---------------------------------------------------------------------------


def normal(
    xp: ModuleType,
    shape: int | tuple[int, ...],
    *,
    dtype: Any = None,
    device: Any = None,
    seed: Any = None,
) -> Any:
    """Standard normal samples, reproducible for a given seed on every backend.

    Parameters
    ----------
    xp : module
        Target namespace.
    shape : int or tuple of int
    dtype : dtype of ``xp``, optional
        Floating dtype; the library's default floating dtype when omitted.
    device : device of ``xp``, optional
    seed : int, numpy.random.Generator or None
        An integer gives the same numbers on NumPy, PyTorch, JAX and
        array_api_strict (drawn on the host in float64 and then converted);
        CuPy draws on the device with ``cupy.random.default_rng(seed)``.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> a = normal(xp, (2, 3), seed=0)
    >>> b = normal(xp, (2, 3), seed=0)
    >>> bool(xp.all(a == b))
    True
    """
    if isinstance(shape, int):
        shape = (shape,)
    if dtype is None:
        dtype = _default_float(xp)
    if is_cupy(xp):
        import cupy

        with cupy.cuda.Device(device if device is not None else cupy.cuda.Device()):
            rng = cupy.random.default_rng(seed)
            x = rng.standard_normal(shape, dtype=cupy.float64)
            return x.astype(dtype, copy=False)
    rng = seed if isinstance(seed, numpy.random.Generator) else numpy.random.default_rng(seed)
    host = rng.standard_normal(shape)
    if device is None:
        return xp.asarray(host, dtype=dtype)
    return xp.asarray(host, dtype=dtype, device=device)


# ---------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------


def to_namespace(x: Any, xp: ModuleType) -> Any:
    """Hand an array to another library, zero-copy through DLPack where possible.

    Parameters
    ----------
    x : array
    xp : module
        Target namespace (e.g. ``array_api_compat.numpy`` or ``jax.numpy``).

    Returns
    -------
    array of ``xp``, sharing memory with ``x`` when the devices agree and the
    target library accepts the DLPack capsule; otherwise a copy through host
    memory (only for arrays that live on the host).
    """
    src = array_api_compat.array_namespace(x)
    if src is xp:
        return x
    try:
        return xp.from_dlpack(x)
    except Exception:
        if _on_accelerator(x):
            raise
        return xp.asarray(numpy.asarray(x))


def is_scipy_operator(obj: Any) -> bool:
    """True for a :class:`scipy.sparse.linalg.LinearOperator` or a SciPy sparse
    matrix/array (objects natgrad wraps as NumPy operators)."""
    if "scipy" not in sys.modules:  # pragma: no cover - scipy is required
        return False
    import scipy.sparse
    import scipy.sparse.linalg

    return isinstance(obj, scipy.sparse.linalg.LinearOperator) or scipy.sparse.issparse(obj)


def gram(U: Any, *, block_size: int | None = None) -> Any:
    """The symmetric product ``U Uᵀ`` of an ``(N, P)`` matrix, without copying ``U``.

    On NumPy the product needs half the flops of a general ``U @ V``: a
    C- or F-contiguous ``U`` goes through NumPy's own ``U @ U.T``, which
    recognises a matrix times its own transpose and calls BLAS ``syrk``
    (and fills the other triangle), and any other layout (a strided view) is
    fed to SciPy's ``syrk`` in column blocks of ``block_size`` columns
    (default: about 32 MiB each) that accumulate into one ``(N, N)``
    result, so ``U`` is never copied whole.  Peak memory is therefore ``U``
    plus a few ``N × N`` arrays and at most one block.  Other backends use a
    plain matrix product (which reads ``U`` in place) and symmetrise it, since
    blocked GEMM kernels round the two triangles differently.

    Notes
    -----
    NumPy and SciPy wheels each bundle an OpenBLAS with its own thread pool,
    whose threads spin for a while after each call.  Alternating between the
    two pools makes them fight over the cores (on two cores a ``syrk`` right
    after a NumPy matvec ran 1.7× slower here), so the contiguous case stays
    in NumPy's pool, where the matrix–vector products around it run too.
    """
    xp = namespace(U=U)
    if U.ndim != 2:
        raise ValueError(f"U must be 2-D, got shape {tuple(U.shape)}")
    if not (is_numpy(xp) and U.dtype in (numpy.float32, numpy.float64) and U.shape[0] > 1):
        G = U @ xp.matrix_transpose(U)
        return 0.5 * (G + xp.matrix_transpose(G))
    if U.flags.f_contiguous or U.flags.c_contiguous:
        # NumPy's matmul calls syrk for a matrix and its own transpose view
        # and copies the computed triangle into the other: exactly symmetric.
        # Overflow is the caller's to report (it reads the diagonal), as
        # with the SciPy path, which never warns.
        with numpy.errstate(over="ignore", invalid="ignore"):
            return U @ U.T
    n, p = U.shape
    (syrk,) = scipy.linalg.blas.get_blas_funcs(("syrk",), (U,))
    if block_size is None:
        block_size = max(1, (32 << 20) // (U.itemsize * n))
    C = numpy.zeros((n, n), dtype=U.dtype, order="F")
    for j in range(0, p, block_size):
        block = numpy.asfortranarray(U[:, j : j + block_size])
        C = syrk(1.0, block, beta=1.0, c=C, trans=0, lower=0, overwrite_c=1)
    # syrk filled the upper triangle; the strict lower one is still zero.
    C += numpy.triu(C, 1).T
    return C

"""Layer 0: array namespaces, devices, dtypes, random numbers and the linear
algebra the array API standard lacks.

This is the only module of the core that may name NumPy, SciPy, CuPy, PyTorch
or JAX.  Everything above it receives arrays, asks :func:`namespace` for their
array-API namespace ``xp`` and computes with ``xp`` alone; where the standard
has no function (Cholesky solves, triangular solves, a symmetric rank-k
product) it calls the dispatcher here, which uses the native library of the
arrays it is given:

=================  ==========================================================
arrays             native library used
=================  ==========================================================
NumPy              ``numpy.linalg`` and NumPy's BLAS (Cholesky, ``eigh``,
                   QR, SVD, ``U Uᵀ``); ``scipy.linalg`` for the triangular
                   and Cholesky solves NumPy lacks
CuPy               ``cupy.linalg`` and ``cupyx.scipy.linalg``
                   (cuSOLVER / cuBLAS)
PyTorch            ``torch.linalg``
JAX                ``jax.numpy.linalg`` and ``jax.scipy.linalg``
anything else      a generic fallback built on ``xp.linalg``
=================  ==========================================================

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

import os
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
    "to_bool",
    "to_int",
    "all_finite",
    "add_identity",
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
    "compiled_block_store",
]


class CholeskyError(ValueError):
    """A Cholesky factorisation broke down: the matrix is not (numerically)
    positive definite.

    Raised by :func:`cholesky` on every backend, including those (JAX, CuPy)
    whose native routine silently returns NaN.

    Notes
    -----
    A subclass of ``ValueError``, like ``numpy.linalg.LinAlgError``, so code
    that catches ``ValueError`` catches it too.  The message carries the
    native library's own explanation where there is one.  On every backend
    but PyTorch, :func:`cholesky` also turns the native routine's complaint
    about a non-square or non-2-D input into this exception.

    Examples
    --------
    >>> import numpy as np
    >>> try:
    ...     cholesky(np.array([[1.0, 2.0], [2.0, 1.0]]))
    ... except CholeskyError as err:
    ...     print(type(err).__name__, isinstance(err, ValueError))
    CholeskyError True
    """


# ---------------------------------------------------------------------------
# namespaces and devices
# ---------------------------------------------------------------------------

_SCALARS = (bool, int, float, complex)


def is_array(x: Any) -> bool:
    """True when ``x`` is an array of a library with an array-API namespace.

    Parameters
    ----------
    x : object
        Anything.

    Returns
    -------
    bool
        ``True`` for NumPy, CuPy, PyTorch, JAX, array-api-strict and other
        array-API arrays; ``False`` for ``None``, Python scalars, lists and
        other objects.

    Notes
    -----
    The test is ``array_api_compat.is_array_api_obj``, except that Python
    ``bool``, ``int``, ``float`` and ``complex`` (and their subclasses, such
    as ``numpy.float64``) never count as arrays, as in :func:`namespace`,
    which ignores them.  Other NumPy scalars (``numpy.float32``) count as
    arrays.  Only types are inspected: no data are read, no device is
    synchronised.

    Examples
    --------
    >>> import numpy as np
    >>> is_array(np.ones(3)), is_array(2.0), is_array([1.0, 2.0]), is_array(None)
    (True, False, False, False)
    """
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

    Notes
    -----
    The namespace is ``array_api_compat.array_namespace`` of each argument,
    so NumPy, CuPy and PyTorch arrays get array-api-compat's wrappers and JAX
    and array-api-strict arrays their own namespaces.  Mixing libraries or
    devices is an error rather than a silent conversion because a hidden copy
    (host to GPU, one library to another) costs time and memory the caller
    did not ask for; convert on purpose with :func:`to_namespace`.  Only
    types and ``device`` attributes are read, so the call never waits for a
    device.

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
    """The device an array lives on (the array-API ``device`` attribute).

    Parameters
    ----------
    x : array
        An array of any supported library.

    Returns
    -------
    device
        The library's device object: ``"cpu"`` for NumPy, a ``torch.device``
        for PyTorch, a ``cupy.cuda.Device`` for CuPy, a JAX ``Device`` for JAX
        (possibly ``None`` for a value traced inside ``jax.jit``).

    Raises
    ------
    AttributeError
        If ``x`` is not an array (it has no ``device`` attribute), e.g. a
        Python scalar or a list.

    Notes
    -----
    Uses ``array_api_compat.device``, which also covers libraries whose
    ``device`` attribute is missing or non-standard (NumPy arrays always live
    on the CPU).  Devices compare with ``==``; :func:`namespace` uses that to
    refuse arrays from two devices.  No data are read.

    Examples
    --------
    >>> import numpy as np
    >>> device(np.ones(3))
    'cpu'
    """
    return array_api_compat.device(x)


def is_numpy(xp: ModuleType) -> bool:
    """True for the NumPy namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``numpy`` itself and ``array_api_compat.numpy``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports NumPy and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_numpy(namespace(np.ones(2)))
    True
    """
    return bool(array_api_compat.is_numpy_namespace(xp))


def is_cupy(xp: ModuleType) -> bool:
    """True for the CuPy namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``cupy`` itself and ``array_api_compat.cupy``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports CuPy and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_cupy(namespace(np.ones(2)))
    False
    """
    return bool(array_api_compat.is_cupy_namespace(xp))


def is_torch(xp: ModuleType) -> bool:
    """True for the PyTorch namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``torch`` itself and ``array_api_compat.torch``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports PyTorch and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_torch(namespace(np.ones(2)))
    False
    """
    return bool(array_api_compat.is_torch_namespace(xp))


def is_jax(xp: ModuleType) -> bool:
    """True for the JAX namespace.

    Parameters
    ----------
    xp : module
        An array namespace, e.g. from :func:`namespace`.

    Returns
    -------
    bool
        ``True`` for ``jax.numpy`` and ``jax.experimental.array_api``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (it is not a module).

    Notes
    -----
    Delegates to ``array_api_compat``, which compares the module's name, so
    the test never imports JAX and costs next to nothing on every dispatch.

    Examples
    --------
    >>> import numpy as np
    >>> is_jax(namespace(np.ones(2)))
    False
    """
    return bool(array_api_compat.is_jax_namespace(xp))


def library_name(xp: ModuleType) -> str:
    """A short human name for a namespace, used in error messages.

    Parameters
    ----------
    xp : module
        An array namespace.

    Returns
    -------
    str
        ``"NumPy"``, ``"CuPy"``, ``"PyTorch"`` or ``"JAX"`` for those
        libraries (wrapped by array-api-compat or not), otherwise the module's
        ``__name__``, e.g. ``"array_api_strict"``.

    Raises
    ------
    AttributeError
        If ``xp`` has no ``__name__`` (the namespace tests read it).

    Notes
    -----
    Only for messages such as :func:`namespace`'s; dispatch uses
    :func:`is_numpy`, :func:`is_cupy`, :func:`is_torch` and :func:`is_jax`.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_strict
    >>> library_name(namespace(np.ones(2)))
    'NumPy'
    >>> library_name(array_api_strict)
    'array_api_strict'
    """
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

    Parameters
    ----------
    xp : module
        The namespace of the arrays; it promotes the dtypes and supplies the
        default floating dtype.
    *arrays_or_dtypes : arrays, dtypes, Python scalars or None
        Arrays contribute their ``dtype``, dtypes themselves; Python scalars
        and ``None`` are skipped.

    Returns
    -------
    dtype
        A real or complex floating dtype of ``xp``.

    Raises
    ------
    TypeError
        If ``xp.result_type`` cannot promote the dtypes together
        (array-api-strict, for instance, refuses to mix integer and floating
        dtypes; NumPy promotes any numeric mix).

    Notes
    -----
    The dtype is ``xp.result_type`` of the inputs when that is floating (real
    or complex), so a float32 problem is solved in float32 and runs at
    float32 speed on a GPU.  Otherwise, and when no array or dtype is given,
    it is the default real floating dtype of
    ``xp.__array_namespace_info__().default_dtypes()``: float64 for NumPy and
    CuPy, ``torch.get_default_dtype()`` for PyTorch, float32 for JAX unless
    ``jax_enable_x64`` is set.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> float_dtype(xp, np.ones(2, dtype=np.float32))
    dtype('float32')
    >>> float_dtype(xp, np.arange(3))
    dtype('float64')
    >>> float_dtype(xp, np.ones(2, dtype=np.float32), np.ones(2), 3.0, None)
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
    """Machine epsilon of a floating dtype of namespace ``xp``.

    Parameters
    ----------
    dtype : dtype of ``xp``
        A real or complex floating dtype.
    xp : module
        The namespace the dtype belongs to.

    Returns
    -------
    float
        ``xp.finfo(dtype).eps``, the gap between 1 and the next larger
        representable number: 2⁻⁵² for float64, 2⁻²³ for float32 (for a
        complex dtype, that of its real part).

    Raises
    ------
    ValueError or TypeError
        If ``dtype`` is not a floating dtype (whichever ``xp.finfo`` raises:
        ``ValueError`` on NumPy).

    Notes
    -----
    A Python float, so tolerances built from it stay on the host; ``finfo``
    reads a table and never touches array data.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> eps(np.float64, xp) == 2.0**-52, eps(np.float32, xp) == 2.0**-23
    (True, True)
    """
    return float(xp.finfo(dtype).eps)


def is_low_precision(dtype: Any, xp: ModuleType) -> bool:
    """True for dtypes with fewer than float64's 53 mantissa bits.

    Parameters
    ----------
    dtype : dtype of ``xp``
        A real or complex floating dtype.
    xp : module
        The namespace the dtype belongs to.

    Returns
    -------
    bool
        ``True`` for float32, float16, bfloat16 and complex64; ``False`` for
        float64 and complex128.

    Raises
    ------
    ValueError or TypeError
        If ``dtype`` is not a floating dtype (see :func:`eps`).

    Notes
    -----
    The test is ``eps(dtype, xp) > 1e-10``, a threshold between float64's
    ε ≈ 2.2·10⁻¹⁶ and float32's ε ≈ 1.2·10⁻⁷.  Solvers use it to switch on
    their low-precision safeguards.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> is_low_precision(np.float32, xp), is_low_precision(np.float64, xp)
    (True, False)
    """
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

    Parameters
    ----------
    x : array
        An array of the computation; only its library and device are read.
    accelerator_interval : int, default 10
        Iterations between checks when ``x`` lives on an accelerator.

    Returns
    -------
    int
        ``accelerator_interval`` for CuPy arrays and for PyTorch or JAX
        arrays on a non-CPU device; ``1`` otherwise.

    Raises
    ------
    TypeError
        If ``x`` is not an array of a supported library.

    Notes
    -----
    Only the device is inspected, never the data, so the call itself does not
    synchronise.  A JAX value traced inside ``jax.jit``, whose devices are not
    known, counts as a host array.

    Examples
    --------
    >>> import numpy as np
    >>> sync_interval(np.ones(3))
    1
    """
    return accelerator_interval if _on_accelerator(x) else 1


def to_float(x: Any) -> float:
    """A 0-d array as a Python float (a host synchronisation on GPUs).

    Parameters
    ----------
    x : array, shape ()
        A 0-d real array (a Python number works too).

    Returns
    -------
    float
        The value of ``x``.

    Raises
    ------
    TypeError
        On NumPy, if ``x`` is not 0-d (recent NumPy refuses even one-element
        arrays).  Other libraries raise their own errors (PyTorch a
        ``RuntimeError`` for more than one element; JAX a ``TypeError``
        subclass for a value traced inside ``jax.jit``).

    Notes
    -----
    This is ``float(x)``.  On a GPU it copies the value to the host and so
    waits for all queued work that produces it; it has a name of its own so
    that every such synchronisation in natgrad is explicit and easy to find.
    It is used only where a host decision (a convergence test, a line
    search, a reported loss) needs the number.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> to_float(xp.sum(xp.asarray([1.0, 2.5])))
    3.5
    """
    return float(x)


def to_bool(x: Any) -> bool:
    """A 0-d boolean array as a Python bool (a host synchronisation on GPUs).

    Parameters
    ----------
    x : array, shape ()
        A 0-d array, typically the result of ``xp.all``/``xp.any`` or of a
        comparison of 0-d arrays (a Python bool works too).

    Returns
    -------
    bool
        The truth value of ``x``.

    Notes
    -----
    This is ``bool(x)``; like :func:`to_float` it has a name of its own so
    that every host synchronisation in the core is explicit (a test scans the
    core for bare ``bool(xp…)`` calls).  On a GPU it waits for the work that
    produces ``x``.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> to_bool(xp.all(xp.asarray([1.0, 2.0]) > 0))
    True
    """
    return bool(x)


def to_int(x: Any) -> int:
    """A 0-d integer (or integral) array as a Python int (a host synchronisation).

    Parameters
    ----------
    x : array, shape ()
        A 0-d array such as the result of ``xp.argmax`` or ``xp.sum`` of a
        boolean mask (a Python int works too).

    Returns
    -------
    int
        The value of ``x``.

    Notes
    -----
    This is ``int(x)``, named for the same reason as :func:`to_bool`.

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> to_int(xp.argmax(xp.asarray([1.0, 5.0, 2.0])))
    1
    """
    return int(x)


def all_finite(x: Any) -> bool:
    """True when every entry of ``x`` is finite (one host synchronisation).

    Parameters
    ----------
    x : array
        Any array of a supported library.

    Returns
    -------
    bool
        ``False`` if ``x`` holds a NaN or an infinity; always ``True`` for
        integer and boolean arrays.

    Raises
    ------
    TypeError
        If ``x`` is not an array of a supported library, or (JAX) if ``x`` is
        traced inside ``jax.jit``, where no Python ``bool`` can be had.

    Notes
    -----
    The test ``xp.all(xp.isfinite(x))`` reduces on the device to one boolean,
    which is then read on the host: one synchronisation on a GPU.
    Non-floating dtypes cannot hold NaN or infinity and return at once,
    without reading the data.

    Examples
    --------
    >>> import numpy as np
    >>> all_finite(np.array([1.0, 2.0])), all_finite(np.array([1.0, np.inf]))
    (True, False)
    >>> all_finite(np.arange(3))
    True
    """
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return True
    return to_bool(xp.all(xp.isfinite(x)))


# ---------------------------------------------------------------------------
# linear algebra the standard lacks
# ---------------------------------------------------------------------------


def _torch_rhs(b: Any) -> tuple[Any, bool]:
    return (b[:, None], True) if b.ndim == 1 else (b, False)


def add_identity(A: Any, shift: float) -> Any:
    """``A + shift·I`` for a square matrix ``A``, as a new array.

    Parameters
    ----------
    A : array, shape (n, n)
        Read, never written.
    shift : float
        Added to every diagonal entry.

    Returns
    -------
    K : array, shape (n, n)
        A new array in the library, dtype and device of ``A``.

    Raises
    ------
    TypeError
        If ``A`` is not an array of a supported library.
    ValueError
        If ``A`` is not a square 2-D array.

    Notes
    -----
    The obvious ``A + shift * xp.eye(n)`` makes two ``n × n`` temporaries
    and three passes over memory; for the ``10 065 × 10 065`` float64 Gram
    matrix of dense ENGD on the paper's PINN that is 1.6 GB of scratch, and
    on two cores (PyTorch) it took 0.9–2.7 s against 0.30–0.36 s for one copy
    plus ``n`` additions here (0.10 s against 0.046 s at ``n = 3500``).  NumPy, CuPy and
    PyTorch copy ``A`` and add on the copy's diagonal in place; JAX (whose
    arrays are immutable, and where XLA fuses the expression) and other
    namespaces use the expression with ``eye``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> add_identity(A, 0.5)
    array([[2.5, 1. ],
           [1. , 3.5]])
    >>> A[0, 0]  # unchanged
    np.float64(2.0)
    """
    xp = namespace(A=A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square 2-D array, got shape {tuple(A.shape)}")
    n = A.shape[0]
    if is_numpy(xp) or is_cupy(xp):
        K = A.copy()
        diagonal = xp.arange(n)
        K[diagonal, diagonal] += shift
        return K
    if is_torch(xp):
        K = A.clone()
        K.diagonal().add_(shift)
        return K
    return A + shift * xp.eye(n, dtype=A.dtype, device=device(A))


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
        The triangular factor (lower for ``lower=True``, else upper) in the
        library, dtype and device of ``A``.

    Raises
    ------
    TypeError
        If ``A`` is not an array of a supported library.
    CholeskyError
        When the factorisation breaks down (``A`` is not numerically positive
        definite).  JAX and CuPy return NaN instead of raising; this function
        checks for that (one host synchronisation), so every backend behaves
        alike.  On every backend but PyTorch (which raises its own
        ``RuntimeError``) a non-square or non-2-D ``A`` also gives a
        ``CholeskyError``, since every error of the native routine is
        re-raised as one.

    Notes
    -----
    ``A = L Lᵀ`` with ``L`` lower triangular with a positive diagonal,
    n³/3 flops.  Backends:

    * NumPy: ``numpy.linalg.cholesky`` — NumPy's own LAPACK rather than
      SciPy's, so that it runs in the same OpenBLAS thread pool as the matrix
      products around it (see :func:`gram`);
    * PyTorch: ``torch.linalg.cholesky_ex``, whose ``info`` code is read on
      the host (one synchronisation on a GPU);
    * JAX, CuPy and other namespaces: ``xp.linalg.cholesky`` followed by an
      :func:`all_finite` check of the factor (one synchronisation).  Because
      of that check the function cannot be traced by ``jax.jit``.

    ``A`` should be exactly symmetric: which triangle is read depends on the
    backend (NumPy reads the one named by ``lower``; JAX averages ``A`` and
    ``Aᵀ`` first).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[4.0, 2.0], [2.0, 3.0]])
    >>> L = cholesky(A)
    >>> bool(np.allclose(L @ L.T, A)), bool(np.array_equal(L, np.tril(L)))
    (True, True)
    >>> U = cholesky(A, lower=False)
    >>> bool(np.allclose(U.T @ U, A))
    True
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

    Parameters
    ----------
    T : array, shape (n, n)
        Lower (``lower=True``) or upper triangular.  The native solvers read
        only that triangle; the generic fallback uses all of ``T``, so there
        the other triangle must be zero.
    b : array, shape (n,) or (n, k)
        Right-hand side(s), same library and device as ``T``.
    lower : bool, default True
        Whether ``T`` is lower or upper triangular.
    trans : bool, default False
        Solve with the transpose ``Tᵀ`` (not the conjugate transpose).

    Returns
    -------
    x : array, same shape as ``b``
        The solution.

    Raises
    ------
    TypeError
        If ``T`` and ``b`` are not arrays of one library on one device.
    ValueError
        On NumPy, if the shapes of ``T`` and ``b`` disagree (SciPy's check;
        other libraries raise their own errors).
    numpy.linalg.LinAlgError
        On NumPy, if ``T`` has a zero on its diagonal (and in the generic
        fallback whatever ``xp.linalg.solve`` raises for a singular ``T``;
        array-api-strict raises this one).  PyTorch and JAX do not check:
        a zero diagonal gives infinities or NaN.

    Notes
    -----
    Forward or back substitution, n²k flops, with no host synchronisation.
    Backends: ``scipy.linalg.solve_triangular`` on NumPy (NumPy has no
    triangular solve; ``check_finite=False`` saves a pass over the data, NaN
    simply propagates), ``torch.linalg.solve_triangular`` on PyTorch (a
    vector is solved as one column), ``jax.scipy.linalg.solve_triangular`` on
    JAX, ``cupyx.scipy.linalg.solve_triangular`` on CuPy, and
    ``xp.linalg.solve`` (a general n³ solve) for other namespaces.

    Examples
    --------
    >>> import numpy as np
    >>> T = np.array([[2.0, 0.0], [1.0, 4.0]])
    >>> b = np.array([2.0, 9.0])
    >>> bool(np.allclose(T @ solve_triangular(T, b), b))
    True
    >>> bool(np.allclose(T.T @ solve_triangular(T, b, trans=True), b))
    True
    >>> B = np.ones((2, 3))
    >>> solve_triangular(T.T, B, lower=False).shape
    (2, 3)
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
        Right-hand side(s), same library and device as ``L``.
    lower : bool, default True
        Whether ``L`` is the lower or the upper factor, as passed to
        :func:`cholesky`.

    Returns
    -------
    x : array, same shape as ``b``
        The solution of ``A x = b``.

    Raises
    ------
    TypeError
        If ``L`` and ``b`` are not arrays of one library on one device.
    ValueError
        On NumPy, if ``L`` is not square or its shape disagrees with ``b``'s
        (SciPy's checks; other libraries raise their own errors).

    Notes
    -----
    Two triangular solves, ``L y = b`` then ``Lᵀ x = y`` (2n²k flops), with
    no host synchronisation.  Backends: ``scipy.linalg.cho_solve`` (LAPACK
    ``potrs``, ``check_finite=False``) on NumPy, ``jax.scipy.linalg.cho_solve``
    on JAX, ``torch.cholesky_solve`` on PyTorch, and two calls of
    :func:`solve_triangular` on CuPy and other namespaces.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[4.0, 2.0], [2.0, 3.0]])
    >>> b = np.array([1.0, 2.0])
    >>> x = cho_solve(cholesky(A), b)
    >>> bool(np.allclose(A @ x, b))
    True
    >>> X = cho_solve(cholesky(A, lower=False), np.eye(2), lower=False)
    >>> bool(np.allclose(A @ X, np.eye(2)))
    True
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
    """Eigenvalues (ascending) and orthonormal eigenvectors of a symmetric matrix.

    Parameters
    ----------
    A : array, shape (n, n)
        Symmetric (Hermitian).

    Returns
    -------
    w : array, shape (n,)
        The eigenvalues in ascending order.
    V : array, shape (n, n)
        Orthonormal eigenvectors in its columns: ``A V = V diag(w)``.

    Raises
    ------
    TypeError
        If ``A`` is not an array of a supported library.
    numpy.linalg.LinAlgError
        On NumPy, if ``A`` is not a square matrix or the algorithm does not
        converge; other libraries raise their own errors.

    Notes
    -----
    ``xp.linalg.eigh`` of the array's own library: ``numpy.linalg.eigh`` on
    NumPy (NumPy's own LAPACK, in the thread pool of the matrix products
    around it; see :func:`gram`), ``torch.linalg.eigh``,
    ``jax.numpy.linalg.eigh``, ``cupy.linalg.eigh``.  NumPy, PyTorch and
    CuPy read only the lower triangle; JAX averages ``A`` and ``Aᵀ`` first.
    Eigenvectors are determined only up to sign (and within repeated
    eigenvalues), which may differ between libraries.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> w, V = eigh(A)
    >>> bool(np.allclose(w, [1.0, 3.0])), bool(np.allclose(A @ V, V * w))
    (True, True)
    """
    xp = namespace(A=A)
    w, V = xp.linalg.eigh(A)
    return w, V


def qr(A: Any) -> tuple[Any, Any]:
    """Thin QR factorisation ``A = Q R`` of an ``(m, n)`` matrix.

    Parameters
    ----------
    A : array, shape (m, n)
        Any matrix.

    Returns
    -------
    Q : array, shape (m, k)
        Orthonormal columns, ``k = min(m, n)``.
    R : array, shape (k, n)
        Upper triangular.

    Raises
    ------
    TypeError
        If ``A`` is not an array of a supported library.
    numpy.linalg.LinAlgError
        On NumPy, if ``A`` has fewer than two dimensions; other libraries
        raise their own errors.

    Notes
    -----
    ``xp.linalg.qr(A, mode="reduced")`` of the array's own library
    (Householder QR): ``numpy.linalg.qr`` on NumPy (NumPy's own LAPACK, in
    the thread pool of the matrix products around it; see :func:`gram`),
    ``torch.linalg.qr``, ``jax.numpy.linalg.qr``, ``cupy.linalg.qr``.  The
    signs of ``R``'s diagonal are not normalised and may differ between
    libraries.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).standard_normal((5, 3))
    >>> Q, R = qr(A)
    >>> Q.shape, R.shape
    ((5, 3), (3, 3))
    >>> bool(np.allclose(Q @ R, A)), bool(np.allclose(Q.T @ Q, np.eye(3)))
    (True, True)
    """
    xp = namespace(A=A)
    Q, R = xp.linalg.qr(A, mode="reduced")
    return Q, R


def svd(A: Any) -> tuple[Any, Any, Any]:
    """Thin SVD ``A = U diag(s) Vh`` with singular values in descending order.

    Parameters
    ----------
    A : array, shape (m, n)
        Any matrix.

    Returns
    -------
    U : array, shape (m, k)
        Orthonormal left singular vectors, ``k = min(m, n)``.
    s : array, shape (k,)
        Singular values, non-negative and descending.
    Vh : array, shape (k, n)
        Orthonormal right singular vectors, as rows.

    Raises
    ------
    TypeError
        If ``A`` is not an array of a supported library.
    numpy.linalg.LinAlgError
        On NumPy, if ``A`` has fewer than two dimensions or the SVD does not
        converge; other libraries raise their own errors.

    Notes
    -----
    ``xp.linalg.svd(A, full_matrices=False)`` of the array's own library:
    ``numpy.linalg.svd`` on NumPy (NumPy's own LAPACK, in the thread pool of
    the matrix products around it; see :func:`gram`), ``torch.linalg.svd``,
    ``jax.numpy.linalg.svd``, ``cupy.linalg.svd``.  Singular vectors are
    determined only up to sign, which may differ between libraries.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).standard_normal((4, 6))
    >>> U, s, Vh = svd(A)
    >>> U.shape, s.shape, Vh.shape
    ((4, 4), (4,), (4, 6))
    >>> bool(np.allclose((U * s) @ Vh, A)), bool(np.all(np.diff(s) <= 0))
    (True, True)
    """
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
        Shape of the result; an int ``n`` means ``(n,)``.
    dtype : dtype of ``xp``, optional
        Floating dtype; the library's default floating dtype when omitted.
    device : device of ``xp``, optional
        Where to put the result; ``xp``'s default device when omitted.
    seed : int, numpy.random.Generator or None
        An integer gives the same numbers on NumPy, PyTorch, JAX and
        array_api_strict (drawn on the host in float64 and then converted);
        CuPy draws on the device with ``cupy.random.default_rng(seed)``.
        A ``Generator`` is used (and advanced) as it is; ``None`` draws fresh
        entropy from the operating system.

    Returns
    -------
    array of ``xp``
        Independent standard normal samples of the given shape, dtype and
        device.

    Raises
    ------
    ValueError
        If ``seed`` is a negative integer (``numpy.random.default_rng``).
    TypeError
        If ``seed`` is of a type ``numpy.random.default_rng`` cannot use.

    Notes
    -----
    Off CuPy the samples are ``numpy.random.default_rng(seed)``'s
    ``standard_normal(shape)`` (PCG64) in float64, converted with
    ``xp.asarray(..., dtype=dtype, device=device)``: the same seed gives the
    same numbers on every host-drawn backend, up to rounding to ``dtype``, at
    the cost of one host-to-device copy on a GPU.  CuPy draws on the device
    instead, so its numbers differ from the others' for the same seed.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> a = normal(xp, (2, 3), seed=0)
    >>> b = normal(xp, (2, 3), seed=0)
    >>> bool(xp.all(a == b))
    True
    >>> c = normal(xp, 4, dtype=xp.float32, seed=np.random.default_rng(1))
    >>> c.shape, c.dtype
    ((4,), dtype('float32'))
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
        An array of any supported library.
    xp : module
        Target namespace (e.g. ``array_api_compat.numpy`` or ``jax.numpy``).

    Returns
    -------
    array of ``xp``
        ``x`` itself when it already belongs to ``xp``; otherwise an array
        sharing memory with ``x`` when the devices agree and the target
        library accepts the DLPack capsule; otherwise a copy through host
        memory (only for arrays that live on the host).

    Raises
    ------
    TypeError
        If ``x`` is not an array of a supported library.
    Exception
        When ``xp.from_dlpack`` fails for an array on an accelerator, its
        error is re-raised as it is: device data are never copied through the
        host silently.

    Notes
    -----
    This is the explicit conversion that :func:`namespace` refuses to do
    implicitly.  When memory is shared, writes through one array are seen
    through the other.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> import array_api_strict
    >>> a = np.arange(3.0)
    >>> to_namespace(a, xp) is a
    True
    >>> s = to_namespace(a, array_api_strict)
    >>> library_name(namespace(s)), s.shape
    ('array_api_strict', (3,))
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
    matrix/array (objects natgrad wraps as NumPy operators).

    Parameters
    ----------
    obj : object
        Anything.

    Returns
    -------
    bool
        ``True`` for an instance of ``scipy.sparse.linalg.LinearOperator``
        or anything ``scipy.sparse.issparse`` accepts; ``False`` otherwise,
        dense arrays included.

    Notes
    -----
    Such objects have no array-API namespace, so :func:`namespace` would
    reject them; this test lets callers recognise them first.  It is a pure
    type test: nothing is converted or computed.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse
    >>> import scipy.sparse.linalg
    >>> is_scipy_operator(scipy.sparse.eye(3))
    True
    >>> is_scipy_operator(scipy.sparse.linalg.aslinearoperator(np.eye(3)))
    True
    >>> is_scipy_operator(np.eye(3))
    False
    """
    if "scipy" not in sys.modules:  # pragma: no cover - scipy is required
        return False
    import scipy.sparse
    import scipy.sparse.linalg

    return isinstance(obj, scipy.sparse.linalg.LinearOperator) or scipy.sparse.issparse(obj)


#: N²P from which a PyTorch CPU ``gram`` goes through NumPy's syrk.  Handing
#: work to NumPy's OpenBLAS pool costs PyTorch's next operations some tens of
#: milliseconds (the pool's threads spin); measured on two cores, an ENGD-W
#: step at N = 1250, P = 1281 (N²P = 2e9) went from 0.11 s to 0.16 s, while at
#: N = 3500, P = 10,065 (1.2e11) the product went from 2.26 s to 1.24 s.
TORCH_SYRK_MIN_WORK = 2e10


def _torch_cpu_syrk_applies(U: Any) -> bool:
    """A real floating CPU tensor outside autograd, big enough for syrk to pay."""
    import torch

    n, p = U.shape
    return (
        U.device.type == "cpu"
        and U.dtype in (torch.float32, torch.float64)
        and not U.requires_grad
        and n > 1
        and float(n) * n * p >= TORCH_SYRK_MIN_WORK
    )


def gram(U: Any, *, block_size: int | None = None) -> Any:
    """The symmetric product ``U Uᵀ`` of an ``(N, P)`` matrix, without copying ``U``.

    On NumPy the product needs half the flops of a general ``U @ V``: a
    C- or F-contiguous ``U`` goes through NumPy's own ``U @ U.T``, which
    recognises a matrix times its own transpose and calls BLAS ``syrk``
    (and fills the other triangle), and any other layout (a strided view) is
    fed to SciPy's ``syrk`` in column blocks of ``block_size`` columns
    (default: about 32 MiB each) that accumulate into one ``(N, N)``
    result, so ``U`` is never copied whole.  Peak memory is therefore ``U``
    plus a few ``N × N`` arrays and at most one block.  A large PyTorch CPU
    tensor (float32/float64, not requiring grad, ``N²P ≥``
    ``TORCH_SYRK_MIN_WORK``) takes the same NumPy path through a zero-copy
    view of its memory, since PyTorch has no ``syrk`` of its own.
    Other backends use a plain matrix product (which reads ``U`` in place)
    and symmetrise it, since blocked GEMM kernels round the two triangles
    differently.

    Parameters
    ----------
    U : array, shape (N, P)
        Any 2-D array; it is read, never copied whole or written.
    block_size : int, optional
        Columns per block in the strided-NumPy path; by default as many as fit
        in about 32 MiB (at least one).  Ignored on every other path.

    Returns
    -------
    G : array, shape (N, N)
        ``U Uᵀ``, exactly symmetric, in the library and device of ``U`` (and
        its dtype, for floating ``U``).

    Raises
    ------
    TypeError
        If ``U`` is not an array of a supported library.
    ValueError
        If ``U`` is not 2-D.

    Notes
    -----
    NumPy and SciPy wheels each bundle an OpenBLAS with its own thread pool,
    whose threads spin for a while after each call.  Alternating between the
    two pools makes them fight over the cores (on two cores a ``syrk`` right
    after a NumPy matvec ran 1.7× slower here), so the contiguous case stays
    in NumPy's pool, where the matrix–vector products around it run too.

    On NumPy, overflow produces infinities without a warning (as SciPy's
    ``syrk`` does); callers that care check the diagonal.  The symmetric
    product costs N²P flops instead of a general product's 2N²P.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> U = rng.standard_normal((4, 6))
    >>> G = gram(U)
    >>> bool(np.allclose(G, U @ U.T)), bool(np.array_equal(G, G.T))
    (True, True)
    >>> V = rng.standard_normal((4, 12))[:, ::2]  # a strided view: blocked syrk
    >>> Gv = gram(V, block_size=2)
    >>> bool(np.allclose(Gv, V @ V.T)), bool(np.array_equal(Gv, Gv.T))
    (True, True)
    """
    xp = namespace(U=U)
    if U.ndim != 2:
        raise ValueError(f"U must be 2-D, got shape {tuple(U.shape)}")
    if is_torch(xp) and _torch_cpu_syrk_applies(U):
        # PyTorch has no syrk: U @ U.T costs the full 2N²P flops.  A CPU
        # tensor shares its memory with a NumPy view, so NumPy's syrk does
        # half the work on the same buffer, with no copy of U.
        import torch

        return torch.from_numpy(gram(U.numpy(), block_size=block_size))
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


def compiled_block_store(xp: ModuleType) -> type | None:
    """The numba-compiled H-matrix block store for NumPy arrays, if usable.

    Parameters
    ----------
    xp : module
        Array namespace of the blocks.

    Returns
    -------
    type or None
        :class:`natgrad.backend_numba.FlatBlocks` when ``xp`` is NumPy, numba
        and threadpoolctl can be imported and ``NATGRAD_DISABLE_NUMBA`` is
        unset (or ``0``);
        otherwise ``None``, and the caller uses its array-API path.

    Raises
    ------
    AttributeError
        If ``xp`` is not a module (see :func:`is_numpy`).

    Notes
    -----
    numba and threadpoolctl are optional dependencies (the ``numba`` extra)
    and are imported here, on first use, never by ``import natgrad``.  Setting
    ``NATGRAD_DISABLE_NUMBA=1`` selects the array-API path on NumPy too
    (for comparisons, or where numba's first compilation, a few seconds, is
    unwelcome).

    Examples
    --------
    >>> import numpy as np
    >>> store = compiled_block_store(namespace(np.ones(2)))
    >>> store is None or store.__name__ == "FlatBlocks"
    True
    """
    if not is_numpy(xp) or os.environ.get("NATGRAD_DISABLE_NUMBA", "") not in ("", "0"):
        return None
    try:
        from .backend_numba import FlatBlocks
    except ImportError:
        return None
    return FlatBlocks

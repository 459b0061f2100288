"""Argument checks shared by every layer: one place, one wording.

The solvers (:mod:`natgrad.linalg`), the H-matrices (:mod:`natgrad.hmatrix`),
the adapters (:mod:`natgrad.adapters`) and the optimisers
(:mod:`natgrad.optim`) check their arguments with these functions, so a bad
argument gets the same kind of message wherever it is passed: the name of the
argument, what was expected and what was given.

It sits in layer 0 beside :mod:`natgrad.backend` (which it alone imports) and
names no array library: array checks go through the backend.

Three kinds of check:

* **scalars** (:func:`positive`, :func:`nonnegative`, :func:`fraction`,
  :func:`positive_int`, :func:`choice`, ...) return the value converted to a
  Python ``float``/``int``/``str`` and raise ``TypeError`` for the wrong type,
  ``ValueError`` for a value out of range;
* **arrays** (:func:`array`, :func:`finite`, :func:`vector`, :func:`rhs`,
  :func:`same_shape`) raise for a non-array, a wrong shape or NaN/Inf;
* **a user's callable**: :class:`CheckedCallable` wraps an operator, HVP,
  kernel or model function and checks what it returns at *every* call, naming
  the argument and the call in its error (``"hvp (call 3) returned shape
  (4,) for an input of shape (5,)"``).

Examples
--------
>>> from natgrad import validation
>>> validation.positive(0.5, "damping")
0.5
>>> validation.positive(0, "damping")
Traceback (most recent call last):
    ...
ValueError: damping must be a finite positive number, got 0.0
>>> validation.fraction(1.0, "momentum")
Traceback (most recent call last):
    ...
ValueError: momentum must lie in [0, 1), got 1.0
"""

from __future__ import annotations

import functools
import math
from numbers import Integral, Real
from typing import Any, Callable, Sequence

from . import backend

__all__ = [
    "finite_real",
    "nonnegative",
    "positive",
    "optional_positive",
    "fraction",
    "positive_int",
    "optional_positive_int",
    "choice",
    "callable_arg",
    "foreign_keywords",
    "array",
    "finite",
    "vector",
    "rhs",
    "same_shape",
    "CheckedCallable",
    "CallableOutputError",
    "NonFiniteOutputError",
]


# ---------------------------------------------------------------------------
# scalars
# ---------------------------------------------------------------------------


def _real(value: Any, name: str) -> float:
    # bool is an Integral (and so a Real) in Python; True as a damping is a bug.
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def finite_real(value: Any, name: str) -> float:
    """``value`` as a finite Python float.

    Parameters
    ----------
    value : real number
        A Python or NumPy real scalar (not ``bool``).
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        ``value`` is not a real number (``bool`` included).
    ValueError
        ``value`` is NaN or infinite.

    Notes
    -----
    Used for arguments that may take any sign (a shift, a bound).

    Examples
    --------
    >>> finite_real(-2, "x")
    -2.0
    """
    value = _real(value, name)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def nonnegative(value: Any, name: str) -> float:
    """``value`` as a finite float ``≥ 0`` (a tolerance, a damping that may be 0).

    Parameters
    ----------
    value : real number
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        Not a real number.
    ValueError
        Negative, NaN or infinite.

    Notes
    -----
    Zero passes: a tolerance of 0 or an undamped solve is a legitimate request.

    Examples
    --------
    >>> nonnegative(0, "rtol")
    0.0
    """
    value = _real(value, name)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")
    return value


def positive(value: Any, name: str) -> float:
    """``value`` as a finite float ``> 0`` (a damping, a step size).

    Parameters
    ----------
    value : real number
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        Not a real number.
    ValueError
        Zero, negative, NaN or infinite.

    Notes
    -----
    For the ``+λI`` of every damped solve: ``λ = 0`` would make the
    system singular whenever the Gram matrix is rank-deficient.

    Examples
    --------
    >>> positive(1e-3, "damping")
    0.001
    """
    value = _real(value, name)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value


def optional_positive(value: Any, name: str) -> float | None:
    """``None``, or ``value`` checked by :func:`positive`.

    Parameters
    ----------
    value : real number or None
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    float or None

    Raises
    ------
    TypeError, ValueError
        As :func:`positive`, when ``value`` is not None.

    Notes
    -----
    ``None`` means "not set" (e.g. a line search instead of a fixed step).

    Examples
    --------
    >>> optional_positive(None, "lr") is None
    True
    """
    return None if value is None else positive(value, name)


def fraction(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1)`` (a momentum or decay factor).

    Parameters
    ----------
    value : real number
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        Not a real number.
    ValueError
        Outside ``[0, 1)`` (1 itself is refused: a factor of 1 never forgets).

    Notes
    -----
    Momentum ``μ`` and Adam's ``β`` decay a running average as ``μᵏ``;
    ``μ ≥ 1`` would never forget and ``μ < 0`` would oscillate.

    Examples
    --------
    >>> fraction(0.9, "momentum")
    0.9
    """
    value = _real(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return value


def positive_int(value: Any, name: str) -> int:
    """``value`` as a Python int ``≥ 1`` (an iteration count, a rank).

    Parameters
    ----------
    value : int
        A Python or NumPy integer (not ``bool``, not a float like ``3.0``).
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    int

    Raises
    ------
    TypeError
        Not an integer.
    ValueError
        Zero or negative.

    Notes
    -----
    Floats are refused even when integral (``3.0``): an iteration count
    computed in floating point usually hides a bug.

    Examples
    --------
    >>> positive_int(5, "maxiter")
    5
    """
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def optional_positive_int(value: Any, name: str) -> int | None:
    """``None``, or ``value`` checked by :func:`positive_int`.

    Parameters
    ----------
    value : int or None
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    int or None

    Raises
    ------
    TypeError, ValueError
        As :func:`positive_int`, when ``value`` is not None.

    Notes
    -----
    ``None`` means "not set" (e.g. the solver's own default ``maxiter``).

    Examples
    --------
    >>> optional_positive_int(None, "maxiter") is None
    True
    """
    return None if value is None else positive_int(value, name)


def choice(value: Any, options: Sequence[str], name: str) -> str:
    """``value``, which must be one of ``options``.

    Parameters
    ----------
    value : str
    options : sequence of str
        The accepted values.
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        ``value`` is not among ``options``; the message lists them.

    Notes
    -----
    The comparison is exact (case-sensitive), as for a keyword.

    Examples
    --------
    >>> choice("rk4", ("euler", "rk4"), "method")
    'rk4'
    """
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def foreign_keywords(**hints: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: a keyword that another library uses, and natgrad does not,
    gets a ``TypeError`` that says what natgrad takes instead.

    Parameters
    ----------
    **hints : str
        Keyword → what to use instead (a sentence fragment).

    Returns
    -------
    callable
        The decorator; the decorated function keeps its name, docstring and
        signature (``functools.wraps``).

    Raises
    ------
    TypeError
        From the decorated function, when it is called with one of the
        keywords (the message names the function and the keyword).

    Notes
    -----
    People arrive from SciPy (``scipy.sparse.linalg.cg(A, b, tol=...)``, the
    name before SciPy 1.12) and from other libraries; Python's own
    "unexpected keyword argument" does not say which of natgrad's arguments
    they meant.  The check costs one dictionary lookup per hint and call.

    Examples
    --------
    >>> @foreign_keywords(tol="rtol= (relative to ‖b‖) and atol=")
    ... def solve(b, *, rtol=1e-5):
    ...     return b
    >>> solve(1.0, tol=1e-8)
    Traceback (most recent call last):
        ...
    TypeError: solve() got the keyword 'tol', which natgrad does not use: use rtol= (relative to ‖b‖) and atol=
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            for keyword, hint in hints.items():
                if keyword in kwargs:
                    raise TypeError(
                        f"{fn.__name__}() got the keyword {keyword!r}, which natgrad does not use: use {hint}"
                    )
            return fn(*args, **kwargs)

        return checked

    return decorate


def callable_arg(fn: Any, name: str, *, optional: bool = False) -> Any:
    """``fn``, which must be callable (or None when ``optional``).

    Parameters
    ----------
    fn : callable or None
    name : str
        The argument's name, used in the error message.
    optional : bool, default False
        Accept ``None``.

    Returns
    -------
    callable or None

    Raises
    ------
    TypeError
        ``fn`` is not callable (and not an accepted None).

    Notes
    -----
    Only callability is checked here; what the callable returns is
    checked at each call by :class:`CheckedCallable`.

    Examples
    --------
    >>> callable_arg(None, "callback", optional=True) is None
    True
    """
    if fn is None and optional:
        return None
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return fn


# ---------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------


def array(x: Any, name: str) -> Any:
    """``x``, which must be an array of a supported library.

    Parameters
    ----------
    x : array
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    array
        ``x`` itself.

    Raises
    ------
    TypeError
        ``x`` is not an array (a list, a Python number, None, ...).

    Notes
    -----
    Python scalars and lists are refused: natgrad never guesses the library
    an input should belong to.

    Examples
    --------
    >>> array([1.0], "b")
    Traceback (most recent call last):
        ...
    TypeError: b must be an array, got list
    """
    if not backend.is_array(x):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    return x


def finite(x: Any, name: str) -> Any:
    """``x``, which must hold no NaN or Inf (one host synchronisation).

    Parameters
    ----------
    x : array
    name : str
        The argument's name, used in the error message.

    Returns
    -------
    array
        ``x`` itself.

    Raises
    ------
    ValueError
        ``x`` holds a NaN or an infinity.

    Notes
    -----
    ``xp.all(xp.isfinite(x))`` read on the host (:func:`natgrad.backend.all_finite`).

    Examples
    --------
    >>> import numpy as np
    >>> finite(np.array([1.0, np.nan]), "b")
    Traceback (most recent call last):
        ...
    ValueError: b contains NaN or Inf
    """
    if not backend.all_finite(x):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def vector(x: Any, name: str, n: int | None = None) -> Any:
    """``x``, which must be a finite, non-empty 1-D array (of length ``n``).

    Parameters
    ----------
    x : array
    name : str
        The argument's name, used in the error message.
    n : int, optional
        The required length.

    Returns
    -------
    array
        ``x`` itself.

    Raises
    ------
    TypeError
        Not an array.
    ValueError
        Not 1-D, empty, of the wrong length, or with NaN/Inf.

    Notes
    -----
    Checks the shape first (metadata, no synchronisation), then finiteness.

    Examples
    --------
    >>> import numpy as np
    >>> vector(np.ones((2, 2)), "g")
    Traceback (most recent call last):
        ...
    ValueError: g must be a vector of shape (n,), got shape (2, 2)
    """
    array(x, name)
    shape = tuple(x.shape)
    if len(shape) != 1 or shape[0] == 0:
        want = "(n,)" if n is None else f"({n},)"
        raise ValueError(f"{name} must be a vector of shape {want}, got shape {shape}")
    if n is not None and shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {shape}")
    return finite(x, name)


def rhs(b: Any, n: int, name: str = "b", *, allow_block: bool = True) -> Any:
    """A right-hand side: a finite ``(n,)`` array, or ``(n, k)`` when ``allow_block``.

    Parameters
    ----------
    b : array
    n : int
        The operator's size.
    name : str, default "b"
        The argument's name, used in the error message.
    allow_block : bool, default True
        Accept several right-hand sides as the columns of ``(n, k)``.

    Returns
    -------
    array
        ``b`` itself.

    Raises
    ------
    TypeError
        Not an array.
    ValueError
        Wrong shape, or NaN/Inf.

    Notes
    -----
    The columns of an ``(n, k)`` ``b`` are solved together by the block solvers.

    Examples
    --------
    >>> import numpy as np
    >>> rhs(np.ones(3), 4)
    Traceback (most recent call last):
        ...
    ValueError: b must have shape (4,) or (4, k), got (3,)
    """
    array(b, name)
    shape = tuple(b.shape)
    ok_ndim = (1, 2) if allow_block else (1,)
    if len(shape) not in ok_ndim or shape[0] != n:
        want = f"({n},) or ({n}, k)" if allow_block else f"({n},)"
        raise ValueError(f"{name} must have shape {want}, got {shape}")
    return finite(b, name)


def same_shape(x: Any, ref: Any, name: str, ref_name: str) -> Any:
    """``x``, which must be finite and have the shape of ``ref``.

    Parameters
    ----------
    x, ref : array
    name, ref_name : str
        The arguments' names, used in the error message.

    Returns
    -------
    array
        ``x`` itself.

    Raises
    ------
    ValueError
        Shapes differ, or ``x`` has NaN/Inf.

    Notes
    -----
    Used for an initial guess ``x0`` against the right-hand side ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> same_shape(np.ones(2), np.ones(3), "x0", "b")
    Traceback (most recent call last):
        ...
    ValueError: x0 must have the shape of b (3,), got (2,)
    """
    array(x, name)
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(x.shape)}"
        )
    return finite(x, name)


# ---------------------------------------------------------------------------
# a user's callable
# ---------------------------------------------------------------------------


class CallableOutputError(ValueError):
    """A user's callable returned something unusable (wrong type, shape, dtype).

    Parameters
    ----------
    message : str
        What went wrong, naming the argument and the call.
    name : str
        The argument's name (``"A"``, ``"hvp"``, ``"kernel"``, ...).
    call : int
        Which call (1 for the first) returned it.

    Notes
    -----
    A ``ValueError``; a wrong type of output (not an array, another library
    or device, another dtype) raises :class:`TypeError` instead, as Python
    does for a wrong type.  Solvers let it through: a
    callable that breaks its contract is the caller's bug, not a numerical
    failure.

    Examples
    --------
    >>> import numpy as np
    >>> try:
    ...     CheckedCallable(lambda v: v[:1], "A")(np.ones(2))
    ... except CallableOutputError as err:
    ...     print(err.name, err.call)
    A 1
    """

    def __init__(self, message: str, name: str, call: int) -> None:
        super().__init__(message)
        self.name = name
        self.call = call


class NonFiniteOutputError(CallableOutputError):
    """A user's callable returned NaN or Inf.

    Unlike a wrong shape this can be a numerical event (an overflow at a
    large iterate), so the solvers catch it and report
    ``status="nonfinite"`` with their last finite iterate.

    Parameters
    ----------
    message, name, call
        As for :class:`CallableOutputError`.

    Notes
    -----
    A subclass of :class:`CallableOutputError`, so one ``except`` catches
    every bad output.

    Examples
    --------
    >>> import numpy as np
    >>> try:
    ...     CheckedCallable(lambda v: v * np.inf, "hvp")(np.ones(2))
    ... except NonFiniteOutputError as err:
    ...     print(err)
    hvp (call 1) returned NaN or Inf
    """


class CheckedCallable:
    """A user's callable whose every output is checked.

    Parameters
    ----------
    fn : callable
        The user's function: an operator's matvec, an HVP ``v -> H v``, a
        kernel ``(X, Y) -> K``, ...
    name : str
        How the error messages call it (the argument's name).
    out_shape : callable, optional
        ``out_shape(*args) -> tuple``: the shape the output must have; an
        entry ``None`` accepts any length along that axis (a length the
        caller cannot know, such as the number of samples in a batch).
        Default: the shape of the first argument (a square operator).
    dtype : "match", None or dtype, default "match"
        ``"match"``: the output must have the first argument's dtype.  A
        dtype: the output is cast to it (a kernel returning float32 for a
        float64 build).  None: no dtype check.
    check_finite : bool or "first", default True
        Check the output for NaN/Inf at every call (one host synchronisation
        per call), only at the first, or never (``False``: the caller checks
        finiteness itself, e.g. a Krylov solver on its residual norm every
        few iterations).

    Attributes
    ----------
    calls : int
        How many times ``fn`` has been called.

    Raises
    ------
    TypeError
        At construction when ``fn`` is not callable.  At a call, when ``fn``
        returns a non-array, an array of another library or device than the
        argument, or one whose dtype differs (``dtype="match"``).
    CallableOutputError
        At a call, for the wrong shape.
    NonFiniteOutputError
        At a call, for NaN or Inf in the output (when checked).

    Notes
    -----
    Shape, dtype, library and device are read from array metadata: checking
    them at every call costs no host synchronisation, so a fault at a late
    call (a shape that changes at call 50) is caught where it happens.  The
    finiteness check does synchronise; on an accelerator pass
    ``check_finite=False`` inside an iteration loop and test the residual at
    the loop's sync points instead.

    Examples
    --------
    >>> import numpy as np
    >>> H = CheckedCallable(lambda v: 2.0 * v, "hvp")
    >>> H(np.ones(3))
    array([2., 2., 2.])
    >>> H.calls
    1
    >>> bad = CheckedCallable(lambda v: v[:-1], "hvp")
    >>> bad(np.ones(3))
    Traceback (most recent call last):
        ...
    natgrad.validation.CallableOutputError: hvp (call 1) returned shape (2,) for an input of shape (3,)
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        *,
        out_shape: Callable[..., tuple[int, ...]] | None = None,
        dtype: Any = "match",
        check_finite: bool | str = True,
    ) -> None:
        self.fn = callable_arg(fn, name)
        self.name = name
        self.out_shape = out_shape
        self.dtype = dtype
        if check_finite not in (True, False, "first"):
            raise ValueError(f"check_finite must be True, False or 'first', got {check_finite!r}")
        self.check_finite = check_finite
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        try:
            y = self.fn(*args)
        except Exception as err:
            # The user's own exception passes through unchanged; the note
            # says which argument and which call raised it.
            err.add_note(f"raised by {self.name} (call {self.calls + 1}) inside natgrad")
            raise
        finally:
            self.calls += 1
        return self._check(y, args)

    def _where(self) -> str:
        return f"{self.name} (call {self.calls})"

    def _check(self, y: Any, args: tuple[Any, ...]) -> Any:
        x = args[0]
        if not backend.is_array(y):
            raise TypeError(f"{self._where()} must return an array, got {type(y).__name__}")
        # The full namespace check costs ~14 µs a call, a quarter of a CG
        # iteration on a cheap operator; the same array type on the same
        # device is the same library and device, and costs ~1 µs to confirm.
        if getattr(y, "requires_grad", False):
            # a PyTorch output tracked by autograd (a learnable parameter in
            # the user's function): refused like a tracked argument, naming it
            backend.namespace(**{f"the output of {self._where()}": y})
        if type(y) is not type(x) or backend.device(y) != backend.device(x):
            try:
                backend.namespace(**{f"input of {self.name}": x, f"output of {self.name}": y})
            except TypeError as err:
                raise TypeError(f"{self._where()}: {err}") from None
        want = tuple(self.out_shape(*args)) if self.out_shape is not None else tuple(x.shape)
        got = tuple(y.shape)
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
            expected = "(" + ", ".join("any" if w is None else str(w) for w in want)
            expected += ",)" if len(want) == 1 else ")"
            told = f"for an input of shape {tuple(x.shape)}" if self.out_shape is None else f"(expected {expected})"
            raise CallableOutputError(
                f"{self._where()} returned shape {got} {told}",
                self.name,
                self.calls,
            )
        y = self._dtype(y, x)
        if self.check_finite is True or (self.check_finite == "first" and self.calls == 1):
            if not backend.all_finite(y):
                raise NonFiniteOutputError(
                    f"{self._where()} returned NaN or Inf", self.name, self.calls
                )
        return y

    def _dtype(self, y: Any, x: Any) -> Any:
        if self.dtype is None:
            return y
        if isinstance(self.dtype, str):  # "match"
            if y.dtype != x.dtype:
                raise TypeError(
                    f"{self._where()} returned dtype {y.dtype} for an input of dtype {x.dtype}"
                )
            return y
        if y.dtype != self.dtype:
            return backend.namespace(y).astype(y, self.dtype)
        return y

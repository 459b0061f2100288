"""Fault injection for the "honest under faults" suite.

A user's operator, HVP, kernel or model can go wrong at any call, not only
the first.  :class:`Fault` wraps such a callable and, from call ``at`` on
(or only at that call, ``once=True``), makes its output NaN, Inf, the wrong
shape, scaled by 1e±150, raises :class:`InjectedFault`, or writes into its
argument.  :func:`outcome` runs a natgrad call under the suite's rules and
says how it ended; :func:`assert_honest_solve` checks a solver's result
against a dense float64 reference.

The contract each test checks (issue 18):

* either a natgrad error is raised whose message names the argument (and
  the call, for callables) -- or the user's own exception passes through
  unchanged,
* or a result comes back whose ``x`` is finite; when it says
  ``converged=True`` its true residual meets the tolerance, otherwise its
  ``status`` is a failure status;
* never an exception from a library underneath (``LinAlgError``,
  ``OverflowError``, ``ZeroDivisionError``, ``FloatingPointError``, torch's
  ``RuntimeError``), never an overflow/invalid-value ``RuntimeWarning``.
"""

from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from natgrad.linalg import FactorizationWarning, SolveStatus

from helpers import to_numpy  # tests/ is on the path (pyproject: pythonpath)

#: Every kind of fault :class:`Fault` can inject.
KINDS = ("nan", "inf", "raise", "shape", "huge", "tiny", "write")
#: The faults that make a callable's output unusable (no honest "converged").
BREAKING = ("nan", "inf", "raise", "shape")
#: 1e±150: squares of these still fit a float64, products of two do not.
SCALE = {"huge": 1e150, "tiny": 1e-150}
#: Failure statuses of a :class:`~natgrad.linalg.SolveResult`.
FAILED = {s for s in SolveStatus if s is not SolveStatus.CONVERGED}


class InjectedFault(Exception):
    """The user's own exception, raised by a :class:`Fault` of kind "raise"."""


class Fault:
    """``fn`` that goes wrong from its call number ``at`` on.

    Parameters
    ----------
    fn : callable
        The healthy callable; its first argument is an array.
    kind : str
        One of :data:`KINDS`.  "write" zeroes the first argument in place
        (where the library allows writes) before calling ``fn``.
    at : int
        The first faulty call (1 for the first call).
    once : bool
        Only call ``at`` is faulty (a transient fault); later calls are healthy.
    axis : int
        The axis "shape" drops an entry of (0: rows).

    Attributes
    ----------
    calls : int
        How many times the wrapper was called.
    """

    def __init__(self, fn: Callable[..., Any], kind: str, at: int = 1, *, once: bool = False, axis: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.fn, self.kind, self.at, self.once, self.axis = fn, kind, at, once, axis
        self.calls = 0

    @property
    def fired(self) -> bool:
        """Whether a faulty call has happened."""
        return self.calls >= self.at

    def active(self) -> bool:
        return self.calls == self.at if self.once else self.calls >= self.at

    def final(self, M: np.ndarray, like: Any) -> np.ndarray:
        """The dense matrix ``M`` as this faulty product applies it after its
        last call (the operator a converged result must be honest about);
        ``like`` is an array of the library under test."""
        if not self.fired or self.once:
            return M
        if self.kind in SCALE:
            return M * SCALE[self.kind]
        if self.kind == "write" and writable(like):
            return np.zeros_like(M)  # it zeroes its argument, then applies M to zeros
        return M

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if not self.active():
            return self.fn(*args)
        if self.kind == "raise":
            raise InjectedFault(f"user failure at call {self.calls}")
        if self.kind == "write":
            write_into(args[0])
            return self.fn(*args)
        return corrupt(self.fn(*args), self.kind, self.axis)


def corrupt(y: Any, kind: str, axis: int = 0) -> Any:
    """``y`` with the fault ``kind`` applied (a new array; ``y`` is unchanged)."""
    if kind == "nan":
        return y * float("nan")
    if kind == "inf":
        # +Inf in the first entry only: a single bad entry must be found too
        flat = to_numpy(y).copy()
        flat.reshape(-1)[0] = np.inf
        return _like(flat, y)
    if kind in SCALE:
        return y * SCALE[kind]
    if kind == "shape":
        index = [slice(None)] * y.ndim
        index[axis] = slice(0, y.shape[axis] - 1)
        return y[tuple(index)]
    raise ValueError(kind)


def _like(a: np.ndarray, ref: Any) -> Any:
    """The NumPy array ``a`` in ``ref``'s library, dtype and device."""
    mod = type(ref).__module__
    if isinstance(ref, np.ndarray):
        return a.astype(ref.dtype)
    if mod.startswith("torch"):
        import torch

        return torch.as_tensor(a, dtype=ref.dtype, device=ref.device)
    if mod.startswith("jax"):
        import jax.numpy as jnp

        return jnp.asarray(a, dtype=ref.dtype)
    if mod.startswith("cupy"):
        import cupy

        return cupy.asarray(a, dtype=ref.dtype)
    if mod.startswith("dask"):
        import dask.array as da

        return da.from_array(a.astype(ref.dtype), chunks=ref.chunks)
    import array_api_strict as xps

    return xps.asarray(a, dtype=ref.dtype)


def writable(x: Any) -> bool:
    """Whether the library lets a user's function write into ``x`` (not JAX)."""
    return not type(x).__module__.startswith("jax")


def write_into(x: Any) -> None:
    """Zero ``x`` in place, as a careless user's HVP might (no-op for JAX)."""
    if not writable(x):
        return
    if type(x).__module__.startswith("torch"):
        with __import__("torch").no_grad():
            x.zero_()
    else:
        x[...] = 0


# ---------------------------------------------------------------------------
# how a natgrad call ended
# ---------------------------------------------------------------------------

#: exceptions natgrad raises on purpose besides its own classes: a message
#: from natgrad's code names the argument.
_PLAIN = (ValueError, TypeError)
#: exceptions that must never reach the user from natgrad
_FOREIGN_MODULES = ("numpy", "scipy", "torch", "jax", "jaxlib", "cupy", "array_api_strict")


@dataclass
class Outcome:
    """How a call ended: ``value`` when it returned, ``error`` when it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def raised(self) -> bool:
        return self.error is not None


def _raised_by_natgrad(err: BaseException) -> bool:
    """The innermost frame of ``err``'s traceback is natgrad's own ``raise``."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and "/natgrad/" in frames[-1].filename.replace("\\", "/")


def outcome(call: Callable[[], Any], *names: str) -> Outcome:
    """Run ``call()`` under the suite's rules.

    Parameters
    ----------
    call : callable
        The natgrad call, with its faulty argument.
    *names : str
        Names the error message may use for the faulty argument; a raised
        error must contain one of them.

    Returns
    -------
    Outcome
        The value, or the error when the call raised an allowed one.

    Raises
    ------
    AssertionError
        A foreign exception, an error that names none of ``names``, or an
        overflow/invalid-value warning.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # natgrad's own documented fallback warning is allowed
        warnings.filterwarnings("ignore", category=FactorizationWarning)
        try:
            return Outcome(value=call())
        except InjectedFault as err:  # the user's own exception passes through
            return Outcome(error=err)
        except RuntimeWarning as err:
            raise AssertionError(f"a warning escaped: {type(err).__name__}: {err}") from err
        except Exception as err:  # noqa: BLE001 - classified below
            _check_error(err, names)
            return Outcome(error=err)


def _check_error(err: BaseException, names: tuple[str, ...]) -> None:
    cls = type(err)
    module = cls.__module__.split(".")[0]
    ours = module == "natgrad"
    plain = cls in _PLAIN and _raised_by_natgrad(err)
    if module in _FOREIGN_MODULES or not (ours or plain):
        raise AssertionError(f"foreign exception reached the user: {cls.__module__}.{cls.__name__}: {err}") from err
    message = str(err)
    if names and not any(name in message for name in names):
        raise AssertionError(f"{cls.__name__} names none of {names}: {message}") from err


def assert_fault_named(out: Outcome, kind: str, at: int, name: str) -> None:
    """A breaking fault injected at call ``at`` of callable ``name`` ended the
    call as the contract says: the user's :class:`InjectedFault` with a note
    naming the call, or natgrad's error (wrong shape or NaN/Inf) naming it."""
    from natgrad.validation import CallableOutputError, NonFiniteOutputError

    assert out.raised, "the fault went unnoticed"
    if kind == "raise":
        assert isinstance(out.error, InjectedFault)
        assert f"raised by {name} (call {at})" in " ".join(getattr(out.error, "__notes__", []))
    else:
        cls = CallableOutputError if kind == "shape" else NonFiniteOutputError
        assert isinstance(out.error, cls) and f"{name} (call {at})" in str(out.error)


def assert_finite(x: Any, what: str = "x") -> np.ndarray:
    """``x`` as NumPy, after checking it has no NaN/Inf."""
    a = to_numpy(x)
    assert np.all(np.isfinite(a)), f"{what} has NaN/Inf: {a}"
    return a


def true_residual(A: np.ndarray, x: Any, b: np.ndarray) -> float:
    """‖b − A x‖ / ‖b‖ in float64."""
    x64 = to_numpy(x).astype(np.float64)
    return float(np.linalg.norm(b - A @ x64) / np.linalg.norm(b))


def assert_honest_solve(res: Any, A: np.ndarray, b: np.ndarray, tol: float) -> None:
    """A solver result that tells the truth about ``A x = b``.

    ``x`` is finite; ``converged=True`` only when the true relative residual
    (float64) is at most ``tol``; otherwise the status is a failure status.
    ``A`` is the operator as it behaves at the end of the solve.
    """
    assert_finite(res.x, "result.x")
    if res.converged:
        assert res.status is SolveStatus.CONVERGED, res.status
        r = true_residual(A, res.x, b)
        assert r <= tol, f"converged=True but the true residual is {r:.3g} > {tol:.3g} ({res.info})"
    else:
        assert res.status in FAILED, res.status
        assert res.info, "a failed solve must say why in info"


# ---------------------------------------------------------------------------
# models that go wrong (issue 18, optimisers and fit; added by the optim helper)
# ---------------------------------------------------------------------------

#: the model methods an optimiser may call
MODEL_METHODS = ("residuals", "jacobian", "residuals_and_jacobian", "jvp", "vjp", "loss_and_grad",
                 "hvp", "ggn_vp", "losses_along")


def _corrupt_output(out: Any, kind: str, part: int | None) -> Any:
    """A model method's output with the fault: a tuple's element ``part``
    (default the last, e.g. the gradient of ``(loss, grad)``), each float of
    a list (``losses_along``), or the array itself."""
    if isinstance(out, tuple):
        i = len(out) - 1 if part is None else part
        return tuple(_corrupt_output(o, kind, None) if j == i else o for j, o in enumerate(out))
    if isinstance(out, list):
        if kind == "shape":
            return out[:-1]
        return [float(corrupt(np.float64(v), kind)) if kind != "inf" else np.inf for v in out]
    if not backend_is_array(out):  # a Python float loss
        return float(corrupt(np.asarray(out, dtype=np.float64), kind)) if kind != "shape" else out
    return corrupt(out, kind)


def backend_is_array(x: Any) -> bool:
    from natgrad import backend

    return backend.is_array(x)


class FaultyModel:
    """A model whose method ``method`` goes wrong from its call ``at`` on.

    Every other attribute is the wrapped model's (so a method the model
    lacks stays missing).  ``kind`` as for :class:`Fault`; for a method that
    returns a tuple (``loss_and_grad``, ``residuals_and_jacobian``) element
    ``part`` is corrupted (default: the last).  ``calls`` counts the calls of
    ``method``.
    """

    def __init__(self, model: Any, method: str, kind: str, at: int = 1, *, once: bool = False,
                 part: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        self._model, self.method, self.kind, self.at, self.once, self.part = model, method, kind, at, once, part
        self.calls = 0

    @property
    def fired(self) -> bool:
        return self.calls >= self.at

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._model, name)
        if name != self.method:
            return attr

        def faulty(*args: Any) -> Any:
            self.calls += 1
            active = self.calls == self.at if self.once else self.calls >= self.at
            if not active:
                return attr(*args)
            if self.kind == "raise":
                raise InjectedFault(f"user failure in {name} at call {self.calls}")
            if self.kind == "write":
                write_into(args[0])
                return attr(*args)
            return _corrupt_output(attr(*args), self.kind, self.part)

        return faulty


class CallCounter:
    """A model wrapper that counts the calls of each model method."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._model, name)
        if name not in MODEL_METHODS:
            return attr

        def counted(*args: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args)

        return counted

r"""Custom autodiff: :class:`CallableModel` from plain functions on flat arrays.

For users with their own derivatives (hand-written, another framework, a
simulator with adjoints).  Every callable takes and returns arrays of one
array-API namespace (NumPy, CuPy, PyTorch, JAX, ...); the model never
converts them.  What is missing is derived *exactly* where possible:

=============  ================================================================
missing        derived from
=============  ================================================================
jacobian       ``vjp`` row by row (``N ≤ P``) or ``jvp`` column by column
jvp / vjp      ``jacobian`` (``J v``, ``Jᵀ u``)
loss_and_grad  ``residuals`` and ``vjp`` (``½‖r‖², Jᵀr`` or ``mean ℓ, Jᵀ1/N``)
ggn_vp         ``jvp`` then ``vjp`` (``JᵀJ v``, ``/N`` for ``"mean"``)
=============  ================================================================

Finite differences are used only when asked for (``finite_differences=``):
for ``jvp`` (central differences of ``residuals``) and for ``hvp`` (central
differences of the gradient), which have no exact derivation otherwise.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import backend, validation
from . import base

__all__ = ["CallableModel"]

_Fn = Callable[..., Any]


#: the shape each given function's output must have, from its arguments (None:
#: the number of samples, which only the batch decides); vjp, hvp and ggn_vp
#: return (P,), the shape of ``flat``: CheckedCallable's default
_OUT_SHAPES: dict[str, _Fn] = {
    "residuals": lambda flat, batch: (None,),
    "jvp": lambda flat, batch, v: (None,),
    "jacobian": lambda flat, batch: (None, flat.shape[0]),
}


def _private(x: Any) -> Any:
    """A copy of the array ``x`` for a user's function, which may write into
    its argument; JAX arrays are immutable and passed as they are.  A tensor
    that requires grad is detached first (:func:`~natgrad.adapters.base.untracked`)."""
    x = base.untracked(x)
    xp = backend.namespace(x=x, allow_traced=True)
    if backend.is_jax(xp):
        return x
    return xp.asarray(x, copy=True)


def _private_args(fn: _Fn) -> _Fn:
    """``fn`` called with copies of its array arguments (the batch excepted).

    A user's function that writes into ``flat`` or a tangent (``x[...] = 0``,
    ``x.mul_(…)``) must not change the caller's array (the parameters an
    optimiser was given, a solver's iterate): the copy costs ``O(P)`` per call,
    small beside the function itself.
    """

    def call(flat: Any, batch: Any, *vectors: Any) -> Any:
        return fn(_private(flat), batch, *(_private(v) if backend.is_array(v) else v for v in vectors))

    return call


def _checked(fn: _Fn, name: str) -> Any:
    """``fn`` wrapped so that each output is checked and an error names the call.

    Shape, dtype (that of ``flat``), library and device are checked at every
    call; finiteness is not (``check_finite=False``): a model's outputs reach
    the optimisers as values, which reject a step whose loss or direction is
    not finite and whose solvers report ``status="nonfinite"``, exactly as for
    the framework adapters (whose functions run under a transform, where no
    per-call check can read the data).  It also spares a host synchronisation
    per call.
    """
    fn = _private_args(fn)
    if name == "loss_and_grad":
        return _CheckedLossAndGrad(fn)
    return validation.CheckedCallable(fn, name, out_shape=_OUT_SHAPES.get(name), check_finite=False)


def _gradient(flat: Any, batch: Any, gradient: Any) -> Any:
    return gradient


class _CheckedLossAndGrad:
    """A user's ``loss_and_grad(flat, batch) -> (loss, gradient)``, the gradient
    checked like the other functions' outputs (shape ``(P,)``)."""

    def __init__(self, fn: _Fn) -> None:
        self.fn = fn
        self.gradient = validation.CheckedCallable(_gradient, "loss_and_grad", check_finite=False)

    def __call__(self, flat: Any, batch: Any) -> tuple[Any, Any]:
        pair = self.fn(flat, batch)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"loss_and_grad (call {self.gradient.calls + 1}) must return (loss, gradient), "
                f"got {type(pair).__name__}"
            )
        return pair[0], self.gradient(flat, batch, pair[1])


class CallableModel:
    r"""A model from user-supplied functions of ``(flat, batch[, vector])``.

    Parameters
    ----------
    residuals : callable, optional
        ``residuals(flat, batch) -> (N,)``: residuals or per-sample losses.
    jvp : callable, optional
        ``jvp(flat, batch, v) -> (N,)``, ``J v``.
    vjp : callable, optional
        ``vjp(flat, batch, u) -> (P,)``, ``Jᵀ u``.
    jacobian : callable, optional
        ``jacobian(flat, batch) -> (N, P)``.
    hvp : callable, optional
        ``hvp(flat, batch, v) -> (P,)``, the Hessian of the loss times ``v``.
    ggn_vp : callable, optional
        ``ggn_vp(flat, batch, v) -> (P,)``.
    loss_and_grad : callable, optional
        ``loss_and_grad(flat, batch) -> (scalar, (P,))``.
    params : array, shape (P,), optional
        The initial parameters (``model.params``).
    loss : {"squared", "mean"}
    finite_differences : bool or float
        False (default): never approximate.  True or a step ``h > 0``: allow
        central differences for ``jvp`` (and through it the Jacobian) and
        ``hvp`` when they cannot be derived exactly; ``True`` uses
        ``h = eps^(1/3) · max(1, ‖θ‖)``.

    Raises
    ------
    TypeError
        If a given function is not callable, ``params`` is not an array or
        ``finite_differences`` is neither a bool nor a number.
    ValueError
        If ``loss`` is unknown, ``finite_differences`` is not positive, or
        ``params`` is not a finite vector.

    Notes
    -----
    Methods that can be neither called nor derived raise
    ``NotImplementedError`` naming what to pass.

    Every output of a given function is checked at every call by
    :class:`natgrad.validation.CheckedCallable`: the shapes above (``N``
    being whatever the batch gives), the dtype of ``flat``, and the same
    array library and device.  A wrong shape raises
    :class:`~natgrad.validation.CallableOutputError` (a ``ValueError``), a
    wrong type, dtype or device a ``TypeError``; both name the function and
    the call (``"jacobian (call 3) returned shape (5, 2) for an input of
    shape (3,) (expected (N, 3))"``).  Finiteness is not checked here: NaN or
    Inf reach the optimisers as values, which reject such a step, as they do
    for the framework adapters.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> model = CallableModel(residuals=lambda p, b: A @ p - b,
    ...                       vjp=lambda p, b, u: A.T @ u, params=np.zeros(2))
    >>> bool(np.array_equal(model.jacobian(model.params, np.ones(3)), A))
    True
    >>> model.ggn_vp(model.params, np.ones(3), np.array([1.0, 0.0]))   # AᵀA e₁
    array([35., 44.])
    """

    def __init__(
        self,
        residuals: _Fn | None = None,
        jvp: _Fn | None = None,
        vjp: _Fn | None = None,
        jacobian: _Fn | None = None,
        hvp: _Fn | None = None,
        *,
        ggn_vp: _Fn | None = None,
        loss_and_grad: _Fn | None = None,
        params: Any = None,
        loss: str = "squared",
        finite_differences: bool | float = False,
    ) -> None:
        given = dict(residuals=residuals, jvp=jvp, vjp=vjp, jacobian=jacobian, hvp=hvp,
                     ggn_vp=ggn_vp, loss_and_grad=loss_and_grad)
        self._given: dict[str, validation.CheckedCallable | None] = {}
        for name, fn in given.items():
            validation.callable_arg(fn, name, optional=True)
            self._given[name] = None if fn is None else _checked(fn, name)
        self.loss = base.check_loss(loss)
        if isinstance(finite_differences, bool):
            self._fd: float | bool = finite_differences
        else:
            self._fd = validation.positive(finite_differences, "finite_differences")
        if params is not None:
            # tracked input (a tensor that requires grad) is detached, and the
            # model keeps its own copy: the caller's array is never shared
            params = base.untracked(params)
            validation.vector(params, "params")
            params = backend.namespace(params=params).asarray(params, copy=True)
        self._params = params

    # -- helpers -------------------------------------------------------------
    def _need(self, name: str, hint: str) -> validation.CheckedCallable:
        fn = self._given[name]
        if fn is None:
            raise NotImplementedError(f"CallableModel cannot compute {hint}: pass {name}=")
        return fn

    def _check_flat(self, flat: Any, name: str = "flat") -> Any:
        # shape only (array metadata): a finiteness check here would cost a
        # host synchronisation on every call
        validation.array(flat, name)
        if flat.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array, got shape {tuple(flat.shape)}")
        if self._params is not None and flat.shape[0] != self._params.shape[0]:
            raise ValueError(f"{name} must have shape ({self._params.shape[0]},), got {tuple(flat.shape)}")
        return flat

    def _step(self, flat: Any) -> float:
        if self._fd is False:
            raise AssertionError  # pragma: no cover - guarded by callers
        if self._fd is True:
            xp = backend.namespace(flat=flat)
            scale = max(1.0, backend.to_float(xp.linalg.vector_norm(flat)))
            return backend.eps(flat.dtype, xp) ** (1 / 3) * scale
        return float(self._fd)

    # -- the model protocol --------------------------------------------------
    @property
    def params(self) -> Any:
        """The initial flat parameters (a copy).

        Raises
        ------
        ValueError
            If the model was built without ``params``.
        """
        if self._params is None:
            raise ValueError("CallableModel was built without params=")
        xp = backend.namespace(params=self._params)
        return xp.asarray(self._params, copy=True)

    def flatten(self, structure: Any) -> Any:
        """Identity: the parameters already are a flat vector."""
        return self._check_flat(structure, "structure")

    def unflatten(self, flat: Any) -> Any:
        """Identity: the parameters already are a flat vector."""
        return self._check_flat(flat)

    def residuals(self, flat: Any, batch: Any) -> Any:
        """``residuals(flat, batch)``, checked to be a vector ``(N,)``.

        Raises
        ------
        NotImplementedError
            If no ``residuals`` function was given.
        natgrad.validation.CallableOutputError
            If it returns another shape (the message names the call).
        """
        fn = self._need("residuals", "residuals")
        return fn(self._check_flat(flat), batch)

    def jacobian(self, flat: Any, batch: Any) -> Any:
        """``J (N, P)``: given, or from ``vjp`` rows / ``jvp`` columns (exact).

        Raises
        ------
        NotImplementedError
            If none of ``jacobian``, ``vjp``, ``jvp`` (or finite differences) is available.
        """
        flat = self._check_flat(flat)
        P = flat.shape[0]
        if self._given["jacobian"] is not None:
            return self._given["jacobian"](flat, batch)
        xp = backend.namespace(flat=flat)
        can_jvp = self._given["jvp"] is not None or (self._fd is not False and self._given["residuals"] is not None)
        if self._given["vjp"] is None and not can_jvp:
            raise NotImplementedError(
                "CallableModel cannot compute the Jacobian: pass jacobian=, vjp= or jvp= "
                "(or finite_differences=True with residuals=)"
            )
        N = self.residuals(flat, batch).shape[0]
        eye = xp.eye(max(N, P), dtype=flat.dtype, device=backend.device(flat))
        if self._given["vjp"] is not None and (N <= P or not can_jvp):
            return self._jacobian_from_vjp(flat, batch, N)
        return xp.stack([self.jvp(flat, batch, eye[j, :P]) for j in range(P)], axis=1)

    def _jacobian_from_vjp(self, flat: Any, batch: Any, N: int) -> Any:
        xp = backend.namespace(flat=flat)
        eye = xp.eye(N, dtype=flat.dtype, device=backend.device(flat))
        return xp.stack([self.vjp(flat, batch, eye[i, :]) for i in range(N)])

    def jvp(self, flat: Any, batch: Any, v: Any) -> Any:
        """``J v (N,)``: given, or ``jacobian @ v`` (the Jacobian given or from
        ``vjp`` rows, exact), or central differences if allowed."""
        flat = self._check_flat(flat)
        v = self._check_flat(v, "v")
        if self._given["jvp"] is not None:
            return self._given["jvp"](flat, batch, v)
        if self._given["jacobian"] is not None:
            return self.jacobian(flat, batch) @ v
        if self._given["vjp"] is not None:
            return self._jacobian_from_vjp(flat, batch, self.residuals(flat, batch).shape[0]) @ v
        if self._fd is not False and self._given["residuals"] is not None:
            h = self._step(flat)
            return (self.residuals(flat + h * v, batch) - self.residuals(flat - h * v, batch)) / (2 * h)
        raise NotImplementedError(
            "CallableModel cannot compute J v: pass jvp= or jacobian= (or finite_differences=True)"
        )

    def vjp(self, flat: Any, batch: Any, u: Any) -> Any:
        """``Jᵀ u (P,)``: given, or ``jacobianᵀ @ u`` (the Jacobian may itself come from jvp)."""
        flat = self._check_flat(flat)
        if self._given["vjp"] is not None:
            return self._given["vjp"](flat, batch, validation.array(u, "u"))
        if self._given["jacobian"] is None and self._given["jvp"] is None and self._fd is False:
            raise NotImplementedError("CallableModel cannot compute Jᵀ u: pass vjp=, jacobian= or jvp=")
        J = self.jacobian(flat, batch)
        if not backend.is_array(u) or tuple(u.shape) != (J.shape[0],):
            got = tuple(u.shape) if backend.is_array(u) else type(u).__name__
            raise ValueError(f"u must have shape ({J.shape[0]},), got {got}")
        xp = backend.namespace(J=J, u=u)
        return xp.matrix_transpose(J) @ u

    def loss_and_grad(self, flat: Any, batch: Any) -> tuple[Any, Any]:
        """``(L, ∇L)``: given, or ``(½‖r‖², Jᵀr)`` / ``(mean ℓ, Jᵀ1/N)``."""
        flat = self._check_flat(flat)
        if self._given["loss_and_grad"] is not None:
            return self._given["loss_and_grad"](flat, batch)
        r = self.residuals(flat, batch)
        xp = backend.namespace(r=r)
        if self.loss == "squared":
            return 0.5 * xp.vecdot(r, r), self.vjp(flat, batch, r)
        N = r.shape[0]
        return xp.mean(r), self.vjp(flat, batch, xp.ones_like(r) / N)

    def hvp(self, flat: Any, batch: Any, v: Any) -> Any:
        """``∇²L v``: given, or central differences of the gradient if allowed.

        Raises
        ------
        NotImplementedError
            Without ``hvp`` and without ``finite_differences``: the Hessian
            needs second derivatives, which the first-order functions lack.
        """
        flat = self._check_flat(flat)
        v = self._check_flat(v, "v")
        if self._given["hvp"] is not None:
            return self._given["hvp"](flat, batch, v)
        if self._fd is False:
            raise NotImplementedError(
                "CallableModel cannot compute the exact Hessian without hvp=; pass hvp= "
                "or finite_differences=True (ggn_vp gives the Gauss-Newton part exactly)"
            )
        h = self._step(flat)
        g_plus = self.loss_and_grad(flat + h * v, batch)[1]
        g_minus = self.loss_and_grad(flat - h * v, batch)[1]
        return (g_plus - g_minus) / (2 * h)

    def ggn_vp(self, flat: Any, batch: Any, v: Any) -> Any:
        """``JᵀJ v`` (``/N`` for ``"mean"``): given, or ``vjp(jvp(v))``."""
        flat = self._check_flat(flat)
        v = self._check_flat(v, "v")
        if self._given["ggn_vp"] is not None:
            return self._given["ggn_vp"](flat, batch, v)
        Jv = self.jvp(flat, batch, v)
        out = self.vjp(flat, batch, Jv)
        return out / Jv.shape[0] if self.loss == "mean" else out

    def __repr__(self) -> str:
        given = [k for k, fn in self._given.items() if fn is not None]
        return f"CallableModel(given={given}, loss={self.loss!r})"

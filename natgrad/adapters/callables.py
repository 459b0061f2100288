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

from numbers import Real
from typing import Any, Callable

from .. import backend
from . import base

__all__ = ["CallableModel"]

_Fn = Callable[..., Any]


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
        If a given function is not callable.
    ValueError
        If ``loss`` is unknown or ``finite_differences`` is not a bool or a
        positive float.

    Notes
    -----
    Methods that can be neither called nor derived raise
    ``NotImplementedError`` naming what to pass.  Outputs are checked for
    the shapes above (``ValueError`` naming the function).

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
        self._given: dict[str, _Fn | None] = {}
        for name, fn in (
            ("residuals", residuals),
            ("jvp", jvp),
            ("vjp", vjp),
            ("jacobian", jacobian),
            ("hvp", hvp),
            ("ggn_vp", ggn_vp),
            ("loss_and_grad", loss_and_grad),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
            self._given[name] = fn
        self.loss = base.check_loss(loss)
        if isinstance(finite_differences, bool):
            self._fd: float | bool = finite_differences
        elif isinstance(finite_differences, Real) and float(finite_differences) > 0:
            self._fd = float(finite_differences)
        else:
            raise ValueError(
                f"finite_differences must be a bool or a positive step, got {finite_differences!r}"
            )
        if params is not None:
            if not backend.is_array(params) or params.ndim != 1:
                raise TypeError(f"params must be a 1-D array (the flat parameters), got {type(params).__name__}")
        self._params = params

    # -- helpers -------------------------------------------------------------
    def _need(self, name: str, hint: str) -> _Fn:
        fn = self._given[name]
        if fn is None:
            raise NotImplementedError(f"CallableModel cannot compute {hint}: pass {name}=")
        return fn

    def _check_flat(self, flat: Any, name: str = "flat") -> Any:
        if not backend.is_array(flat) or flat.ndim != 1:
            raise TypeError(f"{name} must be a 1-D array, got {type(flat).__name__}")
        if self._params is not None and flat.shape[0] != self._params.shape[0]:
            raise ValueError(f"{name} must have shape ({self._params.shape[0]},), got {tuple(flat.shape)}")
        return flat

    @staticmethod
    def _check_out(x: Any, shape: tuple[int | None, ...], name: str) -> Any:
        if not backend.is_array(x) or x.ndim != len(shape) or any(
            s is not None and x.shape[i] != s for i, s in enumerate(shape)
        ):
            got = tuple(x.shape) if backend.is_array(x) else type(x).__name__
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{name} must return an array of shape {want}, got {got}")
        return x

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
        """
        fn = self._need("residuals", "residuals")
        return self._check_out(fn(self._check_flat(flat), batch), (None,), "residuals")

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
            return self._check_out(self._given["jacobian"](flat, batch), (None, P), "jacobian")
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
            return self._check_out(self._given["jvp"](flat, batch, v), (None,), "jvp")
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
            return self._check_out(self._given["vjp"](flat, batch, u), (flat.shape[0],), "vjp")
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
            loss, g = self._given["loss_and_grad"](flat, batch)
            return loss, self._check_out(g, (flat.shape[0],), "loss_and_grad gradient")
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
            return self._check_out(self._given["hvp"](flat, batch, v), (flat.shape[0],), "hvp")
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
            return self._check_out(self._given["ggn_vp"](flat, batch, v), (flat.shape[0],), "ggn_vp")
        Jv = self.jvp(flat, batch, v)
        out = self.vjp(flat, batch, Jv)
        return out / Jv.shape[0] if self.loss == "mean" else out

    def __repr__(self) -> str:
        given = [k for k, fn in self._given.items() if fn is not None]
        return f"CallableModel(given={given}, loss={self.loss!r})"

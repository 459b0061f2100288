r"""Gradient descent as an ODE integrator: Euler, Heun, RK4 and Adams–Bashforth 2."""

from __future__ import annotations

import math
from typing import Any

from .. import backend, validation
from . import _common

__all__ = ["GradientFlow"]

METHODS = ("euler", "heun", "rk4", "ab2")


class GradientFlow(_common.Stateful):
    r"""Steps of an explicit integrator for the gradient flow ``θ' = −∇f(θ)``.

    Gradient descent is forward Euler on the gradient flow (Ma et al., arXiv
    2409.04707); higher-order integrators follow the flow more closely per
    step at the price of more gradient evaluations:

    ========  ==========================================================  ======
    method    update with ``h = lr``, ``g(θ) = ∇f(θ)``                     grads
    ========  ==========================================================  ======
    euler     ``θ − h g(θ)``                                                1
    heun      ``θ − h/2 (k₁ + k₂)``, ``k₁ = g(θ)``, ``k₂ = g(θ − h k₁)``     2
    rk4       classical Runge–Kutta, ``θ − h/6 (k₁ + 2k₂ + 2k₃ + k₄)``      4
    ab2       ``θ − h (3/2 gₙ − 1/2 gₙ₋₁)`` (first step Euler)             1
    ========  ==========================================================  ======

    Parameters
    ----------
    lr : float, default 0.1
        The time step ``h > 0``.  No step size suits every problem: the
        default is a cautious one (Euler is stable while
        ``h·λ_max(H) < 2``, here for curvatures up to 20); plain gradient
        descent on the digits benchmark (``benchmarks/bench_fngd.py``, mean
        loss) did best with ``lr=1``.
    method : {"euler", "heun", "rk4", "ab2"}, default "euler"
        The integrator (see the table above); Euler is gradient descent.

    Raises
    ------
    ValueError
        Non-positive ``lr`` or unknown ``method``.
    TypeError
        ``lr`` not a real number; at :meth:`step`, a model without
        ``loss_and_grad``.

    Notes
    -----
    Gradient descent ``θₙ₊₁ = θₙ − h ∇f(θₙ)`` is the forward Euler step of
    ``θ' = −∇f(θ)`` (the view of arXiv 2409.04707).  With ``k_i`` the
    gradients at the stages, the explicit Runge–Kutta methods have the
    Butcher tableaux (nodes ``c``, matrix ``a``, weights ``b``)

    * heun (explicit trapezoidal rule, order 2): ``c = (0, 1)``,
      ``a₂₁ = 1``, ``b = (1/2, 1/2)``;
    * rk4 (classical, order 4): ``c = (0, 1/2, 1/2, 1)``, ``a₂₁ = a₃₂ = 1/2``,
      ``a₄₃ = 1``, ``b = (1/6, 1/3, 1/3, 1/6)``, i.e. ``k₂ = g(θ − h/2 k₁)``,
      ``k₃ = g(θ − h/2 k₂)``, ``k₄ = g(θ − h k₃)``;

    and ab2 is the two-step Adams–Bashforth method (order 2), which
    integrates the line through the last two gradients:
    ``θₙ₊₁ = θₙ − h (3/2 gₙ − 1/2 gₙ₋₁)``.  It stores ``gₙ`` between calls,
    so it costs one gradient per step like Euler; its first step (no
    ``gₙ₋₁`` yet) is an Euler step.  With mini-batches ``gₙ₋₁`` comes from the
    previous call's batch.  On a quadratic with Hessian eigenvalue ``μ > 0``
    the steps are stable for ``hμ`` up to 2 (euler, heun), about 2.785 (rk4)
    and 1 (ab2).  ``info["loss"]`` is the loss at ``params`` before the step.

    The state (:meth:`state_dict`) is the step count and, for ab2, the
    previous gradient ``gₙ₋₁`` (``"previous_grad"``, None otherwise).  A step
    whose loss, gradients or new parameters have NaN/Inf is not taken and
    changes no state.

    Examples
    --------
    On ``f(θ) = ½‖θ‖²`` the flow is ``θ(t) = e^{-t} θ₀``; RK4 with ``h = 0.1``
    tracks it to about 1e-7 after one unit of time:

    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> model = CallableModel(residuals=lambda p, b: p,
    ...                       loss_and_grad=lambda p, b: (0.5 * p @ p, p),
    ...                       params=np.ones(2))
    >>> opt, p = GradientFlow(lr=0.1, method="rk4"), model.params
    >>> for _ in range(10):
    ...     p, _ = opt.step(p, model, None)
    >>> bool(np.allclose(p, np.exp(-1.0), atol=1e-7))
    True
    """

    STATE = {"previous_grad": "param_vector", "steps": "count"}

    def __init__(self, *, lr: float = 0.1, method: str = "euler") -> None:
        self.lr = validation.positive(lr, "lr")
        self.method = validation.choice(method, METHODS, "method")
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        return {"previous_grad": None, "steps": 0}

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One integrator step.

        Parameters
        ----------
        params, model, batch
            As for :meth:`ENGD.step`; the model needs ``loss_and_grad``.

        Returns
        -------
        params : array
        info : dict
            ``loss`` (at ``params``), ``lr``, ``step_taken``,
            ``gradient_evaluations``, ``gradient_norm``, ``time`` and, when
            no step was taken, ``message``.
        """
        params, xp = _common.begin(params)
        _common.require(model, ("loss_and_grad",), "GradientFlow")
        _common.check_state_shape("GradientFlow", "previous_grad", self.previous_grad, params)
        timer = _common.Timer()
        out = _common.Outputs("GradientFlow", self.steps + 1, params)
        h, P = self.lr, params.shape[0]
        evals = 0

        def grad(theta: Any, stage: int) -> Any:
            nonlocal evals
            evals += 1
            g = model.loss_and_grad(theta, batch)[1]
            return out.gradient(g, stage=f" at stage {stage} of {self.method}")

        loss, k1 = model.loss_and_grad(params, batch)
        evals += 1
        loss = out.scalar(loss, "loss_and_grad")
        k1 = out.gradient(k1)
        # one host synchronisation: the loss, whether k₁ is finite and its norm
        # (k₁ is checked before any arithmetic on it, which would warn on NumPy)
        (loss,), (k1_finite,) = _common.read(xp, [loss], [k1])
        if not (math.isfinite(loss) and k1_finite):
            what = "the model's loss (model.loss_and_grad)" if not math.isfinite(loss) else out.culprit("")
            return params, {**_common.rejection(loss, what, out.step), "gradient_evaluations": evals,
                            "time": timer.total()}
        previous = self.previous_grad
        if self.method == "euler":
            direction = k1
        elif self.method == "heun":
            k2 = grad(params - h * k1, 2)
            direction = 0.5 * (k1 + k2)
        elif self.method == "rk4":
            k2 = grad(params - (h / 2) * k1, 2)
            k3 = grad(params - (h / 2) * k2, 3)
            k4 = grad(params - h * k3, 4)
            direction = (k1 + 2 * k2 + 2 * k3 + k4) / 6
        else:  # ab2
            direction = k1 if previous is None else 1.5 * k1 - 0.5 * previous
            previous = k1
        new = params - h * direction
        timer.lap("update")
        # a later stage with NaN/Inf shows in the new parameters: the whole step is rejected
        bad = _common.nonfinite_update(loss, params, direction, new, out)
        if bad is not None:
            return params, {**bad, "gradient_evaluations": evals, "time": timer.total()}
        self._commit(previous_grad=previous, steps=self.steps + 1)
        return new, {
            "loss": loss,
            "lr": h,
            "step_taken": True,
            "gradient_evaluations": evals,
            "gradient_norm": backend.to_float(_common.scaled_norm(xp, k1)),
            "time": timer.total(),
        }

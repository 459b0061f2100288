r"""Gradient descent as an ODE integrator: Euler, Heun, RK4, Adams–Bashforth 2
and the adaptive Bogacki–Shampine 3(2) pair."""

from __future__ import annotations

import math
from typing import Any

from .. import backend, validation
from . import _common

__all__ = ["GradientFlow"]

METHODS = ("euler", "heun", "rk4", "ab2", "bs3")

#: bs3's step-size controller: ``h_new = h·clip(SAFETY·err^(-1/3), SHRINK_MIN, GROW_MAX)``
#: (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4; the bounds keep one
#: poor error estimate from changing ``h`` by more than a factor 5)
SAFETY, SHRINK_MIN, GROW_MAX = 0.9, 0.2, 5.0
#: bs3's tries per call: a rejected try is retried with the shrunk ``h``
#: (each by at least ``SHRINK_MIN``: 12 tries span a factor 0.2¹¹ ≈ 5e-8)
MAX_TRIES = 12
#: the Bogacki–Shampine 3(2) tableau: nodes, stage matrix rows, the 3rd-order
#: weights ``b`` (the 4th stage is at the new point: FSAL) and ``b − b̂`` with
#: ``b̂ = (7/24, 1/4, 1/3, 1/8)`` the embedded 2nd-order weights
BS3_C = (0.0, 0.5, 0.75, 1.0)
BS3_B = (2 / 9, 1 / 3, 4 / 9, 0.0)
BS3_E = (-5 / 72, 1 / 12, 1 / 9, -1 / 8)
#: bs3's state beyond the fixed-step methods' (see :meth:`GradientFlow.state_dict`)
ADAPTIVE_STATE = {"h": "positive", "fsal_grad": "param_vector", "fsal_point": "param_vector",
                  "fsal_loss": "key"}


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
    bs3       Bogacki–Shampine 3(2), adaptive ``h`` (see Notes)            4
    ========  ==========================================================  ======

    (bs3: 4 per try, 3 with ``fsal=True`` after the first step; a rejected
    try costs 3 more.)

    Parameters
    ----------
    lr : float, default 0.1
        The time step ``h > 0``; for bs3 the first step tried, adapted from
        there on.  No step size suits every problem: the
        default is a cautious one (Euler is stable while
        ``h·λ_max(H) < 2``, here for curvatures up to 20); plain gradient
        descent on the digits benchmark (``benchmarks/bench_fngd.py``, mean
        loss) did best with ``lr=1``.
    method : {"euler", "heun", "rk4", "ab2", "bs3"}, default "euler"
        The integrator (see the table above); Euler is gradient descent.
    rtol : float, default 1e-2
        bs3 only: the local error allowed per step, relative to the size of
        the parameters (root mean square of their entries; see Notes).
    atol : float, default 1e-4
        bs3 only: the absolute part of the tolerance (per entry, root mean
        square), which matters where ``θ`` is near zero.
    fsal : bool, default False
        bs3 only: reuse the gradient at the new point, computed for the
        error estimate (the 4th stage), as the next step's first stage
        ("first same as last"): 3 gradients per step instead of 4.  Only
        valid when every call gets the **same batch** (full-batch
        training): on a new mini-batch the stored gradient belongs to the
        old one, so leave it False with mini-batches.  The stored gradient
        is used only when ``params`` equals the point it was computed at
        (the last accepted step's result); otherwise it is recomputed.

    Raises
    ------
    ValueError
        Non-positive ``lr`` or ``rtol``, negative ``atol``, or unknown
        ``method``.
    TypeError
        ``lr``, ``rtol`` or ``atol`` not a real number, ``fsal`` not a bool;
        at :meth:`step`, a model without ``loss_and_grad``.

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

    **bs3** is the Bogacki–Shampine 3(2) pair (Bogacki & Shampine, *Appl.
    Math. Lett.* 2, 1989; MATLAB's ``ode23``) with error control:

    ====================  ======  ======  ======  ======
    ``c``                 ``a``
    ====================  ======  ======  ======  ======
    0
    1/2                   1/2
    3/4                   0       3/4
    1                     2/9     1/3     4/9
    ``b`` (order 3)       2/9     1/3     4/9     0
    ``b̂`` (order 2)       7/24    1/4     1/3     1/8
    ====================  ======  ======  ======  ======

    i.e. ``k₁ = g(θ)``, ``k₂ = g(θ − h/2 k₁)``, ``k₃ = g(θ − 3h/4 k₂)``,
    ``θ₊ = θ − h (2/9 k₁ + 1/3 k₂ + 4/9 k₃)`` (the step taken, order 3) and
    ``k₄ = g(θ₊)``.  The embedded order-2 solution gives the local error
    estimate ``e = h (−5/72 k₁ + 1/12 k₂ + 1/9 k₃ − 1/8 k₄)`` (``b − b̂``),
    measured as

    .. math:: \mathrm{err} = \frac{‖e‖_{\mathrm{rms}}}
              {\mathrm{atol} + \mathrm{rtol}\,\max(‖θ‖_{\mathrm{rms}}, ‖θ_+‖_{\mathrm{rms}})},
              \qquad ‖x‖_{\mathrm{rms}} = ‖x‖_2/\sqrt{P}.

    A try with ``err ≤ 1`` is accepted; otherwise it is rejected and tried
    again, in the same call and at the same ``θ`` (``k₁`` reused), with the
    smaller step.  Either way the next step is

    .. math:: h_{\mathrm{new}} = h \cdot \mathrm{clip}\bigl(0.9\,
              \mathrm{err}^{-1/3},\ 0.2,\ 5\bigr)

    (the exponent ``1/3``: the estimate is ``O(h³)``), with the upper bound
    1 instead of 5 right after a rejection.  A try whose stages or new point
    have NaN/Inf counts as rejected with ``h·0.2`` (too long a step can leave
    the region where the model is finite).  After :data:`MAX_TRIES` (12)
    tries the call takes no step.  ``h`` is not bounded otherwise: where the
    flow is stiff (Euler unstable at ``lr``) the error control keeps ``h``
    near the stability limit (``hμ ≈ 2.5`` for bs3).  There the stiffest
    component of ``θ − θ*`` neither grows nor decays: the controller holds it
    where its error estimate is ``0.9³`` of the tolerance, so on a stiff
    problem the loss levels off at a floor set by ``rtol``/``atol`` (a
    smaller tolerance, a lower floor) — bs3 follows the flow to the
    tolerance; it is not a minimiser with a convergence rate.  On a mini-batch the
    estimate is the error of following *that batch's* gradient flow, so
    ``h`` adapts to each batch in turn; ``rtol`` is the knob instead of
    ``lr``.  ``rtol``, ``atol`` and ``fsal`` are ignored by the other
    methods.

    The state (:meth:`state_dict`) is the step count and, for ab2, the
    previous gradient ``gₙ₋₁`` (``"previous_grad"``, None otherwise); bs3
    adds ``"h"`` (the step the next call tries first) and, with
    ``fsal=True``, the last accepted step's ``k₄`` (``"fsal_grad"``), its
    point ``θ₊`` (``"fsal_point"``) and the loss there (``"fsal_loss"``;
    None before the first step or without ``fsal``).  A step whose loss,
    gradients or new parameters have NaN/Inf is not taken and changes no
    state; a bs3 call whose tries all fail the tolerance takes no step and
    changes only ``h`` (shrunk as above; ``info["reason"] == "rejected"``).

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

    bs3 on the stiff ``f(θ) = 50 θ₁² + ½ θ₂²`` from ``lr=0.1``, where Euler
    (stable for ``h < 0.02``) diverges: the first try is rejected and ``h``
    shrinks to what the curvature allows.

    >>> H = np.array([100.0, 1.0])
    >>> stiff = CallableModel(residuals=lambda p, b: p,
    ...                       loss_and_grad=lambda p, b: (0.5 * p @ (H * p), H * p),
    ...                       params=np.ones(2))
    >>> opt, p = GradientFlow(lr=0.1, method="bs3"), stiff.params
    >>> p, info = opt.step(p, stiff, None)
    >>> info["rejections"] > 0 and info["lr"] < 0.1
    True
    >>> for _ in range(200):
    ...     p, info = opt.step(p, stiff, None)
    >>> bool(0.5 * p @ (H * p) < 1e-3), bool(opt.h * 100 < 3.0)
    (True, True)
    """

    STATE = {"previous_grad": "param_vector", "steps": "count"}

    def __init__(self, *, lr: float = 0.1, method: str = "euler", rtol: float = 1e-2, atol: float = 1e-4,
                 fsal: bool = False) -> None:
        self.lr = validation.positive(lr, "lr")
        self.method = validation.choice(method, METHODS, "method")
        self.rtol = validation.positive(rtol, "rtol")
        self.atol = validation.nonnegative(atol, "atol")
        if not isinstance(fsal, bool):
            raise TypeError(f"fsal must be True or False, got {type(fsal).__name__}")
        self.fsal = fsal
        if method == "bs3":  # the adaptive state: an instance's STATE (the fixed-step methods' is unchanged)
            self.STATE = {**GradientFlow.STATE, **ADAPTIVE_STATE}
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        fresh: dict[str, Any] = {"previous_grad": None, "steps": 0}
        if self.method == "bs3":
            fresh.update(h=self.lr, fsal_grad=None, fsal_point=None, fsal_loss=None)
        return fresh

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One integrator step (for bs3: one accepted step, after as many tries as it takes).

        Parameters
        ----------
        params, model, batch
            As for :meth:`ENGD.step`; the model needs ``loss_and_grad``.

        Returns
        -------
        params : array
        info : dict
            ``loss`` (at ``params``), ``lr`` (the step taken, 0 when none),
            ``step_taken``, ``gradient_evaluations``, ``gradient_norm``,
            ``time`` and, when no step was taken, ``reason`` and
            ``message``.  bs3 adds ``h`` (the step of the last try),
            ``h_next`` (the next call's first try), ``rejections`` (tries
            rejected in this call), ``error`` (the last try's ``err``; ≤ 1
            when accepted), ``fsal`` (whether ``k₁`` was reused) and
            ``loss_after`` (the loss at the new params, on this batch).
        """
        params, xp = _common.begin(params)
        _common.require(model, ("loss_and_grad",), "GradientFlow")
        for key in ("previous_grad", "fsal_grad", "fsal_point"):
            _common.check_state_shape("GradientFlow", key, getattr(self, key, None), params)
        timer = _common.Timer()
        out = _common.Outputs("GradientFlow", self.steps + 1, params)
        h, P = self.lr, params.shape[0]
        evals = 0

        def grad(theta: Any, stage: int) -> Any:
            nonlocal evals
            evals += 1
            g = model.loss_and_grad(theta, batch)[1]
            return out.gradient(g, stage=f" at stage {stage} of {self.method}")

        if self.method == "bs3" and self._fsal_applies(xp, params):
            return self._bs3(params, xp, model, batch, out, timer, self.fsal_loss, self.fsal_grad, 0)
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
        if self.method == "bs3":
            return self._bs3(params, xp, model, batch, out, timer, loss, k1, evals)
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

    def _fsal_applies(self, xp: Any, params: Any) -> bool:
        """Whether the stored last stage is ``∇f(params)``: ``fsal=True`` and
        ``params`` is (or equals, one host synchronisation) the point it was
        computed at.  The batch cannot be checked: ``fsal=True`` declares it
        fixed."""
        point = self.fsal_point
        if not self.fsal or point is None or self.fsal_grad is None or self.fsal_loss is None:
            return False
        if point is params:
            return True
        if type(point) is not type(params) or point.dtype != params.dtype:
            return False
        if backend.device(point) != backend.device(params):
            return False
        return backend.to_bool(xp.all(point == params))

    def _bs3(self, params: Any, xp: Any, model: Any, batch: Any, out: _common.Outputs, timer: _common.Timer,
             loss: float, k1: Any, evals: int) -> tuple[Any, dict[str, Any]]:
        """The tries of one bs3 step from ``params`` with ``k₁ = ∇f(params)``
        (finite, its ``loss`` read): accept the first within the tolerance."""
        reused = evals == 0
        a2, a3 = BS3_C[1], BS3_C[2]
        b1, b2, b3, _ = BS3_B
        e1, e2, e3, e4 = BS3_E
        root_p = math.sqrt(params.shape[0])
        theta_norm = _common.scaled_norm(xp, params)
        k1_norm = _common.scaled_norm(xp, k1)
        h, rejections, err, last_bad = self.h, 0, math.inf, ""
        seen = len(out.seen)  # k₁'s entry, when it was computed in this call
        for _ in range(MAX_TRIES):
            tried = h
            # NaN/Inf in a stage is replaced by 0 for the arithmetic (Inf − Inf would warn) and
            # found in the one host synchronisation of the try: the try is then refused
            k2 = self._stage(model, params - (a2 * h) * k1, batch, out, 2)
            k2f = _finite_part(xp, k2)
            k3 = self._stage(model, params - (a3 * h) * k2f, batch, out, 3)
            k3f = _finite_part(xp, k3)
            new = params - h * (b1 * k1 + b2 * k2f + b3 * k3f)
            loss_new, k4 = model.loss_and_grad(new, batch)
            loss_new = out.scalar(loss_new, "loss_and_grad")
            k4 = out.gradient(k4, stage=" at stage 4 of bs3")
            evals += 3
            e = h * (e1 * k1 + e2 * k2f + e3 * k3f + e4 * _finite_part(xp, k4))
            (e_norm, new_norm, th_norm, g_norm, loss_after), finite = _common.read(
                xp, [_common.scaled_norm(xp, e), _common.scaled_norm(xp, new), theta_norm, k1_norm, loss_new],
                [k2, k3, k4])
            if not (all(finite) and math.isfinite(new_norm) and math.isfinite(loss_after)):
                culprit = out.culprit("")
                last_bad = culprit or ("the updated params (an overflow)" if not math.isfinite(new_norm)
                                       else "the model's loss at the new params (model.loss_and_grad)")
                del out.seen[seen:]  # the failed try's arrays are no suspects of the next
                rejections += 1
                h *= SHRINK_MIN
                err = math.inf
                continue
            last_bad = ""
            scale = self.atol + self.rtol * max(th_norm, new_norm) / root_p
            size = e_norm / root_p
            err = size / scale if scale > 0 else (0.0 if size == 0 else math.inf)
            grow = GROW_MAX if rejections == 0 else 1.0
            factor = GROW_MAX if err == 0 else min(grow, max(SHRINK_MIN, SAFETY * err ** (-1 / 3)))
            if err <= 1.0:
                timer.lap("update")
                fsal = {"fsal_grad": k4, "fsal_point": new, "fsal_loss": loss_after} if self.fsal else {}
                self._commit(h=h * factor, steps=self.steps + 1, **fsal)
                return new, {
                    "loss": loss, "lr": h, "step_taken": True, "gradient_evaluations": evals,
                    "gradient_norm": g_norm, "h": h, "h_next": h * factor, "rejections": rejections,
                    "error": err, "fsal": reused, "loss_after": loss_after, "time": timer.total(),
                }
            del out.seen[seen:]
            rejections += 1
            h *= min(1.0, factor)
        timer.lap("update")
        info = {"gradient_evaluations": evals, "h": tried, "h_next": h,
                "rejections": rejections, "error": err, "fsal": reused, "time": timer.total()}
        if last_bad:  # the last try was not finite: nothing changes (the model may be at fault, not h)
            info.pop("h_next")
            return params, {**_common.rejection(loss, last_bad, out.step), **info}
        self._commit(h=h)
        return params, {
            **info, "loss": loss, "lr": 0.0, "step_taken": False, "reason": "rejected",
            "message": (f"bs3: {MAX_TRIES} tries in a row exceeded the error tolerance at step {out.step} "
                        f"(last error estimate {err:.3g} × the tolerance): no step taken; the next call "
                        f"starts from h = {h:.3g}"),
        }

    @staticmethod
    def _stage(model: Any, theta: Any, batch: Any, out: _common.Outputs, stage: int) -> Any:
        g = model.loss_and_grad(theta, batch)[1]
        return out.gradient(g, stage=f" at stage {stage} of bs3")


def _finite_part(xp: Any, x: Any) -> Any:
    """``x`` with its NaN/Inf entries replaced by 0 (no host synchronisation)."""
    return xp.where(xp.isfinite(x), x, xp.zeros_like(x))

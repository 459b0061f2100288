r"""Adam on flat parameter vectors, for comparisons with the natural-gradient optimisers."""

from __future__ import annotations

import math
from typing import Any

from .. import backend, validation
from . import _common

__all__ = ["Adam"]


class Adam(_common.Stateful):
    r"""Adam (Kingma & Ba, ICLR 2015) with the step interface of natgrad's optimisers.

    .. math::
        m ← β₁m + (1−β₁)g,\quad v ← β₂v + (1−β₂)g²,\quad
        θ ← θ − lr\, \frac{m/(1−β₁^k)}{\sqrt{v/(1−β₂^k)} + ε}

    Parameters
    ----------
    lr : float, default 1e-3
        Step size ``> 0`` (the paper's default).
    betas : (float, float), default (0.9, 0.999)
        ``β₁, β₂ ∈ [0, 1)``: decay rates of the first and second moment
        estimates (the paper's defaults).
    eps : float, default 1e-8
        ``ε > 0`` added to the denominator (the paper's default).

    Raises
    ------
    ValueError
        Non-positive ``lr``/``eps``, betas outside ``[0, 1)``.
    TypeError
        ``lr``, ``eps`` or a beta not a real number; at :meth:`step`, a model
        without ``loss_and_grad``.

    Notes
    -----
    Algorithm 1 of Kingma & Ba, "Adam: a method for stochastic optimization",
    ICLR 2015 (arXiv 1412.6980), on the flat parameter vector, with ``g`` the
    gradient from ``model.loss_and_grad`` and ``k`` the step count starting
    at 1.  The moments start at zero (created on the first step with the
    shape, dtype and device of ``params``), so they are biased towards zero
    early on; dividing by ``1 − β₁ᵏ`` and ``1 − β₂ᵏ`` removes that bias.  ``ε``
    is added after the square root, as in the paper and ``torch.optim.Adam``;
    there is no weight decay.  The update is elementwise (a diagonal
    preconditioner), in contrast to the curvature-based natgrad optimisers.
    ``info["loss"]`` is the loss at ``params`` before the step.

    The state (:meth:`state_dict`) is ``m``, ``v`` (None before the first
    step) and the step count ``k``.  A step whose loss, gradient or new
    parameters have NaN/Inf is not taken and changes no state; nor is one
    whose gradient has an entry above the square root of the largest float
    (``1.3e154`` in float64), whose square would make ``v`` Inf for good.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> model = CallableModel(residuals=lambda p, b: p - 3.0,
    ...                       loss_and_grad=lambda p, b: (0.5 * np.sum((p - 3) ** 2), p - 3.0),
    ...                       params=np.zeros(2))
    >>> opt, p = Adam(lr=0.1), model.params
    >>> for _ in range(300):
    ...     p, _ = opt.step(p, model, None)
    >>> bool(np.allclose(p, 3.0, atol=1e-2))
    True
    """

    STATE = {"m": "param_vector", "v": "param_vector", "steps": "count"}

    def __init__(
        self, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.lr = validation.positive(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (β₁, β₂), got {betas!r}")
        self.beta1 = validation.fraction(betas[0], "betas[0]")
        self.beta2 = validation.fraction(betas[1], "betas[1]")
        self.eps = validation.positive(eps, "eps")
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        return {"m": None, "v": None, "steps": 0}

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One Adam step (the model needs ``loss_and_grad``).

        Parameters
        ----------
        params, model, batch
            As for :meth:`ENGD.step`.

        Returns
        -------
        params : array
            The new parameters, or ``params`` when no step was taken.
        info : dict
            ``loss`` (at ``params``), ``lr``, ``step_taken``, ``time`` and,
            when no step was taken, ``message``.
        """
        params, xp = _common.begin(params)
        _common.require(model, ("loss_and_grad",), "Adam")
        _common.check_state_shape("Adam", "m", self.m, params)
        timer = _common.Timer()
        out = _common.Outputs("Adam", self.steps + 1, params)
        loss, g = model.loss_and_grad(params, batch)
        loss, g = out.scalar(loss, "loss_and_grad"), out.gradient(g)
        # one host synchronisation: the loss, the largest |g| and whether g is
        # finite, before any arithmetic on g (Inf in g² / √v would warn on NumPy)
        # (an empty g has no largest entry: a reduction over it raises)
        largest = xp.max(xp.abs(g)) if g.shape[0] else 0.0
        (loss, g_max), (g_finite,) = _common.read(xp, [loss, largest], [g])
        if not (math.isfinite(loss) and g_finite):
            what = "the model's loss (model.loss_and_grad)" if not math.isfinite(loss) else out.culprit("")
            return params, {**_common.rejection(loss, what, out.step), "time": timer.total()}
        if g_max > math.sqrt(float(xp.finfo(g.dtype).max)):
            # g² would overflow the second moment: v = Inf stays Inf (β₂ Inf = Inf)
            # and freezes its coordinate for good, while the step looks finite
            return params, {
                **_common.rejection(loss, "the gradient", out.step),
                "message": f"the gradient's largest entry {g_max:.3g} squares past the largest "
                           f"{g.dtype} (Adam's second moment would be Inf) at step {out.step}: no step "
                           "taken (params and the optimiser state are unchanged)",
                "time": timer.total(),
            }
        m = xp.zeros_like(params) if self.m is None else self.m
        v = xp.zeros_like(params) if self.v is None else self.v
        steps = self.steps + 1
        m = self.beta1 * m + (1 - self.beta1) * g
        v = self.beta2 * v + (1 - self.beta2) * (g * g)
        m_hat = m / (1 - self.beta1**steps)
        v_hat = v / (1 - self.beta2**steps)
        new = params - self.lr * m_hat / (xp.sqrt(v_hat) + self.eps)
        timer.lap("update")
        bad = _common.nonfinite_update(loss, params, g, new, out)
        if bad is not None:
            return params, {**bad, "time": timer.total()}
        self._commit(m=m, v=v, steps=steps)
        return new, {"loss": loss, "lr": self.lr, "step_taken": True, "time": timer.total()}

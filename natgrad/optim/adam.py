r"""Adam on flat parameter vectors, for comparisons with the natural-gradient optimisers."""

from __future__ import annotations

from typing import Any

from .. import backend
from . import _common

__all__ = ["Adam"]


class Adam:
    r"""Adam (Kingma & Ba, ICLR 2015) with the step interface of natgrad's optimisers.

    .. math::
        m ← β₁m + (1−β₁)g,\quad v ← β₂v + (1−β₂)g²,\quad
        θ ← θ − lr\, \frac{m/(1−β₁^k)}{\sqrt{v/(1−β₂^k)} + ε}

    Parameters
    ----------
    lr : float
        Step size ``> 0`` (default ``1e-3``, the paper's).
    betas : (float, float)
        ``β₁, β₂ ∈ [0, 1)``: decay rates of the first and second moment
        estimates (default ``(0.9, 0.999)``).
    eps : float
        ``ε > 0`` added to the denominator (default ``1e-8``).

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

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr = _common.positive(lr, "lr")
        self.beta1 = _common.momentum_factor(betas[0], "betas[0]")
        self.beta2 = _common.momentum_factor(betas[1], "betas[1]")
        self.eps = _common.positive(eps, "eps")
        self.m: Any = None
        self.v: Any = None
        self.steps = 0

    def step(self, params: Any, model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        """One Adam step; ``info`` has ``loss`` (at ``params``) and ``time``."""
        _common.require(model, ("loss_and_grad",), "Adam")
        timer = _common.Timer()
        xp = backend.namespace(params=params)
        loss, g = model.loss_and_grad(params, batch)
        if self.m is None:
            self.m, self.v = xp.zeros_like(params), xp.zeros_like(params)
        self.steps += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * (g * g)
        m_hat = self.m / (1 - self.beta1**self.steps)
        v_hat = self.v / (1 - self.beta2**self.steps)
        new = params - self.lr * m_hat / (xp.sqrt(v_hat) + self.eps)
        timer.lap("update")
        return new, {"loss": backend.to_float(loss), "lr": self.lr, "step_taken": True, "time": timer.total()}

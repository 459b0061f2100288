r"""Inverse-free fast natural gradient descent (FNGD) with reusable coefficients."""

from __future__ import annotations

from typing import Any

from .. import backend
from ..linalg.woodbury import Woodbury
from . import _common

__all__ = ["FNGD"]


class FNGD:
    r"""Fast natural gradient descent (Ou, Zhu, Huang, Liu, arXiv 2403.03473).

    For a model with ``loss="mean"`` the Jacobian rows are the per-sample
    gradients ``uᵢ = ∇ℓᵢ``; with ``U = Jᵀ ∈ ℝᴾˣᴺ`` the damped empirical-Fisher
    natural gradient is a weighted sum of them,

    .. math::
        (UUᵀ/N + λI)^{-1} U\mathbf 1/N = U α, \qquad α = (λN I + UᵀU)^{-1} \mathbf 1,

    and the update is ``θ ← θ − lr·U α`` (with optional heavy-ball momentum).
    The weights ``α`` — an ``N × N`` solve — are computed on refresh steps
    (every ``refresh_every`` uses of a batch) and reused on the others with
    the new per-sample gradients of the *same* samples, as the paper reuses
    them across epochs.  Weights belong to a batch: when cycling through
    several mini-batches pass ``batch_key=`` (e.g. the mini-batch index) to
    :meth:`step` so each keeps its own; without it every batch is taken to be
    the same one.

    Parameters
    ----------
    damping : float
        ``λ > 0``.
    refresh_every : int
        Recompute a batch's ``α`` every this many uses of that batch (1: every
        step, the exact damped NGD direction).  A batch of a different size
        forces a refresh.  Stale weights multiply new per-sample gradients,
        so reuse needs a damping large enough that ``α`` changes slowly: on
        the digits benchmark ``refresh_every=5`` diverged for ``λ ≤ 0.1`` and
        was stable at ``λ = 1``.
    lr : float
        Step size.
    momentum : float
        Heavy-ball momentum ``β ∈ [0, 1)``: ``v ← βv + Uα``, ``θ ← θ − lr·v``.

    Raises
    ------
    ValueError
        Non-positive ``damping``/``lr``, ``refresh_every`` not an int ``≥ 1``,
        momentum outside ``[0, 1)``; at :meth:`step`, a model with
        ``loss="squared"``.
    TypeError
        ``damping``, ``lr`` or ``momentum`` not a real number; at
        :meth:`step`, a model without ``residuals`` and ``jacobian``.

    Notes
    -----
    With ``J ∈ ℝᴺˣᴾ`` the model's Jacobian (rows ``uᵢᵀ``, so ``U = Jᵀ``) the
    push-through identity ``(UUᵀ + λN I_P)⁻¹ U = U (UᵀU + λN I_N)⁻¹`` turns the
    ``P × P`` damped Fisher solve into an ``N × N`` one; on a refresh step

    .. math::  α = (JJᵀ + λN I_N)^{-1} \mathbf 1

    is computed by one Cholesky of the damped sample-space Gram matrix
    (``Woodbury(J, λN).coefficients(1)``, ``O(N²P)``), and the direction is
    ``Jᵀ α`` (``O(NP)``).  What is reused on the other steps is only the
    vector ``α`` of a batch: the Jacobian, losses and direction are always
    evaluated at the current ``params``, so a reuse step costs one Jacobian
    and one matrix–vector product.  The cache holds one ``α`` per
    ``batch_key`` with a count of its uses; it is refreshed when that count
    is a multiple of ``refresh_every`` or ``N`` changed.  ``info["loss"]`` is
    the mean per-sample loss *before* the step (a host float, which
    synchronises an asynchronous device).

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.adapters.callables import CallableModel
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    >>> per_sample = lambda p, b: 0.5 * (X @ p - y) ** 2          # ℓᵢ
    >>> grads = lambda p, b: (X @ p - y)[:, None] * X              # rows ∇ℓᵢ
    >>> model = CallableModel(residuals=per_sample, jacobian=grads,
    ...                       params=np.zeros(3), loss="mean")
    >>> opt, p = FNGD(damping=1e-3, lr=0.5), model.params
    >>> for _ in range(20):
    ...     p, info = opt.step(p, model, None)
    >>> bool(np.mean(per_sample(p, None)) < np.mean(per_sample(np.zeros(3), None)))
    True
    """

    def __init__(self, damping: float, refresh_every: int = 1, lr: float = 0.1, momentum: float = 0.0) -> None:
        self.damping = _common.positive(damping, "damping")
        if not isinstance(refresh_every, int) or isinstance(refresh_every, bool) or refresh_every < 1:
            raise ValueError(f"refresh_every must be an int ≥ 1, got {refresh_every!r}")
        self.refresh_every = refresh_every
        self.lr = _common.positive(lr, "lr")
        self.momentum = _common.momentum_factor(momentum)
        self.alpha: Any = None  # the weights used by the last step
        self._cache: dict[Any, tuple[Any, int]] = {}  # batch_key -> (α, uses)
        self.velocity: Any = None
        self.steps = 0

    def step(self, params: Any, model: Any, batch: Any, *, batch_key: Any = None) -> tuple[Any, dict[str, Any]]:
        """One FNGD step.

        Parameters
        ----------
        params, model, batch
            As for :meth:`ENGD.step`; ``model.loss`` must be ``"mean"``.
        batch_key : hashable, optional
            Identifies the batch whose weights ``α`` may be reused (see the
            class notes); ``None`` means "the one batch".

        Returns
        -------
        params : array
        info : dict
            ``loss``, ``refreshed`` (whether ``α`` was recomputed), ``lr``,
            ``direction_norm`` and ``time``.
        """
        _common.require_kind(model, "mean", "FNGD")
        _common.require(model, ("residuals", "jacobian"), "FNGD")
        timer = _common.Timer()
        xp = backend.namespace(params=params)
        losses, J = _common.residuals_and_jacobian(model, params, batch)
        N = J.shape[0]
        alpha, uses = self._cache.get(batch_key, (None, 0))
        refresh = alpha is None or uses % self.refresh_every == 0 or tuple(alpha.shape) != (N,)
        if refresh:
            ones = xp.ones((N,), dtype=J.dtype, device=backend.device(J))
            alpha, uses = Woodbury(J, self.damping * N).coefficients(ones), 0
        self._cache[batch_key] = (alpha, uses + 1)
        self.alpha = alpha
        direction = xp.matrix_transpose(J) @ self.alpha
        timer.lap("direction")
        if self.momentum > 0:
            self.velocity = direction if self.velocity is None else self.momentum * self.velocity + direction
            direction = self.velocity
        self.steps += 1
        info = {
            "loss": backend.to_float(xp.mean(losses)),
            "refreshed": refresh,
            "lr": self.lr,
            "step_taken": True,
            "direction_norm": backend.to_float(xp.linalg.vector_norm(direction)),
        }
        new_params = params - self.lr * direction
        timer.lap("update")
        info["time"] = timer.total()
        return new_params, info

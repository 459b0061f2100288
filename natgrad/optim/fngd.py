r"""Inverse-free fast natural gradient descent (FNGD) with reusable coefficients."""

from __future__ import annotations

import math
from typing import Any, Mapping

from .. import backend, validation
from ..linalg.woodbury import Woodbury
from . import _common

__all__ = ["FNGD"]


class FNGD(_common.Stateful):
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
    damping : float, default 1e-2
        ``λ > 0``.  The default is the best of ``{1e-3, 1e-2}`` (with
        ``lr ∈ {0.5, 1}``, refreshing every step) on the digits benchmark
        (``benchmarks/bench_fngd.py``).
    refresh_every : int, default 1
        Recompute a batch's ``α`` every this many uses of that batch (1: every
        step, the exact damped NGD direction).  A batch of a different size
        forces a refresh.  Stale weights multiply new per-sample gradients,
        so reuse needs a damping large enough that ``α`` changes slowly: on
        the digits benchmark ``refresh_every=5`` diverged for ``λ ≤ 0.1`` and
        was stable at ``λ = 1``.
    lr : float, default 0.5
        Step size; the default is the digits benchmark's best with the
        default damping.
    momentum : float, default 0.0
        Heavy-ball momentum ``β ∈ [0, 1)``: ``v ← βv + Uα``, ``θ ← θ − lr·v``
        (none by default: the paper's method has none).

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

    The state (:meth:`state_dict`) is the step count, the velocity ``v``,
    the weights ``α`` of the last step (``"alpha"``) and the cache as three
    lists of equal length: ``"cache_keys"`` (the batch keys: None, numbers,
    strings or lists of them — a tuple key comes back as a tuple),
    ``"cache_alphas"`` and ``"cache_uses"``.  A step whose loss, Jacobian,
    direction or new parameters have NaN/Inf leaves the state and
    ``params`` unchanged (``info["step_taken"] = False``).

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
    >>> state = opt.state_dict()
    >>> state["steps"], state["cache_keys"], state["cache_uses"]
    (20, [None], [1])
    """

    STATE = {
        "steps": "count",
        "velocity": "param_vector",
        "alpha": "vector",
        "cache_keys": "key_list",
        "cache_alphas": "vector_list",
        "cache_uses": "count_list",
    }

    def __init__(
        self, *, damping: float = 1e-2, refresh_every: int = 1, lr: float = 0.5, momentum: float = 0.0
    ) -> None:
        self.damping = validation.positive(damping, "damping")
        self.refresh_every = validation.positive_int(refresh_every, "refresh_every")
        self.lr = validation.positive(lr, "lr")
        self.momentum = validation.fraction(momentum, "momentum")
        self.reset()

    def _fresh_state(self) -> dict[str, Any]:
        # _cache: batch_key -> (α, uses); alpha: the weights used by the last step
        return {"steps": 0, "velocity": None, "alpha": None, "_cache": {}}

    def _export_state(self) -> dict[str, Any]:
        for key in self._cache:
            if not _common.plain_key(key):
                raise TypeError(
                    f"FNGD.state_dict: batch_key {key!r} is not None, a number, a str or a tuple of them, "
                    "so the state cannot be saved as plain data"
                )
        return {
            "steps": self.steps,
            "velocity": self.velocity,
            "alpha": self.alpha,
            "cache_keys": [list(k) if isinstance(k, tuple) else k for k in self._cache],
            "cache_alphas": [a for a, _ in self._cache.values()],
            "cache_uses": [u for _, u in self._cache.values()],
        }

    def _import_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        keys, alphas, uses = state["cache_keys"], state["cache_alphas"], state["cache_uses"]
        if not len(keys) == len(alphas) == len(uses):
            raise ValueError(
                f"FNGD.load_state_dict: cache_keys, cache_alphas and cache_uses must have one length, "
                f"got {len(keys)}, {len(alphas)}, {len(uses)}"
            )
        if len(set(keys)) != len(keys):
            raise ValueError(f"FNGD.load_state_dict: cache_keys has repeated keys: {keys}")
        cache = {k: (a, u) for k, a, u in zip(keys, alphas, uses)}
        return {"steps": state["steps"], "velocity": state["velocity"], "alpha": state["alpha"], "_cache": cache}

    @_common.warn_once_per_optimizer
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
            ``direction_norm``, ``time`` and, as for :meth:`ENGD.step`,
            ``warnings`` when the step raised some (shown once per optimiser).
        """
        params, xp = _common.begin(params)
        _common.require_kind(model, "mean", "FNGD")
        _common.require(model, ("residuals", "jacobian"), "FNGD")
        _common.check_state_shape("FNGD", "velocity", self.velocity, params)
        timer = _common.Timer()
        out = _common.Outputs("FNGD", self.steps + 1, params)
        method = "residuals_and_jacobian" if callable(getattr(model, "residuals_and_jacobian", None)) else "jacobian"
        losses, J = _common.residuals_and_jacobian(model, params, batch)
        method_r = method if method != "jacobian" else "residuals"
        losses = out.residuals(losses, method_r, "the model's per-sample losses")
        J = out.jacobian(J, losses.shape[0], method, "the model's per-sample gradients")
        loss = backend.to_float(xp.mean(losses))
        if not math.isfinite(loss):
            return params, {**_common.loss_rejection(loss, out, "mean"), "time": timer.total()}
        N = J.shape[0]
        alpha, uses = self._cache.get(batch_key, (None, 0))
        refresh = alpha is None or uses % self.refresh_every == 0 or tuple(alpha.shape) != (N,)
        if refresh:
            ones = xp.ones((N,), dtype=J.dtype, device=backend.device(J))
            try:
                alpha, uses = Woodbury(J, self.damping * N).coefficients(ones), 0
            except ValueError as err:
                # Woodbury refuses a J with NaN/Inf or an overflowing JJᵀ (read off
                # its diagonal): no step
                return params, {**_common.factor_rejection(err, J, loss, out), "time": timer.total()}
        direction = xp.matrix_transpose(J) @ alpha
        timer.lap("direction")
        velocity = self.velocity
        if self.momentum > 0:
            velocity = direction if velocity is None else self.momentum * velocity + direction
            direction = velocity
        new_params = params - self.lr * direction
        bad = _common.nonfinite_update(loss, params, direction, new_params, out)
        if bad is not None:
            return params, {**bad, "refreshed": refresh, "time": timer.total()}
        cache = {**self._cache, batch_key: (alpha, uses + 1)}
        self._commit(_cache=cache, alpha=alpha, velocity=velocity, steps=self.steps + 1)
        info = {
            "loss": loss,
            "refreshed": refresh,
            "lr": self.lr,
            "step_taken": True,
            "direction_norm": backend.to_float(_common.scaled_norm(xp, direction)),
        }
        timer.lap("update")
        info["time"] = timer.total()
        return new_params, info
